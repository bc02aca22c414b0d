"""``servesim flops`` and ``servesim estimate`` through the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import servesim.cli.commands  # noqa: F401  (registers every command on the app)
from servesim.cli.app import app
from servesim.cost import CostParams, Parallelism, build_step_cost, flops_breakdown, plan_memory
from servesim.engines import engine_profile
from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.model import load_model

runner = CliRunner()


def _json(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_flops_json_matches_the_library():
    out = _json(["flops", "llama-3.1-8b", "--input-len", "1024", "--output-len", "256", "--json"])
    assert out["params_total"] == 8_030_261_248
    assert out["params_active"] == 8_030_261_248
    ref = flops_breakdown(load_model("llama-3.1-8b"), 1024, 256)
    for key in ("prefill_flops", "decode_flops_per_token", "total_flops"):
        assert out[key] == ref[key]
    assert set(out["by_component"]) == {"qkv_o", "attention", "mlp", "head", "norm_other"}
    assert out["by_component"]["attention"]["prefill"] == 275_146_342_400


def test_flops_value_head_and_table():
    out = _json(
        [
            "flops",
            "llama-3.1-8b",
            "--input-len",
            "10",
            "--output-len",
            "1",
            "--head",
            "value",
            "--json",
        ]
    )
    assert out["by_component"]["head"]["prefill"] == 2 * (4096 * 4096 + 4096 + 4096 + 1)
    table = runner.invoke(
        app, ["flops", "mixtral-8x7b", "--input-len", "100", "--output-len", "10"]
    )
    assert table.exit_code == 0, table.output
    assert "moe" in table.output and "attention" in table.output and "TFLOP" in table.output


def test_estimate_json_matches_the_library():
    out = _json(
        [
            "estimate",
            "llama-3.1-8b",
            "--hardware",
            "h100",
            "--batch",
            "4",
            "--input-len",
            "2048",
            "--output-len",
            "128",
            "--json",
        ]
    )
    model, hw = load_model("llama-3.1-8b"), load_hardware("h100")
    # estimate prices operators from the measured kernel tables, as simulate does, with the
    # vllm profile's own decode-attention and all-reduce kernels.
    params = CostParams(kernel_tables=True, custom_allreduce=True, kernel_backend="vllm")
    cost = build_step_cost(model, hw, params=params)
    shares = out["fidelity_shares"]
    assert sum(shares["prefill"].values()) == pytest.approx(1.0)
    assert shares["decode"]["measured"] > 0.5
    # (8,192 prompt tokens are past vLLM's 512-token CUDA graphs: an eager step, as simulate's.)
    eager = build_step_cost(model, hw, params=dataclasses.replace(params, cuda_graphs=False))
    assert out["prefill_s"] == pytest.approx(
        eager.step_seconds(np.full(4, 2048), np.zeros(4)), rel=1e-12
    )
    # First decode step: context 2048; last (127th): 2048 + 126.
    assert out["decode_step_s"]["start"] == pytest.approx(
        cost.step_seconds(np.ones(4), np.full(4, 2048)), rel=1e-12
    )
    assert out["decode_step_s"]["end"] == pytest.approx(
        cost.step_seconds(np.ones(4), np.full(4, 2048 + 126)), rel=1e-12
    )
    plan = plan_memory(model, hw, **_vllm_serve_memory(hw))
    assert out["weights_bytes_per_gpu"] == plan.weights_bytes_per_gpu
    assert out["kv_bytes_per_token"] == 131072
    assert out["max_concurrent_seqs"] == plan.max_concurrent_seqs(2048 + 128)
    assert out["batch_fits"] is True
    assert out["fidelity"] == "measured"  # most of the prefill stands on measured GEMMs


@pytest.mark.parametrize(
    ("model", "prompt"), [("llama-3.1-8b", "256"), ("Qwen/Qwen3-30B-A3B", "2048")]
)
def test_estimate_prefill_is_simulates_ttft_graphed_or_eager(model: str, prompt: str):
    # A prompt within vLLM's CUDA-graph tokens runs graphed, a longer one eagerly, in both.
    est = _json(["estimate", model, "-g", "h100", "--input-len", prompt, "--output-len", "2",
                 "--json"])  # fmt: skip
    sim = _json(["simulate", "-m", model, "-g", "h100", "-n", "1", "--input-len", prompt,
                 "--output-len", "2", "--no-api-server", "--json"])  # fmt: skip
    assert est["prefill_s"] * 1e3 == pytest.approx(sim["mean_ttft_ms"], rel=1e-9)


def test_estimate_prices_mla_as_simulates_default_engine():
    # simulate's default engine (vLLM, newest release) runs MLA's q_a and kv_a as one GEMM,
    # and its MLA block as vLLM's module tables measure it; estimate prices the same step.
    out = _json(["estimate", "deepseek-v3", "-g", "H200", "--tp", "8", "--batch", "4",
                 "--input-len", "1000", "--output-len", "10", "--json"])  # fmt: skip
    model, hw, par = load_model("deepseek-v3"), load_hardware("H200"), Parallelism(tp=8)

    def decode(fused: bool, backend: str | None = "vllm") -> float:
        params = CostParams(
            kernel_tables=True,
            kernel_backend=backend,
            custom_allreduce=True,
            mla_fused_down_proj=fused,
        )
        cost = build_step_cost(model, hw, par, params)
        return cost.step_seconds(np.ones(4), np.full(4, 1000))

    assert out["decode_step_s"]["start"] == pytest.approx(decode(True), rel=1e-12)
    assert decode(True) < decode(False)
    assert decode(True, backend=None) < decode(True)  # (the bare kernel sum)
    # vLLM's newest release on Hopper takes rows of up to 512 new tokens as decodes: a batch
    # of 400-token prompts prefills absorbed, as simulate's default engine would run it.
    short = _json(["estimate", "deepseek-v3", "-g", "H200", "--tp", "8", "--batch", "4",
                   "--input-len", "400", "--output-len", "10", "--json"])  # fmt: skip

    def prefill(absorb_max: int) -> float:
        params = CostParams(
            kernel_tables=True,
            kernel_backend="vllm",
            custom_allreduce=True,
            mla_fused_down_proj=True,
            mla_absorb_max_new_tokens=absorb_max,
            cuda_graphs=False,  # (1,600 prompt tokens: past the graphs, eager)
        )
        cost = build_step_cost(model, hw, par, params)
        return cost.step_seconds(np.full(4, 400), np.zeros(4))

    assert short["prefill_s"] == pytest.approx(prefill(512), rel=1e-12)
    assert prefill(512) != pytest.approx(prefill(1), rel=1e-3)


def test_estimate_table_with_tp():
    result = runner.invoke(
        app,
        [
            "estimate",
            "llama-3.1-70b",
            "--hardware",
            "h100",
            "--tp",
            "4",
            "--batch",
            "8",
            "--input-len",
            "1000",
            "--output-len",
            "100",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "4× H100" in result.output and "comm" in result.output


def _vllm_serve_memory(hw):
    """estimate sizes memory as `vllm serve` (newest) on ``hw``: its budgets, its profiled rule."""
    vllm = engine_profile("vllm")
    budget, seqs = vllm.batch_defaults(hw.hbm_bytes, hw.name, True, None)
    return {"max_num_batched_tokens": budget, "max_num_seqs": seqs, **vllm.kv_memory(None)}


def test_estimate_with_attention_dp_ranks():
    args = ["estimate", "deepseek-v3", "-g", "H200", "--tp", "1", "--dp", "8", "--batch", "64",
            "--input-len", "1000", "--output-len", "100"]  # fmt: skip
    table = runner.invoke(app, args, env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.output
    assert "8× H200 (tp=1 dp=8" in table.output and "over 8 ranks" in table.output
    out = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert (out["dp"], out["gpus"]) == (8, 8)
    # Sized as simulate sizes the same deployment (its step budgets under DP attention), which
    # the single-rank vLLM plan estimate used before did not (4,150,272 tokens there).
    sim = _json(["simulate", "-m", "deepseek-v3", "-g", "H200", "--tp", "1", "--dp", "8",
                 "-n", "1", "--input-len", "10", "--output-len", "2", "--json"])  # fmt: skip
    assert out["kv_capacity_tokens"] == sim["memory"]["kv_capacity_tokens"]
    spec, hw = load_model("deepseek-v3"), load_hardware("H200")
    whole_budget = plan_memory(spec, hw, Parallelism(tp=1, dp=8), **_vllm_serve_memory(hw))
    assert out["kv_capacity_tokens"] != whole_budget.kv_capacity_tokens
    bad = runner.invoke(app, ["estimate", "llama-3.1-8b", "-g", "H100", "--dp", "2",
                              "--input-len", "10", "--output-len", "10"])  # fmt: skip
    assert isinstance(bad.exception, ServesimError) and bad.exception.field == "dp"


def test_estimate_of_a_model_that_does_not_fit_raises():
    result = runner.invoke(
        app,
        [
            "estimate",
            "llama-3.1-405b",
            "--hardware",
            "h100",
            "--input-len",
            "10",
            "--output-len",
            "10",
        ],
    )
    assert isinstance(result.exception, ServesimError)
    assert result.exception.fix == "use --tp 16"


def test_installed_script_exits_2_with_the_size_and_a_tp_that_fits():
    script = Path(sys.executable).parent / "servesim"
    proc = subprocess.run(
        [
            str(script),
            "estimate",
            "llama-3.1-405b",
            "--hardware",
            "h100",
            "--input-len",
            "128",
            "--output-len",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "756.0 GiB of weights per GPU" in proc.stderr
    assert "use --tp 16" in proc.stderr
    assert proc.stdout == ""


def test_estimate_warns_past_the_context_window():
    args = ["estimate", "llama-3.1-8b", "--hardware", "h100", "--output-len", "10"]
    inside = runner.invoke(app, [*args, "--input-len", "131062"])
    assert inside.exit_code == 0, inside.output
    assert "context window" not in inside.output
    past = runner.invoke(app, [*args, "--input-len", "131063"])
    assert past.exit_code == 0, past.output
    assert "131,073 tokens per sequence exceed the model's context window (131,072)" in " ".join(
        past.output.split()
    )
    doc = _json([*args, "--input-len", "131063", "--json"])
    assert doc["context_window"] == 131072 and doc["fits_context"] is False


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--input-len", "0", "--output-len", "4"],
            "--input-len: 0 is not in the range 1<=x<=100000000",
        ),
        (["--output-len", "4"], "error: Missing option '--input-len'"),
        (
            ["--input-len", "8", "--output-len", "4", "--gpu-memory-utilization", "0.01"],
            "(raise --gpu-memory-utilization to 0.25 or more)",
        ),
    ],
)
def test_installed_script_bad_values_are_one_line(args, line):
    script = Path(sys.executable).parent / "servesim"
    proc = subprocess.run(
        [str(script), "estimate", "llama-3.1-8b", "--hardware", "h100", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Usage" not in proc.stderr, proc.stderr
    assert line in proc.stderr


def test_estimate_pins_the_kv_cache_to_a_logged_size():
    args = ["estimate", "llama-3.1-8b", "-g", "H100", "--batch", "4", "--input-len", "2048",
            "--output-len", "128", "--json"]  # fmt: skip
    out = _json([*args, "--kv-cache-tokens", "40000"])
    assert out["kv_capacity_tokens"] == 40_000  # 2,500 blocks of 16
    assert out["max_concurrent_seqs"] == 2_500 // math.ceil((2048 + 128) / 16)


@pytest.mark.parametrize(
    "engine",
    [
        ["--engine", "sglang"],
        ["--engine", "trtllm"],
        ["--engine", "vllm-v0"],
        ["--engine", "vllm", "--engine-version", "0.10.2"],
        ["--engine", "lmdeploy"],
    ],
)
def test_estimate_prices_each_engine_as_simulate(engine: list[str]):
    # One request alone: simulate's TTFT (no API server) is the prefill step, its E2EL the
    # prefill and the decode steps, each under the engine's graphs, kernels and host terms.
    lengths = ["--input-len", "700", "--output-len", "6"]
    est = _json(["estimate", "llama-3.1-8b", "-g", "H100", *lengths, *engine, "--json"])
    sim = _json(["simulate", "-m", "llama-3.1-8b", "-g", "H100", "-n", "1", *lengths, *engine,
                 "--no-api-server", "--json"])  # fmt: skip
    assert est["engine"] == engine[1]
    assert est["prefill_s"] * 1e3 == pytest.approx(sim["mean_ttft_ms"], rel=1e-9)
    assert est["total_s"] * 1e3 == pytest.approx(sim["mean_e2el_ms"], rel=1e-9)


def test_estimate_decodes_eagerly_past_the_longest_captured_sequence():
    # vLLM V0 captures decode graphs for sequences up to 8,192 tokens: the steps whose longest
    # sequence passes it run eagerly, in simulate's spans and in estimate's decode.
    lengths = ["--input-len", "8188", "--output-len", "9", "--batch", "1"]
    est = _json(["estimate", "llama-3.1-8b", "-g", "H100", *lengths, "--engine", "vllm-v0",
                 "--json"])  # fmt: skip
    sim = _json(["simulate", "-m", "llama-3.1-8b", "-g", "H100", "-n", "1", *lengths[:4],
                 "--engine", "vllm-v0", "--no-api-server", "--json"])  # fmt: skip
    # (The engine chunks the 8,188-token prompt, 2,048 tokens a step; estimate's prefill is one
    # step by definition: the decode steps are compared.)
    decode_ms = (est["total_s"] - est["prefill_s"]) * 1e3
    assert decode_ms == pytest.approx(sim["mean_e2el_ms"] - sim["mean_ttft_ms"], rel=1e-9)
    assert est["decode_step_s"]["end"] > 1.05 * est["decode_step_s"]["start"]  # (eager: slower)
