"""The fleet: a :class:`~servesim.scenario.Scenario` turned into the instances an event loop runs.

Between the spec and the engine: per group of identical instances, the hardware, parallelism
and cost parameters (the engine profile's, or a calibration's), the memory plan, the step-cost
model, the drafter of speculative decoding (whose weights and KV come out of the KV budget),
the CPU offload tier, and each instance's scheduler and KV cache; across groups, the KV
transfer from prefill to decode instances and the API server in front of them.

Speculative decoding: the target's verification step is an ordinary step over k+1 tokens per
decoding request (the engine schedules it); :func:`build_speculation` prices *proposing* the k
drafts (:func:`servesim.cost.speculative.draft_cost`):

- ``draft:MODEL``: k sequential decode steps of the draft model (any catalog model with the
  target's vocabulary), on the target's GPUs;
- ``eagle``: an EAGLE-like head — one decoder layer of the target's shape plus the LM head —
  run k times on the GPU;
- ``ngram``: prompt-lookup drafting on the host CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from servesim.cost import (
    CostParams,
    MemoryPlan,
    Parallelism,
    StepCostModel,
    build_step_cost,
    plan_memory,
)
from servesim.cost.compiled import compiled_step_cost, numba_available
from servesim.cost.dtypes import dtype_bytes
from servesim.cost.memory import kv_transfer_seconds
from servesim.cost.speculative import DraftCost, draft_cost
from servesim.engine.admission import Admission
from servesim.engine.instance import Instance, Speculation
from servesim.engine.kv_cache import KVBlockManager
from servesim.engine.loop import ApiLatency
from servesim.engine.pricing import SpanPlanner
from servesim.engine.request import Request
from servesim.engine.scheduler import SchedulerConfig, policy_knobs
from servesim.engines import (
    EngineProfile,
    allreduce_norm_fusion,
    attention_backend,
    deepseek_glue_kernels,
    flashinfer_decode_cuda_cores,
    fp8_attention,
    host_overlap_of,
    hybrid_kv,
    mla_decode_rows,
    mla_fused_down_proj,
    mla_materialized,
    mla_prompt_absorb,
    mla_prompt_attention_scale,
    moe_chunk_tokens,
    sliding_kv,
    swa_pool_ratio,
)
from servesim.errors import ServesimError
from servesim.hardware import Hardware, Link, load_hardware
from servesim.kernel_cache import kernels_cached
from servesim.model import ModelSpec, load_model
from servesim.scenario import (
    InstanceGroup,
    Scenario,
    SchedulerSpec,
    SpeculativeSpec,
    engine_profile_of,
    instance_groups,
    scheduler_steps,
)


@dataclass
class InstanceGroupRuntime:
    """One group of identical instances as built for a run."""

    group: InstanceGroup
    hardware: Hardware
    parallelism: Parallelism
    params: CostParams
    memory: MemoryPlan
    cost: StepCostModel
    instances: list[Instance]

    @property
    def gpus_per_instance(self) -> int:
        return self.parallelism.gpus


@dataclass
class Fleet:
    """A scenario's instances, built: what the event loop runs and the summary reads."""

    scenario: Scenario
    model: ModelSpec
    max_model_len: int
    """The context window (the scenario's, at most the model's)."""
    config: SchedulerConfig
    """The scheduler and KV-cache knobs every instance runs with."""
    groups: list[InstanceGroupRuntime]
    api: ApiLatency | None
    """The engine's API server in front of the fleet; None: requests arrive in-process."""

    @property
    def instances(self) -> list[Instance]:
        return [i for g in self.groups for i in g.instances]

    @property
    def kv_tokens(self) -> int:
        """Tokens of one request the smallest instance's KV cache holds (in the hybrid layout,
        what its full-attention pages hold beside the sliding-window groups' pages)."""
        return min(request_kv_tokens(i.kv, self.config) for i in self.instances)

    def admits_alone(self, prompt_tokens: int, max_output_tokens: int) -> bool:
        """Whether every instance new requests reach (all but P/D's decode instances) admits a
        request of these tokens once it has drained, under its look-ahead admission
        (``reserve``, ``guaranteed``: :meth:`Admission.admits_alone` over its whole cache).
        Greedy admission asks only for blocks, which :attr:`kv_tokens` covers."""
        for admission, capacity, block_size in self._look_ahead_gates:
            if not admission.admits_alone(prompt_tokens, max_output_tokens, capacity, block_size):
                return False
        return True

    @functools.cached_property
    def _look_ahead_gates(self) -> tuple[tuple[Admission, int, int], ...]:
        """(admission, cache tokens, block size) of each instance :meth:`admits_alone` asks:
        found once, as it runs for every request."""
        return tuple(
            (inst.state.admission, inst.kv.num_blocks * inst.kv.block_size, inst.kv.block_size)
            for inst in self.instances
            if inst.role != "decode" and inst.state.admission is not None
        )


