"""The ``servesim`` command. Thin: every command calls the library and formats the result.

Commands are grouped in modules by job; importing them registers them on ``app``.
"""

from __future__ import annotations

import sys

# NOTE: imported for their side effect of registering commands, in the order shown in --help.
# isort: off
from servesim.cli import (  # noqa: F401
    simulate_cmd,
    catalog_cmds,
    hardware_cmds,
    cost_cmds,
    trace_cmds,
    report_cmd,
    calibrate_cmds,
    sweep_cmds,
)
# isort: on
from servesim.cli.app import app
from servesim.errors import ServesimError


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; a user mistake is one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="servesim", standalone_mode=True)
    except ServesimError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)
