"""The ``servesim`` command. Thin: every command calls the library and formats the result.

Commands are grouped in modules by job; importing a module registers its commands on ``app``.
``main`` imports only the module of the command being run (start-up time is most of a small
simulation's wall time); ``--help`` and unknown names load them all (``servesim.cli.commands``).
"""

from __future__ import annotations

import importlib
import os
import sys

# servesim's numpy work is element-wise on small arrays; nothing hot calls BLAS. OpenBLAS's thread
# pool only costs start-up (its threads spin while the interpreter imports the rest: ~10 ms of
# wall and 60 ms of CPU on a 2-core machine) and oversubscribes cores under parallel sweeps.
# Set before anything imports numpy; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from servesim.cli.app import app  # noqa: E402
from servesim.errors import ServesimError  # noqa: E402

COMMAND_MODULES = {
    "simulate": "simulate_cmd",
    "models": "catalog_cmds",
    "model": "catalog_cmds",
    "hardware": "hardware_cmds",
    "flops": "cost_cmds",
    "estimate": "cost_cmds",
    "trace": "trace_cmds",
    "report": "report_cmd",
    "calibrate": "calibrate_cmds",
    "compare": "calibrate_cmds",
    "analyze": "calibrate_cmds",
    "sweep": "sweep_cmds",
    "capacity": "sweep_cmds",
    "plan": "sweep_cmds",
}
"""Which module registers each command (a test checks it against the registered commands)."""


def load_commands(args: list[str]) -> None:
    """Register the command ``args`` invokes, or every command when it names none."""
    module = COMMAND_MODULES.get(args[0]) if args else None
    importlib.import_module(f"servesim.cli.{module}" if module else "servesim.cli.commands")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; a user mistake is one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        load_commands(args)
        app(args=args, prog_name="servesim", standalone_mode=True)
    except ServesimError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)