def request_kv_tokens(kv: KVBlockManager, config: SchedulerConfig) -> int:
    """The longest request ``kv`` holds alone: every block but the admission watermark's
    (vLLM V0 never admits a request needing more, ``AllocStatus.NEVER``), or in the hybrid
    layout the most tokens whose pages fit beside those of its sliding-window groups while its
    last prompt step computes (the token budget's worth when prompts are chunked, else the
    whole prompt: the check vLLM makes at start-up,
    ``SlidingWindowSpec.max_memory_usage_bytes``); ``sys.maxsize`` when a model whose every
    layer slides holds its window's pages in the cache, whatever the request's length."""
    usable = kv.num_blocks - kv.watermark_blocks
    if not kv.sliding_groups:
        return usable * kv.block_size
    knobs = policy_knobs(config)

    def fits(blocks: int) -> bool:
        tokens = blocks * kv.block_size
        step = min(tokens, int(knobs.budget)) if knobs.chunked else tokens
        return kv.blocks_for(tokens, step) <= usable

    if not kv.full_groups and fits(usable):
        return sys.maxsize  # (a sliding-window-only request holds its window, whatever its length)

    lo, hi = 0, usable  # fits(lo); the answer is at most every usable block
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo * kv.block_size


def memory_rules(scenario: Scenario, profile: EngineProfile) -> dict[str, Any]:
    """How ``profile``'s engine sizes its KV cache for ``scenario``: ``plan_memory``'s
    ``kv_of_*``, ``profiled``, ``sampler`` and ``graph_reserve`` at the scenario's release, the
    scenario's ``sampler`` taking the release's place (a profiled budget only) and no CUDA-graph
    reserve when the scenario runs eagerly (it captures none)."""
    rules = profile.kv_memory(scenario.engine_version)
    rules["graph_reserve"] &= scenario.cuda_graphs
    if scenario.sampler is not None and rules["profiled"]:
        rules["sampler"] = scenario.sampler
    return rules


def build_fleet(scenario: Scenario, rng: np.random.Generator) -> Fleet:
    """``scenario``'s fleet; each instance draws its own generator from ``rng`` (in order)."""
    model = load_model(scenario.model)
    max_model_len = _max_model_len(scenario, model)
    config = scheduler_config(scenario.scheduler)
    groups = _build_groups(scenario, model, config, rng)
    api = api_latency(engine_profile_of(scenario)) if scenario.api_server else None
    return Fleet(scenario, model, max_model_len, config, groups, api)


def scheduler_config(spec: SchedulerSpec) -> SchedulerConfig:
    """The engine's scheduler config for the scenario's scheduler section, knob by knob
    (``gpu_memory_utilization`` and ``kv_cache_tokens`` are the memory plan's, not the
    scheduler's)."""
    return SchedulerConfig(
        policy=spec.policy,
        max_num_batched_tokens=spec.max_num_batched_tokens,
        max_num_seqs=spec.max_num_seqs,
        block_size=spec.block_size,
        enable_prefix_caching=spec.enable_prefix_caching,
        enable_chunked_prefill=spec.enable_chunked_prefill,
        long_prefill_token_threshold=spec.long_prefill_token_threshold,
        admission=spec.admission,
        recv_interval=spec.recv_interval,
        stream_interval=spec.stream_interval,
    )


