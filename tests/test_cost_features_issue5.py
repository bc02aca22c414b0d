"""Scale-out and serving features of the cost model (issue 5): pipeline micro-batches and
bubbles, MoE expert parallelism with all-to-all and skew, quantisation rules, host overhead
and CUDA graphs, power and energy, memory tiers, and drafting costs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_cost_specs import deepseek_v3, h100, llama_3_1_8b, llama_3_1_70b

from servesim.cost import CostParams, Parallelism, build_step_cost, plan_memory
from servesim.cost import operators as ops
from servesim.cost.memory import HOST_LINK_EFFICIENCY, kv_transfer_seconds, weights_bytes_per_gpu
from servesim.cost.power import active_seconds, gpu_power_watts, utilisation
from servesim.cost.speculative import (
    NGRAM_SECONDS_PER_CONTEXT_TOKEN,
    NGRAM_SECONDS_PER_DRAFT,
    draft_cost,
    eagle_head,
)
from servesim.cost.step import bubble_fraction, coefficient_matrices, pipeline_seconds
from servesim.errors import ServesimError
from servesim.hardware import Link, load_hardware
from servesim.model import load_model

NO_HOST = dict(host_step_s=0.0, host_per_seq_s=0.0, host_per_token_s=0.0)


def decode(b: int, ctx: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    return np.ones(b, dtype=int), np.full(b, ctx)


# --- pipeline parallelism ------------------------------------------------------------------


def test_pipeline_schedule_formulas():
    four = np.ones(4)
    assert pipeline_seconds(four, 4) == 7.0  # (m + pp − 1) · t
    assert pipeline_seconds(four, 4, overlap_steps=True) == 4.0  # m · t: no drain
    assert bubble_fraction(four, 4, 7.0) == pytest.approx(3 / 7)  # (pp − 1)/(m + pp − 1)
    # Unequal stages: the first micro-batch crosses both, the slow stage paces the rest.
    assert pipeline_seconds(np.array([1.0, 2.0]), 3) == 3.0 + 2 * 2.0
    assert pipeline_seconds(np.array([1.0, 2.0]), 3, overlap_steps=True) == 6.0
    assert pipeline_seconds(np.array([1.0, 2.0]), 1, overlap_steps=True) == 3.0
    # Vectorised over rows.
    rows = pipeline_seconds(np.array([[1.0, 1.0], [2.0, 1.0]]), np.array([1.0, 2.0]))
    assert rows.tolist() == [2.0, 5.0]


def test_pp2_halves_weights_per_gpu_and_decode_shows_the_bubble():
    m, hw = load_model("qwen2.5-32b"), load_hardware("H100")
    one = plan_memory(m, hw, Parallelism())
    two = plan_memory(m, hw, Parallelism(pp=2))
    # Each stage holds half the layers (and one of embedding / LM head).
    assert two.weights_bytes_per_gpu == pytest.approx(one.weights_bytes_per_gpu / 2, rel=0.03)
    assert two.kv_capacity_tokens > 4 * one.kv_capacity_tokens  # the room goes to KV

    cost = build_step_cost(m, hw, Parallelism(pp=2))
    f = cost.features(*decode(64))
    pipe = cost.pipeline_from_features(f)
    t = pipe.stage_s[0]
    assert pipe.microbatches[0] == 2  # default: one micro-batch per stage
    assert t[0] == pytest.approx(t[1], rel=0.1)  # balanced stages
    # Two micro-batches over two stages: t0 + t1 + max(t0, t1), a third of it bubble.
    assert pipe.gpu_s[0] == pytest.approx(t.sum() + t.max(), rel=1e-12)
    assert pipe.bubble_fraction[0] == pytest.approx(1 / 3, abs=0.02)
    step = cost.step_time(*decode(64))
    assert step.bubble_fraction == pytest.approx(pipe.bubble_fraction[0])
    assert step.total_s == pytest.approx(pipe.gpu_s[0] + 1e-4, rel=1e-12)  # + step overhead
    assert sum(step.by_group.values()) == pytest.approx(step.total_s, rel=1e-12)
    # Each micro-batch re-reads its stage's weights: a 64-row decode step is memory-bound, so
    # the pipelined step costs about 1.5× one GPU reading the whole model once.
    single = build_step_cost(m, hw, Parallelism()).gpu_seconds_from_features(f)
    assert pipe.gpu_s[0] > 1.2 * single[0]
    # Overlapping steps (vLLM's batch queue) removes the fill/drain bubble.
    overlap = build_step_cost(m, hw, Parallelism(pp=2), CostParams(pp_overlap_steps=True))
    assert overlap.pipeline_from_features(f).bubble_fraction[0] < 0.05
    assert overlap.step_seconds(*decode(64)) < 0.75 * cost.step_seconds(*decode(64))


@pytest.mark.parametrize("name", ["gpt-oss-120b", "deepseek-v3", "llama-3.1-70b"])
def test_stages_add_up_to_the_whole_model(name):
    model, par = load_model(name), Parallelism(tp=2, pp=3)
    kw = dict(weight_bytes=1.0, kv_bytes=2.0, act_bytes=2.0)
    whole = coefficient_matrices(ops.build_operators(model, par, **kw))
    stages = ops.pipeline_stages(model, 3)
    parts = [coefficient_matrices(ops.build_operators(model, par, stage=s, **kw)) for s in stages]
    for k in (0, 1):  # FLOPs, bytes
        np.testing.assert_allclose(
            sum(p[k].sum(axis=0) for p in parts), whole[k].sum(axis=0), rtol=1e-12
        )
    assert [s.layers for s in stages] == [len(r) for r in ops.stage_layers(model.num_layers, 3)]
    assert sum(s.sliding for s in stages) == ops.sliding_layers(model)
    assert sum(s.moe for s in stages) == model.num_moe_layers


def test_microbatches_never_outnumber_sequences():
    cost = build_step_cost(llama_3_1_8b(), h100(), Parallelism(pp=4))
    one = cost.pipeline_from_features(cost.features(np.array([2048]), np.array([0])))
    # A single prefill cannot be split: it crosses the four stages one after another.
    assert one.microbatches[0] == 1
    assert one.gpu_s[0] == pytest.approx(one.stage_s[0].sum(), rel=1e-12)
    assert one.bubble_fraction[0] == pytest.approx(3 / 4, abs=0.02)
    eight = build_step_cost(
        llama_3_1_8b(), h100(), Parallelism(pp=4), CostParams(pp_microbatches=8)
    )
    assert eight.pipeline_from_features(eight.features(*decode(5))).microbatches[0] == 5
    assert eight.pipeline_from_features(eight.features(*decode(64))).microbatches[0] == 8


def test_each_microbatch_reads_the_weights_again():
    cost = build_step_cost(llama_3_1_8b(), h100(), Parallelism(pp=2))
    flat = build_step_cost(llama_3_1_8b(), h100(), Parallelism())
    f = cost.features(*decode(64, ctx=0))
    flops, nbytes = cost.work_from_features(f)
    flops1, nbytes1 = flat.work_from_features(f)
    assert flops == pytest.approx(flops1, rel=1e-9)  # the same arithmetic
    # Two micro-batches: the weights (2 B × 7.5 G linear parameters) are read twice.
    assert nbytes - nbytes1 == pytest.approx(2 * 7_504_658_432, rel=0.001)


def test_tp4_beats_pp4_for_70b_decode_latency():
    m = llama_3_1_70b()
    tp4 = build_step_cost(m, h100(), Parallelism(tp=4)).step_seconds(*decode(64))
    pp4 = build_step_cost(m, h100(), Parallelism(pp=4)).step_seconds(*decode(64))
    # PP4: 4 micro-batches of 16 rows, each stage reading its 20 layers per micro-batch:
    # (4 + 3) × ~14 ms; TP4 reads a quarter of every layer once.
    assert 4 < pp4 / tp4 < 6


@pytest.mark.parametrize(
    "par, params",
    [
        (Parallelism(pp=3), CostParams()),
        (Parallelism(pp=2), CostParams(pp_overlap_steps=True, cuda_graphs=False)),
        (Parallelism(tp=2, dp=2, ep=4), CostParams(moe_skew=0.2)),
    ],
)
def test_decode_span_equals_repeated_steps_with_pp_and_dp(par, params):
    model = load_model("qwen3-30b-a3b") if par.dp > 1 else llama_3_1_8b()
    cost = build_step_cost(model, h100(), par, params)
    ctx = np.arange(1, 40) * 37
    span = cost.decode_span_seconds(ctx, 25)
    steps = [cost.step_seconds(np.ones_like(ctx), ctx + j) for j in range(25)]
    np.testing.assert_allclose(span, steps, rtol=1e-12)
    _, f = cost.step_with_features(np.ones_like(ctx), ctx)
    groups = cost.group_seconds_from_features(f[None])
    assert sum(g[0] for g in groups.values()) == pytest.approx(span[0], rel=1e-12)


# --- MoE and expert parallelism ------------------------------------------------------------


def test_wide_ep_adds_all_to_all_and_cuts_expert_bytes_by_ep():
    m, hw = deepseek_v3(), load_hardware("H200")
    ep1 = build_step_cost(m, hw, Parallelism(dp=8, ep=1), CostParams(**NO_HOST))
    ep8 = build_step_cost(m, hw, Parallelism(dp=8, ep=8), CostParams(**NO_HOST))
    # A big step hits every expert: each GPU reads all 256 (ep=1) or its 32 (ep=8).
    new, ctx = np.full(64, 256), np.zeros(64, dtype=int)
    s1, s8 = ep1.step_time(new, ctx), ep8.step_time(new, ctx)
    b1 = sum(r.bytes for r in ep1.operator_breakdown(new, ctx) if r.name == "experts_gate_up")
    b8 = sum(r.bytes for r in ep8.operator_breakdown(new, ctx) if r.name == "experts_gate_up")
    weights = 58 * 7168 * 2 * 2048  # gate+up of one expert in every MoE layer, fp8
    tokens_per_gpu = 64 * 256 / 8  # each rank's share of the step
    # ep=1: a rank's 2048 tokens × 8 experts on its GPU; ep=8: all 16384 tokens × 8 experts
    # spread over 8 GPUs. The same pairs per GPU, each reading its input, writing its output.
    pairs = 58 * tokens_per_gpu * 8 * (7168 + 4096) * 2
    assert b1 == pytest.approx(256 * weights + pairs, rel=1e-9)
    assert b8 == pytest.approx(32 * weights + pairs, rel=1e-9)
    # All-to-all: each GPU sends its tokens' k copies of d bf16 values, 7/8 leave the GPU,
    # once to dispatch and once to combine, in every MoE layer.
    a2a = 58 * 2 * tokens_per_gpu * 8 * 7168 * 2 * 7 / 8
    assert s8.comm_bytes == pytest.approx(a2a, rel=1e-9)
    assert s1.by_group["comm"] == 0.0 and s8.by_group["comm"] > 0.0
    names = {o.name for o in ep8.operators}
    assert {"moe_dispatch", "moe_combine"} <= names and "all_reduce" not in names
    # Per GPU weights: a replicated attention stack plus an eighth of the experts.
    w1 = weights_bytes_per_gpu(m, hw, Parallelism(dp=8, ep=1))
    w8 = weights_bytes_per_gpu(m, hw, Parallelism(dp=8, ep=8))
    assert (w1 - w8) == pytest.approx(58 * 256 * 3 * 7168 * 2048 * 7 / 8, rel=1e-9)


def test_deepseek_v3_decode_on_8_h200_three_ways():
    m, hw = load_model("deepseek-v3"), load_hardware("H200")
    plans, steps = {}, {}
    for name, par in {
        "tp8": Parallelism(tp=8),
        "tp8ep8": Parallelism(tp=8, ep=8),
        "dp8ep8": Parallelism(dp=8, ep=8),
    }.items():
        plans[name] = plan_memory(m, hw, par)
        steps[name] = build_step_cost(m, hw, par).step_time(*decode(256))
    # MLA caches one latent per token on every TP rank; DP ranks each cache their own tokens.
    assert plans["dp8ep8"].kv_capacity_tokens > 4 * plans["tp8"].kv_capacity_tokens
    # Inside the TP group EP moves expert weights around, not tokens: about the same time.
    assert steps["tp8ep8"].total_s == pytest.approx(steps["tp8"].total_s, rel=0.05)
    assert steps["dp8ep8"].by_group["comm"] < steps["tp8"].by_group["comm"]
    assert all(0.01 < s.total_s < 0.1 for s in steps.values())


def test_skew_slows_the_busiest_ep_rank():
    m, hw = deepseek_v3(), load_hardware("H200")
    par = Parallelism(dp=8, ep=8)
    new, ctx = np.full(8, 2048), np.zeros(8, dtype=int)  # prefill: expert GEMMs compute-bound
    even = build_step_cost(m, hw, par).step_time(new, ctx)
    skew = build_step_cost(m, hw, par, CostParams(moe_skew=0.5)).step_time(new, ctx)
    assert skew.by_group["moe"] > 1.3 * even.by_group["moe"]
    assert skew.by_group["comm"] == pytest.approx(1.5 * even.by_group["comm"], rel=0.02)
    # EP inside the TP group too; one GPU computing every pair does not care.
    tp_even = build_step_cost(m, hw, Parallelism(tp=8, ep=8)).step_time(new, ctx)
    tp_skew = build_step_cost(m, hw, Parallelism(tp=8, ep=8), CostParams(moe_skew=0.5))
    assert tp_skew.step_time(new, ctx).by_group["moe"] > 1.3 * tp_even.by_group["moe"]
    flat = build_step_cost(m, hw, Parallelism(tp=8)).step_seconds(new, ctx)
    assert build_step_cost(m, hw, Parallelism(tp=8), CostParams(moe_skew=0.5)).step_seconds(
        new, ctx
    ) == pytest.approx(flat, rel=1e-12)


def test_expert_gemms_pay_the_small_m_tile_padding():
    params = CostParams(kernel_launch_s=0.0)
    cost = build_step_cost(deepseek_v3(), h100(), Parallelism(tp=8), params)
    f = cost.features(*decode(8))
    comp, _ = cost.operator_sides_from_features(f[None])
    i = [o.name for o in cost.operators].index("experts_gate_up")
    # 8 tokens × top-8 spread over ~57 hit experts: about one row per expert GEMM...
    hit = ops.expected_distinct_experts(8, 256, 8)
    assert f[ops.M_EXP] == pytest.approx(64 / hit)
    # ... each padded by 32 rows (half-empty tensor-core tiles): ~30× the useful FLOP time.
    rows = 64 + 32 * hit
    per_row = 58 * 2 * 7168 * (2 * 2048 / 8)  # gate+up split over TP8, every MoE layer
    assert comp[0, i] == pytest.approx(per_row * rows / (1978.9e12 * 0.7), rel=1e-9)


@pytest.mark.parametrize(
    "name, hw, par",
    [
        ("qwen3-30b-a3b", "H100", Parallelism()),
        ("qwen3-30b-a3b", "H100", Parallelism(dp=2, ep=2)),
        ("qwen3-235b-a22b", "H100", Parallelism(tp=8)),
        ("qwen3-235b-a22b", "H200", Parallelism(tp=4, dp=2, ep=8)),
        ("deepseek-v3", "H200", Parallelism(tp=8, ep=8)),
    ],
)
def test_moe_catalog_models_run(name, hw, par):
    m, gpu = load_model(name), load_hardware(hw)
    plan = plan_memory(m, gpu, par)
    cost = build_step_cost(m, gpu, par)
    step = cost.step_time(np.array([1, 1, 512]), np.array([100, 3000, 0]))
    assert plan.num_kv_blocks > 0
    assert step.by_group["moe"] > 0 and step.total_s == pytest.approx(
        cost.step_seconds(np.array([1, 1, 512]), np.array([100, 3000, 0])), rel=1e-12
    )


def test_dp_and_ep_rules():
    with pytest.raises(ServesimError) as err:
        Parallelism(tp=1, ep=8)
    assert "--dp 8" in err.value.fix
    with pytest.raises(ServesimError) as err:
        Parallelism(tp=2, dp=2, ep=2)  # wide EP spans every rank: ep = tp·dp
    assert err.value.field == "ep"
    with pytest.raises(ServesimError) as err:
        Parallelism(dp=2).check(llama_3_1_8b())
    assert err.value.field == "dp" and "--replicas" in err.value.fix
    par = Parallelism(tp=2, dp=4, ep=8)
    assert (par.gpus, par.expert_tp, par.all_to_all) == (8, 1, True)
    assert Parallelism(tp=4, dp=2).expert_tp == 4
    assert Parallelism(tp=8, ep=2).expert_tp == 4  # EP inside the TP group, as before


# --- quantisation ----------------------------------------------------------------------------


def test_a_weight_dtype_the_gpu_cannot_run_is_refused():
    a100, m = load_hardware("A100"), llama_3_1_8b()
    with pytest.raises(ServesimError) as err:
        build_step_cost(m, a100, params=CostParams(weight_dtype="fp8"))
    assert err.value.field == "weight_dtype"
    assert "A100-80GB has no fp8 tensor cores" in str(err.value)
    assert "bf16" in err.value.fix and "int8" in err.value.fix and "int4" in err.value.fix
    with pytest.raises(ServesimError, match="no fp4 tensor cores"):
        plan_memory(m, load_hardware("H100"), params=CostParams(weight_dtype="fp4"))
    # int4 is weight-only and runs anywhere; int8 has A100 tensor cores; fp4 on Blackwell.
    build_step_cost(m, a100, params=CostParams(weight_dtype="int4"))
    build_step_cost(m, a100, params=CostParams(weight_dtype="int8"))
    build_step_cost(m, load_hardware("B200"), params=CostParams(weight_dtype="fp4"))
    # A checkpoint's own fp8 runs weight-only where the GPU has no fp8 (vLLM's Marlin path).
    build_step_cost(deepseek_v3(), a100, Parallelism(tp=8))


def test_kv_dtype_must_be_a_cache_format_and_fp8_doubles_capacity():
    with pytest.raises(ServesimError) as err:
        build_step_cost(llama_3_1_8b(), h100(), params=CostParams(kv_dtype="int4"))
    assert err.value.field == "kv_dtype"
    a100 = load_hardware("A100")
    bf16 = plan_memory(llama_3_1_8b(), a100)
    fp8 = plan_memory(llama_3_1_8b(), a100, params=CostParams(kv_dtype="fp8"))  # storage only
    assert fp8.kv_bytes_per_token == bf16.kv_bytes_per_token / 2 == 65536
    assert fp8.kv_capacity_tokens == pytest.approx(2 * bf16.kv_capacity_tokens, rel=0.001)


def test_int4_weights_speed_up_small_batch_decode_only():
    m = llama_3_1_8b()
    bf16 = build_step_cost(m, h100())
    int4 = build_step_cost(m, h100(), params=CostParams(weight_dtype="int4"))
    assert int4.step_seconds(*decode(1)) < 0.5 * bf16.step_seconds(*decode(1))
    prefill = np.array([4096]), np.array([0])
    assert int4.step_seconds(*prefill) == pytest.approx(bf16.step_seconds(*prefill), rel=0.01)


# --- host overhead and CUDA graphs -------------------------------------------------------------


def test_host_time_formula_and_overlap():
    params = CostParams(host_step_s=1e-3, host_per_seq_s=1e-5, host_per_token_s=1e-7)
    cost = build_step_cost(llama_3_1_8b(), h100(), params=params)
    new, ctx = np.array([1, 1, 300]), np.array([10, 20, 0])
    f = cost.features(new, ctx)
    assert cost.host_seconds_from_features(f) == pytest.approx(1e-3 + 3e-5 + 302e-7)
    gpu = cost.gpu_seconds_from_features(f)[0]
    assert cost.step_seconds(new, ctx) == pytest.approx(max(gpu, 1e-3 + 3e-5 + 302e-7) + 1e-4)
    eager = build_step_cost(
        llama_3_1_8b(), h100(), params=dataclasses.replace(params, cuda_graphs=False)
    )
    gpu_eager = eager.gpu_seconds_from_features(f)[0]
    assert gpu_eager > gpu  # kernels wait for the CPU to issue them
    assert eager.step_seconds(new, ctx) == pytest.approx(gpu_eager + 1e-3 + 3e-5 + 302e-7 + 1e-4)


def test_no_cuda_graphs_slows_small_batch_decode_and_large_batches_stay_gpu_bound():
    m = load_model("llama-3.2-1b")
    graphs = build_step_cost(m, h100())
    eager = build_step_cost(m, h100(), params=CostParams(cuda_graphs=False))
    assert eager.step_seconds(*decode(1)) > 2.0 * graphs.step_seconds(*decode(1))
    rows = eager.operator_breakdown(*decode(1))
    assert {r.bound for r in rows if r.group == "norm_other"} == {"launch"}
    # Bigger kernels hide the CPU's issue time: the relative cost shrinks.
    big = eager.step_seconds(*decode(256, 4096)) / graphs.step_seconds(*decode(256, 4096))
    assert big < eager.step_seconds(*decode(1)) / graphs.step_seconds(*decode(1))
    # An 8B model at batch 256 keeps the GPU the bottleneck with CUDA graphs...
    g8 = build_step_cost(llama_3_1_8b(), h100())
    f = g8.features(*decode(256))
    assert g8.host_bound_seconds_from_features(f)[0] == 0.0
    assert 0 < g8.host_seconds_from_features(f) < 0.5 * g8.gpu_seconds_from_features(f)[0]
    # ... while a 1B model at batch 256 waits for its host.
    f1 = graphs.features(*decode(256))
    waits = graphs.host_bound_seconds_from_features(f1)[0]
    assert waits > 0
    groups = graphs.group_seconds_from_features(f1[None])
    assert sum(g[0] for g in groups.values()) == pytest.approx(
        graphs.seconds_from_features(f1), rel=1e-12
    )
    assert groups["overhead"][0] == pytest.approx(1e-4 + waits, rel=1e-9)


# --- power and energy --------------------------------------------------------------------------


def test_power_formula():
    assert gpu_power_watts(700, 70, 0.0) == 70
    assert gpu_power_watts(700, 70, 1.0) == 700
    assert gpu_power_watts(700, 70, 2.0) == 700  # clipped
    # Memory-bound seconds count at the memory weight, compute-bound ones fully.
    assert active_seconds(np.array([1.0]), np.array([0.5]), 0.6)[0] == 1.0
    assert active_seconds(np.array([0.2]), np.array([1.0]), 0.6)[0] == pytest.approx(0.68)
    assert utilisation(np.array([0.5, 1.0]), np.array([1.0, 0.0])).tolist() == [0.5, 0.0]


def test_energy_per_token_falls_with_batch_and_prefill_runs_near_tdp():
    cost = build_step_cost(llama_3_1_8b(), h100())
    hw = cost.hardware

    def joules(new, ctx):
        f = cost.features(new, ctx)
        d = cost.seconds_from_features(f)
        return cost.energy_from_features(f[None], np.array([d]))[0], d

    e1, d1 = joules(*decode(1))
    e64, d64 = joules(*decode(64))
    assert hw.idle_w < e1 / d1 < 0.7 * hw.tdp_w  # memory-bound: well below TDP
    assert e64 / 64 < e1 / 10  # J/token: batching amortises the weight reads
    ep, dp = joules(np.array([8192]), np.array([0]))
    assert ep / dp > 0.9 * hw.tdp_w
    # Vectorised: a span's per-step energies, and an idle step draws idle power.
    durations, feats = cost.decode_span_with_features(np.full(8, 500), 10)
    per_step = cost.energy_from_features(feats, durations)
    assert per_step.shape == (10,)
    summed = cost.energy_from_features(feats.sum(axis=0)[None], np.array([durations.sum()]))
    assert summed[0] == pytest.approx(per_step.sum(), rel=1e-6)
    idle = cost.power_from_features(np.zeros((1, ops.NUM_FEATURES)), np.array([1.0]))[0]
    assert idle == hw.idle_w


def test_pipeline_bubbles_lower_the_average_power():
    m, hw = llama_3_1_8b(), h100()
    flat = build_step_cost(m, hw)
    pp4 = build_step_cost(m, hw, Parallelism(pp=4))
    f = flat.features(*decode(1))
    p1 = flat.power_from_features(f[None], np.array([flat.seconds_from_features(f)]))[0]
    p4 = pp4.power_from_features(f[None], np.array([pp4.seconds_from_features(f)]))[0]
    # Batch 1 cannot be split: each stage works a quarter of the step.
    assert p4 < 0.6 * p1


# --- memory tiers and KV transfer ----------------------------------------------------------


def test_kv_transfer_over_the_host_link():
    hw = load_hardware("H100")
    assert hw.host_link.name == "PCIe Gen5 x16" and hw.host_link.bandwidth == 63e9
    assert hw.cpu_memory_bytes == 256 * 2**30
    plan = plan_memory(llama_3_1_8b(), hw)
    secs = kv_transfer_seconds(1000, plan.kv_bytes_per_token, hw.host_link)
    assert secs == pytest.approx(1000 * 131072 / (63e9 * HOST_LINK_EFFICIENCY) + 1e-5)
    many = kv_transfer_seconds(np.array([0, 1000, 2000]), 131072, hw.host_link, lanes=2)
    assert many[0] == 0.0 and many[2] - many[1] == pytest.approx(1000 * 131072 / (63e9 * 0.85 * 2))
    with pytest.raises(ServesimError):
        kv_transfer_seconds(1, 1.0, Link("x", 1e9, 0.0), efficiency=0.0)


# --- speculative decoding costs ------------------------------------------------------------


def test_draft_model_costs_k_decode_steps_of_the_draft():
    target, draft, hw = load_model("llama-3.1-8b"), load_model("llama-3.2-1b"), h100()
    cost = draft_cost("draft", target, hw, draft_model=draft)
    ctx = np.array([100, 2000])
    alone = build_step_cost(draft, hw, params=CostParams(step_overhead_s=0.0, **NO_HOST))
    expected = alone.decode_span_seconds(ctx, 4).sum()
    assert cost.propose_seconds(ctx, np.array([4, 4])) == pytest.approx(expected, rel=1e-12)
    # Rows proposing fewer tokens drop out of the later draft steps.
    fewer = cost.propose_seconds(ctx, np.array([4, 2]))
    both = sum(alone.step_seconds(np.ones(2), ctx + j) for j in (0, 1))
    first = sum(alone.step_seconds(np.ones(1), ctx[:1] + j) for j in (2, 3))
    assert fewer == pytest.approx(both + first, rel=1e-12)
    assert cost.weights_bytes_per_gpu == pytest.approx(2 * 1_235_814_400, rel=0.01)
    assert cost.kv_bytes_per_token == 16 * 2 * 8 * 64 * 2
    assert cost.prefill_seconds(np.array([512]), np.array([0])) > 0
    assert not cost.on_host


def test_draft_with_another_vocabulary_is_refused():
    with pytest.raises(ServesimError, match="vocabulary"):
        draft_cost("draft", load_model("llama-3.1-8b"), h100(), draft_model=load_model("qwen3-8b"))
    with pytest.raises(ServesimError):
        draft_cost("medusa", llama_3_1_8b(), h100())
    with pytest.raises(ServesimError):
        draft_cost("draft", llama_3_1_8b(), h100())


def test_eagle_head_is_one_layer_and_the_lm_head():
    target = llama_3_1_8b()
    head = eagle_head(target)
    assert head.num_layers == 1 and head.vocab_size == target.vocab_size
    cost = draft_cost("eagle", target, h100(), Parallelism(tp=2))
    full = build_step_cost(target, h100(), Parallelism(tp=2)).step_seconds(*decode(1))
    one = cost.propose_seconds(np.array([1000]), np.array([1]))
    assert 0.03 * full < one < 0.2 * full  # one layer + LM head out of 32 layers + head
    three = cost.propose_seconds(np.array([1000]), np.array([3]))
    assert three == pytest.approx(3 * one, rel=0.01)
    # Only its layer and the 2d → d projection are new weights.
    layer = 218_112_000 * 2 / 2  # one Llama-8B layer in bf16, split over TP2
    assert cost.weights_bytes_per_gpu == pytest.approx(layer + 2 * 4096 * 4096 * 2 / 2, rel=0.01)
    # MoE targets get an MoE head (DeepSeek's MTP module).
    assert eagle_head(deepseek_v3()).num_moe_layers == 1


def test_ngram_drafting_is_host_time():
    cost = draft_cost("ngram", llama_3_1_8b(), h100())
    assert cost.on_host and cost.cost is None
    secs = cost.propose_seconds(np.array([1000, 3000]), np.array([4, 4]))
    assert secs == pytest.approx(
        8 * NGRAM_SECONDS_PER_DRAFT + 4000 * NGRAM_SECONDS_PER_CONTEXT_TOKEN
    )
    assert cost.prefill_seconds(np.array([10]), np.array([0])) == 0.0
