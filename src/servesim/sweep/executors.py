"""Where a batch of scenarios runs: in this process, a local process pool, or a Ray cluster.

Every executor offers ``map_unordered(fn, items)``, yielding ``(position, fn(item))`` as each
call finishes, so callers can record results the moment they exist. ``fn`` must be a module-level
function (or a ``functools.partial`` of one): it is pickled to the workers. The simulation is
deterministic, so the same items give the same results whichever executor runs them.

Chosen in one visible place, :func:`make_executor`:

- ``workers == 1`` → :class:`SerialExecutor` (no processes; easiest to debug);
- otherwise → :class:`LocalExecutor`, a ``ProcessPoolExecutor`` of ``workers`` processes
  (started by a fork server, so a script using it needs the usual
  ``if __name__ == "__main__":`` guard, as with ``spawn``);
- ``ray`` given → :class:`RayExecutor`: ``"local"`` starts Ray on this machine, ``"auto"`` joins
  the cluster this machine belongs to (``ray start``, ``RAY_ADDRESS``), ``HOST:PORT`` or
  ``ray://HOST:PORT`` joins that one. Workers there need ``servesim[ray]`` installed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from servesim.errors import ServesimError

RAY_PROBE_TIMEOUT_S = 5.0
"""How long a Ray address may take to accept a TCP connection before it counts as down."""


class Executor(Protocol):
    """Runs ``fn`` over items somewhere; yields ``(position, result)`` as they finish.

    A context manager: leaving it stops the executor's processes (or its Ray connection).
    """

    name: str
    workers: int

    def map_unordered(
        self, fn: Callable[[Any], Any], items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


def run_ordered(executor: Executor, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(item) for item in items]`` on ``executor``, in input order."""
    out: list[Any] = [None] * len(items)
    for i, value in executor.map_unordered(fn, items):
        out[i] = value
    return out


def default_workers() -> int:
    """Cores this process may use (all of them unless an affinity mask says otherwise)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SerialExecutor:
    """Runs every call in this process, one after another."""

    name = "serial"
    workers = 1

    def map_unordered(self, fn, items):
        for i, item in enumerate(items):
            yield i, fn(item)

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalExecutor:
    """A pool of ``workers`` processes on this machine, started on first use."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # NOTE: forkserver, not fork: forking a parent that has threads (Ray's, a progress
            # bar's) can deadlock a child. The server imports the simulator once and forks
            # workers from it, so a worker starts in milliseconds with it already imported.
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["servesim.run", "servesim.sweep.measure"])
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_ignore_sigint
            )
        return self._pool

    def map_unordered(self, fn, items):
        pool = self._get_pool()
        pending: dict[Future, int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
        finally:
            # Interrupted (Ctrl-C, an error in a caller): drop what has not started.
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def kill(self) -> None:
        """Stop at once: kill the workers (their running calls are lost), then close."""
        if self._pool is not None:
            # NOTE: ProcessPoolExecutor.kill_workers() does this from Python 3.14.
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
            self.close()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # Interrupted (Ctrl-C, SIGTERM) or failed: waiting for the running scenarios could
        # take minutes, and nobody would read their results.
        if exc_type is not None:
            self.kill()
        else:
            self.close()


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops them when it stops.

    NOTE: a terminal sends Ctrl-C's SIGINT to the whole process group. A worker that died of
    it would fail the pool's futures (BrokenProcessPool) while the parent was still handling
    its own KeyboardInterrupt: an error instead of an orderly stop (results written, workers
    killed). SIGTERM keeps its default: sent to the group, it ends the workers too; sent to
    the parent alone, the parent kills them on its way out.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def check_ray_address(address: str, timeout_s: float = RAY_PROBE_TIMEOUT_S) -> None:
    """Raise ServesimError unless ``HOST:PORT`` (or ``ray://HOST:PORT``) accepts a connection.

    NOTE: probed with a plain TCP connect first because ``ray.init`` retries an address that
    does not answer for a long time before giving up.
    """
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ServesimError(
            f"{address!r} is not a Ray address",
            field="--ray",
            fix="use local, auto, HOST:PORT (e.g. 10.0.0.1:6379) or ray://HOST:10001",
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise ServesimError(
            f"the Ray cluster at {address} does not answer ({err.strerror or err})",
            field="--ray",
            fix="check the address and that `ray start --head` runs there, or use --ray local",
        ) from None


class RayExecutor:
    """Tasks on a Ray cluster, one CPU each; connects (or starts a local Ray) on creation.

    A Ray session already initialised in this process (e.g. by a notebook) is reused and left
    running; one this executor started or joined is shut down by :meth:`close`.
    """

    name = "ray"

    def __init__(self, address: str = "local", workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise ServesimError(
                "Ray is not installed", field="--ray", fix="pip install 'servesim[ray]'"
            ) from None
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
            if address == "local":
                ray.init(num_cpus=workers or default_workers(), include_dashboard=False, **quiet)
            else:
                if address != "auto":
                    check_ray_address(address)
                try:
                    ray.init(address=address, **quiet)
                except (ConnectionError, RuntimeError, TimeoutError) as err:
                    raise ServesimError(
                        f"cannot join the Ray cluster at {address}: {err}",
                        field="--ray",
                        fix="start one with `ray start --head`, pass its HOST:PORT, "
                        "or use --ray local",
                    ) from None
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self._remote = ray.remote(num_cpus=1)(_call)

    def map_unordered(self, fn, items):
        ray = self._ray
        fn_ref = ray.put(fn)
        pending = {self._remote.remote(fn_ref, item): i for i, item in enumerate(items)}
        try:
            while pending:
                # Block for one, then take every other already-finished task in the same call.
                done, _ = ray.wait(list(pending), num_returns=1)
                more, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for ref in dict.fromkeys(done + more):
                    yield pending.pop(ref), ray.get(ref)
        except ray.exceptions.RayTaskError:
            raise  # a Python exception inside the task: not the cluster's fault
        except ray.exceptions.RayError as err:
            raise ServesimError(
                f"the Ray cluster failed mid-run ({type(err).__name__}: {err})",
                field="--ray",
                fix="check the cluster, then run again to resume",
            ) from None
        finally:
            for ref in pending:
                ray.cancel(ref)

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_executor(workers: int | None = None, ray: str | None = None) -> Executor:
    """The executor for ``--workers`` / ``--ray`` (see the module docstring)."""
    if workers is not None and workers < 1:
        raise ServesimError(f"must be >= 1, got {workers}", field="--workers")
    if ray is not None:
        return RayExecutor(ray, workers)
    n = workers or default_workers()
    if n == 1:
        return SerialExecutor()
    return LocalExecutor(n)
