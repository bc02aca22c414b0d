"""The numbers ``servesim kernels`` shows, as plain Python types ready for JSON: which measured
kernel tables a GPU ships (coverage, rungs), the attention curve fitted to them, and how
servesim's roofline rung compares with the measured GEMMs."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and the tables load when the command runs, not for --help
    from servesim.cost.kernels import KernelTables
    from servesim.hardware import Hardware

CHECK_SHAPES = ((4096, 4096), (14336, 4096))
"""Weight shapes ``(n, k)`` of the operator-level check: a 4096² projection and a Llama-3-8B
MLP up-projection (not a measured shape: interpolated between the measured ones around it, as
the cost model does)."""
CHECK_ROWS = (1, 16, 256, 4096)


def _span(values) -> list[float]:
    return [float(values.min()), float(values.max())]


def _attention_coverage(p, length: str) -> dict[str, Any]:
    """Rows, dtypes, head shapes and ranges of one attention table (``length``: its length
    column)."""
    heads = zip(
        p["num_heads"].tolist(), p["num_kv_heads"].tolist(), p["head_dim"].tolist(), strict=True
    )
    return {
        "rows": len(p["batch"]),
        "dtypes": sorted(set(p["dtype"].tolist())),
        "head_shapes": len(set(heads)),
        "batch": _span(p["batch"]),
        length: _span(p[length]),
    }


def _gemm_coverage(g: dict[str, Any]) -> dict[str, Any]:
    """Rows, dtypes and ranges of one GEMM table."""
    return {
        "rows": len(g["m"]),
        "dtypes": sorted(set(g["dtype"].tolist())),
        "weight_shapes": len(set(zip(g["n"].tolist(), g["k"].tolist(), strict=True))),
        "m": _span(g["m"]),
        "n": _span(g["n"]),
        "k": _span(g["k"]),
    }


def _coverage(t: KernelTables) -> dict[str, Any]:
    """Rows and ranges of each table (None: the table is absent)."""
    out: dict[str, Any] = {}
    out["gemm"] = None if t.gemm is None else _gemm_coverage(t.gemm)
    out["engine_gemm"] = {
        backend: _gemm_coverage(g) for backend, g in sorted((t.engine_gemm or {}).items())
    }
    for name, length in (("attention_prefill", "seq_len"), ("attention_decode", "context_len")):
        p = getattr(t, name)
        out[name] = None if p is None else _attention_coverage(p, length)
    out["engine_decode"] = {
        backend: _attention_coverage(d, "context_len")
        for backend, d in sorted((t.engine_decode or {}).items())
    }
    a = t.allreduce
    out["allreduce"] = None
    if a is not None:
        out["allreduce"] = {
            "rows": len(a["bytes"]),
            "num_gpus": sorted({int(x) for x in a["num_gpus"].tolist()}),
            "bytes": _span(a["bytes"]),
        }
    from servesim.versions import version_key

    out["engine_allreduce"] = {}
    for backend, e in sorted((t.engine_allreduce or {}).items()):
        out["engine_allreduce"][backend] = {
            "rows": len(e["bytes"]),
            "modes": sorted(set(e["mode"].tolist())),
            "versions": sorted(set(e["version"].tolist()), key=version_key),
            "num_gpus": sorted({int(x) for x in e["num_gpus"].tolist()}),
            "bytes": _span(e["bytes"]),
        }
    out["moe"] = {}
    from servesim.cost.aic_tables import moe_shape_tuples

    for backend, m in sorted((t.moe or {}).items()):
        shapes = moe_shape_tuples(m)
        splits = zip(m["tp"].tolist(), m["ep"].tolist(), strict=True)
        out["moe"][backend] = {
            "rows": len(m["seconds"]),
            "dtypes": sorted(set(m["dtype"].tolist())),
            "shapes": len(set(shapes)),
            "splits": sorted({f"tp{int(a)} ep{int(b)}" for a, b in splits}),
            "num_tokens": _span(m["num_tokens"]),
        }
    return out


def _number(x: float) -> float | None:
    """NaN (no error for a median fit) as JSON null."""
    return None if math.isnan(x) else x


def _attention(hw: Hardware, backend: str | None = None) -> dict[str, Any] | None:
    from servesim.cost.attention_fit import attention_fit_for

    got = attention_fit_for(hw, backend)
    if got is None:
        return None
    fit, source = got
    # Every field of the fit (JSON: the ramps' tuples as lists, a median fit's NaN errors null).
    doc = {
        k: list(v) if isinstance(v, tuple) else _number(v) if isinstance(v, float) else v
        for k, v in dataclasses.asdict(fit).items()
    }
    return {**doc, "source": source}


def _mla_block(hw: Hardware, borrowed: str | None) -> dict[str, float]:
    """Engine backend → the MLA block scale on this GPU (``kernels.mla_block_scale``; a GPU
    that borrows another's tables borrows its scales), for the backends measured."""
    from servesim.cost.kernels import mla_block_scale
    from servesim.cost.params import KERNEL_BACKENDS

    scales = {b: mla_block_scale(borrowed or hw.name, b) for b in KERNEL_BACKENDS}
    return {b: s for b, s in scales.items() if s != 1.0}


def _triton_prefill(hw: Hardware, attention: dict[str, Any] | None) -> dict[str, Any] | None:
    """vLLM's Triton prefill on this GPU (``attention_fit.triton_prefill``), where vLLM runs it
    by default (GPT-OSS on ``engines.VLLM_TRITON_SINK_ARCHITECTURES``); None elsewhere."""
    from servesim.cost.attention_fit import triton_prefill
    from servesim.cost.kernels import triton_prefill_factors
    from servesim.engines import VLLM_TRITON_SINK_ARCHITECTURES

    if attention is None or hw.architecture not in VLLM_TRITON_SINK_ARCHITECTURES:
        return None
    slowdown, half_scale = triton_prefill_factors()
    efficiency, half = triton_prefill(attention["efficiency"], attention["half_tokens"])
    return {"slowdown": slowdown, "half_scale": half_scale, "efficiency": efficiency,
            "half_tokens": half}  # fmt: skip


def _l2_rows(hw: Hardware, tables) -> dict[str, Any] | None:
    """This GPU's bf16 GEMM rows whose weights fit in its L2 and that beat the HBM roofline
    (served from L2 by the benchmark; ``build.l2_floor_seconds`` prices them at that floor)."""
    if tables is None or tables.gemm is None or hw.l2_bytes is None:
        return None
    from servesim.cost.build import l2_floor_seconds

    g = tables.gemm
    bf16 = g["dtype"] == "bf16"
    m, n, k, seconds = g["m"][bf16], g["n"][bf16], g["k"][bf16], g["seconds"][bf16]
    priced = l2_floor_seconds(seconds, hw, hw, 2.0, 2.0, n, k, m)
    floored = priced > seconds
    return {
        "l2_bytes": hw.l2_bytes,
        "rows": int(bf16.sum()),
        "floored": int(floored.sum()),
        "largest_speedup": float((priced / seconds)[floored].max()) if floored.any() else 1.0,
    }


def gpu_doc(hw: Hardware, backend: str | None = None) -> dict[str, Any]:
    """What ``servesim kernels`` knows of one GPU: coverage, rungs, attention curve (the
    tables of ``backend`` when the ``servesim[kernels]`` extra is installed)."""
    from servesim.cost.kernels import load_tables, transfer_source_for

    tables = load_tables(hw.name, backend)
    borrowed = transfer_source_for(hw)
    attention = _attention(hw, backend)
    doc: dict[str, Any] = {
        "gpu": hw.name,
        "tables": None,
        "gemm": None,
        "attention_prefill": None,
        "attention_decode": None,
        "allreduce": None,
        "moe": {},
    }
    if tables is not None:
        doc["tables"] = tables.source
        doc.update(_coverage(tables))
    doc["borrows"] = borrowed
    doc["rungs"] = {
        "gemm": "measured" if doc["gemm"] else ("fitted" if borrowed else "roofline"),
        "allreduce": "measured" if doc["allreduce"] else "roofline",
        "attention": "fitted" if attention else "roofline",
        # (Shapes a GPU's own MoE table lacks borrow another GPU's utilisation, or, where no
        # table measured the shape, the nearest measured shape's on this GPU: fitted.)
        "moe": "measured" if doc["moe"] and not borrowed else "fitted",
    }
    doc["attention_fit"] = attention
    doc["mla_block"] = _mla_block(hw, borrowed)
    doc["triton_prefill"] = _triton_prefill(hw, attention)
    doc["l2_floor"] = _l2_rows(hw, tables)
    doc["fallback"] = (
        None if tables is not None else _fallback_text(attention, borrowed, hw.architecture)
    )
    return doc


def _fallback_text(
    attention: dict[str, Any] | None, borrowed: str | None = None, architecture: str | None = None
) -> str:
    if borrowed is not None:
        return (
            f"GEMMs, attention and MoE layers borrow {borrowed}'s measured utilisation (same "
            f"architecture: its measured time over its roofline, applied to this GPU's "
            f"roofline); its all-reduce as the same share of the link where both links are the "
            f"same interconnect, else the ring roofline"
        )
    if attention is None:
        return "roofline throughout (no bf16 peak to scale a fitted curve)"
    from servesim.cost.fp8_fit import fp8_gemm_factors

    fp8 = fp8_gemm_factors(architecture)
    same = fp8 is not None and architecture is not None and fp8 != fp8_gemm_factors()
    fp8_text = (
        "FP8 GEMMs on the roofline"
        if fp8 is None
        else f"FP8 GEMMs at {fp8.compute:.2f} of the FP8 roofline's FLOP rate and "
        f"{fp8.memory:.2f} of its read rate, plus {fp8.overhead_s * 1e6:.1f} µs each "
        "(activation quantisation; medians of the GPUs with FP8 tables"
        + (f" of its architecture, {architecture})" if same else ")")
    )
    return (
        f"roofline GEMMs and all-reduce; attention from the {attention['source']} "
        f"(prefill {attention['efficiency']:.2f} of peak, half at {attention['half_tokens']:.0f}"
        f" keys; decode KV reads at {attention['memory_efficiency']:.2f} of HBM bandwidth); "
        f"{fp8_text}; MoE layers at the measured utilisation of the GPU with tables whose "
        f"roofline ridge is nearest (an MoE shape no table measured: that GPU's nearest "
        f"measured shape)"
    )


def roofline_params(hw: Hardware) -> dict[str, float]:
    """The figures servesim's roofline rung prices a bf16 GEMM with (CostParams defaults)."""
    from servesim.cost import CostParams
    from servesim.cost.dtypes import tensor_core_peak

    params = CostParams()
    return {
        "peak_flops": tensor_core_peak(hw.peak_flops, "bf16", "bf16"),
        "hbm_bandwidth": hw.hbm_bandwidth,
        "compute_efficiency": hw.compute_efficiency,
        "memory_efficiency": hw.memory_efficiency,
        "gemm_half_tokens": params.gemm_half_tokens,
        "kernel_launch_s": hw.kernel_launch_s,
    }


def roofline_gemm_seconds(r: dict[str, float], n: float, k: float, m):
    """Seconds of a bf16 ``m × k`` by ``k × n`` GEMM on servesim's roofline rung:
    ``max(2mnk / (peak · eff · m/(m + h)), bytes / (BW · mem_eff)) + launch``, bytes = the
    weights once plus the input and output rows (2 bytes each)."""
    flops = 2.0 * m * n * k
    rate = r["peak_flops"] * r["compute_efficiency"] * m / (m + r["gemm_half_tokens"])
    nbytes = 2.0 * (n * k + m * (n + k))
    memory = nbytes / (r["hbm_bandwidth"] * r["memory_efficiency"])
    return max(flops / rate, memory) + r["kernel_launch_s"]


def _source_shapes(tables: KernelTables, n: float, k: float) -> list[list[float]]:
    """``[[n, k, weight]]``: the measured bf16 weight shapes ``gemm_seconds`` prices ``(n, k)``
    from (interpolated between them in log TFLOP/s)."""
    from servesim.cost.kernels import gemm_source_shapes

    g = tables.gemm
    rows = g["dtype"] == "bf16"
    return [
        [int(sn), int(sk), round(w, 4)]
        for sn, sk, w in gemm_source_shapes(g["n"][rows], g["k"][rows], n, k)
    ]


def gemm_check(hw: Hardware, tables: KernelTables) -> dict[str, Any] | None:
    """Measured (the measured rung) against roofline seconds for the check shapes, and the
    roofline's median error over every measured bf16 row."""
    import numpy as np

    from servesim.cost.kernels import gemm_seconds

    if tables.gemm is None or not (tables.gemm["dtype"] == "bf16").any():
        return None
    r = roofline_params(hw)
    rows = []
    for n, k in CHECK_SHAPES:
        ms = np.array(CHECK_ROWS, dtype=np.float64)
        measured, _ = gemm_seconds(tables, "bf16", n, k, ms)
        for m, got in zip(CHECK_ROWS, measured.tolist(), strict=True):
            roof = roofline_gemm_seconds(r, n, k, m)
            rows.append(
                {
                    "n": n,
                    "k": k,
                    "m": m,
                    "table_shapes": _source_shapes(tables, n, k),
                    "measured_s": got,
                    "roofline_s": roof,
                    "error": roof / got - 1.0,
                }
            )
    g = tables.gemm
    sel = g["dtype"] == "bf16"
    roof_all = np.array(
        [
            roofline_gemm_seconds(r, n, k, m)
            for n, k, m in zip(g["n"][sel], g["k"][sel], g["m"][sel], strict=True)
        ]
    )
    median = float(np.median(np.abs(roof_all / g["seconds"][sel] - 1.0)))
    return {
        "roofline": r,
        "rows": rows,
        "bf16_rows": int(sel.sum()),
        "median_abs_error_all_bf16": median,
    }
