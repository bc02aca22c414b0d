"""The measured GEMM tables against GEMMs timed inside forward passes: Vidur, LLMServingSim.

    git clone https://github.com/microsoft/vidur
    git clone https://github.com/casys-kaist/LLMServingSim
    python bench/in_model_gemm.py [--vidur PATH] [--llmservingsim PATH]

Two public projects time the linear layers of whole models inside forward passes, from the
PyTorch profiler's kernel durations (``record_function`` regions, Kineto trace):

- **Vidur** (MIT, Microsoft; ``data/profiling/compute/<gpu>/<model>/mlp.csv``, profiled in 2024
  with sarathi-serve's vLLM-style layers): the fused QKV, O, fused gate+up and down projections
  of six models on an H100 and eight on an A100, 1-4,096 tokens (16,384 for two A100 models),
  tensor-parallel 1, 2, 4, 8;
- **LLMServingSim** (MIT, KAIST; ``profiler/v0/perf_models/<gpu>/<model>/tp<N>/layers.csv``,
  profiled in NVIDIA's PyTorch 25.01 container: PyTorch 2.6, CUDA 12.8, Hugging Face layers):
  q, k, v, o, gate, up and down projections one by one, Llama-3.1-8B (TP 1, 2) and -70B (TP 1,
  2, 4) on an H100, 1-2,048 tokens; and its newer vLLM-based profiler
  (``profiler/perf/RTXPRO6000/<model>/bf16/tp<N>/dense.csv``, vLLM 0.19, CUDA 13.0, 2026): the
  fused QKV, O, gate+up and down projections of Llama-3.1-8B and Qwen3-32B (TP 1, 2) on an RTX
  PRO 6000 Blackwell Server Edition, 1-2,048 tokens.

Each GEMM is priced from the catalog's tables of the same GPU (default install, bf16:
``kernels.gemm_seconds``), and as servesim's measured rung prices it: the table with the rows
its benchmark served from L2 raised to the roofline's memory time (``build.l2_floor_seconds``).
Printed per source and GPU: the median ratio measured ÷ table per octave of tokens (with its
interquartile range) and ÷ servesim's price, per model, and the median |ratio − 1|.
LLMServingSim's k and v projections (one 1,024-wide GEMM each at TP1, which vLLM fuses into
QKV) are reported apart.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

os.environ["SERVESIM_KERNEL_TABLES"] = "catalog"  # (price as a default install does)

from servesim.cost import kernels as K  # noqa: E402
from servesim.cost.build import l2_floor_seconds  # noqa: E402
from servesim.hardware import load_hardware  # noqa: E402

BIN_EDGES = 2 ** np.arange(0, 15)  # 1, 2, 4 ... 16,384 tokens
VIDUR_GPUS = {"h100": "H100", "a100": "A100-80GB"}
"""Vidur's profile folders → servesim's GPU whose tables they are set against."""
LSS_MODELS = {
    "meta-llama/Llama-3.1-8B": (4096, 32, 8, 14336),
    "meta-llama/Llama-3.1-70B": (8192, 64, 8, 28672),
}
"""LLMServingSim's H100 models: hidden size, query heads, KV heads, MLP width."""
SMALL_LSS = ("k_proj", "v_proj")
RTX_MODELS = {
    "meta-llama/Llama-3.1-8B": (4096, 32, 8, 128, 14336),
    "Qwen/Qwen3-32B": (5120, 64, 8, 128, 25600),
}
"""LLMServingSim's RTX PRO 6000 dense models: hidden size, query heads, KV heads, head size, MLP
width."""

Point = tuple[str, int, float, float]
"""(model, tokens, measured seconds ÷ the table's, ÷ servesim's price: the table with its
L2-served rows floored, ``build.l2_floor_seconds``)."""


