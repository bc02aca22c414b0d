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

import json
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np
from msgspec import Meta

from servesim.errors import ServesimError
from servesim.textfile import PARSE_ERRORS, csv_rows, parse_problem, text_lines
from servesim.validation import FieldError, Spec, problem_of
from servesim.validation import replace as replace_spec
from servesim.workload.spec import MAX_TOKENS

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

_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
_JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}


def _need_file(path: Path) -> None:
    if not path.is_file():
        raise ServesimError(
            f"file not found: {path}",
            field="trace",
            fix="check the path (relative paths are resolved from the working directory)",
        )


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


# --------------------------------------------------------------------------- raw rows


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return csv_rows(path, field="trace", name=path.name, delimiter=delimiter)


def _csv_header(path: Path) -> list[str]:
    return [h.strip() for h in next(_csv_records(path), (0, []))[1]]


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    records = _csv_records(path)
    header = [h.strip() for h in next(records, (0, []))[1]]
    rows = [row for _, row in records if row]  # csv yields [] for a blank line
    if not header:
        raise ServesimError(f"{path.name} is empty", field="trace")
    return header, rows


def _parse_json_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except PARSE_ERRORS as err:
        problem = getattr(err, "msg", None) or parse_problem(err)
        raise ServesimError(
            f"{path.name} line {lineno}: not valid JSON ({problem})", field="trace"
        ) from None
    if not isinstance(record, dict):
        raise ServesimError(f"{path.name} line {lineno}: expected a JSON object", field="trace")
    return record


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    records, linenos = [], []
    for lineno, line in text_lines(path, field="trace", name=path.name):
        if line.strip():
            records.append(_parse_json_line(path, lineno, line))
            linenos.append(lineno)
    return records, linenos


def _first_json_record(path: Path) -> dict[str, Any]:
    for lineno, line in text_lines(path, field="trace", name=path.name):
        if line.strip():
            return _parse_json_line(path, lineno, line)
    raise ServesimError(f"{path.name} is empty", field="trace")


# --------------------------------------------------------------------------- column parsing


@dataclass(frozen=True)
class _Where:
    """Where values came from, for messages: ``conv.csv row 17`` / ``mc.jsonl line 3``."""

    name: str
    unit: str  # "row" (CSV data rows, from 1 under the header) or "line" (JSONL)
    numbers: Sequence[int]

    def at(self, i: int) -> str:
        return f"{self.name} {self.unit} {self.numbers[i]}"


def _bad(where: _Where, i: int, column: str, problem: str, fix: str | None = None) -> ServesimError:
    return ServesimError(f"{where.at(i)}: {column} {problem}", field="trace", fix=fix)


MAX_SECONDS = 1e10
"""Largest timestamp, in seconds after its unit (~317 years: Unix seconds, ms or us of any
real trace are far below; a larger one is a wrong ``timestamp_unit`` or a corrupt cell)."""

_FIRST_DATETIME, _END_DATETIME = np.datetime64("1900-01-01"), np.datetime64("2170-01-01")
"""Date-times must fall in these 270 years: nanosecond stamps wrap silently beyond ~1678 and
~2262, and the span between two of them must fit in int64 nanoseconds."""


