"""FLOP accounting of one request (prefill + decode) by component, independent of hardware."""

from __future__ import annotations

import numpy as np

from servesim.cost.coefficients import coefficient_matrices
from servesim.cost.dtypes import activation_dtype, dtype_bytes
from servesim.cost.features import FeatureMap
from servesim.cost.operator import GROUPS
from servesim.cost.operators import build_operators
from servesim.cost.params import HEADS, CostParams, Parallelism
from servesim.errors import ServesimError
from servesim.model import ModelSpec


def flops_breakdown(model: ModelSpec, input_len: int, output_len: int, head: str = "lm") -> dict:
    """FLOPs of one request of ``input_len`` prompt tokens and ``output_len`` generated tokens.

    The prefill computes the prompt in one step (and yields the first output token); each of
    the ``output_len − 1`` decode steps computes one token with context ``input_len + j``.
    Linear layers count 2 FLOPs per weight per token; attention is counted separately
    (``4 × heads × head_dim`` per query-key pair, causal, window-capped; MLA with its own widths:
    regular form for the prefill, absorbed form for decode); ``norm_other`` holds the elementwise
    work. ``head="value"`` replaces the LM head (d × vocab) by a value head (d×d + d×1).

    Returns a dict: ``prefill_flops``, ``decode_flops`` (all decode steps),
    ``decode_flops_per_token`` (their mean, which is the value at the mean decode context
    ``input_len + (output_len − 2)/2`` unless sliding windows bend it), ``decode_context_mean``,
    ``total_flops``, and ``by_component``: {group: {prefill, decode_per_token, total}}.
    """
    if head not in HEADS:
        raise ServesimError(f"unknown head {head!r}", field="head", fix="use lm or value")
    if int(input_len) != input_len or input_len < 1:
        raise ServesimError(
            f"must be a positive integer, got {input_len}", field="input_len", fix="use >= 1"
        )
    if int(output_len) != output_len or output_len < 1:
        raise ServesimError(
            f"must be a positive integer, got {output_len}", field="output_len", fix="use >= 1"
        )
    par, params = Parallelism(), CostParams(head=head)
    act = dtype_bytes(activation_dtype(model.dtype))
    operators = build_operators(
        model, par, weight_bytes=act, kv_bytes=act, act_bytes=act, head=head
    )
    flops, _ = coefficient_matrices(operators)
    features = FeatureMap.for_model(model, par, params)
    groups = [g for g in GROUPS if any(o.group == g for o in operators) and g != "comm"]
    group_of = np.array([groups.index(o.group) for o in operators])

    def by_group(feats: np.ndarray) -> np.ndarray:
        per_op = flops @ feats
        return np.bincount(group_of, weights=per_op, minlength=len(groups))

    prefill = by_group(features.step(np.array([input_len]), np.array([0])))
    steps = output_len - 1
    if steps:
        decode_total = by_group(features.decode(np.array([input_len]), steps).sum(axis=0))
        per_token = decode_total / steps
    else:
        decode_total = np.zeros(len(groups))
        per_token = by_group(features.step(np.array([1]), np.array([input_len])))
    total = prefill + decode_total
    return {
        "model": model.name,
        "input_len": int(input_len),
        "output_len": int(output_len),
        "head": head,
        "prefill_flops": float(prefill.sum()),
        "decode_flops": float(decode_total.sum()),
        "decode_flops_per_token": float(per_token.sum()),
        "decode_context_mean": input_len + max(steps - 1, 0) / 2.0,
        "total_flops": float(total.sum()),
        "by_component": {
            g: {
                "prefill": float(prefill[i]),
                "decode_per_token": float(per_token[i]),
                "total": float(total[i]),
            }
            for i, g in enumerate(groups)
        },
    }
