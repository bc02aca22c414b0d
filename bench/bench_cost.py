"""Microbenchmark of the cost model's hot path.

Prints µs per ``StepCostModel.step_seconds`` call for mixed batches of 1, 64 and 256 rows, and
µs per step of ``decode_span_seconds``, on the roofline rung and with the measured kernel tables
(what ``simulate`` uses by default). Run: ``python bench/bench_cost.py``.
"""

from __future__ import annotations

import timeit

import numpy as np

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.hardware import load_hardware
from servesim.model import load_model


def _mixed_batch(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One prefill chunk and ``rows − 1`` decodes, as vLLM's chunked prefill schedules them."""
    new = np.ones(rows, dtype=np.int64)
    ctx = rng.integers(100, 4000, rows)
    new[0], ctx[0] = 512, 0
    return new, ctx


def _us_per_call(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    hw = load_hardware("H100")
    cases = [
        ("llama-3.1-8b tp1", load_model("llama-3.1-8b"), Parallelism()),
        ("gpt-oss-120b tp1", load_model("gpt-oss-120b"), Parallelism()),
        ("deepseek-v3 tp8", load_model("deepseek-v3"), Parallelism(tp=8)),
    ]
    variants = [
        (f"{label} {rung}", model, par, CostParams(kernel_tables=tables, custom_allreduce=True))
        for label, model, par in cases
        for rung, tables in (("roofline", False), ("tables", True))
    ]
    for label, model, par, params in variants:
        cost = build_step_cost(model, hw, par, params)
        for rows in (1, 64, 256):
            new, ctx = _mixed_batch(rows, rng)
            us = _us_per_call(lambda cost=cost, new=new, ctx=ctx: cost.step_seconds(new, ctx), 2000)
            print(f"{label:27s} step_seconds   batch {rows:3d}: {us:6.2f} µs/call")
        ctx = rng.integers(100, 4000, 256)
        steps = 1000
        us = (
            _us_per_call(
                lambda cost=cost, ctx=ctx, steps=steps: cost.decode_span_seconds(ctx, steps), 20
            )
            / steps
        )
        print(f"{label:27s} decode_span    batch 256, {steps} steps: {us:6.3f} µs/step")


if __name__ == "__main__":
    main()
