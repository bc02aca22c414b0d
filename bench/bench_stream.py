"""Streaming scale: 1,000,000 requests from a generator; reports peak RSS (target < 2 GB),
wall time, steps/s and requests/s. Records are kept as compact columns (8 bytes a value);
the workload is generated lazily in chunks.

    python bench/bench_stream.py [--num-requests N]
"""

from __future__ import annotations

import argparse
import resource
import time

from servesim.run import simulate
from servesim.scenario import build_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-requests", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=30.0)
    args = ap.parse_args()
    scenario = build_scenario(
        {
            "workload": {
                "num_requests": args.num_requests,
                "input_len": {"kind": "lognormal", "median": 500, "sigma": 1.0, "max": 8000},
                "output_len": {"kind": "lognormal", "median": 100, "sigma": 1.0, "max": 2000},
                "arrival": {"kind": "poisson", "rate": args.rate},
            },
        }
    )
    t0 = time.perf_counter()
    result = simulate(scenario)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = result.summary
    print(f"requests     {s['completed']:,}")
    print(f"steps        {s['num_steps']:,} ({s['num_step_records']:,} records)")
    print(f"wall         {wall:.1f} s")
    print(f"steps/s      {s['num_steps'] / wall:,.0f}")
    print(f"requests/s   {s['completed'] / wall:,.0f}")
    print(f"peak RSS     {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
