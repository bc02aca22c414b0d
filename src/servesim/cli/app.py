"""The typer application object shared by every command module."""

from __future__ import annotations

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
