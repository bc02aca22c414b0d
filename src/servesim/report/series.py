"""Numbers the report plots, computed from a run's columns: pure numpy, no plotting.

Time series are binned over simulated time with *integrals*, not point samples: a step's
tokens are spread over its duration, a queue's length is averaged over each bin. Short spikes
therefore show up in proportion to how long they last, and a million steps reduce to a few
hundred points without a Python loop over steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.report.data import OP_PREFIX, RunData, request_latencies

#: Most bins a time series is reduced to (points on a line).
MAX_BINS = 200
#: Most points a CDF curve is drawn with.
MAX_CDF_POINTS = 2000


def time_edges(end_s: float, max_bins: int = MAX_BINS) -> np.ndarray:
    """``max_bins + 1`` evenly spaced bin edges (s) from 0 to ``end_s``."""
    end_s = max(float(end_s), 1e-9)
    return np.linspace(0.0, end_s, max_bins + 1)


def binned_amount(
    instance: np.ndarray, start_s: np.ndarray, duration_s: np.ndarray, amount: np.ndarray,
    edges: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Amount landing in each time bin, each step's amount spread evenly over its duration.

    Steps of one instance run one after another, so the cumulative amount of an instance is a
    piecewise-linear function of time: it is evaluated at the bin edges with ``np.interp`` and
    differenced. Divide by the bin width for a rate (tokens/s), or pass ``value × duration``
    as the amount for a time-weighted mean of ``value`` (idle time counting as 0).
    """
    total = np.zeros(len(edges))
    for inst in np.unique(instance):
        rows = np.flatnonzero(instance == inst)
        rows = rows[np.argsort(start_s[rows], kind="stable")]
        start = start_s[rows]
        end = start + duration_s[rows]
        cum = np.cumsum(amount[rows])
        xp = np.empty(2 * len(rows))
        fp = np.empty(2 * len(rows))
        xp[0::2], xp[1::2] = start, end
        fp[0::2], fp[1::2] = cum - amount[rows], cum
        # NOTE: a step may end a rounding error after the next begins; np.interp needs
        # nondecreasing points.
        xp = np.maximum.accumulate(xp)
        total += np.interp(edges, xp, fp, left=0.0, right=cum[-1])
    return np.diff(total)


def _count_integral(times_s: np.ndarray, at_s: np.ndarray) -> np.ndarray:
    """∫₀^t #(events ≤ τ) dτ at each ``at_s``: the area under a counting step function (s)."""
    ordered = np.sort(times_s)
    prefix = np.concatenate(([0.0], np.cumsum(ordered)))
    k = np.searchsorted(ordered, at_s, side="right")
    return k * at_s - prefix[k]


