"""The workload specification: what the user writes in a scenario file.

Every spec here is a frozen :class:`~servesim.validation.Spec` (unknown fields refused): a
typo is an error, and a validated spec is never mutated. Distributions are tagged unions on
``kind``; a bare number is shorthand for ``fixed``, and for ``input_len`` / ``output_len`` a
preset name (``conversation``, ``code``, ``sharegpt``) is shorthand for that preset's length
table.

Use :func:`parse_workload_spec` at the boundary: it turns a mapping into a validated spec, or
raises a :class:`~servesim.errors.ServesimError` that names the field and the fix.

(~570 lines, over the project's ~500: the whole user-facing schema of a workload — lengths,
durations, arrivals, multi-turn, the spec and its defaults — is kept in one file so it reads
as one document, as the scenario file is written.)
"""

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from msgspec import Meta
from msgspec.structs import force_setattr

from servesim.errors import ServesimError
from servesim.validation import FieldError, Spec, convert

PRESET_NAMES: tuple[str, ...] = ("conversation", "code", "sharegpt")
PresetName = Literal["conversation", "code", "sharegpt"]

# The default synthetic workload, defined once: what a workload leaves out (the CLI with no
# workload flags, ``servesim.simulate({"workload": {"num_requests": 20}})``, a file's
# ``workload: {}``) is filled from these three.
DEFAULT_PRESET: PresetName = "conversation"
"""Length preset of a synthetic workload that does not give both ``input_len`` and
``output_len``."""

DEFAULT_NUM_REQUESTS = 1000
"""Requests of a synthetic workload that names no ``num_requests``."""

DEFAULT_RATE_RPS = 20.0
"""Poisson arrival rate (requests/s) of a synthetic workload that names no ``arrival``: about the
most Llama-3.1-8B on one H100 sustains with the conversation preset before queues grow
(simulated: 18.4 req/s completed, TTFT p99 ~0.25 s)."""

TRACE_FORMATS = ("auto", "azure", "burstgpt", "mooncake", "csv", "jsonl", "sessions")

MAX_REQUESTS = 10_000_000
"""Most requests (or closed-loop users) a workload may have. Ten million takes about an hour
and gigabytes of records to simulate; a larger count is a typo or an unset limit."""

MAX_SECONDS = 1e10
"""Latest simulated instant a workload may reach, s (~317 years). A trace timestamp beyond it
is a wrong ``timestamp_unit`` or a corrupt cell; arrivals spread further (a synthetic rate of
1e-300 requests/s) would run the clock where a float64 no longer resolves a decode step (its
spacing near 1e10 s is 2e-6 s, near 1e300 s far more than a step)."""

MAX_TOKENS = 100_000_000
"""Most tokens a length may have: far past every model's context window (a larger value is a
typo, and would overflow the int64 token arrays)."""

Tokens = Annotated[int, Meta(ge=1, le=MAX_TOKENS, description="tokens")]
Seconds = Annotated[float, Meta(ge=0, description="seconds")]
PositiveSeconds = Annotated[float, Meta(gt=0, description="seconds")]


