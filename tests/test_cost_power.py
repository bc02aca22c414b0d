"""Power and energy of a step: the power formula, energy per token, pipeline bubbles."""

from __future__ import annotations

import numpy as np
import pytest
from cost_factories import decode, h100, llama_3_1_8b

from servesim.cost import Parallelism, build_step_cost
from servesim.cost import features as ops
from servesim.cost.power import active_seconds, gpu_power_watts, utilisation


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
