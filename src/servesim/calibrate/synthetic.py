"""Synthetic step logs from a known "true" parameter set: what the fit must recover.

Used by the tests and to make the example files; never by a prediction. Steps are timed by
the cost model itself with ``true`` parameters, then given multiplicative log-normal noise
and a few slow outliers (a GC pause, a preemption) — so a fit that recovers ``true`` from
them shows it inverts the model and shrugs off outliers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.hardware import Hardware
from servesim.model import ModelSpec

DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DECODE_CONTEXTS = (128, 512, 2048, 8192)
PREFILL_TOKENS = (16, 64, 128, 256, 512, 1024, 2048, 4096)
PREFILL_CONTEXTS = (0, 2048, 8192)
MIXED = ((256, 16), (512, 64), (1024, 128), (2048, 32))
"""(prefill chunk tokens, decode rows) of mixed steps; decodes at 1024 context."""


def grid_batches(rng: np.random.Generator, jitter: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(new_tokens, context_lens) of a sweep like ``bench/gpu/measure_steps.py`` runs.

    ``jitter`` spreads each row's context by up to ±jitter (a fraction), as in a serving step.
    """

    def ctx(base: int, n: int) -> np.ndarray:
        spread = rng.uniform(1.0 - jitter, 1.0 + jitter, n) if jitter else np.ones(n)
        return np.round(base * spread).astype(np.int64)

    out = []
    for b in DECODE_BATCHES:
        for c in DECODE_CONTEXTS:
            out.append((np.ones(b, dtype=np.int64), ctx(c, b)))
    for t in PREFILL_TOKENS:
        for c in PREFILL_CONTEXTS:
            rows = 1 if t <= 1024 else 2
            out.append((np.full(rows, t // rows, dtype=np.int64), ctx(c, rows)))
    for chunk, d in MIXED:
        new = np.concatenate([np.full(1, chunk), np.ones(d, dtype=np.int64)])
        out.append((new, np.concatenate([np.zeros(1, dtype=np.int64), ctx(1024, d)])))
    return out


def synthetic_records(
    model: ModelSpec,
    hw: Hardware,
    true: CostParams,
    *,
    par: Parallelism | None = None,
    seed: int = 0,
    repeats: int = 2,
    noise: float = 0.02,
    outlier_fraction: float = 0.03,
    jitter: float = 0.0,
    with_rows: bool = True,
    phases: bool = False,
) -> list[dict[str, Any]]:
    """Step-log records (dicts in the step-log format) timed with ``true`` parameters.

    ``noise``: σ of the log-normal multiplicative noise; ``outlier_fraction`` of the steps are
    slowed 1.5–3×. ``with_rows`` adds the exact ``new_tokens``/``context_lens`` arrays;
    ``phases`` splits each step into ``schedule`` / ``forward`` / ``sample``.
    """
    rng = np.random.default_rng(seed)
    cost = build_step_cost(model, hw, par or Parallelism(), true)
    batches = grid_batches(rng, jitter) * repeats
    order = rng.permutation(len(batches))
    records = []
    t = 0.0
    for k, i in enumerate(order.tolist()):
        new, ctx = batches[i]
        seconds = cost.step_seconds(new, ctx) * float(np.exp(rng.normal(0.0, noise)))
        if rng.random() < outlier_fraction:
            seconds *= float(rng.uniform(1.5, 3.0))
        decode = int(np.count_nonzero((new == 1) & (ctx > 0)))
        rec: dict[str, Any] = {
            "type": "step",
            "step": k,
            "start_s": round(t, 9),
            "duration_s": round(seconds, 9),  # a real timer's resolution
            "batch_size": len(new),
            "prefill_tokens": int(new.sum()) - decode,
            "decode_tokens": decode,
            "context_tokens": int(ctx.sum()),
        }
        if phases:
            host = true.step_overhead_s
            rec["phases"] = {
                "schedule": round(0.6 * host, 9),
                "forward": round(seconds - host, 9),
                "sample": round(0.4 * host, 9),
            }
        if with_rows:
            rec["new_tokens"] = new.tolist()
            rec["context_lens"] = ctx.tolist()
        records.append(rec)
        t += seconds
    return records


def write_step_log(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Write records as JSON lines."""
    path = Path(path)
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    return path


def vllm_result_from_run(
    result: Any,
    *,
    request_rate: float,
    burstiness: float = 1.0,
    max_concurrency: int | None = None,
    detailed: bool = True,
    label: str = "synthetic: servesim simulate",
) -> dict[str, Any]:
    """A vLLM ``bench serve --save-result`` document made from a simulated run (a
    ``servesim.run.Result``): settings, summary metrics with vLLM names and, when
    ``detailed``, per-request arrays in send order. A request's ITLs are its decode time
    spread evenly (the engine keeps gaps pooled, not per request); the summary ITL metrics
    are the run's exact pooled ones."""
    req = result.records.request_columns()
    order = np.argsort(req["request_id"], kind="stable")
    ttft = (req["first_token_s"] - req["arrival_s"])[order]
    decode = (req["finish_s"] - req["first_token_s"])[order]
    out_lens = req["output_tokens"][order].astype(int)
    s = result.summary
    doc: dict[str, Any] = {
        "date": "synthetic",
        "endpoint_type": "openai",
        "label": label,
        "model_id": result.model.name,
        "num_prompts": int(s["completed"]),
        "request_rate": "inf" if np.isinf(request_rate) else request_rate,
        "burstiness": burstiness,
        "max_concurrency": max_concurrency,
        "duration": s["duration"],
        "completed": int(s["completed"]),
        "failed": 0,
        "total_input_tokens": int(s["total_input_tokens"]),
        "total_output_tokens": int(s["total_output_tokens"]),
        "request_throughput": s["request_throughput"],
        "request_goodput": None,
        "output_throughput": s["output_throughput"],
        "total_token_throughput": s["total_token_throughput"],
    }
    for metric in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "std", "p99"):
            doc[f"{stat}_{metric}_ms"] = s[f"{stat}_{metric}_ms"]
    if detailed:
        doc["input_lens"] = req["input_tokens"][order].astype(int).tolist()
        doc["output_lens"] = out_lens.tolist()
        doc["ttfts"] = [round(float(t), 6) for t in ttft]
        doc["itls"] = [
            [round(float(d) / (n - 1), 6)] * (n - 1) if n > 1 else []
            for d, n in zip(decode.tolist(), out_lens.tolist(), strict=True)
        ]
        doc["errors"] = [""] * len(out_lens)
    return doc
