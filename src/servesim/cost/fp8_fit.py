"""FP8 GEMMs on a GPU without a measured FP8 table: the *fitted* rung.

The roofline prices an FP8 GEMM at the FP8 tensor-core peak times the GPU's (BF16-measured)
MAMF efficiency and reads its weights at one byte each. The measured tables say FP8 kernels get
much less of that than BF16 kernels get of theirs: at m ≥ 2,048 rows they reach ~0.7 of the
efficiency BF16 reaches (an H100's FP8 GEMMs run ~1.6×, not 2×, its BF16 ones), and at decode
batch sizes (m ≤ 16) they read their weights at ~0.6 of BF16's bandwidth (scales, narrower
loads: 0.77–1.03× BF16's *time* for half the bytes on H100/H200/B200). The roofline alone is
30–57% optimistic on every measured FP8 table.

:func:`fp8_gemm_factors` fits both ratios on every GPU that ships BF16 and FP8 GEMM tables
(the median over GPUs, each GPU's own ratio relative to its own BF16 rows, so that the BF16
roofline's calibration is kept); the cost model scales a GPU's FP8 GEMM rates by them where no
measured FP8 table prices its GEMMs (``coefficients.rates_of``).
"""

from __future__ import annotations

import functools

import numpy as np

from servesim.cost.kernels import gpus_with_tables, load_tables

LARGE_M = 2048
"""Rows from which a GEMM is compute-bound on every GPU with tables."""
SMALL_M = 16
"""Rows up to which a GEMM is a weight read (decode batch sizes)."""
MIN_WEIGHT_ELEMENTS = 4096 * 4096
"""Weights at least this large (smaller ones sit in L2 and launch-bound rows)."""


def gpu_fp8_factors(gemm: dict[str, np.ndarray], bf16_peak: float, fp8_peak: float):
    """(compute, memory) factors of one GPU's GEMM table: FP8's achieved fraction of its peak
    over BF16's at large m, and FP8's achieved weight-read rate over BF16's at small m (same
    shapes and rows); None without both dtypes."""
    big = gemm["n"] * gemm["k"] >= MIN_WEIGHT_ELEMENTS
    achieved = 2.0 * gemm["m"] * gemm["n"] * gemm["k"] / gemm["seconds"]
    fraction = {}
    for dtype, peak in (("bf16", bf16_peak), ("fp8", fp8_peak)):
        rows = big & (gemm["dtype"] == dtype) & (gemm["m"] >= LARGE_M)
        if not rows.any():
            return None
        fraction[dtype] = float(np.median(achieved[rows])) / peak
    times: dict[str, dict[tuple[float, float, float], float]] = {"bf16": {}, "fp8": {}}
    small = big & (gemm["m"] <= SMALL_M)
    for dtype in times:
        rows = small & (gemm["dtype"] == dtype)
        keys = zip(gemm["m"][rows], gemm["n"][rows], gemm["k"][rows], strict=True)
        times[dtype] = dict(zip(keys, gemm["seconds"][rows].tolist(), strict=True))
    common = [key for key in times["fp8"] if key in times["bf16"]]
    if not common:
        return None
    # Weight bytes dominate at small m: FP8 reads half of BF16's bytes in its time.
    read = np.median([0.5 * times["bf16"][key] / times["fp8"][key] for key in common])
    return fraction["fp8"] / fraction["bf16"], float(read)


@functools.cache
def fp8_gemm_factors() -> tuple[float, float] | None:
    """(compute, memory) factors for FP8 GEMMs, the median of the GPUs with both tables (None
    when no GPU ships them): FP8's efficiency relative to BF16's, and its weight-read rate
    relative to BF16's."""
    return factors_over(gpus_with_tables())


def factors_over(gpu_names: list[str]) -> tuple[float, float] | None:
    """:func:`fp8_gemm_factors` over the tables of ``gpu_names`` only (the GPUs among them
    without both tables count for nothing)."""
    from servesim.hardware import load_hardware

    found = []
    for name in gpu_names:
        hw = load_hardware(name)
        tables = load_tables(hw.name)
        if tables is None or tables.gemm is None or "fp8" not in hw.peak_flops:
            continue
        got = gpu_fp8_factors(tables.gemm, hw.peak_flops["bf16"], hw.peak_flops["fp8"])
        if got is not None:
            found.append(got)
    if not found:
        return None
    return float(np.median([c for c, _ in found])), float(np.median([m for _, m in found]))
