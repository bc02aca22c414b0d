"""The simulated engine run online: requests enter as clients send them, tokens leave at the
simulated instant they are produced, mapped to wall time.

Clock: simulated time ``t`` is wall time since the start × ``time_scale`` (K): with K = 10 a
step of 40 simulated ms takes 4 wall ms. One asyncio task (:meth:`OnlineEngine.run`) owns the
event loop: it sleeps until the wall time of the next simulated event (plus the API server's
streaming latency, so that the tokens the event produces are due as it is processed), processes
every event that is due, and sleeps again; a new request wakes it early (its arrival may come
before the event it was waiting for). Request handlers run on the same asyncio thread, so
:meth:`OnlineEngine.submit` may touch the simulation directly: it first processes every event
before the arrival, then queues the arrival at its simulated time. The simulation is exact
whatever the wall time at which its events are processed.

What a client sees: after every step, each request that gained output tokens gets an
:class:`Emission` at the step's end plus the streaming latency; its handler writes the tokens
at that instant's wall time (waiting for it when the emission came early). The engine never
waits for clients: a slow reader only delays its own stream.

NOTE: prefill instances under disaggregation produce no client tokens: the decode instance
recomputes the last prompt token and emits the first token, as the offline records count it.
Fast-forward is off: a span of decode steps would commit its tokens only at its end (the
offline results are the same with it on or off; see the engine's fast-forward test).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from servesim.engine.instance import Instance, StepOutcome
from servesim.engine.request import Request
from servesim.run import Prepared
from servesim.workload import RequestSpec, Session


class Emission(NamedTuple):
    """New output tokens of one request, for the client at simulated time ``time_s``."""

    time_s: float
    num_tokens: int
    finished: bool
    aborted: bool = False
    """The server is shutting down: the stream ends now, its finish reason ``abort`` (no
    tokens, ``time_s`` not waited for)."""


@dataclass
class Stream:
    """One served request: what its handler reads, and what the engine recorded about it."""

    index: int
    prompt_tokens: int
    max_tokens: int
    arrival_s: float
    finish_reason: str
    """``length`` (stopped at ``max_tokens``), ``stop`` (a drawn length: the model ended) or
    ``abort`` (cut by a shutdown, :meth:`OnlineEngine.abort_open`)."""
    emissions: asyncio.Queue[Emission] = field(default_factory=asyncio.Queue)
    sent: int = 0
    """Output tokens emitted so far."""
    last_s: float = 0.0
    """Simulated time of the latest emission."""
    request: Request | None = None
    """The engine's request (set at its first step)."""


class StepListener:
    """What the online engine reports besides tokens (``servesim.serve.metrics`` listens)."""

    def step(self, instance: Instance, outcome: StepOutcome) -> None: ...

    def first_token(self, stream: Stream, time_s: float) -> None: ...

    def tokens(self, stream: Stream, emission: Emission, gap_s: float) -> None: ...

    def finished(self, stream: Stream) -> None: ...

    def delivered(self, lateness_s: float) -> None:
        """Tokens reached their handler ``lateness_s`` wall seconds after their instant."""


