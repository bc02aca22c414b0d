"""The calibration file: fitted cost-model parameters and where they came from.

A calibration names the model, hardware, tensor parallelism and software it was measured on,
the parameters (fitted and assumed), which of them the data identified, the fit quality and
the measured range — so a simulation can refuse a mismatched file and warn when it steps
outside what was measured. YAML, validated at the boundary (a
:class:`~servesim.validation.Spec`: unknown keys refused)::

    servesim_calibration: 1
    model: meta-llama/Llama-3.1-8B
    hardware: H100
    tp: 1
    weight_dtype: bf16
    kv_dtype: bf16
    software: vllm 0.11.0
    params: {compute_efficiency: 0.61, memory_efficiency: 0.69, ...}
    measured_range: {tokens: [1, 4096], batch: [1, 256], context: [0, 2097152]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np
import yaml
from msgspec import Meta

from servesim.calibrate.fit import FIT_PARAMS, FIXED_PARAMS, NO_HOST_MODEL
from servesim.calibrate.readers import Measurements
from servesim.cost import CostParams
from servesim.cost.resolve import resolve_params
from servesim.errors import ServesimError
from servesim.hardware import Hardware
from servesim.model import ModelSpec
from servesim.paths import atomic_text
from servesim.textfile import PARSE_ERRORS, load_yaml, not_a_file, parse_problem, read_text
from servesim.validation import FieldError, Spec, convert, to_data

FORMAT_VERSION = 1
PARAM_NAMES = FIT_PARAMS + FIXED_PARAMS


class MeasuredRange(Spec):
    """Per-step extremes of the measured steps; a simulated step outside them is extrapolated."""

    tokens: Annotated[tuple[int, int], Meta(description="tokens computed per step (min, max)")]
    batch: Annotated[tuple[int, int], Meta(description="sequences per step (min, max)")]
    context: Annotated[tuple[int, int], Meta(description="Σ cached tokens per step (min, max)")]

    @classmethod
    def of(cls, m: Measurements) -> MeasuredRange:
        def span(a: np.ndarray) -> tuple[int, int]:
            return int(a.min()), int(a.max())

        return cls(tokens=span(m.tokens), batch=span(m.batch_size), context=span(m.context_tokens))


class Calibration(Spec, kw_only=True):
    """A calibration file's content."""

    servesim_calibration: int = FORMAT_VERSION
    model: Annotated[
        str, Meta(description="model name (ModelSpec.name) the steps were measured on")
    ]
    hardware: Annotated[str, Meta(description="GPU name (Hardware.name)")]
    tp: Annotated[int, Meta(ge=1)]
    weight_dtype: Annotated[
        str | None, Meta(description="weight format the steps ran (resolved; None: not recorded)")
    ] = None
    kv_dtype: Annotated[
        str | None,
        Meta(description="KV-cache format the steps ran (resolved; None: not recorded)"),
    ] = None
    software: Annotated[str | None, Meta(description='e.g. "vllm 0.11.0"')] = None
    sources: tuple[str, ...] = ()
    num_points: Annotated[int, Meta(ge=1)]
    params: dict[str, float]
    status: dict[str, str] = msgspec.field(default_factory=dict)
    measured_range: MeasuredRange
    quality: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.params) - set(PARAM_NAMES))
        if unknown:
            raise FieldError("params", f"unknown parameter(s) {', '.join(unknown)}")
        for name, value in self.params.items():
            if not math.isfinite(value):  # NaN passes every range check below
                raise FieldError(f"params.{name}", f"must be a finite number (got {value})")
        try:
            CostParams(**self.params)  # range checks (efficiencies in (0, 1], seconds >= 0)
        except ValueError as err:
            raise FieldError("params", str(err)) from None

    def cost_params(self, base: CostParams | None = None) -> CostParams:
        """``base`` (default ``CostParams()``) with these values, ``fidelity="calibrated"``."""
        return replace(base or CostParams(), **self.params, **NO_HOST_MODEL, fidelity="calibrated")


def _rounded(obj: Any) -> Any:
    """Floats to 6 significant digits: the file is read by people too."""
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    return obj


