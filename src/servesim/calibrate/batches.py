"""From a measured row's aggregates to the per-row batch the cost model needs.

A step log usually gives only aggregates: ``batch_size``, ``prefill_tokens``,
``decode_tokens`` and ``context_tokens``. The cost model's features are sums over the rows of
the batch, and most of them follow from the aggregates exactly (tokens, sequences, KV tokens
read: Σ c + n). The one that does not is the attention pairs of prefill rows, Σ n·c, which
depends on which sequence held which context. servesim reconstructs a **representative
batch** (NOTE: an assumption, documented in the README):

- ``decode_tokens`` decode rows of 1 new token each;
- the other ``batch_size − decode_tokens`` rows are prefill rows sharing ``prefill_tokens``
  as evenly as possible;
- ``context_tokens`` is spread evenly over the decode rows when there are any (a fresh
  prompt's first chunk has no cached context, and decodes hold most of the KV cache in a
  serving step), otherwise over the prefill rows (chunked-prefill continuations, prefix hits).

For pure-decode steps and a fresh prompt (or equal ones) this is exact. It under-counts the
attention of a mixed step whose prefill chunk continues a long prompt, and of several prompts
of different lengths in one step (the causal pairs inside a chunk grow with n²). Logging the
per-row arrays ``new_tokens`` and ``context_lens`` removes the assumption.
"""

from __future__ import annotations

import numpy as np

from servesim.calibrate.readers import WHOLE_STEP, Measurements
from servesim.cost import GROUPS, StepCostModel
from servesim.cost.features import NUM_FEATURES
from servesim.errors import ServesimError

REGIMES = ("prefill-heavy", "decode-heavy", "mixed")
"""A row is prefill-heavy when >= 90% of its tokens are prefill tokens, decode-heavy when
<= 10% are, and mixed otherwise."""


def _spread(total: int, parts: int) -> np.ndarray:
    """``total`` split over ``parts`` integers differing by at most one (larger ones first)."""
    out = np.full(parts, total // parts, dtype=np.int64)
    out[: total % parts] += 1
    return out


def representative_rows(
    batch_size: int, prefill_tokens: int, decode_tokens: int, context_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """(new_tokens, context_lens) of a batch with these aggregates (see the module doc).

    Aggregates must be consistent (``readers.check_batch``): ``batch_size >= 1``, decode rows
    <= ``batch_size``, and ``prefill_tokens`` >= the prefill rows.
    """
    prefill_rows = batch_size - decode_tokens
    new = np.concatenate(
        [np.ones(decode_tokens, dtype=np.int64), _spread(prefill_tokens, prefill_rows)]
        if prefill_rows
        else [np.ones(decode_tokens, dtype=np.int64)]
    )
    ctx = np.zeros(batch_size, dtype=np.int64)
    if decode_tokens:
        ctx[:decode_tokens] = _spread(context_tokens, decode_tokens)
    else:
        ctx[:] = _spread(context_tokens, batch_size)
    return new, ctx


def batch_of(m: Measurements, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``i``'s batch: exact when logged, else the representative one."""
    exact = m.rows[i]
    if exact is not None:
        return exact
    return representative_rows(
        int(m.batch_size[i]),
        int(m.prefill_tokens[i]),
        int(m.decode_tokens[i]),
        int(m.context_tokens[i]),
    )


def feature_matrix(cost: StepCostModel, m: Measurements) -> np.ndarray:
    """Step features of every row, shape (rows, NUM_FEATURES)."""
    out = np.empty((len(m), NUM_FEATURES))
    for i in range(len(m)):
        new, ctx = batch_of(m, i)
        out[i] = cost.features(new, ctx)
    return out


def regimes(m: Measurements) -> np.ndarray:
    """Each row's regime name (see :data:`REGIMES`)."""
    share = m.prefill_tokens / np.maximum(m.tokens, 1)
    return np.where(share >= 0.9, REGIMES[0], np.where(share <= 0.1, REGIMES[1], REGIMES[2]))


def op_names(cost: StepCostModel) -> tuple[str, ...]:
    """The names a CSV row's ``op`` may take for this model: step, operators, groups."""
    ops = tuple(dict.fromkeys(op.name for op in cost.operators))
    groups = tuple(g for g in GROUPS if any(op.group == g for op in cost.operators))
    return (WHOLE_STEP, *ops, *(g for g in groups if g not in ops))


def op_masks(cost: StepCostModel, m: Measurements) -> np.ndarray:
    """Which operator columns (and the host-overhead column, last) each row's time covers.

    Shape (rows, operators + 1), bool. A whole step covers everything; an operator name its
    occurrences; a group name every operator of the group. Host overhead belongs to steps only.
    """
    names = [op.name for op in cost.operators]
    groups = [op.group for op in cost.operators]
    cache: dict[str, np.ndarray] = {}
    out = np.zeros((len(m), len(names) + 1), dtype=bool)
    for i, op in enumerate(m.op):
        if op not in cache:
            if op == WHOLE_STEP:
                mask = np.ones(len(names) + 1, dtype=bool)
            else:
                mask = np.array(
                    [n == op or g == op for n, g in zip(names, groups, strict=True)] + [False]
                )
                if not mask.any():
                    raise ServesimError(
                        f"op {op!r} is not an operator of {cost.model.name}",
                        field=m.where[i],
                        fix="use one of: " + ", ".join(op_names(cost)),
                    )
            cache[op] = mask
        out[i] = cache[op]
    return out
