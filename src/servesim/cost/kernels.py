"""Measured kernel tables: the top rungs of the fidelity ladder.

``catalog/kernels/<gpu>/`` holds kernel times measured on real GPUs (distilled from NVIDIA
AIConfigurator's tables by ``bench/gpu/distil_kernels.py``; ``catalog/kernels/README.md`` says
what each file holds and where it comes from). Two rungs stand on them:

- **measured** — an operator whose time is a function of one step quantity is priced from its
  table directly: a dense GEMM of weight ``n × k`` by its rows ``m`` (``gemm.csv``), the TP
  all-reduce by its message size (``allreduce.csv``). Between measured points the *achieved
  throughput* (FLOP/s, bus bandwidth) is interpolated log-log in ``m`` (bytes), so the
  analytic work carries the shape; outside the measured range the throughput is clamped at its
  last measured value (time then grows linearly with the work) and the step is flagged.
  A weight shape between measured ones is interpolated in ``(log n, log k)`` between the four
  measured shapes around it (log throughput; clamped to the grid's edges), or takes the nearest
  measured ``(n, k)`` where the table is not a grid around it.
- **fitted** — attention depends on every row's lengths, not on one number, so its table is
  reduced to a curve the linear cost model can carry (:mod:`servesim.cost.attention_fit`);
  MoE layers on a GPU without rows of their own borrow another GPU's measured utilisation
  (``build._borrowed_moe_curve``).

Everything is loaded once per GPU (``functools.cache``) and reduced to small arrays when a cost
model is built; the hot path only interpolates on a fixed grid.

(Reading AIConfigurator's parquet files lives apart, in :mod:`servesim.cost.aic_tables`; the
attention fits in :mod:`servesim.cost.attention_fit`.)
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from servesim.cost.libm import c_math

KERNELS_DIR = Path(__file__).resolve().parent.parent / "catalog" / "kernels"

GRID_PER_OCTAVE = 8
GRID_OCTAVES = 21
M_GRID = np.array([2.0 ** (i / GRID_PER_OCTAVE) for i in range(GRID_OCTAVES * GRID_PER_OCTAVE + 1)])
"""Step quantities (rows, message elements) the measured curves are tabulated at: 1 … 2^21,
eight points per octave."""
LOG_M_GRID = c_math(math.log, M_GRID)
# (Both from the C library, as every logarithm and power the tables are built with: numpy's
# AVX-512 code rounds some an ulp apart, which would make a step's last bits depend on the CPU.)
_GRID_INDEX = np.arange(len(M_GRID), dtype=np.float64)


TEXT_COLUMNS = frozenset({"dtype", "version", "mode"})
"""Columns read as text even where every value looks like a number (a version ``1.0``)."""


def _read(path: Path) -> dict[str, np.ndarray]:
    """A CSV file as columns: numbers as float64, text as str arrays."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        values = [r[j] for r in body]
        if name in TEXT_COLUMNS:
            cols[name] = np.array(values)
            continue
        try:
            cols[name] = np.array(values, dtype=np.float64)
        except ValueError:
            cols[name] = np.array(values)
    return cols


