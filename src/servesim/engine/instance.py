"""One serving instance: a scheduler, a paged KV cache and an executor (the cost model).

An instance runs one step at a time. ``start_step`` schedules a batch and returns when it will
end; ``complete_step`` commits its tokens and returns the requests that finished.

Multi-step scheduling (``num_scheduler_steps`` N > 1, vLLM 0.6): a pure-decode batch runs a
*round* of N decode steps back to back, every row for every step (a row that reaches its last
token mid-round still occupies its slot until the round ends). The round's tokens reach the
client together at its end (one long inter-token gap, then gaps of zero), and a request that
arrives mid-round waits for the round to end.

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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from servesim.engine.kv_cache import KVBlockManager
from servesim.engine.records import StepRecord
from servesim.engine.request import Request
from servesim.engine.running import (
    COMPUTED,
    MAX_OUT,
    NBLOCKS,
    NSHARED,
    PROMPT,
    TOKENS,
    RunningTable,
)
from servesim.engine.scheduler import (
    ScheduledBatch,
    SchedulerConfig,
    SchedulerState,
    grow_blocks,
    schedule,
)

_sum, _min, _max = np.add.reduce, np.minimum.reduce, np.maximum.reduce
"""Reductions as the ufuncs themselves (``ndarray.sum`` adds a Python layer per call)."""


class StepCost:
    """What the instance needs from the cost model (``servesim.cost.StepCostModel``).

    Besides seconds, each call returns the step's *features* (a small vector the cost model
    is linear in); the engine records them so FLOPs, bytes and per-operator-group times can be
    computed for every step afterwards, in bulk, without slowing the loop.
    """

    def step_with_features(
        self, new_tokens: np.ndarray, context_lens: np.ndarray
    ) -> tuple[float, np.ndarray]: ...

    def decode_span_with_features(
        self, context_lens: np.ndarray, num_steps: int
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def decode_round_with_features(
        self, context_lens: np.ndarray, num_steps: int
    ) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Speculation:
    """Speculative decoding on an instance: ``num_tokens`` drafts per decoding request, each
    accepted with ``acceptance[i]`` given the previous ones were (i.i.d. when all equal).

    A step verifies every decoding row's drafts in one target forward pass over k+1 tokens; the
    accepted prefix plus one token from the target are emitted. ``draft_seconds(context_lens,
    drafts)`` prices proposing the drafts of the decoding rows; with ``overlap`` the drafting
    runs beside the target step (on the host), else before it. ``prefill_seconds(new_tokens,
    context_lens)`` prices the drafter's own forward over the step's prompt chunks (a draft
    model fills its KV cache too), run on the GPU after the target's.
    """

    num_tokens: int
    acceptance: tuple[float, ...]
    draft_seconds: Callable[[np.ndarray, np.ndarray], float]
    overlap: bool = False
    prefill_seconds: Callable[[np.ndarray, np.ndarray], float] | None = None

    def __post_init__(self) -> None:
        if len(self.acceptance) != self.num_tokens:
            raise ValueError("one acceptance probability per speculative position")


@dataclass(slots=True)
class InFlight:
    """The step (or decode span) an instance is executing."""

    batch: ScheduledBatch
    start_s: float
    ends_s: np.ndarray
    """End time of each step of the span (one entry for an ordinary step)."""
    durations: np.ndarray
    """Seconds of each step (``ends_s`` may be truncated; this keeps its planned length)."""
    context_tokens: int
    """KV context the first step reads, summed over the batch; each later step of a span
    reads ``batch_rows`` more (every row grew by one token)."""
    batch_rows: int
    features: np.ndarray
    """Cost-model features of each step, shape (steps, features)."""
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

    @property
    def num_steps(self) -> int:
        return len(self.ends_s)


class StepOutcome(NamedTuple):
    """What completing a step produced. (A named tuple: one is built every step.)"""

    finished: list[Request]
    first_tokens: list[Request]
    record: StepRecord
    itl_values: np.ndarray
    itl_weights: np.ndarray
    features: np.ndarray


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
        self.rng = rng if rng is not None else np.random.default_rng(instance_id)
        self.instance_id = instance_id
        self.config = config
        self.kv = kv
        self.cost = cost
        # NOTE: speculative steps emit a random number of tokens, so spans are not fast-forwarded.
        self.fast_forward = fast_forward and speculation is None
        self.waiting: deque[Request] = deque()
        self.running = RunningTable()
        self.state = SchedulerState(
            self.waiting,
            self.running,
            kv,
            prefill_only=role == "prefill",
            num_speculative_tokens=speculation.num_tokens if speculation else 0,
        )
        self.in_flight: InFlight | None = None
        self.version = 0
        """Bumped whenever the end time of the in-flight step changes (stale events are ignored)."""
        self.wake_pending = False
        self.num_outstanding = 0
        """Requests routed here and not finished (routers read it)."""

    @property
    def busy(self) -> bool:
        return self.in_flight is not None

    # --- arrivals -----------------------------------------------------------------------

    def enqueue(self, req: Request, now: float) -> float | None:
        """Queue ``req``. Returns a new end time for the in-flight step if it was truncated."""
        req.instance_id = self.instance_id
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
        if now > span.start_s:
            keep += int(np.searchsorted(span.ends_s[:-1], now, side="left"))
        if keep >= span.num_steps:
            return None
        span.ends_s = span.ends_s[:keep]
        self.version += 1
        return float(span.ends_s[-1])

    # --- stepping -----------------------------------------------------------------------

    def start_step(self, now: float) -> float | None:
        """Schedule the next step at ``now``; return its end time, or None when idle."""
        self.wake_pending = False
        batch = schedule(self.state, self.config, now)
        num_tokens = int(_sum(batch.alloc))
        if num_tokens == 0 and batch.num_preempted:
            # Everything runnable was preempted this step; the queue head goes next.
            batch = schedule(self.state, self.config, now)
            num_tokens = int(_sum(batch.alloc))
        alloc = batch.alloc
        if num_tokens == 0:
            self.in_flight = None
            return None
        run = self.running
        num_rows = int(np.count_nonzero(alloc))
        # NOTE: most steps schedule every running row; they skip the gather.
        rows = slice(None) if num_rows == len(alloc) else np.flatnonzero(alloc)
        new_tokens = alloc[rows]
        context = run.computed[rows]
        decode_only = batch.spec is None and num_tokens == num_rows
        outputs = self._pure_decode(batch, num_tokens)
        pure_decode = outputs is not None
        is_round = self.num_scheduler_steps > 1 and pure_decode
        first_finish = 1
        if is_round:
            num_steps = self._kv_steps(self.num_scheduler_steps)
        elif self.fast_forward and outputs is not None:
            num_steps, first_finish = self._span_length(outputs)
        else:
            num_steps = 1
        cost = self.cost
        if self.eager_cost is not None and self.graphed is not None:
            if not self.graphed(decode_only, num_tokens, num_rows):
                cost = self.eager_cost
        if self.graph_batch is not None and decode_only and cost is self.cost:
            pad = self.graph_batch(num_rows) - num_rows
            if pad > 0:
                # Padded rows: one token over an empty context (what the captured graph runs).
                new_tokens = np.concatenate((new_tokens, np.ones(pad, dtype=new_tokens.dtype)))
                context = np.concatenate((context, np.zeros(pad, dtype=context.dtype)))
        if num_steps > 1:
            if is_round:
                durations, features = cost.decode_round_with_features(context, num_steps)
            else:
                durations, features = cost.decode_span_with_features(context, num_steps)
            ends = now + np.add.accumulate(durations)
        else:
            seconds, features = cost.step_with_features(new_tokens, context)
            spec = self.speculation
            if spec is not None and batch.spec is not None:
                seconds = self._with_speculation(seconds, batch, rows, new_tokens, context)
            # Blocks coming back from the CPU tier must land before the step can use them.
            if self.kv.pending_load_blocks:
                seconds += self.kv.take_pending_loads() * self.kv_load_seconds_per_block
            durations = np.array([seconds])
            ends = np.array([now + seconds])
            features = features[None, :]
        self.in_flight = InFlight(
            batch,
            now,
            ends,
            durations,
            int(_sum(context)),
            num_rows,
            features,
            is_round=is_round and num_steps > 1,
            pure_decode=pure_decode,
            first_finish=first_finish,
            num_tokens=num_tokens,
        )
        self.version += 1
        return float(ends[-1])

    def _with_speculation(
        self, seconds: float, batch: ScheduledBatch, rows, new_tokens, context
    ) -> float:
        """A verify step's seconds with the drafter's work added."""
        spec = self.speculation
        assert spec is not None and batch.spec is not None
        drafts = batch.spec[rows]
        if drafts.any():
            drafting = drafts > 0
            draft = spec.draft_seconds(context[drafting], drafts[drafting])
            seconds = max(seconds, draft) if spec.overlap else seconds + draft
        if spec.prefill_seconds is not None:
            # Rows computing prompt (or recomputed) tokens: more than one token without
            # drafts, or the last prompt token.
            base = new_tokens - drafts
            filling = (base > 1) | (context < self.running.prompt[rows])
            if filling.any():
                seconds += spec.prefill_seconds(base[filling], context[filling])
        return seconds

    def _pure_decode(self, batch: ScheduledBatch, num_tokens: int) -> np.ndarray | None:
        """Every row's output tokens so far if every running row decodes exactly one token
        this step, nothing joins or leaves, and every row has emitted its first token already;
        otherwise None."""
        alloc = batch.alloc
        if batch.num_admitted or batch.num_preempted or len(alloc) == 0:
            return None
        # Every row got exactly one token and needed only that.
        if not batch.one_token_each:
            return None
        if batch.spec is None:
            if num_tokens != len(alloc):
                return None
        elif alloc.min() != 1:
            return None
        # A prompt with one token left also needs exactly one token, but its step emits the
        # request's first token: only rows already decoding make a span.
        run = self.running
        outputs = run.tokens - run.prompt
        return outputs if _min(outputs) > 0 else None

    def _span_length(self, outputs: np.ndarray) -> tuple[int, int]:
        """(Steps the current pure-decode batch can run unchanged (1 = no fast-forward),
        steps until its first request finishes), given each row's ``outputs`` so far."""
        # Until the first request finishes (its finishing step is the span's last).
        longest = int(_min(self.running.max_out - outputs))
        if longest <= 1:
            return 1, longest
        return self._kv_steps(longest), longest

    def _kv_steps(self, longest: int) -> int:
        """The most decode steps, up to ``longest``, for which every running row's KV blocks
        fit (at least 1: the scheduler already reserved the first step's)."""
        run = self.running
        # Until the KV cache would run out: blocks needed to hold computed + m tokens.
        bs = self.kv.block_size
        free = self.kv.num_free_blocks
        computed, nblocks = run.computed, run.nblocks

        def extra_blocks(m: int) -> int:
            return int(_sum(np.maximum((computed + (m + bs - 1)) // bs - nblocks, 0)))

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

    def _accepted_drafts(self, drafts: np.ndarray) -> np.ndarray:
        """Accepted draft tokens for rows that verified ``drafts`` tokens each."""
        spec = self.speculation
        assert spec is not None
        u = self.rng.random((len(drafts), spec.num_tokens))
        return _leading_successes(u, np.asarray(spec.acceptance), drafts)

    def complete_step(self) -> StepOutcome:
        """Commit the in-flight step's tokens; free and return the finished requests."""
        span = self.in_flight
        assert span is not None
        self.in_flight = None
        run, kv = self.running, self.kv
        n = len(run)
        # NOTE: local views of the table's columns; in-place updates write through.
        ints = run.columns()
        computed, tokens, prompt = ints[COMPUTED], ints[TOKENS], ints[PROMPT]
        last_token = run.last_token
        alloc = span.batch.alloc
        m = span.num_steps
        end = float(span.ends_s[-1])
        bs = kv.block_size
        # Rows holding shared blocks publish those that fill up (a row has some from its
        # first block on if any, so a batch without any gets none during the step).
        publishes = kv.enable_prefix_caching and _max(ints[NSHARED]) > 0
        old_blocks_full = computed // bs if publishes else None
        first_tokens = []

        spec_proposed = spec_accepted = spec_rows = 0
        if m == 1 and span.pure_decode and span.batch.spec is None:
            # One decode step of every row (the general case below, without its masks).
            itl_values, itl_weights = _fold_gaps(end - last_token, end - span.start_s)
            ints[COMPUTED : TOKENS + 1] += 1
            last_token[:] = end
            prefill_tokens = 0
            decode_tokens = n
        elif m == 1 and span.batch.spec is None:
            # Rows that computed their last needed token emit one; those that had emitted
            # before see a gap, and those that needed just that token were decoding.
            need = tokens - computed
            computed += alloc
            emit = (alloc > 0) & (computed == tokens)
            had_output = tokens > prompt
            gaps_from = emit & had_output
            itl_values, itl_weights = _fold_gaps(end - last_token[gaps_from], end - span.start_s)
            decode_tokens = int(np.count_nonzero(gaps_from & (need == 1)))
            prefill_tokens = span.num_tokens - decode_tokens
            tokens += emit
            last_token[emit] = end
            for i in (emit > had_output).nonzero()[0].tolist():
                req = run.reqs[i]
                req.first_token_s = end
                first_tokens.append(req)
        elif m == 1:
            had_output = tokens > prompt
            spec = span.batch.spec
            base = alloc if spec is None else alloc - spec
            is_decode = (base == 1) & had_output & (tokens - computed == 1)
            computed += base
            emit = (alloc > 0) & (computed == tokens)
            gaps = end - last_token[emit & had_output]
            itl_values, itl_weights = _fold_gaps(gaps, end - span.start_s)
            emitted = emit.astype(np.int64)
            verified = None if spec is None else emit & (spec > 0)
            if verified is not None and verified.any():
                accepted = self._accepted_drafts(spec[verified])
                computed[verified] += accepted
                emitted[verified] += accepted
                spec_proposed = int(spec[verified].sum())
                spec_accepted = int(accepted.sum())
                spec_rows = int(np.count_nonzero(verified))
            decode_tokens = int(emitted[is_decode].sum())
            prefill_tokens = int(base.sum()) - int(np.count_nonzero(is_decode))
            tokens += emitted
            last_token[emit] = end
            for i in np.flatnonzero(emit & ~had_output).tolist():
                req = run.reqs[i]
                req.first_token_s = end
                first_tokens.append(req)
        elif span.is_round:
            # A multi-step round: every row computed m steps; each emits until its last token,
            # and the client receives a row's tokens together at the round's end.
            emitted = np.minimum(m, ints[MAX_OUT] - (tokens - prompt))
            computed += emitted
            tokens += emitted
            bursts = int((emitted - 1).sum())
            itl_values = end - last_token
            itl_weights = np.ones(n, dtype=np.int64)
            if bursts:
                itl_values = np.concatenate((itl_values, [0.0]))
                itl_weights = np.concatenate((itl_weights, [bursts]))
            prefill_tokens = 0
            decode_tokens = int(emitted.sum())
            _grow_to_computed(run, kv, ints)
            last_token[:] = end
        else:
            # A decode span: every row (all already decoding) emits one token per step.
            # Each row's gap to its previous token, then one entry per later step for all rows.
            itl_values = np.concatenate((float(span.ends_s[0]) - last_token, span.durations[1:m]))
            itl_weights = np.full(n + m - 1, n, dtype=np.int64)
            itl_weights[:n] = 1
            ints[COMPUTED : TOKENS + 1] += m
            prefill_tokens = 0
            decode_tokens = n * m
            _grow_to_computed(run, kv, ints)
            last_token[:] = end

        if old_blocks_full is not None:
            # Only shared blocks are published; rows with none skip the Python work.
            fills = (computed // bs > old_blocks_full) & (old_blocks_full < ints[NSHARED])
            for i in np.flatnonzero(fills).tolist():
                kv.register_full_blocks(run.sync(i))

        finished = []
        if m >= span.first_finish:  # (requests can finish in this step)
            done = (tokens - prompt) >= ints[MAX_OUT]
            if _max(done):
                finished = run.remove(done)
        for req in finished:
            req.finish_s = end
            kv.free(req)
        self.num_outstanding -= len(finished)

        record = StepRecord(
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
            kv.num_held / kv.num_blocks,
            spec_proposed,
            spec_accepted,
            spec_rows,
        )
        features = _sum(span.features[:m], axis=0) if m > 1 else span.features[0]
        return StepOutcome(finished, first_tokens, record, itl_values, itl_weights, features)


def _grow_to_computed(run: RunningTable, kv: KVBlockManager, ints: np.ndarray) -> None:
    """Give every running row the KV blocks its computed tokens fill."""
    computed, bs = ints[COMPUTED], kv.block_size
    grow_blocks(run, kv, np.maximum((computed + (bs - 1)) // bs - ints[NBLOCKS], 0), computed)


def _leading_successes(u: np.ndarray, p: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Per row, how many leading draws succeed (u < p), capped at ``limit``."""
    ok = u < p[None, :]
    return np.minimum(np.cumprod(ok, axis=1).sum(axis=1), limit)


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
