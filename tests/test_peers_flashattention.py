"""The FlashAttention-3 cross-check (``bench/peers/flashattention``): its figures and the curve it
prints are what they claim to be."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from servesim.cost import attention_fit as AF
from servesim.cost import kernels as K
from servesim.hardware import load_hardware

HERE = Path(__file__).resolve().parents[1] / "bench" / "peers" / "flashattention"


def _compare():
    spec = importlib.util.spec_from_file_location("peers_fa_compare", HERE / "compare.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_papers_figures_are_complete_and_causal_is_the_slower_pass():
    paper = json.loads((HERE / "fa3_h100.json").read_text())
    n = len(paper["seq_len"])
    for mask in ("causal", "non_causal"):
        for kernel in ("FlashAttention-2", "FlashAttention-3"):
            assert len(paper["tflops"][mask][kernel]) == n
    for kernel in ("FlashAttention-2", "FlashAttention-3"):
        causal, full = paper["tflops"]["causal"][kernel], paper["tflops"]["non_causal"][kernel]
        assert all(c < f for c, f in zip(causal, full, strict=True))


def test_the_curve_at_a_table_shape_is_the_fitted_prefill_curve_there():
    """At a shape the table times (32 heads of 128 is not the paper's 16, so the check rebuilds
    the same formula by hand): 2·b·s²·h·d causal FLOPs over launch + FLOPs / (peak · e) ·
    (1 + h'/s) · occupancy, h' = h · (1 + w)."""
    compare = _compare()
    hw = load_hardware("H100")
    fit, _ = AF.attention_fit_for(hw)
    s, b = 2048, compare.TOKENS // 2048
    flops = 2.0 * b * s * s * compare.HEADS * compare.HEAD_DIM
    blocks = compare.HEADS * b * (s / AF.PREFILL_QUERY_TILE + 1.0)
    stretch = 1.0 + fit.half_tokens * (1.0 + fit.kv_head_weight) / s
    occupancy = AF.occupancy_stretch(fit.fill_ctas / blocks, fit.fill_power)
    seconds = (
        hw.kernel_launch_s + flops / (hw.peak_flops["bf16"] * fit.efficiency) * stretch * occupancy
    )
    assert compare.curve_tflops(hw, fit, s) == pytest.approx(flops / seconds / 1e12, rel=1e-12)
    # (The 16-head curve lies between the table's 8- and 32-head rows, or near them.)
    p = K.load_tables(hw.name).attention_prefill
    low, high = compare.table_tflops(p, 8, s), compare.table_tflops(p, 32, s)
    assert 0.9 * low < compare.curve_tflops(hw, fit, s) < 1.1 * high
    assert math.isnan(compare.table_tflops(p, 16, s))  # (no 16-head row: why the curve)


def test_the_script_prints_one_row_per_length(capsys):
    _compare().main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 6 and rows[1].startswith("| 512 | 32 | 292 | 191 |")
    assert np.isfinite([float(r.split("|")[7]) for r in rows[1:]]).all()
