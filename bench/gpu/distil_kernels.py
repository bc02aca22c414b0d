"""Distil NVIDIA AIConfigurator's measured kernel tables into servesim's per-GPU kernel CSVs.

AIConfigurator (Apache-2.0) ships per-GPU kernel timings measured on real hardware inside the
PyPI wheel ``aiconfigurator-core``, as parquet files laid out as
``aiconfigurator_core/systems/data/<system>/<op>/<backend>/<version>/<table>.parquet``.
This script reads the TensorRT-LLM tables (for each table, the newest version directory that
holds it; one override, see BACKEND_OVERRIDES), keeps a small grid of single-GPU shapes and
writes compact CSVs:

    src/servesim/catalog/kernels/<gpu>/gemm.csv
    src/servesim/catalog/kernels/<gpu>/attention_prefill.csv
    src/servesim/catalog/kernels/<gpu>/attention_decode.csv
    src/servesim/catalog/kernels/<gpu>/allreduce.csv      (NVLink systems only)
    src/servesim/catalog/kernels/<gpu>/moe_{vllm,sglang,trtllm}.csv (each engine's MoE kernels)
    src/servesim/catalog/kernels/<gpu>/allreduce_{vllm,sglang}.csv (each engine's custom
                                                          all-reduce, in a graph and eager)
    src/servesim/catalog/kernels/<gpu>/attention_decode_{vllm,sglang}.csv (each engine's own
                                                          decode attention)
    src/servesim/catalog/kernels/<gpu>/gemm_{vllm,sglang}.csv (each engine's own FP8 GEMMs)
    src/servesim/catalog/kernels/README.md                 (columns, formulas, sources)

Run it with servesim's environment (numpy, pyarrow) and either the ``aiconfigurator-core``
wheel installed (``pip install 'servesim[kernels]'``) or ``--data-root`` naming a
``systems/data`` folder (e.g. another virtual environment's copy):

    python bench/gpu/distil_kernels.py [--data-root DIR] [--out DIR]

The layout of the tables and their reduction (median per shape, seconds, TFLOP/s, GB/s) live
in ``servesim.cost.aic_tables``, shared with the run-time reader of the extra.

The output is deterministic for a given package version: re-running it rewrites the same files.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

# The layout of AIConfigurator's tables and their reduction to servesim's columns are defined
# once, in servesim.cost.aic_tables (run-time reading with the servesim[kernels] extra uses them
# too); this script only picks the grid and the backend kept in the catalog, and writes it.
from servesim.cost import aic_tables as aic  # noqa: E402
from servesim.cost.kernels import (  # noqa: E402
    ENGINE_DECODE_BACKENDS,
    ENGINE_GEMM_BACKENDS,
    ENGINE_GEMM_DTYPES,
    MOE_BACKENDS,
)

DEFAULT_OUT = REPO / "src" / "servesim" / "catalog" / "kernels"
HARDWARE = REPO / "src" / "servesim" / "catalog" / "hardware"
BACKEND = "trtllm"

# servesim hardware id (lower-cased ``name`` of catalog/hardware/*.yaml) -> AIConfigurator system.
DISTILLED = ("h100", "h200", "a100-80gb", "b200", "l40s", "b300", "gb200", "gb300", "rtx-pro-6000")
GPUS = {gpu: aic.SYSTEMS[gpu] for gpu in DISTILLED}
# NOTE: L40S and RTX PRO 6000 have no NVLink (PCIe only); their all-reduce tables exist but are
# left out on purpose.
NVLINK_GPUS = {"h100", "h200", "a100-80gb", "b200", "b300", "gb200", "gb300"}
# (gpu, output file) -> backend read instead of BACKEND.
# NOTE: a100_sxm's trtllm 1.0.0 decode table (provenance "legacy") reaches ~3.3 TB/s of KV
# reads at 2 GB working sets, 1.6x the A100's 2.04 TB/s HBM, and is faster than H100 on the
# same shapes: not physical. Its vLLM table (flash-attn, ~1.7 TB/s at best) is used instead.
BACKEND_OVERRIDES = {("a100-80gb", "attention_decode.csv"): "vllm"}

# Engines whose own custom all-reduce AIConfigurator times in a CUDA graph and eagerly.
ENGINE_ALLREDUCE_BACKENDS = ("vllm", "sglang")

# MoE layers (routed experts: grouped GEMMs, activation and combine) of the catalog's MoE models:
# (hidden_size, moe inter_size, top-k, routed experts).
MOE_SHAPES = {
    (7168, 2048, 8, 256),  # DeepSeek-V3 / R1
    (2048, 768, 8, 128),  # Qwen3-30B-A3B
    (4096, 1536, 8, 128),  # Qwen3-235B-A22B
    (4096, 14336, 2, 8),  # Mixtral-8x7B
    (2880, 2880, 4, 128),  # gpt-oss-120b
    # The one shape AIConfigurator times Marlin's MXFP4 kernels on Hopper (its vLLM and SGLang
    # tables, kernel_source "...marlin..."): the source the cost model reshapes Marlin MXFP4
    # curves from (vLLM before 0.11.1 on Hopper, and before Hopper, runs GPT-OSS with Marlin).
    (3584, 3072, 16, 896),
    # The one shape with Marlin INT4 MoE rows on every GPU that has them (Hopper, Ada): the
    # Marlin family's stand-in for MXFP4 where a GPU has no Marlin MXFP4 rows.
    (7168, 2048, 8, 384),
}


@dataclass(frozen=True)
class Source:
    """Where one output file's figures came from."""

    gpu: str
    output: str
    system: str
    table: str
    backend: str
    version: str
    device: str
    rows_in: int
    rows_out: int


