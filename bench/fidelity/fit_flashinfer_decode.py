"""Fit FlashInfer's decode-attention share on Hopper from SGLang's A/B benchmark of its backends.

    python bench/fidelity/fit_flashinfer_decode.py [--shares 0.3,0.35,...]

SGLang's ``benchmark/attention_backend/NVIDIA_H200.md`` ran Llama-3.1-8B on one H200 three times
under ``--attention-backend fa3`` and three times under ``flashinfer`` (the same workloads, the
same harness). The ratio of the two output throughputs of a pair isolates the backends: this
script simulates each pair with FlashInfer's decode attention at each candidate share of the
measured tables' KV-read rate (``servesim.cost.attention_fit.FLASHINFER_DECODE_SHARE``) and prints
the simulated FlashInfer/FA3 ratios next to the measured ones, and the share whose ratios come
closest (least squares on their logarithms). Only the ratios are fitted, not the throughputs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as suite  # noqa: E402

from servesim.cost import attention_fit  # noqa: E402
from servesim.run import simulate  # noqa: E402
from servesim.scenario import build_scenario  # noqa: E402

PAIRS = ("random1024_1024", "random8192_1024", "random8192_8192")
PREFIX = "sglang_attnbench_h200_llama31_8b_tp1_"
SUFFIX = "_n200_rps16"


def output_throughput(case: dict) -> float:
    """Simulated output throughput of ``case`` (tok/s)."""
    return float(simulate(build_scenario(suite.scenario_of(case))).summary["output_throughput"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shares", default="0.35,0.4,0.45,0.5,0.55,0.6,0.7")
    args = ap.parse_args()
    cases = {c["id"]: c for c in suite.load_cases()}
    pairs = [
        (cases[f"{PREFIX}fa3_{w}{SUFFIX}"], cases[f"{PREFIX}flashinfer_{w}{SUFFIX}"]) for w in PAIRS
    ]
    measured = [
        fi["metrics"]["output_throughput"] / fa3["metrics"]["output_throughput"]
        for fa3, fi in pairs
    ]
    fa3_sim = [output_throughput(fa3) for fa3, _ in pairs]
    print(
        "workload          measured FI/FA3  " + "  ".join(f"{s:>6}" for s in args.shares.split(","))
    )
    table, losses = [], {}
    for share in (float(s) for s in args.shares.split(",")):
        attention_fit.FLASHINFER_DECODE_SHARE["hopper"] = share
        ratios = [
            output_throughput(fi) / base for (_, fi), base in zip(pairs, fa3_sim, strict=True)
        ]
        losses[share] = sum(math.log(r / m) ** 2 for r, m in zip(ratios, measured, strict=True))
        table.append(ratios)
    for i, w in enumerate(PAIRS):
        print(f"{w:17s} {measured[i]:15.3f}  " + "  ".join(f"{col[i]:6.3f}" for col in table))
    best = min(losses, key=losses.get)
    print("sum of squared log errors  " + "  ".join(f"{v:6.4f}" for v in losses.values()))
    print(f"best share: {best}")


if __name__ == "__main__":
    main()
