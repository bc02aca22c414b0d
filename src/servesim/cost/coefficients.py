"""Operators into coefficients: the FLOPs and bytes of each operator per step feature, the
rates the hardware reaches for them, and the matrices the step cost model multiplies.

:func:`servesim.cost.build.build_step_cost` lists the operators (:func:`model_operators`),
resolves the rates (:func:`rates_of`: peaks × efficiencies, link bandwidths, launch latencies;
FP8 GEMMs at the fitted FP8 factors where no FP8 table prices them), folds them into each
operator's compute and memory sides per feature (:func:`operator_sides`, with the GEMM and
attention efficiency curves and the measured curves swapped in) and stacks the hot path's one
product (:func:`hot_matrix`). Pure functions of their arguments, run once per cost model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.cost import features as _F  # feature indices: _F.T, _F.P, ...
from servesim.cost import kernels as kernels_mod
from servesim.cost import operator as ops_mod
from servesim.cost.accounting import RUNGS
from servesim.cost.attention_fit import KV_HEAD_WEIGHT, kv_head_factor
from servesim.cost.dtypes import dtype_bytes, tensor_core_dtype, tensor_core_peak, vector_peak
from servesim.cost.features import INDICATOR, NUM_FEATURES, FeatureMap
from servesim.cost.operator import Operator
from servesim.cost.operators import build_operators
from servesim.cost.params import CostParams, Parallelism
from servesim.cost.resolve import ResolvedParams
from servesim.cost.stages import StageLayers
from servesim.cost.step import SERIAL_ALWAYS, SERIAL_MULTI_TOKEN, DecodeRamp, OperatorSides
from servesim.hardware import Hardware
from servesim.model import ModelSpec


def model_operators(
    model: ModelSpec,
    par: Parallelism,
    resolved: ResolvedParams,
    head: str,
    stage: StageLayers | None = None,
    moe_load: float = 1.0,
    custom_allreduce: bool = False,
    mla_fused_down_proj: bool = False,
    mla_materialized: bool = False,
    mla_prompt_attention_scale: float = 1.0,
    deepseek_glue_kernels: tuple[float, float] = (0.0, 0.0),
    allreduce_norm_fusion: bool = False,
) -> tuple[Operator, ...]:
    """The operator list for ``model`` with the resolved dtypes (one ``stage`` or all)."""
    return build_operators(
        model,
        par,
        weight_bytes=dtype_bytes(resolved.weight_dtype),
        expert_bytes=resolved.expert_bytes,
        kv_bytes=dtype_bytes(resolved.kv_dtype),
        act_bytes=dtype_bytes(resolved.act_dtype),
        head=head,
        stage=stage,
        moe_load=moe_load,
        custom_allreduce=custom_allreduce,
        mla_fused_down_proj=mla_fused_down_proj,
        mla_block_scale=resolved.mla_block_scale,
        mla_materialized=mla_materialized,
        mla_prompt_attention_scale=mla_prompt_attention_scale,
        deepseek_glue_kernels=deepseek_glue_kernels,
        allreduce_norm_fusion=allreduce_norm_fusion,
    )


def coefficient_matrices(operators: tuple[Operator, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs, bytes) coefficient matrices, shape (operators, features), times each count.

    Constant terms (weights) are charged on the indicator of the operator's ``active`` feature,
    so an operator that does not run in a step moves nothing.
    """
    flops = np.zeros((len(operators), NUM_FEATURES))
    nbytes = np.zeros((len(operators), NUM_FEATURES))
    for i, op in enumerate(operators):
        for feat, value in op.flops:
            flops[i, INDICATOR[op.active] if feat == _F.ONE else feat] += value * op.count
        for feat, value in op.bytes:
            nbytes[i, INDICATOR[op.active] if feat == _F.ONE else feat] += value * op.count
    return flops, nbytes


