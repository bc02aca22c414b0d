"""``CostParams`` resolved against a model and a GPU: dtypes, efficiencies, kernel tables.

The first step of building a step cost model (``build.py``), and what the memory plan and
calibration read to know which dtypes and efficiencies a run stands on.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.cost import kernels as kernels_mod
from servesim.cost.attention_fit import (
    KV_HEAD_WEIGHT,
    NARROW_HEAD_DIM,
    TRITON,
    attention_fit_for,
    decode_backend_share,
    triton_prefill,
)
from servesim.cost.dtypes import (
    activation_dtype,
    check_kv_dtype,
    check_weight_dtype,
    dtype_bytes,
    normalize_dtype,
    tensor_core_dtype,
)
from servesim.cost.fp8_fit import Fp8Factors, fp8_gemm_factors
from servesim.cost.params import CostParams
from servesim.hardware import Hardware
from servesim.model import ModelSpec


@dataclass(frozen=True)
class ResolvedParams:
    """``CostParams`` with every ``None`` replaced by the model's or hardware's value."""

    weight_dtype: str
    """Dtype of the block weights: attention projections, dense MLP, shared experts."""
    expert_dtype: str
    """Dtype of the routed experts' weights."""
    kv_dtype: str
    act_dtype: str
    """Activations, and the weights quantisation leaves alone: embedding, LM head, router,
    norms."""
    compute_efficiency: float
    memory_efficiency: float
    attention_efficiency: float
    kernel_launch_s: float
    attention_memory_efficiency: float = 0.0
    """Fraction of HBM bandwidth attention reaches reading the KV cache."""
    attention_decode_fixed_s: float = 0.0
    """Seconds an attention call takes before its KV reads, its KV-cache write and launches
    included (the decode tables' floor, ``AttentionFit.decode_fixed``); 0: the kernels'
    launches alone (the roofline rung, MLA models)."""
    attention_decode_ramp: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    """The decode tables' ramp between the floor and the fraction's rows (log10 KV bytes one
    call reads, time ratio; ``AttentionFit.decode_ramp_curve``): the attention call's memory
    side is stretched by it (``coefficients.decode_ramp``); empty: none (the roofline rung, MLA
    models, a given ``attention_memory_efficiency``)."""
    attention_serial_rate: float = 0.0
    """Bytes per second one thread block reads a sequence's KV at where the engine's decode
    kernel walks it serially (``CostParams.decode_serial_walk``, ``AttentionFit.
    decode_serial_rate``); 0: its kernels split the KV (or no tables price attention)."""
    attention_serial_wave: int = 0
    """Thread blocks of that serial walk that run at once (the GPU's SMs, ``Hardware.
    multiprocessors``); 0: one wave whatever the blocks."""
    attention_serial_l2_bytes: float = 0.0
    """The GPU's L2 bytes where the decode kernel walks serially (``Hardware.l2_bytes``), which
    decide whether a grouped-query walk's query heads find their KV head there
    (``step.reread_misses``); 0: unknown, taken as always found."""
    attention_half_tokens: float = 0.0
    """Keys per query at which prefill attention reaches half its efficiency (0: flat)."""
    attention_fill_ctas: float = 0.0
    """Thread blocks prefill attention needs to fill the GPU (0: no occupancy limit)."""
    attention_fill_power: float = 0.0
    """The shape of prefill attention's occupancy stretch (``attention_fit.occupancy_stretch``;
    0: the hard limit)."""
    attention_kv_head_weight: float = KV_HEAD_WEIGHT
    """What a KV head adds to prefill attention's length term relative to a query head (the
    curve's ``kv_head_weight``, ``attention_fit.length_stretch``)."""
    attention_source: str = "roofline"
    """Where the attention efficiencies come from (``roofline``: the GEMM figures)."""
    tables: kernels_mod.KernelTables | None = None
    """The GPU's measured kernel tables (None: none shipped, or turned off)."""
    tables_from: Hardware | None = None
    """When ``tables`` belong to another GPU of the same architecture: that GPU (its GEMM times
    are rescaled by the two rooflines; see ``kernels.SAME_ARCHITECTURE``)."""
    expert_bytes: float = 0.0
    """Bytes one routed-expert weight occupies in GPU memory and is read as
    (:func:`expert_weight_bytes`)."""
    fp8_factors: Fp8Factors | None = None
    """Compute and memory factors and the per-GEMM overhead of the FP8 GEMMs of a GPU whose
    tables hold no FP8 GEMMs (the fitted rung, :func:`servesim.cost.fp8_fit.fp8_gemm_factors`);
    None: none apply."""
    uses_tables: bool = False
    """Whether measured kernel tables price this model (asked for, and not calibrated): also
    the rule for borrowing another GPU's measurements."""
    fp8_block_scaled: bool = False
    """Whether the FP8 weights are block-scaled (the checkpoint's own FP8 format, ``model.
    weight_block_scaled``; FP8 named with ``--weight-dtype`` for a checkpoint of another dtype
    is per-tensor, as vLLM's on-the-fly quantisation is): their GEMMs and MoE layers are priced
    from the block-scaled FP8 rows where a table has them."""
    mla_block_scale: float = 1.0
    """An MLA model's attention block, measured whole as the engine runs it, over the sum of
    its kernels as the tables price them (``kernels.mla_block_scale``: the engine backend's
    module tables on this GPU, or on the GPU whose tables it borrows; 1 without tables, a
    backend or a measurement)."""
    fp8_moe_kernel: str = "fp8"
    """The MoE table dtype of the kernels per-tensor FP8 experts run on: ``fp8_cutlass``
    under TensorRT-LLM (:func:`servesim.cost.kernels.fp8_moe_kernel`), else ``fp8``."""
    mxfp4_kernel: str = "mxfp4"
    """The MoE table dtype of the kernels MXFP4 experts run on: ``mxfp4_marlin`` where vLLM
    runs Marlin (:func:`servesim.cost.kernels.vllm_mxfp4_kernel`), else ``mxfp4``."""


