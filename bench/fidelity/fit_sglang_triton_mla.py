"""Fit SGLang 0.4's Triton MLA prompt kernel on Hopper from the A/B run of sgl-project/sglang#3550.

    python bench/fidelity/fit_sglang_triton_mla.py [--scales 6,7,8,...]

sgl-project/sglang#3550 (Feb 2025, the FlashInfer MLA backend) served DeepSeek-V3 on 8 GPUs
(TP8, ``--disable-radix-cache``; the PR names no GPU: H200 here, as the FP8 weights do not fit
8×H100) twice with the same client: ``sglang.bench_serving --dataset-name
random --random-input 32000 --random-output 100 --request-rate 1 --num-prompt 60`` (range ratio
0: lengths drawn up to those; 936,860 prompt and 2,790 output tokens). With the Triton backend,
the default, the run took 350.7 s (2,679.07 tok/s); with ``--enable-flashinfer-mla`` 89.3 s
(10,526.88 tok/s). Without a radix cache the Triton backend runs a prompt batch on MLA's regular
form unless a row has a prefix — a prompt's later chunks have one (its earlier chunks), so every
chunk after a prompt's first runs absorbed, on the Triton extend kernel; the FlashInfer backend
runs every prompt chunk on the regular form (``DeepseekV2AttentionMLA.forward``, 0.4.3 wheel).

This script replays the client's seed-1 draws (``servesim.calibrate.clients``), simulates the
FlashInfer run (no prompt batch absorbed) and the Triton run with the absorbed prompt rows at
each candidate scale of the kernel tables' attention time
(``servesim.engines.SGLANG04_TRITON_MLA_PROMPT_SCALE``), and prints the simulated Triton /
FlashInfer throughput ratio next to the measured one, then the scale that matches it (bisection:
the ratio falls as the scale grows). Only the ratio is fitted, not the throughputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads  # noqa: E402

from servesim import engines  # noqa: E402
from servesim.calibrate.clients import sglang_random_draws  # noqa: E402
from servesim.run import simulate  # noqa: E402
from servesim.scenario import build_scenario  # noqa: E402

MEASURED = {"triton": 2679.07, "flashinfer": 10526.88}
"""Total token throughput (tok/s) of each backend's run, as sgl-project/sglang#3550 printed it."""
PROFILE = "sglang-0.4"


def scenario(trace: Path) -> dict:
    """The PR's server and client as a servesim scenario (``trace``: the client's requests)."""
    return {
        "model": "deepseek-ai/DeepSeek-V3",
        "hardware": "H200",
        "tp": 8,
        "engine": PROFILE,
        "engine_version": "0.4.3",  # (the first release with --enable-flashinfer-mla)
        "weight_dtype": "fp8",
        "seed": 0,
        "scheduler": {"enable_prefix_caching": False},
        "workload": {"trace": str(trace)},
    }


def throughput(trace: Path, backend: str, scale: float) -> float:
    """Simulated total token throughput (tok/s) of the run on ``backend``."""
    saved = engines.PROFILES[PROFILE], engines.SGLANG04_TRITON_MLA_PROMPT_SCALE
    try:
        if backend == "flashinfer":
            # (Every prompt chunk on the regular form: no absorbed prompt rows at all.)
            engines.PROFILES[PROFILE] = dataclasses.replace(
                saved[0], mla_prompt_absorb=None, mla_prompt_kernel_scale=None
            )
        engines.SGLANG04_TRITON_MLA_PROMPT_SCALE = scale
        summary = simulate(build_scenario(scenario(trace))).summary
    finally:
        engines.PROFILES[PROFILE], engines.SGLANG04_TRITON_MLA_PROMPT_SCALE = saved
    return float(summary["total_token_throughput"])


def client_trace() -> Path:
    """The client's seed-1 requests as a trace; checked against the PR's printed totals."""
    draws = sglang_random_draws(32000, 100, 60, 0.0, 1.0)
    assert int(draws.prompt_tokens.sum()) == 936_860, "not the PR's prompts"
    assert int(draws.answer_tokens.sum()) == 2_790, "not the PR's answers"
    requests = [
        (float(t), int(i), max(int(o), 1))  # (an answer of 0 tokens still makes one)
        for t, i, o in zip(draws.sent_s, draws.prompt_tokens, draws.answer_tokens, strict=True)
    ]
    return workloads.write_trace("sglang_pr3550_dsv3_h200", requests)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="1,4,6,8,10,12")
    args = ap.parse_args()
    trace = client_trace()
    flashinfer = throughput(trace, "flashinfer", 1.0)
    measured = MEASURED["triton"] / MEASURED["flashinfer"]
    print(f"FlashInfer run: {flashinfer:,.0f} tok/s simulated, {MEASURED['flashinfer']:,} measured")
    print(f"Triton / FlashInfer throughput, measured: {measured:.4f}")
    print("scale   Triton tok/s   ratio")
    for scale in (float(s) for s in args.scales.split(",")):
        triton = throughput(trace, "triton", scale)
        print(f"{scale:5.2f}   {triton:12,.0f}   {triton / flashinfer:.4f}")
    lo, hi = 1.0, 32.0
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        if throughput(trace, "triton", mid) / flashinfer > measured:
            lo = mid
        else:
            hi = mid
    best, now = 0.5 * (lo + hi), engines.SGLANG04_TRITON_MLA_PROMPT_SCALE
    print(f"scale matching the measured ratio: {best:.2f} (servesim uses {now})")


if __name__ == "__main__":
    main()
