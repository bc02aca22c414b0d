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
    src/servesim/catalog/kernels/README.md                 (columns, formulas, sources)

Run it in a virtual environment that has ``aiconfigurator-core`` (or ``aiconfigurator``),
pandas and pyarrow; servesim itself is not imported:

    python bench/gpu/distil_kernels.py [--data-root DIR] [--out DIR]

The output is deterministic for a given package version: re-running it rewrites the same files.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "src" / "servesim" / "catalog" / "kernels"
HARDWARE = REPO / "src" / "servesim" / "catalog" / "hardware"
BACKEND = "trtllm"

# servesim hardware id (lower-cased ``name`` of catalog/hardware/*.yaml) -> AIConfigurator system.
GPUS = {
    "h100": "h100_sxm",
    "h200": "h200_sxm",
    "a100-80gb": "a100_sxm",
    "b200": "b200_sxm",
    "l40s": "l40s",
}
# NOTE: L40S has no NVLink (PCIe only); its all-reduce table exists but is left out on purpose.
NVLINK_GPUS = {"h100", "h200", "a100-80gb", "b200"}
# (gpu, output file) -> backend read instead of BACKEND.
# NOTE: a100_sxm's trtllm 1.0.0 decode table (provenance "legacy") reaches ~3.3 TB/s of KV
# reads at 2 GB working sets, 1.6x the A100's 2.04 TB/s HBM, and is faster than H100 on the
# same shapes: not physical. Its vLLM table (flash-attn, ~1.7 TB/s at best) is used instead.
BACKEND_OVERRIDES = {("a100-80gb", "attention_decode.csv"): "vllm"}
# Decode rows reading at least this many KV bytes cannot be served from L2 (<= 126 MB on
# these GPUs), so their bandwidth must stay under the HBM peak; a table that breaks it is dropped.
DECODE_HBM_CHECK_BYTES = 1e9

# --- the grid kept from each table -------------------------------------------------------------
GEMM_DTYPES = {"bfloat16": "bf16", "fp8": "fp8"}  # fp8 = per-tensor scaled FP8
GEMM_M = tuple(2**i for i in range(15))  # 1 .. 16384 tokens
# A log-spaced rectangle of (n, k): 8 x 5 = 40 pairs covering LLM projections per GPU.
GEMM_N = (1024, 2048, 4096, 6144, 8192, 12288, 16384, 65536)
GEMM_K = (1024, 2048, 4096, 8192, 16384)

# (attn_dtype, kv_cache_dtype) of the prefill table -> our dtype label.
PREFILL_DTYPES = {("bfloat16", "bfloat16"): "bf16", ("fp8", "fp8"): "fp8"}
# kv_cache_dtype of the decode table -> (our dtype label, bytes per KV element).
DECODE_DTYPES = {"bfloat16": ("bf16", 2), "fp8": ("fp8", 1)}
# (head_dim, num_heads, num_kv_heads) per GPU: MHA and GQA 4:1 / 8:1 shapes after tensor parallel.
ATTN_HEADS = (
    (128, 8, 1),
    (128, 8, 8),
    (128, 16, 2),
    (128, 32, 4),
    (128, 32, 8),
    (128, 32, 32),
    (128, 64, 8),
    (64, 8, 1),
    (64, 8, 8),
    (64, 64, 8),
)
PREFILL_SEQ = tuple(2**i for i in range(4, 15))  # 16 .. 16384 tokens
DECODE_CONTEXT = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)

ALLREDUCE_ELEMENT_BYTES = {"bfloat16": 2, "float16": 2}


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


def default_data_root() -> Path:
    """The ``systems/data`` folder of the installed ``aiconfigurator_core`` package."""
    return Path(str(importlib.resources.files("aiconfigurator_core"))) / "systems" / "data"


