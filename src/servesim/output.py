"""Writing a run to disk: ``summary.json``, ``requests.csv``, ``steps.csv`` (and, from other
modules, ``trace.json`` and ``report.html``), all or nothing.

Files are first written into a temporary folder beside the target, then moved into place, so a
run that fails leaves the output folder as it was.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from servesim import __version__
from servesim.engine.records import REQUEST_COLUMNS, STEP_COLUMNS
from servesim.paths import cannot_write, writable_dir
from servesim.validation import to_data


def _clean(value: Any, non_finite: Callable[[float], Any] = lambda _: None) -> Any:
    """JSON-safe: NaN/inf become ``non_finite(value)`` (null by default), numpy scalars become
    Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v, non_finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, non_finite) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite(value)
    return value


def summary_document(result) -> dict[str, Any]:
    """The content of ``summary.json``: vLLM-named metrics at the top level, plus context."""
    mem = result.memory
    doc: dict[str, Any] = {"servesim_version": __version__}
    doc.update(result.summary)
    # The scenario echo is a config that reproduces the run (`rate: inf` stays "inf", not null).
    doc["scenario"] = _clean(to_data(result.scenario), non_finite=str)
    doc["workload_description"] = result.workload_description
    doc["model_info"] = {
        "name": result.model.name,
        "params_total": result.model.params_total,
        "params_active": result.model.params_active,
    }
    doc["hardware_info"] = {"name": result.hardware.name}
    doc["memory"] = {
        "weights_bytes_per_gpu": mem.weights_bytes_per_gpu,
        "kv_bytes_per_token": mem.kv_bytes_per_token,
        "num_kv_blocks": mem.num_kv_blocks,
        "kv_capacity_tokens": mem.kv_capacity_tokens,
    }
    return _clean(doc)


def _write_columns(path: Path, columns: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        # Floats as repr (shortest round-trip form): exact, and compact.
        writer.writerows(zip(*(columns[n].tolist() for n in names), strict=True))


def write_run(
    result, out_dir: str | Path, extra: dict[str, Callable[[Path], None]] | None = None
) -> Path:
    """Write a run's files into ``out_dir`` atomically; ``extra`` maps file names to writers."""
    out = writable_dir(out_dir)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.resolve().parent))
    except OSError as err:
        raise cannot_write(out, err) from None
    try:
        (tmp / "summary.json").write_text(json.dumps(summary_document(result), indent=2) + "\n")
        _write_columns(tmp / "requests.csv", result.records.request_columns(), REQUEST_COLUMNS)
        steps = result.records.step_columns()
        steps.update(result.step_extra)
        _write_columns(tmp / "steps.csv", steps, STEP_COLUMNS + tuple(result.step_extra))
        for name, writer in (extra or {}).items():
            writer(tmp / name)
        for f in tmp.iterdir():
            f.chmod(0o644)  # temporary files are private; results are not
        if not out.exists():
            tmp.chmod(0o755)
            tmp.rename(out)
        else:
            for f in tmp.iterdir():
                f.replace(out / f.name)
            tmp.rmdir()
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise cannot_write(out, err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
