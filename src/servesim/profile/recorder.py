"""The per-process recorder: an in-memory buffer of records, flushed to one fragment file.

Hot paths append a tuple to a list; turning tuples into JSON happens at flush time, once per
batch, so a span costs well under a microsecond of bookkeeping plus its share of encoding the
batch and one ``write``. Nothing here raises into the host program: a failed write drops that
batch and is counted (``io_errors``, ``dropped``), which also bounds memory when the disk is
full or the directory is gone.

NOTE on threads: the hot path takes no lock. ``list.append`` is atomic, and a flush takes the
first ``n`` records with one slice and deletes exactly those, so records appended meanwhile stay
for the next flush. Flushes hold ``_io_lock`` (re-entrant, so a signal handler that flushes
while its thread is mid-flush cannot deadlock).
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servesim.profile.fragment import (
    FORMAT_VERSION,
    dumps,
    dumps_flat,
    fragment_name,
    quote,
    step_record,
)

#: Rows of asyncio tasks get tids from here up (Linux thread ids stay below 2**22).
TASK_TID_BASE = 1 << 30
_HOST = socket.gethostname()
# NOTE: names repeat, so their JSON spelling is cached; the cap keeps a program that makes up a
# new span name per call from growing the cache without bound.
_NAME_CACHE_MAX = 4096
_modules = sys.modules


@dataclass(frozen=True)
class ProfileStats:
    """Counts since this recorder started (all integers).

    ``events``: spans, instants, counters and steps recorded; ``written``: of those, written to
    the fragment; ``dropped``: lost to a failed write or an unencodable record; ``sampled_out``:
    spans skipped by ``SERVESIM_PROFILE_SAMPLE``; ``io_errors``: failed flushes; ``flushes``:
    successful ones.
    """

    events: int = 0
    written: int = 0
    dropped: int = 0
    sampled_out: int = 0
    io_errors: int = 0
    flushes: int = 0


class Recorder:
    """Buffers the records of one process and appends them to its fragment file.

    ``process_key`` names the process lifetime (fragments written after a reconfiguration share
    it); ``forked_from`` is the parent's pid when this recorder was made in a forked child.
    """

    def __init__(
        self,
        directory: Path,
        *,
        sample: float,
        flush_every: int,
        flush_interval_s: float,
        process_key: str,
        process_name: str | None = None,
        forked_from: int | None = None,
    ) -> None:
        self.directory = directory
        self.sample = sample
        self.sampling = sample < 1.0
        self.flush_every = flush_every
        self.process_key = process_key
        self.forked_from = forked_from
        self.pid = os.getpid()
        self.start_unix_ns = time.time_ns()
        perf_ns = time.perf_counter_ns()
        # One reading of both clocks: event times are perf_counter readings (monotonic, cheap)
        # shifted onto Unix time, so fragments of different processes line up.
        self.perf_to_unix_ns = self.start_unix_ns - perf_ns
        self.path = directory / fragment_name(_HOST, self.pid, self.start_unix_ns)
        self.interval_ns = int(flush_interval_s * 1e9)
        self.last_flush_ns = perf_ns
        self.buf: list[tuple[Any, ...]] = []  # events and steps
        self._names: list[tuple[Any, ...]] = []  # thread and process names (rare)
        self._io_lock = threading.RLock()
        self._local = threading.local()  # .tid of each thread, set on its first record
        self._task_tids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._task_counter = itertools.count(TASK_TID_BASE)
        self._name_json: dict[str, str] = {}
        self._x_heads: dict[str, str] = {}
        self._header_written = False
        # Start just below one so that the very first span is kept at any sample rate > 0.
        self._sample_acc = 1.0 - sample
        self._written = self._dropped = self._sampled_out = self._io_errors = self._flushes = 0
        if process_name is not None:
            self._names.append(("process", process_name))

    # --- recording (hot paths) ---------------------------------------------------------------

    def keep_span(self) -> bool:
        """Deterministic sampling: keeps ``sample`` of the spans, evenly spread."""
        self._sample_acc += self.sample
        if self._sample_acc >= 1.0:
            self._sample_acc -= 1.0
            return True
        self._sampled_out += 1
        return False

    def tid(self) -> int:
        """Row of the caller: its asyncio task when one is running, else its OS thread."""
        # NOTE: asyncio is looked up, never imported: a program without it pays nothing.
        events = _modules.get("asyncio.events")
        if events is not None and (loop := events._get_running_loop()) is not None:
            task = _modules["asyncio.tasks"].current_task(loop)
            if task is not None:
                tid = self._task_tids.get(task)
                return tid if tid is not None else self._new_task_row(task)
        try:
            return self._local.tid
        except AttributeError:
            return self._new_thread_row()

    def _new_task_row(self, task: Any) -> int:
        tid = next(self._task_counter)
        self._task_tids[task] = tid
        self._names.append(("thread", tid, task.get_name()))
        return tid

    def _new_thread_row(self) -> int:
        # get_native_id is a system call, hence cached per thread: it is the OS thread id
        # that other tools (py-spy, perf) show.
        tid = self._local.tid = threading.get_native_id()
        self._names.append(("thread", tid, threading.current_thread().name))
        return tid

    def add(self, record: tuple[Any, ...], now_ns: int) -> None:
        """Buffer one record (an event or a step); flush when the batch is full or old."""
        buf = self.buf
        buf.append(record)
        if len(buf) >= self.flush_every or now_ns - self.last_flush_ns >= self.interval_ns:
            self.flush()

    def set_process_name(self, name: str) -> None:
        self._names.append(("process", name))

    # --- writing -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write the buffered records; returns how many events and steps were written."""
        with self._io_lock:
            self.last_flush_ns = time.perf_counter_ns()
            buf, names = self.buf, self._names
            n, m = len(buf), len(names)
            # Names alone do not start a file: a process that recorded nothing leaves none.
            if n == 0 and (m == 0 or not self._header_written):
                return 0
            batch, name_batch = buf[:n], names[:m]
            del buf[:n], names[:m]
            return self._write(batch, name_batch)

    def _write(self, batch: list[tuple[Any, ...]], name_batch: list[tuple[Any, ...]]) -> int:
        lines = [] if self._header_written else [self._header()]
        lines.extend(_encode_name(r) for r in name_batch)
        encoded = self._encode_events(batch, lines)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
        except Exception:  # noqa: BLE001 - full disk, read-only or deleted directory, ...
            self._io_errors += 1
            self._dropped += encoded
            # Names are state, not events: keep them for the next attempt.
            self._names[:0] = name_batch
            return 0
        self._header_written = True
        self._written += encoded
        self._flushes += 1
        return encoded

    def _encode_events(self, batch: list[tuple[Any, ...]], lines: list[str]) -> int:
        """Append one JSON line per record to ``lines``; returns how many were encoded."""
        offset = self.perf_to_unix_ns
        names, heads = self._name_json, self._x_heads
        before = len(lines)
        for record in batch:
            try:
                kind = record[0]
                if kind == "step":
                    lines.append(dumps(step_record(*record[1:])))
                    continue
                if kind == "X":  # the hot one: its line up to the timestamp is cached per name
                    _, name, cat, t0, dur, tid, args = record
                    head = heads.get(name) or self._x_head(name)
                    extra = _cat_args(cat, args) if cat or args else ""
                    lines.append(f'{head}{t0 + offset},"dur_ns":{dur},"tid":{tid}{extra}}}')
                    continue
                name = names.get(record[1]) or self._name(record[1])
                if kind == "i":
                    _, _, cat, t0, tid, args = record
                    extra = _cat_args(cat, args) if cat or args else ""
                    lines.append(
                        f'{{"type":"event","ph":"i","name":{name},"ts_ns":{t0 + offset}'
                        f',"tid":{tid}{extra}}}'
                    )
                else:
                    _, _, t0, values = record
                    series = dumps_flat({str(k): v for k, v in values.items() if _is_number(v)})
                    lines.append(
                        f'{{"type":"event","ph":"C","name":{name},"ts_ns":{t0 + offset}'
                        f',"args":{series}}}'
                    )
            except Exception:  # noqa: BLE001 - one bad record must not lose the batch
                self._dropped += 1
        return len(lines) - before

    def _name(self, name: Any) -> str:
        if len(self._name_json) >= _NAME_CACHE_MAX:
            self._name_json.clear()
        text = self._name_json[name] = dumps(str(name))
        return text

    def _x_head(self, name: Any) -> str:
        if len(self._x_heads) >= _NAME_CACHE_MAX:
            self._x_heads.clear()
        head = f'{{"type":"event","ph":"X","name":{dumps(str(name))},"ts_ns":'
        self._x_heads[name] = head
        return head

    def _header(self) -> str:
        return dumps(
            {
                "type": "fragment",
                "version": FORMAT_VERSION,
                "host": _HOST,
                "pid": self.pid,
                "ppid": os.getppid(),
                "process": self.process_key,
                "start_unix_ns": self.start_unix_ns,
                "clock_unix_ns": self.start_unix_ns,
                "clock_perf_ns": self.start_unix_ns - self.perf_to_unix_ns,
                "argv0": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python",
                "forked_from": self.forked_from,
            }
        )

    def stats(self) -> ProfileStats:
        with self._io_lock:  # so a flush in progress is not counted twice or not at all
            return ProfileStats(
                events=self._written + self._dropped + len(self.buf),
                written=self._written,
                dropped=self._dropped,
                sampled_out=self._sampled_out,
                io_errors=self._io_errors,
                flushes=self._flushes,
            )


def _encode_name(record: tuple[Any, ...]) -> str:
    if record[0] == "thread":
        return dumps({"type": "thread", "tid": record[1], "name": str(record[2])})
    return dumps({"type": "process", "name": str(record[1])})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cat_args(cat: str, args: Any) -> str:
    extra = f',"cat":{quote(str(cat))}' if cat else ""
    if args:
        if type(args) is dict:
            extra += f',"args":{dumps_flat(args)}'
        else:  # the format wants an object; keep whatever was passed under one key
            extra += f',"args":{dumps(dict(args) if isinstance(args, dict) else {"value": args})}'
    return extra
