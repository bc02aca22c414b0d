"""Every command that writes results refuses an unwritable destination up front (exit 2, one
line naming the option), instead of failing with a traceback after its work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVESIM = str(Path(sys.executable).parent / "servesim")


def servesim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SERVESIM, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("a file where a folder is needed")
    return path


def _prepare(name: str, tmp_path: Path) -> list[str]:
    """The arguments (before the output option) of a command that gets as far as writing."""
    if name == "sweep":
        (tmp_path / "s.yaml").write_text(
            "base: {workload: {num_requests: 5, input_len: 10, output_len: 2}}\ngrid: {tp: [1]}\n"
        )
        return ["sweep", "s.yaml"]
    if name == "plan":
        return ["plan", "-m", "llama-3.2-1b", "--rate", "1", "--slo-ttft-ms", "500", "-g", "L4"]
    if name == "calibrate":
        return ["calibrate", "steps.jsonl", "--model", "llama-3.1-8b", "--hardware", "H100"]
    if name == "analyze":
        return ["analyze", "steps.jsonl", "--model", "llama-3.1-8b", "--hardware", "H100"]
    if name == "report":
        run = servesim("simulate", "-n", "2", "--input-len", "8", "--output-len", "2",
                       "--out", "run", cwd=tmp_path)  # fmt: skip
        assert run.returncode == 0, run.stderr
        return ["report", "run"]
    if name == "trace merge":
        (tmp_path / "fragments").mkdir()
        return ["trace", "merge", "fragments"]
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["sweep", "plan", "calibrate", "analyze", "report", "trace merge"])
def test_an_unwritable_output_is_one_line_and_exit_2(name, tmp_path, blocker):
    args = _prepare(name, tmp_path)
    p = servesim(*args, "--out", str(blocker / "out"), cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    # -o is a folder; a command that writes one file writes it there under its own name
    single = {"plan": "plan.png", "calibrate": "calibration.yaml", "report": "report.html",
              "trace merge": "trace.json"}  # fmt: skip
    target = blocker / "out" / single[name] if name in single else blocker / "out"
    assert lines[0] == f"error: --out: cannot write {target}: {blocker} is a file"


def test_a_refused_path_anywhere_is_one_line_not_a_traceback(monkeypatch, capsys):
    import servesim.cli as cli

    def full_disk(args):
        raise OSError(28, "No space left on device", "/data/run/steps.csv")

    monkeypatch.setattr(cli, "load_commands", full_disk)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["simulate"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: /data/run/steps.csv: No space left on device\n"

    def not_a_path_problem(args):
        raise OSError("socket closed")  # no filename: a bug to see in full

    monkeypatch.setattr(cli, "load_commands", not_a_path_problem)
    with pytest.raises(OSError, match="socket closed"):
        cli.main(["simulate"])


# --------------------------------------------------------------------------- empty paths


@pytest.mark.parametrize(
    ("name", "option"),
    [
        ("simulate", "--out"),
        ("simulate", "-o"),
        ("simulate", "--out="),
        ("sweep", "--out"),
        ("plan", "--out"),
        ("calibrate", "--out"),
        ("analyze", "--out"),
        ("report", "--out"),
        ("trace merge", "--out"),
        ("trace merge", "--steps"),
        ("kernels", "--plot"),
        ("compare", "--csv"),
    ],
)
def test_an_empty_output_path_is_refused_not_the_current_folder(name, option, tmp_path):
    """`--out "$OUTDIR"` with the variable unset must not write into (and replace files of)
    the folder the user stands in."""
    if name == "simulate":
        args = ["simulate", "-n", "2", "--input-len", "8", "--output-len", "2"]
    elif name == "kernels":
        args = ["kernels", "H100"]
    elif name == "compare":
        bench = Path(__file__).resolve().parents[1] / "examples/measured/vllm_bench_serve.json"
        args = ["compare", str(bench), "--hardware", "h100"]
    else:
        args = _prepare(name, tmp_path)
    mine = tmp_path / "summary.json"
    mine.write_text("the user's own file")
    before = sorted(p.name for p in tmp_path.iterdir())
    given = [option] if option.endswith("=") else [option, ""]
    p = servesim(*args, *given, cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    flag = "-o" if option == "-o" else option.rstrip("=")
    long = {"-o": "--out"}.get(flag, flag)
    assert p.stderr == (
        f"error: {long}: is empty (an unset variable?): give the path to write to\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert mine.read_text() == "the user's own file"


def test_the_library_refuses_an_empty_path_too(tmp_path):
    from servesim.errors import ServesimError
    from servesim.paths import writable_dir, writable_file

    for check in (writable_dir, writable_file):
        with pytest.raises(ServesimError, match="--out: is empty"):
            check("")


def test_out_dot_writes_into_the_current_folder(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    p = servesim("simulate", "-n", "3", "--input-len", "8", "--output-len", "2", "--out", ".",
                 cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["notes.txt", "requests.csv", "steps.csv", "summary.json"]


# --------------------------------------------------------------------------- reused run folders

SMALL_RUN = ("simulate", "--input-len", "8", "--output-len", "2")


def _requests_in(run: Path) -> int:
    return json.loads((run / "summary.json").read_text())["completed"]


def test_a_reused_run_folder_describes_the_new_run_only(tmp_path):
    run = tmp_path / "run"
    first = servesim(*SMALL_RUN, "-n", "50", "--trace", "--report", "--out", str(run), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert servesim("report", str(run), "--png", cwd=tmp_path).returncode == 0
    assert (run / "plots").is_dir() and (run / "trace.json").is_file()
    (run / "notes.txt").write_text("not servesim's")

    second = servesim(*SMALL_RUN, "-n", "20", "--out", str(run), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    # The 50-request report, trace and plots are gone with the run they described.
    assert sorted(p.name for p in run.iterdir()) == [
        "notes.txt", "requests.csv", "steps.csv", "summary.json"
    ]  # fmt: skip
    assert _requests_in(run) == 20
    assert (run / "notes.txt").read_text() == "not servesim's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder left

    third = servesim(*SMALL_RUN, "-n", "30", "--report", "--out", str(run), cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert (run / "report.html").is_file() and _requests_in(run) == 30


def test_an_analysis_folder_reused_loses_the_stale_phases_plot(tmp_path):
    from servesim.calibrate.outputs import ANALYSIS_FILES, PHASES_PNG, write_analysis

    out = tmp_path / "analysis"
    out.mkdir()
    for name in ANALYSIS_FILES:
        (out / name).write_text("from an earlier analysis")
    (out / "keep.txt").write_text("mine")

    class NoPhases:  # the least an Analysis needs for write_analysis, with no phases
        phases = None

    import servesim.calibrate.outputs as outputs

    def fake(_a, path):
        path.write_text("new")

    saved = (outputs.write_csv, outputs.plot_gap_vs_batch, outputs.step_rows, outputs.sweep_table)
    outputs.write_csv = fake
    outputs.plot_gap_vs_batch = fake
    outputs.step_rows = outputs.sweep_table = lambda a: a
    try:
        written = write_analysis(NoPhases(), out)
    finally:
        (outputs.write_csv, outputs.plot_gap_vs_batch, outputs.step_rows,
         outputs.sweep_table) = saved  # fmt: skip
    assert PHASES_PNG not in {p.name for p in written}
    assert sorted(p.name for p in out.iterdir()) == [
        "analysis_steps.csv", "analysis_sweep.csv", "gap_vs_batch.png", "keep.txt"
    ]  # fmt: skip
    assert all((out / p.name).read_text() == "new" for p in written)


# --------------------------------------------------------------------------- signals

# NOTE: a test-only slow writer: the real `servesim simulate` (the CLI's `main`), whose
# requests.csv writer announces the temporary folder it is writing into and then stalls, so
# the signal is sure to arrive mid-write (no timing guess).
SLOW_WRITER = """
import signal, sys, time
from pathlib import Path

