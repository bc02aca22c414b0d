"""Run a sweep: skip what the journal already holds, run the rest, write the tables.

``run_sweep`` is resumable by construction: results go to the journal one by one as they
finish, and the tables are rewritten from the journal on the way out, also when the run stops
early (an interrupt, a Ray cluster going away). Running it again runs only what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servesim.sweep.executors import Executor
from servesim.sweep.measure import run_point
from servesim.sweep.results import JOURNAL, Journal, read_journal, table_rows, write_tables
from servesim.sweep.spec import SweepPoint


@dataclass(frozen=True)
class SweepOutcome:
    """What a (possibly partial) sweep run left on disk."""

    out_dir: Path
    total: int
    """Scenarios in the sweep."""
    reused: int
    """Scenarios found finished in the journal and not run again."""
    ran: int
    """Scenarios run by this call."""
    errors: int
    """Rows whose scenario raised a user error (e.g. the model does not fit), all runs."""
    crashes: int
    """Rows whose scenario hit a servesim bug (status ``crash``; re-run on resume)."""
    rows: list[dict[str, Any]]
    parquet: Path
    csv: Path

    @property
    def complete(self) -> bool:
        """Every scenario has a deterministic result (ok or a user error)."""
        return len(self.rows) == self.total and not self.crashes


def run_sweep(
    points: Sequence[SweepPoint],
    out_dir: str | Path,
    executor: Executor,
    *,
    fresh: bool = False,
    on_result: Callable[[SweepPoint, dict[str, Any]], None] | None = None,
) -> SweepOutcome:
    """Run every point not yet in ``out_dir``'s journal on ``executor``; write the tables.

    ``fresh`` discards the journal first (re-runs everything). ``on_result(point, record)`` is
    called in this process after each finished point is journaled (a progress bar). An error
    while running (e.g. the executor fails) propagates after the tables are written with the
    rows finished so far.
    """
    out = Path(out_dir)
    journal_path = out / JOURNAL
    if fresh:
        journal_path.unlink(missing_ok=True)
    done = read_journal(journal_path)
    todo = [p for p in points if p.scenario_id not in done]
    reused = len(points) - len(todo)
    ran = 0
    try:
        with Journal(journal_path) as journal:
            for i, record in executor.map_unordered(run_point, [p.scenario for p in todo]):
                point = todo[i]
                if record["status"] == "crash":
                    # In the table, not the journal: the next run tries it again.
                    done[point.scenario_id] = record
                else:
                    done[point.scenario_id] = journal.append(point, record)
                ran += 1
                if on_result is not None:
                    on_result(point, record)
    finally:
        rows = table_rows(points, done)
        parquet, csv = write_tables(rows, out)
    errors = sum(1 for r in rows if r["status"] == "error")
    crashes = sum(1 for r in rows if r["status"] == "crash")
    return SweepOutcome(out, len(points), reused, ran, errors, crashes, rows, parquet, csv)
