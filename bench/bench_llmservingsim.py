"""Whole-process wall time of the workloads LLMServingSim published timings for
(Llama-3.1-8B; 2 requests of 64 in / 32 out: 0.58 s there; 4 requests of 128 / 128: 1.36 s).
Target: < 0.3 s each, Python start-up included. Runs the real `servesim` command.

Also prints the floor under it: a bare interpreter, and one that only loads the third-party
libraries `servesim simulate --json` is built on (numpy, PyYAML, typer, and pydantic up to its
first model class, whose construction imports the rest of pydantic), with the same environment
the servesim CLI sets for itself (one OpenBLAS thread, no pydantic plugin discovery).

    python bench/bench_llmservingsim.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
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


FLOOR = {
    "python -c pass": "pass",
    "numpy": "import numpy",
    "numpy + yaml + typer + pydantic": (
        "import numpy, yaml, typer, typer.main\n"
        "from pydantic import BaseModel, Field\n"
        "class Spec(BaseModel):\n    rate: float = Field(gt=0)"
    ),
}
FLOOR_ENV = {"OPENBLAS_NUM_THREADS": "1", "PYDANTIC_DISABLE_PLUGINS": "__all__"}


def median_wall(
    argv: list[str], repeats: int, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """(median, min) wall seconds of running ``argv`` to completion."""
    env = {**os.environ, **(env or {})}
    subprocess.run(argv, check=True, capture_output=True, env=env)  # warm the file cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


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
        med, low = median_wall(argv, args.repeats)
        print(f"{name:<14} {med:>18.3f} {low:>8.3f} {theirs:>16.2f} {theirs / med:>8.1f}x")
    print("\nthe floor (same interpreter, no servesim code):")
    for name, code in FLOOR.items():
        med, low = median_wall([sys.executable, "-c", code], args.repeats, FLOOR_ENV)
        print(f"{name:<40} median {med:.3f} s, min {low:.3f} s")


if __name__ == "__main__":
    main()