# As a terminal's foreground process: Ctrl-C raises KeyboardInterrupt. (A runner started in the
# background of a non-interactive shell hands its children SIGINT ignored.)
signal.signal(signal.SIGINT, signal.default_int_handler)

import servesim.output as output
from servesim.cli import main

ready = Path(sys.argv[1])
write_columns = output._write_columns


def stalled(path, *args):
    write_columns(path, *args)
    # Written whole, then renamed: the test never reads a half-written file.
    part = ready.with_name(ready.name + ".part")
    part.write_text(str(path.parent))
    part.replace(ready)
    time.sleep(120)


output._write_columns = stalled
main(sys.argv[2:])
"""


def _interrupt_mid_write(tmp_path: Path, out: Path, sig: int) -> tuple[int, Path, str]:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(ready), *SMALL_RUN, "-n", "20", "--trace",
         "--out", str(out)],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "no write"
        staging = Path(ready.read_text())
        assert staging.is_dir() and staging.name.startswith(f".{out.name}.")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ready.unlink()
    return proc.returncode, staging, err


# SIGTERM ends the process by SIGTERM once it has cleaned up (a shell shows status 143).
@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)]
)
def test_a_signal_mid_write_leaves_no_temporary_folder_and_no_new_run(tmp_path, sig, status):
    out = tmp_path / "run"
    code, staging, err = _interrupt_mid_write(tmp_path, out, sig)
    assert code == status, err
    assert "Traceback" not in err
    assert not staging.exists()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_sigterm_mid_write_leaves_an_earlier_run_as_it_was(tmp_path):
    out = tmp_path / "run"
    first = servesim(*SMALL_RUN, "-n", "5", "--report", "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, staging, err = _interrupt_mid_write(tmp_path, out, signal.SIGTERM)
    assert code == -signal.SIGTERM, err
    assert not staging.exists()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_sigterm_handling_restores_the_previous_handler():
    from servesim.interrupts import Terminated, sigterm_raises

    before = signal.getsignal(signal.SIGTERM)
    if before is not signal.SIG_DFL:
        pytest.skip("the test runner handles SIGTERM itself")  # the signal would reach it
    with pytest.raises(Terminated), sigterm_raises() as term:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises long before this ends
    assert term.received
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_run_folder_holds_one_table_format_and_reports_from_either(tmp_path):
    run = tmp_path / "run"
    first = servesim(*SMALL_RUN, "-n", "20", "--format", "parquet", "--trace", "--out", str(run),
                     cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "requests.parquet, steps.parquet" in first.stdout
    assert sorted(p.name for p in run.iterdir()) == [
        "requests.parquet", "steps.parquet", "summary.json", "trace.json"
    ]  # fmt: skip
    assert json.loads((run / "trace.json").read_text())["traceEvents"]
    assert servesim("report", str(run), cwd=tmp_path).returncode == 0
    assert (run / "report.html").is_file()

    second = servesim(*SMALL_RUN, "-n", "10", "--out", str(run), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    # The parquet tables went with the run they described: one run, in one format.
    assert sorted(p.name for p in run.iterdir()) == ["requests.csv", "steps.csv", "summary.json"]


@pytest.mark.parametrize("args, message", [
    (("--format", "xml", "--out", "run"), "--format: unknown table format 'xml'"),
    (("--format", "parquet"), "--format: needs --out DIR"),
])  # fmt: skip
def test_a_bad_table_format_is_one_line_and_exit_2(tmp_path, args, message):
    p = servesim(*SMALL_RUN, "-n", "3", *args, cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.strip().splitlines() == [f"error: {p.stderr.strip().split('error: ')[1]}"]
    assert message in p.stderr and "Traceback" not in p.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