def host_overlaps(scenario: Scenario, profile: EngineProfile, pp: int | None = None) -> bool:
    """Whether ``profile``'s host work runs beside its GPU steps in ``scenario`` (its release,
    ``async_scheduling``, speculative method and pipeline stages, ``pp``: the scenario's when
    None; see :func:`engines.host_overlap_of`)."""
    spec = scenario.speculative
    return host_overlap_of(
        profile,
        scenario.engine_version,
        scenario.async_scheduling,
        speculative_method=spec.method if spec else None,
        pp=scenario.pp if pp is None else pp,
    )


def api_latency(profile: EngineProfile) -> ApiLatency:
    """The latency an engine's API server adds outside the GPU step."""
    return ApiLatency(
        profile.api_request_s,
        profile.api_per_input_token_s,
        profile.api_stream_s,
        profile.api_before_await_share,
    )


def _max_model_len(scenario: Scenario, model: ModelSpec) -> int:
    """The context window: the scenario's ``max_model_len``, at most the model's.

    NOTE: an error, not a warning, as in vLLM (which refuses a ``max_model_len`` past the
    model's ``max_position_embeddings``): positions the model was not trained for would give
    latencies for requests no server accepts.
    """
    context = model.max_position_embeddings
    if scenario.max_model_len is None:
        return context
    if scenario.max_model_len > context:
        raise ServesimError(
            f"{scenario.max_model_len:,} tokens is longer than the {context:,}-token context "
            f"window of {model.name}",
            field="max_model_len",
            fix="lower it, or leave it out to use the model's",
        )
    return scenario.max_model_len


def _attention_backend(
    scenario: Scenario, profile: EngineProfile, model: ModelSpec, hardware: Hardware
) -> str | None:
    """The attention backend that prices a non-MLA model's attention: the scenario's, else the
    engine's default at its release (None for MLA models: their engines' rules stand apart)."""
    if model.mla is not None:
        return None
    if scenario.attention_backend is not None:
        return scenario.attention_backend
    return attention_backend(
        profile, scenario.engine_version, hardware.architecture, model.architecture
    )


