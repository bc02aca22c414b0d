"""Bounded-memory summary paths (issue 19) give the numbers of the whole-array ones, bit for bit:
percentiles by radix selection against one sort, pairwise sums by chunk against numpy's, the
run's totals by block against one block, and the 4-byte ITL weights widening when needed."""

from __future__ import annotations

import numpy as np
import pytest

import servesim.metrics as metrics
import servesim.summary as summary
from servesim.engine.records import RunRecords, StepRecord
from servesim.run import simulate
from servesim.scenario import build_scenario


def _sorted_percentiles(values, weights, qs, scale):
    """The reference: expand by sorting everything once."""
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order] * scale
    cum = np.cumsum(np.asarray(weights, dtype=np.int64)[order])
    n = int(cum[-1])
    out = []
    for q in qs:
        pos = q / 100.0 * (n - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        v_lo = v[np.searchsorted(cum, lo, side="right")]
        v_hi = v[np.searchsorted(cum, hi, side="right")]
        out.append(float(v_lo + (v_hi - v_lo) * (pos - lo)))
    return out


def _values(kind: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == 0:
        return rng.random(n)
    if kind == 1:  # a few distinct values, one ulp-scale apart: deep radix digits
        return 0.01 + rng.integers(0, 5, n) * 1e-17
    if kind == 2:
        return np.full(n, 0.0123)
    if kind == 3:  # zeros (multi-step rounds) among small gaps
        return np.concatenate([rng.random(n // 2) * 1e-3, np.zeros(n - n // 2)])
    return rng.lognormal(-4.0, 0.3, n)


@pytest.mark.parametrize("kind", range(5))
def test_selected_percentiles_and_chunked_moments_equal_the_whole_array_ones(kind, monkeypatch):
    rng = np.random.default_rng(kind)
    qs = (0, 37.5, 50, 90, 99, 99.9, 100)
    for _ in range(20):
        n = int(rng.integers(1, 5000))
        values = _values(kind, n, rng)
        weights = rng.integers(1, 300, n).astype(np.int32)
        expected = _sorted_percentiles(values, weights, qs, 1000.0)
        ms = values * 1000.0
        scratch = ms * weights
        mean = float(scratch.sum() / int(weights.sum()))
        std = float(np.sqrt((np.square(ms - mean) * weights).sum() / int(weights.sum())))
        monkeypatch.setattr(metrics, "_SORT_LIMIT", int(rng.integers(8, 64)))
        monkeypatch.setattr(metrics, "_CHUNK", int(rng.integers(129, 2000)))
        assert metrics.weighted_percentiles(values, weights, qs, scale=1000.0) == expected
        stats = metrics._stats("x", values, weights)
        assert (stats["mean_x_ms"], stats["std_x_ms"]) == (mean, std)
        monkeypatch.undo()


def test_pairwise_sum_by_chunks_is_numpys_sum():
    rng = np.random.default_rng(0)
    for n in (1, 100, 129, 1000, 8193, 70_001, 300_007):
        x = rng.random(n) * rng.integers(1, 1000, n)
        for leaf in (129, 1000, 65536):
            got = metrics.pairwise_sum(n, lambda a, b, x=x: np.add.reduce(x[a:b]), leaf=leaf)
            assert got == np.add.reduce(x)


def test_run_totals_by_block_equal_one_block_and_extras_are_computed_when_read(monkeypatch):
    scenario = build_scenario(
        {
            "workload": {
                "num_requests": 60,
                "preset": "conversation",
                "arrival": {"kind": "poisson", "rate": 5.0},
            },
            "replicas": 2,
        }
    )
    result = simulate(scenario)
    steps = result.records.step_columns()
    args = (result.groups, result.records, steps, result.summary["duration"])
    extra_whole, util_whole = summary._step_work(*args)
    monkeypatch.setattr(summary, "_BLOCK", 131)
    extra_blocks, util_blocks = summary._step_work(*args)
    assert util_blocks == util_whole
    assert extra_blocks._args is not None  # nothing computed yet
    assert list(extra_blocks) == list(extra_whole)
    for name in extra_whole:
        assert extra_blocks[name].tobytes() == extra_whole[name].tobytes()
    assert len(extra_whole["flops"]) == result.summary["num_step_records"]


def test_itl_weights_are_four_bytes_and_widen_when_one_does_not_fit():
    records = RunRecords()
    records.itl(np.array([0.1, 0.2]), np.array([1, 2], dtype=np.int64))
    records.freeze()
    assert records.itl_pairs()[1].dtype == np.int32
    records = RunRecords()
    records.itl(np.array([0.1]), np.array([3], dtype=np.int64))
    records._flush()
    records.itl(np.array([0.2]), np.array([2**40], dtype=np.int64))
    values, weights = records.itl_pairs()
    assert weights.dtype == np.int64
    assert weights.tolist() == [3, 2**40]
    assert values.tolist() == [0.1, 0.2]


@pytest.mark.parametrize("compiled", ["on", "off"])
def test_the_gap_log_moves_on_when_its_scratch_fills(monkeypatch, compiled):
    """Inter-token pairs written into a scratch of 7 (moved into the buffers every few steps,
    a span's pairs past it growing it) log exactly what the default scratch logs."""
    if compiled == "on":
        pytest.importorskip("numba")
    scenario = build_scenario(
        {
            "workload": {
                "num_requests": 60,
                "input_len": {"kind": "lognormal", "median": 300, "sigma": 1.0, "max": 4000},
                "output_len": {"kind": "lognormal", "median": 60, "sigma": 1.0, "max": 600},
                "arrival": {"kind": "poisson", "rate": 4.0},
            },
            "compiled": compiled,
        }
    )
    want = simulate(scenario).records.itl_pairs()
    monkeypatch.setattr(RunRecords, "_ITL_SCRATCH", 7)
    got = simulate(scenario).records.itl_pairs()
    assert len(want[0]) > 100
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_step_features_keep_only_the_columns_some_record_uses():
    """The features are stored a column per feature some record has non-zero (a dense model
    leaves half of them zero); reads give back every column, a late one back-filled."""
    records = RunRecords()
    rng = np.random.default_rng(0)
    dense = np.zeros((5000, 18))
    dense[:, [0, 1, 2, 5]] = rng.integers(1, 1000, (5000, 4))
    dense[3000:, 7] = 2.5  # a column first non-zero after two flushes
    for i, row in enumerate(dense):
        records.step_done(StepRecord(0, float(i), 1.0, 1, 1, 0, 1, 0, 0, 0, 0.5), row.copy())
    records.freeze()
    np.testing.assert_array_equal(records.step_features(), dense)
    picks = rng.integers(0, 5000, 300)
    np.testing.assert_array_equal(records.step_feature_rows(picks), dense[picks])
    np.testing.assert_array_equal(records.step_feature_rows(slice(2000, 4100)), dense[2000:4100])
    assert sorted(records._feature_columns) == [0, 1, 2, 5, 7]