class LazyTables(Mapping[str, dict[str, np.ndarray]]):
    """Tables by name, each read from its CSV the first time it is asked for (the MoE tables
    are most of a GPU's rows, and a dense model never reads them)."""

    def __init__(self, paths: dict[str, Path]):
        self._paths = paths
        self._read: dict[str, dict[str, np.ndarray]] = {}

    def __getitem__(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._read:
            self._read[name] = _read(self._paths[name])
        return self._read[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


@dataclass(frozen=True)
class KernelTables:
    """The measured tables of one GPU (columns as in catalog/kernels/README.md)."""

    gpu: str
    gemm: dict[str, np.ndarray] | None
    attention_prefill: dict[str, np.ndarray] | None
    attention_decode: dict[str, np.ndarray] | None
    allreduce: dict[str, np.ndarray] | None
    moe: Mapping[str, dict[str, np.ndarray]] | None = None
    """MoE layer tables by serving backend (``vllm``, ``sglang``, ``trtllm``); empty (falsy)
    when the GPU has none."""
    source: str = ""
    """Where the tables come from (the catalog folder, or the extra's package and versions)."""
    engine_allreduce: Mapping[str, dict[str, np.ndarray]] | None = None
    """Engines' own custom all-reduce tables by serving backend (``vllm``, ``sglang``), timed
    in a CUDA graph and eagerly (``mode``), every collection (``version``); ``allreduce`` is
    TensorRT-LLM's, the fallback."""
    engine_decode: Mapping[str, dict[str, np.ndarray]] | None = None
    """Engines' own decode-attention tables by serving backend (``vllm``, ``sglang``; columns as
    ``attention_decode``, which is TensorRT-LLM's): the decode fractions of an engine profile
    that has one are fitted to it (``attention_fit.fit_tables``)."""
    engine_gemm: Mapping[str, dict[str, np.ndarray]] | None = None
    """Engines' own GEMM rows by serving backend (``vllm``, ``sglang``; columns as ``gemm``,
    which is TensorRT-LLM's), of :data:`ENGINE_GEMM_DTYPES` only: an engine profile's GEMMs of
    those dtypes read them (:func:`gemm_seconds`)."""


MOE_BACKENDS = ("vllm", "sglang", "trtllm")
ENGINE_ALLREDUCE_BACKENDS = ("vllm", "sglang")
"""Engines whose own custom all-reduce has tables (``allreduce_<engine>.csv``)."""
ENGINE_DECODE_BACKENDS = ("vllm", "sglang")
"""Engines whose own decode attention has tables (``attention_decode_<engine>.csv``)."""
ENGINE_GEMM_BACKENDS = ("vllm", "sglang")
"""Engines whose own GEMM kernels have tables (``gemm_<engine>.csv``)."""
ENGINE_GEMM_DTYPES = ("fp8", "fp8_block")
"""The GEMM dtypes of an engine's own rows (``gemm_<engine>.csv``; which price a step:
:func:`engine_gemm_applies`). Per-tensor FP8: vLLM and SGLang run CUTLASS ``scaled_mm``
kernels (``CutlassFP8ScaledMMLinearKernel``, ``sgl_kernel.fp8_scaled_mm``), 26-35% faster
than TensorRT-LLM 1.3's per-tensor FP8 GEMMs (the
catalog's ``gemm.csv``) at 1-64 rows on the H100, H200 and B200 (median over the grid) and
14-18% faster at 128-1,024, where TensorRT-LLM's take as long as its bf16 GEMMs (H200 0.97-1.07x)
and the engines' 0.76-0.83x; level from 2,048 rows. Their bf16 GEMMs are TensorRT-LLM's
(``torch`` linear, within a few per cent) and vLLM 0.24's block-FP8 rows time a kernel no
release runs by default (``aic_tables.GEMM_LEFT_OUT``): the catalog's rows stand for those.
Block FP8: SGLang's rows time DeepGEMM (``sglang_deepgemm_gemm_nt_f8f8bf16``), 0.83-0.92x
TensorRT-LLM's from 128 rows on the H100 and H200 (median over the grid), level at 1-64 rows
and on the Blackwell GPUs (0.94-1.03x)."""
SGLANG_DEEPGEMM_FROM = "0.4.6"
"""The first SGLang release that runs block-FP8 dense GEMMs on DeepGEMM by default on Hopper
(sgl-project/sglang#5628, "Turn on DeepGemm By Default", merged 2025-04-22; 0.4.6 followed).
Before it, SGLang's own block-FP8 kernels (its Triton and CUTLASS ones): the catalog's rows."""


def engine_gemm_applies(
    dtype: str, backend: str | None, release: str | None, architecture: str | None
) -> bool:
    """Whether an engine's own ``dtype`` GEMM rows (``KernelTables.engine_gemm``) price its
    GEMMs: per-tensor FP8 always (CUTLASS ``scaled_mm`` in every vLLM and SGLang release the
    tables could stand for); block FP8 for SGLang from :data:`SGLANG_DEEPGEMM_FROM` on Hopper
    (``release`` None: the newest), where its DeepGEMM rows differ from TensorRT-LLM's. On
    Blackwell the two agree (median 0.94-1.03x) and a launch may turn DeepGEMM off
    (InferenceX's B200 DeepSeek-R1 runs set ``SGL_ENABLE_JIT_DEEPGEMM=false``), which no
    scenario field says: the catalog's rows stand there."""
    from servesim.versions import release_before

    if dtype == "fp8":
        return True
    if dtype == "fp8_block" and backend == "sglang" and architecture == "hopper":
        return release is None or not release_before(release, SGLANG_DEEPGEMM_FROM)
    return False


EP_ROWS_PER_RANK = frozenset({"vllm", "sglang"})
"""Engines whose expert-parallel MoE rows count tokens per EP rank (AIConfigurator's collectors
for them time the rank of an attention-DP deployment, whose own tokens are one rank's share of
those the experts see): ``num_tokens`` T at EP e is a layer of e·T tokens. The FLOP rates say so:
vLLM 0.24's block-FP8 DeepSeek layer at EP 8 and 4,096 tokens on an H200 takes 3.0 ms, ~960
TFLOP/s for e·T tokens where T alone would be 120 (6% of peak at a large batch); SGLang 0.5.14's
NVFP4 rows on a B200 at EP 2 equal its EP 1 rows at every T up to 256 (the same token-expert
pairs per rank). TensorRT-LLM's rows count the layer's tokens: its EP 8 row at 4,096 tokens,
0.73 ms, would otherwise be ~4,000 TFLOP/s per rank, twice the H200's peak. A layer of T tokens
reads a per-rank table at T / e."""
TABLE_SOURCE_ENV = "SERVESIM_KERNEL_TABLES"
"""Set to ``catalog`` to price from the shipped CSVs even when the ``servesim[kernels]`` extra
is installed (reproducing a default install's figures)."""


MLA_BLOCK_FILE = KERNELS_DIR / "mla_block.json"
"""Per engine backend and GPU: DeepSeek-V3's MLA block measured whole (AIConfigurator's
``mla_{context,generation}_module_perf`` tables) against the sum of its operators as servesim
prices them; written by ``python bench/mla_accuracy.py --write``."""


@functools.cache
def _mla_blocks() -> dict:
    # NOTE: the file ships with the package; without it every MLA model would silently price
    # its block at the kernel sum, so a broken install fails here instead.
    if not MLA_BLOCK_FILE.is_file():
        raise FileNotFoundError(
            f"{MLA_BLOCK_FILE} is missing from this servesim install (reinstall servesim, or "
            "write it with `python bench/mla_accuracy.py --write`)"
        )
    return json.loads(MLA_BLOCK_FILE.read_text())


TRITON_PREFILL_FILE = KERNELS_DIR / "triton_prefill.json"
"""vLLM's Triton prefill attention against FlashAttention-2 on the same shapes
(AIConfigurator's vLLM context-attention tables that time both); written by ``python
bench/gpu/distil_triton_prefill.py --write``."""


@functools.cache
def triton_prefill_factors() -> tuple[float, float]:
    """(slowdown ``A``, half-length scale ``ρ``) of vLLM's Triton prefill attention over a
    FlashAttention-class curve: its plateau efficiency is ``1/A`` of the curve's and its
    half-length ``ρ`` times the curve's (``attention_fit.triton_prefill``)."""
    if not TRITON_PREFILL_FILE.is_file():
        raise FileNotFoundError(
            f"{TRITON_PREFILL_FILE} is missing from this servesim install (reinstall servesim, "
            "or write it with `python bench/gpu/distil_triton_prefill.py --write`)"
        )
    stored = json.loads(TRITON_PREFILL_FILE.read_text())
    return float(stored["slowdown"]), float(stored["half_scale"])


def mla_block_scale(gpu_name: str, backend: str) -> float:
    """How much longer ``backend``'s MLA attention block runs on ``gpu_name`` than the sum of
    its kernels as the tables price them: the geometric mean, over its prompt and decode
    phases, of measured ÷ summed (the median over the measured grid of each); 1 where no
    module table of that engine and GPU exists. One factor serves both phases because the
    block's projections run on a step's prompt and decode tokens together. Measured on
    DeepSeek-V3's block (the only MLA model the tables time); other MLA models (Kimi K2,
    DeepSeek-V2) take the same factor."""
    entry = _mla_blocks().get("backends", {}).get(backend, {}).get(gpu_name.lower())
    return float(entry["scale"]) if entry else 1.0


def table_folder(gpu_name: str) -> Path:
    return KERNELS_DIR / gpu_name.lower()


def catalog_source(gpu_name: str) -> str:
    """The ``KernelTables.source`` of ``gpu_name``'s shipped tables."""
    return f"catalog/kernels/{table_folder(gpu_name).name}"


def read_tables(folder: Path, gpu_name: str) -> KernelTables | None:
    """The CSV tables in ``folder`` (catalog layout), or None when it has none."""
    if not folder.is_dir():
        return None

    def part(name: str) -> dict[str, np.ndarray] | None:
        path = folder / f"{name}.csv"
        return _read(path) if path.is_file() else None

    paths = {b: folder / f"moe_{b}.csv" for b in MOE_BACKENDS}
    moe = LazyTables({b: path for b, path in paths.items() if path.is_file()})
    paths = {b: folder / f"allreduce_{b}.csv" for b in ENGINE_ALLREDUCE_BACKENDS}
    engine_allreduce = LazyTables({b: path for b, path in paths.items() if path.is_file()})
    paths = {b: folder / f"attention_decode_{b}.csv" for b in ENGINE_DECODE_BACKENDS}
    engine_decode = LazyTables({b: path for b, path in paths.items() if path.is_file()})
    paths = {b: folder / f"gemm_{b}.csv" for b in ENGINE_GEMM_BACKENDS}
    engine_gemm = LazyTables({b: path for b, path in paths.items() if path.is_file()})
    return KernelTables(
        gpu_name,
        part("gemm"),
        part("attention_prefill"),
        part("attention_decode"),
        part("allreduce"),
        moe or None,
        source=f"catalog/kernels/{folder.name}",
        engine_allreduce=engine_allreduce or None,
        engine_decode=engine_decode or None,
        engine_gemm=engine_gemm or None,
    )


@functools.cache
def load_tables(gpu_name: str, backend: str | None = None) -> KernelTables | None:
    """The measured tables of ``gpu_name`` (a hardware catalog name), or None.

    With ``backend`` (``trtllm``, ``vllm``, ``sglang``: the engine profile's) and the
    ``servesim[kernels]`` extra installed, the backend's full AIConfigurator tables are read
    (every measured shape); a table the backend lacks falls back to the catalog's. Otherwise,
    the catalog's CSVs (TensorRT-LLM kernels on a small grid; vLLM and SGLang fused MoE).
    """
    if backend is None:
        return read_tables(table_folder(gpu_name), gpu_name)
    catalog = load_tables(gpu_name)
    if os.environ.get(TABLE_SOURCE_ENV, "").lower() == "catalog":
        return catalog
    from servesim.cost import aic_tables

    hbm = _hbm_bandwidth(gpu_name)
    full = aic_tables.load_backend_tables(gpu_name, backend, hbm)
    if full is None:
        return catalog

    def pick(name: str):
        got = getattr(full, name)
        return got if got is not None or catalog is None else getattr(catalog, name)

    moe = dict(catalog.moe or {}) if catalog is not None else {}
    if full.moe is not None:
        moe[backend] = full.moe
    return KernelTables(
        gpu_name,
        pick("gemm"),
        pick("attention_prefill"),
        pick("attention_decode"),
        pick("allreduce"),
        moe or None,
        source=full.source,
        # (The catalog keeps every row of the engines' all-reduce tables: nothing to add.)
        engine_allreduce=catalog.engine_allreduce if catalog is not None else None,
        # (The backend's own decode table is ``attention_decode`` here, unless it had none.)
        engine_decode=(
            catalog.engine_decode if catalog is not None and full.attention_decode is None else None
        ),
    )


def _hbm_bandwidth(gpu_name: str) -> float | None:
    from servesim.hardware import load_hardware

    try:
        return load_hardware(gpu_name).hbm_bandwidth
    except ValueError:
        return None


SAME_ARCHITECTURE = {
    "h800": "H100",  # the H100 SXM die and HBM3; only NVLink is cut (all-reduce not transferred)
    "h100-pcie": "H100",  # GH100, fewer SMs, lower clocks, HBM2e
    "h20": "H100",  # GH100 with most tensor cores disabled, 4.0 TB/s HBM3
    "a100-40gb": "A100-80GB",  # GA100, HBM2
    "a10g": "A100-80GB",  # Ampere (GA102)
    "l4": "L40S",  # Ada (AD104)
    "l40": "L40S",  # Ada (AD102), lower clocks
}
"""GPUs without tables of their own → the GPU whose tables they borrow, as *utilisation* (the
measured time ÷ that GPU's roofline, applied to this GPU's roofline): same architecture, same
kernels, different peaks. GEMMs and attention curves transfer; all-reduce and MoE tables do not."""


def transfer_source(gpu_name: str) -> str | None:
    """The GPU whose tables the catalog GPU ``gpu_name`` borrows (None: its own, or none)."""
    if load_tables(gpu_name) is not None:
        return None
    return SAME_ARCHITECTURE.get(gpu_name.lower())


def transfer_source_for(hw) -> str | None:
    """The GPU whose tables ``hw`` (a ``Hardware``) borrows: its :data:`SAME_ARCHITECTURE`
    entry, else, for a GPU of a named ``architecture`` without tables of its own (a hardware
    file of one's own), the GPU with tables of that architecture whose bf16 ridge (peak over
    HBM bandwidth) is nearest its own. Held out between GPUs of one architecture, borrowed GEMM
    utilisation is 3-5% off the measured GEMMs (H100 <-> H200, the Blackwell datacentre GPUs),
    the roofline 5-11%; across architectures it is worse than the roofline (A100 -> L40S 27%
    against 14%), so a GPU of another architecture keeps its own rungs. None: none to borrow."""
    named = transfer_source(hw.name)
    if named is not None or hw.architecture is None or load_tables(hw.name) is not None:
        return named
    from servesim.hardware import load_hardware

    def ridge(gpu) -> float:
        return (gpu.peak_flops.get("bf16") or gpu.peak_flops.get("fp16") or 0.0) / (
            gpu.hbm_bandwidth
        )

    mine = ridge(hw)
    same = [load_hardware(n) for n in gpus_with_tables()]
    same = [g for g in same if g.architecture == hw.architecture and ridge(g) > 0]
    if mine <= 0 or not same:
        return None
    return min(same, key=lambda g: (abs(math.log(ridge(g) / mine)), g.name)).name


def gpus_with_tables() -> list[str]:
    """Names (lower case) of the GPUs that ship measured tables."""
    if not KERNELS_DIR.is_dir():
        return []
    return sorted(p.name for p in KERNELS_DIR.iterdir() if (p / "gemm.csv").is_file())


# --- measured curves -------------------------------------------------------------------------


SPIKE_FACTOR = 1.5
"""A measured row this many times slower than both its neighbours (in rows, or bytes) is a
spike: noise, not the kernel (:func:`monotone_seconds`). A genuine step to a slower kernel
stays at the larger sizes too, so it is above its right neighbour by less than this."""


def monotone_seconds(x: np.ndarray, seconds: np.ndarray, warm_up: bool = False) -> np.ndarray:
    """Measured times made non-decreasing in ``x`` (more rows or bytes never run faster on one
    kernel), robust to a single spike.

    A row above both neighbours (in ``x`` order) by more than :data:`SPIKE_FACTOR` takes the
    larger of the two (and, with ``warm_up``, the first row above the second by as much takes
    the second's: a collective benchmark's first size pays its warm-up; not a GEMM's, whose
    one-row GEMV kernel can be slower than two rows); then the running maximum lifts every
    dip. (The running maximum alone let
    one spike set every larger size: SGLang 0.5.14's 1 KiB all-reduce on eight H100s reads
    38 µs between rows of 3-5 µs, and priced every message up to 4 MiB at 38 µs, TP8 decode
    50% slower than TP4's; vLLM 0.14's eager one's first row, 41 µs before rows of 21, every
    message up to 4 MiB.) A step down to a faster algorithm at larger sizes (eager all-reduces
    on some GPUs) is still lifted to the smaller sizes' time."""
    order = np.argsort(x, kind="stable")
    t = np.asarray(seconds, dtype=np.float64)[order]
    if len(t) >= 3:
        sides = np.maximum(t[:-2], t[2:])
        middle = t[1:-1]
        first = t[1] if warm_up and t[0] > SPIKE_FACTOR * t[1] else t[0]
        t = np.concatenate(
            ([first], np.where(middle > SPIKE_FACTOR * sides, sides, middle), t[-1:])
        )
    envelope = np.empty(len(t))
    envelope[order] = np.maximum.accumulate(t)
    return envelope


def _monotone_throughput(
    x: np.ndarray, work: np.ndarray, seconds: np.ndarray, warm_up: bool = False
) -> np.ndarray:
    """Throughputs (work / time) of measured points on :func:`monotone_seconds`."""
    return work / monotone_seconds(x, seconds, warm_up)


def _throughput_curve(x_measured, y_measured, x_grid) -> tuple[np.ndarray, float, float]:
    """Achieved throughput at ``x_grid``: log-log linear between measured points (a power law
    in x, so time stays monotone wherever the measured times are), clamped outside; returns
    (values, smallest x, largest x measured)."""
    order = np.argsort(x_measured)
    xs, ys = c_math(math.log, x_measured[order]), c_math(math.log, y_measured[order])
    values = c_math(math.exp, np.interp(c_math(math.log, x_grid), xs, ys))
    return values, float(x_measured.min()), float(x_measured.max())


def table_dtypes(weight_dtype: str, block_scaled: bool = False) -> tuple[str, ...]:
    """The GEMM table rows a weight dtype runs on, best match first (empty: no table, e.g.
    weight-only int4): bf16; FP8 per-tensor, or block-scaled (``block_scaled``: DeepGEMM-style
    128×128 weight blocks) falling back to per-tensor where a table has no block-scaled rows;
    NVFP4 for FP4 weights (W4A4 on Blackwell's FP4 tensor cores; a GPU without FP4 rows, which
    has no FP4 path either, finds none and stays on the roofline); INT8 W8A8 on the FP8 rows
    (:data:`INT8_STAND_IN`)."""
    if weight_dtype in ("bf16", "fp16"):
        return ("bf16",)
    if weight_dtype == "fp8":
        return ("fp8_block", "fp8") if block_scaled else ("fp8",)
    if weight_dtype in ("fp4", "nvfp4"):
        return ("fp4",)
    if weight_dtype == "int8":
        return INT8_STAND_IN
    return ()


INT8_STAND_IN = ("fp8",)
"""The table rows INT8 W8A8 GEMMs stand on (scaled by the GPU's INT8 / FP8 peak ratio, 1 on
Hopper, Ada and Blackwell; a GPU without FP8 rows, the A100, stays on the roofline): the
tables time no INT8 GEMM, and vLLM runs both through the same ``cutlass_scaled_mm`` CUTLASS
kernels (per-token and per-channel scales in the epilogue). On the roofline INT8 came out
faster than measured FP8 for the same bytes and peak (Llama-3.1-8B decode on an H100: 4.6
against 5.7 ms a token)."""


def gemm_seconds(
    tables: KernelTables,
    dtype: str,
    n: float,
    k: float,
    m: np.ndarray,
    backend: str | None = None,
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Seconds of one ``m × k`` by ``k × n`` GEMM for each ``m``, or None when the table has no
    such dtype. ``backend`` (an engine profile's kernel backend, where
    :func:`engine_gemm_applies`; None: the catalog's rows): its own rows of ``dtype`` where
    ``tables.engine_gemm`` has them (:data:`ENGINE_GEMM_DTYPES`), else ``tables.gemm``.

    Each measured weight shape gives a TFLOP/s curve in ``m`` (log-log between measured rows);
    the curves of the four measured shapes around ``(n, k)`` are interpolated bilinearly in
    ``(log n, log k)`` on log TFLOP/s (:func:`_grid_weights`): exact on a measured shape, and an
    ``(n, k)`` outside the measured grid takes its edge (clamped). Where the table is not a grid
    around ``(n, k)`` (the engines' own tables hold the shapes their collectors chose), the
    nearest measured shape's curve (log distance) prices it.

    Returns (seconds, (smallest, largest) measured m)."""
    g = tables.gemm
    own = (tables.engine_gemm or {}).get(backend) if dtype in ENGINE_GEMM_DTYPES else None
    if own is not None and (own["dtype"] == dtype).any():
        g = own
    if g is None:
        return None
    rows = g["dtype"] == dtype
    if not rows.any():
        return None
    ns, ks = g["n"][rows], g["k"][rows]
    ms_all, secs_all = g["m"][rows], g["seconds"][rows]

    def curve(shape_n: float, shape_k: float) -> tuple[np.ndarray, float, float]:
        pick = (ns == shape_n) & (ks == shape_k)
        ms, secs = ms_all[pick], secs_all[pick]
        measured = _monotone_throughput(ms, 2e-12 * ms * shape_n * shape_k, secs)
        return _throughput_curve(ms, measured, m)

    corners = gemm_source_shapes(ns, ks, n, k)
    if len(corners) == 1:
        tflops, lo, hi = curve(corners[0][0], corners[0][1])
    else:
        log_tflops = np.zeros(len(m))
        lo, hi = 0.0, math.inf
        for shape_n, shape_k, weight in corners:
            values, c_lo, c_hi = curve(shape_n, shape_k)
            log_tflops += weight * c_math(math.log, values)
            lo, hi = max(lo, c_lo), min(hi, c_hi)
        tflops = c_math(math.exp, log_tflops)
    return 2.0 * m * n * k / (tflops * 1e12), (lo, hi)


def gemm_source_shapes(
    ns: np.ndarray, ks: np.ndarray, n: float, k: float
) -> list[tuple[float, float, float]]:
    """``[(n, k, weight)]``: the measured weight shapes (of the table's ``ns``, ``ks``) that
    price a GEMM of weight ``n × k``, with their weights in log TFLOP/s (summing to 1): the
    grid shapes around it (:func:`_grid_weights`), else the nearest one (log distance)."""
    corners = _grid_weights(ns, ks, n, k)
    if corners is not None:
        return corners
    dist = (c_math(math.log, ns) - math.log(n)) ** 2 + (c_math(math.log, ks) - math.log(k)) ** 2
    best = int(np.argmin(dist))
    return [(float(ns[best]), float(ks[best]), 1.0)]


def _grid_weights(
    ns: np.ndarray, ks: np.ndarray, n: float, k: float
) -> list[tuple[float, float, float]] | None:
    """The measured shapes around ``(n, k)`` and their bilinear weights in ``(log n, log k)``
    (shapes of weight 0 left out; one shape of weight 1 on a grid point), with ``n`` and ``k``
    clamped to the measured range; None when a needed corner was not measured."""
    # (sorted sets, not np.unique: its first call imports numpy.ma, 7-10 ms of a small run)
    grid_n, grid_k = np.array(sorted(set(ns.tolist()))), np.array(sorted(set(ks.tolist())))
    measured = set(zip(ns.tolist(), ks.tolist(), strict=True))
    out = []
    for shape_n, w_n in _bracket(grid_n, n):
        for shape_k, w_k in _bracket(grid_k, k):
            if (shape_n, shape_k) not in measured:
                return None
            out.append((shape_n, shape_k, w_n * w_k))
    return out


def _bracket(grid: np.ndarray, x: float) -> list[tuple[float, float]]:
    """``[(grid value, weight)]``: the one or two grid values around ``x`` (clamped to the
    grid) with linear weights in log x; one value of weight 1 on a grid point or past an end."""
    if x <= grid[0]:
        return [(float(grid[0]), 1.0)]
    if x >= grid[-1]:
        return [(float(grid[-1]), 1.0)]
    i = int(np.searchsorted(grid, x, side="right")) - 1
    lo, hi = float(grid[i]), float(grid[i + 1])
    if x == lo:
        return [(lo, 1.0)]
    w = (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return [(lo, 1.0 - w), (hi, w)]


def allreduce_seconds(
    tables: KernelTables,
    num_gpus: int,
    nbytes: np.ndarray,
    backend: str | None = None,
    eager: bool = False,
    release: str | None = None,
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Seconds of one all-reduce of ``nbytes`` over ``num_gpus`` GPUs of one node (the
    measured bus bandwidth interpolated in log bytes), or None without a table for them.

    ``backend``'s own custom all-reduce when the GPU has its table (vLLM's, SGLang's), replayed
    in a CUDA graph or, ``eager``, issued from Python (~20 µs on a small message where the graph
    takes ~5), from the collection :func:`nearest_version` picks for ``release``; otherwise
    TensorRT-LLM's (timed in a graph)."""
    a, rows = _engine_allreduce_rows(tables, backend, num_gpus, eager, release)
    if a is None:
        a = tables.allreduce
        if a is None:
            return None
        rows = a["num_gpus"] == num_gpus
        if not rows.any():
            return None
    ring = 2.0 * (num_gpus - 1) / num_gpus
    sizes, secs = a["bytes"][rows], a["seconds"][rows]
    measured = _monotone_throughput(sizes, ring * sizes / 1e9, secs, warm_up=True)
    busbw, lo, hi = _throughput_curve(sizes, measured, nbytes)
    return ring * nbytes / (busbw * 1e9), (lo, hi)


def _engine_allreduce_rows(
    tables: KernelTables, backend: str | None, num_gpus: int, eager: bool, release: str | None
) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """(``backend``'s all-reduce table, its rows for ``num_gpus`` GPUs in the mode asked for,
    of one collection), or (None, None) when it has no such rows."""
    if backend is None or not tables.engine_allreduce or backend not in tables.engine_allreduce:
        return None, None
    t = tables.engine_allreduce[backend]
    rows = (t["mode"] == ("eager" if eager else "graph")) & (t["num_gpus"] == num_gpus)
    versions = sorted(set(t["version"][rows].tolist()))
    if not versions:
        return None, None
    rows &= t["version"] == nearest_version(versions, release)
    return (t, rows) if rows.sum() >= 2 else (None, None)


VLLM_MXFP4_TRITON_ON_HOPPER = "0.11.1"
"""The first vLLM release whose MXFP4 MoE runs OpenAI's ``triton_kernels`` on Hopper by
default: the package became a dependency (vllm-project/vllm#27370, merged 2025-10-22, after
0.11.0); before, without it installed, Hopper fell back to Marlin (vLLM 0.10.1's log on an
H100: "Weight-only FP4 compression will be used leveraging the Marlin kernel",
vllm-project/vllm#23278; vllm-project/vllm#27523 measured the two on Hopper)."""


def vllm_mxfp4_kernel(architecture: str | None, release: str | None) -> str:
    """The MoE table dtype timing the kernels vLLM runs MXFP4 experts with on a GPU of
    ``architecture`` at ``release`` (None: the newest): ``mxfp4_marlin`` (weight-only Marlin:
    4-bit weights dequantised into BF16 ``mma.sync``) on Ampere and Ada, which have no FP4
    path (vLLM's GPT-OSS recipe: "Ampere ... TRITON_ATTN attention backend and Marlin MXFP4
    MoE"), on the GB20x Blackwells (``blackwell-rtx``: AIConfigurator's vLLM 0.24.0 rows on an
    RTX PRO 6000 time GPT-OSS's MXFP4 experts with ``vllm_gptossmxfp4moe_marlin_marlinexperts``,
    FlashInfer's TensorRT-LLM MXFP4 kernels being built for the datacentre parts), and on Hopper
    before :data:`VLLM_MXFP4_TRITON_ON_HOPPER`; ``mxfp4`` otherwise (``triton_kernels`` on
    Hopper, FlashInfer's TensorRT-LLM kernels on the datacentre Blackwells, what the tables'
    ``mxfp4`` rows time)."""
    from servesim.cost.aic_tables import MXFP4_MARLIN
    from servesim.versions import release_before

    if architecture in ("ampere", "ada", "blackwell-rtx"):
        return MXFP4_MARLIN
    if architecture == "hopper" and release is not None:
        if release_before(release, VLLM_MXFP4_TRITON_ON_HOPPER):
            return MXFP4_MARLIN
    return "mxfp4"


def moe_table_dtype(
    expert_dtype: str,
    checkpoint_block_fp8: bool,
    mxfp4_kernel: str = "mxfp4",
    fp8_kernel: str = "fp8",
) -> tuple[str, ...]:
    """MoE table dtypes to try for an expert dtype, best match first (``mxfp4_kernel``: the
    label of the MXFP4 kernel the engine runs, :func:`vllm_mxfp4_kernel`; ``fp8_kernel``: of
    its per-tensor FP8 kernel, :func:`fp8_moe_kernel`)."""
    from servesim.cost.aic_tables import FP8_CUTLASS, INT4_MARLIN, MXFP4_MARLIN

    if expert_dtype in ("bf16", "fp16"):
        return ("bf16",)
    if expert_dtype == "fp8":
        if checkpoint_block_fp8:
            return ("fp8_block", "fp8", FP8_CUTLASS)
        if fp8_kernel == FP8_CUTLASS:
            return (FP8_CUTLASS, "fp8", "fp8_block")
        # (Triton's per-tensor rows, else its block-FP8 rows: the same fused-MoE kernel.)
        return ("fp8", "fp8_block", FP8_CUTLASS)
    if expert_dtype in ("fp4", "nvfp4"):
        # NVFP4 experts (FP4 weights and activations: --weight-dtype fp4, ModelOpt and
        # compressed-tensors NVFP4 checkpoints) run the W4A4 NVFP4 MoE kernels; a shape only
        # the MXFP4 (weight-only) kernels measured is closer than the roofline.
        return ("fp4", mxfp4_kernel)
    if expert_dtype == "mxfp4":
        # Marlin's MXFP4 rows, else its INT4 ones: the same kernel family, which prices the
        # MXFP4 rows within 8-11% where a GPU measured both (bench/kernel_accuracy.py).
        return (mxfp4_kernel, INT4_MARLIN) if mxfp4_kernel == MXFP4_MARLIN else (mxfp4_kernel,)
    if expert_dtype == "int4":
        return (INT4_MARLIN,)  # (GPTQ/AWQ experts: Marlin in vLLM and SGLang)
    return ()


def fp8_moe_kernel(kernel_backend: str | None) -> str:
    """The MoE table dtype timing the kernels an engine runs per-tensor FP8 experts with
    (``kernel_backend``: the engine profile's): ``fp8_cutlass`` for TensorRT-LLM (its own
    CUTLASS MoE kernels, which FlashInfer ships as the kernels those rows time; the catalog's
    TensorRT-LLM MoE rows are its 1.3 release candidates', see ``EngineProfile.moe_backend``),
    ``fp8`` (the Triton fused MoE) for vLLM, SGLang and the engines priced as vLLM."""
    from servesim.cost.aic_tables import FP8_CUTLASS

    return FP8_CUTLASS if kernel_backend == "trtllm" else "fp8"


MARLIN_MXFP4_OVER_INT4 = 1.093
"""How much longer Marlin's MXFP4 MoE kernel takes than its INT4 one where the INT4 rows stand
in for MXFP4 ones (:func:`moe_table_dtype`; a GPU without Marlin MXFP4 rows, such as the A100
under vLLM's GPT-OSS): the median of measured MXFP4 over INT4-derived time on the 180 Marlin
MXFP4 points of the three GPUs that time both kernels (AIConfigurator's vLLM 0.24 and SGLang
0.5.14 rows on the H100 and H200, vLLM 0.24's on the L40S), each MXFP4 shape priced from the
same GPU's INT4 rows of another shape (1.0929: ``bench/kernel_accuracy.py``,
``marlin_mxfp4_factor``). The INT4-derived curves were fast on every GPU (H100 1.08, H200 1.12,
L40S 1.10 by their own points), where reshaping other dtypes' shapes has no common sign (bf16:
-16% to +28% by model): MXFP4 unpacks E2M1 values and applies a scale every 32 weights, INT4
one every 128. Held out by GPU (the factor fitted to the other two) it takes the INT4 stand-in
from 7.9 / 11.4 / 9.7% to 6.2 / 7.4 / 6.6% median |error| (the Marlin MXFP4 table of
``python bench/kernel_accuracy.py``)."""


def stand_in_factor(wanted: str, used: str) -> float:
    """Time factor for a MoE curve measured with table dtype ``used`` that prices experts whose
    own kernel's label is ``wanted`` (the first of :func:`moe_table_dtype`): 1 for the kernel
    itself or a stand-in without a measured ratio."""
    from servesim.cost.aic_tables import INT4_MARLIN, MXFP4_MARLIN

    if wanted == MXFP4_MARLIN and used == INT4_MARLIN:
        return MARLIN_MXFP4_OVER_INT4
    return 1.0


def moe_kernel_backend(backend: str, dtypes: tuple[str, ...]) -> str:
    """Whose MoE table times an engine's routed experts (``backend``: the engine profile's).

    GPT-OSS's MXFP4 experts run OpenAI's ``triton_kernels`` in vLLM (``OAITritonExperts``)
    and, on GPUs before Blackwell, in SGLang too: its ``server_args`` sets
    ``moe_runner_backend = "triton_kernel"`` for GPT-OSS whenever the runner is left on auto.
    On Hopper and Ada AIConfigurator's SGLang MXFP4 rows time SGLang's generic
    ``fused_moe_triton`` (about 3× slower at decode batch sizes), which no default launch runs:
    they are not distilled (``aic_tables.reduce_moe``), and the vllm table prices MXFP4 for
    both. (On Blackwell both tables time FlashInfer's TRT-LLM MXFP4 kernels, which both
    engines pick there: the rows agree within 1%.)
    """
    return "vllm" if any(d.startswith("mxfp4") for d in dtypes) else backend


def nearest_version(available: list[str], release: str | None) -> str:
    """Of the collections ``available`` (version names), the one that prices an engine at
    ``release``: the oldest measured at or after it (the nearest kernels that release could
    have had or improved into), else the newest; the newest when ``release`` is None."""
    from servesim.versions import version_key

    ordered = sorted(available, key=version_key)
    if release is not None:
        want = version_key(release.lstrip("vV"))
        for v in ordered:
            if version_key(v) >= want:
                return v
    return ordered[-1]


def moe_shapes(
    tables: KernelTables, dtypes: tuple[str, ...], tp: int, ep: int
) -> list[tuple[int, int, int, int]]:
    """The MoE shapes (hidden, expert width, top-k, experts) some engine's table measured in
    one of ``dtypes`` at the split ``tp`` × ``ep`` (at least two token counts), sorted."""
    from servesim.cost.aic_tables import moe_shape_tuples

    found = set()
    for t in (tables.moe or {}).values():
        rows = (t["tp"] == tp) & (t["ep"] == ep) & np.isin(t["dtype"], list(dtypes))
        counts = Counter(moe_shape_tuples({c: v[rows] for c, v in t.items()}))
        found |= {shape for shape, n in counts.items() if n >= 2}
    return sorted(found)


def moe_model_shape(model) -> tuple[int, int, int, int]:
    """An MoE model's layer shape as the tables key it: (hidden, expert width, top-k, experts)."""
    moe = model.moe
    return (model.hidden_size, moe.expert_intermediate_size, moe.experts_per_token,
            moe.num_experts)  # fmt: skip


def moe_shape_rows(t: dict[str, np.ndarray], shape: tuple[int, int, int, int]) -> np.ndarray:
    """Which rows of one MoE table measured ``shape`` (hidden, expert width, top-k, experts),
    at any split and dtype."""
    hidden, inter, topk, experts = shape
    return (
        (t["hidden_size"] == hidden)
        & (t["inter_size"] == inter)
        & (t["topk"] == topk)
        & (t["num_experts"] == experts)
    )


def moe_seconds(
    tables: KernelTables,
    backend: str,
    dtypes: tuple[str, ...],
    shape: tuple[int, int, int, int],
    tp: int,
    ep: int,
    tokens: np.ndarray,
    release: str | None = None,
    wanted: str | None = None,
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Seconds of one MoE layer's routed experts for each token count, from the backend's table
    (``shape`` = hidden, expert width, top-k, experts; split ``tp`` inside and ``ep`` across
    experts): tokens/s interpolated log-log, clamped outside; None without a matching table.
    Rows of a stand-in kernel are scaled to ``wanted``'s (the experts' own kernel label;
    default ``dtypes[0]``) by :func:`stand_in_factor`.

    A table holding several collections (a ``version`` column) gives the curve of the one
    :func:`nearest_version` picks for the engine's ``release`` (None: the newest that measured
    this curve). A shape, split or dtype the backend's table lacks is taken from the other
    engines' tables (in :data:`MOE_BACKENDS` order, newest collection: their releases are not
    the engine's): another engine's kernels are closer than the roofline. ``tokens`` are the
    layer's; an expert-parallel table that counts them per rank is read at ``tokens / ep``
    (:data:`EP_ROWS_PER_RANK`)."""
    found = moe_rows(tables, backend, dtypes, shape, tp, ep, release)
    if found is None:
        return None
    b, rows = found
    t = tables.moe[b]
    n, secs = t["num_tokens"][rows], t["seconds"][rows]
    per_rank = ep if ep > 1 and b in EP_ROWS_PER_RANK else 1
    query = tokens / per_rank
    rate, lo, hi = _throughput_curve(n, _monotone_throughput(n, n, secs), query)
    factor = stand_in_factor(wanted or dtypes[0], str(t["dtype"][rows][0]))
    return query / rate * factor, (lo * per_rank, hi * per_rank)


def moe_rows(
    tables: KernelTables,
    backend: str,
    dtypes: tuple[str, ...],
    shape: tuple[int, int, int, int],
    tp: int,
    ep: int,
    release: str | None = None,
) -> tuple[str, np.ndarray] | None:
    """The rows :func:`moe_seconds` reads for these arguments: (the engine whose table holds
    them, a mask over that table's rows), or None when no table measured them."""
    by_backend = tables.moe or {}
    order = [backend] + [b for b in MOE_BACKENDS if b != backend]
    for b in (b for b in order if b in by_backend):
        t = by_backend[b]
        base = moe_shape_rows(t, shape) & (t["tp"] == tp) & (t["ep"] == ep)
        for dtype in dtypes:
            rows = base & (t["dtype"] == dtype)
            if rows.sum() < 2:
                continue
            if "version" in t:
                measured = t["version"][rows].tolist()
                versions = sorted({v for v in measured if measured.count(v) >= 2})
                pick = nearest_version(versions, release if b == backend else None)
                rows &= t["version"] == pick
            if rows.sum() >= 2:
                return b, rows
    return None


def moe_collection(tables: KernelTables, backend: str, version: str | None) -> KernelTables | None:
    """``tables`` with only the MoE rows of ``backend``'s table from one collection (engine
    release ``version``; None: a table without versions): one engine's kernels as measured at
    one time, for comparing two GPUs on the same rows. None when the GPU has no such table."""
    t = (tables.moe or {}).get(backend)
    if t is None:
        return None
    keep = np.ones(len(t["dtype"]), dtype=bool)
    if "version" in t:
        keep = t["version"] == version
    return replace(tables, moe={backend: {c: v[keep] for c, v in t.items()}})


# --- measured operator curves ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MeasuredCurves:
    """Operators priced from measured tables: per operator, its seconds per step (all its
    occurrences) tabulated at ``M_GRID`` values of one step feature.

    ``seconds(a)`` takes feature rows (one step each, or a decode span's summed features:
    divided by the steps in ``ONE`` and multiplied back, exact for spans, whose rows and tokens
    do not change) and returns (rows, curves) seconds.
    """

    columns: np.ndarray
    """Index of each curve's operator in the operator list."""
    features: np.ndarray
    """Feature giving each curve's x (GEMM rows, or tokens for an all-reduce)."""
    table: np.ndarray
    """(len(M_GRID), curves) seconds."""
    measured_range: np.ndarray
    """(curves, 2): smallest and largest x measured; outside it the throughput is clamped."""
    borrowed: np.ndarray | None = None
    """Per curve, whether it is another GPU's measured utilisation on this GPU's roofline (the
    fitted rung) rather than this GPU's own measurement; None: all its own."""

    def __post_init__(self) -> None:
        # The hot path needs only the sum over curves: one summed table per feature, kept as
        # Python lists (a step is then a few float operations per feature, no numpy calls).
        sums = []
        for feat in sorted(set(self.features.tolist())):  # (not np.unique: see _grid_weights)
            table = self.table[:, self.features == feat].sum(axis=1)
            sums.append((int(feat), table, table.tolist()))
        object.__setattr__(self, "_sums", tuple(sums))
        # The same tables stacked (features, grid), for rows of steps in one pass.
        object.__setattr__(self, "_sum_features", np.array([f for f, _, _ in sums], np.intp))
        object.__setattr__(self, "_sum_tables", np.array([t for _, t, _ in sums]))
        object.__setattr__(self, "_rows", self.table.tolist())

    def total(self, f: np.ndarray) -> float:
        """Seconds of every curve summed, for one step's feature vector (the hot path)."""
        last = len(M_GRID) - 1
        steps = max(float(f[0]), 1.0)
        out = 0.0
        for feat, _, table in self._sums:
            x = float(f[feat]) / steps
            if x <= 0.0:
                continue
            pos = min(max(math.log2(x) * GRID_PER_OCTAVE, 0.0), float(last))
            i = min(int(pos), last - 1)
            w = pos - i
            out += table[i] * (1.0 - w) + table[i + 1] * w
        return out * steps

    def totals(self, a: np.ndarray) -> np.ndarray:
        """:meth:`total` for rows of feature vectors, shape (rows,)."""
        last = len(M_GRID) - 1
        steps = np.maximum(a[:, 0], 1.0)
        x = a[:, self._sum_features] / steps[:, None]  # (rows, features)
        pos = np.clip(np.log2(np.maximum(x, 1.0)) * GRID_PER_OCTAVE, 0.0, last)
        i = np.minimum(pos.astype(np.intp), last - 1)
        w = pos - i
        rows = np.arange(len(self._sum_features))
        tables = self._sum_tables
        each = np.where(x > 0, tables[rows, i] * (1.0 - w) + tables[rows, i + 1] * w, 0.0)
        # Summed feature by feature, in order (not pairwise), as :meth:`total` adds them.
        out = each[:, 0].copy()
        for k in range(1, each.shape[1]):
            out += each[:, k]
        return out * steps

    def seconds_one(self, f: np.ndarray) -> list[float]:
        """:meth:`seconds` of one feature vector (the eager single-step hot path): the same
        floats, the interpolation weights applied in Python rather than by five numpy calls on
        a handful of curves."""
        steps = max(float(f[0]), 1.0)
        x = f[self.features] / steps
        pos = np.interp(c_math(math.log, np.maximum(x, 1.0)), LOG_M_GRID, _GRID_INDEX).tolist()
        rows = self._rows
        last = len(M_GRID) - 2
        out = []
        for c, (p, xv) in enumerate(zip(pos, x.tolist(), strict=True)):
            if xv > 0:
                i = min(int(p), last)
                w = p - i
                out.append((rows[i][c] * (1.0 - w) + rows[i + 1][c] * w) * steps)
            else:
                out.append(0.0 * steps)
        return out

    def seconds(self, a: np.ndarray, c_library: bool = False) -> np.ndarray:
        """Seconds of each curve for rows of feature vectors, shape (rows, curves).
        ``c_library``: the positions' logarithms the C library's, as the engine's step
        pricing takes them (:meth:`~servesim.cost.step.DecodeRamp.stretch`)."""
        a = np.atleast_2d(a)
        steps = np.maximum(a[:, 0:1], 1.0)  # feature ONE
        x = a[:, self.features] / steps
        at_least_one = np.maximum(x, 1.0)
        log_x = c_math(math.log, at_least_one) if c_library else np.log(at_least_one)
        pos = np.interp(log_x, LOG_M_GRID, np.arange(len(M_GRID)))
        i = np.minimum(pos.astype(np.intp), len(M_GRID) - 2)
        w = pos - i
        cols = np.arange(len(self.columns))
        out = self.table[i, cols] * (1.0 - w) + self.table[i + 1, cols] * w
        return np.where(x > 0, out, 0.0) * steps

    def outside(self, a: np.ndarray) -> np.ndarray:
        """Whether each feature row has a curve outside its measured range (extrapolated)."""
        a = np.atleast_2d(a)
        x = a[:, self.features] / np.maximum(a[:, 0:1], 1.0)
        lo, hi = self.measured_range[:, 0], self.measured_range[:, 1]
        return ((x > 0) & ((x < lo) | (x > hi))).any(axis=1)
