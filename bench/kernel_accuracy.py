"""Operator-level error of servesim's rungs against the measured kernel tables, per GPU.

    python bench/kernel_accuracy.py

For every GPU with tables (``src/servesim/catalog/kernels``) and every operator family, the
median absolute relative error against the measured rows of:

- the **roofline** rung (datasheet peak × MAMF efficiency, the GEMM efficiency curve, one launch;
  attention at the GEMM efficiency; KV reads at the HBM efficiency; the ring all-reduce);
- the **table** rungs, held out: GEMMs and all-reduce interpolated with each measured row left
  out (leave-one-point-out: the row is predicted from its neighbours in m / bytes); attention
  curves refitted with each head shape left out (leave-one-shape-out) and scored on that shape.
- GEMM weight shapes held out whole, with their grid row and column (so that the shape sits
  between measured ones in n and in k, as a model's layer shapes do): priced from the nearest
  remaining shape, and interpolated in (log n, log k) as the cost model does.

Rows are bf16, head_dim 128, GEMM m 1–16384, prefill s >= 64, decode KV >= 1 GB (smaller working
sets are read from L2 in the tables).

A second table scores the routed experts of the catalog's MoE models (Mixtral-8x7B, Qwen3-30B-A3B,
Qwen3-235B-A22B, DeepSeek-V3, gpt-oss-120b in their checkpoints' dtypes, TP 1/2/4/8) against each
GPU's measured MoE curve at its measured token counts: the roofline; the table with each token
count left out (interpolated from its neighbours); and the **fitted** rung a GPU without MoE rows
gets — another GPU's measured utilisation on this GPU's roofline
(``build._borrowed_moe_curve``), scored here with the GPU's own rows left out (leave-one-GPU-out);
and the fitted rung an MoE shape no table measured gets on a GPU with tables — the measured
shape and split nearest in per-GPU expert size, its utilisation on this GPU
(``build._reshaped_moe_curve``), scored with the
model's own shape left out of every table (leave-one-shape-out); the fitted rung a shape this
GPU lacks but a GPU of its architecture measured gets — that GPU's rows, carried over by how the
two compare on the reshape's rows (``build._sibling_moe_curve``), scored with the shape left out
of this GPU's tables only; and the fitted rung an expert TP split no table measured gets — the
nearest measured split's utilisation of the same shape (``build._resplit_moe_curve``), scored
with each split left out (leave-one-split-out).

FP8 GEMMs (all rows) on the roofline and with the FP8 factors of ``cost/fp8_fit.py`` fitted to
the other GPUs' tables, all of them and those of its architecture (leave-one-GPU-out: the fitted
rung a GPU without an FP8 table gets takes the latter where its architecture has any).

Last, what a GPU would get without tables of its own, scored on its own rows (leave-one-GPU-out):
its bf16 GEMMs as its architecture's nearest GPU's utilisation (``kernels.transfer_source_for``),
and its prefill attention with the median curve of every other GPU and of its architecture's.

Prints Markdown tables (the README quotes them; ``--readme README.md`` rewrites the README's
tables of the same headers, ``bench/readme_tables.py``).

    python bench/kernel_accuracy.py [--readme README.md]
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np

from servesim.cost import CostParams, Parallelism
from servesim.cost import attention_fit as AF
from servesim.cost import build as B
from servesim.cost import fp8_fit as FP8
from servesim.cost import kernels as K
from servesim.cost.dtypes import dtype_bytes
from servesim.cost.resolve import resolve_params
from servesim.cost.step import walk_factors
from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.model import load_model

MOE_MODELS = (
    "mistralai/Mixtral-8x7B-v0.1",
    "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B",
    "deepseek-ai/DeepSeek-V3",
    "openai/gpt-oss-120b",
)


def _median_abs(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.median(np.abs(pred / true - 1.0)))


def _held_out_interpolation(x: np.ndarray, secs: np.ndarray) -> list[float]:
    """|error| of each interior point of a measured curve (``x`` ascending) predicted log-log
    from the others (interpolation, not extrapolation)."""
    rate = np.log(x / secs)
    errors = []
    for i in range(1, len(x) - 1):
        keep = np.arange(len(x)) != i
        got = np.exp(np.interp(math.log(x[i]), np.log(x[keep]), rate[keep]))
        errors.append(abs((x[i] / got) / secs[i] - 1.0))
    return errors


def _bf16_gemm_roofline(hw, m, n, k) -> np.ndarray:
    """The roofline rung's seconds of bf16 ``m × k`` by ``k × n`` GEMMs on ``hw``."""
    half = CostParams().gemm_half_tokens
    peak = hw.peak_flops["bf16"] * hw.compute_efficiency
    nbytes = 2.0 * (n * k + m * (n + k))
    memory = nbytes / (hw.hbm_bandwidth * hw.memory_efficiency)
    return np.maximum(2.0 * (m + half) * n * k / peak, memory) + hw.kernel_launch_s


def gemm_errors(hw, t) -> tuple[float, float]:
    g = t.gemm
    rows = g["dtype"] == "bf16"
    m, n, k, secs = g["m"][rows], g["n"][rows], g["k"][rows], g["seconds"][rows]
    roof = _bf16_gemm_roofline(hw, m, n, k)
    held = []
    for nn, kk in set(zip(n.tolist(), k.tolist(), strict=True)):
        pick = (n == nn) & (k == kk)
        order = np.argsort(m[pick])
        held += _held_out_interpolation(m[pick][order], secs[pick][order])
    return _median_abs(roof, secs), float(np.median(held))


