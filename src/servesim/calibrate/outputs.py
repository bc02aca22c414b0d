"""Writing an analysis folder, all or nothing (a temporary folder beside it, then moved)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from servesim.calibrate.analyze import Analysis, step_rows, sweep_table, write_csv
from servesim.calibrate.plots import plot_gap_vs_batch, plot_phases
from servesim.errors import ServesimError

STEPS_CSV = "analysis_steps.csv"
SWEEP_CSV = "analysis_sweep.csv"
GAP_PNG = "gap_vs_batch.png"
PHASES_PNG = "phases.png"


def write_analysis(a: Analysis, out_dir: str | Path) -> list[Path]:
    """Write the per-row CSV, the sweep CSV and the plots into ``out_dir``; return the paths.

    ``phases.png`` is written only when the logs have phases.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ServesimError(f"{out} exists and is not a folder", field="--out")
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        write_csv(step_rows(a), tmp / STEPS_CSV)
        write_csv(sweep_table(a), tmp / SWEEP_CSV)
        plot_gap_vs_batch(a, tmp / GAP_PNG)
        if a.phases:
            plot_phases(a, tmp / PHASES_PNG)
        names = sorted(p.name for p in tmp.iterdir())
        out.mkdir(exist_ok=True)
        for name in names:
            (tmp / name).replace(out / name)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / n for n in names]
