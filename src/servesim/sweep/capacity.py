"""Capacity: the highest request rate one deployment sustains within its latency SLOs.

The search varies only the arrival rate of the scenario's workload (Poisson, gamma or constant;
a trace replay is re-timed as Poisson) and keeps everything else, seed included. With one seed
the exponential gaps at rate ``r`` are the same draws scaled by ``1/r`` (common random numbers),
so latency grows smoothly with the rate and bisection is well behaved.

1. Bracket: from the scenario's own rate, double while the SLOs hold, halve while they do not,
   until one rate passes and one fails (at most ``max_rate``; down to ``min_rate``).
2. Bisect geometrically until ``fail / pass - 1 <= tolerance``; report the passing rate.

The reported capacity is a rate that was simulated and met every SLO; the true boundary lies
between it and ``upper_rate``, which failed. The constraint failing at ``upper_rate`` binds.

NOTE: a finite workload builds a finite queue: with too few requests an overloaded deployment
finishes before latency shows it. Use several hundred requests or more (the default workload
has 1,000) so that a rate above capacity visibly breaks TTFT.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from servesim.errors import ServesimError
from servesim.metrics import SLO
from servesim.scenario import Scenario, build_scenario
from servesim.sweep.measure import SLO_METRICS, failing_constraints, run_point
from servesim.validation import to_data

METRIC_LABELS = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2el_ms": "E2EL"}

Evaluate = Callable[[Scenario], dict[str, Any]]
"""Runs a scenario and returns ``run_point``'s record (with ``slo_*`` metrics)."""


@dataclass(frozen=True)
class Probe:
    """One simulated rate."""

    rate: float
    """Offered requests/s."""
    values: dict[str, float]
    """SLO latencies at the percentile, ms (``ttft_ms``, ``tpot_ms``, ``e2el_ms``)."""
    failing: tuple[str, ...]
    """SLO metrics missed at this rate (empty: every SLO met)."""
    metrics: dict[str, Any]
    """The run's numeric summary (throughput, goodput, ...)."""

    @property
    def ok(self) -> bool:
        return not self.failing


@dataclass(frozen=True)
class Capacity:
    """Result of :func:`find_capacity`."""

    rate: float
    """Highest simulated rate meeting every SLO, requests/s."""
    upper_rate: float
    """Lowest simulated rate missing an SLO, requests/s (the boundary is in between)."""
    binding: str | None
    """The SLO metric that fails at ``upper_rate`` (the worst, relative to its target);
    ``None`` when no rate tried failed (``upper_rate`` is then infinite)."""
    tolerance: float
    percentile: float
    slo: SLO
    probes: tuple[Probe, ...]
    """Every rate simulated, in the order tried."""

    @property
    def at_capacity(self) -> Probe:
        return next(p for p in self.probes if p.rate == self.rate)

    @property
    def above_capacity(self) -> Probe | None:
        return next((p for p in self.probes if p.rate == self.upper_rate), None)


STEADY_FRACTION = 0.9
"""Completed ÷ offered rate below which a capacity run is flagged as not at steady state."""


def steady_state_warning(cap: Capacity) -> str | None:
    """A warning when the run at capacity completed far fewer requests/s than it was offered.

    NOTE: a finite workload can end before its queue shows: the SLOs then hold for this
    workload as given, but not for the same load sustained. The completed rate is measured
    from the first arrival to the last finish, so it sits a little below the offered rate even
    at steady state; far below (< ``STEADY_FRACTION``) means the deployment was falling behind.
    """
    done = cap.at_capacity.metrics.get("request_throughput", math.nan)
    if not done >= STEADY_FRACTION * cap.rate:
        return (
            f"at {cap.rate:,.3g} req/s the run completed only {done:,.3g} req/s: the workload "
            "ends before the deployment reaches steady state; use more requests"
        )
    return None


def capacity_document(cap: Capacity) -> dict[str, Any]:
    """``servesim capacity --json``: the capacity, the binding constraint and every probe."""
    at = cap.at_capacity
    return {
        "capacity_rps": cap.rate,
        "failing_rps": cap.upper_rate,
        "tolerance": cap.tolerance,
        "percentile": cap.percentile,
        "binding": cap.binding,
        "warning": steady_state_warning(cap),
        "slo": {k: getattr(cap.slo, k) for k in ("ttft_ms", "tpot_ms", "e2el_ms")},
        "at_capacity": {"values": at.values, "summary": at.metrics},
        "probes": [
            {"rate": p.rate, "values": p.values, "failing": list(p.failing)} for p in cap.probes
        ],
    }


