"""Command-line flags over a scenario's fields (``servesim.scenario_overlay``), without typer.

Exact results: the fields each flag sets, how sections and workloads merge with a file's, and
the one-line error of each bad flag value or combination.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.errors import ServesimError
from servesim.scenario import build_scenario
from servesim.scenario_overlay import (
    OPTIONS,
    SCENARIO_OPTIONS,
    SECTION_OPTIONS,
    WORKLOAD_OPTIONS,
    given,
    merge_workload,
    named_workload,
    overlay,
    parse_length,
    parse_rate,
    parse_time_window,
    workload_flags,
)


def error(options: dict, base: dict | None = None) -> str:
    with pytest.raises(ServesimError) as err:
        overlay(base or {}, options)
    return str(err.value)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\n")
    return path


# --- scenario fields and sections ------------------------------------------------------------


def test_given_keeps_what_was_set():
    assert given(a=None, b=0, c=False, d="") == {"b": 0, "c": False, "d": ""}


def test_no_flags_leave_the_base_as_it_is():
    base = {"tp": 2, "scheduler": {"max_num_seqs": 8}, "workload": {"preset": "code"}}
    assert overlay(base, {}) == base
    assert overlay({}, {name: None for name in OPTIONS}) == {}


def test_flags_set_the_fields_of_the_same_name_over_the_base():
    got = overlay({"tp": 2, "seed": 1}, {"tp": 4, "calibration": Path("c.yaml"), "out": "x"})
    assert got == {"tp": 4, "seed": 1, "calibration": "c.yaml"}  # "out" is no scenario field


def test_section_flags_merge_field_by_field():
    base = {"scheduler": {"policy": "sarathi", "max_num_seqs": 64},
            "speculative": {"method": "ngram"}}  # fmt: skip
    got = overlay(base, {"max_num_seqs": 128, "prefix_caching": False, "spec_mode": "baseline"})
    assert got == {
        "scheduler": {"policy": "sarathi", "max_num_seqs": 128, "enable_prefix_caching": False},
        "speculative": {"method": "ngram", "mode": "baseline"},
    }


def test_a_speculative_flag_without_a_method_names_speculative():
    assert error({"spec_mode": "cpu_verify"}) == (
        "--speculative: --spec-mode shapes speculative decoding, which is off (add "
        "--speculative ngram, eagle or draft:MODEL)"
    )
    assert error({"goodput": ["ttft:500", "ttft:100"]}) == (
        "--goodput: ttft is given twice (500 and 100 ms) (give each target once)"
    )


def test_goodput_is_the_slo_section_in_vllms_spelling():
    got = overlay({}, {"slo_ttft_ms": 500.0, "goodput": ["tpot:50", "e2el:2000,ttft:500"]})
    assert got == {"slo": {"ttft_ms": 500.0, "tpot_ms": 50.0, "e2el_ms": 2000.0}}
    assert error({"slo_ttft_ms": 400.0, "goodput": ["ttft:500"]}) == (
        "--goodput: ttft is 500 ms here and 400 ms in --slo-ttft-ms (give each target once)"
    )
    assert error({"goodput": ["itl:30"]}).startswith("--goodput: 'itl:30' is not METRIC:MS")


def test_the_option_tables_name_every_option_once():
    sections = [o for fields in SECTION_OPTIONS.values() for o in fields]
    names = [*SCENARIO_OPTIONS, *sections, "goodput", *WORKLOAD_OPTIONS]
    assert len(names) == len(set(names)) == len(OPTIONS)


def test_an_overlay_builds_the_scenario_the_flags_describe():
    sc = build_scenario(overlay({"tp": 2}, {"replicas": 3, "max_num_seqs": 32, "rate": "7"}))
    assert (sc.tp, sc.replicas, sc.scheduler.max_num_seqs) == (2, 3, 32)
    assert (sc.workload.arrival.kind, sc.workload.arrival.rate) == ("poisson", 7.0)


# --- the workload ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "arrival"),
    [
        ({"rate": "10"}, {"kind": "poisson", "rate": 10.0}),
        ({"rate": "10", "burstiness": 1.0}, {"kind": "poisson", "rate": 10.0}),
        ({"rate": "10", "burstiness": 0.5}, {"kind": "gamma", "rate": 10.0, "burstiness": 0.5}),
        ({"rate": "inf"}, {"kind": "burst"}),
        ({"concurrency": 4}, {"kind": "closed", "concurrency": 4}),
    ],
)
def test_rate_burstiness_and_concurrency_are_the_arrival_process(options, arrival):
    assert workload_flags(options) == {"arrival": arrival}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 4, "rate": "10"}, "--concurrency (a closed loop of users) and --rate"),
        ({"concurrency": 4, "max_concurrency": 2}, "--max-concurrency: --concurrency is a closed"),
        ({"burstiness": 2.0}, "--burstiness needs --rate (e.g. --rate 10)"),
        ({"rate": "inf", "burstiness": 2.0}, "--burstiness shapes the gaps"),
        ({"rate": "fast"}, "--rate: 'fast' is not a number (e.g. 10 or inf)"),
        ({"rate": "0"}, "--rate: is 0; must be > 0 requests/s"),
        ({"time_window": "5:1"}, "--time-window: '5:1' is not START:END with 0 <= START < END"),
        ({"input_len": "lognormal:median"}, "--input-len: 'median' is not key=value"),
        ({"replay": "no/such/trace.csv"}, "--replay: trace file no/such/trace.csv does not exist"),
    ],
)
def test_each_bad_workload_flag_is_one_error_naming_it(options, message):
    assert error(options).startswith(message)


def test_workload_flags_merge_into_the_files_workload():
    base = {"workload": {"preset": "code", "num_requests": 50, "max_concurrency": 8}}
    got = overlay(base, {"workload": "conversation", "rate": "5", "time_window": "0:60.5"})
    assert got["workload"] == {
        "preset": "conversation",
        "num_requests": 50,
        "max_concurrency": 8,
        "time_window": (0.0, 60.5),
        "arrival": {"kind": "poisson", "rate": 5.0},
    }


def test_both_lengths_replace_the_files_preset():
    got = overlay(
        {"workload": {"preset": "code", "num_requests": 5}},
        {"input_len": "lognormal:median=800,sigma=1.5", "output_len": "128"},
    )
    assert got["workload"] == {
        "num_requests": 5,
        "input_len": {"kind": "lognormal", "median": 800, "sigma": 1.5},
        "output_len": 128,
    }
    one = overlay({"workload": {"preset": "code"}}, {"output_len": "64"})
    assert one["workload"] == {"preset": "code", "output_len": 64}


def test_a_replay_replaces_a_synthetic_workload_but_its_name(trace):
    base = {"workload": {"name": "mine", "preset": "code", "num_requests": 5}}
    got = overlay(base, {"replay": trace, "num_requests": 20, "rate_scale": 2.0})
    assert got["workload"] == {
        "name": "mine",
        "trace": str(trace),
        "max_requests": 20,
        "rate_scale": 2.0,
    }
    assert error({"replay": trace, "workload": "code"}).startswith(
        "--workload names a synthetic workload; a replay brings its own"
    )


def test_num_requests_over_a_files_trace_caps_it(trace):
    got = overlay({"workload": {"trace": str(trace)}}, {"num_requests": 7})
    assert got["workload"] == {"trace": str(trace), "max_requests": 7}


def test_a_workload_that_is_not_a_mapping_is_kept_for_validation_to_name():
    assert overlay({"workload": 5}, {"num_requests": 3}) == {"workload": 5}
    assert merge_workload(None, {"num_requests": 3}) == {"num_requests": 3}


def test_a_workload_file_replaces_the_files_workload(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("workload:\n  preset: code\n  num_requests: 7\n")
    base = {"workload": {"preset": "sharegpt", "max_concurrency": 3}}
    got = overlay(base, {"workload": str(path), "rate": "2"})
    assert got["workload"] == {
        "preset": "code",
        "num_requests": 7,
        "arrival": {"kind": "poisson", "rate": 2.0},
    }
    assert error({"workload": str(tmp_path / "none.yaml")}).startswith(
        f"--workload: workload file {tmp_path / 'none.yaml'} does not exist"
    )


def test_a_named_workload_is_whole_with_its_request_count(tmp_path, trace):
    assert named_workload("code") == {"preset": "code"}
    assert named_workload("code", 10) == {"preset": "code", "num_requests": 10}
    path = tmp_path / "replay.yaml"
    path.write_text(f"trace: {trace}\n")
    assert named_workload(str(path), 10) == {"trace": str(trace), "max_requests": 10}


# --- flag syntax --------------------------------------------------------------------------------


def test_lengths_rates_and_windows_parse_exactly():
    assert parse_length(" 512 ", "--input-len") == 512
    assert parse_length("code", "--input-len") == "code"
    assert parse_length("uniform:lo=1,hi=2.5,path=x", "--input-len") == {
        "kind": "uniform",
        "lo": 1,
        "hi": 2.5,
        "path": "x",
    }
    assert parse_rate("inf") == float("inf") and parse_rate("2.5") == 2.5
    assert parse_time_window("600:1200") == (600.0, 1200.0)
    with pytest.raises(ServesimError, match="--rate: is nan"):
        parse_rate("nan")
