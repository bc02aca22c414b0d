"""Host overhead and CUDA graphs in the cost model: host time per step, overlap with the
GPU, and kernel-issue stalls without graphs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cost_factories import decode, h100, llama_3_1_8b

from servesim.cost import CostParams, build_step_cost
from servesim.model import load_model


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


@pytest.mark.parametrize("pp, graphs", [(1, True), (1, False), (2, True)])
def test_a_runs_totals_read_rungs_groups_and_host_waits_as_the_single_calls_give_them(pp, graphs):
    """The summary reads each record's rungs, groups and host waits in pairs worked out from
    one evaluation of the operators: the same bits as asking for each alone."""
    from servesim.cost import Parallelism

    cost = build_step_cost(
        load_model("llama-3.2-1b"), h100(), Parallelism(pp=pp), CostParams(cuda_graphs=graphs)
    )
    rng = np.random.default_rng(5)
    # Decode batches (a 1B model's large ones wait for the host) and steps with prompt tokens.
    rows = np.array([
        cost.features(rng.integers(1, 300 if i % 2 else 2, size=b), rng.integers(0, 1000, size=b))
        for i, b in enumerate(rng.integers(100, 300, size=40))
    ])  # fmt: skip
    waits = cost.host_bound_seconds_from_features(rows)
    assert (waits > 0).any() or not graphs  # (a 1B model's small batches wait for the host)
    rungs, rung_waits = cost.rungs_and_host_bound_from_features(rows)
    groups, group_waits = cost.groups_and_host_bound_from_features(rows)
    assert rung_waits.tobytes() == group_waits.tobytes() == waits.tobytes()
    alone = cost.rung_seconds_from_features(rows)
    assert list(rungs) == list(alone)
    assert all(rungs[r].tobytes() == alone[r].tobytes() for r in rungs)
    alone = cost.group_seconds_from_features(rows)
    assert all(groups[g].tobytes() == alone[g].tobytes() for g in groups)
