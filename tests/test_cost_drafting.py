"""Drafting costs of speculative decoding: draft models, EAGLE heads, n-gram drafting."""

from __future__ import annotations

import numpy as np
import pytest
from cost_factories import NO_HOST, decode, deepseek_v3, h100, llama_3_1_8b

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost.speculative import (
    NGRAM_SECONDS_PER_CONTEXT_TOKEN,
    NGRAM_SECONDS_PER_DRAFT,
    draft_cost,
    eagle_head,
)
from servesim.errors import ServesimError
from servesim.model import load_model


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
