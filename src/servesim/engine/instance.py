"""One serving instance: a scheduler, a paged KV cache and an executor (the cost model).

An instance runs one step at a time. ``start_step`` schedules a batch and returns when it will
end; ``complete_step`` commits its tokens and returns the requests that finished.

Multi-step scheduling (``num_scheduler_steps`` N > 1, vLLM 0.6): a pure-decode batch runs a
*round* of N decode steps back to back, every row for every step (a row that reaches its last
token mid-round still occupies its slot until the round ends). The engine makes a request's
output once per round, so its tokens reach the client as one streamed chunk at the round's end
(one inter-token gap per round, as a benchmark client records it), and a request that arrives
mid-round waits for the round to end.

CUDA-graph padding (``graph_batch``): a pure-decode step of b sequences runs the graph
captured for the next size up, and pays for the padded rows. Steps no graph covers (``graphed``
says which: prompts under vLLM V0 and SGLang, batches above the largest captured size) are
timed by ``eager_cost``, where the CPU issues every kernel.

Fast-forward: when a step is pure decode and nothing can change the batch before some request
finishes or the KV cache would need a preemption (no waiting request can be admitted: the
budget, the sequence slots or the KV cache say no, and that only gets worse while decoding),
the next steps differ only in context length. The instance then times many steps in one
vectorised call and completes them together. An arrival during such a span truncates it at the
first step boundary after the arrival, exactly where a step-by-step run would first see it.

Scheduling a step ahead (``schedule_ahead``: vLLM's async scheduling, SGLang's and TensorRT-LLM's
overlap schedulers): the engine forms step n+1 as step n starts, so the step formed at a
boundary admits only requests queued before the step that just ended began, and an arrival
truncates a span one step later. An idle engine, or one that had nothing to form ahead, reads
its queue at once.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np

from servesim.engine.admission import Admission
from servesim.engine.kv_cache import KVBlockManager
from servesim.engine.pricing import SpanPlanner, Speculation, StepCost
from servesim.engine.records import RunRecords, StepRecord
from servesim.engine.request import Request
from servesim.engine.running import (
    COMPUTED,
    MAX_OUT,
    NBLOCKS,
    PROMPT,
    TOKENS,
    RunningTable,
)
from servesim.engine.scheduler import (
    ScheduledBatch,
    SchedulerConfig,
    SchedulerState,
    grow_blocks,
    policy_knobs,
    reserves_compiled,
    schedule,
)

_NO_ROWS = np.zeros((0, 0))
"""An empty feature table (a compiled span commit then leaves the sum to numpy)."""

_sum, _min, _max = np.add.reduce, np.minimum.reduce, np.maximum.reduce
"""Reductions as the ufuncs themselves (``ndarray.sum`` adds a Python layer per call)."""

_ones_buffer = np.ones(1024, dtype=np.int64)


def _one_token_each(n: int) -> np.ndarray:
    """``n`` ones (int64): a decode batch's new tokens, as a view of a shared buffer, which
    nothing writes to (``np.ones`` cost ~1.4 µs, 3% of a low-load run's event loop)."""
    global _ones_buffer
    if n > len(_ones_buffer):
        _ones_buffer = np.ones(2 * n, dtype=np.int64)
    return _ones_buffer[:n]


class _PricedSteps(NamedTuple):
    """The buffers the compiled pricing writes an instance's in-flight step (or span) into
    (an array returned from a compiled call costs ~0.5 µs to box): each step's seconds, end
    and cost-model features. The next step priced overwrites them."""

    seconds: np.ndarray
    ends: np.ndarray
    features: np.ndarray

    def reserve(self, num_steps: int) -> _PricedSteps:
        """These buffers, or larger ones to take their place when they hold fewer steps."""
        if num_steps <= len(self.seconds):
            return self
        return self.with_capacity(2 * num_steps, self.features.shape[1])

    @classmethod
    def with_capacity(cls, steps: int, num_features: int) -> _PricedSteps:
        return cls(np.empty(steps), np.empty(steps), np.empty((steps, num_features)))


@dataclass(slots=True)
class InFlight:
    """The step (or decode span) an instance is executing."""

    batch: ScheduledBatch
    start_s: float
    ends_s: np.ndarray
    """End time of each step of the span, its first :attr:`num_steps` entries (the compiled
    pricing's buffers hold more)."""
    durations: np.ndarray
    """Seconds of each step (as planned: :attr:`num_steps` may be cut)."""
    context_tokens: int
    """KV context the first step reads, summed over the batch; each later step of a span
    reads ``batch_rows`` more (every row grew by one token)."""
    batch_rows: int
    features: np.ndarray
    """Cost-model features of each step, shape (steps or more, features)."""
    num_steps: int
    """Steps of the span (1 for an ordinary step); an arrival cuts a span to fewer."""
    is_round: bool = False
    """A multi-step scheduling round: not cut by arrivals; rows emit up to one token a step,
    delivered together at the end."""
    pure_decode: bool = False
    """Every running row decodes one token a step and has emitted its first token."""
    first_finish: int = 1
    """A decode span: steps after which its first request finishes (no request finishes
    before; the span may stop earlier). Other steps: 1."""
    num_tokens: int = 0
    """Tokens the first step computes, summed over the batch."""
    priced_steps: int = 0
    """Steps whose ends are known (:attr:`ends_s`): :attr:`num_steps`, or fewer for a decode
    span priced only a few steps past the next event that could cut it (its end event is
    then a checkpoint: :meth:`Instance.resume_span` prices on). 0: all of them."""


class StepOutcome(NamedTuple):
    """What completing a step produced. (A named tuple: one is built every step.)"""

    finished: list[Request]
    first_tokens: list[Request]
    record: StepRecord
    features: np.ndarray
    aborted: list[Request] = []
    """Requests whose client went away during the step, dropped at its end (:meth:`Instance.
    abort`); one that finished in the step is in ``finished`` instead."""


_new_record = partial(tuple.__new__, StepRecord)
_new_outcome = partial(tuple.__new__, StepOutcome)
"""``StepRecord(...)`` and ``StepOutcome(...)`` from a tuple of every field, without the named
tuples' Python-level ``__new__`` (built for every step record: 0.2 µs less each)."""


class Instance:
    """A model replica with its own scheduler and KV cache."""

    def __init__(
        self,
        instance_id: int,
        config: SchedulerConfig,
        kv: KVBlockManager,
        cost: StepCost,
        fast_forward: bool = True,
        role: str = "mixed",
        speculation: Speculation | None = None,
        rng: np.random.Generator | None = None,
        label: str = "",
        kv_load_seconds_per_block: float = 0.0,
        num_scheduler_steps: int = 1,
        graph_batch: Callable[[int], int] | None = None,
        eager_cost: StepCost | None = None,
        graphed: Callable[[bool, int, int], bool] | None = None,
        graph_max_seq_len: int | None = None,
        admission_conservativeness: float = 1.0,
        schedule_ahead: bool = False,
        compiled: bool = False,
        span_planners: tuple[SpanPlanner | None, SpanPlanner | None] = (None, None),
    ):
        if role not in ("mixed", "prefill", "decode"):
            raise ValueError(f"unknown instance role {role!r}")
        self.role = role
        self.label = label
        self.kv_load_seconds_per_block = kv_load_seconds_per_block
        """Host-link time to bring one block back from the CPU tier (KV offload)."""
        self.speculation = speculation
        self.num_scheduler_steps = num_scheduler_steps
        """Decode steps per scheduling round (1 = a scheduling decision every step)."""
        self.graph_batch = graph_batch
        """Decode batch size a CUDA graph runs for b sequences; None = no padding."""
        self.eager_cost = eager_cost
        """Cost of the steps no CUDA graph covers (None: ``cost`` times every step)."""
        self.graphed = graphed
        """``graphed(decode_only, tokens, sequences)``: whether a step runs under a graph."""
        self.graph_max_seq_len = graph_max_seq_len if graphed is not None else None
        """A decode step whose longest sequence, its new token included, is longer runs
        eagerly (``EngineProfile.graph_max_seq_len``); spans stop where one would cross it."""
        self.schedule_ahead = schedule_ahead
        """The engine forms step n+1 while step n starts (vLLM's async scheduling, SGLang's and
        TensorRT-LLM's overlap schedulers): a request queued during step n joins step n+2."""
        self._commit = _commit_kernels() if compiled else None
        """The compiled token commits (``engine._commit_kernels``, numba), or None: the numpy
        path below, the reference they are tested against."""
        self._visible_until: float | None = None
        """With ``schedule_ahead``: the start of the step that just ended, when the queue the
        next step was formed from was read (None: the instance was idle, it reads it now)."""
        self.rng = rng if rng is not None else np.random.default_rng(instance_id)
        self.instance_id = instance_id
        self.config = config
        self.kv = kv
        self.cost = cost
        # Where the cost model prices into buffers (the compiled one: a span's end times in the
        # same call, no arrays made): those methods, for ``cost`` and for ``eager_cost``.
        self._span_into = (
            getattr(cost, "decode_span_into", None),
            getattr(eager_cost, "decode_span_into", None),
        )
        self._step_into = (getattr(cost, "step_into", None), getattr(eager_cost, "step_into", None))
        self._span_planners = span_planners if compiled else (None, None)
        """For ``cost`` and ``eager_cost``: a compiled call that plans a decode span and prices
        it in one go (:data:`~servesim.engine.pricing.SpanPlanner`), or None: planned, then
        priced apart."""
        compiled_cost = next((c for c in (cost, eager_cost) if hasattr(c, "step_into")), None)
        self._priced = (
            None
            if compiled_cost is None
            else _PricedSteps.with_capacity(64, compiled_cost.num_features)
        )
        """The buffers the compiled pricing writes the in-flight step into."""
        # NOTE: speculative steps emit a random number of tokens, so spans are not fast-forwarded;
        # with a read interval, which step reads new requests is counted step by step.
        self.fast_forward = (
            fast_forward
            and speculation is None
            and config.recv_interval == 1
            and config.stream_interval == 1
        )
        self.stream_interval = config.stream_interval
        """Tokens between streamed chunks (SGLang's ``--stream-interval`` N: a request's tokens
        reach the client when it has emitted 1, N + 1, 2N + 1, ... of them, and at its last,
        as SGLang 0.5.9's ``scheduler_output_processor_mixin`` sends them:
        ``len(req.output_ids) % stream_interval == 1``); the inter-token gaps recorded are the
        chunks'."""
        self.last_end = 0.0
        """When the last completed step ended (rows whose ``last_token`` is this sent then)."""
        self.recv_interval = config.recv_interval
        """Decode steps between reads of new requests (SGLang's ``--scheduler-recv-interval``):
        a step with prompt work, or an idle engine, reads at once (SGLang's
        ``SchedulerRecvSkipper`` weighs a decode step 1 and any other forward the threshold)."""
        self._recv_count = 0
        """Weight of the steps since the last read."""
        self._read_at = 0.0
        """When new requests were last read; those queued later are not seen yet."""
        self._idle = True
        self.waiting: deque[Request] = deque()
        self.running = RunningTable()
        self.aborting: set[int] = set()
        """Sessions whose running request leaves when the step in flight completes
        (:meth:`abort`)."""
        self.state = SchedulerState(
            self.waiting,
            self.running,
            kv,
            prefill_only=role == "prefill",
            num_speculative_tokens=speculation.num_tokens if speculation else 0,
            admission=None
            if config.admission == "greedy"
            else Admission(config.admission, admission_conservativeness),
            compiled=self._commit,
        )
        self.in_flight: InFlight | None = None
        knobs = policy_knobs(config)
        self._plans_spans = (
            reserves_compiled(self.state, config, knobs)
            and self.fast_forward
            and num_scheduler_steps == 1
            and self.graph_max_seq_len is None
            and role != "prefill"
            and not kv.sliding_groups
        )
        """Whether a step with nothing waiting is first tried as a decode span planned in one
        compiled call (:meth:`_start_decode_span`): the scheduler's compiled reservation
        applying, spans fast-forwarded, no multi-step rounds, no CUDA-graph length limit."""
        self._budget = knobs.budget
        self._decode_shapes: dict[int, tuple[ScheduledBatch, int, int]] = {}
        """:meth:`_decode_span_shape` by batch size."""
        self._grow_mode = self._commit.grow_mode(kv) if self._commit is not None else 0
        self.generation = 0
        """Bumped whenever the end time of the in-flight step changes (events of an older
        generation are stale and ignored)."""
        self.wake_pending = False
        self.num_outstanding = 0
        """Requests routed here and not finished (routers read it)."""

    @property
    def busy(self) -> bool:
        return self.in_flight is not None

    @property
    def compiled(self) -> bool:
        """Whether this instance runs the compiled kernels (``compiled`` on)."""
        return self._commit is not None

    # --- arrivals -----------------------------------------------------------------------

    def enqueue(self, req: Request, now: float) -> float | None:
        """Queue ``req``. Returns a new end time for the in-flight step if it was truncated."""
        req.instance_id = self.instance_id
        req.queued_s = now
        self.waiting.append(req)
        self.num_outstanding += 1
        span = self.in_flight
        if span is None or span.num_steps == 1 or span.is_round:
            return None
        # Steps that started before ``now`` run as planned (step k > 0 starts when step k − 1
        # ends). A request arriving at the very instant the span started (a follow-up turn
        # with no think time, pushed after the span was scheduled) is seen after the first
        # step, as step-by-step would see it.
        keep = 1
        priced = span.priced_steps or span.num_steps
        if now > span.start_s:
            # (ends[:-1].searchsorted(now): the last step's end never counts; bisect, the same
            # comparisons, costs a quarter of numpy's call on a span's few dozen ends. The
            # steps priced reach past ``now``: their last end is an event due after it.)
            assert not span.priced_steps or now <= span.ends_s[priced - 1], "checkpoint skipped"
            keep += bisect_left(span.ends_s, now, 0, min(span.num_steps - 1, priced))
        if self.schedule_ahead and now > span.start_s:
            # (The step after those started was formed before the request came. One arriving
            # at the very instant the span started is read when its second step is formed,
            # at that instant: step by step it joins that second step.)
            keep += 1
        if keep >= span.num_steps:
            return None
        if keep > priced:  # (the step formed ahead is past those priced)
            self._price_on(span, keep, math.inf)
        span.num_steps = keep
        span.priced_steps = 0
        self.generation += 1
        return float(span.ends_s[keep - 1])

    def abort(self, session_id: int) -> str:
        """Drop the request of session ``session_id`` (its client went away: vLLM aborts the
        request) and free its KV blocks. A waiting request leaves now; a running one now if
        no step is in flight, else when that step completes (vLLM's engine core applies aborts
        between steps: the step's work for it is done, its token discarded; it is then in
        the step's ``StepOutcome.aborted``). Returns ``dropped`` (now), ``pending`` (at the
        step's end) or ``""`` (not here). For step-by-step runs (``servesim serve``): a decode
        span would carry the request to the span's end."""
        for req in self.waiting:
            if req.session_id == session_id:
                self.waiting.remove(req)
                self._drop(req)
                return "dropped"
        if not any(req.session_id == session_id for req in self.running.reqs):
            return ""
        self.aborting.add(session_id)
        if self.in_flight is not None:
            return "pending"
        self._drop_aborting()
        return "dropped"

    def _drop_aborting(self) -> list[Request]:
        """Remove the running rows of the sessions in :attr:`aborting` (and forget them)."""
        aborting = self.aborting
        running = self.running
        drop = np.array([req.session_id in aborting for req in running.reqs], dtype=bool)
        aborting.clear()
        dropped = running.remove(drop, self._commit.remove_rows if self._commit else None)
        for req in dropped:
            self._drop(req)
        return dropped

    def _drop(self, req: Request) -> None:
        self.kv.free(req)
        self.num_outstanding -= 1

    # --- stepping -----------------------------------------------------------------------

    def start_step(self, now: float, horizon: float = math.inf) -> float | None:
        """Schedule the next step at ``now``; return its end time, or None when idle. A
        planned decode span is priced only a few steps past ``horizon`` (s), the next event
        that could cut it short; its end event is then a checkpoint (:meth:`resume_span`)."""
        self.wake_pending = False
        state = self.state
        visible_until = self._visible_until
        self._visible_until = None
        waiting = self.waiting
        if visible_until is not None and (
            not waiting or (not self.running.reqs and waiting[0].queued_s > visible_until)
        ):
            visible_until = None  # (nothing held back, or nothing was formed ahead: idle now)
        state.visible_until = math.inf if visible_until is None else visible_until
        if self.recv_interval > 1:
            if self._idle or self._recv_count >= self.recv_interval:
                self._recv_count, self._read_at = 0, now
            state.visible_until = min(state.visible_until, self._read_at)
        if self._plans_spans and not waiting and not self.kv.pending_load_blocks:
            end = self._start_decode_span(now, horizon)
            if end is not None:
                return end
        batch = schedule(state, self.config, now)
        num_tokens, num_rows, context_tokens, fewest_outputs = self._batch_shape(batch)
        if num_tokens == 0 and batch.num_preempted:
            # Everything runnable was preempted this step; the queue head goes next.
            batch = schedule(state, self.config, now)
            num_tokens, num_rows, context_tokens, fewest_outputs = self._batch_shape(batch)
        if num_tokens == 0 and state.visible_until < math.inf and self.waiting:
            # Nothing was formed ahead or read yet: the engine is idle now and reads its queue
            # at once.
            state.visible_until = math.inf
            self._recv_count, self._read_at = 0, now
            batch = schedule(state, self.config, now)
            num_tokens, num_rows, context_tokens, fewest_outputs = self._batch_shape(batch)
        if num_tokens == 0:
            self.in_flight = None
            self._idle = True
            return None
        self._idle = False
        new_tokens = batch.new_tokens
        # NOTE: most steps schedule every running row; they skip the gather.
        rows = slice(None) if num_rows == len(new_tokens) else np.flatnonzero(new_tokens)
        pure_decode = self._pure_decode(batch, num_tokens, fewest_outputs)
        is_round = self.num_scheduler_steps > 1 and pure_decode
        first_finish = 1
        if is_round:
            num_steps = self._kv_steps(self.num_scheduler_steps)
        elif (
            self.fast_forward
            and pure_decode
            and not (self.waiting and self.waiting[-1].queued_s > state.visible_until)
        ):
            # (Requests held back from this step join the next one: then no span.)
            num_steps, first_finish = self._span_length()
        else:
            num_steps = 1
        context = self.running.computed[rows]
        ends, durations, features = self._price(
            batch, rows, context, num_tokens, num_steps, is_round, now
        )
        self.in_flight = InFlight(
            batch,
            now,
            ends,
            durations,
            int(_sum(context)) if context_tokens is None else context_tokens,
            num_rows,
            features,
            num_steps,
            is_round and num_steps > 1,  # is_round
            pure_decode,
            first_finish,
            num_tokens,  # (positional: keywords cost 0.17 µs a step)
        )
        self.generation += 1
        return float(ends[num_steps - 1])

    def _start_decode_span(self, now: float, horizon: float) -> float | None:
        """Start a step (or span) in which every running row decodes, nothing waiting: what
        ``schedule``, ``_batch_shape``, ``_pure_decode`` and ``_span_length`` do for it, in
        one compiled call (``_commit_kernels.decode_span_plan``), which also prices the span
        where the cost model has a span planner (:attr:`_span_planners`), up to a few steps
        past ``horizon`` (s). Returns the end of its last step priced, or None, with nothing
        changed, where it is not such a step (the general path decides)."""
        running, kv = self.running, self.kv
        n = len(running.reqs)
        if n == 0 or n > self._budget:
            return None
        assert self._commit is not None
        batch, which, pad = self._decode_span_shape(n)
        planner = self._span_planners[which]
        priced = self._priced
        end = -1.0  # (not priced in the planning call)
        priced_steps = 0  # (all of them)
        if planner is not None:
            plan, _, cost_arguments = planner
            num_steps, first_finish, grown, context_tokens, end, priced_steps = plan(
                running.int_buffer, n, kv.num_free_blocks, kv.block_size, self._grow_mode,
                batch.new_tokens, pad, now, horizon, *cost_arguments, *priced,
            )  # fmt: skip
        else:
            num_steps, first_finish, grown, context_tokens = self._commit.decode_span_plan(
                running.int_buffer, n, kv.num_free_blocks, kv.block_size, self._grow_mode
            )
        if num_steps < 0:
            return None
        if grown:
            assert kv.allocate_private(grown), "blocks were checked to fit"
        if self.state.admission is not None:
            self.state.admission.decode_steps(1)  # (as ``schedule`` counts a decode step)
        self._idle = False
        span_into = self._span_into[which]
        if end >= 0.0:
            ends, durations, features = priced.ends, priced.seconds, priced.features
        elif num_steps > 1 and span_into is not None:
            # (What ``_price`` does for it, without working out the cost model again.)
            ends, durations, features = self._span_priced(
                span_into, running.computed, num_steps, pad, now
            )
        else:
            ends, durations, features = self._price(
                batch, slice(None), running.computed, n, num_steps, False, now
            )
        self.in_flight = InFlight(
            batch,
            now,
            ends,
            durations,
            context_tokens,
            n,
            features,
            num_steps,
            False,  # is_round
            True,  # pure_decode
            first_finish,
            n,  # num_tokens
            priced_steps if priced_steps < num_steps else 0,
        )
        self.generation += 1
        return end if end >= 0.0 else float(ends[num_steps - 1])

    def resume_span(self, horizon: float) -> float:
        """Price on the in-flight decode span, whose priced steps ended with nothing cutting it
        short (its end event was a checkpoint), up to a few steps past ``horizon`` (s);
        returns the end (s) of its last step priced."""
        span = self.in_flight
        assert span is not None and span.priced_steps
        return self._price_on(span, span.num_steps, horizon)

    def _price_on(self, span: InFlight, num_steps: int, horizon: float) -> float:
        """Price ``span``'s steps from its first unpriced one, up to ``num_steps`` or a few
        past ``horizon`` (s), in its buffers; returns the end (s) of its last step priced."""
        n = len(self.running.reqs)
        _, which, pad = self._decode_span_shape(n)
        planner = self._span_planners[which]
        assert planner is not None, "only planned spans are priced in parts"
        _, resume, cost_arguments = planner
        end, priced = resume(
            self.running.int_buffer, n, span.priced_steps, num_steps, pad, horizon,
            *cost_arguments, span.durations, span.ends_s, span.features,
        )  # fmt: skip
        span.priced_steps = priced if priced < span.num_steps else 0
        return end

    def _decode_span_shape(self, n: int) -> tuple[ScheduledBatch, int, int]:
        """(The batch, which cost model prices it: 0 ``cost``, 1 ``eager_cost``, the CUDA
        graph's padded rows) of a planned decode span of ``n`` rows: fixed by ``n`` where spans
        are planned (no graph sequence-length limit), so worked out once per batch size."""
        shape = self._decode_shapes.get(n)
        if shape is None:
            batch = ScheduledBatch(_one_token_each(n), 0, 0, one_token_each=True)
            cost, pad = self.step_cost(True, n, n, self.running.computed)
            shape = self._decode_shapes[n] = (batch, 0 if cost is self.cost else 1, pad)
        return shape

    def step_cost(
        self, decode_only: bool, num_tokens: int, num_rows: int, context: np.ndarray
    ) -> tuple[StepCost, int]:
        """(The cost model a step runs under, the CUDA graph's padded rows) for a step of
        ``num_tokens`` new tokens over ``num_rows`` rows reading ``context`` (KV tokens before
        the step, one per row): the graphed cost, or the eager one (``eager_cost``) for a step
        no captured graph covers or, decoding, whose longest sequence passes
        ``graph_max_seq_len``; a graphed decode step pads its rows to the captured batch size
        (``graph_batch``: one token over an empty context each). ``servesim estimate`` prices
        with it too, so a batch costs there what it costs here."""
        cost = self.cost
        if self.eager_cost is not None and self.graphed is not None:
            limit = self.graph_max_seq_len
            if not self.graphed(decode_only, num_tokens, num_rows) or (
                decode_only and limit is not None and int(_max(context)) >= limit
            ):
                cost = self.eager_cost
        pad = 0
        if self.graph_batch is not None and decode_only and cost is self.cost:
            pad = max(self.graph_batch(num_rows) - num_rows, 0)
        return cost, pad

    def _price(
        self,
        batch: ScheduledBatch,
        rows: slice | np.ndarray,
        context: np.ndarray,
        num_tokens: int,
        num_steps: int,
        is_round: bool,
        now: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(End times, seconds, cost-model features) of each of the ``num_steps`` steps of
        ``batch`` starting at ``now``, their first ``num_steps`` entries (the compiled pricing
        writes them into the instance's buffers, which hold more); ``rows`` are its scheduled
        rows, reading ``context``.

        The one place a step is priced: the cost model (the CUDA graph's, padded, or eager),
        and for a single step the drafter's work and the blocks loaded from the CPU tier."""
        new_tokens = batch.new_tokens[rows]
        num_rows = len(new_tokens)
        decode_only = batch.drafts is None and num_tokens == num_rows
        cost, pad = self.step_cost(decode_only, num_tokens, num_rows, context)
        which = 0 if cost is self.cost else 1
        if num_steps > 1:
            if is_round:
                durations, features = cost.decode_round_with_features(context, num_steps, pad)
            else:
                span_into = self._span_into[which]
                if span_into is not None:
                    return self._span_priced(span_into, context, num_steps, pad, now)
                durations, features = cost.decode_span_with_features(context, num_steps, pad)
            commit = self._commit
            if commit is not None:
                return commit.span_ends(now, durations), durations, features
            return span_ends(now, durations), durations, features
        step_into = self._step_into[which]
        if step_into is not None:
            priced = self._priced
            seconds = step_into(new_tokens, context, pad, priced.features)
        else:
            seconds, features = cost.step_with_features(new_tokens, context, pad)
        if self.speculation is not None and batch.drafts is not None:
            prompt = self.running.prompt[rows]
            drafts = batch.drafts[rows]
            seconds = self.speculation.step_seconds(seconds, drafts, new_tokens, context, prompt)
        # Blocks coming back from the CPU tier must land before the step can use them.
        if self.kv.pending_load_blocks:
            seconds += self.kv.take_pending_loads() * self.kv_load_seconds_per_block
        if step_into is not None:
            priced.seconds[0] = seconds
            priced.ends[0] = now + seconds
            return priced.ends, priced.seconds, priced.features
        return np.array([now + seconds]), np.array([seconds]), features[None, :]

    def _span_priced(
        self,
        span_into: Callable[..., float],
        context: np.ndarray,
        num_steps: int,
        pad: int,
        now: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(End times, seconds, features) of a decode span starting at ``now``, priced by a
        compiled ``decode_span_into`` straight into the instance's buffers."""
        priced = self._priced = self._priced.reserve(num_steps)
        span_into(context, num_steps, pad, now, *priced)
        return priced.ends, priced.seconds, priced.features

    def _chunked_gaps(
        self, sent_at: np.ndarray, end: float, span: InFlight, heard: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """With a stream interval, the inter-token gaps the client sees after a (single) step:
        one per chunk sent. ``sent_at``: each row's last send before the step (the rows'
        ``last_token`` then); rows that emitted but send nothing keep it. ``heard``: the rows
        whose client is still there (None: all)."""
        running = self.running
        last = running.last_token
        ints = running.columns()
        outputs = ints[TOKENS] - ints[PROMPT]
        emitted = (last == end) & (sent_at != end)
        first = emitted & (outputs == 1)
        due = (outputs % self.stream_interval == 1) | (outputs >= ints[MAX_OUT])
        sends = emitted & due
        held = emitted & ~sends
        last[held] = sent_at[held]
        gaps_from = sends & ~first
        if heard is not None:
            gaps_from &= heard
        return _fold_gaps(end - sent_at[gaps_from], end - span.start_s)

    def _batch_shape(self, batch: ScheduledBatch) -> tuple[int, int, int | None, int | None]:
        """What ``start_step`` reads of a scheduled batch: (tokens, rows with tokens, KV
        context those rows read, fewest output tokens of any running row). One compiled call,
        or numpy, which leaves the last two None (read where they are needed)."""
        commit = self._commit
        if commit is not None:
            table = self.running.int_buffer
            return commit.batch_shape(table, len(self.running.reqs), batch.new_tokens)
        new_tokens = batch.new_tokens
        return int(_sum(new_tokens)), int(np.count_nonzero(new_tokens)), None, None

    def _pure_decode(
        self, batch: ScheduledBatch, num_tokens: int, fewest_outputs: int | None
    ) -> bool:
        """Whether every running row decodes exactly one token this step, nothing joins or
        leaves, and every row has emitted its first token already (``fewest_outputs``: the
        fewest output tokens of any row, if known)."""
        new_tokens = batch.new_tokens
        if batch.num_admitted or batch.num_preempted or len(new_tokens) == 0:
            return False
        # Every row got exactly one token and needed only that.
        if not batch.one_token_each:
            return False
        if batch.drafts is None:
            if num_tokens != len(new_tokens):
                return False
        elif new_tokens.min() != 1:
            return False
        # A prompt with one token left also needs exactly one token, but its step emits the
        # request's first token: only rows already decoding make a span.
        if fewest_outputs is None:
            running = self.running
            fewest_outputs = int(_min(running.tokens - running.prompt))
        return fewest_outputs > 0

    def _span_length(self) -> tuple[int, int]:
        """(Steps the current pure-decode batch can run unchanged (1 = no fast-forward),
        steps until its first request finishes)."""
        commit, kv, limit = self._commit, self.kv, self.graph_max_seq_len
        if commit is not None and not kv.sliding_groups:
            table = self.running.int_buffer
            span, longest = commit.span_steps(
                table, len(self.running), kv.num_free_blocks, kv.block_size, limit or 0
            )
            if longest <= 1:
                return 1, longest
            return self._look_ahead_steps(span), longest
        # Until the first request finishes (its finishing step is the span's last).
        running = self.running
        longest = int(_min(running.max_out - (running.tokens - running.prompt)))
        if longest <= 1:
            return 1, longest
        span = self._kv_steps(longest)
        if limit is not None and span > 1:
            # Step j of the span decodes sequences of up to top + j tokens: it keeps the
            # graph while that is within the limit, so the span ends where it would cross.
            top = int(_max(self.running.computed)) + 1
            if top <= limit:
                span = min(span, limit - top + 1)
        return self._look_ahead_steps(span), longest

    def _look_ahead_steps(self, span: int) -> int:
        """``span`` decode steps, or fewer where the queue's head would first pass a look-ahead
        admission test (SGLang's, TensorRT-LLM's)."""
        look_ahead = self.state.admission
        if look_ahead is not None and self.waiting and span > 1:
            # The look-ahead test loosens as outputs are decoded and the ratio falls: stop
            # where the queue's head would first pass it, and let the scheduler decide there.
            head = self.waiting[0]
            hits = self.kv.find_cached_prefix(head)
            computed = max(hits.num_blocks * self.kv.block_size, head.num_external_tokens)
            need = look_ahead.need_of(head, computed, self.kv.block_size)
            span = look_ahead.steps_until_fit(
                self.running.columns(), self.kv.num_free_blocks, self.kv.block_size, need, span
            )
        return span

    def _kv_steps(self, longest: int) -> int:
        """The most decode steps, up to ``longest``, for which every running row's KV blocks
        fit (at least 1: the scheduler already reserved the first step's)."""
        running = self.running
        # Until the KV cache would run out: blocks needed to hold computed + m tokens.
        kv = self.kv
        free = kv.num_free_blocks
        computed, nblocks = running.computed, running.nblocks

        def extra_blocks(m: int) -> int:
            return int(_sum(np.maximum(kv.blocks_for(computed + m) - nblocks, 0)))

        if extra_blocks(longest) <= free:
            return longest
        lo, hi = 1, longest  # extra_blocks(lo) == 0 <= free; extra_blocks(hi) > free
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if extra_blocks(mid) <= free:
                lo = mid
            else:
                hi = mid
        return lo

    def _last_token_blocks(self, n: int) -> int:
        """KV blocks the ``n`` running rows' last computed token opened (the blocks they hold
        now less those they held a token before: ``KVBlockManager.blocks_for``)."""
        kv = self.kv
        if self._commit is not None and not kv.sliding_groups:
            return self._commit.last_token_blocks(self.running.int_buffer, n, kv.block_size)
        c = self.running.computed  # (a hybrid layout's window pages counted too)
        return int(_sum(kv.blocks_for(c) - kv.blocks_for(c - 1)))

    def complete_step(self, itl_log: RunRecords) -> StepOutcome:
        """Commit the in-flight step's tokens; free and return the finished requests. The
        inter-token gaps the step's tokens close go to ``itl_log`` (the run's records).

        (With ``compiled`` on, the three common branches run in ``engine/_commit_kernels.py``,
        which mirrors them: a change to one goes to the other; ``tests/test_compiled.py``
        compares whole runs record by record.)"""
        span = self.in_flight
        assert span is not None
        self.in_flight = None
        if self.recv_interval > 1:
            # (Steps run one at a time here: a decode step weighs 1, any other forces a read.)
            self._recv_count += 1 if span.pure_decode else self.recv_interval
        m = span.num_steps
        if self.schedule_ahead:
            self._visible_until = float(span.ends_s[m - 2]) if m > 1 else span.start_s
        running, kv = self.running, self.kv
        n = len(running.reqs)
        new_tokens = span.batch.new_tokens
        end = float(span.ends_s[m - 1])
        bs = kv.block_size
        sent_at = running.last_token.copy() if self.stream_interval > 1 else None
        self.last_end = end
        if m > 1 and self.state.admission is not None:
            self.state.admission.decode_steps(m - 1)  # (the scheduler counted the first)
        # Rows holding shared blocks publish those that fill up (a row has some from its
        # first block on if any, so a batch without any gets none during the step).
        commit = self._commit
        heard = None  # (rows whose client hears this step's token: all, unless one went away)
        if self.aborting:
            # A request whose client went away during the step gets its token (the GPU made
            # it), but nobody hears it: vLLM's output processor, which dropped the request,
            # records no inter-token gap for it. Its rows' gaps are left out, in the numpy
            # branches, which take the mask.
            aborting = self.aborting
            heard = np.array([req.session_id not in aborting for req in running.reqs])
            commit = None
        if not kv.enable_prefix_caching or not kv.ref_counts:
            # (A row holding a shared block holds one the cache counts: none counted, none held.)
            publishes = False
        elif commit is not None:
            publishes = commit.holds_shared(running.int_buffer, n)
        else:
            publishes = _max(running.nshared) > 0
        old_blocks_full = running.computed // bs if publishes else None
        first_tokens = []
        if commit is None or (m == 1 and span.batch.drafts is not None) or span.is_round:
            # (The numpy branches below; a compiled commit reads the table itself.)
            # NOTE: local views of the table's columns; in-place updates write through.
            ints = running.columns()
            computed, tokens, prompt = ints[COMPUTED], ints[TOKENS], ints[PROMPT]
            last_token = running.last_token

        spec_proposed = spec_accepted = spec_rows = 0
        done = None  # (the finished rows, where a compiled commit found them)
        logged = None  # (where a compiled commit's gaps end in ``itl_log``)
        summed = False  # (whether a compiled commit summed the span's features into row 0)
        if commit is not None and m == 1 and span.batch.drafts is None:
            table, last = running.int_buffer, running.last_buffer
            done, first = running.done_buffer, running.first_buffer
            log, log_weights, pos = itl_log.itl_room(n)
            if span.pure_decode:
                logged, any_done = commit.commit_decode_step(
                    table, last, n, end, span.start_s, done, log, log_weights, pos
                )
                prefill_tokens, decode_tokens = 0, n
            else:
                logged, decode_tokens, num_first, any_done = commit.commit_mixed_step(
                    table, last, n, new_tokens, end, span.start_s, done, first, log,
                    log_weights, pos,
                )  # fmt: skip
                prefill_tokens = span.num_tokens - decode_tokens
                if num_first:
                    for i in first[:num_first].tolist():
                        req = running.reqs[i]
                        req.first_token_s = end
                        first_tokens.append(req)
        elif commit is not None and m > 1 and not span.is_round:
            table, last = running.int_buffer, running.last_buffer
            done = running.done_buffer
            log, log_weights, pos = itl_log.itl_room(n + m - 1)
            features = span.features
            logged, grown, any_done = commit.commit_span(
                table, last, n, m, float(span.ends_s[0]), span.durations, end, bs,
                self._grow_mode, features if features.flags.c_contiguous else _NO_ROWS, done,
                log, log_weights, pos,
            )  # fmt: skip
            summed = features.flags.c_contiguous
            if grown < 0:
                _grow_to_computed(running, kv, running.columns())
            elif grown:
                assert kv.allocate_private(grown), "blocks were checked to fit"
            prefill_tokens, decode_tokens = 0, n * m
        elif m == 1 and span.pure_decode and span.batch.drafts is None:
            # One decode step of every row (the general case below, without its masks).
            gaps = end - (last_token if heard is None else last_token[heard])
            itl_values, itl_weights = _fold_gaps(gaps, end - span.start_s)
            ints[COMPUTED : TOKENS + 1] += 1
            last_token[:] = end
            prefill_tokens = 0
            decode_tokens = n
        elif m == 1 and span.batch.drafts is None:
            # Rows that computed their last needed token emit one; those that had emitted
            # before see a gap, and those that needed just that token were decoding.
            need = tokens - computed
            computed += new_tokens
            emit = (new_tokens > 0) & (computed == tokens)
            had_output = tokens > prompt
            gaps_from = emit & had_output
            gaps = end - last_token[gaps_from if heard is None else gaps_from & heard]
            itl_values, itl_weights = _fold_gaps(gaps, end - span.start_s)
            decode_tokens = int(np.count_nonzero(gaps_from & (need == 1)))
            prefill_tokens = span.num_tokens - decode_tokens
            tokens += emit
            last_token[emit] = end
            for i in (emit > had_output).nonzero()[0].tolist():
                req = running.reqs[i]
                req.first_token_s = end
                first_tokens.append(req)
        elif m == 1:
            had_output = tokens > prompt
            drafts = span.batch.drafts
            base = new_tokens if drafts is None else new_tokens - drafts
            is_decode = (base == 1) & had_output & (tokens - computed == 1)
            computed += base
            emit = (new_tokens > 0) & (computed == tokens)
            gaps_from = emit & had_output
            gaps = end - last_token[gaps_from if heard is None else gaps_from & heard]
            itl_values, itl_weights = _fold_gaps(gaps, end - span.start_s)
            emitted = emit.astype(np.int64)
            verified = None if drafts is None else emit & (drafts > 0)
            if verified is not None and verified.any():
                assert self.speculation is not None
                accepted = self.speculation.accepted(self.rng, drafts[verified])
                computed[verified] += accepted
                emitted[verified] += accepted
                spec_proposed = int(drafts[verified].sum())
                spec_accepted = int(accepted.sum())
                spec_rows = int(np.count_nonzero(verified))
            decode_tokens = int(emitted[is_decode].sum())
            prefill_tokens = int(base.sum()) - int(np.count_nonzero(is_decode))
            tokens += emitted
            last_token[emit] = end
            for i in np.flatnonzero(emit & ~had_output).tolist():
                req = running.reqs[i]
                req.first_token_s = end
                first_tokens.append(req)
        elif span.is_round:
            # A multi-step round: every row computed m steps; each emits until its last token.
            # vLLM makes a request's output once per round (LLMEngine.step returns none while
            # steps remain), so the client receives a row's tokens as one chunk at the round's
            # end: one inter-token gap per row, whatever the tokens it carries.
            emitted = np.minimum(m, ints[MAX_OUT] - (tokens - prompt))
            computed += emitted
            tokens += emitted
            gaps = end - (last_token if heard is None else last_token[heard])
            itl_values, itl_weights = _fold_gaps(gaps, end - span.start_s)
            prefill_tokens = 0
            decode_tokens = int(emitted.sum())
            _grow_to_computed(running, kv, ints)
            last_token[:] = end
        else:
            # A decode span: every row (all already decoding) emits one token per step.
            # Each row's gap to its previous token, then one entry per later step for all rows.
            row_gaps = float(span.ends_s[0]) - (last_token if heard is None else last_token[heard])
            k = len(row_gaps)
            itl_values = np.concatenate((row_gaps, span.durations[1:m] if k else row_gaps[:0]))
            itl_weights = np.empty(len(itl_values), dtype=np.int32)  # (as the records keep them)
            itl_weights[:k] = 1
            itl_weights[k:] = k
            ints[COMPUTED : TOKENS + 1] += m
            prefill_tokens = 0
            decode_tokens = n * m
            _grow_to_computed(running, kv, ints)
            last_token[:] = end

        if sent_at is not None:
            # (The client sees a gap per chunk sent: those replace the step's own.)
            itl_log.itl(*self._chunked_gaps(sent_at, end, span, heard))
        elif logged is not None:
            itl_log.itl_written(logged)
        else:
            itl_log.itl(itl_values, itl_weights)
        if old_blocks_full is not None:
            # Only shared blocks are published; rows with none skip the Python work.
            fills = (running.computed // bs > old_blocks_full) & (old_blocks_full < running.nshared)
            for i in np.flatnonzero(fills).tolist():
                kv.register_full_blocks(running.sync(i))

        finished = []
        peak_held = 0  # (blocks held at the end of a span's step before its last, where read)
        if m >= span.first_finish:  # (requests can finish in this step)
            if done is None:
                done = (tokens - prompt) >= ints[MAX_OUT]
                any_done = _max(done)
            if any_done:
                if m > 1 and not span.is_round:
                    # Step by step, the span's next-to-last step ended with every row still
                    # holding its blocks, all but those its last token opened: usage then was
                    # higher than after the last step frees the finished rows. The record
                    # keeps the higher, as a step-by-step run's highest would be.
                    peak_held = kv.num_held - self._last_token_blocks(n)
                # (A compiled commit marked the first n entries of a longer buffer.)
                finished = running.remove(done[:n], commit.remove_rows if commit else None)
        for req in finished:
            req.finish_s = end
            kv.free(req)
        self.num_outstanding -= len(finished)
        aborted = self._drop_aborting() if self.aborting else []
        if kv.window_tokens and not span.pure_decode:
            _release_chunk_pages(running, kv)

        record = _new_record((
            self.instance_id,
            span.start_s,
            end - span.start_s,
            m,
            span.batch_rows,
            prefill_tokens,
            decode_tokens,
            m * span.context_tokens + span.batch_rows * (m * (m - 1) // 2),
            span.batch.num_preempted,
            len(self.waiting),
            max(kv.num_held, peak_held) / kv.num_blocks,
            spec_proposed,
            spec_accepted,
            spec_rows,
        ))  # fmt: skip
        features = span.features
        if m == 1 or summed:
            features = features[0]
        elif commit is not None and features.flags.c_contiguous:
            features = commit.sum_steps(features, m)
        else:
            features = _sum(features[:m], axis=0)
        return _new_outcome((finished, first_tokens, record, features, aborted))


def span_ends(start: float, durations: np.ndarray) -> np.ndarray:
    """When each step of a span starting at ``start`` (s) ends: each the previous end plus
    its duration (s), the additions step-by-step simulation makes, so both give the same
    bits (a sum taken from zero and added to ``start`` can differ in the last place and flip
    a tie between lockstep replicas)."""
    return np.add.accumulate(np.concatenate(([start], durations)))[1:]


def _commit_kernels():
    """The compiled token commits (numba imported here, on first use)."""
    from servesim.engine import _commit_kernels as kernels

    return kernels


def _release_chunk_pages(running: RunningTable, kv: KVBlockManager) -> None:
    """Give back the sliding-window pages the step's prompt chunks held for their own tokens
    beyond the window (hybrid layout, ``KVBlockManager.blocks_for``): what vLLM's sliding
    groups free at each request's next step."""
    ints = running.columns()
    nblocks = ints[NBLOCKS]
    excess = np.maximum(nblocks - kv.blocks_for(ints[COMPUTED]), 0)
    total = int(_sum(excess))
    if total:
        kv.release_private(total)
        nblocks -= excess


def _grow_to_computed(running: RunningTable, kv: KVBlockManager, ints: np.ndarray) -> None:
    """Give every running row the KV blocks its computed tokens fill."""
    computed = ints[COMPUTED]
    grow_blocks(running, kv, np.maximum(kv.blocks_for(computed) - ints[NBLOCKS], 0), computed)


def _fold_gaps(gaps: np.ndarray, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Inter-token gaps as (value, weight) pairs; gaps equal to the step itself share one entry.

    Requests that also emitted in the previous step see a gap of exactly one step, which is
    most of them; folding keeps memory proportional to steps, not tokens.
    """
    same = gaps == step_s
    n_same = int(np.count_nonzero(same))
    if n_same == 0:
        return gaps, np.ones(len(gaps), dtype=np.int64)
    if n_same == len(gaps):
        return np.array([step_s]), np.array([n_same], dtype=np.int64)
    others = gaps[~same]
    values = np.concatenate(([step_s], others))
    weights = np.concatenate(([n_same], np.ones(len(others), dtype=np.int64)))
    return values, weights