def describe_slo(slo: SLO, percentile: float) -> str:
    """E.g. ``p99 TTFT <= 2000 ms, p99 TPOT <= 50 ms``."""
    return ", ".join(
        f"p{percentile:g} {METRIC_LABELS[m]} <= {getattr(slo, m):g} ms"
        for m in SLO_METRICS
        if getattr(slo, m) is not None
    )


def worst_constraint(values: dict[str, float], failing: tuple[str, ...], slo: SLO) -> str:
    """Of the failing metrics, the one furthest above its target (ratio value / target)."""

    def excess(m: str) -> float:
        v = values[m]
        return math.inf if math.isnan(v) else v / getattr(slo, m)

    return max(failing, key=excess)


def with_rate(scenario: Scenario, rate: float) -> Scenario:
    """``scenario`` with its arrival rate set to ``rate`` requests/s (validated)."""
    data = to_data(scenario)
    arrival = data["workload"].get("arrival")
    if arrival is None:
        # A synthetic workload without arrival means Poisson; a replay gets re-timed as Poisson,
        # its recorded timestamps (and any speed-up of them, rate_scale) left aside.
        arrival = {"kind": "poisson"}
        data["workload"].pop("rate_scale", None)
    if arrival["kind"] not in ("poisson", "gamma", "constant"):
        raise ServesimError(
            f"the workload's arrival is {arrival['kind']!r}; capacity varies a request rate",
            field="workload.arrival",
            fix="use kind: poisson (or gamma/constant) with a rate",
        )
    data["workload"]["arrival"] = {**arrival, "rate": rate}
    return build_scenario(data, source=f"capacity probe at {rate:.4g} req/s")


def check_slo(slo: SLO, percentile: float, tolerance: float) -> None:
    """Raise ServesimError for a search that cannot be run."""
    if not slo.any:
        raise ServesimError(
            "no SLO given",
            field="--slo-ttft-ms",
            fix="give --slo-ttft-ms and/or --slo-tpot-ms, or an slo: block in the scenario file",
        )
    if not 0 < percentile <= 100:
        raise ServesimError(f"must be in (0, 100], got {percentile}", field="--percentile")
    if not 0 < tolerance < 1:
        raise ServesimError(
            f"must be in (0, 1), got {tolerance}", field="--tolerance", fix="e.g. 0.05 (5%)"
        )


def capacity_search(
    scenario: Scenario,
    slo: SLO,
    *,
    percentile: float = 99.0,
    tolerance: float = 0.05,
    min_rate: float = 0.01,
    max_rate: float = 1e5,
    start_rate: float | None = None,
) -> Generator[Scenario, dict[str, Any], Capacity]:
    """The search as a coroutine: yields each scenario to simulate, is sent its record
    (``run_point`` with ``percentile``), returns the :class:`Capacity`.

    Driving it is the caller's choice: :func:`find_capacity` runs one search in this process;
    the planner steps many in lockstep, simulating their probes in parallel. When every SLO
    still holds at ``max_rate`` the result has ``upper_rate = inf`` and no binding constraint.
    Raises ServesimError when even the lowest rate tried misses an SLO.
    """
    check_slo(slo, percentile, tolerance)
    probes: list[Probe] = []

    def probe(rate: float) -> Generator[Scenario, dict[str, Any], Probe]:
        record = yield with_rate(scenario, rate)
        if record["status"] == "crash":
            raise RuntimeError(f"servesim failed at {rate:.4g} req/s: {record['error']}")
        if record["status"] != "ok":
            raise ServesimError(f"at {rate:.4g} req/s: {record['error']}")
        m = record["metrics"]
        values = {k: m[f"slo_{k}"] for k in SLO_METRICS}
        p = Probe(rate, values, failing_constraints(values, slo), m)
        probes.append(p)
        return p

    if start_rate is None:
        start_rate = getattr(scenario.workload.effective_arrival, "rate", None) or 1.0
    rate = min(max(start_rate, min_rate), max_rate) if math.isfinite(start_rate) else max_rate
    first = yield from probe(rate)
    lo, hi = (first, None) if first.ok else (None, first)
    while lo is None:
        if hi.rate <= min_rate:
            raise _unreachable(probes, slo, percentile, hi.rate)
        p = yield from probe(max(hi.rate / 2, min_rate))
        if not p.ok and _no_longer_improving(hi, p):
            raise _unreachable(probes, slo, percentile, p.rate)
        lo, hi = (p, hi) if p.ok else (None, p)
    while hi is None:
        if lo.rate >= max_rate:
            return Capacity(lo.rate, math.inf, None, tolerance, percentile, slo, tuple(probes))
        p = yield from probe(min(lo.rate * 2, max_rate))
        lo, hi = (p, None) if p.ok else (lo, p)
    while hi.rate / lo.rate - 1 > tolerance:
        p = yield from probe(math.sqrt(lo.rate * hi.rate))
        lo, hi = (p, hi) if p.ok else (lo, p)
    binding = worst_constraint(hi.values, hi.failing, slo)
    return Capacity(lo.rate, hi.rate, binding, tolerance, percentile, slo, tuple(probes))


