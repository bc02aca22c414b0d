"""Prefill attention on an H100: the kernel tables against the FlashAttention-3 paper.

    python bench/peers/flashattention/compare.py

A cross-check, not a fit: the paper's causal forward-pass figures (``fa3_h100.json``: H100 SXM5,
16 heads of 128, batch × length = 16,384 tokens) beside what servesim's fitted prefill curve
(``attention_fit``, fitted to the catalog's TensorRT-LLM context-attention table) and that
table's own rows of the nearest head counts (8 and 32 heads, as many KV heads) give for the same
shapes, in TFLOP/s at the causal count (half of 4·batch·length²·heads·head_dim). The table times
AIConfigurator's whole context-attention op, the QKV pre-processing (RoPE, the paged KV-cache
write) included; the paper times the attention kernel alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from servesim.cost import attention_fit as AF
from servesim.cost import kernels as K
from servesim.hardware import load_hardware

HERE = Path(__file__).parent
TOKENS, HEADS, HEAD_DIM = 16384, 16, 128


def curve_tflops(hw, fit, seq_len: int) -> float:
    """TFLOP/s of the fitted prefill curve ``fit`` at the paper's shape of ``seq_len``."""
    batch = TOKENS // seq_len
    flops = 4.0 * batch * seq_len**2 * HEADS * HEAD_DIM / 2.0
    one = {
        "seq_len": np.array([float(seq_len)]),
        "seconds": np.array([1.0]),
        "tflops": np.array([flops / 1e12]),
        "num_heads": np.array([float(HEADS)]),
        "num_kv_heads": np.array([float(HEADS)]),
        "batch": np.array([float(batch)]),
    }
    rows = np.array([True])
    seconds = AF.prefill_seconds(
        one, rows, hw.peak_flops["bf16"], hw.kernel_launch_s, fit.efficiency, fit.half_tokens,
        fit.fill_ctas, fit.fill_power, fit.kv_head_weight,
    )[0]  # fmt: skip
    return flops / seconds / 1e12


def table_tflops(p, heads: int, seq_len: int) -> float:
    """TFLOP/s of the catalog table's bf16 row of ``heads`` heads (as many KV heads), width 128,
    at the paper's batch × length; nan where the table has none."""
    rows = (
        (p["dtype"] == "bf16")
        & (p["num_heads"] == heads)
        & (p["num_kv_heads"] == heads)
        & (p["head_dim"] == HEAD_DIM)
        & (p["seq_len"] == seq_len)
        & (p["batch"] == TOKENS // seq_len)
    )
    return float(p["tflops"][rows][0]) if rows.any() else float("nan")


def main() -> None:
    paper = json.loads((HERE / "fa3_h100.json").read_text())
    fa3 = paper["tflops"]["causal"]["FlashAttention-3"]
    fa2 = paper["tflops"]["causal"]["FlashAttention-2"]
    hw = load_hardware("H100")
    fit, _ = AF.attention_fit_for(hw)
    p = K.load_tables(hw.name).attention_prefill
    print(
        "| prompt tokens | batch | FA3 paper | FA2 paper | table, 8 heads | table, 32 heads | "
        "servesim curve, 16 heads | curve / FA3 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s, f3, f2 in zip(paper["seq_len"], fa3, fa2, strict=True):
        curve = curve_tflops(hw, fit, s)
        t8, t32 = table_tflops(p, 8, s), table_tflops(p, 32, s)
        print(
            f"| {s:,} | {TOKENS // s} | {f3} | {f2} | {t8:.0f} | {t32:.0f} | {curve:.0f} | "
            f"{curve / f3 - 1:+.0%} |"
        )


if __name__ == "__main__":
    main()
