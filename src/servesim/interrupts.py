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
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SIGTERM_EXIT_CODE = 128 + signal.SIGTERM
"""The exit status of a process that SIGTERM ended (shells report ``143``)."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives inside :func:`sigterm_raises`."""


@dataclass
class TermState:
    """Whether SIGTERM arrived inside the block (to exit with :data:`SIGTERM_EXIT_CODE`)."""

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