def padding_flops(
    operators: tuple[Operator, ...],
    flops: np.ndarray,
    half_tokens: float,
    moe: tuple[float, float, float] | None,
    moe_load: float = 1.0,
) -> np.ndarray:
    """Extra FLOP-equivalents the GEMM efficiency curve adds, as feature coefficients.

    A GEMM over ``m`` rows at efficiency ``eff·m/(m + h)`` takes as long as one over ``m + h``
    rows at ``eff``: the padding is ``h`` rows of that GEMM, paid once when it runs. For routed
    experts ``m`` is the tokens per hit expert, so each hit expert's GEMM is padded: ``h`` rows
    per hit expert, a term in ``D_EXP``.
    """
    pad = np.zeros_like(flops)
    for i, op in enumerate(operators):
        if op.m_feature == _F.ONE or half_tokens == 0.0 or op.rate == ops_mod.RATE_ATTENTION:
            continue
        if op.m_feature == _F.M_EXP:
            assert moe is not None
            _, top_k, ep = moe
            # FLOPs = c·L·T (L = moe_load) with m = L·T·k/hit and D = hit/ep:
            # c·L·T·h/m = c·h·D·ep/k.
            pad[i, _F.D_EXP] = flops[i, _F.T] / moe_load * half_tokens * ep / top_k
        else:
            pad[i, INDICATOR[op.active]] = flops[i, op.m_feature] * half_tokens
    return pad


def attention_padding(
    operators: tuple[Operator, ...],
    flops: np.ndarray,
    half_tokens: float,
    kv_heads_per_head: float = 0.0,
    kv_head_weight: float = KV_HEAD_WEIGHT,
) -> np.ndarray:
    """Extra FLOP-equivalents of prefill attention's length curve, as feature coefficients.

    Attention over ``s`` keys per query reaches ``e·s/(s + h')`` of the peak, so it takes as
    long as its FLOPs times ``1 + h'/s`` at ``e``, where ``h' = h · (1 + w · kv_heads_per_head)``
    (``attention_fit.length_stretch``; ``w``: ``kv_head_weight``, the curve's). A prompt of
    ``n`` new tokens has ``n²/2`` (query, key) pairs over ``s ≈ n`` keys: ``h'·n/2`` extra
    pairs, a term in the row's tokens. (A decode row gets ``h'/2`` extra pairs; decode
    attention is memory-bound, so that compute-side term does not show.)
    """
    pad = np.zeros_like(flops)
    if half_tokens <= 0.0:
        return pad
    half_tokens *= kv_head_factor(kv_heads_per_head, kv_head_weight)
    tokens_of = {_F.P: _F.T_R, _F.P_SW: _F.T, _F.P_A: _F.T_A}
    for i, op in enumerate(operators):
        if op.rate != ops_mod.RATE_ATTENTION or not op.flops:
            continue
        pair = op.flops[0][0]
        pad[i, tokens_of[pair]] += flops[i, pair] * half_tokens / 2.0
    return pad


def prompt_kernel_padding(operators: tuple[Operator, ...], flops: np.ndarray) -> np.ndarray:
    """Extra FLOP-equivalents of MLA prompt rows run absorbed on a slower kernel, as feature
    coefficients: ``(s − 1)`` times the FLOPs of their pairs, ``P_A − K_A`` (a decode row has
    as many pairs as KV tokens), for an operator of ``prompt_scale`` s. Time, not work: the
    FLOPs stay, and the operator keeps one compute side against its memory side."""
    pad = np.zeros_like(flops)
    for i, op in enumerate(operators):
        if op.prompt_scale != 1.0:
            excess = (op.prompt_scale - 1.0) * flops[i, _F.P_A]
            pad[i, _F.P_A] += excess
            pad[i, _F.K_A] -= excess
    return pad


def _regular_attention(op: Operator) -> bool:
    """Whether ``op`` is the attention kernel of the regular or sliding-window path (not MLA's
    absorbed one, a decode kernel that splits the KV sequence)."""
    return (
        op.rate == ops_mod.RATE_ATTENTION and bool(op.flops) and op.flops[0][0] in (_F.P, _F.P_SW)
    )


