"""Microbenchmark of the cost model's hot path.

Prints µs per ``StepCostModel.step_seconds`` call for mixed batches of 1, 64 and 256 rows, and
µs per step of ``decode_span_seconds``. Run: ``python bench/bench_cost.py``.
"""

from __future__ import annotations

import timeit

import numpy as np

from servesim.cost import Parallelism, build_step_cost
from servesim.hardware import Hardware, Link
from servesim.model import MLASpec, ModelSpec, MoESpec


def _llama_8b() -> ModelSpec:
    return ModelSpec(
        name="llama-3.1-8b",
        architecture="LlamaForCausalLM",
        hidden_size=4096,
        num_layers=32,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=128256,
        max_position_embeddings=131072,
    )


def _deepseek_v3() -> ModelSpec:
    return ModelSpec(
        name="deepseek-v3",
        architecture="DeepseekV3ForCausalLM",
        hidden_size=7168,
        num_layers=61,
        num_attention_heads=128,
        num_kv_heads=128,
        head_dim=192,
        intermediate_size=18432,
        vocab_size=129280,
        max_position_embeddings=163840,
        dtype="fp8",
        moe=MoESpec(
            256,
            8,
            2048,
            num_shared_experts=1,
            shared_expert_intermediate_size=2048,
            first_dense_layers=3,
        ),
        mla=MLASpec(1536, 512, 128, 64, 128),
    )


def _gpt_oss_20b() -> ModelSpec:
    return ModelSpec(
        name="gpt-oss-20b",
        architecture="GptOssForCausalLM",
        hidden_size=2880,
        num_layers=24,
        num_attention_heads=64,
        num_kv_heads=8,
        head_dim=64,
        intermediate_size=2880,
        vocab_size=201088,
        max_position_embeddings=131072,
        dtype="mxfp4",
        qkv_bias=True,
        o_bias=True,
        sliding_window=128,
        num_sliding_layers=12,
        moe=MoESpec(32, 4, 2880, expert_bias=True, router_bias=True),
    )


def _h100() -> Hardware:
    return Hardware(
        name="H100",
        vendor="nvidia",
        peak_flops={"bf16": 989.4e12, "fp8": 1978.9e12},
        hbm_bytes=80 * 2**30,
        hbm_bandwidth=3.35e12,
        intra_node=Link("nvlink", 450e9, 3e-6),
        inter_node=Link("ib", 50e9, 1e-5),
    )


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
    hw = _h100()
    cases = [
        ("llama-3.1-8b tp1", _llama_8b(), Parallelism()),
        ("gpt-oss-20b tp1", _gpt_oss_20b(), Parallelism()),
        ("deepseek-v3 tp8", _deepseek_v3(), Parallelism(tp=8)),
    ]
    for label, model, par in cases:
        cost = build_step_cost(model, hw, par)
        for rows in (1, 64, 256):
            new, ctx = _mixed_batch(rows, rng)
            us = _us_per_call(lambda cost=cost, new=new, ctx=ctx: cost.step_seconds(new, ctx), 2000)
            print(f"{label:18s} step_seconds   batch {rows:3d}: {us:6.2f} µs/call")
        ctx = rng.integers(100, 4000, 256)
        steps = 1000
        us = (
            _us_per_call(
                lambda cost=cost, ctx=ctx, steps=steps: cost.decode_span_seconds(ctx, steps), 20
            )
            / steps
        )
        print(f"{label:18s} decode_span    batch 256, {steps} steps: {us:6.3f} µs/step")


if __name__ == "__main__":
    main()
