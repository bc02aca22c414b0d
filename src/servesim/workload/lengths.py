"""Vectorised samplers for token-length and duration distributions.

A sampler is built once per workload (files are read and tables computed then) and called per
chunk: ``sampler(rng, n)`` returns ``n`` values as a numpy array. Lengths are int64 >= 1 tokens;
durations float64 >= 0 seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from servesim.workload.presets import preset_table
from servesim.workload.spec import (
    MAX_TOKENS,
    DurationDist,
    EmpiricalLength,
    ExponentialDuration,
    FixedDuration,
    FixedLength,
    LengthDist,
    LognormalDuration,
    LognormalLength,
    NormalLength,
    PresetLength,
    QuantileLength,
    UniformDuration,
    UniformLength,
    ZipfLength,
)
from servesim.workload.traces import read_lengths_file

Sampler = Callable[[np.random.Generator, int], np.ndarray]

# NOTE: a bound int64 holds as a float too (np.iinfo(np.int64).max rounds up and overflows).
_NO_MAX = MAX_TOKENS


def _to_tokens(x: np.ndarray, hi: int | None) -> np.ndarray:
    """Round continuous draws to whole tokens in ``[1, hi]``."""
    return np.clip(np.rint(x), 1, _NO_MAX if hi is None else hi).astype(np.int64)


def _quantile_sampler(table: QuantileLength) -> Sampler:
    probs = np.asarray(table.probs)
    log_values = np.log(np.asarray(table.values, dtype=np.float64))
    lo, hi = int(table.values[0]), int(table.values[-1])

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        x = np.exp(np.interp(rng.random(n), probs, log_values))
        return np.clip(np.rint(x), lo, hi).astype(np.int64)

    return sample


def _zipf_sampler(dist: ZipfLength) -> Sampler:
    # Inverse CDF on the finite support: works for any a > 0 (numpy's zipf needs a > 1 and is
    # unbounded, so it would need rejection loops to honour max).
    weights = np.arange(1, dist.max + 1, dtype=np.float64) ** -dist.a
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        idx = np.searchsorted(cdf, rng.random(n), side="right")
        return np.minimum(idx, dist.max - 1).astype(np.int64) + 1

    return sample


def length_sampler(dist: LengthDist) -> Sampler:
    """A function ``(rng, n) -> int64 array`` of ``n`` token counts drawn from ``dist``."""
    if isinstance(dist, FixedLength):
        return lambda rng, n: np.full(n, dist.value, dtype=np.int64)
    if isinstance(dist, UniformLength):
        return lambda rng, n: rng.integers(dist.lo, dist.hi + 1, size=n, dtype=np.int64)
    if isinstance(dist, NormalLength):
        return lambda rng, n: _to_tokens(rng.normal(dist.mean, dist.std, n), dist.max)
    if isinstance(dist, LognormalLength):
        mu = float(np.log(dist.median))
        return lambda rng, n: _to_tokens(rng.lognormal(mu, dist.sigma, n), dist.max)
    if isinstance(dist, ZipfLength):
        return _zipf_sampler(dist)
    if isinstance(dist, EmpiricalLength):
        if dist.values is not None:
            values = np.asarray(dist.values, dtype=np.int64)
        else:
            values = read_lengths_file(dist.path, dist.column)
        return lambda rng, n: values[rng.integers(0, len(values), size=n)]
    if isinstance(dist, QuantileLength):
        return _quantile_sampler(dist)
    if isinstance(dist, PresetLength):
        return _quantile_sampler(preset_table(dist.name, dist.role))
    raise TypeError(f"unknown length distribution {dist!r}")  # unreachable after validation


def duration_sampler(dist: DurationDist) -> Sampler:
    """A function ``(rng, n) -> float64 array`` of ``n`` durations in seconds."""
    if isinstance(dist, FixedDuration):
        return lambda rng, n: np.full(n, dist.value_s, dtype=np.float64)
    if isinstance(dist, ExponentialDuration):
        return lambda rng, n: rng.exponential(dist.mean_s, n)
    if isinstance(dist, UniformDuration):
        return lambda rng, n: rng.uniform(dist.lo_s, dist.hi_s, n)
    if isinstance(dist, LognormalDuration):
        mu = float(np.log(dist.median_s))
        return lambda rng, n: rng.lognormal(mu, dist.sigma, n)
    raise TypeError(f"unknown duration distribution {dist!r}")


def describe_length(dist: LengthDist) -> str:
    """A few words for summary tables, e.g. ``lognormal(median 512, σ 1)``."""
    if isinstance(dist, FixedLength):
        return str(dist.value)
    if isinstance(dist, UniformLength):
        return f"uniform[{dist.lo}, {dist.hi}]"
    if isinstance(dist, NormalLength):
        return f"normal({dist.mean:g} ± {dist.std:g})"
    if isinstance(dist, LognormalLength):
        return f"lognormal(median {dist.median:g}, σ {dist.sigma:g})"
    if isinstance(dist, ZipfLength):
        return f"zipf(a {dist.a:g}, max {dist.max})"
    if isinstance(dist, EmpiricalLength):
        return f"empirical({dist.path.name})" if dist.path else f"empirical({len(dist.values)})"
    if isinstance(dist, QuantileLength):
        return f"quantiles(median {np.interp(0.5, dist.probs, dist.values):g})"
    return f"{dist.name} {dist.role}"


def describe_duration(dist: DurationDist) -> str:
    """A few words, e.g. ``exp(mean 5 s)``."""
    if isinstance(dist, FixedDuration):
        return f"{dist.value_s:g} s"
    if isinstance(dist, ExponentialDuration):
        return f"exp(mean {dist.mean_s:g} s)"
    if isinstance(dist, UniformDuration):
        return f"uniform[{dist.lo_s:g}, {dist.hi_s:g}] s"
    return f"lognormal(median {dist.median_s:g} s, σ {dist.sigma:g})"
