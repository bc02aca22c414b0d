"""``analyze``: measured steps against the roofline, the sweep table and the output folder."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from servesim.calibrate import analyze_steps, read_measurements, read_step_log, sweep_table
from servesim.calibrate.analyze import STEP_COLUMNS
from servesim.calibrate.outputs import write_analysis
from servesim.calibrate.synthetic import synthetic_records, write_step_log
from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost.dtypes import tensor_core_peak
from servesim.hardware import load_hardware
from servesim.model import load_model

EXAMPLES = Path(__file__).parent.parent / "examples" / "measured"
ROOFLINE = replace(
    CostParams(),
    compute_efficiency=1.0,
    memory_efficiency=1.0,
    attention_efficiency=1.0,
    attention_memory_efficiency=1.0,
    kernel_launch_s=0.0,
    step_overhead_s=0.0,
    gemm_half_tokens=0.0,
)


@functools.cache
def spec():
    return load_model("llama-3.1-8b")


@functools.cache
def h100():
    return load_hardware("h100")


def test_steps_at_the_roofline_have_gap_one(tmp_path):
    """Steps timed at 100% of peak with no overheads sit exactly on the roofline; twice as
    slow is a gap of 2 and half the share of peak."""
    recs = synthetic_records(
        spec(), h100(), ROOFLINE, noise=0.0, outlier_fraction=0.0, repeats=1, with_rows=False
    )
    m = read_step_log(write_step_log(recs, tmp_path / "ideal.jsonl"))
    a = analyze_steps(m, spec(), h100())
    np.testing.assert_allclose(a.columns["gap"], 1.0, rtol=1e-6)
    slow = analyze_steps(replace(m, seconds=2 * m.seconds), spec(), h100())
    np.testing.assert_allclose(slow.columns["gap"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(slow.columns["pct_peak_flops"], a.columns["pct_peak_flops"] / 2)
    # Memory-bound rows at the roofline move bytes at the full bandwidth only when every
    # operator is memory-bound: pure decode of a small batch.
    small = (m.batch_size == 1) & (m.decode_tokens == 1)
    np.testing.assert_allclose(a.columns["pct_peak_bw"][small], 100.0, rtol=0.02)
    assert set(a.columns["bound"][small]) == {"memory"}
    big = m.prefill_tokens >= 2048
    assert set(a.columns["bound"][big]) == {"compute"}
    assert (a.columns["pct_peak_flops"][big] > 85).all()


def test_work_matches_the_cost_model(tmp_path):
    recs = synthetic_records(spec(), h100(), CostParams(), repeats=1, jitter=0.2)
    m = read_step_log(write_step_log(recs, tmp_path / "s.jsonl"))
    a = analyze_steps(m, spec(), h100())
    cost = build_step_cost(spec(), h100())
    for i in (0, 7, 33):
        st = cost.step_time(*m.rows[i])
        assert a.columns["flops"][i] == pytest.approx(st.flops, rel=1e-12)
        assert a.columns["hbm_bytes"][i] == pytest.approx(st.bytes, rel=1e-12)
        assert a.columns["predicted_s"][i] == pytest.approx(st.total_s, rel=1e-12)
    peak = tensor_core_peak(h100().peak_flops, "bf16", "bf16")
    i = 3
    assert a.columns["achieved_tflops"][i] == pytest.approx(
        a.columns["flops"][i] / m.seconds[i] / 1e12
    )
    assert a.columns["pct_peak_flops"][i] == pytest.approx(
        100 * a.columns["flops"][i] / m.seconds[i] / peak
    )
    assert a.peak_flops == peak and a.fidelity == "roofline"


def test_operator_rows_count_only_their_operators():
    m = read_measurements([EXAMPLES / "ops.csv"])
    a = analyze_steps(m, spec(), h100())
    cost = build_step_cost(spec(), h100())
    i = m.op.index("attention")
    new, ctx = m.rows[i]
    attn = next(o for o in cost.operator_breakdown(new, ctx) if o.name == "attention")
    assert a.columns["flops"][i] == attn.flops
    step = m.op.index("step")
    assert a.columns["flops"][step] == pytest.approx(cost.step_time(*m.rows[step]).flops)
    assert (a.columns["predicted_error_pct"] < 0).all()  # defaults are optimistic


def test_sweep_table_and_phases(tmp_path):
    fast = replace(CostParams(), step_overhead_s=1e-4)
    slow = replace(CostParams(), step_overhead_s=2e-3)
    paths = []
    for name, params in (("chunk512.jsonl", fast), ("chunk2048.jsonl", slow)):
        recs = synthetic_records(spec(), h100(), params, repeats=1, phases=True)
        paths.append(write_step_log(recs, tmp_path / name))
    a = analyze_steps(read_measurements(paths), spec(), h100(), Parallelism())
    rows = sweep_table(a)
    assert [r["source"] for r in rows] == ["chunk512.jsonl", "chunk2048.jsonl"]
    assert rows[1]["gap_decode"] > rows[0]["gap_decode"]
    assert rows[0]["steps"] == 64 and rows[0]["decode_heavy"] == 36
    for r in rows:
        shares = [r[f"phase_{p}_pct"] for p in ("forward", "sample", "schedule")]
        assert sum(shares) == pytest.approx(100.0)
    assert rows[1]["phase_schedule_pct"] > rows[0]["phase_schedule_pct"]


def test_write_analysis(tmp_path):
    m = read_measurements([EXAMPLES / "steps.jsonl"])
    a = analyze_steps(m, spec(), h100())
    out = tmp_path / "analysis"
    written = write_analysis(a, out)
    names = sorted(p.name for p in written)
    assert names == ["analysis_steps.csv", "analysis_sweep.csv", "gap_vs_batch.png", "phases.png"]
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "analysis_steps.csv").read_text().splitlines()
    assert lines[0].split(",")[: len(STEP_COLUMNS)] == list(STEP_COLUMNS)
    assert len(lines) == 1 + 128
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_write_analysis_leaves_nothing_on_failure(tmp_path, monkeypatch):
    m = read_measurements([EXAMPLES / "steps.jsonl"])
    a = analyze_steps(m, spec(), h100())

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("servesim.calibrate.outputs.plot_phases", broken)
    with pytest.raises(RuntimeError):
        write_analysis(a, tmp_path / "analysis")
    assert list(tmp_path.iterdir()) == []
