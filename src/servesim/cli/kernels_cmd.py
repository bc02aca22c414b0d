"""Command: ``servesim kernels`` — which measured kernel tables each GPU ships, the attention
curve fitted to them, and how servesim's roofline compares with the measured GEMMs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from servesim.cli.app import OUTPUT_PATH, app, positional_or_option

if TYPE_CHECKING:  # numpy and the tables load when the command runs, not for --help
    from servesim.cost.kernels import KernelTables
    from servesim.hardware import Hardware

CHECK_SHAPES = ((4096, 4096), (14336, 4096))
"""Weight shapes ``(n, k)`` of the operator-level check: a 4096² projection and a Llama-3-8B
MLP up-projection (not a measured shape: priced from the nearest measured one, as the cost
model does)."""
CHECK_ROWS = (1, 16, 256, 4096)
PLOT_GEMM_SHAPES = ((1024, 4096), (4096, 4096), (16384, 4096), (65536, 8192))
PLOT_HEADS = (32, 8, 128)
"""(query heads, KV heads, head_dim) of the prefill-attention panel: Llama-3-8B on one GPU."""
PLOT_BATCHES = (1, 4, 16)


# --- numbers (plain Python types, ready for JSON) ---------------------------------------------


def _span(values) -> list[float]:
    return [float(values.min()), float(values.max())]


def _coverage(t: KernelTables) -> dict[str, Any]:
    """Rows and ranges of each table (None: the table is absent)."""
    out: dict[str, Any] = {}
    g = t.gemm
    out["gemm"] = None
    if g is not None:
        out["gemm"] = {
            "rows": len(g["m"]),
            "dtypes": sorted(set(g["dtype"].tolist())),
            "weight_shapes": len(set(zip(g["n"].tolist(), g["k"].tolist(), strict=True))),
            "m": _span(g["m"]),
            "n": _span(g["n"]),
            "k": _span(g["k"]),
        }
    for name, length in (("attention_prefill", "seq_len"), ("attention_decode", "context_len")):
        p = getattr(t, name)
        out[name] = None
        if p is not None:
            heads = zip(
                p["num_heads"].tolist(),
                p["num_kv_heads"].tolist(),
                p["head_dim"].tolist(),
                strict=True,
            )
            out[name] = {
                "rows": len(p["batch"]),
                "dtypes": sorted(set(p["dtype"].tolist())),
                "head_shapes": len(set(heads)),
                "batch": _span(p["batch"]),
                length: _span(p[length]),
            }
    a = t.allreduce
    out["allreduce"] = None
    if a is not None:
        out["allreduce"] = {
            "rows": len(a["bytes"]),
            "num_gpus": sorted({int(x) for x in a["num_gpus"].tolist()}),
            "bytes": _span(a["bytes"]),
        }
    return out


def _number(x: float) -> float | None:
    """NaN (no error for a median fit) as JSON null."""
    return None if math.isnan(x) else x


def _attention(hw: Hardware, backend: str | None = None) -> dict[str, Any] | None:
    from servesim.cost.kernels import attention_fit_for

    got = attention_fit_for(hw, backend)
    if got is None:
        return None
    fit, source = got
    return {
        "efficiency": fit.efficiency,
        "half_tokens": fit.half_tokens,
        "memory_efficiency": fit.memory_efficiency,
        "prefill_error": _number(fit.prefill_error),
        "decode_error": _number(fit.decode_error),
        "source": source,
    }


def _gpu_doc(hw: Hardware, backend: str | None = None) -> dict[str, Any]:
    """What ``servesim kernels`` knows of one GPU: coverage, rungs, attention curve (the
    tables of ``backend`` when the ``servesim[kernels]`` extra is installed)."""
    from servesim.cost.kernels import load_tables, transfer_source

    tables = load_tables(hw.name, backend)
    borrowed = transfer_source(hw.name)
    attention = _attention(hw, backend)
    doc: dict[str, Any] = {
        "gpu": hw.name,
        "tables": None,
        "gemm": None,
        "attention_prefill": None,
        "attention_decode": None,
        "allreduce": None,
    }
    if tables is not None:
        doc["tables"] = tables.source
        doc.update(_coverage(tables))
    doc["borrows"] = borrowed
    doc["rungs"] = {
        "gemm": "measured" if doc["gemm"] else ("fitted" if borrowed else "roofline"),
        "allreduce": "measured" if doc["allreduce"] else "roofline",
        "attention": "fitted" if attention else "roofline",
    }
    doc["attention_fit"] = attention
    doc["fallback"] = None if tables is not None else _fallback_text(attention, borrowed)
    return doc


def _fallback_text(attention: dict[str, Any] | None, borrowed: str | None = None) -> str:
    if borrowed is not None:
        return (
            f"GEMMs and attention borrow {borrowed}'s measured utilisation (same architecture: "
            f"its measured time over its roofline, applied to this GPU's roofline); roofline "
            f"all-reduce and MoE"
        )
    if attention is None:
        return "roofline throughout (no bf16 peak to scale a fitted curve)"
    return (
        f"roofline GEMMs and all-reduce; attention from the {attention['source']} "
        f"(prefill {attention['efficiency']:.2f} of peak, half at {attention['half_tokens']:.0f}"
        f" keys; decode KV reads at {attention['memory_efficiency']:.2f} of HBM bandwidth)"
    )


def _roofline_params(hw: Hardware) -> dict[str, float]:
    """The figures servesim's roofline rung prices a bf16 GEMM with (CostParams defaults)."""
    from servesim.cost import CostParams
    from servesim.cost.dtypes import tensor_core_peak

    params = CostParams()
    return {
        "peak_flops": tensor_core_peak(hw.peak_flops, "bf16", "bf16"),
        "hbm_bandwidth": hw.hbm_bandwidth,
        "compute_efficiency": hw.compute_efficiency,
        "memory_efficiency": hw.memory_efficiency,
        "gemm_half_tokens": params.gemm_half_tokens,
        "kernel_launch_s": hw.kernel_launch_s,
    }


