"""Calibrate and compare: measured timings → fitted cost model, and measured vs predicted.

- :func:`read_measurements` reads step logs (JSON lines) and ``op,tokens,context,batch,seconds``
  CSVs; :func:`read_bench_result` reads vLLM ``bench serve`` / SGLang ``bench_serving``
  results.
- :func:`calibrate` fits the cost model to measured steps and returns a :class:`Calibration`
  (write it with :func:`write_calibration`); :func:`load_calibration` turns a calibration file
  into ``CostParams`` for a run, refusing one fitted for another model, GPU or TP;
  :func:`extrapolation_warning` says when a run's steps leave the measured range.
- :func:`analyze_steps` sets every measured step against the roofline (FLOPs, bytes,
  achieved share of peak, utilisation gap); :func:`compare` re-runs a benchmark in the
  simulator.
"""

from servesim.calibrate.analyze import Analysis, analyze_steps, sweep_table
from servesim.calibrate.batches import REGIMES, representative_rows
from servesim.calibrate.bench_results import (
    COMPARE_METRICS,
    BenchResult,
    measured_metrics,
    read_bench_result,
)
from servesim.calibrate.calibration import (
    Calibration,
    MeasuredRange,
    extrapolation_warning,
    load_calibration,
    read_calibration,
    write_calibration,
)
from servesim.calibrate.compare import Comparison, MetricRow, compare, write_comparison_csv
from servesim.calibrate.fit import FIT_PARAMS, FitResult, fit_params, predict_seconds
from servesim.calibrate.outputs import write_analysis
from servesim.calibrate.pipeline import CalibrationRun, calibrate
from servesim.calibrate.readers import Measurements, read_measurements, read_op_csv, read_step_log

__all__ = [
    "COMPARE_METRICS",
    "FIT_PARAMS",
    "REGIMES",
    "Analysis",
    "BenchResult",
    "Calibration",
    "CalibrationRun",
    "Comparison",
    "FitResult",
    "MeasuredRange",
    "Measurements",
    "MetricRow",
    "analyze_steps",
    "calibrate",
    "compare",
    "extrapolation_warning",
    "fit_params",
    "load_calibration",
    "measured_metrics",
    "predict_seconds",
    "read_bench_result",
    "read_calibration",
    "read_measurements",
    "read_op_csv",
    "read_step_log",
    "representative_rows",
    "sweep_table",
    "write_analysis",
    "write_calibration",
    "write_comparison_csv",
]
