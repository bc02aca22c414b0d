"""Named engine profiles: how vLLM, SGLang, TensorRT-LLM, LMDeploy... run the same model.

The same model on the same GPU runs at different speeds under different serving engines, and
most of the difference is not in the kernels but around them: how the scheduler forms batches,
whether the host's work (scheduling, input preparation, sampling, output processing) runs
beside the GPU step or between steps, how many decode steps one scheduling round runs, which
batch sizes CUDA graphs were captured for, and what the API server costs a request before the
scheduler sees it and after a token leaves the GPU. A profile fixes those; the cost model's
GPU roofline is shared.

A profile sets *defaults*: an explicit scenario field or flag always wins (see
:func:`scheduler_defaults`). Every coefficient names where it comes from in ``sources``;
"estimate" means no public measurement pins it (the fidelity suite, ``bench/fidelity/``,
scores the profiles against published measurements).

This module is data and two small functions; it imports nothing heavy (the CLI loads it at
start-up through the scenario).
"""

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from servesim import knobs
from servesim.versions import release_before

DEFAULT_ENGINE = "vllm"


DeepSeekGlue = tuple[tuple[str | None, int, int, int], ...]
"""``(until, per MLA layer, per MoE layer, of which CUDA only)`` steps
(:attr:`EngineProfile.deepseek_glue`)."""


@dataclass(frozen=True)
class AttentionDP:
    """How an engine runs attention data-parallel ranks (scenario ``dp`` > 1)."""

    budget_divisor: int | None = None
    """Each rank schedules prompts within the instance's token budget divided by this; the
    instance's step then holds ``dp`` such shares. None: divided by ``dp`` (SGLang 0.5:
    ``chunked_prefill_size // dp_size``); 1: every rank is an engine with the whole budget
    (vLLM, TensorRT-LLM); 2: SGLang 0.4 (``chunked_prefill_size // 2``)."""
    seqs_per_rank: bool = False
    """Every rank runs ``max_num_seqs`` requests (an engine per rank); False: the instance's."""
    conservativeness: float = 1.0
    """Scale of the look-ahead admission's reserve (SGLang: ``schedule_conservativeness``
    × 0.3 under DP attention)."""
    graph_max_per_rank: int | None = None
    """Largest decode CUDA graph per rank (SGLang 0.4: ``cuda_graph_max_bs`` capped at 96)."""
    host_overlap: bool | None = None
    """The host's work overlaps the GPU under DP attention (None: as without; SGLang 0.4.0-0.4.1
    turn the overlap scheduler off)."""
    before: tuple[tuple[str, str, Any], ...] = ()
    """``(release, field, value)``: releases before ``release`` had ``value`` for ``field``
    (the fields above hold the newest release's rules; :meth:`at_release` applies these)."""

    def at_release(self, release: str | None) -> "AttentionDP":
        """These rules as ``release`` ran them (None: the newest)."""
        if release is None or not self.before:
            return self
        older = {
            name: value
            for threshold, name, value in self.before
            if release_before(release, threshold)
        }
        return replace(self, **older) if older else self

    def rank_budget(self, budget: int, dp: int) -> int:
        """Tokens one rank schedules per step out of the instance's ``budget``."""
        return max(1, budget // (self.budget_divisor or dp))


@dataclass(frozen=True)
class EngineProfile:
    """Scheduling semantics and host/API latency coefficients of one serving engine.

    Units: seconds, tokens. ``api_*`` terms are outside the GPU step: ``api_request_s +
    api_per_input_token_s × prompt tokens`` elapse between the client sending a request and the
    scheduler seeing it (HTTP handling, chat template, tokenisation, hand-off to the engine
    process); ``api_stream_s`` between a token leaving the GPU step and the client receiving it
    (detokenisation, SSE framing, the hop back through the API process). A benchmark client
    (``vllm bench serve``) measures TTFT and E2EL over both; ITL and TPOT see neither (every
    token is delayed alike).
    """

    name: str
    description: str
    versions: str
    """The engine versions the profile describes."""
    policy: str
    """Scheduler policy (``servesim.knobs.POLICIES``) the engine's default
    scheduler corresponds to."""
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool
    enable_prefix_caching: bool
    host_overlap: bool
    """The host prepares step n+1 while the GPU runs step n (async scheduling / overlap
    scheduler / a C++ runtime): step = max(gpu, host) + overhead. False: host work runs
    between GPU steps: step = gpu + host + overhead. (From ``host_overlap_from`` on, where
    that is set; see :func:`host_overlap_of`.)"""
    host_step_s: float
    host_per_seq_s: float
    host_per_token_s: float
    api_request_s: float
    api_per_input_token_s: float
    api_stream_s: float
    api_before_await_share: float = 0.0
    """Share of a request's API-server work done before its handler first yields to the
    server's event loop: an asyncio server does that part of every request of a burst before
    it finishes any (see ``servesim.engine.loop.ApiLatency``; :data:`ASYNCIO_BEFORE_AWAIT_SHARE`
    for the Python servers). 0: one request's work in one piece."""
    admission: str = knobs.ADMISSION
    """When a waiting request's KV fits (``greedy``, ``reserve``, ``guaranteed``: see
    ``servesim.engine.admission``)."""
    custom_allreduce: bool = True
    """TP all-reduces inside a node use the engine's custom peer-memory kernel (two link
    latencies) rather than NCCL's ring (see ``CostParams.custom_allreduce``)."""
    num_scheduler_steps: int = 1
    """Decode steps one scheduling round runs back to back (vLLM 0.6 ``--num-scheduler-steps``);
    a round's tokens reach the client together at its end, and new requests wait for it."""
    cuda_graph_sizes: tuple[int, ...] = ()
    """Batch sizes CUDA graphs are captured for (ascending); a pure-decode step of b sequences
    runs the graph of the smallest captured size >= b (padded rows cost GEMM rows). Batches
    above the largest size run eagerly, unpadded. Empty: a graph for every decode batch as it
    comes (no padding)."""
    moe_backend: str = "vllm"
    """Whose measured MoE kernels price routed experts (``vllm``, ``sglang`` or ``trtllm``; the
    other engines run the closest: vLLM's fused-MoE Triton kernels). NOTE: TensorRT-LLM stays
    on vLLM's: the catalog's TensorRT-LLM MoE rows come from its 1.3 release candidates, whose
    kernels run Mixtral's FP8 and DeepSeek's EP8 layers 2-3x faster than the 0.9-1.0 releases
    of the published measurements (`bench/fidelity`: Mixtral FP8 prefill TTFT 37 ms predicted
    against 90 ms measured on TensorRT-LLM 0.9 with them, 98 ms with vLLM's)."""
    kernel_backend: str | None = None
    """Whose measured GEMM, attention, all-reduce (and MoE) kernels price the step when the
    ``servesim[kernels]`` extra is installed: AIConfigurator's ``vllm``, ``sglang`` or
    ``trtllm`` tables; None (and any default install): the catalog's TensorRT-LLM tables."""
    graph_padding: bool = True
    """A decode batch runs the CUDA graph of the next captured size up, padded; False: only a
    batch of exactly a captured size runs under a graph, the others eagerly (TensorRT-LLM's
    PyTorch backend, ``cuda_graph_config.enable_padding`` off by default)."""
    graph_max_tokens: int | None = 0
    """Steps up to this many tokens, prompts included, run under CUDA graphs (vLLM V1's
    piecewise graphs); 0: only pure-decode steps of a captured size do (vLLM V0, SGLang: a
    step with prompt tokens runs eagerly, each kernel issued by the CPU); None: every step
    runs without per-kernel CPU issue (a C++ runtime: TensorRT-LLM, TurboMind)."""
    graph_max_seq_len: int | None = None
    """A pure-decode step whose longest sequence (its tokens so far, the one being decoded
    included) exceeds this many tokens runs eagerly, whatever its batch (vLLM V0's
    ``max_seq_len_to_capture``); None: no such limit."""
    host_overlap_from: str | None = None
    """The release from which ``host_overlap`` is the engine's default; before it the host
    work runs between steps unless the scenario turns the overlap on (vLLM: 0.14.0, when
    async scheduling became the default). None: ``host_overlap`` at every release."""
    mla_fused_down_proj_from: str | None = None
    """The release from which the engine runs MLA's two down-projections (``q_a_proj``,
    ``kv_a_proj_with_mqa``: both read the hidden states) as one GEMM (``CostParams.
    mla_fused_down_proj``); ``"0"``: every release; None: as two GEMMs (no such fusion known)."""
    fp8_attention: Callable[[str | None, str | None], bool] | None = None
    """Whether the engine runs attention in FP8 over an FP8 KV cache: ``(release, GPU
    architecture)`` → True where its default attention kernel quantises Q to the cache's
    format (``CostParams.fp8_attention``). None: never."""
    pipeline_batch_queue: bool = False
    """Under pipeline parallelism the engine keeps its ``pp`` micro-batches in flight across
    steps, so the pipeline does not fill and drain at every step (``CostParams.
    pp_overlap_steps``): vLLM V1's batch queue (``max_concurrent_batches`` = pp), V0's ``pp``
    virtual engines each scheduling its own batch, SGLang's pipeline event loop. False: every
    step fills and drains the pipeline (GPipe)."""
    decode_serial_walk: bool = False
    """The engine's attention runs FlashAttention-2's varlen kernel where the GPU has no
    FlashAttention-3 or FlashInfer/TensorRT-LLM kernels for it (vLLM V1: Ampere, Ada, the
    Blackwell workstation parts), which walks a sequence's KV in one thread block per query
    head except for one-token rows of a grouped-query model (``CostParams.
    decode_serial_walk``; the GPU's decode table says whether and how fast: vLLM's Hopper and
    Blackwell datacentre tables show no such walk)."""
    attention_backend: Callable[[str | None, str | None, str], str | None] | None = None
    """The engine's default attention backend for a model without MLA: ``(release, GPU
    architecture, the model's HF architecture class)`` → a backend name where it changes the
    price (``CostParams.attention_backend``; see :func:`sglang_attention_backend`). None: the
    measured tables' kernels."""
    allreduce_norm_fusion: Callable[[str | None, str | None, str, str], bool] | None = None
    """Whether the engine fuses each TP all-reduce with the residual add and RMSNorm after it
    (one kernel): ``(release, GPU architecture, GPU name, the model's HF architecture class)``
    (``CostParams.allreduce_norm_fusion``; see :func:`sglang_allreduce_norm_fusion`). None:
    never."""
    mla_decode_rows: Callable[[str | None, str | None], int] | None = None
    """When the engine's MLA backend takes rows of more than one new token down its decode
    (weight-absorbed) pathway: ``(release, GPU architecture)`` → the most new tokens such a
    row has (``CostParams.mla_absorb_max_new_tokens``). None: one (only decode rows)."""
    mla_prompt_absorb: Callable[[str | None, str | None], float | None] | None = None
    """When the engine runs every row of an MLA prompt batch through the weight-absorbed form
    (``CostParams.mla_prompt_absorb_below``): ``(release, GPU architecture)`` → the cached
    prefix below which it does (None: never). None: never (each row by its own new tokens)."""
    flashinfer_01_before: str | None = None
    """The first release on FlashInfer 0.2: earlier ones ran FlashInfer 0.1.6, whose decode
    takes the tensor-core kernel only for GQA groups it has no CUDA-core build for
    (:func:`flashinfer_decode_cuda_cores`). None: FlashInfer 0.2's rule throughout."""
    mla_prompt_kernel_scale: Callable[[str | None, str | None], float] | None = None
    """How many times its FLOP time at the kernel tables' rate the engine's kernel takes for
    MLA prompt rows on the absorbed path (``CostParams.mla_prompt_attention_scale``):
    ``(release, GPU architecture)`` → the scale. None: 1 (the tables' rate)."""
    overlap_off_with: tuple[str, ...] = ()
    """Deployments for which the engine leaves its overlap off by default, from
    :data:`OVERLAP_BLOCKERS`: ``speculation`` (any speculative decoding), ``draft_speculation``
    (speculative decoding other than EAGLE-style drafting). A scenario that sets
    ``async_scheduling`` decides for itself. (Pipeline parallelism: ``pipeline_overlap_from``.)"""
    pipeline_overlap_from: str | None = None
    """The release from which the host work overlaps under pipeline parallelism (``pp`` > 1) as
    it does without; before it, with ``pp`` > 1, each micro-batch's host work runs between its
    steps whatever ``async_scheduling`` says (vLLM: 0.15.0, vllm-project/vllm#32359 and #32618;
    the 0.10.2 and 0.14.0 wheels refuse ``--async-scheduling`` with ``pp`` > 1, and #32618
    measured PP4 decode 31.8% faster once it overlapped, the batch queue's ``pp`` micro-batches
    in flight notwithstanding). None: no such rule (SGLang's pipeline loop)."""
    schedules_ahead: bool = False
    """The host overlap comes from forming step n+1 as step n starts (vLLM's async
    scheduling, SGLang's and TensorRT-LLM's PyTorch-backend overlap schedulers): a request that
    reaches the engine while step n runs joins step n+2, not n+1, so TTFT holds one more step.
    Applies only where the host overlaps (:func:`host_overlap_of`, CUDA graphs on)."""
    kv_of_free: bool = False
    """``gpu_memory_utilization`` is the share of the memory the weights, activations and runtime
    leave free that the KV cache takes (TensorRT-LLM's ``kv_cache_free_gpu_mem_fraction``);
    False: the share of all HBM for everything (vLLM's ``gpu_memory_utilization``, SGLang's
    ``mem_fraction_static``)."""
    window_budget: bool = False
    """Without chunked prefill the default token budget is ``max(context window, 2048)``, so
    that one whole prompt fits a step (vLLM V0's ``SchedulerConfig`` default; V1's
    ``EngineArgs`` sets the context window)."""
    unchunked_budget_floor: bool = False
    """Without chunked prefill a token budget below the context window is refused, as vLLM V1
    refuses to start ("max_num_batched_tokens ... is smaller than max_model_len",
    ``SchedulerConfig._verify_args``). (Not on the V0 profile: the published V0 runs give
    budgets below the model's window without the ``max_model_len`` they ran with; there a
    longer prompt runs alone in its step.)"""
    admission_watermark: float = 0.0
    """Share of the KV blocks a waiting request must leave free to be admitted (vLLM V0's
    block manager ``watermark``, :data:`VLLM_V0_WATERMARK`): it runs only if free blocks −
    its blocks ≥ ``int(watermark × blocks)``, and a request needing more than the rest is never
    served. Growing running requests ignore it (0: no watermark)."""
    admission_counts_hits: bool = False
    """Admission asks room for every block of a waiting prompt, its prefix-cache hits included
    (vLLM V0's ``can_allocate``, :data:`VLLM_V0_WATERMARK`'s check); False: only for the blocks
    the hits leave to allocate (vLLM V1's ``allocate_slots``)."""
    long_context_chunking: tuple[int, int] | None = None
    """``(context, budget)``: a model whose context window exceeds ``context`` tokens gets
    chunked prefill with a ``budget``-token step unless the scenario says otherwise (vLLM V0
    from 0.5.4); None: no such rule."""
    long_context_vendor_from: tuple[str, str] | None = None
    """``(vendor, release)``: from ``release`` on (and when the scenario names none), GPUs of
    ``vendor`` are left out of ``long_context_chunking`` (vLLM V0 and ROCm:
    :data:`VLLM_V0_ROCM_NO_LONG_CONTEXT_CHUNKING`)."""
    long_context_mla_from: str | None = None
    """From this release (and when the scenario names none) a model with MLA is left out of
    ``long_context_chunking``: it runs without chunked prefill unless the scenario turns it on,
    one whole prompt a step (vLLM V0: :data:`VLLM_V0_MLA_NO_CHUNKING`). None: no such rule."""
    mla_materialized_releases: tuple[str, str] | None = None
    """``(first, until)``: releases from ``first`` and before ``until`` run MLA decodes through
    materialized absorbed weights (``CostParams.mla_materialized``; vLLM V0:
    :data:`VLLM_MLA_MATERIALIZED`). None: never."""
    deepseek_glue: DeepSeekGlue = ()
    """``(until, per MLA layer, per MoE layer, of which CUDA only)`` steps, ascending: before
    ``until`` (None: every release) the engine launches that many small kernels in each MLA
    attention layer and each MoE layer of a DeepSeek-style model beyond what servesim prices
    (``CostParams.deepseek_glue_kernels``; :data:`VLLM_V0_DEEPSEEK_GLUE`,
    :data:`VLLM_DEEPSEEK_GLUE`, :data:`SGLANG_DEEPSEEK_GLUE`); the last count of the MLA
    layer's runs on NVIDIA GPUs only (ROCm takes another path there). Empty: none."""
    hybrid_kv_from: str | None = None
    """From this release the engine lays its KV cache out by layer kind (``CostParams.
    hybrid_kv``: vLLM V1's hybrid KV cache manager, :data:`VLLM_HYBRID_KV_CACHE`). None:
    never."""
    sliding_kv: tuple[tuple[str, str], ...] = ()
    """``(release, rule)`` steps, ascending: from each release on, the engine pages the KV
    cache of a model whose every layer uses a sliding window by ``rule``
    (``CostParams.sliding_kv``, ``memory.SLIDING_WINDOW_PAGES``: a request holds only its
    window's pages; vLLM: :data:`VLLM_SLIDING_WINDOW_KV`). Empty, or before the first
    release: every token's KV."""
    moe_chunk_tokens: tuple[tuple[str, int], ...] = ()
    """``(release, tokens)`` steps, ascending: from each release on, the fused-MoE kernel runs
    a step's tokens at most this many at a time, so its intermediate caches (and the profiling
    run's activation peak) hold that many tokens' worth (vLLM's ``VLLM_FUSED_MOE_CHUNK_SIZE``,
    :data:`VLLM_FUSED_MOE_CHUNKS`). Empty: the whole step at once."""
    swa_pool_from: str | None = None
    """From this release the engine keeps the sliding-window layers of the models in
    :data:`SGLANG_HYBRID_SWA_MODEL_TYPES` in a pool of their own (SGLang's hybrid SWA memory,
    ``CostParams.swa_pool_ratio``, :func:`swa_pool_ratio`). None: never."""
    profiled_memory: bool = False
    """The engine sizes its KV cache from a profiling run (vLLM): ``gpu_memory_utilization``
    × the total CUDA reports, less the weights, the larger of the run's forward and sampler
    peaks and the non-torch memory it sees (``plan_memory``'s ``profiled``); the CUDA context
    and CUDA graphs live in the rest."""
    graph_reserve_from: str | None = None
    """From this release the profiled budget also takes out the CUDA graphs' memory
    (``plan_memory``'s ``graph_reserve``); None: never (they live in the rest)."""
    sampler_at: Callable[[str | None], str] | None = None
    """How the profiling run's sampler holds its logits at a release (a key of
    ``servesim.cost.memory.SAMPLER_BYTES_PER_VOCAB_ENTRY``); None: ``"logits"``."""
    kv_of_static: bool = False
    """``gpu_memory_utilization`` is SGLang's ``mem_fraction_static``: the share of the memory
    the runtime leaves that holds the weights and the KV cache (activations and CUDA graphs
    live in the rest)."""
    kv_of_total_before: str | None = None
    """Before this release ``gpu_memory_utilization`` is the share of *all* HBM the KV cache
    takes, whatever the weights hold (LMDeploy TurboMind before 0.2.2, see
    :data:`LMDEPLOY_KV_OF_FREE`); from it on, ``kv_of_free``'s rule. None: never."""
    block_size: int | None = None
    """The engine's KV block (page) in tokens when the scenario names none (None: servesim's
    ``knobs.BLOCK_SIZE``, vLLM's and SGLang's 16)."""
    block_size_before: tuple[tuple[str, int], ...] = ()
    """``(release, tokens)`` steps, ascending: releases before each ``release`` used ``tokens``
    a block instead of ``block_size`` (LMDeploy: 128 before 0.3.0)."""
    memory_fraction: Callable[[float, int, int, int, int, int, str | None], float] | None = None
    """When the engine picks its memory fraction itself: ``(hbm_bytes, prefill chunk, largest
    decode CUDA graph, tp, pp, dp, release)`` → the ``gpu_memory_utilization`` a scenario that
    leaves it out gets (None: the knob's default)."""
    batch_defaults: Callable[[float, str, bool, str | None], tuple[int, int]] | None = None
    """When the engine sizes its step by the GPU: ``(hbm_bytes, gpu name, api_server,
    release)`` → ``(max_num_batched_tokens, max_num_seqs)`` for the fields the user leaves out
    (``release`` None: the newest; None: the profile's ``max_num_batched_tokens`` and
    ``max_num_seqs`` everywhere)."""
    graph_sizes_by_gpu: Callable[[float, int, str | None], tuple[int, ...]] | None = None
    """When the engine picks its CUDA-graph batch sizes by the GPU: ``(hbm_bytes, tp,
    release)`` → the sizes (``release`` None: the newest; None: ``cuda_graph_sizes``
    everywhere)."""
    graph_sizes_by_batch: Callable[[str | None, int, int], tuple[int, ...]] | None = None
    """When the engine sizes its CUDA graphs by its scheduler limits: ``(release,
    max_num_seqs, max_num_batched_tokens)`` → the captured sizes, whose largest is then also
    ``graph_max_tokens`` (None: ``cuda_graph_sizes`` as given)."""
    attention_dp: AttentionDP = AttentionDP()
    """How the engine runs attention data-parallel ranks."""
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.overlap_off_with) - set(OVERLAP_BLOCKERS)
        if unknown:
            raise ValueError(f"overlap_off_with: unknown {sorted(unknown)}; use {OVERLAP_BLOCKERS}")
        sizes = self.cuda_graph_sizes
        if any(a >= b for a, b in zip(sizes, sizes[1:], strict=False)):
            raise ValueError(f"cuda_graph_sizes must ascend (got {sizes})")

    def for_gpu(
        self, hbm_bytes: float, tp: int, dp: int = 1, release: str | None = None
    ) -> "EngineProfile":
        """This profile as ``release`` (None: the newest) runs on a GPU of ``hbm_bytes`` with
        ``tp`` GPUs in its TP group (SGLang's ``--tp``: with DP attention, every rank's GPUs)
        and ``dp`` attention data-parallel ranks (its CUDA graphs per rank, its host)."""
        out = self
        if self.graph_sizes_by_gpu is not None:
            sizes = self.graph_sizes_by_gpu(hbm_bytes, tp, release)
            out = replace(out, cuda_graph_sizes=sizes)
        rules = self.attention_dp
        if dp > 1 and rules.graph_max_per_rank is not None:
            sizes = tuple(s for s in out.cuda_graph_sizes if s <= rules.graph_max_per_rank)
            out = replace(out, cuda_graph_sizes=sizes)
        if dp > 1 and rules.host_overlap is not None:
            out = replace(out, host_overlap=rules.host_overlap)
        return out

    def kv_memory(self, release: str | None) -> dict[str, Any]:
        """How ``gpu_memory_utilization`` sizes the KV cache at ``release`` (None: the newest):
        :func:`servesim.cost.memory.plan_memory`'s ``kv_of_free``, ``kv_of_static``,
        ``kv_of_total``, ``profiled``, ``sampler`` and ``graph_reserve``."""
        before = self.kv_of_total_before
        total = before is not None and _older(release, before)
        return {
            "kv_of_free": self.kv_of_free and not total,
            "kv_of_static": self.kv_of_static,
            "kv_of_total": total,
            "profiled": self.profiled_memory,
            "sampler": "logits" if self.sampler_at is None else self.sampler_at(release),
            "graph_reserve": self.graph_reserve_from is not None
            and not _older(release, self.graph_reserve_from),
        }

    def block_size_at(self, release: str | None) -> int | None:
        """The engine's default KV block in tokens at ``release`` (None: the newest); None:
        servesim's knob."""
        for threshold, tokens in self.block_size_before:
            if _older(release, threshold):
                return tokens
        return self.block_size

    def at_release(self, release: str | None) -> "EngineProfile":
        """This profile as ``release`` ran it (None: the newest it describes): its attention-DP
        rules (``AttentionDP.before``)."""
        rules = self.attention_dp.at_release(release)
        return self if rules is self.attention_dp else replace(self, attention_dp=rules)

    def for_batch(
        self, release: str | None, max_num_seqs: int, max_num_batched_tokens: int
    ) -> "EngineProfile":
        """This profile's CUDA graphs under a scheduler of ``max_num_seqs`` sequences and
        ``max_num_batched_tokens`` tokens a step, at ``release`` (None: the newest)."""
        if self.graph_sizes_by_batch is None:
            return self
        sizes = self.graph_sizes_by_batch(release, max_num_seqs, max_num_batched_tokens)
        top = self.graph_max_tokens
        return replace(
            self,
            cuda_graph_sizes=sizes,
            graph_max_tokens=sizes[-1] if top and sizes else top,
        )

    def graphed(self, decode_only: bool, tokens: int, batch: int) -> bool:
        """Whether a step of ``tokens`` tokens over ``batch`` sequences (``decode_only``: one
        token each) runs without per-kernel CPU issue."""
        if self.graph_max_tokens is None:
            return True
        sizes = self.cuda_graph_sizes
        if decode_only and (not sizes or batch <= sizes[-1]):
            # (no sizes listed: a graph is recorded for every decode batch)
            return self.graph_padding or not sizes or batch in sizes
        return tokens <= self.graph_max_tokens

    def graph_batch(self, batch: int) -> int:
        """The decode batch a CUDA graph runs for ``batch`` sequences (``batch`` when none
        was captured at or above it, or the engine does not pad)."""
        if not self.graph_padding:
            return batch
        sizes = self.cuda_graph_sizes
        i = bisect.bisect_left(sizes, batch)  # (ascending: checked when the profile is made)
        return sizes[i] if i < len(sizes) else batch


