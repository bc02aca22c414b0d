"""``analyze``: measured steps against the theory — FLOPs, bytes, roofline, utilisation gap.

For every measured row (a whole step, or an operator from a CSV):

- ``flops`` / ``hbm_bytes``: the work the cost model counts for that batch, per GPU;
- achieved TFLOP/s and GB/s (work ÷ measured seconds) and their share of the GPU's dense
  peak (the compute dtype's tensor-core peak; HBM bandwidth in 10^9 B/s);
- ``roofline_s``: the operator roofline — Σ over operators of max(FLOPs / peak, bytes /
  bandwidth) at 100% efficiency, no launch or host time (links at their modelled speed);
- ``gap`` = measured ÷ roofline seconds (1 is the roofline; 2 means half as fast);
- ``bound``: ``compute`` when compute-bound operators hold most of the roofline time;
- ``predicted_s``: what servesim predicts (defaults, or a calibration) and its error.

Rows are grouped per source file, so several logs (one per setting of a knob) give a sweep
table.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from servesim.calibrate.batches import batch_of, feature_matrix, op_masks, regimes
from servesim.calibrate.fit import predict_seconds, unit_params
from servesim.calibrate.readers import WHOLE_STEP, Measurements
from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost.dtypes import tensor_core_peak
from servesim.hardware import Hardware
from servesim.model import ModelSpec

STEP_COLUMNS = (
    "source",
    "step",
    "op",
    "regime",
    "batch_size",
    "prefill_tokens",
    "decode_tokens",
    "context_tokens",
    "duration_s",
    "flops",
    "hbm_bytes",
    "achieved_tflops",
    "pct_peak_flops",
    "achieved_gbps",
    "pct_peak_bw",
    "roofline_s",
    "gap",
    "bound",
    "predicted_s",
    "predicted_error_pct",
)


@dataclass(frozen=True)
class Analysis:
    """Per-row results (``columns``, see :data:`STEP_COLUMNS` plus ``phase_<name>``)."""

    columns: dict[str, np.ndarray]
    phases: tuple[str, ...]
    peak_flops: float
    """Dense FLOP/s per GPU the percentages refer to."""
    peak_bandwidth: float
    """HBM bytes/s per GPU."""
    fidelity: str
    """Rung of the prediction column: ``roofline`` (defaults) or ``calibrated``."""

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.columns["source"].tolist()))


def _op_row_work(cost, m: Measurements, i: int, mask: np.ndarray) -> tuple[float, float]:
    """(FLOPs, HBM bytes) of the operators an operator row timed."""
    new, ctx = batch_of(m, i)
    flops = nbytes = 0.0
    for j, op in enumerate(cost.operator_breakdown(new, ctx)):
        if mask[j] and op.bound != "link":
            flops += op.flops
            nbytes += op.bytes
    return flops, nbytes


def analyze_steps(
    m: Measurements,
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism | None = None,
    params: CostParams | None = None,
) -> Analysis:
    """Measured vs theoretical for every row of ``m`` (see the module doc).

    ``params``: the parameters of the prediction column (default ``CostParams()``).
    """
    par = par or Parallelism()
    params = params or CostParams()
    ideal = build_step_cost(model, hw, par, replace(unit_params(params), gemm_half_tokens=0.0))
    f = feature_matrix(ideal, m)
    mask = op_masks(ideal, m)
    flops, nbytes = ideal.work_from_features(f)
    for i in np.flatnonzero(np.array([op != WHOLE_STEP for op in m.op])).tolist():
        flops[i], nbytes[i] = _op_row_work(ideal, m, i, mask[i])
    comp, mem = ideal.operator_sides_from_features(f)
    per_op = np.maximum(comp, mem) * mask
    roofline = per_op.sum(axis=1)
    compute_time = np.where(comp > mem, per_op, 0.0).sum(axis=1)
    predicted = predict_seconds(m, model, hw, par, params, f)
    res = ideal.resolved
    peak = tensor_core_peak(hw.peak_flops, res.weight_dtype, res.act_dtype)
    secs = m.seconds
    cols: dict[str, np.ndarray] = {
        "source": np.array(m.source, dtype=object),
        "step": m.step,
        "op": np.array(m.op, dtype=object),
        "regime": regimes(m).astype(object),
        "batch_size": m.batch_size,
        "prefill_tokens": m.prefill_tokens,
        "decode_tokens": m.decode_tokens,
        "context_tokens": m.context_tokens,
        "duration_s": secs,
        "flops": flops,
        "hbm_bytes": nbytes,
        "achieved_tflops": flops / secs / 1e12,
        "pct_peak_flops": 100.0 * flops / secs / peak,
        "achieved_gbps": nbytes / secs / 1e9,
        "pct_peak_bw": 100.0 * nbytes / secs / hw.hbm_bandwidth,
        "roofline_s": roofline,
        "gap": secs / roofline,
        "bound": np.where(compute_time >= 0.5 * roofline, "compute", "memory").astype(object),
        "predicted_s": predicted,
        "predicted_error_pct": 100.0 * (predicted - secs) / secs,
    }
    for name, values in m.phases.items():
        cols[f"phase_{name}"] = values
    return Analysis(
        columns=cols,
        phases=tuple(m.phases),
        peak_flops=peak,
        peak_bandwidth=hw.hbm_bandwidth,
        fidelity=params.fidelity,
    )


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else float("nan")


def sweep_table(a: Analysis) -> list[dict[str, Any]]:
    """One summary row per source file: medians overall and per regime, phase shares."""
    c = a.columns
    out = []
    for src in a.sources:
        sel = c["source"] == src
        pre = sel & (c["regime"] == "prefill-heavy")
        dec = sel & (c["regime"] == "decode-heavy")
        row: dict[str, Any] = {
            "source": src,
            "steps": int(sel.sum()),
            "prefill_heavy": int(pre.sum()),
            "decode_heavy": int(dec.sum()),
            "median_ms": 1e3 * _median(c["duration_s"][sel]),
            "gap_median": _median(c["gap"][sel]),
            "gap_prefill": _median(c["gap"][pre]),
            "gap_decode": _median(c["gap"][dec]),
            "pct_peak_flops_prefill": _median(c["pct_peak_flops"][pre]),
            "pct_peak_bw_decode": _median(c["pct_peak_bw"][dec]),
            "predicted_error_median_pct": _median(np.abs(c["predicted_error_pct"][sel])),
        }
        for name in a.phases:
            v = c[f"phase_{name}"][sel]
            logged = ~np.isnan(v)
            # Share of the time of the steps that logged this phase (NaN: none did).
            row[f"phase_{name}_pct"] = (
                100.0 * float(v[logged].sum() / c["duration_s"][sel][logged].sum())
                if logged.any()
                else float("nan")
            )
        out.append(row)
    return out


# --------------------------------------------------------------------------- files


def _cell(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if np.isfinite(value) else ""
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Dict rows as CSV (columns of the first row); NaN is an empty cell."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(rows[0]))
        for r in rows:
            w.writerow([_cell(v) for v in r.values()])


def step_rows(a: Analysis) -> list[dict[str, Any]]:
    """Per-row records in CSV column order."""
    names = list(STEP_COLUMNS) + [f"phase_{p}" for p in a.phases]
    cols = [a.columns[n].tolist() for n in names]
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols, strict=True)]
