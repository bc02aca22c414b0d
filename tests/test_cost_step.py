"""Step time: roofline regimes, the decode span, TP, MoE expert reads, breakdown consistency."""

from __future__ import annotations

import numpy as np
import pytest
from cost_factories import deepseek_v3, gpt_oss_20b, h100, llama_3_1_8b, llama_3_1_70b
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.cost import CostParams, Parallelism, build_step_cost, gemm_efficiency
from servesim.cost import features as ops
from servesim.errors import ServesimError

NO_FIXED = CostParams(kernel_launch_s=0.0, step_overhead_s=0.0)


def test_batch_1_decode_of_8b_on_h100_is_memory_bound():
    cost = build_step_cost(llama_3_1_8b(), h100(), params=NO_FIXED)
    step = cost.step_time(np.array([1]), np.array([0]))
    # Weights read once: 2 bytes × 7,504,658,432 linear parameters (the embedding is gathered,
    # one row), at 3.35e12 B/s × 0.8.
    weight_bytes = 2 * 7_504_658_432
    assert step.bytes == pytest.approx(weight_bytes, rel=0.002)  # + activations, norms, KV
    assert step.total_s == pytest.approx(weight_bytes / (3.35e12 * 0.8), rel=0.002)
    assert step.total_s * 1e3 == pytest.approx(5.60, abs=0.01)
    bounds = {c.name: c.bound for c in cost.operator_breakdown(np.array([1]), np.array([0]))}
    assert bounds["gate_up_proj"] == bounds["qkv_proj"] == bounds["lm_head"] == "memory"


def test_8192_token_prefill_is_compute_bound():
    cost = build_step_cost(llama_3_1_8b(), h100(), params=NO_FIXED)
    step = cost.step_time(np.array([8192]), np.array([0]))
    # MLP GEMMs: 2 × 176,160,768 × 32 layers × 8192 tokens, at 989.4e12 × 0.7, slowed by the
    # efficiency curve 8192 / (8192 + 32).
    mlp_flops = 2 * 176_160_768 * 32 * 8192
    assert step.flops_by_group["mlp"] == mlp_flops
    expected = mlp_flops / (989.4e12 * 0.7 * 8192 / (8192 + 32))
    assert step.by_group["mlp"] == pytest.approx(expected, rel=1e-12)
    assert step.total_s > step.flops / (989.4e12 * 0.7)  # nothing runs faster than the peak
    bounds = {c.name: c.bound for c in cost.operator_breakdown(np.array([8192]), np.array([0]))}
    assert bounds["gate_up_proj"] == bounds["attention"] == "compute"


def test_kernel_launches_and_overhead_add_fixed_time():
    base = build_step_cost(llama_3_1_8b(), h100(), params=NO_FIXED)
    full = build_step_cost(llama_3_1_8b(), h100(), params=CostParams(step_overhead_s=1e-4))
    new, ctx = np.array([1]), np.array([0])
    # 10 kernels per layer (2 norms, qkv, rope, cache write + attention, o, gate_up, act, down)
    # plus embedding, final norm, LM head and 3 sampler kernels: 326 × 4 µs, plus 100 µs.
    assert full.step_seconds(new, ctx) - base.step_seconds(new, ctx) == pytest.approx(
        326 * 4e-6 + 1e-4, rel=1e-9
    )
    assert full.step_time(new, ctx).by_group["overhead"] == pytest.approx(1e-4)


def test_gemm_efficiency_curve():
    assert gemm_efficiency(32, 0.8, 32) == pytest.approx(0.4)
    assert gemm_efficiency(8192, 0.8, 32) == pytest.approx(0.8 * 8192 / 8224)
    assert gemm_efficiency(0, 0.8, 32) == 0.0


