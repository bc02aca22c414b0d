"""NVIDIA AIConfigurator's measured kernel tables: reading and reducing them.

AIConfigurator (Apache-2.0) ships kernel timings measured on real GPUs inside its PyPI wheel
``aiconfigurator-core``, as parquet files laid out as
``aiconfigurator_core/systems/data/<system>/<op>/<backend>/<version>/<table>.parquet``, one
set per GPU system and per serving backend (``trtllm``, ``vllm``, ``sglang``) and version.

This module is the one place that knows that layout and how a table becomes servesim's columns
(the median of repeated measurements of one shape, seconds, achieved TFLOP/s or GB/s). Two users:

- ``bench/gpu/distil_kernels.py`` keeps a small grid of each TensorRT-LLM table and writes the
  CSVs shipped in ``catalog/kernels/<gpu>/`` (the default install);
- :func:`load_backend_tables` reads a backend's full tables at run time when the wheel is
  installed (``pip install 'servesim[kernels]'``), so a vLLM or SGLang scenario is priced from
  that engine's own kernels (its GEMMs, its FlashAttention/FlashInfer build, its custom
  all-reduce, its fused-MoE kernels) on every measured shape, not only the catalog's grid.

Only :mod:`pyarrow` (a servesim dependency) and numpy are used; AIConfigurator itself is never
imported (its location is found with :func:`importlib.util.find_spec`), so reading costs no
start-up time beyond the parquet files of the GPU asked for.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servesim.cost.params import KERNEL_BACKENDS
from servesim.versions import version_key

DATA_ROOT_ENV = "SERVESIM_AIC_DATA"
"""Environment variable naming a ``systems/data`` folder to read instead of the installed
wheel's (tests, or a checkout of https://github.com/ai-dynamo/aiconfigurator)."""

SYSTEMS = {
    "h100": "h100_sxm",
    "h200": "h200_sxm",
    "a100-80gb": "a100_sxm",
    "b200": "b200_sxm",
    "l40s": "l40s",
    "h100-pcie": "h100_pcie",
    "l4": "l4",
    "b300": "b300_sxm",
    "gb200": "gb200",
    "gb300": "gb300",
    "rtx-pro-6000": "rtx_pro_6000_server",
}
"""servesim GPU id (lower-cased hardware ``name``) → AIConfigurator system folder: the same
device only (a cut-down or different-memory part borrows through ``kernels.SAME_ARCHITECTURE``)."""

BACKENDS = KERNEL_BACKENDS
"""AIConfigurator's serving backends, as servesim engine profiles name them."""

