"""The calibration file: write, read, refuse a mismatch, warn on extrapolation."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import yaml

from servesim.calibrate import (
    calibrate,
    extrapolation_warning,
    load_calibration,
    read_calibration,
    write_calibration,
)
from servesim.cost import CostParams, build_step_cost
from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.model import load_model

EXAMPLES = Path(__file__).parent.parent / "examples" / "measured"


@functools.cache
def example_run():
    return calibrate(
        [EXAMPLES / "steps.jsonl"],
        load_model("llama-3.1-8b"),
        load_hardware("h100"),
        tp=1,
        software="synthetic",
        holdout=0.25,
    )


def test_calibrate_describes_itself():
    run = example_run()
    cal = run.calibration
    assert (cal.model, cal.hardware, cal.tp, cal.software) == (
        "meta-llama/Llama-3.1-8B",
        "H100",
        1,
        "synthetic",
    )
    assert cal.sources == ("steps.jsonl",)
    assert cal.num_points == 96  # a quarter of 128 held out
    assert cal.measured_range.tokens == (1, 4096)
    assert cal.measured_range.batch == (1, 256)
    assert cal.measured_range.context == (0, 256 * 8192)
    q = run.quality
    assert set(q) == {"before", "after", "holdout_before", "holdout_after"}
    for part in ("after", "holdout_after"):
        assert q[part]["all"]["median_abs_pct"] < 2.0
    assert q["before"]["all"]["median_abs_pct"] > 10.0
    assert set(q["after"]) == {"all", "decode-heavy", "prefill-heavy", "mixed"}


def test_round_trip_and_load(tmp_path):
    cal = example_run().calibration
    path = write_calibration(cal, tmp_path / "sub" / "cal.yaml")
    again = read_calibration(path)
    assert again.model == cal.model and again.status == cal.status
    for k, v in cal.params.items():
        assert again.params[k] == pytest.approx(v, rel=1e-5)
    assert (again.weight_dtype, again.kv_dtype) == ("bf16", "bf16")
    params = load_calibration(
        path, load_model("llama-3.1-8b"), load_hardware("h100"), 1, CostParams(kv_dtype="bf16")
    )
    assert params.fidelity == "calibrated" and params.kv_dtype == "bf16"
    assert params.compute_efficiency == again.params["compute_efficiency"]
    cost = build_step_cost(load_model("llama-3.1-8b"), load_hardware("h100"), params=params)
    assert cost.step_time(np.array([1]), np.array([100])).fidelity == "calibrated"
    assert not list(tmp_path.joinpath("sub").glob(".cal.yaml*"))  # no temporary file left


@pytest.mark.parametrize(
    ("model", "hardware", "tp", "message"),
    [
        ("llama-3.2-1b", "h100", 1, "fitted for model 'meta-llama/Llama-3.1-8B'"),
        ("llama-3.1-8b", "a100-80gb", 1, "fitted for hardware 'H100'"),
        ("llama-3.1-8b", "h100", 2, "fitted for tp 1, this run uses 2"),
    ],
)
def test_mismatch_is_refused(tmp_path, model, hardware, tp, message):
    path = write_calibration(example_run().calibration, tmp_path / "cal.yaml")
    with pytest.raises(ServesimError, match=message):
        load_calibration(path, load_model(model), load_hardware(hardware), tp)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (CostParams(weight_dtype="fp8"), "fitted for weight_dtype 'bf16', this run uses 'fp8'"),
        (CostParams(kv_dtype="fp8"), "fitted for kv_dtype 'bf16', this run uses 'fp8'"),
    ],
)
def test_a_calibration_in_other_formats_is_refused(tmp_path, params, message):
    # Steps measured in bf16 say nothing about fp8 GEMMs or fp8 KV reads.
    path = write_calibration(example_run().calibration, tmp_path / "cal.yaml")
    with pytest.raises(ServesimError, match=message):
        load_calibration(path, load_model("llama-3.1-8b"), load_hardware("h100"), 1, params)
    # A file from before formats were recorded is applied as it is.
    data = yaml.safe_load(path.read_text())
    del data["weight_dtype"], data["kv_dtype"]
    path.write_text(yaml.safe_dump(data))
    loaded = load_calibration(path, load_model("llama-3.1-8b"), load_hardware("h100"), 1, params)
    assert loaded.fidelity == "calibrated"


def test_calibrating_fp8_kv_steps_records_the_format(tmp_path):
    run = calibrate(
        [EXAMPLES / "steps.jsonl"],
        load_model("llama-3.1-8b"),
        load_hardware("h100"),
        tp=1,
        kv_dtype="fp8",
    )
    assert (run.calibration.weight_dtype, run.calibration.kv_dtype) == ("bf16", "fp8")
    path = write_calibration(run.calibration, tmp_path / "cal.yaml")
    fp8 = CostParams(kv_dtype="fp8")
    params = load_calibration(path, load_model("llama-3.1-8b"), load_hardware("h100"), 1, fp8)
    assert params.kv_dtype == "fp8"
    with pytest.raises(ServesimError, match="kv_dtype"):
        load_calibration(path, load_model("llama-3.1-8b"), load_hardware("h100"), 1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("servesim_calibration"), "is not a servesim calibration"),
        (lambda d: d.update(servesim_calibration=9), "calibration format 9"),
        (lambda d: d["params"].update(warp_factor=9.0), "unknown parameter.*warp_factor"),
        (lambda d: d["params"].update(memory_efficiency=1.5), "must be in \\(0, 1\\]"),
        (lambda d: d.pop("model"), "model: is required"),
    ],
)
def test_bad_files(tmp_path, edit, message):
    path = write_calibration(example_run().calibration, tmp_path / "cal.yaml")
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ServesimError, match=message):
        read_calibration(path)
    with pytest.raises(ServesimError, match="does not exist"):
        read_calibration(tmp_path / "nope.yaml")


def test_extrapolation_warning():
    cal = example_run().calibration
    inside = {
        "batch_size": np.array([1, 64]),
        "prefill_tokens": np.array([512, 0]),
        "decode_tokens": np.array([0, 64]),
        "context_tokens": np.array([0, 64 * 1000]),
    }
    assert extrapolation_warning(cal, inside) is None
    assert extrapolation_warning(cal, {k: v[:0] for k, v in inside.items()}) is None
    # A fast-forwarded span of 10 decode steps at batch 300 (outside), and one prefill step of
    # 8192 tokens (outside): 11 of 12 steps.
    outside = {
        "batch_size": np.array([1, 300, 1]),
        "prefill_tokens": np.array([512, 0, 8192]),
        "decode_tokens": np.array([0, 3000, 0]),
        "context_tokens": np.array([0, 3000 * 1000, 0]),
        "num_steps": np.array([1, 10, 1]),
    }
    text = extrapolation_warning(cal, outside)
    assert text.startswith("91.7% of simulated steps lie outside")
    assert "tokens 300–8192 simulated vs 1–4096 measured" in text
    assert "batch 1–300 simulated vs 1–256 measured" in text
    assert "context" not in text.split(":")[0]


def test_extrapolation_warning_reads_a_file(tmp_path):
    path = write_calibration(example_run().calibration, tmp_path / "cal.yaml")
    steps = {
        "batch_size": [512],
        "prefill_tokens": [0],
        "decode_tokens": [512],
        "context_tokens": [512],
    }
    assert "batch 512–512 simulated vs 1–256 measured" in extrapolation_warning(path, steps)
