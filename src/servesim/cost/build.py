"""Building a step cost model: fold a model's operators on a GPU into coefficient tables.

``build_step_cost`` resolves the params (``resolve.py``), lists the operators and turns each
one's FLOPs and bytes into seconds per feature unit at the rates the hardware reaches
(``coefficients.py``: compute and memory sides, launch latencies, the GEMM and attention
efficiency curves), swaps in the measured-table curves where ``catalog/kernels`` has them (this
module: GEMMs, the custom all-reduce, MoE layers — measured, or borrowed from another GPU or
another MoE shape: the fitted rung), and hands the tables to
:class:`servesim.cost.step.StepCostModel`, which evaluates them per step. All the work here
happens once per (model, hardware, parallelism, params).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from servesim.cost import features as _F  # feature indices: _F.T, _F.P, ...
from servesim.cost import kernels as kernels_mod
from servesim.cost import operator as ops_mod
from servesim.cost.coefficients import hot_matrix, model_operators, operator_sides, rates_of
from servesim.cost.dtypes import (
    dtype_bytes,
    tensor_core_peak,
)
from servesim.cost.features import NUM_FEATURES, FeatureMap
from servesim.cost.libm import c_math
from servesim.cost.operator import GROUPS, Operator
from servesim.cost.params import CostParams, Parallelism
from servesim.cost.resolve import ResolvedParams, expert_weight_bytes, resolve_params
from servesim.cost.stages import pipeline_stages
from servesim.cost.step import OperatorSides, StepCostModel
from servesim.errors import ServesimError
from servesim.hardware import Hardware, load_hardware
from servesim.model import ModelSpec


def _measured_curves(
    operators: tuple[Operator, ...],
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism,
    params: CostParams,
    res: ResolvedParams,
) -> kernels_mod.MeasuredCurves | None:
    """Curves for the operators a measured table prices: dense GEMMs (by rows), the TP
    all-reduce (by tokens) when the engine runs a custom all-reduce inside one node, and the
    routed experts of an MoE layer (by tokens; the first expert operator carries the whole
    measured layer, the others are part of it). Curves from another GPU's measurements
    (:func:`_sibling_moe_curve`, :func:`_borrowed_moe_curve`, or a same-architecture GPU's
    GEMMs) or from another MoE shape (:func:`_reshaped_moe_curve`) are marked borrowed: the
    fitted rung."""
    tables = res.tables
    # (Wide EP's all-to-all puts a skewed share of pairs on each GPU: no table row for that.)
    moe_curve, moe_borrowed = None, False
    # (A calibration fits the efficiencies to the user's own GPU: nothing is borrowed then.)
    if model.moe is not None and res.uses_tables and not par.all_to_all:
        own_row = None
        if res.tables_from is None:
            moe_curve = own_row = _moe_curve(model, par, params, res)
            if moe_curve is None:
                # A GPU of the same architecture that measured this very shape comes first.
                moe_curve = _sibling_moe_curve(model, hw, par, params, res)
            if moe_curve is None:
                # This very shape at another split (3-7% off held out) before another shape
                # (8-13%).
                moe_curve = _resplit_moe_curve(model, hw, par, params, res)
            if moe_curve is None:
                # NOTE: this GPU's own measurements of the engine's kernel (on another shape)
                # come before another architecture's: what a kernel reaches depends on the
                # GPU's memory system and instruction path first (Marlin runs Hopper's
                # mma.sync far below its wgmma peak, which no Ada or Ampere table shows), the
                # expert shape second.
                moe_curve = _reshaped_moe_curve(model, hw, par, params, res)
        if moe_curve is None:
            moe_curve = _borrowed_moe_curve(model, hw, par, params, res)
        moe_borrowed = moe_curve is not None and own_row is None
    if tables is None and moe_curve is None:
        return None
    grid = kernels_mod.M_GRID
    columns, features, curves, ranges, borrowed = [], [], [], [], []
    act = dtype_bytes(res.act_dtype)
    for i, op in enumerate(operators):
        got, stand_in = None, False  # (stand_in: another dtype's rows, the fitted rung)
        # Under attention DP a global-scope operator sees every rank's tokens: the features'
        # second block.
        block = NUM_FEATURES if op.scope == ops_mod.SCOPE_GLOBAL else 0
        if op.rate == ops_mod.RATE_GEMM_EXPERT and moe_curve is not None:
            first = not any(operators[c].rate == ops_mod.RATE_GEMM_EXPERT for c in columns)
            seconds, measured = moe_curve
            columns.append(i)
            features.append(_F.T + block)
            curves.append(seconds * op.count * op.time_scale if first else np.zeros_like(seconds))
            ranges.append(measured)
            borrowed.append(moe_borrowed or res.tables_from is not None)
            continue
        if tables is None:
            continue
        if op.shape is not None and op.rate in (ops_mod.RATE_GEMM, ops_mod.RATE_GEMM_ACT):
            dtype = res.weight_dtype if op.rate == ops_mod.RATE_GEMM else res.act_dtype
            block_scaled = res.fp8_block_scaled and op.rate == ops_mod.RATE_GEMM
            for table in kernels_mod.table_dtypes(dtype, block_scaled):
                own = kernels_mod.engine_gemm_applies(
                    table, params.kernel_backend, params.engine_version,
                    (res.tables_from or hw).architecture,
                )  # fmt: skip
                got = kernels_mod.gemm_seconds(
                    tables, table, op.shape[0], op.shape[1], grid,
                    params.kernel_backend if own else None,
                )  # fmt: skip
                if got is not None:
                    stand_in = table in kernels_mod.INT8_STAND_IN and dtype == "int8"
                    break
            if got is not None and stand_in:
                peaks = (res.tables_from or hw).peak_flops
                if "int8" not in peaks or "fp8" not in peaks:
                    got = None
                else:
                    got = (got[0] * peaks["fp8"] / peaks["int8"], got[1])
            if got is not None and res.tables_from is not None:
                # Another GPU's measured utilisation, applied to this GPU's roofline.
                n, k = op.shape
                mine = _roofline_gemm_seconds(hw, params, res, dtype, n, k, grid)
                theirs = _roofline_gemm_seconds(res.tables_from, params, res, dtype, n, k, grid)
                got = (got[0] * mine / theirs, got[1])
            if got is not None:
                n, k = op.shape
                source = res.tables_from if res.tables_from is not None else hw
                weight, act = dtype_bytes(dtype), dtype_bytes(res.act_dtype)
                got = (l2_floor_seconds(got[0], hw, source, weight, act, n, k, grid), got[1])
        elif block:
            continue
        elif op.name == "all_reduce" and params.custom_allreduce and par.tp <= hw.gpus_per_node:
            per_token = model.hidden_size * act
            got = kernels_mod.allreduce_seconds(
                tables, par.tp, grid * per_token, params.kernel_backend,
                eager=not params.cuda_graphs, release=params.engine_version,
            )  # fmt: skip
            if got is not None:
                got = (got[0], (got[1][0] / per_token, got[1][1] / per_token))
            if got is not None and res.tables_from is not None:
                got = _borrowed_allreduce(got, res.tables_from, hw, par.tp)
        if got is None:
            continue
        seconds, measured = got
        columns.append(i)
        features.append((op.m_feature if op.shape is not None else _F.T) + block)
        curves.append(seconds * op.count * op.time_scale)
        ranges.append(measured)
        borrowed.append(res.tables_from is not None or stand_in)
    if not columns:
        return None
    return kernels_mod.MeasuredCurves(
        columns=np.array(columns, dtype=np.intp),
        features=np.array(features, dtype=np.intp),
        table=np.stack(curves, axis=1),
        measured_range=np.array(ranges, dtype=np.float64),
        borrowed=np.array(borrowed, dtype=bool),
    )


def _borrowed_allreduce(
    got: tuple[np.ndarray, tuple[float, float]], source: Hardware, hw: Hardware, tp: int
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """A same-architecture GPU's measured all-reduce on ``hw``: its bus bandwidth as a share of
    its link's, on ``hw``'s link (an H800's NVLink carries 400 GB/s, an H100's 900); None when
    the two links are not the same interconnect (an A10G's PCIe is not an A100's NVLink)."""
    same_kind = source.intra_node.name.split()[:1] == hw.intra_node.name.split()[:1]
    if not same_kind:
        return None
    theirs = source.intra_node.bandwidth_among(tp)
    mine = hw.intra_node.bandwidth_among(tp)
    return got[0] * theirs / mine, got[1]


def _gemm_memory_seconds(hw: Hardware, weight: float, act: float, n, k, m) -> np.ndarray:
    """Seconds one ``m × k`` by ``k × n`` GEMM takes to move its weights (``weight`` bytes an
    element) and activations (``act``) through HBM at the roofline's rate (the bandwidth × the
    GPU's memory efficiency)."""
    return (n * k * weight + m * (n + k) * act) / (hw.hbm_bandwidth * hw.memory_efficiency)


