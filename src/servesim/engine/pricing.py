"""What the engine asks of the cost model, and what speculative decoding adds to a step.

The engine knows the cost model only through :class:`StepCost` (``servesim.cost`` implements
it); :meth:`Instance._price <servesim.engine.instance.Instance._price>` is the one place a step
is priced, and it adds the drafter's work (:meth:`Speculation.step_seconds`) and the loads from
the CPU tier to the cost model's seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class StepCost(Protocol):
    """What the instance needs from the cost model (``servesim.cost.StepCostModel``).

    Besides seconds, each call returns the step's *features* (a small vector the cost model
    is linear in); the engine records them so FLOPs, bytes and per-operator-group times can be
    computed for every step afterwards, in bulk, without slowing the loop.

    A cost model may also price into buffers the instance owns (the compiled one,
    ``servesim.cost.compiled.CompiledStepCost``: ``step_into(new_tokens, context_lens, pad,
    features) -> seconds`` and ``decode_span_into(context_lens, num_steps, pad, start,
    seconds, ends, features) -> last end``, with ``num_features``); the instance uses them
    where they exist.
    """

    def step_with_features(
        self, new_tokens: np.ndarray, context_lens: np.ndarray, pad: int = 0
    ) -> tuple[float, np.ndarray]:
        """Seconds of one step computing ``new_tokens[i]`` tokens over ``context_lens[i]``
        tokens already in the KV cache, per row, and ``pad`` more rows of one token over an
        empty context (a CUDA graph's padding); and its features."""
        ...

    def decode_span_with_features(
        self, context_lens: np.ndarray, num_steps: int, pad: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Seconds and features of each of ``num_steps`` decode steps of every row (and of
        ``pad`` padded rows over an empty context), the contexts growing by one token a step
        (a fast-forwarded span)."""
        ...

    def decode_round_with_features(
        self, context_lens: np.ndarray, num_steps: int, pad: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`decode_span_with_features`, for a multi-step scheduling round."""
        ...


SpanPlanner = tuple[
    Callable[..., tuple[int, int, int, int, float, int]],
    Callable[..., tuple[float, int]],
    tuple[Any, ...],
]
"""Compiled calls that plan a decode step or span and price it in one go, and its cost
model's arguments (``servesim.fused_kernels.span_planner``): ``plan(table, n, free_blocks,
block_size, grow_mode, ones, pad, start, horizon, *cost_arguments, seconds, ends, features)``
does what ``engine._commit_kernels.decode_span_plan`` does on the running table and returns
its four values, the end (s) of the last step it priced into the three buffers as
``step_into`` and ``decode_span_into`` price them (``ones``: a step's new tokens, one a row),
or -1.0 where it left them alone, and the steps priced: all of them, or a few past
``horizon`` (s), the next event that could cut the span short; ``resume(table, n, first,
num_steps, pad, horizon, *cost_arguments, seconds, ends, features)`` prices on from step
``first`` and returns (the last end, the steps priced). The run layer builds them: a kernel
of the engine may not call one of the cost model."""


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

    def step_seconds(
        self,
        seconds: float,
        drafts: np.ndarray,
        new_tokens: np.ndarray,
        context: np.ndarray,
        prompt: np.ndarray,
    ) -> float:
        """A verify step's ``seconds`` with the drafter's work added; per scheduled row, the
        drafts it verifies, its new tokens (drafts included), its context and prompt."""
        if drafts.any():
            drafting = drafts > 0
            draft = self.draft_seconds(context[drafting], drafts[drafting])
            seconds = max(seconds, draft) if self.overlap else seconds + draft
        if self.prefill_seconds is not None:
            # Rows computing prompt (or recomputed) tokens: more than one token without
            # drafts, or the last prompt token.
            base = new_tokens - drafts
            filling = (base > 1) | (context < prompt)
            if filling.any():
                seconds += self.prefill_seconds(base[filling], context[filling])
        return seconds

    def accepted(self, rng: np.random.Generator, drafts: np.ndarray) -> np.ndarray:
        """Accepted draft tokens for rows that verified ``drafts`` tokens each: per row, how
        many leading draws succeed, capped at its drafts."""
        u = rng.random((len(drafts), self.num_tokens))
        ok = u < np.asarray(self.acceptance)[None, :]
        return np.minimum(np.cumprod(ok, axis=1).sum(axis=1), drafts)
