"""Progress of a long command on stderr: a bar with an ETA on a terminal, a line now and then
without one (a CI log, ``nohup``, a pipe), so a long run is never silent for long.

NOTE: wall-clock time is read here, in the CLI, never in the model: it only decides when to
tell the user, not what is simulated.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress

LINE_EVERY_S = 10.0
"""Seconds between progress lines when stderr is not a terminal (``SERVESIM_PROGRESS_EVERY_S``
overrides it)."""


RATE_WINDOW_S = 2.0
RATE_SHARE = 0.01
""":class:`ProgressLines` estimates the time left once the rate since the first unit finished
spans :data:`RATE_WINDOW_S` seconds or this share of the units."""


def time_left(first: tuple[float, int] | None, now: float, done: int, total: int) -> float | None:
    """Seconds until ``total`` units at the rate since ``first`` (when, units done) — the first
    update with a unit done — or None until that rate spans :data:`RATE_WINDOW_S` or
    :data:`RATE_SHARE` of ``total``."""
    if first is None:
        return None
    since, at = first
    if done <= at or (now - since < RATE_WINDOW_S and done - at < RATE_SHARE * total):
        return None
    return (now - since) / (done - at) * (total - done)


def line_every_s() -> float:
    """The interval: ``SERVESIM_PROGRESS_EVERY_S`` when it is a number >= 0 (0: a line at every
    update), else :data:`LINE_EVERY_S`."""
    value = os.environ.get("SERVESIM_PROGRESS_EVERY_S")
    try:
        every = float(value) if value else LINE_EVERY_S
    except ValueError:
        return LINE_EVERY_S
    return every if 0.0 <= every < math.inf else LINE_EVERY_S


def bar_columns(label: str) -> tuple:
    """The columns of every progress bar: label, bar, done/total, elapsed, eta, remaining."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        _remaining_column()(),
    )


@functools.cache
def _remaining_column() -> type:
    """rich's time-remaining column, estimating from the rate since the first unit finished
    (:func:`time_left`) for a task whose ``first`` field holds (when, units done) then — as
    :class:`ProgressLines` does, so a slow start does not inflate the bar's estimate for the
    30 s rich's own speed window holds it; other tasks keep rich's estimate."""
    from types import SimpleNamespace

    from rich.progress import TimeRemainingColumn

    class SinceFirstRemainingColumn(TimeRemainingColumn):
        def render(self, task):
            first = task.fields.get("first")
            if first is None or task.total is None or task.finished:
                return super().render(task)
            left = time_left(first, task.get_time(), int(task.completed), int(task.total))
            shown = SimpleNamespace(
                finished=False, finished_time=None, time_remaining=left, total=task.total
            )
            return super().render(shown)

    return SinceFirstRemainingColumn


class ProgressLines:
    """``label: 400/1,000 requests (40%), 12 s elapsed, about 18 s left`` on stderr, at most once
    every :func:`line_every_s` seconds (the first after that long: short runs print none).

    The time left is the rate since the first unit finished, not since the start: what comes
    before it (building the fleet, numba compiling its kernels on a machine's first compiled
    run, ~10 s, the first requests' own latency) would otherwise stretch the estimate of a long
    run by hours (21 of 50,000 requests done 11 s in read "about 25,950 s left"). No estimate
    until that rate spans :data:`RATE_WINDOW_S` or :data:`RATE_SHARE` of the units (a kernel
    compiled on its first use stalls the first second after the first finish too)."""

    def __init__(self, label: str, total: int | None, unit: str):
        self.label, self.total, self.unit = label, total, unit
        self.every_s = line_every_s()
        self.started = self.last = time.perf_counter()
        self.first: tuple[float, int] | None = None
        """(When, how many) at the first update with a unit done."""

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if self.first is None and done > 0:
            self.first = (now, done)
        if now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.started
        text = f"{self.label}: {done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({done / self.total:.0%})"
            if 0 < done < self.total:
                text += f", {elapsed:,.0f} s elapsed"
                left = self.seconds_left(now, done)
                if left is not None:
                    text += f", about {left:,.0f} s left"
        else:
            text += f" {self.unit}, {elapsed:,.0f} s elapsed"
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def seconds_left(self, now: float, done: int) -> float | None:
        """Seconds until ``total`` at the rate since the first unit finished (:func:`time_left`)."""
        return None if self.total is None else time_left(self.first, now, done, self.total)


class LazyProgress:
    """Progress of a simulation, called with the requests finished since the last call: a bar
    that appears once the run has taken a second (on a terminal), else :class:`ProgressLines`."""

    def __init__(self, total: int | None):
        from rich.console import Console

        self.total = total
        self.done = 0
        self.started = time.perf_counter()
        self.console = Console(stderr=True)
        self.lines = (
            None if self.console.is_terminal else ProgressLines("simulating", total, "requests")
        )
        self.progress: Progress | None = None
        self.task = None
        self.first: tuple[float, int] | None = None
        """(time.monotonic, requests done) at the first request done: the bar's rate starts
        there (rich's clock is ``time.monotonic``)."""

    def __call__(self, n: int) -> None:
        self.done += n
        if self.lines is not None:
            self.lines(self.done)
            return
        if self.first is None and self.done > 0:
            self.first = (time.monotonic(), self.done)
        if self.progress is None:
            if time.perf_counter() - self.started < 1.0:
                return
            from rich.progress import Progress

            self.progress = Progress(
                *bar_columns("simulating"), console=self.console, transient=True
            )
            self.progress.start()
            self.task = self.progress.add_task("run", total=self.total, first=None)
        self.progress.update(self.task, completed=self.done, first=self.first)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