def roofline_gemm_seconds(r: dict[str, float], n: float, k: float, m):
    """Seconds of a bf16 ``m × k`` by ``k × n`` GEMM on servesim's roofline rung:
    ``max(2mnk / (peak · eff · m/(m + h)), bytes / (BW · mem_eff)) + launch``, bytes = the
    weights once plus the input and output rows (2 bytes each)."""
    flops = 2.0 * m * n * k
    rate = r["peak_flops"] * r["compute_efficiency"] * m / (m + r["gemm_half_tokens"])
    nbytes = 2.0 * (n * k + m * (n + k))
    memory = nbytes / (r["hbm_bandwidth"] * r["memory_efficiency"])
    return max(flops / rate, memory) + r["kernel_launch_s"]


def _nearest_shape(tables: KernelTables, n: float, k: float) -> tuple[int, int]:
    """The measured bf16 weight shape ``gemm_seconds`` prices ``(n, k)`` from."""
    import numpy as np

    g = tables.gemm
    rows = g["dtype"] == "bf16"
    ns, ks = g["n"][rows], g["k"][rows]
    dist = (np.log(ns) - math.log(n)) ** 2 + (np.log(ks) - math.log(k)) ** 2
    i = int(dist.argmin())
    return int(ns[i]), int(ks[i])


