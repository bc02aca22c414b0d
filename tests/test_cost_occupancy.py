"""Prefill attention under-occupancy: a short prompt over few heads per GPU cannot fill the
GPU's SMs with thread blocks, so it runs longer than its FLOPs say (fitted to the measured
prefill tables, held out by head shape)."""

from __future__ import annotations

import numpy as np
import pytest
from cost_factories import h100, llama_3_1_8b, llama_3_1_70b

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost import attention_fit as AF
from servesim.cost.step import QUERY_TILE, occupancy_factor
from servesim.hardware import load_hardware

FILL = 400.0  # thread blocks that fill the GPU, given (the H100 fit is ~430)
BASE = dict(kernel_launch_s=0.0, step_overhead_s=0.0)


def _attention_seconds(cost, n: int, context: int = 0) -> float:
    return cost.step_time(np.array([n]), np.array([context])).by_group["attention"]


def test_factor_by_hand():
    a = np.zeros((3, 17))
    a[:, 0] = 1.0
    # One prompt of 256 tokens: 256/128 + 1 = 3 tiles per head; 50 tiles fill → 50/3.
    a[0, 1], a[0, 4] = 1, 256  # B, T_R
    # 64 prompts of 1,024: 64·8 + 64 = 576 tiles ≥ 50 → 1.
    a[1, 1], a[1, 4] = 64, 64 * 1024
    # A decode step of 4 rows (one token each): no prompt work → 1.
    a[2, 1], a[2, 4] = 4, 4
    np.testing.assert_allclose(occupancy_factor(a, 50.0), [50.0 / 3.0, 1.0, 1.0])
    assert QUERY_TILE == 128


def test_a_short_prompt_on_few_heads_per_gpu_is_stretched_by_hand():
    model, hw = llama_3_1_70b(), h100()
    par = Parallelism(tp=8)  # 64 / 8 = 8 heads per GPU
    on = build_step_cost(model, hw, par, CostParams(attention_fill_ctas=FILL, **BASE))
    off = build_step_cost(model, hw, par, CostParams(attention_fill_ctas=0.0, **BASE))
    n = 512  # 8 heads × (512/128 + 1) = 40 blocks < 400: a factor 10 on the FLOP time
    factor = FILL / 8 / (n / 128 + 1)
    f = on.features(np.array([n]), np.array([0]))
    attn = [i for i, op in enumerate(on.operators) if op.group == "attention"]
    comp_on, mem_on = (x[0, attn] for x in on.operator_sides_from_features(f))
    comp_off, mem_off = (x[0, attn] for x in off.operator_sides_from_features(f))
    np.testing.assert_allclose(comp_on, comp_off * factor, rtol=1e-9)  # (no launches here)
    np.testing.assert_array_equal(mem_on, mem_off)
    # Stretched past its memory side: the attention group now takes the stretched FLOP time.
    assert _attention_seconds(on, n) == pytest.approx(comp_on.sum(), rel=1e-9)
    assert _attention_seconds(on, n) > 5 * _attention_seconds(off, n)
    # The hot path and the breakdown agree.
    total = on.step_time(np.array([n]), np.array([0])).total_s
    assert on.step_seconds(np.array([n]), np.array([0])) == pytest.approx(total, rel=1e-12)


def test_long_prompts_and_decode_steps_are_unchanged():
    model, hw = llama_3_1_8b(), h100()
    on = build_step_cost(model, hw, params=CostParams(attention_fill_ctas=FILL, **BASE))
    off = build_step_cost(model, hw, params=CostParams(attention_fill_ctas=0.0, **BASE))
    # 32 heads × (16384/128 + 1) blocks: full.
    assert _attention_seconds(on, 16384) == _attention_seconds(off, 16384)
    ctx = np.full(8, 3000)
    assert on.step_seconds(np.ones(8, int), ctx) == off.step_seconds(np.ones(8, int), ctx)
    np.testing.assert_array_equal(on.decode_span_seconds(ctx, 50), off.decode_span_seconds(ctx, 50))


SMALL_GRID = ([1.0, 4.0, 32.0], [128.0, 512.0, 2048.0, 8192.0], [8.0, 32.0, 64.0], [0.125, 1.0])
"""72 rows: the fit reads every row at every stage."""
LARGE_GRID = (
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
    [64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0],
    [8.0, 16.0, 32.0, 64.0],
    [0.125, 0.25, 1.0],
)
"""576 rows, more than ``AF._FIT_COARSE_ROWS``: the curve is chosen on a subsample and refined
on every row (an engine's own AIConfigurator table has ~4,400)."""