@pytest.mark.parametrize(
    "factory, par",
    [
        (llama_3_1_8b, Parallelism()),
        (llama_3_1_70b, Parallelism(tp=4)),
        (gpt_oss_20b, Parallelism(tp=2)),
        (deepseek_v3, Parallelism(tp=8)),
    ],
)
def test_decode_span_equals_repeated_steps(factory, par):
    cost = build_step_cost(factory(), h100(), par)
    rng = np.random.default_rng(7)
    # Contexts straddle the 128-token window of gpt-oss as the span advances.
    ctx = np.concatenate([rng.integers(0, 300, 40), [0, 126, 127, 128, 5000]])
    span = cost.decode_span_seconds(ctx, 60)
    steps = np.array([cost.step_seconds(np.ones_like(ctx), ctx + j) for j in range(60)])
    assert span.shape == (60,)
    np.testing.assert_allclose(span, steps, rtol=1e-12, atol=0)
    assert np.all(np.diff(span) >= 0)  # longer contexts never get cheaper


def test_decode_span_of_nothing():
    cost = build_step_cost(llama_3_1_8b(), h100())
    assert cost.decode_span_seconds(np.array([5]), 0).shape == (0,)
    assert cost.decode_span_seconds(np.array([], dtype=int), 3).tolist() == [0.0, 0.0, 0.0]
    assert cost.step_seconds(np.array([], dtype=int), np.array([], dtype=int)) == 0.0


def test_tp2_halves_weight_reads_and_adds_all_reduces():
    m, hw = llama_3_1_8b(), h100()
    one = build_step_cost(m, hw, Parallelism(tp=1), NO_FIXED)
    two = build_step_cost(m, hw, Parallelism(tp=2), NO_FIXED)
    new, ctx = np.array([1]), np.array([0])
    s1, s2 = one.step_time(new, ctx), two.step_time(new, ctx)
    assert s2.bytes == pytest.approx(s1.bytes / 2, rel=0.002)
    assert s1.by_group["comm"] == 0.0
    # 2 all-reduces per layer + 1 after the embedding = 65. Ring: each GPU sends
    # 2(tp−1)/tp × 4096 × 2 bytes = 8192 B at 450e9 × 0.8 B/s, plus 2(tp−1) = 2 hops of 3 µs.
    # The logits gather: (tp−1)/tp × 128256 × 2 B, one hop.
    bw = 450e9 * 0.8
    expected = 65 * (8192 / bw + 2 * 3e-6) + 128256 / bw + 3e-6
    assert s2.by_group["comm"] == pytest.approx(expected, rel=1e-12)
    assert s2.comm_bytes == 65 * 8192 + 128256


def test_tp_beyond_a_node_uses_the_inter_node_link():
    m = llama_3_1_70b()
    hw = h100(gpus_per_node=4)
    cost = build_step_cost(m, hw, Parallelism(tp=8), NO_FIXED)
    step = cost.step_time(np.array([1]), np.array([0]))
    # 161 all-reduces of 2·7/8·8192·2 B over 50e9 × 0.8 B/s with 14 hops of 10 µs each,
    # and a logits gather of 7/8·128256·2 B with 7 hops.
    bw = 50e9 * 0.8
    expected = 161 * (2 * 7 / 8 * 8192 * 2 / bw + 14 * 10e-6) + 7 / 8 * 128256 * 2 / bw + 7e-5
    assert step.by_group["comm"] == pytest.approx(expected, rel=1e-12)


def test_pipeline_stages_send_activations():
    m = llama_3_1_8b()
    cost = build_step_cost(m, h100(), Parallelism(pp=2), NO_FIXED)
    step = cost.step_time(np.array([100]), np.array([0]))
    # One hand-off: hidden states and residual, 100 × 4096 × 2 × 2 B, plus one hop.
    assert step.by_group["comm"] == pytest.approx(100 * 4096 * 4 / (450e9 * 0.8) + 3e-6)


def _expert_bytes(cost, batch: int) -> float:
    rows = cost.operator_breakdown(np.ones(batch, dtype=int), np.full(batch, 100))
    return sum(r.bytes for r in rows if r.name in ("experts_gate_up", "experts_down"))


