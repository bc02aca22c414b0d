"""Writing an analysis folder, all or nothing (staged in a temporary folder, then moved in)."""

from __future__ import annotations

from pathlib import Path

from servesim.calibrate.analyze import Analysis, step_rows, sweep_table, write_csv
from servesim.calibrate.plots import plot_gap_vs_batch, plot_phases
from servesim.errors import ServesimError
from servesim.output import staged_folder

STEPS_CSV = "analysis_steps.csv"
SWEEP_CSV = "analysis_sweep.csv"
GAP_PNG = "gap_vs_batch.png"
PHASES_PNG = "phases.png"
ANALYSIS_FILES = (STEPS_CSV, SWEEP_CSV, GAP_PNG, PHASES_PNG)


def write_analysis(a: Analysis, out_dir: str | Path) -> list[Path]:
    """Write the per-row CSV, the sweep CSV and the plots into ``out_dir``; return the paths.

    ``phases.png`` is written only when the logs have phases (one left by an earlier analysis
    in the same folder is removed: the folder describes one analysis).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ServesimError(f"{out} exists and is not a folder", field="--out")
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(out, ANALYSIS_FILES) as tmp:
        write_csv(step_rows(a), tmp / STEPS_CSV)
        write_csv(sweep_table(a), tmp / SWEEP_CSV)
        plot_gap_vs_batch(a, tmp / GAP_PNG)
        if a.phases:
            plot_phases(a, tmp / PHASES_PNG)
        names = sorted(p.name for p in tmp.iterdir())
    return [out / n for n in names]
