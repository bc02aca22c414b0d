"""Reading trace files: raw CSV rows and JSON lines, then one column at a time (numbers, token
counts, timestamps and date-times, hash-id lists), each bad value an error naming the file,
row (or line) and column. Used by the trace and sessions readers."""

import json
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servesim.errors import ServesimError
from servesim.textfile import PARSE_ERRORS, csv_rows, not_a_file, parse_problem, text_lines
from servesim.workload.spec import MAX_SECONDS, MAX_TOKENS

_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _need_file(path: Path) -> None:
    if not path.is_file():
        raise ServesimError(
            f"{path} {not_a_file(path)}",
            field="trace",
            fix="check the path (relative paths are resolved from the working directory)",
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