def test_moe_reads_only_the_experts_its_tokens_hit():
    cost = build_step_cost(deepseek_v3(), h100())
    one, many = _expert_bytes(cost, 1), _expert_bytes(cost, 512)
    # One expert = 3 × 7168 × 2048 fp8 weights (1 byte). Batch 1 hits 8 of 256 experts in each
    # of the 58 MoE layers; batch 512 hits 256·(1 − (1 − 8/256)^512) ≈ 256 of them.
    # Each token-expert pair also reads its input and writes its output in bf16:
    # gate_up 7168 in, 4096 out; down 2048 in, 7168 out.
    expert = 3 * 7168 * 2048
    pair = (7168 + 4096 + 2048 + 7168) * 2
    assert one == pytest.approx(58 * 8 * expert + 58 * 8 * pair, rel=1e-12)
    hit = 256 * (1 - (1 - 8 / 256) ** 512)
    assert hit == pytest.approx(256, rel=1e-6)
    assert many == pytest.approx(58 * hit * expert + 58 * 512 * 8 * pair, rel=1e-12)
    assert many > 20 * one


def test_expected_distinct_experts():
    assert ops.expected_distinct_experts(1, 256, 8) == pytest.approx(8)
    assert ops.expected_distinct_experts(0, 256, 8) == 0
    # Mixtral: 8 experts, top-2; two tokens hit 8·(1 − (6/8)²) = 3.5 experts on average.
    assert ops.expected_distinct_experts(2, 8, 2) == pytest.approx(3.5)


def test_fp8_weights_halve_decode_bytes_and_use_the_fp8_peak():
    m = llama_3_1_8b()
    bf16 = build_step_cost(m, h100(), params=NO_FIXED)
    fp8 = build_step_cost(m, h100(), params=CostParams(weight_dtype="fp8", **_no_fixed()))
    new, ctx = np.array([1]), np.array([0])
    # Block weights halve; the LM head stays bf16.
    lm_head = 2 * 525_336_576
    assert fp8.step_time(new, ctx).bytes - lm_head / 2 == pytest.approx(
        (bf16.step_time(new, ctx).bytes) / 2, rel=0.005
    )
    big = np.array([8192]), np.array([0])
    assert fp8.step_time(*big).by_group["mlp"] == pytest.approx(
        bf16.step_time(*big).by_group["mlp"] * 989.4 / 1978.9, rel=1e-12
    )


def _no_fixed() -> dict:
    return dict(kernel_launch_s=0.0, step_overhead_s=0.0)


@pytest.mark.parametrize("factory", [llama_3_1_8b, gpt_oss_20b, deepseek_v3])
def test_step_time_breakdown_adds_up(factory):
    cost = build_step_cost(factory(), h100(), Parallelism(tp=2))
    new = np.array([1, 1, 1, 512, 37])
    ctx = np.array([10, 200, 3000, 0, 1000])
    step = cost.step_time(new, ctx)
    assert step.total_s == pytest.approx(cost.step_seconds(new, ctx), rel=1e-14)
    assert sum(step.by_group.values()) == pytest.approx(step.total_s, rel=1e-12)
    rows = cost.operator_breakdown(new, ctx)
    assert sum(r.seconds for r in rows) + step.by_group["overhead"] == pytest.approx(
        step.total_s, rel=1e-12
    )
    assert sum(r.flops for r in rows) == pytest.approx(step.flops, rel=1e-12)
    assert step.fidelity == "roofline"
    assert {"qkv_o", "attention", "head", "norm_other", "comm", "overhead"} <= set(step.by_group)