def _occupancy(
    operators: tuple[Operator, ...], res: ResolvedParams | None, heads_per_gpu: float
) -> tuple[np.ndarray, float, float] | None:
    """(columns of the attention operators on the regular and sliding-window paths, query tiles
    per head that fill the GPU, the stretch's power) when the fitted prefill curve has an
    occupancy limit (:func:`_regular_attention`: MLA's absorbed path is left alone)."""
    if res is None or res.attention_fill_ctas <= 0.0:
        return None
    cols = [i for i, op in enumerate(operators) if _regular_attention(op)]
    if not cols:
        return None
    fill = res.attention_fill_ctas / max(heads_per_gpu, 1.0)
    return np.array(cols, dtype=np.intp), fill, res.attention_fill_power


def decode_ramp(
    operators: tuple[Operator, ...],
    res: ResolvedParams | None,
    kv_seconds: np.ndarray | None = None,
    kv_rate: float = 0.0,
    kv_heads_per_gpu: float = 1.0,
    multi_head: bool = False,
    wave_blocks: int = 0,
    query_heads_per_kv_head: float = 1.0,
) -> DecodeRamp | None:
    """The decode tables' ramp (``ResolvedParams.attention_decode_ramp``) on the attention
    operators of the regular and sliding-window paths, each with the KV bytes one call reads
    per KV token; None without a ramp or a serial walk (MLA's attention keeps its block scale
    alone).

    With ``res.attention_serial_rate`` (a kernel that walks each sequence's KV serially) each
    column also carries its walk (``DecodeRamp.serial``): ``kv_seconds`` is the memory side's
    HBM seconds per operator and feature (operators × features, no launches), ``kv_rate`` the
    bytes per second the KV reads reach at the fitted fraction, ``kv_heads_per_gpu`` the KV
    heads each GPU holds, ``multi_head`` whether the model has as many KV heads as query heads
    (its decode walks in every step; a grouped-query model's only in steps with a
    multi-token row; a sliding-window layer's always), ``wave_blocks`` the blocks that run at
    once (the GPU's SMs, 0: one wave; a multi-head model's walk only: a grouped model's
    blocks share their KV heads through L2, which one block count does not carry), and
    ``query_heads_per_kv_head`` the reads a walk may make of each KV head: its query heads
    after the first read it again once it has left the L2 (``res.attention_serial_l2_bytes``,
    ``step.reread_miss``)."""
    serial_rate = 0.0 if res is None else res.attention_serial_rate
    if res is None or (not res.attention_decode_ramp[0] and serial_rate <= 0.0):
        return None
    columns, serial = [], []
    for i, op in enumerate(operators):
        kv = [(f, b) for f, b in op.bytes if f in (_F.K, _F.K_SW)]
        if _regular_attention(op) and kv:
            feature = kv[0][0]
            columns.append((i, feature, float(kv[0][1])))
            if serial_rate > 0.0 and kv_seconds is not None:
                always = multi_head or feature == _F.K_SW
                heads = max(kv_heads_per_gpu, 1.0)
                l2 = res.attention_serial_l2_bytes
                serial.append(
                    (
                        SERIAL_ALWAYS if always else SERIAL_MULTI_TOKEN,
                        kv_rate / serial_rate,
                        heads,
                        float(wave_blocks) if multi_head else 0.0,
                        float(kv_seconds[i, feature]),
                        max(query_heads_per_kv_head - 1.0, 0.0),
                        l2 * heads / float(kv[0][1]) if l2 > 0.0 and kv[0][1] > 0 else 0.0,
                    )
                )
    if not columns:
        return None
    # (A serial walk without a measured ramp: a flat one, ratio 1 everywhere.)
    log_bytes, ratio = res.attention_decode_ramp if res.attention_decode_ramp[0] else FLAT_RAMP
    return DecodeRamp(
        columns=tuple(columns),
        log_bytes=tuple(log_bytes),
        ratio=tuple(ratio),
        serial=tuple(serial),
    )


