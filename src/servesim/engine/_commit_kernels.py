"""numba-compiled token commits for :meth:`Instance.complete_step
<servesim.engine.instance.Instance.complete_step>` (the ``compiled`` option; imported only
when it is on). Each function does, in one call on the running table, what one branch of
``complete_step`` does with ten to fifteen numpy calls: the same integers, the same gaps in the
same order, the same ``_fold_gaps`` pairs. ``table`` is ``RunningTable.int_buffer`` (all its
capacity; the first ``n`` columns are live), ``last`` its ``last_buffer``."""

from __future__ import annotations

import numpy as np
from numba import njit

from servesim.engine.running import COMPUTED, MAX_OUT, NBLOCKS, NSHARED, PROMPT, SHAREABLE, TOKENS


@njit(cache=True)
def fold_gaps(gaps, num_gaps, step_s, values, weights, pos):
    """``instance._fold_gaps`` of the first ``num_gaps`` of ``gaps``, written into ``values``
    and ``weights`` from ``pos`` (the run's inter-token log, ``RunRecords.itl_room``, with
    room for ``num_gaps``): gaps equal to the step share one pair, first. Returns the
    position after the last pair written."""
    same = 0
    for i in range(num_gaps):
        if gaps[i] == step_s:
            same += 1
    if same:
        values[pos] = step_s
        weights[pos] = same
        pos += 1
    for i in range(num_gaps):
        if gaps[i] != step_s:
            values[pos] = gaps[i]
            weights[pos] = 1
            pos += 1
    return pos


@njit(cache=True)
def _finished(table, n, done):
    """Marks in ``done`` (a buffer of at least ``n``) the rows whose outputs reached their
    maximum; returns whether there is any. (Written into the caller's buffer: an array
    returned from a kernel costs ~0.5 µs to box.)"""
    any_done = False
    for i in range(n):
        done[i] = table[TOKENS, i] - table[PROMPT, i] >= table[MAX_OUT, i]
        any_done = any_done or done[i]
    return any_done


@njit(cache=True)
def commit_decode_step(table, last, n, end, start, done, values, weights, pos):
    """One decode step of every row (``complete_step``'s first branch): (the position after
    its inter-token pairs, written from ``pos`` as :func:`fold_gaps` writes them, any
    finished), the finished rows marked in ``done``'s first ``n``."""
    gaps = np.empty(n)
    for i in range(n):
        gaps[i] = end - last[i]
        table[COMPUTED, i] += 1
        table[TOKENS, i] += 1
        last[i] = end
    pos = fold_gaps(gaps, n, end - start, values, weights, pos)
    return pos, _finished(table, n, done)


@njit(cache=True)
def commit_mixed_step(
    table, last, n, new_tokens, end, start, done, first, values, weights, pos
):  # fmt: skip
    """One step with prompt work (``complete_step``'s second branch): (the position after its
    inter-token pairs, written from ``pos`` as :func:`fold_gaps` writes them, decode tokens,
    rows that emitted their first token, any finished); those rows are the
    first entries of ``first``, the finished rows marked in ``done``'s first ``n`` (buffers
    of at least ``n``)."""
    gaps = np.empty(n)
    num_gaps = 0
    decode_tokens = 0
    num_first = 0
    for i in range(n):
        need = table[TOKENS, i] - table[COMPUTED, i]
        table[COMPUTED, i] += new_tokens[i]
        emit = new_tokens[i] > 0 and table[COMPUTED, i] == table[TOKENS, i]
        had_output = table[TOKENS, i] > table[PROMPT, i]
        if emit and had_output:
            gaps[num_gaps] = end - last[i]
            num_gaps += 1
            if need == 1:
                decode_tokens += 1
        if emit:
            table[TOKENS, i] += 1
            last[i] = end
            if not had_output:
                first[num_first] = i
                num_first += 1
    pos = fold_gaps(gaps, num_gaps, end - start, values, weights, pos)
    return pos, decode_tokens, num_first, _finished(table, n, done)


