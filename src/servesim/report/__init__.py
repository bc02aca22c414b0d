"""The report of a saved run: a self-contained HTML page and PNG charts.

``build_report(run_dir) -> str`` and ``write_report(run_dir, out_path, png_dir=None)``; the
run folder is read by :mod:`servesim.report.data`, shared with the simulated-run trace.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report", "write_report"]


def __getattr__(name: str) -> Any:
    # NOTE: lazy, so that `servesim.report.data` (used by the trace writer) does not import
    # matplotlib: a trace needs neither its import time nor the package.
    if name in __all__:
        from servesim.report import page

        return getattr(page, name)
    raise AttributeError(f"module 'servesim.report' has no attribute {name!r}")