def binned_occupancy(enter_s: np.ndarray, leave_s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean number of items inside [enter, leave) over each time bin (e.g. queued requests)."""
    area = _count_integral(enter_s, edges) - _count_integral(leave_s, edges)
    return np.diff(area) / np.diff(edges)


@dataclass(frozen=True)
class TimeSeries:
    """Per-bin values over simulated time: bin centres (s) and one array per series."""

    t_s: np.ndarray
    prefill_tok_s: np.ndarray
    decode_tok_s: np.ndarray
    queued: np.ndarray
    running: np.ndarray
    kv_usage_mean: np.ndarray
    op_share: dict[str, np.ndarray]


def run_end_s(run: RunData) -> float:
    """Simulated time (s) when the last request finished or the last step ended."""
    ends = [run.requests["finish_s"], run.steps["start_s"] + run.steps["duration_s"]]
    ends = [e for e in ends if len(e)]
    return float(max(e.max() for e in ends)) if ends else 0.0


def time_series(run: RunData, max_bins: int = MAX_BINS) -> TimeSeries:
    """Token throughput, queue length, batch size, KV usage and operator shares over time.

    Throughputs are tokens/s the engine processed (prefill and decode); ``queued`` is the mean
    number of requests waiting for their first scheduling (a preempted request's second wait
    is not in ``requests.csv``); ``running`` is the mean batch size summed over instances;
    ``kv_usage_mean`` the mean over instances of the KV fraction in use; ``op_share`` the
    fraction of each bin's time spent in each ``t_*`` operator group, summed over instances.
    """
    s, r = run.steps, run.requests
    edges = time_edges(run_end_s(run), max_bins)
    width = np.diff(edges)
    inst, start, dur = s["instance"], s["start_s"], s["duration_s"]

    def per_second(amount: np.ndarray) -> np.ndarray:
        return binned_amount(inst, start, dur, amount, edges) / width

    return TimeSeries(
        t_s=(edges[:-1] + edges[1:]) / 2,
        prefill_tok_s=per_second(s["prefill_tokens"]),
        decode_tok_s=per_second(s["decode_tokens"]),
        queued=binned_occupancy(r["arrival_s"], r["first_scheduled_s"], edges),
        running=per_second(s["batch_size"] * dur),
        kv_usage_mean=per_second(s["kv_usage"] * dur) / max(run.num_instances, 1),
        op_share={c: per_second(s[c]) for c in run.op_columns},
    )


def cdf(values: np.ndarray, max_points: int = MAX_CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, cumulative fraction) of the finite values, at most ``max_points`` long."""
    v = np.sort(values[np.isfinite(values)])
    if len(v) == 0:
        return v, v
    frac = np.arange(1, len(v) + 1) / len(v)
    if len(v) > max_points:
        keep = np.unique(np.linspace(0, len(v) - 1, max_points).round().astype(np.int64))
        v, frac = v[keep], frac[keep]
    return v, frac


def op_group_name(column: str) -> str:
    """``t_qkv_o`` → ``qkv_o``: the operator group a ``t_*`` column times."""
    return column[len(OP_PREFIX) :]


def op_breakdown(run: RunData) -> dict[str, dict[str, float]]:
    """Mean time per step (ms) by operator group, for decode-only steps, steps with prefill,
    and all steps: ``{kind: {group: ms}}``. Empty when ``steps.csv`` has no ``t_*`` columns.

    A fast-forwarded span's ``t_*`` values are sums over its steps, so totals are divided by
    ``num_steps`` summed, not by records.
    """
    s = run.steps
    if not run.op_columns:
        return {}
    with_prefill = s["prefill_tokens"] > 0
    kinds = {"decode-only steps": ~with_prefill, "steps with prefill": with_prefill,
             "all steps": np.ones(len(with_prefill), dtype=bool)}  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    for kind, rows in kinds.items():
        n = float(s["num_steps"][rows].sum())
        if n == 0:
            continue
        out[kind] = {op_group_name(c): float(s[c][rows].sum()) / n * 1000.0
                     for c in run.op_columns}  # fmt: skip
    return out


def per_step_ms(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """(mean step time in ms of each record, True where the record has prefill tokens)."""
    s = run.steps
    return s["duration_s"] / np.maximum(s["num_steps"], 1) * 1000.0, s["prefill_tokens"] > 0


def slowest_requests(run: RunData, n: int = 10) -> list[dict[str, float]]:
    """The ``n`` requests with the longest E2EL, slowest first, with their latencies (ms)."""
    r = run.requests
    lat = request_latencies(r)
    order = np.argsort(-lat["e2el_ms"], kind="stable")[:n]
    rows = []
    for i in order.tolist():
        rows.append({
            "request_id": int(r["request_id"][i]),
            "instance": int(r["instance"][i]),
            "arrival_s": float(r["arrival_s"][i]),
            "queued_ms": float(lat["queued_ms"][i]),
            "ttft_ms": float(lat["ttft_ms"][i]),
            "tpot_ms": float(lat["tpot_ms"][i]),
            "e2el_ms": float(lat["e2el_ms"][i]),
            "input_tokens": int(r["input_tokens"][i]),
            "output_tokens": int(r["output_tokens"][i]),
            "cached_tokens": int(r["cached_tokens"][i]),
            "preemptions": int(r["preemptions"][i]),
        })  # fmt: skip
    return rows
