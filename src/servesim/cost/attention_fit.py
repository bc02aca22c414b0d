"""Attention curves fitted to the measured kernel tables: the *fitted* rung.

Attention depends on every row's lengths, not on one number, so its measured table is reduced to
a curve the linear cost model can carry: prefill attention reaches ``e · s / (s + h')`` of the
tensor-core peak at ``s`` keys per query, with ``h' = h · (1 + w · kv_heads / heads)``, and runs
longer when its thread blocks cannot fill the GPU (fitted ``e``, ``h``, ``w`` and ``fill``, from
``attention_prefill.csv``; one curve for 128-wide heads and one for heads of at
most 64, :data:`NARROW_HEAD_DIM`); decode attention reads the KV cache at a fitted fraction of
HBM bandwidth, one for a bf16 and one for an FP8 KV cache (``attention_decode.csv``, rows with
at least :data:`DECODE_MIN_KV_BYTES` of KV: smaller working sets sit in L2 and read faster than
HBM allows), after a fixed time per call, the table's floor (its rows under
:data:`DECODE_FLOOR_MAX_KV_BYTES`), stretched between the two by the measured ramp
(:func:`decode_ramp`). Where a decode kernel walks each sequence's KV in one thread block per
query head (FlashAttention-2's varlen kernel, :func:`fit_decode_serial_rate`), a call also takes
at least its longest walk at the rate one thread block reads. A GPU without tables takes its
same-architecture GPU's fit, else the median fitted fractions of the GPUs that have tables,
times its own datasheet peaks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from servesim.cost.kernels import (
    catalog_source,
    gpus_with_tables,
    load_tables,
    transfer_source_for,
)
from servesim.cost.libm import c_math
from servesim.cost.shipped_fits import shipped_fit

DECODE_MIN_KV_BYTES = 1e9
"""Decode-attention rows with less KV than this are left out of the bandwidth fit: repeated
runs of one small shape read from L2, faster than HBM (see catalog/kernels/README.md)."""


DECODE_FLOOR_MAX_KV_BYTES = 4e6
"""Decode-attention rows reading less KV than this time the call's fixed cost (KV-cache write,
launch, split-KV combine): the bytes add well under a microsecond at HBM rate. Their median
time, less their bytes at full bandwidth, is the fit's ``decode_fixed_s``: ~10-12 µs on Hopper
and Blackwell, ~15-18 µs on the A100, where a kernel launch alone is 4 µs."""


SERIAL_MIN_KV_BYTES = 2.56e8
"""Decode rows reading less KV than this are left out of the serial-walk fit
(:func:`fit_decode_serial_rate`): their fixed cost, L2 hits and the ramp blur one thread
block's rate."""

SERIAL_MAX_SHARE = 0.5
"""A multi-head decode row reading its KV at under this share of the HBM peak counts as
serial-walk limited in :func:`fit_decode_serial_rate` (the A100's, L40S's and RTX PRO 6000's
vLLM rows of one sequence read at 0.09-0.26 of it, their eight-sequence rows at 0.66-0.85)."""


FLASHINFER_DECODE_SHARE = {"hopper": 0.57}
"""Decode attention of FlashInfer's paged kernels (as SGLang runs them before FlashAttention-3
became its Hopper default: page size 1, ``BatchDecodeWithPagedKVCache``) as a share of the KV-read
rate of the measured tables' kernels, by GPU architecture. Hopper only: fitted
(``bench/fidelity/fit_flashinfer_decode.py``) to SGLang's own A/B benchmark of its attention
backends on one H200 (``benchmark/attention_backend/NVIDIA_H200.md``: Llama-3.1-8B, the same
three workloads under ``--attention-backend fa3`` and ``flashinfer``; FlashInfer's output
throughput 0.92, 0.79 and 0.68 of FA3's at 1k/1k, 8k/1k and 8k/8k tokens), the share at which
the simulated FlashInfer/FA3 ratios come closest. Other architectures have no such pair: their
tables' rate stands. Llama-3.1-8B has 4 query heads per KV head, which FlashInfer decodes on
its CUDA-core kernel: :data:`FLASHINFER_MEASURED_GROUP`."""
FLASHINFER_MEASURED_GROUP = 4
"""The GQA group (query heads per KV head on one GPU) of the runs that set
:data:`FLASHINFER_DECODE_SHARE`. FlashInfer's CUDA-core decode kernel does every query head's
dot products and weighted sums for each KV element it loads on the CUDA cores, ``group`` times
the work per byte, and on A100/H100-class GPUs that is compute-bound ("GPUs such as A100/H100
has low non-tensor cores performance, and thus traditional implementation of Grouped Query
Attention is compute-bound", FlashInfer's introduction, 2024-02-02, which is why it decodes
larger groups with its tensor-core prefill kernel): a CUDA-core decode of a larger group reads
the cache at ``FLASHINFER_MEASURED_GROUP / group`` of the measured share (time per byte
proportional to the group); smaller groups and the tensor-core path keep the share."""


def decode_backend_share(backend: str | None, architecture: str, cuda_core_group: int = 0) -> float:
    """The share of the measured tables' decode-attention KV-read rate the attention
    ``backend`` reaches on a GPU of ``architecture``: :data:`FLASHINFER_DECODE_SHARE` for
    ``flashinfer``, times ``FLASHINFER_MEASURED_GROUP / cuda_core_group`` when its CUDA-core
    kernel decodes a larger GQA group (``cuda_core_group``: query heads per KV head on one GPU,
    0 when the decode runs on tensor cores); else 1 (the tables' kernels: FlashAttention-3,
    TensorRT-LLM's)."""
    if backend != "flashinfer":
        return 1.0
    share = FLASHINFER_DECODE_SHARE.get(architecture, 1.0)
    if architecture in FLASHINFER_DECODE_SHARE and cuda_core_group > FLASHINFER_MEASURED_GROUP:
        share *= FLASHINFER_MEASURED_GROUP / cuda_core_group
    return share


TRITON = "triton"
"""The attention backend name of vLLM's Triton kernels (``TRITON_ATTN``)."""


def triton_prefill(efficiency: float, half_tokens: float) -> tuple[float, float]:
    """A FlashAttention-class prefill curve ``(efficiency, half_tokens)`` as vLLM's Triton
    attention runs it: the plateau efficiency over the measured slowdown ``A``, the
    half-length times ``ρ`` (``kernels.triton_prefill_factors``, distilled from the
    AIConfigurator rows that time both kernels on the same shapes). The time ratio at ``s``
    keys per query is then ``A · (s + ρ·h') / (s + h')``: ~0.9 for 16-token prompts, ~2 at 1k,
    ~2.6 at 16k (L40S and RTX PRO 6000, vLLM 0.24.0)."""
    from servesim.cost.kernels import triton_prefill_factors

    slowdown, half_scale = triton_prefill_factors()
    return efficiency / slowdown, half_tokens * half_scale


KV_HEAD_WEIGHT = 0.5
"""What a key/value head adds to prefill attention's length term, relative to a query head,
where a curve has no weight of its own (a fit stored before session 50, a curve built by hand).

A prefill kernel's time beyond its FLOPs at the plateau rate grows with the tokens: partly per
128-query tile (each tile's softmax bookkeeping and epilogue: query heads) and partly the Q, K,
V and O traffic (query and KV heads). The length term is therefore ``h · (1 + w · kv_heads /
heads) / s`` (:func:`length_stretch`). 0.5 was the one ``w`` fitted jointly to the nine GPUs'
tables (the summed fit objective flat between 0.375 and 0.5: +16% at 0, +10% at 1); since
session 50 each curve fits its own (:data:`KV_HEAD_WEIGHTS`)."""

