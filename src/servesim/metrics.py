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
    """:func:`weighted_percentile` for several ``qs`` from one sort (the sort is the cost:
    a million requests' inter-token gaps are tens of millions of pairs), of ``values × scale``.

    NOTE: memory is the other cost: besides the inputs it holds the sort order, the sorted
    values and the cumulative weights (24 bytes a pair), nothing more.
    """
    if len(values) == 0:
        return [float("nan")] * len(qs)
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    if scale != 1.0:
        np.multiply(v, scale, out=v)
    cum = np.asarray(weights, dtype=np.int64)[order]
    del order
    np.cumsum(cum, out=cum)
    n = int(cum[-1])
    out = []
    for q in qs:
        pos = q / 100.0 * (n - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        # Sorted expanded index k holds v[first j with cum[j] > k].
        v_lo = v[np.searchsorted(cum, lo, side="right")]
        v_hi = v[np.searchsorted(cum, hi, side="right")]
        out.append(float(v_lo + (v_hi - v_lo) * (pos - lo)))
    return out


def _stats(prefix: str, values_s: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """mean/median/std/p90/p99 of ``values_s`` (seconds) as ``{stat}_{prefix}_ms``."""
    out: dict[str, float] = {}
    if weights is None:
        weights = np.ones(len(values_s), dtype=np.int64)
    total = int(weights.sum()) if len(weights) else 0
    if total == 0:
        mean = std = float("nan")
    else:
        # NOTE: the same arithmetic as ``(ms * w).sum()`` and ``((ms − mean)² · w).sum()``,
        # in one scratch array (tens of millions of gaps: each temporary is hundreds of MB).
        ms = np.asarray(values_s, dtype=np.float64) * 1000.0
        scratch = np.multiply(ms, weights)
        mean = float(scratch.sum() / total)
        np.subtract(ms, mean, out=scratch)
        del ms
        np.square(scratch, out=scratch)
        np.multiply(scratch, weights, out=scratch)
        std = float(np.sqrt(scratch.sum() / total))
        del scratch
    # Sorting the seconds orders the milliseconds too (× 1000 keeps the order; values that
    # become equal in ms sit together either way).
    median, *tail = weighted_percentiles(values_s, weights, PERCENTILES, scale=1000.0)
    out[f"mean_{prefix}_ms"] = mean
    out[f"median_{prefix}_ms"] = median
    out[f"std_{prefix}_ms"] = std
    for p, value in zip(PERCENTILES[1:], tail, strict=True):
        out[f"p{p}_{prefix}_ms"] = value
    return out


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
