"""The Chrome trace of a simulated run, built from its saved files, for Perfetto.

:func:`write_simulated_trace` reads a run folder (``summary.json``, ``requests.csv``,
``steps.csv``, or those tables as ``.parquet``), so it works on any run saved with ``servesim
simulate --out DIR``. Time is simulated time, in microseconds from the run's start. Layout,
per instance ``N`` (pid ``N + 1``, named "instance N (model on hardware)"):

- thread 1, "steps": one ``X`` slice per step record, named by its batch composition,
  ``"P:2 D:61"`` = 2 requests in prefill and 61 decode tokens per step; a fast-forwarded span of
  ``m`` decode steps is one slice named ``"P:0 D:61 ×m"``. Its args are the step record's
  columns, and every ``t_*`` column (predicted seconds by operator group) present in the file.
- async slices per request (``cat`` "request", ``id`` = request id): "queued" (arrival → first
  scheduled), "prefill" (→ first token), "decode" (→ finish), each with the request's token
  counts and preemptions in its args. A preempted request's second wait is inside "prefill" or
  "decode": ``requests.csv`` keeps only its first scheduling time.
- counters: "running requests" and "tokens per step" sampled at each step's start (and back to 0
  when the instance goes idle), "waiting requests" and "KV cache usage" (fraction of blocks) at
  each step's end (the step record measures them after the step).

Large runs: ``limit`` caps the timed events by keeping a **time window** from the start of the
run: every step and every request that begins before the window's end, with all its events,
so the kept part is complete and consistent (a step never loses its counters, a request never
loses a phase). A window, rather than a sample of requests, keeps the steps, counters and
requests of one period together, which is what one reads a trace for; later behaviour is in
the report. ``otherData`` records ``truncated``, the window end and what was dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servesim.errors import ServesimError
from servesim.report.data import RunData, prefill_rows, read_run, scenario_label
from servesim.trace import chrome

STEPS_TID = 1
REQUEST_CAT = "request"
#: Phases of a request's async slices: (name, begin column, end column), in time order.
REQUEST_PHASES = (
    ("queued", "arrival_s", "first_scheduled_s"),
    ("prefill", "first_scheduled_s", "first_token_s"),
    ("decode", "first_token_s", "finish_s"),
)
_REQUEST_ARGS = ("input_tokens", "output_tokens", "cached_tokens", "preemptions")
#: Step columns that place a slice rather than describe it: left out of its args.
_STEP_PLACEMENT = ("instance", "start_s", "duration_s")


@dataclass(frozen=True)
class TraceInfo:
    """What :func:`write_simulated_trace` wrote.

    ``events`` counts every event in the file (metadata included); ``dropped_events`` the timed
    events left out by ``limit``; ``window_end_s`` the simulated time (s) where the kept
    window ends, None when nothing was dropped.
    """

    path: Path
    bytes: int
    events: int
    dropped_events: int
    truncated: bool
    window_end_s: float | None
    warnings: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line for the CLI."""
        text = f"wrote {self.path}: {self.events:,} events, {self.bytes / 1e6:,.1f} MB"
        if self.truncated:
            text += (
                f" (truncated: first {self.window_end_s:.3f} s of simulated time kept, "
                f"{self.dropped_events:,} events left out)"
            )
        return text


@dataclass(frozen=True)
class _Block:
    """Timed events of one kind, one per position: times (µs), window keys (s), a maker."""

    kind: str
    ts_us: np.ndarray
    key_s: np.ndarray
    make: Callable[[int], dict[str, Any]]


def check_limit(limit: int | None) -> None:
    """ServesimError unless ``limit`` is None or a positive number of events."""
    if limit is not None and limit <= 0:
        raise ServesimError(
            f"is {limit}; must be a positive number of events",
            field="--trace-limit",
            fix="e.g. --trace-limit 1000000, or leave it out to keep every event",
        )


def _ints(column: np.ndarray) -> list[int]:
    return column.astype(np.int64).tolist()


def _as_written(column: np.ndarray) -> list[int] | list[float]:
    """A CSV column as JSON numbers: integers when every value is whole (counts), else floats."""
    if np.all(np.isfinite(column)) and np.all(column == np.round(column)):
        return _ints(column)
    return column.tolist()


def step_names(steps: dict[str, np.ndarray]) -> list[str]:
    """Slice names by batch composition: ``"P:<prefill rows> D:<decode tokens per step>"``."""
    num_steps = steps["num_steps"].astype(np.int64)
    per_step_decode = _ints(steps["decode_tokens"] / np.maximum(num_steps, 1))
    rows = _ints(prefill_rows(steps))
    return [
        f"P:{p} D:{d}" if m == 1 else f"P:{p} D:{d} ×{m}"
        for p, d, m in zip(rows, per_step_decode, num_steps.tolist(), strict=True)
    ]