def given_efficiencies(hw: Hardware, params: CostParams) -> tuple[float, float, float, float]:
    """(GEMM compute, memory, attention compute, KV-read memory) efficiencies before any kernel
    table: each from ``params`` where given, else the hardware's; attention falls back to the
    GEMM and memory figures. (Calibration starts its fit from these.)"""
    ce = hw.compute_efficiency if params.compute_efficiency is None else params.compute_efficiency
    me = hw.memory_efficiency if params.memory_efficiency is None else params.memory_efficiency
    attn = ce if params.attention_efficiency is None else params.attention_efficiency
    attn_mem = params.attention_memory_efficiency
    attn_mem = me if attn_mem is None else attn_mem
    return ce, me, attn, attn_mem


TRTLLM_FP8_DECODE_REGIMES_FROM = "1.0"
"""From this TensorRT-LLM release an FP8 KV cache is read at the fraction of its kernel regime
(``AttentionFit.decode_cells_fp8``) of the catalog's decode table, TensorRT-LLM 1.3.0rc20's
(H200: grouped 128-wide heads at 0.91 of HBM, multi-head at 0.55). Its 0.5-0.9 releases read
at one fraction: their published FP8-cache runs move the wrong way on both sides under that
split (bench/fidelity: Llama-2-70B TP2 512x128/2048 +7% -> +17%, Llama-2-7B -16% -> -23%).
1.0 is the first release after those runs: no published FP8-cache run of 1.0-1.2 says where
between them the kernels changed."""


def decode_regimes_apply(
    decode_engine: str | None, backend: str | None, release: str | None
) -> bool:
    """Whether an FP8 KV cache is read at its kernel regime's fraction (``AttentionFit.
    decode_cells_fp8``) rather than the table's one fraction: where the fit's decode table
    times the engine's own kernels (``decode_engine``: the fit's; ``backend``: the engine
    profile's kernel backend) — vLLM's and SGLang's own tables, and the catalog's
    TensorRT-LLM table for TensorRT-LLM from :data:`TRTLLM_FP8_DECODE_REGIMES_FROM`
    (``release`` None: the newest). Another engine priced from another's table reads at the
    one fraction."""
    from servesim.versions import release_before

    if decode_engine is not None:
        return decode_engine == backend
    if backend != "trtllm":
        return False
    return release is None or not release_before(release, TRTLLM_FP8_DECODE_REGIMES_FROM)


