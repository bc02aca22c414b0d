"""Random valid scenarios through the whole stack (fleet, routers, engines, KV pressure,
offload, speculation, P/D, PP, multi-turn, client concurrency caps, read and stream intervals):
every run ends, every request is completed or skipped with a reason, and the compiled kernels
give the reference path's figures.

The engine's own property tests draw scheduler knobs on a stand-in cost model; this one draws
what a user writes in a scenario. (A scenario the fleet refuses, e.g. weights that do not fit,
is discarded: that path is the input-fuzzing tests'.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from servesim.cost.compiled import numba_available
from servesim.errors import ServesimError
from servesim.run import simulate
from servesim.scenario import build_scenario

MODELS = ["llama3.1-8b", "mistralai/Mixtral-8x7B-v0.1", "openai/gpt-oss-120b", "Qwen/Qwen3-8B"]
GPUS = ["H100", "A100-80GB", "L40S", "B200", "MI300X"]


@st.composite
def scenarios(draw) -> dict:
    arrival = draw(
        st.sampled_from(
            [
                {"kind": "poisson", "rate": 5.0},
                {"kind": "poisson", "rate": 50.0},
                {"kind": "burst"},
                {"kind": "closed", "concurrency": 6},
            ]
        )
    )
    workload = {
        "num_requests": draw(st.integers(1, 60)),
        "preset": draw(st.sampled_from(["conversation", "code", "sharegpt"])),
        "arrival": arrival,
    }
    if draw(st.booleans()):
        workload["multi_turn"] = {"turns": 3}
    if arrival["kind"] != "closed" and draw(st.integers(0, 3)) == 0:
        workload["max_concurrency"] = draw(st.integers(1, 8))  # (a client-side cap)
    scenario = {
        "model": draw(st.sampled_from(MODELS)),
        "hardware": draw(st.sampled_from(GPUS)),
        "tp": draw(st.sampled_from([1, 2, 4])),
        "engine": draw(st.sampled_from(["vllm", "vllm-v0", "sglang", "trtllm", "lmdeploy"])),
        "replicas": draw(st.sampled_from([1, 2])),
        "router": draw(st.sampled_from(["round_robin", "least_outstanding", "prefix_affinity"])),
        "workload": workload,
        "scheduler": {
            "kv_cache_tokens": draw(st.sampled_from([4000, 20000, None])),
            "admission": draw(st.sampled_from(["greedy", "reserve", "guaranteed"])),
            "enable_prefix_caching": draw(st.booleans()),
        },
    }
    if scenario["scheduler"]["kv_cache_tokens"] is None:
        del scenario["scheduler"]["kv_cache_tokens"]
    # (SGLang's read and stream intervals, a small token budget: spans stop, prompts chunk)
    for knob, values in (
        ("recv_interval", [1, 1, 1, 10]),
        ("stream_interval", [1, 1, 1, 30]),
        ("max_num_batched_tokens", [None, None, 64, 2048]),
    ):
        value = draw(st.sampled_from(values))
        if value is not None:
            scenario["scheduler"][knob] = value
    extra = draw(st.sampled_from(["none", "offload", "speculative", "pp", "disaggregate"]))
    if extra == "offload":
        scenario["kv_offload"] = True
    elif extra == "speculative":
        scenario["speculative"] = {"method": "ngram", "num_speculative_tokens": 3}
    elif extra == "pp":
        scenario["pp"] = 2
    elif extra == "disaggregate":
        scenario["disaggregate"] = "1:1"
    return scenario


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=scenarios())
def test_a_random_scenario_runs_to_the_end(spec):
    try:
        ref = simulate(build_scenario({**spec, "compiled": "off"})).summary
    except ServesimError:
        assume(False)  # (refused as a user mistake: not this test's subject)
    requests = spec["workload"]["num_requests"]
    assert ref["completed"] + ref["num_skipped"] == requests
    assert ref["num_skipped"] == sum(ref.get("skipped_reasons", {}).values())
    fast = simulate(build_scenario({**spec, "compiled": "on"})).summary
    # Every figure to the bit (as text: NaN equal), all but the run's own: its wall time, its
    # event count (the compiled path plans spans only a few steps past the next event: a
    # checkpoint is an event) and whether it ran compiled.
    own = {"sim_wall_s", "num_events", "compiled_kernels", "scenario"}
    assert json.dumps({k: v for k, v in fast.items() if k not in own}, sort_keys=True) == (
        json.dumps({k: v for k, v in ref.items() if k not in own}, sort_keys=True)
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=scenarios())
def test_a_random_scenario_fast_forwards_as_it_steps(spec):
    """Fast-forwarded spans give the requests step-by-step simulation gives, to the bit (under
    PP, whose stages' products go through BLAS, to rounding), through the whole stack: the
    engine profiles' CUDA-graph padding (padded rows priced over an empty context at every
    step of a span, as one step prices them), schedule-ahead (a follow-up sent at the instant
    a span starts joins its second step), look-ahead admission, P/D, offload."""
    try:
        fast = simulate(build_scenario({**spec, "compiled": "off", "fast_forward": True}))
    except ServesimError:
        assume(False)
    slow = simulate(build_scenario({**spec, "compiled": "off", "fast_forward": False}))
    a, b = fast.records.request_columns(), slow.records.request_columns()
    ia, ib = np.argsort(a["request_id"]), np.argsort(b["request_id"])
    for column in ("request_id", "output_tokens", "cached_tokens", "preemptions", "instance"):
        np.testing.assert_array_equal(a[column][ia], b[column][ib], err_msg=column)
    # The KV cache's peak as the steps' records show it (a span's record keeps its steps'
    # highest, not its end's: the finished rows freed at the end hide the step before).
    peak = "kv_cache_peak_usage"
    assert fast.summary[peak] == slow.summary[peak]
    # To the bit where steps are priced on the hot path (a step alone and a span's steps in
    # one arithmetic); under PP the stages' products go through BLAS, to rounding.
    exact = spec.get("pp", 1) == 1
    for column in ("first_scheduled_s", "first_token_s", "finish_s"):
        if exact:
            np.testing.assert_array_equal(a[column][ia], b[column][ib], err_msg=column)
        else:
            np.testing.assert_allclose(a[column][ia], b[column][ib], rtol=1e-9, err_msg=column)


@pytest.mark.parametrize(
    "model, dp",
    [("llama3.1-8b", 1), ("mistralai/Mixtral-8x7B-v0.1", 2)],
)
@pytest.mark.parametrize("compiled", ["off", "on"])
def test_lockstep_replicas_fast_forward_as_they_step(model, dp, compiled):
    """Identical replicas behind a round-robin router run in lockstep, so their steps end at
    the same instants, and the order those ties are handled in routes the zero-think
    follow-ups. Fast-forwarded, a span's end is pushed when it starts; stepped, one a step
    before: ties go in instance order either way (not push order), and a span's ends are each
    the previous plus the step, the same bits as stepping (a sum from zero added to the start
    differs in the last place and broke a tie: 9 of 62 first tokens moved)."""
    if compiled == "on" and not numba_available():
        pytest.skip("numba not installed")
    spec = {
        "model": model,
        "hardware": "H100",
        "engine": "sglang",
        "replicas": 3,
        "dp": dp,
        "router": "round_robin",
        "workload": {
            "num_requests": 31,
            "arrival": {"kind": "burst"},
            "input_len": 1,
            "output_len": 3,
            "multi_turn": {"turns": 2, "think_time_s": 0.0},
        },
        "scheduler": {"max_num_seqs": 5, "max_num_batched_tokens": 16},
        "api_server": False,
        "cuda_graphs": False,
        "compiled": compiled,
    }
    runs = [simulate(build_scenario({**spec, "fast_forward": ff})) for ff in (True, False)]
    a, b = (run.records.request_columns() for run in runs)
    ia, ib = np.argsort(a["request_id"]), np.argsort(b["request_id"])
    for column in ("instance", "first_scheduled_s", "first_token_s", "finish_s"):
        np.testing.assert_array_equal(a[column][ia], b[column][ib], err_msg=column)