def gemm_shape_errors(t, l2_bytes: float | None = None) -> tuple[float, float, float]:
    """Median |error| of a weight shape's time held out of the table with its grid row and
    column (interior grid shapes, every measured m, bf16 and fp8): from the nearest remaining
    shape (the rule before), as ``kernels.gemm_seconds`` prices it now, interpolated in (log n,
    log k) between the four measured shapes around it, and the same on the shapes whose weights
    exceed ``l2_bytes`` (the measuring GPU's L2; all shapes without one) — the rows the cost
    model takes as measured (``build.l2_floor_seconds`` raises the others to the HBM roofline:
    the benchmark served them from L2, a forward pass cannot)."""
    g = t.gemm
    nearest, interpolated, beyond_l2 = [], [], []
    for dtype in ("bf16", "fp8"):
        rows = g["dtype"] == dtype
        if not rows.any():
            continue
        ns, ks = np.unique(g["n"][rows]), np.unique(g["k"][rows])
        for n in ns[1:-1]:
            for k in ks[1:-1]:
                held = rows & (g["n"] == n) & (g["k"] == k)
                if not held.any():
                    continue
                # Its whole grid row and column go too: the shape then sits between measured
                # shapes in both n and k, as a model's layer shapes do.
                gone = rows & ((g["n"] == n) | (g["k"] == k))
                keep = {c: v[~gone] for c, v in g.items()}
                rest = K.KernelTables("held out", keep, None, None, None)
                m, secs = g["m"][held], g["seconds"][held]
                got, _ = K.gemm_seconds(rest, dtype, float(n), float(k), m)
                interpolated += np.abs(got / secs - 1.0).tolist()
                if l2_bytes is None or n * k * dtype_bytes(dtype) > l2_bytes:
                    beyond_l2 += np.abs(got / secs - 1.0).tolist()
                kr = keep["dtype"] == dtype
                dist = (np.log(keep["n"][kr]) - math.log(n)) ** 2 + (
                    np.log(keep["k"][kr]) - math.log(k)
                ) ** 2
                best = int(np.argmin(dist))
                near_n, near_k = keep["n"][kr][best], keep["k"][kr][best]
                pick = kr & (keep["n"] == near_n) & (keep["k"] == near_k)
                order = np.argsort(keep["m"][pick])
                rate = np.exp(
                    np.interp(
                        np.log(m),
                        np.log(keep["m"][pick][order]),
                        np.log(keep["tflops"][pick][order]),
                    )
                )
                nearest += np.abs(2 * m * n * k / (rate * 1e12) / secs - 1.0).tolist()
    return float(np.median(nearest)), float(np.median(interpolated)), float(np.median(beyond_l2))


def fp8_errors(hw, t) -> tuple[float, float, float] | None:
    """Median |error| of the FP8 GEMM rows on the roofline, with the FP8 factors fitted to every
    *other* GPU's tables, and with those of the other GPUs of its architecture (leave-one-GPU-out:
    what a GPU without an FP8 table gets, ``fp8_fit.fp8_gemm_factors(architecture)``)."""
    if "fp8" not in hw.peak_flops or not (t.gemm["dtype"] == "fp8").any():
        return None
    others = [n for n in K.gpus_with_tables() if n != hw.name.lower()]
    compute, memory, secs = FP8.fp8_roofline_sides(
        t.gemm,
        hw.peak_flops["fp8"] * hw.compute_efficiency,
        hw.hbm_bandwidth * hw.memory_efficiency,
        CostParams().gemm_half_tokens,
    )
    roof = np.maximum(compute, memory) + hw.kernel_launch_s
    every = FP8.fp8_gemm_seconds(compute, memory, FP8.factors_over(others), hw.kernel_launch_s)
    # What fp8_gemm_factors(architecture) gives a GPU of this one's architecture without an
    # FP8 table: the other GPUs of the architecture that have FP8 rows, else every other GPU.
    same = [n for n in others if FP8._architecture(n) == hw.architecture]
    same = [n for n in same if FP8._factors_of_gpu(n) is not None] or others
    own_arch = FP8.fp8_gemm_seconds(compute, memory, FP8.factors_over(same), hw.kernel_launch_s)
    return _median_abs(roof, secs), _median_abs(every, secs), _median_abs(own_arch, secs)


def prefill_errors(hw, t) -> tuple[float, float]:
    p = t.attention_prefill
    base = (p["dtype"] == "bf16") & (p["head_dim"] == 128) & (p["seq_len"] >= 64)
    secs = p["seconds"][base]
    flops = p["tflops"][base] * 1e12 * secs
    peak, launch = hw.peak_flops["bf16"], hw.kernel_launch_s
    roof = flops / (peak * hw.compute_efficiency) + 2 * launch
    shape = p["num_heads"] * 1000 + p["num_kv_heads"]
    errors = []
    for held in np.unique(shape[base]):
        e, h, fill, n, w, _ = AF.fit_prefill(p, peak, launch, rows=shape != held)
        errors.append(AF.prefill_error(p, peak, launch, e, h, base & (shape == held), fill, n, w))
    return _median_abs(roof, secs), float(np.median(errors))


