"""DeepSeek-V3's MLA block against AIConfigurator's whole-module measurements, per GPU.

    pip install 'servesim[kernels]'     # aiconfigurator-core: its module tables
    python bench/mla_accuracy.py [--write]

AIConfigurator times the attention block of DeepSeek-V3 as one module, under a CUDA graph
(``mla/<backend>/<version>/mla_context_module_perf`` and ``mla_generation_module_perf``: the
fused q_a/kv_a down-projection, the latent norms, q_b_proj, RoPE, kv_b_proj and attention on the
regular path for prompts, the absorbed path for decodes, and o_proj; FP8 block-scaled GEMMs,
BF16 KV cache). servesim prices the same operators one by one (GEMMs from its measured GEMM
tables, attention from the fitted attention curve, norms and RoPE on the roofline). This script
sums servesim's operators of one layer (``StepCostModel.operator_breakdown``, default install:
the catalog's tables) on AIConfigurator's grid — heads per GPU 128 / 64 / 32 / 16 (TP 1 / 2 /
4 / 8), prompts of 128–16,384 tokens in batches of 1–64, decodes of 1–256 sequences at
1,024–16,384 tokens of context — and prints, per GPU and engine, the median ratio servesim ÷
measured of each phase and its median absolute error: for the bare sum of kernels, and with the
engine's block scale, in sample and with each TP split's rows held out of its fit
(``kernels.mla_block_scale``: the geometric mean of the two phases'
measured ÷ summed, kept where it brings both phases closer, else 1), which the cost model
applies to the block for that engine on that GPU.

``--write`` stores the scales in ``src/servesim/catalog/kernels/mla_block.json`` (rerun it
when the MLA operators' pricing changes). SGLang's module tables are of its wide-EP layout
(``wideep_*``: the down-projection outside the module, attention-TP collectives inside) and are
left out.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost import aic_tables as A
from servesim.cost import kernels as K
from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.model import load_model

MODEL = "deepseek-ai/DeepSeek-V3"
BACKENDS = ("trtllm", "vllm")
"""Module tables of the block servesim models (SGLang's are of its wide-EP layout)."""
TPS = (1, 2, 4, 8)
PREFILL = [(b, s) for b in (1, 4, 16, 64) for s in (128, 512, 1024, 2048, 4096, 8192, 16384)
           if b * s <= 32768]  # fmt: skip
DECODE = [(b, c) for b in (1, 4, 16, 64, 256) for c in (1024, 4096, 16384)]
PREFILL_OPS = {"q_a_proj", "kv_a_proj", "qkv_a_proj", "q_b_proj", "kv_b_proj", "attention",
               "o_proj", "q_a_layernorm", "kv_a_layernorm", "rope"}  # fmt: skip
"""servesim's operators of the module on the regular (prompt) path."""
DECODE_OPS = {"q_a_proj", "kv_a_proj", "qkv_a_proj", "q_b_proj", "kv_b_absorbed_q",
              "attention_absorbed", "kv_b_absorbed_o", "o_proj", "q_a_layernorm",
              "kv_a_layernorm", "rope"}  # fmt: skip
"""... and on the absorbed (decode) path."""
PHASES = {"prefill": "context", "decode": "generation"}
GRIDS = {"prefill": (PREFILL, PREFILL_OPS), "decode": (DECODE, DECODE_OPS)}


def module_seconds(cost, layers: int, names: set[str], new_tokens, context) -> float:
    """Seconds of one layer's MLA block in a step of ``new_tokens`` over ``context``, as the
    bare sum of its kernels (the cost model's block scale taken back out)."""
    ops = cost.operator_breakdown(np.asarray(new_tokens), np.asarray(context))
    summed = sum(o.seconds for o in ops if o.name in names) / layers
    return summed / cost.resolved.mla_block_scale


def measured_rows(cols, heads: int, decode: bool) -> dict[tuple[int, int], float]:
    """(batch, tokens) → median seconds of the FP8-block-GEMM, BF16-KV rows at ``heads`` heads
    per GPU (prefill rows keyed by prompt length ``isl``; decode rows, one-token prompts, by
    the context ``step`` they decode at)."""
    keep = (
        (cols["num_heads"] == heads)
        & (cols["gemm_type"] == "fp8_block")
        & (cols["kv_cache_dtype"] == "bfloat16")
    )
    length = cols["step"] if decode else cols["isl"]
    out: dict[tuple[int, int], list[float]] = {}
    for b, n, ms in zip(cols["batch_size"][keep], length[keep], cols["latency"][keep],
                        strict=True):  # fmt: skip
        out.setdefault((int(b), int(n)), []).append(float(ms) / 1e3)
    return {k: float(np.median(v)) for k, v in out.items()}


def phase_ratios(gpu: str, backend: str, system: str, root) -> dict | None:
    """servesim's bare kernel sum ÷ the measured module, per phase, over the grid; None when
    the GPU has no module table of ``backend``."""
    spec = load_model(MODEL)
    hw = load_hardware(gpu)
    tables = {}
    for phase, name in PHASES.items():
        path = A.newest_table(root, system, "mla", backend, f"mla_{name}_module_perf")
        if path is None:
            return None
        tables[phase] = (A.read_parquet(path), path.parent.name)
    ratios: dict[str, list[float]] = {"prefill": [], "decode": []}
    tp_of: dict[str, list[int]] = {"prefill": [], "decode": []}
    for tp in TPS:
        params = CostParams(kernel_tables=True, custom_allreduce=True, mla_fused_down_proj=True)
        try:
            cost = build_step_cost(spec, hw, Parallelism(tp=tp), params)
        except ServesimError:
            continue
        L, heads = spec.num_layers, spec.num_attention_heads // tp
        for phase, (grid, names) in GRIDS.items():
            got = measured_rows(tables[phase][0], heads, decode=phase == "decode")
            for b, n in grid:
                if (b, n) in got:
                    new, ctx = _step(phase, b, n)
                    ratios[phase].append(module_seconds(cost, L, names, new, ctx) / got[(b, n)])
                    tp_of[phase].append(tp)
    if not ratios["prefill"] or not ratios["decode"]:
        return None
    out = {"table": f"{backend} {tables['prefill'][1]}"}
    for phase, r in ratios.items():
        out[phase] = np.array(r)
    out["geometric_mean"], out["scale"] = _block_scale(out)
    out["held_out"] = _tp_held_out(out, {p: np.array(t) for p, t in tp_of.items()})
    return out


def _tp_held_out(out: dict, tp_of: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each phase's ratios with the block scale fitted to the other TP splits' rows (leave one
    TP out: the scale priced on heads per GPU it did not see)."""
    held = {p: out[p].copy() for p in GRIDS}
    for tp in TPS:
        rest = {p: out[p][tp_of[p] != tp] for p in held}
        if not all(len(r) for r in rest.values()):
            continue
        _, scale = _block_scale(rest)
        for p in held:
            mine = tp_of[p] == tp
            held[p][mine] = out[p][mine] * scale
    return held


def _block_scale(ratios: dict) -> tuple[float, float]:
    """(geometric mean, block scale) of per-phase servesim ÷ measured ratios: measured ÷
    summed, the geometric mean of the two phases' medians; the scale keeps it only where it
    brings both phases closer (one factor cannot serve phases that disagree), else 1."""
    mean = 1.0 / math.sqrt(float(np.median(ratios["prefill"]) * np.median(ratios["decode"])))
    closer = all(_error(ratios[p] * mean) < _error(ratios[p]) for p in GRIDS)
    return mean, (mean if closer else 1.0)


def _step(phase: str, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(new tokens, context) of a step of ``batch`` fresh ``n``-token prompts (prefill) or
    ``batch`` decodes at ``n`` tokens of context."""
    if phase == "prefill":
        return np.full(batch, n), np.zeros(batch, int)
    return np.ones(batch, int), np.full(batch, n)


def _error(r: np.ndarray) -> float:
    return float(np.median(np.abs(r - 1)))


def _cell(r: np.ndarray) -> str:
    return f"{_error(r):.0%} ({np.median(r):.2f}×)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write {K.MLA_BLOCK_FILE.name}")
    args = ap.parse_args()
    root = A.data_root()
    if root is None:
        raise SystemExit("aiconfigurator-core is not installed: pip install 'servesim[kernels]'")
    version = A.package_version(root)
    print(f"MLA block of {MODEL}, one layer, default install, against {version}")
    print()
    print("| GPU | module table | rows (prefill / decode) | prefill, kernel sum | decode, kernel "
          "sum | geometric mean | block scale | prefill, scaled | decode, scaled | prefill, "
          "scaled, TP held out | decode, scaled, TP held out |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    stored: dict[str, dict[str, dict]] = {}
    for gpu, system in A.SYSTEMS.items():
        for backend in BACKENDS:
            got = phase_ratios(gpu, backend, system, root)
            if got is None:
                continue
            hw_name = load_hardware(gpu).name
            scale = got["scale"]
            cells = [hw_name, got["table"], f"{len(got['prefill'])} / {len(got['decode'])}",
                     _cell(got["prefill"]), _cell(got["decode"]),
                     f"{got['geometric_mean']:.2f}", f"{scale:.2f}",
                     _cell(got["prefill"] * scale), _cell(got["decode"] * scale),
                     _cell(got["held_out"]["prefill"]),
                     _cell(got["held_out"]["decode"])]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
            stored.setdefault(backend, {})[gpu] = {
                "table": got["table"],
                "prefill_sum_over_measured": round(float(np.median(got["prefill"])), 4),
                "decode_sum_over_measured": round(float(np.median(got["decode"])), 4),
                "rows": [len(got["prefill"]), len(got["decode"])],
                "geometric_mean": round(got["geometric_mean"], 4),
                "scale": round(scale, 4),
            }
    print()
    print("Cells: median |servesim ÷ measured − 1| (median servesim ÷ measured).")
    if args.write:
        doc = {
            "what": f"{MODEL}'s MLA attention block measured whole against the sum of its "
            "operators as servesim prices them (default install); scale = measured / summed, "
            "the geometric mean of the prompt and decode phases' medians where it brings both "
            "closer, else 1. Written by "
            "bench/mla_accuracy.py --write.",
            "source": f"{version}: systems/data/<system>/mla/<backend>/<version>/"
            "mla_context_module_perf and mla_generation_module_perf (Apache-2.0, NVIDIA; see "
            "NOTICE), FP8 block-scaled GEMMs, BF16 KV cache, heads per GPU 128/64/32/16",
            "backends": stored,
        }
        K.MLA_BLOCK_FILE.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {K.MLA_BLOCK_FILE}")


if __name__ == "__main__":
    main()
