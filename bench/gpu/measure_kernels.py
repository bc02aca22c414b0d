"""Measure kernel tables on an NVIDIA GPU in the format of servesim's ``catalog/kernels/<gpu>/``.

    python bench/gpu/measure_kernels.py --out src/servesim/catalog/kernels/<gpu>
    torchrun --nproc-per-node 8 bench/gpu/measure_kernels.py --out ...   # adds allreduce.csv
    python bench/gpu/measure_kernels.py --out /tmp/k --dry-run           # the plan, no GPU

What is timed (PyTorch; CUDA events after warm-up, the median of repeats):

- ``gemm.csv``: ``C[m,n] = A[m,k] · W[n,k]ᵀ`` with ``torch.mm`` in bf16, and in fp8 (e4m3,
  per-tensor scales) with ``torch._scaled_mm`` where the GPU and torch have it; m = 1, 2, 4,
  …, 16384 and the (n, k) pairs of the shipped tables.
- ``attention_prefill.csv``: causal ``scaled_dot_product_attention`` of ``batch`` fresh prompts
  (batch 1–8, seq_len 16–16384) for the head shapes of the shipped tables; GQA through
  ``enable_gqa`` where torch has a fused kernel for it, else K and V repeated to every query
  head before timing (SOURCE.md says which).
- ``attention_decode.csv``: one query token per sequence against a ``context_len`` KV cache
  (bf16), batch × context grid. The query heads that share a KV head are folded into query
  rows (``q: [batch, kv_heads, group, head_dim]``), so every KV head is read once, as a GQA
  decode kernel does.
- ``allreduce.csv``: only under ``torchrun`` with more than one GPU: NCCL all-reduce of a bf16
  tensor of 256 B … 1 GiB over 2, 4, 8, … of the launched GPUs. NOTE: the shipped tables time
  TensorRT-LLM's custom all-reduce; NCCL is slower on small messages.

Each call is timed alone between two CUDA events, queued behind a short GPU sleep so that the
CPU's launch time does not show in a few-microsecond kernel. Columns and units follow
``src/servesim/catalog/kernels/README.md`` (seconds, 4 significant digits, derived TFLOP/s and
GB/s); ``SOURCE.md`` records the command, the GPU, driver/CUDA/torch versions and the date.

Needs a CUDA GPU and torch; importing this file, or ``--dry-run``, needs neither.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The grids of the shipped tables (catalog/kernels/README.md); a test checks them against it.
GEMM_M = tuple(2**i for i in range(15))  # 1 … 16384
GEMM_N = (1024, 2048, 4096, 6144, 8192, 12288, 16384, 65536)
GEMM_K = (1024, 2048, 4096, 8192, 16384)
HEAD_SHAPES = (  # (head_dim, num_heads, num_kv_heads)
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
PREFILL_BATCHES = (1, 2, 4, 8)
PREFILL_SEQ = tuple(2**i for i in range(4, 15))  # 16 … 16384
DECODE_BATCHES = tuple(2**i for i in range(12))  # 1 … 2048
DECODE_CONTEXTS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
DECODE_MAX_TOKENS = 262144
"""Largest batch · context_len of a decode point (as in the shipped tables: ≥ 1 GB of KV for
the common head shapes, the rows servesim fits decode bandwidth to)."""
ALLREDUCE_BYTES = tuple(2**i for i in range(8, 31))  # 256 B … 1 GiB

QUICK = {
    "gemm_m": (1, 16, 256, 4096),
    "gemm_nk": ((4096, 4096), (16384, 4096)),
    "heads": ((128, 32, 8),),
    "prefill_seq": (128, 1024, 8192),
    "decode_batches": (1, 16, 256),
    "decode_contexts": (1024, 16384),
    "allreduce_bytes": (2**12, 2**20, 2**26),
}

HEADERS = {
    "gemm": ("dtype", "m", "n", "k", "seconds", "tflops"),
    "attention_prefill": (
        "dtype",
        "batch",
        "seq_len",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "seconds",
        "tflops",
    ),
    "attention_decode": (
        "dtype",
        "batch",
        "context_len",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "seconds",
        "gbps",
    ),
    "allreduce": ("num_gpus", "bytes", "seconds", "busbw_gbps"),
}
SWEEPS = tuple(HEADERS)
DTYPE_BYTES = {"bf16": 2, "fp8": 1}


# --- the plan (no torch) ------------------------------------------------------------------------


def gemm_points(quick: bool = False) -> list[tuple[int, int, int]]:
    """(m, n, k) of every GEMM, per dtype."""
    pairs = QUICK["gemm_nk"] if quick else [(n, k) for n in GEMM_N for k in GEMM_K]
    ms = QUICK["gemm_m"] if quick else GEMM_M
    return [(m, n, k) for n, k in pairs for m in ms]


def prefill_points(quick: bool = False) -> list[tuple[int, int, int, int, int]]:
    """(batch, seq_len, num_heads, num_kv_heads, head_dim) of every prefill point."""
    heads = QUICK["heads"] if quick else HEAD_SHAPES
    seqs = QUICK["prefill_seq"] if quick else PREFILL_SEQ
    return [(b, s, h, kv, d) for d, h, kv in heads for b in PREFILL_BATCHES for s in seqs]


def decode_points(quick: bool = False) -> list[tuple[int, int, int, int, int]]:
    """(batch, context_len, num_heads, num_kv_heads, head_dim) of every decode point."""
    heads = QUICK["heads"] if quick else HEAD_SHAPES
    batches = QUICK["decode_batches"] if quick else DECODE_BATCHES
    contexts = QUICK["decode_contexts"] if quick else DECODE_CONTEXTS
    return [
        (b, c, h, kv, d)
        for d, h, kv in heads
        for b in batches
        for c in contexts
        if b * c <= DECODE_MAX_TOKENS
    ]


def allreduce_gpu_counts(world: int) -> list[int]:
    """GPU counts to time in a launch of ``world`` GPUs: 2, 4, 8, … and ``world`` itself."""
    counts = [2**i for i in range(1, world.bit_length()) if 2**i <= world]
    return counts + ([world] if world > 1 and world not in counts else [])


def allreduce_sizes(quick: bool = False) -> tuple[int, ...]:
    return QUICK["allreduce_bytes"] if quick else ALLREDUCE_BYTES


# --- rows in the catalog's format ---------------------------------------------------------------


def gemm_row(dtype: str, m: int, n: int, k: int, seconds: float) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "m": m,
        "n": n,
        "k": k,
        "seconds": seconds,
        "tflops": 2.0 * m * n * k / seconds / 1e12,
    }


def prefill_row(
    dtype: str, batch: int, seq: int, heads: int, kv_heads: int, head_dim: int, seconds: float
) -> dict[str, Any]:
    flops = 4.0 * batch * seq * seq * heads * head_dim / 2.0  # QKᵀ and PV, halved by causality
    return {
        "dtype": dtype,
        "batch": batch,
        "seq_len": seq,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "seconds": seconds,
        "tflops": flops / seconds / 1e12,
    }


def decode_row(
    dtype: str, batch: int, context: int, heads: int, kv_heads: int, head_dim: int, seconds: float
) -> dict[str, Any]:
    kv_bytes = 2.0 * batch * context * kv_heads * head_dim * DTYPE_BYTES[dtype]  # K and V
    return {
        "dtype": dtype,
        "batch": batch,
        "context_len": context,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "seconds": seconds,
        "gbps": kv_bytes / seconds / 1e9,
    }


def allreduce_row(num_gpus: int, nbytes: int, seconds: float) -> dict[str, Any]:
    ring = 2.0 * (num_gpus - 1) / num_gpus
    return {
        "num_gpus": num_gpus,
        "bytes": nbytes,
        "seconds": seconds,
        "busbw_gbps": ring * nbytes / seconds / 1e9,
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_csv(path: Path, table: str, rows: list[dict[str, Any]]) -> None:
    """``rows`` as the catalog's CSV: its header, sorted rows, floats to 4 significant digits."""
    header = HEADERS[table]
    keyed = sorted(rows, key=lambda r: tuple(r[c] for c in header))
    lines = [",".join(header)] + [",".join(_cell(r[c]) for c in header) for r in keyed]
    path.write_text("\n".join(lines) + "\n")