KV_HEAD_WEIGHTS = (0.25, 0.5, 1.0, 2.0)
"""The KV-head weights each prefill curve chooses among (:func:`fit_prefill`: the one whose best
``e``, ``h`` and ``fill`` fit the curve's rows best). How much the Q, K, V and O traffic weighs
against the per-tile work differs by kernel and memory system: fitted to each table's rows, the
Hopper and Blackwell curves take 0.25-0.5 (every 64-wide one 0.25), the L40S's (GDDR6, 96 MB of
L2) 2 — its multi-head FP8 rows otherwise ran 16% slower than the curve — and the RTX PRO 6000's
1. Held out by head shape (``bench/kernel_accuracy.py``, the weight fitted to the other shapes'
rows too) the 64-wide curves went from 8-9% to 4-6% on the Hopper and Blackwell GPUs (the B200's
from 3% to 5%), the L40S's FP8 curve from 11% to 8%, every curve within 8%. (Weights of 1/16
and 1/8 as well: the B200's and GB300's 64-wide curves 2 points better, the others within half
a point, for half as much fitting again; a weight of 4 was never chosen.)"""


@dataclass(frozen=True)
class AttentionFit:
    """Attention efficiency fitted to a GPU's measured tables (fractions of its peaks)."""

    efficiency: float
    """Prefill: the fraction of tensor-core peak long prompts approach."""
    half_tokens: float
    """Prefill: keys per query at which half of ``efficiency`` is reached, for a kernel with
    few KV heads per query head (``h`` of :func:`length_stretch`; more KV heads move it up)."""
    memory_efficiency: float
    """Decode: fraction of HBM bandwidth the KV-cache reads reach."""
    prefill_error: float
    """Median absolute relative error of the fitted prefill curve on the table's rows."""
    decode_error: float
    """The same for decode attention."""
    fill_ctas: float = 0.0
    """Prefill: thread blocks (heads × 128-query tiles) that fill the GPU (0: no limit)."""
    fill_power: float = 0.0
    """Prefill: the shape of the occupancy stretch (:func:`occupancy_stretch`; 0 the hard
    limit)."""
    kv_head_weight: float = KV_HEAD_WEIGHT
    """Prefill: what a KV head adds to the length term relative to a query head (``w`` of
    :func:`length_stretch`, one of :data:`KV_HEAD_WEIGHTS`)."""
    efficiency_hd64: float = 0.0
    """Prefill of 64-wide heads (GPT-OSS, Llama-3.2-1B, Qwen2.5-0.5B): ``efficiency`` fitted
    to the table's head_dim-64 rows alone (each tile does half the work per byte of Q, K and V
    a 128-wide head does); 0: the table has no such rows, the 128-wide curve prices them."""
    half_tokens_hd64: float = 0.0
    """``half_tokens`` of the head_dim-64 curve."""
    fill_ctas_hd64: float = 0.0
    """``fill_ctas`` of the head_dim-64 curve."""
    fill_power_hd64: float = 0.0
    """``fill_power`` of the head_dim-64 curve."""
    kv_head_weight_hd64: float = KV_HEAD_WEIGHT
    """``kv_head_weight`` of the head_dim-64 curve."""
    prefill_error_hd64: float = 0.0
    """``prefill_error`` of the head_dim-64 curve on its rows (0 without such rows)."""
    efficiency_fp8: float = 0.0
    """Prefill in FP8 (FlashAttention-3 with an FP8 KV cache quantises Q too): ``efficiency``
    fitted to the table's fp8 rows of 128-wide heads, as a share of the *bf16* peak (H100 0.80
    against 0.57 in bf16); 0: no such rows, the bf16 curve prices them."""
    half_tokens_fp8: float = 0.0
    """``half_tokens`` of the FP8 prefill curve."""
    fill_ctas_fp8: float = 0.0
    """``fill_ctas`` of the FP8 prefill curve."""
    fill_power_fp8: float = 0.0
    """``fill_power`` of the FP8 prefill curve."""
    kv_head_weight_fp8: float = KV_HEAD_WEIGHT
    """``kv_head_weight`` of the FP8 prefill curve."""
    prefill_error_fp8: float = 0.0
    """``prefill_error`` of the FP8 prefill curve on its rows (0 without such rows)."""
    memory_efficiency_fp8: float = 0.0
    """Decode with an FP8 KV cache: the fraction of HBM bandwidth the table's fp8 rows read
    their (half-size) KV at — lower than bf16's on Hopper (H200 0.62 against 0.85: the kernels
    dequantise every element they read); 0: no fp8 rows, ``memory_efficiency`` prices them."""
    decode_error_fp8: float = 0.0
    """``decode_error`` of the fp8 fraction on its rows (0 without such rows)."""
    decode_fixed_s: float = 0.0
    """Decode: seconds one attention call takes however little KV it reads (the KV-cache write
    and the attention kernel as the tables time them together; :func:`decode_floor`), before
    the bytes at ``memory_efficiency``; 0: the kernels' launches only."""
    decode_fixed_s_fp8: float = 0.0
    """``decode_fixed_s`` of an FP8 KV cache (0: the bf16 one)."""
    decode_ramp_log_bytes: tuple[float, ...] = ()
    """Decode: the measured ramp between the floor and the fraction's rows (:func:`decode_ramp`):
    log10 of the KV bytes one call reads, ascending, the ends at :data:`DECODE_FLOOR_MAX_KV_BYTES`
    and :data:`DECODE_MIN_KV_BYTES`; empty: no ramp."""
    decode_ramp: tuple[float, ...] = ()
    """The measured time over ``decode_fixed_s + bytes / (BW · memory_efficiency)`` at each of
    ``decode_ramp_log_bytes`` (at least 1; 1 at both ends)."""
    decode_ramp_log_bytes_fp8: tuple[float, ...] = ()
    """``decode_ramp_log_bytes`` of an FP8 KV cache (empty: the bf16 ramp)."""
    decode_ramp_fp8: tuple[float, ...] = ()
    """``decode_ramp`` of an FP8 KV cache."""
    decode_cells_fp8: tuple[float, ...] = ()
    """Decode with an FP8 KV cache: the fraction of HBM bandwidth of each kernel regime the
    table's fp8 rows show, in the order of :func:`decode_cell` (multi-head 128-wide, multi-head
    64-wide, grouped 128-wide, grouped 64-wide), 0 for a regime with under
    :data:`DECODE_CELL_MIN_ROWS` rows (vLLM's on the H100: 64-wide heads 0.70, 128-wide
    0.80-0.84; TensorRT-LLM 1.3's on the H200: grouped 128-wide 0.91, multi-head 0.55; a regime
    timed only below 1 GB: its ratio there to a measured one, :func:`fit_decode_cells`); empty:
    fewer than two regimes measured, ``memory_efficiency_fp8`` prices every shape. Which
    engines read them: :func:`servesim.cost.resolve.decode_regimes_apply`."""
    decode_ramp_log_bytes_cells_fp8: tuple[float, ...] = ()
    """``decode_ramp_log_bytes`` of an FP8 KV cache read by kernel regime (empty: without
    ``decode_cells_fp8``)."""
    decode_ramp_cells_fp8: tuple[float, ...] = ()
    """The FP8 ramp over each row's regime fraction instead of the one fraction
    (:func:`regime_fractions`): what an engine that reads by regime takes. Over the one
    fraction the ramp carries the regimes' spread; held out by head shape the catalog's Hopper
    FP8 rows of 4 MB-1 GB go from 14% / 17% (H100 / H200) to 7% / 9%."""
    decode_engine: str | None = None
    """Whose decode kernels the decode fractions were fitted to: an engine's own decode table
    (``vllm``, ``sglang``); None: the catalog's main table (TensorRT-LLM's kernels, 1.3.0rc20;
    the A100's, vLLM 0.14's)."""
    decode_serial_rate: float = 0.0
    """Decode: bytes per second one thread block reads when the kernel walks a sequence's KV
    serially, one block per (row, query head) (:func:`fit_decode_serial_rate`: 22 GB/s on the
    A100, 26-28 GB/s on the L40S and RTX PRO 6000 under vLLM's FlashAttention-2); 0: the
    table's kernels split every long KV sequence."""

    @classmethod
    def from_stored(cls, stored: dict) -> AttentionFit:
        """The fit ``dataclasses.asdict`` stored as JSON (``fits.json``; its lists are the
        ramps' tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})

    def prefill_curve(
        self, head_dim: float, fp8: bool = False
    ) -> tuple[float, float, float, float, float]:
        """(efficiency, half_tokens, fill_ctas, fill_power, kv_head_weight) of the prefill
        curve for heads
        ``head_dim`` wide (``fp8``: attention runs in FP8): the head_dim-64 curve for heads of
        at most :data:`NARROW_HEAD_DIM` when the table had such rows (in bf16 also under
        ``fp8``: its FP8 rows are not fitted apart), the FP8 curve of 128-wide heads under
        ``fp8`` when it had fp8 rows, else the bf16 128-wide one."""
        if head_dim <= NARROW_HEAD_DIM and self.efficiency_hd64 > 0.0:
            return (
                self.efficiency_hd64, self.half_tokens_hd64, self.fill_ctas_hd64,
                self.fill_power_hd64, self.kv_head_weight_hd64,
            )  # fmt: skip
        if fp8 and head_dim > NARROW_HEAD_DIM and self.efficiency_fp8 > 0.0:
            return (
                self.efficiency_fp8,
                self.half_tokens_fp8,
                self.fill_ctas_fp8,
                self.fill_power_fp8,
                self.kv_head_weight_fp8,
            )
        return (
            self.efficiency, self.half_tokens, self.fill_ctas, self.fill_power,
            self.kv_head_weight,
        )  # fmt: skip

    def decode_fixed(self, kv_dtype: str) -> float:
        """Seconds per decode-attention call before its KV reads (:attr:`decode_fixed_s`; an
        FP8 cache's own floor when the table had such rows)."""
        if kv_dtype == "fp8" and self.decode_fixed_s_fp8 > 0.0:
            return self.decode_fixed_s_fp8
        return self.decode_fixed_s

    def decode_ramp_curve(
        self, kv_dtype: str, regimes: bool = False
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(log10 KV bytes per call, time ratio) of the decode ramp for a ``kv_dtype`` cache:
        an FP8 cache's own when the table had such rows (over the regime fractions with
        ``regimes``, where the fit has them), else the bf16 one; empty: none."""
        if kv_dtype == "fp8" and regimes and self.decode_ramp_cells_fp8:
            return self.decode_ramp_log_bytes_cells_fp8, self.decode_ramp_cells_fp8
        if kv_dtype == "fp8" and self.decode_ramp_fp8:
            return self.decode_ramp_log_bytes_fp8, self.decode_ramp_fp8
        return self.decode_ramp_log_bytes, self.decode_ramp

    def decode_fraction(
        self, kv_dtype: str, grouped: bool | None = None, narrow: bool | None = None
    ) -> float:
        """The fraction of HBM bandwidth decode attention reads a ``kv_dtype`` KV cache at, for
        heads ``grouped`` (more query heads than KV heads) and ``narrow`` (at most
        :data:`NARROW_HEAD_DIM` wide): the fp8 rows' own for an fp8 cache when the table had
        such rows, else the bf16 rows'; with an FP8 cache, of the shape's kernel regime where
        an engine's table measured several (:func:`cell_fraction`; no shape given: the one
        fraction of every row)."""
        if kv_dtype == "fp8" and self.memory_efficiency_fp8 > 0.0:
            if grouped is None or narrow is None:
                return self.memory_efficiency_fp8
            return cell_fraction(self.decode_cells_fp8, grouped, narrow, self.memory_efficiency_fp8)
        return self.memory_efficiency


DECODE_CELL_MIN_ROWS = 4
"""Rows (of at least :data:`DECODE_MIN_KV_BYTES`) a decode regime needs for a fraction of its
own (:func:`fit_decode_cells`)."""


def decode_cell(grouped: bool, narrow: bool) -> int:
    """Index of a decode regime in ``AttentionFit.decode_cells_fp8``: grouped-query heads (more
    query heads than KV heads) or not, times narrow heads (at most :data:`NARROW_HEAD_DIM`) or
    not."""
    return 2 * int(grouped) + int(narrow)


def decode_regimes(d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per row of decode table ``d``: (grouped-query heads, heads at most
    :data:`NARROW_HEAD_DIM` wide), the two halves of its regime (:func:`decode_cell`)."""
    return d["num_heads"] > d["num_kv_heads"], d["head_dim"] <= NARROW_HEAD_DIM


