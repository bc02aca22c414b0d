"""What proposing speculative tokens costs (the engine schedules drafting and verification).

Verification needs nothing new: it is one target step whose decoding rows compute ``k + 1``
tokens (``new_tokens = k + 1``). Proposing the ``k`` drafts depends on the drafter:

- ``draft``: a smaller model with the target's vocabulary (any catalog model). ``k``
  sequential decode steps of the draft model on the target's GPUs, plus the draft's own
  forward over every prefill chunk the target computes (the draft keeps a KV cache too).
- ``eagle``: an EAGLE-like head on the target's hidden states: one decoder layer of the target's
  shape (an MoE layer for MoE targets, like DeepSeek's MTP module) plus the target's LM head,
  and a ``2d → d`` input projection, run ``k`` times. It shares the target's embedding and head
  weights, so only its layer and projection take extra memory.
- ``ngram``: prompt lookup on the host CPU: a cost per proposed token plus a scan of the
  request's context, no GPU work.

Every cost here is in seconds for a batch of drafting rows (``context_lens[i]`` tokens of
context, ``drafts[i]`` tokens to propose).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from servesim.cost.build import build_step_cost
from servesim.cost.dtypes import dtype_bytes, tensor_core_peak
from servesim.cost.memory import kv_bytes_per_token_per_layer, weights_bytes_per_gpu
from servesim.cost.params import CostParams, Parallelism, valid_tps
from servesim.cost.step import StepCostModel
from servesim.errors import ServesimError
from servesim.hardware import Hardware
from servesim.model import ModelSpec

DRAFT_METHODS = ("draft", "eagle", "ngram")

NGRAM_SECONDS_PER_DRAFT = 2e-6
"""Host seconds per proposed n-gram token per request (estimate: a vectorised matcher copying
the continuation out of the context)."""
NGRAM_SECONDS_PER_CONTEXT_TOKEN = 2e-9
"""Host seconds per context token scanned for an n-gram match (estimate: a compiled KMP-style
scan of the token ids, a few ns per token)."""


@dataclass(frozen=True, eq=False)
class DraftCost:
    """The price of proposing speculative tokens with one drafter. Build with
    :func:`draft_cost`."""

    method: str
    """``draft``, ``eagle`` or ``ngram``."""
    cost: StepCostModel | None
    """GPU cost model of the drafter (the draft model, or the EAGLE head as a one-layer model
    with the target's LM head); None for n-gram drafting."""
    input_proj_s_per_token: float = 0.0
    """EAGLE: seconds of the ``2d → d`` projection per drafting row and step (at batch 1; a
    small memory-bound GEMM, so its weight read dominates)."""
    input_proj_fixed_s: float = 0.0
    """EAGLE: the projection's weight read and launch per draft step, seconds."""
    host_s_per_draft: float = 0.0
    """Host seconds per proposed token (n-gram)."""
    host_s_per_context_token: float = 0.0
    """Host seconds per context token scanned (n-gram)."""
    weights_bytes_per_gpu: float = 0.0
    """Extra weight bytes the drafter keeps on each GPU (draft model; EAGLE layer and
    projection; 0 for n-gram)."""
    kv_bytes_per_token: float = 0.0
    """Extra KV bytes per token per GPU the drafter caches (0 for n-gram)."""

    @property
    def on_host(self) -> bool:
        """Whether drafting runs on the CPU (it can overlap the GPU's verification step)."""
        return self.cost is None

    def propose_seconds(self, context_lens: np.ndarray, drafts: np.ndarray) -> float:
        """Seconds to propose ``drafts[i]`` tokens for each row (``context_lens[i]`` tokens
        already cached): ``max(drafts)`` sequential draft steps, step ``j`` over the rows that
        still propose, each row's context one token longer per step."""
        ctx = np.asarray(context_lens, dtype=np.float64)
        k = np.asarray(drafts, dtype=np.int64)
        if len(k) == 0 or k.max() <= 0:
            return 0.0
        if self.cost is None:
            return float(
                self.host_s_per_draft * k.sum() + self.host_s_per_context_token * ctx.sum()
            )
        steps = int(k.max())
        if (k == steps).all():
            total = float(self.cost.decode_span_seconds(ctx, steps).sum())
        else:
            total = 0.0
            for j in range(steps):
                rows = k > j
                ones = np.ones(int(rows.sum()))
                total += self.cost.step_seconds(ones, ctx[rows] + j)
        rows_per_step = np.array([(k > j).sum() for j in range(steps)], dtype=np.float64)
        total += float(
            (self.input_proj_fixed_s + self.input_proj_s_per_token * rows_per_step).sum()
        )
        return total

    def prefill_seconds(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> float:
        """Seconds of the drafter's own forward over the target's prefill chunks (a draft
        model fills its KV cache; an EAGLE head runs its layer over the prompt's hidden
        states); 0 for n-gram."""
        if self.cost is None or len(new_tokens) == 0:
            return 0.0
        return float(self.cost.step_seconds(new_tokens, context_lens))


def draft_cost(
    method: str,
    target: ModelSpec,
    hw: Hardware,
    par: Parallelism | None = None,
    params: CostParams | None = None,
    draft_model: ModelSpec | None = None,
) -> DraftCost:
    """The :class:`DraftCost` of ``method`` for ``target`` split as ``par`` on ``hw``.

    ``draft`` needs ``draft_model`` with the target's vocabulary (the verifier compares token
    ids); it runs at the target's TP when its heads split that way, else on one GPU
    (vLLM ``speculative_draft_tensor_parallel_size = 1``). Raises ServesimError for an unknown
    method, a missing draft model or a vocabulary mismatch.
    """
    par = par or Parallelism()
    params = params or CostParams()
    if method == "ngram":
        return DraftCost(
            "ngram",
            None,
            host_s_per_draft=NGRAM_SECONDS_PER_DRAFT,
            host_s_per_context_token=NGRAM_SECONDS_PER_CONTEXT_TOKEN,
        )
    if method == "draft":
        if draft_model is None:
            raise ServesimError(
                "draft speculation needs a draft model",
                field="speculative.method",
                fix="use draft:MODEL with a small model of the target's family",
            )
        if draft_model.vocab_size != target.vocab_size:
            raise ServesimError(
                f"draft {draft_model.name} has a vocabulary of {draft_model.vocab_size} tokens, "
                f"the target {target.name} {target.vocab_size}",
                field="speculative.method",
                fix="pick a draft model with the target's tokenizer and vocabulary size",
            )
        tp = par.tp if par.tp in valid_tps(draft_model, limit=par.tp) else 1
        draft_par = Parallelism(tp=tp)
        # NOTE: the draft runs in its own checkpoint dtype; explicit weight quantisation of
        # the target does not carry over.
        draft_params = dataclasses.replace(_drafting(params), weight_dtype=None)
        cost = build_step_cost(draft_model, hw, draft_par, draft_params)
        kv = kv_bytes_per_token_per_layer(
            draft_model, draft_par, dtype_bytes(cost.resolved.kv_dtype)
        )
        return DraftCost(
            "draft",
            cost,
            weights_bytes_per_gpu=weights_bytes_per_gpu(draft_model, hw, draft_par, draft_params),
            kv_bytes_per_token=kv * draft_model.num_layers,
        )
    if method == "eagle":
        head = eagle_head(target)
        head_par = Parallelism(tp=par.tp)
        head_params = _drafting(params)
        cost = build_step_cost(head, hw, head_par, head_params)
        res = cost.resolved
        d = target.hidden_size
        w_bytes = dtype_bytes(res.weight_dtype)
        a_bytes = dtype_bytes(res.act_dtype)
        # The 2d → d projection, split by TP like the other block weights.
        proj = 2.0 * d * d / par.tp
        eff_mem = hw.hbm_bandwidth * res.memory_efficiency
        flop_rate = (
            tensor_core_peak(hw.peak_flops, res.weight_dtype, res.act_dtype)
            * res.compute_efficiency
        )
        fixed = proj * w_bytes / eff_mem + res.kernel_launch_s
        per_row = max(2.0 * proj / flop_rate, 3.0 * d * a_bytes / eff_mem)
        # Its layer (everything but the shared embedding and LM head) plus the projection.
        layer = weights_bytes_per_gpu(head, hw, head_par, head_params) - 2 * (
            target.vocab_size / par.tp * d * a_bytes
        )
        kv = kv_bytes_per_token_per_layer(head, head_par, dtype_bytes(res.kv_dtype))
        return DraftCost(
            "eagle",
            cost,
            input_proj_s_per_token=per_row,
            input_proj_fixed_s=fixed,
            weights_bytes_per_gpu=max(layer, 0.0) + proj * w_bytes,
            kv_bytes_per_token=kv,
        )
    raise ServesimError(
        f"unknown draft method {method!r}",
        field="speculative.method",
        fix="use one of: " + ", ".join(DRAFT_METHODS),
    )


def _drafting(params: CostParams) -> CostParams:
    """``params`` for draft steps: they run inside one engine step, whose host work and
    per-step overhead the target step already pays, so the drafter pays only its GPU time
    (kernel issue included when there are no CUDA graphs)."""
    return dataclasses.replace(
        params,
        step_overhead_s=0.0,
        overhead_per_seq_s=0.0,
        overhead_per_token_s=0.0,
        host_step_s=0.0,
        host_per_seq_s=0.0,
        host_per_token_s=0.0,
        pp_microbatches=None,
    )


def eagle_head(target: ModelSpec) -> ModelSpec:
    """The target reduced to one decoder layer of its own shape (an MoE layer when the target
    has experts, as DeepSeek's MTP module) with the target's vocabulary and LM head."""
    moe = target.moe
    if moe is not None:
        moe = dataclasses.replace(moe, first_dense_layers=0, layer_freq=1, mlp_only_layers=())
    return dataclasses.replace(
        target,
        name=f"{target.name} (EAGLE head)",
        num_layers=1,
        num_sliding_layers=0,
        moe=moe,
        tie_word_embeddings=False,
    )


__all__ = [
    "DRAFT_METHODS",
    "NGRAM_SECONDS_PER_CONTEXT_TOKEN",
    "NGRAM_SECONDS_PER_DRAFT",
    "DraftCost",
    "draft_cost",
    "eagle_head",
]
