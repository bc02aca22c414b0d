"""Merging fragments into one Chrome trace, and the ``servesim trace merge`` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from servesim import profile
from servesim.errors import ServesimError
from servesim.trace.chrome import validate_trace
from servesim.trace.merge import STEPS_TID, merge_fragments

SERVESIM = Path(sys.executable).parent / "servesim"


@pytest.fixture
def prof_dir(tmp_path):
    directory = tmp_path / "prof"
    profile.configure(
        enabled=True, directory=directory, sample=1.0, flush_every=100_000, flush_interval_s=3600
    )
    yield directory
    profile.configure(enabled=False, flush_every=4096, flush_interval_s=1.0)


def write_fragment(
    directory: Path, pid: int, lines: list, *, host="h", start=1000, key=None, tail: str = ""
) -> Path:
    """A hand-written fragment: header first, then ``lines`` (dicts or raw strings)."""
    directory.mkdir(parents=True, exist_ok=True)
    header = {
        "type": "fragment",
        "version": 1,
        "host": host,
        "pid": pid,
        "ppid": 1,
        "process": key or f"{host}:{pid}:{start}",
        "start_unix_ns": start,
        "clock_unix_ns": 10_000_000_000,
        "clock_perf_ns": 5_000_000_000,
        "argv0": "server.py",
        "forked_from": None,
    }
    text = "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in [header, *lines])
    path = directory / f"{host}-{pid}-{start}.jsonl"
    path.write_text(text + "\n" + tail)
    return path


def x_event(name, ts_ns, dur_ns, tid=1, **extra):
    return {
        "type": "event",
        "ph": "X",
        "name": name,
        "ts_ns": ts_ns,
        "dur_ns": dur_ns,
        "tid": tid,
        **extra,
    }


def load(path: Path) -> dict:
    obj = json.loads(path.read_text())
    assert validate_trace(obj) == []
    return obj


def metadata(obj: dict, name: str) -> dict:
    return {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in obj["traceEvents"]
        if e["ph"] == "M" and e["name"] == name
    }


def slices(obj: dict) -> list[dict]:
    return [e for e in obj["traceEvents"] if e["ph"] == "X"]


# --- a real profiled run ----------------------------------------------------------------------


def test_profiled_run_merges_into_a_valid_trace(prof_dir, tmp_path):
    profile.set_process_name("engine")
    with profile.span("startup"):
        time.sleep(0.001)

    def worker():
        with profile.span("load weights"):
            time.sleep(0.002)

    t = threading.Thread(target=worker, name="loader")
    t.start()
    t.join()

    async def request(i):
        with profile.span("request"):
            await asyncio.sleep(0.001)

    async def main():
        await asyncio.gather(*(asyncio.create_task(request(i), name=f"req-{i}") for i in range(2)))

    asyncio.run(main())
    start = time.perf_counter()
    time.sleep(0.003)
    profile.step(
        0, start, time.perf_counter() - start, 2, 64, 0, 64, {"schedule": 0.0005, "forward": 0.002}
    )
    profile.counter("kv_cache", used=0.1)
    profile.set_process_name("engine-0")  # after the first events: still wins
    profile.flush()

    out = tmp_path / "trace.json"
    steps_out = tmp_path / "steps.jsonl"
    report = merge_fragments(prof_dir, out, steps_path=steps_out)
    obj = load(out)
    assert (report.files, report.processes, report.steps, report.skipped_lines) == (1, 1, 1, 0)
    assert report.bytes == out.stat().st_size and report.events == sum(
        1 for e in obj["traceEvents"] if e["ph"] != "M"
    )
    pid = os.getpid()
    assert metadata(obj, "process_name") == {(pid, 0): "engine-0"}
    threads = metadata(obj, "thread_name")
    assert {"MainThread", "loader", "req-0", "req-1", "steps"} == set(threads.values())
    assert threads[(pid, STEPS_TID)] == "steps"
    names = {e["name"]: e for e in slices(obj)}
    assert threads[(pid, names["load weights"]["tid"])] == "loader"
    assert names["load weights"]["dur"] >= 2000  # µs
    step = names["step 0"]
    assert step["args"]["batch_size"] == 2 and step["dur"] >= 3000
    # The step lands on the same clock as the spans (perf_counter seconds mapped to Unix time).
    assert step["ts"] >= names["request"]["ts"]
    assert names["forward"]["ts"] == pytest.approx(step["ts"] + 500)
    timed = [e["ts"] for e in obj["traceEvents"] if e["ph"] != "M"]
    assert timed == sorted(timed) and min(timed) == 0
    assert obj["otherData"]["ts_origin_unix_ns"] > 1.5e18
    (logged,) = [json.loads(line) for line in steps_out.read_text().splitlines()]
    assert logged["type"] == "step" and logged["process"] == "engine-0" and logged["pid"] == pid


# --- hand-written fragments: exact states ------------------------------------------------------


def test_truncated_last_line_is_skipped_and_counted(tmp_path):
    frag = tmp_path / "frag"
    write_fragment(
        frag,
        11,
        [x_event("a", 10_000_000_000, 5_000)],
        tail='{"type":"event","ph":"X","name":"cut sh',
    )
    report = merge_fragments(frag, tmp_path / "t.json")
    obj = load(tmp_path / "t.json")
    assert report.skipped_lines == 1
    assert [e["name"] for e in slices(obj)] == ["a"]
    assert slices(obj)[0]["ts"] == 0 and slices(obj)[0]["dur"] == 5.0


def test_malformed_lines_anywhere_are_skipped(tmp_path):
    frag = tmp_path / "frag"
    write_fragment(
        frag,
        11,
        [
            "not json",
            "[1, 2]",
            {"type": "mystery"},
            {"type": "event", "ph": "X", "name": "no dur", "ts_ns": 1, "tid": 1},
            {"type": "event", "ph": "X", "name": "neg", "ts_ns": 1, "dur_ns": -5, "tid": 1},
            {"type": "step", "step": 1},
            {"type": "event", "ph": "C", "name": "c", "ts_ns": 1, "args": {"v": "high"}},
            {
                "type": "event",
                "ph": "X",
                "name": "x",
                "ts_ns": 1,
                "dur_ns": 1,
                "tid": 1,
                "args": [1],
            },
            x_event("ok", 10_000_000_000, 1_000),
            "",
        ],
    )
    report = merge_fragments(frag, tmp_path / "t.json")
    assert report.skipped_lines == 8
    assert [e["name"] for e in slices(load(tmp_path / "t.json"))] == ["ok"]


def test_processes_with_the_same_pid_stay_apart(tmp_path):
    frag = tmp_path / "frag"
    write_fragment(frag, 42, [x_event("on a", 10_000_000_000, 10)], host="a")
    write_fragment(frag, 42, [x_event("on b", 10_000_000_500, 10)], host="b")
    write_fragment(frag, 7, [x_event("other", 10_000_000_900, 10)], host="a")
    report = merge_fragments(frag, tmp_path / "t.json")
    obj = load(tmp_path / "t.json")
    pids = {e["name"]: e["pid"] for e in slices(obj)}
    assert report.processes == 3
    assert pids["other"] == 7 and pids["on a"] != pids["on b"]
    assert metadata(obj, "process_name")[(pids["on a"], 0)] == "server.py (a)"


def test_fragments_of_one_process_join_and_last_name_wins(tmp_path):
    frag = tmp_path / "frag"
    write_fragment(
        frag,
        5,
        [
            {"type": "process", "name": "first"},
            {"type": "thread", "tid": 1, "name": "old"},
            x_event("a", 10_000_000_000, 10),
        ],
        start=1,
        key="k",
    )
    write_fragment(
        frag,
        5,
        [
            {"type": "thread", "tid": 1, "name": "new"},
            x_event("b", 10_000_001_000, 10),
            {"type": "process", "name": "second"},
        ],
        start=2,
        key="k",
    )
    report = merge_fragments(frag, tmp_path / "t.json")
    obj = load(tmp_path / "t.json")
    assert (report.files, report.processes) == (2, 1)
    assert metadata(obj, "process_name") == {(5, 0): "second"}
    assert metadata(obj, "thread_name") == {(5, 1): "new"}


def test_steps_become_slices_phases_and_counters(tmp_path):
    frag = tmp_path / "frag"
    step = {
        "type": "step",
        "step": 3,
        "start_s": 5.0,
        "duration_s": 0.01,
        "batch_size": 4,
        "prefill_tokens": 100,
        "decode_tokens": 3,
        "context_tokens": 900,
        "phases": {"schedule": 0.001, "forward": 0.008},
    }
    too_long = {**step, "step": 4, "start_s": 5.02, "phases": {"a": 0.02}}
    write_fragment(frag, 9, [x_event("span", 10_000_000_000, 10), too_long, step])
    merge_fragments(frag, tmp_path / "t.json", steps_path=tmp_path / "steps.jsonl")
    obj = load(tmp_path / "t.json")
    on_steps = [e for e in slices(obj) if e["tid"] == STEPS_TID]
    assert [(e["name"], e["ts"], e["dur"]) for e in on_steps] == [
        ("step 3", 0.0, 10_000.0),
        ("schedule", 0.0, 1000.0),
        ("forward", 1000.0, 8000.0),
        ("step 4", 20_000.0, 10_000.0),
    ]  # phases that do not fit stay in args only
    assert on_steps[-1]["args"]["phases_s"] == {"a": 0.02}
    counters = [(e["name"], e["args"]) for e in obj["traceEvents"] if e["ph"] == "C"]
    assert ("batch_size", {"sequences": 4}) in counters
    assert ("step_tokens", {"prefill": 100, "decode": 3}) in counters
    logged = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in logged] == [3, 4]


def test_unix_second_step_starts_are_understood(tmp_path):
    frag = tmp_path / "frag"
    step = {
        "type": "step",
        "step": 0,
        "start_s": 1_700_000_000.5,
        "duration_s": 0.01,
        "batch_size": 1,
        "prefill_tokens": 1,
        "decode_tokens": 0,
        "context_tokens": 1,
        "phases": {},
    }
    write_fragment(frag, 9, [x_event("span", 1_700_000_000_000_000_000, 10), step])
    merge_fragments(frag, tmp_path / "t.json")
    by_name = {e["name"]: e for e in slices(load(tmp_path / "t.json"))}
    assert by_name["step 0"]["ts"] == pytest.approx(500_000.0)


def test_missing_or_empty_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ServesimError, match="does not exist"):
        merge_fragments(tmp_path / "nope", tmp_path / "t.json")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.jsonl").write_text("{}\n")
    with pytest.raises(ServesimError, match="no profiler fragments") as err:
        merge_fragments(tmp_path / "empty", tmp_path / "t.json")
    assert err.value.field == "DIR"
    write_fragment(tmp_path / "frag", 1, [x_event("a", 1, 1)])
    with pytest.raises(ServesimError, match="does not exist") as err:
        merge_fragments(tmp_path / "frag", tmp_path / "missing" / "t.json")
    assert err.value.field == "--out"
    assert not (tmp_path / "t.json").exists()


# --- the command ------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    assert SERVESIM.exists(), f"installed script not found at {SERVESIM}"
    return subprocess.run([str(SERVESIM), *args], capture_output=True, text=True, timeout=120)


def test_cli_merge_prints_one_line_summary(tmp_path):
    frag = tmp_path / "frag"
    write_fragment(frag, 3, [x_event("a", 10_000_000_000, 1_000)], tail='{"trunc')
    out = tmp_path / "trace.json"
    result = run_cli("trace", "merge", str(frag), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "1 fragment file(s)" in result.stdout and "1 skipped line(s)" in result.stdout
    assert load(out)["traceEvents"]


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_cli_merge_bad_directory_exits_2(tmp_path, make):
    target = tmp_path / "d"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("x")
    result = run_cli("trace", "merge", str(target), "-o", str(tmp_path / "t.json"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: DIR:") and result.stderr.count("\n") == 1
    assert not (tmp_path / "t.json").exists()


def test_cli_merge_of_only_garbage_says_so_and_writes_nothing(tmp_path):
    frag = tmp_path / "frag"
    frag.mkdir()
    (frag / "host-1-100.jsonl").write_bytes(bytes(range(256)) * 8)
    (frag / "host-2-200.jsonl").write_text('garbage\n{"type": "nonsense"}\n[1, 2]\n')
    out = tmp_path / "trace.json"
    result = run_cli("trace", "merge", str(frag), "-o", str(out))
    assert result.returncode == 2, result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"error: DIR: none of the 2 fragment file(s) in {frag} holds a profiler record ("
    )
    assert not out.exists()