def package_version() -> str:
    """``aiconfigurator-core <version>`` (or the bundling ``aiconfigurator`` package)."""
    for dist in ("aiconfigurator-core", "aiconfigurator"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "aiconfigurator (version unknown)"


def hbm_bandwidth(gpu: str) -> float | None:
    """HBM peak (bytes/s) of the servesim catalog GPU whose lower-cased ``name`` is ``gpu``."""
    for path in sorted(HARDWARE.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if str(spec.get("name", "")).lower() == gpu:
            return float(spec["hbm_bandwidth"])
    return None


def newest_version_dir(root: Path, system: str, op: str, backend: str, table: str) -> Path | None:
    """Newest ``<op>/<backend>/<version>`` folder of ``system`` that holds ``<table>.parquet``.

    NOTE: a newer version folder may hold only a ``reuse.yaml`` that points back at an older
    collection (e.g. b200 gemm 1.3.0rc23 -> 1.3.0rc20), so the file itself is what we look for.
    """
    base = root / system / op / backend
    if not base.is_dir():
        return None
    found = [d for d in base.iterdir() if (d / f"{table}.parquet").is_file()]
    return max(found, key=lambda d: Version(d.name), default=None)


def read_table(
    root: Path, system: str, op: str, backend: str, table: str
) -> tuple[pd.DataFrame, str] | None:
    """The table as a DataFrame plus the version folder it came from, or None if absent."""
    folder = newest_version_dir(root, system, op, backend, table)
    if folder is None:
        return None
    return pd.read_parquet(folder / f"{table}.parquet"), folder.name


def median_by(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per key: the median latency (ms) of repeated measurements of the same shape."""
    return df.groupby(keys, as_index=False)["latency"].median().sort_values(keys)


def distil_gemm(df: pd.DataFrame) -> pd.DataFrame:
    """``dtype,m,n,k,seconds,tflops`` on the GEMM_M x GEMM_N x GEMM_K grid (pairs present)."""
    df = df[df.gemm_dtype.isin(GEMM_DTYPES)]
    df = df[df.m.isin(GEMM_M) & df.n.isin(GEMM_N) & df.k.isin(GEMM_K)]
    df = df.assign(dtype=df.gemm_dtype.map(GEMM_DTYPES))
    df = median_by(df, ["dtype", "m", "n", "k"])
    seconds = df.latency / 1e3
    flops = 2.0 * df.m * df.n * df.k
    return df.assign(seconds=seconds, tflops=flops / seconds / 1e12)[
        ["dtype", "m", "n", "k", "seconds", "tflops"]
    ]


def keep_heads(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of full (non-sliding-window) attention with a shape listed in ATTN_HEADS."""
    if "window_size" in df:  # older tables have no sliding-window rows and no such column
        df = df[df.window_size == 0]
    shape = list(zip(df.head_dim, df.num_heads, df.num_key_value_heads, strict=True))
    return df[pd.Series(shape, index=df.index).isin(ATTN_HEADS)]


def distil_prefill(df: pd.DataFrame) -> pd.DataFrame:
    """``dtype,batch,seq_len,num_heads,num_kv_heads,head_dim,seconds,tflops``.

    FLOPs of causal attention over a fresh prompt: QK^T and PV are 2·s²·h·d each, halved by
    the causal mask, so 4·b·s²·h·d / 2.
    """
    pair = list(zip(df.attn_dtype, df.kv_cache_dtype, strict=True))
    df = df.assign(dtype=pd.Series(pair, index=df.index).map(PREFILL_DTYPES))
    df = keep_heads(df[df.dtype.notna() & df.isl.isin(PREFILL_SEQ)])
    df = df.rename(
        columns={"batch_size": "batch", "isl": "seq_len", "num_key_value_heads": "num_kv_heads"}
    )
    keys = ["dtype", "batch", "seq_len", "num_heads", "num_kv_heads", "head_dim"]
    df = median_by(df, keys)
    seconds = df.latency / 1e3
    flops = 4.0 * df.batch * df.seq_len**2 * df.num_heads * df.head_dim / 2
    return df.assign(seconds=seconds, tflops=flops / seconds / 1e12)[keys + ["seconds", "tflops"]]


def distil_decode(df: pd.DataFrame) -> pd.DataFrame:
    """``dtype,batch,context_len,num_heads,num_kv_heads,head_dim,seconds,gbps``.

    One new query token per sequence attends to ``context_len`` cached tokens. AIConfigurator
    stores ``isl = 1`` and ``step`` = tokens already cached, so the KV length read is
    ``isl + step``. ``dtype`` is the KV-cache dtype (queries are bf16). gbps = K and V bytes
    read / seconds / 1e9.
    """
    df = df[df.kv_cache_dtype.isin(DECODE_DTYPES)]
    df = df.assign(
        context_len=df.isl + df.step,
        dtype=df.kv_cache_dtype.map(lambda d: DECODE_DTYPES[d][0]),
        kv_bytes=df.kv_cache_dtype.map(lambda d: DECODE_DTYPES[d][1]),
    )
    df = keep_heads(df[df.context_len.isin(DECODE_CONTEXT)])
    df = df.rename(columns={"batch_size": "batch", "num_key_value_heads": "num_kv_heads"})
    keys = ["dtype", "batch", "context_len", "num_heads", "num_kv_heads", "head_dim"]
    df = df.groupby(keys, as_index=False).agg(latency=("latency", "median"), kv=("kv_bytes", "max"))
    seconds = df.latency / 1e3
    kv_read = 2.0 * df.batch * df.context_len * df.num_kv_heads * df.head_dim * df.kv
    return df.assign(seconds=seconds, gbps=kv_read / seconds / 1e9)[keys + ["seconds", "gbps"]]


def distil_allreduce(df: pd.DataFrame) -> pd.DataFrame:
    """``num_gpus,bytes,seconds,busbw_gbps``; busbw = 2·(n−1)/n · bytes / seconds / 1e9.

    AIConfigurator's ``message_size`` counts elements of ``allreduce_dtype``, not bytes.
    """
    unknown = set(df.allreduce_dtype) - set(ALLREDUCE_ELEMENT_BYTES)
    if unknown:
        raise ValueError(f"all-reduce dtype(s) of unknown size: {sorted(unknown)}")
    df = df.assign(bytes=df.message_size * df.allreduce_dtype.map(ALLREDUCE_ELEMENT_BYTES))
    df = median_by(df, ["num_gpus", "bytes"])
    seconds = df.latency / 1e3
    n = df.num_gpus
    busbw = 2.0 * (n - 1) / n * df.bytes / seconds / 1e9
    columns = ["num_gpus", "bytes", "seconds", "busbw_gbps"]
    return df.assign(seconds=seconds, busbw_gbps=busbw)[columns]


def check_decode(decode: pd.DataFrame, hbm_bytes_per_s: float) -> None:
    """Raise ValueError if a decode row too large for L2 reads KV faster than HBM allows."""
    kv_read = decode.gbps * 1e9 * decode.seconds
    big = decode[kv_read >= DECODE_HBM_CHECK_BYTES]
    if len(big) and big.gbps.max() * 1e9 > hbm_bytes_per_s:
        raise ValueError(
            f"decode reads {big.gbps.max():.0f} GB/s from HBM, above the "
            f"{hbm_bytes_per_s / 1e9:.0f} GB/s peak"
        )


# output file -> (op folder, table name, distiller)
OUTPUTS = {
    "gemm.csv": ("gemm", "gemm_perf", distil_gemm),
    "attention_prefill.csv": ("attention", "context_attention_perf", distil_prefill),
    "attention_decode.csv": ("attention", "generation_attention_perf", distil_decode),
    "allreduce.csv": ("comm", "custom_allreduce_perf", distil_allreduce),
}


# MoE layers (routed experts: grouped GEMMs, activation and combine) of the catalog's MoE models:
# (hidden_size, moe inter_size, top-k, routed experts).
MOE_SHAPES = {
    (7168, 2048, 8, 256),  # DeepSeek-V3 / R1
    (2048, 768, 8, 128),  # Qwen3-30B-A3B
    (4096, 1536, 8, 128),  # Qwen3-235B-A22B
    (4096, 14336, 2, 8),  # Mixtral-8x7B
    (2880, 2880, 4, 128),  # gpt-oss-120b
}
MOE_BACKENDS = ("vllm", "sglang")
MOE_DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8_block", "w4a16_mxfp4": "mxfp4"}
MOE_MAX_GPUS = 8
# Balanced routing where measured; A100's vLLM table has only skewed (power-law) routings.
MOE_DISTRIBUTIONS = ("balanced", "power_law_1.01")


def distil_moe(df: pd.DataFrame) -> pd.DataFrame:
    """``dtype,num_tokens,hidden_size,inter_size,topk,num_experts,tp,ep,seconds`` for the
    catalog's MoE shapes, up to 8 GPUs, the most balanced routing measured."""
    shape = list(zip(df.hidden_size, df.inter_size, df.topk, df.num_experts, strict=True))
    df = df[np.array([s in MOE_SHAPES for s in shape]) & df.moe_dtype.isin(MOE_DTYPES)]
    df = df[df.moe_tp_size * df.moe_ep_size <= MOE_MAX_GPUS]
    for dist in MOE_DISTRIBUTIONS:
        if (df.distribution == dist).any():
            df = df[df.distribution == dist]
            break
    keys = ["moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts"]
    keys += ["moe_tp_size", "moe_ep_size"]
    out = median_by(df, keys)
    out["dtype"] = out.moe_dtype.map(MOE_DTYPES)
    out["seconds"] = out.latency / 1000.0
    out = out.rename(columns={"moe_tp_size": "tp", "moe_ep_size": "ep"})
    cols = ["dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "tp", "ep"]
    return out[[*cols, "seconds"]]


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """CSV with 4 significant digits for floats (seconds in e-notation), no index."""
    df.to_csv(path, index=False, float_format="%.4g", lineterminator="\n")


def distil_gpu(root: Path, gpu: str, out: Path) -> tuple[list[Source], list[str]]:
    """Write every output file of one GPU; return its sources and what was missing."""
    system = GPUS[gpu]
    sources: list[Source] = []
    missing: list[str] = []
    (out / gpu).mkdir(parents=True, exist_ok=True)
    hbm = hbm_bandwidth(gpu)
    for name, (op, table, distil) in OUTPUTS.items():
        if name == "allreduce.csv" and gpu not in NVLINK_GPUS:
            continue
        backend = BACKEND_OVERRIDES.get((gpu, name), BACKEND)
        found = read_table(root, system, op, backend, table)
        if found is None:
            missing.append(f"{gpu}: no {op}/{backend}/*/{table}.parquet in {system}")
            continue
        df, version = found
        result = distil(df)
        if result.empty:
            missing.append(f"{gpu}: {table} {backend} {version} has no row on the kept grid")
            continue
        if name == "attention_decode.csv" and hbm is not None:
            try:
                check_decode(result, hbm)
            except ValueError as err:
                missing.append(f"{gpu}: {table} {backend} {version} dropped: {err}")
                continue
        write_csv(result, out / gpu / name)
        device = str(df.device.iloc[0]) if "device" in df else ""
        sources.append(
            Source(gpu, name, system, table, backend, version, device, len(df), len(result))
        )
    for backend in MOE_BACKENDS:
        name = f"moe_{backend}.csv"
        found = read_table(root, system, "moe", backend, "moe_perf")
        if found is None:
            missing.append(f"{gpu}: no moe/{backend}/*/moe_perf.parquet in {system}")
            continue
        df, version = found
        result = distil_moe(df)
        if result.empty:
            missing.append(f"{gpu}: moe_perf {backend} {version} has none of the catalog shapes")
            continue
        write_csv(result, out / gpu / name)
        device = str(df.device.iloc[0]) if "device" in df else ""
        sources.append(
            Source(gpu, name, system, "moe_perf", backend, version, device, len(df), len(result))
        )
    return sources, missing


def summary(out: Path, gpu: str) -> str:
    """A few headline figures of one GPU's files, to compare with datasheets."""
    lines = [gpu]
    gemm_path = out / gpu / "gemm.csv"
    if gemm_path.exists():
        gemm = pd.read_csv(gemm_path)
        for dtype, rows in gemm.groupby("dtype"):
            cube = rows[(rows.m == 8192) & (rows.n == 8192) & (rows.k == 8192)]
            at_cube = f"{cube.tflops.iloc[0]:.0f}" if len(cube) else "n/a"
            lines.append(
                f"  gemm {dtype}: 8192^3 {at_cube} TFLOP/s, best {rows.tflops.max():.0f} TFLOP/s"
            )
    prefill_path = out / gpu / "attention_prefill.csv"
    if prefill_path.exists():
        pre = pd.read_csv(prefill_path)
        for dtype, rows in pre.groupby("dtype"):
            lines.append(f"  prefill attention {dtype}: best {rows.tflops.max():.0f} TFLOP/s")
    decode_path = out / gpu / "attention_decode.csv"
    if decode_path.exists():
        dec = pd.read_csv(decode_path)
        for dtype, rows in dec.groupby("dtype"):
            lines.append(f"  decode attention {dtype} KV: best {rows.gbps.max():.0f} GB/s")
    ar_path = out / gpu / "allreduce.csv"
    if ar_path.exists():
        ar = pd.read_csv(ar_path)
        for n, rows in ar.groupby("num_gpus"):
            best = rows.busbw_gbps.max()
            lines.append(f"  all-reduce {n} GPUs: best bus bandwidth {best:.0f} GB/s")
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
`dtype`: `bf16`, or `fp8` (per-tensor scaled FP8 inputs; absent on A100).
`tflops = 2·m·n·k / seconds / 1e12`.
Kept: `m` = 1, 2, 4, …, 16384; `n` ∈ {gemm_n}; `k` ∈ {gemm_k}
(40 pairs; those present in the source: A100's legacy table stops at m = 8192).
Left out: other m/n/k, `fp8_block`, `nvfp4` (B200), and A100's `int8_wo`, `int4_wo`, `sq`.

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

### `allreduce.csv` — `num_gpus,bytes,seconds,busbw_gbps`

TensorRT-LLM's all-reduce op (AIConfigurator's collector asks for strategy AUTO: TensorRT-LLM's
custom one-shot/two-shot kernels or NCCL, as it picks) of a bf16 tensor of `bytes` bytes over
`num_gpus` GPUs of one NVLink node, timed under a CUDA graph.
`busbw_gbps = 2·(num_gpus−1)/num_gpus · bytes / seconds / 1e9` (nccl-tests' bus bandwidth).
All rows kept. NVLink systems only (L40S, PCIe-only, has none here).

### `moe_vllm.csv`, `moe_sglang.csv`

Columns `dtype,num_tokens,hidden_size,inter_size,topk,num_experts,tp,ep,seconds`.
One MoE layer's routed experts (the fused MoE kernels: grouped up/gate and down GEMMs, the
activation and the weighted combine) for `num_tokens` tokens, as run by vLLM's and SGLang's MoE
kernels (`moe/<backend>/<version>/moe_perf`). `inter_size` is the whole expert width; the layer
is split `tp` ways inside each expert and `ep` ways across experts. `dtype`: `bf16`, `fp8`
(per-tensor), `fp8_block` (block-scaled, DeepSeek checkpoints), `mxfp4` (4-bit weights, bf16
activations: gpt-oss). Kept: the MoE shapes of servesim's catalog models (DeepSeek-V3/R1,
Qwen3-30B-A3B and -235B-A22B, Mixtral-8x7B, gpt-oss-120b), tp·ep <= 8, balanced routing
(A100's vLLM table only has power-law routing 1.01, the mildest skew).

### Not distilled

The same package also holds NCCL tables (`comm/nccl/<nccl version>/nccl_perf`: all_gather,
all_reduce, alltoall, reduce_scatter; fp16/int8; 2-8 GPUs), TensorRT-LLM MoE tables, MLA,
GDN/Mamba, FP8 block-scaled and NVFP4 GEMMs, and sliding-window attention. None is copied
here.

## Sources
"""


def write_readme(out: Path, sources: list[Source], missing: list[str]) -> None:
    """README.md: what each file holds, and the exact table and version behind it."""
    text = README_HEAD.format(
        package=package_version(),
        backend=BACKEND,
        gemm_n=", ".join(map(str, GEMM_N)),
        gemm_k=", ".join(map(str, GEMM_K)),
        heads=", ".join(f"({d}, {h}, {kv})" for d, h, kv in ATTN_HEADS),
        contexts=", ".join(map(str, DECODE_CONTEXT)),
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
    args = parser.parse_args(argv)
    root = args.data_root or default_data_root()
    sources: list[Source] = []
    missing: list[str] = []
    for gpu in GPUS:
        got, lacking = distil_gpu(root, gpu, args.out)
        sources += got
        missing += lacking
    write_readme(args.out, sources, missing)
    for gpu in GPUS:
        print(summary(args.out, gpu))
    for line in missing:
        print("missing:", line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
