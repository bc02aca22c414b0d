"""Speculative decoding: what drafting costs, and the scenario's draft method resolved.

The target's verification step is an ordinary step over k+1 tokens per decoding request (the
engine schedules it); here is the price of *proposing* the k drafts:

- ``draft:MODEL``: k sequential decode steps of the draft model (any catalog model with the
  target's vocabulary), on the target's GPUs (TP 1 when the draft's heads do not split).
- ``eagle``: an EAGLE-like head — one decoder layer of the target's shape plus the LM head —
  run k times on the GPU.
- ``ngram``: prompt-lookup drafting on the host CPU: a cost per proposed token plus a scan of
  the request's context (coefficients below, estimates of a vectorised n-gram matcher).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.engine.instance import Speculation
from servesim.errors import ServesimError
from servesim.hardware import Hardware
from servesim.model import ModelSpec, load_model
from servesim.scenario import SpeculativeSpec

NGRAM_SECONDS_PER_DRAFT = 2e-6
"""Host seconds per proposed n-gram token per request (estimate)."""
NGRAM_SECONDS_PER_CONTEXT_TOKEN = 2e-9
"""Host seconds per context token scanned for an n-gram match (estimate)."""


def _span_draft(cost) -> Callable[[np.ndarray, np.ndarray], float]:
    def draft_seconds(context_lens: np.ndarray, drafts: np.ndarray) -> float:
        # k sequential draft steps over the drafting rows; rows with fewer drafts (near their
        # end) are counted for all k steps, a small overestimate on the last tokens.
        k = int(drafts.max())
        return float(cost.decode_span_seconds(context_lens, k).sum())

    return draft_seconds


def build_speculation(
    spec: SpeculativeSpec, target: ModelSpec, hardware: Hardware, par: Parallelism,
    params: CostParams,
) -> Speculation | None:  # fmt: skip
    """The engine's :class:`Speculation` for ``spec`` on one instance (None for baseline)."""
    method = spec.method
    mode = spec.mode or ("cpu_verify" if method == "ngram" else "self_verify")
    if mode == "baseline":
        return None
    k = spec.num_speculative_tokens
    acceptance = spec.acceptance_per_position or (spec.acceptance_rate,) * k
    if len(acceptance) != k:
        raise ServesimError(
            f"{len(acceptance)} probabilities for {k} speculative tokens",
            field="speculative.acceptance_per_position",
            fix="give one probability per position",
        )
    if method.startswith("draft:"):
        draft = load_model(method.removeprefix("draft:"))
        if draft.vocab_size != target.vocab_size:
            raise ServesimError(
                f"draft {draft.name} has a vocabulary of {draft.vocab_size} tokens, the target "
                f"{target.name} {target.vocab_size}",
                field="speculative.method",
                fix="pick a draft model of the same family (same tokenizer)",
            )
        draft_par = par if _splits(draft, par.tp) else Parallelism()
        draft_seconds = _span_draft(build_step_cost(draft, hardware, draft_par, params))
    elif method == "eagle":
        head = dataclasses.replace(target, name=f"{target.name} (EAGLE head)", num_layers=1,
                                   num_sliding_layers=0)  # fmt: skip
        draft_seconds = _span_draft(build_step_cost(head, hardware, par, params))
    elif method == "ngram":

        def draft_seconds(context_lens: np.ndarray, drafts: np.ndarray) -> float:
            return float(
                NGRAM_SECONDS_PER_DRAFT * drafts.sum()
                + NGRAM_SECONDS_PER_CONTEXT_TOKEN * context_lens.sum()
            )

    else:
        raise ServesimError(
            f"unknown speculative method {method!r}",
            field="speculative.method",
            fix="use draft:MODEL, ngram or eagle",
        )
    return Speculation(k, tuple(acceptance), draft_seconds, overlap=mode == "cpu_verify")


def _splits(model: ModelSpec, tp: int) -> bool:
    return model.num_attention_heads % tp == 0 and (
        model.num_kv_heads % tp == 0 or tp % model.num_kv_heads == 0
    )
