"""Command: ``servesim report`` (the HTML report of a saved run)."""

from __future__ import annotations

from pathlib import Path

import typer

from servesim.cli.app import OUTPUT_PATH, app, output_file
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
        help="Folder to write report.html (and plots/) into; a path ending .html: the file.",
        show_default="RUN_DIR",
    ),
    png: bool = typer.Option(
        False, "--png", help="Also write the charts as PNG files into plots/ next to the report."
    ),
) -> None:
    """Write a self-contained HTML report of a run: summary, latency CDFs, time series."""
    from servesim.report import write_report

    out_path = output_file(out, "report.html", (".html", ".htm"), run_dir)
    png_dir = out_path.parent / "plots" if png else None
    if run_dir.is_dir():  # (a missing RUN_DIR is reported by write_report, not created here)
        writable_file(out_path)
    write_report(run_dir, out_path, png_dir=png_dir)
    typer.echo(f"wrote {out_path}" + (f" and {png_dir}/*.png" if png_dir else ""))