def l2_floor_seconds(
    seconds: np.ndarray, hw: Hardware, table_gpu: Hardware, weight: float, act: float, n, k, m
) -> np.ndarray:
    """A measured GEMM curve with its L2-served rows raised to the roofline's memory time.

    A kernel benchmark times one GEMM many times over: weights that fit in the table GPU's L2
    (``Hardware.l2_bytes``; a borrowed table's GPU's) stay there between repeats, so its
    small-batch rows beat the HBM (the L40S's by up to 3.8×, the RTX PRO 6000's 3.1×). Inside a
    forward pass every layer's weights come from HBM (LLMServingSim's vLLM 0.19 profile of
    Llama-3.1-8B and Qwen3-32B on an RTX PRO 6000 runs them 1.2-1.4× the table below 256 tokens,
    1.06-1.18× with this floor: ``bench/in_model_gemm.py``). Weights larger than L2 keep their
    measured rows, which may beat the roofline's memory efficiency honestly.

    ``table_gpu``: the GPU that measured the table (``hw`` itself, or the GPU a borrowed table
    comes from); ``weight``, ``act``: bytes an element; ``n``, ``k``, ``m``: numbers or arrays
    of one length."""
    l2 = table_gpu.l2_bytes
    if l2 is None:
        return seconds
    memory = _gemm_memory_seconds(hw, weight, act, n, k, m)
    return np.where(n * k * weight <= l2, np.maximum(seconds, memory), seconds)