def to_us(seconds: np.ndarray) -> np.ndarray:
    """Simulated seconds as µs, rounded to whole nanoseconds.

    NOTE: Perfetto rounds ``ts`` and ``dur`` to ns separately, so a step that ends where the
    next begins could overlap it by 1 ns and be dropped as an overlapping slice. Times already
    whole in ns survive that rounding exactly.
    """
    return np.rint(seconds * 1e9) / 1e3


def next_start(steps: dict[str, np.ndarray]) -> np.ndarray:
    """Start (s) of the next step record of the same instance; inf after an instance's last."""
    start = steps["start_s"]
    following = np.full(len(start), np.inf)
    for inst in np.unique(steps["instance"]):
        rows = np.flatnonzero(steps["instance"] == inst)
        rows = rows[np.argsort(start[rows], kind="stable")]
        following[rows[:-1]] = start[rows[1:]]
    return following


def _step_block(steps: dict[str, np.ndarray], pids: np.ndarray) -> _Block:
    names = step_names(steps)
    ts = to_us(steps["start_s"])
    # A step ends where the next one starts, never after: slices on one row must not overlap.
    end = np.minimum(to_us(steps["start_s"] + steps["duration_s"]), to_us(next_start(steps)))
    dur = np.maximum(end - ts, 0.0)
    # Every other column of steps.csv, the t_* seconds included, in file order: columns the
    # engine gains later show up without a change here.
    arg_cols = {c: _as_written(steps[c]) for c in steps if c not in _STEP_PLACEMENT}
    ts_l, dur_l, pid_l = ts.tolist(), dur.tolist(), pids.tolist()
    keys = list(arg_cols)
    values = list(arg_cols.values())

    def make(i: int) -> dict[str, Any]:
        args = {k: v[i] for k, v in zip(keys, values, strict=True)}
        return chrome.complete(names[i], ts_l[i], dur_l[i], pid_l[i], STEPS_TID,
                               cat="step", args=args)  # fmt: skip

    return _Block("step_slices", ts, steps["start_s"], make)


def _counter_blocks(steps: dict[str, np.ndarray], pids: np.ndarray) -> list[_Block]:
    start = steps["start_s"]
    end = start + steps["duration_s"]
    tokens = (steps["prefill_tokens"] + steps["decode_tokens"]) / np.maximum(steps["num_steps"], 1)
    # NOTE: the next step starts at the float the engine recorded as this one's end; anything
    # later than a nanosecond is a real gap, when the instance had nothing to run.
    idle = np.flatnonzero(next_start(steps) > end + 1e-9)
    samples = [
        # (counter name, series key, values, sample times (s), rows of steps)
        ("running", "requests", steps["batch_size"], start, None),
        ("tokens", "per step", tokens, start, None),
        ("KV cache", "usage", steps["kv_usage"], end, None),
        ("running", "requests", np.zeros(len(idle)), end[idle], idle),
        ("tokens", "per step", np.zeros(len(idle)), end[idle], idle),
        ("waiting", "requests", steps["num_waiting"], end, None),
    ]
    blocks = []
    for name, key, values, at_s, rows in samples:
        rows = np.arange(len(start)) if rows is None else rows
        ts = to_us(at_s)
        # KV usage is a fraction; the other series count requests or tokens.
        vals = values.tolist() if name == "KV cache" else _ints(values)
        ts_l, pid_l = ts.tolist(), pids[rows].tolist()

        def make(i: int, name=name, key=key, vals=vals, ts_l=ts_l, pid_l=pid_l) -> dict[str, Any]:
            return chrome.counter(name, ts_l[i], pid_l[i], {key: vals[i]})

        # Counters live and die with their step: the window cut uses the step's start.
        blocks.append(_Block("counters", ts, start[rows], make))
    return blocks


