"""Knobs of the cost model: how the model is split over GPUs, and the modelling constants."""

from __future__ import annotations

from dataclasses import dataclass

from servesim.errors import ServesimError
from servesim.model import ModelSpec

FIDELITIES = ("roofline", "calibrated", "profiled")
HEADS = ("lm", "value")


KERNEL_BACKENDS = ("trtllm", "vllm", "sglang")
SLIDING_KV_RULES = ("vllm", "vllm-v0", "vllm-v0-v2")
"""Engines' rules for the pages a request of an all-sliding-window model holds (their formulas:
``memory.SLIDING_WINDOW_PAGES``)."""
"""Serving backends whose measured kernel tables the ``servesim[kernels]`` extra can read."""


@dataclass(frozen=True)
class Parallelism:
    """How one model replica is split over GPUs.

    - ``tp``: tensor parallelism. Attention heads, MLP columns, embedding and LM head rows are
      split ``tp`` ways; two all-reduces per layer (plus one after the embedding) join the parts.
      When ``tp`` exceeds the KV heads, each KV head is replicated so every GPU holds one (vLLM).
    - ``pp``: pipeline stages; layers are split evenly, earlier stages take the remainder.
    - ``ep``: with ``dp = 1``, expert parallelism *inside the TP group* (vLLM
      ``--enable-expert-parallel`` with one data-parallel rank): the routed experts are spread
      over ``ep`` groups and each expert is tensor-split over the ``tp // ep`` GPUs of its group.
      Tokens are already on every GPU after attention, so EP changes which expert weights a GPU
      holds and reads, not the communication (the post-MoE all-reduce stays).
    - ``dp``: attention data parallelism inside the replica (vLLM ``--data-parallel-size`` with
      expert parallelism, SGLang ``--enable-dp-attention``; MoE models only). Each of the ``dp``
      ranks (``tp`` GPUs each) runs attention, dense layers and shared experts on its own share
      of the batch with its own KV cache. ``ep`` is then 1 (every expert tensor-split over all
      ``tp·dp`` GPUs, SGLang's default under DP attention and vLLM's DP without
      ``--enable-expert-parallel``: every rank's tokens are all-gathered before the experts and
      reduce-scattered back after them) or ``tp·dp`` (wide EP: ``E / ep`` whole experts per GPU;
      tokens reach their experts by an all-to-all *dispatch* and come back by an all-to-all
      *combine*).
    """

    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "ep", "dp"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ServesimError(
                    f"must be a positive integer, got {value!r}", field=name, fix=f"use --{name} 1"
                )
        if self.dp == 1 and self.tp % self.ep:
            raise ServesimError(
                f"ep={self.ep} must divide tp={self.tp} (experts are spread inside the TP group)",
                field="ep",
                fix=(f"use --ep {self.tp} or --ep 1" if self.tp > 1 else "use --ep 1")
                + (
                    f", or --dp {self.ep // self.tp} for wide expert parallelism (ep = tp·dp)"
                    if self.ep % self.tp == 0
                    else ""
                ),
            )
        if self.dp > 1 and self.ep not in (1, self.tp * self.dp):
            raise ServesimError(
                f"with dp={self.dp}, ep={self.ep} must be 1 or tp·dp={self.tp * self.dp} "
                "(wide expert parallelism spans every rank)",
                field="ep",
                fix=f"use --ep {self.tp * self.dp} or --ep 1",
            )

    @property
    def gpus(self) -> int:
        """GPUs in one replica: ``tp × pp × dp``."""
        return self.tp * self.pp * self.dp

    @property
    def expert_tp(self) -> int:
        """GPUs each routed expert is tensor-split over."""
        if self.dp == 1:
            return self.tp // self.ep
        return self.tp * self.dp if self.ep == 1 else 1

    @property
    def all_to_all(self) -> bool:
        """Whether tokens travel to their experts by all-to-all (wide EP over DP ranks)."""
        return self.dp > 1 and self.ep > 1

    @property
    def ffn_tp(self) -> int:
        """GPUs a dense MLP or the shared experts are tensor-split over: all ``tp·dp`` when
        every rank's tokens are gathered to the feed-forward (:attr:`moe_gather`), else ``tp``."""
        return self.tp * self.dp if self.moe_gather else self.tp

    @property
    def moe_gather(self) -> bool:
        """Whether every rank's tokens are gathered to the feed-forward layers (experts, shared
        experts and dense MLPs tensor-split over all ``tp·dp`` GPUs) and scattered back:
        attention DP without expert parallelism (SGLang's ``--enable-dp-attention``)."""
        return self.dp > 1 and self.ep == 1

    def kv_heads_per_gpu(self, model: ModelSpec) -> int:
        """KV heads each GPU holds (1 when ``tp`` exceeds the KV heads: replicated)."""
        return max(1, model.num_kv_heads // self.tp)

    def check(self, model: ModelSpec) -> None:
        """Raise ServesimError when ``model`` cannot be split this way."""
        problem = _tp_problem(model, self.tp)
        if problem:
            raise ServesimError(
                problem,
                field="tp",
                fix="use --tp " + " or ".join(str(t) for t in valid_tps(model)[:6]),
            )
        if self.pp > model.num_layers:
            raise ServesimError(
                f"pp={self.pp} exceeds the {model.num_layers} layers of {model.name}",
                field="pp",
                fix=f"use --pp {model.num_layers} or fewer",
            )
        if self.ep > 1:
            if model.moe is None:
                raise ServesimError(
                    f"{model.name} has no experts to spread", field="ep", fix="use --ep 1"
                )
            if model.moe.num_experts % self.ep:
                raise ServesimError(
                    f"ep={self.ep} does not divide the {model.moe.num_experts} experts",
                    field="ep",
                    fix="use --ep 1",
                )
        # (Checked after ep: on the command line dp comes from --ep larger than --tp.)
        if self.dp > 1 and model.moe is None:
            raise ServesimError(
                f"dp={self.dp} (attention data parallelism) needs an MoE model",
                field="dp",
                fix=f"use {self.dp} independent replicas (--replicas {self.dp}) instead",
            )


def _tp_problem(model: ModelSpec, tp: int) -> str | None:
    """Why ``model``'s attention cannot be split ``tp`` ways, or None when it can."""
    heads, kv = model.num_attention_heads, model.num_kv_heads
    if heads % tp:
        return f"tp={tp} does not divide the {heads} attention heads of {model.name}"
    # NOTE: MLA keeps one shared latent per token, so its KV heads never constrain TP.
    if model.mla is None and kv % tp and tp % kv:
        return f"tp={tp} neither divides nor is a multiple of the {kv} KV heads of {model.name}"
    return None


def valid_tps(model: ModelSpec, limit: int = 64) -> list[int]:
    """TP degrees up to ``limit`` that ``model``'s attention heads allow, ascending."""
    return [tp for tp in range(1, limit + 1) if _tp_problem(model, tp) is None]


@dataclass(frozen=True)
class CostParams:
    """Modelling constants. ``None`` means: take the model's or the hardware's default.

    Efficiencies are fractions of the hardware peak (0 < eff <= 1). Calibration produces a
    ``CostParams`` with fitted values and ``fidelity="calibrated"``.
    """

    weight_dtype: str | None = None
    """Dtype of the transformer-block weights; ``None``: the checkpoint's. Embedding and LM head
    stay in the activation dtype (quantised checkpoints keep them in bf16)."""
    kv_dtype: str | None = None
    """KV-cache dtype; ``None``: the activation dtype (bf16/fp16)."""
    compute_efficiency: float | None = None
    """Achievable fraction of peak FLOP/s for large GEMMs; ``None``: the hardware's."""
    memory_efficiency: float | None = None
    """Achievable fraction of HBM bandwidth; ``None``: the hardware's."""
    attention_efficiency: float | None = None
    """Fraction of peak FLOP/s the attention kernel reaches; ``None``: ``compute_efficiency``."""
    attention_memory_efficiency: float | None = None
    """Fraction of HBM bandwidth the attention kernel reaches reading the KV cache; ``None``:
    fitted to the GPU's measured decode-attention table (``servesim.cost.kernels``), else
    ``memory_efficiency``. Calibration fits it apart: paged KV reads are not weight streams."""
    attention_half_tokens: float | None = None
    """Keys per query at which prefill attention reaches half its efficiency (the FlashAttention
    kernels of the tables reach ~15% of peak at 512 tokens and ~50% at 8k), for a model with few
    KV heads per query head: the model's own is ``h · (1 + 0.5 · KV heads / query heads)``
    (``attention_fit.length_stretch``); ``None``: fitted to the GPU's measured prefill-attention
    table, 0 (flat) on the roofline rung."""
    attention_fill_ctas: float | None = None
    """Thread blocks (heads × 128-query tiles) prefill attention needs to fill the GPU; with
    fewer (a short prompt over few heads per GPU) it takes as long as this many would, one wave
    of its longest tiles. ``None``: fitted to the GPU's measured prefill-attention table (about
    3 blocks per SM on H100/H200/B200/A100), 0 (no limit) on the roofline rung."""
    moe_backend: str = "vllm"
    """Whose MoE kernels price the routed experts from the measured tables: ``vllm``,
    ``sglang`` or ``trtllm`` (the engine profile's; a shape its table lacks is priced from
    another engine's, see ``kernels.moe_seconds``)."""
    kernel_backend: str | None = None
    """Whose measured GEMM, attention and all-reduce kernels price the step with
    ``kernel_tables``: ``trtllm``, ``vllm`` or ``sglang`` (the engine profile's) read that
    backend's full AIConfigurator tables when the ``servesim[kernels]`` extra is installed;
    None, or without the extra: the catalog's CSVs (TensorRT-LLM kernels on a grid)."""
    engine_version: str | None = None
    """The serving engine's release (``0.5.3``): where a measured table of ``kernel_backend``
    holds several collections (the MoE tables), each curve comes from the one nearest to it
    (``kernels.nearest_version``). None: the newest."""
    kernel_tables: bool = False
    """Price operators from the GPU's measured kernel tables where they exist (``catalog/
    kernels/``; see ``servesim.cost.kernels``). ``False`` (the library default): the roofline
    rung throughout, as calibration and ``servesim analyze`` need. ``simulate`` and
    ``estimate`` turn it on (scenario field ``kernel_tables``, default on)."""
    kernel_launch_s: float | None = None
    """Fixed seconds per kernel (launch gap + ramp/tail); ``None``: the hardware's."""
    step_overhead_s: float = 1e-4
    """Fixed seconds per step outside the kernels (scheduling, input preparation, sampler
    bookkeeping) that the GPU does not hide. A documented guess; calibration replaces it."""
    overhead_per_seq_s: float = 0.0
    """Extra host seconds per sequence in the step (input preparation growing with batch)."""
    overhead_per_token_s: float = 0.0
    """Extra host seconds per token computed in the step (input ids, positions, slot mapping
    growing with the tokens); calibration fits it."""
    custom_allreduce: bool = False
    """TP all-reduces run a custom one-shot/two-shot kernel through peer memory (vLLM's and
    SGLang's custom all-reduce, TensorRT-LLM's AllReduce plugin; NVLink or XGMI inside a node):
    two link latencies each, instead of the 2(tp − 1) steps of NCCL's ring. Bytes are the same
    (the two-shot form is a reduce-scatter and an all-gather). Small-message all-reduces of
    decode steps are latency-bound, so this matters most at TP 4–8 and small batches."""
    mla_fused_down_proj: bool = False
    """MLA's two down-projections of the hidden states (``q_a_proj``, ``kv_a_proj_with_mqa``)
    run as one GEMM of their stacked weights (SGLang from 0.4.6, vLLM from 0.10.0, TensorRT-LLM's
    PyTorch MLA; see the engine profiles' ``mla_fused_down_proj_from``): one launch and one
    fixed cost instead of two, the same FLOPs and bytes. No effect on models without a
    ``q_lora_rank``."""
    mla_materialized: bool = False
    """Decode rows run MLA through materialized absorbed weights (vLLM 0.7.1-0.7.x V0,
    ``VLLM_MLA_PERFORM_MATRIX_ABSORPTION``): ``W_Q_UK`` (the query up-projection times
    ``W_UK``, q_lora × heads·kv_lora) and ``W_UV_O`` (``W_UV`` times ``o_proj``, heads·kv_lora ×
    d) in the weight dtype, with the rope part ``W_QR`` in the activation dtype, held beside
    the original weights, which prompt rows keep using. False: ``q_b_proj`` and ``o_proj`` on
    every row, ``W_UK``/``W_UV`` as small per-head products (the later form)."""
    deepseek_glue_kernels: tuple[float, float] = (0.0, 0.0)
    """Small kernels an engine release launches per layer of a DeepSeek-style model beyond
    the operators servesim prices: ``(per MLA attention layer, per MoE layer)``. They are
    PyTorch-native glue that later releases fuse or replace (the YaRN rope as a dozen
    elementwise ops, a per-tensor FP8 quantisation of the absorbed-weight inputs as a dozen
    more, grouped top-k routing); each costs one kernel's fixed time (``kernel_launch_s``; in a
    step without CUDA graphs also ``eager_launch_s``) and moves no modelled bytes. The engine
    profiles' ``deepseek_glue`` give the counts by release. No effect on models without MLA."""
    allreduce_norm_fusion: bool = False
    """Each TP all-reduce runs fused with the residual add and RMSNorm after it, one kernel
    (SGLang's FlashInfer all-reduce fusion, ``engines.SGLANG_ALLREDUCE_FUSION``): the norms
    that follow an all-reduce (every layer's but the first one's pre-attention norm) keep their
    bytes but launch no kernel of their own. SGLang fuses only in steps of at most 2,048
    tokens; longer prompt steps are priced fused too (~2 x layers kernel fixed times, well
    under 1% of such a step). No effect without TP."""
    comm_efficiency: float = 0.8
    """Fraction of link bandwidth collectives reach (NCCL all-reduce bus bandwidth on 8×H100
    NVLink is about 360 of 450 GB/s)."""
    gemm_half_tokens: float = 32.0
    """Tokens at which a GEMM reaches half its large-batch efficiency (see ``gemm_efficiency``)."""
    mla_absorb_max_new_tokens: int = 1
    """MLA rows with at most this many new tokens use the weight-absorbed (decode) path."""
    fp8_attention: bool = False
    """With an FP8 KV cache the attention kernels run in FP8 (FlashAttention-3 on Hopper in vLLM
    V1 and SGLang quantise Q to the cache's format): prefill attention takes the FP8 curve of
    the kernel tables (``AttentionFit.efficiency_fp8``; not MLA models, whose prompts attend over
    up-projected bf16 keys). False: bf16 attention over a dequantised cache."""
    attention_backend: str | None = None
    """The engine's attention backend for non-MLA models where it changes the price:
    ``flashinfer`` reads the KV cache in decode at ``attention_fit.decode_backend_share`` of the
    measured tables' rate (Hopper); None or another backend: the tables' rate (see
    ``engines.sglang_attention_backend``). Only with the kernel tables (the fitted rung)."""
    decode_serial_walk: bool = False
    """The engine's attention calls FlashAttention-2's varlen kernel for every row (vLLM V1 on
    the GPUs it has no FlashAttention-3 or FlashInfer/TensorRT-LLM kernels for), which splits a
    sequence's KV across thread blocks only for one-token rows of a grouped-query model: a
    multi-head model's decode, every row of a step holding a prompt chunk or draft tokens, and
    every sliding-window layer walk each sequence's KV in one thread block per query head, at
    the rate the engine's decode table measured for one block (``AttentionFit.
    decode_serial_rate``; 0 where its kernels split, e.g. every Hopper and datacentre Blackwell
    table). Only with the kernel tables; not MLA, not the Triton backend."""
    flashinfer_cuda_core_group: int = 0
    """With ``attention_backend`` ``flashinfer``: the GQA group (query heads per KV head on one
    GPU) its decode runs on FlashInfer's CUDA-core kernel, whose KV-read rate falls as the group
    grows beyond the measured one (``attention_fit.FLASHINFER_MEASURED_GROUP``); 0 when the decode
    runs on its tensor-core kernel (``engines.flashinfer_decode_cuda_cores``)."""
    mla_prompt_absorb_below: float | None = None
    """Engines that pick one MLA form per prompt batch (SGLang: ``DeepseekV2AttentionMLA``'s
    forward-method dispatch on ``sum(extend_prefix_lens)``): a step with prompt rows runs
    *every* row on the absorbed path when the cached prefix its rows hold (per attention-DP
    rank) is above 0 and below this many tokens — ``inf`` for the Triton and pre-0.5.1
    FlashInfer backends (absorbed whenever any row has a prefix), 8192 for FA3 and later
    FlashInfer (``SGL_CHUNKED_PREFIX_CACHE_THRESHOLD``: at or above it the prefix is
    up-projected in chunks, the regular form); see ``engines.sglang_mla_prompt_absorb``.
    None: each row by its own new tokens (``mla_absorb_max_new_tokens``: vLLM, TensorRT-LLM,
    SGLang's ``trtllm_mla`` and ``aiter`` backends)."""
    mla_prompt_prefix_floor: float = 0.0
    """Cached tokens every prompt row counts at least when ``mla_prompt_absorb_below`` tests
    a step's prefix: 1 under a token-granular prefix cache (SGLang's radix cache matches the
    first token every prompt shares: BOS or the chat template's opening), 0 without one."""
    mla_prompt_attention_scale: float = 1.0
    """How many times its FLOP time at the kernel tables' attention rate an MLA prompt row on
    the absorbed path takes, where the engine runs it on a slower kernel than the tables time
    (SGLang 0.4.0-0.4.5's Triton extend kernel on Hopper: ``engines.
    SGLANG04_TRITON_MLA_PROMPT_SCALE``); decode rows keep the tables' rate. 1: the tables'."""
    head: str = "lm"
    """``lm``: vocabulary logits and sampling; ``value``: a d×d + d×1 scoring head."""
    hybrid_kv: bool = False
    """The KV cache is laid out by vLLM's hybrid KV cache manager: a model mixing full-attention
    and sliding-window layers (no more full than sliding ones) keeps each kind in its own group
    of pages, and a request holds in a sliding-window group only the pages its window reads
    (``memory.kv_layout``). False: every layer's KV for every token."""
    sliding_kv: str | None = None
    """How the engine holds the KV cache of a model whose every attention layer uses a sliding
    window (Mistral-7B-v0.1, Starcoder2, Phi-3-4k): the name of its page rule in
    ``memory.SLIDING_WINDOW_PAGES`` — a request then holds only the pages its window still
    reads. None: every token's KV (the engine ignores the window when paging)."""
    swa_pool_ratio: float | None = None
    """SGLang's hybrid SWA memory (``swa_full_tokens_ratio``): the sliding-window layers of a
    model mixing them with full-attention ones keep their KV in a pool of this many tokens per
    token of the full-attention layers' pool. A token of the cache (the full pool, which bounds
    the requests: the other frees what a window has passed) then costs the full layers' KV
    plus this share of the sliding layers'. None: one pool of every layer."""
    moe_chunk_tokens: int | None = None
    """The fused-MoE kernel runs a step's tokens at most this many at a time, so its
    intermediate caches in the profiling run hold this many tokens' worth (vLLM's
    ``VLLM_FUSED_MOE_CHUNK_SIZE``; the engine profile's ``moe_chunk_tokens``); None: all."""
    runtime_reserve_bytes: float | None = None
    """Memory the runtime keeps outside weights, KV and activations; ``None``: see
    ``servesim.cost.memory.default_runtime_reserve``."""
    fidelity: str = "roofline"
    """Which rung of the fidelity ladder these numbers stand on."""

    # --- scale-out and serving features -------------------------------------------------
    pp_microbatches: int | None = None
    """Micro-batches a step is split into under pipeline parallelism; ``None``: ``pp`` (vLLM
    keeps one micro-batch in flight per stage). Never more than the step's sequences."""
    pp_overlap_steps: bool = False
    """``False``: every step fills and drains the pipeline, ``T = Σ_s t_s + (m − 1)·max_s t_s``
    (GPipe). ``True``: consecutive steps overlap (vLLM's batch queue keeps the stages busy
    across steps), ``T = max(m·max_s t_s, Σ_s t_s)``: no fill/drain bubble per step."""
    moe_skew: float = 0.0
    """Routing imbalance under expert parallelism: the busiest EP rank receives
    ``(1 + moe_skew)`` × the mean token-expert pairs (EPLB's max/mean load − 1), and the MoE
    layer waits for it. 0 = balanced routing. No effect at ``ep = 1`` (one GPU computes every
    pair: a grouped GEMM's time follows the total, not the busiest expert)."""
    cuda_graphs: bool = True
    """``True``: CUDA graphs and async scheduling: the host prepares step n+1 while the GPU runs
    step n, so a step takes ``max(gpu, host) + overhead``. ``False`` (eager, synchronous):
    ``gpu + host + overhead``, and every kernel waits for the CPU to issue it
    (``eager_launch_s``), which slows small decode batches most."""
    host_overlap: bool = True
    """With ``cuda_graphs``: whether the host's per-step work overlaps the GPU step (async
    scheduling, an overlap scheduler, a C++ runtime) or runs between steps (vLLM V0, and V1
    before 0.14 without ``--async-scheduling``: ``gpu + host + overhead`` even with CUDA
    graphs; ``engines.host_overlap_of``). Without CUDA graphs it never overlaps."""
    host_step_s: float = 5e-4
    """Host seconds per step: scheduler pass, batch bookkeeping, output processing and engine
    IPC (estimate for vLLM V1: a public V1 run of Llama-3.2-1B, before async scheduling,
    decodes at 2.7 ms TPOT where the kernels take ~1.2 ms, vllm-project/vllm#17866)."""
    host_per_seq_s: float = 2e-5
    """Host seconds per sequence per step: scheduling (a public profile of vLLM's step loop
    measured 12.7 µs per running request in ``Scheduler.schedule``), per-request sampling
    parameters, output objects and incremental detokenisation (estimate)."""
    host_per_token_s: float = 5e-8
    """Host seconds per token computed: input ids, positions and slot mapping, and the
    per-element conversion of prompt token ids, O(prompt tokens) (estimate: ~50 ns/element)."""
    eager_launch_s: float = 3e-5
    """Without CUDA graphs, CPU seconds to issue one kernel (PyTorch dispatch + the layer's
    Python): a kernel cannot finish before the CPU has issued it. Estimate from public
    eager-vs-graph decode comparisons on vLLM (≈1.7× TPOT on a 7B at batch 1,
    vllm-project/vllm-omni#7960)."""
    memory_power_weight: float = 0.6
    """Power drawn by memory-bound work relative to compute-bound work (see
    ``servesim.cost.power``): a busy HBM with idle tensor cores draws about 60% of the dynamic
    power of a busy tensor core (estimate, fitted to public H100/H200 vLLM power readings)."""

    def __post_init__(self) -> None:
        for name in (
            "compute_efficiency",
            "memory_efficiency",
            "attention_efficiency",
            "attention_memory_efficiency",
        ):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ServesimError(
                    f"must be in (0, 1], got {value}", field=name, fix="use e.g. 0.7"
                )
        if not 0.0 < self.comm_efficiency <= 1.0:
            raise ServesimError(
                f"must be in (0, 1], got {self.comm_efficiency}",
                field="comm_efficiency",
                fix="use e.g. 0.8",
            )
        for name in (
            "kernel_launch_s",
            "runtime_reserve_bytes",
            "attention_half_tokens",
            "attention_fill_ctas",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ServesimError(f"must be >= 0, got {value}", field=name, fix="use 0 or more")
        for name in (
            "step_overhead_s",
            "overhead_per_seq_s",
            "overhead_per_token_s",
            "gemm_half_tokens",
        ):
            if getattr(self, name) < 0:
                raise ServesimError(
                    f"must be >= 0, got {getattr(self, name)}", field=name, fix="use 0 or more"
                )
        if len(self.deepseek_glue_kernels) != 2 or min(self.deepseek_glue_kernels) < 0:
            raise ServesimError(
                f"must be two counts >= 0, got {self.deepseek_glue_kernels!r}",
                field="deepseek_glue_kernels",
                fix="use (kernels per MLA layer, kernels per MoE layer), e.g. (0, 0)",
            )
        if self.mla_absorb_max_new_tokens < 0:
            raise ServesimError(
                "must be >= 0", field="mla_absorb_max_new_tokens", fix="use 1 (vLLM's default)"
            )
        if self.mla_prompt_absorb_below is not None and not self.mla_prompt_absorb_below > 0:
            raise ServesimError(
                f"must be positive, got {self.mla_prompt_absorb_below}",
                field="mla_prompt_absorb_below",
                fix="use 8192 (SGLang's FA3 threshold), inf, or leave it out",
            )
        if self.flashinfer_cuda_core_group < 0:
            raise ServesimError(
                f"must be >= 0, got {self.flashinfer_cuda_core_group}",
                field="flashinfer_cuda_core_group",
                fix="use the query heads per KV head on one GPU, or 0 (tensor cores)",
            )
        if not self.mla_prompt_attention_scale > 0:
            raise ServesimError(
                f"must be positive, got {self.mla_prompt_attention_scale}",
                field="mla_prompt_attention_scale",
                fix="use 1 (the kernel tables' attention rate)",
            )
        if self.mla_prompt_prefix_floor < 0:
            raise ServesimError(
                f"must be >= 0, got {self.mla_prompt_prefix_floor}",
                field="mla_prompt_prefix_floor",
                fix="use 1 with a token-granular prefix cache, else 0",
            )
        if self.head not in HEADS:
            raise ServesimError(
                f"unknown head {self.head!r}", field="head", fix="use one of: lm, value"
            )
        if self.fidelity not in FIDELITIES:
            raise ServesimError(
                f"unknown fidelity {self.fidelity!r}",
                field="fidelity",
                fix="use one of: " + ", ".join(FIDELITIES),
            )
        if self.swa_pool_ratio is not None and not self.swa_pool_ratio > 0:
            raise ServesimError(
                f"must be positive, got {self.swa_pool_ratio}",
                field="swa_pool_ratio",
                fix="use SGLang's swa_full_tokens_ratio (0.8 by default), or leave it out",
            )
        if self.sliding_kv is not None and self.sliding_kv not in SLIDING_KV_RULES:
            raise ServesimError(
                f"unknown sliding-window page rule {self.sliding_kv!r}",
                field="sliding_kv",
                fix="use one of: " + ", ".join(SLIDING_KV_RULES),
            )
        if self.kernel_backend not in (None, *KERNEL_BACKENDS):
            raise ServesimError(
                f"unknown kernel backend {self.kernel_backend!r}",
                field="kernel_backend",
                fix="use one of: " + ", ".join(KERNEL_BACKENDS),
            )
        self._check_serving_fields()

    def _check_serving_fields(self) -> None:
        """Validate the scale-out and serving fields (pipeline, MoE skew, host overhead, power)."""
        mb = self.pp_microbatches
        if mb is not None and (not isinstance(mb, int) or isinstance(mb, bool) or mb < 1):
            raise ServesimError(
                f"must be a positive integer, got {mb!r}",
                field="pp_microbatches",
                fix="use e.g. the number of pipeline stages",
            )
        for name in (
            "moe_skew",
            "host_step_s",
            "host_per_seq_s",
            "host_per_token_s",
            "eager_launch_s",
        ):
            if getattr(self, name) < 0:
                raise ServesimError(
                    f"must be >= 0, got {getattr(self, name)}", field=name, fix="use 0 or more"
                )
        if not 0.0 <= self.memory_power_weight <= 1.0:
            raise ServesimError(
                f"must be in [0, 1], got {self.memory_power_weight}",
                field="memory_power_weight",
                fix="use e.g. 0.6",
            )


def gemm_efficiency(tokens: float, peak_efficiency: float, half_tokens: float) -> float:
    """Achieved fraction of peak FLOP/s of a GEMM over ``tokens`` rows.

    ``eff(M) = peak_efficiency × M / (M + half_tokens)``: tensor-core tiles are 64–128 rows, so
    a GEMM over few rows leaves most of each tile empty. Equivalently the GEMM takes as long as
    one over ``M + half_tokens`` rows at full efficiency. With the default 32 tokens, efficiency
    is 50% of peak-efficiency at 32 rows, 80% at 128, 97% at 1024, 99.6% at 8192. Small-M
    GEMMs are memory-bound anyway, so the curve mostly moves the compute/memory crossover
    (bf16 on H100: from about 258 to 226 tokens).
    """
    if tokens <= 0:
        return 0.0
    return peak_efficiency * tokens / (tokens + half_tokens)
