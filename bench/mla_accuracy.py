"""DeepSeek-V3's MLA block against AIConfigurator's whole-module measurements, per GPU.

    pip install 'servesim[kernels]'     # aiconfigurator-core: its module tables
    python bench/mla_accuracy.py

AIConfigurator times the attention block of DeepSeek-V3 as one module
(``mla/<backend>/<version>/mla_context_module_perf`` and ``mla_generation_module_perf``: the
fused q_a/kv_a down-projection, the latent norms, q_b_proj, RoPE, kv_b_proj and attention on the
regular path for prompts, the absorbed path for decodes, and o_proj; FP8 block-scaled GEMMs,
BF16 KV cache). servesim prices the same operators one by one (GEMMs from its measured GEMM
tables, attention from the fitted attention curve, norms and RoPE on the roofline); no servesim
rung reads these module tables, so they are held out whole. This script sums servesim's
operators of one layer (``StepCostModel.operator_breakdown``) on AIConfigurator's grid —
heads per GPU 128 / 64 / 32 / 16 (TP 1 / 2 / 4 / 8), prompts of 128–16,384 tokens in batches of
1–64, decodes of 1–256 sequences at 1,024–16,384 tokens of context — and prints, per GPU and
module table, the median absolute error and the median ratio servesim / measured (below 1:
servesim is faster). Two servesim columns: the default install (the catalog's distilled tables)
and the ``servesim[kernels]`` extra (the engine's own GEMM and attention tables).

SGLang's module tables are of its wide-EP layout (``wideep_*``: the down-projection outside
the module, attention-TP collectives inside) and are left out.
"""

from __future__ import annotations

import argparse

import numpy as np

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost import aic_tables as A
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


def module_seconds(cost, layers: int, names: set[str], new_tokens, context) -> float:
    """Seconds of one layer's MLA block in a step of ``new_tokens`` over ``context``."""
    ops = cost.operator_breakdown(np.asarray(new_tokens), np.asarray(context))
    return sum(o.seconds for o in ops if o.name in names) / layers


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


def score(gpu: str, backend: str, system: str, root) -> list[str] | None:
    """One table row: GPU, module table, and each servesim column's prefill and decode error."""
    spec = load_model(MODEL)
    hw = load_hardware(gpu)
    tables = {}
    for phase in ("context", "generation"):
        path = A.newest_table(root, system, "mla", backend, f"mla_{phase}_module_perf")
        if path is None:
            return None
        tables[phase] = (A.read_parquet(path), path.parent.name)
    cells = [hw.name, f"{backend} {tables['context'][1]}"]
    for kernel_backend in (None, backend):
        errs: dict[str, list[float]] = {"context": [], "generation": []}
        for tp in TPS:
            params = CostParams(
                kernel_tables=True,
                kernel_backend=kernel_backend,
                custom_allreduce=True,
                mla_fused_down_proj=True,
            )
            try:
                cost = build_step_cost(spec, hw, Parallelism(tp=tp), params)
            except ServesimError:
                continue
            L = spec.num_layers
            heads = spec.num_attention_heads // tp
            got = measured_rows(tables["context"][0], heads, decode=False)
            for b, s in PREFILL:
                if (b, s) in got:
                    mine = module_seconds(cost, L, PREFILL_OPS, np.full(b, s), np.zeros(b, int))
                    errs["context"].append(mine / got[(b, s)])
            got = measured_rows(tables["generation"][0], heads, decode=True)
            for b, c in DECODE:
                if (b, c) in got:
                    mine = module_seconds(cost, L, DECODE_OPS, np.ones(b, int), np.full(b, c))
                    errs["generation"].append(mine / got[(b, c)])
        for phase in ("context", "generation"):
            r = np.array(errs[phase])
            if not len(r):
                cells.append("–")
                continue
            cells.append(f"{np.median(np.abs(r - 1)):.0%} ({np.median(r):.2f}×, n={len(r)})")
    return cells


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    root = A.data_root()
    if root is None:
        raise SystemExit("aiconfigurator-core is not installed: pip install 'servesim[kernels]'")
    print(f"MLA block of {MODEL}, one layer: servesim against {A.package_version(root)}'s "
          "module tables")  # fmt: skip
    print()
    print("| GPU | module table | prefill, default install | decode, default install "
          "| prefill, `[kernels]` extra | decode, `[kernels]` extra |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|")
    for gpu, system in A.SYSTEMS.items():
        for backend in BACKENDS:
            row = score(gpu, backend, system, root)
            if row is not None:
                print("| " + " | ".join(row) + " |")
    print()
    print("Cells: median |servesim / measured − 1| (median servesim / measured, rows scored).")


if __name__ == "__main__":
    main()