def _short(value: Any, width: int = 40) -> str:
    """``value`` for a message, cut to ``width`` characters (a cell can be megabytes)."""
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _shown(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "missing"
    return f"{_short(repr(value) if isinstance(value, str) else value)}, not a number"


def _numbers(raw: Sequence[Any], column: str, where: _Where) -> np.ndarray:
    """Float64 values of a column; a non-number, missing or infinite value names its row."""
    try:
        values = np.asarray(raw, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        values = None
    if values is None or values.ndim != 1:
        for i, v in enumerate(raw):
            try:
                ok = not isinstance(v, (bool, list, dict)) and math.isfinite(float(v))
            except OverflowError:  # an int too large for a float (JSON has no limit)
                raise _bad(where, i, column, f"is {_short(v)}, out of range") from None
            except (ValueError, TypeError):
                ok = False
            if not ok:
                raise _bad(where, i, column, f"is {_shown(v)}")
        values = np.asarray([float(v) for v in raw])  # unreachable in practice; keeps types sound
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        shown = "missing" if np.isnan(values[i]) else f"{_short(raw[i])}, out of range"
        raise _bad(where, i, column, f"is {shown}")
    return values


def _token_column(raw: Sequence[Any], column: str, where: _Where) -> np.ndarray:
    """Whole, non-negative token counts (int64, at most :data:`MAX_TOKENS`)."""
    values = _numbers(raw, column, where)
    negative = np.flatnonzero(values < 0)
    if negative.size:
        i = int(negative[0])
        raise _bad(where, i, column, f"is {_short(raw[i])}", fix="token counts must be >= 0")
    too_many = np.flatnonzero(values > MAX_TOKENS)
    if too_many.size:
        i = int(too_many[0])
        raise _bad(
            where,
            i,
            column,
            f"is {_short(raw[i])}, out of range",
            fix=f"token counts are at most {MAX_TOKENS:,}",
        )
    fractional = np.flatnonzero(values != np.floor(values))
    if fractional.size:
        i = int(fractional[0])
        raise _bad(where, i, column, f"is {_short(raw[i])}, not a whole number of tokens")
    return values.astype(np.int64)


def _is_datetime(value: Any, unit: str) -> bool:
    if isinstance(value, (bool, list, dict)):
        return False
    try:
        np.datetime64(value, unit)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _parse_datetimes(raw: Sequence[Any], column: str, where: _Where, unit: str) -> np.ndarray:
    with warnings.catch_warnings():
        # numpy warns (and then ignores the offset) for "...Z" / "+00:00"; traces use one zone.
        warnings.simplefilter("ignore")
        try:
            return np.asarray(raw, dtype=f"datetime64[{unit}]")
        except (ValueError, TypeError, OverflowError):
            pass
        i = next((i for i, v in enumerate(raw) if not _is_datetime(v, unit)), 0)
        raise _bad(
            where,
            i,
            column,
            f"is {_short(repr(raw[i]))}, not a date-time or a number",
            fix="use ISO date-times like 2023-11-16 18:15:46.68 or set timestamp_unit",
        ) from None


def _datetimes_s(raw: Sequence[Any], column: str, where: _Where) -> np.ndarray:
    # NOTE: parsed once in whole seconds to check the range (nanosecond stamps wrap silently
    # past 2262), then in nanoseconds for the values.
    coarse = _parse_datetimes(raw, column, where, "s")
    known = ~np.isnat(coarse)
    outside = np.flatnonzero(known & ((coarse < _FIRST_DATETIME) | (coarse >= _END_DATETIME)))
    if outside.size:
        i = int(outside[0])
        raise _bad(
            where,
            i,
            column,
            f"is {_short(raw[i])}, out of range",
            fix="date-times must fall between 1900 and 2169",
        )
    stamps = _parse_datetimes(raw, column, where, "ns")
    nat = np.flatnonzero(np.isnat(stamps))
    if nat.size:
        raise _bad(where, int(nat[0]), column, "is missing")
    return (stamps - stamps.min()).astype(np.int64) / 1e9


def _timestamps_s(raw: Sequence[Any], column: str, unit: str, where: _Where) -> np.ndarray:
    """Seconds (float64), any origin."""
    if unit == "auto":
        unit = "s" if _looks_numeric(raw) else "datetime"
    if unit == "datetime":
        return _datetimes_s(raw, column, where)
    seconds = _numbers(raw, column, where) * _UNIT_SECONDS[unit]
    outside = np.flatnonzero(np.abs(seconds) > MAX_SECONDS)
    if outside.size:
        i = int(outside[0])
        raise _bad(
            where,
            i,
            column,
            f"is {_short(raw[i])}, out of range",
            fix=f"timestamps are at most {MAX_SECONDS:.0e} s; check timestamp_unit ({unit})",
        )
    return seconds


def _looks_numeric(raw: Sequence[Any]) -> bool:
    """Whether a column holds numbers (judged by its first value; bad rows are found later)."""
    try:
        float(raw[0])
    except OverflowError:
        return True  # an int too large for a float: a number, refused as out of range later
    except (ValueError, TypeError):
        return False
    return True


def _all_numeric(raw: Sequence[Any]) -> bool:
    try:
        values = np.asarray(raw, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return False
    return values.ndim == 1 and bool(np.isfinite(values).all())


_ID_SEPARATORS = re.compile(r"[\s,;]+")


def _id_list(value: Any) -> tuple[int, ...] | None:
    """Hash ids from a JSON list or a CSV cell ("[1, 2]" or "1 2"); None if malformed."""
    if isinstance(value, str):
        text = value.strip().removeprefix("[").removesuffix("]").strip()
        try:
            value = [int(part) for part in _ID_SEPARATORS.split(text) if part]
        except ValueError:
            return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value):
        return None
    return tuple(value)


def _hash_id_column(raw: Sequence[Any], column: str, where: _Where) -> list[tuple[int, ...]]:
    out = []
    for i, v in enumerate(raw):
        ids = _id_list(v)
        if ids is None:
            raise _bad(where, i, column, "is not a list of non-negative integer ids")
        out.append(ids)
    return out


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


# --------------------------------------------------------------------------- sessions files


class SessionTurnLine(Spec):
    """One turn of a sessions-file line."""

    input_tokens: Annotated[
        int, Meta(ge=1, le=MAX_TOKENS, description="the whole prompt, history included")
    ]
    output_tokens: Annotated[int, Meta(ge=1, le=MAX_TOKENS)]
    think_time_s: Annotated[
        float,
        Meta(
            ge=0, le=MAX_SECONDS, description="seconds from the previous turn finishing to this one"
        ),
    ] = 0.0
    hash_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.think_time_s):
            raise FieldError("think_time_s", f"must be a finite number (got {self.think_time_s})")


class SessionLine(Spec, kw_only=True):
    """One line of a sessions file: a session and its turns."""

    session_id: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    start_s: Annotated[float, Meta(ge=0, le=MAX_SECONDS, description="first turn's arrival, s")]
    turns: Annotated[tuple[SessionTurnLine, ...], Meta(min_length=1)]
    hash_block_size: Annotated[int, Meta(ge=1, le=MAX_TOKENS)] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.start_s):
            raise FieldError("start_s", f"must be a finite number (got {self.start_s})")


