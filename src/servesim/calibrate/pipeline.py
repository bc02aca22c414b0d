"""``calibrate``: measured files → fitted :class:`Calibration` with its fit quality."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servesim.calibrate.batches import regimes
from servesim.calibrate.calibration import Calibration, MeasuredRange
from servesim.calibrate.fit import FitResult, error_stats, fit_params, predict_seconds
from servesim.calibrate.readers import Measurements, read_measurements
from servesim.cost import CostParams, Parallelism
from servesim.cost.resolve import resolve_params
from servesim.errors import ServesimError
from servesim.hardware import Hardware
from servesim.model import ModelSpec


@dataclass(frozen=True)
class CalibrationRun:
    """A calibration and how well it fits."""

    calibration: Calibration
    fit: FitResult
    train: Measurements
    """The rows the fit used."""
    quality: dict
    """``before`` / ``after`` error stats on the fitted rows, plus ``holdout_before`` /
    ``holdout_after`` on the held-out rows when ``holdout > 0`` (see ``fit.error_stats``)."""


def holdout_mask(n: int, fraction: float) -> np.ndarray:
    """Every ``round(1/fraction)``-th row (deterministic, spread over the whole log)."""
    if fraction <= 0.0:
        return np.zeros(n, dtype=bool)
    if not fraction < 1.0:
        raise ServesimError(
            f"holdout is {fraction}; it is the fraction of steps kept out of the fit",
            field="--holdout",
            fix="use e.g. 0.2",
        )
    k = max(2, round(1.0 / fraction))
    return np.arange(n) % k == k - 1


def calibrate(
    paths: list[str | Path],
    model: ModelSpec,
    hardware: Hardware,
    tp: int = 1,
    software: str | None = None,
    holdout: float = 0.0,
    weight_dtype: str | None = None,
    kv_dtype: str | None = None,
) -> CalibrationRun:
    """Read the measured files, fit the cost model, and describe the result.

    ``holdout``: fraction of rows kept out of the fit and used only to report its error.
    ``weight_dtype`` / ``kv_dtype``: what the measured server ran (default: the checkpoint's
    own formats); the file records them resolved, and a run in other formats refuses it.
    Raises ServesimError on bad input or too few rows to fit.
    """
    par = Parallelism(tp=tp)
    par.check(model)
    base = CostParams(weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    resolved = resolve_params(model, hardware, base)
    data = read_measurements(paths)
    test = holdout_mask(len(data), holdout)
    train = data.select(~test)
    fit = fit_params(train, model, hardware, par, base=base)
    quality = {
        "before": error_stats(fit.before_s, train.seconds, regimes(train)),
        "after": error_stats(fit.after_s, train.seconds, regimes(train)),
    }
    if test.any():
        held = data.select(test)
        reg = regimes(held)
        before = predict_seconds(held, model, hardware, par, base)
        after = predict_seconds(held, model, hardware, par, fit.cost_params(base))
        quality["holdout_before"] = error_stats(before, held.seconds, reg)
        quality["holdout_after"] = error_stats(after, held.seconds, reg)
    cal = Calibration(
        model=model.name,
        hardware=hardware.name,
        tp=tp,
        weight_dtype=resolved.weight_dtype,
        kv_dtype=resolved.kv_dtype,
        software=software,
        sources=tuple(dict.fromkeys(Path(p).name for p in paths)),
        num_points=len(train),
        params=fit.params,
        status=fit.status,
        measured_range=MeasuredRange.of(data),
        quality={
            **quality,
            "residual_scale_pct": 100.0 * fit.residual_scale,
            "outliers": fit.outliers,
        },
    )
    return CalibrationRun(calibration=cal, fit=fit, train=train, quality=quality)