# --- the grid the catalog keeps (bench/gpu/distil_kernels.py) -------------------------------
GEMM_DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8_block", "nvfp4": "fp4"}
"""AIConfigurator GEMM dtypes kept, and their names in the catalog: ``fp8`` is per-tensor
scaled FP8 (W8A8), ``fp8_block`` block-scaled FP8 (128×128 weight blocks, 1×128 activation
groups: DeepSeek-V3/R1's and Qwen3's FP8 checkpoints; DeepGEMM on Hopper and Blackwell),
``fp4`` NVFP4 (W4A4, one FP8 scale per 16 values; Blackwell only)."""
GEMM_LEFT_OUT = {
    ("vllm", "fp8_block"): "vLLM 0.24's block-FP8 rows time a kernel that costs the same from "
    "1 to 1,024 tokens and far above the per-tensor FP8 and block-FP8 rows of every other "
    "collection (4096×7168 on a B200: DeepGEMM 0.17-0.28 ms flat to m = 1,024, where its own "
    "CUTLASS per-tensor FP8 takes 0.013 ms at m = 4 and TensorRT-LLM's and SGLang's DeepGEMM "
    "rows 0.013-0.014 ms; on an H200 0.056-0.092 ms against 0.014-0.017 ms)",
}
"""(backend, GEMM dtype) pairs not read, with why: a block-FP8 layer of that backend falls back
to its per-tensor FP8 rows."""
GEMM_M = tuple(2**i for i in range(15))  # 1 .. 16384 tokens
GEMM_N = (1024, 2048, 4096, 6144, 8192, 12288, 16384, 65536)
GEMM_K = (1024, 2048, 4096, 8192, 16384)
PREFILL_DTYPES = {("bfloat16", "bfloat16"): "bf16", ("fp8", "fp8"): "fp8"}
DECODE_DTYPES = {"bfloat16": ("bf16", 2), "fp8": ("fp8", 1)}
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
"""(head_dim, query heads, KV heads) per GPU: MHA and GQA 4:1 / 8:1 shapes after tensor parallel."""
PREFILL_SEQ = tuple(2**i for i in range(4, 15))  # 16 .. 16384 tokens
DECODE_CONTEXT = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
ALLREDUCE_ELEMENT_BYTES = {"bfloat16": 2, "float16": 2}
MOE_DTYPES = {
    "bfloat16": "bf16",
    "fp8": "fp8",
    "fp8_block": "fp8_block",
    "w4a16_mxfp4": "mxfp4",
    "int4_wo": "int4_marlin",
    "nvfp4": "fp4",  # (W4A4 NVFP4 experts: FlashInfer's TensorRT-LLM/CUTLASS kernels, Blackwell)
}
INT4_MARLIN = "int4_marlin"
"""The label of INT4 weight-only (GPTQ/AWQ) rows, kept only where ``kernel_source`` names
Marlin: the same kernel family as :data:`MXFP4_MARLIN` (4-bit weights dequantised into BF16
``mma.sync``), which stands in for it on a GPU without Marlin MXFP4 rows."""
MOE_KERNELS_LEFT_OUT = {
    "vllm_marlin_int4_moe": "vLLM 0.19's INT4 collection (H200, B200): 2-6x slower than vLLM "
    "0.24's and SGLang's Marlin INT4 rows of the same shapes on the same GPUs, which agree "
    "within ~15% (DeepSeek-V3's shape at 256 tokens on an H200: 12.2 ms against 2.3-2.8 ms)",
}
"""MoE kernel sources whose rows are not distilled, with why (``kernel_source`` values)."""
FP8_CUTLASS = "fp8_cutlass"
"""The label of per-tensor FP8 MoE rows timed with FlashInfer's CUTLASS MoE kernels (the
``kernel_source`` names them; TensorRT-LLM's CUTLASS MoE as FlashInfer ships it), which vLLM
0.24 runs ModelOpt FP8 checkpoints with on Hopper and the RTX PRO 6000: a kernel of its own
beside the Triton fused MoE of vLLM 0.19's ``fp8`` rows (and of SGLang's W8A8 FP8 experts).
On the H200 it takes 2-7x vLLM 0.19's Triton per-tensor rows and 2-4x vLLM 0.24's own bf16
rows of the same shapes (Qwen3-235B-A22B's shape at TP4, 16 tokens: 1.22 ms against 0.18 ms
and 0.32 ms), where on the B200 it beats bf16."""
MXFP4_MARLIN = "mxfp4_marlin"
"""The label of MXFP4 rows timed with the Marlin kernels (``kernel_source`` names them): a
kernel of its own, which vLLM runs before Hopper and on Hopper before 0.11.1
(``kernels.vllm_mxfp4_kernel``), beside the default ``mxfp4`` kernels (``triton_kernels``
on Hopper, FlashInfer's TensorRT-LLM kernels on Blackwell)."""
MOE_MAX_GPUS = 8
MOE_DISTRIBUTIONS = ("balanced", "power_law_1.01")
"""Routing distributions, most balanced first; A100's vLLM table has only power-law 1.01."""

DECODE_HBM_CHECK_BYTES = 1e9
"""Decode rows reading at least this much KV cannot be served from L2, so a table whose KV
reads beat the HBM peak on them is not physical and is dropped."""

Columns = dict[str, np.ndarray]
"""A table as named columns (numbers float64, labels str), as ``kernels.KernelTables`` holds."""


# --- locating tables -------------------------------------------------------------------------