def read_sessions(path: str | Path, hash_block_size: int = 16) -> list[SessionLine]:
    """Read a sessions JSONL file, sorted by ``start_s``, starts re-zeroed at the first one.

    Each line: ``{"start_s": 0.0, "turns": [{"input_tokens": 900, "output_tokens": 120},
    {"input_tokens": 1150, "output_tokens": 80, "think_time_s": 4.0}]}`` plus optional
    ``session_id`` (unique), per-turn ``hash_ids`` and ``hash_block_size`` (tokens per id;
    default ``hash_block_size``).
    """
    path = Path(path)
    _need_file(path)
    records, linenos = _read_jsonl(path)
    if not records:
        raise ServesimError(f"{path.name} has no sessions", field="trace")
    lines = []
    for record, lineno in zip(records, linenos, strict=True):
        try:
            line = msgspec.convert(record, SessionLine)
        except msgspec.ValidationError as err:
            problem = problem_of(err, SessionLine, record)
            where = f"{problem.dotted}: " if problem.dotted else ""
            raise ServesimError(
                f"{path.name} line {lineno}: {where}{problem.message}", field="trace"
            ) from None
        if line.turns[0].think_time_s:
            raise ServesimError(
                f"{path.name} line {lineno}: turns.0.think_time_s is set",
                field="trace",
                fix="the first turn arrives at start_s",
            )
        _check_turn_ids(line, hash_block_size, f"{path.name} line {lineno}")
        lines.append(line)
    ids = [line.session_id for line in lines if line.session_id is not None]
    if len(ids) != len(set(ids)):
        raise ServesimError(
            f"{path.name}: session_id values repeat",
            field="trace",
            fix="give each session its own id, or none",
        )
    lines.sort(key=lambda line: line.start_s)
    first = lines[0].start_s
    return [replace_spec(line, start_s=line.start_s - first) for line in lines]


def _check_turn_ids(line: SessionLine, default_block: int, where: str) -> None:
    block = line.hash_block_size or default_block
    for k, turn in enumerate(line.turns):
        most = -(-(turn.input_tokens + turn.output_tokens) // block)
        if turn.hash_ids is not None and len(turn.hash_ids) > most:
            raise ServesimError(
                f"{where}: turns.{k}.hash_ids has {len(turn.hash_ids)} ids but "
                f"{turn.input_tokens} + {turn.output_tokens} tokens fill only {most} blocks of "
                f"{block}",
                field="trace",
                fix="set hash_block_size to the block size the ids were made with",
            )


def select_sessions(
    lines: list[SessionLine],
    *,
    time_window: tuple[float, float] | None = None,
    max_requests: int | None = None,
    rate_scale: float = 1.0,
    source: str = "sessions file",
) -> list[SessionLine]:
    """Sessions starting in ``time_window``; at most ``max_requests`` turns in all (the
    session that crosses the cap is cut short); starts re-zeroed and divided by ``rate_scale``.
    Think times are the users' and stay as they are."""
    if time_window is not None:
        start, end = time_window
        lines = [line for line in lines if start <= line.start_s < end]
        if not lines:
            raise ServesimError(
                f"no sessions of {source} start in {list(time_window)} s",
                field="time_window",
                fix="pick a window inside the file",
            )
    if max_requests is not None:
        capped, left = [], max_requests
        for line in lines:
            if left <= 0:
                break
            capped.append(replace_spec(line, turns=line.turns[:left]))
            left -= len(line.turns)
        lines = capped
    first = lines[0].start_s
    return [replace_spec(line, start_s=(line.start_s - first) / rate_scale) for line in lines]


# --------------------------------------------------------------------------- lengths files


def read_lengths_file(path: str | Path, column: str | None = None) -> np.ndarray:
    """Token lengths (int64 >= 1) from one-number-per-line text or a CSV with a header."""
    path = Path(path)
    if not path.is_file():
        raise ServesimError(
            f"file not found: {path}",
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