VLLM_FLASHINFER_SAMPLER_OPT_IN = "0.11.1"
"""The first vLLM release whose V1 sampler leaves FlashInfer's top-k/top-p kernel off unless
``VLLM_USE_FLASHINFER_SAMPLER=1`` (vllm-project/vllm#26859; checked in the 0.11.1 and 0.11.2
wheels). From vllm-project/vllm#11394 (Dec 2024) until then V1 used it wherever FlashInfer
was installed (``VLLM_USE_FLASHINFER_SAMPLER is not False``: the 0.8.4, 0.9.0, 0.10.2 and
0.11.0 wheels), as in the official Docker images; a pip install without FlashInfer sorted."""
VLLM_TRITON_TOP_K_TOP_P = "0.17.0"
"""The first vLLM release whose PyTorch-native sampler masks top-k/top-p in place with a
Triton kernel (``apply_top_k_top_p_triton``, batches of 8 rows or more) instead of sorting
(checked: absent in the 0.16.0 wheel, present in 0.17.0 and 0.19.0)."""
VLLM_FLASHINFER_SAMPLER_DEFAULT = "0.21.0"
"""The first vLLM release that turns FlashInfer's sampler back on by default
(vllm-project/vllm#40376; ``VLLM_USE_FLASHINFER_SAMPLER`` unset reads True in the 0.21.0
wheel, False in 0.20.0)."""
VLLM_CUDA_GRAPH_PROFILING = "0.20.0"
"""The first vLLM release whose memory profile also takes the CUDA graphs' estimated memory
out of the KV cache (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`` defaults to 1 in the 0.20.0
and 0.21.0 wheels, 0 in 0.19.0; a 0.31.0 log: "CUDA graph memory profiling is enabled")."""


def vllm_v1_sampler(release: str | None) -> str:
    """How vLLM V1's profiling run samples at ``release`` (None: the newest), a key of
    ``servesim.cost.memory.SAMPLER_BYTES_PER_VOCAB_ENTRY``: ``flashinfer`` before
    :data:`VLLM_FLASHINFER_SAMPLER_OPT_IN` and from :data:`VLLM_FLASHINFER_SAMPLER_DEFAULT`;
    ``sort`` (PyTorch's sort-based top-k and top-p) in between until
    :data:`VLLM_TRITON_TOP_K_TOP_P`, then ``triton``. Public logs agree: vLLM 0.10.1.1 on
    A100 80GB, Qwen2-7B, 256 sequences ("Using FlashInfer for top-p & top-k sampling"): 0.59
    GiB of activations and non-torch memory (FlashInfer's 0.51 + 0.08; sorting would hold
    1.4); vLLM 0.11.2 on H200, Llama-3-8B, 1,024 sequences: 105.97 GiB of KV cache, as
    sorting's 4.6 GiB peak leaves (bench/fidelity/memory.py)."""
    if _older(release, VLLM_FLASHINFER_SAMPLER_OPT_IN):
        return "flashinfer"
    if _older(release, VLLM_TRITON_TOP_K_TOP_P):
        return "sort"
    if _older(release, VLLM_FLASHINFER_SAMPLER_DEFAULT):
        return "triton"
    return "flashinfer"


def _vllm_v0_sampler(release: str | None) -> str:
    """vLLM V0's sampler sorts: it used FlashInfer only with ``VLLM_USE_FLASHINFER_SAMPLER=1``
    (vllm-project/vllm#7137)."""
    return "sort"


def _older(release: str | None, threshold: str) -> bool:
    """Whether a named ``release`` comes before ``threshold`` (None, the newest, never does)."""
    return release is not None and release_before(release, threshold)