def data_root() -> Path | None:
    """The ``systems/data`` folder: ``$SERVESIM_AIC_DATA``, else the installed wheel's."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env) if Path(env).is_dir() else None
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "systems" / "data"
    return root if root.is_dir() else None


def package_version(root: Path | None = None) -> str:
    """``aiconfigurator-core <version>`` of the tables under ``root`` (its wheel's
    ``.dist-info`` beside the package), else of the installed distribution."""
    if root is not None:
        site = root.parent.parent.parent
        for info in sorted(site.glob("aiconfigurator_core-*.dist-info")):
            return "aiconfigurator-core " + info.name.split("-")[1].removesuffix(".dist")
    import importlib.metadata  # (~15 ms: only here, not for every run that reads the tables)

    for dist in ("aiconfigurator-core", "aiconfigurator"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"tables under {root}" if root is not None else "aiconfigurator (version unknown)"


def newest_table(root: Path, system: str, op: str, backend: str, table: str) -> Path | None:
    """The newest ``<op>/<backend>/<version>/<table>.parquet`` of ``system``, or None.

    A newer version folder may hold only a ``reuse.yaml`` pointing back at an older collection,
    so the file itself is what is looked for.
    """
    base = root / system / op / backend
    if not base.is_dir():
        return None
    found = [d for d in base.iterdir() if (d / f"{table}.parquet").is_file()]
    if not found:
        return None
    return max(found, key=lambda d: version_key(d.name)) / f"{table}.parquet"


def tables_newest_first(root: Path, system: str, op: str, backend: str, table: str) -> list[Path]:
    """Every ``<op>/<backend>/<version>/<table>.parquet`` of ``system``, newest version first."""
    base = root / system / op / backend
    if not base.is_dir():
        return []
    found = [d for d in base.iterdir() if (d / f"{table}.parquet").is_file()]
    return [d / f"{table}.parquet" for d in sorted(found, key=lambda d: version_key(d.name),
                                                   reverse=True)]  # fmt: skip


MOE_KEY = ("dtype", "hidden_size", "inter_size", "topk", "num_experts", "tp", "ep")
"""What names one MoE curve of :func:`reduce_moe`'s output."""


def moe_by_version(
    root: Path, system: str, backend: str, shapes: set[tuple[int, int, int, int]] | None
) -> tuple[Columns, list[str]] | None:
    """``backend``'s MoE rows of ``system`` (:func:`reduce_moe`) from every collection, newest
    first, with a ``version`` column; and the versions that had rows. None without any.

    NOTE: every version is kept, not only the newest: a newer collection may cover fewer
    models than an older one (TensorRT-LLM 1.3.0rc23 holds none of the catalog's shapes, rc20
    no bf16 DeepSeek-V3), and kernels move between releases (SGLang's DeepSeek MoE at TP8 is
    1.9x faster at 64 tokens in 0.5.14 than in 0.5.10): ``kernels.moe_seconds`` picks the
    version nearest to the engine's release curve by curve."""
    return _every_version(
        tables_newest_first(root, system, "moe", backend, "moe_perf"),
        lambda t: reduce_moe(t, shapes),
    )


def _every_version(
    paths: list[Path], reduce: Callable[[Columns], Columns]
) -> tuple[Columns, list[str]] | None:
    """The rows of every table in ``paths`` (newest first) reduced, with a ``version`` column
    (the folder's name); and the versions that had rows. None without any."""
    parts: list[Columns] = []
    versions: list[str] = []
    for path in paths:
        cols = reduce(read_parquet(path))
        if len(cols["seconds"]) == 0:
            continue
        cols["version"] = np.full(len(cols["seconds"]), path.parent.name)
        parts.append(cols)
        versions.append(path.parent.name)
    if not parts:
        return None
    return {k: np.concatenate([m[k] for m in parts]) for k in parts[0]}, versions


