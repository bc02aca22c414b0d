"""The profiler in one process: off costs nothing, on records spans, instants, counters, steps."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from pathlib import Path

import pytest

from servesim import profile
from servesim.errors import ServesimError
from servesim.profile.api import settings_from_env
from servesim.profile.recorder import TASK_TID_BASE


@pytest.fixture
def prof_dir(tmp_path):
    """Recording on into a fresh folder, with no automatic flush; off again afterwards."""
    directory = tmp_path / "prof"
    profile.configure(
        enabled=True, directory=directory, sample=1.0, flush_every=100_000, flush_interval_s=3600
    )
    yield directory
    profile.configure(enabled=False, sample=1.0, flush_every=4096, flush_interval_s=1.0)


@pytest.fixture
def off(tmp_path):
    directory = tmp_path / "off"
    profile.configure(enabled=False, directory=directory)
    yield directory
    profile.configure(enabled=False)


def records(directory: Path) -> list[dict]:
    """Every line of every fragment in ``directory`` (all must parse)."""
    lines = []
    for path in sorted(directory.glob("*.jsonl")):
        lines.extend(json.loads(line) for line in path.read_text().splitlines())
    return lines


def of_type(lines: list[dict], kind: str, **match) -> list[dict]:
    return [r for r in lines if r["type"] == kind and all(r.get(k) == v for k, v in match.items())]


# --- off --------------------------------------------------------------------------------------


def test_off_writes_nothing_and_hands_back_one_shared_object(off):
    assert not profile.is_enabled()
    first, second = profile.span("a"), profile.span("b", "cat", {"x": 1})
    assert first is second
    with profile.span("a") as sp:
        sp.set(tokens=3)
    assert sp is first
    profile.instant("i")
    profile.counter("c", v=1)
    profile.step(0, 0.0, 0.01, 1, 1, 0, 1)
    profile.set_process_name("p")
    assert profile.flush() == 0
    assert profile.fragment_path() is None
    assert not off.exists()


def test_off_span_lets_exceptions_through(off):
    with pytest.raises(KeyError):
        with profile.span("a"):
            raise KeyError("boom")


def test_off_decorator_returns_the_function_itself(off):
    def work(x):
        return x + 1

    assert profile.span("work")(work) is work


def test_settings_from_environment():
    on = settings_from_env(
        {
            "SERVESIM_PROFILE": "1",
            "SERVESIM_PROFILE_DIR": "/tmp/p",
            "SERVESIM_PROFILE_SAMPLE": "0.25",
        }
    )
    assert (on.enabled, on.directory, on.sample) == (True, Path("/tmp/p"), 0.25)
    assert not settings_from_env({}).enabled
    assert settings_from_env({}).directory == Path("servesim-profile").absolute()
    assert not settings_from_env({"SERVESIM_PROFILE": "off"}).enabled


@pytest.mark.parametrize(
    "env",
    [
        {"SERVESIM_PROFILE": "maybe"},
        {"SERVESIM_PROFILE": "1", "SERVESIM_PROFILE_SAMPLE": "2"},
        {"SERVESIM_PROFILE": "1", "SERVESIM_PROFILE_SAMPLE": "half"},
    ],
)
def test_bad_environment_warns_instead_of_failing(env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = settings_from_env(env)
    assert caught and issubclass(caught[0].category, RuntimeWarning)
    assert settings.sample == 1.0


@pytest.mark.parametrize(
    "kwargs", [{"sample": 1.5}, {"sample": -0.1}, {"flush_every": 0}, {"flush_interval_s": 0}]
)
def test_configure_rejects_impossible_values(kwargs):
    with pytest.raises(ServesimError) as err:
        profile.configure(**kwargs)
    assert err.value.field == next(iter(kwargs))


# --- on: spans, instants, counters, steps -------------------------------------------------------


def test_spans_nest_with_measured_durations(prof_dir):
    with profile.span("outer", "engine", {"batch": 4}):
        time.sleep(0.002)
        with profile.span("inner") as sp:
            time.sleep(0.003)
            sp.set(tokens=7)
        time.sleep(0.001)
    assert profile.flush() == 2
    lines = records(prof_dir)
    (outer,) = of_type(lines, "event", name="outer")
    (inner,) = of_type(lines, "event", name="inner")
    assert outer["ph"] == inner["ph"] == "X"
    assert outer["cat"] == "engine" and outer["args"] == {"batch": 4}
    assert inner["args"] == {"tokens": 7} and "cat" not in inner
    assert inner["dur_ns"] >= 3_000_000 and outer["dur_ns"] >= 6_000_000
    assert outer["ts_ns"] + 2_000_000 <= inner["ts_ns"]
    assert inner["ts_ns"] + inner["dur_ns"] <= outer["ts_ns"] + outer["dur_ns"]
    assert abs(outer["ts_ns"] - time.time_ns()) < 60e9  # on the Unix clock
    assert inner["tid"] == outer["tid"] == threading.get_native_id()
    assert of_type(lines, "thread", tid=inner["tid"])[0]["name"] == "MainThread"


def test_exception_is_noted_and_reraised(prof_dir):
    with pytest.raises(ValueError):
        with profile.span("fails", args={"a": 1}):
            raise ValueError("x")
    profile.flush()
    (event,) = of_type(records(prof_dir), "event", name="fails")
    assert event["args"] == {"a": 1, "exception": "ValueError"}


def test_decorator_on_sync_and_async_functions(prof_dir):
    @profile.span("double", "math")
    def double(x):
        return 2 * x

    @profile.span("later")
    async def later(x):
        await asyncio.sleep(0.001)
        return x

    assert double(4) == 8 and double.__name__ == "double"
    assert asyncio.run(later(5)) == 5
    profile.flush()
    lines = records(prof_dir)
    assert len(of_type(lines, "event", name="double", cat="math")) == 1
    (event,) = of_type(lines, "event", name="later")
    assert event["dur_ns"] >= 1_000_000


def test_instant_counter_and_step_records(prof_dir):
    profile.instant("preempted", "sched", {"req": 3})
    profile.counter("kv_cache", used=0.25, free=0.75, bad=float("nan"), label="x")
    profile.step(12, 100.5, 0.021, 8, 512, 7, 4096, {"schedule": 0.001, "forward": 0.019})
    profile.step(13, 100.6, 0.02, 9, 0, 9, 4105)
    assert profile.flush() == 4
    lines = records(prof_dir)
    (mark,) = of_type(lines, "event", ph="i")
    assert (mark["name"], mark["cat"], mark["args"]) == ("preempted", "sched", {"req": 3})
    (sample,) = of_type(lines, "event", ph="C")
    assert sample["name"] == "kv_cache" and sample["args"] == {"used": 0.25, "free": 0.75}
    first, second = of_type(lines, "step")
    assert first == {
        "type": "step",
        "step": 12,
        "start_s": 100.5,
        "duration_s": 0.021,
        "batch_size": 8,
        "prefill_tokens": 512,
        "decode_tokens": 7,
        "context_tokens": 4096,
        "phases": {"schedule": 0.001, "forward": 0.019},
    }
    assert second["phases"] == {}


def test_fragment_header_and_file_name(prof_dir):
    with profile.span("a"):
        pass
    profile.flush()
    (path,) = prof_dir.glob("*.jsonl")
    assert path == profile.fragment_path()
    header = json.loads(path.read_text().splitlines()[0])
    assert header["type"] == "fragment" and header["version"] == 1
    import os

    assert path.name == f"{header['host']}-{os.getpid()}-{header['start_unix_ns']}.jsonl"
    assert header["pid"] == os.getpid() and header["forked_from"] is None


def test_buffered_until_batch_is_full(prof_dir):
    profile.configure(flush_every=3)
    profile.instant("one")
    profile.instant("two")
    assert not list(prof_dir.glob("*.jsonl"))
    profile.instant("three")
    assert len(of_type(records(prof_dir), "event")) == 3
    assert profile.stats().flushes == 1


def test_flushes_when_the_batch_is_old(prof_dir):
    profile.configure(flush_interval_s=0.01)
    profile.instant("first")
    time.sleep(0.02)
    profile.instant("second")
    assert len(of_type(records(prof_dir), "event")) == 2


def test_sampling_keeps_the_fraction_asked_deterministically(prof_dir):
    profile.configure(sample=0.25)
    for i in range(1000):
        with profile.span("s", args={"i": i}):
            pass
    profile.flush()
    kept = [e["args"]["i"] for e in of_type(records(prof_dir), "event")]
    assert len(kept) == 250 and kept[0] == 0
    assert kept[:4] == [0, 4, 8, 12]
    assert profile.stats().sampled_out == 750


def test_stats_count_events(prof_dir):
    for _ in range(5):
        profile.instant("x")
    assert profile.stats().events == 5 and profile.stats().written == 0
    profile.flush()
    stats = profile.stats()
    assert (stats.events, stats.written, stats.dropped, stats.io_errors) == (5, 5, 0, 0)


# --- threads and asyncio ------------------------------------------------------------------------


def test_threads_record_without_losing_events(prof_dir):
    profile.configure(flush_every=64)  # flushes race with appends from other threads
    per_thread, count = 500, 6
    start = threading.Barrier(count)

    def work(k):
        start.wait()
        for i in range(per_thread):
            with profile.span("work", args={"k": k, "i": i}):
                pass

    threads = [threading.Thread(target=work, args=(k,), name=f"worker-{k}") for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    profile.flush()
    lines = records(prof_dir)
    events = of_type(lines, "event")
    assert len(events) == per_thread * count
    assert {(e["args"]["k"], e["args"]["i"]) for e in events} == {
        (k, i) for k in range(count) for i in range(per_thread)
    }
    rows = {e["tid"] for e in events}
    assert len(rows) == count
    names = {r["tid"]: r["name"] for r in of_type(lines, "thread")}
    assert sorted(names[tid] for tid in rows) == sorted(f"worker-{k}" for k in range(count))
    assert profile.stats().written == per_thread * count


def test_asyncio_tasks_get_their_own_rows(prof_dir):
    async def request(i):
        with profile.span("request", args={"i": i}):
            await asyncio.sleep(0.002)
            with profile.span("decode", args={"i": i}):
                await asyncio.sleep(0.001)

    async def main():
        await asyncio.gather(*(asyncio.create_task(request(i), name=f"req-{i}") for i in range(3)))

    asyncio.run(main())
    profile.flush()
    lines = records(prof_dir)
    names = {r["tid"]: r["name"] for r in of_type(lines, "thread")}
    by_i = {}
    for event in of_type(lines, "event"):
        by_i.setdefault(event["args"]["i"], []).append(event)
    assert len({e["tid"] for e in of_type(lines, "event")}) == 3
    for i, (first, second) in by_i.items():
        assert first["tid"] == second["tid"] >= TASK_TID_BASE
        assert names[first["tid"]] == f"req-{i}"
    # Each task's spans nest on its own row even though the tasks interleave in time.
    outer = {e["args"]["i"]: e for e in of_type(lines, "event", name="request")}
    inner = {e["args"]["i"]: e for e in of_type(lines, "event", name="decode")}
    for i in range(3):
        assert outer[i]["ts_ns"] <= inner[i]["ts_ns"]
        assert inner[i]["ts_ns"] + inner[i]["dur_ns"] <= outer[i]["ts_ns"] + outer[i]["dur_ns"]


# --- failures are swallowed and counted ---------------------------------------------------------


def test_directory_that_is_a_file_counts_io_errors(tmp_path, prof_dir):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    profile.configure(directory=blocker / "sub")
    for _ in range(4):
        profile.instant("lost")
    assert profile.flush() == 0  # no exception
    stats = profile.stats()
    assert (stats.io_errors, stats.dropped, stats.written, stats.events) == (1, 4, 0, 4)
    # Fix the folder: later records get through, with their thread's name kept.
    blocker.unlink()
    blocker.mkdir()
    profile.instant("kept")
    assert profile.flush() == 1
    lines = records(blocker / "sub")
    assert [e["name"] for e in of_type(lines, "event")] == ["kept"]
    assert of_type(lines, "thread", name="MainThread")


def test_deleted_directory_is_made_again(prof_dir):
    import shutil

    profile.instant("a")
    profile.flush()
    shutil.rmtree(prof_dir)
    profile.instant("b")
    assert profile.flush() == 1
    assert profile.stats().io_errors == 0
    assert [e["name"] for e in of_type(records(prof_dir), "event")] == ["b"]


def test_unencodable_record_is_dropped_not_raised(prof_dir):
    profile.step(1, 0.0, 0.01, "not a number", 0, 0, 0)
    profile.step(2, 0.0, 0.01, 4, 0, 4, 40, {"forward": 0.01})
    with profile.span("odd args", args={"obj": object(), "nan": float("nan")}):
        pass
    assert profile.flush() == 2
    lines = records(prof_dir)
    assert [s["step"] for s in of_type(lines, "step")] == [2]
    (event,) = of_type(lines, "event")
    assert event["args"]["nan"] == "nan" and event["args"]["obj"].startswith("<object")
    assert profile.stats().dropped == 1


def test_odd_args_are_kept_under_one_key(prof_dir):
    with profile.span("listed", args=[1, 2]):  # type: ignore[arg-type]
        pass
    profile.instant("counted", args={"n": 1, 2: "int key"})
    profile.flush()
    lines = records(prof_dir)
    assert of_type(lines, "event", name="listed")[0]["args"] == {"value": [1, 2]}
    assert of_type(lines, "event", name="counted")[0]["args"] == {"n": 1, "2": "int key"}


def test_process_name_set_while_off_applies_once_enabled(tmp_path, off):
    profile.set_process_name("router")
    profile.configure(enabled=True, directory=tmp_path / "later")
    profile.instant("x")
    profile.flush()
    assert of_type(records(tmp_path / "later"), "process") == [
        {"type": "process", "name": "router"}
    ]


def test_reconfiguring_starts_a_new_fragment_of_the_same_process(tmp_path, prof_dir):
    profile.instant("first")
    first = profile.fragment_path()
    profile.configure(directory=tmp_path / "other")
    profile.instant("second")
    profile.flush()
    assert profile.fragment_path() != first
    a, b = json.loads(first.read_text().splitlines()[0]), records(tmp_path / "other")[0]
    assert a["process"] == b["process"]