def print_plan(args: argparse.Namespace) -> None:
    """What a run would time, without CUDA."""
    q = args.quick
    out = args.out
    if "gemm" in args.only:
        points = gemm_points(q)
        pairs = sorted({(n, k) for _, n, k in points})
        ms = sorted({m for m, _, _ in points})
        print(
            f"gemm: {len(points)} shapes per dtype (bf16; fp8 via torch._scaled_mm where the "
            f"GPU has it) -> {out / 'gemm.csv'}"
        )
        print(f"  m: {' '.join(map(str, ms))}")
        print(f"  (n, k): {' '.join(f'{n}x{k}' for n, k in pairs)}")
    heads = QUICK["heads"] if q else HEAD_SHAPES
    shapes = " ".join(f"{h}/{kv}x{d}" for d, h, kv in heads)
    if "attention_prefill" in args.only:
        points = prefill_points(q)
        print(
            f"attention_prefill: {len(points)} points, bf16, causal SDPA "
            f"-> {out / 'attention_prefill.csv'}"
        )
        print(f"  batch: {' '.join(map(str, PREFILL_BATCHES))}")
        print(f"  seq_len: {' '.join(map(str, sorted({p[1] for p in points})))}")
        print(f"  heads (query/KV x head_dim): {shapes}")
    if "attention_decode" in args.only:
        points = decode_points(q)
        print(
            f"attention_decode: {len(points)} points, bf16 KV, one query per sequence, "
            f"batch x context_len <= {DECODE_MAX_TOKENS} -> {out / 'attention_decode.csv'}"
        )
        print(f"  batch: {' '.join(map(str, sorted({p[0] for p in points})))}")
        print(f"  context_len: {' '.join(map(str, sorted({p[1] for p in points})))}")
        print(f"  heads (query/KV x head_dim): {shapes}")
    if "allreduce" in args.only:
        sizes = allreduce_sizes(q)
        print(
            f"allreduce: {len(sizes)} sizes ({sizes[0]} B … {sizes[-1]} B) over 2, 4, 8, … GPUs, "
            f"NCCL, only under torchrun with > 1 GPU -> {out / 'allreduce.csv'}"
        )
    print(f"warm-up {args.warmup}, median of {args.repeats} repeats; SOURCE.md -> {out}")