FLAT_RAMP = ((6.0, 9.0), (1.0, 1.0))
"""A ramp of ratio 1 (log10 KV bytes, ratio): what a serial walk's columns carry where the
decode table has no ramp."""


@dataclass(frozen=True)
class Rates:
    """What an operator's rate resolves to on the hardware."""

    flop_rate: dict[str, float]
    """FLOP/s (peak × efficiency) per compute rate."""
    link_bw: dict[str, float]
    """Achievable bytes/s per link rate (comm efficiency included)."""
    link_latency: dict[str, float]
    sec_per_byte_hbm: float
    sec_per_byte_attention: float
    kernel_launch_s: float
    eager_launch_s: float | None
    """CPU seconds per kernel issue without CUDA graphs; None with graphs."""
    sec_per_byte_rate: dict[str, float]
    """Seconds per byte of the compute rates that read at their own rate (FP8 GEMMs on the
    fitted rung); the others read at ``sec_per_byte_hbm``."""
    fitted_rates: frozenset[str]
    """Compute rates scaled by factors fitted to other GPUs' tables (the fitted rung)."""
    call_overhead_s: dict[str, float]
    """Seconds each kernel of these compute rates adds beyond its launch (FP8 GEMMs on the
    fitted rung: activation quantisation and scales; attention on the fitted rung: the decode
    tables' floor); the others add none."""


def rates_of(hw: Hardware, par: Parallelism, params: CostParams, res: ResolvedParams) -> Rates:
    peak_gemm = tensor_core_peak(hw.peak_flops, res.weight_dtype, res.act_dtype)
    peak_expert = tensor_core_peak(hw.peak_flops, res.expert_dtype, res.act_dtype)
    peak_act = tensor_core_peak(hw.peak_flops, res.act_dtype, res.act_dtype)
    node = hw.gpus_per_node
    tp_link = hw.inter_node if par.tp > node else hw.intra_node
    pp_link = hw.inter_node if par.gpus > node else hw.intra_node
    ep_link = hw.inter_node if par.tp * par.dp > node else hw.intra_node
    # The GPUs the experts' collectives span: the EP group, or all tp·dp under attention DP.
    ep_group = par.tp * par.dp if par.dp > 1 else par.ep
    # On a full mesh (MI300X) a collective over few GPUs uses only that many direct links.
    bandwidth = {
        ops_mod.RATE_LINK_TP: tp_link.bandwidth_among(min(par.tp, node)),
        ops_mod.RATE_LINK_PP: pp_link.bandwidth_among(2),
        ops_mod.RATE_LINK_EP: ep_link.bandwidth_among(min(ep_group, node)),
    }
    attn_mem = res.attention_memory_efficiency or res.memory_efficiency
    sec_per_byte_hbm = 1.0 / (hw.hbm_bandwidth * res.memory_efficiency)
    # FP8 GEMMs without a measured FP8 table: the efficiency FP8 kernels reach relative to BF16's
    # on the GPUs with tables (fp8_fit).
    compute_scale, byte_rate, overhead = {}, {}, {}
    if res.fp8_factors is not None:
        fp8 = res.fp8_factors
        for rate, dtype in (
            (ops_mod.RATE_GEMM, res.weight_dtype),
            (ops_mod.RATE_GEMM_EXPERT, res.expert_dtype),
        ):
            if tensor_core_dtype(hw.peak_flops, dtype, res.act_dtype) == "fp8":
                compute_scale[rate] = fp8.compute
                byte_rate[rate] = sec_per_byte_hbm / fp8.memory
        # The fixed cost was fitted on dense GEMMs, one per call; a grouped expert GEMM's
        # quantisation runs once for all its experts and is left to the MoE tables.
        if ops_mod.RATE_GEMM in compute_scale:
            overhead[ops_mod.RATE_GEMM] = fp8.overhead_s
    # The decode tables time an attention call's two kernels (KV-cache write, attention)
    # together: their floor is the pair's fixed cost, launches included.
    fixed = res.attention_decode_fixed_s
    if fixed > ops_mod.ATTENTION_KERNELS * res.kernel_launch_s:
        overhead[ops_mod.RATE_ATTENTION] = fixed / ops_mod.ATTENTION_KERNELS - res.kernel_launch_s
    return Rates(
        flop_rate={
            ops_mod.RATE_GEMM: peak_gemm
            * res.compute_efficiency
            * compute_scale.get(ops_mod.RATE_GEMM, 1.0),
            ops_mod.RATE_GEMM_EXPERT: peak_expert
            * res.compute_efficiency
            * compute_scale.get(ops_mod.RATE_GEMM_EXPERT, 1.0),
            ops_mod.RATE_GEMM_ACT: peak_act * res.compute_efficiency,
            ops_mod.RATE_ATTENTION: peak_act * res.attention_efficiency,
            ops_mod.RATE_VECTOR: vector_peak(hw.peak_flops, res.act_dtype) * res.compute_efficiency,
        },
        link_bw={k: v * params.comm_efficiency for k, v in bandwidth.items()},
        link_latency={
            ops_mod.RATE_LINK_TP: tp_link.latency_s,
            ops_mod.RATE_LINK_PP: pp_link.latency_s,
            ops_mod.RATE_LINK_EP: ep_link.latency_s,
        },
        sec_per_byte_hbm=sec_per_byte_hbm,
        sec_per_byte_attention=1.0 / (hw.hbm_bandwidth * attn_mem),
        kernel_launch_s=res.kernel_launch_s,
        eager_launch_s=None if params.cuda_graphs else params.eager_launch_s,
        sec_per_byte_rate=byte_rate,
        fitted_rates=frozenset(compute_scale),
        call_overhead_s=overhead,
    )


