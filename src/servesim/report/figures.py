"""The report's charts as matplotlib figures, and their SVG (inline in the HTML) and PNG forms.

NOTE: one plotting library draws both the HTML's charts (as inline SVG) and ``--png``: the
report needs no JavaScript, no CDN and no second plotting stack, stays a few hundred kB, and
opens anywhere, offline. Interactive exploration of a run is the Perfetto trace's job.
Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot): no global state, no
GUI backend, safe in threads.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from servesim.report import series
from servesim.report.data import RunData, request_latencies

_WIDTH_IN = 10.0
_COLORS = matplotlib.colormaps["tab10"].colors
_LATENCIES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2el", "E2EL"))


def _figure(rows: int, cols: int = 1, height_in: float = 3.2, **kwargs) -> tuple[Figure, list]:
    fig = Figure(figsize=(_WIDTH_IN, height_in * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    for ax in axes.ravel():
        ax.grid(True, alpha=0.3)
    return fig, list(axes.ravel())


def _legend(ax, **kwargs) -> None:
    """A small legend, only when something is labelled (matplotlib warns otherwise)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", **kwargs)


def latency_cdfs(run: RunData) -> Figure:
    """CDFs of per-request TTFT, TPOT and E2EL (ms), with the summary's median and p99 marked."""
    lat = request_latencies(run.requests)
    fig, axes = _figure(1, 3, height_in=3.4)
    for ax, (key, label) in zip(axes, _LATENCIES, strict=True):
        x, y = series.cdf(lat[f"{key}_ms"])
        ax.step(x, y, where="post", color=_COLORS[0])
        for stat, style in (("median", "--"), ("p99", ":")):
            value = run.summary.get(f"{stat}_{key}_ms")
            if value is not None:
                ax.axvline(value, color=_COLORS[3], linestyle=style,
                           label=f"{stat} {value:,.1f} ms")  # fmt: skip
        ax.set_xlabel(f"{label} (ms)")
        ax.set_ylim(0, 1.02)
        _legend(ax, loc="lower right")
    axes[0].set_ylabel("fraction of requests")
    return fig


def throughput_queue(ts: series.TimeSeries) -> Figure:
    """Tokens/s processed (prefill, decode) and requests waiting, over simulated time."""
    fig, (top, bottom) = _figure(2, sharex=True, height_in=2.8)
    top.stackplot(ts.t_s, ts.prefill_tok_s, ts.decode_tok_s, labels=["prefill", "decode"],
                  colors=_COLORS[:2], alpha=0.8)  # fmt: skip
    top.set_ylabel("tokens/s")
    top.legend(loc="upper right", fontsize="small")
    bottom.plot(ts.t_s, ts.queued, color=_COLORS[3])
    bottom.set_ylabel("requests queued")
    bottom.set_xlabel("simulated time (s)")
    return fig


def batch_kv(ts: series.TimeSeries) -> Figure:
    """Running requests (batch size, all instances) and KV cache usage (%), over time."""
    fig, (top, bottom) = _figure(2, sharex=True, height_in=2.8)
    top.plot(ts.t_s, ts.running, color=_COLORS[0])
    top.set_ylabel("running requests")
    bottom.plot(ts.t_s, ts.kv_usage_mean * 100.0, color=_COLORS[2])
    bottom.set_ylabel("KV cache used (%)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("simulated time (s)")
    return fig


def step_breakdown(run: RunData, ts: series.TimeSeries) -> Figure:
    """Step time by operator group (``t_*`` columns): mean per step, and share over time.

    Without ``t_*`` columns: the distribution of step times, decode-only against with-prefill.
    """
    breakdown = series.op_breakdown(run)
    if not breakdown:
        return _step_time_histogram(run)
    fig, (bars, area) = _figure(1, 2, height_in=3.6)
    kinds = list(breakdown)
    groups = list(breakdown[kinds[0]])
    left = np.zeros(len(kinds))
    for i, group in enumerate(groups):
        widths = np.array([breakdown[k][group] for k in kinds])
        bars.barh(kinds, widths, left=left, color=_COLORS[i % 10], label=group)
        left += widths
    bars.set_xlabel("mean time per step (ms)")
    bars.invert_yaxis()
    # One legend for both panels, below them, so it never hides a bar.
    fig.legend(*bars.get_legend_handles_labels(), loc="outside lower center",
               ncols=min(len(groups), 8), fontsize="small")  # fmt: skip
    shares = [ts.op_share[f"{series.OP_PREFIX}{g}"] for g in groups]
    area.stackplot(ts.t_s, *shares, colors=[_COLORS[i % 10] for i in range(len(groups))])
    area.set_xlabel("simulated time (s)")
    area.set_ylabel("GPU-seconds per second")
    return fig


def _step_time_histogram(run: RunData) -> Figure:
    ms, has_prefill = series.per_step_ms(run)
    fig, (ax,) = _figure(1, height_in=3.2)
    weights = run.steps["num_steps"]
    finite = ms[np.isfinite(ms)]
    bins = np.linspace(0.0, float(finite.max()) if len(finite) else 1.0, 60)
    for rows, label, color in ((~has_prefill, "decode-only steps", _COLORS[0]),
                               (has_prefill, "steps with prefill", _COLORS[1])):  # fmt: skip
        if rows.any():
            ax.hist(ms[rows], bins=bins, weights=weights[rows], alpha=0.7, label=label,
                    color=color)  # fmt: skip
    ax.set_xlabel("step time (ms)")
    # Decode steps outnumber prefill steps by orders of magnitude: a log axis shows both.
    ax.set_yscale("log")
    ax.set_ylabel("steps")
    _legend(ax)
    return fig


def all_figures(run: RunData) -> dict[str, Figure]:
    """Every chart of the report, by file stem, in page order."""
    ts = series.time_series(run)
    return {
        "latency_cdf": latency_cdfs(run),
        "throughput_queue": throughput_queue(ts),
        "batch_kv": batch_kv(ts),
        "step_breakdown": step_breakdown(run, ts),
    }


_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)
# An element id, or a reference to one: id="x", url(#x), href="#x".
_ID_REF = re.compile(r'(\bid="|url\(#|href="#)([^"()]+)')


def to_svg(fig: Figure, name: str) -> str:
    """The figure as an ``<svg>`` element to inline in HTML (no XML prolog, no doctype).

    Text stays text (selectable, small). The date is left out and the hash salt fixed, so the
    same run gives the same bytes; every id (and reference to one) is prefixed with ``name``,
    because matplotlib numbers ids per figure ("axes_1") and charts share one HTML page.
    """
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "servesim"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = _PROLOG.sub("", buf.getvalue(), count=1)
    return _ID_REF.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", svg)


def save_png(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write the figure as a PNG file; return its path."""
    fig.savefig(path, format="png", dpi=dpi, metadata={"Software": None})
    return path
