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
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass

import numpy as np

from servesim.engine.kv_cache import KVBlockManager, shareable_blocks
from servesim.engine.request import Request
from servesim.engine.running import RunningTable

POLICIES = ("vllm", "sarathi", "orca", "static", "prefill_first")


@dataclass(frozen=True)
class SchedulerConfig:
    """Knobs of one instance's scheduler (vLLM names and defaults where they exist)."""

    policy: str = "vllm"
    max_num_batched_tokens: int = 8192
    """Token budget of one step (prefill chunks + decodes)."""
    max_num_seqs: int = 256
    """Most requests running at once."""
    block_size: int = 16
    """Tokens per KV block."""
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    """vllm policy only: split long prompts across steps (sarathi always chunks)."""
    long_prefill_token_threshold: int | None = None
    """Cap on the tokens one prefilling request gets per step (vLLM's knob); None = no cap."""

    def __post_init__(self) -> None:
        from servesim.errors import ServesimError

        if self.policy not in POLICIES:
            raise ServesimError(
                f"unknown scheduler {self.policy!r}",
                field="scheduler",
                fix=f"use one of: {', '.join(POLICIES)}",
            )
        for name in ("max_num_batched_tokens", "max_num_seqs", "block_size"):
            if getattr(self, name) <= 0:
                raise ServesimError(
                    f"must be a positive integer, got {getattr(self, name)}", field=name
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


@functools.cache
def policy_knobs(cfg: SchedulerConfig) -> PolicyKnobs:
    """The handful of switches that make up each policy."""
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


@dataclass(frozen=True)
class ScheduledBatch:
    """What one step computes. ``alloc`` is aligned with the running table after scheduling."""

    alloc: np.ndarray
    """New tokens per running row this step (0 = not scheduled)."""
    num_preempted: int
    num_admitted: int
    spec: np.ndarray | None = None
    """Draft tokens verified per row (included in ``alloc``); None = no speculation."""

    @property
    def rows(self) -> np.ndarray:
        return np.flatnonzero(self.alloc)

    @property
    def num_scheduled_tokens(self) -> int:
        return int(self.alloc.sum())

    @property
    def is_empty(self) -> bool:
        return not self.alloc.any()


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


def schedule(state: SchedulerState, cfg: SchedulerConfig, now: float) -> ScheduledBatch:
    """Pick this step's batch (see the module docstring for the rule)."""
    knobs = policy_knobs(cfg)
    run = state.running
    need = run.tokens - run.computed
    speculating = state.num_speculative_tokens > 0
    if speculating:
        spec = speculative_tokens(state, need)
        need = need + spec
    if cfg.long_prefill_token_threshold is not None:
        need = np.minimum(need, cfg.long_prefill_token_threshold)
    if knobs.prefill_first and not speculating:
        batch = _prompt_step(state, cfg, knobs, need, now)
        if batch is not None:
            return batch
    order = np.argsort(need > 1, kind="stable") if knobs.decodes_first else None
    alloc = _share_budget(need, knobs.budget, order)
    alloc, num_preempted = _reserve_blocks(state, alloc, order)
    num_admitted = 0
    # (prefill_first admits only in its prompt step, which just found nothing to admit.)
    admits = not knobs.admit_only_when_idle or len(run) == 0
    admits = admits and not (knobs.prefill_first and not speculating)
    if state.waiting and num_preempted == 0 and admits:
        budget = knobs.budget - int(alloc.sum())
        extra = _admit(state, cfg, knobs, budget, now, has_prefill=bool((alloc > 1).any()))
        num_admitted = len(extra)
        if extra:
            alloc = np.concatenate([alloc, np.asarray(extra, dtype=np.int64)])
    if not speculating:
        return ScheduledBatch(alloc, num_preempted, num_admitted)
    # Preemption drops rows from the end; admission appends rows that verify no drafts.
    kept = len(alloc) - num_admitted
    spec = np.concatenate([spec[:kept], np.zeros(num_admitted, dtype=np.int64)])
    # A decode row squeezed by the budget verifies fewer draft tokens.
    spec = np.minimum(spec, np.maximum(alloc - 1, 0))
    return ScheduledBatch(
        alloc=alloc, num_preempted=num_preempted, num_admitted=num_admitted, spec=spec
    )


def _prompt_step(
    state: SchedulerState, cfg: SchedulerConfig, knobs: PolicyKnobs, need: np.ndarray, now: float
) -> ScheduledBatch | None:
    """A prompts-only step (prefill_first policy), or None when no prompt work can run.

    Running rows still in their prompt (a chunked prompt's next chunk) go first, then waiting
    requests are admitted with the budget left; running decodes get nothing this step.
    """
    run = state.running
    in_prompt = run.computed < run.prompt
    alloc = np.zeros(len(need), dtype=np.int64)
    num_preempted = 0
    if in_prompt.any():
        alloc = _share_budget(np.where(in_prompt, need, 0), knobs.budget, None)
        alloc, num_preempted = _reserve_blocks(state, alloc, None)
    num_admitted = 0
    if state.waiting and num_preempted == 0:
        budget = knobs.budget - int(alloc.sum())
        extra = _admit(state, cfg, knobs, budget, now, has_prefill=bool(alloc.any()))
        num_admitted = len(extra)
        if extra:
            alloc = np.concatenate([alloc, np.asarray(extra, dtype=np.int64)])
    if not alloc.any() and num_preempted == 0:
        return None
    # (A preemption changed the running table: the step stands as it is, even if empty.)
    return ScheduledBatch(alloc, num_preempted, num_admitted)


def speculative_tokens(state: SchedulerState, need: np.ndarray) -> np.ndarray:
    """Draft tokens each running row verifies this step: k for a decoding row, fewer near its
    last output token (no drafts past max tokens), none for rows still prefilling."""
    k = state.num_speculative_tokens
    run = state.running
    if k == 0:
        return np.zeros(len(need), dtype=np.int64)
    left = run.max_out - (run.tokens - run.prompt) - 1
    return np.where(need == 1, np.clip(left, 0, k), 0)


def _share_budget(need: np.ndarray, budget: float, order: np.ndarray | None) -> np.ndarray:
    """Give each row, in ``order``, as many of its needed tokens as the budget still allows."""
    if need.sum() <= budget:  # the common case: everyone gets all it needs
        return need.astype(np.int64, copy=False)
    ordered = need if order is None else need[order]
    start = np.cumsum(ordered) - ordered
    got = np.minimum(np.maximum(budget - start, 0), ordered).astype(np.int64)
    if order is None:
        return got
    alloc = np.empty_like(got)
    alloc[order] = got
    return alloc


def _reserve_blocks(
    state: SchedulerState, alloc: np.ndarray, order: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Allocate KV blocks for the scheduled running rows, preempting the newest on shortage."""
    run, kv = state.running, state.kv
    bs = kv.block_size
    target = run.computed + alloc
    # Unscheduled rows (alloc 0) need nothing: their blocks already hold every computed token.
    extra = np.maximum(-(-target // bs) - run.nblocks, 0)
    if int(extra.sum()) <= kv.num_free_blocks:
        grow_blocks(run, kv, extra, target)
        return alloc, 0

    # Shortage: walk rows in scheduling order; while a row cannot grow, preempt the newest.
    num_preempted = 0
    for i in order.tolist() if order is not None else range(len(run)):
        if i >= len(run):
            continue
        if alloc[i] == 0:
            continue
        req = run.sync(i)
        while not kv.allocate(req, int(run.computed[i] + alloc[i])):
            victim = run.pop_last()
            alloc = alloc[: len(run)]
            _preempt(state, victim)
            num_preempted += 1
            if victim is req:
                break
        else:
            run.refresh_blocks(i)
    return alloc, num_preempted


def grow_blocks(
    run: RunningTable, kv: KVBlockManager, extra: np.ndarray, target: np.ndarray
) -> None:
    """Give each running row ``extra[i]`` more blocks (known to fit) to hold ``target[i]`` tokens.

    Rows growing only into private blocks are counted in bulk; rows that still need shared
    (content-named) blocks go through the block manager one by one.
    """
    private = extra
    if kv.enable_prefix_caching:  # (without it no row has shareable blocks)
        named = (extra > 0) & (run.nblocks < run.shareable)
        for i in np.flatnonzero(named).tolist():
            kv.allocate(run.sync(i), int(target[i]))
            run.refresh_blocks(i)
        private = np.where(named, 0, extra)
    total = int(private.sum())
    if total:
        grown = kv.allocate_private(total)
        assert grown, "blocks were checked to fit"
        run.nblocks = run.nblocks + private


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
    waiting, run, kv = state.waiting, state.running, state.kv
    granted: list[int] = []
    while waiting and budget > 0 and len(run) < cfg.max_num_seqs:
        req = waiting[0]
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
        if not kv.can_admit(req, hits, computed + n):
            break
        waiting.popleft()
        kv.take_cached(req, hits)
        kv.allocate(req, computed + n)
        req.num_computed_tokens = computed
        req.num_external_tokens = 0  # the KV is here now; a preemption recomputes it
        if req.first_scheduled_s is None:
            req.first_scheduled_s = now
            req.num_cached_tokens = cached
        shareable = shareable_blocks(req, kv.block_size) if kv.enable_prefix_caching else 0
        run.append(req, shareable, max_out=1 if state.prefill_only else None)
        granted.append(n)
        budget -= n
    return granted
