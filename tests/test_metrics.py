"""Summary metrics: vLLM `bench serve` definitions, checked by hand and against numpy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics import SLO, summarize, weighted_percentile, weighted_percentiles


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(0, 1e3, allow_nan=False), min_size=1, max_size=30),
    data=st.data(),
    q=st.sampled_from([0, 1, 10, 50, 90, 99, 99.9, 100]),
)
def test_weighted_percentile_equals_numpy_on_the_expanded_list(values, data, q):
    weights = data.draw(st.lists(st.integers(1, 50), min_size=len(values), max_size=len(values)))
    v, w = np.array(values), np.array(weights)
    expected = np.percentile(np.repeat(v, w), q)
    assert weighted_percentile(v, w, q) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def _requests(arrival, first, finish, n_in, n_out):
    return {
        "arrival_s": np.array(arrival, float),
        "first_token_s": np.array(first, float),
        "finish_s": np.array(finish, float),
        "input_tokens": np.array(n_in),
        "output_tokens": np.array(n_out),
    }


def test_hand_checked_summary():
    # Two requests: A arrives at 0, first token at 0.1, finishes at 1.0 with 10 tokens;
    # B arrives at 0.5, first token at 0.7, finishes at 0.7 with 1 token (no TPOT).
    req = _requests([0.0, 0.5], [0.1, 0.7], [1.0, 0.7], [100, 50], [10, 1])
    gaps = np.array([0.1]), np.array([9])  # A's nine gaps of 100 ms
    s = summarize(req, *gaps, slo=SLO(ttft_ms=150, tpot_ms=200))
    assert s["completed"] == 2
    assert s["duration"] == pytest.approx(1.0)
    assert s["request_throughput"] == pytest.approx(2.0)
    assert s["output_throughput"] == pytest.approx(11.0)
    assert s["total_token_throughput"] == pytest.approx(161.0)
    assert s["mean_ttft_ms"] == pytest.approx((100 + 200) / 2)
    # TPOT only for A: (1000 − 100) / (10 − 1) = 100 ms.
    assert s["mean_tpot_ms"] == pytest.approx(100.0)
    assert s["median_itl_ms"] == pytest.approx(100.0)
    assert s["mean_e2el_ms"] == pytest.approx((1000 + 200) / 2)
    # Goodput: A meets both SLOs (TTFT 100 ≤ 150, TPOT 100 ≤ 200); B's TTFT 200 > 150.
    assert s["good_requests"] == 1
    assert s["goodput"] == pytest.approx(1.0)


def test_no_slo_means_no_goodput_key():
    req = _requests([0.0], [0.1], [0.2], [10], [2])
    assert "goodput" not in summarize(req, np.array([0.1]), np.array([1]))


def test_percentiles_of_scaled_values_equal_those_of_the_scaled_array():
    # The summary sorts the seconds and scales the sorted copy (one array less than scaling
    # first); values that become equal when scaled must not change any percentile's bits.
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        v = np.round(rng.exponential(0.03, n), int(rng.integers(3, 12)))
        w = rng.integers(1, 5, n)
        qs = (0, 50, 90, 99, 99.9, 100)
        assert weighted_percentiles(v, w, qs, scale=1000.0) == weighted_percentiles(
            v * 1000.0, w, qs
        )
