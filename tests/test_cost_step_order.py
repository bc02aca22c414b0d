"""The step pricing's arithmetic in a fixed order (``servesim.cost.step``): the product with the
hot matrix summed feature by feature, a decode span's product as its common part plus each
step's varying terms, logarithms from the C library. That is the compiled kernels' arithmetic,
so both give the same bits (``tests/test_compiled.py``), and none of it depends on which BLAS
kernel or SIMD code the CPU picks (checked here in subprocesses that pick others)."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from servesim.cost import features as _F
from servesim.cost.libm import c_math
from servesim.cost.step import hot_product, span_hot_product


def _sequential(f: np.ndarray, hot: np.ndarray) -> np.ndarray:
    """The product as the compiled kernel loops: from 0.0, the nonzero features in order."""
    x = np.zeros(hot.shape[1])
    for i in range(len(f)):
        if f[i] != 0.0:
            x = x + f[i] * hot[i]
    return x


def test_the_hot_product_sums_feature_by_feature():
    rng = np.random.default_rng(3)
    for _ in range(300):
        features, columns = int(rng.integers(2, 24)), int(rng.integers(2, 90))
        f = rng.integers(0, 5000, features).astype(np.float64)
        f[rng.random(features) < 0.4] = 0.0
        hot = rng.random((features, columns)) * 10.0 ** rng.integers(-9, -3, (features, 1))
        want = _sequential(f, hot)
        np.testing.assert_array_equal(hot_product(f, hot), want)


def test_a_span_s_product_is_its_common_part_plus_each_step_s_terms():
    rng = np.random.default_rng(4)
    hot = rng.random((_F.NUM_FEATURES, 40)) * 1e-6
    hot[_F.P, ::3] = 0.0  # (columns a varying feature does not reach keep the common part)
    steps = 25
    f = np.tile(rng.integers(1, 100, _F.NUM_FEATURES).astype(np.float64), (steps, 1))
    f[:, _F.P] += np.arange(steps) * 7.0
    f[:, _F.K] += np.arange(steps) * 3.0
    varying = (_F.P, _F.K)
    fixed = f[0].copy()
    fixed[list(varying)] = 0.0
    base = hot_product(fixed, hot)
    got = span_hot_product(f, hot, varying, base)
    for j in range(steps):
        want = base.copy()
        for i in varying:
            want = want + f[j, i] * hot[i]
        np.testing.assert_array_equal(got[j], want)
    np.testing.assert_array_equal(span_hot_product(f, hot, (), base), np.tile(base, (steps, 1)))


def test_c_math_gives_the_c_library_s_bits():
    x = 10.0 ** np.random.default_rng(5).uniform(0.0, 12.0, 20_000)
    for fn in (math.log10, math.log, math.log2):
        want = np.array([fn(v) for v in x.tolist()])
        np.testing.assert_array_equal(c_math(fn, x), want)
        np.testing.assert_array_equal(c_math(fn, x.reshape(100, 200)), want.reshape(100, 200))


CHILD = r"""
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from test_engine_golden import figures
names = sys.argv[2].split(",")
print(json.dumps({n: hashlib.sha256(json.dumps(figures(n), sort_keys=True).encode()).hexdigest()
                  for n in names}))
"""

VARIANTS = {
    "default": {},
    # OpenBLAS's kernels for an older CPU (moved step ends in their 15th digit before session 60)
    "older BLAS kernel": {"OPENBLAS_CORETYPE": "Sandybridge"},
    # numpy without its AVX-512 code (its log10 then the C library's)
    "no AVX-512 in numpy": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SKX AVX512F"},
}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 BLAS and SIMD")
def test_the_records_are_the_same_under_other_blas_kernels_and_simd_levels():
    tests = str(Path(__file__).parent)
    names = "low_load,saturating,kv_offload,sarathi"
    seen = {}
    for variant, env in VARIANTS.items():
        out = subprocess.run(
            [sys.executable, "-c", CHILD, tests, names],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        seen[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["older BLAS kernel"] == seen["default"]
    assert seen["no AVX-512 in numpy"] == seen["default"]


@pytest.mark.parametrize(
    "spec",
    [
        {"model": "llama3.1-8b"},  # dense, kernel tables, CUDA graphs (padded)
        {"model": "mistralai/Mixtral-8x7B-v0.1", "tp": 2},  # MoE
        {"model": "openai/gpt-oss-120b"},  # sliding windows: four features vary
        {"model": "deepseek-ai/DeepSeek-V3", "hardware": "H200", "tp": 8},  # MLA absorbed
        {"model": "llama3.1-8b", "engine": "vllm-v0"},  # host work, eager steps' curves
        {"model": "meta-llama/Llama-2-7b-hf", "hardware": "A100-80GB"},  # serial walk
    ],
    ids=["dense", "moe", "window", "mla", "vllm_v0", "walk"],
)
def test_a_decode_step_alone_is_priced_as_within_a_span(spec):
    """One arithmetic for both (the product of a step's other features plus its varying
    terms; the ramp's interpolation as ``np.interp`` takes it): fast-forwarding a span cannot
    move a step's end by an ulp, so a run fast-forwarded is the run stepped, to the bit."""
    from servesim.fleet import build_fleet
    from servesim.scenario import build_scenario

    instance = build_fleet(build_scenario(spec), np.random.default_rng(0)).instances[0]
    rng = np.random.default_rng(8)
    for cost in [instance.cost] + ([instance.eager_cost] if instance.eager_cost else []):
        for _ in range(12):
            rows, steps, pad = (
                int(rng.integers(1, 40)),
                int(rng.integers(2, 30)),
                int(rng.integers(0, 6)),
            )
            context = rng.integers(1, 30_000, rows).astype(np.int64)
            seconds, features = cost.decode_span_with_features(context, steps, pad)
            ones = np.ones(rows, dtype=np.int64)
            for j in range(steps):
                alone, f = cost.step_with_features(ones, context + j, pad)
                np.testing.assert_array_equal(f, features[j])
                assert alone == seconds[j], (rows, steps, pad, j)