def own_curve_prefill_errors(
    hw, t, head_dim: int = AF.NARROW_HEAD_DIM, dtype: str = "bf16"
) -> tuple[float, float, int] | None:
    """Prefill attention rows with their own curve (64-wide heads: GPT-OSS, Llama-3.2-1B; or
    FP8 attention of 128-wide heads): median |error| of the table's ``dtype`` rows of
    ``head_dim`` (s >= 64) under the bf16 128-wide curve (what priced them before
    ``AttentionFit.prefill_curve``), under their own curve fitted with each head shape held
    out, and the number of rows; None without such rows."""
    p = t.attention_prefill
    base = (p["dtype"] == dtype) & (p["head_dim"] == head_dim) & (p["seq_len"] >= 64)
    if not base.any():
        return None
    peak, launch = hw.peak_flops["bf16"], hw.kernel_launch_s
    e, h, fill, n, w, _ = AF.fit_prefill(p, peak, launch)
    wide = AF.prefill_error(p, peak, launch, e, h, base, fill, n, w)
    shape = p["num_heads"] * 1000 + p["num_kv_heads"]
    errors = []
    for held in np.unique(shape[base]):
        e, h, fill, n, w, _ = AF.fit_prefill(
            p, peak, launch, rows=shape != held, head_dim=head_dim, dtype=dtype
        )
        errors.append(AF.prefill_error(p, peak, launch, e, h, base & (shape == held), fill, n, w))
    return wide, float(np.median(errors)), int(base.sum())


def _own_curve_row(hw, head_dim: int = AF.NARROW_HEAD_DIM, dtype: str = "bf16"):
    got = own_curve_prefill_errors(hw, K.load_tables(hw.name), head_dim, dtype)
    return None if got is None else [str(got[2]), _pct(got[0]), _pct(got[1])]


def decode_model(
    hw, d, kv_dtype: str, floor: bool = True, ramp: bool = True, serial_rate: float | None = None
):
    """(fixed seconds per call, fraction of HBM bandwidth, ramp, serial-walk block rate) fitted
    to decode table ``d``'s rows of ``kv_dtype`` as the cost model fits them: the table's floor
    (``floor``; else one launch), the fraction of its rows of at least 1 GB under it, the ramp
    between them (``ramp``, with the floor; else none), and the rate one thread block walks a
    sequence's KV at where ``d``'s kernel does not split it (``AF.fit_decode_serial_rate``, its
    rows left out of the fraction and the ramp; ``serial_rate``: that rate as given, e.g. the
    other GPUs' where ``d`` holds no multi-head rows)."""
    launch = hw.kernel_launch_s
    fixed = AF.decode_floor(d, hw.hbm_bandwidth, launch, kv_dtype) if floor else None
    fixed = launch if fixed is None else fixed
    if serial_rate is None:
        # (An FP8 cache is not FlashAttention-2's: vLLM reads it with another backend.)
        serial_rate = (
            0.0 if kv_dtype == "fp8" else AF.fit_decode_serial_rate(d, hw.hbm_bandwidth, fixed)
        )
    e, _, walked = AF.fit_decode_outside_walk(
        d, hw.hbm_bandwidth, launch, kv_dtype, fixed, serial_rate
    )
    curve = (
        AF.decode_ramp(d, hw.hbm_bandwidth, fixed, e, kv_dtype, exclude=walked)
        if floor and ramp
        else ()
    )
    return fixed, e, curve, serial_rate


def decode_seconds(
    hw, model, kv_bytes: np.ndarray, walks: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Seconds of decode calls reading ``kv_bytes`` under ``model`` (:func:`decode_model`);
    ``walks``: each call's (rows, KV heads) where its kernel walks each sequence serially (the
    multi-head rows; 0 rows elsewhere), at least that walk in waves of the GPU's SMs as the
    cost model prices it (``step.walk_factor``)."""
    fixed, e, curve, serial_rate = model
    rate = hw.hbm_bandwidth * e
    base = fixed + kv_bytes / rate
    if curve and curve[0]:
        base = base * AF.ramp_ratio(np.log10(kv_bytes), curve)
    if walks is not None and serial_rate > 0.0:
        rows, heads = walks
        wave = float(hw.multiprocessors or 0)
        factor = np.where(rows > 0, walk_factors(rows, rate / serial_rate, heads, wave), 1.0)
        base = np.maximum(base, fixed + kv_bytes / rate * factor)
    return base


def walk_rows(d, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, KV heads) of decode table ``d``'s ``rows`` that walk serially where the kernel
    does not split: the multi-head rows' batch and heads, 0 rows for the grouped ones
    (split)."""
    mha = d["num_heads"][rows] == d["num_kv_heads"][rows]
    return np.where(mha, d["batch"][rows], 0), d["num_kv_heads"][rows]


@functools.cache
def serial_rates() -> dict[str, float]:
    """Each GPU's serial-walk block rate on the decode table its vLLM engine reads (its shipped
    fit's ``decode_serial_rate``; 0 where that table's kernels split): what a held-out
    multi-head shape borrows from the others."""
    return {
        name: AF.attention_fit_for(load_hardware(name), "vllm")[0].decode_serial_rate
        for name in K.gpus_with_tables()
    }


def _serial_row(hw) -> list[str] | None:
    """vLLM's decode rows of ``hw`` that its FlashAttention-2 walks serially (multi-head rows
    the fit leaves out of the fraction): their count, their error under the fraction alone (no
    walk), under the walk at this GPU's own block rate, and at the other GPUs' median rate (what
    a GPU without a table borrows); None where the table shows no walk."""
    own = serial_rates().get(hw.name.lower(), 0.0)
    if own <= 0.0:
        return None
    t = K.load_tables(hw.name, "vllm")
    d = t.engine_decode["vllm"]
    model = decode_model(hw, d, "bf16")
    kv = d["gbps"] * 1e9 * d["seconds"]
    rows = AF.serial_rows(d, own, hw.hbm_bandwidth, model[1]) & (kv >= AF.SERIAL_MIN_KV_BYTES)
    true = d["seconds"][rows]
    flat = decode_seconds(hw, model, kv[rows])
    walks = walk_rows(d, rows)
    mine = decode_seconds(hw, model, kv[rows], walks)
    borrowed = decode_seconds(hw, (*model[:3], borrowed_serial_rate(hw)), kv[rows], walks)
    return [
        str(int(rows.sum())),
        f"{own / 1e9:.1f}",
        _pct(_median_abs(flat, true)),
        _pct(_median_abs(mine, true)),
        _pct(_median_abs(borrowed, true)),
    ]


