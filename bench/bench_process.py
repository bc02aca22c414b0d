"""Whole `servesim simulate` processes at a few sizes and loads, with the compiled kernels off,
on and as ``compiled: auto`` picks them: wall seconds, the minimum of ``--runs`` fresh
processes each (the configurations alternated in rounds), and which path ``auto`` took.

The first process runs ``--compiled on`` once so that numba's cache holds the kernels (and
servesim's marker says so, :mod:`servesim.kernel_cache`): the figures are those of a machine
after its first compiled run. Issue 19's target: 10,000 requests at 5 req/s <= 0.7 s.

It also prints each path's floor: the whole process of a 10-request run, which pays what any
run of that path pays (interpreter, imports, the scenario, the cost model and, compiled,
numba's import and the cached kernels' load) and almost nothing else. A run of N requests
costs its path's floor plus its event loop and the summary's share that grows with N.

    python bench/bench_process.py [--runs 3] [--sizes 2000,5000,10000] [--rates 5,20,100]
                                  [--floor-runs 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time

MODES = ("off", "on", "auto")
FLOOR_REQUESTS = 10


def _run(num_requests: int, rate: float, mode: str) -> tuple[float, bool]:
    """(wall seconds, whether the run used the compiled kernels) of one fresh process."""
    command = [sys.executable, "-m", "servesim", "simulate", "-n", str(num_requests),
               "-r", str(rate), "--compiled", mode, "--json"]  # fmt: skip
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    return wall, bool(json.loads(out.stdout)["compiled_kernels"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="2000,5000,10000,20000")
    ap.add_argument("--rates", default="5,20,100")
    ap.add_argument("--floor-runs", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rates = [float(r) for r in args.rates.split(",")]
    _run(50, 5.0, "on")  # (numba's cache filled, the marker left)
    configs = list(itertools.product(sizes, rates, MODES))
    walls: dict[tuple[int, float, str], list[float]] = {c: [] for c in configs}
    auto_compiled: dict[tuple[int, float], bool] = {}
    for _ in range(args.runs):
        for n, rate, mode in configs:
            wall, compiled = _run(n, rate, mode)
            walls[n, rate, mode].append(wall)
            if mode == "auto":
                auto_compiled[n, rate] = compiled
    floors = {mode: [] for mode in ("off", "on")}
    for _ in range(args.floor_runs):
        for mode, times in floors.items():
            times.append(_run(FLOOR_REQUESTS, 5.0, mode)[0])
    print(
        f"floor (a {FLOOR_REQUESTS}-request process, min of {args.floor_runs}): reference "
        f"{min(floors['off']):.3f} s, compiled {min(floors['on']):.3f} s"
    )
    print(f"whole `servesim simulate` processes, min of {args.runs}; seconds")
    print(f"{'requests':>9} {'req/s':>6} {'off':>6} {'on':>6} {'auto':>6}  auto ran")
    for n, rate in itertools.product(sizes, rates):
        best = [min(walls[n, rate, mode]) for mode in MODES]
        path = "compiled" if auto_compiled[n, rate] else "reference"
        print(f"{n:>9,} {rate:>6g} {best[0]:>6.2f} {best[1]:>6.2f} {best[2]:>6.2f}  {path}")


if __name__ == "__main__":
    main()
