"""The fidelity suite's peer runs (bench/fidelity/peers/run_peers.py): the pure parts that map a
case onto GenZ, read its answer back, and merge a one-tool rerun into the results. The tools
themselves are never run here (they live in their own venvs)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "servesim" / "catalog" / "models"


def _load():
    path = ROOT / "bench" / "fidelity" / "peers" / "run_peers.py"
    spec = importlib.util.spec_from_file_location("fidelity_run_peers", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


rp = _load()


def _config(name: str) -> dict:
    return json.loads((MODELS / f"{name}.json").read_text())


def test_genz_model_of_llama_3_1_8b_is_genz_own_preset():
    # GenZ 0.0.16's Models/Model_sets/meta.py, llama3_8b_config: hidden 4096, 32 heads, 8 KV
    # heads, num_ffi 2, intermediate 14336, 32 decoder layers, vocab 128256, silu.
    spec, why = rp.genz_model(_config("meta-llama--Llama-3.1-8B"), "llama")
    assert why == ""
    assert {k: spec[k] for k in (
        "hidden_size", "num_attention_heads", "num_key_value_heads", "num_ffi",
        "intermediate_size", "num_decoder_layers", "vocab_size", "head_dim", "hidden_act",
    )} == {
        "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "num_ffi": 2,
        "intermediate_size": 14336, "num_decoder_layers": 32, "vocab_size": 128256,
        "head_dim": 128, "hidden_act": "silu",
    }  # fmt: skip
    assert "num_experts" not in spec and "sliding_window" not in spec


def test_genz_model_of_mixtral_is_genz_own_preset():
    # GenZ's Models/Model_sets/mistral.py, mixtral_8x7b_config: 8 experts, top 2, the MLP
    # width 14336 for each expert.
    spec, _ = rp.genz_model(_config("mistralai--Mixtral-8x7B-v0.1"), "mixtral")
    assert (spec["num_experts"], spec["expert_top_k"], spec["moe_intermediate_size"]) == (
        8,
        2,
        14336,
    )
    assert spec["n_shared_experts"] == 0


def test_genz_model_carries_qwen3_head_dim_and_moe_width():
    # Qwen3-30B-A3B: 32 heads of 128 over a 2048-wide model (head_dim x heads != hidden), 128
    # experts of width 768, top 8, every layer sparse.
    spec, _ = rp.genz_model(_config("Qwen--Qwen3-30B-A3B"), "qwen")
    assert (spec["head_dim"], spec["num_attention_heads"], spec["hidden_size"]) == (128, 32, 2048)
    assert (spec["num_experts"], spec["expert_top_k"], spec["moe_intermediate_size"]) == (
        128,
        8,
        768,
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"kv_lora_rank": 512}, "multi-head latent attention"),
        ({"first_k_dense_replace": 3}, "dense and MoE layers mixed"),
        ({"layer_types": ["sliding_attention", "full_attention"]}, "different attention types"),
        ({"hidden_size": None}, "lacks hidden_size"),
    ],
)
def test_genz_model_refuses_what_its_model_cannot_describe(change, reason):
    cfg = {**_config("meta-llama--Llama-3.1-8B"), **change}
    spec, why = rp.genz_model(cfg, "x")
    assert spec is None and reason in why


def _shape(kind="batch", batch=4, isl=100, osl=11, replicas=1, prompts=None):
    return rp.Shape(kind, isl, osl, batch, replicas, "", prompts)


def test_genz_metrics_by_hand():
    # A lock-step batch of 4: TTFT = its 100 ms prefill, then 10 decode steps of 10 ms:
    # E2EL 200 ms, 4 requests / 0.2 s = 20 req/s, 20 x 11 = 220 output tok/s, 20 x 111 total.
    job = rp.Job("c", rp.GENZ, {}, "", _shape(), "", [])
    m = rp.metrics_of(job, {"prefill_ms": 100.0, "decode_ms": 10.0}, job.shape)
    assert m["mean_ttft_ms"] == 100.0 and m["p99_ttft_ms"] == 100.0
    assert m["median_tpot_ms"] == 10.0 and m["mean_itl_ms"] == 10.0
    assert m["mean_e2el_ms"] == pytest.approx(200.0)
    assert m["request_throughput"] == pytest.approx(20.0)
    assert m["output_throughput"] == pytest.approx(220.0)
    assert m["total_token_throughput"] == pytest.approx(20.0 * 111)
    assert m["duration"] == pytest.approx(0.2)
    # A backlog of 2 replicas keeps throughputs only, for the whole deployment.
    backlog = _shape(kind="throughput", replicas=2, prompts=80)
    m = rp.metrics_of(job, {"prefill_ms": 100.0, "decode_ms": 10.0}, backlog)
    assert m["output_throughput"] == pytest.approx(440.0)
    assert m["duration"] == pytest.approx(80 / 40.0)
    assert "mean_ttft_ms" not in m


def test_map_genz_skips_what_it_cannot_run(tmp_path):
    model = rp.Model("meta-llama/Llama-3.1-8B", _config("meta-llama--Llama-3.1-8B"), "l", "s")
    case = {"id": "c", "gpu": "H100", "weight_dtype": "bf16", "tp": 2}
    job = rp.map_genz(case, _shape(), model, None, tmp_path)
    assert job.kwargs["system_name"] == "H100_GPU" and job.kwargs["bits"] == "bf16"
    assert job.kwargs["tensor_parallel"] == 2 and job.kwargs["system_eff"] == 1.0
    assert "GenZ ships no system" in rp.map_genz(
        {**case, "gpu": "H200"}, _shape(), model, None, tmp_path
    )
    assert "closed loop" in rp.map_genz(case, _shape(kind="steady"), model, None, tmp_path)
    assert "no GenZ precision" in rp.map_genz(
        {**case, "weight_dtype": None}, _shape(), model, None, tmp_path
    )
    # GenZ keeps the KV cache in the weights' precision: a different one is noted.
    fp8_kv = rp.map_genz({**case, "kv_dtype": "fp8"}, _shape(), model, None, tmp_path)
    assert any("KV cache in bf16" in n for n in fp8_kv.notes)


def test_a_one_tool_rerun_keeps_the_other_tools_results():
    old = {
        "tool": {"aiconfigurator": {"version": "0.12.0"}, "genz": {"version": "old"}},
        "summary": {"aiconfigurator": {"represented": 1}, "genz": {"represented": 9}},
        "cases": {"a": {"aiconfigurator": {"x": 1.0}, "genz": {"x": 2.0}}, "b": {"genz": {"x": 3}}},
        "details": {"a": {"aiconfigurator": {}, "genz": {}}},
        "skipped": {"c": {"genz": "why", "llm-analysis": "why not"}},
        "failed": {},
        "case_files": ["cases/b.json"],
    }
    new = {
        "tool": {"genz": {"version": "new"}},
        "summary": {"genz": {"represented": 1}},
        "cases": {"a": {"genz": {"x": 4.0}}},
        "details": {"a": {"genz": {"raw": 1}}},
        "skipped": {},
        "failed": {"b": {"genz": "error"}},
        "case_files": ["cases/a.json"],
    }
    got = rp.merged_results(old, new, ("genz",))
    assert got["tool"] == {"aiconfigurator": {"version": "0.12.0"}, "genz": {"version": "new"}}
    assert got["summary"]["genz"] == {"represented": 1}
    assert got["cases"] == {"a": {"aiconfigurator": {"x": 1.0}, "genz": {"x": 4.0}}}
    assert got["details"] == {"a": {"aiconfigurator": {}, "genz": {"raw": 1}}}
    assert got["skipped"] == {"c": {"llm-analysis": "why not"}}
    assert got["failed"] == {"b": {"genz": "error"}}
    assert got["case_files"] == ["cases/a.json", "cases/b.json"]
