"""The scheduler and KV-cache knobs are defined once: every layer's default is servesim.knobs's."""

import inspect
from dataclasses import fields

import pytest

from servesim import knobs
from servesim.cost.memory import plan_memory
from servesim.engine import router, scheduler
from servesim.engine.scheduler import SchedulerConfig
from servesim.engines import DEFAULT_ENGINE, engine_profile
from servesim.errors import ServesimError
from servesim.scenario import SchedulerSpec
from servesim.validation import to_data

DEFAULTS = {
    "policy": knobs.POLICY,
    "max_num_batched_tokens": knobs.MAX_NUM_BATCHED_TOKENS,
    "max_num_seqs": knobs.MAX_NUM_SEQS,
    "block_size": knobs.BLOCK_SIZE,
    "enable_prefix_caching": knobs.ENABLE_PREFIX_CACHING,
    "enable_chunked_prefill": knobs.ENABLE_CHUNKED_PREFILL,
    "gpu_memory_utilization": knobs.GPU_MEMORY_UTILIZATION,
}


def test_the_spec_the_engine_and_the_memory_plan_share_the_defaults():
    spec = to_data(SchedulerSpec())
    config = {f.name: f.default for f in fields(SchedulerConfig)}
    plan = {
        name: p.default
        for name, p in inspect.signature(plan_memory).parameters.items()
        if p.default is not inspect.Parameter.empty and p.default is not None
    }
    for name, value in DEFAULTS.items():
        assert spec[name] == value, name
        if name in config:
            assert config[name] == value, name
        if name in plan:
            assert plan[name] == value, name
    # (kv_of_free / kv_of_static / kv_of_total / profiled / sampler say how an engine reads
    # gpu_memory_utilization: the profile's, not knobs; strict is the caller's.)
    modes = {"kv_of_free", "kv_of_static", "kv_of_total", "profiled", "sampler", "strict",
             "graph_reserve"}  # fmt: skip
    assert set(plan) - modes == {"gpu_memory_utilization", "block_size",
                                 "max_num_batched_tokens", "max_num_seqs"}  # fmt: skip


def test_the_default_engine_profile_is_the_defaults():
    profile = engine_profile(DEFAULT_ENGINE)
    for name in ("policy", "max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill",
                 "enable_prefix_caching"):  # fmt: skip
        assert getattr(profile, name) == DEFAULTS[name], name


def test_the_engine_keeps_the_name_lists_it_implements():
    assert scheduler.POLICIES is knobs.POLICIES
    assert router.ROUTERS is knobs.ROUTERS
    assert knobs.POLICY in knobs.POLICIES


@pytest.mark.parametrize("value", [0, -1, 2.5])
def test_a_knob_that_is_not_a_positive_integer_is_named(value):
    with pytest.raises(ServesimError) as err:
        knobs.check_positive_ints(block_size=16, max_num_seqs=value)
    assert err.value.field == "max_num_seqs"
    knobs.check_positive_ints(block_size=16, max_num_seqs=1)
