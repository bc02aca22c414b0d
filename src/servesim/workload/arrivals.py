"""Open-loop arrival processes: inter-arrival gaps and a lazy stream of arrival times.

The first arrival is at t = 0 (a benchmark client sends its first request at once); each later
one follows a gap drawn from the process. Closed-loop users are not an arrival process here:
they become sessions (see :mod:`servesim.workload.build`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from servesim.workload.lengths import describe_duration
from servesim.workload.spec import (
    ArrivalSpec,
    BurstArrival,
    ClosedLoop,
    ConstantArrival,
    GammaArrival,
    PoissonArrival,
)

CHUNK = 4096
"""Arrivals drawn per vectorised call."""


def inter_arrival_gaps(arrival: ArrivalSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` gaps between consecutive arrivals, seconds (float64 >= 0).

    Poisson: exponential with mean ``1/rate``. Gamma: shape ``burstiness``, scale
    ``1/(rate*burstiness)`` so the mean stays ``1/rate`` and the CV is ``1/sqrt(burstiness)``.
    Constant: ``1/rate``. Burst, or any infinite rate: 0.
    """
    if isinstance(arrival, ClosedLoop):
        raise TypeError("a closed loop has no inter-arrival gaps")
    if isinstance(arrival, BurstArrival) or math.isinf(arrival.rate):
        return np.zeros(n)
    if isinstance(arrival, PoissonArrival):
        return rng.exponential(1.0 / arrival.rate, n)
    if isinstance(arrival, GammaArrival):
        shape = arrival.burstiness
        return rng.gamma(shape, 1.0 / (arrival.rate * shape), n)
    if isinstance(arrival, ConstantArrival):
        return np.full(n, 1.0 / arrival.rate)
    raise TypeError(f"unknown arrival process {arrival!r}")


def arrival_times(arrival: ArrivalSpec, rng: np.random.Generator) -> Iterator[float]:
    """An endless, lazy stream of arrival times in seconds, the first at 0, non-decreasing."""
    last = 0.0
    first = True
    while True:
        gaps = inter_arrival_gaps(arrival, rng, CHUNK)
        if first:
            gaps[0] = 0.0
            first = False
        times = last + np.cumsum(gaps)
        last = float(times[-1])
        yield from times.tolist()


def describe_arrival(arrival: ArrivalSpec) -> str:
    """A few words, e.g. ``Poisson 10 req/s``."""
    if isinstance(arrival, BurstArrival) or (
        not isinstance(arrival, ClosedLoop) and math.isinf(arrival.rate)
    ):
        return "burst (all at t=0)"
    if isinstance(arrival, PoissonArrival):
        return f"Poisson {arrival.rate:g} req/s"
    if isinstance(arrival, GammaArrival):
        return f"gamma {arrival.rate:g} req/s, burstiness {arrival.burstiness:g}"
    if isinstance(arrival, ConstantArrival):
        return f"constant {arrival.rate:g} req/s"
    think = describe_duration(arrival.think_time_s)
    return f"closed loop, {arrival.concurrency} users, think {think}"
