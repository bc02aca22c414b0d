"""Join the profiler's per-process fragments into one Chrome trace for Perfetto.

Each process becomes a trace process (named by its last ``set_process_name``, else its program
name), each thread or asyncio task a row; logged engine steps become slices on a ``steps`` row
of their process, with their phases nested inside and counters for batch size and tokens.
Timestamps are rebased to the earliest record (``otherData.ts_origin_unix_ns`` keeps the
origin), which keeps them small and exact in µs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servesim.errors import ServesimError
from servesim.profile.fragment import FILE_PATTERN, Fragment, dumps, read_fragment
from servesim.trace import chrome

#: Row that carries logged engine steps in each process (tids of tasks start at 2**30).
STEPS_TID = (1 << 30) - 1
# Linux pids stay below 2**22; a pid seen in two processes (two hosts, or reuse) moves above.
_SYNTHETIC_PID_BASE = 1 << 23
# start_s values above this are Unix seconds (after 2001); below, time.perf_counter() seconds.
_UNIX_SECONDS_FLOOR = 1e9
# Phases are drawn nested in their step only if they fit; allow float rounding.
_PHASE_FIT = 1.000001


@dataclass(frozen=True)
class MergeReport:
    """What a merge read and wrote. ``events`` excludes metadata; sizes in bytes."""

    out_path: Path
    files: int
    processes: int
    events: int
    steps: int
    skipped_lines: int
    bytes: int
    steps_path: Path | None = None
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for the CLI."""
        text = (
            f"merged {self.files} fragment file(s) from {self.processes} process(es): "
            f"{self.events} events, {self.steps} steps, {self.skipped_lines} skipped "
            f"line(s) -> {self.out_path} ({self.bytes / 1e6:.1f} MB)"
        )
        if self.steps_path is not None:
            text += f"; steps -> {self.steps_path}"
        return text


@dataclass
class _Process:
    """The fragments of one process lifetime, and the pid it gets in the trace."""

    fragments: list[Fragment]
    pid: int = 0

    @property
    def first(self) -> Fragment:
        return self.fragments[0]

    def name(self) -> str:
        for frag in reversed(self.fragments):
            if frag.process_name is not None:
                return frag.process_name
        header = self.first.header or {}
        program = header.get("argv0") or "process"
        if header.get("forked_from") is not None:
            return f"{program} (fork of {header['forked_from']})"
        return f"{program} ({self.first.host})"

    def thread_names(self) -> dict[int, str]:
        names: dict[int, str] = {}
        for frag in self.fragments:
            names.update(frag.thread_names)
        return names


def find_fragments(directory: Path) -> list[Path]:
    """Fragment files directly in ``directory`` (``{host}-{pid}-{start_ns}.jsonl``), sorted."""
    return sorted(p for p in directory.iterdir() if p.is_file() and FILE_PATTERN.match(p.name))


def _group(fragments: Iterable[Fragment]) -> list[_Process]:
    by_key: dict[str, _Process] = {}
    for frag in fragments:
        by_key.setdefault(frag.process_key, _Process([])).fragments.append(frag)
    processes = list(by_key.values())
    for proc in processes:
        proc.fragments.sort(key=lambda f: (f.header or {}).get("start_unix_ns", 0))
    seen: dict[int, int] = {}
    for proc in processes:
        seen[proc.first.pid] = seen.get(proc.first.pid, 0) + 1
    extra = 0
    for proc in sorted(processes, key=lambda p: p.first.path.name):
        if seen[proc.first.pid] == 1:
            proc.pid = proc.first.pid
        else:
            proc.pid = _SYNTHETIC_PID_BASE + extra
            extra += 1
    return processes


def _step_start_ns(step: dict[str, Any], frag: Fragment) -> int | None:
    start_s = step["start_s"]
    if start_s >= _UNIX_SECONDS_FLOOR:
        return int(start_s * 1e9)
    offset = frag.perf_to_unix_ns
    return None if offset is None else int(start_s * 1e9) + offset


def _origin(processes: list[_Process]) -> int:
    starts = [ev["ts_ns"] for p in processes for f in p.fragments for ev in f.events]
    for proc in processes:
        for frag in proc.fragments:
            starts.extend(t for s in frag.steps if (t := _step_start_ns(s, frag)) is not None)
    return min(starts, default=0)


def _trace_events(frag: Fragment, pid: int, origin: int) -> list[dict[str, Any]]:
    out = []
    for ev in frag.events:
        ts = (ev["ts_ns"] - origin) / 1000
        cat, args = ev.get("cat", ""), ev.get("args")
        if ev["ph"] == "X":
            out.append(
                chrome.complete(
                    ev["name"], ts, ev["dur_ns"] / 1000, pid, ev["tid"], cat=cat, args=args
                )
            )
        elif ev["ph"] == "i":
            out.append(chrome.instant(ev["name"], ts, pid, ev["tid"], cat=cat, args=args))
        else:
            out.append(chrome.counter(ev["name"], ts, pid, args or {}, cat=cat))
    return out


