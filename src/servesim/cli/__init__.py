"""The ``servesim`` command. Thin: every command calls the library and formats the result.

Commands are grouped in modules by job; importing a module registers its commands on ``app``.
``main`` imports only the module of the command being run (start-up time is most of a small
simulation's wall time); ``--help`` and unknown names load them all (``servesim.cli.commands``).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# servesim's numpy work is element-wise on small arrays; nothing hot calls BLAS. OpenBLAS's thread
# pool only costs start-up (its threads spin while the interpreter imports the rest: ~10 ms of
# wall and 60 ms of CPU on a 2-core machine) and oversubscribes cores under parallel sweeps.
# Set before anything imports numpy; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from servesim.errors import ServesimError  # noqa: E402

COMMAND_MODULES = {
    "version": "app",
    "simulate": "simulate_cmd",
    "serve": "serve_cmd",
    "models": "catalog_cmds",
    "model": "catalog_cmds",
    "hardware": "hardware_cmds",
    "kernels": "kernels_cmd",
    "flops": "cost_cmds",
    "estimate": "cost_cmds",
    "trace": "trace_cmds",
    "report": "report_cmd",
    "calibrate": "calibrate_cmds",
    "compare": "calibrate_cmds",
    "analyze": "calibrate_cmds",
    "sweep": "sweep_cmds",
    "capacity": "sweep_cmds",
    "plan": "plan_cmd",
}
"""Which module registers each command (a test checks it against the registered commands)."""


@contextmanager
def importing() -> Iterator[None]:
    """Pause the cyclic garbage collector while the CLI imports what a command needs.

    Importing typer, numpy, msgspec and servesim creates ~10^5 objects that live for the whole
    process (modules, classes, validators) and no garbage; the collector would traverse them
    ~100 times while they load (~20-30 ms, a tenth of a small `simulate`). Afterwards they are
    frozen out of later collections too, which also shortens full collections in long runs.
    """
    was_enabled = gc.isenabled()
    modules_before = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        # Only when something was imported: a long-lived process (a notebook, the test suite)
        # that already has the modules must not freeze its own pending garbage.
        if len(sys.modules) > modules_before:
            gc.freeze()
        if was_enabled:
            gc.enable()


RICH_HELP_MIN_COLUMNS = 130
"""Narrowest terminal that gets typer's rich help panels. Narrower, rich shrinks the option
column and cuts long names (``--num-scheduler-st…`` at 80 columns), so click's plain help,
which wraps the descriptions instead, is printed (a test checks that no command's rich help is
cut at this width)."""


def plain_help_when_narrow(app) -> None:
    """Use click's plain help layout for ``app`` and its sub-apps when the terminal (80 columns
    when output is not a terminal) is narrower than :data:`RICH_HELP_MIN_COLUMNS`."""
    import shutil

    if shutil.get_terminal_size().columns >= RICH_HELP_MIN_COLUMNS:
        return
    apps = [app, *(group.typer_instance for group in app.registered_groups)]
    for each in apps:
        each.rich_markup_mode = None
        for command in each.registered_commands:
            _unescape_markup(command.callback)


def _unescape_markup(callback) -> None:
    """Drop rich's markup escapes from the help of ``callback``'s options: plain help prints
    them as they are, and ``pip install 'servesim\\[fast]'`` copied from it fails."""
    import inspect

    from typer.models import ParameterInfo

    if callback is None:
        return
    for parameter in inspect.signature(callback).parameters.values():
        info = parameter.default
        if isinstance(info, ParameterInfo) and info.help and "\\[" in info.help:
            info.help = info.help.replace("\\[", "[")


def load_commands(args: list[str]) -> None:
    """Register the command ``args`` invokes, or every command when it names none."""
    module = COMMAND_MODULES.get(args[0]) if args else None
    importlib.import_module(f"servesim.cli.{module}" if module else "servesim.cli.commands")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; a user mistake is one line on stderr and exit code 2.

    SIGTERM is handled as Ctrl-C is (temporary folders removed, a sweep's finished results
    written), then ends the process as SIGTERM does (status 143 in a shell).
    """
    from servesim.interrupts import end_by_sigterm, sigterm_raises
    from servesim.paths import remove_created_parents

    args = sys.argv[1:] if argv is None else list(argv)
    code = 1
    try:
        with sigterm_raises() as term:
            code = _run(args)
    except KeyboardInterrupt:  # outside the command (typer turns one inside it into 130)
        code = 130
    finally:
        if code != 0:
            remove_created_parents()  # output folders made for a command that failed
    if term.received:
        end_by_sigterm()
    sys.exit(code)


