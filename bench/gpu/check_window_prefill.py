"""How servesim prices sliding-window prompt attention, against rows it never fitted.

The catalog's prefill curves are fitted to full-window rows only (``aic_tables.reduce_prefill``
drops the others). AIConfigurator's context-attention tables also time windowed calls — 128-key
windows at head_dim 64 (GPT-OSS's shape), 1,024 at 256, 8,192 at 128 — with each engine's own
kernels (TensorRT-LLM's, vLLM's FlashAttention-2/3 and FlashInfer, SGLang's). This script prices
every windowed row of prompts longer than the window, and its full-window twin, as the cost
model prices a sliding-window layer (``features.FeatureMap.step``'s ``P_SW``: each query's keys
capped at the window; ``coefficients.attention_padding``: the length curve's ``h'/2`` extra
pairs a token) on the GPU's shipped curve, and prints the median signed error (log) of both.
The difference says how much more (negative) or less a kernel spends on a window than on full
attention, beyond what the pairs count: the error a windowed layer adds over the full-window
rows' own.

    python bench/gpu/check_window_prefill.py

(needs the ``aiconfigurator-core`` wheel: ``pip install 'servesim[kernels]'``, or
``$SERVESIM_AIC_DATA`` naming its ``systems/data`` folder.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from servesim.cost import aic_tables as A  # noqa: E402
from servesim.cost import attention_fit as AF  # noqa: E402
from servesim.hardware import load_hardware  # noqa: E402

BACKENDS = ("trtllm", "vllm", "sglang")
SHAPES = ((64, 128), (128, 8192), (256, 1024))
"""(head_dim, window) of the windowed rows the tables hold."""


def window_pairs(s: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(query, key) pairs of a fresh causal prompt of ``s`` tokens whose queries each reach at
    most ``window`` keys (0: no window), as ``FeatureMap.step`` counts ``P_SW``."""
    span = np.where(window > 0, window, s)
    m = np.minimum(s, span)
    return m * (m + 1) / 2 + (s - m) * span


def priced_seconds(hw, fit, rows: dict[str, np.ndarray], head_dim: int) -> np.ndarray:
    """The cost model's seconds for attention rows (batch of fresh prompts of ``isl`` tokens,
    a window or none), on ``hw``'s fitted prefill curve."""
    s = rows["isl"].astype(float)
    b = rows["batch_size"].astype(float)
    hq, hk = rows["num_heads"].astype(float), rows["num_key_value_heads"].astype(float)
    window = rows["window_size"].astype(float)
    e, h, fill, power, weight = fit.prefill_curve(head_dim)
    half = h * AF.kv_head_factor(hk / hq, weight)
    pairs = window_pairs(s, window)
    blocks = hq * b * (s / AF.PREFILL_QUERY_TILE + 1.0)
    occupancy = AF.occupancy_stretch(fill / blocks, power)
    flop_seconds = 4.0 * head_dim * hq * b / (hw.peak_flops["bf16"] * e)
    return hw.kernel_launch_s + flop_seconds * (pairs + s * half / 2.0) * occupancy


def rows_of(path: Path) -> dict[str, np.ndarray]:
    raw = A.read_parquet(path)
    keep = np.isin(raw["attn_dtype"].astype(str), ("bfloat16", "float16"))
    if "step" in raw:
        keep &= raw["step"] == 0
    return {c: np.asarray(v)[keep] for c, v in raw.items()}


def main() -> int:
    root = A.data_root()
    if root is None:
        raise SystemExit("aiconfigurator-core is not installed: pip install 'servesim[kernels]'")
    print("| GPU | engine | kernel | head_dim / window | windowed rows | full-window rows: "
          "median error | windowed rows: median error | windowed minus full (log) |")  # fmt: skip
    print("|---|---|---|---|---:|---:|---:|---:|")
    for gpu, system in A.SYSTEMS.items():
        hw = load_hardware(gpu)
        found = AF.attention_fit_for(hw)
        if found is None:
            continue
        fit = found[0]
        for backend in BACKENDS:
            path = A.newest_table(root, system, "attention", backend, "context_attention_perf")
            if path is None:
                continue
            t = rows_of(path)
            if "window_size" not in t:
                continue
            kernels = t.get("kernel_source", np.full(len(t["isl"]), backend))
            for kernel in np.unique(kernels):
                for head_dim, window in SHAPES:
                    base = (kernels == kernel) & (t["head_dim"] == head_dim) & (t["isl"] >= 64)
                    full = base & (t["window_size"] == 0)
                    windowed = base & (t["window_size"] == window) & (t["isl"] > window)
                    if not full.any() or not windowed.any():
                        continue
                    out = []
                    for pick in (full, windowed):
                        sub = {c: v[pick] for c, v in t.items()}
                        out.append(np.log(priced_seconds(hw, fit, sub, head_dim)
                                          / (sub["latency"] / 1e3)))  # fmt: skip
                    bias = [float(np.median(x)) for x in out]
                    print(
                        f"| {gpu} | {backend} {path.parent.name} | {kernel} | {head_dim} / "
                        f"{window} | {int(windowed.sum())} | {np.exp(bias[0]) - 1:+.0%} | "
                        f"{np.exp(bias[1]) - 1:+.0%} | {bias[1] - bias[0]:+.2f} |"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
