"""Capacity: bisection over the arrival rate, tolerance, binding constraint, unreachable SLOs."""

import math
import re

import pytest

from servesim.errors import ServesimError
from servesim.metrics import SLO
from servesim.run import simulate
from servesim.scenario import build_scenario
from servesim.sweep.capacity import find_capacity, with_rate
from servesim.sweep.measure import run_point, slo_values


def make_scenario(rate=10.0, n=150, **fields):
    return build_scenario(
        {"workload": {"preset": "conversation", "num_requests": n,
                      "arrival": {"kind": "poisson", "rate": rate}}, **fields}
    )  # fmt: skip


def fake_evaluate(capacity_rps=20.0, tpot_ms=lambda r: 10 + r, calls=None):
    """An M/M/1-like TTFT (ms) that blows up at ``capacity_rps``; TPOT linear in the rate."""

    def evaluate(scenario):
        r = scenario.workload.arrival.rate
        if calls is not None:
            calls.append(r)
        ttft = 100 / (1 - r / capacity_rps) if r < capacity_rps else math.inf
        values = {"slo_ttft_ms": ttft, "slo_tpot_ms": tpot_ms(r), "slo_e2el_ms": ttft}
        return {"status": "ok", "error": None, "metrics": {**values, "request_throughput": r}}

    return evaluate


def test_bisection_finds_the_boundary_within_the_tolerance():
    # TTFT <= 500 ms  <=>  r <= 16 req/s exactly.
    cap = find_capacity(make_scenario(), SLO(ttft_ms=500), tolerance=0.02,
                        evaluate=fake_evaluate())  # fmt: skip
    assert cap.rate <= 16.0 < cap.upper_rate
    assert cap.upper_rate / cap.rate - 1 <= 0.02
    assert cap.rate >= 16.0 / 1.02
    assert cap.binding == "ttft_ms"
    assert cap.at_capacity.ok and not cap.above_capacity.ok


def test_the_binding_constraint_is_the_one_that_fails_first():
    # TPOT = 10 + r <= 22 fails above 12 req/s, before TTFT (16 req/s).
    cap = find_capacity(make_scenario(), SLO(ttft_ms=500, tpot_ms=22),
                        evaluate=fake_evaluate())  # fmt: skip
    assert cap.binding == "tpot_ms"
    assert cap.rate <= 12.0 < cap.upper_rate


def test_search_starts_at_the_scenario_rate_and_brackets_both_ways():
    calls = []
    find_capacity(make_scenario(rate=2.0), SLO(ttft_ms=500),
                  evaluate=fake_evaluate(calls=calls))  # fmt: skip
    assert calls[:4] == [2.0, 4.0, 8.0, 16.0]  # doubling while it passes
    calls.clear()
    find_capacity(make_scenario(rate=100.0), SLO(ttft_ms=500),
                  evaluate=fake_evaluate(calls=calls))  # fmt: skip
    assert calls[:3] == [100.0, 50.0, 25.0]  # halving while it fails


def test_unreachable_slo_names_the_constraint_and_the_best_value():
    # TPOT is at least 10 ms at any rate: a 5 ms SLO cannot be met.
    with pytest.raises(ServesimError) as err:
        find_capacity(make_scenario(), SLO(ttft_ms=500, tpot_ms=5), evaluate=fake_evaluate())
    text = str(err.value)
    assert "out of reach" in text and "p99 TPOT > 5 ms" in text
    assert re.search(r"best found 10\.\d ms", text)
    assert "TTFT" not in text.split("(relax")[0].split("req/s")[-1]  # TTFT was met


def test_too_few_requests_to_break_the_slo_is_an_error():
    def never_fails(scenario):
        v = {"slo_ttft_ms": 1.0, "slo_tpot_ms": 1.0, "slo_e2el_ms": 1.0}
        return {"status": "ok", "error": None, "metrics": v}

    with pytest.raises(ServesimError, match="too few to build a queue"):
        find_capacity(make_scenario(), SLO(ttft_ms=500), max_rate=100, evaluate=never_fails)


def test_bad_search_inputs_are_errors():
    sc = make_scenario()
    with pytest.raises(ServesimError, match="no SLO"):
        find_capacity(sc, SLO())
    with pytest.raises(ServesimError, match="--percentile"):
        find_capacity(sc, SLO(ttft_ms=1), percentile=0)
    with pytest.raises(ServesimError, match="--tolerance"):
        find_capacity(sc, SLO(ttft_ms=1), tolerance=1.5)