def hbm_bandwidth(gpu: str) -> float | None:
    """HBM peak (bytes/s) of the servesim catalog GPU whose lower-cased ``name`` is ``gpu``."""
    for path in sorted(HARDWARE.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if str(spec.get("name", "")).lower() == gpu:
            return float(spec["hbm_bandwidth"])
    return None


# output file -> (op folder, table name, reduction onto the catalog grid)
OUTPUTS = {
    "gemm.csv": ("gemm", "gemm_perf", lambda t: aic.reduce_gemm(t, grid=True)),
    "attention_prefill.csv": (
        "attention",
        "context_attention_perf",
        lambda t: aic.reduce_prefill(t, grid=True),
    ),
    "attention_decode.csv": (
        "attention",
        "generation_attention_perf",
        lambda t: aic.reduce_decode(t, grid=True),
    ),
    "allreduce.csv": ("comm", "custom_allreduce_perf", aic.reduce_allreduce),
}
MEASURED_COLUMNS = {"seconds", "tflops", "gbps", "busbw_gbps"}


def write_csv(cols: aic.Columns, path: Path) -> None:
    """CSV with a header, shape columns as integers, measured columns with 4 significant
    digits (``%.4g``), no index."""
    names = list(cols)
    text = []
    for name in names:
        v = cols[name]
        if v.dtype.kind in "US":
            text.append(v.astype(str).tolist())
        elif name in MEASURED_COLUMNS:
            text.append([f"{x:.4g}" for x in v.tolist()])
        else:
            text.append([str(int(x)) for x in v.tolist()])
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(zip(*text, strict=True))


ENGINE_DECODE_FILES = {f"attention_decode_{b}.csv" for b in ENGINE_DECODE_BACKENDS}


def engine_gemm_rows(raw: aic.Columns) -> aic.Columns:
    """An engine's GEMM table on the catalog grid, its rows of ``ENGINE_GEMM_DTYPES`` only."""
    cols = aic.reduce_gemm(raw, grid=True)
    keep = np.isin(cols["dtype"], list(ENGINE_GEMM_DTYPES))
    return {k: v[keep] for k, v in cols.items()}


def default_kernel_rows(raw: aic.Columns) -> aic.Columns:
    """The rows of the kernel the engine runs by default: an engine's table times several
    backends (SGLang on Blackwell: TensorRT-LLM's MHA kernels and FlashInfer's; on Ada FlashInfer
    and Triton; head dims FlashAttention-3 lacks on Triton), and the median of a shape timed by
    two kernels would be neither. The most-timed kernel on the catalog's head shapes is the
    default one, for each KV dtype (vLLM on Ada runs a bf16 cache on FlashAttention-2 and an
    FP8 one on FlashInfer; the collectors time the other kernels on their own shapes)."""
    if "kernel_source" not in raw:
        return raw
    on_grid = aic.reduce_decode_mask(raw)
    source, kv = raw["kernel_source"], raw["kv_cache_dtype"]
    keep = np.zeros(len(source), dtype=bool)
    for dtype in np.unique(kv):
        names, counts = np.unique(source[on_grid & (kv == dtype)], return_counts=True)
        if len(names):
            keep |= (kv == dtype) & (source == names[np.argmax(counts)])
    return {k: v[keep] for k, v in raw.items()}


def distil_gpu(root: Path, gpu: str, out: Path) -> tuple[list[Source], list[str]]:
    """Write every output file of one GPU; return its sources and what was missing."""
    system = GPUS[gpu]
    sources: list[Source] = []
    missing: list[str] = []
    (out / gpu).mkdir(parents=True, exist_ok=True)
    hbm = hbm_bandwidth(gpu)
    jobs = [
        (name, op, table, BACKEND_OVERRIDES.get((gpu, name), BACKEND), reduce)
        for name, (op, table, reduce) in OUTPUTS.items()
        if name != "allreduce.csv" or gpu in NVLINK_GPUS
    ]
    # Each engine's own decode attention (the newest collection): on Hopper their FP8-KV
    # kernels read the cache at different rates (SGLang's ~20% below TensorRT-LLM's).
    op, table, reduce = OUTPUTS["attention_decode.csv"]
    jobs += [(f"attention_decode_{b}.csv", op, table, b, reduce) for b in ENGINE_DECODE_BACKENDS]
    # Each engine's own GEMM kernels, of the dtypes where they differ from TensorRT-LLM's
    # (kernels.ENGINE_GEMM_DTYPES: per-tensor FP8, CUTLASS scaled_mm in vLLM and SGLang; block
    # FP8, SGLang's DeepGEMM).
    jobs += [
        (f"gemm_{b}.csv", "gemm", "gemm_perf", b, engine_gemm_rows) for b in ENGINE_GEMM_BACKENDS
    ]
    for backend in MOE_BACKENDS:
        name = f"moe_{backend}.csv"
        # Every version's rows (aic.moe_by_version): the cost model picks per curve.
        merged = aic.moe_by_version(root, system, backend, MOE_SHAPES)
        if merged is None:
            missing.append(f"{gpu}: no moe/{backend} table with the catalog's MoE shapes")
            continue
        result, versions = merged
        write_csv(result, out / gpu / name)
        newest = aic.tables_newest_first(root, system, "moe", backend, "moe_perf")[0]
        raw = aic.read_parquet(newest)
        device = str(raw["device"][0]) if "device" in raw else ""
        counts = (len(raw["latency"]), len(result["seconds"]))
        version = " + ".join(versions)
        sources.append(Source(gpu, name, system, "moe_perf", backend, version, device, *counts))
    for backend in ENGINE_ALLREDUCE_BACKENDS if gpu in NVLINK_GPUS else ():
        name = f"allreduce_{backend}.csv"
        # Every version's rows: the cost model picks the one nearest the engine's release.
        merged = aic.allreduce_by_version(root, system, backend)
        if merged is None:
            missing.append(f"{gpu}: no comm/{backend} custom all-reduce table")
            continue
        result, versions = merged
        write_csv(result, out / gpu / name)
        newest = aic.tables_newest_first(root, system, "comm", backend, "custom_allreduce_perf")
        raw = aic.read_parquet(newest[0])
        device = str(raw["device"][0]) if "device" in raw else ""
        rows_in = sum(len(aic.read_parquet(p)["latency"]) for p in newest)
        sources.append(
            Source(gpu, name, system, "custom_allreduce_perf", backend, " + ".join(versions),
                   device, rows_in, len(result["seconds"]))
        )  # fmt: skip
    for name, op, table, backend, reduce in jobs:
        path = aic.newest_table(root, system, op, backend, table)
        if path is None:
            missing.append(f"{gpu}: no {op}/{backend}/*/{table}.parquet in {system}")
            continue
        raw = aic.read_parquet(path)
        version = path.parent.name
        if name in ENGINE_DECODE_FILES:
            raw = default_kernel_rows(raw)
        result = reduce(raw)
        if len(result["seconds"]) == 0:
            missing.append(f"{gpu}: {table} {backend} {version} has no row on the kept grid")
            continue
        if name.startswith("attention_decode") and hbm is not None:
            fast = aic.decode_beats_hbm(result, hbm)
            if fast is not None:
                missing.append(
                    f"{gpu}: {table} {backend} {version} dropped: decode reads {fast:.0f} GB/s "
                    f"from HBM, above the {hbm / 1e9:.0f} GB/s peak"
                )
                continue
        write_csv(result, out / gpu / name)
        device = str(raw["device"][0]) if "device" in raw else ""
        counts = (len(raw["latency"]), len(result["seconds"]))
        sources.append(Source(gpu, name, system, table, backend, version, device, *counts))
    return sources, missing


def write_gpu_fits(out: Path, gpu: str) -> None:
    """Store the fits of ``gpu``'s freshly written tables beside them (``fits.json``, see
    ``servesim.cost.shipped_fits``): its attention curve and, with FP8 rows, its FP8 factors,
    each under the hardware-file figures it was fitted with."""
    from dataclasses import asdict

    from servesim.cost import attention_fit as AF
    from servesim.cost import fp8_fit as FP8
    from servesim.cost.kernels import read_tables
    from servesim.cost.shipped_fits import write_fits
    from servesim.hardware import load_hardware

    hw, t = load_hardware(gpu), read_tables(out / gpu, gpu)
    figures = (hw.peak_flops["bf16"], hw.hbm_bandwidth, hw.kernel_launch_s)
    attention_inputs = AF.fit_inputs(*figures)
    attention = AF.fit_tables(t, *figures)
    fits = {"attention": None, "fp8": None}
    if attention is not None:
        fits["attention"] = {"inputs": attention_inputs, "fit": asdict(attention)}
    for engine in t.engine_decode or ():
        own = AF.fit_tables(t, *figures, engine=engine)
        if own is not None:
            fits[AF.fit_kind(engine)] = {"inputs": attention_inputs, "fit": asdict(own)}
    if "fp8" in hw.peak_flops and t.gemm is not None:
        fp8_inputs = FP8.fit_inputs(hw)
        factors = FP8.gpu_fp8_factors(t.gemm, **fp8_inputs)
        if factors is not None:
            fits["fp8"] = {"inputs": fp8_inputs, "fit": asdict(factors)}
    write_fits(out / gpu, fits)


def summary(out: Path, gpu: str) -> str:
    """A few headline figures of one GPU's files, to compare with datasheets."""
    from servesim.cost.kernels import read_tables

    t = read_tables(out / gpu, gpu)
    lines = [gpu]
    if t.gemm is not None:
        g = t.gemm
        for dtype in np.unique(g["dtype"]):
            rows = g["dtype"] == dtype
            cube = rows & (g["m"] == 8192) & (g["n"] == 8192) & (g["k"] == 8192)
            at_cube = f"{g['tflops'][cube][0]:.0f}" if cube.any() else "n/a"
            best = g["tflops"][rows].max()
            lines.append(f"  gemm {dtype}: 8192^3 {at_cube} TFLOP/s, best {best:.0f} TFLOP/s")
    if t.attention_prefill is not None:
        p = t.attention_prefill
        for dtype in np.unique(p["dtype"]):
            best = p["tflops"][p["dtype"] == dtype].max()
            lines.append(f"  prefill attention {dtype}: best {best:.0f} TFLOP/s")
    if t.attention_decode is not None:
        d = t.attention_decode
        for dtype in np.unique(d["dtype"]):
            best = d["gbps"][d["dtype"] == dtype].max()
            lines.append(f"  decode attention {dtype} KV: best {best:.0f} GB/s")
    if t.allreduce is not None:
        a = t.allreduce
        for n in np.unique(a["num_gpus"]):
            best = a["busbw_gbps"][a["num_gpus"] == n].max()
            lines.append(f"  all-reduce {int(n)} GPUs: best bus bandwidth {best:.0f} GB/s")
    return "\n".join(lines)


README_HEAD = """\
# Measured kernel tables

Per-GPU kernel timings, distilled from **NVIDIA AIConfigurator**'s measured tables by
`bench/gpu/distil_kernels.py` (re-run it to regenerate every file here, this README included).
All figures are NVIDIA's measurements on the named device; we only selected a subset of rows,
took the median of repeated shapes, converted milliseconds to seconds and derived the
throughput column. Nothing here was measured by servesim.

- Source package: `{package}` (PyPI), tables under
  `aiconfigurator_core/systems/data/<system>/<op>/{backend}/<version>/`.
- Backend: TensorRT-LLM (`{backend}`); for each table the newest version folder that holds it.
  One exception, A100 decode attention, comes from the vLLM tables: AIConfigurator's legacy
  A100 TensorRT-LLM 1.0.0 decode table reports ~3.3 TB/s of KV reads on 2 GB working sets,
  1.6x the A100's 2.04 TB/s HBM peak (and faster than its H100 table on the same shapes), so
  it cannot be right; the script drops any decode table that beats HBM on KV reads ≥ 1 GB.
- Licence: Apache-2.0, Copyright (c) NVIDIA CORPORATION & AFFILIATES. See `NOTICE` at the
  repository root. Upstream: https://github.com/ai-dynamo/aiconfigurator

## Files (one folder per servesim GPU id)

All files are plain CSV with a header line and no comments. Times are seconds for one kernel
call on one GPU; 1 TFLOP/s = 1e12 FLOP/s, 1 GB/s = 1e9 bytes/s. Floats have 4 significant digits.

### `gemm.csv` — `dtype,m,n,k,seconds,tflops`

`C[m,n] = A[m,k] · B[k,n]` as run by TensorRT-LLM's linear layer (`m` = tokens).
`dtype`: `bf16`, `fp8` (per-tensor scaled FP8 inputs, the activation quantised in the timed
call; absent on A100), `fp8_block` (block-scaled FP8: 128×128 weight blocks and 1×128
activation groups, as DeepSeek-V3/R1's and Qwen3's FP8 checkpoints store them; DeepGEMM where
the GPU runs it; absent on A100), or `fp4` (NVFP4: FP4 inputs with one FP8 scale per 16
values; Blackwell only).
`tflops = 2·m·n·k / seconds / 1e12`.
Kept: `m` = 1, 2, 4, …, 16384; `n` ∈ {gemm_n}; `k` ∈ {gemm_k}
(40 pairs; those present in the source: A100's legacy table stops at m = 8192).
Left out: other m/n/k, and A100's `int8_wo`, `int4_wo`, `sq`.

### `attention_prefill.csv` — `dtype,batch,seq_len,num_heads,num_kv_heads,head_dim,seconds,tflops`

Context (prefill) attention of `batch` fresh prompts of `seq_len` tokens each (no cached prefix),
causal, full window. `num_heads`/`num_kv_heads` are the query/KV heads on this GPU.
`dtype`: `bf16` (bf16 FMHA, bf16 KV cache) or `fp8` (FP8 FMHA, FP8 KV cache).
`tflops = (4·batch·seq_len²·num_heads·head_dim / 2) / seconds / 1e12` (QKᵀ and PV, halved by the
causal mask). Kept: `seq_len` = 16, 32, …, 16384; (head_dim, num_heads, num_kv_heads) ∈
{heads}. The source limits batch·seq_len (≤ 65536 for MHA, ≤ 131072 for GQA).
Left out: sliding-window rows, bf16-FMHA-with-FP8-KV rows, other head shapes, non-power-of-two
lengths. A100's legacy table has bf16 and head_dim 128 only.

### `attention_decode.csv` — `dtype,batch,context_len,num_heads,num_kv_heads,head_dim,seconds,gbps`

Generation (decode) attention: one new query token per sequence, each attending to
`context_len` cached tokens (AIConfigurator's `isl + step`). `dtype` is the **KV-cache** dtype
(`bf16` or `fp8`; queries are bf16). `gbps = 2·batch·context_len·num_kv_heads·head_dim·bytes /
seconds / 1e9` with bytes = 2 (bf16) or 1 (fp8): K and V read once. Kept: `context_len` ∈
{contexts}; the same head shapes as prefill (those present); every batch (1 … 2048; the
source limits batch·context_len ≤ 262144). A100 rows are vLLM 0.14.0's flash-attn decode
(bf16 only, head_dim 128, no 32-head MHA shape); see Sources.

NOTE: the source times the same kernel over and over, so a KV working set that fits in L2 (tens
of MB) is read from a hot L2: e.g. L40S shows up to ~3.6 TB/s for ≤ 67 MB of KV against 864 GB/s
of GDDR6. In a real step other layers evict it; a cost model should cap small-working-set rows at
the large-working-set bandwidth (or ignore them).

### `attention_decode_vllm.csv`, `attention_decode_sglang.csv`

Columns as `attention_decode.csv`: the same grid of vLLM's and SGLang's own decode attention
(`attention/<engine>/<version>/generation_attention_perf`, the newest collection; on Hopper
FlashAttention-3 as both engines run it, on the A100 vLLM's FlashAttention-2 and SGLang's
FlashInfer, on Blackwell and Ada each engine's default). bf16 and FP8 KV caches read at about
the same rate as TensorRT-LLM's kernels do, except FP8 caches on Hopper (SGLang ~20% slower)
and SGLang on the A100 (FlashInfer, ~25% below vLLM's FlashAttention-2). The cost model fits a
decode fraction to the engine profile's own table where it has one (`attention_fit.fit_tables`,
`engine=`).

### `gemm_vllm.csv`, `gemm_sglang.csv`

Columns and grid as `gemm.csv`: vLLM's and SGLang's own FP8 GEMMs
(`gemm/<engine>/<version>/gemm_perf`, the newest collection), the `fp8` and `fp8_block` rows
(`kernels.ENGINE_GEMM_DTYPES`; vLLM 0.24's block-FP8 rows are left out, see `GEMM_LEFT_OUT`).
Per-tensor FP8 runs CUTLASS `scaled_mm` in both (`CutlassFP8ScaledMMLinearKernel`,
`sgl_kernel.fp8_scaled_mm`): at 1–64 rows 0.65–0.74× TensorRT-LLM 1.3's per-tensor FP8 GEMMs on
the H100, H200 and B200 (median over the grid), 0.68–0.86× at 128–1,024, about the same from
2,048; on the L40S and RTX PRO 6000 within ±10% except SGLang's at 1–64 rows on the RTX PRO 6000
(1.4×). SGLang's block-FP8 rows time DeepGEMM: 0.83–0.92× TensorRT-LLM's from 128 rows on the H100
and H200, level on the Blackwell GPUs. Which rows price a step: `kernels.engine_gemm_applies`
(per-tensor FP8 always; SGLang's block FP8 on Hopper from 0.4.6); bf16 GEMMs read `gemm.csv`.

### `allreduce.csv` — `num_gpus,bytes,seconds,busbw_gbps`

TensorRT-LLM's all-reduce op (AIConfigurator's collector asks for strategy AUTO: TensorRT-LLM's
custom one-shot/two-shot kernels or NCCL, as it picks) of a bf16 tensor of `bytes` bytes over
`num_gpus` GPUs of one NVLink node, timed under a CUDA graph.
`busbw_gbps = 2·(num_gpus−1)/num_gpus · bytes / seconds / 1e9` (nccl-tests' bus bandwidth).
All rows kept. NVLink systems only (L40S, PCIe-only, has none here).

### `allreduce_vllm.csv`, `allreduce_sglang.csv` — `mode,num_gpus,bytes,seconds,busbw_gbps,version`

vLLM's and SGLang's own custom all-reduce kernels (AIConfigurator's `comm/<engine>/<version>/
custom_allreduce_perf`, kernel sources `vLLM_custom_*` and `SGLang_CustomAllReduce_*`), bf16,
`mode` `graph` (replayed inside a CUDA graph) or `eager` (issued from Python: the launch, the
copy into the peer-registered buffer and the cross-GPU flags, ~20 µs on a few KB where the
graph replay takes ~5), every collection's rows with its `version` (the cost model takes the
one nearest the engine's release). Columns otherwise as `allreduce.csv`. Left out: SGLang
0.5.6's table, which times TensorRT-LLM's kernel. NVLink systems only.

### `moe_vllm.csv`, `moe_sglang.csv`, `moe_trtllm.csv`

Columns `dtype,num_tokens,hidden_size,inter_size,topk,num_experts,tp,ep,seconds,version`.
One MoE layer's routed experts (the fused MoE kernels: grouped up/gate and down GEMMs, the
activation and the weighted combine) for `num_tokens` tokens, as run by vLLM's, SGLang's and
TensorRT-LLM's MoE kernels (`moe/<backend>/<version>/moe_perf`), every collection's rows with
its `version` (a newer collection may cover fewer models, and kernels change between releases:
the cost model takes, curve by curve, the collection nearest to the engine's release, see
`kernels.moe_seconds`). `inter_size` is the whole expert width; the layer
is split `tp` ways inside each expert and `ep` ways across experts. `dtype`: `bf16`, `fp8`
(per-tensor), `fp8_block` (block-scaled, DeepSeek checkpoints), `mxfp4` (4-bit weights, bf16
activations: gpt-oss), `mxfp4_marlin` (MXFP4 weights timed with the Marlin kernels, as the
source's `kernel_source` column names them: every L40S vLLM MXFP4 row, and Hopper's and
Blackwell's rows of the 3584/3072/16/896 shape; SGLang's MXFP4 rows timed with its generic
`fused_moe_triton` kernel, which no default launch runs, are left out), `int4_marlin` (INT4
weight-only GPTQ/AWQ experts timed with Marlin; other INT4 kernels left out, and vLLM 0.19's
`vllm_marlin_int4_moe` rows, 2–6× slower than vLLM 0.24's and SGLang's Marlin INT4 rows of the
same shapes on the same GPUs), `fp8_cutlass` (per-tensor FP8 rows timed with FlashInfer's
CUTLASS MoE, as the source's `kernel_source` names them: vLLM 0.24's on the H100, H200 and RTX
PRO 6000, 2–7× vLLM 0.19's Triton per-tensor rows on the H200; TensorRT-LLM prices its
per-tensor FP8 experts from them, vLLM and SGLang from the `fp8` rows first), `fp4` (NVFP4
weights and activations, the source's `nvfp4`:
FlashInfer's TensorRT-LLM and CUTLASS NVFP4 MoE kernels on the Blackwell GPUs). Kept: the MoE
shapes of servesim's catalog models (DeepSeek-V3/R1, Qwen3-30B-A3B and -235B-A22B,
Mixtral-8x7B, gpt-oss-120b), 3584/3072/16/896 (hidden/expert width/top-k/experts: the one shape
with Marlin MXFP4 rows on Hopper) and 7168/2048/8/384 (the one shape with Marlin INT4 rows on
Hopper and Ada), tp·ep <= 8, balanced routing (A100's vLLM table only has power-law routing
1.01, the mildest skew).

NOTE: some rows are faster than reading the weights of the experts their tokens hit allows:
vLLM 0.24's and SGLang 0.5.14's block-FP8 and NVFP4 DeepSeek-V3 rows (7168/2048/8/256) on the
Hopper and Blackwell GPUs stay flat from 32 to 256 tokens at about half the full weight read
(H100: 2.0 ms, where 256 experts' 11.3 GB take 3.4 ms at its 3.35 TB/s peak; TensorRT-LLM's
rows of the shape, 3.7 ms), and small sets inside a GDDR GPU's L2 read from a hot L2. The rows
are kept as measured; the cost model floors each MoE curve at that weight read
(`build.expert_read_floor`; see the main README, "MoE rows that beat their weight read").

### `mla_block.json` (beside the GPU folders)

Not a table: per engine backend and GPU, DeepSeek-V3's MLA attention block as AIConfigurator's
whole-module tables time it (`mla/<backend>/<version>/mla_{{context,generation}}_module_perf`)
over the sum of its operators as servesim prices them, and the block scale the cost model
applies (`kernels.mla_block_scale`). Written by `bench/mla_accuracy.py --write`, not by this
script; see the main README ("DeepSeek-V3's whole MLA block").

### `triton_prefill.json` (beside the GPU folders)

Not a table: how much slower vLLM's Triton attention (`TRITON_ATTN`, which vLLM runs for
attention sinks — GPT-OSS — before Hopper and on RTX Blackwell) runs a prompt than
FlashAttention-2, from the vLLM context-attention rows that time both on the same shapes
(`kernel_source` `vllm_triton_attn` and `vllm_flash_attn_fa2`; L40S and RTX PRO 6000): the
fitted slowdown `A` and half-length scale `ρ` the cost model applies to a GPU's prefill curve
(`attention_fit.triton_prefill`), the per-GPU median ratios by prompt length and the fit's
errors. Written by `bench/gpu/distil_triton_prefill.py --write`, not by this script; see the
main README ("vLLM's Triton attention").

### Not distilled

The same package also holds NCCL tables (`comm/nccl/<nccl version>/nccl_perf`: all_gather,
all_reduce, alltoall, reduce_scatter; fp16/int8; 2-8 GPUs), MLA,
GDN/Mamba, FP8 block-scaled and NVFP4 GEMMs, and sliding-window attention. None is copied
here.

## Sources
"""


def write_readme(root: Path, out: Path, sources: list[Source], missing: list[str]) -> None:
    """README.md: what each file holds, and the exact table and version behind it."""
    text = README_HEAD.format(
        package=aic.package_version(root),
        backend=BACKEND,
        gemm_n=", ".join(map(str, aic.GEMM_N)),
        gemm_k=", ".join(map(str, aic.GEMM_K)),
        heads=", ".join(f"({d}, {h}, {kv})" for d, h, kv in aic.ATTN_HEADS),
        contexts=", ".join(map(str, aic.DECODE_CONTEXT)),
    )
    rows = [
        "| gpu | file | system | table | backend | version | device | rows kept / source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sources:
        rows.append(
            f"| {s.gpu} | {s.output} | {s.system} | {s.table} | {s.backend} | {s.version} "
            f"| {s.device} | {s.rows_out} / {s.rows_in} |"
        )
    text += "\n".join(rows) + "\n"
    if missing:
        text += "\nNot available:\n\n" + "".join(f"- {m}\n" for m in missing)
    (out / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None, help="systems/data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="catalog/kernels folder")
    parser.add_argument(
        "--fits-only",
        action="store_true",
        help="refit the tables already in --out and rewrite their fits.json (after a change to "
        "the fits; needs no aiconfigurator-core)",
    )
    args = parser.parse_args(argv)
    if args.fits_only:
        for gpu in GPUS:
            if (args.out / gpu).is_dir():
                write_gpu_fits(args.out, gpu)
        return 0
    root = args.data_root or aic.data_root()
    if root is None:
        parser.error("aiconfigurator-core is not installed; pass --data-root")
    sources: list[Source] = []
    missing: list[str] = []
    for gpu in GPUS:
        got, lacking = distil_gpu(root, gpu, args.out)
        write_gpu_fits(args.out, gpu)
        sources += got
        missing += lacking
    write_readme(root, args.out, sources, missing)
    for gpu in GPUS:
        print(summary(args.out, gpu))
    for line in missing:
        print("missing:", line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
