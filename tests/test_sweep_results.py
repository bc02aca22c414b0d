"""Sweep results: journal, resume without re-running, partial results kept, tables."""

import json
import math

import pyarrow.csv as pacsv
import pytest

from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.sweep.executors import SerialExecutor
from servesim.sweep.results import (
    CSV,
    JOURNAL,
    PARQUET,
    Journal,
    read_journal,
    read_table,
    same_rows,
    write_tables,
)
from servesim.sweep.runner import run_sweep
from servesim.sweep.spec import expand, parse_sweep

BASE = {"workload": {"preset": "conversation", "num_requests": 40}}


def make_points(rates=(4, 8, 16)):
    spec = parse_sweep({"base": BASE, "grid": {"workload.arrival.rate": list(rates)}})
    return expand(spec, spec.base)


class CountingExecutor(SerialExecutor):
    """Serial, counting calls; optionally fails after ``stop_after`` results."""

    def __init__(self, stop_after=None, exc=KeyboardInterrupt):
        self.calls = 0
        self.stop_after = stop_after
        self.exc = exc

    def map_unordered(self, fn, items):
        for i, item in enumerate(items):
            if self.stop_after is not None and self.calls == self.stop_after:
                raise self.exc("stopped")
            self.calls += 1
            yield i, fn(item)


def test_tables_hold_one_row_per_scenario_with_axes_and_every_metric(tmp_path):
    points = make_points()
    outcome = run_sweep(points, tmp_path, CountingExecutor())
    assert outcome.complete and outcome.ran == 3 and outcome.reused == 0
    rows = read_table(tmp_path / PARQUET)
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert [r["workload.arrival.rate"] for r in rows] == [4.0, 8.0, 16.0]
    assert [r["scenario_id"] for r in rows] == [p.scenario_id for p in points]
    for key in ("request_throughput", "output_throughput", "p99_ttft_ms", "mean_tpot_ms",
                "median_itl_ms", "p90_e2el_ms", "num_gpus", "usd_per_hour",
                "usd_per_million_output_tokens"):  # fmt: skip
        assert isinstance(rows[0][key], (int, float)), key
    assert all(r["status"] == "ok" and r["error"] is None for r in rows)
    assert rows[0]["completed"] == 40
    # One H100 at the catalog price.
    assert rows[0]["usd_per_hour"] == pytest.approx(load_hardware("H100").price_per_gpu_hour)
    csv_rows = pacsv.read_csv(tmp_path / CSV).to_pylist()
    assert same_rows(rows, csv_rows)


def test_resume_runs_only_what_is_missing(tmp_path):
    points = make_points()
    first = CountingExecutor(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(points, tmp_path, first)
    # Interrupted: the two finished scenarios are in the journal and in the tables.
    assert len(read_journal(tmp_path / JOURNAL)) == 2
    assert [r["index"] for r in read_table(tmp_path / PARQUET)] == [0, 1]

    second = CountingExecutor()
    outcome = run_sweep(points, tmp_path, second)
    assert second.calls == 1
    assert (outcome.reused, outcome.ran, outcome.complete) == (2, 1, True)

    third = CountingExecutor()
    assert run_sweep(points, tmp_path, third).ran == 0 and third.calls == 0
    assert run_sweep(points, tmp_path, third, fresh=True).ran == 3


def test_resumed_results_equal_an_uninterrupted_run(tmp_path):
    points = make_points()
    with pytest.raises(ServesimError):
        run_sweep(points, tmp_path / "a", CountingExecutor(stop_after=1, exc=ServesimError))
    resumed = run_sweep(points, tmp_path / "a", CountingExecutor()).rows
    straight = run_sweep(points, tmp_path / "b", CountingExecutor()).rows
    assert same_rows(resumed, straight)


def test_an_edited_sweep_reuses_the_scenarios_it_still_has(tmp_path):
    run_sweep(make_points((4, 8)), tmp_path, CountingExecutor())
    ex = CountingExecutor()
    outcome = run_sweep(make_points((8, 16)), tmp_path, ex)
    assert ex.calls == 1 and outcome.reused == 1
    assert [r["workload.arrival.rate"] for r in outcome.rows] == [8.0, 16.0]


def test_a_torn_last_journal_line_is_ignored_and_not_glued_to_the_next(tmp_path):
    points = make_points((4, 8))
    run_sweep(points[:1], tmp_path, CountingExecutor())
    path = tmp_path / JOURNAL
    path.write_text(path.read_text() + '{"scenario_id": "abc", "sta')  # died mid-write
    assert len(read_journal(path)) == 1
    run_sweep(points, tmp_path, CountingExecutor())
    assert set(read_journal(path)) == {p.scenario_id for p in points}


def test_a_user_error_is_a_row_and_a_crash_is_not_journaled(tmp_path, monkeypatch):
    spec = parse_sweep({"base": {**BASE, "model": "meta-llama/Llama-3.1-70B", "hardware": "L4"},
                        "grid": {"tp": [1]}})  # fmt: skip
    points = expand(spec, spec.base)  # valid scenario, but 70B does not fit on one L4
    outcome = run_sweep(points, tmp_path, CountingExecutor())
    (row,) = outcome.rows
    assert row["status"] == "error" and "GiB" in row["error"]
    assert outcome.errors == 1 and outcome.complete

    import servesim.sweep.measure as measure

    def boom(scenario):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(measure, "simulate", boom)
    points2 = make_points((4,))
    outcome = run_sweep(points2, tmp_path / "c", CountingExecutor())
    assert outcome.crashes == 1 and not outcome.complete
    assert "ZeroDivisionError: bug" in outcome.rows[0]["error"]
    assert read_journal(tmp_path / "c" / JOURNAL) == {}  # re-run after the fix


def test_mixed_axis_values_become_text_and_nan_survives(tmp_path):
    rows = [
        {"index": 0, "scenario_id": "a", "x": 1, "y": {"kind": "burst"}, "m": float("nan")},
        {"index": 1, "scenario_id": "b", "x": "two", "y": None, "m": 2.0},
    ]
    write_tables(rows, tmp_path)
    back = read_table(tmp_path / PARQUET)
    assert [r["x"] for r in back] == ["1", "two"]
    assert json.loads(back[0]["y"]) == {"kind": "burst"}
    assert math.isnan(back[0]["m"]) and back[1]["m"] == 2.0


def test_journal_lines_are_on_disk_as_soon_as_written(tmp_path):
    (point,) = make_points((4,))
    journal = Journal(tmp_path / JOURNAL)
    journal.append(point, {"status": "ok", "error": None, "metrics": {"a": 1}})
    # Still open: another reader already sees the line.
    assert read_journal(tmp_path / JOURNAL)[point.scenario_id]["metrics"] == {"a": 1}
    journal.close()
