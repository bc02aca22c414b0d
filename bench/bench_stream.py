"""Streaming scale: 1,000,000 requests from a generator; reports wall time, peak RSS (target
< 1.5 GB at any load), steps/s, requests/s and the engine's cost per step record. Records are
kept as compact columns (8 bytes a value); the workload is generated lazily in chunks.

    python bench/bench_stream.py [--num-requests N] [--load high|low] [--rate R]
                                 [--compiled auto|on|off]

``--load high`` (default) sends 30 req/s (a busy instance: large batches, few records per
request); ``--load low`` sends 5 req/s (small batches: most records are decode spans cut by an
arrival or a finish, about three per request).
"""

from __future__ import annotations

import argparse
import resource
import time

from servesim.fleet import compiled_pricing
from servesim.run import simulate
from servesim.scenario import build_scenario

RATES = {"high": 30.0, "low": 5.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-requests", type=int, default=1_000_000)
    ap.add_argument("--load", choices=sorted(RATES), default="high")
    ap.add_argument("--rate", type=float, default=None, help="req/s (overrides --load)")
    ap.add_argument(
        "--compiled",
        choices=("auto", "on", "off"),
        default="auto",
        help="step pricing: auto (compiled from 50,000 requests when numba is installed), on, off",
    )
    args = ap.parse_args()
    rate = args.rate if args.rate is not None else RATES[args.load]
    scenario = build_scenario(
        {
            "workload": {
                "num_requests": args.num_requests,
                "input_len": {"kind": "lognormal", "median": 500, "sigma": 1.0, "max": 8000},
                "output_len": {"kind": "lognormal", "median": 100, "sigma": 1.0, "max": 2000},
                "arrival": {"kind": "poisson", "rate": rate},
            },
            "compiled": args.compiled,
        }
    )
    t0 = time.perf_counter()
    result = simulate(scenario)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = result.summary
    records = s["num_step_records"]
    print(f"rate         {rate:g} req/s")
    print(f"pricing      {'compiled' if compiled_pricing(scenario) else 'reference'}")
    print(f"requests     {s['completed']:,}")
    print(f"steps        {s['num_steps']:,} ({records:,} records)")
    loop_s = s["sim_wall_s"]
    print(f"wall         {wall:.1f} s (event loop {loop_s:.1f} s; the rest: build, summary)")
    print(f"per record   {1e6 * s['sim_wall_s'] / records:.1f} µs (event loop ÷ step records)")
    print(f"steps/s      {s['num_steps'] / wall:,.0f}")
    print(f"requests/s   {s['completed'] / wall:,.0f}")
    print(f"peak RSS     {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
