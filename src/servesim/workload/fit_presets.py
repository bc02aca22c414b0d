"""Fit the preset quantile tables to an Azure-format trace and print them.

Usage (from the repository root)::

    python -m servesim.workload.fit_presets ../shared/traces/azure_llm_2023_conv.csv

The printed tuples are what :mod:`servesim.workload.presets` hard-codes. Kept apart from
``presets`` so that running it with ``-m`` does not re-import an already imported module.
"""

from __future__ import annotations

import sys

from servesim.workload.presets import fit_quantile_table
from servesim.workload.traces import read_trace


def main(argv: list[str]) -> int:
    """Print the input and output tables of one trace; returns the exit code."""
    if len(argv) != 1:
        print("usage: python -m servesim.workload.fit_presets TRACE.csv", file=sys.stderr)
        return 2
    table = read_trace(argv[0], "azure")
    for label, lengths in (("input", table.input_tokens), ("output", table.output_tokens)):
        print(f"{label} ({len(lengths)} rows): {fit_quantile_table(lengths)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