def test_with_rate_keeps_the_arrival_kind_and_refuses_a_closed_loop():
    gamma = build_scenario({"workload": {"preset": "code", "num_requests": 10,
                                         "arrival": {"kind": "gamma", "rate": 1,
                                                     "burstiness": 0.5}}})  # fmt: skip
    out = with_rate(gamma, 7.0).workload.arrival
    assert (out.kind, out.rate, out.burstiness) == ("gamma", 7.0, 0.5)
    closed = build_scenario(
        {
            "workload": {
                "preset": "code",
                "num_requests": 10,
                "arrival": {"kind": "closed", "concurrency": 4},
            }
        }
    )
    with pytest.raises(ServesimError, match="capacity varies a request rate"):
        with_rate(closed, 1.0)


def test_with_rate_re_times_a_replay_sped_up_by_rate_scale():
    """The shipped replay example (rate_scale 2) failed every probe: a re-timed replay keeps
    its lengths and drops the speed-up of timestamps it no longer uses."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    replay = build_scenario(
        {"workload": {"trace": str(root / "examples/workloads/azure_llm_2023_code_sample.csv"),
                      "rate_scale": 2, "max_requests": 20}}
    )  # fmt: skip
    probe = with_rate(replay, 3.0).workload
    assert (probe.arrival.kind, probe.arrival.rate, probe.rate_scale) == ("poisson", 3.0, 1.0)
    assert simulate(with_rate(replay, 3.0)).summary["completed"] == 20


def test_slo_values_match_the_summary_percentiles():
    result = simulate(make_scenario(n=60))
    for p, prefix in ((99, "p99"), (90, "p90"), (50, "median")):
        v = slo_values(result, p)
        for m in ("ttft", "tpot", "e2el"):
            assert v[f"{m}_ms"] == pytest.approx(result.summary[f"{prefix}_{m}_ms"], rel=1e-12)


def test_real_capacity_passes_at_the_answer_and_fails_just_above():
    sc = make_scenario(rate=10.0, n=300)
    slo = SLO(ttft_ms=400, tpot_ms=40)
    cap = find_capacity(sc, slo, tolerance=0.1)
    assert cap.upper_rate / cap.rate - 1 <= 0.1
    # Re-simulate independently: the same verdicts as the search's probes.
    at = run_point(with_rate(sc, cap.rate), 99)["metrics"]
    above = run_point(with_rate(sc, cap.upper_rate), 99)["metrics"]
    assert at["slo_ttft_ms"] <= 400 and at["slo_tpot_ms"] <= 40
    b = cap.binding
    assert above[f"slo_{b}"] > getattr(slo, b)
    # One H100 serving Llama-3.1-8B conversations: between 5 and 40 req/s.
    assert 5 < cap.rate < 40


def test_capacity_takes_the_scenario_files_slo_and_a_flag_overrides_one_metric():
    from servesim.cli.sweep_cmds import _slo

    file_slo = make_scenario(slo={"ttft_ms": 500, "tpot_ms": 30}).slo
    assert _slo(None, None, None, base=file_slo) == SLO(ttft_ms=500, tpot_ms=30)
    assert _slo(None, 20.0, None, base=file_slo) == SLO(ttft_ms=500, tpot_ms=20)
    assert _slo(None, None, None, base=make_scenario().slo) == SLO()


def test_capacity_command_reads_the_slo_block_of_the_scenario_file(tmp_path):
    import json
    import subprocess
    import sys

    path = tmp_path / "sc.yaml"
    path.write_text(
        "workload: {num_requests: 60, arrival: {kind: poisson, rate: 5}}\n"
        "slo: {ttft_ms: 400, tpot_ms: 40}\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "servesim", "capacity", str(path), "--json", "--tolerance", "0.2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["slo"]["ttft_ms"] == 400 and doc["slo"]["tpot_ms"] == 40
    no_slo = tmp_path / "bare.yaml"
    no_slo.write_text("workload: {num_requests: 60, arrival: {kind: poisson, rate: 5}}\n")
    run = subprocess.run(
        [sys.executable, "-m", "servesim", "capacity", str(no_slo)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2 and "slo: block" in run.stderr