def find_capacity(
    scenario: Scenario,
    slo: SLO,
    *,
    percentile: float = 99.0,
    tolerance: float = 0.05,
    min_rate: float = 0.01,
    max_rate: float = 1e5,
    evaluate: Evaluate | None = None,
) -> Capacity:
    """Highest arrival rate (requests/s) at which ``scenario`` meets ``slo`` at ``percentile``.

    ``tolerance`` is relative: the answer is within ``tolerance`` × rate below the boundary.
    The search starts at the scenario's own rate. ``evaluate`` runs one scenario (default:
    simulate it in this process). Raises ServesimError when even the lowest rate tried misses
    an SLO (naming the failing constraint and the best value seen) or when ``max_rate`` still
    meets them all.
    """
    if evaluate is None:

        def evaluate(sc: Scenario) -> dict[str, Any]:
            return run_point(sc, percentile)

    search = capacity_search(
        scenario, slo, percentile=percentile, tolerance=tolerance,
        min_rate=min_rate, max_rate=max_rate,
    )  # fmt: skip
    cap = drive(search, evaluate)
    if cap.binding is None:
        raise ServesimError(
            f"every SLO still holds at {max_rate:g} req/s: the workload's requests are too "
            "few to build a queue",
            field="workload.num_requests",
            fix="use more requests (several hundred or more) or tighter SLOs",
        )
    return cap


def drive(search: Generator[Scenario, dict[str, Any], Capacity], evaluate: Evaluate) -> Capacity:
    """Run a :func:`capacity_search` to its end, one probe at a time."""
    try:
        scenario = next(search)
        while True:
            scenario = search.send(evaluate(scenario))
    except StopIteration as stop:
        return stop.value


def _no_longer_improving(before: Probe, after: Probe) -> bool:
    """Whether halving the rate improved no failing metric by 1% or more.

    NOTE: below some rate requests stop overlapping and latency stops falling (it is the
    unloaded latency); lower rates cannot meet an SLO that this one misses, so the search
    stops instead of halving on down to ``min_rate``.
    """
    if not set(after.failing) <= set(before.failing):
        return False
    return all(
        math.isfinite(before.values[m]) and not after.values[m] < 0.99 * before.values[m]
        for m in after.failing
    )


def _unreachable(probes: list[Probe], slo: SLO, percentile: float, min_rate: float):
    """The error for SLOs missed even at the lowest rate: which, and the best value seen."""
    last = probes[-1]
    parts = []
    for m in last.failing:
        best = min(p.values[m] for p in probes)
        parts.append(
            f"p{percentile:g} {METRIC_LABELS[m]} > {getattr(slo, m):g} ms "
            f"(best found {best:,.1f} ms)"
        )
    return ServesimError(
        f"the SLOs are out of reach even at {min_rate:.3g} req/s "
        "(latency no longer falls with the rate): " + "; ".join(parts),
        field="slo",
        fix="relax the SLO, or use faster hardware, more TP or a smaller model",
    )
