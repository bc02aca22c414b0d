"""Every command that writes results refuses an unwritable destination up front (exit 2, one
line naming the option), instead of failing with a traceback after its work."""

from __future__ import annotations

import subprocess
import sys
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
    assert lines[0] == f"error: --out: cannot write {blocker / 'out'}: {blocker} is a file"


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
