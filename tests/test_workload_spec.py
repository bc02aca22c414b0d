"""WorkloadSpec validation: shorthands, defaults and every rejected input."""

from __future__ import annotations

import math

import pytest

from servesim.errors import ServesimError
from servesim.workload import (
    DEFAULT_NUM_REQUESTS,
    DEFAULT_PRESET,
    DEFAULT_RATE_RPS,
    PoissonArrival,
    RequestSpec,
    Session,
    WorkloadSpec,
    parse_workload_spec,
)
from servesim.workload.spec import FixedLength, LognormalLength, PresetLength


def make_spec(**overrides) -> dict:
    base = {"num_requests": 10, "input_len": 100, "output_len": 20}
    base.update(overrides)
    return base


def test_int_and_preset_shorthands():
    spec = parse_workload_spec(make_spec(input_len="conversation", output_len="code.output"))
    assert spec.input_len == PresetLength(name="conversation", role="input")
    assert spec.output_len == PresetLength(name="code", role="output")
    spec = parse_workload_spec(make_spec())
    assert spec.input_len == FixedLength(value=100)


def test_preset_fills_lengths_and_default_arrival_is_poisson():
    spec = parse_workload_spec({"preset": "code", "num_requests": 5})
    assert spec.effective_input_len == PresetLength(name="code", role="input")
    assert spec.effective_output_len == PresetLength(name="code", role="output")
    assert spec.effective_arrival == PoissonArrival(rate=DEFAULT_RATE_RPS)


def test_what_a_synthetic_workload_leaves_out_takes_the_one_default():
    # The same defaults as the CLI with no workload flags (issue 16): filled in, so the
    # scenario echoed in summary.json says what ran.
    empty = parse_workload_spec({})
    assert empty.num_requests == DEFAULT_NUM_REQUESTS == 1000
    assert empty.preset == DEFAULT_PRESET == "conversation"
    assert empty.arrival == PoissonArrival(rate=DEFAULT_RATE_RPS) == PoissonArrival(rate=20.0)
    only_input = parse_workload_spec({"num_requests": 3, "input_len": 100})
    assert only_input.preset == "conversation" and only_input.input_len == FixedLength(100)
    both = parse_workload_spec(make_spec())
    assert both.preset is None  # both lengths given: no preset in it
    replay = parse_workload_spec({"trace": "t.csv"})
    assert replay.num_requests is None and replay.arrival is None  # keeps its timestamps


def test_explicit_length_overrides_preset():
    spec = parse_workload_spec(
        {
            "preset": "code",
            "num_requests": 5,
            "input_len": {"kind": "lognormal", "median": 50, "sigma": 0.5},
        }
    )
    assert isinstance(spec.effective_input_len, LognormalLength)
    assert spec.effective_output_len == PresetLength(name="code", role="output")


def test_spec_is_frozen():
    spec = parse_workload_spec(make_spec())
    with pytest.raises(Exception):  # noqa: B017 (pydantic raises its own ValidationError)
        spec.num_requests = 3