def _request_block(requests: dict[str, np.ndarray]) -> _Block:
    n_phases = len(REQUEST_PHASES)
    # (requests, 2 × phases): begin, end of each phase in time order, so a stable sort by time
    # keeps a request's own events in that order even where phases meet at one instant.
    times = np.stack(
        [requests[col] for _, b, e in REQUEST_PHASES for col in (b, e)], axis=1
    )  # fmt: skip
    ts = to_us(times).ravel()
    key = np.repeat(requests["arrival_s"], 2 * n_phases)
    ts_l = ts.tolist()
    ids = _ints(requests["request_id"])
    pids = _ints(requests["instance"] + 1)
    arg_cols = [(c, _ints(requests[c])) for c in _REQUEST_ARGS]

    def make(j: int) -> dict[str, Any]:
        r, k = divmod(j, 2 * n_phases)
        name = REQUEST_PHASES[k // 2][0]
        if k % 2:
            return chrome.async_end(name, ids[r], ts_l[j], pids[r], cat=REQUEST_CAT)
        args = {"request_id": ids[r], **{c: v[r] for c, v in arg_cols}}
        return chrome.async_begin(name, ids[r], ts_l[j], pids[r], cat=REQUEST_CAT, args=args)

    return _Block("request_events", ts, key, make)


def metadata_events(run: RunData) -> list[dict[str, Any]]:
    """Process and thread names (and order) of every instance: 4 ``M`` events each."""
    model, hardware = scenario_label(run.summary)
    events = []
    for inst in range(run.num_instances):
        pid = inst + 1
        events += [
            chrome.process_name(pid, f"instance {inst} ({model} on {hardware})"),
            chrome.process_sort_index(pid, inst),
            chrome.thread_name(pid, STEPS_TID, "steps"),
            chrome.thread_sort_index(pid, STEPS_TID, 0),
        ]
    return events


def window_cut(keys_s: np.ndarray, limit: int | None) -> float | None:
    """The window end (s): events whose item starts before it number at most ``limit``.

    None when every event fits. Items (a step with its counters, a request with its phases)
    share one key, so a cut never splits one.
    """
    if limit is None or len(keys_s) <= limit:
        return None
    return float(np.sort(keys_s, kind="stable")[limit])


def _ordered(blocks: list[_Block], end_s: float | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(block index, position) of the kept events in time order, and dropped counts by kind."""
    ts = np.concatenate([b.ts_us for b in blocks])
    key = np.concatenate([b.key_s for b in blocks])
    block = np.concatenate([np.full(len(b.ts_us), i) for i, b in enumerate(blocks)])
    pos = np.concatenate([np.arange(len(b.ts_us)) for b in blocks])
    keep = np.ones(len(ts), dtype=bool) if end_s is None else key < end_s
    dropped: dict[str, int] = {}
    for i, b in enumerate(blocks):
        n = int(np.count_nonzero(~keep[block == i]))
        dropped[b.kind] = dropped.get(b.kind, 0) + n
    order = np.flatnonzero(keep)
    order = order[np.argsort(ts[order], kind="stable")]
    return block[order], pos[order], dropped


def write_simulated_trace(
    run_dir: Path | str, out_path: Path | str, limit: int | None = None
) -> TraceInfo:
    """Write the Chrome trace (JSON, object form) of the run saved in ``run_dir`` to ``out_path``.

    ``limit`` caps the timed events (slices, async begin/end, counters) by keeping a time window
    from the run's start (see the module docstring); the 4 naming metadata events per instance
    come on top. ``limit <= 0`` raises ServesimError, as does a folder that is not a run.
    The file is written atomically; a trace past Perfetto's comfortable size gets a warning in
    the returned :class:`TraceInfo`. Nothing in the file depends on where the run folder is
    (it may be a temporary folder about to be renamed): the same run gives the same bytes.
    """
    check_limit(limit)
    run = read_run(run_dir)
    steps, requests = run.steps, run.requests
    step_pids = (steps["instance"] + 1).astype(np.int64)
    blocks = [_step_block(steps, step_pids), *_counter_blocks(steps, step_pids),
              _request_block(requests)]  # fmt: skip
    total = sum(len(b.ts_us) for b in blocks)
    end_s = window_cut(np.concatenate([b.key_s for b in blocks]), limit)
    block_of, pos_of, dropped = _ordered(blocks, end_s)
    meta = metadata_events(run)
    makers = [b.make for b in blocks]

    def events() -> Iterator[dict[str, Any]]:
        yield from meta
        for b, p in zip(block_of.tolist(), pos_of.tolist(), strict=True):
            yield makers[b](p)

    model, hardware = scenario_label(run.summary)
    n_dropped = sum(dropped.values())
    other = {
        "source": "servesim simulated run",
        "servesim_version": run.summary.get("servesim_version"),
        "model": model,
        "hardware": hardware,
        "clock": "simulated time, microseconds from the run's start",
        "truncated": end_s is not None,
        "limit": limit,
        "window_end_s": end_s,
        "timed_events_total": total,
        "timed_events_written": total - n_dropped,
        "dropped_events": dropped,
    }
    size = chrome.write_trace(out_path, events(), other)
    warnings = ()
    if size > chrome.PERFETTO_COMFORT_BYTES:
        warnings = (
            f"{out_path} is {size / 1e6:,.0f} MB: Perfetto's UI may be slow or fail to open "
            f"it; write a smaller window with a trace limit (e.g. 1000000 events)",
        )
    return TraceInfo(
        path=Path(out_path),
        bytes=size,
        events=len(meta) + total - n_dropped,
        dropped_events=n_dropped,
        truncated=end_s is not None,
        window_end_s=end_s,
        warnings=warnings,
    )
