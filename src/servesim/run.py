"""``simulate(scenario) -> Result``: the Python API the CLI is a thin layer over.

Builds the model, hardware, cost model, KV caches, instances, router and workload from a
:class:`~servesim.scenario.Scenario`, runs the event loop, and summarises the records.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
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
from servesim.cost.dtypes import dtype_bytes, tensor_core_peak
from servesim.cost.memory import kv_transfer_seconds
from servesim.engine.concurrency import CappedSimulation
from servesim.engine.instance import Instance
from servesim.engine.kv_cache import KVBlockManager
from servesim.engine.loop import ApiLatency, Handoff, Simulation, StepObserver
from servesim.engine.records import RunRecords
from servesim.engine.request import Request
from servesim.engine.router import make_router
from servesim.engine.scheduler import SchedulerConfig
from servesim.engines import EngineProfile
from servesim.errors import ServesimError
from servesim.hardware import Hardware, Link, load_hardware
from servesim.metrics import SLO, summarize
from servesim.model import ModelSpec, load_model
from servesim.scenario import (
    InstanceGroup,
    Scenario,
    engine_profile_of,
    instance_groups,
    scheduler_steps,
)
from servesim.speculative import build_speculation
from servesim.validation import replace, to_data
from servesim.workload import Session, build_workload, describe


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
class Result:
    """A finished run: the scenario, its summary metrics and the raw records."""

    scenario: Scenario
    summary: dict[str, Any]
    records: RunRecords
    model: ModelSpec
    hardware: Hardware
    """The first group's hardware (the only one unless the fleet is heterogeneous)."""
    memory: MemoryPlan
    """The first group's memory plan."""
    workload_description: str
    step_extra: dict[str, np.ndarray]
    """Per step record, derived from the cost model: ``flops``, ``hbm_bytes`` (per GPU) and
    ``t_<group>`` predicted seconds per operator group (summing to the step's duration)."""
    groups: list[InstanceGroupRuntime]


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


def _oversized_check(
    scenario: Scenario, max_model_len: int, kv_tokens: int
) -> Callable[[Request], str | None]:
    """Why a request can never be served here (None if it can)."""

    def check(req: Request) -> str | None:
        total = req.prompt_tokens + req.max_output_tokens
        if total > max_model_len:
            reason = "longer_than_context"
            detail = f"the model's context window is {max_model_len} tokens"
        elif req.max_tokens > kv_tokens:
            reason = "larger_than_kv_cache"
            detail = f"the whole KV cache holds {kv_tokens} tokens"
        else:
            return None
        if scenario.on_oversized == "error":
            raise ServesimError(
                f"request {req.request_id} needs {req.prompt_tokens} + {req.max_output_tokens} "
                f"tokens but {detail}",
                field="workload",
                fix="pass --on-oversized skip to skip such requests, or shorten them",
            )
        return reason

    return check


