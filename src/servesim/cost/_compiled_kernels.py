"""The numba-compiled functions behind :mod:`servesim.cost.compiled` (imported only from there,
once numba is known to be installed). Each mirrors a piece of ``step.py`` / ``features.py`` /
``kernels.py``; the comments name which."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from servesim.cost import features as _F
from servesim.cost.kernels import GRID_PER_OCTAVE as _GRID_PER_OCTAVE
from servesim.cost.step import QUERY_TILE as _QUERY_TILE
from servesim.cost.step import reread_miss as _step_reread_miss
from servesim.cost.step import walk_factor as _step_walk_factor

ONE, B, T, T_A, T_R, P, K = _F.ONE, _F.B, _F.T, _F.T_A, _F.T_R, _F.P, _F.K
P_A, K_A, D_EXP, M_EXP = _F.P_A, _F.K_A, _F.D_EXP, _F.M_EXP
I_B, I_T, I_TA, I_TR = _F.I_B, _F.I_T, _F.I_TA, _F.I_TR
NUM_FEATURES = _F.NUM_FEATURES
QUERY_TILE = float(_QUERY_TILE)
GRID_PER_OCTAVE = float(_GRID_PER_OCTAVE)


@njit(cache=True)
def _numpy_sum(a):
    """``np.add.reduce`` of a contiguous 1-D float array of at most ``compiled.MAX_SUMMED``
    values, in numpy's order: its pairwise sum (eight partial sums, then the rest one by one),
    started from the identity."""
    n = a.shape[0]
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return 0.0 + res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    end8 = n - n % 8
    while i < end8:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i]
        i += 1
    return 0.0 + res


@njit(cache=True)
def _bisect_right(xs, x):
    """``bisect.bisect_right`` (the first index whose value is above ``x``)."""
    lo, hi = 0, xs.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if x < xs[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True)
def _interp(x, xp, fp, left, right):
    """``np.interp(x, xp, fp, left, right)`` for one float ``x``, numpy's arithmetic: its
    slope between the two points around ``x``, and its exact-hit and last-point cases."""
    n = xp.shape[0]
    if x < xp[0]:
        return left
    if x > xp[n - 1]:
        return right
    j = _bisect_right(xp, x) - 1
    if j >= n - 1:
        return fp[n - 1]
    if xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    out = slope * (x - xp[j]) + fp[j]
    if out != out:  # (numpy's second try from the right, for infinite slopes)
        out = slope * (x - xp[j + 1]) + fp[j + 1]
        if out != out and fp[j] == fp[j + 1]:
            out = fp[j]
    return out


@njit(cache=True)
def _moe(tokens, floats, f):
    """``FeatureMap.moe_features`` of ``tokens`` into ``f`` (D_EXP, M_EXP)."""
    experts, k, ep, moe_load = floats[2], floats[3], floats[4], floats[5]
    load = tokens * moe_load
    hit = experts * (1.0 - (1.0 - k / experts) ** load)
    if hit <= 0.0:
        f[D_EXP] = 0.0
        f[M_EXP] = 0.0
    else:
        f[D_EXP] = hit / ep
        f[M_EXP] = load * k / hit


@njit(cache=True)
def _step_features(new_tokens, context, pad, has_moe, floats):
    """``FeatureMap.step`` of a model without sliding windows or MLA absorption, with ``pad``
    more rows of one token over an empty context (integer sums: exact in any order)."""
    nn = float(pad)
    nc = 0.0
    tokens = float(pad)
    sum_c = 0.0
    for i in range(new_tokens.shape[0]):
        n = float(new_tokens[i])
        c = float(context[i])
        nn += n * n
        nc += n * c
        tokens += n
        sum_c += c
    f = np.zeros(NUM_FEATURES)
    f[ONE] = 1.0
    f[B] = float(new_tokens.shape[0] + pad)
    f[T] = tokens
    f[I_B] = 1.0
    f[I_T] = 1.0 if tokens > 0 else 0.0
    f[T_R] = tokens
    f[P] = nc + 0.5 * (nn + tokens)
    f[K] = sum_c + tokens
    f[I_TR] = 1.0 if tokens > 0 else 0.0
    if has_moe:
        _moe(tokens, floats, f)
    return f


@njit(cache=True)
def _product(f, hot):
    """``f @ hot`` for one feature vector, feature by feature (``step.hot_product``)."""
    cols = hot.shape[1]
    x = np.zeros(cols)
    for i in range(hot.shape[0]):
        fi = f[i]
        if fi != 0.0:
            for j in range(cols):
                x[j] += fi * hot[i, j]
    return x


@njit(cache=True)
def _step_product(f, hot, ints):
    """A step's product with ``hot`` as ``StepCostModel.seconds_from_features`` takes it: the
    product of its features but the ones a decode span varies (``ints[7:7 + ints[6]]``,
    ascending), plus each of those terms in that order (``step.span_hot_product``)."""
    num_varying = ints[6]
    fixed = f.copy()
    for v in range(num_varying):
        fixed[ints[7 + v]] = 0.0
    x = _product(fixed, hot)
    for v in range(num_varying):
        i = ints[7 + v]
        fi = f[i]
        for c in range(x.shape[0]):
            x[c] += fi * hot[i, c]
    return x


@njit(cache=True)
def _ramp_factor_one(f, feature, per_token, xs, ys):
    """``DecodeRamp.factors_one`` for one column."""
    steps = max(f[ONE], 1.0)
    b = f[feature] / steps * per_token
    return _interp(math.log10(b) if b > 1.0 else 0.0, xs, ys, 1.0, 1.0)


_walk_factor = njit(cache=True)(_step_walk_factor)
"""``step.walk_factor``, compiled from the reference's own code (plain float arithmetic)."""

