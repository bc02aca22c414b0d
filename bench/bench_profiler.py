"""Cost of the profiler's calls, off and on.

Prints the median over several repeats of: ns per ``with span(...)`` (and per ``instant`` /
``counter``) with the profiler off, and µs per call with it on, including each call's share of
encoding and writing its batch to the fragment file. "net" subtracts the cost of an empty loop.

    python bench/bench_profiler.py [--repeats 7]

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


def _per_call_ns(body: Callable[[int], None], n: int, repeats: int) -> float:
    """Median ns per call over ``repeats`` runs of ``n`` calls, flushing inside the timing."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        body(n)
        profile.flush()
        samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls-off", type=int, default=1_000_000)
    parser.add_argument("--calls-on", type=int, default=100_000)
    opts = parser.parse_args()

    bodies = {"span": _spans, "span+cat+args": _spans_args, "instant": _instants,
              "counter": _counters}
    profile.configure(enabled=False)
    base_off = _per_call_ns(_empty, opts.calls_off, opts.repeats)
    print(f"profiler off ({opts.calls_off} calls, median of {opts.repeats}):")
    for label, body in bodies.items():
        ns = _per_call_ns(body, opts.calls_off, opts.repeats)
        print(f"  {label:14s} {ns:7.1f} ns/call   (net of loop {ns - base_off:6.1f} ns)")

    with tempfile.TemporaryDirectory() as tmp:
        profile.configure(enabled=True, directory=tmp, sample=1.0)
        base_on = _per_call_ns(_empty, opts.calls_on, opts.repeats)
        print(f"profiler on ({opts.calls_on} calls incl. encode + write, median of "
              f"{opts.repeats}):")
        for label, body in bodies.items():
            ns = _per_call_ns(body, opts.calls_on, opts.repeats)
            print(f"  {label:14s} {ns / 1000:7.3f} µs/call   "
                  f"(net of loop {(ns - base_on) / 1000:6.3f} µs)")
        profile.configure(sample=0.1)
        ns = _per_call_ns(_spans, opts.calls_on, opts.repeats)
        print(f"  span, SAMPLE=0.1 {ns / 1000:5.3f} µs/call")
        stats = profile.stats()
        profile.disable()
    print(f"stats of the last run: {stats}")


if __name__ == "__main__":
    main()