DECODE_CELL_BAND_MIN_KV_BYTES = 2.56e8
"""Decode rows from this many bytes of KV up to :data:`DECODE_MIN_KV_BYTES` (past the largest
L2, 126 MB, twice over; the ramp there is within ~6% of 1) tell how a kernel regime without rows
of its own at :data:`DECODE_MIN_KV_BYTES` reads against a measured one
(:func:`fit_decode_cells`): on vLLM's Hopper and Blackwell tables the ratio of two regimes in
this band is within 1.5% of their ratio from 1 GB (64-wide over 128-wide multi-head heads: H100
0.869 against 0.871, H200 0.814 against 0.802, B200 0.921 against 0.928)."""


def fit_decode_cells(
    d: dict[str, np.ndarray],
    bandwidth: float,
    launch_s: float,
    kv_dtype: str,
    fixed_s: float | None,
) -> tuple[float, ...]:
    """The fraction of HBM bandwidth (:func:`fit_decode`) of each decode regime of
    ``kv_dtype``'s rows in the order of :func:`decode_cell`; empty when fewer than two regimes
    have a fraction.

    A regime with :data:`DECODE_CELL_MIN_ROWS` rows of at least :data:`DECODE_MIN_KV_BYTES`
    takes the fraction of those rows. A regime without, whose fraction the other three cannot
    give (:func:`cell_fraction`'s product), but with as many rows from
    :data:`DECODE_CELL_BAND_MIN_KV_BYTES` takes a measured regime's fraction times how the two
    regimes' rows of that band compare (a measured regime of its grouping first, then of its
    width, then the other): SGLang's Hopper tables time 64-wide heads only grouped and only
    below 1 GB, where they read at 0.79-0.84 of the 128-wide grouped rows. A regime with
    neither is 0 (:func:`cell_fraction` picks a neighbour).

    The engines pick decode kernels by head shape, and with an FP8 cache the picks read at
    different shares of the bandwidth where bf16's do not (within 4%): vLLM's reads 64-wide
    heads slower than 128-wide ones (H100 0.70 against 0.80-0.84, H200 0.51 against 0.64),
    TensorRT-LLM's grouped-query kernel reads the H200's at 0.88 where its multi-head kernel
    reads 0.57 (the H100 0.90 and 0.73). One fraction for every shape was 13-16% off vLLM's
    Hopper rows of a held-out head shape (``bench/kernel_accuracy.py``)."""
    kv_bytes = d["gbps"] * 1e9 * d["seconds"]
    of_dtype = d["dtype"] == kv_dtype
    grouped, narrow = decode_regimes(d)
    regime = 2 * grouped.astype(int) + narrow.astype(int)
    large = of_dtype & (kv_bytes >= DECODE_MIN_KV_BYTES)
    band = of_dtype & (kv_bytes >= DECODE_CELL_BAND_MIN_KV_BYTES) & (kv_bytes < DECODE_MIN_KV_BYTES)
    fixed = launch_s if fixed_s is None else fixed_s

    def fraction(rows: np.ndarray) -> float:
        if rows.sum() < DECODE_CELL_MIN_ROWS:
            return 0.0
        got = read_fraction(d["seconds"][rows], kv_bytes[rows], bandwidth, fixed)
        # (Rows faster than the fixed cost alone, a table that contradicts the floor, give a
        # negative fraction: no fraction.)
        return got if got > 0.0 else 0.0

    measured = tuple(fraction(large & (regime == cell)) for cell in range(4))
    banded = tuple(fraction(band & (regime == cell)) for cell in range(4))
    cells = list(measured)
    for cell in range(4):
        if measured[cell] > 0.0 or banded[cell] <= 0.0 or _factored(measured, cell) > 0.0:
            continue
        for ref in (cell ^ 1, cell ^ 2, cell ^ 3):  # (its grouping, its width, the other)
            if measured[ref] > 0.0 and banded[ref] > 0.0:
                cells[cell] = measured[ref] * banded[cell] / banded[ref]
                break
    return tuple(cells) if sum(c > 0.0 for c in cells) >= 2 else ()


