"""Engine throughput: 10,000 requests, lognormal lengths, Poisson at a saturating rate,
Llama-3.1-8B on one H100 (target: < 5 s wall). Prints simulated steps/s, requests/s and the
engine's cost per step record (event loop ÷ records, cost model included).

    python bench/bench_engine.py [--num-requests N] [--rate R] [--no-fast-forward]
                                 [--compiled on|off|auto]

``--rate 5`` is the low-load variant (small batches, about three records per request).
"""

from __future__ import annotations

import argparse
import time

from servesim.run import simulate
from servesim.scenario import build_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-requests", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=40.0, help="req/s (40 saturates 8B on H100)")
    ap.add_argument("--no-fast-forward", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--compiled",
        choices=("auto", "on", "off"),
        default="off",
        help="step pricing: numba-compiled kernels (on) or the reference path (off, default)",
    )
    args = ap.parse_args()
    scenario = build_scenario(
        {
            "workload": {
                "num_requests": args.num_requests,
                "input_len": {"kind": "lognormal", "median": 1000, "sigma": 1.0, "max": 16000},
                "output_len": {"kind": "lognormal", "median": 200, "sigma": 1.0, "max": 4000},
                "arrival": {"kind": "poisson", "rate": args.rate},
            },
            "fast_forward": not args.no_fast_forward,
            "compiled": args.compiled,
        }
    )
    walls, loops = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = simulate(scenario)
        walls.append(time.perf_counter() - t0)
        loops.append(result.summary["sim_wall_s"])
    wall, loop = min(walls), min(loops)
    s = result.summary
    print(f"requests            {s['completed']:,} (skipped {s['num_skipped']})")
    print(
        f"simulated duration  {s['duration']:.1f} s; output {s['output_throughput']:,.0f} tok/s; "
        f"KV cache peak {s['kv_cache_peak_usage']:.0%}; preemptions {s['num_preemptions']}"
    )
    print(
        f"steps               {s['num_steps']:,} in {s['num_step_records']:,} records "
        f"({s['num_events']:,} events)"
    )
    print(f"wall (best of {args.repeats})     {wall:.3f} s  (event loop alone {loop:.3f} s)")
    per_record = 1e6 * loop / s["num_step_records"]
    print(f"per step record     {per_record:.1f} µs (best event loop ÷ records)")
    print(f"simulated steps/s   {s['num_steps'] / wall:,.0f}")
    print(f"requests/s          {s['completed'] / wall:,.0f}")


if __name__ == "__main__":
    main()
