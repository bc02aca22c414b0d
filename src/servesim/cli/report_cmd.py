"""Command: ``servesim report`` (the HTML report of a saved run)."""

from __future__ import annotations

from pathlib import Path

import typer

from servesim.cli.app import OUTPUT_PATH, app
from servesim.paths import writable_file


@app.command("report")
def report_command(
    run_dir: Path = typer.Argument(
        ..., metavar="RUN_DIR", help="A run folder written by `servesim simulate --out`."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        click_type=OUTPUT_PATH,
        help="HTML file to write (default: RUN_DIR/report.html).",
    ),
    png: bool = typer.Option(
        False, "--png", help="Also write the charts as PNG files into plots/ next to the report."
    ),
) -> None:
    """Write a self-contained HTML report of a run: summary, latency CDFs, time series."""
    from servesim.report import write_report

    out_path = out if out is not None else run_dir / "report.html"
    png_dir = out_path.parent / "plots" if png else None
    if run_dir.is_dir():  # (a missing RUN_DIR is reported by write_report, not created here)
        writable_file(out_path)
    write_report(run_dir, out_path, png_dir=png_dir)
    typer.echo(f"wrote {out_path}" + (f" and {png_dir}/*.png" if png_dir else ""))