def vllm_v1_graph_sizes(
    release: str | None, max_num_seqs: int, max_num_batched_tokens: int
) -> tuple[int, ...]:
    """The batch sizes vLLM V1 captures CUDA graphs for by default (checked in the 0.8.0,
    0.9.0, 0.9.2, 0.10.0, 0.10.2, 0.11.0 and 0.12.0 wheels): 1, 2, 4 and multiples of 8 up to
    512 before 0.10; from 0.10 up to min(2 × ``max_num_seqs``, 512) (``SchedulerConfig``'s
    ``cuda_graph_sizes`` default); from 0.12 by 16 from 256 on. Always at most
    ``max_num_batched_tokens``. ``release`` None: the newest."""
    top = 512
    if not _older(release, "0.10.0"):
        top = min(2 * max_num_seqs, top)
    top = min(top, max_num_batched_tokens)
    if _older(release, "0.12.0"):
        sizes = [1, 2, 4, *range(8, top + 1, 8)]
    else:
        sizes = [1, 2, 4, *range(8, min(top + 1, 256), 8), *range(256, top + 1, 16)]
    return tuple(size for size in sizes if size <= top)


def _vllm_graph_sizes(max_size: int) -> tuple[int, ...]:
    # vLLM captures 1, 2, 4 and multiples of 8 (v0: up to 256; v1: then multiples of 16 to 512).
    sizes = [1, 2, 4, *range(8, min(max_size, 256) + 1, 8)]
    sizes += range(272, max_size + 1, 16)
    return tuple(sizes)


def _sglang_graph_sizes() -> tuple[int, ...]:
    # SGLang's default cuda_graph_bs: 1, 2, 4, 8, 12, 16, 24, then multiples of 8 up to 160.
    return (1, 2, 4, 8, 12, 16, 24, *range(32, 161, 8))


SGLANG_GPU_TIERS = "0.5.3"
"""The first SGLang release whose defaults step by five GPU-memory tiers (``server_args.py``
``_handle_gpu_memory_settings``, sgl-project/sglang#10975): under 20 GiB (T4), 35 GiB (A10G,
L4), 60 GiB (A100-40GB, L40S), 160 GiB (A100-80GB, H100, H200), and above (B200, MI300X).
0.5.0-0.5.2 chunk by three (35 and 160 GiB) and capture decode graphs up to 160 sequences
(256 over 90 GiB, 512 over 160,000 MiB), 8 or 80 under 35 GiB (the 0.5.2 wheel's
``cuda_graph_runner.get_batch_sizes_to_capture``)."""

SGLANG_SMALL_TP_GRAPHS_24 = "0.5.5"
"""From this SGLang release a 20-35 GiB GPU (A10G, L4) captures decode graphs up to 24
sequences under TP 1-3 (16 in the 0.5.3 and 0.5.4 wheels)."""


def _sglang_tier(hbm_bytes: float, release: str | None) -> int:
    """SGLang's GPU-memory tier (``server_args.py``, GPU memory in MiB): 0 under 20 GiB, 1
    under 35, 2 under 60, 3 under 160, 4 above; before 0.5.3, 20-35 GiB counts as 0 and
    35-60 GiB as 3 (that release had no such tiers)."""
    mib = hbm_bytes / 2**20
    tier = sum(mib >= gib * 1024 for gib in (20, 35, 60, 160))
    if _older(release, SGLANG_GPU_TIERS):
        return {1: 0, 2: 3}.get(tier, tier)
    return tier


def sglang_graph_sizes_by_gpu(
    hbm_bytes: float, tp: int, release: str | None = None
) -> tuple[int, ...]:
    """SGLang's decode CUDA-graph batch sizes by GPU memory, TP and release (``release`` None:
    the newest; ``server_args.py`` ``_handle_gpu_memory_settings`` and
    ``_generate_cuda_graph_batch_sizes``, checked in the 0.5.2-0.5.9 wheels). From 0.5.3:
    ``cuda_graph_max_bs`` 8 under 20 GiB; 24 (16 before 0.5.5) under TP 4, else 80, under 35
    GiB; 32 or 160 under 60 GiB; 256 or 512 under 160 GiB; 512 above; sizes 1, 2, 4, 8, 12,
    16…256 by 8, 272…496 by 16, 512… by 32, up to that max. 0.5.0-0.5.2: see
    :data:`SGLANG_GPU_TIERS`. (SGLang 0.4 captured up to 160 on every large GPU:
    ``sglang04_graph_sizes_by_gpu``.)"""
    mib = hbm_bytes / 2**20
    if _older(release, SGLANG_GPU_TIERS):
        sizes = [1, 2, 4, 8, *range(16, 161, 8)]
        if mib > 90 * 1024:
            sizes += range(168, 257, 8)
        if mib > 160 * 1000:
            sizes += range(272, 513, 16)
        if mib < 35 * 1024:
            return tuple(x for x in sizes if x <= (8 if tp < 4 else 80))
        return tuple(sizes)
    tier = _sglang_tier(hbm_bytes, release)
    small_tp = 16 if _older(release, SGLANG_SMALL_TP_GRAPHS_24) else 24
    max_bs = (8, small_tp, 32, 256, 512)[tier] if tp < 4 else (8, 80, 160, 512, 512)[tier]
    sizes = [1, 2, 4, 8, 12, *range(16, 257, 8), *range(272, 512, 16), *range(512, max_bs + 1, 32)]
    return tuple(x for x in sizes if x <= max_bs)


LARGE_GPU_BYTES = 70 * 2**30
"""vLLM V1's threshold for its larger batch defaults (``device_memory >= 70 * GiB_bytes``)."""


def vllm_v1_batch_defaults(
    hbm_bytes: float, gpu_name: str, api_server: bool, release: str | None = None
) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) vLLM V1 takes when neither is given.

    From 0.9.0, GPUs with at least 70 GiB that are not an A100 (H100, H200, B200, MI300X,
    H20): 8,192 tokens a step behind the OpenAI server (16,384 for the offline ``LLM`` class)
    and 1,024 sequences; every other GPU (A100, L40S, A10G, L4): 2,048 (8,192 offline) and 256.
    Earlier (``release``; None: the newest): 0.8.5 gave the larger values to every GPU of at
    least 70 GiB, the 80 GB A100 included; 0.8.0-0.8.4 to GPUs named H100 or H200 only, and
    1,024 sequences to every GPU before 0.8.4. Source: vLLM ``engine/arg_utils.py``
    (``_set_default_args_v1``, later ``get_batch_defaults``), checked in the 0.8.0-0.8.5,
    0.9.0 and 0.10.2 wheels."""
    name = gpu_name.lower()
    if _older(release, "0.8.5"):
        large = "h100" in name or "h200" in name
        small_seqs = 1024 if release_before(release, "0.8.4") else 256
    elif _older(release, "0.9.0"):
        large, small_seqs = hbm_bytes >= LARGE_GPU_BYTES, 256
    else:
        large, small_seqs = hbm_bytes >= LARGE_GPU_BYTES and "a100" not in name, 256
    if large:
        return (8192 if api_server else 16384), 1024
    return (2048 if api_server else 8192), small_seqs


def sglang_batch_defaults(
    hbm_bytes: float, gpu_name: str, api_server: bool, release: str | None = None
) -> tuple[int, int]:
    """(chunked_prefill_size, max_running_requests) SGLang takes when neither is given: the
    prefill chunk by GPU memory, 2,048 tokens under 35 GiB (T4, A10G, L4, RTX 4090), 4,096
    under 60 GiB (A100-40GB, L40S; 8,192 before 0.5.3, see :data:`SGLANG_GPU_TIERS`), 8,192
    under 160 GiB (A100-80GB, H100, H200, H20), 16,384 above (B200, MI300X) — SGLang
    ``server_args.py`` (``_handle_gpu_memory_settings``; 0.5.2: the chunk's own rule); the
    requests stay the profile's 4,096 (the KV pool bounds them first)."""
    return (2048, 2048, 4096, 8192, 16384)[_sglang_tier(hbm_bytes, release)], 4096


def sglang_mem_fraction_static(
    hbm_bytes: float,
    chunk: int,
    graph_max_bs: int,
    tp: int,
    pp: int,
    dp: int,
    release: str | None = None,
) -> float:
    """SGLang's default ``mem_fraction_static`` from 0.5.3 on (``server_args.py``,
    ``_handle_gpu_memory_settings``, sgl-project/sglang#10975): reserve (MiB) 512 + 1.5 ×
    max(chunk, 2048) + 2 × cuda_graph_max_bs + 1024 × tp·pp / 8, under DP attention also
    3 × cuda_graph_max_bs × dp (and 1.5 × more above 300), at least 10 GiB on GPUs over 60 GiB;
    the fraction is (memory − reserve) / memory, rounded to 3 decimals. ``tp`` is SGLang's
    ``--tp`` (every GPU of the replica's TP group, DP-attention ranks included).

    Before 0.5.3 (0.5.0rc0-0.5.3rc0 wheels) the reserve (MiB) stepped by GPU memory with the
    GPUs of the replica p = tp·pp: (2.8 + p/10) GiB under 35 GiB, (9.5 + p/2) GiB under 90,
    (12 + p/2) GiB under 160, 32 GiB above, plus 4 GiB under DP attention."""
    mib = hbm_bytes / 2**20
    if _older(release, SGLANG_GPU_TIERS):
        p = tp * pp
        if mib < 35 * 1024:
            gib = 2.8 + p / 10
        elif mib < 160 * 1024:
            gib = (9.5 if mib < 90 * 1024 else 12.0) + p / 2
        else:
            gib = 32.0
        gib += 4.0 if dp > 1 else 0.0
        return round((mib - gib * 1024) / mib, 3)
    reserved = 512 + 1.5 * max(chunk, 2048) + 2 * graph_max_bs + tp * pp / 8 * 1024
    if dp > 1:
        reserved += 3 * graph_max_bs * dp
        if graph_max_bs > 300:
            reserved += 1.5 * graph_max_bs * dp
    if mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((mib - reserved) / mib, 3)


SGLANG04_SMALL_GPU_MIB = 25_000
"""SGLang 0.4's threshold for its small-GPU defaults (``server_args.py``: ``gpu_mem < 25_000``,
the GPU's memory in MiB): the A10G and L4 (about 23,000 MiB) fall under it."""


def sglang04_graph_sizes_by_gpu(
    hbm_bytes: float, tp: int, release: str | None = None
) -> tuple[int, ...]:
    """SGLang 0.4's decode CUDA-graph batch sizes (checked in the 0.4.0-0.4.9 wheels): 1, 2, 4
    and multiples of 8 up to ``cuda_graph_max_bs``, 160, or on a GPU under 25,000 MiB 8 (TP < 4)
    or 80 (0.4.1 on)."""
    top = 160
    if hbm_bytes / 2**20 < SGLANG04_SMALL_GPU_MIB:
        top = 8 if tp < 4 else 80
    return tuple(s for s in (1, 2, 4, *range(8, 161, 8)) if s <= top)


def sglang04_batch_defaults(
    hbm_bytes: float, gpu_name: str, api_server: bool, release: str | None = None
) -> tuple[int, int]:
    """(chunked_prefill_size, max_running_requests) of SGLang 0.4: 8,192 tokens, 2,048 on a
    GPU under 25,000 MiB (0.4.0-0.4.9 wheels); the requests stay the profile's 4,096."""
    small = hbm_bytes / 2**20 < SGLANG04_SMALL_GPU_MIB
    return (2048 if small else 8192), 4096


def sglang04_mem_fraction_static(
    hbm_bytes: float,
    chunk: int,
    graph_max_bs: int,
    tp: int,
    pp: int,
    dp: int,
    release: str | None = None,
) -> float:
    """SGLang 0.4's default ``mem_fraction_static`` by ``--tp`` (``server_args.py``): 0.88 on
    one GPU, 0.87 from 2, 0.85 from 4, 0.81 from 8, 0.79 from 16."""
    for least, fraction in ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87)):
        if tp >= least:
            return fraction
    return 0.88


_API_SOURCE = (
    "estimate: an OpenAI-compatible Python API server (FastAPI/uvicorn request handling, chat "
    "template and HF fast-tokenizer encoding at ~1 µs/token, one IPC hop to the engine "
    "process) costs a few ms per request before scheduling and ~1 ms per streamed token "
    "after it; scored on the TTFT cases of bench/fidelity (leave-one-source-out). A burst's "
    "requests do the part before their handler's first await all together first: see "
    "ASYNCIO_BEFORE_AWAIT_SHARE"
)

ASYNCIO_BEFORE_AWAIT_SHARE = 0.4
"""Share of a request's work an asyncio (FastAPI/uvicorn) API server does before the handler
first yields (HTTP parsing, request validation, the chat template, up to handing the prompt to
the tokenizer's thread), for vLLM, SGLang, trtllm-serve and LMDeploy's servers.

Measured from a public run outside the accuracy suite: Lambda Labs' vLLM 0.5.4 run of 320
ShareGPT prompts sent at once to one H100 (LambdaLabsML/vllm-benchmark
``results/prompt_320/1xH100-80GB-SXM/Mistral-7B-Instruct-v0.3_tp1_len2000.json`` @de55d46,
per-request ``ttfts``): no request had its first token before 0.564 s, where taking requests
one at a time would give the first one within a step (servesim before: 0.02 s). vLLM V0's
request cost (4 ms + 1 µs a prompt token, ~4.2 ms here) with a 0.4 share puts it at 0.56 s
(``bench/fidelity/api_burst_check.py``). The mechanism is asyncio's: the event loop runs ready
callbacks in the order they became ready, so each request of a burst runs its handler up to
its first ``await`` before the first one resumes. The benchmark client (``benchmark_serving.py``,
asyncio too) does its own part for every request first as well; the two runs cannot separate
it from the server's, so the share holds both. SGLang's own part is smaller (its tokenizer
manager tokenizes and hands a request to the scheduler before it first waits), but its bursts
in the accuracy suite move the same way; one share serves every Python server."""


LMDEPLOY_KV_OF_FREE = "0.2.2"
"""The first LMDeploy release whose TurboMind sizes the KV cache as a share of the *free*
memory: ``BlockManager::GetBlockCount`` returns ``total × ratio / block_size`` (cudaMemGetInfo's
total) in v0.1.0a1-v0.2.1 and ``free × ratio / block_size`` from v0.2.2, where
``cache_max_entry_count``'s default also went from 0.5 to 0.8 (``lmdeploy/messages.py``,
``turbomind/deploy/target_model/base.py``; InternLM/lmdeploy tags)."""
LMDEPLOY_BLOCK_64 = "0.3.0"
"""The first LMDeploy release whose ``cache_block_seq_len`` default is 64 tokens (128 before,
v0.1.0a1-v0.2.6)."""


