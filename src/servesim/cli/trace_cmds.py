"""Commands: ``servesim trace ...`` (Chrome traces: merge the profiler's fragments)."""

from __future__ import annotations

from pathlib import Path

import typer

from servesim.cli.app import OUTPUT_PATH, app, output_file
from servesim.paths import writable_file

trace_app = typer.Typer(
    help="Chrome traces for Perfetto: merge the profiler's per-process fragments.",
    no_args_is_help=True,
)
app.add_typer(trace_app, name="trace")


@trace_app.command("merge")
def merge(
    directory: Path = typer.Argument(
        ..., metavar="DIR", help="Folder of fragments written with SERVESIM_PROFILE=1."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        click_type=OUTPUT_PATH,
        help="Folder to write trace.json (a Chrome trace for Perfetto) into; a path ending "
        ".json: the file.",
        show_default="the current folder",
    ),
    steps: Path | None = typer.Option(
        None,
        "--steps",
        click_type=OUTPUT_PATH,
        help="Also write the logged engine steps here (JSON lines).",
    ),
) -> None:
    """Join every process's fragment into one trace; truncated last lines are skipped."""
    from servesim.trace.merge import merge_fragments

    out = output_file(out, "trace.json", (".json",), Path("."))
    if directory.is_dir():  # (a missing DIR is reported by merge_fragments)
        writable_file(out)
        if steps is not None:
            writable_file(steps, "--steps")
    report = merge_fragments(directory, out, steps_path=steps)
    typer.echo(report.summary())
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
