"""The profiler's public functions and its one piece of process-wide state.

Enabled-ness is decided once, when this module is imported, from the environment:

- ``SERVESIM_PROFILE``: ``1``/``true``/``yes``/``on`` turns recording on (default off);
- ``SERVESIM_PROFILE_DIR``: where fragments go (default ``./servesim-profile``, made absolute at
  import so a later ``chdir`` does not scatter them);
- ``SERVESIM_PROFILE_SAMPLE``: fraction of spans kept, 0..1 (default 1).

:func:`configure` changes it later (tests, programs that decide at run time). When off, every
call returns at once (``span`` hands back one shared do-nothing object). Recording never raises
into the host program; problems are counted in :func:`stats`.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from servesim.errors import ServesimError
from servesim.profile.recorder import ProfileStats, Recorder

F = TypeVar("F", bound=Callable[..., Any])

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
_perf_ns = time.perf_counter_ns


@dataclass(frozen=True)
class Settings:
    """Profiler settings. ``flush_every`` in records, ``flush_interval_s`` in seconds."""

    enabled: bool = False
    directory: Path = Path("servesim-profile").absolute()
    sample: float = 1.0
    flush_every: int = 4096
    flush_interval_s: float = 1.0


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """Settings from ``SERVESIM_PROFILE*`` variables; a bad value warns and keeps the default.

    NOTE: the environment belongs to the host program's operator, and a typo there must not stop
    the program; hence a warning rather than an error.
    """
    flag = environ.get("SERVESIM_PROFILE", "").strip().lower()
    if flag not in _TRUE | _FALSE:
        warnings.warn(
            f"SERVESIM_PROFILE={flag!r} is not 1/0/true/false; profiling stays off",
            RuntimeWarning,
            stacklevel=2,
        )
    directory = Path(environ.get("SERVESIM_PROFILE_DIR") or "servesim-profile")
    sample = 1.0
    raw = environ.get("SERVESIM_PROFILE_SAMPLE")
    if raw is not None:
        try:
            sample = float(raw)
            if not 0.0 <= sample <= 1.0:
                raise ValueError(raw)
        except ValueError:
            warnings.warn(
                f"SERVESIM_PROFILE_SAMPLE={raw!r} is not a fraction in [0, 1]; keeping every span",
                RuntimeWarning,
                stacklevel=2,
            )
            sample = 1.0
    return Settings(
        enabled=flag in _TRUE, directory=directory.expanduser().absolute(), sample=sample
    )


def _new_process_key() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"


_settings = settings_from_env(os.environ)
_process_key = _new_process_key()
_process_name: str | None = None
_config_lock = threading.Lock()
#: The live recorder, or None when off: the one global every hot path reads.
_rec: Recorder | None = None
#: The most recent recorder, kept after disabling so its stats stay readable.
_last: Recorder | None = None


def _new_recorder(settings: Settings, forked_from: int | None = None) -> Recorder:
    return Recorder(
        settings.directory,
        sample=settings.sample,
        flush_every=settings.flush_every,
        flush_interval_s=settings.flush_interval_s,
        process_key=_process_key,
        process_name=_process_name,
        forked_from=forked_from,
    )


if _settings.enabled:
    _rec = _last = _new_recorder(_settings)


# --- spans -----------------------------------------------------------------------------------


class _NullSpan:
    """What ``span`` returns when off: enters and exits doing nothing.

    NOTE: ``__enter__`` and ``__exit__`` are set below to built-in callables rather than
    methods. Built-ins are not bound to the instance, and a ``with`` block calling them skips
    two Python frames: about 100 ns of the 0.2 µs budget of a span when profiling is off.
    ``__enter__`` returns this object (for ``as sp``); ``__exit__`` returns ``""``, which is
    false, so exceptions propagate. ``tests/test_profile.py`` pins both.
    """

    __slots__ = ()

    def set(self, **args: Any) -> None:
        """Add args to the span (ignored: the profiler is off or this span was sampled out)."""

    def __call__(self, fn: F) -> F:
        # NOTE: without a name there is nothing to wrap with; a function decorated while the
        # profiler is off runs undecorated, at no cost. Enable before importing what you decorate.
        return fn


_NULL = _NullSpan()
_NullSpan.__enter__ = itertools.repeat(_NULL).__next__  # type: ignore[attr-defined]
_NullSpan.__exit__ = "".format  # type: ignore[attr-defined]  # ignores its arguments


class _Span:
    """A live span: times the ``with`` block and records an ``X`` slice on exit."""

    __slots__ = ("name", "cat", "args", "_t0")

    def __init__(self, name: str, cat: str, args: dict[str, Any] | None) -> None:
        self.name = name
        self.cat = cat
        self.args = args

    def __enter__(self) -> _Span:
        self._t0 = _perf_ns()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        t1 = _perf_ns()
        rec = _rec
        if rec is None:
            return None
        try:
            args = self.args
            if exc_type is not None:
                args = {**(args or {}), "exception": exc_type.__name__}
            rec.add(("X", self.name, self.cat, self._t0, t1 - self._t0, rec.tid(), args), t1)
        except Exception:  # noqa: BLE001 - the profiler must never break the host program
            pass
        return None

    def set(self, **args: Any) -> None:
        """Add args to the span (shown on the slice in Perfetto), e.g. ``sp.set(tokens=n)``."""
        self.args = {**self.args, **args} if self.args else args

    def __call__(self, fn: F) -> F:
        return _decorate(fn, self.name, self.cat, self.args)


def _decorate(fn: F, name: str, cat: str, args: dict[str, Any] | None) -> F:
    """Wrap ``fn`` so each call is a span; the wrapper checks enabled-ness at every call."""
    import inspect

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*a: Any, **kw: Any) -> Any:
            with span(name, cat, args):
                return await fn(*a, **kw)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        with span(name, cat, args):
            return fn(*a, **kw)

    return wrapper  # type: ignore[return-value]


def span(name: str, cat: str = "", args: dict[str, Any] | None = None) -> Any:
    """Time a block or a function as one slice on the caller's row (thread or asyncio task).

    ``with span("prefill", args={"tokens": n}) as sp: ...`` or ``@span("schedule")`` on a
    function or ``async def``. Records start and duration in ns (µs in the merged trace);
    ``sp.set(key=value)`` adds args; an exception leaving the block is noted in args and
    re-raised. Decorating a generator function times only the call that creates the generator.
    """
    rec = _rec
    if rec is None or (rec.sampling and not rec.keep_span()):
        return _NULL
    return _Span(name, cat, args)


def instant(name: str, cat: str = "", args: dict[str, Any] | None = None) -> None:
    """Mark a moment on the caller's row (an ``i`` event), e.g. ``instant("preempted")``."""
    rec = _rec
    if rec is None:
        return
    try:
        now = _perf_ns()
        rec.add(("i", name, cat, now, rec.tid(), args), now)
    except Exception:  # noqa: BLE001 - never break the host program
        pass


