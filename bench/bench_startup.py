"""Where a small `servesim simulate` spends its start-up: one fresh process per run, timers
around each phase, the minimum and median over the runs printed in milliseconds.

Phases: the third-party libraries the command is built on (numpy, PyYAML, typer, pydantic with
its first model class); servesim's own modules; building the scenario (validation); simulating
2 requests of 64/32 tokens; the summary document. A last column counts the dataclasses and
pydantic model classes servesim's modules create, and the time that took (CPython compiles the
generated methods of every dataclass at import).

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
os.environ["OPENBLAS_NUM_THREADS"] = "1"; os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
import numpy, yaml, typer, typer.main
from pydantic import BaseModel, Field
class _First(BaseModel):
    x: float = Field(gt=0)
T1 = time.perf_counter()
import dataclasses
import pydantic._internal._model_construction as construction
made = {"dataclasses": [0, 0.0], "pydantic models": [0, 0.0]}
process_class, model_new = dataclasses._process_class, construction.ModelMetaclass.__new__
def timed_process_class(cls, *args, **kwargs):
    t = time.perf_counter(); out = process_class(cls, *args, **kwargs)
    if cls.__module__.startswith("servesim"):
        made["dataclasses"][0] += 1; made["dataclasses"][1] += time.perf_counter() - t
    return out
def timed_model_new(mcs, name, bases, namespace, *args, **kwargs):
    t = time.perf_counter(); out = model_new(mcs, name, bases, namespace, *args, **kwargs)
    if namespace.get("__module__", "").startswith("servesim"):
        made["pydantic models"][0] += 1; made["pydantic models"][1] += time.perf_counter() - t
    return out
dataclasses._process_class = timed_process_class
construction.ModelMetaclass.__new__ = timed_model_new
import servesim.cli.simulate_cmd
from servesim.output import summary_document
from servesim.run import simulate
from servesim.scenario import build_scenario
T2 = time.perf_counter()
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
    for kind in ("dataclasses", "pydantic models"):
        counts = {run["made"][kind][0] for run in runs}
        values = sorted(1e3 * run["made"][kind][1] for run in runs)
        print(
            f"servesim {kind} created at import: {max(counts)}, "
            f"{values[0]:.1f} ms min, {statistics.median(values):.1f} ms median"
        )


if __name__ == "__main__":
    main()