class Pricer:
    """One GPU's bf16 GEMMs as its table times them and as servesim prices them."""

    def __init__(self, gpu: str):
        self.tables = K.load_tables(gpu)
        self.hw = load_hardware(gpu)

    def ratios(self, n: float, k: float, tokens: int, measured_s: float) -> tuple[float, float]:
        """``measured_s`` over the table's and over servesim's time of one ``tokens × k`` by
        ``k × n`` bf16 GEMM."""
        m = np.array([float(tokens)])
        table = K.gemm_seconds(self.tables, "bf16", n, k, m)[0]
        priced = l2_floor_seconds(table, self.hw, self.hw, 2.0, 2.0, n, k, m)
        return measured_s / float(table[0]), measured_s / float(priced[0])


def vidur_shapes(row: dict[str, str]) -> dict[str, tuple[float, float]]:
    """(n, k) per GPU of the four GEMMs of one Vidur profile row (gated MLPs fuse gate, up)."""
    tp = int(row["num_tensor_parallel_workers"])
    heads, kv_heads = int(row["n_head"]), int(row["n_kv_head"])
    hidden, inner = int(row["n_embd"]), int(row["n_expanded_embd"])
    head_dim = hidden // heads
    up = (2 if row["use_gated_mlp"] == "True" else 1) * inner / tp
    return {
        "attn_pre_proj": ((heads + 2 * kv_heads) * head_dim / tp, hidden),
        "attn_post_proj": (hidden, heads * head_dim / tp),
        "mlp_up_proj": (up, hidden),
        "mlp_down_proj": (hidden, inner / tp),
    }


def vidur_points(root: Path, folder: str) -> list[Point]:
    """Every GEMM of every Vidur profile under ``root`` for GPU folder ``folder``."""
    pricer = Pricer(VIDUR_GPUS[folder])
    out = []
    for path in sorted((root / "data" / "profiling" / "compute" / folder).glob("*/*/mlp.csv")):
        model = f"{path.parent.parent.name}/{path.parent.name}"
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                tokens = int(row["num_tokens"])
                for op, (n, k) in vidur_shapes(row).items():
                    seconds = float(row[f"time_stats.{op}.median"]) * 1e-3
                    out.append((model, tokens, *pricer.ratios(n, k, tokens, seconds)))
    return out


def lss_shapes(model: str, tp: int) -> dict[str, tuple[float, float]]:
    """(n, k) per GPU of LLMServingSim's seven projections of ``model`` at ``tp``."""
    hidden, heads, kv_heads, inner = LSS_MODELS[model]
    head_dim = hidden // heads
    kv = kv_heads * head_dim / tp
    return {
        "q_proj": (heads * head_dim / tp, hidden),
        "k_proj": (kv, hidden),
        "v_proj": (kv, hidden),
        "o_proj": (hidden, heads * head_dim / tp),
        "gate_proj": (inner / tp, hidden),
        "up_proj": (inner / tp, hidden),
        "down_proj": (hidden, inner / tp),
    }


def lss_points(root: Path) -> tuple[list[Point], list[Point]]:
    """(the large projections, k and v) of LLMServingSim's H100 layer tables under ``root``."""
    pricer = Pricer("H100")
    big, small = [], []
    for model in LSS_MODELS:
        folder = root / "profiler" / "v0" / "perf_models" / "H100" / model
        for path in sorted(folder.glob("tp*/layers.csv")):
            shapes = lss_shapes(model, int(path.parent.name[2:]))
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    op = row["layer_name"]
                    if op not in shapes:
                        continue
                    tokens = int(row["input"])
                    seconds = float(row["latency(ns)"]) * 1e-9
                    point = (model, tokens, *pricer.ratios(*shapes[op], tokens, seconds))
                    (small if op in SMALL_LSS else big).append(point)
    return big, small


def rtx_shapes(model: str, tp: int) -> dict[str, tuple[float, float]]:
    """(n, k) per GPU of the four fused projections of ``model`` at ``tp`` (vLLM's layers)."""
    hidden, heads, kv_heads, head_dim, inner = RTX_MODELS[model]
    return {
        "qkv_proj": ((heads + 2 * kv_heads) * head_dim / tp, hidden),
        "o_proj": (hidden, heads * head_dim / tp),
        "gate_up_proj": (2 * inner / tp, hidden),
        "down_proj": (hidden, inner / tp),
    }


