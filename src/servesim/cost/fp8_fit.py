"""FP8 GEMMs on a GPU without a measured FP8 table: the *fitted* rung.

The roofline prices an FP8 GEMM at the FP8 tensor-core peak times the GPU's (BF16-measured)
MAMF efficiency, reads its weights at one byte each and adds one kernel launch. The measured
FP8 tables say three things differ (AIConfigurator's GEMM tables, ``catalog/kernels``):

- FP8 kernels reach ~0.7-0.8 of that compute rate at large m (an H100's FP8 GEMMs run ~1.6x,
  not 2x, its BF16 ones);
- they read their weights at about the HBM rate the BF16 kernels reach (factor ~1.0);
- every FP8 GEMM pays a fixed ~6-12 µs beyond the launch, whatever its size: the activation
  quantisation kernel that runs before it and the scaled GEMM's own set-up. A 1024 x 1024
  FP8 GEMM of one token takes 13-14 µs on the H100, H200 and B200, ~3x a BF16 one.

Without the fixed term the small shapes look like a slow weight read; the earlier two-factor
fit (compute and weight-read rate only) was 26-41% off held-out tables, this one 5-15%
(``bench/kernel_accuracy.py``).

:func:`gpu_fp8_factors` fits the three numbers to one GPU's FP8 rows (least median relative
error, on a grid); :func:`fp8_gemm_factors` takes each one's median over the GPUs that ship
FP8 GEMM tables. The cost model applies them to a GPU's FP8 GEMMs where no measured FP8 table
prices them (``coefficients.rates_of`` and ``operator_sides``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from servesim.cost.kernels import catalog_source, gpus_with_tables, load_tables
from servesim.cost.shipped_fits import shipped_fit

_RATIO_GRID = np.arange(0.3, 1.3001, 0.1)
"""Coarse grid of the compute and memory factors (refined twice around the best, to 0.0125)."""
_OVERHEAD_GRID_US = np.arange(0.0, 20.001, 1.0)
"""Coarse grid of the fixed overhead, µs (refined in 0.25 µs steps)."""


@dataclass(frozen=True)
class Fp8Factors:
    """How FP8 GEMM kernels fall short of the FP8 roofline (see the module docstring)."""

    compute: float
    """Fraction of the roofline's FP8 FLOP rate (FP8 peak × the GPU's GEMM efficiency)."""
    memory: float
    """Fraction of the roofline's weight-read rate (HBM bandwidth × memory efficiency)."""
    overhead_s: float
    """Seconds every FP8 GEMM adds beyond its launch (activation quantisation, scales)."""


