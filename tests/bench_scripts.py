"""Import a script of ``bench/`` (a folder of scripts, not a package) as a module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_bench_script(relative: str) -> ModuleType:
    """The module of ``bench/<relative>`` (e.g. ``"mla_accuracy.py"``), executed once."""
    path = BENCH / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    # (Registered while it runs: a dataclass looks its module up in sys.modules.)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module
