"""A cap on requests in flight over an open-loop arrival process (``max_concurrency``).

As ``vllm bench serve --request-rate R --max-concurrency N``: requests are *due* by the arrival
process, but the client holds a semaphore of N around each one, so a request due while N are
outstanding waits, in due order, and is sent the moment one finishes (its TTFT and E2EL count
from that send, as the benchmark's timers start after the semaphore). A multi-turn session
holds its slot from its first turn's send to its last turn's finish.

The event loop is unchanged: :class:`CappedSimulation` holds a session back where the loop
would send it, and learns of finished sessions from the records the loop writes
(:class:`_SlotRecords`), releasing a waiting one after the event that freed the slot.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from servesim.engine.loop import Event, Simulation, stranded_error

if TYPE_CHECKING:
    from servesim.engine.request import Request
    from servesim.workload import Session


class _SlotRecords:
    """The run's records, noting when a session ends (its last turn done, or a skipped turn
    with no later conversation in its session)."""

    def __init__(self, records: Any):
        self._records = records
        self.freed_at: list[float | None] = []
        """Client-side times slots were freed since the loop last looked (None: now)."""

    def request_done(self, req: Request) -> None:
        self._records.request_done(req)
        if req.turn == len(req.session.turns) - 1:
            self.freed_at.append(req.finish_s)

    def request_skipped(self, reason: str, dropped: int = 0, ends_session: bool = True) -> None:
        self._records.request_skipped(reason, dropped, ends_session)
        if ends_session:
            self.freed_at.append(None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)


class CappedSimulation(Simulation):
    """A :class:`~servesim.engine.loop.Simulation` with at most ``max_concurrency`` sessions in
    flight; the others wait in arrival order."""

    def __init__(self, *args: Any, max_concurrency: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        assert max_concurrency >= 1
        self.max_concurrency = max_concurrency
        self.records = self._slots = _SlotRecords(self.records)
        self._in_flight = 0
        self._waiting: deque[Session] = deque()

    def _on_session(self, session: Session) -> list[Event]:
        if self._in_flight < self.max_concurrency:
            self._in_flight += 1
            return super()._on_session(session)
        self._waiting.append(session)  # due now; sent when a slot frees
        return self._next_session()

    def _check_drained(self) -> None:
        super()._check_drained()
        if self._waiting:  # (a slot never freed: as much a defect as a stranded request)
            raise stranded_error(
                f"{len(self._waiting)} session(s) never sent (waiting for one of "
                f"{self.max_concurrency} concurrency slots)"
            )

    def _handle(self, event: Event) -> list[Event]:
        events = super()._handle(event)
        freed, self._slots.freed_at[:] = list(self._slots.freed_at), []
        for at in freed:
            self._in_flight -= 1
            if self._waiting:
                # NOTE: at the client's time of the finish (after streaming), never before now.
                sent = self.now if at is None else max(at, self.now)
                self._in_flight += 1
                events.extend(self._arrival(self._waiting.popleft(), 0, sent))
        return events
