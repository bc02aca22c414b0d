"""SIGTERM handled like Ctrl-C, so that the cleanup written for Ctrl-C also runs on ``kill``.

Python turns SIGINT into KeyboardInterrupt: ``finally`` and ``except BaseException`` blocks
remove a half-written run's temporary folder, and a sweep writes the tables of the scenarios
that finished. SIGTERM (what ``kill``, ``timeout``, a job scheduler or a container runtime
sends) ends the process at once by default, leaving ``.NAME.XXXX/`` folders beside the output
and a sweep without tables. Inside :func:`sigterm_raises`, SIGTERM raises :class:`Terminated`,
a KeyboardInterrupt, so every handler written for Ctrl-C handles it too.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

SIGTERM_EXIT_CODE = 128 + signal.SIGTERM
"""The exit status of a process that SIGTERM ended (shells report ``143``)."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives inside :func:`sigterm_raises`."""


@dataclass
class TermState:
    """Whether SIGTERM arrived inside the block (then :func:`end_by_sigterm` after cleanup)."""

    received: bool = False


@contextmanager
def sigterm_raises() -> Iterator[TermState]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread.

    The previous handler is restored on the way out. Nothing is installed outside the main
    thread (Python runs signal handlers only there) or when SIGTERM already has a handler
    other than the default: a caller's own handler (or an enclosing ``sigterm_raises``) wins.

    NOTE: only the first SIGTERM raises; later ones are ignored until the block exits, so a
    second ``kill`` cannot cut the cleanup short and leave a temporary folder behind
    (SIGKILL still ends the process).
    """
    state = TermState()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield state
        return

    def on_sigterm(signum: int, frame: object) -> None:
        if state.received:
            return
        state.received = True
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


def end_by_sigterm() -> None:
    """End the process as an unhandled SIGTERM would, once its cleanup has run.

    NOTE: re-raised rather than ``sys.exit(143)``: whoever sent the signal sees the process
    ended by it (a shell's status 143, a parent's ``-15``), also when the CLI's ``main`` runs
    inside another program (a test runner) that must stop too. Only called after a
    :func:`sigterm_raises` block that received SIGTERM, so the default action is back.
    """
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    signal.raise_signal(signal.SIGTERM)
    sys.exit(SIGTERM_EXIT_CODE)  # not reached where the default action ends the process
