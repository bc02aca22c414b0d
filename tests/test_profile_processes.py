"""The profiler across processes: forked children, multiprocessing workers, spawned programs."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from servesim import profile

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture
def prof_dir(tmp_path):
    directory = tmp_path / "prof"
    profile.configure(
        enabled=True, directory=directory, sample=1.0, flush_every=100_000, flush_interval_s=3600
    )
    yield directory
    profile.configure(enabled=False, flush_every=4096, flush_interval_s=1.0)


def fragments(directory: Path) -> dict[int, list[dict]]:
    """Lines of each fragment, keyed by the pid in its header."""
    out = {}
    for path in directory.glob("*.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        out[lines[0]["pid"]] = lines
    return out


def names(lines: list[dict]) -> list[str]:
    return [r["name"] for r in lines if r["type"] == "event"]


def test_forked_child_writes_its_own_fragment_without_the_parents_events(prof_dir):
    with profile.span("before fork"):
        pass  # buffered, not yet written, when the fork happens
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            with profile.span("in child"):
                pass
            profile.flush()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with profile.span("after fork"):
        pass
    profile.flush()
    by_pid = fragments(prof_dir)
    assert set(by_pid) == {os.getpid(), pid}
    assert names(by_pid[os.getpid()]) == ["before fork", "after fork"]
    assert names(by_pid[pid]) == ["in child"]
    child_header = by_pid[pid][0]
    assert child_header["forked_from"] == os.getpid()
    assert child_header["process"] != by_pid[os.getpid()][0]["process"]


def _worker(k: int) -> None:
    with profile.span("mp work", args={"k": k}):
        pass  # no flush: the profiler must flush as the worker exits


def test_multiprocessing_fork_worker_flushes_at_exit(prof_dir):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(k,)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    by_pid = fragments(prof_dir)
    assert set(by_pid) == {p.pid for p in procs}
    assert sorted(r["args"]["k"] for p in procs for r in by_pid[p.pid] if r["type"] == "event") == [
        0,
        1,
    ]


def test_spawned_program_follows_the_environment(tmp_path):
    directory = tmp_path / "spawned"
    program = textwrap.dedent("""
        from servesim.profile import span, set_process_name
        with span("main work"):
            pass
        set_process_name("spawned worker")
    """)
    env = {**os.environ, "SERVESIM_PROFILE": "1", "SERVESIM_PROFILE_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", program], env=env, check=True, timeout=60)
    (lines,) = fragments(directory).values()
    assert names(lines) == ["main work"]
    assert [r["name"] for r in lines if r["type"] == "process"] == ["spawned worker"]


def test_program_without_the_variable_leaves_no_files(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVESIM_PROFILE")}
    subprocess.run(
        [sys.executable, "-c", "from servesim.profile import span\nwith span('x'):\n    pass"],
        env=env,
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    assert list(tmp_path.iterdir()) == []