@njit(cache=True)
def batch_shape(table, n, new_tokens):
    """What ``Instance.start_step`` reads of a scheduled batch (``new_tokens`` aligned with
    the table's ``n`` rows): (tokens scheduled, rows scheduled, KV context those rows read,
    fewest output tokens of any row, 0 without rows)."""
    num_tokens = 0
    num_rows = 0
    context = 0
    for i in range(min(n, new_tokens.shape[0])):
        t = new_tokens[i]
        if t != 0:
            num_tokens += t
            num_rows += 1
            context += table[COMPUTED, i]
    fewest = 0
    for i in range(n):
        outputs = table[TOKENS, i] - table[PROMPT, i]
        if i == 0 or outputs < fewest:
            fewest = outputs
    return num_tokens, num_rows, context, fewest


@njit(cache=True)
def span_ends(start, durations):
    """When each step of a span starting at ``start`` ends: each the previous end plus its
    duration, the additions step-by-step simulation makes (as ``instance.span_ends``)."""
    ends = np.empty(durations.shape[0])
    end = start
    for j in range(durations.shape[0]):
        end += durations[j]
        ends[j] = end
    return ends


@njit(cache=True)
def remove_rows(table, last, n, drop):
    """``RunningTable.remove``'s compaction: the first ``n`` columns of ``table`` and ``last``
    without those where ``drop`` is True, the others moved up in order."""
    kept = 0
    for i in range(n):
        if drop[i]:
            continue
        if kept != i:
            for c in range(table.shape[0]):
                table[c, kept] = table[c, i]
            last[kept] = last[i]
        kept += 1


@njit(cache=True)
def holds_shared(table, n):
    """Whether any of the ``n`` rows holds shared (content-named) KV blocks."""
    for i in range(n):
        if table[NSHARED, i] > 0:
            return True
    return False


@njit(cache=True)
def sum_steps(features, m):
    """The features of a span's first ``m`` steps summed, in the order numpy's
    ``np.add.reduce(features[:m], axis=0)`` adds them for a C-contiguous array: row by row."""
    out = features[0].copy()
    _add_later_rows(out, features, m)
    return out


@njit(cache=True)
def _add_later_rows(out, features, m):
    """``out`` += rows 1 … ``m - 1`` of ``features``, one row after another (``out`` may be
    row 0 itself)."""
    for j in range(1, m):
        for i in range(out.shape[0]):
            out[i] += features[j, i]


GROW_PRIVATE, GROW_UNLESS_NAMED, GROW_IN_PYTHON = 0, 1, 2
"""How :func:`commit_span` grows the rows' KV blocks: every new block is private (no prefix
caching); private unless a row is still short of its named (shared) blocks, which only the block
manager can give; never (a hybrid layout's sliding-window pages: ``KVBlockManager.blocks_for``)."""


def grow_mode(kv) -> int:
    """How the kernels grow the rows' blocks in the ``KVBlockManager`` ``kv``."""
    if kv.sliding_groups:
        return GROW_IN_PYTHON
    return GROW_UNLESS_NAMED if kv.enable_prefix_caching else GROW_PRIVATE


@njit(cache=True)
def commit_span(
    table, last, n, m, first_end, durations, end, block_size, grow, features, done, values,
    weights, pos,
):  # fmt: skip
    """A decode span of ``m`` steps (``complete_step``'s last branch): (the position after
    its ``n + m - 1`` inter-token pairs, written from ``pos``, KV blocks the rows grew by, any
    finished), the finished rows marked in ``done``'s first ``n`` and the span's ``features``
    summed over its ``m`` steps into their first row, as :func:`sum_steps` adds them (no
    array returned: boxing one costs ~0.5 µs; an empty ``features`` is left alone). The rows'
    block counts grow here as ``grow`` says; where they do not, the blocks grown are -1 and
    the caller grows them."""
    for i in range(n):
        values[pos + i] = first_end - last[i]
        weights[pos + i] = 1
        table[COMPUTED, i] += m
        table[TOKENS, i] += m
        last[i] = end
    for j in range(1, m):
        values[pos + n + j - 1] = durations[j]
        weights[pos + n + j - 1] = n
    grown = -1 if grow == GROW_IN_PYTHON else 0
    if grow == GROW_UNLESS_NAMED:
        for i in range(n):
            if table[SHAREABLE, i] - table[NSHARED, i] > 0:
                grown = -1
                break
    if grown == 0:
        for i in range(n):
            extra = (table[COMPUTED, i] + block_size - 1) // block_size - table[NBLOCKS, i]
            if extra > 0:
                table[NBLOCKS, i] += extra
                grown += extra
    any_done = _finished(table, n, done)
    if features.shape[0]:
        _add_later_rows(features[0], features, m)
    return pos + n + m - 1, grown, any_done


