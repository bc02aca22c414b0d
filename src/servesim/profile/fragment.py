"""The fragment file: what one profiled process writes, and how it is read back.

A fragment is a JSON-lines file named ``{host}-{pid}-{start_unix_ns}.jsonl``. Every line is one
JSON object with a ``"type"``:

- ``fragment`` (first line): ``version``, ``host``, ``pid``, ``ppid``, ``process`` (a key unique
  to one process lifetime, shared by every fragment that process writes), ``start_unix_ns``,
  ``clock_unix_ns`` and ``clock_perf_ns`` (one reading of both clocks, to map
  ``time.perf_counter()`` seconds onto Unix time), ``argv0``, ``forked_from`` (parent pid or null).
- ``event``: a trace event: ``ph`` (``X`` slice, ``i`` instant, ``C`` counter), ``name``,
  optional ``cat`` and ``args``, ``ts_ns`` (integer ns since the Unix epoch), ``dur_ns`` for
  ``X``, ``tid`` for ``X`` and ``i``.
- ``step``: one engine step (see :func:`step_record`).
- ``thread``: ``tid`` and ``name`` of a row (a thread, or an asyncio task); the last one wins.
- ``process``: ``name`` of the process; the last one wins.

Times are integers in nanoseconds so nothing is lost before the merge turns them into µs.
A process killed mid-write leaves a truncated last line; readers skip and count it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
#: ``{host}-{pid}-{start_unix_ns}.jsonl``; the host part may itself contain dashes.
FILE_PATTERN = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-(?P<start>\d+)\.jsonl$")
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# NOTE: json.dumps with options builds a new encoder per call, several µs; these are built once.
_STRICT = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=repr)
_LENIENT = json.JSONEncoder(separators=(",", ":"), default=repr)
#: JSON string literal of a str (C-implemented; ASCII-only output is valid JSON).
quote = json.encoder.encode_basestring_ascii


def fragment_name(host: str, pid: int, start_unix_ns: int) -> str:
    """File name of a fragment; characters unsafe in file names are replaced in ``host``."""
    return f"{_HOST_UNSAFE.sub('_', host) or 'host'}-{pid}-{start_unix_ns}.jsonl"


def dumps(obj: Any) -> str:
    """Compact JSON that never fails: odd objects become strings, NaN/inf become strings.

    NOTE: JSON has no NaN; json.dumps would write a bare ``NaN`` that strict readers (Perfetto)
    reject, so the rare non-finite float is spelled as a string instead.
    """
    try:
        return _STRICT.encode(obj)
    except ValueError:
        return _LENIENT.encode(_finite(obj))


def dumps_flat(obj: dict[str, Any]) -> str:
    """:func:`dumps` of a flat dict, several times faster for the usual span args and counters.

    NOTE: ``JSONEncoder.encode`` builds a new C encoder on every call (about 1.5 µs); a dict of
    strings and finite numbers is spelled here directly, anything else goes to :func:`dumps`.
    """
    parts = []
    for key, value in obj.items():
        kind = type(value)
        if type(key) is not str:
            return dumps(obj)
        if kind is int:
            text = str(value)
        elif kind is float and math.isfinite(value):
            text = repr(value)
        elif kind is str:
            text = quote(value)
        else:
            return dumps(obj)
        parts.append(f"{quote(key)}:{text}")
    return "{" + ",".join(parts) + "}"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def step_record(
    index: int,
    start_s: float,
    duration_s: float,
    batch_size: int,
    prefill_tokens: int,
    decode_tokens: int,
    context_tokens: int,
    phases: dict[str, float] | None,
) -> dict[str, Any]:
    """The step-log record, exactly as written (one JSON line each)."""
    return {
        "type": "step",
        "step": int(index),
        "start_s": float(start_s),
        "duration_s": float(duration_s),
        "batch_size": int(batch_size),
        "prefill_tokens": int(prefill_tokens),
        "decode_tokens": int(decode_tokens),
        "context_tokens": int(context_tokens),
        "phases": {str(k): float(v) for k, v in (phases or {}).items()},
    }


@dataclass
class Fragment:
    """One fragment file read back. ``skipped`` counts truncated or malformed lines."""

    path: Path
    header: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    thread_names: dict[int, str] = field(default_factory=dict)
    process_name: str | None = None
    skipped: int = 0

    @property
    def host(self) -> str:
        if self.header and isinstance(self.header.get("host"), str):
            return self.header["host"]
        match = FILE_PATTERN.match(self.path.name)
        return match["host"] if match else "unknown"

    @property
    def pid(self) -> int:
        if self.header and _is_int(self.header.get("pid")):
            return self.header["pid"]
        match = FILE_PATTERN.match(self.path.name)
        return int(match["pid"]) if match else 0

    @property
    def process_key(self) -> str:
        """Identifies one process lifetime: fragments with the same key are one process."""
        if self.header and isinstance(self.header.get("process"), str):
            return self.header["process"]
        return f"{self.host}:{self.pid}:{self.path.name}"

    @property
    def perf_to_unix_ns(self) -> int | None:
        """Add to ``time.perf_counter_ns()`` readings of this process to get Unix ns."""
        if not self.header:
            return None
        unix_ns, perf_ns = self.header.get("clock_unix_ns"), self.header.get("clock_perf_ns")
        if _is_int(unix_ns) and _is_int(perf_ns):
            return unix_ns - perf_ns
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_event(obj: dict[str, Any]) -> bool:
    ph = obj.get("ph")
    if not isinstance(obj.get("name"), str) or not _is_int(obj.get("ts_ns")):
        return False
    if not isinstance(obj.get("cat", ""), str) or not isinstance(obj.get("args", {}), dict):
        return False
    if ph == "X":
        return _is_int(obj.get("dur_ns")) and obj["dur_ns"] >= 0 and _is_int(obj.get("tid"))
    if ph == "i":
        return _is_int(obj.get("tid"))
    if ph == "C":
        values = obj.get("args", {}).values()
        return bool(values) and all(_is_finite_number(v) for v in values)
    return False


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _valid_step(obj: dict[str, Any]) -> bool:
    numbers = ("start_s", "duration_s")
    counts = ("step", "batch_size", "prefill_tokens", "decode_tokens", "context_tokens")
    return (
        all(isinstance(obj.get(k), (int, float)) and math.isfinite(obj[k]) for k in numbers)
        and all(_is_int(obj.get(k)) for k in counts)
        and isinstance(obj.get("phases", {}), dict)
    )


def read_fragment(path: Path) -> Fragment:
    """Read one fragment; lines that are cut short or not understood are skipped and counted."""
    frag = Fragment(path=path)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                frag.skipped += 1
                continue
            if not _take(frag, obj):
                frag.skipped += 1
    return frag


def _take(frag: Fragment, obj: Any) -> bool:
    """Add one parsed line to ``frag``; False when the line is not a record we understand."""
    if not isinstance(obj, dict):
        return False
    kind = obj.get("type")
    if kind == "event" and _valid_event(obj):
        frag.events.append(obj)
    elif kind == "step" and _valid_step(obj):
        frag.steps.append(obj)
    elif kind == "thread" and _is_int(obj.get("tid")) and isinstance(obj.get("name"), str):
        frag.thread_names[obj["tid"]] = obj["name"]
    elif kind == "process" and isinstance(obj.get("name"), str):
        frag.process_name = obj["name"]
    elif kind == "fragment":
        # NOTE: a signal handler flushing in the middle of the first flush can write the header
        # twice; the first one is kept.
        if frag.header is None:
            frag.header = obj
    else:
        return False
    return True
