"""FLOP accounting: the 2 × parameters rule, attention pairs, MLA forms, value head."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from cost_factories import decode as decode_batch
from cost_factories import deepseek_v3, gpt_oss_20b, h100, llama_3_1_8b

from servesim.cost import CostParams, build_step_cost, flops_breakdown
from servesim.cost import features as _F
from servesim.errors import ServesimError
from servesim.hardware import load_hardware

LINEAR = ("qkv_o", "mlp", "moe", "head")


def _linear_flops(step) -> float:
    return sum(v for g, v in step.flops_by_group.items() if g in LINEAR)


def test_decode_linear_flops_are_twice_the_linear_parameters_of_llama_8b():
    cost = build_step_cost(llama_3_1_8b(), h100())
    step = cost.step_time(np.array([1]), np.array([0]))
    # Per layer: q,k,v = 4096 × (32 + 2·8)·128 = 25,165,824; o = 4096·4096 = 16,777,216;
    # gate, up, down = 3 · 4096 · 14336 = 176,160,768  → 218,103,808 per layer.
    # 32 layers = 6,979,321,856; LM head 128256 · 4096 = 525,336,576.
    linear_params = 32 * 218_103_808 + 525_336_576
    assert linear_params == 7_504_658_432
    assert _linear_flops(step) == 2 * linear_params
    # Attention at zero context: 1 pair × 4 · 32 heads · 128 · 32 layers.
    assert step.flops_by_group["attention"] == 4 * 32 * 128 * 32


def test_linear_flops_match_the_model_parameter_count():
    # params_active = linear params + embedding + norms (+ attention sinks, none here).
    m = llama_3_1_8b()
    step = build_step_cost(m, h100()).step_time(np.array([1]), np.array([0]))
    norms = 32 * 2 * 4096 + 4096
    embedding = 128256 * 4096
    assert _linear_flops(step) == 2 * (m.params_active - embedding - norms)


@pytest.mark.parametrize("factory", [deepseek_v3, gpt_oss_20b])
def test_moe_and_mla_decode_follow_the_two_n_rule(factory):
    """At batch 1 and zero context: 2 × active non-embedding linear parameters, with the
    router in full and only the top-k experts (MLA's absorbed form included)."""
    m = factory()
    step = build_step_cost(m, h100()).step_time(np.array([1]), np.array([0]))
    b = m.params_breakdown(active=True)
    sinks = m.num_layers * m.num_attention_heads if m.attention_sinks else 0
    linear = b["attention"] - sinks + b["mlp"] + b["moe_experts"] + b["router"] + b["lm_head"]
    assert _linear_flops(step) == pytest.approx(2 * linear, rel=1e-12)


def test_fused_mla_down_projection_is_one_gemm_with_the_same_flops_and_bytes():
    """q_a and kv_a stacked (SGLang 0.4.6+, vLLM 0.10+, TensorRT-LLM): one operator of
    7168 × (1536 + 576) weights, the same FLOPs and weight bytes as the two, one launch fewer."""
    m, hw = deepseek_v3(), h100()
    two = build_step_cost(m, hw, params=CostParams(kernel_tables=False))
    one = build_step_cost(m, hw, params=CostParams(kernel_tables=False, mla_fused_down_proj=True))
    names = {op.name: op for op in one.operators}
    assert "q_a_proj" not in names and "kv_a_proj" not in names
    assert names["qkv_a_proj"].shape == (1536 + 576, 7168)
    assert {"q_a_proj", "kv_a_proj"} <= {op.name for op in two.operators}
    new, ctx = np.array([4]), np.array([1000])
    a, b = two.step_time(new, ctx), one.step_time(new, ctx)
    assert b.flops_by_group["qkv_o"] == a.flops_by_group["qkv_o"]
    # The same weights; the hidden states (4 rows × 7168, bf16) are read once, not twice.
    once = 61 * 4 * 7168 * 2
    assert b.bytes_by_group["qkv_o"] == a.bytes_by_group["qkv_o"] - once
    # One launch (and one small-m fixed cost) fewer per layer.
    assert 0 < a.total_s - b.total_s
    measured = CostParams(kernel_tables=True)
    fused_measured = CostParams(kernel_tables=True, mla_fused_down_proj=True)
    b200 = load_hardware("B200")
    saved = build_step_cost(m, b200, params=measured).step_seconds(new, ctx) - build_step_cost(
        m, b200, params=fused_measured
    ).step_seconds(new, ctx)
    assert 61 * 3e-6 < saved < 61 * 20e-6  # a small-m GEMM's fixed cost, once a layer


def test_materialized_mla_absorption_moves_decode_rows_onto_the_absorbed_weights():
    """vLLM 0.7.x: a decode row multiplies q_c (1536) by W_Q_UK (1536 × 128·512) and W_QR
    (1536 × 128·64, bf16) and the latent output (128·512) by W_UV_O (→ 7168); prompt rows keep
    q_b_proj and o_proj. Hand-counted at TP1, one decode row, zero context."""
    m, hw = deepseek_v3(), h100()
    plain = build_step_cost(m, hw, params=CostParams(kernel_tables=False))
    mat = build_step_cost(m, hw, params=CostParams(kernel_tables=False, mla_materialized=True))
    names = {op.name for op in mat.operators}
    assert {"w_q_uk", "w_qr", "w_uv_o"} <= names
    assert not {"kv_b_absorbed_q", "kv_b_absorbed_o"} & names
    decode = (np.array([1]), np.array([0]))
    a, b = plain.step_time(*decode), mat.step_time(*decode)
    # Per layer: plain q_b (1536·128·192) + W_UK (128·128·512) + W_UV (128·512·128) + o_proj
    # (128·128·7168); materialized W_Q_UK (1536·128·512) + W_QR (1536·128·64) + W_UV_O
    # (128·512·7168).
    plain_layer = 1536 * 128 * 192 + 2 * 128 * 128 * 512 + 128 * 128 * 7168
    mat_layer = 1536 * 128 * 576 + 128 * 512 * 7168
    diff = 2 * 61 * (mat_layer - plain_layer)
    assert b.flops_by_group["qkv_o"] - a.flops_by_group["qkv_o"] == pytest.approx(diff, rel=1e-12)
    assert b.total_s > a.total_s
    # A prompt-only step runs the same operators' work either way.
    prompt = (np.array([512]), np.array([0]))
    pa, pb = plain.step_time(*prompt), mat.step_time(*prompt)
    assert pb.flops_by_group == pytest.approx(pa.flops_by_group, rel=1e-12)
    assert pb.total_s == pytest.approx(pa.total_s, rel=1e-9)


def test_deepseek_glue_kernels_cost_their_launches_only():
    """(10, 5) glue kernels on DeepSeek-V3 (61 MLA layers, 58 MoE layers): a CUDA-graph decode
    step grows by (10·61 + 5·58) kernels × 4 µs = 3.6 ms, with the same FLOPs and bytes; a step
    without CUDA graphs also pays the CPU's 30 µs issue per kernel; a model without MLA gets
    none."""
    m, hw = deepseek_v3(), h100()
    base = dict(kernel_tables=False, cuda_graphs=True)
    plain = build_step_cost(m, hw, params=CostParams(**base))
    glued = build_step_cost(m, hw, params=CostParams(**base, deepseek_glue_kernels=(10, 5)))
    a, b = plain.step_time(*decode_batch(4)), glued.step_time(*decode_batch(4))
    kernels = 10 * 61 + 5 * 58
    assert b.total_s - a.total_s == pytest.approx(kernels * hw.kernel_launch_s, rel=1e-9)
    assert b.flops_by_group == a.flops_by_group
    assert b.bytes_by_group == a.bytes_by_group
    eager = dict(kernel_tables=False, cuda_graphs=False)
    pe = build_step_cost(m, hw, params=CostParams(**eager)).step_time(*decode_batch(4))
    ge = build_step_cost(
        m, hw, params=CostParams(**eager, deepseek_glue_kernels=(10, 5))
    ).step_time(*decode_batch(4))
    issue = CostParams().eager_launch_s
    assert ge.total_s - pe.total_s == pytest.approx(
        kernels * max(hw.kernel_launch_s, issue), rel=0.05
    )
    llama = llama_3_1_8b()
    lp = build_step_cost(llama, hw, params=CostParams(**base))
    lg = build_step_cost(llama, hw, params=CostParams(**base, deepseek_glue_kernels=(10, 5)))
    assert lg.step_time(*decode_batch(4)).total_s == lp.step_time(*decode_batch(4)).total_s
    with pytest.raises(ServesimError, match="deepseek_glue_kernels"):
        CostParams(deepseek_glue_kernels=(1.0, -1.0))


def test_prefill_attention_flops_of_one_1024_token_prompt():
    cost = build_step_cost(llama_3_1_8b(), h100())
    step = cost.step_time(np.array([1024]), np.array([0]))
    # Causal pairs: 1024 · 1025 / 2 = 524,800. Per pair and head: QKᵀ 2·128 + PV 2·128 FLOPs.
    pairs = 1024 * 1025 // 2
    assert step.flops_by_group["attention"] == 4 * 128 * 32 * pairs * 32 == 275_146_342_400


def test_chunk_attention_counts_the_context():
    cost = build_step_cost(llama_3_1_8b(), h100())
    # A 256-token chunk after 1000 cached tokens: 256·1000 + 256·257/2 pairs.
    step = cost.step_time(np.array([256]), np.array([1000]))
    assert step.flops_by_group["attention"] == 4 * 128 * 32 * 32 * (256 * 1000 + 256 * 257 // 2)


def _window_pairs(c: int, n: int, w: int) -> int:
    return sum(min(q, w) for q in range(c + 1, c + n + 1))


@pytest.mark.parametrize("c,n", [(0, 1), (0, 100), (0, 300), (50, 100), (127, 1), (500, 7)])
def test_sliding_window_caps_the_attended_span(c, n):
    m = gpt_oss_20b()
    step = build_step_cost(m, h100()).step_time(np.array([n]), np.array([c]))
    per_pair = 4 * 64 * 64  # 4 × heads × head_dim
    full = n * c + n * (n + 1) // 2
    expected = per_pair * (12 * full + 12 * _window_pairs(c, n, 128))
    assert step.flops_by_group["attention"] == expected


def test_mla_uses_its_own_widths_absorbed_for_decode_and_regular_for_prefill():
    m = deepseek_v3()
    cost = build_step_cost(m, h100())
    decode = cost.step_time(np.array([1]), np.array([999]))
    # Absorbed: MQA over the latent; per pair and head 2·(512 + 64) for QKᵀ and 2·512 for PV.
    assert decode.flops_by_group["attention"] == 61 * 128 * 1000 * 2 * (576 + 512)
    prefill = cost.step_time(np.array([1000]), np.array([0]))
    # Regular: per pair and head 2·(128 + 64) for QKᵀ and 2·128 for PV.
    assert prefill.flops_by_group["attention"] == 61 * 128 * (1000 * 1001 // 2) * 2 * (192 + 128)


def _absorbed_pairs_flops(pairs: int) -> int:
    return 61 * 128 * pairs * 2 * (576 + 512)


def _regular_pairs_flops(pairs: int) -> int:
    return 61 * 128 * pairs * 2 * (192 + 128)


def test_sglang_runs_a_prompt_batch_with_a_short_prefix_absorbed():
    """SGLang picks one MLA form per prompt batch from its rows' cached prefix: absorbed when
    the sum is above 0 and below the threshold (FA3: 8192), regular otherwise; a decode row
    is absorbed either way. Pairs by hand: a 512-token chunk after 1,000 cached tokens has
    512·1000 + 512·513/2 (query, key) pairs."""
    m = deepseek_v3()
    fa3 = build_step_cost(m, h100(), params=CostParams(mla_prompt_absorb_below=8192.0))
    chunk_pairs = 512 * 1000 + 512 * 513 // 2
    step = fa3.step_time(np.array([512]), np.array([1000]))
    assert step.flops_by_group["attention"] == _absorbed_pairs_flops(chunk_pairs)
    # No prefix at all: the regular form (and the same as without the rule).
    fresh = fa3.step_time(np.array([512, 300]), np.array([0, 0]))
    fresh_pairs = 512 * 513 // 2 + 300 * 301 // 2
    assert fresh.flops_by_group["attention"] == _regular_pairs_flops(fresh_pairs)
    # At the threshold the prefix is up-projected in chunks: regular again.
    long = fa3.step_time(np.array([512]), np.array([8192]))
    assert long.flops_by_group["attention"] == _regular_pairs_flops(512 * 8192 + 512 * 513 // 2)
    # Triton (no upper bound): absorbed at any prefix; every row of the batch goes with it,
    # the prompt without a prefix too.
    triton = build_step_cost(m, h100(), params=CostParams(mla_prompt_absorb_below=float("inf")))
    both = triton.step_time(np.array([512, 300]), np.array([8192, 0]))
    pairs = 512 * 8192 + 512 * 513 // 2 + 300 * 301 // 2
    assert both.flops_by_group["attention"] == _absorbed_pairs_flops(pairs)
    # Without the rule (vLLM, TensorRT-LLM) each row goes by its own new tokens.
    plain = build_step_cost(m, h100())
    mixed = plain.step_time(np.array([512, 1]), np.array([1000, 999]))
    assert mixed.flops_by_group["attention"] == _regular_pairs_flops(
        chunk_pairs
    ) + _absorbed_pairs_flops(1000)


def test_a_slower_absorbed_prompt_kernel_stretches_only_the_prompt_rows():
    """SGLang 0.4's Triton extend kernel (``mla_prompt_attention_scale`` s): the prompt rows'
    absorbed (query, key) pairs beyond the KV tokens they read take s times their FLOP time at
    the attention rate; decode rows (as many pairs as KV tokens read) and the FLOPs themselves
    are unchanged. By hand: a step of a 512-token chunk after 1,000 cached tokens and a decode
    row over 999 has 512·1000 + 512·513/2 prompt pairs, 1,000 decode pairs."""
    m = deepseek_v3()
    rule = dict(mla_prompt_absorb_below=float("inf"), kernel_tables=False)
    base = build_step_cost(m, h100(), params=CostParams(**rule))
    slow = build_step_cost(m, h100(), params=CostParams(**rule, mla_prompt_attention_scale=4.0))
    decode = (np.ones(8, dtype=np.int64), np.full(8, 3000))
    assert slow.step_time(*decode).total_s == base.step_time(*decode).total_s
    span = np.full(5, 3000)
    # (Equal up to rounding: x·P_A − x·K_A cancels in floats to within a few ulps.)
    np.testing.assert_allclose(
        slow.decode_span_seconds(span, 20), base.decode_span_seconds(span, 20), rtol=1e-12
    )
    n, c = np.array([512, 1]), np.array([1000, 999])
    before, after = base.step_time(n, c), slow.step_time(n, c)
    assert after.flops_by_group["attention"] == before.flops_by_group["attention"]
    # The stretch covers P_A − K_A: the prompt row's pairs beyond the 1,000 + 512 KV tokens
    # it reads (the decode row's 1,000 pairs and 1,000 KV tokens cancel).
    excess_pairs = 512 * 1000 + 512 * 513 // 2 - (1000 + 512)
    rate = 989.4e12 * base.resolved.attention_efficiency  # (H100 bf16 dense peak)
    extra = (4.0 - 1.0) * _absorbed_pairs_flops(excess_pairs) / rate
    grew = after.by_group["attention"] - before.by_group["attention"]
    assert grew == pytest.approx(extra, rel=1e-9)


def test_short_prompt_rows_run_absorbed_under_a_wider_decode_threshold():
    """vLLM's FlashAttention MLA backend takes rows of up to 512 new tokens as decodes: a
    300-token chunk after 700 cached tokens runs absorbed, a 600-token one regular, in the
    same step (row by row, unlike SGLang's per-batch rule)."""
    m = deepseek_v3()
    cost = build_step_cost(m, h100(), params=CostParams(mla_absorb_max_new_tokens=512))
    step = cost.step_time(np.array([300, 600]), np.array([700, 0]))
    short = 300 * 700 + 300 * 301 // 2
    assert step.flops_by_group["attention"] == _absorbed_pairs_flops(short) + _regular_pairs_flops(
        600 * 601 // 2
    )


def test_a_token_granular_prefix_cache_counts_every_prompt_as_cached():
    """SGLang's radix cache matches the first token every prompt shares: with the floor a
    batch of fresh prompts holds a prefix (absorbed under FA3's rule), without it none; under
    attention data parallelism the test is per rank (the sum over the ranks / dp)."""
    m = deepseek_v3()
    n, c = np.array([200, 100]), np.array([0, 0])
    pairs = 200 * 201 // 2 + 100 * 101 // 2
    floor = CostParams(mla_prompt_absorb_below=8192.0, mla_prompt_prefix_floor=1.0)
    step = build_step_cost(m, h100(), params=floor).step_time(n, c)
    assert step.flops_by_group["attention"] == _absorbed_pairs_flops(pairs)
    feature_map = build_step_cost(m, h100(), params=floor).feature_map
    rank_share = replace(feature_map, dp=8.0)
    # 8 ranks holding 60,000 cached tokens: 7,500 a rank, under the threshold; 70,000: over.
    assert rank_share.step(np.array([100]), np.array([60_000]))[_F.T_A] == 100
    assert rank_share.step(np.array([100]), np.array([70_000]))[_F.T_A] == 0


def test_flops_breakdown_of_a_request():
    m = llama_3_1_8b()
    r = flops_breakdown(m, 1024, 257)
    per_token_linear = 2 * 7_504_658_432
    # Prefill: 1024 tokens through the linear layers, one LM-head row, causal attention.
    linear_prefill = 2 * (32 * 218_103_808) * 1024 + 2 * 525_336_576
    prefill = r["by_component"]
    assert prefill["qkv_o"]["prefill"] + prefill["mlp"]["prefill"] + prefill["head"][
        "prefill"
    ] == pytest.approx(linear_prefill, rel=1e-15)
    assert prefill["attention"]["prefill"] == 275_146_342_400
    # 256 decode steps at contexts 1024..1279: mean pairs per step = 1024 + 127.5 + 1.
    assert r["decode_context_mean"] == 1024 + 127.5
    attn = 4 * 128 * 32 * 32 * (1024 + 127.5 + 1)
    assert r["by_component"]["attention"]["decode_per_token"] == pytest.approx(attn, rel=1e-12)
    linear_decode = sum(r["by_component"][g]["decode_per_token"] for g in ("qkv_o", "mlp", "head"))
    assert linear_decode == pytest.approx(per_token_linear, rel=1e-12)
    assert r["total_flops"] == pytest.approx(
        r["prefill_flops"] + 256 * r["decode_flops_per_token"], rel=1e-12
    )


def test_value_head_replaces_the_vocabulary_projection():
    m = llama_3_1_8b()
    lm = flops_breakdown(m, 100, 1, head="lm")
    value = flops_breakdown(m, 100, 1, head="value")
    # One scored position: d×d + d bias, then d×1 + 1 bias.
    assert value["by_component"]["head"]["prefill"] == 2 * (4096 * 4096 + 4096 + 4096 + 1)
    assert lm["by_component"]["head"]["prefill"] == 2 * 4096 * 128256


def test_value_head_step_has_no_sampler():
    cost = build_step_cost(llama_3_1_8b(), h100(), params=CostParams(head="value"))
    assert "sampler" not in [op.name for op in cost.operators]
    assert "lm_head" not in [op.name for op in cost.operators]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(input_len=0, output_len=1), "input_len"),
        (dict(input_len=1, output_len=0), "output_len"),
        (dict(input_len=1, output_len=1, head="reward"), "head"),
    ],
)
def test_flops_breakdown_rejects_bad_input(kwargs, field):
    with pytest.raises(ServesimError) as err:
        flops_breakdown(llama_3_1_8b(), **kwargs)
    assert err.value.field == field