@njit(cache=True)
def last_token_blocks(table, n, block_size):
    """Rows whose last computed token opened a KV block: ``cdiv(c, bs) - cdiv(c - 1, bs)``
    summed over the rows' computed tokens ``c`` (no sliding-window pages)."""
    count = 0
    for i in range(n):
        if (table[COMPUTED, i] - 1) % block_size == 0:
            count += 1
    return count


@njit(cache=True)
def _extra_blocks(table, n, m, block_size):
    """Blocks the rows need beyond those they hold to keep ``m`` more tokens each."""
    total = 0
    for i in range(n):
        extra = (table[COMPUTED, i] + m + block_size - 1) // block_size - table[NBLOCKS, i]
        if extra > 0:
            total += extra
    return total


@njit(cache=True)
def span_steps(table, n, free, block_size, seq_limit):
    """``Instance._span_length`` before its look-ahead test, for a pure-decode batch: (steps
    the batch can run unchanged, steps until its first request finishes) — until a request
    finishes, the KV cache runs out (``_kv_steps``'s search) or, with ``seq_limit`` > 0, a
    sequence outgrows the CUDA graphs."""
    longest = table[MAX_OUT, 0] - (table[TOKENS, 0] - table[PROMPT, 0])
    for i in range(1, n):
        left = table[MAX_OUT, i] - (table[TOKENS, i] - table[PROMPT, i])
        if left < longest:
            longest = left
    if longest <= 1:
        return 1, longest
    span = longest
    if _extra_blocks(table, n, longest, block_size) > free:
        lo, hi = 1, longest
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _extra_blocks(table, n, mid, block_size) <= free:
                lo = mid
            else:
                hi = mid
        span = lo
    if seq_limit > 0 and span > 1:
        top = table[COMPUTED, 0]
        for i in range(1, n):
            top = max(top, table[COMPUTED, i])
        top += 1
        if top <= seq_limit:
            span = min(span, seq_limit - top + 1)
    return span, longest


@njit(cache=True)
def decode_span_plan(table, n, free, block_size, grow):
    """A step at which every one of the ``n`` running rows decodes (nothing waits to be
    admitted), in one call: ``scheduler.schedule``'s reservation of each row's token and KV
    blocks (:func:`reserve_running` with one token a row), ``Instance._batch_shape`` and
    ``_pure_decode``'s test, and ``_span_length`` (:func:`span_steps`, no CUDA-graph length
    limit) on the blocks left. Returns (steps of the span, steps until its first request
    finishes, blocks grown, KV context the first step reads); -1 steps, with nothing changed,
    where that does not apply: a row needs more than one token or has emitted none, or its
    blocks are short (a preemption) or named (``grow``: :func:`commit_span`'s)."""
    total = 0
    context = 0
    for i in range(n):
        if table[TOKENS, i] - table[COMPUTED, i] != 1 or table[TOKENS, i] <= table[PROMPT, i]:
            return -1, 0, 0, 0
        context += table[COMPUTED, i]
        extra = (table[COMPUTED, i] + block_size) // block_size - table[NBLOCKS, i]
        if extra > 0:
            if grow == GROW_UNLESS_NAMED and table[NSHARED, i] < table[SHAREABLE, i]:
                return -1, 0, 0, 0
            total += extra
    if grow == GROW_IN_PYTHON or total > free:
        return -1, 0, 0, 0
    if total:
        for i in range(n):
            extra = (table[COMPUTED, i] + block_size) // block_size - table[NBLOCKS, i]
            if extra > 0:
                table[NBLOCKS, i] += extra
    span, longest = span_steps(table, n, free - total, block_size, 0)
    return span, longest, total, context