_reread_miss = njit(cache=True)(_step_reread_miss)
"""``step.reread_miss``, compiled from the reference's own code."""


@njit(cache=True)
def _serial_extra(f, row, factor):
    """Seconds ``DecodeRamp.stretch_one`` adds to a column for its serial walk (``row``: the
    column's ramp row, ``factor``: its ramp stretch); 0 where it does not walk."""
    mode = row[3]
    if mode == 0.0 or (mode == 1.0 and f[T] <= f[B]):
        return 0.0
    steps = max(f[ONE], 1.0)
    walk = _walk_factor(f[B] / steps, row[4], row[5], row[6])
    misses = row[8] * _reread_miss(f[int(row[1])] / steps, row[9])
    extra = max(walk - factor, misses)
    if extra <= 0.0:
        return 0.0
    return f[int(row[1])] * row[7] * extra


@njit(cache=True)
def _curves_total(f, sum_features, sum_tables):
    """``MeasuredCurves.total``."""
    last = sum_tables.shape[1] - 1
    steps = max(f[ONE], 1.0)
    out = 0.0
    for s in range(sum_features.shape[0]):
        x = f[sum_features[s]] / steps
        if x <= 0.0:
            continue
        pos = min(max(math.log2(x) * GRID_PER_OCTAVE, 0.0), float(last))
        i = min(int(pos), last - 1)
        w = pos - i
        out += sum_tables[s, i] * (1.0 - w) + sum_tables[s, i + 1] * w
    return out * steps


@njit(cache=True)
def _curve_seconds(f, sec, curve_cols, curve_features, curve_table, grid):
    """``sec[curve_cols] = MeasuredCurves.seconds_one(f)`` (and ``seconds`` of one row);
    ``grid``: ``LOG_M_GRID`` over the grid's indices (the curve position's interpolation)."""
    steps = max(f[ONE], 1.0)
    last = curve_table.shape[0] - 2
    for c in range(curve_cols.shape[0]):
        x = f[curve_features[c]] / steps
        if x > 0:
            p = _interp(math.log(max(x, 1.0)), grid[0], grid[1], 0.0, last + 1.0)
            i = min(int(p), last)
            w = p - i
            sec[curve_cols[c]] = (curve_table[i, c] * (1.0 - w) + curve_table[i + 1, c] * w) * steps
        else:
            sec[curve_cols[c]] = 0.0 * steps


