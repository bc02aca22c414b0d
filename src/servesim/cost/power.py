"""GPU power and energy from a step's busy time: a utilisation-dependent linear model.

    P = idle_w + (tdp_w − idle_w) · u          (watts per GPU, averaged over a step)
    u = min(1, Σ_ops [(1 − w)·c_i + w·max(c_i, m_i)] / duration)

``c_i`` and ``m_i`` are operator ``i``'s compute-side and HBM-side seconds at the achievable
rates (launch gaps, link waits, host waits and pipeline bubbles excluded: the GPU is near idle
then), ``w`` is ``CostParams.memory_power_weight``. A compute-bound operator counts its whole
time at full dynamic power; a memory-bound one counts its tensor-core share fully and the rest
at ``w`` (streaming HBM with idle tensor cores draws less than dense GEMMs). Energy = P × time.

NOTE: the default ``w = 0.6`` is an estimate, chosen so that the model lands near public
nvidia-smi readings of vLLM serving on Hopper: a few hundred watts for batch-1 decode (busy HBM,
idle tensor cores, launch gaps), ~500–600 W around batch 128, near TDP for long prefills. Treat
absolute watts as ±25%; comparisons between configurations are firmer.
"""

from __future__ import annotations

import numpy as np


def active_seconds(
    compute_s: np.ndarray, memory_s: np.ndarray, memory_power_weight: float
) -> np.ndarray:
    """Full-power-equivalent busy seconds of operators: ``(1 − w)·c + w·max(c, m)``
    (elementwise; sum over a step's operators)."""
    c = np.asarray(compute_s, dtype=np.float64)
    m = np.asarray(memory_s, dtype=np.float64)
    return (1.0 - memory_power_weight) * c + memory_power_weight * np.maximum(c, m)


def utilisation(active_s: np.ndarray | float, duration_s: np.ndarray | float) -> np.ndarray:
    """Busy fraction in [0, 1]: ``active_s / duration_s`` (0 for empty durations)."""
    a = np.asarray(active_s, dtype=np.float64)
    d = np.asarray(duration_s, dtype=np.float64)
    a, d = np.broadcast_arrays(a, d)
    out = np.divide(a, d, out=np.zeros(a.shape), where=d > 0)
    return np.clip(out, 0.0, 1.0)


def gpu_power_watts(tdp_w: float, idle_w: float, util: np.ndarray | float) -> np.ndarray:
    """Average watts of one GPU at busy fraction ``util``: ``idle + (tdp − idle) · util``."""
    return idle_w + (tdp_w - idle_w) * np.clip(np.asarray(util, dtype=np.float64), 0.0, 1.0)
