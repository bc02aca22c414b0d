"""KV admission control: whether a waiting request may join beside the running ones' future.

vLLM admits a request when its prompt's blocks fit now (``greedy``): the running requests'
outputs then grow into the free blocks, and a shortage preempts the newest request. Two
engines look ahead instead:

- ``reserve`` (SGLang ``PrefillAdder``): a request joins only if its prompt plus its whole
  output (clipped at 4,096 tokens) fit in what the running requests leave free after a share
  ``r`` of each one's remaining output tokens. ``r`` (``new_token_ratio``) starts at 0.7,
  falls by (0.7 − 0.098) / 600 every decode step to 0.098 (SGLang grows bolder while nothing
  goes wrong), jumps back up after a preemption (``retract_decode``: the running requests'
  decoded tokens plus 20 steps each, over their output budgets) and resets to 0.7 whenever
  the instance is idle. Constants: SGLang ``global_config.py`` (``default_init_new_token_ratio``
  0.7, ``default_min_new_token_ratio_factor`` 0.14, ``default_new_token_ratio_decay_steps``
  600, ``retract_decode_steps`` 20) and ``CLIP_MAX_NEW_TOKENS_ESTIMATION`` 4096.
- ``guaranteed`` (TensorRT-LLM's default capacity scheduler, ``GUARANTEED_NO_EVICT``): the
  whole remaining output of every running request is reserved, so nothing is ever evicted.

The simulator knows each request's output length (a benchmark client sends it as
``max_tokens`` with ``ignore_eos``), so the output budget here is the request's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.engine.kv_cache import cdiv
from servesim.engine.request import Request
from servesim.engine.running import COMPUTED, MAX_OUT, NBLOCKS, PROMPT, TOKENS

CLIP_MAX_NEW_TOKENS = 4096
"""Output tokens SGLang counts at most per request when it estimates future KV."""
INIT_NEW_TOKEN_RATIO = 0.7
MIN_NEW_TOKEN_RATIO_FACTOR = 0.14
"""The floor of the ratio as a share of its initial value."""
NEW_TOKEN_RATIO_DECAY_STEPS = 600
"""Decode steps from the initial ratio to the floor."""
MIN_NEW_TOKEN_RATIO = INIT_NEW_TOKEN_RATIO * MIN_NEW_TOKEN_RATIO_FACTOR
NEW_TOKEN_RATIO_DECAY = (INIT_NEW_TOKEN_RATIO - MIN_NEW_TOKEN_RATIO) / NEW_TOKEN_RATIO_DECAY_STEPS
"""Fall of the ratio per decode step."""
RETRACT_DECODE_STEPS = 20
"""Decode steps of headroom SGLang assumes for each request kept after a retraction."""

_STEPS_PER_PROBE = 256
"""Span steps examined per vectorised probe in :meth:`Admission.steps_until_fit`."""


@dataclass
class Admission:
    """One instance's look-ahead admission (``reserve`` or ``guaranteed``) and its ratio.

    The ratio (the share of each running request's remaining output tokens held back) is
    ``start`` less ``decayed`` decode steps' fall, never below the floor: kept as a step count
    so that a fast-forwarded span and the same steps one by one give the same float.
    ``clip`` is the most output tokens counted per request."""

    mode: str
    conservativeness: float = 1.0
    """SGLang's ``schedule_conservativeness``: scales the initial ratio (and with it the floor
    and the fall per step); SGLang multiplies it by 0.3 under DP attention."""
    start: float = INIT_NEW_TOKEN_RATIO
    decayed: int = 0
    clip: float = CLIP_MAX_NEW_TOKENS

    def __post_init__(self) -> None:
        if self.mode == "guaranteed":
            self.start, self.clip = 1.0, float("inf")
        elif self.mode != "reserve":
            raise ValueError(f"no look-ahead admission called {self.mode!r}")
        # (SGLang: init = min(0.7 · c, 1), floor = init · 0.14, 600 steps from one to the
        # other; at c = 1 these are the module's constants, float for float)
        self._init = min(INIT_NEW_TOKEN_RATIO * self.conservativeness, 1.0)
        self._floor = self._init * MIN_NEW_TOKEN_RATIO_FACTOR
        self._decay = (self._init - self._floor) / NEW_TOKEN_RATIO_DECAY_STEPS
        if self.mode == "reserve" and self.conservativeness != 1.0:
            self.start = self._init

    @property
    def adaptive(self) -> bool:
        return self.mode == "reserve"

    # --- the ratio ---------------------------------------------------------------------

    @property
    def ratio(self) -> float:
        """Share of the running requests' remaining outputs held back now."""
        return self.ratio_after(0)

    def ratio_after(self, steps: int | np.ndarray) -> float | np.ndarray:
        """The ratio once ``steps`` more decode steps have run."""
        if not self.adaptive:
            return self.start
        fallen = self.start - (self.decayed + steps) * self._decay
        return np.maximum(fallen, self._floor)

    def idle(self) -> None:
        """The instance has nothing running: SGLang starts cautious again."""
        if self.adaptive:
            self.start, self.decayed = self._init, 0

    def decode_steps(self, n: int) -> None:
        """``n`` decode steps ran: the ratio falls towards its floor."""
        if self.adaptive:
            self.decayed += n

    def preempted(self, cols: np.ndarray) -> None:
        """Requests were preempted; ``cols`` are the running table's columns of those kept."""
        if not self.adaptive or cols.shape[1] == 0:
            return
        outputs = cols[TOKENS] - cols[PROMPT]
        budget = int(cols[MAX_OUT].sum())
        decoded = int(np.maximum(outputs, 0).sum())
        if budget > 0:
            self.start = min(1.0, (decoded + RETRACT_DECODE_STEPS * cols.shape[1]) / budget)
            self.decayed = 0

    # --- the test ----------------------------------------------------------------------

    def need(
        self, prompt_tokens: int, max_output_tokens: int, cached_tokens: int = 0,
        block_size: int = 1,
    ) -> float:  # fmt: skip
        """Tokens a joining request asks for: the prompt still to compute and its outputs
        (``guaranteed``: in whole blocks of ``block_size``, the blocks it will hold when done
        less those of its ``cached_tokens``)."""
        if self.mode == "guaranteed":
            total = cached_tokens + prompt_tokens + max_output_tokens
            return float((cdiv(total, block_size) - cached_tokens // block_size) * block_size)
        return prompt_tokens + min(max_output_tokens, self.clip)

    def need_of(self, req: Request, computed: int, block_size: int = 1) -> float:
        """:meth:`need` of the waiting request ``req`` with ``computed`` tokens of its KV in
        hand: the rest of its tokens to compute, and the outputs it has still to emit. (A
        preempted request recomputes the outputs it emitted and asks room for the rest only,
        as SGLang's ``PrefillAdder`` counts ``max_new_tokens - len(output_ids)``; counting
        all of them again, one near its end could ask more than the whole cache and wait
        forever in an idle engine.)"""
        return self.need(
            req.num_tokens - computed,
            req.max_output_tokens - req.num_output_tokens,
            computed,
            block_size,
        )

    def reserved(self, cols: np.ndarray, block_size: int = 1) -> float:
        """Tokens held back for the running requests (``cols``: the table's columns): the
        uncomputed rest of their prompts and ``ratio`` of their remaining outputs
        (``guaranteed``: every block each will hold when done that it does not hold yet, so a
        block-granular cache can never run out)."""
        if cols.shape[1] == 0:
            return 0.0
        if self.mode == "guaranteed":
            final = cdiv(cols[PROMPT] + cols[MAX_OUT], block_size)
            return float(np.maximum(final - cols[NBLOCKS], 0).sum() * block_size)
        remaining = np.minimum(cols[MAX_OUT] - (cols[TOKENS] - cols[PROMPT]), self.clip)
        prompt_left = np.maximum(cols[PROMPT] - cols[COMPUTED], 0)
        return float(prompt_left.sum()) + float(self.ratio) * float(np.maximum(remaining, 0).sum())

    def fits(self, need: float, room: float) -> bool:
        """Whether ``need`` tokens fit in ``room`` (free tokens less the reserve)."""
        return need <= room if self.mode == "guaranteed" else need < room

    def admits_alone(
        self, prompt_tokens: int, max_output_tokens: int, capacity_tokens: int, block_size: int
    ) -> bool:
        """Whether a request of ``prompt_tokens`` and ``max_output_tokens`` (none cached) passes
        this test on an instance with nothing running, every one of its ``capacity_tokens``
        free: what it needs to be admitted once the instance has drained. One that fails
        would wait at the head of the queue for ever, and everything behind it too (SGLang's
        test is strict: a request asking exactly the whole cache never joins; a
        ``guaranteed`` one asks whole blocks)."""
        need = self.need(prompt_tokens, max_output_tokens, 0, block_size)
        return self.fits(need, capacity_tokens)

    def steps_until_fit(
        self, cols: np.ndarray, free_blocks: int, block_size: int, need: float, span: int
    ) -> int:
        """The first boundary k (1 ≤ k < ``span``) of a decode span at which a waiting request
        asking ``need`` tokens would pass this test; ``span`` if none.

        At boundary k every running row has decoded k more tokens: each row holds blocks for
        ``computed + k`` tokens (the first step's are held already), its remaining outputs
        shrink by k and the ratio has fallen k − 1 more steps. (The blocks' own test, the
        budget and the slots are left to the scheduler at that boundary: they only tighten
        while decoding.)"""
        if self.mode == "guaranteed":
            # Every block a row grows into was reserved already: the room stays as it is.
            room = free_blocks * block_size - self.reserved(cols, block_size)
            return 1 if need <= room else span
        computed = cols[COMPUTED][:, None]
        nblocks = cols[NBLOCKS][:, None]
        remaining = (cols[MAX_OUT] - (cols[TOKENS] - cols[PROMPT]))[:, None]
        start = 1
        while start < span:
            k = np.arange(start, min(span, start + _STEPS_PER_PROBE))
            grown = np.maximum(cdiv(computed + k, block_size) - nblocks, 0).sum(axis=0)
            room = (free_blocks - grown) * block_size
            left = np.maximum(np.minimum(remaining - k, self.clip), 0).sum(axis=0)
            room = room - self.ratio_after(k - 1) * left
            ok = need <= room if self.mode == "guaranteed" else need < room
            hit = np.flatnonzero(ok)
            if len(hit):
                return int(k[hit[0]])
            start += _STEPS_PER_PROBE
        return span