@pytest.mark.parametrize("graphs", [True, False])
def test_the_hot_path_equals_the_breakdown_with_measured_kernels(graphs):
    # With tables, GEMMs are priced from measured curves; without CUDA graphs every operator
    # (the measured ones too) takes at least its kernels' issue time: the one-product hot path
    # must take the same max as the per-operator path, not add the two.
    from servesim.hardware import load_hardware

    hw = load_hardware("H100")
    params = CostParams(cuda_graphs=graphs, kernel_tables=True)
    cost = build_step_cost(llama_3_1_70b(), hw, Parallelism(tp=4), params)
    assert cost.resolved.tables is not None
    for new, ctx in (([512], [0]), ([1] * 64, [1500] * 64), ([1, 1, 300], [900, 20, 0])):
        new, ctx = np.array(new), np.array(ctx)
        f = cost.features(new, ctx)
        by_group = cost.group_seconds_from_features(f[None, :])
        slow = sum(float(v[0]) for v in by_group.values())
        assert cost.step_seconds(new, ctx) == pytest.approx(slow, rel=1e-12)
    span = cost.decode_span_seconds(np.array([1500] * 64), 4)
    one_by_one = [cost.step_seconds(np.ones(64, int), np.full(64, 1500 + j)) for j in range(4)]
    np.testing.assert_allclose(span, one_by_one, rtol=1e-12)


def test_calibrated_params_are_reported_as_such():
    cost = build_step_cost(
        llama_3_1_8b(), h100(), params=CostParams(compute_efficiency=0.5, fidelity="calibrated")
    )
    assert cost.step_time(np.array([1]), np.array([0])).fidelity == "calibrated"


def test_mla_mixed_batch_splits_rows_between_the_two_forms():
    cost = build_step_cost(deepseek_v3(), h100(), Parallelism(tp=8))
    new, ctx = np.array([1, 300, 1]), np.array([50, 20, 7])
    f = cost.features(new, ctx)
    dec = cost.features(new[[0, 2]], ctx[[0, 2]])
    pre = cost.features(new[[1]], ctx[[1]])
    for k in (ops.T_A, ops.P_A, ops.K_A):
        assert f[k] == dec[k] and pre[k] == 0
    for k in (ops.T_R, ops.P, ops.K):
        assert f[k] == pre[k] and dec[k] == 0
    assert f[ops.I_TA] == f[ops.I_TR] == 1.0


def _brute_features(new, ctx, window):
    rows = list(zip(new, ctx, strict=True))
    pairs = sum(n * c + n * (n + 1) // 2 for n, c in rows)
    kv = sum(c + n for n, c in rows)
    sw_pairs = sum(min(q, window) for n, c in rows for q in range(c + 1, c + n + 1))
    # Keys the chunk needs: positions max(1, c + 2 − w) .. c + n.
    sw_kv = sum(c + n - max(0, c + 1 - window) for n, c in rows)
    return pairs, kv, sw_pairs, sw_kv


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 400)), min_size=1, max_size=12))
def test_features_equal_brute_force_sums(rows):
    cost = build_step_cost(gpt_oss_20b(), h100())
    new = np.array([r[0] for r in rows])
    ctx = np.array([r[1] for r in rows])
    f = cost.features(new, ctx)
    pairs, kv, sw_pairs, sw_kv = _brute_features(new.tolist(), ctx.tolist(), 128)
    assert (f[ops.T], f[ops.B]) == (new.sum(), len(rows))
    assert (f[ops.P], f[ops.K], f[ops.P_SW], f[ops.K_SW]) == (pairs, kv, sw_pairs, sw_kv)


def test_step_time_rejects_malformed_batches():
    cost = build_step_cost(llama_3_1_8b(), h100())
    with pytest.raises(ServesimError):
        cost.step_time(np.array([1, 2]), np.array([0]))
    with pytest.raises(ServesimError):
        cost.step_time(np.array([-1]), np.array([0]))


def test_fp4_weights_on_a_gpu_without_fp4_fall_back_to_bf16_compute():
    m = llama_3_1_8b()
    fp4 = build_step_cost(m, h100(), params=CostParams(weight_dtype="int4", **_no_fixed()))
    bf16 = build_step_cost(m, h100(), params=NO_FIXED)
    big = np.array([8192]), np.array([0])
    # Weight-only int4: a quarter of the weight bytes, but the same bf16 FLOP rate.
    assert fp4.step_time(*big).by_group["mlp"] == pytest.approx(
        bf16.step_time(*big).by_group["mlp"], rel=1e-12
    )
