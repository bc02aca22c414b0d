"""PNG plots of an :class:`~servesim.calibrate.analyze.Analysis` (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servesim.calibrate.analyze import Analysis
from servesim.calibrate.batches import REGIMES
from servesim.errors import ServesimError

_MARKERS = {"prefill-heavy": "^", "decode-heavy": "o", "mixed": "s"}


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # NOTE: no display here; must precede importing pyplot
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise ServesimError(
            "the plots need matplotlib", field="--out", fix="pip install matplotlib"
        ) from None
    return plt


def plot_gap_vs_batch(a: Analysis, path: Path) -> Path:
    """Utilisation gap (measured ÷ roofline) against batch size, one colour per source and
    one marker per regime; log-log."""
    plt = _pyplot()
    c = a.columns
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, src in enumerate(a.sources):
        for regime in REGIMES:
            sel = (c["source"] == src) & (c["regime"] == regime)
            if sel.any():
                ax.scatter(
                    c["batch_size"][sel],
                    c["gap"][sel],
                    s=18,
                    marker=_MARKERS[regime],
                    color=colours[k % len(colours)],
                    label=f"{src}: {regime}" if len(a.sources) > 1 else regime,
                    alpha=0.8,
                )
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    from matplotlib.ticker import ScalarFormatter

    # Plain numbers (batch 64, gap 1.5) read better than powers of ten.
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("batch size (sequences)")
    ax.set_ylabel("measured ÷ roofline time")
    ax.set_title("Utilisation gap")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _buckets(batch: np.ndarray) -> np.ndarray:
    """Power-of-two bucket (1, 2, 4, ...) holding each batch size."""
    return 2 ** np.floor(np.log2(np.maximum(batch, 1))).astype(np.int64)


def plot_phases(a: Analysis, path: Path) -> Path:
    """Mean milliseconds per phase (stacked) for each batch-size bucket, a panel per source.

    ``other`` is the step time no logged phase covers.
    """
    plt = _pyplot()
    c = a.columns
    sources = a.sources
    fig, axes = plt.subplots(
        len(sources), 1, figsize=(7, 2.8 * len(sources)), dpi=110, squeeze=False
    )
    names = [*a.phases, "other"]
    for ax, src in zip(axes[:, 0], sources, strict=True):
        sel = c["source"] == src
        bucket = _buckets(c["batch_size"][sel])
        keys = np.unique(bucket)
        phase = {p: np.nan_to_num(c[f"phase_{p}"][sel]) for p in a.phases}
        covered = sum(phase.values()) if phase else np.zeros(int(sel.sum()))
        phase["other"] = np.maximum(c["duration_s"][sel] - covered, 0.0)
        bottom = np.zeros(len(keys))
        x = np.arange(len(keys))
        for name in names:
            means = np.array([phase[name][bucket == k].mean() * 1e3 for k in keys])
            ax.bar(x, means, bottom=bottom, label=name)
            bottom += means
        ax.set_xticks(x, [f"{k}–{2 * k - 1}" if k > 1 else "1" for k in keys])
        ax.set_ylabel("ms per step")
        ax.set_title(src, fontsize=9)
    axes[-1, 0].set_xlabel("batch size (sequences)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
