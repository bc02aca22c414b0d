"""``bench/readme_tables.py``: the README's tables rewritten from a benchmark's, by header."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_scripts import load_bench_script

DOC = """# Title

Some prose | with a pipe.

| GPU | error |
|---|---:|
| H100 | 5% |
| H200 | 6% |

More prose.

| GPU | other |
|---|---:|
| H100 | 1% |
"""


@pytest.fixture(scope="module")
def script():
    return load_bench_script("readme_tables.py")


def test_tables_are_found_by_header(script):
    tables = script.markdown_tables(DOC)
    assert tables == {
        "| GPU | error |": ["| H100 | 5% |", "| H200 | 6% |"],
        "| GPU | other |": ["| H100 | 1% |"],
    }


def test_only_the_tables_with_a_fresh_header_change(script):
    fresh = "| GPU | error |\n|---|---:|\n| H100 | 4% |\n| H200 | 6% |\n| B200 | 2% |\n"
    new, changed = script.replace_tables(DOC, script.markdown_tables(fresh))
    assert changed == ["| GPU | error |"]
    assert "| H100 | 4% |\n| H200 | 6% |\n| B200 | 2% |\n\nMore prose." in new
    assert "| GPU | other |\n|---|---:|\n| H100 | 1% |" in new  # (not printed: kept)
    assert new.replace("| H100 | 4% |\n", "| H100 | 5% |\n").replace("| B200 | 2% |\n", "") == DOC


def test_the_file_is_rewritten_only_when_a_table_changed(script, tmp_path: Path):
    path = tmp_path / "README.md"
    path.write_text(DOC)
    same = "| GPU | error |\n|---|---:|\n| H100 | 5% |\n| H200 | 6% |\n"
    assert script.update_readme(path, same) == []
    assert path.read_text() == DOC
    assert script.update_readme(path, same.replace("5%", "7%")) == ["| GPU | error |"]
    assert "| H100 | 7% |" in path.read_text()


def test_the_accuracy_suites_readme_tables_have_the_readmes_headers():
    """``bench/fidelity/run.py --readme`` writes the tables under the headers the README has."""
    run = load_bench_script("fidelity/run.py")
    group = {"H100": {"n": 3, "median_abs_error": 0.104, "mean_abs_error": 0.2,
                      "median_speed_bias": 0.096, "too_fast_share": 0.74}}  # fmt: skip
    summary = {"tables": {key: group for key in run.README_TABLES.values()}}
    printed = run.readme_tables(summary)
    assert "| H100 | 3 | 10% | 20% | +10% | 74% |" in printed
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for header in load_bench_script("readme_tables.py").markdown_tables(printed):
        assert header in readme
