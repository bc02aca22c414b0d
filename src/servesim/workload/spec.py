"""The workload specification: what the user writes in a scenario file.

Every model here is pydantic v2 with ``extra="forbid"`` and ``frozen=True``: a typo is an error,
and a validated spec is never mutated. Distributions are tagged unions on ``kind``; a bare number
is shorthand for ``fixed``, and for ``input_len`` / ``output_len`` a preset name (``conversation``,
``code``) is shorthand for that preset's length table.

Use :func:`parse_workload_spec` at the boundary: it turns pydantic's ``ValidationError`` into a
:class:`~servesim.errors.ServesimError` that names the field and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from servesim.errors import ServesimError

PRESET_NAMES: tuple[str, ...] = ("conversation", "code")
PresetName = Literal["conversation", "code"]

DEFAULT_RATE_RPS = 1.0
"""Poisson arrival rate (requests/s) used when a synthetic workload names no ``arrival``."""

TRACE_FORMATS = ("auto", "azure", "burstgpt", "mooncake", "csv", "jsonl", "sessions")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# --------------------------------------------------------------------------- lengths (tokens)


class FixedLength(_Model):
    """Every request has exactly ``value`` tokens."""

    kind: Literal["fixed"] = "fixed"
    value: int = Field(ge=1, description="tokens")


class UniformLength(_Model):
    """Integers uniform on ``[lo, hi]`` tokens, both ends included."""

    kind: Literal["uniform"] = "uniform"
    lo: int = Field(ge=1, description="tokens, smallest value")
    hi: int = Field(ge=1, description="tokens, largest value")

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        if self.hi < self.lo:
            raise ValueError(f"hi ({self.hi}) is below lo ({self.lo})")
        return self


class NormalLength(_Model):
    """Normal with ``mean`` and ``std`` tokens, rounded, clipped to ``[1, max]``."""

    kind: Literal["normal"] = "normal"
    mean: float = Field(gt=0, description="tokens")
    std: float = Field(ge=0, description="tokens")
    max: int | None = Field(default=None, ge=1, description="tokens; clip above")


class LognormalLength(_Model):
    """Lognormal given by its ``median`` (tokens) and ``sigma`` (std of the log).

    ``mu = ln(median)``; the mean is ``median * exp(sigma**2 / 2)``. The median is what a
    histogram of real lengths shows most plainly, which is why it is the parameter.
    Samples are rounded and clipped to ``[1, max]``.
    """

    kind: Literal["lognormal"] = "lognormal"
    median: float = Field(gt=0, description="tokens")
    sigma: float = Field(ge=0, description="standard deviation of ln(length)")
    max: int | None = Field(default=None, ge=1, description="tokens; clip above")


class ZipfLength(_Model):
    """Truncated Zipf on ``1..max`` tokens: P(k) proportional to ``k ** -a``."""

    kind: Literal["zipf"] = "zipf"
    a: float = Field(gt=0, description="exponent")
    max: int = Field(ge=1, description="tokens, largest value")


class EmpiricalLength(_Model):
    """Resample (with replacement) observed lengths: inline ``values`` or a file at ``path``.

    The file holds one length per line, or is a CSV with a header; ``column`` picks the column
    (needed when there is more than one).
    """

    kind: Literal["empirical"] = "empirical"
    values: tuple[int, ...] | None = None
    path: Path | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EmpiricalLength:
        if (self.values is None) == (self.path is None):
            raise ValueError("give exactly one of values or path")
        if self.values is not None:
            if not self.values:
                raise ValueError("values is empty")
            if min(self.values) < 1:
                raise ValueError(f"values has {min(self.values)}; lengths must be >= 1")
        return self


class QuantileLength(_Model):
    """A piecewise quantile table: ``values[i]`` is the ``probs[i]`` quantile, in tokens.

    Sampling draws ``u ~ U(0, 1)`` and interpolates ``ln(value)`` linearly in ``u`` (geometric
    interpolation suits long-tailed lengths), then rounds. ``probs`` runs from 0 to 1.
    """

    kind: Literal["quantiles"] = "quantiles"
    probs: tuple[float, ...]
    values: tuple[float, ...]

    @model_validator(mode="after")
    def _table(self) -> QuantileLength:
        p, v = self.probs, self.values
        if len(p) != len(v) or len(p) < 2:
            raise ValueError("probs and values need the same length, at least 2")
        if p[0] != 0.0 or p[-1] != 1.0 or any(b <= a for a, b in zip(p[:-1], p[1:], strict=True)):
            raise ValueError("probs must increase strictly from 0 to 1")
        if v[0] < 1 or any(b < a for a, b in zip(v[:-1], v[1:], strict=True)):
            raise ValueError("values must be >= 1 and non-decreasing")
        return self


class PresetLength(_Model):
    """A built-in length table (see :mod:`servesim.workload.presets`)."""

    kind: Literal["preset"] = "preset"
    name: PresetName
    role: Literal["input", "output"]


def _length_shorthand(value: Any) -> Any:
    if isinstance(value, bool):
        return value  # let pydantic reject it; True is not a length
    if isinstance(value, int):
        return {"kind": "fixed", "value": value}
    if isinstance(value, str):
        if "." in value:
            name, _, role = value.partition(".")
            return {"kind": "preset", "name": name, "role": role}
        raise ValueError(
            f"{value!r} is not a length: give tokens (an integer), a preset (conversation, "
            "code, code.output, ...) or a distribution such as {kind: lognormal, median: 500, "
            "sigma: 0.8}"
        )
    return value


LengthDist = Annotated[
    FixedLength
    | UniformLength
    | NormalLength
    | LognormalLength
    | ZipfLength
    | EmpiricalLength
    | QuantileLength
    | PresetLength,
    Field(discriminator="kind"),
    BeforeValidator(_length_shorthand),
]
"""A distribution of token counts (>= 1). An int means ``fixed``; ``"code.output"`` a preset."""


# --------------------------------------------------------------------------- durations (seconds)


class FixedDuration(_Model):
    kind: Literal["fixed"] = "fixed"
    value_s: float = Field(ge=0, allow_inf_nan=False, description="seconds")


class ExponentialDuration(_Model):
    kind: Literal["exponential"] = "exponential"
    mean_s: float = Field(gt=0, allow_inf_nan=False, description="seconds")


class UniformDuration(_Model):
    kind: Literal["uniform"] = "uniform"
    lo_s: float = Field(ge=0, allow_inf_nan=False, description="seconds")
    hi_s: float = Field(ge=0, allow_inf_nan=False, description="seconds")

    @model_validator(mode="after")
    def _ordered(self) -> UniformDuration:
        if self.hi_s < self.lo_s:
            raise ValueError(f"hi_s ({self.hi_s}) is below lo_s ({self.lo_s})")
        return self


class LognormalDuration(_Model):
    """Lognormal by ``median_s`` and ``sigma`` (std of the log), like :class:`LognormalLength`."""

    kind: Literal["lognormal"] = "lognormal"
    median_s: float = Field(gt=0, allow_inf_nan=False, description="seconds")
    sigma: float = Field(ge=0, allow_inf_nan=False)


def _duration_shorthand(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"kind": "fixed", "value_s": value}
    return value


DurationDist = Annotated[
    FixedDuration | ExponentialDuration | UniformDuration | LognormalDuration,
    Field(discriminator="kind"),
    BeforeValidator(_duration_shorthand),
]
"""A distribution of durations in seconds (>= 0). A number means ``fixed``."""


# --------------------------------------------------------------------------- arrivals


def _positive_rate(value: float) -> float:
    if not value > 0:  # also catches NaN
        raise ValueError(f"rate is {value}; must be > 0 requests/s (kind: burst sends all at t=0)")
    return value


class PoissonArrival(_Model):
    """Exponential inter-arrival times at ``rate`` requests/s; ``rate: inf`` is a burst."""

    kind: Literal["poisson"] = "poisson"
    rate: float = Field(description="requests/s")

    _check_rate = field_validator("rate")(_positive_rate)


class GammaArrival(_Model):
    """Gamma inter-arrivals with mean ``1/rate`` and shape ``burstiness`` (1 = Poisson).

    The coefficient of variation of the gaps is ``1/sqrt(burstiness)``: below 1 is burstier than
    Poisson, above 1 more regular (vLLM's ``benchmark_serving --burstiness`` convention).
    """

    kind: Literal["gamma"] = "gamma"
    rate: float = Field(description="requests/s")
    burstiness: float = Field(description="gamma shape; 1 = Poisson")

    _check_rate = field_validator("rate")(_positive_rate)

    @field_validator("burstiness")
    @classmethod
    def _positive_shape(cls, value: float) -> float:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"burstiness is {value}; must be a finite number > 0 (1 = Poisson)")
        return value


class ConstantArrival(_Model):
    """Evenly spaced arrivals, ``1/rate`` seconds apart."""

    kind: Literal["constant"] = "constant"
    rate: float = Field(description="requests/s")

    _check_rate = field_validator("rate")(_positive_rate)


class BurstArrival(_Model):
    """Every request (or session) arrives at t = 0."""

    kind: Literal["burst"] = "burst"


class ClosedLoop(_Model):
    """``concurrency`` users, each sending its next request when its previous one finished.

    Built as ``concurrency`` sessions starting at t = 0; the requests are shared out evenly.
    ``think_time_s`` is the pause between a user's consecutive requests (conversations).
    """

    kind: Literal["closed"] = "closed"
    concurrency: int = Field(ge=1, description="simultaneous users")
    think_time_s: DurationDist = FixedDuration(value_s=0.0)


ArrivalSpec = Annotated[
    PoissonArrival | GammaArrival | ConstantArrival | BurstArrival | ClosedLoop,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- multi-turn


class MultiTurnSpec(_Model):
    """Synthetic conversations: each session has several turns that grow one context.

    Turn ``k + 1``'s prompt is turn ``k``'s prompt + turn ``k``'s output + a new user message of
    ``new_message_len`` tokens (default: ``input_len``). ``think_time_s`` separates a turn's
    finish from the next turn's arrival. The arrival process then times session *starts*.
    """

    turns: LengthDist = Field(description="turns per session")
    think_time_s: DurationDist = FixedDuration(value_s=0.0)
    new_message_len: LengthDist | None = None


# --------------------------------------------------------------------------- the workload


class WorkloadSpec(_Model):
    """A synthetic workload, a trace replay or a sessions replay.

    Synthetic: ``num_requests`` plus lengths (``preset`` and/or ``input_len``/``output_len``),
    ``arrival`` (default Poisson at :data:`DEFAULT_RATE_RPS`), optional shared prefixes and
    multi-turn sessions. ``num_requests`` counts requests (turns), not sessions.

    Replay: ``trace`` (a file) with ``trace_format`` and column options; ``rate_scale``,
    ``time_window`` and ``max_requests`` select and speed it up. Setting ``arrival`` re-times
    the trace's requests with that process instead of the recorded timestamps.
    """

    name: str | None = Field(default=None, description="label for reports")
    num_requests: int | None = Field(default=None, ge=1, description="requests (turns)")
    preset: PresetName | None = None
    input_len: LengthDist | None = Field(default=None, description="prompt tokens")
    output_len: LengthDist | None = Field(default=None, description="generated tokens")
    arrival: ArrivalSpec | None = None

    prefix_groups: int = Field(default=0, ge=0, description="distinct shared prompt prefixes")
    prefix_len: int = Field(default=0, ge=0, description="tokens in each shared prefix")
    prefix_fraction: float = Field(default=1.0, ge=0, le=1, description="requests using one")
    multi_turn: MultiTurnSpec | None = None
    hash_block_size: int | None = Field(
        default=None, ge=1, description="tokens per hash id; default 16 (Mooncake: 512)"
    )

    trace: Path | None = None
    trace_format: Literal["auto", "azure", "burstgpt", "mooncake", "csv", "jsonl", "sessions"] = (
        "auto"
    )
    timestamp_col: str | None = None
    input_col: str | None = None
    output_col: str | None = None
    hash_ids_col: str | None = None
    timestamp_unit: Literal["s", "ms", "us", "datetime"] | None = Field(
        default=None, description="None: the format's own (Azure datetime, Mooncake ms, else s)"
    )
    rate_scale: float = Field(default=1.0, gt=0, allow_inf_nan=False, description="replay ×k")
    time_window: tuple[float, float] | None = Field(
        default=None, description="(start_s, end_s) in trace seconds from its first request"
    )
    max_requests: int | None = Field(default=None, ge=1)
    zero_tokens: Literal["clamp", "drop", "error"] = Field(
        default="clamp", description="trace rows with 0 input or output tokens"
    )
    sessions_extend_context: bool = Field(
        default=True,
        description="sessions file turns without hash_ids extend the previous turn's context "
        "when their prompt is at least the previous prompt + output",
    )

    @field_validator("input_len", "output_len", mode="before")
    @classmethod
    def _bare_preset(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value in PRESET_NAMES:
            role = "input" if info.field_name == "input_len" else "output"
            return {"kind": "preset", "name": value, "role": role}
        return value

    @field_validator("time_window")
    @classmethod
    def _window(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None:
            start, end = value
            if not (math.isfinite(start) and start >= 0 and end > start):
                raise ValueError(f"time_window {value} must satisfy 0 <= start_s < end_s")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WorkloadSpec:
        if self.trace is not None:
            self._check_replay()
        else:
            self._check_synthetic()
        if (self.prefix_groups > 0) != (self.prefix_len > 0):
            raise ValueError("prefix_groups and prefix_len go together: set both > 0, or neither")
        return self

    def _check_replay(self) -> None:
        synthetic_only = {
            "num_requests": "use max_requests to cap a trace",
            "preset": "a trace brings its own lengths",
            "input_len": "a trace brings its own lengths",
            "output_len": "a trace brings its own lengths",
            "multi_turn": "use a sessions file (trace_format: sessions) for multi-turn replay",
            "prefix_groups": "a trace brings its own hash_ids",
        }
        for name, why in synthetic_only.items():
            if getattr(self, name):
                raise ValueError(f"{name} does not apply to a trace replay ({why})")
        if self.arrival is not None and self.rate_scale != 1.0:
            raise ValueError(
                "rate_scale speeds up recorded timestamps; with arrival set, change "
                "arrival.rate instead"
            )

    def _check_synthetic(self) -> None:
        if self.num_requests is None:
            raise ValueError("num_requests is required for a synthetic workload")
        if self.preset is None and (self.input_len is None or self.output_len is None):
            raise ValueError("set input_len and output_len, or a preset (conversation, code)")
        replay_only = (
            "time_window",
            "max_requests",
            "timestamp_col",
            "input_col",
            "output_col",
            "hash_ids_col",
            "timestamp_unit",
        )
        for name in replay_only:
            if getattr(self, name) is not None:
                raise ValueError(f"{name} applies only with trace")
        if self.trace_format != "auto":
            raise ValueError("trace_format applies only with trace")
        if self.rate_scale != 1.0:
            raise ValueError("rate_scale applies only with trace; set arrival.rate instead")

    # Resolved views: the effective choice after defaults, so consumers need no branching.

    @property
    def effective_input_len(self) -> LengthDist:
        if self.input_len is not None:
            return self.input_len
        assert self.preset is not None  # guaranteed by _check_synthetic
        return PresetLength(name=self.preset, role="input")

    @property
    def effective_output_len(self) -> LengthDist:
        if self.output_len is not None:
            return self.output_len
        assert self.preset is not None
        return PresetLength(name=self.preset, role="output")

    @property
    def effective_arrival(self) -> ArrivalSpec | None:
        """The arrival process; ``None`` for a replay that keeps its recorded timestamps."""
        if self.arrival is None and self.trace is None:
            return PoissonArrival(rate=DEFAULT_RATE_RPS)
        return self.arrival


# --------------------------------------------------------------------------- the boundary

_KIND_TAGS = frozenset(
    {
        "fixed",
        "uniform",
        "normal",
        "lognormal",
        "zipf",
        "empirical",
        "quantiles",
        "preset",
        "exponential",
        "poisson",
        "gamma",
        "constant",
        "burst",
        "closed",
    }
)


def _error_path(loc: tuple[Any, ...]) -> str:
    # pydantic puts the union tag into the location ("input_len.lognormal.sigma"); users wrote
    # "input_len: {kind: lognormal, sigma: ...}", so drop the tag.
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in _KIND_TAGS)]
    return ".".join(parts)


def validation_error_to_servesim(err: ValidationError, prefix: str = "workload") -> ServesimError:
    """The first problem of a pydantic ``ValidationError`` as one clear ServesimError."""
    first = err.errors()[0]
    path = _error_path(first["loc"])
    field = f"{prefix}.{path}" if path else prefix
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
        fix = "check the spelling; see the workload section of the README"
    elif first["type"] == "union_tag_invalid":
        fix = "set kind to one of the listed names"
    else:
        fix = None
    more = len(err.errors()) - 1
    if more:
        message = f"{message} (and {more} more problem{'s' if more > 1 else ''})"
    return ServesimError(message, field=field, fix=fix)


def parse_workload_spec(data: Mapping[str, Any] | WorkloadSpec) -> WorkloadSpec:
    """Validate a workload mapping (e.g. from YAML); raise ServesimError on the first problem."""
    if isinstance(data, WorkloadSpec):
        return data
    try:
        return WorkloadSpec.model_validate(data)
    except ValidationError as err:
        raise validation_error_to_servesim(err) from None
