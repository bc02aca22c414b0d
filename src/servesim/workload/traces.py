"""Trace readers: request logs on disk → validated numpy columns.

Formats (``trace_format``):

- ``azure``: Azure LLM inference traces 2023/2024, ``TIMESTAMP,ContextTokens,GeneratedTokens``
  with date-time strings (``2023-11-16 18:15:46.6805900``).
- ``burstgpt``: ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`` with
  timestamps in seconds.
- ``mooncake``: JSON lines ``{"timestamp": ms, "input_length", "output_length", "hash_ids"}``;
  each hash id covers 512 prompt tokens.
- ``csv`` / ``jsonl``: any columns, named with ``timestamp_col``, ``input_col``, ``output_col``
  and optionally ``hash_ids_col`` (default ``timestamp,input_tokens,output_tokens[,hash_ids]``).
- ``sessions``: servesim's own JSON lines, one session per line (see :func:`read_sessions`).

Every reader returns times in seconds from the first request, sorted. Every bad value stops the
read with the file, row and column named. Rows with 0 input or output tokens follow
``zero_tokens``: ``clamp`` (count them as 1 token: Azure 2024 and BurstGPT contain such rows,
and a served request produces at least one token), ``drop`` or ``error``.
"""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from servesim.errors import ServesimError
from servesim.textfile import csv_rows, not_a_file
from servesim.workload.sessions_file import (  # noqa: F401  (the readers' public names)
    SessionLine,
    SessionTurnLine,
    read_sessions,
    select_sessions,
)
from servesim.workload.trace_columns import (
    _all_numeric,
    _bad,
    _csv_header,
    _first_json_record,
    _hash_id_column,
    _need_file,
    _read_csv,
    _read_jsonl,
    _timestamps_s,
    _token_column,
    _Where,
)

# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class FormatDefaults:
    """Column names, timestamp unit and hash block size a format uses unless told otherwise."""

    timestamp_col: str
    input_col: str
    output_col: str
    hash_ids_col: str | None
    timestamp_unit: str  # "s" | "ms" | "us" | "datetime" | "auto" (numbers: s, else date-time)
    hash_block_size: int


FORMAT_DEFAULTS: dict[str, FormatDefaults] = {
    "azure": FormatDefaults("TIMESTAMP", "ContextTokens", "GeneratedTokens", None, "datetime", 16),
    "burstgpt": FormatDefaults("Timestamp", "Request tokens", "Response tokens", None, "s", 16),
    "mooncake": FormatDefaults("timestamp", "input_length", "output_length", "hash_ids", "ms", 512),
    "csv": FormatDefaults("timestamp", "input_tokens", "output_tokens", None, "auto", 16),
    "jsonl": FormatDefaults("timestamp", "input_tokens", "output_tokens", None, "auto", 16),
}

_CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
_JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}


