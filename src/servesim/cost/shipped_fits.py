"""Fits of the shipped kernel tables, computed when the catalog is distilled.

The fitted rungs of a GPU without tables (the median attention curve, the FP8 GEMM factors)
are medians over every GPU that ships tables, and fitting each GPU's curve is a grid search
(~0.1 s a GPU): a run on an MI300X or on a hardware file of one's own would pay a second of
fits before its first step. ``bench/gpu/distil_kernels.py`` therefore stores each GPU's fits
beside its tables (``catalog/kernels/<gpu>/fits.json``) together with the inputs they were
fitted with (peaks, efficiencies, launch time); a fit is read back only when those inputs are
the caller's, so an edited hardware file or other tables (the ``servesim[kernels]`` extra)
are fitted afresh. ``tests/test_shipped_fits.py`` checks every stored fit against a fresh one.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from servesim.cost.kernels import table_folder

FILE_NAME = "fits.json"


@functools.cache
def _stored(gpu_name: str) -> dict[str, Any]:
    path = table_folder(gpu_name) / FILE_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def shipped_fit(gpu_name: str, kind: str, inputs: dict[str, float]) -> dict[str, Any] | None:
    """The stored ``kind`` fit (``attention`` or ``fp8``) of ``gpu_name``'s catalog tables when
    it was fitted with exactly ``inputs``, else None (fit afresh)."""
    entry = _stored(gpu_name).get(kind)
    if not entry or entry.get("inputs") != inputs:
        return None
    return entry["fit"]


def write_fits(folder: Path, fits: dict[str, dict[str, Any] | None]) -> None:
    """Store ``{kind: {"inputs": ..., "fit": ...}}`` in ``folder`` (the distil script)."""
    kept = {k: v for k, v in fits.items() if v is not None}
    (folder / FILE_NAME).write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