def write_calibration(cal: Calibration, path: str | Path) -> Path:
    """Write ``cal`` as YAML atomically (a temporary file beside it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(_rounded(to_data(cal)), sort_keys=False, width=100, allow_unicode=True)
    with atomic_text(path) as f:
        f.write(text)
    return path


def read_calibration(path: str | Path) -> Calibration:
    """Read and validate a calibration file; ServesimError names the problem."""
    path = Path(path)
    if not path.is_file():
        raise ServesimError(
            f"calibration file {path} {not_a_file(path)}",
            field="calibration",
            fix="write one with servesim calibrate LOGS ... -o FILE",
        )
    text = read_text(path, field="calibration")
    try:
        data = load_yaml(text)
    except (yaml.YAMLError, *PARSE_ERRORS) as err:
        raise ServesimError(
            f"{path}: not valid YAML ({parse_problem(err)})", field="calibration"
        ) from None
    if not isinstance(data, dict) or "servesim_calibration" not in data:
        raise ServesimError(
            f"{path} is not a servesim calibration (no servesim_calibration key)",
            field="calibration",
            fix="pass a file written by servesim calibrate",
        )
    if data["servesim_calibration"] != FORMAT_VERSION:
        raise ServesimError(
            f"{path}: calibration format {data['servesim_calibration']!r}, this servesim "
            f"reads {FORMAT_VERSION}",
            field="calibration",
            fix="re-run servesim calibrate",
        )
    return convert(data, Calibration, str(path))


def check_matches(
    cal: Calibration,
    model: ModelSpec,
    hardware: Hardware,
    tp: int,
    src: str,
    params: CostParams | None = None,
) -> None:
    """Raise ServesimError when ``cal`` was not measured on this model, hardware and TP, or
    (when the file records them) in the weight and KV formats ``params`` resolve to."""
    wanted: dict[str, Any] = {"model": model.name, "hardware": hardware.name, "tp": tp}
    if cal.weight_dtype is not None or cal.kv_dtype is not None:
        resolved = resolve_params(model, hardware, params or CostParams())
        wanted["weight_dtype"] = resolved.weight_dtype
        wanted["kv_dtype"] = resolved.kv_dtype
    for key, value in wanted.items():
        have = getattr(cal, key)
        if have is None:
            continue
        if str(have).lower() != str(value).lower():
            raise ServesimError(
                f"{src} was fitted for {key} {have!r}, this run uses {value!r}",
                field="calibration",
                fix=f"calibrate on steps measured with {key} {value!r}, or drop --calibration",
            )


def load_calibration(
    path: str | Path,
    model: ModelSpec,
    hardware: Hardware,
    tp: int,
    base: CostParams | None = None,
) -> CostParams:
    """The ``CostParams`` of the calibration at ``path`` for a run of ``model`` on ``hardware``
    at tensor parallelism ``tp``: ``base`` (default ``CostParams()``; e.g. the run's dtypes)
    with the calibrated values and ``fidelity="calibrated"``.

    Raises ServesimError when the file is missing or malformed, or was fitted for another
    model, hardware, TP or (when recorded) weight or KV format.
    """
    cal = read_calibration(path)
    check_matches(cal, model, hardware, tp, Path(path).name, base)
    return cal.cost_params(base)


def extrapolation_warning(cal: Calibration | str | Path, steps: Mapping[str, Any]) -> str | None:
    """A one-line warning when simulated steps fall outside the calibration's measured range.

    ``cal``: a :class:`Calibration` or the path of a calibration file. ``steps``: step
    columns as ``RunRecords.step_columns()`` gives them (``batch_size``, ``prefill_tokens``,
    ``decode_tokens``, ``context_tokens`` and optionally ``num_steps``: a fast-forwarded span
    counts as that many steps, its token and context sums are divided by it). Returns None
    when every step lies inside the range (or there are no steps).
    """
    if not isinstance(cal, Calibration):
        cal = read_calibration(cal)
    n = np.asarray(steps.get("num_steps", np.ones(len(steps["batch_size"]))), dtype=float)
    if n.size == 0:
        return None
    n = np.maximum(n, 1.0)
    per_step = {
        "tokens": (np.asarray(steps["prefill_tokens"]) + np.asarray(steps["decode_tokens"])) / n,
        "batch": np.asarray(steps["batch_size"], dtype=float),
        "context": np.asarray(steps["context_tokens"], dtype=float) / n,
    }
    rng = cal.measured_range
    outside = np.zeros(len(n), dtype=bool)
    details = []
    for name, values in per_step.items():
        lo, hi = getattr(rng, name)
        bad = (values < lo) | (values > hi)
        if bad.any():
            outside |= bad
            details.append(
                f"{name} {values.min():.0f}–{values.max():.0f} simulated vs {lo}–{hi} measured"
            )
    if not outside.any():
        return None
    share = float(n[outside].sum() / n.sum())
    return (
        f"{share:.1%} of simulated steps lie outside the calibration's measured range "
        f"({'; '.join(details)}): their times are extrapolated from {cal.model} on "
        f"{cal.hardware} (tp={cal.tp})"
    )