@njit(cache=True)
def seconds_one(
    f, hot, ints, floats, occ_cols, ramp, ramp_xs, ramp_ys, sum_features, sum_tables,
    curve_cols, curve_features, curve_table, grid,
):  # fmt: skip
    """``StepCostModel.seconds_from_features`` of one feature vector on the hot path."""
    k, occ, eager, overlap, has_occ, has_curves = (
        ints[0], ints[1], ints[2], ints[3], ints[4], ints[5]
    )  # fmt: skip
    x = _step_product(f, hot, ints)
    comp = x[:k].copy()
    if has_occ and f[T_R] > f[B]:
        fill, power = floats[0], floats[1]
        steps = max(f[ONE], 1.0)
        tiles = f[T_R] / steps / QUERY_TILE + f[B] / steps
        short = fill / max(tiles, 1.0)
        if power == 0.0:
            stretch = max(short, 1.0) - 1.0
        else:
            stretch = (1.0 + short**power) ** (1.0 / power) - 1.0
        if stretch > 0.0:
            for j in range(occ_cols.shape[0]):
                comp[occ_cols[j]] += x[occ + j] * stretch
    mem = x[k : 2 * k].copy()
    for r in range(ramp.shape[0]):
        factor = _ramp_factor_one(f, int(ramp[r, 1]), ramp[r, 2], ramp_xs, ramp_ys)
        if factor != 1.0:
            mem[int(ramp[r, 0])] *= factor
        mem[int(ramp[r, 0])] += _serial_extra(f, ramp[r], factor)
    sec = np.maximum(comp, mem)
    total = _curves_total(f, sum_features, sum_tables) if has_curves and not eager else 0.0
    return _finish(
        f, x, sec, k, eager, overlap, has_curves, total, curve_cols, curve_features, curve_table,
        grid,
    )  # fmt: skip


@njit(cache=True)
def _finish(
    f, x, sec, k, eager, overlap, has_curves, curves_total, curve_cols, curve_features,
    curve_table, grid,
):  # fmt: skip
    """A step's seconds from its operators' ``max(compute, memory)`` seconds ``sec`` (changed
    in place) and its product ``x``: the measured curves (their sum ``curves_total`` with CUDA
    graphs; without, each curve in its operator's place, then the kernel-issue floor), the GPU
    sum, and the host terms (``StepCostModel._combine``)."""
    if not eager:
        gpu = _numpy_sum(sec)
        if has_curves:
            gpu += curves_total
    else:
        if has_curves:
            _curve_seconds(f, sec, curve_cols, curve_features, curve_table, grid)
        for j in range(k):
            sec[j] = max(sec[j], x[2 * k + j])
        gpu = _numpy_sum(sec)
    over, host = x[x.shape[0] - 2], x[x.shape[0] - 1]
    if overlap:
        return max(gpu, host) + over
    return gpu + host + over


@njit(cache=True)
def _model(packed, layout):
    """The model's 13 arrays, in the order ``seconds_one`` takes them (hot, ints, floats,
    occupancy columns, ramp rows, ramp xs, ramp ys, summed features, summed tables, curve
    columns, curve features, curve table, grid; ``compiled._pack`` packs them), as views of
    ``packed`` (every float array, flat) and ``layout`` (each array's offset, rows and columns,
    then every integer array): two arguments a call instead of thirteen, each array argument
    costing a kernel call ~50 ns to check."""
    o = layout  # (array j: offset o[3j], rows o[3j + 1], columns o[3j + 2])
    return (
        packed[o[0] : o[0] + o[1] * o[2]].reshape((o[1], o[2])),
        layout[o[3] : o[3] + o[4]],
        packed[o[6] : o[6] + o[7]],
        layout[o[9] : o[9] + o[10]],
        packed[o[12] : o[12] + o[13] * o[14]].reshape((o[13], o[14])),
        packed[o[15] : o[15] + o[16]],
        packed[o[18] : o[18] + o[19]],
        layout[o[21] : o[21] + o[22]],
        packed[o[24] : o[24] + o[25] * o[26]].reshape((o[25], o[26])),
        layout[o[27] : o[27] + o[28]],
        layout[o[30] : o[30] + o[31]],
        packed[o[33] : o[33] + o[34] * o[35]].reshape((o[34], o[35])),
        packed[o[36] : o[36] + o[37] * o[38]].reshape((o[37], o[38])),
    )