def _build_groups(
    scenario: Scenario, model: ModelSpec, config: SchedulerConfig, rng: np.random.Generator
) -> list[InstanceGroupRuntime]:
    sched = scenario.scheduler
    profile = engine_profile_of(scenario)
    steps_per_round = scheduler_steps(scenario)
    graph_batch = profile.graph_batch if scenario.cuda_graphs and profile.cuda_graph_sizes else None
    runtimes: list[InstanceGroupRuntime] = []
    next_id = 0
    for group in instance_groups(scenario):
        hardware = load_hardware(group.hardware or scenario.hardware)
        par = parallelism_of(group)
        params = CostParams(
            weight_dtype=group.weight_dtype,
            kv_dtype=group.kv_dtype,
            cuda_graphs=scenario.cuda_graphs,
            kernel_tables=scenario.kernel_tables,
            host_overlap=profile.host_overlap,
            moe_backend=profile.moe_backend,
            kernel_backend=profile.kernel_backend,
            host_step_s=profile.host_step_s,
            host_per_seq_s=profile.host_per_seq_s,
            host_per_token_s=profile.host_per_token_s,
            # Custom all-reduce kernels work through peer memory inside one node only.
            custom_allreduce=profile.custom_allreduce and par.tp <= hardware.gpus_per_node,
        )
        if scenario.calibration is not None:
            # NOTE: a calibration names one GPU and TP; a group it does not fit is an error,
            # not silently uncalibrated. Imported here: the fitting code is heavy to load.
            from servesim.calibrate import load_calibration

            params = load_calibration(scenario.calibration, model, hardware, par.tp, base=params)
        memory = plan_memory(
            model, hardware, par, params,
            gpu_memory_utilization=sched.gpu_memory_utilization,
            block_size=sched.block_size,
            max_num_batched_tokens=sched.max_num_batched_tokens,
            max_num_seqs=sched.max_num_seqs,
        )  # fmt: skip
        cost = build_step_cost(model, hardware, par, params)
        # Steps no CUDA graph covers (prompts under vLLM V0 / SGLang, big batches) run eagerly.
        eager_cost = None
        if scenario.cuda_graphs and profile.graph_max_tokens is not None:
            eager_params = dataclasses.replace(params, cuda_graphs=False)
            eager_cost = build_step_cost(model, hardware, par, eager_params)
        speculation = None
        if scenario.speculative is not None and group.role != "prefill":
            built = build_speculation(scenario.speculative, model, hardware, par, params)
            if built is not None:
                speculation, drafter = built
                memory = _with_drafter(memory, drafter, sched.block_size)
        cpu_blocks, load_s = _offload_tier(scenario, hardware, memory, par)
        instances = []
        for _ in range(group.count):
            kv = KVBlockManager(
                memory.num_kv_blocks, sched.block_size, sched.enable_prefix_caching, cpu_blocks
            )
            label = f"{group.role} {hardware.name} TP{par.tp}" + (
                f" PP{par.pp}" if par.pp > 1 else ""
            )
            instances.append(
                Instance(
                    next_id,
                    config,
                    kv,
                    cost,
                    fast_forward=scenario.fast_forward,
                    role=group.role,
                    speculation=speculation,
                    rng=rng.spawn(1)[0],
                    label=label,
                    kv_load_seconds_per_block=load_s,
                    num_scheduler_steps=steps_per_round,
                    graph_batch=graph_batch,
                    eager_cost=eager_cost,
                    graphed=profile.graphed if eager_cost is not None else None,
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


def _with_drafter(memory: MemoryPlan, drafter, block_size: int) -> MemoryPlan:
    """The KV budget left once a drafter's weights are loaded and its KV cache grows beside
    the target's (a draft model caches every token too)."""
    extra_kv = drafter.kv_bytes_per_token
    if drafter.weights_bytes_per_gpu == 0 and extra_kv == 0:
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


DEFAULT_HOST_LINK = Link("PCIe Gen5 x16 (default)", 50e9, 10e-6)
"""Used when a hardware spec names no host link: ~50 GB/s achievable per direction."""


def _offload_tier(
    scenario: Scenario, hardware: Hardware, memory: MemoryPlan, par: Parallelism
) -> tuple[int, float]:
    """(CPU-tier blocks, seconds to load one block back) for KV offload; (0, 0) when off.

    Each GPU keeps its shard of a block in host memory and loads it over its own host link,
    so a block comes back in the time one shard takes.
    """
    if not scenario.kv_offload:
        return 0, 0.0
    bs = scenario.scheduler.block_size
    shard = bs * memory.kv_bytes_per_token
    blocks = int(scenario.cpu_kv_cache_gib * 2**30 // (shard * par.gpus))
    link = getattr(hardware, "host_link", None) or DEFAULT_HOST_LINK
    if scenario.kv_offload_gbps is not None:
        link = Link("offload tier", scenario.kv_offload_gbps * 1e9, link.latency_s)
    # Per block, without the per-transfer latency (loads of one step travel together).
    return blocks, float(kv_transfer_seconds(bs, memory.kv_bytes_per_token, link)) - link.latency_s


def parallelism_of(group: InstanceGroup) -> Parallelism:
    """The cost model's Parallelism for a group: ``ep`` beyond ``tp`` means attention
    data-parallel ranks inside the replica (wide expert parallelism, as vLLM's DP+EP)."""
    if group.ep > group.tp:
        if group.ep % group.tp:
            raise ServesimError(
                f"ep={group.ep} is not a multiple of tp={group.tp}",
                field="ep",
                fix="use an ep dividing tp, or a multiple of it (ep = tp × data-parallel ranks)",
            )
        return Parallelism(tp=group.tp, pp=group.pp, ep=group.ep, dp=group.ep // group.tp)
    return Parallelism(tp=group.tp, pp=group.pp, ep=group.ep)


def _kv_transfer(scenario: Scenario, model: ModelSpec, runtimes: list[InstanceGroupRuntime]):
    """Seconds to move a request's prompt KV from a prefill to a decode instance."""
    group_of = {i.instance_id: g for g in runtimes for i in g.instances}

    def seconds(req: Request, source: Instance, target: Instance) -> float:
        src, dst = group_of[source.instance_id], group_of[target.instance_id]
        kv_bytes = dtype_bytes(src.cost.resolved.kv_dtype)
        per_token = model.num_layers * model.kv_elements_per_token_per_layer * kv_bytes
        hw = src.hardware
        link = hw.inter_node if scenario.kv_transfer_link == "inter_node" else hw.intra_node
        # Each GPU of the smaller side moves its shard over its own link, in parallel.
        lanes = min(src.gpus_per_instance, dst.gpus_per_instance)
        return float(kv_transfer_seconds(req.prompt_tokens, per_token, link, lanes=lanes))

    return seconds


@dataclass
class Prepared:
    """A fleet built from a scenario and its event loop, ready to run (offline or online)."""

    scenario: Scenario
    model: ModelSpec
    max_model_len: int
    kv_tokens: int
    """Tokens the smallest instance's KV cache holds."""
    runtimes: list[InstanceGroupRuntime]
    sim: Simulation
    api: ApiLatency | None


def prepare(
    scenario: Scenario,
    on_progress: Callable[[int], None] | None = None,
    sessions: Iterator[Session] | None = None,
    on_step: StepObserver | None = None,
) -> Prepared:
    """Build ``scenario``'s fleet and event loop. ``sessions`` replaces the scenario's workload
    (online serving passes none and submits requests as clients send them)."""
    model = load_model(scenario.model)
    max_model_len = _max_model_len(scenario, model)
    sched = scenario.scheduler
    # The engine's config is the scenario's scheduler section minus the memory knob.
    knobs = to_data(sched)
    del knobs["gpu_memory_utilization"]
    config = SchedulerConfig(**knobs)
    workload_rng, router_rng, engine_rng = np.random.default_rng(scenario.seed).spawn(3)
    runtimes = _build_groups(scenario, model, config, engine_rng)
    entry = [i for g in runtimes for i in g.instances if i.role != "decode"]
    decode = [i for g in runtimes for i in g.instances if i.role == "decode"]
    handoff = None
    if decode:
        handoff = Handoff(
            decode, make_router("least_outstanding", router_rng),
            _kv_transfer(scenario, model, runtimes),
        )  # fmt: skip
    if sessions is None:
        sessions = build_workload(scenario.workload, workload_rng)
    kv_tokens = min(g.memory.num_kv_blocks for g in runtimes) * sched.block_size
    profile = engine_profile_of(scenario)
    api = api_latency(profile) if scenario.api_server else None
    cap = scenario.workload.max_concurrency
    simulation = Simulation if cap is None else partial(CappedSimulation, max_concurrency=cap)
    sim = simulation(
        entry,
        make_router(scenario.router, router_rng),
        sessions,
        RunRecords(),
        admission_check=_oversized_check(scenario, max_model_len, kv_tokens),
        on_progress=on_progress,
        handoff=handoff,
        api=api,
        on_step=on_step,
    )
    return Prepared(scenario, model, max_model_len, kv_tokens, runtimes, sim, api)


def simulate(scenario: Scenario, on_progress: Callable[[int], None] | None = None) -> Result:
    """Run ``scenario`` to completion. Same scenario (seed included) → identical results."""
    run = prepare(scenario, on_progress)
    started = time.perf_counter()
    run.sim.run()
    return summarize_run(run, time.perf_counter() - started)


def summarize_run(run: Prepared, wall: float, compare_speculation: bool = True) -> Result:
    """The :class:`Result` of a finished (or stopped) run, ``wall`` seconds of it simulating.

    ``compare_speculation``: with speculative decoding, also simulate the scenario without it
    (offline only: a served run's workload is whatever the clients sent)."""
    scenario, records, runtimes, api = run.scenario, run.sim.records, run.runtimes, run.api
    model, max_model_len, sim = run.model, run.max_model_len, run.sim
    profile = engine_profile_of(scenario)

    requests = records.request_columns()
    if len(requests["request_id"]) == 0:
        raise ServesimError(
            f"no request could be served ({records.num_skipped} skipped: "
            f"{records.skipped_reasons})",
            field="workload",
            fix="shorten the requests, "
            + ("raise --max-model-len, " if max_model_len < model.max_position_embeddings else "")
            + "or use more GPUs",
        )
    slo = SLO(scenario.slo.ttft_ms, scenario.slo.tpot_ms, scenario.slo.e2el_ms)
    summary: dict[str, Any] = summarize(requests, *records.itl_pairs(), slo=slo)
    steps = records.step_columns()
    summary.update(
        {
            "num_skipped": records.num_skipped,
            "num_steps": int(steps["num_steps"].sum()),
            "num_step_records": len(steps["num_steps"]),
            "num_preemptions": int(requests["preemptions"].sum()),
            "prefix_cache_hit_rate": float(
                requests["cached_tokens"].sum() / max(1, requests["input_tokens"].sum())
            ),
            "kv_cache_peak_usage": float(steps["kv_usage"].max())
            if len(steps["kv_usage"])
            else 0.0,
            "num_gpus": sum(g.gpus_per_instance * len(g.instances) for g in runtimes),
            "num_events": sim.num_events,
            "sim_wall_s": wall,
        }
    )
    summary.update(_api_summary(api, requests, summary))
    summary["engine"] = profile.name
    step_extra, utilisation = _step_work(runtimes, records, steps, summary["duration"])
    summary.update(utilisation)
    summary["energy_per_request_j"] = summary["energy_j"] / summary["completed"]
    tokens_out = max(1, summary["total_output_tokens"])
    summary["energy_per_output_token_j"] = summary["energy_j"] / tokens_out
    summary["per_instance"] = _per_instance(runtimes, requests, steps, summary["duration"])
    loaded = sum(i.kv.num_loaded_blocks for g in runtimes for i in g.instances)
    spilled = sum(i.kv.num_spilled_blocks for g in runtimes for i in g.instances)
    if scenario.kv_offload:
        summary["kv_offload_spilled_blocks"] = spilled
        summary["kv_offload_loaded_blocks"] = loaded
    if records.num_kv_transfers:
        summary["num_kv_transfers"] = records.num_kv_transfers
        summary["mean_kv_transfer_ms"] = (
            1000 * records.kv_transfer_seconds / records.num_kv_transfers
        )
    if scenario.speculative is not None and compare_speculation:
        summary.update(_speculation_summary(scenario, steps, summary))
    if records.skipped_reasons:
        summary["skipped_reasons"] = dict(records.skipped_reasons)
    if scenario.calibration is not None:
        from servesim.calibrate import extrapolation_warning

        warning = extrapolation_warning(scenario.calibration, steps)
        if warning:
            summary["calibration_warning"] = warning
    return Result(
        scenario=scenario,
        summary=summary,
        records=records,
        model=model,
        hardware=runtimes[0].hardware,
        memory=runtimes[0].memory,
        workload_description=describe(scenario.workload),
        step_extra=step_extra,
        groups=runtimes,
    )


def api_latency(profile: EngineProfile) -> ApiLatency:
    """The latency an engine's API server adds outside the GPU step."""
    return ApiLatency(profile.api_request_s, profile.api_per_input_token_s, profile.api_stream_s)


def _api_summary(api: ApiLatency | None, requests, summary) -> dict[str, float]:
    """Where TTFT goes outside the engine: the API server's mean share, ms and fraction."""
    if api is None:
        return {"mean_api_ttft_ms": 0.0, "api_ttft_fraction": 0.0}
    before = api.request_s + api.per_input_token_s * requests["input_tokens"].astype(float)
    per_request = 1000.0 * (before + api.stream_s)
    mean = float(per_request.mean())
    ttft = summary["mean_ttft_ms"]
    return {"mean_api_ttft_ms": mean, "api_ttft_fraction": mean / ttft if ttft > 0 else 0.0}


def _group_seconds(cost: StepCostModel, features: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group seconds of many step records."""
    return _chunked(cost.group_seconds_from_features, features)


def _chunked(per_rows, features: np.ndarray) -> dict[str, np.ndarray]:
    """``per_rows(features)`` (a dict of per-row arrays) in chunks of rows (the per-operator
    intermediate is ~40 floats a record: a million records at once would need gigabytes)."""
    chunk = 65536
    parts = [per_rows(features[i : i + chunk])
             for i in range(0, max(len(features), 1), chunk)]  # fmt: skip
    return {g: np.concatenate([p[g] for p in parts]) for g in parts[0]}


def _shares(seconds: dict[str, float]) -> dict[str, float]:
    """Each rung's share of the run's operator time (they sum to 1)."""
    total = sum(seconds.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in seconds.items()}


def _best_rung(seconds: dict[str, float], base: str) -> str:
    """The rung most of the operator time stands on (``base`` when nothing ran)."""
    if not seconds or sum(seconds.values()) <= 0:
        return base
    return max(seconds, key=lambda k: seconds[k])


def _per_instance(runtimes, requests, steps, duration) -> list[dict[str, Any]]:
    """A few headline numbers per instance (requests finish on decode/mixed instances)."""
    out = []
    for g in runtimes:
        for inst in g.instances:
            mine = requests["instance"] == inst.instance_id
            its_steps = steps["instance"] == inst.instance_id
            ttft = (requests["first_token_s"] - requests["arrival_s"])[mine]
            out.append(
                {
                    "instance": inst.instance_id,
                    "label": inst.label,
                    "role": inst.role,
                    "hardware": g.hardware.name,
                    "tp": g.parallelism.tp,
                    "pp": g.parallelism.pp,
                    "completed": int(mine.sum()),
                    "output_throughput": (
                        float(requests["output_tokens"][mine].sum()) / duration if duration else 0.0
                    ),
                    "mean_ttft_ms": float(ttft.mean() * 1000) if len(ttft) else float("nan"),
                    "num_steps": int(steps["num_steps"][its_steps].sum()),
                    "busy_fraction": (
                        float(steps["duration_s"][its_steps].sum()) / duration if duration else 0.0
                    ),
                    "kv_cache_peak_usage": (
                        float(steps["kv_usage"][its_steps].max()) if its_steps.any() else 0.0
                    ),
                }
            )
    return out


def _speculation_summary(scenario: Scenario, steps, summary) -> dict[str, Any]:
    """Acceptance, tokens per verification, and the speed-up against the same run without it."""
    proposed = int(steps["spec_proposed"].sum())
    accepted = int(steps["spec_accepted"].sum())
    rows = int(steps["spec_rows"].sum())
    out: dict[str, Any] = {
        "spec_acceptance_rate": accepted / proposed if proposed else float("nan"),
        "spec_mean_accepted_tokens": accepted / rows if rows else float("nan"),
        "spec_tokens_per_verify_step": (accepted + rows) / rows if rows else float("nan"),
    }
    if not scenario.speculative or scenario.speculative.mode == "baseline":
        return out
    baseline = simulate(replace(scenario, speculative=None)).summary
    out["baseline_mean_tpot_ms"] = baseline["mean_tpot_ms"]
    out["baseline_output_throughput"] = baseline["output_throughput"]
    out["spec_speedup_tpot"] = baseline["mean_tpot_ms"] / summary["mean_tpot_ms"]
    out["spec_speedup_e2el"] = baseline["mean_e2el_ms"] / summary["mean_e2el_ms"]
    return out


def _step_work(
    runtimes: list[InstanceGroupRuntime],
    records: RunRecords,
    steps: dict[str, np.ndarray],
    duration: float,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-step FLOPs, bytes and group times from the recorded features; run MFU and MBU.

    MFU = FLOPs executed ÷ (duration × dense peak FLOP/s of the compute dtype), over all GPUs
    of the fleet; MBU the same with HBM bytes and bandwidth. Both count the whole run
    duration, idle gaps included, as a fleet operator would.
    """
    features = records.step_features()
    n = len(steps["instance"])
    extra: dict[str, np.ndarray] = {"flops": np.zeros(n), "hbm_bytes": np.zeros(n)}
    total_flops = total_bytes = peak_flops = peak_bytes = energy = 0.0
    host_bound_total = busy_total = 0.0
    rung_total: dict[str, float] = {}
    extrapolated = 0
    for g in runtimes:
        ids = [i.instance_id for i in g.instances]
        rows = np.isin(steps["instance"], ids)
        flops, hbm = g.cost.work_from_features(features[rows])
        extra["flops"][rows] = flops
        extra["hbm_bytes"][rows] = hbm
        groups = _group_seconds(g.cost, features[rows])
        total = sum(groups.values())
        # NOTE: exact for single steps; a span's groups are rescaled to its exact duration.
        dur = steps["duration_s"][rows]
        scale = np.divide(dur, total, out=np.zeros_like(total), where=total > 0)
        for name, secs in groups.items():
            extra.setdefault(f"t_{name}", np.zeros(n))[rows] = secs * scale
        gpus = g.gpus_per_instance
        # NOTE: work_from_features is one TP rank's work summed over the pipeline stages, so a
        # replica's work is that times tp·dp (not pp: stages split the layers).
        ranks = g.parallelism.tp * g.parallelism.dp
        res = g.cost.resolved
        peak = tensor_core_peak(g.hardware.peak_flops, res.weight_dtype, res.act_dtype)
        total_flops += float(flops.sum()) * ranks
        total_bytes += float(hbm.sum()) * ranks
        peak_flops += peak * gpus * len(ids)
        peak_bytes += g.hardware.hbm_bandwidth * gpus * len(ids)
        # Energy: each step at its modelled power, idle gaps at idle power, on every GPU.
        power = g.cost.power_from_features(features[rows], dur)
        extra.setdefault("power_w", np.zeros(n))[rows] = power
        busy = float(dur.sum())
        energy += float((power * dur).sum()) * gpus
        energy += g.hardware.idle_w * gpus * max(0.0, duration * len(ids) - busy)
        host_bound = g.cost.host_bound_seconds_from_features(features[rows])
        extra.setdefault("t_host_bound", np.zeros(n))[rows] = host_bound
        host_bound_total += float(host_bound.sum())
        busy_total += busy
        for name, secs in _chunked(g.cost.rung_seconds_from_features, features[rows]).items():
            rung_total[name] = rung_total.get(name, 0.0) + float(secs.sum())
        extrapolated += int(g.cost.extrapolated_from_features(features[rows]).sum())
    util = {
        "mfu": total_flops / (duration * peak_flops) if duration > 0 else float("nan"),
        "mbu": total_bytes / (duration * peak_bytes) if duration > 0 else float("nan"),
        "fidelity": _best_rung(rung_total, runtimes[0].cost.params.fidelity),
        "fidelity_shares": _shares(rung_total),
        "kernel_source": runtimes[0].cost.kernel_source,
        "kernel_extrapolated_steps": extrapolated,
        "energy_j": energy,
        "avg_power_w": energy / duration if duration > 0 else float("nan"),
        "host_bound_fraction": host_bound_total / busy_total if busy_total > 0 else 0.0,
    }
    return extra, util
