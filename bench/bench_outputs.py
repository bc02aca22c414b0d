"""Writing and reading back a run folder in each table format (``simulate --out DIR --format
csv|parquet``): seconds to write, seconds to read back (what ``servesim report`` and the trace
writer read), and the folder's size, for one simulated run; checks that both formats read back
the same columns and values.

    python bench/bench_outputs.py [--num-requests N] [--rate R] [--repeats K]

Default: 100,000 requests at 5 req/s (lognormal lengths, median 500 in / 100 out; about 2.8 step
records a request), compiled pricing where numba is installed. Best of ``--repeats`` for each
figure; the formats alternate, so a slow spell of the machine falls on both.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from servesim.fleet import compiled_pricing
from servesim.output import TABLE_FORMATS, write_run
from servesim.report.data import read_run
from servesim.run import simulate
from servesim.scenario import build_scenario


def folder_bytes(path: Path) -> int:
    """Bytes of the files in ``path``."""
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def same_tables(a, b) -> bool:
    """Whether two read-back runs hold the same columns, in the same order, bit for bit."""
    for table in ("requests", "steps"):
        x, y = getattr(a, table), getattr(b, table)
        if list(x) != list(y):
            return False
        if not all(np.array_equal(x[k], y[k], equal_nan=True) for k in x):
            return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-requests", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=5.0, help="req/s")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    scenario = build_scenario(
        {
            "workload": {
                "num_requests": args.num_requests,
                "input_len": {"kind": "lognormal", "median": 500, "sigma": 1.0, "max": 8000},
                "output_len": {"kind": "lognormal", "median": 100, "sigma": 1.0, "max": 2000},
                "arrival": {"kind": "poisson", "rate": args.rate},
            }
        }
    )
    started = time.perf_counter()
    result = simulate(scenario)
    simulated = time.perf_counter() - started
    records = result.summary["num_step_records"]
    pricing = "compiled" if compiled_pricing(scenario) else "reference"
    print(f"run          {args.num_requests:,} requests at {args.rate:g} req/s ({pricing})")
    print(f"simulate     {simulated:.2f} s ({records:,} step records)")
    write_s = {fmt: float("inf") for fmt in TABLE_FORMATS}
    read_s = dict(write_s)
    sizes, read_back = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for fmt in TABLE_FORMATS:
                folder = Path(tmp) / fmt
                t0 = time.perf_counter()
                write_run(result, folder, table_format=fmt)
                t1 = time.perf_counter()
                read_back[fmt] = read_run(folder)
                t2 = time.perf_counter()
                write_s[fmt] = min(write_s[fmt], t1 - t0)
                read_s[fmt] = min(read_s[fmt], t2 - t1)
                sizes[fmt] = folder_bytes(folder)
    for fmt in TABLE_FORMATS:
        print(
            f"{fmt:<12} write {write_s[fmt]:.2f} s, read back {read_s[fmt]:.2f} s, "
            f"{sizes[fmt] / 1e6:.1f} MB"
        )
    csv, parquet = (read_back[fmt] for fmt in ("csv", "parquet"))
    print(f"same values  {'yes' if same_tables(csv, parquet) else 'NO'}")
    print(
        f"parquet      {write_s['csv'] / write_s['parquet']:.1f}x faster to write, "
        f"{read_s['csv'] / read_s['parquet']:.1f}x to read, "
        f"{sizes['csv'] / sizes['parquet']:.1f}x smaller"
    )


if __name__ == "__main__":
    main()