def rtx_points(root: Path) -> list[Point]:
    """The dense projections of LLMServingSim's RTX PRO 6000 tables under ``root``."""
    pricer = Pricer("RTX-PRO-6000")
    out = []
    for model in RTX_MODELS:
        folder = root / "profiler" / "perf" / "RTXPRO6000" / model / "bf16"
        for path in sorted(folder.glob("tp*/dense.csv")):
            shapes = rtx_shapes(model, int(path.parent.name[2:]))
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    if row["layer"] not in shapes:
                        continue
                    tokens = int(row["tokens"])
                    seconds = float(row["time_us"]) * 1e-6
                    n, k = shapes[row["layer"]]
                    out.append((model, tokens, *pricer.ratios(n, k, tokens, seconds)))
    return out


def octaves(points: list[Point], column: int = 2) -> list[dict]:
    """Per octave of tokens: its bounds, points, median ratio and interquartile range (of the
    ratio to the table, ``column`` 2, or to servesim's price, 3)."""
    tokens = np.array([p[1] for p in points], dtype=float)
    ratio = np.array([p[column] for p in points])
    out = []
    for lo, hi in zip(BIN_EDGES[:-1], BIN_EDGES[1:], strict=True):
        inside = (tokens >= lo) & (tokens < hi)
        if inside.any():
            r = ratio[inside]
            out.append({"tokens": (int(lo), int(hi)), "points": int(inside.sum()),
                        "median": float(np.median(r)), "p25": float(np.percentile(r, 25)),
                        "p75": float(np.percentile(r, 75))})  # fmt: skip
    return out


def median_abs_error(points: list[Point], column: int = 2) -> float:
    """Median |measured ÷ table − 1| of ``points`` (÷ servesim's price: ``column`` 3)."""
    return float(np.median(np.abs(np.array([p[column] for p in points]) - 1.0)))


def report(title: str, points: list[Point]) -> None:
    models = sorted({p[0] for p in points})
    print(f"\n{title}: {len(points):,} GEMMs of {len(models)} model(s)")
    print("  tokens            GEMMs   measured ÷ table: median (p25-p75)   ÷ servesim")
    for b, p in zip(octaves(points), octaves(points, 3), strict=True):
        lo, hi = b["tokens"]
        print(f"  {lo:6,}-{hi:<8,} {b['points']:7,}   {b['median']:.3f} "
              f"({b['p25']:.3f}-{b['p75']:.3f})             {p['median']:.3f}")  # fmt: skip
    for model in models:
        own = [p for p in points if p[0] == model]
        print(f"  {model:40s} median |measured ÷ table − 1| {median_abs_error(own):6.1%}, "
              f"÷ servesim {median_abs_error(own, 3):6.1%}")  # fmt: skip
    print(f"  all: {median_abs_error(points):.1%}, ÷ servesim {median_abs_error(points, 3):.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vidur", type=Path, help="a checkout of microsoft/vidur")
    ap.add_argument("--llmservingsim", type=Path, help="a checkout of casys-kaist/LLMServingSim")
    args = ap.parse_args()
    if args.vidur is None and args.llmservingsim is None:
        raise SystemExit("give --vidur PATH and/or --llmservingsim PATH (checkouts; see above)")
    if args.llmservingsim is not None:
        big, small = lss_points(args.llmservingsim)
        if not big:
            raise SystemExit(f"no H100 layer tables under {args.llmservingsim}")
        report("LLMServingSim, H100 (PyTorch 2.6, CUDA 12.8): q, o, gate, up, down", big)
        report("LLMServingSim, H100: k and v (1,024 wide at TP1)", small)
        rtx = rtx_points(args.llmservingsim)
        if rtx:
            report("LLMServingSim, RTX PRO 6000 (vLLM 0.19, CUDA 13.0): QKV, O, gate+up, down", rtx)
    if args.vidur is not None:
        for folder, gpu in VIDUR_GPUS.items():
            points = vidur_points(args.vidur, folder)
            if not points:
                raise SystemExit(f"no {folder} profiles under {args.vidur}")
            report(f"Vidur, {gpu} (2024): QKV, O, gate+up, down", points)


if __name__ == "__main__":
    main()
