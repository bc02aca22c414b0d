"""MoE expert parallelism in the cost model: wide EP with all-to-all, the busiest rank under
skew, small-M tile padding of the expert GEMMs, and the DP/EP rules."""

from __future__ import annotations

import numpy as np
import pytest
from cost_factories import NO_HOST, decode, deepseek_v3, h100, llama_3_1_8b

from servesim.cost import CostParams, Parallelism, build_step_cost, plan_memory
from servesim.cost import features as ops
from servesim.cost.memory import weights_bytes_per_gpu
from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.model import load_model


def test_attention_dp_feeds_the_experts_by_all_gather_or_all_to_all():
    m, hw = deepseek_v3(), load_hardware("H200")
    ep1 = build_step_cost(m, hw, Parallelism(dp=8, ep=1), CostParams(**NO_HOST))
    ep8 = build_step_cost(m, hw, Parallelism(dp=8, ep=8), CostParams(**NO_HOST))
    # A big step hits every expert: each GPU reads an eighth of each of the 256 experts
    # (ep=1, SGLang's DP attention) or 32 whole experts (ep=8): the same bytes.
    new, ctx = np.full(64, 256), np.zeros(64, dtype=int)
    s1, s8 = ep1.step_time(new, ctx), ep8.step_time(new, ctx)
    b1 = sum(r.bytes for r in ep1.operator_breakdown(new, ctx) if r.name == "experts_gate_up")
    b8 = sum(r.bytes for r in ep8.operator_breakdown(new, ctx) if r.name == "experts_gate_up")
    weights = 58 * 7168 * 2 * 2048  # gate+up of one expert in every MoE layer, fp8
    tokens = 64 * 256  # every rank's tokens
    tokens_per_gpu = tokens / 8  # each rank's share of the step
    # ep=1: all 16384 tokens × 8 experts on every GPU, each pair reading its whole input and
    # writing an eighth of the gate+up width; ep=8: the same tokens' pairs spread over 8 GPUs.
    pairs1 = 58 * tokens * 8 * (7168 + 2 * 2048 / 8) * 2
    pairs8 = 58 * tokens_per_gpu * 8 * (7168 + 4096) * 2
    assert b1 == pytest.approx(32 * weights + pairs1, rel=1e-9)
    assert b8 == pytest.approx(32 * weights + pairs8, rel=1e-9)
    # ep=1 (a prompt step): around each of the 61 feed-forwards (dense ones too), every rank's
    # hidden states gathered by a ring all-reduce over 8 GPUs (2 × 7/8 of them) and the output
    # all-reduced back; ep=8: each GPU sends its tokens' k copies, 7/8 leave the GPU, once to
    # dispatch and once to combine, in every MoE layer. bf16.
    gather = 61 * 2 * tokens * 7168 * 2 * 2 * 7 / 8
    a2a = 58 * 2 * tokens_per_gpu * 8 * 7168 * 2 * 7 / 8
    assert s1.comm_bytes == pytest.approx(gather, rel=1e-9)
    assert s8.comm_bytes == pytest.approx(a2a, rel=1e-9)
    # A decode step pads every rank to one length and all-gathers / reduce-scatters: 7/8 each.
    d1 = ep1.step_time(*decode(64))
    assert d1.comm_bytes == pytest.approx(61 * 2 * 64 * 7168 * 2 * 7 / 8, rel=1e-9)
    assert {"ffn_gather", "ffn_scatter"} <= {o.name for o in ep1.operators}
    # Gathered, the whole feed-forward runs on every rank's tokens split over all 8 GPUs.
    shared = [r for r in ep1.operator_breakdown(new, ctx) if r.name == "shared_gate_up"]
    assert shared[0].flops == pytest.approx(58 * 2 * tokens * 7168 * 2 * 2048 / 8, rel=1e-9)
    names = {o.name for o in ep8.operators}
    assert {"moe_dispatch", "moe_combine"} <= names and "all_reduce" not in names
    # Per GPU weights: a replicated attention stack plus an eighth of the experts either way;
    # gathered, the dense MLPs (3 layers) and shared experts are split 8 ways too.
    w1 = weights_bytes_per_gpu(m, hw, Parallelism(dp=8, ep=1))
    w8 = weights_bytes_per_gpu(m, hw, Parallelism(dp=8, ep=8))
    split = (3 * 3 * 7168 * 18432 + 58 * 3 * 7168 * 2048) * 7 / 8  # fp8
    assert w8 - w1 == pytest.approx(split, rel=1e-12)
    assert Parallelism(tp=2, dp=4).expert_tp == 8


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
    assert Parallelism(tp=4, dp=2).expert_tp == 8  # experts split over all tp·dp GPUs
    assert Parallelism(tp=8, ep=2).expert_tp == 4  # EP inside the TP group, as before


def test_a_prompt_chunk_runs_whole_on_one_attention_dp_rank():
    m, hw = deepseek_v3(), load_hardware("H200")
    dp8 = build_step_cost(m, hw, Parallelism(dp=8), CostParams(**NO_HOST))
    tp1 = build_step_cost(m, hw, Parallelism(), CostParams(**NO_HOST))

    def attention(cost, new, ctx):
        return cost.step_time(np.array(new), np.array(ctx)).by_group["attention"]

    # One 2048-token prompt: its rank does all of it while the others wait (T_MAX = T).
    assert attention(dp8, [2048], [0]) == pytest.approx(attention(tp1, [2048], [0]), rel=1e-12)
    # Eight 1024-token prompts: one per rank.
    assert attention(dp8, [1024] * 8, [0] * 8) == pytest.approx(
        attention(tp1, [1024], [0]), rel=1e-12
    )
    # A prompt chunk beside decodes: the busiest rank takes (nearly) the whole step.
    f = dp8.features(np.array([2048] + [1] * 7), np.array([0] + [500] * 7))
    assert f[ops.T_MAX] == 2048.0
    assert dp8.features(*decode(64))[ops.T_MAX] == 8.0
    assert tp1.features(*decode(64))[ops.T_MAX] == 0.0  # (dp = 1: not recorded)


def test_attention_dp_prices_the_gathered_experts_from_the_tp_table():
    m, hw = load_model("deepseek-v3"), load_hardware("H200")
    params = CostParams(kernel_tables=True, moe_backend="sglang", **NO_HOST)
    dp8 = build_step_cost(m, hw, Parallelism(dp=8), params)
    tp8 = build_step_cost(m, hw, Parallelism(tp=8), params)
    new, ctx = np.full(8, 512), np.zeros(8, dtype=int)

    def experts(cost):
        rows = cost.operator_breakdown(new, ctx)
        return sum(r.seconds for r in rows if r.name.startswith("experts_") and "act" not in r.name)

    # The same measured fused-MoE layer (tp 8 × 256 experts) on the same 4096 tokens.
    assert experts(dp8) == pytest.approx(experts(tp8), rel=1e-12)
    rung = dp8.rung_seconds_from_features(dp8.features(new, ctx))
    assert rung["measured"][0] > 0.3 * sum(v[0] for v in rung.values())
