"""Speculative decoding: what drafting costs, and the scenario's draft method resolved.

The target's verification step is an ordinary step over k+1 tokens per decoding request (the
engine schedules it); here is the price of *proposing* the k drafts:

- ``draft:MODEL``: k sequential decode steps of the draft model (any catalog model with the
  target's vocabulary), on the target's GPUs;
- ``eagle``: an EAGLE-like head — one decoder layer of the target's shape plus the LM head —
  run k times on the GPU;
- ``ngram``: prompt-lookup drafting on the host CPU.

The prices come from :func:`servesim.cost.speculative.draft_cost`; this module turns the
scenario's choice into the engine's :class:`Speculation`.
"""

from __future__ import annotations

from servesim.cost import CostParams, Parallelism
from servesim.cost.speculative import DraftCost, draft_cost
from servesim.engine.instance import Speculation
from servesim.errors import ServesimError
from servesim.hardware import Hardware
from servesim.model import ModelSpec, load_model
from servesim.scenario import SpeculativeSpec


def build_speculation(
    spec: SpeculativeSpec, target: ModelSpec, hardware: Hardware, par: Parallelism,
    params: CostParams,
) -> tuple[Speculation, DraftCost] | None:  # fmt: skip
    """The engine's :class:`Speculation` for ``spec`` on one instance and the drafter's cost
    (its memory comes out of the KV budget); None for ``baseline``."""
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
        drafter = draft_cost("draft", target, hardware, par, params,
                             draft_model=load_model(method.removeprefix("draft:")))  # fmt: skip
    elif method in ("eagle", "ngram"):
        drafter = draft_cost(method, target, hardware, par, params)
    else:
        raise ServesimError(
            f"unknown speculative method {method!r}",
            field="speculative.method",
            fix="use draft:MODEL, ngram or eagle",
        )
    speculation = Speculation(
        k,
        tuple(acceptance),
        drafter.propose_seconds,
        overlap=mode == "cpu_verify",
        prefill_seconds=None if drafter.on_host else drafter.prefill_seconds,
    )
    return speculation, drafter
