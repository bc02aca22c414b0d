"""Summary metrics of a run, with vLLM ``bench serve`` names and definitions.

- TTFT: first token time − arrival.
- TPOT: per request, (E2EL − TTFT) / (output tokens − 1); requests with one output token are
  left out; then aggregated over requests.
- ITL: every gap between consecutive tokens of a request, pooled over all requests. The engine
  records gaps as (value, weight) pairs; percentiles here equal ``np.percentile`` over the
  expanded list of gaps exactly.
- E2EL: finish − arrival.
- goodput: requests meeting every given SLO, per second of run duration.
- duration: from the first arrival to the last finish.

All latencies are reported in milliseconds (``*_ms``), throughputs per second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 99)

LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
"""The latency metrics, in vLLM ``bench serve``'s order (``--percentile-metrics``)."""


@dataclass(frozen=True)
class SLO:
    """Latency targets, milliseconds; None = no target on that metric."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """``np.percentile(np.repeat(values, weights), q)`` (linear method) without expanding."""
    return weighted_percentiles(values, weights, (q,))[0]


def weighted_percentiles(
    values: np.ndarray, weights: np.ndarray, qs: tuple[float, ...], scale: float = 1.0
) -> list[float]:
    """:func:`weighted_percentile` for several ``qs`` at once, of ``values × scale``.

    Up to :data:`_SORT_LIMIT` pairs: one stable argsort (24 bytes a pair of scratch: the order,
    the sorted values, the cumulative weights). Above it (a million requests' inter-token gaps
    are tens of millions of pairs) the expanded ranks are selected exactly, chunk by chunk, in
    bounded memory (:func:`_values_at_ranks`); both give the same numbers.
    """
    if len(values) == 0:
        return [float("nan")] * len(qs)
    n = int(_sum_int(weights))
    ranks = []
    for q in qs:
        pos = q / 100.0 * (n - 1)
        lo = int(np.floor(pos))
        ranks.append((pos, lo, min(lo + 1, n - 1)))
    wanted = sorted({k for _, lo, hi in ranks for k in (lo, hi)})
    if len(values) <= _SORT_LIMIT:
        at = dict(zip(wanted, _sorted_ranks(values, weights, wanted), strict=True))
    else:
        at = _values_at_ranks(values, weights, wanted)
    out = []
    for pos, lo, hi in ranks:
        v_lo, v_hi = at[lo] * scale, at[hi] * scale
        out.append(float(v_lo + (v_hi - v_lo) * (pos - lo)))
    return out


_SORT_LIMIT = 1 << 22
"""Pairs up to which percentiles sort everything at once (about 100 MB of scratch)."""

_CHUNK = 1 << 20
"""Pairs a streamed pass reads at a time."""


def _sum_int(weights: np.ndarray) -> int:
    return sum(int(np.add.reduce(weights[i : i + _CHUNK], dtype=np.int64))
               for i in range(0, len(weights), _CHUNK))  # fmt: skip


def _sorted_ranks(values: np.ndarray, weights: np.ndarray, ranks: list[int]) -> list[np.float64]:
    """Values at expanded sorted ``ranks`` (ascending), from one stable sort."""
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    cum = np.asarray(weights, dtype=np.int64)[order]
    del order
    np.cumsum(cum, out=cum)
    # Sorted expanded index k holds v[first j with cum[j] > k].
    return list(v[np.searchsorted(cum, ranks, side="right")])


_DIGIT = 16
_SIGN = np.uint64(1 << 63)


def _keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integers ordered as the float64 ``values`` (NaN last, as a sort puts it)."""
    bits = np.asarray(values, dtype=np.float64).view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def _values_at_ranks(values: np.ndarray, weights: np.ndarray, ranks: list[int]) -> dict:
    """``{k: value at expanded sorted rank k}`` without sorting: a most-significant-digit radix
    select over the values' ordered bit patterns, 16 bits a pass, each pass streaming the
    pairs in chunks; once a rank's digit prefix holds few pairs they are gathered and sorted.
    Exact (weights are summed as float64: exact below 2**53)."""
    # Each open search: [rank within the prefix, prefix, digits fixed, pairs under the prefix].
    open_ = {k: [k, 0, 0, len(values)] for k in ranks}
    found: dict[int, np.float64] = {}
    while open_:
        groups: dict[tuple[int, int], list[int]] = {}
        for k, (_, prefix, depth, _) in open_.items():
            groups.setdefault((prefix, depth), []).append(k)
        hist = {g: (np.zeros(1 << _DIGIT), np.zeros(1 << _DIGIT, np.int64)) for g in groups
                if open_[groups[g][0]][3] > _SORT_LIMIT // 4 and g[1] < 64 // _DIGIT}  # fmt: skip
        gathered: dict[tuple[int, int], list] = {g: [] for g in groups if g not in hist}
        for i in range(0, len(values), _CHUNK):
            keys = _keys(values[i : i + _CHUNK])
            w = weights[i : i + _CHUNK]
            for prefix, depth in groups:
                if depth:
                    mask = (keys >> np.uint64(64 - _DIGIT * depth)) == np.uint64(prefix)
                    k_in, w_in = keys[mask], w[mask]
                else:
                    mask, k_in, w_in = None, keys, w
                if (prefix, depth) in hist:
                    shift = np.uint64(64 - _DIGIT * (depth + 1))
                    digit = ((k_in >> shift) & np.uint64((1 << _DIGIT) - 1)).astype(np.intp)
                    by_weight, by_count = hist[prefix, depth]
                    by_weight += np.bincount(digit, weights=w_in, minlength=1 << _DIGIT)
                    by_count += np.bincount(digit, minlength=1 << _DIGIT)
                else:
                    v = values[i : i + _CHUNK]
                    gathered[prefix, depth].append((v if mask is None else v[mask], w_in))
        for g, ks in groups.items():
            if g in hist:
                by_weight, by_count = hist[g]
                cum = np.cumsum(by_weight)
                for k in ks:
                    rank = open_[k][0]
                    b = int(np.searchsorted(cum, rank, side="right"))
                    below = float(cum[b - 1]) if b else 0.0
                    open_[k] = [rank - below, (g[0] << _DIGIT) | b, g[1] + 1, int(by_count[b])]
                continue
            v = np.concatenate([p[0] for p in gathered[g]])
            w = np.concatenate([p[1] for p in gathered[g]])
            local = [int(open_[k][0]) for k in ks]
            for k, value in zip(ks, _sorted_ranks(v, w, local), strict=True):
                found[k] = value
                del open_[k]
    return found


def _stats(prefix: str, values_s: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """mean/median/std/p90/p99 of ``values_s`` (seconds) as ``{stat}_{prefix}_ms``."""
    out: dict[str, float] = {}
    if weights is None:
        weights = np.ones(len(values_s), dtype=np.int64)
    total = _sum_int(weights) if len(weights) else 0
    if total == 0:
        mean = std = float("nan")
    else:
        # NOTE: the same arithmetic as ``(ms * w).sum()`` and ``((ms − mean)² · w).sum()``,
        # a chunk at a time (tens of millions of gaps: each temporary is hundreds of MB),
        # summed in numpy's own pairwise order, so the result is the whole-array one.
        def ms(a: int, b: int) -> np.ndarray:
            return np.asarray(values_s[a:b], dtype=np.float64) * 1000.0

        def weighted(a: int, b: int) -> np.float64:
            return np.add.reduce(np.multiply(ms(a, b), weights[a:b]))

        mean = float(pairwise_sum(len(values_s), weighted) / total)

        def squares(a: int, b: int) -> np.float64:
            scratch = np.subtract(ms(a, b), mean)
            np.square(scratch, out=scratch)
            np.multiply(scratch, weights[a:b], out=scratch)
            return np.add.reduce(scratch)

        std = float(np.sqrt(pairwise_sum(len(values_s), squares) / total))
    # Selecting in the seconds selects in the milliseconds too (× 1000 keeps the order; values
    # that become equal in ms sit together either way).
    median, *tail = weighted_percentiles(values_s, weights, PERCENTILES, scale=1000.0)
    out[f"mean_{prefix}_ms"] = mean
    out[f"median_{prefix}_ms"] = median
    out[f"std_{prefix}_ms"] = std
    for p, value in zip(PERCENTILES[1:], tail, strict=True):
        out[f"p{p}_{prefix}_ms"] = value
    return out


def pairwise_sum(n: int, leaf_sum, leaf: int = 0, start: int = 0):
    """``np.add.reduce`` of an ``n``-long float64 array, given ``leaf_sum(a, b)``, the reduce
    of its items ``a:b`` (or an array of several such sums, added element by element).

    numpy sums a contiguous array pairwise: it halves a range longer than 128 items, rounded
    down to a multiple of 8, and adds the halves. Summing ranges of at most ``leaf`` items
    (default :data:`_CHUNK`; more than 128) along the same split gives the whole array's sum
    bit for bit, without the whole array.
    """
    leaf = leaf or _CHUNK
    assert leaf > 128, "numpy sums up to 128 items in one unrolled loop"
    if n <= leaf:
        return leaf_sum(start, start + n)
    half = n // 2
    half -= half % 8
    return pairwise_sum(half, leaf_sum, leaf, start) + pairwise_sum(
        n - half, leaf_sum, leaf, start + half
    )


def summarize(
    requests: dict[str, np.ndarray],
    itl_values: np.ndarray,
    itl_weights: np.ndarray,
    slo: SLO = SLO(),
) -> dict[str, float | int]:
    """Metrics from per-request columns (see ``RunRecords.request_columns``) and pooled ITLs."""
    arrival = requests["arrival_s"]
    finish = requests["finish_s"]
    n_in = requests["input_tokens"]
    n_out = requests["output_tokens"]
    completed = len(arrival)
    duration = float(finish.max() - arrival.min()) if completed else 0.0
    ttft, tpot, e2el = _request_latencies(requests)
    multi = n_out > 1

    out: dict[str, float | int] = {
        "completed": completed,
        "duration": duration,
        "total_input_tokens": int(n_in.sum()),
        "total_output_tokens": int(n_out.sum()),
        "request_throughput": completed / duration if duration > 0 else float("nan"),
        "output_throughput": float(n_out.sum()) / duration if duration > 0 else float("nan"),
        "total_token_throughput": (
            float(n_in.sum() + n_out.sum()) / duration if duration > 0 else float("nan")
        ),
    }
    if slo.any:
        good = np.ones(completed, dtype=bool)
        if slo.ttft_ms is not None:
            good &= ttft * 1000.0 <= slo.ttft_ms
        if slo.tpot_ms is not None:
            tpot_all = np.where(multi, (e2el - ttft) / np.maximum(n_out - 1, 1), 0.0)
            good &= tpot_all * 1000.0 <= slo.tpot_ms
        if slo.e2el_ms is not None:
            good &= e2el * 1000.0 <= slo.e2el_ms
        out["goodput"] = int(good.sum()) / duration if duration > 0 else float("nan")
        out["good_requests"] = int(good.sum())
    out.update(_stats("ttft", ttft))
    out.update(_stats("tpot", tpot))
    out.update(_stats("itl", itl_values, itl_weights))
    out.update(_stats("e2el", e2el))
    return out


def _request_latencies(requests: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Per-request TTFT and E2EL, and TPOT of the requests with more than one output token,
    seconds."""
    arrival, n_out = requests["arrival_s"], requests["output_tokens"]
    ttft = requests["first_token_s"] - arrival
    e2el = requests["finish_s"] - arrival
    multi = n_out > 1
    return ttft, (e2el[multi] - ttft[multi]) / (n_out[multi] - 1), e2el


def percentile_name(q: float) -> str:
    """vLLM's spelling of a percentile in a metric name: ``99`` -> ``p99``, ``99.9`` ->
    ``p99.9``."""
    return f"p{int(q)}" if float(q).is_integer() else f"p{q:g}"


def latency_percentiles(
    requests: dict[str, np.ndarray],
    itl_values: np.ndarray,
    itl_weights: np.ndarray,
    metrics: tuple[str, ...],
    qs: tuple[float, ...],
) -> dict[str, float]:
    """``{p}_{metric}_ms`` for every metric of :data:`LATENCY_METRICS` in ``metrics`` and every
    percentile in ``qs`` (vLLM ``--metric-percentiles``): e.g. ``p99.9_ttft_ms``."""
    ttft, tpot, e2el = _request_latencies(requests)
    values = {"ttft": (ttft, None), "tpot": (tpot, None), "e2el": (e2el, None),
              "itl": (itl_values, itl_weights)}  # fmt: skip
    out: dict[str, float] = {}
    for metric in metrics:
        v, w = values[metric]
        w = np.ones(len(v), dtype=np.int64) if w is None else w
        for q, value in zip(qs, weighted_percentiles(v, w, qs, scale=1000.0), strict=True):
            out[f"{percentile_name(q)}_{metric}_ms"] = value
    return out