def _factored(cells: tuple[float, ...], cell: int) -> float:
    """Regime ``cell``'s fraction as the same width's other grouping times how the other
    grouping's two widths compare (:func:`decode_cell` order), when all three are in
    ``cells``; else 0."""
    same_width, same_grouping, other = cells[cell ^ 2], cells[cell ^ 1], cells[cell ^ 3]
    if same_width > 0.0 and same_grouping > 0.0 and other > 0.0:
        return same_width * same_grouping / other
    return 0.0


def cell_fraction(cells: tuple[float, ...], grouped: bool, narrow: bool, pooled: float) -> float:
    """The decode fraction of the regime (``grouped``, ``narrow``) from a fit's ``cells``: its
    own where measured; else the same head width's other grouping times how the other
    grouping's two widths compare, when all three were measured; else the same grouping's
    other width, else the same width's other grouping; else ``pooled`` (one fraction for every
    row, also what a fit without cells gives)."""
    if not cells:
        return pooled
    cell = decode_cell(grouped, narrow)
    if cells[cell] > 0.0:
        return cells[cell]
    if (factored := _factored(cells, cell)) > 0.0:
        return factored
    for other in (cells[cell ^ 1], cells[cell ^ 2]):
        if other > 0.0:
            return other
    return pooled


def regime_fractions(
    d: dict[str, np.ndarray], cells: tuple[float, ...], pooled: float
) -> np.ndarray:
    """Per row of decode table ``d``: the decode fraction of its kernel regime
    (:func:`cell_fraction` of ``cells``; ``pooled`` for every row without cells)."""
    grouped, narrow = decode_regimes(d)
    out = np.full(len(d["seconds"]), pooled)
    for g in (False, True):
        for n in (False, True):
            out[(grouped == g) & (narrow == n)] = cell_fraction(cells, g, n, pooled)
    return out


NARROW_HEAD_DIM = 64
"""Heads at most this wide take the prefill curve fitted to the head_dim-64 rows. On the
datacentre Hopper and Blackwell GPUs those rows run 1.25-1.6× longer per FLOP than the 128-wide
curve says (FlashAttention-3 and TensorRT-LLM's kernels reach a lower share of the tensor-core
peak at 64: half the MMA work per byte of Q, K and V tiles); on the GDDR parts (L40S, RTX PRO
6000) about the same (``bench/kernel_accuracy.py``)."""


def kv_head_factor(
    kv_heads_per_head: np.ndarray | float, weight: float = KV_HEAD_WEIGHT
) -> np.ndarray | float:
    """How far KV heads move prefill attention's half point: ``h' = h · (1 + weight ·
    kv_heads / heads)``, given ``kv_heads / heads`` (``weight``: the curve's
    ``kv_head_weight``)."""
    return 1.0 + weight * kv_heads_per_head


def length_stretch(
    half_tokens: float,
    heads: np.ndarray | float,
    kv_heads: np.ndarray | float,
    s,
    weight: float = KV_HEAD_WEIGHT,
) -> np.ndarray | float:
    """Prefill attention's time over its plateau time at ``s`` keys per query: ``1 + h' / s``
    with ``h' = half_tokens · kv_head_factor(kv_heads / heads, weight)`` (``heads`` query
    heads, ``kv_heads`` KV heads)."""
    return 1.0 + half_tokens * kv_head_factor(kv_heads / heads, weight) / s


def fit_inputs(peak: float, bandwidth: float, launch_s: float) -> dict[str, float]:
    """What a GPU's attention fit depends on besides its tables (bf16 peak FLOP/s, HBM bytes/s,
    launch seconds, the curve's KV-head weight): the key its shipped fit is stored under."""
    return {
        "peak": float(peak),
        "bandwidth": float(bandwidth),
        "launch_s": float(launch_s),
        "kv_head_weights": float(len(KV_HEAD_WEIGHTS)),
        "narrow_head_dim": float(NARROW_HEAD_DIM),
        "decode_by_kv_dtype": 1.0,
        "fp8_prefill": 1.0,
        "decode_floor": DECODE_FLOOR_MAX_KV_BYTES,
        "occupancy_powers": float(len(OCCUPANCY_POWERS)),
    }


PREFILL_QUERY_TILE = 128
"""Queries per thread block of the measured prefill kernels (the step model's ``QUERY_TILE``)."""


OCCUPANCY_POWERS = (0.0, 1.0)
"""Shapes of the occupancy stretch the prefill fit chooses among (:func:`occupancy_stretch`):
0 the hard limit ``max(1, fill / blocks)``, 1 an added tail ``1 + fill / blocks``. (Power 2,
between them, was tried: chosen on some GPUs' training rows, it held out worse — head_dim-64
on the B300 15% against 9%, the RTX PRO 6000 14% against 8%.)"""


def occupancy_stretch(x, power: float):
    """Prefill attention's time over its FLOP time for ``x = fill / blocks`` (a float or an
    array): ``max(1, x)`` for ``power`` 0 (no time lost until the blocks cannot fill the GPU,
    then one wave of the longest blocks), else ``(1 + x^power)^(1/power)`` — a smooth limit,
    ``1 + x`` at power 1: the plateau time plus the tail of the last wave, one block's work at
    one block's rate.

    Which fits a GPU's table best is chosen per curve (:func:`fit_prefill`). The tables say the
    hard limit is wrong in both directions on the datacentre GPUs: with few blocks (8 heads, one
    prompt of 256-2,048 tokens) the kernels run 1.3-2.2× faster than ``fill / blocks`` says,
    and just above the limit 20-40% slower than the plateau (H100, head_dim 128)."""
    if power == 0.0:
        return np.maximum(1.0, x)
    return (1.0 + x**power) ** (1.0 / power)


