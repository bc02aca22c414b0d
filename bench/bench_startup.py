"""Where a small `servesim simulate` spends its start-up: one fresh process per run, timers
around each phase, the minimum and median over the runs printed in milliseconds.

Phases: the third-party libraries the command is built on (numpy, PyYAML, typer, msgspec);
servesim's own modules; building the scenario (validation); simulating 2 requests of 64/32
tokens; the summary document. The last lines count the dataclasses servesim's modules create
and the time that took (CPython compiles the generated methods of every dataclass at import),
and the msgspec spec classes (made in C; their time is inside "servesim imports").

    python bench/bench_startup.py [--runs 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PHASES = ("libraries", "servesim imports", "build scenario", "simulate", "summary")

CHILD = r"""
import time; T0 = time.perf_counter()
import gc, os, json
gc.disable()  # as the CLI does while importing (servesim.cli.importing)
os.environ["OPENBLAS_NUM_THREADS"] = "1"
import numpy, yaml, typer, typer.main, msgspec
T1 = time.perf_counter()
import dataclasses
made = {"dataclasses": [0, 0.0]}
process_class = dataclasses._process_class
def timed_process_class(cls, *args, **kwargs):
    t = time.perf_counter(); out = process_class(cls, *args, **kwargs)
    if cls.__module__.startswith("servesim"):
        made["dataclasses"][0] += 1; made["dataclasses"][1] += time.perf_counter() - t
    return out
dataclasses._process_class = timed_process_class
import servesim.cli.simulate_cmd
from servesim.output import summary_document
from servesim.run import simulate
from servesim.scenario import build_scenario
T2 = time.perf_counter()
def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub; yield from subclasses(sub)
specs = [c for c in subclasses(msgspec.Struct) if c.__module__.startswith("servesim")]
made["msgspec specs"] = [len(specs), 0.0]
scenario = build_scenario({"workload": {"num_requests": 2, "input_len": 64, "output_len": 32,
                                        "arrival": {"kind": "burst"}}})
T3 = time.perf_counter()
result = simulate(scenario)
T4 = time.perf_counter()
json.dumps(summary_document(result))
T5 = time.perf_counter()
print(json.dumps({"phases": [T1 - T0, T2 - T1, T3 - T2, T4 - T3, T5 - T4], "made": made}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=12)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    runs = []
    for i in range(args.runs + 1):
        out = subprocess.run(
            [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True
        )
        if i:  # the first run warms the file cache and writes bytecode
            runs.append(json.loads(out.stdout))
    print(f"{args.runs} fresh processes; milliseconds")
    print(f"{'phase':<18} {'min':>7} {'median':>7}")
    for k, name in enumerate(PHASES):
        values = sorted(1e3 * run["phases"][k] for run in runs)
        print(f"{name:<18} {values[0]:>7.1f} {statistics.median(values):>7.1f}")
    counts = {run["made"]["dataclasses"][0] for run in runs}
    values = sorted(1e3 * run["made"]["dataclasses"][1] for run in runs)
    print(
        f"servesim dataclasses created at import: {max(counts)}, "
        f"{values[0]:.1f} ms min, {statistics.median(values):.1f} ms median"
    )
    print(f"servesim msgspec spec classes created at import: {runs[0]['made']['msgspec specs'][0]}")


if __name__ == "__main__":
    main()
