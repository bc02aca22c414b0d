"""What the CLI does for its own start-up: GC paused while importing, numpy's thread pool."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from servesim.cli import importing


def test_importing_pauses_the_collector_and_restores_it():
    assert gc.isenabled()
    with importing():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with importing():
            pass
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()


def test_importing_freezes_only_when_modules_were_imported():
    before = gc.get_freeze_count()
    with importing():
        pass  # nothing new imported: pending garbage of a long-lived process stays collectable
    assert gc.get_freeze_count() == before
    sys.modules.pop("colorsys", None)
    try:
        with importing():
            import colorsys  # noqa: F401
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


def _env_after_import(extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS",)}
    env.update(extra)
    code = "import os, servesim.cli; print(os.environ['OPENBLAS_NUM_THREADS'])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.split()


def test_cli_sets_one_blas_thread_unless_the_user_chose():
    assert _env_after_import({})[0] == "1"
    assert _env_after_import({"OPENBLAS_NUM_THREADS": "4"})[0] == "4"


def test_a_simulate_run_ends_with_the_collector_on():
    code = (
        "import gc, sys; from servesim.cli import main\n"
        "args = ['simulate', '-n', '2', '--input-len', '8', '--output-len', '2', '--json']\n"
        "try:\n    main(args)\n"
        "except SystemExit:\n    pass\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 0, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.split() == ["True", "True"]


def test_a_simulate_run_does_not_import_pydantic():
    # pydantic's import and first model are ~0.1 s of start-up (bench/bench_startup.py): the
    # specs are msgspec Structs, and typer is pinned below the release that imports pydantic.
    code = (
        "import sys; from servesim.cli import main\n"
        "args = ['simulate', '-n', '2', '--input-len', '8', '--output-len', '2', '--json']\n"
        "try:\n    main(args)\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "[]"


def test_version_runs_when_it_is_the_only_command_loaded():
    # `servesim version` loads no command module: the app then has one command, which typer
    # would run as the app itself ("unexpected extra argument (version)") without a callback.
    from servesim import __version__

    script = Path(sys.executable).parent / "servesim"
    out = subprocess.run([str(script), "version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"servesim {__version__}"