@njit(cache=True)
def seconds_packed(f, packed, layout):
    """:func:`seconds_one` of the packed model (:func:`_model`)."""
    hot, ints, floats, occ_cols, ramp, ramp_xs, ramp_ys, sum_features, sum_tables, curve_cols, \
        curve_features, curve_table, grid = _model(packed, layout)  # fmt: skip
    return seconds_one(
        f, hot, ints, floats, occ_cols, ramp, ramp_xs, ramp_ys, sum_features, sum_tables,
        curve_cols, curve_features, curve_table, grid,
    )  # fmt: skip


@njit(cache=True)
def step_into(new_tokens, context, pad, has_moe, packed, layout, features):
    """The seconds of one step (``StepCostModel.step_with_features``), its features written
    into row 0 of ``features`` (the caller's buffer: an array returned costs ~0.5 µs to box)."""
    hot, ints, floats, occ_cols, ramp, ramp_xs, ramp_ys, sum_features, sum_tables, curve_cols, \
        curve_features, curve_table, grid = _model(packed, layout)  # fmt: skip
    f = features[0]
    f[:] = _step_features(new_tokens, context, pad, has_moe, floats)
    return seconds_one(
        f, hot, ints, floats, occ_cols, ramp, ramp_xs, ramp_ys, sum_features, sum_tables,
        curve_cols, curve_features, curve_table, grid,
    )  # fmt: skip


@njit(cache=True)
def span_into(
    context, num_steps, pad, start, given, absorbed, has_moe, packed, layout, seconds, ends,
    features,
):  # fmt: skip
    """A decode span starting at ``start`` (``StepCostModel.decode_span_with_features``)
    written into the caller's buffers (at least ``num_steps`` rows each): each step's seconds,
    its end (``start`` plus the steps so far, added one at a time as step-by-step simulation
    adds them) and its features (``given``: the features when the caller computed them, a
    sliding-window model; else empty and computed here; ``pad`` more rows of one token over an
    empty context at every step). Returns the last step's end."""
    end, _ = span_steps_into(
        context, 0, num_steps, pad, start, math.inf, 0, given, absorbed, has_moe, packed,
        layout, seconds, ends, features,
    )  # fmt: skip
    return end


@njit(cache=True)
def _decode_row(f, j, sum_c, real, rows, pad, absorbed, has_moe, floats):
    """Step ``j``'s features of a decode span (``StepCostModel.decode_span_with_features``'
    row ``j``) into ``f``: ``real`` rows (``sum_c`` context tokens summed at the span's start)
    and ``pad`` padded ones, ``rows`` in all."""
    f[:] = 0.0
    f[ONE] = 1.0
    f[I_B] = 1.0
    f[I_T] = 1.0
    f[B] = rows
    f[T] = rows
    span = sum_c + real * (j + 1.0) + float(pad)  # (a padded row reads its one key)
    if absorbed:
        f[T_A] = rows
        f[I_TA] = 1.0
        f[P_A] = span
        f[K_A] = span
    else:
        f[T_R] = rows
        f[I_TR] = 1.0
        f[P] = span
        f[K] = span
    if has_moe:
        _moe(rows, floats, f)


