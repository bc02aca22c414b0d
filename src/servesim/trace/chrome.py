"""Chrome trace events: constructors, a writer and a validator.

The Chrome trace event format is what Perfetto, ``chrome://tracing`` and most profilers read. We
write its *object form*, ``{"traceEvents": [...], "otherData": {...}}``, with timestamps and
durations in microseconds (floats allowed) and **without** ``displayTimeUnit``: Perfetto re-reads
every ``ts`` in that unit when the key is present, which silently rescales a whole trace.

Event kinds used by servesim (``ph`` is the event's phase letter):

- ``X`` complete slice (``ts`` + ``dur``) on one thread; slices on a thread must nest.
- ``B``/``E`` begin/end of a slice on one thread, matched as a stack per ``(pid, tid)``.
- ``b``/``e`` async begin/end, paired by ``(cat, id)``; for things that overlap on one row
  (requests in flight), which ``X`` slices on one thread cannot express.
- ``C`` counter samples of a process, one series per key of ``args``.
- ``i`` instant marker; ``M`` metadata naming processes and threads.

Every constructor returns a plain ``dict`` so callers can build lists and hand them to
:func:`write_trace`. :func:`validate_trace` lists what a consumer would reject or misdraw.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from servesim.paths import atomic_text

#: Phases :func:`validate_trace` knows; ``n`` (async instant) and ``I`` (old instant) are accepted.
KNOWN_PHASES = frozenset("XBEbenCMiI")
#: Names allowed for ``M`` events.
METADATA_NAMES = frozenset(
    {"process_name", "thread_name", "process_sort_index", "thread_sort_index", "process_labels"}
)
#: Size past which Perfetto's UI gets slow or fails to load JSON (bytes); writers should say so.
PERFETTO_COMFORT_BYTES = 256 * 1024 * 1024

# NOTE: children and parents are computed from rounded floats, so a child may end a hair after
# its parent; slack below this (µs) is not reported as bad nesting.
_NESTING_SLACK_US = 1e-3
_MAX_PROBLEMS = 100


def _with(event: dict[str, Any], cat: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    if cat:
        event["cat"] = cat
    if args:
        event["args"] = dict(args)
    return event


def complete(
    name: str,
    ts_us: float,
    dur_us: float,
    pid: int,
    tid: int,
    *,
    cat: str = "",
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete slice (``X``) starting at ``ts_us`` and lasting ``dur_us`` microseconds."""
    event = {"name": name, "ph": "X", "ts": ts_us, "dur": dur_us, "pid": pid, "tid": tid}
    return _with(event, cat, args)


