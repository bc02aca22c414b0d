"""The discrete-event loop. Read this file top to bottom to see how a simulation runs.

Events sit on a heap keyed ``(time, priority, instance, seq)``: time in simulated seconds, then
the priority of the event's kind (:class:`EventKind`: arrivals before wake-ups before step
completions, so every request that arrives at time t is queued before a step that starts at t
is scheduled), then the instance an instance's event is for (-1 for the others), then the order
events were pushed. That key makes same-time ordering explicit and runs reproducible, and the
same whether decode spans are fast-forwarded or stepped.

Each kind has one handler (:data:`_HANDLERS`); it takes the event's payload and returns the
events it causes; the loop pushes them. The loop emits records (requests, steps, inter-token
gaps) to a :class:`RunRecords`; everything users see is computed from those records afterwards.

Times in the records are what the benchmark client sees: with an API server in front of the
engine (:class:`ApiLatency`), a request reaches the scheduler ``ApiLatency.request_seconds``
of API-server work after the client sent it (later when the server is busy with others), and
every token reaches the client ``stream_s`` after its step ends.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from servesim.engine.instance import Instance, StepOutcome
from servesim.engine.records import ABORTED, RunRecords
from servesim.engine.request import Request
from servesim.engine.router import Router

if TYPE_CHECKING:
    from servesim.workload import Session


@dataclass(frozen=True)
class Handoff:
    """Prefill/decode disaggregation: where a request goes after its prefill instance.

    When a request's prompt is done on a prefill instance, ``router`` picks a decode instance
    and its KV cache travels there for ``transfer_seconds(request, source, target)``; on arrival
    it joins the decode instance's queue with the prompt's KV already present.
    """

    decode_instances: Sequence[Instance]
    router: Router
    transfer_seconds: Callable[[Request, Instance, Instance], float]


class EventKind(Enum):
    """What an event is. ``priority`` orders kinds at the same instant, lower first: requests
    arrive, then idle instances wake up, then steps complete."""

    SESSION = 0, "a session's first turn is due (the next session is pulled from the workload)"
    SEND = 0, "a client sends a turn (with an API server: it queues for the server)"
    ARRIVAL = 0, "a turn reaches the scheduler"
    KV_ARRIVAL = 0, "a prefilled request's KV cache reaches its decode instance"
    API_TAKE = 1, "idle API servers take the turns sent this instant (all of them queued)"
    WAKEUP = 1, "an idle instance with queued work schedules a step"
    STEP_DONE = 2, "an instance's step (or decode span) ends"

    def __init__(self, priority: int, meaning: str):
        self.priority = priority
        self.meaning = meaning

    # NOTE: members are singletons compared by identity, so the identity hash agrees with
    # equality; Enum's own hashes the name in Python, on every event's handler lookup.
    # (Nothing iterates a set of kinds: no order depends on it.)
    __hash__ = object.__hash__


class Event(NamedTuple):
    """Something that happens at ``time``; its kind's priority orders events at one instant.

    (A named tuple: built for every step and arrival, cheaper than a frozen dataclass.)
    """

    time: float
    kind: EventKind
    payload: object = None
    generation: int = 0
    """For ``STEP_DONE``: the instance's step generation it was scheduled for (a later one
    means the step's end moved and this event is stale)."""

    @property
    def priority(self) -> int:
        return self.kind.priority


_new_event = partial(tuple.__new__, Event)
"""``_new_event((time, kind, payload, generation))`` is ``Event(time, kind, payload,
generation)`` without the named tuple's Python-level ``__new__`` (a third of the cost; built
for every step and arrival)."""


_SHORT_HEAP = 16
"""Events on the heap up to which a cut span's pending end is replaced rather than left stale
(a scan of the heap for it costs less than popping it later)."""


