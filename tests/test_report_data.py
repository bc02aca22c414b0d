"""Reading a run folder (servesim.report.data), and the run-folder factories that the trace
and report tests share: hand-made folders with exact values, and real ones."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from servesim.engine.records import REQUEST_COLUMNS, STEP_COLUMNS
from servesim.errors import ServesimError
from servesim.report.data import RunData, prefill_rows, read_run, request_latencies

SERVESIM = Path(sys.executable).parent / "servesim"

STEP_DEFAULTS = {"num_steps": 1, "context_tokens": 0, "num_preempted": 0, "num_waiting": 0,
                 "kv_usage": 0.0, "prefill_tokens": 0, "decode_tokens": 0}  # fmt: skip
REQUEST_DEFAULTS = {"session_id": 0, "turn": 0, "cached_tokens": 0, "preemptions": 0}


def make_run_dir(
    path: Path, steps: list[dict], requests: list[dict], summary: dict | None = None,
    extra_step_columns: tuple[str, ...] = (),
) -> Path:  # fmt: skip
    """Write a run folder with the given step and request rows (defaults fill the rest)."""
    path.mkdir(parents=True, exist_ok=True)
    scenario = {"model": "test/Model", "hardware": "H100", "tp": 1, "replicas": 1}
    doc = {"servesim_version": "test", "completed": len(requests), "scenario": scenario}
    doc.update(summary or {})
    (path / "summary.json").write_text(json.dumps(doc))
    step_cols = (*STEP_COLUMNS, *extra_step_columns)
    for name, cols, rows, defaults in (("steps.csv", step_cols, steps, STEP_DEFAULTS),
                                       ("requests.csv", REQUEST_COLUMNS, requests,
                                        REQUEST_DEFAULTS)):  # fmt: skip
        with (path / name).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(cols)
            for row in rows:
                full = {**defaults, "session_id": row.get("request_id", 0), **row}
                # Columns added to the records later default to 0.
                writer.writerow([full.get(c, 0) for c in cols])
    return path


def simulate_run(out: Path, *args: str) -> Path:
    """A real run folder, written through the installed ``servesim`` console script."""
    done = subprocess.run(
        [str(SERVESIM), "simulate", "--rate", "20", "--seed", "1", "--out", str(out), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


# --- reading a run folder (servesim.report.data) ------------------------------------------------

TWO_STEPS = [
    {"instance": 0, "start_s": 0.0, "duration_s": 0.01, "batch_size": 2, "prefill_tokens": 300},
    {"instance": 0, "start_s": 0.01, "duration_s": 0.03, "num_steps": 3, "batch_size": 2,
     "decode_tokens": 6},
]  # fmt: skip
TWO_REQUESTS = [
    {"request_id": 0, "instance": 0, "arrival_s": 0.0, "first_scheduled_s": 0.0,
     "first_token_s": 0.01, "finish_s": 0.04, "input_tokens": 200, "output_tokens": 4},
    {"request_id": 1, "instance": 0, "arrival_s": 0.0, "first_scheduled_s": 0.0,
     "first_token_s": 0.01, "finish_s": 0.01, "input_tokens": 100, "output_tokens": 1},
]  # fmt: skip


def test_read_run_gives_float_columns_and_optional_op_columns(tmp_path):
    run = read_run(make_run_dir(tmp_path / "r", TWO_STEPS, TWO_REQUESTS,
                                extra_step_columns=("t_mlp",)))  # fmt: skip
    assert run.steps["num_steps"].tolist() == [1.0, 3.0]
    assert run.requests["request_id"].dtype == np.float64
    assert run.op_columns == ["t_mlp"]
    assert run.num_instances == 1
    assert prefill_rows(run.steps).tolist() == [2.0, 0.0]


def test_latencies_follow_vllm_definitions(tmp_path):
    run = read_run(make_run_dir(tmp_path / "r", TWO_STEPS, TWO_REQUESTS))
    lat = request_latencies(run.requests)
    assert lat["ttft_ms"].tolist() == pytest.approx([10.0, 10.0])
    assert lat["e2el_ms"].tolist() == pytest.approx([40.0, 10.0])
    assert lat["tpot_ms"][0] == pytest.approx(10.0)  # (40 - 10) / (4 - 1)
    assert np.isnan(lat["tpot_ms"][1])  # one output token: no TPOT, as in vLLM


def test_a_header_only_steps_file_is_an_empty_run(tmp_path):
    run = read_run(make_run_dir(tmp_path / "r", [], TWO_REQUESTS))
    assert len(run.steps["start_s"]) == 0 and len(run.requests["arrival_s"]) == 2


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "summary.json").unlink(), "no summary.json"),
    (lambda d: (d / "steps.csv").unlink(), "has no steps.csv"),
    (lambda d: (d / "summary.json").write_text("{oops"), "not valid JSON"),
    (lambda d: (d / "requests.csv").write_text("request_id,instance\n1,0\n"), "lacks the column"),
    (lambda d: (d / "steps.csv").write_text(
        (d / "steps.csv").read_text().replace("0.03", "abc")), "not a numeric table"),
])  # fmt: skip
def test_a_damaged_run_folder_is_a_user_error(tmp_path, damage, message):
    run_dir = make_run_dir(tmp_path / "r", TWO_STEPS, TWO_REQUESTS)
    damage(run_dir)
    with pytest.raises(ServesimError, match=message) as err:
        read_run(run_dir)
    assert err.value.field == "RUN_DIR"


def test_a_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(ServesimError, match="not a folder"):
        read_run(tmp_path / "nowhere")


# --- Parquet tables (``simulate --format parquet``) ---------------------------------------------


def _written_both_ways(tmp_path: Path) -> tuple[Path, Path, object]:
    from servesim.output import write_run
    from servesim.run import simulate
    from servesim.scenario import build_scenario

    result = simulate(build_scenario({"workload": {"num_requests": 60}, "seed": 3}))
    csv_dir = write_run(result, tmp_path / "csv")
    parquet_dir = write_run(result, tmp_path / "parquet", table_format="parquet")
    return csv_dir, parquet_dir, result


def test_a_parquet_run_reads_back_as_its_csv_twin_and_as_the_records(tmp_path):
    import pyarrow.parquet as pq

    csv_dir, parquet_dir, result = _written_both_ways(tmp_path)
    assert sorted(p.name for p in parquet_dir.iterdir()) == [
        "requests.parquet", "steps.parquet", "summary.json"
    ]  # fmt: skip
    from_csv, from_parquet = read_run(csv_dir), read_run(parquet_dir)
    for table in ("requests", "steps"):
        a, b = getattr(from_csv, table), getattr(from_parquet, table)
        assert list(a) == list(b)  # same columns, same order (the t_* ones included)
        for name in a:
            assert a[name].dtype == b[name].dtype == np.float64
            assert np.array_equal(a[name], b[name], equal_nan=True), (table, name)
    assert from_parquet.op_columns == from_csv.op_columns and from_csv.op_columns
    # The file keeps each column's own type: integers as int64, floats bit for bit.
    records = result.records.request_columns()
    stored = pq.read_table(parquet_dir / "requests.parquet")
    for name in REQUEST_COLUMNS:
        column = stored.column(name).to_numpy()
        assert column.dtype == records[name].dtype
        assert column.tobytes() == np.ascontiguousarray(records[name]).tobytes(), name


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "steps.parquet").write_text("instance,start_s\n0,0\n"), "not a Parquet table"),
    (lambda d: _rewrite(d / "requests.parquet", drop="finish_s"), "lacks the column"),
    (lambda d: _rewrite(d / "steps.parquet", text="kv_usage"), "column kv_usage holds string"),
])  # fmt: skip
def test_a_damaged_parquet_table_is_a_user_error(tmp_path, damage, message):
    _, parquet_dir, _ = _written_both_ways(tmp_path)
    damage(parquet_dir)
    with pytest.raises(ServesimError, match=message) as err:
        read_run(parquet_dir)
    assert err.value.field == "RUN_DIR"


def _rewrite(path: Path, drop: str | None = None, text: str | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if drop is not None:
        table = table.drop_columns([drop])
    if text is not None:
        i = table.column_names.index(text)
        table = table.set_column(
            i, text, pa.array([str(v) for v in table.column(text).to_pylist()])
        )
    pq.write_table(table, path)


def test_the_outputs_benchmark_reads_both_formats_back_equal(monkeypatch, capsys):
    """``bench/bench_outputs.py`` (timings, not checked here) runs end to end and finds the two
    formats' tables equal; its comparison notices a changed value."""
    import sys

    from bench_scripts import load_bench_script

    bench = load_bench_script("bench_outputs.py")
    monkeypatch.setattr(sys, "argv", ["bench_outputs.py", "--num-requests", "40", "--repeats", "1"])
    bench.main()
    out = capsys.readouterr().out
    assert "same values  yes" in out and "parquet      write" in out
    run = RunData(Path("."), {}, {"a": np.array([1.0, np.nan])}, {"b": np.array([2.0])})
    changed = RunData(Path("."), {}, {"a": np.array([1.0, np.nan])}, {"b": np.array([2.5])})
    assert bench.same_tables(run, run) and not bench.same_tables(run, changed)


