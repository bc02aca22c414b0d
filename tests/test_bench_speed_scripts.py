"""The speed benchmarks that drive subprocesses run end to end (tiny sizes: their figures are
not checked here, only that they come out as the scripts promise)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
SRC = Path(__file__).resolve().parent.parent / "src"


def _run(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(BENCH / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_bench_pair_times_two_trees_in_alternated_rounds():
    text = _run("bench_pair.py", str(SRC), str(SRC), "--rounds", "2", "-n", "30",
                "--compiled", "off")  # fmt: skip
    assert len(re.findall(r"^round +\d+: old [\d.]+ s, new [\d.]+ s", text, re.M)) == 2
    ratio = float(re.search(r"median new/old ([\d.]+) over 2 rounds", text).group(1))
    assert 0.2 < ratio < 5.0  # (the same tree twice)
    assert "note:" not in text  # (the same records)


def test_bench_process_prints_a_row_per_size_and_rate_and_the_path_auto_took():
    text = _run(
        "bench_process.py", "--runs", "1", "--floor-runs", "1", "--sizes", "60", "--rates", "5,50"
    )
    floor = re.search(r"^floor .*: reference ([\d.]+) s, compiled ([\d.]+) s$", text, re.M)
    assert floor is not None and 0 < float(floor[1]) and 0 < float(floor[2])
    rows = re.findall(r"^ +60 +(\d+) +[\d.]+ +[\d.]+ +[\d.]+  (reference|compiled)$", text, re.M)
    assert [rate for rate, _ in rows] == ["5", "50"]
    assert {path for _, path in rows} == {"reference"}  # (60 requests: below any threshold)
