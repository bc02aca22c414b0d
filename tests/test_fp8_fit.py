"""FP8 GEMMs on a GPU without a measured FP8 table: factors fitted to the GPUs with tables."""

import numpy as np
import pytest

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost import operator as ops_mod
from servesim.cost.fp8_fit import LARGE_M, fp8_gemm_factors, gpu_fp8_factors
from servesim.cost.resolve import resolve_params
from servesim.hardware import load_hardware
from servesim.model import load_model


def _table(rows):
    cols = list(zip(*rows, strict=True))
    dtype, m, n, k, secs = (np.array(c) for c in cols)
    return {"dtype": dtype, "m": m.astype(float), "n": n.astype(float), "k": k.astype(float),
            "seconds": secs.astype(float)}  # fmt: skip


def test_one_gpus_factors_are_fp8s_efficiency_and_read_rate_relative_to_bf16():
    n = k = 8192.0
    flops = 2 * 4096 * n * k
    table = _table([
        # Large m: bf16 reaches 600 of 1000 TFLOP/s (0.6), fp8 900 of 2000 (0.45): 0.75.
        ("bf16", 4096, n, k, flops / 600e12),
        ("fp8", 4096, n, k, flops / 900e12),
        # m = 1: fp8 takes 0.8 of bf16's time for half the bytes: it reads at 0.625 of the rate.
        ("bf16", 1, n, k, 100e-6),
        ("fp8", 1, n, k, 80e-6),
    ])  # fmt: skip
    compute, memory = gpu_fp8_factors(table, 1000e12, 2000e12)
    assert compute == pytest.approx(0.75, rel=1e-12)
    assert memory == pytest.approx(0.625, rel=1e-12)
    bf16_only = _table([("bf16", LARGE_M, n, k, 1e-3), ("bf16", 1, n, k, 1e-4)])
    assert gpu_fp8_factors(bf16_only, 1000e12, 2000e12) is None


def test_the_shipped_tables_say_fp8_kernels_fall_short_of_bf16s():
    compute, memory = fp8_gemm_factors()
    assert 0.6 < compute < 0.9 and 0.4 < memory < 1.0


def test_fp8_gemms_on_a_gpu_without_fp8_tables_stand_on_the_fitted_rung():
    model, mi300x = load_model("llama-3.1-70b"), load_hardware("MI300X")
    par = Parallelism(tp=8)
    on = CostParams(kernel_tables=True, weight_dtype="fp8")
    res = resolve_params(model, mi300x, on)
    compute, memory = res.fp8_factors
    assert (compute, memory) == fp8_gemm_factors()
    fitted = build_step_cost(model, mi300x, par, on)
    roof = build_step_cost(model, mi300x, par, CostParams(weight_dtype="fp8"))
    assert resolve_params(model, mi300x, CostParams(weight_dtype="fp8")).fp8_factors is None
    gemm = [i for i, op in enumerate(fitted.operators) if op.rate == ops_mod.RATE_GEMM]
    # Every GEMM's compute side takes 1 / compute as long as on the roofline, its bytes
    # 1 / memory as long (launches aside).
    busy_c, busy_m = fitted._ops.busy_compute[:, gemm], fitted._ops.busy_memory[:, gemm]
    assert np.allclose(busy_c, roof._ops.busy_compute[:, gemm] / compute, rtol=1e-12)
    assert np.allclose(busy_m, roof._ops.busy_memory[:, gemm] / memory, rtol=1e-12)
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