def _gemm_check(hw: Hardware, tables: KernelTables) -> dict[str, Any] | None:
    """Measured (the measured rung) against roofline seconds for the check shapes, and the
    roofline's median error over every measured bf16 row."""
    import numpy as np

    from servesim.cost.kernels import gemm_seconds

    if tables.gemm is None or not (tables.gemm["dtype"] == "bf16").any():
        return None
    r = _roofline_params(hw)
    rows = []
    for n, k in CHECK_SHAPES:
        ms = np.array(CHECK_ROWS, dtype=np.float64)
        measured, _ = gemm_seconds(tables, "bf16", n, k, ms)
        for m, got in zip(CHECK_ROWS, measured.tolist(), strict=True):
            roof = roofline_gemm_seconds(r, n, k, m)
            rows.append(
                {
                    "n": n,
                    "k": k,
                    "m": m,
                    "table_shape": list(_nearest_shape(tables, n, k)),
                    "measured_s": got,
                    "roofline_s": roof,
                    "error": roof / got - 1.0,
                }
            )
    g = tables.gemm
    sel = g["dtype"] == "bf16"
    roof_all = np.array(
        [
            roofline_gemm_seconds(r, n, k, m)
            for n, k, m in zip(g["n"][sel], g["k"][sel], g["m"][sel], strict=True)
        ]
    )
    median = float(np.median(np.abs(roof_all / g["seconds"][sel] - 1.0)))
    return {
        "roofline": r,
        "rows": rows,
        "bf16_rows": int(sel.sum()),
        "median_abs_error_all_bf16": median,
    }


# --- text ---------------------------------------------------------------------------------------


def _short(x: float) -> str:
    """A power-of-two count the short way: 16384 -> 16k (k = 1024)."""
    for unit, size in (("M", 2**20), ("k", 2**10)):
        if x >= size and x % size == 0:
            return f"{x / size:g}{unit}"
    return f"{x:g}"


def _range(span: list[float]) -> str:
    return f"{_short(span[0])}–{_short(span[1])}"