def _flashinfer_cuda_core_group(
    backend: str | None,
    profile: EngineProfile,
    release: str | None,
    model: ModelSpec,
    par: Parallelism,
    kv_dtype: str | None,
) -> int:
    """The GQA group (query heads per KV head on one GPU, KV heads replicated when TP exceeds
    them) FlashInfer decodes on its CUDA-core kernel, or 0 (another backend, or its tensor-core
    kernel: ``engines.flashinfer_decode_cuda_cores``)."""
    if backend != "flashinfer" or model.mla is not None:
        return 0
    heads = max(model.num_attention_heads // par.tp, 1)
    group = max(heads // par.kv_heads_per_gpu(model), 1)
    return group if flashinfer_decode_cuda_cores(profile, release, group, kv_dtype) else 0


def attention_backend_of(scenario: Scenario, model: ModelSpec) -> str | None:
    """The attention backend pricing ``model`` in ``scenario``'s first instance group (see
    :func:`_attention_backend`)."""
    hardware = load_hardware(instance_groups(scenario)[0].hardware)
    return _attention_backend(scenario, engine_profile_of(scenario), model, hardware)


def _cost_params(
    scenario: Scenario, group: InstanceGroup, model: ModelSpec, hardware: Hardware,
    par: Parallelism, profile: EngineProfile | None = None,
) -> CostParams:  # fmt: skip
    """The cost parameters of a group: its dtypes and the engine profile's host and kernel
    terms (``profile``: the engine as it runs this group), or the scenario's calibration fitted
    over them."""
    profile = profile or engine_profile_of(scenario)
    paged_by_kind = (
        group.role == "mixed"
        and not scenario.kv_offload
        and scenario.speculative is None
        and scenario.scheduler.admission == "greedy"
    )
    backend = _attention_backend(scenario, profile, model, hardware)
    params = CostParams(
        weight_dtype=group.weight_dtype,
        kv_dtype=group.kv_dtype,
        cuda_graphs=scenario.cuda_graphs,
        kernel_tables=scenario.kernel_tables,
        host_overlap=host_overlaps(scenario, profile, par.pp),
        moe_backend=profile.moe_backend,
        kernel_backend=profile.kernel_backend,
        engine_version=scenario.engine_version,
        host_step_s=profile.host_step_s,
        host_per_seq_s=profile.host_per_seq_s,
        host_per_token_s=profile.host_per_token_s,
        # Custom all-reduce kernels work through peer memory inside one node only.
        custom_allreduce=profile.custom_allreduce and par.tp <= hardware.gpus_per_node,
        mla_fused_down_proj=mla_fused_down_proj(profile, scenario.engine_version),
        moe_chunk_tokens=moe_chunk_tokens(profile, scenario.engine_version),
        mla_materialized=mla_materialized(profile, scenario.engine_version),
        deepseek_glue_kernels=deepseek_glue_kernels(
            profile, scenario.engine_version, hardware.vendor
        ),
        # (FlashInfer's prefill runs bf16 attention over a dequantised FP8 cache.)
        fp8_attention=backend != "flashinfer"
        and fp8_attention(profile, scenario.engine_version, hardware.architecture),
        attention_backend=backend,
        decode_serial_walk=profile.decode_serial_walk,
        pp_overlap_steps=profile.pipeline_batch_queue,
        flashinfer_cuda_core_group=_flashinfer_cuda_core_group(
            backend, profile, scenario.engine_version, model, par, group.kv_dtype
        ),
        # (SGLang turns the fusion on only without DP attention, on one node, and without an
        # all-to-all MoE backend.)
        allreduce_norm_fusion=par.tp > 1
        and par.dp == 1
        and par.gpus <= hardware.gpus_per_node
        and allreduce_norm_fusion(
            profile,
            scenario.engine_version,
            hardware.architecture,
            hardware.name,
            model.architecture,
        ),  # fmt: skip
        mla_absorb_max_new_tokens=mla_decode_rows(
            profile, scenario.engine_version, hardware.architecture
        ),
        mla_prompt_absorb_below=mla_prompt_absorb(
            profile, scenario.engine_version, hardware.architecture
        ),
        mla_prompt_attention_scale=mla_prompt_attention_scale(
            profile, scenario.engine_version, hardware.architecture
        ),
        # (SGLang's radix cache matches prompts token by token: every prompt's shared first
        # token is a cached prefix.)
        mla_prompt_prefix_floor=1.0 if scenario.scheduler.enable_prefix_caching else 0.0,
        # (vLLM turns its hybrid KV cache manager off with a KV connector: offload,
        # disaggregation; servesim also with speculative decoding and a look-ahead admission.)
        hybrid_kv=(
            hybrid_kv(profile, scenario.engine_version, model.model_type)
            if scenario.scheduler.hybrid_kv_cache is None
            else scenario.scheduler.hybrid_kv_cache
        )
        and paged_by_kind,
        # (servesim's prefix cache keeps every shared page a request took: with prefix caching
        # on, a sliding-window-only model is paged as every token's KV, see README.)
        sliding_kv=(
            sliding_kv(profile, scenario.engine_version)
            if paged_by_kind and not scenario.scheduler.enable_prefix_caching
            else None
        ),
        swa_pool_ratio=swa_pool_ratio(
            profile,
            scenario.engine_version,
            model.model_type,
            hardware.architecture,
            speculative=scenario.speculative is not None,
        )
        if group.role == "mixed" and not scenario.kv_offload
        else None,
    )
    if scenario.calibration is None:
        return params
    # NOTE: a calibration names one GPU and TP; a group it does not fit is an error, not
    # silently uncalibrated. Imported here: the fitting code is heavy to load.
    from servesim.calibrate.calibration import load_calibration

    return load_calibration(scenario.calibration, model, hardware, par.tp, base=params)


COMPILED_MIN_REQUESTS = 50_000
"""``compiled: auto`` prices steps with the compiled kernels from this many requests on: a
smaller run would not earn back compiling them (the first compiled run of an install: ~10-16 s
on a 2-core VM)."""

COMPILED_CACHED_MIN_REQUESTS = 5_000
"""...and from this many where a compiled run already left them in numba's cache
(:func:`servesim.kernel_cache.kernels_cached`): loading them then costs ~0.3 s a process
(numba's import and the cached code), which the engine earns back from ~2,000 requests at
5 req/s, ~4,000 at 20 and ~8,000 at 100 on a 2-core VM (whole `servesim simulate` processes,
best of 3: 6,000 requests at 5 req/s 1.86 -> 1.03 s, at 20 req/s 1.11 -> 0.92 s, at 100 req/s
0.74 -> 0.93 s)."""


def compiled_pricing(scenario: Scenario) -> bool:
    """Whether the instances run the compiled kernels (:mod:`servesim.cost.compiled`,
    ``servesim.engine._commit_kernels``): ``compiled: on`` (an error naming the problem when
    they cannot load); or ``auto``, the workload at least :data:`COMPILED_MIN_REQUESTS`
    requests (a synthetic workload's count, or a trace's ``max_requests``), or at least
    :data:`COMPILED_CACHED_MIN_REQUESTS` where numba's cache holds the kernels, and the
    kernels loadable (else the reference path, silently: it gives the same results)."""
    if scenario.compiled == "off":
        return False
    if scenario.compiled == "auto":
        workload = scenario.workload
        count = workload.num_requests if workload.trace is None else workload.max_requests
        if count is None or count < COMPILED_CACHED_MIN_REQUESTS or not numba_available():
            return False
        if count < COMPILED_MIN_REQUESTS and not kernels_cached():
            return False
    problem = _compiled_kernels_problem()
    if problem is not None and scenario.compiled == "on":
        raise ServesimError(
            f"the compiled kernels cannot load: {problem}",
            field="compiled",
            fix="reinstall numba for this numpy (pip install -U 'servesim[fast]'), or use "
            "compiled: off",
        )
    return problem is None


@functools.cache
def _compiled_kernels_problem() -> str | None:
    """Why numba's kernels cannot be imported (numba missing or broken: it pins the numpy
    releases it supports; no writable cache), or None when they can."""
    try:
        import servesim.cost._compiled_kernels  # noqa: F401
        import servesim.engine._commit_kernels  # noqa: F401
    except Exception as err:  # (ImportError, numba's errors at decoration: any means "no")
        return f"{type(err).__name__}: {err}".splitlines()[0]
    return None


def _build_groups(
    scenario: Scenario, model: ModelSpec, config: SchedulerConfig, rng: np.random.Generator
) -> list[InstanceGroupRuntime]:
    sched = scenario.scheduler
    base_profile = engine_profile_of(scenario)
    steps_per_round = scheduler_steps(scenario)
    if sched.stream_interval > 1 and (scenario.speculative or steps_per_round > 1):
        raise ServesimError(
            f"is {sched.stream_interval} with "
            + ("speculative decoding" if scenario.speculative else "multi-step rounds"),
            field="scheduler.stream_interval",
            fix="stream every token (1) with speculative decoding or num_scheduler_steps > 1",
        )
    runtimes: list[InstanceGroupRuntime] = []
    next_id = 0
    compiled = compiled_pricing(scenario)
    for group in instance_groups(scenario):
        hardware = load_hardware(group.hardware or scenario.hardware)
        par = parallelism_of(group)
        # (its graph sizes on this GPU; with attention DP, per rank, and its host)
        profile = base_profile.for_gpu(
            hardware.hbm_bytes, par.tp * par.dp, par.dp, scenario.engine_version
        )
        # (and as its scheduler limits size them)
        profile = profile.for_batch(
            scenario.engine_version, config.max_num_seqs, config.max_num_batched_tokens
        )
        graph_batch = (
            profile.graph_batch if scenario.cuda_graphs and profile.cuda_graph_sizes else None
        )
        graphed = profile.graphed
        group_config = config
        if par.dp > 1:
            graph_batch, graphed = _per_rank_graphs(graph_batch, graphed, par.dp)
            group_config = _attention_dp_config(config, profile, par.dp)
        params = _cost_params(scenario, group, model, hardware, par, profile)
        memory = plan_memory(
            model, hardware, par, params,
            gpu_memory_utilization=sched.gpu_memory_utilization,
            block_size=config.block_size,
            max_num_batched_tokens=group_config.max_num_batched_tokens,
            max_num_seqs=group_config.max_num_seqs,
            kv_cache_tokens=sched.kv_cache_tokens,
            **memory_rules(scenario, profile),
        )  # fmt: skip
        cost = build_step_cost(model, hardware, par, params)
        # Steps no CUDA graph covers (prompts under vLLM V0 / SGLang, big batches) run eagerly.
        eager_cost = None
        if scenario.cuda_graphs and profile.graph_max_tokens is not None:
            eager_params = dataclasses.replace(params, cuda_graphs=False)
            eager_cost = build_step_cost(model, hardware, par, eager_params)
        # (The group's runtime keeps the model itself: accounting reads it.)
        engine_cost, engine_eager_cost = cost, eager_cost
        span_planners: tuple[SpanPlanner | None, SpanPlanner | None] = (None, None)
        if compiled:
            engine_cost = compiled_step_cost(cost) or cost
            if eager_cost is not None:
                engine_eager_cost = compiled_step_cost(eager_cost) or eager_cost
            from servesim.fused_kernels import span_planner  # (numba: only when compiled)

            span_planners = (span_planner(engine_cost), span_planner(engine_eager_cost))
        speculation = None
        if scenario.speculative is not None and group.role != "prefill":
            built = build_speculation(scenario.speculative, model, hardware, par, params)
            if built is not None:
                speculation, drafter = built
                memory = _with_drafter(memory, drafter, config.block_size)
        cpu_blocks, load_s = _offload_tier(scenario, hardware, memory, par, config.block_size)
        instances = []
        for _ in range(group.count):
            kv = KVBlockManager(
                memory.num_kv_blocks, config.block_size, config.enable_prefix_caching, cpu_blocks,
                sliding_groups=memory.kv_groups - memory.kv_full_groups,
                window_blocks=memory.kv_window_blocks,
                window_tokens=memory.kv_step_window_tokens,
                full_groups=memory.kv_full_groups,
                watermark_blocks=int(profile.admission_watermark * memory.num_kv_blocks),
                admit_whole_prompt=profile.admission_counts_hits,
            )  # fmt: skip
            label = f"{group.role} {hardware.name} TP{par.tp}" + (
                f" PP{par.pp}" if par.pp > 1 else ""
            )
            instances.append(
                Instance(
                    next_id,
                    group_config,
                    kv,
                    engine_cost,
                    fast_forward=scenario.fast_forward,
                    role=group.role,
                    speculation=speculation,
                    rng=rng.spawn(1)[0],
                    label=label,
                    kv_load_seconds_per_block=load_s,
                    num_scheduler_steps=steps_per_round,
                    graph_batch=graph_batch,
                    eager_cost=engine_eager_cost,
                    graphed=graphed if eager_cost is not None else None,
                    graph_max_seq_len=profile.graph_max_seq_len,
                    admission_conservativeness=(
                        profile.attention_dp.conservativeness if par.dp > 1 else 1.0
                    ),
                    # (Under PP the next micro-batch, not the next whole step, is what a
                    # request waits for: the pipeline model keeps admission at the boundary.)
                    schedule_ahead=(
                        profile.schedules_ahead
                        and params.cuda_graphs
                        and params.host_overlap
                        and par.pp == 1
                    ),
                    compiled=compiled,
                    span_planners=span_planners,
                )  # fmt: skip
            )
            next_id += 1
        runtimes.append(InstanceGroupRuntime(group, hardware, par, params, memory, cost, instances))
    roles = {g.group.role for g in runtimes}
    if roles not in ({"mixed"}, {"prefill", "decode"}):
        raise ServesimError(
            f"instance roles {sorted(roles)} do not make a deployment",
            field="instances",
            fix="use only mixed instances, or prefill and decode instances together",
        )
    return runtimes


def _attention_dp_config(
    config: SchedulerConfig, profile: EngineProfile, dp: int
) -> SchedulerConfig:
    """The instance's scheduler knobs with ``dp`` attention data-parallel ranks, as the engine
    runs them (``EngineProfile.attention_dp``): each rank schedules prompts within its share of
    the token budget (one prompt's chunk fills one rank, the step's chunks spread over the
    ranks), so a step holds ``dp`` shares; an engine per rank runs ``max_num_seqs`` on each."""
    rules = profile.attention_dp
    share = rules.rank_budget(config.max_num_batched_tokens, dp)
    threshold = config.long_prefill_token_threshold
    return dataclasses.replace(
        config,
        max_num_batched_tokens=share * dp,
        max_num_seqs=config.max_num_seqs * dp if rules.seqs_per_rank else config.max_num_seqs,
        long_prefill_token_threshold=share if threshold is None else min(threshold, share),
    )


def _per_rank_graphs(
    graph_batch: Callable[[int], int] | None,
    graphed: Callable[[bool, int, int], bool],
    dp: int,
) -> tuple[Callable[[int], int] | None, Callable[[bool, int, int], bool]]:
    """CUDA-graph rules of an engine applied per attention-DP rank: each of the ``dp`` ranks
    runs its share of the batch (at most ``ceil(B / dp)`` sequences) under the graph captured
    for that size, and every rank pads to it (the ranks step together)."""

    def per_rank(n: int) -> int:
        return -(-n // dp)

    def rank_graph_batch(batch: int) -> int:
        assert graph_batch is not None
        return graph_batch(per_rank(batch)) * dp

    def rank_graphed(decode_only: bool, tokens: int, batch: int) -> bool:
        return graphed(decode_only, per_rank(tokens), per_rank(batch))

    return (rank_graph_batch if graph_batch is not None else None), rank_graphed


def parallelism_of(group: InstanceGroup) -> Parallelism:
    """The cost model's Parallelism for a group: ``dp`` attention data-parallel ranks, or,
    with ``dp`` 1, ``ep`` beyond ``tp`` meaning ``ep / tp`` such ranks (wide expert
    parallelism, as vLLM's DP+EP)."""
    if group.dp > 1:
        return Parallelism(tp=group.tp, pp=group.pp, ep=group.ep, dp=group.dp)
    if group.ep > group.tp:
        if group.ep % group.tp:
            raise ServesimError(
                f"ep={group.ep} is not a multiple of tp={group.tp}",
                field="ep",
                fix="use an ep dividing tp, or a multiple of it (ep = tp × data-parallel ranks)",
            )
        return Parallelism(tp=group.tp, pp=group.pp, ep=group.ep, dp=group.ep // group.tp)
    return Parallelism(tp=group.tp, pp=group.pp, ep=group.ep)


def build_speculation(
    spec: SpeculativeSpec, target: ModelSpec, hardware: Hardware, par: Parallelism,
    params: CostParams,
) -> tuple[Speculation, DraftCost] | None:  # fmt: skip
    """The engine's :class:`Speculation` for ``spec`` on one instance and the drafter's cost
    (its memory comes out of the KV budget); None for ``baseline``."""
    method = spec.method
    mode = spec.mode or ("cpu_verify" if method == "ngram" else "self_verify")
    if mode == "baseline":
        return None
    k = spec.num_speculative_tokens
    acceptance = spec.acceptance_per_position or (spec.acceptance_rate,) * k
    if len(acceptance) != k:
        raise ServesimError(
            f"{len(acceptance)} probabilities for {k} speculative tokens",
            field="speculative.acceptance_per_position",
            fix="give one probability per position",
        )
    if method.startswith("draft:"):
        drafter = draft_cost("draft", target, hardware, par, params,
                             draft_model=load_model(method.removeprefix("draft:")))  # fmt: skip
    elif method in ("eagle", "ngram"):
        drafter = draft_cost(method, target, hardware, par, params)
    else:
        raise ServesimError(
            f"unknown speculative method {method!r}",
            field="speculative.method",
            fix="use draft:MODEL, ngram or eagle",
        )
    speculation = Speculation(
        k,
        tuple(acceptance),
        drafter.propose_seconds,
        overlap=mode == "cpu_verify",
        prefill_seconds=None if drafter.on_host else drafter.prefill_seconds,
    )
    return speculation, drafter


def _with_drafter(memory: MemoryPlan, drafter: DraftCost, block_size: int) -> MemoryPlan:
    """The KV budget left once a drafter's weights are loaded and its KV cache grows beside
    the target's (a draft model caches every token too)."""
    extra_kv = drafter.kv_bytes_per_token
    if memory.kv_pinned or (drafter.weights_bytes_per_gpu == 0 and extra_kv == 0):
        # (A pinned size is the engine's logged one, which already counts the drafter's KV.)
        return memory
    cache = memory.kv_cache_bytes - drafter.weights_bytes_per_gpu
    per_block = block_size * (memory.kv_bytes_per_token + extra_kv)
    blocks = int(cache // per_block)
    if blocks < 1:
        raise ServesimError(
            "the draft model leaves no room for the KV cache",
            field="speculative.method",
            fix="use a smaller draft model, eagle or ngram, or more GPUs",
        )
    return dataclasses.replace(
        memory, kv_cache_bytes=cache, num_kv_blocks=blocks, kv_capacity_tokens=blocks * block_size
    )


def _offload_tier(
    scenario: Scenario, hardware: Hardware, memory: MemoryPlan, par: Parallelism, block_size: int
) -> tuple[int, float]:
    """(CPU-tier blocks, seconds to load one block back) for KV offload; (0, 0) when off.

    Each GPU keeps its shard of a block in host memory and loads it over its own host link
    (``Hardware.host_link``: the spec's, else ``hardware.DEFAULT_HOST_LINK``), so a block comes
    back in the time one shard takes.
    """
    if not scenario.kv_offload:
        return 0, 0.0
    shard = block_size * memory.kv_bytes_per_token
    blocks = int(scenario.cpu_kv_cache_gib * 2**30 // (shard * par.gpus))
    link = hardware.host_link
    if scenario.kv_offload_gbps is not None:
        link = Link("offload tier", scenario.kv_offload_gbps * 1e9, link.latency_s)
    # Per block, without the per-transfer latency (loads of one step travel together).
    seconds = kv_transfer_seconds(block_size, memory.kv_bytes_per_token, link)
    return blocks, float(seconds) - link.latency_s


def kv_transfer(fleet: Fleet) -> Callable[[Request, Instance, Instance], float]:
    """Seconds to move a request's prompt KV from a prefill to a decode instance."""
    group_of = {i.instance_id: g for g in fleet.groups for i in g.instances}
    model, on_network = fleet.model, fleet.scenario.kv_transfer_link == "inter_node"

    def seconds(req: Request, source: Instance, target: Instance) -> float:
        src, dst = group_of[source.instance_id], group_of[target.instance_id]
        kv_bytes = dtype_bytes(src.cost.resolved.kv_dtype)
        per_token = model.num_layers * model.kv_elements_per_token_per_layer * kv_bytes
        link = src.hardware.inter_node if on_network else src.hardware.intra_node
        # Each GPU of the smaller side moves its shard over its own link, in parallel.
        lanes = min(src.gpus_per_instance, dst.gpus_per_instance)
        return float(kv_transfer_seconds(req.prompt_tokens, per_token, link, lanes=lanes))

    return seconds
