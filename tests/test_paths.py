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
