"""Command: ``servesim kernels`` — which measured kernel tables each GPU ships, the attention
curve fitted to them, and how servesim's roofline compares with the measured GEMMs.

The numbers are kernels_doc.py's, the figure kernels_plot.py's; this module prints them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from servesim.cli.app import OUTPUT_PATH, app, positional_or_option
from servesim.cli.kernels_doc import gemm_check, gpu_doc
from servesim.cost.resolve import TRTLLM_FP8_DECODE_REGIMES_FROM

DECODE_REGIMES = (
    "multi-head 128-wide",
    "multi-head 64-wide",
    "grouped 128-wide",
    "grouped 64-wide",
)
"""The decode regimes in ``AttentionFit.decode_cells_fp8``'s order (``attention_fit.decode_cell``)."""

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


def _pairs(names: list[str]) -> list[str]:
    """``names`` two to a line (the list table's columns stay narrow)."""
    return [", ".join(names[i : i + 2]) for i in range(0, len(names), 2)]


def _cells(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    """(GEMM, prefill, decode, all-reduce) cells of the list table, one fact a line."""
    g, p, d, a = (doc[k] for k in ("gemm", "attention_prefill", "attention_decode", "allreduce"))
    fitted = "median fit" if doc["tables"] is None else "-"
    gemm = "roofline"
    if doc.get("borrows"):
        fitted = gemm = f"from {doc['borrows']}"
    if g:
        gemm = "\n".join(
            (*_pairs(g["dtypes"]), f"{g['weight_shapes']} shapes", f"m {_range(g['m'])}")
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
    # The engines' own tables: (doc key, file prefix, what one covers).
    per_engine = (
        ("engine_gemm", "gemm", lambda b, e: (
            f"{b}'s own {', '.join(e['dtypes'])} GEMMs (the rest: gemm.csv); "
            f"{e['weight_shapes']} weight shapes; m {_range(e['m'])}"
        )),
        ("engine_allreduce", "allreduce", lambda b, e: (
            f"{b}'s custom all-reduce, {' and '.join(e['modes'])}; "
            f"{', '.join(e['versions'])}; {', '.join(str(n) for n in e['num_gpus'])} GPUs"
        )),
        ("engine_decode", "attention_decode", lambda b, e: (
            f"{b}'s decode attention: {', '.join(e['dtypes'])} KV; {e['head_shapes']} head "
            f"shapes; batch {_range(e['batch'])}; context_len {_range(e['context_len'])}"
        )),
        ("moe", "moe", lambda b, m: (
            f"{b}'s MoE kernels: {', '.join(m['dtypes'])}; {m['shapes']} model shapes; "
            f"{len(m['splits'])} TP×EP splits; tokens {_range(m['num_tokens'])}"
        )),
    )  # fmt: skip
    for key, prefix, covers in per_engine:
        for backend, part in doc.get(key, {}).items():
            table.add_row(f"{prefix}_{backend}.csv", str(part["rows"]), covers(backend, part))
    return table


def _attention_lines(fit: dict[str, Any] | None) -> list[str]:
    if fit is None:
        return ["attention: roofline (no bf16 peak to scale a fitted curve)"]

    def err(x: float | None) -> str:
        return "" if x is None else f"\n    median error {x:.1%} on the table's rows"

    def occupancy(suffix: str) -> str:
        """The occupancy stretch's form: the hard limit (power 0) or the added tail (1)."""
        power = fit.get(f"fill_power{suffix}") or 0.0
        return " (limit)" if power == 0.0 else f" (tail, power {power:g})"

    def weight(suffix: str) -> str:
        """A curve's KV-head weight."""
        return f"{fit[f'kv_head_weight{suffix}']:g}"

    prefill_curves = []
    if fit.get("efficiency_hd64"):
        prefill_curves = [
            f"  prefill of heads at most 64 wide (own rows): e = {fit['efficiency_hd64']:.2f}, "
            f"h = {fit['half_tokens_hd64']:.0f} (KV-head weight {weight('_hd64')}), "
            f"C = {fit['fill_ctas_hd64']:.0f}"
            f"{occupancy('_hd64')}{err(fit.get('prefill_error_hd64') or None)}"
        ]
    if fit.get("efficiency_fp8"):
        prefill_curves.append(
            f"  prefill in FP8 (FP8 KV cache, FlashAttention-3 engines on Hopper): e = "
            f"{fit['efficiency_fp8']:.2f} of the bf16 peak, h = {fit['half_tokens_fp8']:.0f} "
            f"(KV-head weight {weight('_fp8')}), C = {fit['fill_ctas_fp8']:.0f}{occupancy('_fp8')}"
            f"{err(fit.get('prefill_error_fp8') or None)}"
        )

    def after_floor(key: str) -> str:
        """The fixed time a decode-attention call takes before its reads, when fitted."""
        floor = fit.get(key) or 0.0
        return f" after {floor * 1e6:.1f} µs per call" if floor else ""

    def ramp(suffix: str, what: str) -> list[str]:
        """The decode ramp's line, when the table has one."""
        xs, ys = fit.get(f"decode_ramp_log_bytes{suffix}") or (), fit.get(f"decode_ramp{suffix}")
        if not xs or max(ys) <= 1.0:
            return []
        top = max(range(len(ys)), key=ys.__getitem__)
        return [
            f"  decode ramp{what}: calls of 4 MB–1 GB of KV take up to {ys[top]:.2f}× floor plus "
            f"reads (at {10 ** xs[top] / 1e6:.0f} MB a call; measured, interpolated in log bytes)"
        ]

    fp8 = []
    if fit.get("memory_efficiency_fp8"):
        fp8 = [
            f"  decode with an FP8 KV cache: reads at {fit['memory_efficiency_fp8']:.3f} of HBM "
            f"bandwidth{after_floor('decode_fixed_s_fp8') or after_floor('decode_fixed_s')}"
            f"{err(fit.get('decode_error_fp8') or None)}"
        ]
        cells = fit.get("decode_cells_fp8") or ()
        if cells:
            named = zip(DECODE_REGIMES, cells, strict=True)
            regimes = ", ".join(f"{name} {value:.3f}" for name, value in named if value > 0.0)
            # (The catalog's main table: TensorRT-LLM's kernels, read by regime from its 1.0.)
            who = (
                "the engine picks a kernel by head shape"
                if fit.get("decode_engine")
                else f"TensorRT-LLM from {TRTLLM_FP8_DECODE_REGIMES_FROM} picks a kernel by head "
                "shape; other engines read at the one fraction"
            )
            fp8.append(
                f"  the same by kernel regime ({who}): {regimes}; "
                "a regime timed only from 256 MB to 1 GB of KV a call is its ratio there to a "
                "measured one; a regime not timed takes its nearest"
            )
    return [
        f"attention curve (fitted rung): {fit['source']}",
        f"  prefill: e·s/(s + h') of bf16 peak at s keys per query, e = {fit['efficiency']:.2f}, "
        f"h' = h·(1 + {weight('')}·KV heads / heads), h = {fit['half_tokens']:.0f}; "
        f"C = {fit['fill_ctas']:.0f} thread blocks (heads × 128-query tiles) fill the GPU: "
        + (
            "under C the time stretches by C / blocks"
            if not fit.get("fill_power")
            else "the time adds C / blocks of itself, the last wave's tail"
        )
        + err(fit["prefill_error"]),
        *prefill_curves,
        f"  decode: KV-cache reads at {fit['memory_efficiency']:.3f} of HBM bandwidth"
        f"{after_floor('decode_fixed_s')} (the KV-cache write and the kernel's fixed cost)"
        f"{err(fit['decode_error'])}",
        *ramp("", ""),
        *(
            [
                f"  decode serial walk: where the kernel walks each sequence's KV in one thread "
                f"block per query head (FlashAttention-2 under vLLM V1), one block reads "
                f"{fit['decode_serial_rate'] / 1e9:.1f} GB/s"
            ]
            if fit.get("decode_serial_rate")
            else []
        ),
        *fp8,
        *(ramp("_fp8", " (FP8 KV cache)") if fit.get("memory_efficiency_fp8") else []),
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
            sources = row["table_shapes"]
            if [s[:2] for s in sources] != [[row["n"], row["k"]]]:
                shapes = " and ".join(f"{s[0]} × {s[1]}" for s in sources)
                label += f"\n({'between' if len(sources) > 1 else 'from'} {shapes})"
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
        "with the servesim\\[kernels] extra; the catalog's otherwise).",
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
        docs = [gpu_doc(hw, backend) for hw in list_hardware()]
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
    doc = gpu_doc(hw, backend)
    if tables is not None:
        doc["gemm_check"] = gemm_check(hw, tables)
    if plot is not None:
        from servesim.cli.kernels_plot import plot_kernels

        plot_kernels(hw, tables, doc, plot)
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
    if doc["triton_prefill"]:
        t = doc["triton_prefill"]
        console.print(
            f"  prefill on vLLM's Triton attention (GPT-OSS here: no FlashAttention-2 kernel has "
            f"sinks): e = {t['efficiency']:.2f}, h = {t['half_tokens']:.0f} (the curve's plateau "
            f"/ {t['slowdown']:.2f}, its half-length × {t['half_scale']:.2f}; "
            "catalog/kernels/triton_prefill.json)",
            highlight=False,
        )
    if doc["mla_block"]:
        scales = ", ".join(f"{b} × {s:.2f}" for b, s in doc["mla_block"].items())
        console.print(
            f"MLA block (DeepSeek-style models): the engine's whole block measured over its "
            f"kernels summed: {scales}; other engines: the sum (catalog/kernels/mla_block.json)",
            highlight=False,
        )
    l2 = doc["l2_floor"]
    if l2 is not None and l2["floored"]:
        console.print(
            f"L2 ({l2['l2_bytes'] / 2**20:g} MB): {l2['floored']} of the {l2['rows']} bf16 GEMM "
            f"rows beat the HBM roofline on weights that fit in L2 (up to "
            f"{l2['largest_speedup']:.1f}×: served from L2 by the benchmark's repeats); priced "
            "at that floor, as inside a forward pass",
            highlight=False,
        )
    if doc["gemm_check"] is not None:
        console.print()
        console.print(_check_table(doc["gemm_check"]))
        for line in _check_notes(doc["gemm_check"]):
            console.print(line, highlight=False)
    if plot is not None:
        console.print(f"wrote {plot}", highlight=False)