def read_parquet(path: Path) -> Columns:
    """Every column of a parquet file as a numpy array (strings as str arrays)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cols: Columns = {}
    for name in table.column_names:
        values = table.column(name).to_numpy(zero_copy_only=False)
        cols[name] = values.astype(str) if values.dtype == object else values
    return cols


# --- reductions ------------------------------------------------------------------------------


def _take(cols: Columns, mask: np.ndarray) -> Columns:
    return {k: v[mask] for k, v in cols.items()}


def median_by(keys: dict[str, np.ndarray], latency_ms: np.ndarray) -> tuple[Columns, np.ndarray]:
    """One row per distinct key: the key columns and the median latency (ms) of its rows,
    sorted by the keys in the order given (the median of repeated measurements of one shape)."""
    names = list(keys)
    if len(latency_ms) == 0:
        return {n: keys[n][:0] for n in names}, latency_ms[:0]
    codes = []
    for n in names:
        _, code = np.unique(keys[n], return_inverse=True)
        codes.append(code.ravel())
    order = np.lexsort([latency_ms, *reversed(codes)])
    stacked = np.stack([c[order] for c in codes], axis=1)
    starts = np.flatnonzero(np.r_[True, (np.diff(stacked, axis=0) != 0).any(axis=1)])
    ends = np.r_[starts[1:], len(order)]
    lat = latency_ms[order]
    lo, hi = starts + (ends - starts - 1) // 2, starts + (ends - starts) // 2
    medians = (lat[lo] + lat[hi]) / 2.0
    first = order[starts]
    return {n: keys[n][first] for n in names}, medians


def _isin(values: np.ndarray, allowed) -> np.ndarray:
    return np.isin(values, np.asarray(list(allowed)))


def _label(values: np.ndarray, mapping: dict) -> np.ndarray:
    """``values`` mapped through ``mapping`` ("" where absent)."""
    return np.array([mapping.get(v, "") for v in values.tolist()], dtype=object).astype(str)


def reduce_gemm(t: Columns, grid: bool) -> Columns:
    """``dtype,m,n,k,seconds,tflops`` (``tflops = 2·m·n·k / seconds / 1e12``); with ``grid``
    only the catalog's m × n × k grid. Rows of a (backend, dtype) in :data:`GEMM_LEFT_OUT`
    are dropped."""
    keep = _isin(t["gemm_dtype"], GEMM_DTYPES)
    if "framework" in t:
        framework = np.char.lower(t["framework"].astype(str))
        for backend, dtype in GEMM_LEFT_OUT:
            keep &= ~((framework == backend) & (t["gemm_dtype"] == dtype))
    if grid:
        keep &= _isin(t["m"], GEMM_M) & _isin(t["n"], GEMM_N) & _isin(t["k"], GEMM_K)
    t = _take(t, keep)
    keys = {"dtype": _label(t["gemm_dtype"], GEMM_DTYPES)}
    keys |= {c: t[c].astype(np.float64) for c in ("m", "n", "k")}
    out, ms = median_by(keys, t["latency"].astype(np.float64))
    out["seconds"] = ms / 1e3
    out["tflops"] = 2.0 * out["m"] * out["n"] * out["k"] / out["seconds"] / 1e12
    return out


def _full_window(t: Columns) -> np.ndarray:
    # Older tables have no sliding-window rows and no such column.
    if "window_size" in t:
        return t["window_size"] == 0
    return np.ones(len(t["latency"]), dtype=bool)


def _heads_kept(t: Columns) -> np.ndarray:
    shape = np.stack([t["head_dim"], t["num_heads"], t["num_key_value_heads"]], axis=1)
    allowed = np.array(ATTN_HEADS)
    return (shape[:, None, :] == allowed[None, :, :]).all(axis=2).any(axis=1)


def _attention_keys(t: Columns, dtype: np.ndarray, length: str, lengths) -> dict[str, np.ndarray]:
    """The shape columns an attention row is keyed by, in the catalog's column order."""
    return {
        "dtype": dtype,
        "batch": t["batch_size"].astype(np.float64),
        length: np.asarray(lengths, dtype=np.float64),
        "num_heads": t["num_heads"].astype(np.float64),
        "num_kv_heads": t["num_key_value_heads"].astype(np.float64),
        "head_dim": t["head_dim"].astype(np.float64),
    }