def borrowed_serial_rate(hw) -> float:
    """The median serial-walk block rate of the *other* GPUs whose vLLM tables show one."""
    rates = [r for n, r in serial_rates().items() if n != hw.name.lower() and r > 0.0]
    return float(np.median(rates)) if rates else 0.0


def decode_errors(
    hw, t, kv_dtype: str = "bf16", d=None, kv_range=(AF.DECODE_MIN_KV_BYTES, math.inf),
    floor: bool = True, ramp: bool = True, regimes: bool | None = None,
) -> tuple[float, float]:  # fmt: skip
    """Median |error| of ``kv_dtype``'s decode rows reading ``kv_range`` bytes of KV (>= 1 GB
    by default) on the roofline and under the model fitted to that dtype's rows of the other
    head shapes (:func:`decode_model`; of the decode table ``d``, by default ``t``'s
    TensorRT-LLM one); ``regimes`` (default: an FP8 cache, as the cost model reads a table for
    its own engine, TensorRT-LLM's from 1.0 included): each row at the fraction of its kernel
    regime fitted to those other shapes (``AF.fit_decode_cells``, ``AF.cell_fraction``)."""
    d = t.attention_decode if d is None else d
    if regimes is None:
        regimes = kv_dtype == "fp8"
    kv = d["gbps"] * 1e9 * d["seconds"]
    rows = (kv >= kv_range[0]) & (kv < kv_range[1]) & (d["dtype"] == kv_dtype)
    if not rows.any():
        return math.nan, math.nan
    launch = hw.kernel_launch_s
    roof = kv[rows] / (hw.hbm_bandwidth * hw.memory_efficiency) + 2 * launch
    shape = d["num_heads"] * 1000 + d["num_kv_heads"]
    errors = []
    # (Whether the table's kernel walks sequences serially shows in its multi-head rows: a
    # held-out multi-head shape takes the rate of the other GPUs whose kernels do.)
    own_rate = (
        0.0
        if kv_dtype == "fp8"
        else AF.fit_decode_serial_rate(
            d, hw.hbm_bandwidth, AF.decode_floor(d, hw.hbm_bandwidth, launch, kv_dtype) or launch
        )
    )
    for held in np.unique(shape[rows]):
        train = {c: v[shape != held] for c, v in d.items()}
        test = rows & (shape == held)
        model = decode_model(hw, train, kv_dtype, floor, ramp)
        if own_rate > 0.0 and model[3] <= 0.0:
            model = decode_model(hw, train, kv_dtype, floor, ramp, borrowed_serial_rate(hw))
        pred = decode_seconds(hw, model, kv[test], walk_rows(d, test))
        if regimes:
            pred = _regime_seconds(hw, train, d, test, kv, model, kv_dtype, pred)
        errors.append(_median_abs(pred, d["seconds"][test]))
    return _median_abs(roof, d["seconds"][rows]), float(np.median(errors))


def _regime_seconds(hw, train, d, test, kv, model, kv_dtype: str, pred) -> np.ndarray:
    """``pred`` (the seconds of decode table ``d``'s ``test`` rows under ``model``) with each
    row at its kernel regime's fraction and the ramp over those fractions, both fitted to the
    ``train`` rows as ``AF.fit_tables`` fits them (the model's floor as the fixed cost)."""
    cells = AF.fit_decode_cells(train, hw.hbm_bandwidth, hw.kernel_launch_s, kv_dtype, model[0])
    if not cells:
        return pred
    fixed, pooled, curve, serial_rate = model
    if curve:
        by_regime = AF.regime_fractions(train, cells, pooled)
        curve = AF.decode_ramp(train, hw.hbm_bandwidth, fixed, by_regime, kv_dtype)
    fractions = AF.regime_fractions(d, cells, pooled)[test]
    return decode_seconds(hw, (fixed, fractions, curve, serial_rate), kv[test])


DECODE_RANGES = (
    (0.0, AF.DECODE_FLOOR_MAX_KV_BYTES),
    (AF.DECODE_FLOOR_MAX_KV_BYTES, 6.4e7),
    (6.4e7, 2.56e8),
    (2.56e8, 1e9),
    (1e9, math.inf),
)
"""Working sets (KV bytes one decode-attention call reads) of the by-size table: the floor's
rows, 4-64 MB (around Hopper's and Blackwell's 50-126 MB L2), 64-256 MB, 256 MB-1 GB, and the
fraction's rows."""


def _decode_by_size_cells(hw, d=None) -> list[str]:
    """bf16 rows of decode table ``d`` (the catalog's TensorRT-LLM one by default) by working
    set, held out by head shape: under one launch and the fraction of the >= 1 GB rows (before
    the floor), under the floor and its fraction, and with the ramp between them too."""
    t = K.load_tables(hw.name)
    cells = []
    for kv_range in DECODE_RANGES:
        _, launch = decode_errors(hw, t, d=d, kv_range=kv_range, floor=False)
        _, floor = decode_errors(hw, t, d=d, kv_range=kv_range, ramp=False)
        _, now = decode_errors(hw, t, d=d, kv_range=kv_range)
        cells.append(f"{_pct(launch)} → {_pct(floor)} → {_pct(now)}")
    return cells


def _decode_by_size_row(hw) -> list[str]:
    """:func:`_decode_by_size_cells` of the catalog's decode table."""
    return _decode_by_size_cells(hw)


