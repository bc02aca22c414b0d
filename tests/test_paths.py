"""servesim.paths: output destinations checked before the work."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.errors import ServesimError
from servesim.paths import writable_dir, writable_file


def test_missing_parents_are_created_and_no_probe_is_left(tmp_path: Path):
    target = tmp_path / "a" / "b" / "run"
    assert writable_dir(target) == target
    assert (tmp_path / "a" / "b").is_dir()
    assert not target.exists()  # the folder itself is the writer's to create
    assert list((tmp_path / "a" / "b").iterdir()) == []
    assert writable_file(tmp_path / "c" / "plot.png") == tmp_path / "c" / "plot.png"
    assert list((tmp_path / "c").iterdir()) == []


def test_an_existing_folder_or_file_of_the_right_kind_is_fine(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "cal.yaml").write_text("old")
    assert writable_dir(tmp_path / "run") == tmp_path / "run"
    assert writable_file(tmp_path / "cal.yaml") == tmp_path / "cal.yaml"
    assert (tmp_path / "cal.yaml").read_text() == "old"  # checked, not touched


def test_the_wrong_kind_is_refused_naming_the_option(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ServesimError, match="is a folder") as info:
        writable_file(tmp_path / "run", "--steps")
    assert info.value.field == "--steps"
    with pytest.raises(ServesimError, match="exists and is not a folder"):
        writable_dir(tmp_path / "f")
    with pytest.raises(ServesimError, match=f"cannot write .*: {tmp_path / 'f'} is a file"):
        writable_file(tmp_path / "f" / "x.json")


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_atomic_text_appears_whole_with_the_umask_and_leaves_nothing_on_error(tmp_path: Path):
    import os

    from servesim.paths import atomic_text

    target = tmp_path / "out.txt"
    old = os.umask(0o022)
    try:
        with atomic_text(target) as f:
            f.write("one")
            assert not target.exists()  # nothing at the path until the file is whole
        assert target.read_text() == "one"
        assert _mode(target) == 0o644  # not mkstemp's private 0600: outputs are shared
        with pytest.raises(RuntimeError), atomic_text(target) as f:
            f.write("half")
            raise RuntimeError
    finally:
        os.umask(old)
    assert target.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_calibration_and_trace_files_take_the_umask(tmp_path: Path):
    import os

    from servesim.cli import main
    from servesim.trace.chrome import write_trace

    steps = Path(__file__).resolve().parents[1] / "examples" / "measured" / "steps.jsonl"
    cal, trace = tmp_path / "cal.yaml", tmp_path / "t.json"
    old = os.umask(0o022)
    try:
        with pytest.raises(SystemExit) as done:
            main(["calibrate", str(steps), "-m", "llama-3.1-8b", "-g", "h100", "-o", str(cal)])
        assert done.value.code in (0, None)
        write_trace(trace, [{"ph": "X", "name": "a", "ts": 0, "dur": 1, "pid": 0, "tid": 0}])
    finally:
        os.umask(old)
    assert _mode(cal) == _mode(trace) == 0o644