@njit(cache=True)
def span_steps_into(
    context, first, num_steps, pad, start, horizon, extra, given, absorbed, has_moe, packed,
    layout, seconds, ends, features,
):  # fmt: skip
    """:func:`span_into` from step ``first`` on (``start``: when step ``first`` starts, the
    end of step ``first - 1``, s), stopping ``extra`` steps after the first one that ends at
    or after ``horizon`` (s; ``math.inf``: every step to ``num_steps``). Returns (the last
    priced step's end, the steps priced from the span's first: ``num_steps`` or fewer). Steps
    priced in several calls get the bits one call gives: each step's seconds depend on its
    index alone, each end is the previous one plus its seconds."""
    hot, ints, floats, occ_cols, ramp, ramp_xs, ramp_ys, sum_features, sum_tables, curve_cols, \
        curve_features, curve_table, grid = _model(packed, layout)  # fmt: skip
    k, eager, overlap, has_curves = ints[0], ints[2], ints[3], ints[5]
    real = float(context.shape[0])
    rows = real + float(pad)
    sum_c = 0.0
    for i in range(context.shape[0]):
        sum_c += float(context[i])
    given_rows = given.shape[0] > 0
    # (The first step's features: the curves' total and the steps' common product read them.)
    f0 = np.empty(features.shape[1])
    if given_rows:
        f0[:] = given[0]
    else:
        _decode_row(f0, 0, sum_c, real, rows, pad, absorbed, has_moe, floats)
    total = _curves_total(f0, sum_features, sum_tables) if has_curves and not eager else 0.0
    # Only the pairs and KV-token features (a sliding window's too) change from step to
    # step: the product of the others is taken once, and each step adds those few columns'
    # terms, as a step alone is priced (``_step_product``).
    varying = ints[7 : 7 + ints[6]]
    fixed = f0.copy()
    for i in varying:
        fixed[i] = 0.0
    base = _product(fixed, hot)
    # The product's columns a varying feature reaches (a model has ~30, those few of them):
    # the others keep ``base`` at every step (adding 0.0 leaves a sum the same bits).
    width = base.shape[0]
    reached = np.zeros(width, np.bool_)
    for i in varying:
        for c in range(width):
            if hot[i, c] != 0.0:
                reached[c] = True
    touched = np.flatnonzero(reached)
    # The operators whose seconds can change: a reached compute or memory column, or a ramp's.
    live = np.zeros(k, np.bool_)
    for c in range(k):
        live[c] = reached[c] or reached[k + c]
    for r in range(ramp.shape[0]):
        live[int(ramp[r, 0])] = True
    live_ops = np.flatnonzero(live)
    steady = np.empty(k)  # (the seconds of the others, as every step finds them)
    for c in range(k):
        steady[c] = max(base[c], base[k + c])
    sec = np.empty(k)
    mem = np.empty(k)
    x = base.copy()
    end = start
    for j in range(first, num_steps):
        fj = features[j]
        if given_rows:
            fj[:] = given[j]
        else:
            _decode_row(fj, j, sum_c, real, rows, pad, absorbed, has_moe, floats)
        for c in touched:
            xc = base[c]
            for i in varying:
                xc += fj[i] * hot[i, c]
            x[c] = xc
        sec[:] = steady
        for c in live_ops:
            mem[c] = x[k + c]
        for r in range(ramp.shape[0]):
            per_call = fj[int(ramp[r, 1])] * ramp[r, 2]
            one = fj[ONE]
            if one > 1.0:
                per_call /= max(one, 1.0)
            factor = _interp(math.log10(max(per_call, 1.0)), ramp_xs, ramp_ys, 1.0, 1.0)
            mem[int(ramp[r, 0])] *= factor
            mem[int(ramp[r, 0])] += _serial_extra(fj, ramp[r], factor)
        for c in live_ops:
            sec[c] = max(x[c], mem[c])
        seconds[j] = _finish(
            fj, x, sec, k, eager, overlap, has_curves, total, curve_cols, curve_features,
            curve_table, grid,
        )  # fmt: skip
        # (Each end the previous plus this step, as step-by-step simulation adds them.)
        end += seconds[j]
        ends[j] = end
        if end >= horizon and j + 1 + extra < num_steps:
            num_steps = j + 1 + extra
        if j + 1 >= num_steps:
            return end, j + 1
    return end, num_steps
