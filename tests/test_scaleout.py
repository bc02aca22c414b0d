"""Scale-out and serving features change the simulated numbers the way real systems do."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.model import load_model
from servesim.run import simulate
from servesim.scenario import build_scenario


def run(**fields):
    base = {
        "workload": {
            "num_requests": 200,
            "input_len": 1024,
            "output_len": 64,
            "arrival": {"kind": "poisson", "rate": 10},
        }
    }
    base.update(fields)
    return simulate(build_scenario(base))


def test_disaggregation_removes_prefill_interference_from_tpot():
    # Same GPUs (2): colocated replicas vs one prefill + one decode instance, prompts long
    # enough that prefill chunks stall co-running decodes.
    wl = {
        "num_requests": 300,
        "input_len": 4000,
        "output_len": 128,
        "arrival": {"kind": "poisson", "rate": 6},
    }
    colocated = simulate(build_scenario({"replicas": 2, "workload": wl})).summary
    disagg = simulate(build_scenario({"disaggregate": "1:1", "workload": wl})).summary
    assert disagg["num_gpus"] == colocated["num_gpus"] == 2
    assert disagg["p99_tpot_ms"] < 0.8 * colocated["p99_tpot_ms"]
    assert disagg["num_kv_transfers"] == 300


def test_disaggregated_ttft_is_prefill_plus_transfer_plus_one_decode_step():
    s = simulate(
        build_scenario(
            {
                "disaggregate": "1:1",
                "api_server": False,
                "workload": {
                    "num_requests": 1,
                    "input_len": 2048,
                    "output_len": 4,
                    "arrival": {"kind": "burst"},
                },
            }
        )
    )
    model, hw = load_model("llama-3.1-8b"), load_hardware("H100")
    # (vLLM's own decode-attention kernels: kernel_backend.)
    params = CostParams(kernel_tables=True, kernel_backend="vllm")
    cost = build_step_cost(model, hw, Parallelism(), params)
    # A 2,048-token prefill is above vLLM V1's largest CUDA graph: it runs eagerly.
    eager = build_step_cost(model, hw, Parallelism(), replace(params, cuda_graphs=False))
    prefill = eager.step_seconds(np.array([2048]), np.array([0]))
    per_token = model.num_layers * model.kv_elements_per_token_per_layer * 2  # bf16
    # 85% of the NIC's rate is achievable, plus one latency.
    transfer = 2048 * per_token / (hw.inter_node.bandwidth * 0.85) + hw.inter_node.latency_s
    first_decode = cost.step_seconds(np.array([1]), np.array([2047]))
    expected = prefill + transfer + first_decode
    assert s.summary["mean_ttft_ms"] == pytest.approx(expected * 1000, rel=1e-9)
    assert s.summary["mean_kv_transfer_ms"] == pytest.approx(transfer * 1000, rel=1e-9)


def test_speculation_at_zero_acceptance_is_slower_and_at_high_acceptance_faster():
    low = run(speculative={"method": "eagle", "acceptance_rate": 0.0}).summary
    high = run(speculative={"method": "eagle", "acceptance_rate": 0.9}).summary
    assert low["spec_speedup_tpot"] < 1.0
    assert high["spec_speedup_tpot"] > 1.5
    assert low["spec_acceptance_rate"] == 0.0


def test_speculation_emits_the_expected_tokens_per_verify_step():
    alpha, k = 0.6, 4
    s = run(
        speculative={"method": "ngram", "acceptance_rate": alpha, "num_speculative_tokens": k}
    ).summary
    expected = (1 - alpha ** (k + 1)) / (1 - alpha)  # accepted prefix + the target's token
    # Requests near their last token verify fewer drafts, so slightly fewer tokens per step.
    assert s["spec_tokens_per_verify_step"] == pytest.approx(expected, rel=0.06)
    assert s["spec_tokens_per_verify_step"] <= expected + 0.02


def test_speculative_outputs_are_exact_and_runs_reproducible():
    a = run(speculative={"method": "eagle"})
    b = run(speculative={"method": "eagle"})
    out = a.records.request_columns()["output_tokens"]
    assert out.tolist() == [64] * 200
    assert a.summary["mean_tpot_ms"] == b.summary["mean_tpot_ms"]


def test_draft_with_another_vocabulary_is_refused():
    with pytest.raises(ServesimError, match="vocabulary"):
        run(speculative={"method": "draft:qwen2.5-0.5b"})


def test_cpu_verify_overlaps_drafting_with_the_target_step():
    seq = run(speculative={"method": "ngram", "mode": "self_verify"}).summary
    par = run(speculative={"method": "ngram", "mode": "cpu_verify"}).summary
    assert par["mean_tpot_ms"] <= seq["mean_tpot_ms"]


def test_replicas_share_load_and_cut_latency_under_pressure():
    wl = {"num_requests": 400, "preset": "conversation", "arrival": {"kind": "poisson", "rate": 30}}
    one = simulate(build_scenario({"workload": wl})).summary
    two = simulate(
        build_scenario({"workload": wl, "replicas": 2, "router": "least_outstanding"})
    ).summary
    assert two["median_ttft_ms"] < one["median_ttft_ms"]
    assert [p["completed"] for p in two["per_instance"]] == pytest.approx([200, 200], abs=30)


def test_prefix_affinity_router_keeps_shared_prefixes_on_one_replica():
    wl = {
        "num_requests": 300,
        "input_len": 200,
        "output_len": 16,
        "prefix_groups": 4,
        "prefix_len": 2048,
        "arrival": {"kind": "poisson", "rate": 20},
    }
    rr = simulate(build_scenario({"workload": wl, "replicas": 4, "router": "round_robin"}))
    pa = simulate(build_scenario({"workload": wl, "replicas": 4, "router": "prefix_affinity"}))
    assert pa.summary["prefix_cache_hit_rate"] > rr.summary["prefix_cache_hit_rate"]


def test_heterogeneous_fleet_reports_each_instance():
    s = simulate(
        build_scenario(
            {
                "instances": [{"hardware": "H100", "count": 1}, {"hardware": "A100", "count": 1}],
                "router": "round_robin",
                "workload": {
                    "num_requests": 200,
                    "input_len": 1024,
                    "output_len": 64,
                    "arrival": {"kind": "poisson", "rate": 8},
                },
            }
        )
    ).summary
    h100, a100 = s["per_instance"]
    assert (h100["hardware"], a100["hardware"]) == ("H100", "A100-80GB")
    assert h100["completed"] == a100["completed"] == 100
    assert h100["busy_fraction"] < a100["busy_fraction"]  # the faster GPU idles more


def test_a_group_that_ran_no_step_is_summarised():
    """One request on a fleet of two groups: the second group records no step. Its summary
    (work, energy, rung shares) summed no rows; the decode ramp's mean-per-call test took the
    maximum of an empty column and the run ended in a traceback (found by a random
    heterogeneous-fleet test)."""
    spec = {
        "instances": [{"hardware": "H100", "count": 1}, {"hardware": "A100", "count": 1}],
        "workload": {"num_requests": 1, "preset": "conversation"},
    }
    s = simulate(build_scenario(spec)).summary
    assert s["completed"] == 1
    assert [i["completed"] for i in s["per_instance"]] == [1, 0]
    assert s["energy_j"] > 0 and 0 < s["mfu"] < 1


def test_tensor_parallelism_speeds_up_decode_of_a_big_model():
    wl = {"num_requests": 20, "input_len": 512, "output_len": 64, "arrival": {"kind": "burst"}}
    tp4 = simulate(build_scenario({"model": "llama-3.1-70b", "tp": 4, "workload": wl})).summary
    tp8 = simulate(build_scenario({"model": "llama-3.1-70b", "tp": 8, "workload": wl})).summary
    assert tp8["mean_tpot_ms"] < tp4["mean_tpot_ms"]
    assert tp8["num_gpus"] == 8


def test_fp8_weights_decode_faster_and_fp8_kv_doubles_capacity():
    bf16 = run()
    fp8 = run(weight_dtype="fp8")
    assert fp8.summary["mean_tpot_ms"] < bf16.summary["mean_tpot_ms"]
    kv8 = run(kv_dtype="fp8")
    assert kv8.memory.kv_capacity_tokens == pytest.approx(
        2 * bf16.memory.kv_capacity_tokens, rel=0.01
    )


def test_fp16_weights_run_at_the_fp16_peak_and_take_two_bytes():
    # fp16 is an unquantised 2-byte format with its own tensor-core peak (equal to bf16's on
    # every shipped GPU), so fp16 and bf16 deployments time the same.
    bf16, fp16 = run(weight_dtype="bf16"), run(weight_dtype="fp16")
    assert fp16.scenario.weight_dtype == "fp16"
    assert fp16.summary["mean_tpot_ms"] == pytest.approx(bf16.summary["mean_tpot_ms"])
    assert fp16.memory.kv_capacity_tokens == bf16.memory.kv_capacity_tokens
    assert run(hardware="A100", weight_dtype="fp16").summary["completed"] == 200


def test_a_dtype_the_gpu_cannot_run_is_refused():
    with pytest.raises(ServesimError):
        run(hardware="A100", weight_dtype="fp8")


def test_pipeline_parallel_deployment_runs():
    s = run(model="llama-3.1-70b", tp=4, pp=2).summary
    assert s["completed"] == 200 and s["num_gpus"] == 8


def test_moe_models_run_with_expert_parallelism():
    s = run(model="qwen3-30b-a3b", tp=2, ep=2).summary
    assert s["completed"] == 200


def test_roles_must_form_a_deployment():
    with pytest.raises(ServesimError, match="roles"):
        run(instances=[{"role": "decode"}])
    with pytest.raises(ServesimError, match="P:D"):
        run(disaggregate="2")


def test_kv_offload_keeps_evicted_prefixes_in_cpu_memory():
    wl = {
        "num_requests": 400,
        "input_len": 200,
        "output_len": 32,
        "prefix_groups": 40,
        "prefix_len": 3000,
        "arrival": {"kind": "poisson", "rate": 25},
    }
    small = {"gpu_memory_utilization": 0.25}
    off = simulate(build_scenario({"workload": wl, "scheduler": small})).summary
    on = simulate(build_scenario({"workload": wl, "scheduler": small, "kv_offload": True})).summary
    assert on["prefix_cache_hit_rate"] > off["prefix_cache_hit_rate"] + 0.3
    assert on["median_ttft_ms"] < off["median_ttft_ms"]
    assert on["kv_offload_loaded_blocks"] > 0


def test_a_slower_offload_tier_costs_more_load_time():
    wl = {
        "num_requests": 300,
        "input_len": 200,
        "output_len": 32,
        "prefix_groups": 40,
        "prefix_len": 3000,
        "arrival": {"kind": "poisson", "rate": 25},
    }
    small = {"gpu_memory_utilization": 0.25}
    pcie = simulate(build_scenario({"workload": wl, "scheduler": small, "kv_offload": True}))
    slow = simulate(
        build_scenario(
            {"workload": wl, "scheduler": small, "kv_offload": True, "kv_offload_gbps": 2.0}
        )
    )
    assert slow.summary["mean_ttft_ms"] > pcie.summary["mean_ttft_ms"]


def test_a_draft_model_takes_memory_from_the_kv_cache():
    base = run()
    draft = run(speculative={"method": "draft:llama-3.2-1b"})
    assert draft.groups[0].memory.kv_capacity_tokens < base.memory.kv_capacity_tokens


def test_a_draft_model_prefills_the_prompt_too():
    # One request alone: its first step is the target's prefill, then the draft model's own
    # forward over the same prompt (it keeps a KV cache), on the same GPU.
    from servesim.cost.speculative import draft_cost

    wl = {"num_requests": 1, "input_len": 2048, "output_len": 8, "arrival": {"kind": "burst"}}
    s = simulate(
        build_scenario(
            {"speculative": {"method": "draft:llama-3.2-1b"}, "workload": wl, "api_server": False}
        )
    )
    model, hw = load_model("llama-3.1-8b"), load_hardware("H100")
    # As simulate prices them: the vllm profile's kernels (its own decode-attention table).
    params = CostParams(kernel_tables=True, kernel_backend="vllm")
    target = build_step_cost(model, hw, Parallelism(), params)
    drafter = draft_cost(
        "draft", model, hw, Parallelism(), params, draft_model=load_model("llama-3.2-1b")
    )
    prompt, empty = np.array([2048]), np.array([0])
    draft_prefill = drafter.prefill_seconds(prompt, empty)
    assert draft_prefill > 0.05 * target.step_seconds(prompt, empty)
    # The 2,048-token prefill is above vLLM V1's largest CUDA graph: the target runs eagerly.
    eager = build_step_cost(model, hw, Parallelism(), replace(params, cuda_graphs=False))
    expected = eager.step_seconds(prompt, empty) + draft_prefill
    assert s.summary["mean_ttft_ms"] == pytest.approx(expected * 1000, rel=1e-9)
    # n-gram drafting has no model to prefill: TTFT is the target's prefill alone.
    ngram = simulate(
        build_scenario({"speculative": {"method": "ngram"}, "workload": wl, "api_server": False})
    )
    assert ngram.summary["mean_ttft_ms"] == pytest.approx(
        eager.step_seconds(prompt, empty) * 1000, rel=1e-9
    )


def test_attention_dp_holds_more_requests_and_decodes_faster_at_high_concurrency():
    # DeepSeek-V3 on 8×H200: TP8 replicates MLA's latent on every GPU; eight DP ranks each
    # cache only their own requests, so many more fit (SGLang keeps back more memory under DP
    # attention: mem_fraction_static 0.769 against 0.897), and decode reads 1/8 of the KV per
    # GPU.
    workload = {
        "num_requests": 400,
        "input_len": 3000,
        "output_len": 200,
        "arrival": {"kind": "burst"},
    }
    common = {"model": "deepseek-v3", "hardware": "H200", "engine": "sglang", "workload": workload}
    tp8_run = simulate(build_scenario({**common, "tp": 8}))
    dp8_run = simulate(build_scenario({**common, "tp": 1, "dp": 8}))
    tp8, dp8 = tp8_run.summary, dp8_run.summary
    assert tp8["completed"] == dp8["completed"] == 400
    assert dp8["num_gpus"] == tp8["num_gpus"] == 8
    capacity = [r.groups[0].memory.kv_capacity_tokens for r in (tp8_run, dp8_run)]
    assert capacity[1] > 2.5 * capacity[0]
    assert dp8["output_throughput"] > tp8["output_throughput"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dp=st.sampled_from([2, 4, 8]),
    engine=st.sampled_from(["sglang", "vllm", "sglang-0.4"]),
    n=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_every_request_of_an_attention_dp_run_finishes_once(dp, engine, n, seed):
    sc = build_scenario(
        {"model": "qwen3-30b-a3b", "hardware": "H100", "tp": 1, "dp": dp, "engine": engine,
         "seed": seed, "workload": {"num_requests": n, "preset": "conversation"}}
    )  # fmt: skip
    result = simulate(sc)
    s = result.summary
    cols = result.records.request_columns()
    assert s["completed"] == n and len(cols["finish_s"]) == n
    assert (np.asarray(cols["first_token_s"]) <= np.asarray(cols["finish_s"])).all()
    assert (np.asarray(cols["arrival_s"]) <= np.asarray(cols["first_token_s"])).all()