def counter(name: str, /, **values: float) -> None:
    """Sample process-wide counters now: ``counter("kv_cache", used=0.42, free=0.58)``.

    Each keyword is one series (a track in Perfetto); values that are not finite numbers are
    left out.
    """
    rec = _rec
    if rec is None:
        return
    try:
        now = _perf_ns()
        rec.add(("C", name, now, values), now)
    except Exception:  # noqa: BLE001 - never break the host program
        pass


def step(
    index: int,
    start_s: float,
    duration_s: float,
    batch_size: int,
    prefill_tokens: int,
    decode_tokens: int,
    context_tokens: int,
    phases: Mapping[str, float] | None = None,
) -> None:
    """Log one engine step (a forward pass over a batch) for ``servesim calibrate``.

    ``start_s``: when the step began, on the ``time.perf_counter()`` clock (Unix seconds are also
    understood); ``duration_s``: its wall time in seconds; ``batch_size``: sequences in the
    batch; ``prefill_tokens``/``decode_tokens``: tokens computed this step; ``context_tokens``:
    tokens of KV context the batch attended to; ``phases``: optional ``{name: seconds}``
    breakdown (e.g. ``{"schedule": 0.0004, "forward": 0.021, "sample": 0.0006}``).
    """
    rec = _rec
    if rec is None:
        return
    try:
        record = (
            "step",
            index,
            start_s,
            duration_s,
            batch_size,
            prefill_tokens,
            decode_tokens,
            context_tokens,
            dict(phases) if phases else None,
        )
        rec.add(record, _perf_ns())
    except Exception:  # noqa: BLE001 - never break the host program
        pass


# --- control ---------------------------------------------------------------------------------