@pytest.mark.parametrize(
    ("power", "weight", "grid"),
    [(0.0, 0.5, SMALL_GRID), (1.0, 2.0, SMALL_GRID), (1.0, 1.0, LARGE_GRID)],
)
def test_the_fit_recovers_a_known_occupancy_limit(power, weight, grid):
    """A table made with the hard limit (power 0) or the added tail (power 1), and a KV-head
    weight, gives back its efficiency, length term, KV-head weight, fill and power, also where
    the table is larger than the grids read while choosing the curve."""
    assert (len(grid[0]) * len(grid[1]) * len(grid[2]) * len(grid[3]) > AF._FIT_COARSE_ROWS) is (
        grid is LARGE_GRID
    )
    hw = load_hardware("H100")
    peak, launch = hw.peak_flops["bf16"], hw.kernel_launch_s
    b, s, h, share = np.meshgrid(*grid)
    b, s, h, kv = b.ravel(), s.ravel(), h.ravel(), (h * share).ravel()
    flops = 4.0 * b * h * 128 * s * s / 2
    table = {
        "seq_len": s, "batch": b, "num_heads": h, "num_kv_heads": kv,
        "head_dim": np.full_like(s, 128.0), "dtype": np.full(len(s), "bf16"),
        "tflops": np.ones_like(s),
    }  # fmt: skip
    e_true, h_true, fill_true = 0.6, 1000.0, 300.0
    blocks = h * b * (s / 128 + 1)
    occupied = AF.occupancy_stretch(fill_true / blocks, power)
    # (Multi-head rows, 1 KV head per query head, stretch 1 + weight as far as 1/8 of them.)
    stretch = 1 + h_true * (1 + weight * kv / h) / s
    seconds = launch + flops / (peak * e_true) * stretch * occupied
    table["seconds"] = seconds
    table["tflops"] = flops / seconds / 1e12
    e, half, fill, got_power, got_weight, err = AF.fit_prefill(table, peak, launch)
    assert err < 0.02 and got_power == power and got_weight == weight
    assert e == pytest.approx(e_true, abs=0.02)
    assert half == pytest.approx(h_true, rel=0.15)
    assert fill == pytest.approx(fill_true, rel=0.15)
    assert np.allclose(AF.length_stretch(h_true, h, kv, s, weight), stretch)


def test_gpus_with_tables_fit_an_occupancy_limit_and_the_given_knob_wins():
    fit, _ = AF.attention_fit_for(load_hardware("H200"))
    assert fit.fill_ctas > 0
    cost = build_step_cost(llama_3_1_8b(), h100(), params=CostParams(attention_fill_ctas=123.0))
    assert cost.resolved.attention_fill_ctas == 123.0
    roofline = build_step_cost(llama_3_1_8b(), h100(), params=CostParams(kernel_tables=False))
    assert roofline.resolved.attention_fill_ctas == 0.0


def test_kv_heads_lengthen_the_prefill_attention_curve_by_hand():
    # One prompt of n tokens: n(n + 1)/2 causal (query, key) pairs at e of peak, plus the
    # length term's h'·n/2 pairs, h' = h·(1 + 0.5·kv/heads) (attention_fit.length_stretch):
    # the attention takes c·(n + 1 + h'). Same model, 32 query heads: 32 KV heads (MHA,
    # h' = 1.5·h) against 8 (h' = 1.0625·h).
    from dataclasses import replace

    e, h, n = 0.5, 1000.0, 2048
    params = CostParams(
        attention_efficiency=e, attention_half_tokens=h, attention_fill_ctas=0.0, **BASE
    )
    gqa = llama_3_1_8b()
    mha = replace(gqa, num_kv_heads=gqa.num_attention_heads)
    t_gqa = _attention_seconds(build_step_cost(gqa, h100(), params=params), n)
    t_mha = _attention_seconds(build_step_cost(mha, h100(), params=params), n)
    c = t_gqa / (n + 1 + h * (1 + AF.KV_HEAD_WEIGHT * 8 / 32))
    assert t_mha == pytest.approx(c * (n + 1 + 1.5 * h), rel=1e-9)
    # Without the length term both take c·(n + 1).
    flat = replace(params, attention_half_tokens=0.0)
    t_flat = _attention_seconds(build_step_cost(mha, h100(), params=flat), n)
    assert t_flat == pytest.approx(c * (n + 1), rel=1e-9)