def _fp8_decode_row(hw) -> list[str] | None:
    """FP8 KV-cache decode rows: their count, under the bf16 rows' fraction (what priced them
    before ``AttentionFit.decode_fraction``), and under their own held out by head shape."""
    t = K.load_tables(hw.name)
    d = t.attention_decode
    kv = d["gbps"] * 1e9 * d["seconds"]
    rows = (kv >= AF.DECODE_MIN_KV_BYTES) & (d["dtype"] == "fp8")
    if not rows.any():
        return None
    fixed, bf16, _, _ = decode_model(hw, d, "bf16")
    pred = fixed + kv[rows] / (hw.hbm_bandwidth * bf16)
    _, held = decode_errors(hw, t, "fp8")
    return [str(int(rows.sum())), _pct(_median_abs(pred, d["seconds"][rows])), _pct(held)]


def allreduce_errors(hw, t) -> tuple[float, float] | None:
    a = t.allreduce
    if a is None:
        return None
    roof_err, held = [], []
    link = hw.intra_node
    for n in np.unique(a["num_gpus"]):
        pick = a["num_gpus"] == n
        b, s = a["bytes"][pick], a["seconds"][pick]
        ring = 2.0 * (n - 1) / n
        roof = ring * b / (link.bandwidth_among(int(n)) * CostParams().comm_efficiency)
        roof = roof + 2.0 * link.latency_s  # servesim's custom all-reduce: two link latencies
        roof_err.extend(np.abs(roof / s - 1.0).tolist())
        order = np.argsort(b)
        held += _held_out_interpolation(b[order], s[order])
    return float(np.median(roof_err)), float(np.median(held))


def _moe_points(model, hw, params):
    """For each TP split (1, 2, 4, 8) where ``hw``'s table measured ``model``'s MoE layer:
    (split, resolved parameters, grid indices of the measured token counts, measured seconds
    there, roofline seconds there)."""
    grid = K.M_GRID
    powers = np.arange(0, len(grid), 8)  # the grid's powers of two: the tables' token counts
    for tp in (1, 2, 4, 8):
        par = Parallelism(tp=tp)
        try:
            par.check(model)
            res = resolve_params(model, hw, params)
        except ServesimError:
            continue
        own = B._moe_curve(model, par, params, res)
        if own is None:
            continue
        secs, (lo, hi) = own
        pick = powers[(grid[powers] >= lo) & (grid[powers] <= hi)]
        roof = B._expert_roofline_seconds(model, hw, par, params)[pick]
        yield par, res, pick, secs[pick], roof


def _errors(got, pick, true) -> list[float]:
    return [] if got is None else np.abs(got[0][pick] / true - 1.0).tolist()


def _best_other_shape_errors(model, hw, par, params, held, pick, true) -> list[float]:
    """The |errors| of ``model``'s measured MoE layer (split ``par``) priced as
    ``build._reshaped_moe_curve`` prices it from each other measured shape and split of the
    kernel it picks (``held``: the tables without this shape), keeping the one whose median
    |error| is smallest: chosen with hindsight, the ceiling of pricing a shape from one other
    (shape, split)."""
    source = B._reshape_source(model, par, params, held)
    if source is None:
        return []
    dtype = source[0]
    best: list[float] = []
    for tp in (1, 2, 4, 8):
        for shape in K.moe_shapes(held.tables, (dtype,), tp, par.ep):
            got = B._reshaped_moe_curve(model, hw, par, params, held, source=(dtype, shape, tp))
            errors = _errors(got, pick, true)
            if errors and (not best or np.median(errors) < np.median(best)):
                best = errors
    return best


def moe_errors(hw) -> tuple[float, float, float, float, float, float, float, int] | None:
    """Median |error| of one MoE layer's routed experts on ``hw``: roofline, own table held out
    (leave-one-token-count-out), borrowed from other GPUs (leave-one-GPU-out), from this GPU's
    other shapes (leave-one-shape-out), the same from the other shape that fits best (chosen
    with hindsight: :func:`_best_other_shape_errors`), from a same-architecture GPU's rows of
    the shape with this GPU's held out (``build._sibling_moe_curve``, leave-one-shape-out on
    this GPU only; NaN without such a GPU), from this GPU's other expert TP splits of the shape
    (leave-one-split-out); and the number of measured points. None when ``hw`` has no MoE rows
    for the catalog's MoE models."""
    # (vLLM's kernels: GPT-OSS's experts are Marlin's on Ada, triton_kernels on Hopper.)
    params = CostParams(kernel_tables=True, kernel_backend="vllm")
    roof_e, held_e, borrowed_e, reshaped_e, sibling_e, resplit_e = [], [], [], [], [], []
    best_shape_e: list[float] = []
    for name in MOE_MODELS:
        model = load_model(name)
        for par, res, pick, true, roof in _moe_points(model, hw, params):
            roof_e += np.abs(roof / true - 1.0).tolist()
            held_e += _held_out_interpolation(K.M_GRID[pick], true)
            borrowed = B._borrowed_moe_curve(model, hw, par, params, res)  # other GPUs only
            borrowed_e += _errors(borrowed, pick, true)
            held = _without_shape(res, model)
            reshaped_e += _errors(B._reshaped_moe_curve(model, hw, par, params, held), pick, true)
            best_shape_e += _best_other_shape_errors(model, hw, par, params, held, pick, true)
            sibling_e += _errors(B._sibling_moe_curve(model, hw, par, params, held), pick, true)
            resplit = B._resplit_moe_curve(model, hw, par, params, _without_split(res, model, par))
            resplit_e += _errors(resplit, pick, true)
    if not roof_e:
        return None
    return (
        float(np.median(roof_e)),
        float(np.median(held_e)),
        float(np.median(borrowed_e)) if borrowed_e else float("nan"),
        float(np.median(reshaped_e)) if reshaped_e else float("nan"),
        float(np.median(best_shape_e)) if best_shape_e else float("nan"),
        float(np.median(sibling_e)) if sibling_e else float("nan"),
        float(np.median(resplit_e)) if resplit_e else float("nan"),
        len(roof_e),
    )