def operator_sides(
    operators: tuple[Operator, ...],
    rates: Rates,
    half_tokens: float,
    feature_map: FeatureMap,
    dp: int,
    res: ResolvedParams | None = None,
    curves: kernels_mod.MeasuredCurves | None = None,
    calibrated: bool = False,
    heads_per_gpu: float = 1.0,
    kv_heads_per_head: float = 0.0,
) -> OperatorSides:
    """Coefficient matrices of ``operators`` (transposed: features' × operators);
    ``kv_heads_per_head``: the model's KV heads over its query heads (prefill attention's
    length curve, ``attention_fit.length_stretch``)."""
    flops, nbytes = coefficient_matrices(operators)
    pad = padding_flops(operators, flops, half_tokens, feature_map.moe, feature_map.moe_load)
    pad += prompt_kernel_padding(operators, flops)
    if res is not None:
        half = res.attention_half_tokens
        weight = res.attention_kv_head_weight
        pad = pad + attention_padding(operators, flops, half, kv_heads_per_head, weight)
    nops = len(operators)
    sec_per_flop = np.zeros(nops)
    sec_per_byte = np.zeros(nops)
    launch = np.zeros((nops, NUM_FEATURES))
    issue = np.zeros((nops, NUM_FEATURES))
    is_link = np.zeros(nops, dtype=bool)
    for i, op in enumerate(operators):
        on = INDICATOR[op.active]
        if op.rate in rates.link_bw:
            is_link[i] = True
            sec_per_byte[i] = 1.0 / rates.link_bw[op.rate]
            launch[i, on] = op.count * op.hops * rates.link_latency[op.rate]
            kernels = 1.0  # a collective is one call for the CPU to issue
        else:
            sec_per_flop[i] = 1.0 / rates.flop_rate[op.rate]
            per_byte = (
                rates.sec_per_byte_attention
                if op.rate == ops_mod.RATE_ATTENTION
                else rates.sec_per_byte_rate.get(op.rate, rates.sec_per_byte_hbm)
            )
            sec_per_byte[i] = per_byte
            per_call = rates.kernel_launch_s + rates.call_overhead_s.get(op.rate, 0.0)
            launch[i, on] = op.count * op.kernels * per_call
            kernels = op.kernels
        if rates.eager_launch_s is not None:
            issue[i, on] = op.count * kernels * rates.eager_launch_s
    # (An operator's time scale stretches its time, not its work: flops and nbytes stay. The
    # kernel issue stretches too: what a block adds over its kernels is glue kernels as much
    # as slower ones. Tried: issue unscaled, vLLM 0.7 DeepSeek runs 0.7-3.6 points worse.)
    scale = np.array([op.time_scale for op in operators])[:, None]
    launch *= scale
    issue *= scale
    busy_c = (flops + pad) * sec_per_flop[:, None] * scale
    busy_m = np.where(is_link[:, None], 0.0, nbytes * sec_per_byte[:, None] * scale)
    compute = busy_c + launch
    memory = nbytes * sec_per_byte[:, None] * scale + launch
    rung = np.full(nops, RUNGS.index("calibrated" if calibrated else "roofline"), dtype=np.intp)
    if res is not None and res.attention_source not in ("roofline", "given") and not calibrated:
        rung[[op.rate == ops_mod.RATE_ATTENTION for op in operators]] = RUNGS.index("fitted")
    if rates.fitted_rates and not calibrated:
        rung[[op.rate in rates.fitted_rates for op in operators]] = RUNGS.index("fitted")
    if curves is not None:
        # Priced by their curves: the linear sides of these operators are zero. Curves borrowed
        # from another GPU's measurements are fitted, not measured, on this one.
        compute[curves.columns] = 0.0
        memory[curves.columns] = 0.0
        rung[curves.columns] = RUNGS.index("measured")
        if curves.borrowed is not None:
            rung[curves.columns[curves.borrowed]] = RUNGS.index("fitted")
    scopes = [op.scope for op in operators]

    def widen(mat: np.ndarray) -> np.ndarray:
        """(operators, features) -> (features', operators); global-scope operators read the
        second block of the features when dp > 1."""
        if dp == 1:
            return np.ascontiguousarray(mat.T)
        out = np.zeros((2 * NUM_FEATURES, nops))
        for i, scope in enumerate(scopes):
            block = NUM_FEATURES if scope == ops_mod.SCOPE_GLOBAL else 0
            out[block : block + NUM_FEATURES, i] = mat[i]
        return out

    return OperatorSides(
        occupancy=_occupancy(operators, res, heads_per_gpu),
        ramp=None
        if calibrated
        else decode_ramp(
            operators,
            res,
            busy_m,
            1.0 / rates.sec_per_byte_attention,
            heads_per_gpu * kv_heads_per_head,
            kv_heads_per_head == 1.0,
            res.attention_serial_wave if res is not None else 0,
            1.0 / kv_heads_per_head if kv_heads_per_head > 0.0 else 1.0,
        ),
        compute=widen(compute),
        memory=widen(memory),
        eager=widen(issue) if rates.eager_launch_s is not None else None,
        busy_compute=widen(busy_c),
        busy_memory=widen(busy_m),
        flops=widen(flops),
        nbytes=widen(nbytes),
        is_link=is_link,
        curves=curves,
        rung=rung,
    )


def hot_matrix(whole: OperatorSides, fixed: np.ndarray) -> np.ndarray:
    """[compute | memory | kernel issue (no CUDA graphs) | busy compute of the
    occupancy-limited operators | fixed]: the hot path's one product (see
    ``StepCostModel.seconds_from_features``)."""
    parts = [whole.compute, whole.memory]
    if whole.eager is not None:
        parts.append(whole.eager)
    if whole.occupancy is not None:
        parts.append(whole.busy_compute[:, whole.occupancy[0]])
    return np.concatenate([*parts, fixed], axis=1)


__all__ = [
    "Rates",
    "attention_padding",
    "coefficient_matrices",
    "decode_ramp",
    "hot_matrix",
    "model_operators",
    "operator_sides",
    "padding_flops",
    "rates_of",
]