def prefill_seconds(
    p: dict[str, np.ndarray], rows: np.ndarray, peak: float, launch_s: float,
    e: float, h: float, fill: float, power: float = 0.0, weight: float = KV_HEAD_WEIGHT,
) -> np.ndarray:  # fmt: skip
    """The fitted prefill curve at the table's ``rows``: ``launch + FLOPs / (peak · e) ·
    length_stretch(h, …, s, weight) · occupancy_stretch(fill / blocks, power)``, with ``blocks
    = heads · batch · (s / 128 + 1)`` (the step model's estimate of the kernel's thread blocks,
    see ``step.occupancy_factor``)."""
    s, t = p["seq_len"][rows], p["seconds"][rows]
    flops = p["tflops"][rows] * 1e12 * t
    heads = p["num_heads"][rows]
    blocks = heads * p["batch"][rows] * (s / PREFILL_QUERY_TILE + 1.0)
    stretch = length_stretch(h, heads, p["num_kv_heads"][rows], s, weight)
    return launch_s + flops / (peak * e) * stretch * occupancy_stretch(fill / blocks, power)


_FIT_EFFICIENCY = np.linspace(0.2, 1.0, 17)
_FIT_HALF_TOKENS = np.geomspace(1.0, 1e6, 31)
_FIT_FILL = np.concatenate(([0.0], np.geomspace(16.0, 4096.0, 17)))
"""Coarse grids of the prefill fit; a finer search follows around the best point."""
_FIT_COARSE_ROWS = 512
"""Rows the prefill fit's grids read at most while choosing the curve (evenly spaced; the chosen
one is refined over every row). The catalog's curves have at most 444 rows, so their fits read
all; an engine's own AIConfigurator table (``pip install 'servesim[kernels]'``) has ~4,400,
which read whole for every KV-head weight and occupancy power took ~4 s a curve (a `simulate`
8.5 s where it had taken 2.9 s; now 2.9 s again)."""
_FIT_MEAN_WEIGHT = 0.25
"""The prefill fit minimises the median absolute log error (robust to rows a launch
dominates) plus this share of the mean (so that a minority of under-occupied rows still
counts)."""


def fit_prefill(
    p: dict[str, np.ndarray],
    peak: float,
    launch_s: float,
    rows: np.ndarray | None = None,
    head_dim: int = 128,
    dtype: str = "bf16",
) -> tuple[float, float, float, float, float, float]:
    """(efficiency, half_tokens, fill_ctas, fill_power, kv_head_weight, median abs. error) of
    :func:`prefill_seconds` over the ``dtype`` rows with ``head_dim`` (s >= 64 keys per query,
    every batch and head count): for each of :data:`KV_HEAD_WEIGHTS` and
    :data:`OCCUPANCY_POWERS`, ``e``, ``h`` and ``fill`` searched on a coarse grid, then a fine
    one around its best, minimising the median absolute log error (robust to the few rows a
    launch dominates) plus a share of the mean; the (weight, power) whose best is lowest. (The
    grids read at most :data:`_FIT_COARSE_ROWS` of the rows, evenly spaced, and the chosen
    curve is then refined on the fine grid over every row.) Raises ValueError when the table
    has no such rows."""
    # head_dim 128: the head size of nearly every model in the catalog; 64 runs differently
    # and has a curve of its own (NARROW_HEAD_DIM).
    use = (p["seq_len"] >= 64) & (p["dtype"] == dtype) & (p["head_dim"] == head_dim)
    if rows is not None:
        use &= rows
    if not use.any():
        raise ValueError(f"no {dtype} prefill rows of head_dim {head_dim}")
    s, t = p["seq_len"][use], p["seconds"][use]
    flops = p["tflops"][use] * 1e12 * t
    heads = p["num_heads"][use]
    blocks = heads * p["batch"][use] * (s / PREFILL_QUERY_TILE + 1.0)
    kv_ratio = p["num_kv_heads"][use] / heads
    every = slice(None)
    coarse = (
        every
        if len(s) <= _FIT_COARSE_ROWS
        else np.linspace(0, len(s) - 1, _FIT_COARSE_ROWS).astype(np.intp)
    )

    def search(effs, halves, fills, power, best, weight, at):
        stretch = 1.0 + halves[:, None] * kv_head_factor(kv_ratio[at], weight) / s[at]
        for fill in fills:
            work = flops[at] * occupancy_stretch(fill / blocks[at], power) / peak
            for e in effs:
                dev = np.abs(np.log((launch_s + (work / e) * stretch) / t[at]))
                err = np.median(dev, axis=1) + _FIT_MEAN_WEIGHT * dev.mean(axis=1)
                i = int(err.argmin())
                if err[i] < best[0]:
                    best = (float(err[i]), float(e), float(halves[i]), float(fill))
        return best

    def fine(e, h, fill, power, weight, at):
        """The fine grid around (``e``, ``h``, ``fill``) on rows ``at``."""
        fine_fill = [0.0] if fill == 0.0 else fill * np.geomspace(0.7, 1.4, 9)
        effs = np.clip(e + np.arange(-0.05, 0.0501, 0.01), 0.05, 1.0)
        halves = h * np.geomspace(0.5, 2.0, 21)
        return search(effs, halves, fine_fill, power, (math.inf, e, h, fill), weight, at)

    found = []
    for weight in KV_HEAD_WEIGHTS:
        for power in OCCUPANCY_POWERS:
            start = (math.inf, 1.0, 0.0, 0.0)
            _, e, h, fill = search(
                _FIT_EFFICIENCY, _FIT_HALF_TOKENS, _FIT_FILL, power, start, weight, coarse
            )
            found.append((*fine(e, h, fill, power, weight, coarse), power, weight))
    # (Without an occupancy limit, fill 0, every power is the same curve: the first stands.)
    _, e, h, fill, power, weight = min(found, key=lambda f: f[0])
    if coarse is not every:  # (the chosen curve refined on every row)
        _, e, h, fill = fine(e, h, fill, power, weight, every)
    power = power if fill > 0.0 else 0.0
    err = prefill_error(p, peak, launch_s, e, h, use, fill, power, weight)
    return e, h, fill, power, weight, err


def prefill_error(
    p, peak: float, launch_s: float, e: float, h: float, rows: np.ndarray, fill: float = 0.0,
    power: float = 0.0, weight: float = KV_HEAD_WEIGHT,
) -> float:  # fmt: skip
    """Median absolute relative error of the prefill curve ``(e, h, fill, power, weight)`` on
    ``rows``."""
    pred = prefill_seconds(p, rows, peak, launch_s, e, h, fill, power, weight)
    return float(np.median(np.abs(pred / p["seconds"][rows] - 1.0)))