SGLANG_MLA_CHUNKED_PREFIX = 8192.0
"""SGLang's ``SGL_CHUNKED_PREFIX_CACHE_THRESHOLD`` default (``DeepseekV2AttentionMLA``, the
same in the 0.4.6-0.5.9 wheels): from this many cached prefix tokens in a prompt batch the FA3
and FlashInfer backends up-project the prefix in chunks (``MHA_CHUNKED_KV``, the regular form)
instead of absorbing."""

_ANY_PREFIX = float("inf")

SGLANG_MLA_FA3_HOPPER = "0.4.6"
"""The first SGLang release whose default MLA backend on Hopper is FA3; before it Triton on
every GPU (``ModelRunner.model_specific_adjustment``, 0.4.3-0.4.6 wheels)."""


def _amd_instinct(architecture: str | None) -> bool:
    """Whether ``architecture`` names an AMD Instinct (CDNA) GPU, where SGLang runs ROCm's
    aiter attention backend."""
    return architecture is not None and architecture.startswith("cdna")


def sglang04_mla_prompt_absorb(release: str | None, architecture: str | None) -> float | None:
    """SGLang 0.4's MLA form for a prompt (extend) batch, by its default attention backend
    (``ModelRunner.model_specific_adjustment``; ``release`` None: 0.4.9): the Triton backend
    everywhere through 0.4.5 runs the regular form only for a batch without any cached prefix
    and absorbs otherwise (``DeepseekV2AttentionMLA.forward`` in the 0.4.3 wheel, ``no_absorb``
    in 0.4.5's); Hopper's FA3 default from 0.4.6 absorbs only below
    :data:`SGLANG_MLA_CHUNKED_PREFIX` (``dispatch_attn_forward_method``, 0.4.6-0.4.9); ROCm's
    aiter default from 0.4.7 (16 or 128 heads a GPU) never absorbs a prompt batch."""
    if architecture == "hopper" and not _older(release, SGLANG_MLA_FA3_HOPPER):
        return SGLANG_MLA_CHUNKED_PREFIX
    if _amd_instinct(architecture) and not _older(release, "0.4.7"):
        return None
    return _ANY_PREFIX


SGLANG04_TRITON_MLA_PROMPT_SCALE = 6.2
"""How many times their FLOP time at the kernel tables' attention rate MLA prompt rows on the
absorbed path take on Hopper under SGLang 0.4.0-0.4.5's Triton extend kernel (MQA over the
576-wide latent, one query head per program, 32-query tiles, one pipeline stage:
``extend_attention_fwd`` in the 0.4.3 wheel). Fitted to the one public measurement of that
kernel against another on the same server, sgl-project/sglang#3550 (DeepSeek-V3 TP8 on 8 GPUs
the PR does not name: H200 assumed, as the FP8 weights do not fit 8×H100;
``--disable-radix-cache``; 60 random prompts of up to 32,000 tokens at 1 req/s): the Triton
backend's run reached 0.2545 of the FlashInfer MLA backend's throughput (2,679 against 10,527
tok/s), which absorbs no prompt rows; servesim's ratio is 0.2540 at 6.2 (the scale that matches
it: 6.19; ``python bench/fidelity/fit_sglang_triton_mla.py``; 6.5 until session 50 gave each
prefill curve its own KV-head weight, which moved the H200's MLA prefill). Only the ratio is
fitted: servesim prices both runs ~30% fast (3,455 and 13,600 tok/s)."""


def sglang04_mla_prompt_kernel_scale(release: str | None, architecture: str | None) -> float:
    """SGLang 0.4's kernel for MLA prompt rows on the absorbed path, over the tables' rate
    (``CostParams.mla_prompt_attention_scale``): the Triton extend kernel, the default MLA
    backend through 0.4.5, on Hopper (:data:`SGLANG04_TRITON_MLA_PROMPT_SCALE`); FA3 from 0.4.6
    and other GPUs (no measurement of the Triton kernel there) at the tables' rate."""
    if architecture == "hopper" and _older(release, SGLANG_MLA_FA3_HOPPER):
        return SGLANG04_TRITON_MLA_PROMPT_SCALE
    return 1.0


def sglang_mla_prompt_absorb(release: str | None, architecture: str | None) -> float | None:
    """SGLang 0.5's MLA form for a prompt batch, by its default attention backend (``release``
    None: the newest): FA3 on Hopper absorbs below :data:`SGLANG_MLA_CHUNKED_PREFIX` (the
    0.5.3 wheel's ``_handle_attention_backend``); FlashInfer, SM100's default, absorbs whenever
    there is a prefix in 0.5.0rc0-rc2 and as FA3 from 0.5.1, until ``trtllm_mla`` becomes
    SM100's default for DeepSeek-V3 models in 0.5.4 (``ServerArgs.
    _handle_model_specific_adjustments``), which like ROCm's aiter never absorbs a prompt
    batch; Triton elsewhere (Ampere, Ada, the RTX Blackwells) absorbs whenever there is one."""
    if architecture == "hopper":
        return SGLANG_MLA_CHUNKED_PREFIX
    if architecture == "blackwell":
        if not _older(release, "0.5.4"):
            return None
        return SGLANG_MLA_CHUNKED_PREFIX if not _older(release, "0.5.1") else _ANY_PREFIX
    if _amd_instinct(architecture):
        return None
    return _ANY_PREFIX


def lmdeploy_cache_max_entry_count(
    hbm_bytes: float, chunk: int, graph_max_bs: int, tp: int, pp: int, dp: int, release: str | None
) -> float:
    """LMDeploy's default ``cache_max_entry_count`` at ``release`` (None: the newest): 0.5 of
    all memory before :data:`LMDEPLOY_KV_OF_FREE`, 0.8 of the free memory from it."""
    return 0.5 if _older(release, LMDEPLOY_KV_OF_FREE) else 0.8


_PYTHON_API_SERVER = dict(
    api_request_s=3e-3,
    api_per_input_token_s=1e-6,
    api_stream_s=1e-3,
    api_before_await_share=ASYNCIO_BEFORE_AWAIT_SHARE,
)
"""An OpenAI-compatible Python API server's costs (see ``_API_SOURCE``): vLLM V1, SGLang,
trtllm-serve."""

VLLM_V0_WATERMARK = 0.01
"""vLLM V0's block manager admits a waiting request only while ``watermark_blocks =
int(0.01 × num_gpu_blocks)`` blocks stay free after its prompt's ("Use watermark to avoid
frequent cache eviction": ``BlockSpaceManager.can_allocate``, the ``watermark=0.01`` default
the scheduler never overrides; checked in the 0.5.4 wheel's block managers v1 and v2 and in
0.7.3's); appending a decode token (``can_append_slots``) does not look at it. The same check
counts every block of the prompt (``get_num_required_blocks`` of all its token ids), cached
prefix hits included (``EngineProfile.admission_counts_hits``)."""

VLLM_V0_ROCM_NO_LONG_CONTEXT_CHUNKING = "0.6.5"
"""From this vLLM release the long-context default (``EngineProfile.long_context_chunking``)
leaves ROCm GPUs out: ``create_engine_config`` adds ``not current_platform.is_rocm()`` to its
conditions (present in the 0.6.5, 0.6.6 and 0.7.x wheels, absent from 0.6.4's), so an AMD GPU
runs without chunked prefill, one whole prompt a step."""

VLLM_V0_MLA_NO_CHUNKING = "0.7.1"
"""From this vLLM release V0 runs a model with MLA (DeepSeek-V2/V3/R1) without chunked prefill
by default, so the long-context rule does not apply: 0.7.1-0.7.3 force it off after the
scheduler is configured (vllm-project/vllm#12642; the 0.7.3 wheel's ``VllmConfig.__post_init__``:
"MLA is enabled; forcing chunked prefill and prefix caching to be disabled"), and once MLA
could chunk (vllm-project/vllm#12639, 0.7.4.dev) V0's defaults still leave it off (the 0.8.0
wheel's ``EngineArgs._set_default_args_v0``: "Chunked prefill not supported for Multimodal or
MLA in V0"). The step budget is then the whole context window, ``max(max_model_len, 2048)``
(163,840 tokens for DeepSeek-R1), and vLLM's profiling run sizes the activation peak, and so
the KV cache, by it. NOTE: 0.7.1-0.7.3 with a context window over 32,768 tokens kept the
2,048-token budget of the long-context default and refused longer prompts
(vllm-project/vllm#13370); servesim gives them the whole-window budget of the releases after."""

VLLM_MLA_MATERIALIZED = ("0.7.1", "0.8.0")
"""vLLM releases whose MLA backends materialize the absorbed decode weights: 0.7.1 (MLA's
first release, vllm-project/vllm#12528) until vllm-project/vllm#14770 ("MLA get rid of
materialization", opened 2025-03-13; the 0.8.0 wheel keeps only bf16 ``W_UK_T``/``W_UV``).
The 0.7.3 wheel's ``mla/utils.py`` (``VLLM_MLA_PERFORM_MATRIX_ABSORPTION`` on by default)
builds ``W_Q_UK`` and ``W_UV_O``, requantized to FP8 when the weights are, and ``W_QR`` in
bf16, beside the original weights, which prefills keep using: DeepSeek-R1 holds ~4.5 GB more
per GPU at TP8, and every decode step reads ``W_UV_O`` (heads·512 × 7168) instead of
``o_proj`` (heads·128 × 7168). NOTE: the 0.7.4 nightlies after #14770 no longer do; a
scenario's dev release is taken as before it."""


DEEPSEEK_ROPE_GLUE = 14
"""Kernels of DeepSeek's YaRN rope run as PyTorch ops, less the one fused rope kernel servesim
prices: ``DeepseekScalingRotaryEmbedding.forward`` (vLLM 0.7.3 wheel; forward_cuda still falls
back to forward_native in the 0.10.2 and 0.11.0 wheels; SGLang until 0.4.5) gathers cos/sin
(1), interleaves each (2 + 2), and for queries and keys multiplies, rotates (a negation and a
stack) and adds (5 + 5): 15 kernels."""

DEEPSEEK_TOPK_COMPILED_GLUE = 8
"""Kernels of DeepSeek-V3's biased grouped top-k routing under ``torch.compile`` (vLLM from
0.7.2, vllm-project/vllm#12637; SGLang from 0.4.2.post2, sgl-project/sglang#3236: the decorator
is in that wheel's ``topk.py`` and not in 0.4.2.post1's), less the one fused routing kernel of
later releases: Inductor fuses the elementwise steps but not the three ``topk`` calls, the
group scatter and the reductions between them (~9 kernels). The eager form
(:data:`DEEPSEEK_TOPK_EAGER_GLUE`) runs each op as its own kernel."""

DEEPSEEK_TOPK_EAGER_GLUE = 16
"""Kernels of the eager biased grouped top-k (``grouped_topk`` in the vLLM 0.7.x
``fused_moe.py``, ``biased_grouped_topk`` in the SGLang 0.4.2 ``topk.py``): sigmoid, bias
add, per-group top-2, sum, group top-k, zeros, scatter, mask expand, bool, not, masked fill,
top-k, gather, sum, divide and two casts, 17 kernels, less the one of a fused routing kernel."""

_VLLM_V0_MLA_GLUE = DEEPSEEK_ROPE_GLUE + 1  # (+ kv_c.contiguous())
_SCALE_AND_ADD = 2  # (routed-scaling multiply, shared-expert add)

VLLM_V0_DEEPSEEK_GLUE: DeepSeekGlue = (
    ("0.7.2", _VLLM_V0_MLA_GLUE, DEEPSEEK_TOPK_EAGER_GLUE + _SCALE_AND_ADD, 0),
    (None, _VLLM_V0_MLA_GLUE, DEEPSEEK_TOPK_COMPILED_GLUE + _SCALE_AND_ADD, 0),
)
"""vLLM V0's unfused DeepSeek kernels (:attr:`EngineProfile.deepseek_glue`): V0 never compiles
the model, so the native rope (:data:`DEEPSEEK_ROPE_GLUE`) and the ``kv_c.contiguous()`` copy
before ``kv_a_layernorm`` run per MLA layer (``DeepseekV2MLAAttention.forward``, 0.7.3 wheel),
and per MoE layer the grouped top-k (eager before 0.7.2) and the routed-scaling multiply and
shared-expert add of ``DeepseekV2MoE.forward``."""

VLLM_DEEPSEEK_GLUE: DeepSeekGlue = (
    ("0.9.0", 3, DEEPSEEK_TOPK_COMPILED_GLUE, 0),
    ("0.10.2", 0, DEEPSEEK_TOPK_COMPILED_GLUE, 0),
)
"""vLLM V1's unfused DeepSeek kernels: its compiled graph fuses the elementwise glue, but in
0.8.x the MLA attention op, outside that graph, applies the rope itself (one fused CUDA kernel,
``rotary_emb.forward_cuda`` in the 0.8.4 wheel's ``v1/attention/backends/mla/common.py``) after
a ``contiguous()`` copy of the query's rope part and writes both results back: 3 kernels per MLA
layer until 0.9.0, whose MLA op no longer holds the rope. The grouped top-k stays a chain of
``topk`` kernels until the fused ``grouped_topk`` CUDA kernel (vllm-project/vllm#23274;
``VLLM_USE_FUSED_MOE_GROUPED_TOPK`` on by default in the 0.10.2 wheel, absent from the 0.9.0
wheel)."""

_SGLANG_MLA_QUANT_GLUE = 2 * 11  # (input_to_float8 twice, 12 ops each, against 1 kernel)
_SGLANG_MLA_GLUE = DEEPSEEK_ROPE_GLUE + _SGLANG_MLA_QUANT_GLUE + 3  # (+ q/k assembly copies)
_SGLANG_SHARED_EXPERT = 5  # (two quantisations, two GEMMs, the activation)
_SGLANG_ROCM_FEWER = _SGLANG_MLA_QUANT_GLUE - 2 * 2  # (ROCm: cast and rescale, 2 per bmm)

