"""vLLM's profiled memory budget: the rule, by hand, and against published start-up logs
(bench/fidelity/memory.py over bench/fidelity/memory_logs.json)."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import numpy as np
import pytest
from cost_factories import GiB, h100, llama_3_1_8b

from servesim.cost import CostParams, Parallelism, plan_memory
from servesim.cost.memory import (
    CUDA_TOTAL_SHORTFALL_BYTES,
    PROFILED_CUDA_GRAPH_BYTES,
    PROFILED_NON_TORCH_BYTES,
    PROFILED_NON_TORCH_MULTI_GPU_BYTES,
    SAMPLER_BYTES_PER_VOCAB_ENTRY,
    activation_reserve,
    default_runtime_reserve,
)
from servesim.engines import (
    VLLM_FLASHINFER_SAMPLER_OPT_IN,
    engine_profile,
    vllm_v1_sampler,
)

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("memory_logs", ROOT / "bench/fidelity/memory.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

CASES = bench.load_cases()
ROWS = {c["id"]: bench.compare(c) for c in CASES}


def test_profiled_peak_is_the_larger_of_forward_and_sampler_not_their_sum():
    model, par = llama_3_1_8b(), Parallelism()
    # Forward: 8192 tokens × 2 bytes × (4·4096 + 3·14336) = 973,078,528 bytes.
    forward = 8192 * 2 * (4 * 4096 + 3 * 14336)
    assert activation_reserve(model, par, 2.0, 8192, 256, sampler="sort", last_stage=False) == (
        forward
    )
    # Sorting 256 rows × 128,256 entries holds 38 bytes an entry: 1,247,760,384 bytes.
    sampler = 256 * 128256 * 38
    assert SAMPLER_BYTES_PER_VOCAB_ENTRY["sort"] == 38.0
    assert sampler > forward
    assert activation_reserve(model, par, 2.0, 8192, 256, profiled=True, sampler="sort") == sampler
    assert activation_reserve(model, par, 2.0, 8192, 256, sampler="sort") == forward + sampler
    # FlashInfer's kernel (14 bytes an entry): the forward pass is the larger.
    assert activation_reserve(model, par, 2.0, 8192, 256, profiled=True, sampler="flashinfer") == (
        forward
    )
    # The dummy requests number min(max_num_seqs, tokens): 512 tokens, 256 sequences → 256
    # rows; 128 tokens → 128 rows.
    small = activation_reserve(model, par, 2.0, 128, 256, profiled=True, sampler="sort")
    assert small == 128 * 128256 * 38


def test_profiled_runtime_is_the_non_torch_memory_only():
    assert default_runtime_reserve(Parallelism(), profiled=True) == PROFILED_NON_TORCH_BYTES
    assert default_runtime_reserve(Parallelism(tp=2), profiled=True) == (
        PROFILED_NON_TORCH_BYTES + PROFILED_NON_TORCH_MULTI_GPU_BYTES
    )
    # From vLLM 0.20.0 the profile also estimates the CUDA graphs.
    assert default_runtime_reserve(Parallelism(), profiled=True, graph_reserve=True) == (
        PROFILED_NON_TORCH_BYTES + PROFILED_CUDA_GRAPH_BYTES
    )
    assert default_runtime_reserve(Parallelism()) == 1.5 * GiB  # (the generic rule's)


def test_profiled_budget_by_hand():
    model, hw = llama_3_1_8b(), h100()
    plan = plan_memory(
        model, hw, gpu_memory_utilization=0.9, max_num_batched_tokens=8192, max_num_seqs=256,
        profiled=True, sampler="sort",
    )  # fmt: skip
    usable = (hw.hbm_bytes - CUDA_TOTAL_SHORTFALL_BYTES) * 0.9
    assert plan.usable_bytes == pytest.approx(usable)
    expected = usable - plan.weights_bytes_per_gpu - 256 * 128256 * 38 - 0.2 * GiB
    assert plan.kv_cache_bytes == pytest.approx(expected)
    assert plan.num_kv_blocks == int(expected // (16 * 131072))


def test_a_budget_that_holds_no_block_raises_unless_not_strict():
    from servesim.errors import ServesimError

    model, hw = llama_3_1_8b(), h100()
    with pytest.raises(ServesimError):
        plan_memory(model, hw, gpu_memory_utilization=0.2, profiled=True)
    short = plan_memory(model, hw, gpu_memory_utilization=0.2, profiled=True, strict=False)
    assert short.num_kv_blocks == 0 and short.kv_cache_bytes < 0


def test_vllm_samples_as_its_release_did():
    assert VLLM_FLASHINFER_SAMPLER_OPT_IN == "0.11.1"
    assert vllm_v1_sampler("0.10.2") == vllm_v1_sampler("0.11.0") == "flashinfer"
    assert vllm_v1_sampler("0.11.1") == vllm_v1_sampler("0.16.0") == "sort"
    assert vllm_v1_sampler("0.17.0") == vllm_v1_sampler("0.20.2") == "triton"
    assert vllm_v1_sampler("0.21.0") == vllm_v1_sampler(None) == "flashinfer"  # (None: newest)
    rules = engine_profile("vllm").kv_memory("0.10.2")
    assert rules["profiled"] and rules["sampler"] == "flashinfer"
    assert not rules["graph_reserve"]
    assert engine_profile("vllm").kv_memory("0.20.0")["graph_reserve"]
    assert engine_profile("vllm-v0").kv_memory("0.5.4")["sampler"] == "sort"
    sglang = engine_profile("sglang").kv_memory(None)
    assert not sglang["profiled"] and sglang["sampler"] == "logits"


def test_the_logs_are_cited_and_quoted():
    for case in CASES:
        assert case["source"] and case["log_lines"], case["id"]
        logged, text = case["logged"], "\n".join(case["log_lines"])
        if case["engine"] == "vllm":
            assert f"{logged['kv_cache_gib']:.2f} GiB" in text, case["id"]
        if logged["kv_cache_tokens"] is not None:
            tokens = logged["kv_cache_tokens"]
            assert f"{tokens:,}" in text or f"#tokens: {tokens}" in text, case["id"]
        if logged["weights_gib"] is not None:
            assert f"{logged['weights_gib']}" in text, case["id"]


def test_kv_cache_size_matches_the_published_logs():
    tokens = [abs(r["kv_tokens_error"]) for r in ROWS.values() if r["kv_tokens_error"] is not None]
    generic = [
        abs(r["generic_kv_tokens_error"])
        for r in ROWS.values()
        if r["generic_kv_tokens_error"] is not None
    ]
    assert len(tokens) >= 8
    assert statistics.median(tokens) < 0.02
    assert max(tokens) < 0.08  # (the cross-node Ray run: NCCL holds more than 0.4 GiB)
    assert statistics.median(generic) > 0.04  # (what the profiled rule fixed)
    weights = [abs(r["weights_error"]) for r in ROWS.values() if r["weights_error"] is not None]
    assert statistics.median(weights) < 0.01 and max(weights) < 0.05
    for row in ROWS.values():
        assert abs(row["kv_gib_delta"]) < 0.8, row["id"]


def test_failed_starts_are_predicted_to_fail():
    failed = [c for c in CASES if c["logged"]["kv_cache_tokens"] is None]
    assert failed
    for case in failed:
        row = ROWS[case["id"]]
        assert abs(row["kv_gib_delta"]) < 0.2, case["id"]


def test_simulations_use_the_same_plan():
    for case in CASES:
        if case["logged"]["kv_cache_tokens"] is None:
            continue
        plan, _, fleet_plan = bench.plans(case)
        assert fleet_plan is not None
        assert fleet_plan.kv_capacity_tokens == plan.kv_capacity_tokens, case["id"]


def test_generic_engines_keep_their_rule():
    # SGLang and TensorRT-LLM budgets do not change: no profiling run.
    model, hw = llama_3_1_8b(), h100()
    plan = plan_memory(model, hw, Parallelism(), CostParams())
    assert plan.runtime_reserve_bytes == 1.5 * GiB
    assert plan.usable_bytes == pytest.approx(hw.hbm_bytes * 0.9)


def test_a_scenario_names_the_sampler_of_its_install():
    from servesim.fleet import build_fleet
    from servesim.scenario import build_scenario

    def kv_gib(**extra):
        data = {"model": "meta-llama/Llama-3.1-8B", "hardware": "H100", "engine": "vllm",
                "engine_version": "0.10.2", **extra}  # fmt: skip
        fleet = build_fleet(build_scenario(data), np.random.default_rng(0))
        return fleet.groups[0].memory.kv_cache_bytes / GiB

    docker, pip = kv_gib(), kv_gib(sampler="sort")
    # 1,024 dummy rows x 128,256 entries: 38 bytes sorted, 14 with FlashInfer (both above the
    # 8,192-token forward pass's 0.91 GiB).
    assert docker - pip == pytest.approx(1024 * 128256 * (38 - 14) / GiB, abs=1e-6)
    assert kv_gib(engine="sglang", engine_version=None) == kv_gib(
        engine="sglang", engine_version=None, sampler="sort"
    )


def test_summary_json_shows_the_budget_as_the_engine_logs_it():
    from servesim.output import summary_document
    from servesim.run import simulate
    from servesim.scenario import build_scenario

    result = simulate(build_scenario({"workload": {"num_requests": 5}}))
    memory = summary_document(result)["memory"]
    kv = memory["kv_cache_bytes_per_gpu"]
    assert kv == pytest.approx(
        memory["usable_bytes_per_gpu"]
        - memory["weights_bytes_per_gpu"]
        - memory["activation_reserve_bytes_per_gpu"]
        - memory["runtime_reserve_bytes_per_gpu"]
    )
    blocks = int(kv // (16 * memory["kv_bytes_per_token"]))
    assert memory["kv_capacity_tokens"] == blocks * 16 == result.memory.kv_capacity_tokens


def test_a_sampler_bound_misfit_names_the_max_num_seqs_that_fits():
    from servesim.errors import ServesimError
    from servesim.fleet import build_fleet
    from servesim.scenario import build_scenario

    # GPT-OSS-120B on one H100 under vLLM 0.12 (sorted sampler, 1,024 dummy rows of 201,088
    # logits: 7.3 GiB): no room for the cache, as pip installs of that era report.
    data = {"model": "openai/gpt-oss-120b", "hardware": "H100", "engine": "vllm",
            "engine_version": "0.12.0"}  # fmt: skip
    with pytest.raises(ServesimError) as err:
        build_fleet(build_scenario(data), np.random.default_rng(0))
    assert "lower --max-num-seqs to 512 or fewer" in str(err.value)
    fits = {**data, "scheduler": {"max_num_seqs": 512}}
    fleet = build_fleet(build_scenario(fits), np.random.default_rng(0))
    assert fleet.groups[0].memory.num_kv_blocks >= 1