# --- timing (torch is imported here, never at import time) --------------------------------------


SLEEP_CYCLES = 1_000_000
"""GPU cycles (~0.5 ms) of sleep queued before each timed call: the CPU enqueues the events
and the call while the GPU sleeps, so the events bracket GPU time only."""


def time_call(
    fn: Callable[[], Any], warmup: int, repeats: int, flush: Any | None = None, inner: int = 1
) -> float:
    """Median seconds of one ``fn()`` (``inner`` back-to-back calls per timed repeat)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    sleep = getattr(torch.cuda, "_sleep", None)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for start, end in zip(starts, ends, strict=True):
        if flush is not None:
            flush.zero_()  # evict the L2 cache
        if sleep is not None:
            sleep(SLEEP_CYCLES)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
    torch.cuda.synchronize()
    ms = [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]
    return statistics.median(ms) / 1e3 / inner


def fp8_supported() -> bool:
    import torch

    return (
        hasattr(torch, "_scaled_mm")
        and hasattr(torch, "float8_e4m3fn")
        and torch.cuda.get_device_capability() >= (8, 9)
    )


def _skip(what: str, err: BaseException) -> None:
    import torch

    print(f"  skipped {what}: {type(err).__name__}: {str(err).splitlines()[0]}", flush=True)
    torch.cuda.empty_cache()


def measure_gemm(args: argparse.Namespace, flush: Any | None) -> list[dict[str, Any]]:
    import torch

    dtypes = ["bf16"] + (["fp8"] if fp8_supported() else [])
    rows = []
    points = gemm_points(args.quick)
    pairs = sorted({(n, k) for _, n, k in points})
    ms = sorted({m for m, _, _ in points})
    for dtype in dtypes:
        for n, k in pairs:
            # Weights as nn.Linear stores them, [n, k]; the GEMM reads them transposed
            # (column-major [k, n], the layout torch._scaled_mm requires).
            w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k**0.5
            if dtype == "fp8":
                w = w.to(torch.float8_e4m3fn)
                scale = torch.ones((), device="cuda", dtype=torch.float32)
            for m in ms:
                try:
                    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
                    if dtype == "fp8":
                        a = a.to(torch.float8_e4m3fn)

                        def fn(a=a, w=w, scale=scale):
                            return torch._scaled_mm(
                                a, w.t(), scale_a=scale, scale_b=scale, out_dtype=torch.bfloat16
                            )
                    else:

                        def fn(a=a, w=w):
                            return torch.mm(a, w.t())

                    seconds = time_call(fn, args.warmup, args.repeats, flush)
                except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
                    _skip(f"{dtype} gemm m={m} n={n} k={k}", err)
                    continue
                rows.append(gemm_row(dtype, m, n, k, seconds))
                del a
            print(f"gemm {dtype} n={n} k={k}: {len(ms)} m", flush=True)
            del w
            torch.cuda.empty_cache()
    return rows


def _sdpa_backends() -> contextlib.AbstractContextManager:
    """Fused SDPA kernels only: the math fallback materialises seq_len² scores (out of memory
    at long prompts) and is no kernel a serving engine runs."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    names = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")
    return sdpa_kernel([getattr(SDPBackend, n) for n in names if hasattr(SDPBackend, n)])


