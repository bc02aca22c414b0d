"""Whole-process wall time of the workloads LLMServingSim published timings for
(Llama-3.1-8B; 2 requests of 64 in / 32 out: 0.58 s there; 4 requests of 128 / 128: 1.36 s).
Target: < 0.3 s each, Python start-up included. Runs the real `servesim` command.

Also prints the floor under it: a bare interpreter, and one that only loads the third-party
libraries `servesim simulate --json` is built on (numpy, PyYAML, typer, msgspec with one spec
class), with the same environment the servesim CLI sets for itself (one OpenBLAS thread).

    python bench/bench_llmservingsim.py [--repeats 15]
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
    "numpy + yaml + typer + msgspec": (
        "import numpy, yaml, typer, typer.main, msgspec\n"
        "from typing import Annotated\n"
        "class Spec(msgspec.Struct, frozen=True):\n    rate: Annotated[float, msgspec.Meta(gt=0)]\n"
        "msgspec.convert({'rate': 1.0}, Spec)"
    ),
}
FLOOR_ENV = {"OPENBLAS_NUM_THREADS": "1"}


def wall_times(commands: dict[str, tuple[list[str], dict[str, str]]], repeats: int) -> dict:
    """Wall seconds of each command, ``repeats`` rounds run round-robin.

    Round-robin, so that a slow spell of a shared machine (this VM drifts by ±30% within
    minutes) hits every command alike and the comparison with the floor stays fair.
    """
    envs = {name: {**os.environ, **extra} for name, (_, extra) in commands.items()}
    for name, (argv, _) in commands.items():  # warm the file cache
        subprocess.run(argv, check=True, capture_output=True, env=envs[name])
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (argv, _) in commands.items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, env=envs[name])
            times[name].append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    cmd = servesim_command()
    commands: dict[str, tuple[list[str], dict[str, str]]] = {}
    for name, (n, lin, lout, _) in WORKLOADS.items():
        argv = [*cmd, "simulate", "--model", "llama-3.1-8b", "--hardware", "H100"]
        argv += ["--num-requests", str(n), "--input-len", str(lin), "--output-len", str(lout)]
        commands[name] = ([*argv, "--rate", "inf", "--json"], {})
    for name, code in FLOOR.items():
        commands[name] = ([sys.executable, "-c", code], FLOOR_ENV)
    times = wall_times(commands, args.repeats)

    def stats(name: str) -> tuple[float, float, float]:
        ts = sorted(times[name])
        return statistics.median(ts), ts[len(ts) // 4], ts[0]

    print(f"{args.repeats} rounds, round-robin; wall seconds of the whole process")
    header = ("workload", "median", "p25", "min", "LLMServingSim", "speed-up")
    print("{:<14} {:>8} {:>7} {:>7} {:>14} {:>9}".format(*header))
    for name, (*_, theirs) in WORKLOADS.items():
        med, p25, low = stats(name)
        speed_up = f"{theirs / med:.1f}x"
        print(f"{name:<14} {med:>8.3f} {p25:>7.3f} {low:>7.3f} {theirs:>14.2f} {speed_up:>9}")
    print("\nthe floor (same interpreter and rounds, no servesim code):")
    for name in FLOOR:
        med, p25, low = stats(name)
        print(f"{name:<32} median {med:.3f}  p25 {p25:.3f}  min {low:.3f}")


if __name__ == "__main__":
    main()