def reduce_prefill(t: Columns, grid: bool) -> Columns:
    """``dtype,batch,seq_len,num_heads,num_kv_heads,head_dim,seconds,tflops``: causal attention
    over ``batch`` fresh prompts of ``seq_len`` tokens, ``tflops = 4·b·s²·h·d / 2 / seconds``
    (QKᵀ and PV, halved by the causal mask). ``dtype`` is bf16 (bf16 FMHA + bf16 KV) or fp8
    (FP8 FMHA + FP8 KV); full-window rows only; with ``grid`` the catalog's lengths and heads."""
    pair = np.char.add(np.char.add(t["attn_dtype"].astype(str), "|"), t["kv_cache_dtype"])
    dtype = _label(pair, {f"{a}|{k}": v for (a, k), v in PREFILL_DTYPES.items()})
    keep = (dtype != "") & _full_window(t)
    if grid:
        keep &= _isin(t["isl"], PREFILL_SEQ) & _heads_kept(t)
    t = _take(t, keep)
    keys = _attention_keys(t, dtype[keep], "seq_len", t["isl"])
    out, ms = median_by(keys, t["latency"].astype(np.float64))
    out["seconds"] = ms / 1e3
    flops = 4.0 * out["batch"] * out["seq_len"] ** 2 * out["num_heads"] * out["head_dim"] / 2
    out["tflops"] = flops / out["seconds"] / 1e12
    return out


def reduce_decode_mask(t: Columns, grid: bool = True) -> np.ndarray:
    """The rows of a generation-attention table :func:`reduce_decode` keeps: full-window rows
    of the KV dtypes it knows, on the catalog's grid of contexts and head shapes (``grid``)."""
    keep = _isin(t["kv_cache_dtype"], DECODE_DTYPES) & _full_window(t)
    if grid:
        context = (t["isl"] + t["step"]).astype(np.float64)
        keep &= _isin(context, DECODE_CONTEXT) & _heads_kept(t)
    return keep


def reduce_decode(t: Columns, grid: bool) -> Columns:
    """``dtype,batch,context_len,num_heads,num_kv_heads,head_dim,seconds,gbps``: one new query
    token per sequence over ``context_len = isl + step`` cached tokens; ``dtype`` is the KV-cache
    dtype; ``gbps = 2·b·ctx·kv_heads·d·bytes / seconds / 1e9`` (K and V read once)."""
    keep = reduce_decode_mask(t, grid)
    context = (t["isl"] + t["step"]).astype(np.float64)
    t = _take(t, keep)
    dtype = _label(t["kv_cache_dtype"], {k: v[0] for k, v in DECODE_DTYPES.items()})
    keys = _attention_keys(t, dtype, "context_len", context[keep])
    out, ms = median_by(keys, t["latency"].astype(np.float64))
    out["seconds"] = ms / 1e3
    kv = np.where(out["dtype"] == "fp8", 1.0, 2.0)
    kv_read = 2.0 * out["batch"] * out["context_len"] * out["num_kv_heads"] * out["head_dim"] * kv
    out["gbps"] = kv_read / out["seconds"] / 1e9
    return out


def reduce_allreduce(t: Columns) -> Columns:
    """``num_gpus,bytes,seconds,busbw_gbps`` (busbw = 2·(n−1)/n · bytes / seconds / 1e9).

    AIConfigurator's ``message_size`` counts elements of ``allreduce_dtype``. vLLM's and
    SGLang's tables time their custom all-reduce both inside a CUDA graph and eagerly: the
    graph rows are kept (an eager step's launch cost is priced separately, ``eager_cost``).
    """
    unknown = set(t["allreduce_dtype"].tolist()) - set(ALLREDUCE_ELEMENT_BYTES)
    if unknown:
        raise ValueError(f"all-reduce dtype(s) of unknown size: {sorted(unknown)}")
    if "backend" in t and np.char.endswith(t["backend"].astype(str), "_graph").any():
        t = _take(t, np.char.endswith(t["backend"].astype(str), "_graph"))
    return _allreduce_medians(t, {})


def _allreduce_medians(t: Columns, keys: dict[str, np.ndarray]) -> Columns:
    """``keys`` + ``num_gpus,bytes,seconds,busbw_gbps``: the median latency of each message
    size (AIConfigurator's ``message_size`` in elements of ``allreduce_dtype``)."""
    element = np.array([ALLREDUCE_ELEMENT_BYTES[d] for d in t["allreduce_dtype"].tolist()])
    keys = keys | {
        "num_gpus": t["num_gpus"].astype(np.float64),
        "bytes": t["message_size"] * element.astype(np.float64),
    }
    out, ms = median_by(keys, t["latency"].astype(np.float64))
    out["seconds"] = ms / 1e3
    n = out["num_gpus"]
    out["busbw_gbps"] = 2.0 * (n - 1) / n * out["bytes"] / out["seconds"] / 1e9
    return out


