"""Arrival processes: rates, burstiness, bursts and the lazy time stream."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from servesim.validation import convert
from servesim.workload.arrivals import arrival_times, describe_arrival, inter_arrival_gaps
from servesim.workload.spec import ArrivalSpec


def _arrival(data: dict) -> ArrivalSpec:
    return convert(data, ArrivalSpec)  # type: ignore[arg-type]  # a union of specs


N = 200_000


def gaps(spec: dict, n: int = N, seed: int = 0) -> np.ndarray:
    return inter_arrival_gaps(_arrival(spec), np.random.default_rng(seed), n)


def cv(x: np.ndarray) -> float:
    return float(x.std() / x.mean())


def test_poisson_rate_and_cv():
    x = gaps({"kind": "poisson", "rate": 8.0})
    assert x.mean() == pytest.approx(1 / 8, rel=0.01)
    assert cv(x) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_keeps_the_rate_and_sets_the_cv(burstiness):
    x = gaps({"kind": "gamma", "rate": 5.0, "burstiness": burstiness})
    assert x.mean() == pytest.approx(1 / 5, rel=0.02)
    assert cv(x) == pytest.approx(1 / np.sqrt(burstiness), rel=0.03)


def test_constant():
    assert np.allclose(gaps({"kind": "constant", "rate": 4.0}, 10), 0.25)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "burst"},
        {"kind": "poisson", "rate": "inf"},
        {"kind": "gamma", "rate": "inf", "burstiness": 2},
    ],
)
def test_burst_and_infinite_rate_send_everything_at_zero(spec):
    times = list(itertools.islice(arrival_times(_arrival(spec), np.random.default_rng(0)), 5000))
    assert times == [0.0] * 5000
    assert describe_arrival(_arrival(spec)) == "burst (all at t=0)"


def test_stream_starts_at_zero_and_never_decreases_across_chunks():
    spec = _arrival({"kind": "poisson", "rate": 100.0})
    times = np.array(list(itertools.islice(arrival_times(spec, np.random.default_rng(1)), 10_000)))
    assert times[0] == 0.0
    assert (np.diff(times) >= 0).all()
    # 9,999 gaps of mean 10 ms
    assert times[-1] == pytest.approx(99.99, rel=0.03)


def test_stream_is_deterministic():
    spec = _arrival({"kind": "gamma", "rate": 3.0, "burstiness": 0.5})
    a = list(itertools.islice(arrival_times(spec, np.random.default_rng(7)), 9000))
    b = list(itertools.islice(arrival_times(spec, np.random.default_rng(7)), 9000))
    c = list(itertools.islice(arrival_times(spec, np.random.default_rng(8)), 9000))
    assert a == b and a != c


def test_describe():
    assert describe_arrival(_arrival({"kind": "poisson", "rate": 10})) == ("Poisson 10 req/s")
    closed = _arrival({"kind": "closed", "concurrency": 4, "think_time_s": 2})
    assert describe_arrival(closed) == "closed loop, 4 users, think 2 s"