def gather_goodput(args: list[str]) -> list[str]:
    """vLLM's ``--goodput ttft:500 tpot:50`` (argparse ``nargs="+"``) as click reads it:
    ``--goodput ttft:500 --goodput tpot:50``. The words after the option's value that are
    ``NAME:VALUE`` pairs are more values of it."""
    out: list[str] = []
    after_value = False
    for arg in args:
        if after_value and ":" in arg and not arg.startswith("-"):
            out += ["--goodput", arg]
            continue
        after_value = bool(out) and out[-1] == "--goodput"
        out.append(arg)
    return out


def _run(args: list[str]) -> int:
    """Run the command ``args`` names; its exit status."""
    args = gather_goodput(args)
    try:
        with importing():
            from servesim.cli.app import app

            load_commands(args)
            plain_help_when_narrow(app)
        # NOTE: not standalone: click would print its usage errors (a bad --tp, an option
        # out of range) as a boxed usage message; they are user mistakes like any other.
        # Every command returns None, so an int is the status of a typer.Exit.
        status = app(args=args, prog_name="servesim", standalone_mode=False)
        return status if isinstance(status, int) else 0
    except ServesimError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    except OSError as err:
        if err.filename is None:
            raise
        # The system refused a path the user gave (full disk, permissions, a folder that
        # vanished): a mistake in the environment, not a bug, so one line, not a traceback.
        sys.stderr.write(f"error: {err.filename}: {err.strerror or err}\n")
        return 2
    except Exception as err:
        import typer
        from typer._click import exceptions as click_errors

        if isinstance(err, click_errors.NoArgsIsHelpError):  # a group named alone: its help
            from typer import rich_utils

            from servesim.cli.app import app

            if app.rich_markup_mode is None:
                err.show()  # (plain help: a narrow terminal, see plain_help_when_narrow)
            else:
                rich_utils.rich_format_error(err)
            return err.exit_code
        if isinstance(err, click_errors.ClickException):
            sys.stderr.write(f"error: {click_error_line(err)}\n")
            return err.exit_code
        if isinstance(err, typer.Abort):
            sys.stderr.write("Aborted!\n")
            return 1
        raise


def click_error_line(err) -> str:
    """A click/typer error as one line: ``--holdout: 0.95 is not in the range 0<=x<=0.9``.

    A bad value names its option; other usage errors (an unknown option, a missing argument)
    point to the command's ``--help``.
    """
    # NOTE: typer 0.26-0.28 (the versions servesim allows) vendor click as typer._click.
    from typer._click import exceptions as click_errors

    if isinstance(err, click_errors.BadParameter) and not isinstance(
        err, click_errors.MissingParameter
    ):
        text = err.message.strip().rstrip(".")
        if err.param is not None:
            text = f"{_param_name(err.param)}: {text}"
    else:
        text = err.format_message().strip().rstrip(".")
        ctx = getattr(err, "ctx", None)
        if isinstance(err, click_errors.UsageError) and ctx is not None:
            text += f" (see `{ctx.command_path} --help`)"
    return " ".join(text.split())  # one line, whatever click's message held


def _param_name(param) -> str:
    """``--num-requests`` for an option (its longest spelling), ``MODEL`` for an argument."""
    opts = [o for o in getattr(param, "opts", ()) if o.startswith("-")]
    if opts:
        return max(opts, key=len)
    return param.human_readable_name
