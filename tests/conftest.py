import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

END_TO_END_MODULES = {
    "test_cli_bad_files",
    "test_cli_outputs",
    "test_cli_polish",
    "test_cli_simulate",
    "test_examples",
    "test_fuzz_inputs",
    "test_report",
    "test_serve",
    "test_sweep_cli",
}
"""Modules whose tests start the real ``servesim`` command (or server) in a new process, 1-9 s
each: ~200 of the suite's ~250 s. They are ``slow`` with the Ray, browser and Perfetto tests, so
``pytest -m "not slow"`` runs the library's tests (cost model, engine, workloads, metrics) in
under a minute; CI runs everything."""


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""
        if module in END_TO_END_MODULES:
            item.add_marker(pytest.mark.slow)