def _bytes(x: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= size:
            return f"{x / size:g} {unit}"
    return f"{x:g} B"


def _cells(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    """(GEMM, prefill, decode, all-reduce) cells of the list table, one fact a line."""
    g, p, d, a = (doc[k] for k in ("gemm", "attention_prefill", "attention_decode", "allreduce"))
    fitted = "median fit" if doc["tables"] is None else "-"
    gemm = "roofline"
    if doc.get("borrows"):
        fitted = gemm = f"from {doc['borrows']}"
    if g:
        gemm = "\n".join(
            (", ".join(g["dtypes"]), f"{g['weight_shapes']} shapes", f"m {_range(g['m'])}")
            + (f"{g['rows']} rows",)
        )
    prefill = decode = fitted
    if p:
        prefill = "\n".join(
            (", ".join(p["dtypes"]), f"{p['head_shapes']} shapes", f"s {_range(p['seq_len'])}")
            + (f"{p['rows']} rows",)
        )
    if d:
        decode = "\n".join(
            (", ".join(d["dtypes"]), f"{d['head_shapes']} shapes")
            + (f"ctx {_range(d['context_len'])}", f"{d['rows']} rows")
        )
    allreduce = "roofline"
    if a:
        allreduce = "\n".join(
            (f"{', '.join(str(n) for n in a['num_gpus'])} GPUs", _bytes(a["bytes"][0]) + " –")
            + (_bytes(a["bytes"][1]), f"{a['rows']} rows")
        )
    return gemm, prefill, decode, allreduce


def _list_table(docs: list[dict[str, Any]]) -> Table:
    table = Table(
        title="Measured kernel tables (catalog/kernels)",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("gpu", no_wrap=True, style="bold")
    for header in ("GEMM", "prefill\nattention", "decode\nattention", "all-reduce"):
        table.add_column(header, no_wrap=True)
    for doc in docs:
        table.add_row(doc["gpu"], *_cells(doc), end_section=doc["tables"] is not None)
    return table


def _coverage_table(doc: dict[str, Any]) -> Table:
    table = Table(title=f"{doc['gpu']}: measured kernel tables ({doc['tables']})", box=box.SIMPLE)
    table.add_column("table", no_wrap=True)
    table.add_column("rows", justify="right")
    table.add_column("covers")
    g, p, d, a = (doc[k] for k in ("gemm", "attention_prefill", "attention_decode", "allreduce"))
    if g:
        table.add_row(
            "gemm.csv",
            str(g["rows"]),
            f"{', '.join(g['dtypes'])}; {g['weight_shapes']} weight shapes (n "
            f"{_range(g['n'])}, k {_range(g['k'])}); m {_range(g['m'])}",
        )
    parts = (("attention_prefill", p, "seq_len"), ("attention_decode", d, "context_len"))
    for name, part, length in parts:
        if part:
            table.add_row(
                f"{name}.csv",
                str(part["rows"]),
                f"{', '.join(part['dtypes'])}; {part['head_shapes']} head shapes; batch "
                f"{_range(part['batch'])}; {length} {_range(part[length])}",
            )
    table.add_row(
        "allreduce.csv",
        str(a["rows"]) if a else "-",
        f"{', '.join(str(n) for n in a['num_gpus'])} GPUs; {_bytes(a['bytes'][0])} – "
        f"{_bytes(a['bytes'][1])}"
        if a
        else "none: the link model (roofline)",
    )
    return table


def _attention_lines(fit: dict[str, Any] | None) -> list[str]:
    if fit is None:
        return ["attention: roofline (no bf16 peak to scale a fitted curve)"]

    def err(x: float | None) -> str:
        return "" if x is None else f"\n    median error {x:.1%} on the table's rows"

    return [
        f"attention curve (fitted rung): {fit['source']}",
        f"  prefill: e·s/(s + h) of bf16 peak at s keys per query, e = {fit['efficiency']:.2f}, "
        f"h = {fit['half_tokens']:.0f}{err(fit['prefill_error'])}",
        f"  decode: KV-cache reads at {fit['memory_efficiency']:.3f} of HBM bandwidth"
        f"{err(fit['decode_error'])}",
    ]


def _check_table(check: dict[str, Any]) -> Table:
    table = Table(title="bf16 GEMM: measured vs servesim's roofline", box=box.SIMPLE_HEAD)
    table.add_column("n × k", no_wrap=True)
    table.add_column("m", justify="right")
    for header in ("measured\nµs", "roofline\nµs", "roofline\nerror"):
        table.add_column(header, justify="right")
    shape = None
    for row in check["rows"]:
        label = ""
        if (row["n"], row["k"]) != shape:
            shape = (row["n"], row["k"])
            label = f"{row['n']} × {row['k']}"
            if row["table_shape"] != [row["n"], row["k"]]:
                label += f"\n(from {row['table_shape'][0]} × {row['table_shape'][1]})"
        table.add_row(
            label,
            str(row["m"]),
            f"{row['measured_s'] * 1e6:,.1f}",
            f"{row['roofline_s'] * 1e6:,.1f}",
            f"{round(row['error'] * 100):+d}%",
        )
    return table


def _check_notes(check: dict[str, Any]) -> list[str]:
    r = check["roofline"]
    return [
        f"roofline = max(2mnk / ({r['peak_flops'] / 1e12:.0f} TFLOP/s × "
        f"{r['compute_efficiency']:.2f} × m/(m + {r['gemm_half_tokens']:g})),",
        f"               bytes / ({r['hbm_bandwidth'] / 1e12:.2f} TB/s × "
        f"{r['memory_efficiency']:.2f})) + {r['kernel_launch_s'] * 1e6:g} µs launch",
        f"error = roofline / measured − 1; median |error| on all {check['bf16_rows']} bf16 rows: "
        f"{check['median_abs_error_all_bf16']:.1%}",
    ]


# --- figure -------------------------------------------------------------------------------------


def _plot(hw: Hardware, tables: KernelTables, doc: dict[str, Any], path: Path) -> None:
    """Two panels: achieved GEMM TFLOP/s against m (measured, roofline), and prefill-attention
    TFLOP/s against seq_len (measured, fitted curve, flat roofline)."""
    import matplotlib

    matplotlib.use("Agg")  # NOTE: headless; before anything imports pyplot
    import numpy as np
    from matplotlib.figure import Figure

    r = _roofline_params(hw)
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
        e, h = fit["efficiency"], fit["half_tokens"]
        t = r["kernel_launch_s"] + flops / (peak * e) * (1.0 + h / ss)
        right.plot(ss, flops / t / 1e12, "-", color=c, lw=1)
    right.plot([], [], "-", color="grey", lw=1, label="fitted e·s/(s+h)")
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


# --- the command --------------------------------------------------------------------------------


@app.command("kernels")
def kernels_cmd(
    name: str | None = typer.Argument(
        None, help="GPU id or alias (case-insensitive); omit to list every GPU."
    ),
    hardware_option: str | None = typer.Option(
        None, "--hardware", "-g", help="The GPU, as an option (the same as NAME)."
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="Show the tables this engine profile prices with (its own AIConfigurator tables "
        "with the servesim[kernels] extra; the catalog's otherwise).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        click_type=OUTPUT_PATH,
        help="Write a PNG: GEMM and prefill-attention throughput, measured "
        "against servesim's curves (needs a GPU with tables).",
    ),
) -> None:
    """Measured kernel tables: coverage per GPU, fitted attention curves, measured vs roofline."""
    from servesim.cost.kernels import load_tables
    from servesim.engines import engine_profile
    from servesim.errors import ServesimError
    from servesim.hardware import list_hardware, load_hardware
    from servesim.paths import writable_file

    name = positional_or_option(name, hardware_option, "--hardware", required=False)
    backend = engine_profile(engine).kernel_backend if engine is not None else None
    console = Console()
    if name is None:
        if plot is not None:
            raise ServesimError(
                "needs a GPU", field="--plot", fix="e.g. servesim kernels H100 --plot k.png"
            )
        docs = [_gpu_doc(hw, backend) for hw in list_hardware()]
        docs.sort(key=lambda d: d["tables"] is None)  # stable: catalog order within each part
        if as_json:
            typer.echo(json.dumps(docs, indent=2))
            return
        console.print(_list_table(docs))
        console.print(
            "shapes: weight (n, k) or head (heads, KV heads, head_dim) shapes; k = 1024.\n"
            "Source: NVIDIA AIConfigurator (catalog/kernels/README.md, NOTICE).",
            highlight=False,
        )
        borrowing = next((d for d in docs if d["tables"] is None and d["borrows"]), None)
        if borrowing is not None:
            text = borrowing["fallback"].replace(borrowing["borrows"], "that GPU")
            console.print(f"'from GPU': {text}.", highlight=False)
        without = next((d for d in docs if d["tables"] is None and not d["borrows"]), None)
        if without is not None:
            console.print(f"Other GPUs without tables: {without['fallback']}.", highlight=False)
        console.print("`servesim kernels GPU` shows one GPU in full.", highlight=False)
        return

    hw = load_hardware(name)
    tables = load_tables(hw.name, backend)
    if plot is not None:
        if tables is None or tables.gemm is None or tables.attention_prefill is None:
            raise ServesimError(
                f"{hw.name} ships no measured tables to plot",
                field="--plot",
                fix="choose a GPU listed by `servesim kernels`",
            )
        writable_file(plot, "--plot")
    doc = _gpu_doc(hw, backend)
    if tables is not None:
        doc["gemm_check"] = _gemm_check(hw, tables)
    if plot is not None:
        _plot(hw, tables, doc, plot)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    if tables is None:
        console.print(f"{hw.name} ships no measured kernel tables.", highlight=False)
        console.print(f"Fallback: {doc['fallback']}.", highlight=False)
        return
    console.print(_coverage_table(doc))
    for line in _attention_lines(doc["attention_fit"]):
        console.print(line, highlight=False)
    if doc["gemm_check"] is not None:
        console.print()
        console.print(_check_table(doc["gemm_check"]))
        for line in _check_notes(doc["gemm_check"]):
            console.print(line, highlight=False)
    if plot is not None:
        console.print(f"wrote {plot}", highlight=False)