def gqa_mode() -> str:
    """``enable_gqa`` when SDPA runs it on a fused kernel here, else ``repeat``."""
    import torch
    import torch.nn.functional as F

    q = torch.randn(1, 8, 64, 128, device="cuda", dtype=torch.bfloat16)
    kv = torch.randn(1, 2, 64, 128, device="cuda", dtype=torch.bfloat16)
    try:
        with _sdpa_backends():
            F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
    except (TypeError, RuntimeError):
        return "repeat"
    return "enable_gqa"


def measure_prefill(args: argparse.Namespace, flush: Any | None, gqa: str) -> list[dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    rows = []
    for b, s, h, kv, d in prefill_points(args.quick):
        try:
            q = torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(b, kv, s, d, device="cuda", dtype=torch.bfloat16)
            v = torch.randn(b, kv, s, d, device="cuda", dtype=torch.bfloat16)
            extra = {}
            if kv != h:
                if gqa == "enable_gqa":
                    extra = {"enable_gqa": True}
                else:  # before timing: the kernel then reads h heads of K and V
                    k, v = (t.repeat_interleave(h // kv, dim=1) for t in (k, v))

            def fn(q=q, k=k, v=v, extra=extra):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, **extra)

            with _sdpa_backends():
                seconds = time_call(fn, args.warmup, args.repeats, flush)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            _skip(f"prefill b={b} s={s} heads={h}/{kv}x{d}", err)
            continue
        rows.append(prefill_row("bf16", b, s, h, kv, d, seconds))
        del q, k, v
    print(f"prefill: {len(rows)} points", flush=True)
    torch.cuda.empty_cache()
    return rows


def measure_decode(args: argparse.Namespace, flush: Any | None) -> list[dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    rows = []
    for b, c, h, kv, d in decode_points(args.quick):
        try:
            # The h // kv query heads of a KV head become that head's query rows: each KV
            # head is read once, as a GQA decode kernel reads it (no mask: one query each).
            q = torch.randn(b, kv, h // kv, d, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(b, kv, c, d, device="cuda", dtype=torch.bfloat16)
            v = torch.randn(b, kv, c, d, device="cuda", dtype=torch.bfloat16)

            def fn(q=q, k=k, v=v):
                return F.scaled_dot_product_attention(q, k, v)

            with _sdpa_backends():
                seconds = time_call(fn, args.warmup, args.repeats, flush)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            _skip(f"decode b={b} ctx={c} heads={h}/{kv}x{d}", err)
            continue
        rows.append(decode_row("bf16", b, c, h, kv, d, seconds))
        del q, k, v
    print(f"decode: {len(rows)} points", flush=True)
    torch.cuda.empty_cache()
    return rows


def measure_allreduce(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """NCCL all-reduce rows on rank 0 (None on other ranks, and without torchrun)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
        print("allreduce: skipped (run under torchrun with more than one GPU)", flush=True)
        return None
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl", timeout=datetime.timedelta(minutes=30))
    rank = dist.get_rank()
    counts = allreduce_gpu_counts(world)
    groups = {g: dist.new_group(list(range(g))) for g in counts}  # every rank creates each
    rows = []
    for g in counts:
        if rank < g:
            for nbytes in allreduce_sizes(args.quick):
                x = torch.ones(nbytes // 2, device="cuda", dtype=torch.bfloat16)
                dist.barrier(group=groups[g])
                # Several back-to-back calls per repeat: ranks leave the barrier a few
                # microseconds apart, which one small all-reduce would absorb.
                inner = max(1, min(20, 2**24 // nbytes))

                def fn(x=x, group=groups[g]):
                    dist.all_reduce(x, group=group)

                seconds = time_call(fn, args.warmup, args.repeats, inner=inner)
                slowest = torch.tensor([seconds], device="cuda", dtype=torch.float64)
                dist.all_reduce(slowest, op=dist.ReduceOp.MAX, group=groups[g])
                if rank == 0:
                    rows.append(allreduce_row(g, nbytes, float(slowest.item())))
                del x
            if rank == 0:
                print(f"allreduce over {g} GPUs", flush=True)
        dist.barrier()
    dist.destroy_process_group()
    return rows if rank == 0 else None


# --- provenance ---------------------------------------------------------------------------------


def driver_version() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else "unknown"


def source_md(args: argparse.Namespace, info: dict[str, str], counts: dict[str, int]) -> str:
    """SOURCE.md: how, where and when the tables of this folder were measured."""
    lines = [
        "# Kernel tables measured by bench/gpu/measure_kernels.py",
        "",
        f"- command: `{info['command']}`",
        f"- GPU: {info['gpu']} (compute capability {info['capability']}, {info['sms']} SMs)",
        f"- driver {info['driver']}, CUDA {info['cuda']} (torch build), torch {info['torch']}, "
        f"Python {platform.python_version()}",
        f"- date: {info['date']}",
        f"- timing: CUDA events around each call after {args.warmup} warm-up calls, median of "
        f"{args.repeats} repeats, each queued behind a GPU sleep (no CPU launch gaps); "
        f"L2 flushed before each call: {'yes' if args.flush_l2 else 'no'}",
        "- gemm: torch.mm (bf16); torch._scaled_mm (fp8 e4m3, per-tensor scales, bf16 out)",
        f"- attention: torch.nn.functional.scaled_dot_product_attention (fused backends); "
        f"prefill GQA via {info['gqa']}; decode: query heads of a KV head folded into query rows",
        "- allreduce: NCCL (torch.distributed), not a custom all-reduce kernel",
        "",
        "| file | rows |",
        "|---|---|",
    ]
    lines += [f"| {name}.csv | {n} |" for name, n in counts.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSV tables")
    parser.add_argument(
        "--only",
        default=",".join(SWEEPS),
        help=f"comma-separated subset of {','.join(SWEEPS)}",
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="a small grid (smoke test)")
    parser.add_argument(
        "--flush-l2",
        action="store_true",
        help="evict the L2 cache before each call (the shipped tables do not)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; needs no GPU")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SWEEPS))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(SWEEPS)})")
    if args.dry_run:
        print_plan(args)
        return 0

    try:
        import torch
    except ImportError as err:
        sys.exit(f"measure_kernels needs torch: {err}")
    if not torch.cuda.is_available():
        sys.exit("measure_kernels needs a CUDA GPU")

    results: dict[str, list[dict[str, Any]]] = {}
    # All-reduce first, on every rank; then rank 0 alone times the single-GPU kernels (the
    # other ranks leave rather than wait on a collective for the whole sweep).
    if "allreduce" in args.only:
        rows = measure_allreduce(args)
        if rows is not None:
            results["allreduce"] = rows
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    flush = None
    if args.flush_l2:
        flush = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    torch.manual_seed(0)
    gqa = gqa_mode()
    with torch.inference_mode():
        if "gemm" in args.only:
            results["gemm"] = measure_gemm(args, flush)
        if "attention_prefill" in args.only:
            results["attention_prefill"] = measure_prefill(args, flush, gqa)
        if "attention_decode" in args.only:
            results["attention_decode"] = measure_decode(args, flush)

    counts = {}
    for name in SWEEPS:
        if results.get(name):
            write_csv(args.out / f"{name}.csv", name, results[name])
            counts[name] = len(results[name])
    major, minor = torch.cuda.get_device_capability()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --nproc-per-node {world} " if world > 1 else "python "
    info = {
        "command": launcher + " ".join(shlex.quote(a) for a in sys.argv),
        "gpu": torch.cuda.get_device_name(),
        "capability": f"{major}.{minor}",
        "sms": str(torch.cuda.get_device_properties(0).multi_processor_count),
        "driver": driver_version(),
        "cuda": str(torch.version.cuda),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "gqa": gqa,
    }
    (args.out / "SOURCE.md").write_text(source_md(args, info, counts))
    for name, n in counts.items():
        print(f"wrote {n} rows to {args.out / (name + '.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