def _roofline_gemm_seconds(
    hw: Hardware, params: CostParams, res: ResolvedParams, dtype: str, n: float, k: float, m
) -> np.ndarray:
    """The roofline rung's seconds of one ``m × k`` by ``k × n`` GEMM on ``hw`` (its datasheet
    peak and MAMF efficiency, the GEMM efficiency curve, one launch)."""
    peak = tensor_core_peak(hw.peak_flops, dtype, res.act_dtype) * hw.compute_efficiency
    flops = 2.0 * (m + params.gemm_half_tokens) * n * k
    memory = _gemm_memory_seconds(hw, dtype_bytes(dtype), dtype_bytes(res.act_dtype), n, k, m)
    return np.maximum(flops / peak, memory) + hw.kernel_launch_s


def _moe_curve(
    model: ModelSpec,
    par: Parallelism,
    params: CostParams,
    res: ResolvedParams,
    tables: kernels_mod.KernelTables | None = None,
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Seconds of one MoE layer's routed experts on ``M_GRID`` tokens, from the measured table
    of the engine's MoE kernels on ``res``'s GPU, or in ``tables`` (another GPU's); None: no
    table for this shape, split or dtype."""
    tables = tables if tables is not None else res.tables
    if model.moe is None or tables is None or not tables.moe:
        return None
    return _table_moe_seconds(model, par, params, res, tables, kernels_mod.moe_model_shape(model))


def _moe_dtypes(model: ModelSpec, params: CostParams, res: ResolvedParams) -> tuple[str, ...]:
    """The MoE table dtypes that time ``model``'s routed experts, best match first."""
    return kernels_mod.moe_table_dtype(
        res.expert_dtype, res.fp8_block_scaled, res.mxfp4_kernel, res.fp8_moe_kernel
    )


def _table_moe_seconds(
    model: ModelSpec,
    par: Parallelism,
    params: CostParams,
    res: ResolvedParams,
    tables: kernels_mod.KernelTables,
    shape: tuple[int, int, int, int],
    dtypes: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """``kernels.moe_seconds`` of ``shape`` in ``tables`` for ``model``'s expert dtype (or the
    table dtypes ``dtypes``), split and engine (its release names the engine's own kernels
    only)."""
    own = _moe_dtypes(model, params, res)
    dtypes = dtypes or own
    backend, release = _moe_backend_release(params, dtypes)
    # (A stand-in kernel's rows, those of another shape's dtype included, are scaled to the
    # experts' own kernel: ``wanted``.)
    wanted = own[0] if own else None
    got = kernels_mod.moe_seconds(
        tables, backend, dtypes, shape, par.expert_tp, par.ep, kernels_mod.M_GRID, release,
        wanted,
    )  # fmt: skip
    if got is None:
        return None
    table_gpu = load_hardware(tables.gpu)
    weight = expert_weight_bytes(res.expert_dtype, table_gpu)
    return expert_read_floor(got[0], table_gpu, shape, par, weight), got[1]


def expert_read_floor(
    seconds: np.ndarray,
    table_gpu: Hardware,
    shape: tuple[int, int, int, int],
    par: Parallelism,
    weight: float,
) -> np.ndarray:
    """A measured MoE layer curve on ``M_GRID`` tokens with each row raised to the time its GPU
    takes to read the weights of the experts the tokens hit under balanced routing (the
    expected distinct experts per GPU, ``features.expected_distinct_experts`` / EP, each
    ``3 × hidden × width / expert TP`` elements of ``weight`` bytes).

    A row can beat that only where the benchmark did not read what a serving step reads: the
    collector's routing hit fewer experts (AIConfigurator's block-FP8 and NVFP4 DeepSeek-V3
    rows of vLLM 0.24 and SGLang 0.5.14 read 256 experts' 11.3 GB in 2.0 ms at 64-256 tokens
    on an H100, 5.7 TB/s against its 3.35 TB/s HBM, where TensorRT-LLM's rows of the same shape
    take 3.7 ms), or the experts stayed in L2 between repeats (an L40S's 96 MB). A set larger
    than the GPU's L2 is floored at its HBM peak (no kernel reads faster); one that fits, at
    the roofline's memory rate, as :func:`l2_floor_seconds` floors a GEMM's.

    ``table_gpu``: the GPU that measured the curve; ``shape``: (hidden, expert width, top-k,
    experts); ``par``: the split the curve is of."""
    hidden, width, topk, experts = shape
    tokens = kernels_mod.M_GRID
    hit = _F.expected_distinct_experts(tokens, experts, topk) / par.ep
    read = hit * 3.0 * hidden * (width / par.expert_tp) * weight
    l2 = table_gpu.l2_bytes or 0.0
    rate = np.where(
        read > l2, table_gpu.hbm_bandwidth, table_gpu.hbm_bandwidth * table_gpu.memory_efficiency
    )
    return np.maximum(seconds, read / rate)


def _moe_backend_release(params: CostParams, dtypes: tuple[str, ...]) -> tuple[str, str | None]:
    """The engine whose MoE table is read first for ``dtypes``, and the release that picks its
    collection."""
    backend = kernels_mod.moe_kernel_backend(params.moe_backend, dtypes)
    # (A release names the engine's own kernels: not those of the engine it borrows from.)
    return backend, params.engine_version if backend == params.kernel_backend else None


def _expert_roofline_seconds(
    model: ModelSpec, hw: Hardware, par: Parallelism, params: CostParams
) -> np.ndarray:
    """The roofline rung's seconds of one MoE layer's routed experts on ``hw`` for each of
    ``M_GRID`` tokens (the expert operators of a roofline cost model, one layer; one pipeline
    stage, as the measured curves see a micro-batch's tokens)."""
    one_stage = replace(par, pp=1)
    roofline = build_step_cost(model, hw, one_stage, replace(params, kernel_tables=False))
    experts = [i for i, op in enumerate(roofline.operators) if op.rate == ops_mod.RATE_GEMM_EXPERT]
    rows = np.stack([roofline.features(np.array([t]), np.zeros(1)) for t in kernels_mod.M_GRID])
    per_operator = roofline._gpu(rows)[4]  # (with attention DP: the experts' global block)
    return per_operator[:, experts].sum(axis=1) / model.num_moe_layers


def _borrowed_moe_curve(
    model: ModelSpec, hw: Hardware, par: Parallelism, params: CostParams, res: ResolvedParams
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """One MoE layer's routed experts on ``M_GRID`` tokens for a GPU without a measured row of
    its own (the fitted rung): another GPU's measured *utilisation* — its measured time over
    its roofline, token count by token count — applied to this GPU's roofline.

    A GPU of the same architecture borrows its source's (``res.tables_from``, as its GEMMs do).
    Any other borrows from the GPUs with tables in :func:`_borrowing_order`. From each in turn,
    its row for this shape, split and dtype, else its nearest measured split of this shape
    (:func:`_resplit_moe_curve` on that GPU's tables), else its measured shape and split nearest
    this one (:func:`_reshaped_moe_curve`): a GPU's own measurements of the kernel before a
    farther GPU's. None when no GPU has a row of the kernel."""
    sources = [res.tables_from] if res.tables_from is not None else _borrowing_order(hw, res)
    for other in sources:
        tables = kernels_mod.load_tables(other.name, params.kernel_backend)
        got = _moe_curve(model, par, params, res, tables)
        if got is not None:
            utilisation = got[0] / _expert_roofline_seconds(model, other, par, params)
            return utilisation * _expert_roofline_seconds(model, hw, par, params), got[1]
        theirs = replace(res, tables=tables, tables_from=other)
        reshaped = _resplit_moe_curve(model, hw, par, params, theirs)
        if reshaped is None:
            reshaped = _reshaped_moe_curve(model, hw, par, params, theirs)
        if reshaped is not None:
            return reshaped
    return None


def _sibling_moe_curve(
    model: ModelSpec, hw: Hardware, par: Parallelism, params: CostParams, res: ResolvedParams
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """One MoE layer's routed experts on ``M_GRID`` tokens for a shape and split this GPU's
    tables lack but a GPU of the same ``architecture`` measured (the fitted rung): that GPU's
    measured layer, carried over by how the two GPUs compare on the rows this GPU's own reshape
    starts from (:func:`_reshape_source`; the same engine collection on both) — this GPU's
    reshaped curve times theirs measured over theirs reshaped from the same rows — else,
    without such shared rows, their measured utilisation on this GPU's roofline.

    Held out (each catalog shape removed from one GPU's tables only, ``bench/kernel_accuracy.py``)
    this brings the Hopper and datacentre-Blackwell GPUs much closer to their own rows than
    their own other shapes do (:func:`_reshaped_moe_curve`); across architectures the same
    correction does worse than the reshape, so only a same-architecture GPU is asked. None
    without one that measured the shape."""
    if hw.architecture is None or res.tables_from is not None:
        return None
    source = _reshape_source(model, par, params, res)
    mine = collection = None  # (this GPU's reshape, and the engine collection it reads)
    if source is not None:
        backend, release = _moe_backend_release(params, (source[0],))
        found = kernels_mod.moe_rows(
            res.tables, backend, (source[0],), source[1], source[2], par.ep, release
        )
        if found is not None:
            engine, rows = found
            table = res.tables.moe[engine]
            collection = engine, (table["version"][rows][0] if "version" in table else None)
            own = kernels_mod.moe_collection(res.tables, *collection)
            mine = _reshaped_moe_curve(model, hw, par, params, replace(res, tables=own), source)
    for other in _borrowing_order(hw, res):
        if other.architecture != hw.architecture:
            return None  # (the order puts the same architecture first)
        tables = kernels_mod.load_tables(other.name, params.kernel_backend)
        got = _moe_curve(model, par, params, res, tables)
        if got is None:
            continue
        theirs = None if mine is None else kernels_mod.moe_collection(tables, *collection)
        if theirs is not None:
            theirs_res = replace(res, tables=theirs)
            reference = _reshaped_moe_curve(model, other, par, params, theirs_res, source)
            if reference is not None:
                return mine[0] * got[0] / reference[0], got[1]
        utilisation = got[0] / _expert_roofline_seconds(model, other, par, params)
        return utilisation * _expert_roofline_seconds(model, hw, par, params), got[1]
    return None


def _borrowing_order(hw: Hardware, res: ResolvedParams) -> list[Hardware]:
    """The GPUs with tables a GPU without MoE rows borrows from, in order: those of its own
    ``architecture`` first (the same fused-MoE kernels: held out, a Blackwell datacentre GPU
    borrowing another's is within 1-4% of its own rows, a Hopper one 9%), then by roofline ridge
    (compute over memory rate, for the experts' dtype), nearest its own first: where the ridge
    sits decides how far below its roofline a fused-MoE layer runs at a token count (an MI300X,
    alone in CDNA 3, borrows from the H200, whose ridge is within 25% of its own). A GPU's
    share of its roofline does not carry far across architectures: the L40S's on the Marlin INT4
    MoE rows it and the A100 both measured is about twice the A100's, reached partly from its
    96 MB L2."""
    others = [load_hardware(n) for n in kernels_mod.gpus_with_tables() if n != hw.name.lower()]
    mine = math.log(_ridge(hw, res))
    return sorted(
        others,
        key=lambda other: (
            hw.architecture is None or other.architecture != hw.architecture,
            abs(math.log(_ridge(other, res)) - mine),
        ),
    )


MoeSource = tuple[str, tuple[int, int, int, int], int]
"""A measured MoE table row set: (table dtype, (hidden, expert width, top-k, experts), the
expert TP it was measured at)."""


def _reshape_source(
    model: ModelSpec, par: Parallelism, params: CostParams, res: ResolvedParams
) -> MoeSource | None:
    """The measured shape and split :func:`_reshaped_moe_curve` prices ``model``'s experts from
    in ``res.tables``: of the best-matching dtype (kernel) with any shape at this EP — Marlin's
    MXFP4 rows of another shape before its INT4 rows of a nearer one — first the shapes whose
    tokens spread over their experts as this model's do (top-k / experts, nearest in log), then
    the (shape, expert TP) whose experts on one GPU are nearest in (log hidden, log expert
    width / expert TP), then the same split. A fused MoE kernel runs each expert as two GEMMs
    of those dimensions, so another split of another shape can be the nearest one; the spread
    comes first because the utilisation is read at equal tokens per expert, which carries the
    kernels' per-token work only between shapes that route alike (Mixtral-8x7B's top-2 of 8
    held out on the H100 at TP 2: 3% off from Qwen3-235B-A22B's top-8 of 128 at TP 1, 46% from
    DeepSeek-V3's experts, nearest in size). Held out by shape (``bench/kernel_accuracy.py``)
    this prices a shape 6-10% off its own rows (median per GPU), where the nearest whole-expert
    size was 7-13% and the nearest shape at the same split 9-18%. A stand-in kernel's rows keep
    the older rule (below). None without a measured shape."""
    tables, moe = res.tables, model.moe
    if moe is None or tables is None or not tables.moe:
        return None
    splits = sorted(
        {int(tp) for t in tables.moe.values() for tp in np.unique(t["tp"][t["ep"] == par.ep])}
    )
    splits = [tp for tp in splits if _measured_split(model, par, tp) is not None]
    own = _moe_dtypes(model, params, res)
    for dtype in own:
        found = [
            (shape, tp)
            for tp in splits
            for shape in kernels_mod.moe_shapes(tables, (dtype,), tp, par.ep)
        ]
        if found:
            break
    else:
        return None
    same = [c for c in found if c[1] == par.expert_tp]
    if dtype != own[0] and same:
        # A stand-in kernel's rows (Marlin's INT4 for its MXFP4) cross kernels already: they
        # keep this split and the shape nearest in whole-expert size, as its factor
        # (MARLIN_MXFP4_OVER_INT4) was measured (across splits as well, the held-out MXFP4
        # rows were 8-9% off instead of 6-7%).
        size = math.log(model.hidden_size * moe.expert_intermediate_size)
        shape, tp = min(same, key=lambda c: (abs(math.log(c[0][0] * c[0][1]) - size), c))
        return dtype, shape, tp
    want_hidden = math.log(model.hidden_size)
    want_width = math.log(moe.expert_intermediate_size / par.expert_tp)
    load = math.log(moe.experts_per_token / moe.num_experts)

    def distance(c: tuple[tuple[int, int, int, int], int]) -> tuple:
        (hidden, width, topk, experts), tp = c
        spread = abs(math.log(topk / experts) - load)
        gemm = math.hypot(math.log(hidden) - want_hidden, math.log(width / tp) - want_width)
        return round(spread, 9), round(gemm, 9), tp != par.expert_tp, c

    shape, tp = min(found, key=distance)
    return dtype, shape, tp


def _measured_split(model: ModelSpec, par: Parallelism, expert_tp: int) -> Parallelism | None:
    """``par`` with its routed experts split over ``expert_tp`` GPUs (the same EP): ``par``
    itself for its own split, else the plain TP × EP deployment of that split; None when that
    does not fit ``model``'s heads."""
    if expert_tp == par.expert_tp:
        return par
    other = Parallelism(tp=expert_tp * par.ep, ep=par.ep)
    try:
        other.check(model)
    except ServesimError:
        return None
    return other


def _reshaped_moe_curve(
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism,
    params: CostParams,
    res: ResolvedParams,
    source: MoeSource | None = None,
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """One MoE layer's routed experts on ``M_GRID`` tokens for an MoE shape no table measured
    (a model outside the catalog), on a GPU whose tables hold other shapes (the fitted rung):
    the measured *utilisation* (layer time over its roofline, both at the measured split) of the
    measured shape and split of the same dtype that routes and is shaped most like it
    (:func:`_reshape_source`, or ``source``), read at the same tokens per expert (T · top-k /
    experts), applied to this model's roofline at ``par``.

    Held out on the catalog's shapes (``bench/kernel_accuracy.py``) this is about a third of
    the roofline's error on Hopper. None without such a shape (or without tables)."""
    moe = model.moe
    source = source or _reshape_source(model, par, params, res)
    if moe is None or source is None or res.tables is None:
        return None
    dtype, shape, tp = source
    hidden, width, topk, experts = shape
    measured = _measured_split(model, par, tp)
    if measured is None:
        return None
    try:
        proxy = replace(
            model,
            hidden_size=hidden,
            moe=replace(
                moe, expert_intermediate_size=width, experts_per_token=topk, num_experts=experts
            ),
        )
        got = _table_moe_seconds(proxy, measured, params, res, res.tables, shape, (dtype,))
        if got is None:
            return None
        # The utilisation is the tables' GPU's (a same-architecture GPU's when borrowed).
        theirs = _expert_roofline_seconds(proxy, res.tables_from or hw, measured, params)
    except ServesimError:
        return None  # (the measured shape does not fit this model's split: the roofline)
    utilisation = got[0] / theirs
    # This model's T tokens meet its experts as the source's T · ratio tokens meet its own.
    ratio = (moe.experts_per_token / moe.num_experts) / (topk / experts)
    grid = kernels_mod.M_GRID
    at_same_load = c_math(
        math.exp,
        np.interp(
            c_math(math.log, grid * ratio), kernels_mod.LOG_M_GRID, c_math(math.log, utilisation)
        ),
    )
    lo, hi = got[1]
    return at_same_load * _expert_roofline_seconds(model, hw, par, params), (lo / ratio, hi / ratio)


def _measured_splits(
    tables: kernels_mod.KernelTables,
    dtypes: tuple[str, ...],
    shape: tuple[int, int, int, int],
    ep: int,
) -> list[int]:
    """The expert TP sizes some engine's table measured ``shape`` at with ``ep`` in one of
    ``dtypes`` (at least two token counts), sorted."""
    found: set[int] = set()
    for t in (tables.moe or {}).values():
        rows = kernels_mod.moe_shape_rows(t, shape) & (t["ep"] == ep)
        rows &= np.isin(t["dtype"], list(dtypes))
        tps, counts = np.unique(t["tp"][rows], return_counts=True)
        found |= {int(tp) for tp, n in zip(tps, counts, strict=True) if n >= 2}
    return sorted(found)


def _resplit_moe_curve(
    model: ModelSpec, hw: Hardware, par: Parallelism, params: CostParams, res: ResolvedParams
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """One MoE layer's routed experts on ``M_GRID`` tokens for an expert split no table
    measured (an expert TP beyond the tables' 8: TP 16 on an NVL72 rack, SGLang's DP attention
    over 16 GPUs), on a GPU whose tables hold this model's shape at other splits (the fitted
    rung): the measured *utilisation* (layer time over its roofline) with the same EP, applied
    to this split's roofline at the same tokens (a TP split narrows each expert; the tokens per
    expert stay) — between two measured expert TPs, their utilisations interpolated in log TP
    (geometrically), over the tokens both measured; outside them, the nearest one's (in log;
    the larger of two as near).

    Held out on the catalog's shapes, each measured split priced from the others
    (``bench/kernel_accuracy.py``), it is 3-7% off the measured layers (median per GPU; 5-11%
    with the nearest split alone), the roofline 19-38%. ``res.tables_from``: the tables are that
    GPU's (borrowed), whose roofline the utilisation is taken against. None without such a
    split (or without tables)."""
    tables, moe = res.tables, model.moe
    if moe is None or tables is None or not tables.moe:
        return None
    shape = kernels_mod.moe_model_shape(model)
    ep = par.ep if par.dp == 1 else 1
    want = par.expert_tp
    for dtype in _moe_dtypes(model, params, res):
        splits = [tp for tp in _measured_splits(tables, (dtype,), shape, ep) if tp != want]
        if splits:
            break
    else:
        return None

    def utilisation(tp: int) -> tuple[np.ndarray, tuple[float, float]] | None:
        """The measured split ``tp``'s utilisation on ``M_GRID`` and its measured tokens."""
        # (The measured split as a parallelism of this model: one DP rank, expert TP = tp.)
        source = Parallelism(tp=tp * ep, ep=ep)
        source.check(model)
        got = _table_moe_seconds(model, source, params, res, tables, shape)
        if got is None:
            return None
        theirs = _expert_roofline_seconds(model, res.tables_from or hw, source, params)
        return got[0] / theirs, got[1]

    below, above = [tp for tp in splits if tp < want], [tp for tp in splits if tp > want]
    try:
        ours = _expert_roofline_seconds(model, hw, par, params)
        if below and above:
            lo_tp, hi_tp = max(below), min(above)
            lo, hi = utilisation(lo_tp), utilisation(hi_tp)
            tokens = (max(lo[1][0], hi[1][0]), min(lo[1][1], hi[1][1])) if lo and hi else None
            if tokens is not None and tokens[0] <= tokens[1]:
                w = math.log(want / lo_tp) / math.log(hi_tp / lo_tp)
                blend = (1.0 - w) * c_math(math.log, lo[0]) + w * c_math(math.log, hi[0])
                return c_math(math.exp, blend) * ours, tokens
        got = utilisation(min(splits, key=lambda tp: (abs(math.log(tp / want)), -tp)))
    except ServesimError:
        return None  # (a measured split does not fit this model: the roofline)
    return None if got is None else (got[0] * ours, got[1])


def _ridge(hw: Hardware, res: ResolvedParams) -> float:
    """FLOPs per byte where ``hw``'s roofline turns from memory- to compute-bound for the
    routed experts' dtype (its efficiencies included)."""
    peak = tensor_core_peak(hw.peak_flops, res.expert_dtype, res.act_dtype) * hw.compute_efficiency
    return peak / (hw.hbm_bandwidth * hw.memory_efficiency)


def build_step_cost(
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism | None = None,
    params: CostParams | None = None,
) -> StepCostModel:
    """Precompute the step-time coefficients of ``model`` on ``hw`` split as ``par``.

    Raises ServesimError when the split is impossible or a dtype unknown or unsupported.
    """
    par = par or Parallelism()
    params = params or CostParams()
    par.check(model)
    res = resolve_params(model, hw, params)
    feature_map = FeatureMap.for_model(model, par, params)
    load = feature_map.moe_load
    custom = params.custom_allreduce
    fused = params.mla_fused_down_proj
    operators = model_operators(
        model,
        par,
        res,
        params.head,
        moe_load=load,
        custom_allreduce=custom,
        mla_fused_down_proj=fused,
        mla_materialized=params.mla_materialized,
        mla_prompt_attention_scale=params.mla_prompt_attention_scale,
        deepseek_glue_kernels=params.deepseek_glue_kernels,
        allreduce_norm_fusion=params.allreduce_norm_fusion,
    )
    rates = rates_of(hw, par, params, res)
    half = params.gemm_half_tokens
    calibrated = params.fidelity == "calibrated"

    def sides(ops: tuple[Operator, ...]) -> OperatorSides:
        curves = _measured_curves(ops, model, hw, par, params, res)
        heads = model.num_attention_heads / par.tp
        kv_share = model.num_kv_heads / model.num_attention_heads
        return operator_sides(
            ops, rates, half, feature_map, par.dp, res, curves, calibrated, heads, kv_share
        )

    whole = sides(operators)

    stages = stage_of = None
    if par.pp > 1:
        stage_ops = [
            model_operators(
                model,
                par,
                res,
                params.head,
                stage=st,
                moe_load=load,
                custom_allreduce=custom,
                mla_fused_down_proj=fused,
                mla_materialized=params.mla_materialized,
                mla_prompt_attention_scale=params.mla_prompt_attention_scale,
                deepseek_glue_kernels=params.deepseek_glue_kernels,
                allreduce_norm_fusion=params.allreduce_norm_fusion,
            )
            for st in pipeline_stages(model, par.pp)
        ]
        stages = sides(tuple(o for s in stage_ops for o in s))
        stage_of = np.zeros((sum(len(s) for s in stage_ops), par.pp))
        start = 0
        for s, ops_s in enumerate(stage_ops):
            stage_of[start : start + len(ops_s), s] = 1.0
            start += len(ops_s)

    fixed = np.zeros((NUM_FEATURES, 2))  # [overhead, host] seconds per feature unit
    fixed[_F.ONE] = params.step_overhead_s, params.host_step_s
    fixed[_F.B] = params.overhead_per_seq_s, params.host_per_seq_s
    fixed[_F.T] = params.overhead_per_token_s, params.host_per_token_s
    present = {op.group for op in operators} | {"comm", "overhead"}
    simple = par.pp == 1 and par.dp == 1
    return StepCostModel(
        model=model,
        hardware=hw,
        parallelism=par,
        params=params,
        resolved=res,
        operators=operators,
        feature_map=feature_map,
        _ops=whole,
        _stages=stages,
        _stage_of=stage_of,
        _fixed=fixed,
        _group_idx=np.array([GROUPS.index(op.group) for op in operators], dtype=np.intp),
        _groups=tuple(g for g in GROUPS if g in present),
        _microbatches=(params.pp_microbatches or par.pp) if par.pp > 1 else 1,
        _simple=simple,
        _hot=hot_matrix(whole, fixed) if simple else None,
    )


__all__ = ["build_step_cost"]