def begin(
    name: str,
    ts_us: float,
    pid: int,
    tid: int,
    *,
    cat: str = "",
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The start (``B``) of a slice on one thread; close it with :func:`end` on the same thread."""
    return _with({"name": name, "ph": "B", "ts": ts_us, "pid": pid, "tid": tid}, cat, args)


def end(
    ts_us: float,
    pid: int,
    tid: int,
    *,
    name: str | None = None,
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The end (``E``) of the innermost open slice on ``(pid, tid)`` at ``ts_us`` µs."""
    event: dict[str, Any] = {"ph": "E", "ts": ts_us, "pid": pid, "tid": tid}
    if name is not None:
        event["name"] = name
    return _with(event, "", args)


def _async(
    ph: str, name: str, id: int, ts_us: float, pid: int,  # noqa: A002 - the format's own key
    cat: str, tid: int | None, args: Mapping[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    event: dict[str, Any] = {"name": name, "ph": ph, "cat": cat, "id": id, "ts": ts_us, "pid": pid}
    if tid is not None:
        event["tid"] = tid
    if args:
        event["args"] = dict(args)
    return event


def async_begin(
    name: str,
    id: int,  # noqa: A002 - the format's own key
    ts_us: float,
    pid: int,
    *,
    cat: str,
    tid: int | None = None,
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Start (``b``) of an async slice; the matching :func:`async_end` has the same cat and id.

    ``id`` is an integer unique among the async slices of ``cat`` that are open at one time
    (a request id, for example). Perfetto draws each ``(cat, id)`` as its own row.
    """
    return _async("b", name, id, ts_us, pid, cat, tid, args)


def async_end(
    name: str,
    id: int,  # noqa: A002 - the format's own key
    ts_us: float,
    pid: int,
    *,
    cat: str,
    tid: int | None = None,
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """End (``e``) of the async slice opened by :func:`async_begin` with the same cat and id."""
    return _async("e", name, id, ts_us, pid, cat, tid, args)


def counter(
    name: str, ts_us: float, pid: int, values: Mapping[str, float], *, cat: str = ""
) -> dict[str, Any]:
    """Counter samples (``C``) of a process at ``ts_us`` µs: one series per key of ``values``."""
    event = _with({"name": name, "ph": "C", "ts": ts_us, "pid": pid}, cat, None)
    event["args"] = dict(values)
    return event


def instant(
    name: str,
    ts_us: float,
    pid: int,
    tid: int,
    *,
    cat: str = "",
    scope: str = "t",
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An instant marker (``i``); ``scope`` is ``"t"`` (thread), ``"p"`` (process) or ``"g"``."""
    event = {"name": name, "ph": "i", "ts": ts_us, "pid": pid, "tid": tid, "s": scope}
    return _with(event, cat, args)


def _metadata(name: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    # NOTE: ts 0 is not required by the format, but some readers drop events without a ts.
    return {"name": name, "ph": "M", "ts": 0, "pid": pid, "tid": tid, "args": args}


def process_name(pid: int, name: str) -> dict[str, Any]:
    """Metadata (``M``) naming process ``pid`` in the viewer."""
    return _metadata("process_name", pid, 0, {"name": name})


def thread_name(pid: int, tid: int, name: str) -> dict[str, Any]:
    """Metadata (``M``) naming thread ``tid`` of process ``pid`` (a row in the viewer)."""
    return _metadata("thread_name", pid, tid, {"name": name})


def process_sort_index(pid: int, index: int) -> dict[str, Any]:
    """Metadata (``M``) ordering processes in the viewer: lower ``index`` is drawn higher."""
    return _metadata("process_sort_index", pid, 0, {"sort_index": index})


def thread_sort_index(pid: int, tid: int, index: int) -> dict[str, Any]:
    """Metadata (``M``) ordering the threads of a process: lower ``index`` is drawn higher."""
    return _metadata("thread_sort_index", pid, tid, {"sort_index": index})


def write_trace(
    path: str | os.PathLike[str],
    events: Iterable[Mapping[str, Any]],
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Write ``{"traceEvents": [...], "otherData": metadata}`` to ``path``; return its bytes.

    Events are streamed one per line (a few hundred MB of trace never sits in memory as one
    string). The file appears atomically: it is written beside ``path`` and renamed, so a crash
    leaves no half-written trace. Non-finite numbers raise ``ValueError`` (JSON has no NaN, and
    Perfetto rejects the file). ``displayTimeUnit`` is never written.
    """
    path = Path(path)
    with atomic_text(path) as out:
        out.write('{"traceEvents": [\n')
        first = True
        for event in events:
            if not first:
                out.write(",\n")
            out.write(json.dumps(event, separators=(",", ":"), allow_nan=False))
            first = False
        out.write('\n],\n"otherData": ')
        out.write(json.dumps(dict(metadata or {}), allow_nan=False, default=str))
        out.write("}\n")
    return path.stat().st_size


def load_trace(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a Chrome trace JSON file; the array form is returned wrapped in the object form."""
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    if isinstance(obj, list):
        return {"traceEvents": obj}
    return obj


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _label(i: int, event: Mapping[str, Any]) -> str:
    return f"traceEvents[{i}] ({event.get('ph')} {event.get('name')!r})"


def _check_event(i: int, ev: Any) -> list[str]:
    """Problems of one event in isolation (fields, types, ranges)."""
    if not isinstance(ev, dict):
        return [f"traceEvents[{i}]: not an object"]
    where = _label(i, ev)
    ph = ev.get("ph")
    if ph not in KNOWN_PHASES:
        return [f"{where}: unknown phase {ph!r}"]
    problems = []
    if ph != "E" and not isinstance(ev.get("name"), str):
        problems.append(f"{where}: name must be a string")
    if not _is_int(ev.get("pid")):
        problems.append(f"{where}: pid must be an integer")
    if ph in "XBEiI" and not _is_int(ev.get("tid")):
        problems.append(f"{where}: tid must be an integer")
    if ph != "M" or "ts" in ev:
        ts = ev.get("ts")
        if not _is_number(ts) or ts < 0:
            problems.append(f"{where}: ts must be a finite number >= 0 (µs), got {ts!r}")
    if ph == "X":
        dur = ev.get("dur")
        if not _is_number(dur) or dur < 0:
            problems.append(f"{where}: dur must be a finite number >= 0 (µs), got {dur!r}")
    elif ph in "be":
        if not isinstance(ev.get("cat"), str):
            problems.append(f"{where}: async events need a cat (pairing is by cat and id)")
        if not (_is_int(ev.get("id")) or isinstance(ev.get("id"), str)):
            problems.append(f"{where}: async events need an integer or string id")
    elif ph == "C":
        args = ev.get("args")
        if not isinstance(args, dict) or not args:
            problems.append(f"{where}: a counter needs args with at least one series")
        elif not all(_is_number(v) for v in args.values()):
            problems.append(f"{where}: counter values must be finite numbers")
    elif ph == "M":
        problems.extend(_check_metadata(where, ev))
    elif ph in "iI" and ev.get("s", "t") not in ("t", "p", "g"):
        problems.append(f"{where}: instant scope s must be 't', 'p' or 'g'")
    return problems


def _check_metadata(where: str, ev: Mapping[str, Any]) -> list[str]:
    name = ev.get("name")
    if name not in METADATA_NAMES:
        return [f"{where}: metadata name must be one of {sorted(METADATA_NAMES)}"]
    args = ev.get("args")
    if not isinstance(args, dict):
        return [f"{where}: metadata needs args"]
    if name in ("process_name", "thread_name") and not isinstance(args.get("name"), str):
        return [f"{where}: {name} needs args.name as a string"]
    if name.startswith("thread_") and not _is_int(ev.get("tid")):
        return [f"{where}: {name} needs an integer tid"]
    return []


def _check_pairs(events: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """B/E stacks per thread and b/e pairs per (cat, id), in timestamp order."""
    problems: list[str] = []
    stacks: dict[tuple[Any, Any], list[tuple[int, dict[str, Any]]]] = {}
    open_async: dict[tuple[Any, Any], list[int]] = {}
    for i, ev in sorted(events, key=lambda p: p[1]["ts"]):
        ph = ev["ph"]
        if ph == "B":
            stacks.setdefault((ev["pid"], ev["tid"]), []).append((i, ev))
        elif ph == "E":
            stack = stacks.get((ev["pid"], ev["tid"]))
            if not stack:
                problems.append(
                    f"{_label(i, ev)}: E with no open B on pid {ev['pid']} tid {ev['tid']}"
                )
                continue
            j, opened = stack.pop()
            if "name" in ev and ev["name"] != opened.get("name"):
                problems.append(
                    f"{_label(i, ev)}: E closes {opened.get('name')!r} "
                    f"(traceEvents[{j}]), a different name"
                )
        elif ph == "b":
            open_async.setdefault((ev["cat"], ev["id"]), []).append(i)
        elif ph == "e":
            stack = open_async.get((ev["cat"], ev["id"]))
            if not stack:
                problems.append(
                    f"{_label(i, ev)}: e with no open b for cat {ev['cat']!r} id {ev['id']!r}"
                )
            else:
                stack.pop()
    for (pid, tid), stack in stacks.items():
        for j, ev in stack:
            problems.append(f"{_label(j, ev)}: B never closed by an E on pid {pid} tid {tid}")
    for (cat, id_), stack in open_async.items():
        for j in stack:
            problems.append(f"traceEvents[{j}]: b never closed by an e (cat {cat!r} id {id_!r})")
    return problems


def _check_nesting(slices: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """X slices on one thread must nest: a slice that starts inside another ends inside it."""
    problems: list[str] = []
    rows: dict[tuple[Any, Any], list[tuple[int, dict[str, Any]]]] = {}
    for i, ev in slices:
        rows.setdefault((ev["pid"], ev["tid"]), []).append((i, ev))
    for row in rows.values():
        row.sort(key=lambda p: (p[1]["ts"], -p[1]["dur"]))
        open_ends: list[tuple[float, int]] = []
        for i, ev in row:
            start, stop = ev["ts"], ev["ts"] + ev["dur"]
            while open_ends and open_ends[-1][0] <= start + _NESTING_SLACK_US:
                open_ends.pop()
            if open_ends and stop > open_ends[-1][0] + _NESTING_SLACK_US:
                problems.append(
                    f"{_label(i, ev)}: overlaps traceEvents[{open_ends[-1][1]}] on pid "
                    f"{ev['pid']} tid {ev['tid']} without nesting (use async b/e for overlaps)"
                )
                continue
            open_ends.append((stop, i))
    return problems


def validate_trace(obj: Any) -> list[str]:
    """List the problems a consumer (Perfetto, chrome://tracing) would trip on; empty when valid.

    Checks: object form with a ``traceEvents`` list; no ``displayTimeUnit``; known phases;
    integer pid (and tid on thread events); ``ts`` finite and >= 0; ``X`` with ``dur`` >= 0;
    ``X`` slices nest per thread; every ``B`` closed by an ``E`` on the same pid/tid; async
    ``b``/``e`` paired by ``(cat, id)``; counters with finite numeric series; ``M`` events named
    ``process_name``/``thread_name``/sort indices with the args they need. At most 100 problems
    are listed, then a count of the rest.
    """
    if not isinstance(obj, dict):
        return [
            f"trace must be a JSON object with traceEvents (object form), not {type(obj).__name__}"
        ]
    problems: list[str] = []
    if "displayTimeUnit" in obj:
        problems.append("displayTimeUnit is present: Perfetto would rescale every ts by it")
    events = obj.get("traceEvents")
    if not isinstance(events, list):
        return [*problems, "traceEvents must be a list"]
    paired: list[tuple[int, dict[str, Any]]] = []
    slices: list[tuple[int, dict[str, Any]]] = []
    for i, ev in enumerate(events):
        found = _check_event(i, ev)
        problems.extend(found)
        if found:
            continue
        if ev["ph"] in "BEbe":
            paired.append((i, ev))
        elif ev["ph"] == "X":
            slices.append((i, ev))
    problems.extend(_check_pairs(paired))
    problems.extend(_check_nesting(slices))
    if len(problems) > _MAX_PROBLEMS:
        extra = len(problems) - _MAX_PROBLEMS
        problems = [*problems[:_MAX_PROBLEMS], f"... and {extra} more problems"]
    return problems