def fp8_roofline_sides(
    gemm: dict[str, np.ndarray], fp8_flop_rate: float, hbm_rate: float, half_tokens: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(compute seconds, memory seconds, measured seconds) of a table's FP8 rows on the
    roofline: ``2 (m + h) n k / rate`` and ``(n k + 2 m (n + k)) / BW`` (one byte per weight,
    two per activation)."""
    rows = gemm["dtype"] == "fp8"
    m, n, k = gemm["m"][rows], gemm["n"][rows], gemm["k"][rows]
    compute = 2.0 * (m + half_tokens) * n * k / fp8_flop_rate
    memory = (n * k + 2.0 * m * (n + k)) / hbm_rate
    return compute, memory, gemm["seconds"][rows]


def fp8_gemm_seconds(
    compute: np.ndarray, memory: np.ndarray, factors: Fp8Factors, launch_s: float
) -> np.ndarray:
    """FP8 GEMM seconds on the fitted rung from the roofline's two sides."""
    slower = np.maximum(compute / factors.compute, memory / factors.memory)
    return slower + launch_s + factors.overhead_s


def _grid_fit(
    compute: np.ndarray, memory: np.ndarray, measured: np.ndarray, launch_s: float
) -> Fp8Factors:
    """The factors of least median relative error: a coarse grid, then two finer ones around
    the best so far (each vectorised over the overhead)."""

    def search(ratios_c, ratios_m, overheads):
        best = (np.inf, 1.0, 1.0, 0.0)
        for c in ratios_c:
            for mem in ratios_m:
                base = np.maximum(compute / c, memory / mem) + launch_s
                err = np.median(np.abs((base[:, None] + overheads) / measured[:, None] - 1), 0)
                j = int(np.argmin(err))
                if err[j] < best[0]:
                    best = (float(err[j]), float(c), float(mem), float(overheads[j]))
        return best

    _, c, mem, over = search(_RATIO_GRID, _RATIO_GRID, _OVERHEAD_GRID_US * 1e-6)
    medium = np.arange(-3, 4) * 0.025
    _, c, mem, over = search(c + medium, mem + medium, _OVERHEAD_GRID_US * 1e-6)
    fine = np.arange(-1, 2) * 0.0125
    over_us = over * 1e6
    fine_over = np.arange(max(over_us - 1.0, 0.0), over_us + 1.001, 0.25) * 1e-6
    _, c, mem, over = search(c + fine, mem + fine, fine_over)
    return Fp8Factors(compute=round(c, 4), memory=round(mem, 4), overhead_s=round(over, 9))


def gpu_fp8_factors(
    gemm: dict[str, np.ndarray],
    fp8_flop_rate: float,
    hbm_rate: float,
    launch_s: float,
    half_tokens: float,
) -> Fp8Factors | None:
    """One GPU's factors, fitted to its table's FP8 rows against its FP8 roofline
    (``fp8_flop_rate`` = FP8 peak × GEMM efficiency, FLOP/s; ``hbm_rate`` = bandwidth ×
    memory efficiency, bytes/s; ``launch_s`` the roofline's launch, s; ``half_tokens`` the
    GEMM efficiency curve's half-rate rows); None without FP8 rows."""
    compute, memory, measured = fp8_roofline_sides(gemm, fp8_flop_rate, hbm_rate, half_tokens)
    if len(measured) == 0:
        return None
    return _grid_fit(compute, memory, measured, launch_s)


def fit_inputs(hw) -> dict[str, float]:
    """What a GPU's FP8 factors depend on besides its table (:func:`gpu_fp8_factors`'s other
    arguments, from its hardware file): the key its shipped fit is stored under."""
    from servesim.cost.params import CostParams

    return {
        "fp8_flop_rate": hw.peak_flops["fp8"] * hw.compute_efficiency,
        "hbm_rate": hw.hbm_bandwidth * hw.memory_efficiency,
        "launch_s": hw.kernel_launch_s,
        "half_tokens": CostParams().gemm_half_tokens,
    }


@functools.cache
def _factors_of_gpu(name: str, shipped: bool = True) -> Fp8Factors | None:
    """One catalog GPU's factors (its shipped fit when made with its current hardware file's
    figures, see ``shipped_fits``; ``shipped`` False: fitted afresh)."""
    from servesim.hardware import load_hardware

    hw = load_hardware(name)
    tables = load_tables(hw.name)
    if tables is None or tables.gemm is None or "fp8" not in hw.peak_flops:
        return None
    inputs = fit_inputs(hw)
    if shipped and tables.source == catalog_source(hw.name):
        stored = shipped_fit(hw.name, "fp8", inputs)
        if stored is not None:
            return Fp8Factors(**stored)
    return gpu_fp8_factors(tables.gemm, **inputs)


@functools.cache
def fp8_gemm_factors(architecture: str | None = None) -> Fp8Factors | None:
    """The factors for FP8 GEMMs on a GPU without an FP8 table: each one's median over the GPUs
    of its ``architecture`` that ship FP8 GEMM tables, else over all that do (None when none
    does).

    FP8 GEMM kernels are built per architecture (Hopper's ``wgmma``, Blackwell's ``tcgen05``
    CUTLASS/cuBLASLt kernels), and so are their fixed costs: Blackwell's FP8 GEMMs pay 10-12 µs
    beyond the launch, Hopper's 8.5-8.75, Ada's 6. Held out GPU by GPU
    (``bench/kernel_accuracy.py``), the same architecture's medians price a B200's, B300's,
    GB200's and GB300's FP8 rows within 8% and an H100's and H200's within 5%, against 8-14%
    with every GPU's medians."""
    names = gpus_with_tables()
    if architecture is not None:
        same = [n for n in names if _architecture(n) == architecture and _factors_of_gpu(n)]
        if same:
            return factors_over(same)
    return factors_over(names)


def _architecture(name: str) -> str | None:
    from servesim.hardware import load_hardware

    return load_hardware(name).architecture


def factors_over(gpu_names: list[str]) -> Fp8Factors | None:
    """:func:`fp8_gemm_factors` over the tables of ``gpu_names`` only (the GPUs among them
    without FP8 rows count for nothing)."""
    found = [f for f in map(_factors_of_gpu, gpu_names) if f is not None]
    if not found:
        return None
    return Fp8Factors(
        compute=float(np.median([f.compute for f in found])),
        memory=float(np.median([f.memory for f in found])),
        overhead_s=float(np.median([f.overhead_s for f in found])),
    )