SGLANG_DEEPSEEK_GLUE: DeepSeekGlue = (
    (
        "0.4.2.post2",
        _SGLANG_MLA_GLUE,
        DEEPSEEK_TOPK_EAGER_GLUE + _SGLANG_SHARED_EXPERT + _SCALE_AND_ADD,
        _SGLANG_ROCM_FEWER,
    ),
    (
        "0.4.6",
        _SGLANG_MLA_GLUE,
        DEEPSEEK_TOPK_COMPILED_GLUE + _SGLANG_SHARED_EXPERT + _SCALE_AND_ADD,
        _SGLANG_ROCM_FEWER,
    ),
)
"""SGLang's unfused DeepSeek kernels before 0.4.6, the release that replaced them
(``DeepseekV2AttentionMLA.forward_absorb`` and ``DeepseekV2MoE`` in the 0.4.2-0.4.5 wheels
against 0.4.6): per MLA layer the native rope (:data:`DEEPSEEK_ROPE_GLUE`; sgl-kernel's
``apply_rope_with_cos_sin_cache_inplace`` from 0.4.6), the per-tensor FP8 quantisation of the
inputs to the two absorbed-weight ``bmm_fp8`` calls as ``input_to_float8`` (12 PyTorch ops
each, against one ``per_tensor_quant_mla_fp8`` kernel from 0.4.6: 2 × 11) and three more
copies assembling ``q_input``/``k_input``; per MoE layer the grouped top-k (compiled from
0.4.2.post2, ``moe_fused_gate`` from 0.4.6), the shared expert's own five kernels (two
quantisations, two GEMMs and the activation; fused into the routed experts as a 257th expert
from 0.4.6 on Hopper) and the scaling multiply and add. On ROCm the absorbed weights are
FP8-fnuz, which ``forward_absorb`` casts to bf16 and rescales (two kernels) before a plain
``bmm`` instead of quantising the input: 2 × 2 kernels where NVIDIA GPUs run 2 × 11, 18 fewer.
Checked against SGLang's own figures for DeepSeek-V3 at batch 1 on 8 H200s
(sgl-project/sglang#3236, 2025-01-31, ``bench_one_batch`` input 128): 27.1 ms a decode step
with the eager top-k, 25.7 ms compiled, and 169 ms for the 128-token prefill; servesim 25.0,
23.2 and 186 ms with these counts (10.2, 10.2 and 75 ms without: ``python
bench/fidelity/deepseek_glue_check.py``)."""


def vllm_fp8_attention(release: str | None, architecture: str | None) -> bool:
    """vLLM V1's FlashAttention backend on Hopper (FlashAttention-3) casts the queries to the
    FP8 KV cache's format and passes ``q/k/v_descale``, so attention runs in FP8 (``FlashAttention
    Impl.forward``: ``ops.scaled_fp8_quant(query, ...)`` when ``kv_cache_dtype`` is fp8, in the
    0.8.4, 0.9.0, 0.9.2 and 0.10.2 wheels; ``flash_attn_supports_fp8``: FA3 on SM90 only)."""
    return architecture == "hopper"


def sglang_fp8_attention(release: str | None, architecture: str | None) -> bool:
    """SGLang's FA3 attention backend, Hopper's default for non-MLA models from 0.4.6, casts
    ``q`` to the FP8 KV cache's dtype (``FlashAttentionBackend.forward_extend`` and
    ``forward_decode`` in the 0.5.3 wheel, "only use kv scaling if fp8 kv is explicitly
    enabled"); before 0.4.6 (FlashInfer) attention ran in bf16."""
    return architecture == "hopper" and not _older(release, "0.4.6")


SGLANG_FA3_HOPPER = "0.4.6"
"""The first SGLang release that runs FlashAttention-3 by default on Hopper for the non-MLA
models of :data:`SGLANG_FA3_ARCHITECTURES` (``ModelRunner.model_specific_adjustment`` with
``is_fa3_default_architecture`` in the 0.4.6 wheel); before it FlashInfer on every GPU."""

SGLANG_FLASHINFER_02 = "0.4.3"
"""The first SGLang release on FlashInfer 0.2 (``flashinfer_python>=0.2.1.post1``); 0.4.0 to
0.4.2.post4 pin ``flashinfer==0.1.6`` (the wheels' METADATA)."""
FLASHINFER_01_DECODE_GROUPS = (1, 2, 4, 8)
"""The GQA groups FlashInfer 0.1.6 built its CUDA-core decode kernels for: SGLang before 0.4.3
decodes these on CUDA cores and any other on the tensor-core prefill kernel (``should_use_tensor_
core`` with ``_grouped_size_compiled_for_decode_kernels``, 0.4.2 wheel)."""
FLASHINFER_TENSOR_CORE_ABOVE = 4
"""From FlashInfer 0.2, SGLang (``should_use_tensor_core``, 0.4.3 wheel) and vLLM decode a GQA
group above this on FlashInfer's tensor-core kernel, and any group over an FP8 cache."""


def flashinfer_decode_cuda_cores(
    profile: EngineProfile, release: str | None, group: int, kv_dtype: str | None
) -> bool:
    """Whether the engine at ``release`` (None: its newest) decodes a GQA group of ``group``
    query heads per KV head (one GPU's) on FlashInfer's CUDA-core kernel rather than its
    tensor-core one: on FlashInfer 0.1.6 (before ``profile.flashinfer_01_before``) for the
    groups of :data:`FLASHINFER_01_DECODE_GROUPS`; from 0.2 for groups up to
    :data:`FLASHINFER_TENSOR_CORE_ABOVE` over a 16-bit cache."""
    start = profile.flashinfer_01_before
    if start is not None and _older(release, start):
        return group in FLASHINFER_01_DECODE_GROUPS
    return group <= FLASHINFER_TENSOR_CORE_ABOVE and kv_dtype != "fp8"


SGLANG_FA3_EVERY_MHA = "0.5.8"
"""The first SGLang release that runs FA3 by default on Hopper for every non-MLA model
(``ServerArgs._handle_attention_backend`` in the 0.5.8 wheel, "flashinfer 0.6.1 caused
performance regression on Hopper", sgl-project/sglang#17411)."""

_SGLANG_FA3_046 = frozenset(
    {
        "Qwen2ForCausalLM",
        "Llama4ForConditionalGeneration",
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForConditionalGeneration",
    }
)
_SGLANG_FA3_047 = _SGLANG_FA3_046 - {"MistralForCausalLM"} | {
    "Qwen3ForCausalLM",
    "Qwen3MoeForCausalLM",
}
SGLANG_FA3_ARCHITECTURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("0.4.6", _SGLANG_FA3_046),
    ("0.4.7", _SGLANG_FA3_047),
    (
        "0.5.0rc0",
        _SGLANG_FA3_047
        | {
            "Glm4MoeForCausalLM",
            "Glm4vMoeForConditionalGeneration",
            "Step3VLForConditionalGeneration",
            "Olmo2ForCausalLM",
            "Glm4vForConditionalGeneration",
            "Qwen3VLForConditionalGeneration",
            "Qwen3VLMoeForConditionalGeneration",
        },
    ),
)
"""``is_fa3_default_architecture``'s list from each release on (the 0.4.6-0.5.7 wheels; 0.5.x
only adds classes — GLM-4.5, Step3-VL, OLMo 2, Qwen3-VL — so one set covers the series). GPT-OSS
has its own rule: FA3 on Hopper from its first release."""


def sglang_attention_backend(
    release: str | None, architecture: str | None, model_architecture: str
) -> str | None:
    """SGLang's default attention backend for a non-MLA model at ``release`` (None: the newest)
    on a GPU of ``architecture``, where it changes the price: ``flashinfer`` on Hopper before
    :data:`SGLANG_FA3_HOPPER`, and from it for the models outside that release's
    :data:`SGLANG_FA3_ARCHITECTURES` until :data:`SGLANG_FA3_EVERY_MHA`; ``fa3`` otherwise on
    Hopper (the tables' kernels). None off Hopper: FlashInfer there has no measured pair to
    price it by (``attention_fit.FLASHINFER_DECODE_SHARE``)."""
    if architecture != "hopper":
        return None
    if _older(release, SGLANG_FA3_HOPPER):
        return "flashinfer"
    if model_architecture == "GptOssForCausalLM" or not _older(release, SGLANG_FA3_EVERY_MHA):
        return "fa3"
    listed = frozenset[str]()
    for start, names in SGLANG_FA3_ARCHITECTURES:
        if not _older(release, start):
            listed = names
    return "fa3" if model_architecture in listed else "flashinfer"


_SGLANG_FUSED_MOE_ARCHITECTURES = frozenset(
    {"DeepseekV3ForCausalLM", "GptOssForCausalLM", "Glm4MoeForCausalLM", "Qwen3MoeForCausalLM"}
)
SGLANG_ALLREDUCE_FUSION: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    ("0.5.1", frozenset({"GptOssForCausalLM"}), frozenset({"blackwell"})),
    ("0.5.4", frozenset({"GptOssForCausalLM", "DeepseekV3ForCausalLM"}), frozenset({"blackwell"})),
    ("0.5.7", _SGLANG_FUSED_MOE_ARCHITECTURES, frozenset({"hopper", "blackwell"})),
    (
        "0.5.8",
        _SGLANG_FUSED_MOE_ARCHITECTURES | {"Glm4MoeLiteForCausalLM"},
        frozenset({"hopper", "blackwell"}),
    ),
    (
        "0.5.9",
        _SGLANG_FUSED_MOE_ARCHITECTURES
        | {"Glm4MoeLiteForCausalLM", "KimiK25ForConditionalGeneration"},
        frozenset({"hopper", "blackwell"}),
    ),
)
"""From each SGLang release on, the model classes and GPU architectures for which
``ServerArgs`` turns ``enable_flashinfer_allreduce_fusion`` on by itself (without DP attention,
on one node; from 0.5.7 also not on an H20 and without an all-to-all MoE backend), read in the
0.4.10 and 0.5.1-0.5.9 wheels: none in 0.4.10; GPT-OSS on SM100 from 0.5.1; DeepSeek-V3's class
too from 0.5.4; from 0.5.7 one list (DeepSeek-V3, GPT-OSS, GLM-4.5, Qwen3-MoE; GLM-4.7-Flash's
class from 0.5.8, Kimi-K2.5's from 0.5.9) on SM90 or SM100. The model's ``LayerCommunicator``
then replaces each all-reduce and the residual add + RMSNorm after it by FlashInfer's fused
kernel (``forward_with_allreduce_fusion``) in steps of at most 2,048 tokens on SM90/SM100."""


def sglang_allreduce_norm_fusion(
    release: str | None, architecture: str | None, gpu: str, model_architecture: str
) -> bool:
    """Whether SGLang at ``release`` (None: the newest) fuses its TP all-reduces with the
    residual add and RMSNorm after them for a model of HF class ``model_architecture`` on the
    GPU ``gpu`` of ``architecture`` (:data:`SGLANG_ALLREDUCE_FUSION`; the caller checks the
    split: TP > 1, no DP attention, one node, no all-to-all)."""
    rule = None
    for start, classes, architectures in SGLANG_ALLREDUCE_FUSION:
        if not _older(release, start):
            rule = classes, architectures
    if rule is None or architecture not in rule[1] or model_architecture not in rule[0]:
        return False
    # (0.5.7 on: "there is currently a bug on H20 device specifically", flashinfer#2204)
    return not (architecture == "hopper" and gpu.upper() == "H20")


VLLM_TRITON_SINK_ARCHITECTURES = frozenset({"ampere", "ada", "blackwell-rtx"})
"""GPU architectures on which vLLM's V1 engine runs a model with attention sinks (GPT-OSS) on
its Triton backend: FlashAttention-2 has no sinks, FlashAttention-3 (Hopper) and FlashInfer's
TensorRT-LLM kernels (datacentre Blackwell) do (``CudaPlatform.get_attn_backend_cls`` in the
0.10.2 and 0.11.0 wheels: "if has_sink and not cls.is_device_capability(90)" after the SM100
FlashInfer branch; vLLM's GPT-OSS recipe: "Ampere ... TRITON_ATTN attention backend")."""


def vllm_attention_backend(
    release: str | None, architecture: str | None, model_architecture: str
) -> str | None:
    """vLLM V1's default attention backend for a non-MLA model on a GPU of ``architecture``,
    where it changes the price: ``triton`` for GPT-OSS (attention sinks) on
    :data:`VLLM_TRITON_SINK_ARCHITECTURES` (every release that serves it); None otherwise (the
    measured tables' FlashAttention-class kernels)."""
    if model_architecture == "GptOssForCausalLM" and architecture in VLLM_TRITON_SINK_ARCHITECTURES:
        return "triton"
    return None


VLLM_FLASH_ATTN_MLA = "0.12.0"
"""The first vLLM release whose V1 engine picks the FlashAttention MLA backend first on Hopper
(``_get_backend_priorities`` in the 0.12.0 wheel's ``platforms/cuda.py``: FLASH_ATTN_MLA,
then FLASHMLA; the 0.11.0 wheel tries FlashMLA first). Its metadata builder sends every row
of at most :data:`VLLM_FLASH_ATTN_MLA_DECODE_ROWS` new tokens down the decode pathway
(``FlashAttnMLAMetadataBuilder.reorder_batch_threshold`` 512, "process small prefills with
decode pathway", ``QueryLenSupport.VARLEN``; ``split_decodes_and_prefills``): short prompts
and prompt chunks run MLA absorbed, as decodes do. Blackwell's default (CUTLASS MLA) and the
Triton MLA backend of other GPUs take single-token rows only."""

VLLM_FLASH_ATTN_MLA_DECODE_ROWS = 512


def vllm_mla_decode_rows(release: str | None, architecture: str | None) -> int:
    """The most new tokens a row vLLM V1's default MLA backend runs as a decode (absorbed) at
    ``release`` (None: the newest) on ``architecture``: :data:`VLLM_FLASH_ATTN_MLA_DECODE_ROWS`
    on Hopper from :data:`VLLM_FLASH_ATTN_MLA`, else 1."""
    if architecture == "hopper" and not _older(release, VLLM_FLASH_ATTN_MLA):
        return VLLM_FLASH_ATTN_MLA_DECODE_ROWS
    return 1


VLLM_HYBRID_KV_CACHE = "0.9.2"
"""The first vLLM release whose V1 engine pages the KV cache of a model mixing full-attention
and sliding-window layers by kind (vllm-project/vllm#17996's hybrid allocator;
``kv_cache_utils._get_kv_cache_config_uniform_page_size`` first in the 0.9.2 wheel, absent from
0.9.0's; on unless ``--disable-hybrid-kv-cache-manager``, and turned off with a KV connector or
KV events: servesim leaves it off for disaggregated serving, KV offload and speculative
decoding). gpt-oss's 18 sliding-window layers (128 tokens) then hold 9 pages of 16 tokens a
request, whatever its length, instead of one a block: about twice the KV capacity at long
contexts. vLLM's log divides its pages by the groups ("GPU KV cache size" counts one page of
every group per token slot), so the logged size is that of the uniform layout."""

VLLM_SLIDING_WINDOW_KV: tuple[tuple[str, str], ...] = (("0.8.3", "vllm"),)
"""vLLM V1 pages a model whose every layer uses a sliding window (Mistral-7B-v0.1, Starcoder2)
with its ``SlidingWindowManager`` from 0.8.3 (``SlidingWindowSpec`` from the model runner, the
manager in ``v1/core/specialized_manager.py``; both absent from the 0.8.2 wheel, where V1 pages
every token): ``remove_skipped_blocks`` frees the pages the window has passed, so a request
holds ``cdiv(window - 1, 16) + 1`` pages (257 for a 4,096-token window), whatever its length."""

