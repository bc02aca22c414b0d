"""One forward step, Vidur's tables against servesim's cost model (Llama-3-8B, A100-80GB).

    python bench/peers/vidur/step_times.py      # prints and writes results/step_times.md
    python bench/peers/vidur/step_times.py --gemm-efficiency   # the A100 catalog figure


Vidur's step is its per-layer sum over 32 layers: the linear/norm/rope/add operators of the
MLP table at the step's token count, plus attention (decode: +10% for a GQA batch, Vidur's
``attention_decode_batching_overhead_fraction``) and ``attn_kv_cache_save``. It has no LM
head, embedding, sampling or host time. Table values are interpolated here, where Vidur
predicts them with random forests (0.1-1% error on these tables); ``attn_kv_cache_save`` uses the
rows of the same kind (Vidur's forest averages prefill and decode rows with equal token counts).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import profiles  # noqa: E402

LAYERS = 32
LINEAR_OPS = (
    "attn_pre_proj",
    "attn_post_proj",
    "mlp_up_proj",
    "mlp_down_proj",
    "mlp_act",
    "input_layernorm",
    "post_attention_layernorm",
    "attn_rope",
    "add",
)


def vidur_linear_ms(tokens: float) -> float:
    """Per-step time of the non-attention operators from Vidur's MLP table, ms."""
    header, rows = profiles.mlp_rows()
    col = {h: i for i, h in enumerate(header)}
    n = np.array([float(r[col["num_tokens"]]) for r in rows])
    total = 0.0
    for op in LINEAR_OPS:
        t = np.array([float(r[col[f"time_stats.{op}.median"]]) for r in rows])
        total += float(np.interp(tokens, n, t))
    return LAYERS * total


# Weight elements of each projection of Llama-3-8B (hidden 4096, 8 KV heads of 128, FFN 14336).
GEMM_WEIGHTS = {
    "attn_pre_proj": 4096 * (4096 + 2 * 8 * 128),
    "attn_post_proj": 4096 * 4096,
    "mlp_up_proj": 4096 * 2 * 14336,
    "mlp_down_proj": 14336 * 4096,
}
A100_BF16_PEAK = 312e12


def gemm_efficiency() -> None:
    """Achieved fraction of the A100's dense bf16 peak in Vidur's measured projections (2·M·K·N
    FLOPs over the summed median times), per token count: the catalog's ``compute_efficiency``."""
    header, rows = profiles.mlp_rows()
    col = {h: i for i, h in enumerate(header)}
    print("tokens  " + "  ".join(f"{op:>14}" for op in GEMM_WEIGHTS) + "  all projections")
    large = []
    for r in rows:
        m = int(float(r[col["num_tokens"]]))
        power_of_two = m & (m - 1) == 0
        if m < 64 or not (power_of_two or m % 4096 == 0):
            continue  # powers of two from 64, and multiples of 4,096
        effs, flops, seconds = [], 0.0, 0.0
        for op, weights in GEMM_WEIGHTS.items():
            t = float(r[col[f"time_stats.{op}.median"]]) * 1e-3
            effs.append(2 * m * weights / t / A100_BF16_PEAK)
            flops, seconds = flops + 2 * m * weights, seconds + t
        eff = flops / seconds / A100_BF16_PEAK
        if m >= 512:
            large.append(eff)
        print(f"{m:>6}  " + "  ".join(f"{e:>14.3f}" for e in effs) + f"  {eff:>15.3f}")
    print(f"median at >= 512 tokens: {np.median(large):.3f} (catalog: compute_efficiency)")


def main() -> None:
    if "--gemm-efficiency" in sys.argv[1:]:
        gemm_efficiency()
        return
    from servesim.cost.step import build_step_cost
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    cost = build_step_cost(load_model("llama-3.1-8b"), load_hardware("A100-80GB"))
    att = profiles.fit(profiles.read_samples())
    lines = [
        "Decode step, every sequence at 640 cached tokens (ms):",
        "",
        "| batch | Vidur linear | Vidur attention | Vidur total | servesim | servesim vs Vidur |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for b in (1, 8, 32, 64, 128, 256):
        lin = vidur_linear_ms(b)
        attn = LAYERS * float(att.decode(b, 640)) * (1.1 if b > 1 else 1.0)
        total = lin + attn + LAYERS * float(att.decode_kv_save(b))
        ours = cost.step_seconds(np.ones(b), np.full(b, 640.0)) * 1e3
        lines.append(
            f"| {b} | {lin:.2f} | {attn:.2f} | {total:.2f} | {ours:.2f} "
            f"| {(ours / total - 1) * 100:+.0f}% |"
        )
    lines += [
        "",
        "Prefill step of whole 512-token prompts, no cache (ms):",
        "",
        "| prompts | Vidur linear | Vidur attention | Vidur KV save | Vidur total | servesim "
        "| servesim vs Vidur |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in (1, 2, 4, 8):
        tokens = 512 * k
        lin = vidur_linear_ms(tokens)
        attn = LAYERS * k * float(att.full_prefill(512))
        save = LAYERS * float(att.full_save(tokens))
        total = lin + attn + save
        ours = cost.step_seconds(np.full(k, 512.0), np.zeros(k)) * 1e3
        lines.append(
            f"| {k} | {lin:.1f} | {attn:.1f} | {save:.1f} | {total:.1f} | {ours:.1f} "
            f"| {(ours / total - 1) * 100:+.0f}% |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).resolve().parent / "results" / "step_times.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
