"""Factories the cost-model tests share: model and hardware specs written from the published
configs and datasheets (pinned to the shipped catalog by ``test_cost_specs.py``), and batches."""

from __future__ import annotations

import numpy as np

from servesim.hardware import Hardware, Link
from servesim.model import MLASpec, ModelSpec, MoESpec

NO_HOST = dict(host_step_s=0.0, host_per_seq_s=0.0, host_per_token_s=0.0)
"""``CostParams`` fields that turn the host's per-step time off."""


def decode(b: int, ctx: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(new tokens, context lengths) of a decode step of ``b`` rows with ``ctx`` cached tokens."""
    return np.ones(b, dtype=int), np.full(b, ctx)


GiB = 2**30


def llama_3_1_8b(**overrides) -> ModelSpec:
    """meta-llama/Llama-3.1-8B config.json."""
    fields = dict(
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
        tie_word_embeddings=False,
        dtype="bf16",
    )
    fields.update(overrides)
    return ModelSpec(**fields)


def llama_3_1_70b() -> ModelSpec:
    """meta-llama/Llama-3.1-70B config.json."""
    return llama_3_1_8b(
        name="llama-3.1-70b",
        hidden_size=8192,
        num_layers=80,
        num_attention_heads=64,
        intermediate_size=28672,
    )


def llama_3_1_405b() -> ModelSpec:
    """meta-llama/Llama-3.1-405B config.json."""
    return llama_3_1_8b(
        name="llama-3.1-405b",
        hidden_size=16384,
        num_layers=126,
        num_attention_heads=128,
        intermediate_size=53248,
    )


def deepseek_v3() -> ModelSpec:
    """deepseek-ai/DeepSeek-V3 config.json (MLA + 256 routed experts, top-8, 1 shared)."""
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
        quant_scope="linear",
        moe=MoESpec(
            num_experts=256,
            experts_per_token=8,
            expert_intermediate_size=2048,
            num_shared_experts=1,
            shared_expert_intermediate_size=2048,
            first_dense_layers=3,
            router_bias=True,
        ),
        mla=MLASpec(
            q_lora_rank=1536,
            kv_lora_rank=512,
            qk_nope_head_dim=128,
            qk_rope_head_dim=64,
            v_head_dim=128,
        ),
    )


def gpt_oss_20b() -> ModelSpec:
    """openai/gpt-oss-20b config.json (MoE, every other layer a 128-token sliding window)."""
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
        quant_scope="experts",
        qkv_bias=True,
        o_bias=True,
        sliding_window=128,
        num_sliding_layers=12,
        attention_sinks=True,
        moe=MoESpec(
            num_experts=32,
            experts_per_token=4,
            expert_intermediate_size=2880,
            expert_bias=True,
            router_bias=True,
        ),
    )


def h100(**overrides) -> Hardware:
    """NVIDIA H100 SXM5 80 GB: dense bf16 989.4 TFLOP/s, fp8 1978.9 TFLOP/s, 3.35 TB/s HBM3,
    NVLink 4 at 450 GB/s per direction (NVIDIA H100 datasheet)."""
    fields = dict(
        name="H100",
        vendor="nvidia",
        peak_flops={
            "bf16": 989.4e12,
            "fp16": 989.4e12,
            "fp8": 1978.9e12,
            "int8": 1978.9e12,
            "tf32": 494.7e12,
            "fp32": 66.9e12,
        },
        hbm_bytes=80 * GiB,
        hbm_bandwidth=3.35e12,
        intra_node=Link("nvlink4", 450e9, 3e-6),
        inter_node=Link("ib-ndr", 50e9, 10e-6),
        gpus_per_node=8,
        compute_efficiency=0.7,
        memory_efficiency=0.8,
        kernel_launch_s=4e-6,
    )
    fields.update(overrides)
    return Hardware(**fields)