VLLM_V0_SLIDING_WINDOW_KV: tuple[tuple[str, str], ...] = (
    ("0", "vllm-v0"),
    ("0.6.3", "vllm-v0-v2"),
)
"""vLLM V0's block managers reuse a sliding-window model's blocks cyclically: a request holds
``ceil(window / block_size)`` blocks with ``BlockSpaceManagerV1`` (the default until 0.6.3:
``use_v2_block_manager`` False in the 0.5.4 and 0.6.0 wheels, True in 0.6.3's) and
``window // block_size + 2`` with V2 (0.6.3 on; the only one in 0.7.3). V0 refuses prefix
caching with a sliding window, so the rule always applies. (0.6.0-0.6.2 with multi-step ran
V2 already; servesim gives those releases V1's count, one or two blocks fewer.)"""

SGLANG_SWA_POOL = "0.5.8"
"""The first SGLang release that keeps GPT-OSS's sliding-window layers in their own memory
pool: 0.5.0rc0-0.5.7 set ``disable_hybrid_swa_memory`` for ``GptOssForCausalLM``
unconditionally (``server_args.py``, checked in the 0.5.0rc0-0.5.7 wheels); 0.5.8 and 0.5.9
only with the ``trtllm_mha`` attention backend (GPT-OSS's default on SM100, the datacentre
Blackwells) or speculative decoding. The pool (``model_runner_kv_cache_mixin.
set_num_tokens_hybrid_swa``): the memory of ``T`` tokens of every layer becomes ``F = T × L /
(r × S + F_l)`` tokens of the ``F_l`` full-attention layers and ``r × F`` of the ``S``
sliding ones (``swa_full_tokens_ratio`` r = 0.8); requests are bounded by the full pool, so
GPT-OSS (18 + 18 layers) holds 36 / 32.4 = 1.11× the tokens."""

SGLANG_SWA_FULL_TOKENS_RATIO = 0.8
"""SGLang's ``--swa-full-tokens-ratio`` default (0.5.3-0.5.9 wheels)."""

SGLANG_HYBRID_SWA_MODEL_TYPES = ("gpt_oss", "llama4", "llama4_text")
"""``model_type`` of the models SGLang's ``is_hybrid_swa_model`` names from 0.5.8
(``GptOssForCausalLM``, ``Llama4ForConditionalGeneration``, whose chunked-attention layers it
pools like sliding-window ones; also MiMo-V2-Flash). Before 0.5.8 Llama 4's pool took
``--hybrid-kvcache-ratio`` (off by default: ``model_config.is_hybrid_model`` in the 0.4.9-0.5.7
wheels), and GPT-OSS's was disabled outright."""

VLLM_FUSED_MOE_CHUNKS: tuple[tuple[str, int], ...] = (
    ("0", 65536),
    ("0.6.0", 32768),
    ("0.12.0", 16384),
)
"""vLLM's ``VLLM_FUSED_MOE_CHUNK_SIZE`` default by release: the fused-MoE Triton kernel runs
at most this many tokens at a time and sizes its intermediate caches for them (``envs.py``
and ``fused_moe.py``, ``M = min(num_tokens, CHUNK_SIZE)``: 65,536 in the 0.5.4 wheel; 32,768
in 0.6.0, 0.6.6, 0.7.3, 0.8.5, 0.10.0 and 0.11.0; 16,384 in 0.12.0-0.15.0)."""

VLLM_ASYNC_SCHEDULING_DEFAULT = "0.14.0"
"""The vLLM release that turned async scheduling on by default (vllm-project/vllm#27614; its
release notes: "Async scheduling is now enabled by default"). 0.10.0-0.13 have it behind
``--async-scheduling``."""

VLLM_PIPELINE_ASYNC_SCHEDULING = "0.15.0"
"""The first vLLM release that runs async scheduling with pipeline parallelism (the 0.14.0
wheel's ``VllmConfig`` still refuses or disables it for ``pipeline_parallel_size > 1``; the
0.15.0 wheel's does not: vllm-project/vllm#32359, #32618)."""

OVERLAP_BLOCKERS = ("speculation", "draft_speculation")
"""Deployment traits an engine may leave its host overlap off for (``overlap_off_with``)."""

EAGLE_METHODS = ("eagle",)
"""servesim's speculative methods that draft EAGLE-style (what vLLM keeps async scheduling
on for)."""

_PYTHON_EXECUTOR_HOST = dict(host_step_s=5e-4, host_per_seq_s=2e-5, host_per_token_s=5e-8)
"""Host time of a Python engine loop per step (vLLM V1's engine core; TensorRT-LLM's
PyExecutor): see ``CostParams.host_step_s``."""

_ENGINE_PER_RANK = AttentionDP(budget_divisor=1, seqs_per_rank=True)
"""vLLM's ``--data-parallel-size`` and TensorRT-LLM's attention DP: every rank is an engine
with its own scheduler, token budget and running requests (vLLM docs, "Data Parallel
Deployment"; TensorRT-LLM ``enable_attention_dp``)."""

_VLLM_PROFILED_MEMORY = (
    "vLLM gpu_worker.determine_available_memory / utils.memory_profiling (the 0.10.2 and "
    "0.11.2 wheels; V0's worker from 0.6.4, while 0.5.4's counts the free memory the profile "
    "lost, the same peak held by PyTorch's cache): KV = total x gpu_memory_utilization - "
    "weights - the profile's torch peak (a max_num_batched_tokens forward pass, then the "
    "sampler on min(max_num_seqs, max_num_batched_tokens) rows) - the non-torch increase; "
    "scored against public start-up logs in bench/fidelity/memory.py"
)

_VLLM_FUSED_MLA = (
    "vLLM 0.10.0 deepseek_v2.py (first release with vllm-project/vllm#21116, checked in the "
    "0.9.2 and 0.10.0 wheels): fused_qkv_a_proj, one MergedReplicatedLinear for q_a and kv_a"
)