ALLREDUCE_MODES = ("graph", "eager")
"""How an engine's custom all-reduce was timed (AIConfigurator's ``backend`` column: ``vllm_graph``,
``SGLang_CustomAllReduce_eager``, ...): captured in a CUDA graph, or issued eagerly."""


def reduce_engine_allreduce(t: Columns) -> Columns:
    """``mode,num_gpus,bytes,seconds,busbw_gbps`` of an engine's own custom all-reduce (vLLM's,
    SGLang's), timed inside a CUDA graph (``graph``) and eagerly (``eager``: the launch, the
    copy into the peer-registered buffer and the cross-GPU flags, ~20 µs even for a few KB).
    Rows of another kernel (SGLang 0.5.6's table times TensorRT-LLM's) are left out."""
    backend = np.char.lower(t["backend"].astype(str)) if "backend" in t else None
    if backend is None:
        return {k: v[:0] for k, v in reduce_allreduce(t).items()} | {"mode": np.array([], str)}
    mode = np.full(len(backend), "", dtype=object)
    for m in ALLREDUCE_MODES:
        mode[np.char.endswith(backend, "_" + m)] = m
    t = _take(t, mode != "")
    return _allreduce_medians(t, {"mode": mode[mode != ""].astype(str)})


def allreduce_by_version(root: Path, system: str, backend: str) -> tuple[Columns, list[str]] | None:
    """``backend``'s own all-reduce rows of ``system`` (:func:`reduce_engine_allreduce`) from
    every collection, newest first, with a ``version`` column; and the versions that had rows.
    None without any (TensorRT-LLM's tables have no graph/eager split: ``allreduce.csv``)."""
    paths = tables_newest_first(root, system, "comm", backend, "custom_allreduce_perf")
    return _every_version(paths, reduce_engine_allreduce)


def moe_shape_tuples(t: Columns) -> list[tuple[int, int, int, int]]:
    """Each row's MoE shape (hidden, expert width, top-k, experts), as ints."""
    cols = ("hidden_size", "inter_size", "topk", "num_experts")
    return list(zip(*(t[c].astype(int).tolist() for c in cols), strict=True))


def reduce_moe(t: Columns, shapes: set[tuple[int, int, int, int]] | None) -> Columns:
    """``dtype,num_tokens,hidden_size,inter_size,topk,num_experts,tp,ep,seconds``: one MoE
    layer's routed experts (fused grouped GEMMs, activation, combine), up to 8 GPUs, under the
    most balanced routing the table measured; ``shapes`` (hidden, expert width, top-k, experts)
    limits the models kept (None: every shape)."""
    keep = _isin(t["moe_dtype"], MOE_DTYPES)
    keep &= t["moe_tp_size"] * t["moe_ep_size"] <= MOE_MAX_GPUS
    if "kernel_source" in t:
        source = t["kernel_source"].astype(str)
        # NOTE: SGLang's generic fused-MoE Triton kernel on MXFP4 weights (its Hopper and Ada
        # rows) is no kernel a default launch runs: SGLang picks triton_kernels for GPT-OSS
        # before Blackwell (``kernels.moe_kernel_backend``). Kept, it would stand in for the
        # default kernels wherever another table lacks them, about 3x slower at decode.
        generic = np.char.find(source, "fused_moe_triton") >= 0
        keep &= ~(generic & (t["moe_dtype"] == "w4a16_mxfp4"))
        # (INT4 weight-only rows of another kernel than Marlin have no use here.)
        keep &= (np.char.find(source, "marlin") >= 0) | (t["moe_dtype"] != "int4_wo")
        keep &= ~np.isin(source, list(MOE_KERNELS_LEFT_OUT))
    else:
        keep &= t["moe_dtype"] != "int4_wo"
    if shapes is not None:
        keep &= np.array([s in shapes for s in moe_shape_tuples(t)], dtype=bool)
    t = _take(t, keep)
    for dist in MOE_DISTRIBUTIONS:
        rows = t["distribution"] == dist
        if rows.any():
            t = _take(t, rows)
            break
    dtype = _label(t["moe_dtype"], MOE_DTYPES)
    if "kernel_source" in t:
        source = t["kernel_source"].astype(str)
        marlin = np.char.find(source, "marlin") >= 0
        dtype = np.where(marlin & (dtype == "mxfp4"), MXFP4_MARLIN, dtype)
        cutlass = np.char.find(source, "flashinfer_cutlass") >= 0
        dtype = np.where(cutlass & (dtype == "fp8"), FP8_CUTLASS, dtype)
    keys = {"dtype": dtype}
    keys |= {
        "num_tokens": t["num_tokens"].astype(np.float64),
        "hidden_size": t["hidden_size"].astype(np.float64),
        "inter_size": t["inter_size"].astype(np.float64),
        "topk": t["topk"].astype(np.float64),
        "num_experts": t["num_experts"].astype(np.float64),
        "tp": t["moe_tp_size"].astype(np.float64),
        "ep": t["moe_ep_size"].astype(np.float64),
    }
    out, ms = median_by(keys, t["latency"].astype(np.float64))
    out["seconds"] = ms / 1e3
    return out