@njit(cache=True)
def reserve_running(table, n, budget, block_size, free, grow, new_tokens):
    """The running rows' part of ``scheduler.schedule`` without speculation, a per-request
    token cap or decodes first: each row's need (tokens − computed), its tokens (``_share_budget``
    in row order, written into ``new_tokens``' first ``n``) and their KV blocks
    (``_reserve_blocks`` when every block fits). Returns (needed tokens summed, scheduled tokens
    summed, whether a row takes more than one, blocks grown); the blocks grown are -1 where the
    rows' blocks are left to the caller: a shortage (a preemption), or named blocks still to
    take (``grow`` as :func:`commit_span`'s)."""
    need_total = 0
    for i in range(n):
        need_total += table[TOKENS, i] - table[COMPUTED, i]
    scheduled = 0
    several = False
    if need_total <= budget:
        for i in range(n):
            new_tokens[i] = table[TOKENS, i] - table[COMPUTED, i]
        scheduled = need_total
    else:
        start = 0
        for i in range(n):
            need = table[TOKENS, i] - table[COMPUTED, i]
            got = min(max(budget - start, 0), need)
            new_tokens[i] = int(got)
            start += need
            scheduled += new_tokens[i]
    for i in range(n):
        if new_tokens[i] > 1:
            several = True
            break
    if grow == GROW_IN_PYTHON:
        return need_total, scheduled, several, -1
    total = 0
    named = False
    for i in range(n):
        extra = (table[COMPUTED, i] + new_tokens[i] + block_size - 1) // block_size
        extra -= table[NBLOCKS, i]
        if extra > 0:
            total += extra
            if grow == GROW_UNLESS_NAMED and table[NSHARED, i] < table[SHAREABLE, i]:
                named = True
    if total > free or named:
        return need_total, scheduled, several, -1
    for i in range(n):
        extra = (table[COMPUTED, i] + new_tokens[i] + block_size - 1) // block_size
        extra -= table[NBLOCKS, i]
        if extra > 0:
            table[NBLOCKS, i] += extra
    return need_total, scheduled, several, total


@njit(cache=True)
def reserve_short(table, n, new_tokens, block_size, free, grow, ops):
    """``scheduler._reserve_blocks`` in row order when the rows' blocks do not all fit (the
    shortage :func:`reserve_running` leaves to its caller), for private blocks only: walking
    the rows, those that fit as they are grow in bulk, and a row that does not preempts the
    newest rows until it fits or is itself preempted. The table's block counts grow here;
    what the block manager must do, in order, is written into ``ops`` (at least ``3 n``
    long): a positive count, that many private blocks allocated; -1, the newest row
    preempted. Returns (ops written, rows kept), or (-1, n), with nothing changed, where a
    row still to grow is short of its named blocks (``grow`` as :func:`commit_span`'s), which
    only the block manager can give. (A preempted row frees its table block count: the
    caller sees that no row holds a shared block.)"""
    extra = np.empty(n, np.int64)
    for i in range(n):
        e = (table[COMPUTED, i] + new_tokens[i] + block_size - 1) // block_size
        e -= table[NBLOCKS, i]
        extra[i] = e if e > 0 else 0
        if e > 0 and grow == GROW_UNLESS_NAMED and table[NSHARED, i] < table[SHAREABLE, i]:
            return -1, n
    m = n  # (rows left: preemption takes the newest)
    k = 0
    pos = 0
    while pos < m:
        # The leading rows whose blocks fit, grown together (``_leading_fit``).
        total = 0
        j = pos
        while j < m and total + extra[j] <= free:
            total += extra[j]
            j += 1
        if j > pos:
            if total:
                ops[k] = total
                k += 1
                free -= total
                for r in range(pos, j):
                    table[NBLOCKS, r] += extra[r]
            pos = j
            continue
        i = pos
        pos += 1
        if new_tokens[i] == 0:
            continue
        fitted = True
        while extra[i] > free:
            m -= 1
            ops[k] = -1
            k += 1
            free += table[NBLOCKS, m]
            if m == i:
                fitted = False
                break
        if fitted:
            ops[k] = extra[i]
            k += 1
            free -= extra[i]
            table[NBLOCKS, i] += extra[i]
    return k, m