def fit_decode(
    d: dict[str, np.ndarray],
    bandwidth: float,
    launch_s: float,
    kv_dtype: str | None = None,
    fixed_s: float | None = None,
    exclude: np.ndarray | None = None,
) -> tuple[float, float]:
    """(fraction of HBM bandwidth, median abs. error) of ``time = fixed + KV bytes / (BW ·
    e)`` over decode rows with at least ``DECODE_MIN_KV_BYTES`` of KV (of ``kv_dtype``'s rows
    when given: an FP8 cache is read at a fraction of its own); ``fixed``: ``fixed_s``, else
    one launch; ``exclude``: rows left out (the serial walk's, :func:`serial_rows`). (nan,
    nan) without rows."""
    kv_bytes = d["gbps"] * 1e9 * d["seconds"]
    rows = kv_bytes >= DECODE_MIN_KV_BYTES
    if exclude is not None:
        rows &= ~exclude
    if kv_dtype is not None:
        rows &= d["dtype"] == kv_dtype
    if not rows.any():
        return float("nan"), float("nan")
    fixed = launch_s if fixed_s is None else fixed_s
    t, b = d["seconds"][rows], kv_bytes[rows]
    e = read_fraction(t, b, bandwidth, fixed)
    pred = fixed + b / (bandwidth * e)
    return e, float(np.median(np.abs(pred / t - 1.0)))


def read_fraction(
    seconds: np.ndarray, kv_bytes: np.ndarray, bandwidth: float, fixed_s: float
) -> float:
    """The fraction ``e`` (at most 1) of ``bandwidth`` (bytes/s) that best prices calls of
    ``seconds`` reading ``kv_bytes`` as ``fixed_s + bytes / (bandwidth · e)``, in relative
    error."""
    # Least squares on relative error, in closed form for u = 1/e: minimise
    # Σ ((fixed + b·u/BW)/t − 1)².
    x, y = kv_bytes / (bandwidth * seconds), 1.0 - fixed_s / seconds
    u = float((x * y).sum() / (x * x).sum())
    return min(1.0, 1.0 / u)


def fit_decode_serial_rate(
    d: dict[str, np.ndarray], bandwidth: float, fixed_s: float, kv_dtype: str = "bf16"
) -> float:
    """Bytes per second one thread block reads the KV cache at when a decode kernel walks each
    sequence's KV serially: the median, over ``kv_dtype``'s multi-head rows (as many KV heads
    as query heads) of at least :data:`SERIAL_MIN_KV_BYTES` that read under
    :data:`SERIAL_MAX_SHARE` of the HBM peak, of their KV bytes over their time beyond
    ``fixed_s``, per thread block (``batch × KV heads``); 0 with fewer than two such rows.

    FlashAttention-2's varlen kernel, which vLLM V1 runs on Ampere, Ada and the Blackwell
    workstation parts, splits a sequence's KV across thread blocks only when it can fold a
    group of query heads into one (``set_params_splitkv`` runs only under
    ``seqlenq_ngroups_swapped``: every row one query token, more query than KV heads, no
    sliding window; vllm-project/flash-attention#190, vllm-project/vllm#51320). A multi-head
    model's decode, a step with a prompt chunk or draft tokens, and a sliding-window layer get
    one thread block per (row, query head), each reading its whole sequence at a fixed rate
    whatever the HBM could give: vLLM's tables read one 131,072-token sequence of 8 heads at
    178 GB/s on the A100 (8 blocks at 22 GB/s), two at 355, four at 700, eight at 1,350, where
    the grouped shapes read at ~1,500 from one sequence on. TensorRT-LLM's, SGLang's and the
    Hopper and Blackwell datacentre kernels split: their tables give 0.

    A slow row alone is not the sign (a kernel may read some shape slowly however it is cut):
    the rate per thread block must hold as the blocks double, the smallest two block counts
    among those rows within :data:`SERIAL_RATE_SPREAD` of each other; the rate is then the
    median over the rows of the block counts that hold it."""
    kv = d["gbps"] * 1e9 * d["seconds"]
    rows = (
        (d["dtype"] == kv_dtype)
        & (d["num_heads"] == d["num_kv_heads"])
        & (kv >= SERIAL_MIN_KV_BYTES)
        & (d["gbps"] * 1e9 < SERIAL_MAX_SHARE * bandwidth)
    )
    blocks = (d["batch"] * d["num_kv_heads"])[rows]
    per_block = kv[rows] / np.maximum(d["seconds"][rows] - fixed_s, 1e-9) / blocks
    counts = np.unique(blocks)
    if len(counts) < 2 or counts[1] < 2 * counts[0]:
        return 0.0
    first = float(np.median(per_block[blocks == counts[0]]))
    held = [c for c in counts if _within(np.median(per_block[blocks == c]), first)]
    if len(held) < 2 or held[1] != counts[1]:
        return 0.0
    return float(np.median(per_block[np.isin(blocks, held)]))


SERIAL_RATE_SPREAD = 0.25
"""How far (relative) the per-block rate of a larger block count may stray from the smallest
count's and still count as the same serial walk (:func:`fit_decode_serial_rate`)."""


def _within(x: float, ref: float) -> bool:
    return abs(x / ref - 1.0) <= SERIAL_RATE_SPREAD


def fit_decode_outside_walk(
    d: dict[str, np.ndarray],
    bandwidth: float,
    launch_s: float,
    kv_dtype: str,
    fixed_s: float | None,
    serial_rate: float,
) -> tuple[float, float, np.ndarray]:
    """(fraction, median abs. error, walked rows) of :func:`fit_decode` over the rows a serial
    walk at ``serial_rate`` does not govern: fitted once, the rows that walk under that fraction
    (:func:`serial_rows`) left out, fitted again (none walk at rate 0)."""
    em, err = fit_decode(d, bandwidth, launch_s, kv_dtype, fixed_s)
    walked = serial_rows(d, serial_rate, bandwidth, em)
    if walked.any():
        em, err = fit_decode(d, bandwidth, launch_s, kv_dtype, fixed_s, exclude=walked)
    return em, err, walked


def serial_rows(
    d: dict[str, np.ndarray], rate: float, bandwidth: float, efficiency: float
) -> np.ndarray:
    """The multi-head decode rows a serial walk at ``rate`` bytes/s per thread block reads
    slower than the fraction ``efficiency`` of ``bandwidth`` (``batch × KV heads × rate`` below
    it): the rows :func:`fit_decode` and :func:`decode_ramp` leave out. None selected when
    ``rate`` is 0."""
    if rate <= 0.0:
        return np.zeros(len(d["seconds"]), dtype=bool)
    blocks = d["batch"] * d["num_kv_heads"]
    return (d["num_heads"] == d["num_kv_heads"]) & (blocks * rate < efficiency * bandwidth)


def decode_floor(
    d: dict[str, np.ndarray], bandwidth: float, launch_s: float, kv_dtype: str
) -> float | None:
    """Seconds one decode-attention call of ``kv_dtype``'s rows takes however little it reads:
    the median, over rows under :data:`DECODE_FLOOR_MAX_KV_BYTES`, of their time less their
    bytes at full HBM bandwidth (at least one launch); None with fewer than three such rows."""
    kv_bytes = d["gbps"] * 1e9 * d["seconds"]
    rows = (kv_bytes < DECODE_FLOOR_MAX_KV_BYTES) & (d["dtype"] == kv_dtype)
    if rows.sum() < 3:
        return None
    return max(launch_s, float(np.median(d["seconds"][rows] - kv_bytes[rows] / bandwidth)))


DECODE_RAMP_STEP = 0.25
"""Width of the decode ramp's bins, in decades of KV bytes per call."""

DECODE_RAMP_MIN_ROWS = 3
"""Rows a bin of the decode ramp needs to give a point."""


