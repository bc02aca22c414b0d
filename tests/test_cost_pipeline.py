"""Pipeline parallelism in the cost model: the schedule formulas, micro-batches, bubbles,
stages that add up to the whole model, and decode spans under PP and DP."""

from __future__ import annotations

import numpy as np
import pytest
from cost_factories import decode, h100, llama_3_1_8b, llama_3_1_70b

from servesim.cost import CostParams, Parallelism, build_step_cost, plan_memory
from servesim.cost import operators as ops
from servesim.cost.coefficients import coefficient_matrices
from servesim.cost.pipeline import bubble_fraction, pipeline_seconds
from servesim.hardware import load_hardware
from servesim.model import load_model


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