_HANDLERS: dict[EventKind, Callable[[Simulation, Event], list[Event]]] = {
    EventKind.SESSION: lambda sim, ev: sim._on_session(ev.payload),
    EventKind.SEND: lambda sim, ev: sim._arrival(*ev.payload),
    EventKind.API_TAKE: lambda sim, ev: sim._api_take(),
    EventKind.ARRIVAL: lambda sim, ev: sim._on_arrival(*ev.payload),
    EventKind.KV_ARRIVAL: lambda sim, ev: sim._on_kv_arrival(*ev.payload),
    EventKind.WAKEUP: lambda sim, ev: sim._on_wakeup(ev.payload),
    EventKind.STEP_DONE: lambda sim, ev: sim._on_step_done(ev.payload, ev.generation),
}
"""Each kind's handler (through the simulation's methods, so subclasses can override them)."""

_THROUGH_HANDLE: dict[EventKind, Callable[[Simulation, Event], list[Event]]] = {
    kind: lambda sim, ev: sim._handle(ev) for kind in EventKind
}
"""Each kind to :meth:`Simulation._handle`: the table ``run`` uses for a subclass that
overrides it."""


@dataclass(frozen=True)
class ApiLatency:
    """Latency outside the GPU step (an engine's API server), seconds.

    ``request_s + per_input_token_s × prompt tokens`` of API-server work from the client's send
    to the scheduler (HTTP handling, tokenisation, hand-off to the engine); ``stream_s`` from a
    token's step end to the client (detokenisation, streaming).

    The API server is one process per instance taking new requests, and does that work one
    request at a time: a burst of N requests reaches the scheduler spread over N request times.

    ``before_await_share`` is the part of a request's work its handler does before it first
    yields to the server's event loop (HTTP parsing, request validation, the chat template,
    up to handing the prompt to the tokenizer). An asyncio server runs whatever is ready in
    the order it became ready: every request of a burst does that part before the first one
    resumes for the rest, so the first request reaches the scheduler only after
    ``N × before_await_share`` request times, and the others follow one request time apart
    minus that share. Requests that come one at a time see no difference. 0: each request's
    work in one piece, in the order sent."""

    request_s: float = 0.0
    per_input_token_s: float = 0.0
    stream_s: float = 0.0
    before_await_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.before_await_share < 1.0:
            raise ValueError(
                f"before_await_share must be in [0, 1) (got {self.before_await_share})"
            )

    def request_seconds(self, prompt_tokens: int) -> float:
        return self.request_s + self.per_input_token_s * prompt_tokens


def stranded_error(what: str) -> RuntimeError:
    """The internal error of a run that ran out of events with ``what`` left undone."""
    return RuntimeError(
        f"internal error: the simulation ran out of events with {what}; please report it with "
        "the scenario"
    )


AdmissionCheck = Callable[[Request], str | None]
"""Returns why a request can never be served (too long for the context or the KV cache)."""

StepObserver = Callable[[Instance, StepOutcome], None]
"""Called after each completed step (online serving reads which tokens it produced)."""