PROFILES: dict[str, EngineProfile] = {
    "vllm": EngineProfile(
        name="vllm",
        pipeline_batch_queue=True,
        window_budget=True,
        unchunked_budget_floor=True,
        mla_fused_down_proj_from="0.10.0",
        mla_decode_rows=vllm_mla_decode_rows,
        fp8_attention=vllm_fp8_attention,
        attention_backend=vllm_attention_backend,
        decode_serial_walk=True,
        kernel_backend="vllm",
        description="vLLM V1 engine: continuous batching with chunked prefill, engine core "
        "in its own process, host work overlapped with the GPU",
        versions=">= 0.8 (V1 engine)",
        # NOTE: servesim's defaults are vLLM V1's (servesim.knobs): one definition.
        policy=knobs.POLICY,
        max_num_seqs=knobs.MAX_NUM_SEQS,
        max_num_batched_tokens=knobs.MAX_NUM_BATCHED_TOKENS,
        enable_chunked_prefill=knobs.ENABLE_CHUNKED_PREFILL,
        enable_prefix_caching=knobs.ENABLE_PREFIX_CACHING,
        host_overlap=True,
        host_overlap_from=VLLM_ASYNC_SCHEDULING_DEFAULT,
        pipeline_overlap_from=VLLM_PIPELINE_ASYNC_SCHEDULING,
        overlap_off_with=("draft_speculation",),
        schedules_ahead=True,
        **_PYTHON_EXECUTOR_HOST,
        **_PYTHON_API_SERVER,
        cuda_graph_sizes=_vllm_graph_sizes(512),
        graph_max_tokens=512,
        graph_sizes_by_batch=vllm_v1_graph_sizes,
        batch_defaults=vllm_v1_batch_defaults,
        profiled_memory=True,
        sampler_at=vllm_v1_sampler,
        graph_reserve_from=VLLM_CUDA_GRAPH_PROFILING,
        attention_dp=_ENGINE_PER_RANK,
        deepseek_glue=VLLM_DEEPSEEK_GLUE,
        moe_chunk_tokens=VLLM_FUSED_MOE_CHUNKS,
        hybrid_kv_from=VLLM_HYBRID_KV_CACHE,
        sliding_kv=VLLM_SLIDING_WINDOW_KV,
        sources={
            "sliding_kv": "vLLM V1's SlidingWindowManager from 0.8.3 (see VLLM_SLIDING_WINDOW_KV)",
            "moe_chunk_tokens": "VLLM_FUSED_MOE_CHUNK_SIZE (see VLLM_FUSED_MOE_CHUNKS)",
            "hybrid_kv": "vLLM V1's hybrid KV cache manager from 0.9.2 (see VLLM_HYBRID_KV_CACHE)",
            "memory": _VLLM_PROFILED_MEMORY,
            "graphs": "vLLM V1 piecewise CUDA graphs (CompilationConfig): captured for token "
            "counts up to 512, mixed batches included; larger steps run the compiled model "
            "without graphs",
            "mla_decode_rows": "vLLM V1 MLA backends' reorder_batch_threshold (see "
            "VLLM_FLASH_ATTN_MLA)",
            "mla_fused_down_proj": _VLLM_FUSED_MLA,
            "attention_backend": "vLLM platforms/cuda.py: TRITON_ATTN for attention sinks "
            "(GPT-OSS) off Hopper and datacentre Blackwell (see "
            "VLLM_TRITON_SINK_ARCHITECTURES); its prompt cost from AIConfigurator's vLLM rows "
            "that time it beside FlashAttention-2 (catalog/kernels/triton_prefill.json)",
            "custom_allreduce": "vLLM's custom all-reduce (csrc/custom_all_reduce.cu, on by "
            "default for TP 2-8 over NVLink or XGMI; disable_custom_all_reduce=False)",
            "scheduler": "vLLM engine/arg_utils.py (V1 defaults by GPU and usage context, "
            "see vllm_v1_batch_defaults; the profile's 8192/256 are servesim's knobs for a GPU "
            "the scenario does not name), chunked prefill and prefix caching on",
            "host": "see CostParams.host_step_s / host_per_seq_s / host_per_token_s "
            "(vllm-project/vllm#17866; a public profile of Scheduler.schedule)",
            "host_overlap": "async scheduling (the engine core schedules step n+1 while the "
            "GPU runs step n): behind --async-scheduling from 0.10.0 (vllm-project/vllm#19970), "
            "the default from 0.14.0 (release notes: 'Async scheduling is now enabled by "
            "default', vllm-project/vllm#27614); before, the V1 engine core's loop schedules, "
            "runs the step and processes its outputs one after another. 0.10.0-0.10.1 "
            "overlapped the scheduler only; input preparation and sampling overlap from 0.10.2 "
            "(vllm-project/vllm#23569, 'Fully overlap model execution'): servesim overlaps "
            "all host work whenever the flag is on",
            "overlap_off_with": "vLLM config/vllm.py (0.14): async scheduling left unset is "
            "turned off with speculative methods outside EagleModelTypes (EAGLE, EAGLE-3, MTP), "
            "with a warning; also with pipeline_parallel_size > 1 until 0.15.0 (an explicit "
            "--async-scheduling with PP is refused: 0.10.2 and 0.14.0 wheels), see "
            "pipeline_overlap_from",
            "pipeline_overlap_from": "vllm-project/vllm#32359 and #32618 (Jan 2026, in the "
            "0.15.0 wheel): async scheduling with PP; #32618, Qwen3-30B-A3B FP8 at PP4, "
            "--async-scheduling against --no-async-scheduling: TPOT 31.8% lower, throughput "
            "30.8% higher, so the batch queue's micro-batches did not hide the host work",
            "schedules_ahead": "vLLM v1/engine/core.py step_with_batch_queue: with async "
            "scheduling the batch queue holds two steps; the next one is scheduled as soon as "
            "the one before it is taken off the queue, i.e. as the step in between starts, "
            "and requests that arrive later wait for the one after",
            "cuda_graph_sizes": "vLLM CompilationConfig.cudagraph_capture_sizes default "
            "(1, 2, 4, multiples of 8 to 256, of 16 to 512), by release and scheduler limits: "
            "see vllm_v1_graph_sizes",
            "api": _API_SOURCE,
        },
    ),
    "vllm-v0": EngineProfile(
        name="vllm-v0",
        pipeline_batch_queue=True,
        mla_fused_down_proj_from="0.10.0",
        kernel_backend="vllm",
        description="vLLM 0.5/0.6 (V0 engine): prompts run in their own steps (decodes "
        "wait), host work synchronous with the GPU step; --num-scheduler-steps N runs N "
        "decode steps per scheduling round",
        versions="0.2 - 0.7 (V0 engine)",
        policy="prefill_first",
        max_num_seqs=knobs.MAX_NUM_SEQS,  # (the same engine argument and default as V1's)
        max_num_batched_tokens=knobs.MAX_NUM_BATCHED_TOKENS,
        enable_chunked_prefill=False,
        enable_prefix_caching=False,
        host_overlap=False,
        host_step_s=2.5e-3,
        host_per_seq_s=4e-5,
        host_per_token_s=1e-7,
        api_request_s=4e-3,
        api_per_input_token_s=1e-6,
        api_stream_s=1e-3,
        api_before_await_share=ASYNCIO_BEFORE_AWAIT_SHARE,
        cuda_graph_sizes=_vllm_graph_sizes(256),
        graph_max_seq_len=8192,
        attention_dp=_ENGINE_PER_RANK,
        profiled_memory=True,
        sampler_at=_vllm_v0_sampler,
        long_context_chunking=(32768, 2048),
        long_context_vendor_from=("AMD", VLLM_V0_ROCM_NO_LONG_CONTEXT_CHUNKING),
        long_context_mla_from=VLLM_V0_MLA_NO_CHUNKING,
        mla_materialized_releases=VLLM_MLA_MATERIALIZED,
        deepseek_glue=VLLM_V0_DEEPSEEK_GLUE,
        moe_chunk_tokens=VLLM_FUSED_MOE_CHUNKS,
        window_budget=True,
        admission_watermark=VLLM_V0_WATERMARK,
        admission_counts_hits=True,
        sliding_kv=VLLM_V0_SLIDING_WINDOW_KV,
        sources={
            "sliding_kv": "vLLM V0 block managers' block_sliding_window / "
            "max_block_sliding_window (see VLLM_V0_SLIDING_WINDOW_KV)",
            "memory": _VLLM_PROFILED_MEMORY,
            "admission_watermark": "vLLM V0 BlockSpaceManager.can_allocate, watermark 0.01 "
            "(see VLLM_V0_WATERMARK)",
            "long_context": "vLLM EngineArgs.create_engine_config (0.5.4 - 0.7, "
            "vllm-project/vllm#6666): max_model_len > 32768 (checked in the 0.5.4, 0.6.0, "
            "0.6.3, 0.6.4, 0.6.5, 0.6.6, 0.7.0 and 0.7.3 wheels) turns chunked prefill on by "
            "default (no sliding window, speculative decoding or LoRA; not on ROCm from "
            "0.6.5, see VLLM_V0_ROCM_NO_LONG_CONTEXT_CHUNKING), and V0's "
            "SchedulerConfig then defaults max_num_batched_tokens to 2048 from 0.6.5 "
            "(vllm-project/vllm#10544; 512 before, its log: 'Chunked prefill is enabled with "
            "max_num_batched_tokens=512')",
            "long_context_mla": "MLA models run V0 without chunked prefill by default from "
            "0.7.1 (see VLLM_V0_MLA_NO_CHUNKING)",
            "mla_materialized": "absorbed MLA decode weights materialized in 0.7.1-0.7.x "
            "(see VLLM_MLA_MATERIALIZED)",
            "moe_chunk_tokens": "VLLM_FUSED_MOE_CHUNK_SIZE (see VLLM_FUSED_MOE_CHUNKS)",
            "graphs": "vLLM V0 model runner: CUDA graphs for decode batches only "
            "(enforce_eager=False); prefill and chunked steps run eagerly",
            "mla_fused_down_proj": _VLLM_FUSED_MLA,
            "custom_allreduce": "vLLM custom all-reduce, default since 0.3",
            "scheduler": "vLLM 0.5/0.6 docs, engine arguments: max_num_seqs 256, chunked "
            "prefill and prefix caching off by default; the V0 scheduler runs a prefill "
            "batch whenever a waiting request fits (vllm/core/scheduler.py _schedule_default)",
            "host": "estimate: V0 ran scheduling, input preparation, sampling and output "
            "processing between GPU steps; the multi-step scheduling PR "
            "(vllm-project/vllm#7000) reports ~1.3x throughput at 8 steps for 8B models on "
            "H100, which a few ms of synchronous host work per step explains",
            "cuda_graph_sizes": "vLLM 0.6 _BATCH_SIZES_TO_CAPTURE (1, 2, 4, multiples of 8 to 256)",
            "graph_max_seq_len": "vLLM V0 EngineArgs.max_seq_len_to_capture = 8192 (capped at "
            "max_model_len); ModelInputForGPUBuilder._use_captured_graph runs a decode batch's "
            "graph only if max_decode_seq_len <= it, else eagerly (checked in the 0.6.3 and "
            "0.7.3 wheels)",
            "api": _API_SOURCE,
        },
    ),
    "sglang": EngineProfile(
        name="sglang",
        pipeline_batch_queue=True,
        mla_fused_down_proj_from="0.4.6",
        deepseek_glue=SGLANG_DEEPSEEK_GLUE,
        mla_prompt_absorb=sglang_mla_prompt_absorb,
        fp8_attention=sglang_fp8_attention,
        attention_backend=sglang_attention_backend,
        allreduce_norm_fusion=sglang_allreduce_norm_fusion,
        kernel_backend="sglang",
        description="SGLang: prefill batches before decode batches (prompts chunked by GPU "
        "memory), overlap scheduler (host work beside the GPU), radix prefix cache, look-ahead "
        "admission",
        versions=">= 0.5 (0.4: `sglang-0.4`)",
        policy="prefill_first",
        max_num_seqs=4096,
        max_num_batched_tokens=8192,
        enable_chunked_prefill=True,
        enable_prefix_caching=True,
        admission="reserve",
        host_overlap=True,
        overlap_off_with=("speculation",),
        schedules_ahead=True,
        host_step_s=3e-4,
        host_per_seq_s=1e-5,
        host_per_token_s=5e-8,
        **_PYTHON_API_SERVER,
        cuda_graph_sizes=_sglang_graph_sizes(),
        moe_backend="sglang",
        batch_defaults=sglang_batch_defaults,
        graph_sizes_by_gpu=sglang_graph_sizes_by_gpu,
        kv_of_static=True,
        memory_fraction=sglang_mem_fraction_static,
        attention_dp=AttentionDP(conservativeness=0.3),
        swa_pool_from=SGLANG_SWA_POOL,
        flashinfer_01_before=SGLANG_FLASHINFER_02,
        sources={
            "swa_pool": "SGLang's hybrid SWA memory pool for GPT-OSS from 0.5.8 (see "
            "SGLANG_SWA_POOL)",
            "graphs": "SGLang CudaGraphRunner: decode batches up to cuda_graph_max_bs; "
            "prefill (extend) batches run eagerly",
            "mla_prompt_absorb": "SGLang DeepseekV2AttentionMLA picks the MLA form of an "
            "extend batch from sum(extend_prefix_lens) by attention backend (the 0.4.3, 0.4.5, "
            "0.4.6-0.4.9, 0.5.0rc0-0.5.9 wheels; see sglang_mla_prompt_absorb)",
            "mla_fused_down_proj": "SGLang 0.4.6 deepseek_v2.py (sgl-project/sglang#5619, "
            "merged 2025-04-22; absent in the 0.4.5.post3 wheel): fused_qkv_a_proj_with_mqa, one "
            "ReplicatedLinear for q_a and kv_a",
            "custom_allreduce": "SGLang reuses vLLM's custom all-reduce kernels (sgl-kernel)",
            "scheduler": "SGLang server arguments: chunked_prefill_size 8192, prefill "
            "prioritised over decode (schedule_policy / scheduler.get_next_batch_to_run), "
            "max_running_requests from the KV pool: min(max(kv_tokens / context_len * 512, "
            "2048), 4096) (model_runner; 4096 once the pool holds 8 context windows); "
            "admission (PrefillAdder) reserves new_token_ratio of the running requests' "
            "remaining outputs (schedule_policy.py, global_config.py)",
            "host": "estimate: SGLang 0.4's overlap ('zero-overhead') scheduler runs CPU "
            "scheduling of batch n+1 beside the GPU step of batch n",
            "overlap_off_with": "SGLang server_args.py _handle_speculative_decoding ('Overlap "
            "scheduler is disabled because of using eagle speculative decoding') sets "
            "disable_overlap_schedule (so does _handle_pipeline_parallelism, but the pipeline "
            "loop keeps micro-batches in flight)",
            "schedules_ahead": "SGLang managers/scheduler.py event_loop_overlap: each "
            "iteration receives requests, forms and launches the next batch, then waits for "
            "the previous batch's result; a request received after a batch was formed waits "
            "for the batch after it",
            "cuda_graph_sizes": "SGLang ServerArgs default cuda_graph_bs (1, 2, 4, 8, 12, "
            "16, 24, multiples of 8 to 160)",
            "attention_dp": "SGLang server_args.py, --enable-dp-attention: "
            "chunked_prefill_size //= dp_size (each rank's share), schedule_conservativeness "
            "*= 0.3 (0.5); 0.4: chunked_prefill_size //= 2, cuda_graph_max_bs = min(, 96), "
            "overlap scheduler off",
            "api": _API_SOURCE,
        },
    ),
    "trtllm": EngineProfile(
        name="trtllm",
        mla_fused_down_proj_from="0",
        kernel_backend="trtllm",
        description="TensorRT-LLM: C++ runtime with in-flight batching (context and "
        "generation in one batch), negligible host overhead per step",
        versions=">= 0.6",
        policy="vllm",
        max_num_seqs=2048,
        max_num_batched_tokens=8192,
        kv_of_free=True,
        admission="guaranteed",
        attention_dp=_ENGINE_PER_RANK,
        enable_chunked_prefill=False,
        enable_prefix_caching=False,
        host_overlap=True,
        host_step_s=1e-4,
        host_per_seq_s=2e-6,
        host_per_token_s=1e-8,
        graph_max_tokens=None,
        api_request_s=1.5e-3,
        api_per_input_token_s=5e-7,
        api_stream_s=5e-4,
        sources={
            "graphs": "TensorRT engines run from C++: no per-kernel Python issue in any step",
            "mla_fused_down_proj": "TensorRT-LLM _torch/modules/attention.py MLA: "
            "kv_a_proj_with_mqa is one Linear of q_lora_rank + kv_lora_rank + qk_rope_head_dim "
            "outputs (DeepSeek runs on the PyTorch flow)",
            "custom_allreduce": "TensorRT-LLM AllReduce plugin (one-shot / two-shot custom "
            "kernels for NVLink, use_custom_all_reduce)",
            "scheduler": "TensorRT-LLM build/runtime defaults: max_batch_size 2048 "
            "(trtllm-bench), max_num_tokens 8192, in-flight batching mixes context and "
            "generation requests, chunked context off by default",
            "host": "estimate: the C++ batch manager and a whole-model CUDA graph/engine "
            "leave ~0.1 ms of host time per iteration",
            "api": "estimate: C++ executor behind a thin server (Triton / trtllm-serve); "
            "about half the Python API server's cost",
        },
    ),
    "lmdeploy": EngineProfile(
        name="lmdeploy",
        description="LMDeploy TurboMind: C++ engine with persistent batching (prefill and "
        "decode in one iteration), low host overhead",
        versions=">= 0.1",
        policy="vllm",
        max_num_seqs=256,
        max_num_batched_tokens=8192,
        enable_chunked_prefill=True,
        enable_prefix_caching=False,
        kv_of_free=True,
        kv_of_total_before=LMDEPLOY_KV_OF_FREE,
        memory_fraction=lmdeploy_cache_max_entry_count,
        block_size=64,
        block_size_before=((LMDEPLOY_BLOCK_64, 128),),
        host_overlap=True,
        host_step_s=2e-4,
        host_per_seq_s=5e-6,
        host_per_token_s=2e-8,
        graph_max_tokens=None,
        api_request_s=2e-3,
        api_per_input_token_s=1e-6,
        api_stream_s=1e-3,
        api_before_await_share=ASYNCIO_BEFORE_AWAIT_SHARE,
        sources={
            "graphs": "TurboMind runs its kernels from C++: no per-kernel Python issue",
            "custom_allreduce": "LMDeploy TurboMind custom all-reduce (src/turbomind/comm, "
            "custom kernels over NVLink)",
            "scheduler": "LMDeploy TurbomindEngineConfig defaults: max_batch_size 256 (A100 "
            "class), max_prefill_token_num 8192 (long prompts split across iterations)",
            "memory": "LMDeploy TurboMind BlockManager::GetBlockCount: cache_max_entry_count × "
            "cudaMemGetInfo total before 0.2.2 (default 0.5), × free memory from 0.2.2 "
            "(default 0.8); cache_block_seq_len 128 before 0.3.0, 64 from it (see "
            "LMDEPLOY_KV_OF_FREE)",
            "host": "estimate: TurboMind's C++ request loop runs beside the GPU",
            "api": _API_SOURCE,
        },
    ),
    "gpt-fast": EngineProfile(
        name="gpt-fast",
        description="gpt-fast / plain PyTorch: torch.compile'd decode in one CUDA graph, one "
        "static batch, NCCL all-reduce, no serving loop",
        versions="pytorch-labs/gpt-fast (2023-2024)",
        policy="static",
        max_num_seqs=knobs.MAX_NUM_SEQS,  # (no such knob: one static batch; servesim's defaults)
        max_num_batched_tokens=knobs.MAX_NUM_BATCHED_TOKENS,
        enable_chunked_prefill=False,
        enable_prefix_caching=False,
        host_overlap=True,
        host_step_s=2e-5,
        host_per_seq_s=0.0,
        host_per_token_s=0.0,
        api_request_s=0.0,
        api_per_input_token_s=0.0,
        api_stream_s=0.0,
        custom_allreduce=False,
        sources={
            "graphs": "gpt-fast compiles the decode step (mode 'reduce-overhead': CUDA graphs); "
            "prefill runs eagerly unless --compile_prefill",
            "scheduler": "gpt-fast generate.py: one batch, prefill then a decode loop",
            "host": "estimate: the whole decode step is one compiled CUDA graph (mode "
            "'reduce-overhead'); the Python loop costs ~20 µs a token",
            "custom_allreduce": "gpt-fast tp.py: torch.distributed functional all_reduce (NCCL)",
            "api": "none: generate.py runs in-process, no server",
        },
    ),
}
"""The named profiles (choose with ``engine:`` / ``--engine``)."""

PROFILES["trtllm-pytorch"] = replace(
    PROFILES["trtllm"],
    name="trtllm-pytorch",
    description="TensorRT-LLM's PyTorch backend (trtllm-serve's default from 1.0): a Python "
    "executor with the overlap scheduler, CUDA graphs for decode-only batches of exactly a "
    "captured size, every other step eager",
    versions=">= 1.0 (PyTorch backend; the TensorRT engine backend: `trtllm`)",
    graph_max_tokens=0,
    cuda_graph_sizes=(*range(1, 32), 32, 64, 128),
    graph_padding=False,
    schedules_ahead=True,
    **_PYTHON_EXECUTOR_HOST,
    **_PYTHON_API_SERVER,
    sources={
        **PROFILES["trtllm"].sources,
        "graphs": "TensorRT-LLM llm_args.py: cuda_graph_config defaults to CudaGraphConfig() "
        "(decode-only batches), batch sizes 1-31, 32, 64, 128 (max_batch_size 128, "
        "_generate_cuda_graph_batch_sizes without padding), enable_padding False: another "
        "batch size runs eagerly, as every step with context requests does",
        "host": "estimate: the Python PyExecutor loop (scheduling, resource management) with "
        "the overlap scheduler on (disable_overlap_scheduler False), as vLLM V1's",
        "schedules_ahead": "TensorRT-LLM pyexecutor/py_executor.py _executor_loop_overlap: "
        "fetches new requests, schedules and launches batch n+1, then processes batch n's "
        "results",
        "api": _API_SOURCE,
    },
)

PROFILES["sglang-0.4"] = replace(
    PROFILES["sglang"],
    name="sglang-0.4",
    description="SGLang 0.4 (late 2024 - spring 2025): as `sglang`, with that release's "
    "defaults: prompts chunked at 8192 tokens and decode CUDA graphs up to 160 sequences (2048 "
    "and 8 or 80 on GPUs under 25,000 MiB); DP attention's rules by release",
    versions="0.4.x",
    cuda_graph_sizes=sglang04_graph_sizes_by_gpu(80e9, 1),
    batch_defaults=sglang04_batch_defaults,
    graph_sizes_by_gpu=sglang04_graph_sizes_by_gpu,
    memory_fraction=sglang04_mem_fraction_static,
    mla_prompt_absorb=sglang04_mla_prompt_absorb,
    mla_prompt_kernel_scale=sglang04_mla_prompt_kernel_scale,
    allreduce_norm_fusion=None,  # (no 0.4 release turns it on: SGLANG_ALLREDUCE_FUSION)
    # (server_args.py under --enable-dp-attention, checked in the 0.4.0-0.4.9 wheels: the
    # prefill chunk // 2, then // dp_size from 0.4.5; conservativeness x 0.3 throughout; CUDA
    # graphs capped at 96 sequences in 0.4.0 only; the overlap scheduler off in 0.4.0-0.4.1.)
    attention_dp=AttentionDP(
        conservativeness=0.3,
        before=(
            ("0.4.1", "graph_max_per_rank", 96),
            ("0.4.2", "host_overlap", False),
            ("0.4.5", "budget_divisor", 2),
        ),
    ),
)