def decode_ramp(
    d: dict[str, np.ndarray],
    bandwidth: float,
    fixed_s: float,
    efficiency: float | np.ndarray,
    kv_dtype: str,
    exclude: np.ndarray | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(log10 KV bytes per call, time ratio) of ``kv_dtype``'s decode rows between the floor's
    rows and the fraction's: what the floor (``fixed_s``) and the fraction (``efficiency``; or
    one per row of ``d``, its kernel regime's: :func:`regime_fractions`) leave out of a call of
    mid-size working set. Bins of :data:`DECODE_RAMP_STEP` decades from
    :data:`DECODE_FLOOR_MAX_KV_BYTES` to :data:`DECODE_MIN_KV_BYTES`; each bin with at least
    :data:`DECODE_RAMP_MIN_ROWS` rows gives a point at its rows' median log bytes and the
    median of their measured time over ``fixed_s + bytes / (bandwidth · efficiency)``, at
    least 1 (rows that fit the benchmark's L2 read faster than a serving step's evicted cache
    can); both ends are 1 (the floor and the fraction hold there). Empty without such rows.

    On the H200's TensorRT-LLM table the ratio climbs from ~1.1 at 6 MB to ~1.55 at 56 MB and
    back to 1.06 at 316 MB, and at each size the head shapes agree within ~0.1: the call's cost
    is a function of its working set (split-KV partitions, waves of thread blocks), which two
    numbers cannot carry. ``exclude``: rows left out (the serial walk's, :func:`serial_rows`)."""
    kv = d["gbps"] * 1e9 * d["seconds"]
    lo, hi = math.log10(DECODE_FLOOR_MAX_KV_BYTES), math.log10(DECODE_MIN_KV_BYTES)
    rows = (d["dtype"] == kv_dtype) & (kv >= DECODE_FLOOR_MAX_KV_BYTES) & (kv < DECODE_MIN_KV_BYTES)
    if exclude is not None:
        rows &= ~exclude
    if not rows.any():
        return (), ()
    log_bytes = c_math(math.log10, kv[rows])
    fraction = efficiency[rows] if isinstance(efficiency, np.ndarray) else efficiency
    ratio = d["seconds"][rows] / (fixed_s + kv[rows] / (bandwidth * fraction))
    xs, ys = [lo], [1.0]
    edges = np.arange(lo, hi, DECODE_RAMP_STEP)
    for left in edges:
        in_bin = (log_bytes >= left) & (log_bytes < min(left + DECODE_RAMP_STEP, hi))
        if in_bin.sum() >= DECODE_RAMP_MIN_ROWS:
            xs.append(float(np.median(log_bytes[in_bin])))
            ys.append(max(1.0, float(np.median(ratio[in_bin]))))
    if len(xs) == 1:
        return (), ()
    xs.append(hi)
    ys.append(1.0)
    return tuple(xs), tuple(ys)


def median_ramp(
    curves: list[tuple[tuple[float, ...], tuple[float, ...]]], suffix: str
) -> dict[str, tuple[float, ...]]:
    """The decode ramp fields (``decode_ramp_log_bytes<suffix>``, ``decode_ramp<suffix>``) of
    the median of ``curves`` (:func:`decode_ramp`), taken on one grid of the bins' edges;
    empty when no curve has points."""
    curves = [c for c in curves if c[0]]
    if not curves:
        return {}
    lo, hi = math.log10(DECODE_FLOOR_MAX_KV_BYTES), math.log10(DECODE_MIN_KV_BYTES)
    grid = np.linspace(lo, hi, round((hi - lo) / DECODE_RAMP_STEP) + 1)
    ratio = np.median([ramp_ratio(grid, c) for c in curves], axis=0)
    return {
        f"decode_ramp_log_bytes{suffix}": tuple(float(x) for x in grid),
        f"decode_ramp{suffix}": tuple(float(y) for y in ratio),
    }


def median_occupancy(fits: list[AttentionFit], suffix: str, every: bool = False) -> dict:
    """The occupancy fields (``fill_ctas<suffix>``, ``fill_power<suffix>``) of the median curve:
    the power most of ``fits`` chose (the smaller on a tie) and the median fill of the fits that
    chose it (a fill means a different limit under another power). Over the fits that have the
    curve (its efficiency above 0), or all of them with ``every``; empty when none has it."""
    have = [f for f in fits if every or getattr(f, f"efficiency{suffix}") > 0.0]
    if not have:
        return {}
    powers = [getattr(f, f"fill_power{suffix}") for f in have]
    power = min(set(powers), key=lambda n: (-powers.count(n), n))
    fills = [
        getattr(f, f"fill_ctas{suffix}") for f in have if getattr(f, f"fill_power{suffix}") == power
    ]
    return {f"fill_ctas{suffix}": float(np.median(fills)), f"fill_power{suffix}": power}


def median_kv_head_weights(fits: list[AttentionFit]) -> dict[str, float]:
    """The KV-head weights of the median curve: each curve's median over the fits that have it
    (the 128-wide bf16 curve: all of them)."""
    out = {"kv_head_weight": float(np.median([f.kv_head_weight for f in fits]))}
    for suffix in ("_hd64", "_fp8"):
        have = [f for f in fits if getattr(f, f"efficiency{suffix}") > 0.0]
        if have:
            weights = [getattr(f, f"kv_head_weight{suffix}") for f in have]
            out[f"kv_head_weight{suffix}"] = float(np.median(weights))
    return out


def ramp_ratio(log_bytes, curve: tuple[tuple[float, ...], tuple[float, ...]]):
    """The decode ramp ``curve`` (:func:`decode_ramp`) at ``log_bytes`` (a float or an array),
    linear in log bytes between its points and 1 outside them."""
    xs, ys = curve
    return np.interp(log_bytes, xs, ys, left=1.0, right=1.0)


@functools.cache
def attention_fit(
    gpu_name: str,
    peak: float,
    bandwidth: float,
    launch_s: float,
    backend: str | None = None,
    shipped: bool = True,
    engine_decode: bool = True,
) -> AttentionFit | None:
    """The attention curves fitted to ``gpu_name``'s own tables (``backend``'s with the
    extra, see :func:`load_tables`), or None without them. The catalog's tables come with
    their fits (``shipped_fits``), read back when fitted with these very inputs (``shipped``:
    False always fits afresh)."""
    t = load_tables(gpu_name, backend)
    if t is None or t.attention_prefill is None or t.attention_decode is None:
        return None
    engine = decode_engine(t, backend, engine_decode)
    if shipped and t.source == catalog_source(gpu_name):
        inputs = fit_inputs(peak, bandwidth, launch_s)
        stored = shipped_fit(gpu_name, fit_kind(engine), inputs)
        if stored is not None:
            return AttentionFit.from_stored(stored)
    return fit_tables(t, peak, bandwidth, launch_s, engine)


def decode_engine(t, backend: str | None, engine_decode: bool = True) -> str | None:
    """The engine whose own decode table ``t`` (a ``KernelTables``) prices decode attention
    for ``backend``: the backend itself when ``engine_decode`` and ``t`` has its table, else
    None (the tables' main decode table)."""
    return backend if engine_decode and backend in (t.engine_decode or ()) else None


def fit_kind(engine: str | None) -> str:
    """The ``fits.json`` entry of the attention fit whose decode fractions are ``engine``'s own
    (``attention``: the tables' TensorRT-LLM kernels)."""
    return "attention" if engine is None else f"attention_{engine}"


def fit_tables(
    t, peak: float, bandwidth: float, launch_s: float, engine: str | None = None
) -> AttentionFit | None:
    """The attention curves of one GPU's tables ``t`` (a ``KernelTables``), fitted afresh;
    with ``engine`` (a key of ``t.engine_decode``), the decode fractions are fitted to that
    engine's own decode table (its kernels, not TensorRT-LLM's, read the KV cache)."""
    if t.attention_prefill is None or t.attention_decode is None:
        return None
    p = t.attention_prefill
    d = t.engine_decode[engine] if engine is not None else t.attention_decode
    e, h, fill, power, weight, perr = fit_prefill(p, peak, launch_s)
    floor = decode_floor(d, bandwidth, launch_s, "bf16")
    fixed = launch_s if floor is None else floor
    # (The serial walk's rows read slower than the fraction: fitted apart, then left out of it.)
    serial = fit_decode_serial_rate(d, bandwidth, fixed)
    em, derr, walked = fit_decode_outside_walk(d, bandwidth, launch_s, "bf16", floor, serial)
    if not math.isfinite(em):
        return None
    extra: dict[str, float | tuple[float, ...]] = {}
    if walked.any():
        extra["decode_serial_rate"] = serial
    if floor is not None:
        extra["decode_fixed_s"] = floor
    extra["decode_ramp_log_bytes"], extra["decode_ramp"] = decode_ramp(
        d, bandwidth, fixed, em, "bf16", exclude=walked
    )

    def has_rows(head_dim: int, dtype: str) -> bool:
        return bool(
            ((p["head_dim"] == head_dim) & (p["dtype"] == dtype) & (p["seq_len"] >= 64)).any()
        )

    if has_rows(NARROW_HEAD_DIM, "bf16"):
        e64, h64, fill64, n64, w64, err64 = fit_prefill(p, peak, launch_s, head_dim=NARROW_HEAD_DIM)
        extra.update(
            efficiency_hd64=e64, half_tokens_hd64=h64, fill_ctas_hd64=fill64,
            fill_power_hd64=n64, kv_head_weight_hd64=w64, prefill_error_hd64=err64,
        )  # fmt: skip
    if has_rows(128, "fp8"):
        e8, h8, fill8, n8, w8, err8 = fit_prefill(p, peak, launch_s, dtype="fp8")
        extra.update(
            efficiency_fp8=e8, half_tokens_fp8=h8, fill_ctas_fp8=fill8, fill_power_fp8=n8,
            kv_head_weight_fp8=w8, prefill_error_fp8=err8,
        )  # fmt: skip
    floor8 = decode_floor(d, bandwidth, launch_s, "fp8")
    floor_fp8 = floor8 if floor8 is not None else floor
    em8, derr8 = fit_decode(d, bandwidth, launch_s, "fp8", floor_fp8)
    if math.isfinite(em8):
        extra.update(memory_efficiency_fp8=em8, decode_error_fp8=derr8)
        cells = fit_decode_cells(d, bandwidth, launch_s, "fp8", floor_fp8)
        extra["decode_cells_fp8"] = cells
        if floor8 is not None:
            extra["decode_fixed_s_fp8"] = floor8
        fixed8 = floor8 if floor8 is not None else fixed
        extra["decode_ramp_log_bytes_fp8"], extra["decode_ramp_fp8"] = decode_ramp(
            d, bandwidth, fixed8, em8, "fp8"
        )
        if cells:
            by_regime = regime_fractions(d, cells, em8)
            extra["decode_ramp_log_bytes_cells_fp8"], extra["decode_ramp_cells_fp8"] = decode_ramp(
                d, bandwidth, fixed8, by_regime, "fp8"
            )
    return AttentionFit(
        e, h, em, perr, derr, fill, fill_power=power, kv_head_weight=weight,
        decode_engine=engine, **extra,
    )  # fmt: skip


@functools.cache
def _all_fits() -> tuple[tuple[str, AttentionFit], ...]:
    """(name, fit) of every GPU that ships tables."""
    from servesim.hardware import load_hardware

    fits = []
    for name in gpus_with_tables():
        hw = load_hardware(name)
        fit = attention_fit(hw.name, hw.peak_flops["bf16"], hw.hbm_bandwidth, hw.kernel_launch_s)
        if fit is not None:
            fits.append((name, fit))
    return tuple(fits)


def attention_fit_for(
    hw, backend: str | None = None, engine_decode: bool = True
) -> tuple[AttentionFit, str] | None:
    """The attention curve for ``hw`` and where it comes from: its own tables (``backend``'s
    with the extra; without it, with ``engine_decode``, decode fitted to ``backend``'s own
    decode table where the catalog has one), else its same-architecture source's
    (``kernels.transfer_source_for``), else the median fractions of the GPUs with tables (None
    when no GPU ships any). (``engine_decode`` False: MLA models, whose decode kernels are not
    the engine's MHA ones and whose block scale was measured against the catalog's fraction.)"""
    peak = hw.peak_flops.get("bf16") or hw.peak_flops.get("fp16")
    if peak is None:
        return None

    def decode_note(gpu_name: str) -> str:
        """Where the decode fractions come from, when not the catalog's main table."""
        tables = load_tables(gpu_name, backend)
        if tables is not None and decode_engine(tables, backend, engine_decode) is not None:
            return f" (decode: attention_decode_{backend}.csv)"
        return ""

    own = attention_fit(
        hw.name, peak, hw.hbm_bandwidth, hw.kernel_launch_s, backend, engine_decode=engine_decode
    )
    if own is not None:
        tables = load_tables(hw.name, backend)
        where = "fitted to " + (tables.source if tables else hw.name.lower())
        return own, where + decode_note(hw.name)
    source = transfer_source_for(hw)
    if source is not None:
        from servesim.hardware import load_hardware

        src = load_hardware(source)
        fit = attention_fit(
            src.name, src.peak_flops["bf16"], src.hbm_bandwidth, src.kernel_launch_s, backend,
            engine_decode=engine_decode,
        )  # fmt: skip
        if fit is not None:
            where = f"fitted to catalog/kernels/{source.lower()} (same architecture)"
            return fit, where + decode_note(source)
    # (A GPU of an architecture some GPU with tables shares took that GPU's fit above,
    # ``transfer_source_for``: the median is for the architectures no table covers. Their
    # decode kernels are unknown: no serial walk, ``decode_serial_rate`` stays 0.)
    chosen = _all_fits()
    if not chosen:
        return None
    fits = [f for _, f in chosen]

    def median(field: str) -> float:
        """The median of ``field`` over the fits that have it (the optional curves are 0 where
        a GPU's table had no such rows), 0 when none does."""
        values = [getattr(f, field) for f in fits if getattr(f, field) > 0.0]
        return float(np.median(values)) if values else 0.0

    med = AttentionFit(
        efficiency=median("efficiency"),
        half_tokens=median("half_tokens"),
        memory_efficiency=median("memory_efficiency"),
        prefill_error=float("nan"),
        decode_error=float("nan"),
        **median_occupancy(fits, "", every=True),
        **median_occupancy(fits, "_hd64"),
        **median_occupancy(fits, "_fp8"),
        **median_kv_head_weights(fits),
        **{
            field: median(field)
            for field in (
                "efficiency_hd64",
                "half_tokens_hd64",
                "efficiency_fp8",
                "half_tokens_fp8",
                "memory_efficiency_fp8",
                "decode_fixed_s",
                "decode_fixed_s_fp8",
            )
        },
        **median_ramp([f.decode_ramp_curve("bf16") for f in fits], ""),
        **median_ramp([f.decode_ramp_curve("fp8") for f in fits if f.decode_ramp_fp8], "_fp8"),
    )
    return med, "median of the fits of " + ", ".join(name for name, _ in chosen)