class Simulation:
    """Runs sessions through instances behind a router, to completion."""

    def __init__(
        self,
        instances: Sequence[Instance],
        router: Router,
        sessions: Iterator[Session],
        records: RunRecords,
        admission_check: AdmissionCheck | None = None,
        on_progress: Callable[[int], None] | None = None,
        handoff: Handoff | None = None,
        api: ApiLatency | None = None,
        on_step: StepObserver | None = None,
    ):
        self.instances = list(instances)
        """Where new requests are routed (mixed or prefill instances)."""
        self.handoff = handoff
        self.api = api
        self.router = router
        self.sessions = sessions
        self.records = records
        self.admission_check = admission_check
        self.on_progress = on_progress
        self.on_step = on_step
        self.now = 0.0
        servers = len(self.instances) if api is not None else 0
        self._api_free = [0.0] * servers
        """When each API server (one per instance taking new requests) is next free (a heap;
        requests taken in one piece, ``before_await_share`` 0)."""
        self._api_sent: deque[tuple[Session, int, float]] = deque()
        """Turns sent and not yet begun by an API server, in the order sent (staged intake)."""
        self._api_begun: list[deque[tuple[Session, int, float, float]]] = [
            deque() for _ in range(servers)
        ]
        """Each server's turns whose first part is done: (turn..., seconds of work left)."""
        self._api_taking = [False] * servers
        """Whether each server is finishing a turn (its ARRIVAL event pending)."""
        self._api_busy = [0.0] * servers
        """When each server's work in hand ends (staged intake)."""
        self._heap: list[tuple[float, int, int, int, Event]] = []
        self._seq = 0
        self._next_request_id = 0
        self._aborted_sessions: set[int] = set()
        """Sessions a client abandoned (:meth:`abort`): a turn of one is dropped where it is."""
        self.num_events = 0
        self._horizons = len(self.instances) == 1 and handoff is None
        """Whether decode spans are priced only a few steps past the next event
        (:meth:`_horizon`)."""

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> RunRecords:
        """Process events until none are left; return the records."""
        self._push_all(self._next_session())
        heap = self._heap
        # (Straight to each kind's handler, one call fewer an event, unless a subclass
        # handles events its own way.)
        handlers = _HANDLERS if type(self)._handle is Simulation._handle else _THROUGH_HANDLE
        while heap:
            time, _, _, _, event = heapq.heappop(heap)
            while True:
                assert time >= self.now, "simulated time went backwards"
                self.now = time
                self.num_events += 1
                events = handlers[event.kind](self, event)
                # An event due before everything on the heap is the next one popped: it is
                # handled at once instead (most step ends at low load), the same order and
                # sequence numbers as through the heap.
                if len(events) != 1 or (heap and events[0].time >= heap[0][0]):
                    self._push_all(events)
                    break
                event = events[0]
                time = event.time
                self._seq += 1
        self._check_drained()
        self.records.freeze()
        return self.records

    def all_instances(self) -> list[Instance]:
        """Every instance: those new requests reach and, under disaggregation, the decode
        instances behind them."""
        if self.handoff is None:
            return list(self.instances)
        return [*self.instances, *self.handoff.decode_instances]

    def _check_drained(self) -> None:
        """With no event left, every request routed to an instance must have finished: one
        still queued or running was stranded (a queue head that no admission lets in stops an
        idle instance for ever), and a summary of the others would hide it. That is a defect
        of the simulator, not of the scenario: stop rather than report partial figures."""
        stranded = [(i, i.num_outstanding) for i in self.all_instances() if i.num_outstanding]
        if stranded:
            inst, count = stranded[0]
            head = inst.waiting[0] if inst.waiting else None
            about = (
                f"; the queue head, request {head.request_id}, has {head.prompt_tokens} prompt "
                f"and {head.max_output_tokens} output tokens"
                if head is not None
                else ""
            )
            raise stranded_error(
                f"{sum(n for _, n in stranded)} request(s) never finished (instance "
                f"{inst.instance_id}: {len(inst.waiting)} waiting, {len(inst.running)} running, "
                f"{inst.kv.num_free_blocks} of {inst.kv.num_blocks} KV blocks free{about})"
            )

    # --- online use: advance to a time, inject arrivals ----------------------------------
    # NOTE: an online driver (``servesim serve``) interleaves these with the wall clock. The
    # events processed are the same as in ``run``; only who decides when to stop differs.

    def next_event_time(self) -> float | None:
        """Simulated time of the next pending event (None when nothing is pending)."""
        return self._heap[0][0] if self._heap else None

    def advance_to(self, time: float) -> None:
        """Process every event due at or before ``time``; then ``now`` is ``time``."""
        heap = self._heap
        while heap and heap[0][0] <= time:
            event_time, _, _, _, event = heapq.heappop(heap)
            self.now = event_time
            self.num_events += 1
            self._push_all(self._handle(event))
        self.now = max(self.now, time)

    def submit(self, session: Session) -> None:
        """A client sends ``session``'s first turn now (``session.start_s`` is not read)."""
        self._push_all(self._arrival(session, 0, self.now))

    def abort(self, session_id: int) -> None:
        """The client of session ``session_id`` went away (online serving): its request is
        dropped where it is, as vLLM aborts the request of a client that disconnects. Queued
        or running on an instance, that instance frees it (:meth:`Instance.abort`); still in
        the API server or in a KV transfer, it is dropped when it gets there. Counted as
        skipped, reason ``aborted``; a request that finished first, or finishes in the step
        in flight, is not affected (it completes in the engine; the client is gone)."""
        self._aborted_sessions.add(session_id)
        for instance in self.all_instances():
            where = instance.abort(session_id)
            if where == "dropped":
                self.records.request_skipped(ABORTED)
            if where:
                return

    def _dropped_if_aborted(self, req_or_session: Request | Session) -> bool:
        """Whether this turn's client abandoned it before it reached an instance (counted)."""
        if self._aborted_sessions and req_or_session.session_id in self._aborted_sessions:
            self.records.request_skipped(ABORTED)
            return True
        return False

    def _handle(self, event: Event) -> list[Event]:
        return _HANDLERS[event.kind](self, event)

    def _push_all(self, events: list[Event]) -> None:
        for ev in events:
            # (An instance's events at one instant go in instance order, not push order: a
            # fast-forwarded span pushes its end when it starts, steps one at a time push theirs
            # a step before, and lockstep replicas' completions, routed follow-ups included,
            # must be handled in the same order either way.)
            owner = ev.payload.instance_id if isinstance(ev.payload, Instance) else -1
            heapq.heappush(self._heap, (ev.time, ev.kind.priority, owner, self._seq, ev))
            self._seq += 1

    # --- handlers -----------------------------------------------------------------------

    def _next_session(self) -> list[Event]:
        """Pull the next session from the (lazy) workload; its start is an event."""
        session = next(self.sessions, None)
        if session is None:
            return []
        return [_new_event((session.start_s, EventKind.SESSION, session, 0))]

    def _on_session(self, session: Session) -> list[Event]:
        # The next session is pulled only now, so the workload streams in bounded memory.
        events = self._next_session()
        # A session starting now is part of this instant's burst: the take waits for it.
        alone = not events or events[0].time > self.now
        events.extend(self._arrival(session, 0, self.now, take_now=alone))
        return events

    def _arrival(
        self, session: Session, turn_index: int, sent_s: float, take_now: bool = False
    ) -> list[Event]:
        """The events of a turn the client sends at ``sent_s``: it reaches the scheduler when
        an API server has done its request work (one event, not two: cost grows with events).

        API servers take requests in the order they are sent, so a turn sent later than now
        (a follow-up after think time, a request held by a client-side cap) first becomes a
        ``SEND`` event at its send time. With a staged intake (``before_await_share`` > 0) the
        turn joins the sent queue, which idle servers take once every send of this instant
        is in it (an ``API_TAKE`` event; at once when the caller knows no other send is due
        now, ``take_now``)."""
        api = self.api
        if api is None:
            return [Event(sent_s, EventKind.ARRIVAL, (session, turn_index, sent_s, -1))]
        if sent_s > self.now:
            return [Event(sent_s, EventKind.SEND, (session, turn_index, sent_s))]
        if api.before_await_share:
            taking = self._api_taking
            if (
                take_now
                and len(taking) == 1
                and not (taking[0] or self._api_sent or self._api_begun[0])
            ):
                # (The one server idle, nothing sent or begun: what _api_take does then, the
                # turn's work in one piece from now.)
                work = api.request_seconds(session.turns[turn_index].input_tokens)
                busy = self._api_busy[0] = max(self.now, self._api_busy[0]) + work
                taking[0] = True
                return [_new_event((busy, EventKind.ARRIVAL, (session, turn_index, sent_s, 0), 0))]
            self._api_sent.append((session, turn_index, sent_s))
            if len(self._api_sent) > 1:
                return []  # an API_TAKE is due, or every server is busy and takes it later
            return self._api_take() if take_now else [Event(self.now, EventKind.API_TAKE)]
        start = max(sent_s, heapq.heappop(self._api_free))
        ready = start + api.request_seconds(session.turns[turn_index].input_tokens)
        heapq.heappush(self._api_free, ready)
        return [Event(ready, EventKind.ARRIVAL, (session, turn_index, sent_s, -1))]

    def _api_take(self) -> list[Event]:
        """Idle API servers begin the turns sent and finish the next begun one each.

        A server with no begun turns left does the first part of its share of every turn sent
        (in the order sent) before it finishes any of them; turns sent while it finishes
        begun ones wait behind those. A finished turn is an ``ARRIVAL`` event that frees its
        server (:meth:`_on_arrival` calls back here)."""
        api = self.api
        assert api is not None
        share = api.before_await_share
        sent, taking, busy = self._api_sent, self._api_taking, self._api_busy
        if len(taking) == 1:  # (most runs: one instance takes requests)
            idle = [] if taking[0] else [0]
        else:
            idle = [s for s, t in enumerate(taking) if not t]
        events: list[Event] = []
        for rank, server in enumerate(idle):
            begun = self._api_begun[server]
            if not begun and sent:
                # The idle servers split what was sent (the first ones take one more).
                count = -(-len(sent) // (len(idle) - rank))
                t = max(self.now, busy[server])
                for _ in range(count):
                    session, turn_index, sent_s = sent.popleft()
                    work = api.request_seconds(session.turns[turn_index].input_tokens)
                    if count == 1:  # alone: its work in one piece (the same sum, unrounded)
                        begun.append((session, turn_index, sent_s, work))
                        break
                    t += share * work
                    begun.append((session, turn_index, sent_s, (1.0 - share) * work))
                busy[server] = t
            if begun:
                session, turn_index, sent_s, left = begun.popleft()
                busy[server] = max(self.now, busy[server]) + left
                taking[server] = True
                events.append(
                    Event(busy[server], EventKind.ARRIVAL, (session, turn_index, sent_s, server))
                )
        return events

    def _on_arrival(
        self, session: Session, turn_index: int, sent_s: float, server: int
    ) -> list[Event]:
        """``server``: the API server that finished the turn (staged intake), else -1."""
        events: list[Event] = []
        if server >= 0:
            self._api_taking[server] = False
            if self._api_sent or self._api_begun[server]:
                events = self._api_take()
        if self._dropped_if_aborted(session):
            return events
        turn = session.turns[turn_index]
        # (The first eight fields in order, the session set after: a dataclass's keyword
        # arguments cost three times its positional ones, 0.7 µs a request.)
        req = Request(
            self._next_request_id,  # request_id
            session.session_id,
            turn_index,  # turn
            sent_s,  # arrival_s
            turn.input_tokens,  # prompt_tokens
            turn.output_tokens,  # max_output_tokens
            tuple(turn.hash_ids),
            turn.hash_block_size,
        )
        req.session = session
        self._next_request_id += 1
        reason = self.admission_check(req) if self.admission_check else None
        if reason is not None:
            events.extend(self._skip(session, turn_index, reason))
            return events
        instances = self.instances
        # (Every router sends a request to the one instance there is, and draws nothing.)
        instance = instances[0] if len(instances) == 1 else self.router(req, instances)
        events.extend(self._deliver(req, instance))
        return events

    def _skip(self, session: Session, turn_index: int, reason: str) -> list[Event]:
        """A turn the server refuses. The later turns of its conversation needed its answer:
        they are never sent (counted as skipped, ``earlier_turn_skipped``). A session with a
        later conversation (a closed-loop user) sends that one's first turn after its think
        time, as a benchmark client sends its next request after a failed one."""
        end = session.conversation_end(turn_index)
        following = end < len(session.turns)
        dropped = end - turn_index - 1
        self.records.request_skipped(reason, dropped, ends_session=not following)
        if self.on_progress is not None:
            self.on_progress(1 + dropped)  # (done too: a progress bar of the requests ends full)
        if not following:
            return []
        return self._arrival(session, end, self.now + session.think_times_s[end - 1])

    def _deliver(self, req: Request, instance: Instance) -> list[Event]:
        """Queue ``req`` on ``instance``: wake it if idle, or cut its decode span short."""
        new_end = instance.enqueue(req, self.now)
        if new_end is not None:
            return self._moved_step_end(instance, new_end)
        if not instance.busy and not instance.wake_pending:
            instance.wake_pending = True
            return [Event(self.now, EventKind.WAKEUP, instance)]
        return []

    def _moved_step_end(self, instance: Instance, end: float) -> list[Event]:
        """The ``STEP_DONE`` event of ``instance``'s span, cut short to end at ``end``. On a
        short heap it takes the place of the pending one, with a fresh sequence number (which
        orders it only against events of the same instant, priority and instance: none, the
        pending one gone), so events come off in the same order as when it is pushed; the
        pending one would otherwise be popped later only to be found stale (a pop and a
        handler call; at low load three arrivals in four cut a span). On a long heap it is
        pushed and the stale one left."""
        event = _new_event((end, EventKind.STEP_DONE, instance, instance.generation))
        heap = self._heap
        if len(heap) <= _SHORT_HEAP:
            stale = instance.generation - 1
            for i, entry in enumerate(heap):
                pending = entry[4]
                if (
                    pending.payload is instance
                    and pending.generation == stale
                    and pending.kind is EventKind.STEP_DONE
                ):
                    heap[i] = (end, EventKind.STEP_DONE.priority, instance.instance_id,
                               self._seq, event)  # fmt: skip
                    self._seq += 1
                    heapq.heapify(heap)
                    return []
        return [event]

    def _on_wakeup(self, instance: Instance) -> list[Event]:
        if instance.busy:
            return []
        return self._start_step(instance)

    def _on_step_done(self, instance: Instance, generation: int) -> list[Event]:
        span = instance.in_flight
        if generation != instance.generation or span is None:
            return []  # superseded: the span was truncated and rescheduled
        if span.priced_steps:
            # A checkpoint: the span's priced steps ran out with nothing cutting it short.
            end = instance.resume_span(self._horizon())
            return [_new_event((end, EventKind.STEP_DONE, instance, instance.generation))]
        outcome = instance.complete_step(self.records)
        if self.on_step is not None:
            self.on_step(instance, outcome)
        self.records.step_done(outcome.record, outcome.features)
        events: list[Event] = []
        for _ in outcome.aborted:
            self.records.request_skipped(ABORTED)
        for req in outcome.finished:
            if instance.role == "prefill" and self.handoff is not None:
                events.append(self._start_transfer(req, instance))
                continue
            if self.api is not None:
                # The client receives every token stream_s after its step: record what it sees.
                req.first_token_s += self.api.stream_s
                req.finish_s += self.api.stream_s
            self.records.request_done(req)
            session = req.session
            nxt = req.turn + 1
            if nxt < len(session.turns):
                think = session.think_times_s[req.turn] if session.think_times_s else 0.0
                events.extend(self._arrival(session, nxt, req.finish_s + think))
        if outcome.finished and self.on_progress is not None:
            self.on_progress(len(outcome.finished))
        events.extend(self._start_step(instance))
        return events

    def _start_transfer(self, req: Request, source: Instance) -> Event:
        handoff = self.handoff
        assert handoff is not None
        target = handoff.router(req, handoff.decode_instances)
        seconds = handoff.transfer_seconds(req, source, target)
        self.records.kv_transfer(seconds)
        return Event(self.now + seconds, EventKind.KV_ARRIVAL, (req, target))

    def _on_kv_arrival(self, req: Request, target: Instance) -> list[Event]:
        if self._dropped_if_aborted(req):
            return []
        req.receive_prompt_kv()
        return self._deliver(req, target)

    def _horizon(self) -> float:
        """When the next event that could bring a request to an instance is due (s): a
        decode span is priced only a few steps past it (its end event a checkpoint where
        the steps priced run out). With one instance, the heap's next event; with several,
        or a hand-off, ``inf`` (the next event is mostly another instance's step, which brings
        none: a span would stop at a checkpoint every few steps)."""
        heap = self._heap
        return heap[0][0] if heap and self._horizons else math.inf

    def _start_step(self, instance: Instance) -> list[Event]:
        end = instance.start_step(self.now, self._horizon())
        if end is None:
            return []
        return [_new_event((end, EventKind.STEP_DONE, instance, instance.generation))]