def _finite(spec: Any, *names: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if not math.isfinite(value):
            raise FieldError(name, f"must be a finite number (got {value})")


class _Kind(Spec, tag_field="kind"):
    """A member of a tagged union: ``kind`` (the tag) names the variant."""

    @property
    def kind(self) -> str:
        return type(self).__struct_config__.tag


# --------------------------------------------------------------------------- lengths (tokens)


class FixedLength(_Kind, tag="fixed"):
    """Every request has exactly ``value`` tokens."""

    value: Tokens


class UniformLength(_Kind, tag="uniform"):
    """Integers uniform on ``[lo, hi]`` tokens, both ends included."""

    lo: Tokens
    hi: Tokens

    def __post_init__(self) -> None:
        if self.hi < self.lo:
            raise FieldError("hi", f"{self.hi} is below lo ({self.lo})")


class NormalLength(_Kind, tag="normal"):
    """Normal with ``mean`` and ``std`` tokens, rounded, clipped to ``[1, max]``."""

    mean: Annotated[float, Meta(gt=0, description="tokens")]
    std: Annotated[float, Meta(ge=0, description="tokens")]
    max: Annotated[int, Meta(ge=1, le=MAX_TOKENS, description="tokens; clip above")] | None = None


class LognormalLength(_Kind, tag="lognormal"):
    """Lognormal given by its ``median`` (tokens) and ``sigma`` (std of the log).

    ``mu = ln(median)``; the mean is ``median * exp(sigma**2 / 2)``. The median is what a
    histogram of real lengths shows most plainly, which is why it is the parameter.
    Samples are rounded and clipped to ``[1, max]``.
    """

    median: Annotated[float, Meta(gt=0, description="tokens")]
    sigma: Annotated[float, Meta(ge=0, description="standard deviation of ln(length)")]
    max: Annotated[int, Meta(ge=1, le=MAX_TOKENS, description="tokens; clip above")] | None = None


class ZipfLength(_Kind, tag="zipf"):
    """Truncated Zipf on ``1..max`` tokens: P(k) proportional to ``k ** -a``."""

    a: Annotated[float, Meta(gt=0, description="exponent")]
    max: Annotated[int, Meta(ge=1, le=MAX_TOKENS, description="tokens, largest value")]


class EmpiricalLength(_Kind, tag="empirical"):
    """Resample (with replacement) observed lengths: inline ``values`` or a file at ``path``.

    The file holds one length per line, or is a CSV with a header; ``column`` picks the column
    (needed when there is more than one).
    """

    values: tuple[int, ...] | None = None
    path: Path | None = None
    column: str | None = None

    def __post_init__(self) -> None:
        if (self.values is None) == (self.path is None):
            raise ValueError("give exactly one of values or path")
        if self.values is not None:
            if not self.values:
                raise FieldError("values", "is empty")
            if min(self.values) < 1:
                raise FieldError("values", f"has {min(self.values)}; lengths must be >= 1")


class QuantileLength(_Kind, tag="quantiles"):
    """A piecewise quantile table: ``values[i]`` is the ``probs[i]`` quantile, in tokens.

    Sampling draws ``u ~ U(0, 1)`` and interpolates ``ln(value)`` linearly in ``u`` (geometric
    interpolation suits long-tailed lengths), then rounds. ``probs`` runs from 0 to 1.
    """

    probs: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        p, v = self.probs, self.values
        if len(p) != len(v) or len(p) < 2:
            raise ValueError("probs and values need the same length, at least 2")
        if p[0] != 0.0 or p[-1] != 1.0 or any(b <= a for a, b in zip(p[:-1], p[1:], strict=True)):
            raise FieldError("probs", "must increase strictly from 0 to 1")
        if v[0] < 1 or any(b < a for a, b in zip(v[:-1], v[1:], strict=True)):
            raise FieldError("values", "must be >= 1 and non-decreasing")


class PresetLength(_Kind, tag="preset"):
    """A built-in length table (see :mod:`servesim.workload.presets`)."""

    name: PresetName
    role: Literal["input", "output"]


LengthDist = (
    FixedLength
    | UniformLength
    | NormalLength
    | LognormalLength
    | ZipfLength
    | EmpiricalLength
    | QuantileLength
    | PresetLength
)
"""A distribution of token counts (>= 1)."""

LengthField = Tokens | str | LengthDist
"""What a length field accepts: tokens (``fixed``), a preset name or a distribution."""


def expand_length(value: Any, field: str, role: str | None = None) -> Any:
    """A length shorthand as its distribution: ``500`` → fixed; ``"code.output"`` → preset;
    with ``role``, a bare preset name (``"code"``) → that preset's ``role`` lengths."""
    if isinstance(value, int) and not isinstance(value, bool):
        return FixedLength(value=value)
    if isinstance(value, str):
        name, dot, part = value.partition(".")
        if not dot and role is not None:
            part = role
        if name in PRESET_NAMES and part in ("input", "output"):
            return PresetLength(name=name, role=part)  # type: ignore[arg-type]
        raise FieldError(
            field,
            f"{value!r} is not a length: give tokens (an integer), a preset (conversation, "
            "code, sharegpt, code.output, ...) or a distribution such as {kind: lognormal, "
            "median: 500, sigma: 0.8}",
        )
    return value


# --------------------------------------------------------------------------- durations (seconds)


class FixedDuration(_Kind, tag="fixed"):
    value_s: Seconds

    def __post_init__(self) -> None:
        _finite(self, "value_s")


class ExponentialDuration(_Kind, tag="exponential"):
    mean_s: PositiveSeconds

    def __post_init__(self) -> None:
        _finite(self, "mean_s")


class UniformDuration(_Kind, tag="uniform"):
    lo_s: Seconds
    hi_s: Seconds

    def __post_init__(self) -> None:
        _finite(self, "lo_s", "hi_s")
        if self.hi_s < self.lo_s:
            raise FieldError("hi_s", f"{self.hi_s} is below lo_s ({self.lo_s})")


class LognormalDuration(_Kind, tag="lognormal"):
    """Lognormal by ``median_s`` and ``sigma`` (std of the log), like :class:`LognormalLength`."""

    median_s: PositiveSeconds
    sigma: Annotated[float, Meta(ge=0)]

    def __post_init__(self) -> None:
        _finite(self, "median_s", "sigma")


DurationDist = FixedDuration | ExponentialDuration | UniformDuration | LognormalDuration
"""A distribution of durations in seconds (>= 0)."""

DurationField = float | DurationDist
"""What a duration field accepts: seconds (``fixed``) or a distribution."""


def expand_duration(value: Any) -> Any:
    """A duration shorthand as its distribution: a number of seconds → fixed."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return FixedDuration(value_s=float(value))
    return value


def _expand_fields(spec: Any, lengths: tuple[str, ...] = (), durations: tuple[str, ...] = ()):
    # Shorthands are accepted by the field types and replaced by their distribution here, so
    # consumers always see a distribution. (force_setattr: the spec is frozen once built.)
    for name in lengths:
        value = getattr(spec, name)
        role = {"input_len": "input", "output_len": "output"}.get(name)
        expanded = expand_length(value, name, role)
        if expanded is not value:
            force_setattr(spec, name, expanded)
    for name in durations:
        value = getattr(spec, name)
        expanded = expand_duration(value)
        if expanded is not value:  # (FixedDuration's own rule has checked it is finite)
            if expanded.value_s < 0:
                raise FieldError(name, f"must be >= 0 seconds (got {expanded.value_s:g})")
            force_setattr(spec, name, expanded)


class _OneLength(Spec):
    length: LengthField

    def __post_init__(self) -> None:
        _expand_fields(self, lengths=("length",))


class _OneDuration(Spec):
    duration: DurationField

    def __post_init__(self) -> None:
        _expand_fields(self, durations=("duration",))


def parse_length(value: Any) -> LengthDist:
    """Validate one length (shorthands allowed) into its distribution."""
    return convert({"length": value}, _OneLength).length  # type: ignore[return-value]


def parse_duration(value: Any) -> DurationDist:
    """Validate one duration (a number of seconds means fixed) into its distribution."""
    return convert({"duration": value}, _OneDuration).duration  # type: ignore[return-value]


# --------------------------------------------------------------------------- arrivals


def _positive_rate(rate: float) -> None:
    if not rate > 0:  # also catches NaN
        raise FieldError(
            "rate", f"is {rate}; must be > 0 requests/s (kind: burst sends all at t=0)"
        )


class PoissonArrival(_Kind, tag="poisson"):
    """Exponential inter-arrival times at ``rate`` requests/s; ``rate: inf`` is a burst."""

    rate: Annotated[float, Meta(description="requests/s")]

    def __post_init__(self) -> None:
        _positive_rate(self.rate)


class GammaArrival(_Kind, tag="gamma"):
    """Gamma inter-arrivals with mean ``1/rate`` and shape ``burstiness`` (1 = Poisson).

    The coefficient of variation of the gaps is ``1/sqrt(burstiness)``: below 1 is burstier than
    Poisson, above 1 more regular (vLLM's ``benchmark_serving --burstiness`` convention).
    """

    rate: Annotated[float, Meta(description="requests/s")]
    burstiness: Annotated[float, Meta(description="gamma shape; 1 = Poisson")]

    def __post_init__(self) -> None:
        _positive_rate(self.rate)
        if not (self.burstiness > 0 and math.isfinite(self.burstiness)):
            raise FieldError(
                "burstiness",
                f"is {self.burstiness}; must be a finite number > 0 (1 = Poisson)",
            )


class ConstantArrival(_Kind, tag="constant"):
    """Evenly spaced arrivals, ``1/rate`` seconds apart."""

    rate: Annotated[float, Meta(description="requests/s")]

    def __post_init__(self) -> None:
        _positive_rate(self.rate)


class BurstArrival(_Kind, tag="burst"):
    """Every request (or session) arrives at t = 0."""


class ClosedLoop(_Kind, tag="closed"):
    """``concurrency`` users, each sending its next request when its previous one finished.

    Built as ``concurrency`` sessions starting at t = 0; the requests are shared out evenly.
    ``think_time_s`` is the pause between a user's consecutive requests (conversations).
    """

    concurrency: Annotated[int, Meta(ge=1, le=MAX_REQUESTS, description="simultaneous users")]
    think_time_s: DurationField = FixedDuration(value_s=0.0)

    def __post_init__(self) -> None:
        _expand_fields(self, durations=("think_time_s",))


ArrivalSpec = PoissonArrival | GammaArrival | ConstantArrival | BurstArrival | ClosedLoop


# --------------------------------------------------------------------------- multi-turn


class MultiTurnSpec(Spec):
    """Synthetic conversations: each session has several turns that grow one context.

    Turn ``k + 1``'s prompt is turn ``k``'s prompt + turn ``k``'s output + a new user message of
    ``new_message_len`` tokens (default: ``input_len``). ``think_time_s`` separates a turn's
    finish from the next turn's arrival. The arrival process then times session *starts*.
    """

    turns: Annotated[LengthField, Meta(description="turns per session")]
    think_time_s: DurationField = FixedDuration(value_s=0.0)
    new_message_len: LengthField | None = None

    def __post_init__(self) -> None:
        lengths = ("turns",) if self.new_message_len is None else ("turns", "new_message_len")
        _expand_fields(self, lengths=lengths, durations=("think_time_s",))


# --------------------------------------------------------------------------- the workload


class WorkloadSpec(Spec):
    """A synthetic workload, a trace replay or a sessions replay.

    Synthetic: ``num_requests`` plus lengths (``preset`` and/or ``input_len``/``output_len``),
    ``arrival``, optional shared prefixes and multi-turn sessions. ``num_requests`` counts
    requests (turns), not sessions. What is left out takes the defaults
    (:data:`DEFAULT_NUM_REQUESTS`, :data:`DEFAULT_PRESET` lengths, Poisson at
    :data:`DEFAULT_RATE_RPS`): ``{}`` is the default workload.

    Replay: ``trace`` (a file) with ``trace_format`` and column options; ``rate_scale``,
    ``time_window`` and ``max_requests`` select and speed it up. Setting ``arrival`` re-times
    the trace's requests with that process instead of the recorded timestamps.
    """

    name: Annotated[str, Meta(description="label for reports")] | None = None
    num_requests: (
        Annotated[int, Meta(ge=1, le=MAX_REQUESTS, description="requests (turns)")] | None
    ) = None
    preset: PresetName | None = None
    input_len: Annotated[LengthField, Meta(description="prompt tokens")] | None = None
    output_len: Annotated[LengthField, Meta(description="generated tokens")] | None = None
    arrival: ArrivalSpec | None = None
    max_concurrency: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=MAX_REQUESTS,
                description="most requests in flight: one due while this many are outstanding "
                "waits for one to finish (vllm bench serve --max-concurrency)",
            ),
        ]
        | None
    ) = None

    prefix_groups: Annotated[
        int, Meta(ge=0, le=MAX_REQUESTS, description="distinct shared prompt prefixes")
    ] = 0
    prefix_len: Annotated[
        int, Meta(ge=0, le=MAX_TOKENS, description="tokens in each shared prefix")
    ] = 0
    prefix_fraction: Annotated[float, Meta(ge=0, le=1, description="requests using one")] = 1.0
    multi_turn: MultiTurnSpec | None = None
    hash_block_size: (
        Annotated[int, Meta(ge=1, description="tokens per hash id; default 16 (Mooncake: 512)")]
        | None
    ) = None

    trace: Path | None = None
    trace_format: Literal["auto", "azure", "burstgpt", "mooncake", "csv", "jsonl", "sessions"] = (
        "auto"
    )
    timestamp_col: str | None = None
    input_col: str | None = None
    output_col: str | None = None
    hash_ids_col: str | None = None
    timestamp_unit: Annotated[
        Literal["s", "ms", "us", "datetime"] | None,
        Meta(description="None: the format's own (Azure datetime, Mooncake ms, else s)"),
    ] = None
    rate_scale: Annotated[float, Meta(gt=0, description="replay ×k")] = 1.0
    time_window: Annotated[
        tuple[float, float] | None,
        Meta(description="(start_s, end_s) in trace seconds from its first request"),
    ] = None
    max_requests: Annotated[int, Meta(ge=1, le=MAX_REQUESTS)] | None = None
    zero_tokens: Annotated[
        Literal["clamp", "drop", "error"],
        Meta(description="trace rows with 0 input or output tokens"),
    ] = "clamp"
    sessions_extend_context: Annotated[
        bool,
        Meta(
            description="sessions file turns without hash_ids extend the previous turn's "
            "context when their prompt is at least the previous prompt + output"
        ),
    ] = True

    def __post_init__(self) -> None:
        lengths = tuple(n for n in ("input_len", "output_len") if getattr(self, n) is not None)
        _expand_fields(self, lengths=lengths)
        _finite(self, "rate_scale")
        if self.time_window is not None:
            start, end = self.time_window
            if not (math.isfinite(start) and start >= 0 and end > start):
                raise FieldError(
                    "time_window", f"{list(self.time_window)} must satisfy 0 <= start_s < end_s"
                )
        if self.trace is not None:
            self._check_replay()
        else:
            self._check_synthetic()
        if self.max_concurrency is not None and isinstance(self.arrival, ClosedLoop):
            raise ValueError(
                "max_concurrency caps an open-loop arrival process; a closed loop's "
                "concurrency is its cap already"
            )
        if (self.prefix_groups > 0) != (self.prefix_len > 0):
            raise ValueError("prefix_groups and prefix_len go together: set both > 0, or neither")

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
        # NOTE: the defaults are filled in (not left None) so that the scenario summary.json
        # echoes says what ran, and reruns the same run whatever the defaults become.
        if self.num_requests is None:
            force_setattr(self, "num_requests", DEFAULT_NUM_REQUESTS)
        if self.preset is None and (self.input_len is None or self.output_len is None):
            force_setattr(self, "preset", DEFAULT_PRESET)
        if self.arrival is None:
            force_setattr(self, "arrival", PoissonArrival(rate=DEFAULT_RATE_RPS))
        rate = getattr(self.arrival, "rate", math.inf)
        if self.num_requests / rate > MAX_SECONDS:
            raise FieldError(
                "arrival",
                f"rate {rate:g} requests/s spreads {self.num_requests:,} requests over "
                f"{self.num_requests / rate:.3g} s, past the {MAX_SECONDS:.0e} s a simulation "
                f"resolves; use a rate of at least {self.num_requests / MAX_SECONDS:.3g} "
                "requests/s",
            )
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
            return self.input_len  # type: ignore[return-value]  # expanded in __post_init__
        assert self.preset is not None  # guaranteed by _check_synthetic
        return PresetLength(name=self.preset, role="input")

    @property
    def effective_output_len(self) -> LengthDist:
        if self.output_len is not None:
            return self.output_len  # type: ignore[return-value]
        assert self.preset is not None
        return PresetLength(name=self.preset, role="output")

    @property
    def effective_arrival(self) -> ArrivalSpec | None:
        """The arrival process; ``None`` for a replay that keeps its recorded timestamps."""
        return self.arrival


# --------------------------------------------------------------------------- the boundary


def parse_workload_spec(data: Mapping[str, Any] | WorkloadSpec) -> WorkloadSpec:
    """Validate a workload mapping (e.g. from YAML); raise ServesimError on the first problem."""
    if isinstance(data, WorkloadSpec):
        return data
    if not isinstance(data, Mapping):
        raise ServesimError(
            f"must be a mapping of workload fields, got {type(data).__name__}", field="workload"
        )
    return convert(dict(data), WorkloadSpec, prefix="workload")