def test_a_csv_table_written_in_blocks_is_the_bytes_of_one_pass(tmp_path, monkeypatch):
    """CSV tables are turned into Python values a block of rows at a time (a 1M-request run's
    steps at once took gigabytes); the file is the same, whatever the block size."""
    import servesim.output as output
    from servesim.run import simulate
    from servesim.scenario import build_scenario

    result = simulate(build_scenario({"workload": {"num_requests": 40}}))
    columns = result.records.step_columns()
    columns.update(result.step_extra)
    names = (*STEP_COLUMNS, *result.step_extra)
    whole = tmp_path / "whole.csv"
    with whole.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        writer.writerows(zip(*(columns[n].tolist() for n in names), strict=True))
    rows = len(columns["start_s"])
    for block in (1, 7, rows - 1, rows, 65_536):
        monkeypatch.setattr(output, "_CSV_ROWS", block)
        output._write_columns(tmp_path / "blocks.csv", names, [columns])
        assert (tmp_path / "blocks.csv").read_bytes() == whole.read_bytes(), block


@pytest.mark.parametrize("scenario", [
    {"workload": {"num_requests": 700}},  # one instance group: blocks worked out alone
    {"workload": {"num_requests": 500}, "disaggregate": "1:1"},  # two: slices of the whole
])  # fmt: skip
def test_step_extras_a_block_at_a_time_are_the_whole_columns(tmp_path, monkeypatch, scenario):
    """A run's step table is written a block of records at a time (its per-step extras never
    all held at once): the blocks join into the columns worked out whole, to the bit, and the
    Parquet file gets a row group per block."""
    import pyarrow.parquet as pq

    import servesim.summary as summary
    from servesim.output import write_run
    from servesim.run import simulate
    from servesim.scenario import build_scenario

    monkeypatch.setattr(summary, "_BLOCK", 256)  # (the writer's blocks: 4 × 256 records)
    result = simulate(build_scenario(scenario))
    out = write_run(result, tmp_path / "run", table_format="parquet")
    parts = list(result.step_extra.row_blocks(blocks=2))
    whole = dict(result.step_extra)  # (worked out after the blocks: nothing read it before)
    n = len(result.records.step_columns()["start_s"])
    assert [rows.start for rows, _ in parts] == list(range(0, n, 512)) and len(parts) > 2
    for name, column in whole.items():
        joined = np.concatenate([cols[name] for _, cols in parts])
        assert joined.tobytes() == column.tobytes(), name
    table = pq.ParquetFile(out / "steps.parquet")
    assert table.metadata.num_row_groups == -(-n // 1024) > 1
    for name, column in whole.items():
        assert table.read([name]).column(0).to_numpy().tobytes() == column.tobytes(), name
