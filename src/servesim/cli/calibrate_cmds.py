"""Commands: ``servesim calibrate`` (fit the cost model to measured steps), ``servesim compare``
(measured benchmark vs simulation) and ``servesim analyze`` (measured steps vs roofline)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from servesim.cli.app import OUTPUT_PATH, app, output_file
from servesim.cli.tables import print_table
from servesim.errors import ServesimError
from servesim.paths import writable_dir, writable_file

_PARAM_UNITS = {
    "compute_efficiency": "of peak FLOP/s (GEMMs, elementwise)",
    "attention_efficiency": "of peak FLOP/s (attention kernel)",
    "memory_efficiency": "of HBM bandwidth (weights, activations)",
    "attention_memory_efficiency": "of HBM bandwidth (KV-cache reads)",
    "step_overhead_s": "host seconds per step",
    "overhead_per_token_s": "host seconds per token computed",
    "gemm_half_tokens": "GEMM rows at half efficiency (size regime)",
}
"""The fitted parameters shown, with what they mean (the README's calibrate section)."""


def _fmt_param(name: str, value: float) -> str:
    if name.endswith("_efficiency"):
        return f"{100 * value:.1f}%"
    if name.endswith("_s"):
        return f"{value * 1e6:.3g} µs"
    return f"{value:g}"


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f}%"


def _finite(obj: Any) -> Any:
    """JSON-safe: NaN/inf become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------- calibrate


def _pair(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    return f"{_pct(stats['median_abs_pct'])} / {_pct(stats['p90_abs_pct'])}"


def _quality_table(quality: dict[str, Any]) -> Table:
    holdout = "holdout_after" in quality
    table = Table(
        title="Step-time error, median / p90 of |predicted − measured| ÷ measured",
        box=box.SIMPLE_HEAD,
        caption="before: servesim's defaults (roofline rung); after: fitted",
    )
    table.add_column("regime", no_wrap=True)
    table.add_column("steps", justify="right")
    table.add_column("before", justify="right", no_wrap=True)
    table.add_column("after", justify="right", no_wrap=True)
    if holdout:
        table.add_column("held out", justify="right")
        table.add_column("after, held out", justify="right", no_wrap=True)
    for regime, after in quality["after"].items():
        row = [regime, str(after["n"]), _pair(quality["before"][regime]), _pair(after)]
        if holdout:
            held = quality["holdout_after"].get(regime)
            row += [str(held["n"]) if held else "0", _pair(held)]
        table.add_row(*row)
    return table


@app.command("calibrate")
def calibrate_cmd(
    logs: list[Path] = typer.Argument(
        ...,
        metavar="LOGS...",
        help="Step logs (JSON lines) or op,tokens,context,batch,seconds CSVs.",
    ),
    model: str = typer.Option(
        ..., "--model", "-m", help="Model the steps ran (id, alias or config.json)."
    ),
    hardware: str = typer.Option(
        ..., "--hardware", "-g", help="GPU the steps ran on (id, alias or YAML)."
    ),
    tp: int = typer.Option(1, "--tp", min=1, help="Tensor-parallel GPUs of the measured server."),
    weight_dtype: str | None = typer.Option(
        None, "--weight-dtype", help="Weight format the server ran (default: the checkpoint's)."
    ),
    kv_dtype: str | None = typer.Option(
        None,
        "--kv-dtype",
        help="KV-cache format the server ran (default: the activations', bf16 for most).",
    ),
    software: str | None = typer.Option(
        None, "--software", help='Recorded in the file, e.g. "vllm 0.11.0".'
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        click_type=OUTPUT_PATH,
        help="Folder to write calibration.yaml into (a path ending .yaml/.yml/.json: the file).",
        show_default="the current folder",
    ),
    holdout: float = typer.Option(
        0.0,
        "--holdout",
        min=0.0,
        max=0.9,
        help="Fraction of steps kept out of the fit to report its error on.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Fit the cost model's efficiencies and host overheads to measured step times.

    Robust least squares (Huber IRLS on relative errors); parameters the data cannot pin
    down keep their defaults and are reported. Writes a calibration file for
    ``servesim simulate --calibration``.
    """
    from servesim.calibrate import calibrate, write_calibration
    from servesim.hardware import load_hardware
    from servesim.model import load_model
    from servesim.validation import to_data

    out = writable_file(output_file(out, "calibration.yaml", (".yaml", ".yml", ".json"), Path(".")))
    run = calibrate(
        list(logs),
        load_model(model),
        load_hardware(hardware),
        tp,
        software,
        holdout,
        weight_dtype=weight_dtype,
        kv_dtype=kv_dtype,
    )
    cal = run.calibration
    write_calibration(cal, out)
    if as_json:
        doc = to_data(cal)
        doc["written_to"] = str(out)
        typer.echo(json.dumps(_finite(doc), indent=2))
        return
    console = Console()
    table = Table(
        title=f"{cal.model} on {cal.tp}× {cal.hardware}: {cal.num_points} measured steps",
        box=box.SIMPLE_HEAD,
    )
    for header in ("parameter", "value", "status"):
        table.add_column(header, no_wrap=header != "status")
    for name in _PARAM_UNITS:
        table.add_row(name, _fmt_param(name, cal.params[name]), cal.status.get(name, ""))
    console.print(table)
    console.print(_quality_table(run.quality))
    fit = run.fit
    console.print(
        f"residual spread {100 * fit.residual_scale:.2f}% (1.4826 × MAD), "
        f"{fit.outliers} outlier step(s) beyond 3× that (down-weighted); "
        f"measured range: tokens {cal.measured_range.tokens[0]}–{cal.measured_range.tokens[1]}, "
        f"batch {cal.measured_range.batch[0]}–{cal.measured_range.batch[1]}, "
        f"context {cal.measured_range.context[0]}–{cal.measured_range.context[1]}",
        highlight=False,
    )
    typer.echo(f"wrote {out}")