MARLIN_MXFP4_SHAPES = {
    "H100": (3584, 3072, 16, 896),  # (Hopper's only Marlin MXFP4 shape)
    "H200": (3584, 3072, 16, 896),
    "L40S": (2880, 2880, 4, 128),  # (gpt-oss-120b's: the L40S's vLLM rows are Marlin)
}


def _marlin_log_ratios(hw, factor: float) -> tuple[list[float], list[float]] | None:
    """Marlin's MXFP4 MoE rows on ``hw`` against the same GPU's Marlin INT4 rows of another
    shape as they stand in for them (``_reshaped_moe_curve`` with the MXFP4 shape held out),
    with ``factor`` in place of ``kernels.MARLIN_MXFP4_OVER_INT4``: log(measured / stand-in)
    per point, and log(measured / roofline). None where ``hw`` has no Marlin MXFP4 rows."""
    shape = MARLIN_MXFP4_SHAPES.get(hw.name)
    if shape is None:
        return None
    base = load_model("openai/gpt-oss-120b")
    hidden, width, topk, experts = shape
    model = replace(
        base,
        hidden_size=hidden,
        moe=replace(
            base.moe, expert_intermediate_size=width, experts_per_token=topk, num_experts=experts
        ),  # fmt: skip
    )
    # vLLM 0.10 on Hopper, any vLLM on Ada: Marlin's MXFP4 kernels.
    params = CostParams(kernel_tables=True, kernel_backend="vllm", engine_version="0.10.2")
    stand_in, roofline = [], []
    shipped = K.MARLIN_MXFP4_OVER_INT4
    K.MARLIN_MXFP4_OVER_INT4 = factor  # (read by kernels.stand_in_factor at each call)
    try:
        for par, res, pick, true, roof in _moe_points(model, hw, params):
            roofline += np.log(true / roof).tolist()
            got = B._reshaped_moe_curve(model, hw, par, params, _without_shape(res, model))
            if got is not None:
                stand_in += np.log(true / got[0][pick]).tolist()
    finally:
        K.MARLIN_MXFP4_OVER_INT4 = shipped
    return (stand_in, roofline) if stand_in else None


def marlin_mxfp4_factor(exclude: str | None = None) -> float:
    """The MXFP4-over-INT4 Marlin time factor fitted to the GPUs that time both kernels (all but
    ``exclude``): exp of the median log(measured MXFP4 / INT4 stand-in) over their points
    (``kernels.MARLIN_MXFP4_OVER_INT4`` is the fit to all of them)."""
    logs: list[float] = []
    for name in MARLIN_MXFP4_SHAPES:
        got = _marlin_raw_log_ratios(name) if name != exclude else None
        logs += got[0] if got else []
    return float(np.exp(np.median(logs)))


@functools.cache
def _marlin_raw_log_ratios(name: str) -> tuple[list[float], list[float]] | None:
    """:func:`_marlin_log_ratios` of GPU ``name`` without the factor (each GPU's are read by
    every other GPU's leave-one-out fit and its own row: computed once)."""
    return _marlin_log_ratios(load_hardware(name), 1.0)


def marlin_family_errors(hw) -> tuple[float, float, float, int] | None:
    """Median |error| of Marlin's MXFP4 MoE rows on ``hw``: the roofline; the same GPU's Marlin
    INT4 rows of another shape as they are (a GPU without Marlin MXFP4 rows, without the
    factor); those times the factor fitted to the other GPUs (leave-one-GPU-out); and the
    number of points. None where ``hw`` has no Marlin MXFP4 rows."""
    raw = _marlin_raw_log_ratios(hw.name)
    if raw is None:
        return None
    held = _marlin_log_ratios(hw, marlin_mxfp4_factor(exclude=hw.name))
    assert held is not None

    def median_error(log_ratio: list[float]) -> float:
        return float(np.median(np.abs(np.exp(-np.asarray(log_ratio)) - 1.0)))

    return median_error(raw[1]), median_error(raw[0]), median_error(held[0]), len(raw[0])


def _without_rows(res, model, par=None):
    """``res`` with the MoE rows of ``model``'s expert shape removed from its tables: every
    split of it, or only ``par``'s split (the other splits of the shape stay)."""
    shape = K.moe_model_shape(model)
    tables = {}
    for backend, t in res.tables.moe.items():
        same = K.moe_shape_rows(t, shape)
        if par is not None:
            same &= (t["tp"] == par.expert_tp) & (t["ep"] == par.ep)
        tables[backend] = {c: v[~same] for c, v in t.items()}
    return replace(res, tables=replace(res.tables, moe=tables))


def _without_split(res, model, par):
    """``res`` without the MoE rows of ``model``'s shape at ``par``'s split."""
    return _without_rows(res, model, par)


def _without_shape(res, model):
    """``res`` without any MoE row of ``model``'s expert shape."""
    return _without_rows(res, model)