def resolve_params(model: ModelSpec, hw: Hardware, params: CostParams) -> ResolvedParams:
    """Fill the defaults of ``params`` from ``model`` and ``hw``.

    Which weights a quantised checkpoint stores in ``model.dtype`` follows
    ``model.quant_scope``: ``experts`` (gpt-oss mxfp4) leaves attention and dense MLPs in
    ``model.base_dtype``; ``linear`` and ``none`` put every block weight in ``model.dtype``. An
    explicit ``params.weight_dtype`` quantises every block weight (vLLM ``--quantization``) and
    must have tensor cores on ``hw`` (int4 is weight-only and runs anywhere); a checkpoint's own
    format runs weight-only where the GPU lacks its tensor cores (fp8 on A100, as vLLM's Marlin
    kernels do). Raises ServesimError for a format the GPU cannot run or a KV dtype that is no
    KV-cache format.
    """
    quantized = model.quant_scope != "none"
    act = activation_dtype(model.base_dtype if quantized else model.dtype)
    if params.weight_dtype is not None:
        block = expert = normalize_dtype(params.weight_dtype, field="weight_dtype")
        check_weight_dtype(hw.name, hw.peak_flops, block)
    else:
        expert = normalize_dtype(model.dtype, field="dtype")
        # NOTE: fp32 checkpoints are served in bf16, as vLLM's dtype="auto" does.
        expert = act if expert in ("fp32", "tf32") else expert
        block = act if model.quant_scope == "experts" else expert
    kv = normalize_dtype(params.kv_dtype or act, field="kv_dtype")
    check_kv_dtype(kv)
    ce, me, _, _ = given_efficiencies(hw, params)
    # NOTE: a calibration fits the efficiencies to the user's own measurements; measured
    # tables of other machines must not override it.
    use_tables = params.kernel_tables and params.fidelity != "calibrated"
    backend = params.kernel_backend
    # (MLA decode runs no MHA kernel: the engine's own decode table does not apply.)
    fit = attention_fit_for(hw, backend, engine_decode=model.mla is None) if use_tables else None
    attn, attn_mem, half, fill, source = ce, me, 0.0, 0.0, "roofline"
    fill_power, kv_weight = 0.0, KV_HEAD_WEIGHT
    decode_fixed, decode_ramp, serial_rate = 0.0, ((), ()), 0.0
    tables = kernels_mod.load_tables(hw.name, backend) if use_tables else None
    tables_from = None
    borrowed = kernels_mod.transfer_source_for(hw) if use_tables else None
    if borrowed is not None:
        from servesim.hardware import load_hardware

        tables_from = load_hardware(borrowed)
        tables = kernels_mod.load_tables(tables_from.name, backend)
    fp8 = None
    runs_fp8 = any(tensor_core_dtype(hw.peak_flops, d, act) == "fp8" for d in (block, expert))
    no_fp8_table = tables is None or tables.gemm is None or "fp8" not in tables.gemm["dtype"]
    if use_tables and runs_fp8 and no_fp8_table:
        fp8 = fp8_gemm_factors(hw.architecture)
    if fit is not None:
        curve, source = fit
        # (MLA's prompts attend over up-projected bf16 keys, whatever the cache holds.)
        fp8_attention = params.fp8_attention and kv == "fp8" and model.mla is None
        attn, half, fill, fill_power, kv_weight = curve.prefill_curve(model.head_dim, fp8_attention)
        if params.attention_backend == TRITON and model.mla is None:
            attn, half = triton_prefill(attn, half)
        if model.mla is not None:
            attn_mem = curve.decode_fraction(kv)
        else:
            # (The engines pick a decode kernel by head shape: the fraction of its regime.)
            split = decode_regimes_apply(curve.decode_engine, backend, params.engine_version)
            grouped = model.num_attention_heads > model.num_kv_heads
            narrow = model.head_dim <= NARROW_HEAD_DIM
            attn_mem = (
                curve.decode_fraction(kv, grouped, narrow) if split else curve.decode_fraction(kv)
            )
            attn_mem *= decode_backend_share(
                params.attention_backend, hw.architecture, params.flashinfer_cuda_core_group
            )
            # (MLA's block scale was measured against the launches alone: it holds its glue.)
            decode_fixed = curve.decode_fixed(kv)
            decode_ramp = curve.decode_ramp_curve(kv, regimes=split)
            # (FlashAttention-2 reads no FP8 cache: vLLM takes another backend for one.)
            if params.decode_serial_walk and params.attention_backend != TRITON and kv != "fp8":
                serial_rate = curve.decode_serial_rate
    if params.attention_efficiency is not None:
        attn, source = params.attention_efficiency, "given"
    if params.attention_memory_efficiency is not None:
        attn_mem, decode_ramp, serial_rate = params.attention_memory_efficiency, ((), ()), 0.0
    if params.attention_half_tokens is not None:
        half = params.attention_half_tokens
    if params.attention_fill_ctas is not None:
        fill = params.attention_fill_ctas
    return ResolvedParams(
        weight_dtype=block,
        expert_dtype=expert,
        kv_dtype=kv,
        act_dtype=act,
        compute_efficiency=ce,
        memory_efficiency=me,
        attention_efficiency=attn,
        kernel_launch_s=(
            hw.kernel_launch_s if params.kernel_launch_s is None else params.kernel_launch_s
        ),
        attention_memory_efficiency=attn_mem,
        attention_decode_fixed_s=decode_fixed,
        attention_decode_ramp=decode_ramp,
        attention_serial_rate=serial_rate,
        attention_serial_wave=(hw.multiprocessors or 0) if serial_rate > 0.0 else 0,
        attention_serial_l2_bytes=(hw.l2_bytes or 0.0) if serial_rate > 0.0 else 0.0,
        attention_half_tokens=half,
        attention_fill_ctas=fill,
        attention_fill_power=fill_power,
        attention_kv_head_weight=kv_weight,
        attention_source=source,
        tables=tables,
        tables_from=tables_from,
        expert_bytes=expert_weight_bytes(expert, hw),
        fp8_factors=fp8,
        uses_tables=use_tables,
        fp8_block_scaled=(
            model.weight_block_scaled
            and normalize_dtype(model.dtype, field="dtype") == "fp8"
            and params.weight_dtype in (None, "fp8")
        ),
        # (A GPU borrowing another's tables takes its MLA block too: same kernels.)
        mla_block_scale=(
            kernels_mod.mla_block_scale((tables_from or hw).name, backend)
            if use_tables and model.mla is not None and backend is not None
            else 1.0
        ),
        fp8_moe_kernel=kernels_mod.fp8_moe_kernel(backend),
        # (vLLM's kernels: its profile, or the default parameters, which price as vLLM does.)
        mxfp4_kernel=(
            kernels_mod.vllm_mxfp4_kernel(hw.architecture, params.engine_version)
            if params.moe_backend == "vllm" and backend in (None, "vllm")
            else "mxfp4"
        ),
    )


