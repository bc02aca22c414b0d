"""SGLang's FlashInfer all-reduce fusion: the rule by release, GPU and model class (read in the
SGLang wheels), the split it needs, and what it does to the operators and a decode step."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.engines import engine_profile, sglang_allreduce_norm_fusion
from servesim.fleet import build_fleet
from servesim.scenario import build_scenario

DEEPSEEK, GPT_OSS, QWEN3_MOE = "DeepseekV3ForCausalLM", "GptOssForCausalLM", "Qwen3MoeForCausalLM"


@pytest.mark.parametrize(
    ("release", "architecture", "gpu", "model", "fused"),
    [
        ("0.4.10", "blackwell", "B200", GPT_OSS, False),  # (the flag exists, never set by itself)
        ("0.5.3", "blackwell", "B200", GPT_OSS, True),
        ("0.5.3", "blackwell", "B200", DEEPSEEK, False),
        ("0.5.3", "hopper", "H100", GPT_OSS, False),
        ("0.5.4", "blackwell", "B200", DEEPSEEK, True),
        ("0.5.6", "hopper", "H200", DEEPSEEK, False),
        ("0.5.6", "blackwell", "GB200", QWEN3_MOE, False),
        ("0.5.7", "hopper", "H200", DEEPSEEK, True),
        ("0.5.7", "hopper", "H100", QWEN3_MOE, True),
        ("0.5.7", "hopper", "H20", DEEPSEEK, False),  # (flashinfer#2204)
        ("0.5.9", "hopper", "H100", "LlamaForCausalLM", False),
        ("0.5.9", "ada", "L40S", QWEN3_MOE, False),
        ("0.5.9", "blackwell-rtx", "RTX-PRO-6000", DEEPSEEK, False),
        (None, "hopper", "H200", DEEPSEEK, True),  # (the newest release)
    ],
)
def test_sglang_turns_the_fusion_on_by_release_gpu_and_model(
    release, architecture, gpu, model, fused
):
    assert sglang_allreduce_norm_fusion(release, architecture, gpu, model) is fused


def _instance(**fields):
    data = {"model": "deepseek-ai/DeepSeek-R1", "hardware": "H200", "tp": 8, "engine": "sglang",
            "engine_version": "0.5.9", "workload": {"num_requests": 2}, **fields}  # fmt: skip
    return build_fleet(build_scenario(data), np.random.default_rng(0)).instances[0]


def _norms(instance) -> dict[str, tuple[int, float]]:
    return {
        op.name: (op.count, op.kernels)
        for op in instance.cost.operators
        if op.name in ("add_rmsnorm", "allreduce_rmsnorm")
    }


def test_the_fused_norms_keep_their_bytes_and_launch_nothing():
    fused, plain = _instance(), _instance(engine_version="0.5.6")
    assert fused.cost.params.allreduce_norm_fusion and not plain.cost.params.allreduce_norm_fusion
    layers = 61
    # Every norm after an all-reduce; the first layer's pre-attention norm follows the embedding.
    assert _norms(fused) == {"add_rmsnorm": (1, 1.0), "allreduce_rmsnorm": (2 * layers - 1, 0.0)}
    assert _norms(plain) == {"add_rmsnorm": (2 * layers, 1.0)}
    # A decode step is shorter by the norms' launches, at most: their bytes stay.
    context = np.full(4, 2000)
    ones = np.ones(4, dtype=np.int64)
    saved = plain.cost.step_with_features(ones, context)[0]
    saved -= fused.cost.step_with_features(ones, context)[0]
    launch = fused.cost.hardware.kernel_launch_s
    assert 0.5 * (2 * layers - 1) * launch < saved <= (2 * layers - 1) * launch * (1 + 1e-9)


@pytest.mark.parametrize(
    "fields",
    [
        {"engine": "vllm", "engine_version": None},  # (vLLM's fusion pass is off by default)
        {"tp": 1, "hardware": "B200", "model": "openai/gpt-oss-120b"},  # (no all-reduce)
        {"tp": 1, "dp": 8, "ep": 8},  # (DP attention: SGLang leaves it off)
        {"tp": 16},  # (two nodes of 8)
    ],
)
def test_no_fusion_where_sglang_leaves_it_off(fields):
    instance = _instance(**fields)
    assert not instance.cost.params.allreduce_norm_fusion
    assert "allreduce_rmsnorm" not in _norms(instance)


def test_the_profile_carries_the_rule():
    assert engine_profile("sglang").allreduce_norm_fusion is sglang_allreduce_norm_fusion
    assert engine_profile("vllm").allreduce_norm_fusion is None
    assert engine_profile("sglang-0.4").allreduce_norm_fusion is None  # (0.4.x, even unversioned)


def test_the_summary_says_so():
    import os
    import subprocess
    import sys

    args = ["-m", "deepseek-ai/DeepSeek-R1", "-g", "B200", "--tp", "8", "--engine", "sglang",
            "--engine-version", "0.5.9", "-n", "4", "--input-len", "64",
            "--output-len", "4"]  # fmt: skip
    run = [sys.executable, "-m", "servesim", "simulate"]
    fused = subprocess.run(
        [*run, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert fused.returncode == 0, fused.stderr
    assert "all-reduces fused with the RMSNorm" in fused.stdout
    args[args.index("0.5.9")] = "0.5.3"
    plain = subprocess.run(
        [*run, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert plain.returncode == 0 and "all-reduces fused" not in plain.stdout
