"""``bench/gpu/check_window_prefill.py`` without AIConfigurator: it counts a window's pairs as
the cost model does, and a window longer than the prompt prices as full attention."""

from __future__ import annotations

import numpy as np
import pytest
from bench_scripts import load_bench_script

from servesim.cost import attention_fit as AF
from servesim.cost.features import P_SW, FeatureMap, P
from servesim.hardware import load_hardware


@pytest.fixture(scope="module")
def script():
    return load_bench_script("gpu/check_window_prefill.py")


@pytest.mark.parametrize(("s", "window"), [(100, 128), (1000, 128), (20000, 8192), (7, 3)])
def test_window_pairs_are_the_feature_maps(script, s: int, window: int):
    step = FeatureMap(window=float(window)).step(np.array([s]), np.array([0]))
    assert script.window_pairs(np.array([float(s)]), np.array([float(window)]))[0] == step[P_SW]
    assert script.window_pairs(np.array([float(s)]), np.array([0.0]))[0] == step[P]
    # By hand for the small one: queries 1..7 reach 1, 2, 3, 3, 3, 3, 3 keys.
    if s == 7:
        assert step[P_SW] == 18


def test_a_window_longer_than_the_prompt_prices_as_full_attention(script):
    hw = load_hardware("H100")
    fit = AF.attention_fit_for(hw)[0]
    rows = {
        "isl": np.array([512.0, 512.0, 4096.0]),
        "batch_size": np.ones(3),
        "num_heads": np.full(3, 64.0),
        "num_key_value_heads": np.full(3, 8.0),
        "window_size": np.array([0.0, 1024.0, 128.0]),
    }
    full, long_window, short_window = script.priced_seconds(hw, fit, rows, 64)
    assert long_window == full
    assert (
        0
        < short_window
        < script.priced_seconds(hw, fit, {**rows, "window_size": np.zeros(3)}, 64)[2]
    )
