"""FP8 GEMMs on a GPU without a measured FP8 table: factors fitted to the GPUs with tables."""

import numpy as np
import pytest

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost import operator as ops_mod
from servesim.cost.fp8_fit import (
    Fp8Factors,
    fp8_gemm_factors,
    fp8_gemm_seconds,
    fp8_roofline_sides,
    gpu_fp8_factors,
)
from servesim.cost.resolve import resolve_params
from servesim.hardware import load_hardware
from servesim.model import load_model


def _table(rows):
    cols = list(zip(*rows, strict=True))
    dtype, m, n, k, secs = (np.array(c) for c in cols)
    return {"dtype": dtype, "m": m.astype(float), "n": n.astype(float), "k": k.astype(float),
            "seconds": secs.astype(float)}  # fmt: skip


def test_one_gpus_factors_recover_the_compute_rate_read_rate_and_fixed_cost_of_its_fp8_rows():
    # A table made from known factors: 0.75 of the FP8 roofline's FLOP rate, 0.9 of its read
    # rate, 9 µs per GEMM beyond the 4 µs launch. The grid fit finds all three.
    rate, bw, launch, half = 1000e12, 3e12, 4e-6, 32.0
    rows = []
    for n, k in ((1024, 1024), (4096, 4096), (8192, 2048), (16384, 8192)):
        for m in (1, 8, 64, 512, 2048, 8192):
            compute = 2.0 * (m + half) * n * k / rate
            memory = (n * k + 2.0 * m * (n + k)) / bw
            rows.append(("fp8", m, n, k, max(compute / 0.75, memory / 0.9) + launch + 9e-6))
            rows.append(("bf16", m, n, k, 1.0))  # not read: only FP8 rows are fitted
    got = gpu_fp8_factors(_table(rows), rate, bw, launch, half)
    assert got == Fp8Factors(compute=0.75, memory=0.9, overhead_s=9e-6)
    small = [r for r in rows if r[0] == "fp8" and r[1] == 1 and r[2] == 1024]
    compute, memory, secs = fp8_roofline_sides(_table(small), rate, bw, half)
    assert fp8_gemm_seconds(compute, memory, got, launch) == pytest.approx(secs, rel=1e-9)
    bf16_only = _table([("bf16", 4096, 8192, 8192, 1e-3), ("bf16", 1, 8192, 8192, 1e-4)])
    assert gpu_fp8_factors(bf16_only, rate, bw, launch, half) is None


def test_the_shipped_tables_say_fp8_gemms_run_slower_than_their_roofline_and_pay_a_fixed_cost():
    factors = fp8_gemm_factors()
    assert 0.6 < factors.compute < 0.9 and 0.85 < factors.memory < 1.15
    # An H100 FP8 GEMM of one token through a 1024 x 1024 weight takes ~13 µs (the table).
    assert 5e-6 < factors.overhead_s < 13e-6


def test_fp8_gemms_on_a_gpu_without_fp8_tables_stand_on_the_fitted_rung():
    model, mi300x = load_model("llama-3.1-70b"), load_hardware("MI300X")
    par = Parallelism(tp=8)
    on = CostParams(kernel_tables=True, weight_dtype="fp8")
    res = resolve_params(model, mi300x, on)
    factors = res.fp8_factors
    assert factors == fp8_gemm_factors()
    fitted = build_step_cost(model, mi300x, par, on)
    roof = build_step_cost(model, mi300x, par, CostParams(weight_dtype="fp8"))
    assert resolve_params(model, mi300x, CostParams(weight_dtype="fp8")).fp8_factors is None
    gemm = [i for i, op in enumerate(fitted.operators) if op.rate == ops_mod.RATE_GEMM]
    # Every GEMM's compute side takes 1 / compute as long as on the roofline, its bytes
    # 1 / memory as long (launches aside), and each call pays the fixed overhead.
    busy_c, busy_m = fitted._ops.busy_compute[:, gemm], fitted._ops.busy_memory[:, gemm]
    assert np.allclose(busy_c, roof._ops.busy_compute[:, gemm] / factors.compute, rtol=1e-12)
    assert np.allclose(busy_m, roof._ops.busy_memory[:, gemm] / factors.memory, rtol=1e-12)
    fixed = fitted._ops.compute[:, gemm] - busy_c
    roof_fixed = roof._ops.compute[:, gemm] - roof._ops.busy_compute[:, gemm]
    calls = [fitted.operators[i].count for i in gemm]
    assert np.allclose(fixed.sum(0) - roof_fixed.sum(0), np.array(calls) * factors.overhead_s)
    big = fitted.features(np.array([8192]), np.array([0]))[None, :]
    assert fitted.rung_seconds_from_features(big[0])["fitted"][0] > 0.5 * float(
        fitted.step_seconds(np.array([8192]), np.array([0]))
    )
    # A GPU with its own FP8 table prices FP8 from it; bf16 weights take no factor.
    h100 = load_hardware("H100")
    assert resolve_params(model, h100, on).fp8_factors is None
    bf16 = build_step_cost(model, mi300x, par, CostParams(kernel_tables=True))
    assert bf16.rung_seconds_from_features(big[0])["fitted"][0] < 0.5 * float(
        bf16.step_seconds(np.array([8192]), np.array([0]))
    )


def test_a_gpu_takes_the_fp8_factors_of_its_own_architecture_where_any_gpu_of_it_has_tables(
    tmp_path,
):
    from servesim.cost.fp8_fit import factors_over
    from servesim.cost.kernels import gpus_with_tables

    blackwell = ["b200", "b300", "gb200", "gb300"]
    assert set(blackwell) <= set(gpus_with_tables())
    assert fp8_gemm_factors("blackwell") == factors_over(blackwell)
    assert fp8_gemm_factors("hopper") == factors_over(["h100", "h200"])
    # An architecture with no FP8 table (CDNA 3, or none given): every GPU's medians.
    assert fp8_gemm_factors("cdna3") == fp8_gemm_factors() == factors_over(gpus_with_tables())
    # Blackwell's FP8 GEMMs pay more per call than Hopper's (quantisation and set-up).
    assert fp8_gemm_factors("blackwell").overhead_s > fp8_gemm_factors("hopper").overhead_s
    # A hardware file of one's own picks them up through its `architecture`.
    # A hardware file of one's own: an architecture with tables borrows them (FP8 rows and
    # all, ``kernels.transfer_source_for``); one without takes every GPU's medians.
    model = load_model("llama-3.1-70b")
    on = CostParams(kernel_tables=True, weight_dtype="fp8")
    for arch in ("blackwell", "hopper"):
        res = resolve_params(model, load_hardware("MI300X").with_overrides(architecture=arch), on)
        assert res.fp8_factors is None and res.tables_from.architecture == arch
    res = resolve_params(model, load_hardware("MI300X").with_overrides(architecture=None), on)
    assert res.tables_from is None and res.fp8_factors == fp8_gemm_factors()