# --------------------------------------------------------------------------- compare


def _fmt_metric(name: str, value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.2f}" if name.endswith("_ms") or value >= 10 else f"{value:.3f}"


@app.command("compare")
def compare_cmd(
    measured: Path = typer.Argument(
        ...,
        metavar="MEASURED",
        help="vLLM bench serve --save-result JSON, or SGLang bench_serving JSONL.",
    ),
    scenario: Path | None = typer.Option(
        None,
        "--scenario",
        help="Scenario YAML of the deployment (model, hardware, tp, scheduler); its workload is replaced.",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model; default: the scenario's, else the benchmark's model_id.",
    ),
    hardware: str | None = typer.Option(
        None, "--hardware", "-g", help="GPU; default: the scenario's."
    ),
    tp: int | None = typer.Option(
        None, "--tp", min=1, help="Tensor-parallel GPUs; default: the scenario's, else 1."
    ),
    run: int | None = typer.Option(
        None,
        "--run",
        min=0,
        help="Which run of a multi-run JSONL file (0-based; default: the last).",
    ),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="Calibration file for the simulation."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Simulation seed (arrival draws)."),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="Engine profile; default: the scenario's, else the file's backend, else vllm.",
    ),
    chat_template_tokens: int | None = typer.Option(
        None,
        "--chat-template-tokens",
        min=0,
        help="Tokens the server's chat template adds to each prompt (chat benchmarks count "
        "the messages only); default: the model family's for a chat benchmark, else 0.",
    ),
    engine_log: Path | None = typer.Option(
        None,
        "--engine-log",
        help="The server's start-up log: pin the KV cache to the size it prints (vLLM, SGLang, "
        "TensorRT-LLM).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    csv_path: Path | None = typer.Option(
        None,
        "--csv",
        click_type=OUTPUT_PATH,
        help="Also write metric,measured,predicted,error_pct rows here.",
    ),
) -> None:
    """Re-run a measured benchmark in the simulator: metric, measured, predicted, error %."""
    from servesim.calibrate import compare, read_bench_result, write_comparison_csv
    from servesim.scenario import load_scenario_file

    bench = read_bench_result(measured, run)
    data: dict[str, Any] = load_scenario_file(scenario, field="--scenario") if scenario else {}
    flags = (("model", model), ("hardware", hardware), ("tp", tp), ("seed", seed),
             ("engine", engine))  # fmt: skip
    for key, value in flags:
        if value is not None:
            data[key] = value
    if "model" not in data:
        if not bench.model_id:
            raise ServesimError(
                f"{bench.source} does not name its model", field="--model", fix="pass --model"
            )
        data["model"] = bench.model_id
    if "hardware" not in data:
        raise ServesimError(
            "the benchmark file does not say which GPU served it",
            field="--hardware",
            fix="pass --hardware (e.g. h100) or a --scenario that sets hardware",
        )
    if csv_path is not None:
        writable_file(csv_path, "--csv")  # before the simulation, not after it
    logged = None
    if engine_log is not None:
        from servesim.calibrate.compare import with_benchmarked_engine
        from servesim.calibrate.engine_log import pin_to_engine_log

        # (the plan compared with the log is the engine's that `compare` will simulate)
        pinned = with_benchmarked_engine(data, bench)
        logged, pinned = pin_to_engine_log(engine_log, pinned, str(scenario) if scenario else "")
        data = {**data, "scheduler": pinned["scheduler"]}
    result = compare(bench, data, calibration, chat_template_tokens)
    if logged is not None:
        Console(stderr=True).print(logged, highlight=False)
    if csv_path is not None:
        write_comparison_csv(result, csv_path)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    sc = result.scenario
    table = Table(
        title=f"{bench.source}: measured vs servesim ({result.model} on {sc.tp}× {result.hardware}, "
        f"{result.predicted.get('fidelity', 'roofline')})",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("metric", no_wrap=True)
    for header in ("measured", "predicted", "error"):
        table.add_column(header, justify="right")
    for r in result.rows:
        err = r.error_pct
        table.add_row(
            r.metric,
            _fmt_metric(r.metric, r.measured),
            _fmt_metric(r.metric, r.predicted),
            "-" if not math.isfinite(err) else f"{err:+.1f}%",
        )
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    if csv_path is not None:
        typer.echo(f"wrote {csv_path}")


# --------------------------------------------------------------------------- analyze


def _num(value: float, fmt: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, fmt)


@app.command("analyze")
def analyze_cmd(
    logs: list[Path] = typer.Argument(
        ...,
        metavar="STEP_LOGS...",
        help="Step logs (JSON lines) or op CSVs; several give a sweep table.",
    ),
    model: str = typer.Option(..., "--model", "-m", help="Model the steps ran."),
    hardware: str = typer.Option(..., "--hardware", "-g", help="GPU the steps ran on."),
    tp: int = typer.Option(1, "--tp", min=1, help="Tensor-parallel GPUs."),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="Predict with this calibration instead of the defaults."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        click_type=OUTPUT_PATH,
        help="Folder for analysis_steps.csv, analysis_sweep.csv and PNG plots.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep table as JSON."),
) -> None:
    """Measured steps against the theory: FLOPs, bytes, % of peak, utilisation gap."""
    from servesim.calibrate import analyze_steps, load_calibration, read_step_log, sweep_table
    from servesim.calibrate.readers import concat, read_op_csv
    from servesim.cost import Parallelism
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    if out is not None:
        writable_dir(out)
    spec, hw = load_model(model), load_hardware(hardware)
    par = Parallelism(tp=tp)
    par.check(spec)
    params = load_calibration(calibration, spec, hw, tp) if calibration else None
    parts = [read_op_csv(p) if p.suffix.lower() == ".csv" else read_step_log(p) for p in logs]
    analysis = analyze_steps(concat(parts), spec, hw, par, params)
    rows = sweep_table(analysis)
    written = []
    if out is not None:
        from servesim.calibrate.outputs import write_analysis

        written = write_analysis(analysis, out)
    if as_json:
        typer.echo(
            json.dumps(_finite({"sources": rows, "written": [str(p) for p in written]}), indent=2)
        )
        return
    console = Console()
    table = Table(
        title=f"{spec.name} on {tp}× {hw.name}: measured vs roofline",
        box=box.SIMPLE_HEAD,
        caption="gap: measured ÷ roofline time (P: prefill-heavy steps, D: decode-heavy); "
        f"FLOP/s P, BW D: median % of peak ({analysis.peak_flops / 1e12:.0f} TFLOP/s, "
        f"{analysis.peak_bandwidth / 1e9:.0f} GB/s); err: median |predicted − measured| "
        f"({analysis.fidelity})",
    )
    table.add_column("log", overflow="fold")
    for header in ("steps", "median ms", "gap", "gap P", "gap D", "FLOP/s P", "BW D", "err"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            r["source"],
            str(r["steps"]),
            f"{r['median_ms']:.2f}",
            _num(r["gap_median"], ".2f"),
            _num(r["gap_prefill"], ".2f"),
            _num(r["gap_decode"], ".2f"),
            _pct(r["pct_peak_flops_prefill"]),
            _pct(r["pct_peak_bw_decode"]),
            _pct(r["predicted_error_median_pct"]),
        )
    print_table(table, console)
    if analysis.phases:
        ph = Table(title="Share of step time per logged phase", box=box.SIMPLE_HEAD)
        ph.add_column("log", overflow="fold")
        for name in analysis.phases:
            ph.add_column(name, justify="right")
        for r in rows:
            ph.add_row(r["source"], *(_pct(r[f"phase_{n}_pct"]) for n in analysis.phases))
        print_table(ph, console)
    for path in written:
        typer.echo(f"wrote {path}")
