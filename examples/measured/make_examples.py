"""Regenerate the SYNTHETIC example files of this folder (no GPU measured them).

    python examples/measured/make_examples.py

Every file is produced by servesim's own cost model with a known "true" parameter set
(:data:`TRUE`) standing in for a real GPU, so ``servesim calibrate`` on them must recover
it. Real measurements come from ``bench/gpu/measure_steps.py`` (pending: no GPU yet).

- ``steps.jsonl``: a step log (128 steps over a prefill/decode/mixed grid, 2% noise, a few
  slow outliers, ``phases``), aggregates only;
- ``steps_rows.jsonl``: 12 steps of the same kind with the per-row arrays;
- ``ops.csv``: ``op,tokens,context,batch,seconds`` rows (whole steps and operators);
- ``vllm_bench_serve.json``: a ``vllm bench serve --save-result --save-detailed`` document
  of 48 requests at 4 req/s (Poisson), simulated with the true parameters (on the roofline
  rung, ``kernel_tables: false``, so that they time every operator, as a calibration does);
- ``sglang_bench_serving.jsonl``: an SGLang ``bench_serving --output-details`` line of 64
  requests at 6 req/s (Poisson).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np

from servesim.calibrate.synthetic import synthetic_records, vllm_result_from_run, write_step_log
from servesim.cost import CostParams, build_step_cost
from servesim.hardware import load_hardware
from servesim.model import load_model
from servesim.run import simulate
from servesim.scenario import build_scenario

HERE = Path(__file__).parent
MODEL, HARDWARE = "llama-3.1-8b", "h100"
TRUE = CostParams(
    compute_efficiency=0.62,
    attention_efficiency=0.45,
    memory_efficiency=0.71,
    attention_memory_efficiency=0.55,
    step_overhead_s=3e-4,
    overhead_per_token_s=3e-6,
)
NOTE = {"type": "note", "text": "SYNTHETIC: timed by servesim's cost model, see make_examples.py"}


def _simulate_true(data: dict) -> object:
    # NOTE: simulate() builds CostParams() itself (servesim.fleet); until a scenario can carry a
    # calibration, the generator swaps in the true parameters for this call only.
    with mock.patch("servesim.fleet.CostParams", lambda **kw: replace(TRUE, **kw)):
        return simulate(build_scenario(data))


def main() -> None:
    model, hw = load_model(MODEL), load_hardware(HARDWARE)
    recs = synthetic_records(model, hw, TRUE, seed=1, with_rows=False, phases=True)
    write_step_log([NOTE, *recs], HERE / "steps.jsonl")
    rows = synthetic_records(model, hw, TRUE, seed=2, repeats=1, jitter=0.3)[:12]
    write_step_log(rows, HERE / "steps_rows.jsonl")

    cost = build_step_cost(model, hw, params=TRUE)
    rng = np.random.default_rng(3)
    lines = ["op,tokens,context,batch,seconds"]
    for op, tokens, context, batch in (
        ("step", 1, 1024, 1),
        ("step", 64, 1024, 64),
        ("step", 256, 2048, 256),
        ("step", 512, 0, 1),
        ("step", 2048, 0, 1),
        ("step", 4096, 0, 2),
        ("attention", 2048, 0, 1),
        ("attention", 64, 8192, 64),
        ("mlp", 2048, 0, 1),
        ("mlp", 64, 1024, 64),
        ("qkv_proj", 1024, 0, 1),
        ("lm_head", 128, 512, 128),
    ):
        new = np.full(batch, tokens // batch)
        ctx = np.full(batch, context)
        names = {o.name for o in cost.operators}
        if op == "step":
            secs = cost.step_seconds(new, ctx)
        else:
            secs = sum(
                o.seconds
                for o in cost.operator_breakdown(new, ctx)
                if o.name == op or (op not in names and o.group == op)
            )
        secs *= float(np.exp(rng.normal(0.0, 0.02)))
        lines.append(f"{op},{tokens},{context},{batch},{secs:.6g}")
    (HERE / "ops.csv").write_text("\n".join(lines) + "\n")

    workload = {
        "input_len": {"kind": "uniform", "lo": 128, "hi": 2048},
        "output_len": {"kind": "uniform", "lo": 16, "hi": 160},
    }
    run = _simulate_true(
        {
            "model": MODEL,
            "hardware": HARDWARE,
            "seed": 7,
            "kernel_tables": False,
            "workload": {**workload, "num_requests": 48, "arrival": {"kind": "poisson", "rate": 4}},
        }
    )
    doc = vllm_result_from_run(run, request_rate=4.0, label="SYNTHETIC: see make_examples.py")
    (HERE / "vllm_bench_serve.json").write_text(json.dumps(doc) + "\n")

    closed = _simulate_true(
        {
            "model": MODEL,
            "hardware": HARDWARE,
            "seed": 8,
            "kernel_tables": False,
            "workload": {**workload, "num_requests": 64, "arrival": {"kind": "poisson", "rate": 6}},
        }
    )
    doc = vllm_result_from_run(closed, request_rate=6.0)
    s = closed.summary
    line = {
        "backend": "sglang",
        "dataset_name": "random (SYNTHETIC: see make_examples.py)",
        "request_rate": 6.0,
        "max_concurrency": None,
        "duration": s["duration"],
        "completed": s["completed"],
        "total_input_tokens": s["total_input_tokens"],
        "total_output_tokens": s["total_output_tokens"],
        "request_throughput": s["request_throughput"],
        "input_throughput": s["total_input_tokens"] / s["duration"],
        "output_throughput": s["output_throughput"],
        "total_throughput": s["total_token_throughput"],
    }
    names = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2el": "e2e_latency"}
    for ours, theirs in names.items():
        for stat in ("mean", "median", "std", "p99"):
            line[f"{stat}_{theirs}_ms"] = s[f"{stat}_{ours}_ms"]
    req = closed.records.request_columns()
    # SGLang's "concurrency": requests in flight on average = Σ latency / duration.
    line["concurrency"] = float((req["finish_s"] - req["arrival_s"]).sum() / s["duration"])
    # bench_serving --output-details adds the per-request arrays.
    for key in ("input_lens", "output_lens", "ttfts", "itls", "errors"):
        line[key] = doc[key]
    (HERE / "sglang_bench_serving.jsonl").write_text(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
