"""Writing a run to disk: ``summary.json``, ``requests.csv``, ``steps.csv`` (or, with
``table_format="parquet"``, ``requests.parquet`` and ``steps.parquet``; and, from other modules,
``trace.json`` and ``report.html``), all or nothing.

Files are first written into a temporary folder (beside a new output folder, inside an existing
one), then moved into place, so a run that fails, or is interrupted by Ctrl-C or SIGTERM,
leaves the output folder as it was. A run written into the folder of an earlier run replaces
every file servesim wrote there (:data:`RUN_FILES`), so the folder describes one run; files
servesim did not write are kept.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from servesim import __version__
from servesim.engine.records import REQUEST_COLUMNS, STEP_COLUMNS
from servesim.errors import ServesimError
from servesim.interrupts import sigterm_raises
from servesim.paths import cannot_write, writable_dir
from servesim.validation import to_data

TABLE_FORMATS = ("csv", "parquet")
"""How a run's request and step tables are written (``simulate --format``): CSV text (floats in
their shortest round-trip form), or Parquet columns (the same values, bit for bit, typed; a
large run writes and reads back many times faster)."""


def table_files(table_format: str = "csv") -> list[str]:
    """The request and step tables a run folder holds in ``table_format``."""
    return [f"requests.{table_format}", f"steps.{table_format}"]


RUN_FILES = (
    "summary.json", *(name for fmt in TABLE_FORMATS for name in table_files(fmt)),
    "trace.json", "report.html", "plots",
)  # fmt: skip
"""What servesim writes into a run folder (``simulate --out``; ``report`` adds report.html and
plots/): a new run written there replaces all of them (a run in one table format removes the
other format's tables). Other files there are left alone."""


def _clean(value: Any, non_finite: Callable[[float], Any] = lambda _: None) -> Any:
    """JSON-safe: NaN/inf become ``non_finite(value)`` (null by default), numpy scalars become
    Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v, non_finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, non_finite) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite(value)
    return value


def summary_document(result) -> dict[str, Any]:
    """The content of ``summary.json``: vLLM-named metrics at the top level, plus context."""
    mem = result.memory
    doc: dict[str, Any] = {"servesim_version": __version__}
    doc.update(result.summary)
    # The scenario echo is a config that reproduces the run (`rate: inf` stays "inf", not null).
    doc["scenario"] = _clean(to_data(result.scenario), non_finite=str)
    doc["workload_description"] = result.workload_description
    doc["model_info"] = {
        "name": result.model.name,
        "params_total": result.model.params_total,
        "params_active": result.model.params_active,
    }
    doc["hardware_info"] = {"name": result.hardware.name}
    doc["memory"] = {
        "usable_bytes_per_gpu": mem.usable_bytes,
        "weights_bytes_per_gpu": mem.weights_bytes_per_gpu,
        "activation_reserve_bytes_per_gpu": mem.activation_reserve_bytes,
        "runtime_reserve_bytes_per_gpu": mem.runtime_reserve_bytes,
        "kv_cache_bytes_per_gpu": mem.kv_cache_bytes,
        "kv_bytes_per_token": mem.kv_bytes_per_token,
        "num_kv_blocks": mem.num_kv_blocks,
        "kv_capacity_tokens": mem.kv_capacity_tokens,
        "kv_groups": mem.kv_groups,
        "kv_window_blocks": mem.kv_window_blocks,
        "kv_full_groups": mem.kv_full_groups,
        "kv_swa_pool_ratio": mem.kv_swa_pool_ratio,
        "kv_pinned": mem.kv_pinned,
    }
    return _clean(doc)


_CSV_ROWS = 65_536
"""Rows turned into Python values at a time when writing a CSV table: a million-request run's
steps as Python floats at once would take gigabytes."""

Columns = Mapping[str, np.ndarray]


def _write_columns(path: Path, names: tuple[str, ...], blocks: Iterable[Columns]) -> None:
    """A CSV table of ``names`` from consecutive blocks of rows (each holding every name)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for columns in blocks:
            arrays = [columns[n] for n in names]
            for start in range(0, len(arrays[0]) if arrays else 0, _CSV_ROWS):
                rows = slice(start, start + _CSV_ROWS)
                # Floats as repr (shortest round-trip form): exact, and compact.
                writer.writerows(zip(*(a[rows].tolist() for a in arrays), strict=True))


def _write_parquet(path: Path, names: tuple[str, ...], blocks: Iterable[Columns]) -> None:
    """A Parquet table of ``names``, a row group per block of rows (each holding every name)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for columns in blocks:
            # (numpy's int64 and float64 columns as they are: no conversion, no rounding.)
            table = pa.table({n: np.ascontiguousarray(columns[n]) for n in names})
            if writer is None:
                # Dictionary pages pay for counts and ids, not for measured seconds.
                ints = [n for n in names if pa.types.is_integer(table.schema.field(n).type)]
                writer = pq.ParquetWriter(path, table.schema, use_dictionary=ints)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _step_blocks(result) -> tuple[tuple[str, ...], Iterator[Columns]]:
    """(The step table's columns, its rows a block at a time): the per-step extras worked out
    a block at a time where they can be (``StepExtra.row_blocks``), so a long run's table is
    written without holding them all."""
    steps = result.records.step_columns()
    extra = result.step_extra
    if hasattr(extra, "row_blocks"):
        parts = extra.row_blocks()
    else:
        parts = iter([(slice(None), dict(extra))])
    blocks = ({**{n: c[rows] for n, c in steps.items()}, **cols} for rows, cols in parts)
    first = next(blocks)
    names = STEP_COLUMNS + tuple(n for n in first if n not in steps)
    return names, itertools.chain([first], blocks)


def check_table_format(table_format: str | None) -> str:
    """``table_format`` if it is one of :data:`TABLE_FORMATS` (``csv`` where None, the flag left
    out); else ServesimError (``--format``)."""
    if table_format is None:
        return "csv"
    if table_format not in TABLE_FORMATS:
        raise ServesimError(
            f"unknown table format {table_format!r}",
            field="--format",
            fix=f"use one of: {', '.join(TABLE_FORMATS)}",
        )
    return table_format


def write_run(
    result,
    out_dir: str | Path,
    extra: dict[str, Callable[[Path], None]] | None = None,
    table_format: str = "csv",
) -> Path:
    """Write a run's files into ``out_dir`` atomically; ``extra`` maps file names to writers.
    The request and step tables are written as ``table_format`` (:data:`TABLE_FORMATS`).

    An earlier run's files in ``out_dir`` (:data:`RUN_FILES`) are replaced, or removed when
    this run does not write them (a report.html, a trace.json, plots/, the tables of the
    other format); other files stay.
    """
    write = {"csv": _write_columns, "parquet": _write_parquet}[check_table_format(table_format)]
    out = writable_dir(out_dir)
    requests_file, steps_file = table_files(table_format)
    with sigterm_raises(), staged_folder(out, RUN_FILES) as tmp:
        (tmp / "summary.json").write_text(json.dumps(summary_document(result), indent=2) + "\n")
        write(tmp / requests_file, REQUEST_COLUMNS, [result.records.request_columns()])
        write(tmp / steps_file, *_step_blocks(result))
        for name, writer in (extra or {}).items():
            writer(tmp / name)
    return out


@contextmanager
def staged_folder(out: Path, owned: Collection[str]) -> Iterator[Path]:
    """A temporary folder to write ``out``'s files into; they replace ``out``'s on success.

    Afterwards ``out`` holds what the block wrote, plus its earlier files whose names are
    not in ``owned``: an ``owned`` name the block did not write is removed. On an error or an
    interrupt (Ctrl-C; SIGTERM inside :func:`~servesim.interrupts.sigterm_raises`) the
    temporary folder is removed and ``out`` is left as it was.
    """
    existing = out.is_dir()
    # NOTE: inside an existing folder, not beside it: the moves below stay on one filesystem
    # (``out`` may be a mount point) and ``--out .`` works when the parent is read-only.
    where = out if existing else out.resolve().parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.resolve().name}.", dir=where))
    except OSError as err:
        raise cannot_write(out, err) from None
    try:
        yield tmp
        for f in tmp.iterdir():
            f.chmod(0o755 if f.is_dir() else 0o644)  # temporary files are private; results not
        if existing:
            _move_in(tmp, out, owned)
            shutil.rmtree(tmp)
        else:
            tmp.chmod(0o755)
            tmp.rename(out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise cannot_write(out, err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_in(tmp: Path, out: Path, owned: Collection[str]) -> None:
    """Move ``tmp``'s entries into ``out``, first moving ``out``'s ``owned`` entries (and any
    entry a new one replaces) into ``tmp``; undone if a move fails or is interrupted."""
    new = sorted(p.name for p in tmp.iterdir())
    previous = Path(tempfile.mkdtemp(prefix=".previous.", dir=tmp))
    old = [n for n in dict.fromkeys([*owned, *new]) if os.path.lexists(out / n)]
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for name in old:
            os.rename(out / name, previous / name)
            moved_out.append(name)
        for name in new:
            os.rename(tmp / name, out / name)
            moved_in.append(name)
    except BaseException:
        for name in reversed(moved_in):
            os.rename(out / name, tmp / name)
        for name in reversed(moved_out):
            os.rename(previous / name, out / name)
        raise
