"""The plan's picture: cost against tail latency, the Pareto frontier and the cheapest."""

from __future__ import annotations

from pathlib import Path

from servesim.errors import ServesimError
from servesim.sweep.capacity import METRIC_LABELS
from servesim.sweep.plan import Plan


def plot_plan(plan: Plan, path: str | Path, metric: str = "ttft_ms") -> Path:
    """Write a PNG: every simulated deployment as $/hour against ``metric`` (ms, log scale).

    Deployments meeting the SLOs are coloured by GPU type, the others grey crosses; the
    frontier is a line, the cheapest a star; the SLO on ``metric`` is a dashed line.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise ServesimError(
            "plotting needs matplotlib", field="--out", fix="pip install matplotlib"
        ) from None
    spec = plan.spec
    label = f"p{spec.percentile:g} {METRIC_LABELS[metric]} (ms)"
    # NOTE: a bare Figure with its own canvas, not pyplot: no global state, no GUI backend.
    fig = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    failed = [e for e in plan.evaluations if not e.meets]
    if failed:
        ax.scatter(
            [e.usd_per_hour for e in failed], [e.values[metric] for e in failed],
            marker="x", color="0.7", label="misses the SLOs",
        )  # fmt: skip
    for hw in dict.fromkeys(e.deployment.hardware for e in plan.feasible):
        mine = [e for e in plan.feasible if e.deployment.hardware == hw]
        ax.scatter([e.usd_per_hour for e in mine], [e.values[metric] for e in mine], label=hw)
    front = plan.frontier(metric)
    if front:
        ax.step(
            [e.usd_per_hour for e in front], [e.values[metric] for e in front],
            where="post", color="black", linewidth=1, label="Pareto frontier",
        )  # fmt: skip
        for e in front:
            ax.annotate(
                f"{e.deployment.label}", (e.usd_per_hour, e.values[metric]),
                textcoords="offset points", xytext=(4, 4), fontsize=7,
            )  # fmt: skip
    best = plan.cheapest
    if best is not None:
        ax.scatter(
            [best.usd_per_hour], [best.values[metric]], marker="*", s=250,
            color="gold", edgecolor="black", zorder=5, label="cheapest",
        )  # fmt: skip
    limit = getattr(spec.slo, metric)
    if limit is not None:
        ax.axhline(limit, linestyle="--", color="red", linewidth=1, label="SLO")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # Minor ticks labelled at 2× and 5× a decade only: readable without crowding.
    ax.yaxis.set_minor_formatter(
        FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else "")
    )
    ax.set_xlabel("cost ($/hour, catalog prices)")
    ax.set_ylabel(label)
    ax.set_title(f"{spec.model} at {spec.rate:g} req/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
