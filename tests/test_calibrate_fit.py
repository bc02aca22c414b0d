"""The fit: it inverts the cost model, recovers known parameters, and shrugs off outliers."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from servesim.calibrate import fit_params, predict_seconds, read_step_log
from servesim.calibrate.fit import FIT_PARAMS, decompose, initial_theta
from servesim.calibrate.readers import concat, read_op_csv
from servesim.calibrate.synthetic import synthetic_records, write_step_log
from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.model import load_model

TRUE = CostParams(
    compute_efficiency=0.62,
    attention_efficiency=0.45,
    memory_efficiency=0.71,
    attention_memory_efficiency=0.55,
    step_overhead_s=3e-4,
    overhead_per_token_s=3e-6,
    host_step_s=0.0,  # the synthetic truth has additive overheads only
    host_per_seq_s=0.0,
    host_per_token_s=0.0,
)
EXAMPLES = Path(__file__).parent.parent / "examples" / "measured"


@functools.cache
def spec(name: str = "llama-3.1-8b"):
    return load_model(name)


@functools.cache
def h100():
    return load_hardware("h100")


def log(tmp_path: Path, name: str = "llama-3.1-8b", true: CostParams = TRUE, **kw):
    recs = synthetic_records(spec(name), h100(), true, **kw)
    return read_step_log(write_step_log(recs, tmp_path / f"{name}.jsonl"))


@pytest.mark.parametrize(
    ("model", "tp"),
    [("llama-3.1-8b", 1), ("llama-3.1-8b", 2), ("qwen3-30b-a3b", 1), ("mistral-7b-v0.3", 1)],
)
def test_decomposition_reproduces_the_cost_model(tmp_path, model, tp):
    """θ of any parameter set predicts what build_step_cost predicts, step by step, for dense,
    MoE and sliding-window models, with TP links, and for operator rows of a CSV."""
    m = log(tmp_path, model, noise=0.0, outlier_fraction=0.0, repeats=1, jitter=0.3)
    if model.startswith("llama"):  # the example CSV names Llama's operators
        m = concat([m, read_op_csv(EXAMPLES / "ops.csv")])
    par = Parallelism(tp=tp)
    for params in (CostParams(), TRUE, replace(TRUE, gemm_half_tokens=100.0)):
        dec = decompose(spec(model), h100(), par, params, m)
        ours = dec.predict(initial_theta(h100(), params))
        theirs = predict_seconds(m, spec(model), h100(), par, params)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    # ... and predict_seconds is the cost model's own step time for whole steps.
    cost = build_step_cost(spec(model), h100(), par, params)
    new, ctx = m.rows[0]
    assert m.op[0] == "step"
    assert theirs[0] == pytest.approx(cost.step_seconds(new, ctx), rel=1e-12)


def test_noise_free_log_recovers_every_parameter(tmp_path):
    m = log(tmp_path, noise=0.0, outlier_fraction=0.0, repeats=1)
    fit = fit_params(m, spec(), h100(), Parallelism())
    for name in FIT_PARAMS:
        assert fit.status[name] == "fitted", (name, fit.status[name])
        assert fit.params[name] == pytest.approx(getattr(TRUE, name), rel=1e-6), name
    assert fit.residual_scale == pytest.approx(1e-3)  # the floor: residuals are ~0
    np.testing.assert_allclose(fit.after_s, m.seconds, rtol=1e-6)  # ns-rounded log


def test_noisy_log_with_outliers_recovers_the_efficiencies(tmp_path):
    """1% timer noise, 3% of steps slowed 1.5-3×: efficiencies within 5%, predictions within
    a few percent; parameters the data cannot pin down are said to be so."""
    m = log(tmp_path, noise=0.01, outlier_fraction=0.03, repeats=3, seed=4)
    fit = fit_params(m, spec(), h100(), Parallelism())
    for name in (
        "compute_efficiency",
        "attention_efficiency",
        "memory_efficiency",
        "attention_memory_efficiency",
    ):
        assert fit.params[name] == pytest.approx(getattr(TRUE, name), rel=0.05), name
        assert fit.status[name] == "fitted"
    for name, status in fit.status.items():
        assert status == "fitted" or status.startswith(("weakly", "default", "at bound")), name
    err = np.abs(fit.after_s / m.seconds - 1)
    before = np.abs(fit.before_s / m.seconds - 1)
    assert np.median(err) < 0.012 and np.median(before) > 0.1
    assert fit.outliers >= 3  # the slowed steps are flagged, not fitted
    assert 0.007 < fit.residual_scale < 0.015


def test_outliers_barely_move_the_fit(tmp_path):
    clean = log(tmp_path, noise=0.01, outlier_fraction=0.0, seed=5)
    dirty = log(tmp_path, noise=0.01, outlier_fraction=0.1, seed=5)
    a = fit_params(clean, spec(), h100(), Parallelism())
    b = fit_params(dirty, spec(), h100(), Parallelism())
    for name in ("compute_efficiency", "memory_efficiency", "attention_memory_efficiency"):
        assert b.params[name] == pytest.approx(a.params[name], rel=0.03), name


def test_small_model_separates_the_host_overheads(tmp_path):
    """On a 0.5B model host time is a large share of a step: both overheads are measured."""
    true = replace(TRUE, step_overhead_s=5e-4)
    m = log(tmp_path, "qwen2.5-0.5b", true, noise=0.003, outlier_fraction=0.0, repeats=3)
    fit = fit_params(m, spec("qwen2.5-0.5b"), h100(), Parallelism())
    assert fit.status["step_overhead_s"] == "fitted"
    assert fit.params["step_overhead_s"] == pytest.approx(5e-4, rel=0.15)
    assert fit.params["overhead_per_token_s"] == pytest.approx(3e-6, rel=0.1)


def test_decode_only_log_leaves_attention_compute_at_its_default(tmp_path):
    m = log(tmp_path, noise=0.01, outlier_fraction=0.0, repeats=2)
    decode = m.select((m.prefill_tokens == 0) & (m.decode_tokens > 0))
    fit = fit_params(decode, spec(), h100(), Parallelism())
    assert fit.status["attention_efficiency"].startswith("default")
    assert fit.params["attention_efficiency"] == h100().compute_efficiency
    assert fit.params["attention_memory_efficiency"] == pytest.approx(0.55, rel=0.05)


def test_gemm_size_regime_is_picked_when_the_data_prefer_it(tmp_path):
    true = replace(TRUE, gemm_half_tokens=128.0)
    m = log(tmp_path, true=true, noise=0.0, outlier_fraction=0.0, repeats=1)
    fit = fit_params(m, spec(), h100(), Parallelism())
    assert fit.params["gemm_half_tokens"] == 128.0
    assert fit.status["gemm_half_tokens"] == "fitted (grid)"
    assert fit.params["compute_efficiency"] == pytest.approx(0.62, rel=1e-4)


def test_too_few_points(tmp_path):
    m = log(tmp_path, repeats=1)
    with pytest.raises(ServesimError, match="only 5 measured step"):
        fit_params(m.select(np.arange(5)), spec(), h100(), Parallelism())


def test_efficiency_is_capped_at_peak(tmp_path):
    """Steps faster than the roofline allows (a wrong GPU, say) pin efficiencies at 100%."""
    fast = replace(
        CostParams(),
        compute_efficiency=1.0,
        memory_efficiency=1.0,
        attention_efficiency=1.0,
        attention_memory_efficiency=1.0,
        step_overhead_s=0.0,
        kernel_launch_s=0.0,
    )
    m = log(tmp_path, true=fast, noise=0.0, outlier_fraction=0.0, repeats=1)
    m = replace(m, seconds=m.seconds * 0.8)
    fit = fit_params(m, spec(), h100(), Parallelism())
    assert fit.params["memory_efficiency"] == 1.0
    assert fit.status["memory_efficiency"] == "at bound: 100% of peak"
