"""The typer application object shared by every command module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.models import TyperPath

app = typer.Typer(
    name="servesim",
    help="Predict and explain the performance of LLM inference serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    # NOTE: the CLI registers only the invoked command's module; typer runs an app with a
    # single command *as* that command ("servesim version" would be an extra argument), but
    # never an app with a callback, which stays a group of subcommands.
    pass


@app.command("version")
def version() -> None:
    """Print servesim's version."""
    from servesim import __version__

    typer.echo(f"servesim {__version__}")


class _OutputPath(TyperPath):
    """A path to write to: an empty one is refused.

    NOTE: ``Path("")`` is ``Path(".")``: without this check ``--out "$OUTDIR"`` with the
    variable unset would write into (and replace files of) the current folder. The check has
    to see the text the user typed, before it becomes a Path.
    """

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail(
                "is empty (an unset variable?): give the path to write to",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


OUTPUT_PATH = _OutputPath()
"""``click_type`` of every option that names where to write (``--out``, ``--steps``, ...)."""


# --------------------------------------------------------------------------- conventions
# One meaning per option in every command (README, "Commands"):
#   --model/-m MODEL and --hardware/-g GPU name the model and the GPU; the commands about one
#   model or GPU (flops, estimate, model, hardware, kernels) also take it as their first word.
#   -o/--out DIR is the folder a command writes into; a command that writes one file names it
#   DIR/<its file> (calibration.yaml, report.html, plan.png, trace.json). An -o ending in that
#   file's suffix is the file itself: the spelling from before the convention, kept.
#   --workers/-j N and --ray ADDRESS choose where the commands that run many simulations (sweep,
#   plan) run them.

WORKERS_HELP = "processes on this machine (default: all cores)"
RAY_HELP = (
    "run on Ray: local (start Ray here), auto (the cluster this machine joined), "
    "or HOST:PORT / ray://HOST:PORT"
)


def positional_or_option(
    positional: str | None, option: str | None, flag: str, required: bool = True
) -> str | None:
    """A value given as the command's first word or as ``flag`` (both: they must agree)."""
    from servesim.errors import ServesimError

    if positional is not None and option is not None and positional != option:
        raise ServesimError(
            f"given twice ({positional!r} and {option!r})", field=flag, fix="give it once"
        )
    value = option if option is not None else positional
    if value is None and required:
        raise ServesimError("is missing", field=flag, fix=f"give {flag} NAME")
    return value


def output_file(out: Path | None, name: str, suffixes: tuple[str, ...], folder: Path) -> Path:
    """Where a command that writes one file (``name``) writes it: ``out/name`` for a folder
    ``out``, ``out`` itself when it ends in one of ``suffixes``, ``folder/name`` without ``-o``."""
    if out is None:
        return folder / name
    return out if out.suffix.lower() in suffixes else out / name
