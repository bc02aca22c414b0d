"""Readers for measured step times: servesim step logs (JSON lines) and operator/step CSVs.

Both give a :class:`Measurements` table: one row per measured step (or operator run), its
seconds and its batch as aggregates (``batch_size``, ``prefill_tokens``, ``decode_tokens``,
``context_tokens``), plus the exact per-row batch when the file has it.

**Step log** (``servesim.profile.step`` writes it): JSON lines; lines with ``"type": "step"``
are steps, every other line is ignored::

    {"type": "step", "step": 7, "start_s": 12.5, "duration_s": 0.0048, "batch_size": 3,
     "prefill_tokens": 0, "decode_tokens": 3, "context_tokens": 1500,
     "phases": {"schedule": 0.0005, "forward": 0.004},
     "new_tokens": [1, 1, 1], "context_lens": [400, 500, 600]}

``context_tokens`` is the sum over the batch of the tokens each sequence had in its KV cache
*before* the step (the convention of servesim's own ``steps.csv``). ``phases``, and the
per-row arrays ``new_tokens`` / ``context_lens`` (one entry per sequence), are optional.

**Operator/step CSV**: columns ``op,tokens,context,batch,seconds`` (any order, extra columns
ignored). ``op`` is ``step`` for a whole forward step, or an operator or group name of the
cost model (``attention``, ``mlp``, ``gate_up_proj``...); ``tokens`` is the tokens computed,
summed over the batch; ``context`` is the cached tokens *per sequence*; ``batch`` the
sequences. Each sequence computes ``tokens / batch`` tokens (a decode when that is 1).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servesim.errors import ServesimError
from servesim.textfile import PARSE_ERRORS, csv_rows, not_a_file, text_lines

STEP_FIELDS = ("duration_s", "batch_size", "prefill_tokens", "decode_tokens", "context_tokens")
CSV_FIELDS = ("op", "tokens", "context", "batch", "seconds")
WHOLE_STEP = "step"


@dataclass(frozen=True)
class Measurements:
    """Measured steps (or operator runs) as columns; every array has one entry per row."""

    source: tuple[str, ...]
    """File name each row came from."""
    where: tuple[str, ...]
    """``file line N`` / ``file row N`` of each row, for messages."""
    op: tuple[str, ...]
    """``step`` for a whole forward step, else the operator or group the row timed."""
    seconds: np.ndarray
    """Measured wall seconds (> 0)."""
    batch_size: np.ndarray
    prefill_tokens: np.ndarray
    decode_tokens: np.ndarray
    context_tokens: np.ndarray
    """Σ over the batch of tokens cached before the step."""
    rows: tuple[tuple[np.ndarray, np.ndarray] | None, ...]
    """Exact ``(new_tokens, context_lens)`` per row when the file gave them, else None."""
    step: np.ndarray
    """Step index as logged (the row number for a CSV)."""
    start_s: np.ndarray
    """Step start, seconds (NaN when not logged)."""
    phases: dict[str, np.ndarray] = field(default_factory=dict)
    """Seconds per named phase; NaN where a step did not log that phase."""

    def __len__(self) -> int:
        return len(self.seconds)

    @property
    def tokens(self) -> np.ndarray:
        """Tokens computed per row (prefill + decode)."""
        return self.prefill_tokens + self.decode_tokens

    def select(self, keep: np.ndarray) -> Measurements:
        """The rows where ``keep`` (a boolean mask or index array) selects."""
        idx = np.arange(len(self))[keep]
        pick = idx.tolist()
        return Measurements(
            source=tuple(self.source[i] for i in pick),
            where=tuple(self.where[i] for i in pick),
            op=tuple(self.op[i] for i in pick),
            seconds=self.seconds[idx],
            batch_size=self.batch_size[idx],
            prefill_tokens=self.prefill_tokens[idx],
            decode_tokens=self.decode_tokens[idx],
            context_tokens=self.context_tokens[idx],
            rows=tuple(self.rows[i] for i in pick),
            step=self.step[idx],
            start_s=self.start_s[idx],
            phases={k: v[idx] for k, v in self.phases.items()},
        )


def concat(parts: list[Measurements]) -> Measurements:
    """Rows of several tables, in order; a phase missing from a part is NaN there."""
    names = sorted({k for p in parts for k in p.phases})
    return Measurements(
        source=sum((p.source for p in parts), ()),
        where=sum((p.where for p in parts), ()),
        op=sum((p.op for p in parts), ()),
        seconds=np.concatenate([p.seconds for p in parts]),
        batch_size=np.concatenate([p.batch_size for p in parts]),
        prefill_tokens=np.concatenate([p.prefill_tokens for p in parts]),
        decode_tokens=np.concatenate([p.decode_tokens for p in parts]),
        context_tokens=np.concatenate([p.context_tokens for p in parts]),
        rows=sum((p.rows for p in parts), ()),
        step=np.concatenate([p.step for p in parts]),
        start_s=np.concatenate([p.start_s for p in parts]),
        phases={
            k: np.concatenate([p.phases.get(k, np.full(len(p), np.nan)) for p in parts])
            for k in names
        },
    )


# --------------------------------------------------------------------------- value checks


MAX_COUNT = 2**40
"""Largest token, context or step count a row may hold (~10^12: far above any real batch,
and far enough below int64 that sums of them stay exact)."""

MAX_BATCH = 2**20
"""Most sequences a measured batch may have (a row's per-sequence arrays are this long)."""


def _shown(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(value: Any, name: str, where: str, most: int = MAX_COUNT) -> int:
    """A whole number from 0 to ``most`` (an integral float such as 3.0 is accepted)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and isinstance(value, float):
        ok = value.is_integer()  # False for inf and nan too
    if not ok or value < 0:
        raise ServesimError(
            f"{name} must be a whole number >= 0, got {_shown(value)}",
            field=where,
            fix="write token and sequence counts as integers",
        )
    if value > most:
        raise ServesimError(
            f"{name} is {_shown(value)}, out of range",
            field=where,
            fix=f"{name} is at most {most:,}",
        )
    return int(value)


def _finite(value: Any) -> bool:
    """Whether ``value`` is a JSON number a float can hold (not a bool, inf, nan or 1e400)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _seconds(value: Any, name: str, where: str) -> float:
    if not _finite(value):
        raise ServesimError(
            f"{name} must be a number of seconds, got {_shown(value)}",
            field=where,
            fix="log seconds",
        )
    if value <= 0:
        raise ServesimError(
            f"{name} is {_shown(value)}; a measured step takes more than 0 seconds",
            field=where,
            fix="drop the line, or check the timer: durations are seconds, not ms or ns",
        )
    return float(value)


def check_batch(batch_size: int, prefill: int, decode: int, where: str) -> None:
    """Raise when the aggregates cannot describe a batch (every row computes >= 1 token)."""
    if batch_size < 1:
        raise ServesimError(
            "batch_size is 0; a step runs at least one sequence", field=where, fix="drop it"
        )
    if decode > batch_size:
        raise ServesimError(
            f"decode_tokens ({decode}) exceeds batch_size ({batch_size}); a decode row "
            "computes one token",
            field=where,
            fix="count each decoding sequence once in decode_tokens",
        )
    prefill_rows = batch_size - decode
    if prefill_rows and prefill < prefill_rows:
        raise ServesimError(
            f"{prefill_rows} sequences are not decoding but prefill_tokens is {prefill}; each "
            "prefilling sequence computes at least one token",
            field=where,
            fix="batch_size must equal decoding sequences + prefilling sequences",
        )
    if prefill and not prefill_rows:
        raise ServesimError(
            f"prefill_tokens is {prefill} but every one of the {batch_size} sequences is decoding",
            field=where,
            fix="batch_size must equal decoding sequences + prefilling sequences",
        )


def _row_arrays(
    rec: dict[str, Any], batch_size: int, tokens: int, context: int, where: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """The logged per-row batch, checked against the aggregates; None when not logged."""
    has_new, has_ctx = "new_tokens" in rec, "context_lens" in rec
    if not has_new and not has_ctx:
        return None
    if has_new != has_ctx:
        raise ServesimError(
            "new_tokens and context_lens go together", field=where, fix="log both, or neither"
        )
    arrays = []
    for name in ("new_tokens", "context_lens"):
        raw = rec[name]
        if not isinstance(raw, list) or len(raw) != batch_size:
            raise ServesimError(
                f"{name} must be a list of {batch_size} counts (one per sequence)",
                field=where,
                fix="log one entry per sequence of the batch",
            )
        arrays.append(np.array([_count(v, name, where) for v in raw], dtype=np.int64))
    new, ctx = arrays
    if int(new.sum()) != tokens or int(ctx.sum()) != context or (new < 1).any():
        raise ServesimError(
            f"new_tokens sum to {int(new.sum())} and context_lens to {int(ctx.sum())}, but the "
            f"step says {tokens} tokens and context_tokens {context} (every entry of "
            "new_tokens must be >= 1)",
            field=where,
            fix="log the arrays of the same batch as the totals",
        )
    return new, ctx


def _phases(rec: dict[str, Any], where: str) -> dict[str, float]:
    raw = rec.get("phases") or {}
    if not isinstance(raw, dict):
        raise ServesimError("phases must be an object {name: seconds}", field=where)
    out = {}
    for name, value in raw.items():
        if not _finite(value) or value < 0:
            raise ServesimError(
                f"phase {_shown(name)} is {_shown(value)}; phases are seconds >= 0", field=where
            )
        out[str(name)] = float(value)
    return out


# --------------------------------------------------------------------------- step logs


def _need_file(path: Path, flag: str) -> None:
    if not path.is_file():
        raise ServesimError(f"{path} {not_a_file(path)}", field=flag, fix="check the path")


def read_step_log(path: str | Path) -> Measurements:
    """Read a JSON-lines step log; raise ServesimError naming the line of any bad record.

    A last line that is cut short (a killed process) is skipped; any other line that is not
    JSON is an error.
    """
    path = Path(path)
    _need_file(path, "LOGS")
    recs: list[tuple[int, dict[str, Any]]] = []
    torn: int | None = None  # a line that did not parse: an error unless it is the last one
    # NOTE: undecodable bytes read as U+FFFD: a writer killed mid-character leaves some.
    for lineno, line in text_lines(path, "LOGS", path.name, errors="replace"):
        if not line.strip():
            continue
        if torn is not None:
            raise _not_json(path, torn)
        try:
            obj = json.loads(line)
        except PARSE_ERRORS:
            torn = lineno  # NOTE: a killed writer leaves a truncated last line; not an error
            continue
        if isinstance(obj, dict) and obj.get("type") == "step":
            recs.append((lineno, obj))
    if not recs:
        raise ServesimError(
            f'{path.name} has no step records (lines with "type": "step")',
            field="LOGS",
            fix="pass a step log written by servesim.profile.step or servesim trace merge --steps",
        )
    return _from_records(path.name, recs)


def _not_json(path: Path, lineno: int) -> ServesimError:
    return ServesimError(
        "not valid JSON",
        field=f"{path.name} line {lineno}",
        fix="a step log has one JSON object per line",
    )


def _from_records(name: str, recs: list[tuple[int, dict[str, Any]]]) -> Measurements:
    n = len(recs)
    ints = {k: np.zeros(n, dtype=np.int64) for k in STEP_FIELDS[1:]}
    seconds, start, step = np.zeros(n), np.full(n, np.nan), np.zeros(n, dtype=np.int64)
    rows: list[tuple[np.ndarray, np.ndarray] | None] = []
    phase_rows: list[dict[str, float]] = []
    where = []
    for k, (lineno, rec) in enumerate(recs):
        at = f"{name} line {lineno}"
        where.append(at)
        missing = [f for f in STEP_FIELDS if f not in rec]
        if missing:
            raise ServesimError(
                f"missing {', '.join(missing)}",
                field=at,
                fix="a step record needs " + ", ".join(STEP_FIELDS),
            )
        seconds[k] = _seconds(rec["duration_s"], "duration_s", at)
        for f in STEP_FIELDS[1:]:
            ints[f][k] = _count(rec[f], f, at, MAX_BATCH if f == "batch_size" else MAX_COUNT)
        b, p, d, c = (int(ints[f][k]) for f in STEP_FIELDS[1:])
        check_batch(b, p, d, at)
        step[k] = _count(rec["step"], "step", at) if "step" in rec else k
        if _finite(rec.get("start_s")):
            start[k] = float(rec["start_s"])
        rows.append(_row_arrays(rec, b, p + d, c, at))
        phase_rows.append(_phases(rec, at))
    names = sorted({p for ph in phase_rows for p in ph})
    phases = {p: np.array([ph.get(p, np.nan) for ph in phase_rows]) for p in names}
    return Measurements(
        source=(name,) * n,
        where=tuple(where),
        op=(WHOLE_STEP,) * n,
        seconds=seconds,
        batch_size=ints["batch_size"],
        prefill_tokens=ints["prefill_tokens"],
        decode_tokens=ints["decode_tokens"],
        context_tokens=ints["context_tokens"],
        rows=tuple(rows),
        step=step,
        start_s=start,
        phases=phases,
    )


# --------------------------------------------------------------------------- operator CSV


def _csv_number(raw: str, name: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ServesimError(f"{name} is {_shown(raw)}, not a number", field=where) from None
    if math.isinf(value) and "inf" not in raw.lower():  # digits beyond a float's range
        raise ServesimError(f"{name} is {_shown(raw)}, out of range", field=where)
    return value


def read_op_csv(path: str | Path) -> Measurements:
    """Read an ``op,tokens,context,batch,seconds`` CSV; raise naming the row of a bad value.

    Each row is a uniform batch: ``batch`` sequences with ``context`` cached tokens each,
    computing ``tokens`` tokens in all (split as evenly as possible).
    """
    path = Path(path)
    _need_file(path, "LOGS")
    records = csv_rows(path, "LOGS", path.name)
    header = [h.strip() for h in next(records, (0, []))[1]]
    body = [(lineno, row) for lineno, row in records if any(c.strip() for c in row)]
    missing = [c for c in CSV_FIELDS if c not in header]
    if missing:
        raise ServesimError(
            f"{path.name}: missing column(s) {', '.join(missing)}",
            field="LOGS",
            fix="the header must name " + ",".join(CSV_FIELDS),
        )
    if not body:
        raise ServesimError(f"{path.name} has no data rows", field="LOGS")
    col = {name: header.index(name) for name in CSV_FIELDS}
    n = len(body)
    ops, where, rows = [], [], []
    seconds = np.zeros(n)
    b_col, p_col, d_col, c_col = (np.zeros(n, dtype=np.int64) for _ in range(4))
    for k, (rowno, row) in enumerate(body):
        at = f"{path.name} row {rowno}"
        where.append(at)
        if len(row) < len(header):
            raise ServesimError(f"has {len(row)} cells, the header {len(header)}", field=at)
        op = row[col["op"]].strip()
        if not op:
            raise ServesimError("op is empty", field=at, fix="use step, or an operator name")
        ops.append(op)
        tokens = _count(_csv_number(row[col["tokens"]], "tokens", at), "tokens", at)
        context = _count(_csv_number(row[col["context"]], "context", at), "context", at)
        batch = _count(_csv_number(row[col["batch"]], "batch", at), "batch", at, MAX_BATCH)
        seconds[k] = _seconds(_csv_number(row[col["seconds"]], "seconds", at), "seconds", at)
        if batch < 1 or tokens < batch:
            raise ServesimError(
                f"tokens ({tokens}) must be at least batch ({batch}) and batch >= 1: every "
                "sequence computes at least one token",
                field=at,
                fix="tokens is the total over the batch",
            )
        new = np.full(batch, tokens // batch, dtype=np.int64)
        new[: tokens % batch] += 1
        ctx = np.full(batch, context, dtype=np.int64)
        rows.append((new, ctx))
        decode = batch if tokens == batch else 0
        b_col[k], p_col[k], d_col[k], c_col[k] = batch, tokens - decode, decode, batch * context
    return Measurements(
        source=(path.name,) * n,
        where=tuple(where),
        op=tuple(ops),
        seconds=seconds,
        batch_size=b_col,
        prefill_tokens=p_col,
        decode_tokens=d_col,
        context_tokens=c_col,
        rows=tuple(rows),
        step=np.arange(n, dtype=np.int64),
        start_s=np.full(n, np.nan),
    )


def read_measurements(paths: list[str | Path] | tuple[str | Path, ...]) -> Measurements:
    """Read step logs and CSVs (by suffix: ``.csv`` is the operator/step CSV) into one table."""
    if not paths:
        raise ServesimError("no input files", field="LOGS", fix="pass one or more step logs")
    parts = [
        read_op_csv(p) if Path(p).suffix.lower() == ".csv" else read_step_log(p) for p in paths
    ]
    return concat(parts)
