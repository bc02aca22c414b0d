"""Step pricing compiled with numba (optional): the same seconds as ``step.py``'s hot path in one
machine-code call per step instead of ~20 numpy and Python calls.

A step on the hot path (no PP, no attention DP) is priced by ``StepCostModel.seconds_from_features``
as: features, one product with the ``_hot`` matrix, the occupancy stretch of prefill attention,
the decode ramp, ``max(compute, memory)`` per operator, the measured curves, and the host terms.
:class:`CompiledStepCost` does the same arithmetic in the same order inside numba-compiled
functions; the model's arrays are handed over once, at construction. It implements the engine's
``StepCost`` protocol and answers everything else (accounting, breakdowns) from the model it
wraps, so a run priced through it records the same features and reports the same totals.

Everything is identical, bit for bit: the features are sums of integers in float64, exact in
any order; every sum over operators is taken in numpy's pairwise order (``_numpy_sum``); the
interpolations are numpy's formulas; the product with ``_hot`` is summed feature by feature,
those a decode span varies last (``StepCostModel._varying_last``; a span's as its common part
plus each step's varying terms, ``step.span_hot_product``: the same bits for a step alone and
within a span), as the reference sums it since session 60, and the logarithms are the C
library's, which the reference takes too (``cost.libm.c_math``). Before, the reference's product
went through BLAS and its ramp through numpy's AVX-512 ``log10``, and a step could differ in
its last bit. ``tests/test_compiled.py`` checks single steps, spans and whole runs against the
reference, to the bit.

numba is an optional extra (``pip install 'servesim[fast]'``); it is imported only when a
:class:`CompiledStepCost` is built (the run layer does so for large runs: ``servesim.fleet``), and
its functions are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import numpy as np

from servesim.cost import features as _F
from servesim.cost.kernels import LOG_M_GRID
from servesim.cost.step import StepCostModel, padded_rows

_INT64 = np.dtype(np.int64)

MAX_SUMMED = 128
"""Most operators a compiled model may have: its sums over operators are taken in numpy's
pairwise order, whose first block is 128 values (longer arrays numpy splits recursively, and
numba's cache does not take recursive functions; a model has 12-40 operators)."""


def numba_available() -> bool:
    """Whether numba can be imported (without importing it)."""
    return importlib.util.find_spec("numba") is not None


@functools.cache
def _kernels() -> Any:
    """The compiled functions (numba imported and the module compiled on first call)."""
    from servesim.cost import _compiled_kernels

    return _compiled_kernels


class CompiledStepCost:
    """A :class:`~servesim.cost.step.StepCostModel` whose step pricing runs compiled (see the
    module docstring). Build with :func:`compiled_step_cost`; attribute reads it does not
    define go to the wrapped model."""

    def __init__(self, model: StepCostModel):
        ops = model._ops
        hot = model._hot
        assert hot is not None, "only models on the hot path (no PP, no attention DP)"
        self.model = model
        k = len(model.operators)
        fm = model.feature_map
        occupancy, ramp, curves = ops.occupancy, ops.ramp, ops.curves
        eager = ops.eager is not None
        moe = fm.moe
        self._plain_features = not fm.window and not fm.absorb_max >= 1.0
        """Features made inside the kernels (no sliding window, no MLA absorption)."""
        self._has_moe = moe is not None
        self.num_features = _F.NUM_FEATURES
        """Columns of the features the ``*_into`` methods write."""
        self._no_features = np.zeros((0, _F.NUM_FEATURES))
        # Integer switches: operators, first busy-compute column, eager, host overlaps,
        # occupancy stretch, measured curves; then the features a decode span varies (their
        # count, then each: a step's product adds their terms to the others', in order).
        ints = np.array(
            [
                k,
                3 * k if eager else 2 * k,
                int(eager),
                int(model.host_overlaps),
                int(occupancy is not None),
                int(curves is not None),
                len(model._varying),
                *model._varying,
            ],
            dtype=np.int64,
        )
        # The occupancy stretch's fill and power, the experts' count, top-k, EP and load.
        floats = np.array(
            [
                occupancy[1] if occupancy is not None else 0.0,
                occupancy[2] if occupancy is not None else 0.0,
                *((float(moe[0]), float(moe[1]), float(moe[2])) if moe else (0.0, 0.0, 0.0)),
                fm.moe_load,
            ],
            dtype=np.float64,
        )
        occ_cols = np.asarray(occupancy[0] if occupancy is not None else (), dtype=np.int64)
        if ramp is not None:
            # (Per column: operator, KV feature, bytes per KV token, then its serial walk:
            # when, saturating blocks, KV heads, blocks per wave, KV seconds per token,
            # re-reads per KV head, L2-filling KV tokens; 0s without one.)
            walks = ramp.serial or ((0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),) * len(ramp.columns)
            ramp_rows = np.array(
                [[c, f, p, *w] for (c, f, p), w in zip(ramp.columns, walks, strict=True)],
                dtype=np.float64,
            )
            ramp_xs = np.array(ramp.log_bytes, dtype=np.float64)
            ramp_ys = np.array(ramp.ratio, dtype=np.float64)
        else:
            ramp_rows, ramp_xs, ramp_ys = np.zeros((0, 10)), np.zeros(2), np.zeros(2)
        if curves is not None:
            sums = curves._sums
            sum_features = np.array([f for f, _, _ in sums], dtype=np.int64)
            sum_tables = np.ascontiguousarray(np.array([t for _, t, _ in sums]))
            curve_cols = np.asarray(curves.columns, dtype=np.int64)
            curve_features = np.asarray(curves.features, dtype=np.int64)
            curve_table = np.ascontiguousarray(curves.table, dtype=np.float64)
        else:
            sum_features = curve_cols = curve_features = np.zeros(0, np.int64)
            sum_tables, curve_table = np.zeros((0, 2)), np.zeros((2, 0))
        # (the curves' grid, log of tokens, above each point's index: where a row falls)
        grid = np.ascontiguousarray(
            np.vstack([LOG_M_GRID, np.arange(len(LOG_M_GRID), dtype=np.float64)])
        )
        self._model_arrays = _pack(
            (
                np.ascontiguousarray(hot, dtype=np.float64), ints, floats, occ_cols, ramp_rows,
                ramp_xs, ramp_ys, sum_features, sum_tables, curve_cols, curve_features,
                curve_table, grid,
            )
        )  # fmt: skip
        """The model's arrays packed in two (``_compiled_kernels._model`` unpacks them), the
        last two arguments of every kernel."""
        kernels = _kernels()
        self._step_into = kernels.step_into
        self._seconds_packed = kernels.seconds_packed
        self._span_into = kernels.span_into
        self._span_model = (fm.absorb_max >= 1.0, self._has_moe, *self._model_arrays)
        """What ``span_into`` takes after the features given: absorption, MoE, the model."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def step_into(
        self, new_tokens: np.ndarray, context_lens: np.ndarray, pad: int, features: np.ndarray
    ) -> float:
        """Seconds of one step, as ``StepCostModel.step_with_features``, its features written
        into row 0 of ``features`` (a buffer of :data:`~servesim.cost.features.NUM_FEATURES`
        columns)."""
        if self._plain_features:
            # (The engine's rows are int64 already: an astype call costs 4x the test.)
            if new_tokens.dtype is not _INT64:
                new_tokens = new_tokens.astype(np.int64)
            if context_lens.dtype is not _INT64:
                context_lens = context_lens.astype(np.int64)
            return self._step_into(
                new_tokens,
                context_lens,
                pad,
                self._has_moe,
                *self._model_arrays,
                features,
            )
        if pad:
            new_tokens, context_lens = padded_rows(new_tokens, context_lens, pad)
        f = self.model.feature_map.step(new_tokens, context_lens)
        features[0] = f
        return self._seconds_packed(f, *self._model_arrays)

    def step_with_features(
        self, new_tokens: np.ndarray, context_lens: np.ndarray, pad: int = 0
    ) -> tuple[float, np.ndarray]:
        """(seconds, features) of one step, as ``StepCostModel.step_with_features``."""
        features = np.empty((1, _F.NUM_FEATURES))
        return self.step_into(new_tokens, context_lens, pad, features), features[0]

    def decode_span_into(
        self,
        context_lens: np.ndarray,
        num_steps: int,
        pad: int,
        start: float,
        seconds: np.ndarray,
        ends: np.ndarray,
        features: np.ndarray,
    ) -> float:
        """A decode span starting at ``start`` (s) written into the buffers (at least
        ``num_steps`` rows): each step's seconds, its end (``start`` plus the steps so far,
        added one at a time) and its features. Returns the last end."""
        fm = self.model.feature_map
        # (A sliding window's features come from the reference; the others are made inside.)
        if fm.window:
            given = fm.decode(context_lens, num_steps, pad)
        else:
            given = self._no_features
        return self._span_into(
            context_lens.astype(np.int64, copy=False), num_steps, pad, start, given,
            *self._span_model, seconds, ends, features,
        )  # fmt: skip

    def span_arguments(self) -> tuple[Any, ...] | None:
        """What ``_compiled_kernels.span_into`` takes after a span's start (the features given,
        absorption, MoE, the model's packed arrays), for a kernel that prices a span it plans
        (``servesim.fused_kernels``); None where a span's features come from the reference (a
        sliding window)."""
        if self.model.feature_map.window:
            return None
        return (self._no_features, *self._span_model)

    def decode_span_ends(
        self, context_lens: np.ndarray, num_steps: int, pad: int, start: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(end times, seconds, features) of each step of a decode span starting at
        ``start``: the ends are ``start`` plus each step in turn, taken in the same call."""
        seconds, ends = np.empty(num_steps), np.empty(num_steps)
        features = np.empty((num_steps, _F.NUM_FEATURES))
        self.decode_span_into(context_lens, num_steps, pad, start, seconds, ends, features)
        return ends, seconds, features

    def decode_span_with_features(
        self, context_lens: np.ndarray, num_steps: int, pad: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(seconds, features) of each step of a decode span, as the model's."""
        _, seconds, features = self.decode_span_ends(context_lens, num_steps, pad, 0.0)
        return seconds, features

    def decode_round_with_features(
        self, context_lens: np.ndarray, num_steps: int, pad: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """A multi-step round: the model's own (rare; its host term needs the GPU time)."""
        return self.model.decode_round_with_features(context_lens, num_steps, pad)


def _pack(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(floats, layout): every float array of ``arrays`` flat in one, and each array's
    (offset, rows, columns: 0 for a vector) followed by every integer array, the offsets into
    the floats or into the layout itself (``_compiled_kernels._model`` reads them back)."""
    header = 3 * len(arrays)
    floats: list[np.ndarray] = []
    ints: list[np.ndarray] = []
    layout: list[int] = []
    float_at, int_at = 0, header
    for a in arrays:
        rows, cols = (a.shape[0], a.shape[1]) if a.ndim == 2 else (a.shape[0], 0)
        if a.dtype.kind == "f":
            layout += [float_at, rows, cols]
            floats.append(a.ravel())
            float_at += a.size
        else:
            assert a.ndim == 1
            layout += [int_at, rows, 0]
            ints.append(a.astype(np.int64))
            int_at += a.size
    return np.concatenate(floats), np.concatenate([np.array(layout, np.int64), *ints])


def compiled_step_cost(model: StepCostModel) -> CompiledStepCost | None:
    """``model`` with compiled step pricing, or None where it does not apply: numba is not
    installed, or the model is off the one-product hot path (PP or attention DP), or has more
    operators than :data:`MAX_SUMMED`.

    The kernels are compiled (or loaded from numba's cache) here, by pricing a one-row step and
    a two-step span, so a run does not stop to compile in its middle."""
    if model._hot is None or len(model.operators) > MAX_SUMMED or not numba_available():
        return None
    compiled = CompiledStepCost(model)
    one = np.ones(1, dtype=np.int64)
    compiled.step_with_features(one, one)
    compiled.decode_span_with_features(one, 2)
    return compiled


__all__ = ["CompiledStepCost", "compiled_step_cost", "numba_available"]
