"""Scheduling policies: which running requests advance this step, and which waiting ones join.

Every request has ``num_computed_tokens`` and ``num_tokens`` (prompt + sampled outputs). A step
assigns each scheduled request some new tokens so its computed tokens catch up with its
``num_tokens``: a whole or partial prompt (prefill, possibly chunked), one token (decode), or the
prompt and outputs again after a preemption (recompute). The step's token budget is shared in
order: running requests first, then waiting ones admitted while budget, sequence slots and KV
blocks last. When a running request cannot get a KV block, the newest running request is
preempted (its blocks freed, recomputed later) and nothing new is admitted that step.

The five policies differ only in a few knobs, set in :func:`policy_knobs`:

=============  ======================  ==========  =============  ============================
policy         token budget            chunking    decodes first  admits new requests
=============  ======================  ==========  =============  ============================
vllm           max_num_batched_tokens  yes (opt.)  no (FCFS)      every step
sarathi        max_num_batched_tokens  yes         yes            every step
orca           max_num_batched_tokens  no          no             every step, whole prompts
static         unlimited               no          no             when the batch is empty
prefill_first  max_num_batched_tokens  yes (opt.)  no: excluded   every step; a step with
                                                                  prompts has no decodes
=============  ======================  ==========  =============  ============================

``prefill_first`` is the vLLM V0 default scheduler and SGLang's: whenever a prompt (or the
next chunk of one) can run, the step runs prompts only and the running decodes wait for it;
otherwise it is a decode step.

Independently of the policy, ``admission`` says when a waiting request's KV fits: ``greedy``
(its prompt's blocks, vLLM), or a look-ahead that also holds back the running requests' future
output tokens (``reserve``: SGLang; ``guaranteed``: TensorRT-LLM), see
:mod:`servesim.engine.admission`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from servesim.engine.admission import Admission
from servesim.engine.kv_cache import KVBlockManager, shareable_blocks
from servesim.engine.request import Request
from servesim.engine.running import NBLOCKS, NSHARED, SHAREABLE, RunningTable
from servesim.knobs import (
    ADMISSION,
    ADMISSIONS,
    BLOCK_SIZE,
    ENABLE_CHUNKED_PREFILL,
    ENABLE_PREFIX_CACHING,
    MAX_NUM_BATCHED_TOKENS,
    MAX_NUM_SEQS,
    POLICIES,
    POLICY,
    RECV_INTERVAL,
    STREAM_INTERVAL,
    check_positive_ints,
)

_sum, _max = np.add.reduce, np.maximum.reduce
"""Reductions as the ufuncs themselves (``ndarray.sum`` adds a Python layer per call)."""


@dataclass(frozen=True)
class SchedulerConfig:
    """Knobs of one instance's scheduler and KV cache (vLLM names; the defaults and the names
    of the policies are :mod:`servesim.knobs`'s, defined once for every layer).

    The fleet (``servesim.fleet``) builds one from the scenario's ``SchedulerSpec``, field by
    field, and builds each instance's :class:`~servesim.engine.kv_cache.KVBlockManager` from
    its ``block_size`` and ``enable_prefix_caching``: the scheduler itself reads those from
    the cache it is given."""

    policy: str = POLICY
    """One of :data:`~servesim.knobs.POLICIES`."""
    max_num_batched_tokens: int = MAX_NUM_BATCHED_TOKENS
    """Token budget of one step (prefill chunks + decodes)."""
    max_num_seqs: int = MAX_NUM_SEQS
    """Most requests running at once."""
    block_size: int = BLOCK_SIZE
    """Tokens per KV block (the KV cache's)."""
    enable_prefix_caching: bool = ENABLE_PREFIX_CACHING
    """Share cached prompt blocks between requests (the KV cache's)."""
    enable_chunked_prefill: bool = ENABLE_CHUNKED_PREFILL
    """vllm policy only: split long prompts across steps (sarathi always chunks)."""
    long_prefill_token_threshold: int | None = None
    """Cap on the tokens one prefilling request gets per step (vLLM's knob); None = no cap."""
    admission: str = ADMISSION
    """When a waiting request's KV fits: one of :data:`~servesim.knobs.ADMISSIONS` (see
    :mod:`servesim.engine.admission`)."""
    recv_interval: int = RECV_INTERVAL
    """Decode steps between reads of new requests (:data:`~servesim.knobs.RECV_INTERVAL`)."""
    stream_interval: int = STREAM_INTERVAL
    """Decode steps between streamed chunks (:data:`~servesim.knobs.STREAM_INTERVAL`)."""

    def __post_init__(self) -> None:
        from servesim.errors import ServesimError

        if self.policy not in POLICIES:
            raise ServesimError(
                f"unknown scheduler {self.policy!r}",
                field="scheduler",
                fix=f"use one of: {', '.join(POLICIES)}",
            )
        if self.admission not in ADMISSIONS:
            raise ServesimError(
                f"unknown admission {self.admission!r}",
                field="admission",
                fix=f"use one of: {', '.join(ADMISSIONS)}",
            )
        check_positive_ints(
            max_num_batched_tokens=self.max_num_batched_tokens,
            max_num_seqs=self.max_num_seqs,
            block_size=self.block_size,
            recv_interval=self.recv_interval,
            stream_interval=self.stream_interval,
        )
        thr = self.long_prefill_token_threshold
        if thr is not None and thr <= 0:
            raise ServesimError("must be positive (or unset)", field="long_prefill_token_threshold")


@dataclass(frozen=True)
class PolicyKnobs:
    budget: float
    chunked: bool
    decodes_first: bool
    admit_only_when_idle: bool
    prefill_first: bool = False


def policy_knobs(cfg: SchedulerConfig) -> PolicyKnobs:
    """The handful of switches that make up each policy (worked out once per config: the
    scheduler reads them every step, and a cache keyed by the frozen config would hash and
    compare its eleven fields each time)."""
    knobs = cfg.__dict__.get("_knobs")
    if knobs is None:
        knobs = _policy_knobs(cfg)
        object.__setattr__(cfg, "_knobs", knobs)
    return knobs


def _policy_knobs(cfg: SchedulerConfig) -> PolicyKnobs:
    if cfg.policy == "vllm":
        return PolicyKnobs(cfg.max_num_batched_tokens, cfg.enable_chunked_prefill, False, False)
    if cfg.policy == "sarathi":
        return PolicyKnobs(cfg.max_num_batched_tokens, True, True, False)
    if cfg.policy == "orca":
        return PolicyKnobs(cfg.max_num_batched_tokens, False, False, False)
    if cfg.policy == "static":
        return PolicyKnobs(float("inf"), False, False, True)
    if cfg.policy == "prefill_first":
        budget = cfg.max_num_batched_tokens
        return PolicyKnobs(budget, cfg.enable_chunked_prefill, False, False, prefill_first=True)
    raise AssertionError(cfg.policy)


class ScheduledBatch(NamedTuple):
    """What one step computes, aligned with the running table after scheduling.

    (A named tuple: one is built every step, cheaper than a frozen dataclass.)
    """

    new_tokens: np.ndarray
    """New tokens per running row this step (0 = not scheduled)."""
    num_preempted: int
    num_admitted: int
    drafts: np.ndarray | None = None
    """Draft tokens verified per row (included in ``new_tokens``); None = no speculation."""
    one_token_each: bool = False
    """Every running row needed exactly one token before this step (all were decoding or
    had one prompt token left)."""

    @property
    def rows(self) -> np.ndarray:
        return np.flatnonzero(self.new_tokens)

    @property
    def num_scheduled_tokens(self) -> int:
        return int(self.new_tokens.sum())

    @property
    def is_empty(self) -> bool:
        return not self.new_tokens.any()


@dataclass
class SchedulerState:
    """What a policy reads and changes: the queues and the KV cache of one instance."""

    waiting: deque[Request]
    running: RunningTable
    kv: KVBlockManager
    prefill_only: bool = False
    """A prefill instance (P/D disaggregation): a request is done here after its first token."""
    num_speculative_tokens: int = 0
    """Draft tokens proposed per decoding request per step (0 = no speculative decoding)."""
    admission: Admission | None = None
    """Look-ahead admission and its state (None: ``greedy``, the prompt's blocks only)."""
    visible_until: float = math.inf
    """Waiting requests queued after this time are not admitted this step: an engine that
    schedules one step ahead (vLLM's async scheduling, SGLang's and TensorRT-LLM's overlap
    schedulers) formed the step while the previous one started, before they came."""
    compiled: Any = None
    """The compiled kernels (``engine._commit_kernels``) when the instance runs them: the
    running rows' budget and blocks in one call (:func:`_running_compiled`); None: numpy."""


def schedule(state: SchedulerState, cfg: SchedulerConfig, now: float) -> ScheduledBatch:
    """Pick this step's batch (see the module docstring for the rule)."""
    knobs = policy_knobs(cfg)
    running = state.running
    if state.admission is not None and not running.reqs:
        state.admission.idle()
    # (Every running row needs at least one token: a step leaves computed = tokens − 1.)
    speculating = state.num_speculative_tokens > 0
    scheduled = several = None  # (the running rows' tokens, summed, and any above one)
    if reserves_compiled(state, cfg, knobs):
        # The rows' need, budget and blocks in one compiled call (the common case).
        one_each, new_tokens, num_preempted, scheduled, several = _running_compiled(state, knobs)
    else:
        need = running.tokens - running.computed
        need_total = int(_sum(need))
        one_each = need_total == len(need)
        if speculating:
            drafts = speculative_tokens(state, need)
            need = need + drafts
            need_total = None
        if cfg.long_prefill_token_threshold is not None:
            need = np.minimum(need, cfg.long_prefill_token_threshold)
            need_total = None
        if knobs.prefill_first and not speculating:
            batch = _prompt_step(state, cfg, knobs, need, now)
            if batch is not None:
                return batch
        order = np.argsort(need > 1, kind="stable") if knobs.decodes_first else None
        new_tokens, num_preempted = _running_tokens(state, knobs, need, need_total, order)
    num_admitted = 0
    # (prefill_first admits only in its prompt step, which just found nothing to admit.)
    admits = not knobs.admit_only_when_idle or not running.reqs
    admits = admits and not (knobs.prefill_first and not speculating)
    if state.waiting and num_preempted == 0 and admits:
        if scheduled is None:
            scheduled, several = int(_sum(new_tokens)), bool((new_tokens > 1).any())
        budget = knobs.budget - scheduled
        extra = _admit(state, cfg, knobs, budget, now, has_prefill=several)
        num_admitted = len(extra)
        if extra:
            new_tokens = _extended(new_tokens, extra, running)
    if state.admission is not None and num_admitted == 0 and one_each and len(new_tokens):
        state.admission.decode_steps(1)  # (a decode step: the look-ahead ratio falls)
    if not speculating:
        return ScheduledBatch(new_tokens, num_preempted, num_admitted, one_token_each=one_each)
    # Preemption drops rows from the end; admission appends rows that verify no drafts.
    kept = len(new_tokens) - num_admitted
    drafts = np.concatenate([drafts[:kept], np.zeros(num_admitted, dtype=np.int64)])
    # A decode row squeezed by the budget verifies fewer draft tokens.
    drafts = np.minimum(drafts, np.maximum(new_tokens - 1, 0))
    return ScheduledBatch(new_tokens, num_preempted, num_admitted, drafts, one_each)


def _extended(new_tokens: np.ndarray, extra: list[int], running: RunningTable) -> np.ndarray:
    """``new_tokens`` followed by the admitted rows' ``extra``: written on in the running
    table's token buffer where ``new_tokens`` is its head (the compiled reservation's), else a
    new array."""
    k, total = len(new_tokens), len(new_tokens) + len(extra)
    buffer = running.token_buffer
    if new_tokens.base is buffer and total <= len(buffer):
        buffer[k:total] = extra
        return buffer[:total]
    return np.concatenate([new_tokens, np.asarray(extra, dtype=np.int64)])


def reserves_compiled(state: SchedulerState, cfg: SchedulerConfig, knobs: PolicyKnobs) -> bool:
    """Whether the running rows' need, budget share and blocks are reserved in one compiled
    call (:func:`_running_compiled`): the compiled kernels, no speculation, no per-request
    token cap, rows in table order and no prompt-only steps."""
    return (
        state.compiled is not None
        and state.num_speculative_tokens == 0
        and cfg.long_prefill_token_threshold is None
        and not knobs.decodes_first
        and not knobs.prefill_first
    )


def _running_compiled(
    state: SchedulerState, knobs: PolicyKnobs
) -> tuple[bool, np.ndarray, int, int | None, bool | None]:
    """(Every row needed one token, new tokens per running row, rows preempted, the tokens
    summed and whether a row takes more than one — None after a preemption): the rows' need
    (tokens − computed), the budget shared in row order and their KV blocks reserved, in one
    compiled call (``_commit_kernels.reserve_running``) when every block fits; a shortage or
    named blocks go through :func:`_reserve_blocks`."""
    kv, running = state.kv, state.running
    n = len(running.reqs)
    new_tokens = running.token_buffer
    need_total, scheduled, several, grown = state.compiled.reserve_running(
        running.int_buffer, n, knobs.budget, kv.block_size, kv.num_free_blocks,
        state.compiled.grow_mode(kv), new_tokens,
    )  # fmt: skip
    new_tokens = new_tokens[:n]
    if grown >= 0:
        if grown:
            assert kv.allocate_private(grown), "blocks were checked to fit"
        return need_total == n, new_tokens, 0, scheduled, several
    short = _reserve_short_compiled(state, new_tokens)
    new_tokens, num_preempted = short or _reserve_blocks(state, new_tokens, None)
    if num_preempted:
        return need_total == n, new_tokens, num_preempted, None, None
    return need_total == n, new_tokens, 0, scheduled, several


def _reserve_short_compiled(
    state: SchedulerState, new_tokens: np.ndarray
) -> tuple[np.ndarray, int] | None:
    """:func:`_reserve_blocks` for rows in table order whose blocks fall short, planned in one
    compiled call (``_commit_kernels.reserve_short``) and replayed on the block manager in the
    same order (its evictions depend on it); None, with nothing changed, where the plan does
    not apply: a CPU tier (rows then grow one by one), a hybrid layout, a shared block held
    (a preempted row would free fewer than its count) or named blocks still to take."""
    running, kv, compiled = state.running, state.kv, state.compiled
    if kv.cpu_blocks or kv.sliding_groups or kv.ref_counts:
        return None
    n = len(running)
    ops = np.empty(3 * n, dtype=np.int64)
    num_ops, kept = compiled.reserve_short(
        running.int_buffer, n, new_tokens, kv.block_size, kv.num_free_blocks,
        compiled.grow_mode(kv), ops,
    )  # fmt: skip
    if num_ops < 0:
        return None
    num_preempted = 0
    for op in ops[:num_ops].tolist():
        if op < 0:
            _preempt(state, running.pop_last())
            num_preempted += 1
        else:
            assert kv.allocate_private(op), "blocks were checked to fit"
    if num_preempted and state.admission is not None:
        state.admission.preempted(running.columns())
    return new_tokens[:kept], num_preempted


def _running_tokens(
    state: SchedulerState,
    knobs: PolicyKnobs,
    need: np.ndarray,
    need_total: int | None,
    order: np.ndarray | None,
) -> tuple[np.ndarray, int]:
    """(New tokens per running row, rows preempted): the budget shared in ``order`` and the
    rows' KV blocks reserved. Compiled for rows in table order whose need nothing changed
    (:func:`_running_compiled`); otherwise in numpy."""
    if state.compiled is not None and order is None and need_total is not None:
        _, new_tokens, num_preempted, _, _ = _running_compiled(state, knobs)
        return new_tokens, num_preempted
    new_tokens = _share_budget(need, knobs.budget, order, need_total)
    return _reserve_blocks(state, new_tokens, order)


def _prompt_step(
    state: SchedulerState, cfg: SchedulerConfig, knobs: PolicyKnobs, need: np.ndarray, now: float
) -> ScheduledBatch | None:
    """A prompts-only step (prefill_first policy), or None when no prompt work can run.

    Running rows still in their prompt (a chunked prompt's next chunk) go first, then waiting
    requests are admitted with the budget left; running decodes get nothing this step.
    """
    running = state.running
    in_prompt = running.computed < running.prompt
    new_tokens = np.zeros(len(need), dtype=np.int64)
    num_preempted = 0
    if in_prompt.any():
        new_tokens = _share_budget(np.where(in_prompt, need, 0), knobs.budget, None)
        new_tokens, num_preempted = _reserve_blocks(state, new_tokens, None)
    num_admitted = 0
    if state.waiting and num_preempted == 0:
        budget = knobs.budget - int(_sum(new_tokens))
        extra = _admit(state, cfg, knobs, budget, now, has_prefill=bool(new_tokens.any()))
        num_admitted = len(extra)
        if extra:
            new_tokens = _extended(new_tokens, extra, running)
    if not new_tokens.any() and num_preempted == 0:
        return None
    # (A preemption changed the running table: the step stands as it is, even if empty.)
    return ScheduledBatch(new_tokens, num_preempted, num_admitted)


def speculative_tokens(state: SchedulerState, need: np.ndarray) -> np.ndarray:
    """Draft tokens each running row verifies this step: k for a decoding row, fewer near its
    last output token (no drafts past max tokens), none for rows still prefilling."""
    k = state.num_speculative_tokens
    running = state.running
    if k == 0:
        return np.zeros(len(need), dtype=np.int64)
    left = running.max_out - (running.tokens - running.prompt) - 1
    return np.where(need == 1, np.clip(left, 0, k), 0)


def _share_budget(
    need: np.ndarray, budget: float, order: np.ndarray | None, total: int | None = None
) -> np.ndarray:
    """Give each row, in ``order``, as many of its needed tokens as the budget still allows
    (``total``: ``need``'s sum, if the caller has it)."""
    if (_sum(need) if total is None else total) <= budget:  # the common case: all get all
        return need.astype(np.int64, copy=False)
    ordered = need if order is None else need[order]
    start = np.cumsum(ordered) - ordered
    got = np.minimum(np.maximum(budget - start, 0), ordered).astype(np.int64)
    if order is None:
        return got
    new_tokens = np.empty_like(got)
    new_tokens[order] = got
    return new_tokens


def _reserve_blocks(
    state: SchedulerState, new_tokens: np.ndarray, order: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Allocate KV blocks for the scheduled running rows, preempting the newest on shortage."""
    running, kv = state.running, state.kv
    target = running.computed + new_tokens
    # Unscheduled rows (no new tokens) need nothing: their blocks already hold every computed token.
    extra = np.maximum(kv.blocks_for(target, new_tokens) - running.nblocks, 0)
    total = int(_sum(extra))
    if total <= kv.num_free_blocks:
        grow_blocks(running, kv, extra, target, total, new_tokens)
        return new_tokens, 0

    # Shortage: walk rows in scheduling order; while a row cannot grow, preempt the newest.
    # NOTE: the leading rows that fit as they are grow in bulk, which leaves the cache as
    # growing them one by one would (evictions take the same blocks in the same order).
    walk = np.arange(len(running)) if order is None else order
    num_preempted = 0
    pos = 0
    while pos < len(walk):
        fits = _leading_fit(walk[pos:], extra, kv) if kv.cpu_blocks == 0 else 0
        if fits:
            rows = walk[pos : pos + fits]
            bulk = np.zeros_like(extra)
            bulk[rows] = extra[rows]
            grow_blocks(running, kv, bulk, target, new=new_tokens)
            extra[rows] = 0
            pos += fits
            continue
        i = int(walk[pos])
        pos += 1
        if i >= len(running) or new_tokens[i] == 0:
            continue
        req = running.sync(i)
        while not kv.allocate(req, int(target[i]), int(new_tokens[i])):
            victim = running.pop_last()
            new_tokens = new_tokens[: len(running)]
            _preempt(state, victim)
            num_preempted += 1
            if victim is req:
                break
        else:
            running.refresh_blocks(i)
        extra[i] = 0
        if len(running) < len(extra):  # the preempted rows are gone
            n = len(running)
            extra, target = extra[:n], target[:n]
            walk = walk[pos:]
            walk = walk[walk < n]
            pos = 0
    if num_preempted and state.admission is not None:
        state.admission.preempted(running.columns())
    return new_tokens, num_preempted


def _leading_fit(walk: np.ndarray, extra: np.ndarray, kv: KVBlockManager) -> int:
    """How many of the rows ``walk`` (in order) get their ``extra`` blocks from the free ones."""
    need = np.cumsum(extra[walk])
    return int(np.searchsorted(need, kv.num_free_blocks, side="right"))


def grow_blocks(
    running: RunningTable,
    kv: KVBlockManager,
    extra: np.ndarray,
    target: np.ndarray,
    total: int | None = None,
    new: np.ndarray | None = None,
) -> None:
    """Give each running row ``extra[i]`` more blocks (known to fit) to hold ``target[i]`` tokens
    (``total``: ``extra``'s sum, if the caller has it; ``new``: the tokens each computes in
    the step, for a hybrid layout's chunk pages, see ``KVBlockManager.blocks_for``).

    Rows growing only into private blocks are counted in bulk; rows that still need shared
    (content-named) blocks go through the block manager one by one.
    """
    if total is None:
        total = int(_sum(extra))
    if not total:
        return
    cols = running.columns()
    nblocks, nshared = cols[NBLOCKS], cols[NSHARED]
    # (Without prefix caching, or once every row holds its named blocks, none is named.)
    if kv.enable_prefix_caching and _max(cols[SHAREABLE] - nshared) > 0:
        named = (extra > 0) & (nshared < cols[SHAREABLE])
        rows = np.flatnonzero(named).tolist()
        if rows:
            for i in rows:
                kv.allocate(running.sync(i), int(target[i]), None if new is None else int(new[i]))
                running.refresh_blocks(i)
            extra = np.where(named, 0, extra)
            total = int(_sum(extra))
    if total:
        grown = kv.allocate_private(total)
        assert grown, "blocks were checked to fit"
        nblocks += extra


def _preempt(state: SchedulerState, req: Request) -> None:
    """Free ``req``'s blocks and put it back at the head of the queue, to be recomputed."""
    state.kv.free(req, preempted=True)
    req.num_computed_tokens = 0
    req.num_preemptions += 1
    state.waiting.appendleft(req)


def _admit(
    state: SchedulerState,
    cfg: SchedulerConfig,
    knobs: PolicyKnobs,
    budget: float,
    now: float,
    has_prefill: bool,
) -> list[int]:
    """Move waiting requests into the running table; return the tokens each gets this step."""
    waiting, running, kv = state.waiting, state.running, state.kv
    granted: list[int] = []
    look_ahead = state.admission
    if look_ahead is not None and waiting:
        # Tokens left once the running requests' future is held back (SGLang PrefillAdder).
        bs = kv.block_size
        room = kv.num_free_blocks * bs - look_ahead.reserved(running.columns(), bs)
    while waiting and budget > 0 and len(running.reqs) < cfg.max_num_seqs:
        req = waiting[0]
        if req.queued_s > state.visible_until:
            break
        # (A request whose content is its own, the usual one, is admitted in one call.)
        unique = look_ahead is None and not req.num_external_tokens and kv.is_unique(req)
        if unique:
            cached = 0
        else:
            hits = kv.find_cached_prefix(req)
            cached = hits.num_blocks * kv.block_size
        computed = max(cached, req.num_external_tokens)
        n = req.num_tokens - computed
        if knobs.chunked:
            n = int(min(n, budget))
            if cfg.long_prefill_token_threshold is not None:
                n = min(n, cfg.long_prefill_token_threshold)
        elif n > budget and (has_prefill or granted):
            # NOTE: without chunking a prompt larger than the whole budget still runs, alone
            # in its step's prefill; otherwise it would wait forever.
            break
        # A prompts-first engine admits a prompt it will chunk only when the whole of it fits
        # (vLLM V0's BlockSpaceManager.can_allocate takes every prompt block at admission;
        # SGLang's PrefillAdder checks the whole extend length against the tokens left):
        # admitted for its first chunk alone, a prompt that the decodes' blocks crowd out
        # would preempt itself at its next chunk, be admitted again, and never finish, since
        # the decodes never run while a prompt step can.
        upto = req.num_tokens if knobs.prefill_first and look_ahead is None else computed + n
        if unique:
            if not kv.admit_unique(req, upto, n):
                break
            waiting.popleft()
        else:
            if not kv.can_admit(req, hits, upto, n):
                break
            if look_ahead is not None:
                need = look_ahead.need_of(req, computed, kv.block_size)
                if not look_ahead.fits(need, room):
                    break
                room -= need
            waiting.popleft()
            kv.take_cached(req, hits)
            kv.allocate(req, computed + n, n)
        req.num_computed_tokens = computed
        req.num_external_tokens = 0  # the KV is here now; a preemption recomputes it
        if req.first_scheduled_s is None:
            req.first_scheduled_s = now
            req.num_cached_tokens = cached
        unshared = unique or not kv.enable_prefix_caching
        shareable = 0 if unshared else shareable_blocks(req, kv.block_size)
        running.append(req, shareable, max_out=1 if state.prefill_only else None)
        granted.append(n)
        budget -= n
    return granted
