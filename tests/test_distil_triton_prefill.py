"""``bench/gpu/distil_triton_prefill.py`` without AIConfigurator: its pairing and its fit."""

from __future__ import annotations

import numpy as np
import pytest
from bench_scripts import load_bench_script


@pytest.fixture(scope="module")
def script():
    return load_bench_script("gpu/distil_triton_prefill.py")


def _rows(script, slowdown: float, half_scale: float, half: float = 600.0) -> dict[str, np.ndarray]:
    """Paired rows whose ratios follow the fit's own form exactly, windowed rows included."""
    isl = np.repeat([16, 64, 256, 1024, 4096, 16384], 4).astype(float)
    window = np.tile([0, 0, 0, 128], 6).astype(float)
    rows = {
        "batch_size": np.ones_like(isl),
        "isl": isl,
        "num_heads": np.full_like(isl, 32.0),
        "num_key_value_heads": np.full_like(isl, 4.0),
        "head_dim": np.full_like(isl, 192.0),
        "window_size": window,
        "step": np.zeros_like(isl),
        "half": np.full_like(isl, half),
    }
    rows["ratio"] = script.predicted(rows, slowdown, half_scale)
    return rows


def test_the_fit_recovers_the_slowdown_and_half_scale_it_was_made_from(script):
    rows = _rows(script, 2.4, 0.35)
    assert script.fit(rows) == (pytest.approx(2.4), pytest.approx(0.35))
    errors = script._errors(rows, 2.4, 0.35)
    assert errors == {"full": 0.0, "window_128": 0.0}
    # A wrong pair scores worse on the same rows.
    assert script._loss(rows, 2.0, 0.35) > script._loss(rows, 2.4, 0.35) == 0.0


def test_a_window_caps_the_keys_per_query(script):
    rows = _rows(script, 2.8, 0.29)
    windowed = rows["window_size"] > 0
    long = rows["isl"] >= 4096
    # (at 4k and 16k tokens a 128-token window sees 128 keys: the same ratio at both)
    at = rows["ratio"][windowed & long]
    assert at.min() == pytest.approx(at.max())
    assert (rows["ratio"][~windowed & long] > at.max()).all()


def test_the_shipped_factors_are_the_fit_written_by_the_script():
    import json

    from servesim.cost.kernels import TRITON_PREFILL_FILE, triton_prefill_factors

    stored = json.loads(TRITON_PREFILL_FILE.read_text())
    assert triton_prefill_factors() == (stored["slowdown"], stored["half_scale"])
    assert set(stored["gpus"]) == {"l40s", "rtx-pro-6000"}
    assert "aiconfigurator-core" in stored["source"]
