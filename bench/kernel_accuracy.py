"""Operator-level error of servesim's rungs against the measured kernel tables, per GPU.

    python bench/kernel_accuracy.py

For every GPU with tables (``src/servesim/catalog/kernels``) and every operator family, the
median absolute relative error against the measured rows of:

- the **roofline** rung (datasheet peak × MAMF efficiency, the GEMM efficiency curve, one launch;
  attention at the GEMM efficiency; KV reads at the HBM efficiency; the ring all-reduce);
- the **table** rungs, held out: GEMMs and all-reduce interpolated with each measured row left
  out (leave-one-point-out: the row is predicted from its neighbours in m / bytes); attention
  curves refitted with each head shape left out (leave-one-shape-out) and scored on that shape.

Rows are bf16, head_dim 128, GEMM m 1–16384, prefill s >= 64, decode KV >= 1 GB (smaller working
sets are read from L2 in the tables). Prints a Markdown table (the README quotes it).
"""

from __future__ import annotations

import math

import numpy as np

from servesim.cost import CostParams
from servesim.cost import kernels as K
from servesim.hardware import load_hardware


def _median_abs(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.median(np.abs(pred / true - 1.0)))


def gemm_errors(hw, t) -> tuple[float, float]:
    g = t.gemm
    rows = g["dtype"] == "bf16"
    m, n, k, secs = g["m"][rows], g["n"][rows], g["k"][rows], g["seconds"][rows]
    half = CostParams().gemm_half_tokens
    peak = hw.peak_flops["bf16"] * hw.compute_efficiency
    nbytes = 2.0 * (n * k + m * (n + k))
    roof = np.maximum(
        2.0 * (m + half) * n * k / peak, nbytes / (hw.hbm_bandwidth * hw.memory_efficiency)
    )
    roof = roof + hw.kernel_launch_s
    held = []
    for nn, kk in set(zip(n.tolist(), k.tolist(), strict=True)):
        pick = (n == nn) & (k == kk)
        ms, ss = m[pick], secs[pick]
        order = np.argsort(ms)
        ms, ss = ms[order], ss[order]
        for i in range(1, len(ms) - 1):  # interior points: interpolation, not extrapolation
            keep = np.arange(len(ms)) != i
            rate = np.exp(np.interp(math.log(ms[i]), np.log(ms[keep]), np.log(ms[keep] / ss[keep])))
            held.append(abs((ms[i] / rate) / ss[i] - 1.0))
    return _median_abs(roof, secs), float(np.median(held))


def prefill_errors(hw, t) -> tuple[float, float]:
    p = t.attention_prefill
    base = (p["dtype"] == "bf16") & (p["head_dim"] == 128) & (p["seq_len"] >= 64)
    secs = p["seconds"][base]
    flops = p["tflops"][base] * 1e12 * secs
    peak, launch = hw.peak_flops["bf16"], hw.kernel_launch_s
    roof = flops / (peak * hw.compute_efficiency) + 2 * launch
    shape = p["num_heads"] * 1000 + p["num_kv_heads"]
    errors = []
    for held in np.unique(shape[base]):
        e, h, fill, _ = K.fit_prefill(p, peak, launch, rows=shape != held)
        errors.append(K.prefill_error(p, peak, launch, e, h, base & (shape == held), fill))
    return _median_abs(roof, secs), float(np.median(errors))


def decode_errors(hw, t) -> tuple[float, float]:
    d = t.attention_decode
    kv = d["gbps"] * 1e9 * d["seconds"]
    rows = (kv >= K.DECODE_MIN_KV_BYTES) & (d["dtype"] == "bf16")
    secs, kv = d["seconds"][rows], kv[rows]
    launch = hw.kernel_launch_s
    roof = kv / (hw.hbm_bandwidth * hw.memory_efficiency) + 2 * launch
    shape = (d["num_heads"] * 1000 + d["num_kv_heads"])[rows]
    errors = []
    for held in np.unique(shape):
        train = {c: v[rows][shape != held] for c, v in d.items()}
        e, _ = K.fit_decode(train, hw.hbm_bandwidth, launch)
        pred = launch + kv[shape == held] / (hw.hbm_bandwidth * e)
        errors.append(_median_abs(pred, secs[shape == held]))
    return _median_abs(roof, secs), float(np.median(errors))


def allreduce_errors(hw, t) -> tuple[float, float] | None:
    a = t.allreduce
    if a is None:
        return None
    roof_err, held = [], []
    link = hw.intra_node
    for n in np.unique(a["num_gpus"]):
        pick = a["num_gpus"] == n
        b, s = a["bytes"][pick], a["seconds"][pick]
        ring = 2.0 * (n - 1) / n
        roof = ring * b / (link.bandwidth_among(int(n)) * CostParams().comm_efficiency)
        roof = roof + 2.0 * link.latency_s  # servesim's custom all-reduce: two link latencies
        roof_err.extend(np.abs(roof / s - 1.0).tolist())
        order = np.argsort(b)
        b, s = b[order], s[order]
        for i in range(1, len(b) - 1):
            keep = np.arange(len(b)) != i
            rate = np.exp(np.interp(math.log(b[i]), np.log(b[keep]), np.log(b[keep] / s[keep])))
            held.append(abs((b[i] / rate) / s[i] - 1.0))
    return float(np.median(roof_err)), float(np.median(held))


def main() -> None:
    print("| GPU | GEMM roofline | GEMM table (held out) | prefill attn roofline | prefill "
          "fitted (held out) | decode attn roofline | decode fitted (held out) | all-reduce "
          "roofline | all-reduce table (held out) |")  # fmt: skip
    print("|---|" + "---:|" * 8)
    for name in K.gpus_with_tables():
        hw = load_hardware(name)
        t = K.load_tables(hw.name)
        cells = [*gemm_errors(hw, t), *prefill_errors(hw, t), *decode_errors(hw, t)]
        ar = allreduce_errors(hw, t)
        cells += list(ar) if ar else [float("nan")] * 2
        text = " | ".join("–" if math.isnan(c) else f"{c:.0%}" for c in cells)
        print(f"| {hw.name} | {text} |")


if __name__ == "__main__":
    main()
