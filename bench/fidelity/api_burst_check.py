"""How long a burst's first request waits for the API server: two public runs outside the suite.

Lambda Labs ran vLLM 0.5.4 on 320 ShareGPT prompts sent at once (``benchmark_serving.py
--request-rate inf``) on one and on two H100s (LambdaLabsML/vllm-benchmark, commit de55d46,
2024-08-19: ``results/prompt_320/1xH100-80GB-SXM/Mistral-7B-Instruct-v0.3_tp1_len2000.json``
and ``results/prompt_320/2xH100-80GB-SXM/Mistral-7B-Instruct-v0.3_tp2_len8000.json``). Their
per-request ``ttfts`` show no first token before 0.564 and 0.565 s, on one GPU or two: the
wait is the API server's, not the GPU's. Taking the requests one at a time in one piece, as
servesim did, the first request's first token comes within a step (~0.02 s).

An asyncio server runs each request's handler up to its first ``await`` before it resumes any
(``servesim.engine.loop.ApiLatency.before_await_share``); the share
(``servesim.engines.ASYNCIO_BEFORE_AWAIT_SHARE``) is set from these two runs. Neither is in the
accuracy suite (the suite holds the same prompts served by vLLM 0.6.0, a later series of the
same repository); the prompts are those of the suite's case, and so are the answers' lengths
(the 0.6.0 run's; 0.4-1.1% more output tokens than these runs').

    python bench/fidelity/api_burst_check.py
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as suite  # noqa: E402

from servesim import fleet  # noqa: E402
from servesim.run import simulate  # noqa: E402
from servesim.scenario import build_scenario  # noqa: E402

CASE = "vllmv054_lambda_mistral7b_h100_tp1_sharegpt320_inf"
"""The suite's case of the same 320 prompts (vLLM 0.6.0): its trace gives the lengths."""

RUNS = (
    # (label, tp, max_model_len, measured: min TTFT s, median / mean / p99 TTFT ms, output tok/s)
    ("1xH100 TP1 len2000", 1, 2000, (0.5644, 1290.30, 1289.88, 3018.39, 3281.19)),
    ("2xH100 TP2 len8000", 2, 8000, (0.5649, 1044.37, 1075.30, 2517.66, 3793.03)),
)


def _predict(tp: int, max_model_len: int) -> tuple[float, float, float, float, float]:
    case = {c["id"]: c for c in suite.load_cases()}[CASE]
    scenario = suite.scenario_of(case)
    scenario.update(engine_version="0.5.4", num_scheduler_steps=1, tp=tp)
    scenario["max_model_len"] = max_model_len
    scenario["scheduler"]["gpu_memory_utilization"] = 0.9
    result = simulate(build_scenario(scenario))
    columns = result.records.request_columns()
    ttft = np.asarray(columns["first_token_s"]) - np.asarray(columns["arrival_s"])
    s = result.summary
    return (
        float(ttft.min()),
        s["median_ttft_ms"],
        s["mean_ttft_ms"],
        s["p99_ttft_ms"],
        s["output_throughput"],
    )


def main() -> None:
    staged = fleet.api_latency
    one_piece = lambda profile: replace(staged(profile), before_await_share=0.0)  # noqa: E731
    header = "min TTFT s · median / mean / p99 TTFT ms · output tok/s"
    print(f"{'run':20s} {'':14s} {header}")
    for label, tp, max_len, measured in RUNS:
        fleet.api_latency = one_piece
        before = _predict(tp, max_len)
        fleet.api_latency = staged
        now = _predict(tp, max_len)
        for name, row in (("measured", measured), ("one piece", before), ("staged", now)):
            print(
                f"{label:20s} {name:14s} {row[0]:.3f} · {row[1]:,.0f} / {row[2]:,.0f} / "
                f"{row[3]:,.0f} · {row[4]:,.0f}"
            )


if __name__ == "__main__":
    main()
