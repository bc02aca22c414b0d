"""Distil how much slower vLLM's Triton attention runs a prompt than FlashAttention-2.

vLLM's V1 engine runs a model with attention sinks (GPT-OSS) on its Triton backend
(``TRITON_ATTN``, the ``triton_unified_attention`` kernel) on every GPU before Hopper and on
the GB20x Blackwells: FlashAttention-2 has no sinks (vLLM's GPT-OSS recipe: "Ampere ...
TRITON_ATTN attention backend"). The catalog's prefill curves time FlashAttention-class
kernels. AIConfigurator times both kernels, on the same shapes, in its vLLM 0.24.0 context
attention tables of two GPUs without FlashAttention-3 (L40S, RTX PRO 6000: ``kernel_source``
``vllm_triton_attn`` and ``vllm_flash_attn_fa2``, head_dim 192, 1-64 query heads, batch
1-256, prompts of 16-16,384 tokens, full and 128-token windows). This script pairs the rows
and fits the two numbers the cost model applies to a GPU's prefill curve when the engine runs
Triton (``attention_fit.triton_prefill``):

    Triton time / FlashAttention-2 time = A · (s + ρ·h') / (s + h')

at ``s`` keys per query, ``h'`` being the measuring GPU's own half-length (its shipped fit,
``attention_fit.length_stretch``): the Triton kernel reaches ``1/A`` of the plateau
efficiency, and its half-length is ``ρ·h'``. ``A`` and ``ρ`` minimise the mean, over prompt
lengths, of the median |log ratio| of the full-window rows (every length weighs the same;
the long ones are far more numerous). Leave-one-GPU-out errors are stored beside them.

    python bench/gpu/distil_triton_prefill.py [--write]

(needs the ``aiconfigurator-core`` wheel: ``pip install 'servesim[kernels]'``, or
``$SERVESIM_AIC_DATA`` naming its ``systems/data`` folder). ``--write`` stores the result in
``src/servesim/catalog/kernels/triton_prefill.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from servesim.cost import aic_tables as A  # noqa: E402
from servesim.cost import attention_fit as AF  # noqa: E402
from servesim.hardware import load_hardware  # noqa: E402

TRITON, FA2 = "vllm_triton_attn", "vllm_flash_attn_fa2"
SHAPE = ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "window_size",
         "step")  # fmt: skip
SLOWDOWNS = np.round(np.arange(1.0, 4.0, 0.02), 2)
HALF_SCALES = np.round(np.arange(0.0, 2.0, 0.01), 2)


def paired_rows(root: Path, gpu: str, system: str) -> dict[str, np.ndarray] | None:
    """The Triton and FlashAttention-2 prompt rows of one GPU's newest vLLM table timed on the
    same shapes: the shape columns, the ratio, and ``h'`` of the GPU's own fit; None where the
    table lacks either kernel."""
    path = A.newest_table(root, system, "attention", "vllm", "context_attention_perf")
    if path is None:
        return None
    raw = A.read_parquet(path)
    if "kernel_source" not in raw or "window_size" not in raw:
        return None
    found = AF.attention_fit_for(load_hardware(gpu))
    if found is None:
        return None
    fit = found[0]
    fa2: dict[tuple, float] = {}
    for i in np.flatnonzero(raw["kernel_source"] == FA2):
        fa2[tuple(int(raw[c][i]) for c in SHAPE)] = float(raw["latency"][i])
    rows: list[tuple] = []
    for i in np.flatnonzero(raw["kernel_source"] == TRITON):
        key = tuple(int(raw[c][i]) for c in SHAPE)
        if key in fa2 and key[1] >= 16 and key[6] == 0:
            rows.append((*key, float(raw["latency"][i]) / fa2[key]))
    if not rows:
        return None
    table = np.array(rows, dtype=float)
    cols = {c: table[:, j] for j, c in enumerate(SHAPE)}
    cols["ratio"] = table[:, -1]
    _, half, _, _, weight = fit.prefill_curve(float(np.median(cols["head_dim"])))
    ratio = cols["num_key_value_heads"] / cols["num_heads"]
    cols["half"] = half * AF.kv_head_factor(ratio, weight)
    cols["version"] = np.full(len(table), path.parent.name)
    return cols


def predicted(rows: dict[str, np.ndarray], slowdown: float, half_scale: float) -> np.ndarray:
    """The fitted ratio for ``rows`` (a window caps the keys per query)."""
    window = rows["window_size"]
    s = np.where(window > 0, np.minimum(rows["isl"], window), rows["isl"])
    return slowdown * (s + half_scale * rows["half"]) / (s + rows["half"])


def _loss(rows: dict[str, np.ndarray], slowdown: float, half_scale: float) -> float:
    full = rows["window_size"] == 0
    err = np.abs(np.log(predicted(rows, slowdown, half_scale) / rows["ratio"]))
    lengths = np.unique(rows["isl"][full])
    return float(np.mean([np.median(err[full & (rows["isl"] == n)]) for n in lengths]))


def fit(rows: dict[str, np.ndarray]) -> tuple[float, float]:
    """(A, ρ) on the grid minimising :func:`_loss`."""
    best = min(
        (_loss(rows, a, r), a, r) for a in SLOWDOWNS for r in HALF_SCALES
    )  # (a coarse grid: two numbers, ~15,000 evaluations)
    return float(best[1]), float(best[2])


def _join(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _errors(rows: dict[str, np.ndarray], slowdown: float, half_scale: float) -> dict:
    rel = predicted(rows, slowdown, half_scale) / rows["ratio"] - 1.0
    out = {}
    kinds = (("full", rows["window_size"] == 0), ("window_128", rows["window_size"] == 128))
    for name, window in kinds:
        if window.any():
            out[name] = round(float(np.median(np.abs(rel[window]))), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the catalog's JSON")
    args = ap.parse_args(argv)
    root = A.data_root()
    if root is None:
        raise SystemExit("aiconfigurator-core is not installed: pip install 'servesim[kernels]'")
    by_gpu = {}
    for gpu, system in A.SYSTEMS.items():
        rows = paired_rows(root, gpu, system)
        if rows is not None:
            by_gpu[gpu] = rows
    if not by_gpu:
        raise SystemExit("no vLLM context-attention table times both Triton and FlashAttention-2")
    slowdown, half_scale = fit(_join(list(by_gpu.values())))
    entry = {
        "what": "vLLM's Triton prefill attention (TRITON_ATTN) against FlashAttention-2 on the "
        "same shapes: time ratio = slowdown * (s + half_scale * h') / (s + h') at s keys per "
        "query, h' the measuring GPU's fitted half-length. Written by "
        "bench/gpu/distil_triton_prefill.py --write.",
        "source": f"{A.package_version(root)}: systems/data/<system>/attention/vllm/<version>/"
        "context_attention_perf, kernel_source vllm_triton_attn and vllm_flash_attn_fa2 "
        "(Apache-2.0, NVIDIA; see NOTICE)",
        "slowdown": slowdown,
        "half_scale": half_scale,
        "gpus": {},
    }
    print(f"fit on {', '.join(by_gpu)}: A = {slowdown:.2f}, rho = {half_scale:.2f}")
    for gpu, rows in by_gpu.items():
        others = [r for g, r in by_gpu.items() if g != gpu]
        held = _errors(rows, *fit(_join(others))) if others else {}
        full = rows["window_size"] == 0
        lengths = {
            int(n): round(float(np.median(rows["ratio"][full & (rows["isl"] == n)])), 3)
            for n in np.unique(rows["isl"][full])
        }
        entry["gpus"][gpu] = {
            "table": f"vllm {rows['version'][0]}",
            "rows": int(len(rows["ratio"])),
            "median_ratio_by_prompt_tokens": lengths,
            "error": _errors(rows, slowdown, half_scale),
            "error_held_out": held,
        }
        print(
            f"  {gpu}: {len(rows['ratio'])} rows, error {entry['gpus'][gpu]['error']}, "
            f"fitted on the other GPU {held}"
        )
    if args.write:
        from servesim.cost.kernels import TRITON_PREFILL_FILE

        TRITON_PREFILL_FILE.write_text(json.dumps(entry, indent=1) + "\n")
        print(f"wrote {TRITON_PREFILL_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