def test_infinite_rate_is_accepted():
    spec = parse_workload_spec(make_spec(arrival={"kind": "poisson", "rate": "inf"}))
    assert math.isinf(spec.arrival.rate)


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"arrival": {"kind": "poisson", "rate": 0}}, "workload.arrival.rate", "> 0"),
        ({"arrival": {"kind": "constant", "rate": -2}}, "workload.arrival.rate", "> 0"),
        (
            {"arrival": {"kind": "gamma", "rate": 1, "burstiness": 0}},
            "workload.arrival.burstiness",
            "> 0",
        ),
        (
            {"arrival": {"kind": "gamma", "rate": 1, "burstiness": -1}},
            "workload.arrival.burstiness",
            "> 0",
        ),
        (
            {"arrival": {"kind": "closed", "concurrency": 0}},
            "workload.arrival.concurrency",
            "must be >= 1 (got 0)",
        ),
        (
            {"arrival": {"kind": "teleport"}},
            "workload.arrival.kind",
            "'teleport' is not a kind here (valid: poisson, gamma, constant, burst, closed)",
        ),
        (
            {"input_len": {"kind": "foo"}},
            "workload.input_len.kind",
            "(valid: fixed, uniform, normal, lognormal, zipf, empirical, quantiles, preset)",
        ),
        ({"input_len": -5}, "workload.input_len", "must be >= 1 (got -5)"),
        ({"output_len": 0}, "workload.output_len", "must be >= 1 (got 0)"),
        ({"input_len": {"kind": "uniform", "lo": 10, "hi": 5}}, "workload.input_len.hi", "below"),
        ({"input_len": {"kind": "normal", "mean": 10, "std": -1}}, "workload.input_len.std", ""),
        (
            {"input_len": {"kind": "lognormal", "median": 0, "sigma": 1}},
            "workload.input_len.median",
            "",
        ),
        ({"input_len": {"kind": "zipf", "a": 1.1}}, "workload.input_len.max", "required"),
        ({"input_len": {"kind": "empirical"}}, "workload.input_len", "exactly one"),
        (
            {"input_len": {"kind": "empirical", "values": [3, 0]}},
            "workload.input_len.values",
            ">= 1",
        ),
        ({"num_requests": 0}, "workload.num_requests", ""),
        (
            {"arrival": {"kind": "closed", "concurrency": 4}, "max_concurrency": 2},
            "workload",
            "a closed loop's concurrency is its cap",
        ),
        ({"max_concurrency": 0}, "workload.max_concurrency", ">= 1"),
        ({"prefix_groups": 4}, "workload", "prefix_groups and prefix_len"),
        (
            {"prefix_groups": 4, "prefix_len": 64, "prefix_fraction": 1.5},
            "workload.prefix_fraction",
            "",
        ),
        ({"rate_scale": 2}, "workload", "only with trace"),
        ({"max_requests": 5}, "workload", "only with trace"),
        ({"colour": "blue"}, "workload.colour", "unknown field"),
        (
            {"multi_turn": {"turns": 3, "think_time_s": -1}},
            "workload.multi_turn.think_time_s",
            "must be >= 0 seconds (got -1)",
        ),
    ],
)
def test_bad_synthetic_specs(overrides, field, words):
    with pytest.raises(ServesimError) as info:
        parse_workload_spec(make_spec(**overrides))
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"trace": "t.csv", "num_requests": 4}, "max_requests"),
        ({"trace": "t.csv", "preset": "code"}, "own lengths"),
        ({"trace": "t.csv", "multi_turn": {"turns": 2}}, "sessions"),
        ({"trace": "t.csv", "trace_format": "parquet"}, "trace_format"),
        ({"trace": "t.csv", "time_window": [10, 5]}, "start_s < end_s"),
        ({"trace": "t.csv", "time_window": [-1, 5]}, "start_s < end_s"),
        ({"trace": "t.csv", "rate_scale": 0}, "rate_scale"),
        (
            {"trace": "t.csv", "rate_scale": 2, "arrival": {"kind": "poisson", "rate": 3}},
            "arrival.rate",
        ),
        ({"trace": "t.csv", "zero_tokens": "ignore"}, "zero_tokens"),
    ],
)
def test_bad_replay_specs(spec, words):
    with pytest.raises(ServesimError, match=words):
        parse_workload_spec(spec)


def test_parse_accepts_a_built_spec():
    spec = WorkloadSpec(num_requests=3, input_len=FixedLength(value=4), output_len=5)
    assert parse_workload_spec(spec) is spec


def test_request_spec_checks_its_fields():
    with pytest.raises(ServesimError, match="input_tokens"):
        RequestSpec(0, 5)
    with pytest.raises(ServesimError, match="output_tokens"):
        RequestSpec(5, 0)
    with pytest.raises(ServesimError, match="at most 2 fit"):
        RequestSpec(20, 12, hash_ids=(1, 2, 3), hash_block_size=16)
    assert RequestSpec(20, 12, hash_ids=(1, 2), hash_block_size=16).num_full_blocks == 2


def test_session_fills_and_checks_think_times():
    turns = (RequestSpec(5, 5), RequestSpec(15, 5), RequestSpec(25, 5))
    assert Session(0, 0.0, turns).think_times_s == (0.0, 0.0)
    with pytest.raises(ServesimError, match="think_times_s"):
        Session(0, 0.0, turns, (1.0,))
    with pytest.raises(ServesimError, match="think_times_s"):
        Session(0, 0.0, turns, (1.0, -2.0))
    with pytest.raises(ServesimError, match="start_s"):
        Session(0, -1.0, turns[:1])
    with pytest.raises(ServesimError, match="turn"):
        Session(0, 0.0, ())