class OnlineEngine:
    """Drives a prepared simulation (``servesim.run.prepare``) from the wall clock."""

    def __init__(
        self,
        prepared: Prepared,
        time_scale: float = 1.0,
        listener: StepListener | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if not time_scale > 0:
            raise ValueError("time_scale must be > 0")
        self.prepared = prepared
        self.sim = prepared.sim
        self.sim.on_step = self._on_step
        self.time_scale = time_scale
        self.listener = listener or StepListener()
        self.clock = clock
        api = prepared.api
        self.stream_delay_s = api.stream_s if api is not None else 0.0
        self.streams: dict[int, Stream] = {}
        """Requests in flight, by session id."""
        self.num_submitted = 0
        self.busy_wall_s = 0.0
        """Wall seconds spent simulating (the rest is waiting for the clock)."""
        self._wall0 = clock()
        self._wake = asyncio.Event()
        self._stopping = False

    # --- the clock ----------------------------------------------------------------------

    def sim_now(self) -> float:
        """The simulated time the wall clock says it is now."""
        return (self.clock() - self._wall0) * self.time_scale

    def wall_at(self, sim_s: float) -> float:
        """The wall-clock reading (``clock()``) of simulated time ``sim_s``."""
        return self._wall0 + sim_s / self.time_scale

    async def until(self, sim_s: float) -> None:
        """Sleep until simulated time ``sim_s`` (no-op when it has passed); report how late
        the wake-up was (the timing error of a delivery)."""
        due = self.wall_at(sim_s)
        delay = due - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)
        self.listener.delivered(max(0.0, self.clock() - due))

    # --- requests -----------------------------------------------------------------------

    def submit(
        self,
        prompt_tokens: int,
        max_tokens: int,
        hash_ids: tuple[int, ...] = (),
        finish_reason: str = "length",
        received: float | None = None,
    ) -> Stream:
        """A client's request arrives; its tokens will come through the stream.

        ``received``: the wall-clock reading (``clock()``) when the request reached the
        server (default: now). NOTE: the server's own parsing and hashing happen between then
        and this call; stamping the arrival at ``received`` keeps that Python overhead out of
        the simulated latency (the scenario's API-server latency models a real server's)."""
        sim = self.sim
        now = self.sim_now() if received is None else (received - self._wall0) * self.time_scale
        self._advance(max(sim.now, now))
        index = self.num_submitted
        self.num_submitted += 1
        block = self.prepared.scenario.scheduler.block_size
        spec = RequestSpec(prompt_tokens, max_tokens, hash_ids, hash_block_size=block)
        stream = Stream(index, prompt_tokens, max_tokens, sim.now, finish_reason)
        self.streams[index] = stream
        sim.submit(Session(index, sim.now, (spec,)))
        self._wake.set()
        return stream

    def _on_step(self, instance: Instance, outcome: StepOutcome) -> None:
        self.listener.step(instance, outcome)
        if instance.role == "prefill":
            return
        at = self.sim.now + self.stream_delay_s
        running = instance.running
        outputs = (running.tokens - running.prompt).tolist()
        # (With a stream interval a row sends only in some steps: those that set its last send.)
        sent = (running.last_token == instance.last_end).tolist()
        for req, produced, now in zip(running.reqs, outputs, sent, strict=True):
            if now:
                self._emit(req, produced, at, finished=False)
        for req in outcome.finished:
            self._emit(req, req.num_output_tokens, at, finished=True)

    def _emit(self, req: Request, produced: int, at: float, finished: bool) -> None:
        stream = self.streams.get(req.session_id)
        if stream is None or (produced <= stream.sent and not finished):
            return
        stream.request = req
        # NOTE: speculative decoding may accept drafts past the last token; the client gets
        # the tokens it asked for.
        new = max(0, min(produced, stream.max_tokens) - stream.sent)
        if stream.sent == 0 and new:
            self.listener.first_token(stream, at)
        gap = at - stream.last_s if stream.sent else 0.0
        stream.sent += new
        stream.last_s = at
        emission = Emission(at, new, finished)
        stream.emissions.put_nowait(emission)
        self.listener.tokens(stream, emission, gap)
        if finished:
            del self.streams[req.session_id]
            self.listener.finished(stream)

    # --- the driver task ----------------------------------------------------------------

    def _advance(self, sim_s: float) -> None:
        started = self.clock()
        self.sim.advance_to(sim_s)
        self.busy_wall_s += self.clock() - started

    async def run(self) -> None:
        """Process simulated events as their wall time comes, until :meth:`stop`."""
        sim = self.sim
        if self.num_submitted == 0:
            self._wall0 = self.clock() - sim.now / self.time_scale  # t = 0 when serving starts
        lag = self.stream_delay_s
        while not self._stopping:
            nxt = sim.next_event_time()
            # NOTE: an event is processed when the tokens it produces are due at the client
            # (its time plus the streaming latency), so handlers need not sleep again; the
            # simulation is exact whenever events are processed (an arrival first processes
            # everything due before it).
            delay = None if nxt is None else self.wall_at(nxt + lag) - self.clock()
            if nxt is not None and delay is not None and delay <= 1e-4:
                self._advance(max(nxt, self.sim_now() - lag))
                await asyncio.sleep(0)  # let handlers write what was just produced
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def abort(self, stream: Stream) -> None:
        """The client of ``stream`` went away before its last token: the request is dropped
        where it is (:meth:`Simulation.abort`), freeing its batch slot and KV blocks for the
        others, as vLLM aborts a disconnected client's request. No-op once it finished."""
        if self.streams.pop(stream.index, None) is None:
            return
        stream.finish_reason = "abort"
        self._advance(max(self.sim.now, self.sim_now()))
        self.sim.abort(stream.index)
        self._wake.set()

    def abort_open(self) -> None:
        """End every open stream now, as vLLM aborts the requests in flight when it shuts
        down: each handler gets a last emission with finish reason ``abort`` (the simulation
        keeps the requests unfinished)."""
        for stream in self.streams.values():
            stream.finish_reason = "abort"
            stream.emissions.put_nowait(Emission(stream.last_s, 0, True, aborted=True))
        self.streams.clear()

    def stop(self) -> None:
        """End :meth:`run` (requests still in flight stay unfinished)."""
        self._stopping = True
        self._wake.set()