def flush() -> int:
    """Write buffered records now; returns how many events and steps were written (0 if off)."""
    rec = _rec
    if rec is None:
        return 0
    try:
        return rec.flush()
    except Exception:  # noqa: BLE001 - never break the host program
        return 0


def set_process_name(name: str) -> None:
    """Name this process in the merged trace; may be called at any time, the last call wins."""
    global _process_name
    _process_name = str(name)
    rec = _rec
    if rec is not None:
        rec.set_process_name(_process_name)


def configure(
    *,
    enabled: bool | None = None,
    directory: str | os.PathLike[str] | None = None,
    sample: float | None = None,
    flush_every: int | None = None,
    flush_interval_s: float | None = None,
) -> None:
    """Change settings; arguments left as None keep their value.

    Records buffered so far are flushed to the old fragment; a new fragment file starts when
    recording is (still) on. Raises :class:`ServesimError` for an impossible value.
    """
    global _settings, _rec, _last
    changes: dict[str, Any] = {}
    if enabled is not None:
        changes["enabled"] = bool(enabled)
    if directory is not None:
        changes["directory"] = Path(directory).expanduser().absolute()
    if sample is not None:
        if not isinstance(sample, (int, float)) or not 0.0 <= sample <= 1.0:
            raise ServesimError(
                f"sample must be a fraction in [0, 1], got {sample!r}",
                field="sample",
                fix="1 keeps every span, 0.1 one in ten",
            )
        changes["sample"] = float(sample)
    if flush_every is not None:
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ServesimError(
                f"flush_every must be a positive integer, got {flush_every!r}",
                field="flush_every",
                fix="e.g. 4096 records per write",
            )
        changes["flush_every"] = flush_every
    if flush_interval_s is not None:
        if not isinstance(flush_interval_s, (int, float)) or not flush_interval_s > 0:
            raise ServesimError(
                f"flush_interval_s must be > 0, got {flush_interval_s!r}",
                field="flush_interval_s",
                fix="seconds between writes, e.g. 1",
            )
        changes["flush_interval_s"] = float(flush_interval_s)
    with _config_lock:
        old, _rec = _rec, None
        if old is not None:
            old.flush()
        _settings = replace(_settings, **changes)
        if _settings.enabled:
            _rec = _last = _new_recorder(_settings)


def enable(directory: str | os.PathLike[str] | None = None, *, sample: float = 1.0) -> None:
    """Start recording (into ``directory`` when given), keeping ``sample`` of the spans."""
    configure(enabled=True, directory=directory, sample=sample)


def disable() -> None:
    """Flush and stop recording; later calls are no-ops until enabled again."""
    configure(enabled=False)


def is_enabled() -> bool:
    """Whether records are being kept right now."""
    return _rec is not None


def settings() -> Settings:
    """The settings in force."""
    return _settings


def fragment_path() -> Path | None:
    """The fragment file this process writes to now (it appears at the first flush), or None."""
    rec = _rec
    return rec.path if rec is not None else None


def stats() -> ProfileStats:
    """Counts of the current (or last) recorder: events, written, dropped, io_errors, ...."""
    rec = _rec or _last
    return rec.stats() if rec is not None else ProfileStats()


# --- process lifecycle -----------------------------------------------------------------------


class _ForkToken:
    """A weak-referenceable object for ``multiprocessing.util.register_after_fork``."""


_FORK_TOKEN = _ForkToken()


def _flush_at_exit() -> None:
    flush()


def _register_multiprocessing_flush(_token: object) -> None:
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, _flush_at_exit, exitpriority=-100)


def _after_fork_in_child() -> None:
    """Start a fresh recorder in a forked child.

    The parent's buffered records stay with the parent (it writes them); the child starts an
    empty buffer and its own fragment, so nothing is written twice or lost.
    """
    global _rec, _last, _process_key, _process_name, _config_lock
    _config_lock = threading.Lock()  # another thread may have held it at the fork
    _process_key = _new_process_key()
    _process_name = None
    parent = _rec
    if parent is None:
        _last = None
        return
    _rec = _last = _new_recorder(_settings, forked_from=parent.pid)
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        # NOTE: multiprocessing's forked workers leave through os._exit, skipping atexit; its own
        # exit hook runs finalizers registered after the fork, which this callback adds.
        util.register_after_fork(_FORK_TOKEN, _register_multiprocessing_flush)


atexit.register(_flush_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