def _decode_table_rows(header: str, tables_of, kv_range, cells_of) -> None:
    """A markdown table of a row per GPU and decode table (``tables_of(t)``: name -> table of
    the GPU's ``KernelTables`` ``t``) with, per KV dtype, the count of rows reading
    ``kv_range`` bytes and ``cells_of(hw, t, d, dtype, rows, kv)``'s cells ("0", "–"... without
    such rows)."""
    print(header)
    print("|---|---|" + "---:|" * 6)
    for name in K.gpus_with_tables():
        hw = load_hardware(name)
        t = K.load_tables(hw.name)
        for engine, d in tables_of(t).items():
            kv = d["gbps"] * 1e9 * d["seconds"]
            cells = []
            for dtype in ("bf16", "fp8"):
                rows = (kv >= kv_range[0]) & (kv < kv_range[1]) & (d["dtype"] == dtype)
                if not rows.any():
                    cells += ["0", "–", "–"]
                    continue
                cells += [str(int(rows.sum())), *cells_of(hw, t, d, dtype, rows, kv)]
            print(f"| {hw.name} | {engine} | {' | '.join(cells)} |")


def _engine_decode_rows() -> None:
    """Each engine's own decode table (``attention_decode_<engine>.csv``), per KV dtype: priced
    at the fraction of the catalog's ``attention_decode.csv`` (TensorRT-LLM's kernels; the
    A100's is vLLM's: what every engine got before its own table shipped)
    and at a fraction fitted to the engine's own rows of the other head shapes."""

    def cells(hw, t, d, dtype, rows, kv) -> list[str]:
        # (The catalog's main table's fit: what every engine read at before its own.)
        fit = AF.attention_fit(hw.name, hw.peak_flops["bf16"], hw.hbm_bandwidth, hw.kernel_launch_s)
        fraction, fixed = fit.decode_fraction(dtype), fit.decode_fixed(dtype)
        pred = fixed + kv[rows] / (hw.hbm_bandwidth * fraction)
        _, held = decode_errors(hw, t, dtype, d)
        return [_pct(_median_abs(pred, d["seconds"][rows])), _pct(held)]

    _decode_table_rows(
        "| GPU | engine | bf16 rows | bf16: catalog table's fraction | bf16: own (held out by "
        "head shape) | FP8 rows | FP8: catalog table's fraction | FP8: own (held out by head "
        "shape) |",
        lambda t: dict(sorted((t.engine_decode or {}).items())),
        (AF.DECODE_MIN_KV_BYTES, math.inf),
        cells,
    )


RAMP_RANGE = (AF.DECODE_FLOOR_MAX_KV_BYTES, AF.DECODE_MIN_KV_BYTES)
"""The working sets the decode ramp covers (4 MB-1 GB of KV a call)."""


def _ramp_rows() -> None:
    """Every decode table's rows of :data:`RAMP_RANGE` per KV dtype, held out by head shape:
    under the floor and the fraction alone, and with the ramp (fitted to the other shapes)."""

    def cells(hw, t, d, dtype, rows, kv) -> list[str]:
        _, floor = decode_errors(hw, t, dtype, d, RAMP_RANGE, ramp=False)
        _, now = decode_errors(hw, t, dtype, d, RAMP_RANGE)
        return [_pct(floor), _pct(now)]

    _decode_table_rows(
        "| GPU | decode table | bf16 rows, 4 MB–1 GB | floor + fraction | with the ramp | "
        "FP8 rows | floor + fraction | with the ramp |",
        # (``catalog``: attention_decode.csv, TensorRT-LLM's kernels; the A100's is vLLM's.)
        lambda t: {"catalog": t.attention_decode, **(t.engine_decode or {})},
        RAMP_RANGE,
        cells,
    )


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.0%}"


def _table(header: str, columns: int, row_of) -> None:
    """One markdown table, a row per GPU with tables: ``row_of(hw)`` gives its cells after the
    GPU's name (None: no row)."""
    print(header)
    print("|---|" + "---:|" * columns)
    for name in K.gpus_with_tables():
        hw = load_hardware(name)
        cells = row_of(hw)
        if cells is not None:
            print(f"| {hw.name} | {' | '.join(cells)} |")


def _kernel_row(hw) -> list[str]:
    t = K.load_tables(hw.name)
    cells = [*gemm_errors(hw, t), *prefill_errors(hw, t), *decode_errors(hw, t)]
    ar = allreduce_errors(hw, t)
    cells += list(ar) if ar else [float("nan")] * 2
    return [_pct(c) for c in cells]


def _fp8_row(hw) -> list[str] | None:
    got = fp8_errors(hw, K.load_tables(hw.name))
    return None if got is None else [_pct(x) for x in got]


def _moe_row(hw) -> list[str] | None:
    got = moe_errors(hw)
    if got is None:
        return None
    *cells, n = got
    return [str(n), *(_pct(c) for c in cells)]


def _marlin_row(hw) -> list[str] | None:
    got = marlin_family_errors(hw)
    return None if got is None else [str(got[3]), *(_pct(c) for c in got[:3])]


