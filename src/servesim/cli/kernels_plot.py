"""The figure of ``servesim kernels GPU --plot``: measured kernel throughput against servesim's
curves (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from servesim.cli.kernels_doc import roofline_gemm_seconds, roofline_params

if TYPE_CHECKING:
    from servesim.cost.kernels import KernelTables
    from servesim.hardware import Hardware

PLOT_GEMM_SHAPES = ((1024, 4096), (4096, 4096), (16384, 4096), (65536, 8192))
PLOT_HEADS = (32, 8, 128)
"""(query heads, KV heads, head_dim) of the prefill-attention panel: Llama-3-8B on one GPU."""
PLOT_BATCHES = (1, 4, 16)


def plot_kernels(hw: Hardware, tables: KernelTables, doc: dict[str, Any], path: Path) -> None:
    """Two panels: achieved GEMM TFLOP/s against m (measured, roofline), and prefill-attention
    TFLOP/s against seq_len (measured, fitted curve, flat roofline)."""
    import matplotlib

    matplotlib.use("Agg")  # NOTE: headless; before anything imports pyplot
    import numpy as np
    from matplotlib.figure import Figure

    from servesim.cost.attention_fit import length_stretch, occupancy_stretch

    r = roofline_params(hw)
    colors = matplotlib.colormaps["tab10"].colors
    fig = Figure(figsize=(11, 4.4), dpi=110, layout="constrained")
    left, right = fig.subplots(1, 2)

    g = tables.gemm
    ms = np.geomspace(1, 16384, 200)
    drawn = 0
    for n, k in PLOT_GEMM_SHAPES:
        sel = (g["dtype"] == "bf16") & (g["n"] == n) & (g["k"] == k)
        if not sel.any():
            continue
        c = colors[drawn % len(colors)]
        drawn += 1
        left.plot(g["m"][sel], g["tflops"][sel], "o", color=c, ms=4, label=f"{n}×{k} measured")
        roof = [2.0 * m * n * k / roofline_gemm_seconds(r, n, k, m) / 1e12 for m in ms]
        left.plot(ms, roof, "-", color=c, lw=1, alpha=0.7)
    left.plot([], [], "-", color="grey", lw=1, label="servesim roofline")
    left.set(
        xscale="log",
        yscale="log",
        xlabel="m (rows)",
        ylabel="achieved TFLOP/s",
        title=f"{hw.name} bf16 GEMM (n×k)",
    )
    left.legend(fontsize=7)
    left.grid(True, which="both", alpha=0.2)

    p, fit = tables.attention_prefill, doc["attention_fit"]
    heads, kv_heads, head_dim = PLOT_HEADS
    ss = np.geomspace(16, 16384, 200)
    peak = r["peak_flops"]
    for j, batch in enumerate(PLOT_BATCHES):
        sel = (
            (p["dtype"] == "bf16")
            & (p["num_heads"] == heads)
            & (p["num_kv_heads"] == kv_heads)
            & (p["head_dim"] == head_dim)
            & (p["batch"] == batch)
        )
        if not sel.any():
            continue
        c = colors[j % len(colors)]
        right.plot(p["seq_len"][sel], p["tflops"][sel], "o", color=c, ms=4, label=f"batch {batch}")
        flops = 2.0 * batch * ss**2 * heads * head_dim  # causal: half of 4·b·s²·H·d
        e, h, fill = fit["efficiency"], fit["half_tokens"], fit["fill_ctas"]
        blocks = heads * batch * (ss / 128 + 1.0)  # (the step model's estimate)
        stretch = occupancy_stretch(fill / blocks, fit.get("fill_power") or 0.0)
        length = length_stretch(h, heads, kv_heads, ss, fit["kv_head_weight"])
        t = r["kernel_launch_s"] + flops / (peak * e) * length * stretch
        right.plot(ss, flops / t / 1e12, "-", color=c, lw=1)
    right.plot([], [], "-", color="grey", lw=1, label="fitted e·s/(s+h'), occupancy")
    right.axhline(
        peak * r["compute_efficiency"] / 1e12, color="black", ls="--", lw=1, label="roofline"
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="seq_len (keys per query)",
        ylabel="TFLOP/s",
        title=f"prefill attention, {heads}/{kv_heads} heads × {head_dim}, causal",
    )
    right.legend(fontsize=7)
    right.grid(True, which="both", alpha=0.2)
    fig.savefig(path)