ENGINES = tuple(PROFILES)


def host_overlap_of(
    profile: EngineProfile,
    engine_version: str | None,
    async_scheduling: bool | None,
    *,
    speculative_method: str | None = None,
    pp: int = 1,
) -> bool:
    """Whether the engine's host work overlaps its GPU steps: never under pipeline
    parallelism (``pp`` > 1) before ``profile.pipeline_overlap_from``; else the scenario's
    ``async_scheduling`` when given, else the profile's default at ``engine_version`` (None:
    the newest release), off before ``profile.host_overlap_from`` and for the deployments of
    ``profile.overlap_off_with`` (``speculative_method``: the scenario's
    ``speculative.method``, ``draft:MODEL``, ``ngram`` or ``eagle``)."""
    piped = profile.pipeline_overlap_from
    if pp > 1 and piped is not None and _older(engine_version, piped):
        return False
    if async_scheduling is not None:
        return async_scheduling
    start = profile.host_overlap_from
    if start is not None and _older(engine_version, start):
        return False
    blockers = profile.overlap_off_with
    if "speculation" in blockers and speculative_method is not None:
        return False
    if "draft_speculation" in blockers and speculative_method not in (None, *EAGLE_METHODS):
        return False
    return profile.host_overlap


def moe_chunk_tokens(profile: EngineProfile, engine_version: str | None) -> int | None:
    """Tokens the engine's fused-MoE kernel runs at a time at ``engine_version`` (None: its
    newest release), from ``profile.moe_chunk_tokens``; None: a step's tokens all at once."""
    chunk = None
    for start, tokens in profile.moe_chunk_tokens:
        if not _older(engine_version, start):
            chunk = tokens
    return chunk


VLLM_CHUNKED_LOCAL_KV = "0.10.0"
"""The first vLLM release that pages Llama 4's chunked local-attention layers apart
(``ChunkedLocalAttentionSpec`` and ``ChunkedLocalAttentionManager``: absent from the 0.9.2
wheel, present in 0.10.0's): before it, the hybrid manager saw every Llama 4 layer as full
attention."""

_CHUNKED_ATTENTION_TYPES = ("llama4", "llama4_text")


def hybrid_kv(profile: EngineProfile, engine_version: str | None, model_type: str = "") -> bool:
    """Whether the engine at ``engine_version`` (None: its newest release) pages the KV cache
    by layer kind (``profile.hybrid_kv_from``; for Llama 4's chunked attention, vLLM from
    :data:`VLLM_CHUNKED_LOCAL_KV`)."""
    start = profile.hybrid_kv_from
    if start is None:
        return False
    if model_type in _CHUNKED_ATTENTION_TYPES and release_before(start, VLLM_CHUNKED_LOCAL_KV):
        start = VLLM_CHUNKED_LOCAL_KV
    return not _older(engine_version, start)


def swa_pool_ratio(
    profile: EngineProfile,
    engine_version: str | None,
    model_type: str,
    architecture: str | None,
    speculative: bool,
) -> float | None:
    """SGLang's ``swa_full_tokens_ratio`` when the engine at ``engine_version`` (None: its
    newest release) keeps the model's sliding-window layers in their own pool
    (:data:`SGLANG_SWA_POOL`); None when it pages every layer alike: other models, releases
    before ``profile.swa_pool_from``, and for GPT-OSS datacentre Blackwell GPUs
    (``architecture`` "blackwell": its ``trtllm_mha`` attention there) and speculative
    decoding (``server_args.py`` 0.5.8-0.5.9 turns the pool off for GPT-OSS only)."""
    start = profile.swa_pool_from
    if start is None or _older(engine_version, start):
        return None
    if model_type not in SGLANG_HYBRID_SWA_MODEL_TYPES:
        return None
    if model_type == "gpt_oss" and (architecture == "blackwell" or speculative):
        return None
    return SGLANG_SWA_FULL_TOKENS_RATIO


def sliding_kv(profile: EngineProfile, engine_version: str | None) -> str | None:
    """The page rule by which the engine at ``engine_version`` (None: its newest release) holds
    the KV of an all-sliding-window model (``profile.sliding_kv``); None: every token's."""
    rule = None
    for start, name in profile.sliding_kv:
        if not _older(engine_version, start):
            rule = name
    return rule


def mla_materialized(profile: EngineProfile, engine_version: str | None) -> bool:
    """Whether the engine at ``engine_version`` (None: its newest release) materializes MLA's
    absorbed decode weights (``profile.mla_materialized_releases``)."""
    span = profile.mla_materialized_releases
    if span is None or engine_version is None:
        return False
    return not _older(engine_version, span[0]) and _older(engine_version, span[1])


def deepseek_glue_kernels(
    profile: EngineProfile, engine_version: str | None, vendor: str | None = None
) -> tuple[float, float]:
    """Unfused kernels per MLA layer and per MoE layer of a DeepSeek-style model that the
    engine at ``engine_version`` (None: its newest release) launches beyond servesim's
    operators on a GPU of ``vendor`` (``profile.deepseek_glue``; None: NVIDIA's count)."""
    for until, per_attention, per_moe, cuda_only in profile.deepseek_glue:
        if until is None or _older(engine_version, until):
            if vendor not in (None, "NVIDIA"):
                per_attention -= cuda_only
            return float(per_attention), float(per_moe)
    return 0.0, 0.0


def fp8_attention(
    profile: EngineProfile, engine_version: str | None, architecture: str | None
) -> bool:
    """Whether the engine at ``engine_version`` (None: its newest release) runs attention in
    FP8 over an FP8 KV cache on ``architecture`` (``profile.fp8_attention``)."""
    rule = profile.fp8_attention
    return rule is not None and rule(engine_version, architecture)


def attention_backend(
    profile: EngineProfile,
    engine_version: str | None,
    architecture: str | None,
    model_architecture: str,
) -> str | None:
    """The engine's default attention backend at ``engine_version`` (None: its newest release)
    on ``architecture`` for a non-MLA model of HF class ``model_architecture``, where it
    changes the price (``profile.attention_backend``); None: the measured tables' kernels."""
    rule = profile.attention_backend
    return None if rule is None else rule(engine_version, architecture, model_architecture)


def allreduce_norm_fusion(
    profile: EngineProfile,
    engine_version: str | None,
    architecture: str | None,
    gpu: str,
    model_architecture: str,
) -> bool:
    """Whether the engine at ``engine_version`` (None: its newest release) fuses each TP
    all-reduce with the residual add and RMSNorm after it on the GPU ``gpu`` of
    ``architecture`` for a model of HF class ``model_architecture``
    (``profile.allreduce_norm_fusion``)."""
    rule = profile.allreduce_norm_fusion
    return rule is not None and rule(engine_version, architecture, gpu, model_architecture)


def mla_decode_rows(
    profile: EngineProfile, engine_version: str | None, architecture: str | None
) -> int:
    """The most new tokens of a row the engine at ``engine_version`` (None: its newest
    release) runs through MLA's absorbed (decode) form on ``architecture``
    (``profile.mla_decode_rows``; 1 without one)."""
    rule = profile.mla_decode_rows
    return 1 if rule is None else rule(engine_version, architecture)


def mla_prompt_absorb(
    profile: EngineProfile, engine_version: str | None, architecture: str | None
) -> float | None:
    """The cached prefix below which the engine at ``engine_version`` (None: its newest
    release) runs an MLA prompt batch absorbed on ``architecture`` (``profile.
    mla_prompt_absorb``); None: it never does."""
    rule = profile.mla_prompt_absorb
    return None if rule is None else rule(engine_version, architecture)


def mla_prompt_attention_scale(
    profile: EngineProfile, engine_version: str | None, architecture: str | None
) -> float:
    """How many times the tables' time the engine at ``engine_version`` (None: its newest
    release) takes for MLA prompt rows on the absorbed path on ``architecture`` (``profile.
    mla_prompt_kernel_scale``)."""
    rule = profile.mla_prompt_kernel_scale
    return 1.0 if rule is None else rule(engine_version, architecture)


def mla_fused_down_proj(profile: EngineProfile, engine_version: str | None) -> bool:
    """Whether the engine at ``engine_version`` (None: its newest release) runs MLA's
    down-projections as one GEMM (``profile.mla_fused_down_proj_from``)."""
    start = profile.mla_fused_down_proj_from
    if start is None:
        return False
    return not _older(engine_version, start)


RELEASE_SPANS: dict[str, tuple[str | None, str | None, str, str]] = {
    "vllm": (
        "0.8.0rc0", None,
        "vLLM ran its V0 engine by default before 0.8.0 (V1 only with VLLM_USE_V1=1): "
        "`--engine vllm-v0` models it", "",
    ),
    "vllm-v0": (
        None, "0.11.0rc0", "",
        "vLLM 0.11.0 removed the V0 engine: `--engine vllm` models its V1 engine",
    ),
    "sglang": ("0.5.0rc0", None, "`--engine sglang-0.4` models SGLang 0.4", ""),
    "sglang-0.4": (
        "0.4.0", "0.5.0rc0", "the sglang-0.4 profile describes SGLang 0.4.x only",
        "`--engine sglang` models SGLang 0.5 and later",
    ),
}  # fmt: skip
"""Per profile: (first release it describes, first release it no longer does, what to use below,
what to use from the second on): vLLM's V1 engine became the default in 0.8.0 and the only one
in 0.11.0; SGLang 0.4 and 0.5 are separate profiles here."""


def release_outside_profile(name: str, release: str | None) -> str | None:
    """Why ``release`` of the engine falls outside the releases profile ``name`` describes (a
    warning: the run goes on with the profile's rules), or None (None release: the newest)."""
    first, after, below, above = RELEASE_SPANS.get(name, (None, None, "", ""))
    if release is None:
        return None
    if first is not None and _older(release, first):
        return f"{name} {release} predates the {name} profile (from {_shown(first)}); {below}"
    if after is not None and not _older(release, after):
        return f"{name} {release} is past the {name} profile (before {_shown(after)}); {above}"
    return None


def _shown(threshold: str) -> str:
    # (a span starts at a release's first candidate, "0.8.0rc0": shown as the release)
    return threshold.removesuffix("rc0")


def engine_profile(name: str) -> EngineProfile:
    """The profile called ``name``; ServesimError naming the valid ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        from servesim.errors import ServesimError

        raise ServesimError(
            f"unknown engine {name!r}", field="engine", fix=f"use one of: {', '.join(ENGINES)}"
        ) from None


def scheduler_defaults(
    profile: EngineProfile,
    given: dict[str, Any],
    gpu: tuple[float, str, str] | None = None,
    api_server: bool = True,
    split: tuple[int, int, int] = (1, 1, 1),
    context_window: int | None = None,
    long_context_ok: bool = True,
    release: str | None = None,
    mla: bool = False,
) -> dict[str, Any]:
    """The scheduler section ``given`` (fields the user set) completed with the profile's
    defaults. An explicit field always wins; turning chunked prefill on under a
    prefill-first engine (vLLM V0) without naming a policy selects ``sarathi``, V0's
    chunked-prefill scheduler (decodes first, then prompt chunks). ``gpu`` (HBM bytes, name,
    vendor) and ``api_server`` pick the batch defaults of an engine that sizes them by the GPU
    (``EngineProfile.batch_defaults``); with ``split`` (tp, pp, dp) they also pick the memory
    fraction of an engine that sizes it itself (``EngineProfile.memory_fraction``); with the
    model's ``context_window`` (None: not known), the chunked prefill of an engine that turns
    it on for long-context models (``EngineProfile.long_context_chunking``; not for a model
    with a sliding window or a speculative scenario: ``long_context_ok`` False; nor on the GPUs
    of ``EngineProfile.long_context_vendor_from``; nor, with ``mla`` (the model has MLA), from
    ``EngineProfile.long_context_mla_from``) and the budget
    of one that fits a whole prompt per step (``EngineProfile.window_budget``); ``release``:
    the engine's, for batch defaults that changed between releases (None: the newest)."""
    tokens, seqs = profile.max_num_batched_tokens, profile.max_num_seqs
    if profile.batch_defaults is not None and gpu is not None:
        tokens, seqs = profile.batch_defaults(gpu[0], gpu[1], api_server, release)
    rule = profile.long_context_chunking
    left_out = profile.long_context_vendor_from
    if left_out is not None and gpu is not None and gpu[2].upper() == left_out[0]:
        long_context_ok = long_context_ok and _older(release, left_out[1])
    mla_from = profile.long_context_mla_from
    if mla and mla_from is not None:
        long_context_ok = long_context_ok and _older(release, mla_from)
    if (
        rule is not None
        and long_context_ok
        and context_window is not None
        and context_window > rule[0]
        and "enable_chunked_prefill" not in given
    ):
        given = {"enable_chunked_prefill": True, **given}
        tokens = rule[1]
    chunked = given.get("enable_chunked_prefill", profile.enable_chunked_prefill)
    if profile.window_budget and context_window is not None and chunked is False:
        tokens = max(context_window, 2048)
    extra: dict[str, Any] = {}
    if profile.memory_fraction is not None and gpu is not None:
        tp, pp, dp = split
        chunk = given.get("max_num_batched_tokens", tokens)
        sizes = profile.for_gpu(gpu[0], tp * dp, release=release).cuda_graph_sizes
        if isinstance(chunk, int):
            extra["gpu_memory_utilization"] = profile.memory_fraction(
                gpu[0], chunk, sizes[-1] if sizes else 0, tp * dp, pp, dp, release
            )
    out = {
        "policy": profile.policy,
        "max_num_seqs": seqs,
        "max_num_batched_tokens": tokens,
        "enable_chunked_prefill": profile.enable_chunked_prefill,
        "enable_prefix_caching": profile.enable_prefix_caching,
        "admission": profile.admission,
        **extra,
    }
    block = profile.block_size_at(release)
    if block is not None:
        out["block_size"] = block
    if (
        "policy" not in given
        and profile.name == "vllm-v0"
        and given.get("enable_chunked_prefill") is True
    ):
        out["policy"] = "sarathi"
    out.update(given)
    budget = out.get("max_num_batched_tokens")
    if (
        profile.unchunked_budget_floor
        and out.get("enable_chunked_prefill") is False
        and context_window is not None
        and isinstance(budget, int)
        and 0 < budget < context_window
    ):
        from servesim.errors import ServesimError

        raise ServesimError(
            f"is {budget:,}, below the {context_window:,}-token context window with chunked "
            f"prefill off: {profile.name} refuses to start (vLLM's SchedulerConfig: "
            "max_num_batched_tokens is smaller than max_model_len)",
            field="max_num_batched_tokens",
            fix=f"use at least {context_window:,}, lower --max-model-len, or turn chunked "
            "prefill on",
        )
    return out