MXFP4_WEIGHT_ONLY_BYTES = (4 + 16 / 32) / 8
"""Bytes per MXFP4 weight on a GPU without FP4 tensor cores: the 4-bit values and their
block-of-32 scales held as 16-bit numbers by the dequantising kernels (4.5 bits; the
checkpoint's E8M0 scales are 8-bit, 4.25). The engines' own logs: vLLM loads gpt-oss-120b on an
H100 in 64.38 GiB (vllm-project/vllm#33155, its Triton MXFP4 backend; 65.97 GiB with Marlin in
0.10.1, #23278) against the checkpoint's 60.7 GiB; this size gives 64.1 GiB."""


def expert_weight_bytes(expert_dtype: str, hw: Hardware) -> float:
    """Bytes per routed-expert weight as ``hw`` holds and reads it: the dtype's size, except
    MXFP4 served weight-only (no ``fp4`` tensor-core peak), which the dequantising kernels keep
    with 16-bit block scales (:data:`MXFP4_WEIGHT_ONLY_BYTES`)."""
    if expert_dtype == "mxfp4" and "fp4" not in hw.peak_flops:
        return MXFP4_WEIGHT_ONLY_BYTES
    return dtype_bytes(expert_dtype)


__all__ = ["ResolvedParams", "expert_weight_bytes", "given_efficiencies", "resolve_params"]