def borrowed_errors(hw) -> list[str]:
    """What ``hw`` would get without tables of its own, scored on its own rows (leave-one-GPU-
    out): its bf16 GEMMs as the utilisation of the nearest-ridge other GPU of its architecture
    (``kernels.transfer_source_for``; "–" when it is alone in it), and its bf16 prefill-attention
    rows with the median curve of every other GPU and of the other GPUs of its architecture."""
    others = [load_hardware(n) for n in K.gpus_with_tables() if n != hw.name.lower()]
    same = [o for o in others if o.architecture == hw.architecture]
    t = K.load_tables(hw.name)
    g = t.gemm
    rows = g["dtype"] == "bf16"
    m, n, k, secs = g["m"][rows], g["n"][rows], g["k"][rows], g["seconds"][rows]

    def roof(gpu):
        return _bf16_gemm_roofline(gpu, m, n, k)

    gemm = "–"
    if same:
        src = min(same, key=lambda o: abs(math.log(o.ridge_point() / hw.ridge_point())))
        theirs = K.load_tables(src.name).gemm
        keyed = {
            (a, b, c): s
            for a, b, c, s, d in zip(
                theirs["m"],
                theirs["n"],
                theirs["k"],
                theirs["seconds"],
                theirs["dtype"],
                strict=True,
            )
            if d == "bf16"
        }
        src_secs = np.array([keyed.get((a, b, c), np.nan) for a, b, c in zip(m, n, k, strict=True)])
        pred = src_secs / roof(src) * roof(hw)  # (its utilisation on this GPU's roofline)
        ok = np.isfinite(pred)
        gemm = _pct(float(np.median(np.abs(pred[ok] / secs[ok] - 1.0))))

    p = t.attention_prefill
    base = (p["dtype"] == "bf16") & (p["head_dim"] == 128) & (p["seq_len"] >= 64)

    def prefill_median(gpus) -> str:
        fits = [
            AF.attention_fit(o.name, o.peak_flops["bf16"], o.hbm_bandwidth, o.kernel_launch_s)
            for o in gpus
        ]
        e = float(np.median([f.efficiency for f in fits]))
        h = float(np.median([f.half_tokens for f in fits]))
        occupancy = AF.median_occupancy(fits, "", every=True)
        fill, n = occupancy["fill_ctas"], occupancy["fill_power"]
        w = AF.median_kv_head_weights(fits)["kv_head_weight"]
        peak, launch = hw.peak_flops["bf16"], hw.kernel_launch_s
        return _pct(AF.prefill_error(p, peak, launch, e, h, base, fill, n, w))

    return [
        _pct(_median_abs(roof(hw), secs)),
        gemm,
        prefill_median(others),
        prefill_median(same) if same else "–",
    ]


def main() -> None:
    _table("| GPU | GEMM roofline | GEMM table (held out) | prefill attn roofline | prefill "
           "fitted (held out) | decode attn roofline | decode fitted (held out) | all-reduce "
           "roofline | all-reduce table (held out) |", 8, _kernel_row)  # fmt: skip
    print()
    _table("| GPU | FP8 KV decode rows | under the bf16 fraction | own fraction (held out by "
           "head shape) |", 3, _fp8_decode_row)  # fmt: skip
    print()
    _engine_decode_rows()
    print()
    _table("| GPU | bf16 decode < 4 MB of KV | 4–64 MB | 64–256 MB | 256 MB–1 GB | ≥ 1 GB |", 5,
           _decode_by_size_row)  # fmt: skip
    print()
    _ramp_rows()
    print()
    _table("| GPU | head_dim-64 prefill rows | under the 128-wide curve | own curve (held out "
           "by head shape) |", 3, _own_curve_row)  # fmt: skip
    print()
    _table("| GPU | FP8 prefill rows (128-wide heads) | under the bf16 curve | own curve (held out "
           "by head shape) |", 3, lambda hw: _own_curve_row(hw, 128, "fp8"))  # fmt: skip
    print()
    _table("| GPU | GEMM shape held out: nearest shape | GEMM shape held out: interpolated "
           "in (log n, log k) | the same, weights larger than the GPU's L2 |", 3,
           lambda hw: [_pct(c) for c in gemm_shape_errors(K.load_tables(hw.name),
                                                          hw.l2_bytes)])  # fmt: skip
    print()
    _table("| GPU | FP8 GEMM roofline | FP8 GEMM, factors fitted to every other GPU | FP8 GEMM, "
           "factors fitted to the other GPUs of its architecture (fitted rung) |",
           3, _fp8_row)  # fmt: skip
    print()
    _table("| GPU | MoE points | MoE roofline | MoE table (held out) | MoE borrowed from other "
           "GPUs (fitted rung, own rows held out) | MoE from this GPU's other shapes (fitted "
           "rung, own shape held out) | the same from the other shape that fits best (chosen "
           "with hindsight) | MoE from a same-architecture GPU's rows of the shape (fitted rung, "
           "own shape held out) | MoE from this GPU's other expert TP splits (fitted rung, own "
           "split held out) |", 8, _moe_row)  # fmt: skip
    print()
    _table("| GPU | Marlin MXFP4 points | roofline | from this GPU's Marlin INT4 rows of another "
           "shape (MXFP4 shape held out) | the same x the MXFP4/INT4 factor of the other GPUs "
           "(fitted rung) |", 4, _marlin_row)  # fmt: skip
    print(f"MXFP4/INT4 Marlin factor fitted to every GPU that times both: "
          f"{marlin_mxfp4_factor():.3f} (kernels.MARLIN_MXFP4_OVER_INT4 = "
          f"{K.MARLIN_MXFP4_OVER_INT4})")  # fmt: skip
    print()
    _table("| GPU | vLLM decode rows walked serially (≥ 256 MB) | block rate (GB/s) | under "
           "the fraction alone | under the walk, own rate | under the walk, the other GPUs' "
           "median rate |", 5, _serial_row)  # fmt: skip
    print()
    _table("| GPU | GEMM roofline | GEMM borrowed from its architecture's nearest GPU (own "
           "tables held out) | prefill attn, median of every other GPU | prefill attn, median "
           "of its architecture's other GPUs |", 4, borrowed_errors)  # fmt: skip


def run(argv: list[str] | None = None) -> int:
    """Print the tables; with ``--readme PATH``, also rewrite that file's tables of the same
    headers (``bench/readme_tables.py``)."""
    import argparse
    import contextlib
    import io
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--readme", type=Path, default=None, help="rewrite the tables of this Markdown file"
    )
    args = parser.parse_args(argv)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main()
    print(printed.getvalue(), end="")
    if args.readme is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from readme_tables import update_readme

        changed = update_readme(args.readme, printed.getvalue())
        print(f"{args.readme}: {len(changed)} table(s) rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