def decode_beats_hbm(decode: Columns, hbm_bytes_per_s: float) -> float | None:
    """The KV read rate (GB/s) of a decode table that beats HBM on working sets too large for
    L2 (not physical: the table is dropped), or None when the table is plausible."""
    kv_read = decode["gbps"] * 1e9 * decode["seconds"]
    big = kv_read >= DECODE_HBM_CHECK_BYTES
    if big.any() and decode["gbps"][big].max() * 1e9 > hbm_bytes_per_s:
        return float(decode["gbps"][big].max())
    return None


# --- run-time tables of one backend ----------------------------------------------------------


@dataclass(frozen=True)
class BackendTables:
    """One GPU's tables of one serving backend, reduced (columns as catalog/kernels/README.md)."""

    gemm: Columns | None
    attention_prefill: Columns | None
    attention_decode: Columns | None
    allreduce: Columns | None
    moe: Columns | None
    source: str
    """Where they came from: package, system, backend and the version of each table."""


# output name -> (op folder, table, reducer over the full table)
_RUNTIME = {
    "gemm": ("gemm", "gemm_perf", lambda t: reduce_gemm(t, grid=False)),
    "attention_prefill": (
        "attention",
        "context_attention_perf",
        lambda t: reduce_prefill(t, grid=False),
    ),
    "attention_decode": (
        "attention",
        "generation_attention_perf",
        lambda t: reduce_decode(t, grid=False),
    ),
    "allreduce": ("comm", "custom_allreduce_perf", reduce_allreduce),
}
"""(The MoE tables keep every version: :func:`moe_by_version`.)"""


@functools.cache
def load_backend_tables(
    gpu_name: str, backend: str, hbm_bytes_per_s: float | None = None
) -> BackendTables | None:
    """``gpu_name``'s full tables measured with ``backend`` (newest version of each), read from
    the installed ``aiconfigurator-core`` wheel; None when the wheel (or the GPU's system, or
    any GEMM table of the backend) is absent. A decode table that reads KV faster than
    ``hbm_bytes_per_s`` allows is left out (see :data:`DECODE_HBM_CHECK_BYTES`)."""
    root = data_root()
    system = SYSTEMS.get(gpu_name.lower())
    if root is None or system is None or backend not in BACKENDS:
        return None
    parts: dict[str, Columns | None] = {}
    versions = []
    for name, (op, table, reduce) in _RUNTIME.items():
        path = newest_table(root, system, op, backend, table)
        if path is None:
            parts[name] = None
            continue
        cols = reduce(read_parquet(path))
        if name == "attention_decode" and hbm_bytes_per_s:
            if decode_beats_hbm(cols, hbm_bytes_per_s) is not None:
                parts[name] = None
                continue
        parts[name] = cols if len(cols["seconds"]) else None
        versions.append(f"{op}/{backend}/{path.parent.name}")
    moe = moe_by_version(root, system, backend, shapes=None)
    parts["moe"] = moe[0] if moe is not None else None
    if moe is not None:
        versions.append(f"moe/{backend}/" + "+".join(moe[1]))
    if parts["gemm"] is None:
        return None
    source = f"{package_version(root)}: {system} " + ", ".join(dict.fromkeys(versions))
    return BackendTables(source=source, **parts)
