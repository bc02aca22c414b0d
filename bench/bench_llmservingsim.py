"""Whole-process wall time of the workloads LLMServingSim published timings for
(Llama-3.1-8B; 2 requests of 64 in / 32 out: 0.58 s there; 4 requests of 128 / 128: 1.36 s).
Target: < 0.3 s each, Python start-up included. Runs the real `servesim` command.

    python bench/bench_llmservingsim.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKLOADS = {
    "2 x 64/32": (2, 64, 32, 0.58),
    "4 x 128/128": (4, 128, 128, 1.36),
}


def servesim_command() -> list[str]:
    script = Path(sys.executable).parent / "servesim"
    return [str(script)] if script.exists() else [shutil.which("servesim") or "servesim"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cmd = servesim_command()
    print(
        f"{'workload':<14} {'servesim median s':>18} {'min s':>8} "
        f"{'LLMServingSim s':>16} {'speed-up':>9}"
    )
    for name, (n, lin, lout, theirs) in WORKLOADS.items():
        argv = cmd + [
            "simulate",
            "--model",
            "llama-3.1-8b",
            "--hardware",
            "H100",
            "--num-requests",
            str(n),
            "--input-len",
            str(lin),
            "--output-len",
            str(lout),
            "--rate",
            "inf",
            "--json",
        ]
        subprocess.run(argv, check=True, capture_output=True)  # warm the file cache
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"{name:<14} {med:>18.3f} {min(times):>8.3f} {theirs:>16.2f} {theirs / med:>8.1f}x")


if __name__ == "__main__":
    main()
