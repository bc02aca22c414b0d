"""Sweep throughput: a 200-scenario sweep (200 requests each) back to back in one process, then
through ``run_sweep`` serially, on a local process pool and on a local Ray. Prints scenarios/s
and the sweep's overhead over running the same scenarios back to back.

    python bench/bench_sweep.py [--scenarios 200] [--requests 200] [--workers 2] [--no-ray]

Two overhead figures per mode:
- **CPU overhead**: CPU seconds of this process and every process it started (pool workers,
  Ray's raylet, GCS and workers; read from /proc) over the back-to-back CPU seconds, minus 1.
  The work a sweep adds (process start-up, pickling, journal, tables, Ray's bookkeeping),
  whatever else the machine is running.
- **wall overhead**: ``workers × wall / back-to-back wall − 1``: core time beyond perfect
  scaling. Only meaningful on an otherwise idle machine (the load average is printed).

A pool of one worker isolates the machinery (processes, pickling, IPC) from the slow-down two
simulations running at once inflict on each other (shared caches and memory bandwidth), which
shows as CPU overhead of the two-worker pool and Ray alike.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from servesim.sweep.executors import LocalExecutor, RayExecutor, SerialExecutor
from servesim.sweep.measure import run_point
from servesim.sweep.results import same_rows
from servesim.sweep.runner import run_sweep
from servesim.sweep.spec import expand, parse_sweep


def make_points(n_scenarios: int, n_requests: int):
    """``n_scenarios`` small scenarios: rates × batch budgets × seeds (Llama-3.1-8B, one H100)."""
    rates = [2.0 * (i + 1) for i in range(10)]  # 2..20 req/s
    budgets = [2048, 4096, 8192, 16384]
    seeds = list(range(max(1, -(-n_scenarios // (len(rates) * len(budgets))))))
    spec = parse_sweep(
        {
            "base": {"workload": {"preset": "conversation", "num_requests": n_requests}},
            "grid": {
                "seed": seeds,
                "scheduler.max_num_batched_tokens": budgets,
                "workload.arrival.rate": rates,
            },
        }
    )
    return expand(spec, spec.base)[:n_scenarios]


def descendants_cpu_s(root: int) -> float:
    """User + system CPU seconds of the live descendants of process ``root`` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    children = defaultdict(list)
    for pid, ppid in parent.items():
        children[ppid].append(pid)
    total, todo = 0.0, list(children[root])
    while todo:
        pid = todo.pop()
        total += cpu[pid]
        todo.extend(children[pid])
    return total


class Clock:
    """Wall and CPU seconds (this process + its descendants) between start and stop."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), self._cpu()
        return self

    def stop(self) -> None:
        """Read the clocks now (before an executor's processes exit)."""
        self.wall = time.perf_counter() - self.wall0
        self.cpu = self._cpu() - self.cpu0

    def __exit__(self, *exc) -> None:
        if not hasattr(self, "wall"):
            self.stop()

    @staticmethod
    def _cpu() -> float:
        return time.process_time() + descendants_cpu_s(os.getpid())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=200)
    ap.add_argument("--requests", type=int, default=200, help="requests per scenario")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    points = make_points(args.scenarios, args.requests)
    n = len(points)
    run_point(points[0].scenario)  # warm caches (model and hardware catalogs) like a sweep's
    with Clock() as b2b:
        for p in points:
            run_point(p.scenario)
    print(f"{n} scenarios of {args.requests} requests, {os.cpu_count()} cores")
    header = ("wall s", 8), ("scen/s", 8), ("CPU s", 8), ("CPU ovh", 9), ("wall ovh", 10)
    print(f"{'mode':<26}" + "".join(f"{h:>{w}}" for h, w in header) + f"{'load':>6}")

    def report(label: str, clock: Clock, workers: int) -> None:
        cpu_ovh = clock.cpu / b2b.cpu - 1
        wall_ovh = workers * clock.wall / b2b.wall - 1
        print(
            f"{label:<26}{clock.wall:8.2f}{n / clock.wall:8.1f}{clock.cpu:8.2f}"
            f"{cpu_ovh:9.1%}{wall_ovh:10.1%}{os.getloadavg()[0]:6.1f}"
        )

    print(
        f"{'back to back, 1 process':<26}{b2b.wall:8.2f}{n / b2b.wall:8.1f}{b2b.cpu:8.2f}"
        f"{'–':>9}{'–':>10}{os.getloadavg()[0]:6.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        with Clock() as clock:
            reference = run_sweep(points, Path(tmp) / "serial", SerialExecutor()).rows
        report("sweep, serial", clock, 1)

        # One worker: the pool's machinery (processes, pickling, IPC) without parallel runs
        # competing for caches and memory bandwidth; then the real pool.
        for workers in dict.fromkeys((1, args.workers)):
            with Clock() as clock, LocalExecutor(workers) as ex:
                rows = run_sweep(points, Path(tmp) / f"local{workers}", ex).rows
                clock.stop()
            assert same_rows(rows, reference), "process pool rows differ from serial"
            report(f"sweep, process pool ×{workers}", clock, workers)

        if not args.no_ray:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=args.workers, include_dashboard=False,
                     logging_level=logging.ERROR, log_to_driver=False)  # fmt: skip
            t_init = time.perf_counter() - t0
            with Clock() as clock, RayExecutor() as ex:
                rows = run_sweep(points, Path(tmp) / "ray", ex).rows
                clock.stop()
            ray.shutdown()
            assert same_rows(rows, reference), "Ray rows differ from serial"
            report(f"sweep, local Ray ×{args.workers}", clock, args.workers)
            print(f"(Ray start-up, not counted above: {t_init:.1f} s wall)")
    crashes = sum(r["status"] == "crash" for r in reference)
    if crashes:
        print(f"note: {crashes} scenarios hit a servesim bug (status crash), timed all the same")
    print("rows identical across executors (sim_wall_s aside)")


if __name__ == "__main__":
    main()