def detect_format(path: str | Path) -> str:
    """The trace format of ``path`` from its suffix and its header or first record."""
    path = Path(path)
    _need_file(path)
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        header = set(_csv_header(path))
        if {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= header:
            return "azure"
        if {"Timestamp", "Request tokens", "Response tokens"} <= header:
            return "burstgpt"
        return "csv"
    if suffix in _JSONL_SUFFIXES:
        first = _first_json_record(path)
        if "turns" in first:
            return "sessions"
        if {"input_length", "output_length"} <= first.keys():
            return "mooncake"
        return "jsonl"
    raise ServesimError(
        f"cannot tell the format of {path.name} from its suffix {suffix!r}",
        field="trace_format",
        fix="set trace_format to azure, burstgpt, mooncake, csv, jsonl or sessions",
    )


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class TraceTable:
    """A trace's requests, sorted by arrival.

    Attributes:
        source: file name, for messages.
        format: the format it was read as.
        timestamps_s: arrival times, seconds from the first request (float64, sorted).
        input_tokens, output_tokens: int64 arrays, >= 1 after the zero-token policy.
        hash_ids: per request, or None when the trace has none.
        hash_block_size: tokens per hash id.
        num_clamped: rows whose 0 input/output was counted as 1 token.
        num_dropped: rows dropped for 0 tokens (``zero_tokens: drop``).
    """

    source: str
    format: str
    timestamps_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: tuple[tuple[int, ...], ...] | None
    hash_block_size: int
    num_clamped: int = 0
    num_dropped: int = 0

    def __len__(self) -> int:
        return len(self.timestamps_s)

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last arrival."""
        return float(self.timestamps_s[-1]) if len(self) else 0.0


def _no_column(
    path: Path, fmt: str, role: str, name: str, header: list[str], wanted: dict[str, str | None]
) -> ServesimError:
    """A missing column: the columns the format needs, and the header found (shortened: the
    first line of a file in another format can be a whole JSON record)."""
    needed = ", ".join(n for n in wanted.values() if n is not None)
    found = ",".join(header)
    if len(found) > 60:
        found = found[:59] + "…"
    text = (
        f"{path.name} has no column {name!r}: the {fmt} format reads columns {needed}; "
        f"its header is {found!r}"
    )
    if found.lstrip().startswith(("{", "[")):
        return ServesimError(
            text, field="trace_format", fix="it is JSON lines: use --trace-format jsonl or auto"
        )
    return ServesimError(
        text, field=f"{role}_col", fix=f"check --trace-format, or set {role}_col to its name"
    )


def _raw_columns(
    path: Path, fmt: str, wanted: dict[str, str | None]
) -> tuple[dict[str, list[Any]], _Where]:
    """Values of the wanted columns (role → column name; None = optional, absent)."""
    if fmt in ("azure", "burstgpt", "csv"):
        header, rows = _read_csv(path)
        where = _Where(path.name, "row", range(1, len(rows) + 1))
        index = {}
        for role, name in wanted.items():
            if name is None:
                continue
            if name not in header:
                raise _no_column(path, fmt, role, name, header, wanted)
            index[role] = header.index(name)
        short = [i for i, row in enumerate(rows) if len(row) <= max(index.values(), default=0)]
        if short:
            i = short[0]
            missing = next(wanted[r] for r, j in index.items() if j >= len(rows[i]))
            raise _bad(where, i, missing, "is missing")
        return {role: [row[j] for row in rows] for role, j in index.items()}, where
    records, linenos = _read_jsonl(path)
    where = _Where(path.name, "line", linenos)
    columns = {}
    for role, name in wanted.items():
        if name is None:
            continue
        values = []
        for i, record in enumerate(records):
            if name not in record:
                raise _bad(
                    where, i, name, "is missing", fix=f"set {role}_col if it has another name"
                )
            values.append(record[name])
        columns[role] = values
    return columns, where


def read_trace(
    path: str | Path,
    fmt: str = "auto",
    *,
    timestamp_col: str | None = None,
    input_col: str | None = None,
    output_col: str | None = None,
    hash_ids_col: str | None = None,
    timestamp_unit: str | None = None,
    hash_block_size: int | None = None,
    zero_tokens: str = "clamp",
) -> TraceTable:
    """Read a request trace (any format but ``sessions``) into a sorted :class:`TraceTable`.

    Column names, the timestamp unit (``s``, ``ms``, ``us``, ``datetime``) and the hash block
    size default to the format's own (:data:`FORMAT_DEFAULTS`). Raises ServesimError naming the
    file, row and column of the first bad value.
    """
    path = Path(path)
    _need_file(path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "sessions":
        raise ServesimError(
            "a sessions file holds sessions, not rows",
            field="trace_format",
            fix="read it with read_sessions (or build_workload)",
        )
    if fmt not in FORMAT_DEFAULTS:
        raise ServesimError(
            f"unknown trace format {fmt!r}",
            field="trace_format",
            fix=f"use auto, sessions or one of {', '.join(FORMAT_DEFAULTS)}",
        )
    defaults = FORMAT_DEFAULTS[fmt]
    hash_col = hash_ids_col or defaults.hash_ids_col
    if hash_col is None and fmt in ("csv", "jsonl") and _has_column(path, fmt, "hash_ids"):
        hash_col = "hash_ids"
    wanted = {
        "timestamp": timestamp_col or defaults.timestamp_col,
        "input": input_col or defaults.input_col,
        "output": output_col or defaults.output_col,
        "hash_ids": hash_col,
    }
    raw, where = _raw_columns(path, fmt, wanted)
    if not raw["timestamp"]:
        raise ServesimError(f"{path.name} has no requests", field="trace")
    times = _timestamps_s(
        raw["timestamp"], wanted["timestamp"], timestamp_unit or defaults.timestamp_unit, where
    )
    inputs = _token_column(raw["input"], wanted["input"], where)
    outputs = _token_column(raw["output"], wanted["output"], where)
    ids = _hash_id_column(raw["hash_ids"], hash_col, where) if hash_col else None
    block = hash_block_size or defaults.hash_block_size

    keep, clamped = _zero_policy(inputs, outputs, zero_tokens, wanted, where)
    inputs, outputs = np.maximum(inputs, 1), np.maximum(outputs, 1)
    if ids is not None:
        _check_id_counts(ids, inputs, outputs, block, hash_col, where)
    order = np.flatnonzero(keep)
    order = order[np.argsort(times[order], kind="stable")]  # traces are usually sorted; stable
    if order.size == 0:
        raise ServesimError(
            f"{path.name}: every row has 0 tokens", field="trace", fix="use zero_tokens: clamp"
        )
    times = times[order]
    return TraceTable(
        source=path.name,
        format=fmt,
        timestamps_s=times - times[0],
        input_tokens=inputs[order],
        output_tokens=outputs[order],
        hash_ids=None if ids is None else tuple(ids[i] for i in order.tolist()),
        hash_block_size=block,
        num_clamped=clamped,
        num_dropped=len(keep) - int(keep.sum()),
    )


def _has_column(path: Path, fmt: str, name: str) -> bool:
    if fmt == "csv":
        return name in _csv_header(path)
    return name in _first_json_record(path)


def _zero_policy(
    inputs: np.ndarray,
    outputs: np.ndarray,
    policy: str,
    cols: dict[str, str | None],
    where: _Where,
) -> tuple[np.ndarray, int]:
    """(rows to keep, number of rows clamped) under the ``zero_tokens`` policy."""
    zero = (inputs == 0) | (outputs == 0)
    if policy == "error" and zero.any():
        i = int(np.flatnonzero(zero)[0])
        column = cols["input"] if inputs[i] == 0 else cols["output"]
        raise _bad(
            where,
            i,
            column,
            "is 0",
            fix="set zero_tokens: clamp (count as 1 token) or drop (skip the row)",
        )
    if policy == "drop":
        return ~zero, 0
    return np.ones(len(inputs), dtype=bool), int(zero.sum())


def _check_id_counts(
    ids: list[tuple[int, ...]],
    inputs: np.ndarray,
    outputs: np.ndarray,
    block: int,
    column: str,
    where: _Where,
) -> None:
    counts = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    most = -(-(inputs + outputs) // block)
    bad = np.flatnonzero(counts > most)
    if bad.size:
        i = int(bad[0])
        raise _bad(
            where,
            i,
            column,
            f"has {counts[i]} ids but {inputs[i]} + {outputs[i]} tokens fill only {most[i]} "
            f"blocks of {block}",
            fix="set hash_block_size to the trace's block size",
        )


def select_rows(
    table: TraceTable,
    *,
    time_window: tuple[float, float] | None = None,
    max_requests: int | None = None,
    rate_scale: float = 1.0,
) -> TraceTable:
    """Keep requests in ``time_window`` (trace seconds, end excluded), at most ``max_requests``,
    re-zero the times at the first kept request and divide them by ``rate_scale``."""
    keep = np.arange(len(table))
    if time_window is not None:
        start, end = time_window
        keep = np.flatnonzero((table.timestamps_s >= start) & (table.timestamps_s < end))
        if keep.size == 0:
            raise ServesimError(
                f"no requests of {table.source} in {list(time_window)} s "
                f"(it spans 0–{table.duration_s:.1f} s)",
                field="time_window",
                fix="pick a window inside the trace",
            )
    if max_requests is not None:
        keep = keep[:max_requests]
    times = table.timestamps_s[keep]
    return replace(
        table,
        timestamps_s=(times - times[0]) / rate_scale,
        input_tokens=table.input_tokens[keep],
        output_tokens=table.output_tokens[keep],
        hash_ids=None
        if table.hash_ids is None
        else tuple(table.hash_ids[i] for i in keep.tolist()),
    )


# --------------------------------------------------------------------------- lengths files


def read_lengths_file(path: str | Path, column: str | None = None) -> np.ndarray:
    """Token lengths (int64 >= 1) from one-number-per-line text or a CSV with a header."""
    path = Path(path)
    if not path.is_file():
        raise ServesimError(
            f"{path} {not_a_file(path)}",
            field="empirical.path",
            fix="check the path of the lengths file",
        )
    rows = [
        row
        for _, row in csv_rows(path, field="empirical.path", name=path.name)
        if row and any(cell.strip() for cell in row)
    ]
    if not rows:
        raise ServesimError(f"{path.name} has no lengths", field="empirical.path")
    if _all_numeric(rows[0]):  # no header: one number per line
        if column is not None:
            raise ServesimError(
                f"{path.name} has no header to find {column!r} in",
                field="empirical.column",
                fix="remove column",
            )
        where = _Where(path.name, "line", range(1, len(rows) + 1))
        name, raw = "length", [row[0] for row in rows]
    else:
        header, body = [h.strip() for h in rows[0]], rows[1:]
        if column is None and len(header) > 1:
            raise ServesimError(
                f"{path.name} has columns {', '.join(header)}",
                field="empirical.column",
                fix="set column to one of them",
            )
        name = column or header[0]
        if name not in header:
            raise ServesimError(
                f"{path.name} has no column {name!r}",
                field="empirical.column",
                fix=f"use one of {', '.join(header)}",
            )
        j = header.index(name)
        where = _Where(path.name, "row", range(1, len(body) + 1))
        raw = [row[j] if j < len(row) else "" for row in body]
    values = _token_column(raw, name, where)
    zero = np.flatnonzero(values == 0)
    if zero.size:
        raise _bad(where, int(zero[0]), name, "is 0", fix="lengths must be >= 1")
    if values.size == 0:
        raise ServesimError(f"{path.name} has no lengths", field="empirical.path")
    return values