def _step_events(
    step: dict[str, Any], start_ns: int, pid: int, origin: int
) -> list[dict[str, Any]]:
    ts = (start_ns - origin) / 1000
    dur = max(step["duration_s"], 0.0) * 1e6
    phases = {k: v for k, v in step.get("phases", {}).items() if isinstance(v, (int, float))}
    args = {k: step[k] for k in ("batch_size", "prefill_tokens", "decode_tokens", "context_tokens")}
    out = [
        chrome.complete(
            f"step {step['step']}",
            ts,
            dur,
            pid,
            STEPS_TID,
            cat="step",
            args={**args, "phases_s": phases} if phases else args,
        )
    ]
    if (
        phases
        and all(v >= 0 for v in phases.values())
        and sum(phases.values()) * 1e6 <= dur * _PHASE_FIT
    ):
        at = ts
        for name, seconds in phases.items():
            out.append(chrome.complete(name, at, seconds * 1e6, pid, STEPS_TID, cat="step"))
            at += seconds * 1e6
    out.append(chrome.counter("batch_size", ts, pid, {"sequences": step["batch_size"]}))
    out.append(
        chrome.counter(
            "step_tokens",
            ts,
            pid,
            {"prefill": step["prefill_tokens"], "decode": step["decode_tokens"]},
        )
    )
    return out


def _sort_key(event: dict[str, Any]) -> tuple[float, float]:
    # Parents before the children that start with them, so readers that do not sort by
    # duration still nest them.
    return (event["ts"], -event.get("dur", 0.0))


def _check_paths(directory: Path, out_path: Path, steps_path: Path | None) -> list[Path]:
    if not directory.exists():
        raise ServesimError(
            f"{directory} does not exist",
            field="DIR",
            fix="pass the SERVESIM_PROFILE_DIR the profiled processes wrote to",
        )
    if not directory.is_dir():
        raise ServesimError(
            f"{directory} is not a directory",
            field="DIR",
            fix="pass the folder that holds the *.jsonl fragments",
        )
    paths = find_fragments(directory)
    if not paths:
        raise ServesimError(
            f"no profiler fragments ({{host}}-{{pid}}-{{start_ns}}.jsonl) in {directory}",
            field="DIR",
            fix="run the program with SERVESIM_PROFILE=1 and SERVESIM_PROFILE_DIR set to it",
        )
    for label, path in (("--out", out_path), ("--steps", steps_path)):
        if path is not None and not path.parent.is_dir():
            raise ServesimError(
                f"folder {path.parent} does not exist",
                field=label,
                fix="create it first or write elsewhere",
            )
    return paths


def _check_readable(fragments: list[Fragment], directory: Path) -> None:
    """Refuse a folder whose fragment files hold nothing but lines not understood: an empty
    trace would hide that they are not the profiler's (or are corrupt)."""
    skipped = sum(f.skipped for f in fragments)
    understood = any(
        f.header or f.events or f.steps or f.thread_names or f.process_name for f in fragments
    )
    if skipped and not understood:
        raise ServesimError(
            f"none of the {len(fragments)} fragment file(s) in {directory} holds a profiler "
            f"record ({skipped} line(s) are not JSON records servesim wrote)",
            field="DIR",
            fix="pass the SERVESIM_PROFILE_DIR of a profiled run; these files are corrupt or "
            "not servesim's",
        )


def merge_fragments(
    directory: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    steps_path: str | os.PathLike[str] | None = None,
) -> MergeReport:
    """Merge the fragments in ``directory`` into the Chrome trace ``out_path``.

    Truncated or malformed lines (typically the last line of a killed process) are skipped and
    counted. With ``steps_path``, the logged steps of every process are also written there as
    JSON lines (the step-log format, plus ``pid`` and ``process``), ordered by start. Raises
    :class:`ServesimError` when ``directory`` is missing or holds no fragments.
    """
    directory, out_path = Path(directory), Path(out_path)
    steps_out = Path(steps_path) if steps_path is not None else None
    paths = _check_paths(directory, out_path, steps_out)
    fragments = [read_fragment(p) for p in paths]
    _check_readable(fragments, directory)
    processes = _group(fragments)
    origin = _origin(processes)

    metadata: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    step_lines: list[tuple[int, dict[str, Any]]] = []
    for proc in processes:
        name = proc.name()
        metadata.append(chrome.process_name(proc.pid, name))
        for tid, thread in sorted(proc.thread_names().items()):
            metadata.append(chrome.thread_name(proc.pid, tid, thread))
        for frag in proc.fragments:
            events.extend(_trace_events(frag, proc.pid, origin))
            for step in frag.steps:
                start_ns = _step_start_ns(step, frag)
                if start_ns is None:
                    continue
                events.extend(_step_events(step, start_ns, proc.pid, origin))
                step_lines.append((start_ns, {**step, "pid": proc.pid, "process": name}))
        if any(frag.steps for frag in proc.fragments):
            metadata.append(chrome.thread_name(proc.pid, STEPS_TID, "steps"))
    events.sort(key=_sort_key)

    other = {
        "generator": "servesim trace merge",
        "ts_origin_unix_ns": origin,
        "fragments": [p.name for p in paths],
    }
    size = chrome.write_trace(out_path, [*metadata, *events], other)
    if steps_out is not None:
        step_lines.sort(key=lambda item: item[0])
        _write_lines(steps_out, (line for _, line in step_lines))

    warnings = []
    if size > chrome.PERFETTO_COMFORT_BYTES:
        warnings.append(
            f"{out_path} is {size / 1e6:.0f} MB; Perfetto's UI struggles past "
            f"{chrome.PERFETTO_COMFORT_BYTES / 1e6:.0f} MB: record less "
            "(SERVESIM_PROFILE_SAMPLE) or merge fewer fragments"
        )
    return MergeReport(
        out_path=out_path,
        files=len(paths),
        processes=len(processes),
        events=len(events),
        steps=len(step_lines),
        skipped_lines=sum(f.skipped for p in processes for f in p.fragments),
        bytes=size,
        steps_path=steps_out,
        warnings=tuple(warnings),
    )


def _write_lines(path: Path, records: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            for record in records:
                out.write(dumps(record) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
