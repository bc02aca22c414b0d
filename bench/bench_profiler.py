"""Cost of the profiler's calls, off and on.

Prints the median (and the minimum) over several repeats of: ns per ``with span(...)`` (and per
``instant`` / ``counter``) with the profiler off, and µs per call with it on, including each
call's share of encoding and writing its batch to the fragment file. "net" subtracts the cost of
an empty loop. On a shared machine the minimum is the steadier figure.

    python bench/bench_profiler.py [--repeats 11]

Targets: < 0.2 µs per span off, < 3 µs per span on.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from servesim import profile


def _empty(n: int) -> None:
    for _ in range(n):
        pass


def _spans(n: int) -> None:
    span = profile.span
    for _ in range(n):
        with span("step"):
            pass


def _spans_args(n: int) -> None:
    span = profile.span
    for i in range(n):
        with span("step", "engine", {"i": i}):
            pass


def _instants(n: int) -> None:
    instant = profile.instant
    for _ in range(n):
        instant("mark")


def _counters(n: int) -> None:
    counter = profile.counter
    for i in range(n):
        counter("kv", used=i)


def _per_call_ns(body: Callable[[int], None], n: int, repeats: int) -> tuple[float, float]:
    """(median, min) ns per call over ``repeats`` runs of ``n`` calls, flush included."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        body(n)
        profile.flush()
        samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(samples), min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--calls-off", type=int, default=200_000)
    parser.add_argument("--calls-on", type=int, default=50_000)
    opts = parser.parse_args()

    bodies = {
        "span": _spans,
        "span+cat+args": _spans_args,
        "instant": _instants,
        "counter": _counters,
    }
    profile.configure(enabled=False)
    base, _ = _per_call_ns(_empty, opts.calls_off, opts.repeats)
    print(
        f"profiler off: ns per call, {opts.calls_off} calls x {opts.repeats} repeats "
        f"(net = minus an empty loop, {base:.1f} ns)"
    )
    for label, body in bodies.items():
        median, best = _per_call_ns(body, opts.calls_off, opts.repeats)
        print(f"  {label:14s} median {median:6.1f} (net {median - base:6.1f})   min {best:6.1f}")

    with tempfile.TemporaryDirectory() as tmp:
        profile.configure(enabled=True, directory=tmp, sample=1.0)
        print(
            f"profiler on: µs per call incl. encoding + writing, {opts.calls_on} calls x "
            f"{opts.repeats} repeats"
        )
        for label, body in bodies.items():
            median, best = _per_call_ns(body, opts.calls_on, opts.repeats)
            print(f"  {label:14s} median {median / 1e3:6.3f}   min {best / 1e3:6.3f}")
        profile.configure(sample=0.1)
        median, best = _per_call_ns(_spans, opts.calls_on, opts.repeats)
        print(
            f"  {'span @ 0.1':14s} median {median / 1e3:6.3f}   min {best / 1e3:6.3f}"
            "   (SERVESIM_PROFILE_SAMPLE=0.1)"
        )
        stats = profile.stats()
        profile.disable()
    print(f"last recorder: {stats}")


if __name__ == "__main__":
    main()
