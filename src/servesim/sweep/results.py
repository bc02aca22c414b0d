"""Sweep results on disk: an append-only journal, consolidated into one table.

Layout of a sweep's output folder::

    journal.jsonl     one line per finished scenario, appended the moment it finishes
    results.parquet   one row per scenario: index, scenario_id, the axes, status, error,
    results.csv       and every numeric summary metric (same rows, two formats)

The journal is the source of truth: each line is flushed as soon as it is written, so an
interrupted sweep (Ctrl-C, a lost Ray node, a killed job) keeps every finished scenario, and the
next run skips them by ``scenario_id``. A torn last line (the process died mid-write) is ignored.
The two tables are rewritten from the journal atomically (temp file + rename), so a reader
never sees half a table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servesim.sweep.spec import SweepPoint
from servesim.textfile import PARSE_ERRORS, raw_lines

JOURNAL = "journal.jsonl"
PARQUET = "results.parquet"
CSV = "results.csv"

LEADING = ("index", "scenario_id")
STATUS = ("status", "error")


def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """Finished scenarios recorded in a journal: ``scenario_id -> record`` (later wins).

    Unreadable lines (a torn last write; bytes that are not UTF-8 or not JSON, or a line too
    long to be a record, as a crash or a full disk can leave) are skipped, so their scenarios
    run again; a missing file is an empty journal.
    """
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for _, raw in raw_lines(path):
        try:
            rec = json.loads(raw) if raw is not None else None
        except (UnicodeDecodeError, *PARSE_ERRORS):
            continue
        if (
            isinstance(rec, dict)
            and isinstance(rec.get("scenario_id"), str)
            and isinstance(rec.get("metrics") or {}, dict)
        ):
            records[rec["scenario_id"]] = rec
    return records


class Journal:
    """Appends one JSON line per finished scenario, flushed at once."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        torn = False
        if path.is_file() and path.stat().st_size > 0:
            with path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        self._file = path.open("a")
        if torn:
            # A torn last line from an earlier crash must not glue itself to our first record.
            self._file.write("\n")

    def append(self, point: SweepPoint, record: dict[str, Any]) -> dict[str, Any]:
        """Record ``point``'s result (``run_point``'s ``{"status", "error", "metrics"}``)."""
        line = {"scenario_id": point.scenario_id, "index": point.index, "axes": point.axes}
        line.update(record)
        # NOTE: flush, not fsync, per line: a killed process loses nothing (the data is in the
        # kernel); fsync on close covers a machine that loses power at the end.
        self._file.write(json.dumps(line, allow_nan=True) + "\n")
        self._file.flush()
        return line

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def table_rows(
    points: Sequence[SweepPoint], records: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per point that has a record, in sweep order.

    Axes come from the current sweep (not the journal), so a journal shared by an edited
    sweep file contributes only the scenarios the sweep still has.
    """
    rows = []
    for p in points:
        rec = records.get(p.scenario_id)
        if rec is None:
            continue
        row: dict[str, Any] = {"index": p.index, "scenario_id": p.scenario_id}
        row.update(p.axes)
        row["status"] = rec.get("status")
        row["error"] = rec.get("error")
        for key, value in (rec.get("metrics") or {}).items():
            row.setdefault(key, value)
        rows.append(row)
    return rows


def _column(values: list[Any]) -> Any:
    """A pyarrow array: numbers stay numbers; a column mixing kinds becomes text."""
    import pyarrow as pa

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    if present and all(is_number(v) for v in present):
        if all(isinstance(v, int) for v in present):
            return pa.array(values, type=pa.int64())
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    text = [
        None if v is None else v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        for v in values
    ]
    return pa.array(text, type=pa.string())


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def write_tables(rows: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    """Write ``results.parquet`` and ``results.csv`` (atomically); their paths."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    names = _columns(rows) or [*LEADING, *STATUS]
    table = pa.table({n: _column([r.get(n) for r in rows]) for n in names})
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / PARQUET, out_dir / CSV)
    tmp = [p.with_name(f".{p.name}.tmp") for p in paths]
    pq.write_table(table, tmp[0])
    pacsv.write_csv(table, tmp[1])
    for t, p in zip(tmp, paths, strict=True):
        os.replace(t, p)
    return paths


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``results.parquet`` (for tests and notebooks), NaN kept as NaN."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def same_rows(a: list[dict[str, Any]], b: list[dict[str, Any]], ignore=("sim_wall_s",)) -> bool:
    """Whether two tables hold the same values (NaN equals NaN; wall-clock columns ignored)."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for k in (set(ra) | set(rb)) - set(ignore):
            if not _same_value(ra.get(k), rb.get(k)):
                return False
    return True
