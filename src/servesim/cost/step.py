"""Time of one forward step of a batch: the roofline over the operators of ``operators.py``.

Each operator takes ``max(FLOPs / (peak × efficiency), bytes / (bandwidth × efficiency))``
plus a fixed ``kernel_launch_s`` per kernel it launches (or link latency per ring step for
communication); the GPU part of a step adds them up (kernels run one after another).
``build_step_cost`` (``build.py``) folds all of that into a few small arrays once, so that
timing a step — this module, the hot path — is: reduce the batch to the features of
``features.py`` (one Gram product of the per-row columns), one small matrix product, one
elementwise ``max`` and a sum. Where the time goes (groups, rungs, work, energy) is
``accounting.py``; the pipeline formulas are ``pipeline.py``.

Around the GPU part (``gpu``) sit two host terms:

- ``host``: CPU time of the serving loop (scheduling, input preparation, sampling bookkeeping,
  detokenisation; ``CostParams.host_*``). With CUDA graphs and async scheduling
  (``cuda_graphs=True``) it overlaps the GPU; without, it adds, and each kernel also waits for
  the CPU to issue it (``eager_launch_s``).
- ``overhead``: per-step time nothing hides (``step_overhead_s``, ``overhead_per_seq_s``,
  ``overhead_per_token_s``; what calibration fits).

    step = max(gpu, host) + overhead          (cuda_graphs and host_overlap)
    step = gpu + host + overhead              (cuda_graphs, host work between steps: vLLM V0)
    step = gpu_eager + host + overhead        (no CUDA graphs)

Pipeline parallelism: a step of ``B`` sequences is split into ``m = min(pp_microbatches, B)``
equal micro-batches that flow through the ``pp`` stages. With ``t_s`` the time of one
micro-batch in stage ``s`` (its hand-off to the next stage included),

    gpu = Σ_s t_s + (m − 1) · max_s t_s       (every step fills and drains the pipeline)
    gpu = max(m · max_s t_s, Σ_s t_s)         (pp_overlap_steps: steps overlap, no drain)

and the bubble — the share of stage-time the stages sit idle — is ``1 − m Σ_s t_s / (pp · gpu)``,
``(pp − 1)/(m + pp − 1)`` for equal stages. Attention data parallelism (``dp > 1``) times one
rank's equal share of the batch, and the routed experts on the tokens of every rank.

Units: seconds, FLOPs, bytes. FLOPs and bytes reported by ``StepTime`` are per GPU (one TP
rank) summed over all pipeline stages; with ``tp = pp = dp = 1`` they are the whole model's.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from servesim.cost import features as _F  # feature indices: _F.T, _F.P, ...
from servesim.cost import kernels as kernels_mod
from servesim.cost.accounting import StepAccounting
from servesim.cost.attention_fit import occupancy_stretch
from servesim.cost.features import FeatureMap
from servesim.cost.libm import c_math
from servesim.cost.operator import Operator
from servesim.cost.params import CostParams, Parallelism
from servesim.cost.pipeline import PipelineTime, bubble_fraction, pipeline_seconds
from servesim.cost.resolve import ResolvedParams
from servesim.hardware import Hardware
from servesim.model import ModelSpec

QUERY_TILE = 128
"""Queries per thread block of the FlashAttention-style prefill kernels (FA2/FA3, FlashInfer)."""

_sum = np.add.reduce  # (ndarray.sum without its Python layer: the same sums)


def interp_one(
    x: float, xs: Sequence[float], ys: Sequence[float], left: float, right: float
) -> float:
    """``np.interp(x, xs, ys, left, right)`` for one float, in numpy's arithmetic (its slope
    between the points around ``x``, times the distance from the left one, plus its value; its
    exact-hit and last-point cases), without a numpy call: so a step priced alone and a step
    of a span (``np.interp`` over the span's rows) get the same bits."""
    n = len(xs)
    if x < xs[0]:
        return left
    if x > xs[n - 1]:
        return right
    j = bisect.bisect_right(xs, x) - 1
    if j >= n - 1:
        return ys[n - 1]
    if xs[j] == x:
        return ys[j]
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    return slope * (x - xs[j]) + ys[j]


_SPAN_BASES = 4096
"""Products of steps' common features a cost model keeps (:meth:`StepCostModel._base`: one per
batch)."""


def hot_product(f: np.ndarray, hot: np.ndarray) -> np.ndarray:
    """``f @ hot`` for one feature vector, summed over the features in their order.

    NOTE: not ``f @ hot``: BLAS sums in an order of its own, which differs between CPUs (and
    from the compiled kernels' loop, ``_compiled_kernels._product``), so a step's last bits
    would depend on the machine. A fixed order gives the same bits everywhere, compiled or
    not. (A zero feature's terms are 0.0 and leave a sum's bits as they are: the kernel skips
    them.)"""
    # (numpy reduces a non-contiguous axis row by row, in order: sequential where ``hot`` has
    # two columns or more, as it always has: the host and overhead columns at least.)
    return _sum(f[:, None] * hot, axis=0)


def span_hot_product(
    f: np.ndarray, hot: np.ndarray, varying: Sequence[int], base: np.ndarray
) -> np.ndarray:
    """``f @ hot`` for the rows of a decode span: ``base`` (:func:`hot_product` of the steps'
    common features, the first row without the ``varying`` ones) plus each row's ``varying``
    terms, added in that order: the compiled span kernel's arithmetic
    (``_compiled_kernels.span_steps_into``), bit for bit."""
    if len(varying) == 0:
        return np.tile(base, (len(f), 1))
    first, *others = varying
    x = np.multiply.outer(f[:, first], hot[first])
    x += base  # (term + base: the same bits as base + term)
    for i in others:
        x += np.multiply.outer(f[:, i], hot[i])
    return x


def occupancy_factor(a: np.ndarray, fill_tiles: float, power: float = 0.0) -> np.ndarray:
    """How much longer prefill attention runs than its FLOPs say because its thread blocks
    cannot fill the GPU, for feature rows ``a`` (n, features'), shape (n,):
    ``attention_fit.occupancy_stretch(fill / tiles, power)`` — ``max(1, fill / tiles)`` at
    power 0, ``1 + fill / tiles`` at 1 — with ``tiles ≈ T_R / 128 + B`` query tiles per head
    (each row adds one partial tile) and ``fill`` the tiles per head that fill every SM (both
    fitted to the measured prefill table). Under the limit the kernel takes about one wave of
    its longest tiles: the time grows with the prompt, not its square. Steps without prompt
    work (every row one token) are 1: decode kernels split the KV sequence instead."""
    steps = np.maximum(a[:, _F.ONE], 1.0)
    tokens, rows = a[:, _F.T_R] / steps, a[:, _F.B] / steps
    tiles = tokens / QUERY_TILE + rows
    out = occupancy_stretch(fill_tiles / np.maximum(tiles, 1.0), power)
    return np.where(tokens > rows, out, 1.0)


SERIAL_NEVER, SERIAL_MULTI_TOKEN, SERIAL_ALWAYS = 0, 1, 2
"""When an attention column's decode walks each sequence's KV serially (``DecodeRamp.serial``):
never, in steps where some row computes more than one token (a prompt chunk, draft tokens:
FlashAttention-2's varlen kernel splits only one-token rows of grouped-query heads), or in
every step (a multi-head model, a sliding-window layer)."""


def walk_factor(rows: float, saturating: float, heads: float, wave: float) -> float:
    """How much longer a decode call whose kernel walks each row's KV in one thread block per
    KV head takes than its bytes at the fitted fraction (1: no longer), for ``rows`` rows of
    about the same length (the step's mean row).

    ``N = rows × heads`` blocks each read ``1/N`` of the call's KV at one block's rate; the
    fraction's rate takes ``saturating`` blocks. Up to ``wave`` blocks (the GPU's SMs; 0: no
    limit) run at once, the rest in further waves, each as long as its blocks' walk at the
    slower of one block's rate and their share of the fraction: ``((W − 1) · max(saturating,
    wave) + max(saturating, last)) / N`` for ``W`` waves, the last of ``last`` blocks —
    ``max(saturating / N, 1)`` in one wave. (vLLM's A100 decode table: one 8-head sequence
    reads at 8 blocks × 22 GB/s, 2 and 4 sequences at twice and four times that; 16 and 32
    sequences — 128 and 256 blocks on 108 SMs, 2 and 3 waves — at ~1,340 GB/s where 64
    sequences and more read at ~1,600.)"""
    blocks = max(rows, 1.0) * heads
    if wave <= 0.0 or blocks <= wave:
        return max(saturating, blocks) / blocks
    waves = math.ceil(blocks / wave)
    last = blocks - (waves - 1) * wave
    return ((waves - 1) * max(saturating, wave) + max(saturating, last)) / blocks


def walk_factors(rows: np.ndarray, saturating: float, heads: float, wave: float) -> np.ndarray:
    """:func:`walk_factor` of each of ``rows`` (the same arithmetic, vectorised)."""
    blocks = np.maximum(rows, 1.0) * heads
    one_wave = np.maximum(saturating, blocks) / blocks
    if wave <= 0.0:
        return one_wave
    waves = np.ceil(blocks / wave)
    last = blocks - (waves - 1) * wave
    more = ((waves - 1) * max(saturating, wave) + np.maximum(saturating, last)) / blocks
    return np.where(blocks <= wave, one_wave, more)


def reread_miss(tokens: float, reread_tokens: float) -> float:
    """The share of a serially walked call's KV that its grouped query heads after the first
    read again from HBM: 0 while the KV the walk sweeps between two query heads of one KV head
    fits the GPU's L2, all of it from twice that, linear between (``tokens``: KV tokens the
    call reads; ``reread_tokens``: the tokens whose bytes per KV head fill the L2; 0: unknown,
    none re-read).

    FlashAttention-2's forward grid is (query tiles, sequences, query heads), query heads
    slowest: a row's blocks for two query heads of one KV head start a whole sweep of every
    row's blocks apart, so the KV head is still in L2 only when that sweep's KV is (a cyclic
    pattern larger than the cache misses under LRU). Plain float arithmetic: the compiled
    kernels compile this function itself."""
    if reread_tokens <= 0.0:
        return 0.0
    return min(max(tokens / reread_tokens - 1.0, 0.0), 1.0)


def reread_misses(tokens: np.ndarray, reread_tokens: float) -> np.ndarray:
    """:func:`reread_miss` of each of ``tokens`` (the same arithmetic, vectorised)."""
    if reread_tokens <= 0.0:
        return np.zeros_like(tokens)
    return np.minimum(np.maximum(tokens / reread_tokens - 1.0, 0.0), 1.0)


@dataclass(frozen=True, eq=False)
class DecodeRamp:
    """The decode tables' ramp on the attention operators' memory side: a call reading ``b``
    bytes of KV takes ``ratio(log10 b)`` times the floor plus its bytes at the fitted fraction
    (``attention_fit.decode_ramp``; 1 below 4 MB and from 1 GB, where the floor and the
    fraction were measured).

    With ``serial`` (a kernel that walks a sequence's KV in one thread block per query head,
    ``CostParams.decode_serial_walk``) a call also takes at least its mean row's walk
    (:func:`walk_factor`): the KV bytes at the fitted fraction times the walk's factor, for
    ``rows × KV heads per GPU`` blocks. (The longest row sets the real kernel's time; the mean
    row is what the step's features carry.) A grouped-query walk also reads its KV once more
    for each further query head of a KV head whose KV has left the L2 (:func:`reread_miss`):
    the call takes the longer of its walk and its bytes, ``1 + rereads × miss`` times the
    fraction's."""

    columns: tuple[tuple[int, int, float], ...]
    """Per attention operator (regular and sliding-window paths): its column, the feature
    counting its KV tokens read (``K`` or ``K_SW``) and the KV bytes one call reads per KV token
    (one layer, one GPU)."""
    log_bytes: tuple[float, ...]
    ratio: tuple[float, ...]
    serial: tuple[tuple[int, float, float, float, float, float, float], ...] = ()
    """Per column of ``columns`` (empty: none walks serially): when it walks (``SERIAL_*``),
    the blocks whose walks together read at the fitted fraction (``fraction × HBM bandwidth /
    block rate``), the KV heads per GPU (blocks per row), the blocks that run at once (the
    GPU's SMs; 0: one wave), the seconds its KV reads take per KV token at the fitted
    fraction (all its layers: the memory side's ``K`` or ``K_SW`` coefficient), the reads
    each KV head may take beyond the first (query heads per KV head − 1), and the KV tokens a
    call reads when its bytes per KV head fill the L2 (0: unknown)."""

    def _column_factors(self, a: np.ndarray, j: int, c_library: bool = False) -> np.ndarray:
        """Column ``j``'s stretch for feature rows ``a``, shape (n,); ``c_library``: see
        :meth:`stretch`."""
        xs, ys = self._curve
        _, feature, per_token = self.columns[j]
        per_call = a[:, feature] * per_token
        one = a[:, _F.ONE]
        if len(one) and one.max() > 1.0:  # (rows summing a span's steps: the mean per call)
            per_call /= np.maximum(one, 1.0)
        np.maximum(per_call, 1.0, out=per_call)
        log_bytes = c_math(math.log10, per_call) if c_library else np.log10(per_call)
        return np.interp(log_bytes, xs, ys, 1.0, 1.0)

    def stretch(self, mem: np.ndarray, a: np.ndarray, c_library: bool = False) -> None:
        """Apply the ramp to ``mem`` (memory-side seconds, rows × operators, changed in place)
        for feature rows ``a``: a column at a time, by plain indexing (one or two columns).

        ``c_library``: the logarithms the C library's (:func:`~servesim.cost.libm.c_math`),
        as the engine's step pricing takes them (the compiled kernels' bits); else numpy's
        vector code, which may round an ulp apart and is ~10x faster (a run's totals over
        every step record, which both paths take alike)."""
        for j, (col, feature, _) in enumerate(self.columns):
            factor = self._column_factors(a, j, c_library)
            mem[:, col] *= factor
            if self.serial and self.serial[j][0] != SERIAL_NEVER:
                extra = self._serial_extras(a, j, factor)
                mem[:, col] += a[:, feature] * self.serial[j][4] * extra

    def _serial_extras(self, a: np.ndarray, j: int, factor: np.ndarray) -> np.ndarray:
        """Column ``j``'s serial walk and re-reads beyond its ramped fraction time (``factor``)
        for feature rows ``a``, in fraction times (0 where it does not walk), shape (n,)."""
        mode, saturating, heads, wave, _, rereads, reread_tokens = self.serial[j]
        steps = np.maximum(a[:, _F.ONE], 1.0)
        walk = walk_factors(a[:, _F.B] / steps, saturating, heads, wave)
        misses = rereads * reread_misses(a[:, self.columns[j][1]] / steps, reread_tokens)
        extra = np.maximum(np.maximum(walk - factor, misses), 0.0)
        if mode == SERIAL_MULTI_TOKEN:
            extra = np.where(a[:, _F.T] > a[:, _F.B], extra, 0.0)
        return extra

    @functools.cached_property
    def _curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The ramp's points as arrays (``np.interp`` would convert the tuples every call)."""
        return np.array(self.log_bytes), np.array(self.ratio)

    def stretch_one(self, mem: np.ndarray, f: np.ndarray) -> None:
        """Apply the ramp to ``mem`` (one row's memory-side seconds per operator, changed in
        place) for the feature vector ``f``."""
        for j, ((col, feature, _), factor) in enumerate(
            zip(self.columns, self.factors_one(f), strict=True)
        ):
            if factor != 1.0:
                mem[col] *= factor
            if self.serial:
                mode, saturating, heads, wave, kv_seconds, rereads, reread_tokens = self.serial[j]
                if mode == SERIAL_NEVER or (mode == SERIAL_MULTI_TOKEN and f[_F.T] <= f[_F.B]):
                    continue
                steps = max(float(f[_F.ONE]), 1.0)
                walk = walk_factor(float(f[_F.B]) / steps, saturating, heads, wave)
                misses = rereads * reread_miss(float(f[feature]) / steps, reread_tokens)
                extra = max(walk - factor, misses)
                if extra > 0.0:
                    mem[col] += float(f[feature]) * kv_seconds * extra

    def factors_one(self, f: np.ndarray) -> list[float]:
        """Each column's stretch for one feature vector ``f``, in floats (no numpy calls on the
        hot path): what :meth:`stretch` applies to a row."""
        xs, ys = self.log_bytes, self.ratio
        steps = max(float(f[_F.ONE]), 1.0)
        out = []
        for _, feature, per_token in self.columns:
            b = float(f[feature]) / steps * per_token
            out.append(interp_one(math.log10(b) if b > 1.0 else 0.0, xs, ys, 1.0, 1.0))
        return out


@dataclass(frozen=True, eq=False)
class OperatorSides:
    """Per-operator coefficient matrices of one operator list, shape (features', operators)
    where ``features'`` is ``NUM_FEATURES`` (or twice that with ``dp > 1``: rank block, then
    global block)."""

    compute: np.ndarray
    """Seconds of the compute side (FLOPs and GEMM padding), launches included."""
    memory: np.ndarray
    """Seconds of the memory (or link) side, launches/latencies included."""
    eager: np.ndarray | None
    """CPU seconds to issue the operator's kernels without CUDA graphs; None with graphs."""
    busy_compute: np.ndarray
    """Compute-side seconds without launches (0 for link operators): power model."""
    busy_memory: np.ndarray
    """HBM-side seconds without launches (0 for link operators): power model."""
    flops: np.ndarray
    nbytes: np.ndarray
    is_link: np.ndarray
    curves: kernels_mod.MeasuredCurves | None = None
    """Operators priced from measured tables (their linear coefficients are zero)."""
    rung: np.ndarray | None = None
    """Index into ``RUNGS`` of each operator."""
    occupancy: tuple[np.ndarray, float, float] | None = None
    """(columns of the prefill-attention operators, query tiles that fill the GPU, the
    stretch's power): see :func:`occupancy_factor`; None: no occupancy limit (roofline rung, or
    no such operator)."""
    ramp: DecodeRamp | None = None
    """The decode tables' ramp on the attention operators' memory side; None: none."""

    def compute_seconds(self, a: np.ndarray) -> np.ndarray:
        """Compute-side seconds of every operator for feature rows ``a``, shape (n, operators):
        the linear sides, with prefill attention's FLOP time stretched when its query tiles
        cannot fill the GPU."""
        comp = a @ self.compute
        if self.occupancy is not None and (a[:, _F.T_R] > a[:, _F.B]).any():
            cols, fill, power = self.occupancy
            stretch = occupancy_factor(a, fill, power) - 1.0
            comp[:, cols] += (a @ self.busy_compute[:, cols]) * stretch[:, None]
        return comp

    def memory_seconds(self, a: np.ndarray) -> np.ndarray:
        """Memory-side seconds of every operator for feature rows ``a``, shape (n, operators):
        the linear side, with the attention calls stretched by the decode ramp."""
        mem = a @ self.memory
        if self.ramp is not None:
            self.ramp.stretch(mem, a)
        return mem

    def seconds(self, a: np.ndarray) -> np.ndarray:
        """Per-operator seconds for feature rows ``a`` (n, features'): shape (n, operators)."""
        sec = np.maximum(self.compute_seconds(a), self.memory_seconds(a))
        if self.curves is not None:
            sec[:, self.curves.columns] = self.curves.seconds(a)
        if self.eager is not None:
            np.maximum(sec, a @ self.eager, out=sec)
        return sec


def padded_context(context_lens: np.ndarray, pad: int) -> np.ndarray:
    """``context_lens`` with ``pad`` more rows over an empty context (a CUDA graph's padded
    rows, tokens)."""
    return np.concatenate((context_lens, np.zeros(pad, dtype=context_lens.dtype)))


def padded_rows(
    new_tokens: np.ndarray, context_lens: np.ndarray, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """A step's rows with ``pad`` more of one token over an empty context (what a captured
    CUDA graph runs for the sizes between the batch and the graph's)."""
    ones = np.ones(pad, dtype=new_tokens.dtype)
    return np.concatenate((new_tokens, ones)), padded_context(context_lens, pad)


@dataclass(frozen=True, eq=False)
class StepCostModel(StepAccounting):
    """Times forward steps of one model replica. Build with :func:`build_step_cost`.

    Batch convention for every method: row ``i`` is one sequence with ``context_lens[i]`` tokens
    already in its KV cache and ``new_tokens[i]`` tokens computed this step (1 for a decode, a
    chunk for a prefill). Arrays are 1-D, equal length, non-negative integers (as ints or
    floats); the hot path does not check them.

    Every operator's time is ``max(compute · f, memory · f)`` for the step's feature vector
    ``f`` (see ``operators.py``): compute and memory seconds are linear in the features (the GEMM
    efficiency curve included, see ``coefficients.padding_flops``), and the fixed
    launch/latency seconds are added to both sides (``max(a + L, b + L) = max(a, b) + L``). The
    GPU part of a step is the sum over the operators (pipelined under PP); host and overhead are
    combined with it as the module docstring says.

    ``*_from_features`` methods take one feature vector or rows of them; a row may also be the
    sum of a decode span's per-step features (``ONE`` = steps), as the engine records them.
    """

    model: ModelSpec
    hardware: Hardware
    parallelism: Parallelism
    params: CostParams
    resolved: ResolvedParams
    operators: tuple[Operator, ...]
    feature_map: FeatureMap
    _ops: OperatorSides  # the whole-model operators (every stage)
    _stages: OperatorSides | None  # every stage's operators, rows grouped by stage (pp > 1)
    _stage_of: np.ndarray | None  # (stage rows, pp) 0/1
    _fixed: np.ndarray  # (features, 2): [overhead, host] seconds per feature unit
    _group_idx: np.ndarray  # (operators,) index into GROUPS
    _groups: tuple[str, ...]  # groups reported in by_group
    _microbatches: int  # pp_microbatches resolved (1 without PP)
    _simple: bool  # pp == dp == 1: features are used as they come
    _hot: np.ndarray | None
    """Without PP or DP: [compute | memory | kernel issue (without CUDA graphs) | busy compute
    of the ``occupancy`` columns | fixed] in one matrix, for the one product of the hot
    path."""

    # --- the hot path -------------------------------------------------------------------------

    @property
    def kernel_source(self) -> str | None:
        """Where the measured kernel tables pricing this model come from (None: no tables)."""
        tables = self.resolved.tables
        return tables.source if tables is not None else None

    def features(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> np.ndarray:
        """The batch reduced to the step features (see ``FeatureMap.step``)."""
        return self.feature_map.step(new_tokens, context_lens)

    def step_seconds(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> float:
        """Seconds of one forward step of the batch (hot path: a few µs for 256 rows)."""
        if len(new_tokens) == 0:
            return 0.0
        return float(self.seconds_from_features(self.feature_map.step(new_tokens, context_lens)))

    def seconds_from_features(
        self, features: np.ndarray, decode_span: bool = False
    ) -> np.ndarray | float:
        """Step seconds of one feature vector (a float) or of rows of them (an array).

        ``decode_span``: the rows are the steps of one decode span, whose rows and tokens do
        not change from step to step: the measured curves, which read only those, are
        evaluated once (as for a single step) rather than per row.

        NOTE: ``cost/_compiled_kernels.py`` mirrors this hot path term by term (the
        ``compiled`` option); a term added here goes there too (``tests/test_compiled.py``
        compares the two on eight models, to the bit)."""
        f = np.asarray(features, dtype=np.float64)
        if self._hot is not None:  # the hot path: one small product
            # (One arithmetic for a step alone and a span's steps: the product of the features
            # a decode span does not vary, then those it varies, each in order.)
            if f.ndim == 1:
                order, hot_in_order = self._varying_last
                x = hot_product(f[order], hot_in_order)
            elif decode_span:
                varying = self._varying
                x = span_hot_product(f, self._hot, varying, self._base(f[0], varying))
            else:  # (rows of unrelated steps: a run's totals, which both paths take alike)
                x = f @ self._hot
            k = len(self.operators)
            ops = self._ops
            curves, occupancy = ops.curves, ops.occupancy
            occ = 3 * k if ops.eager is not None else 2 * k  # first busy-compute column
            if f.ndim == 1:
                comp = x[:k]
                if occupancy is not None and f[_F.T_R] > f[_F.B]:
                    cols, fill, power = occupancy
                    # (occupancy_factor for one row, in floats: no numpy calls on the hot path)
                    steps = max(f[_F.ONE], 1.0)
                    tiles = f[_F.T_R] / steps / QUERY_TILE + f[_F.B] / steps
                    short = float(fill / max(tiles, 1.0))  # (fill / tiles)
                    if power == 0.0:
                        stretch = max(short, 1.0) - 1.0
                    else:
                        stretch = (1.0 + short**power) ** (1.0 / power) - 1.0
                    if stretch > 0.0:
                        comp = comp.copy()
                        comp[cols] += x[occ : occ + len(cols)] * stretch
                mem = x[k : 2 * k]  # (a view of this call's product: stretched in place)
                if ops.ramp is not None:
                    ops.ramp.stretch_one(mem, f)
                sec = np.maximum(comp, mem)
                if ops.eager is None:
                    gpu = float(_sum(sec))
                    if curves is not None:
                        gpu += curves.total(f)
                else:
                    # Without CUDA graphs each operator takes at least its kernels' issue
                    # time, the measured ones too: their seconds go in before the max.
                    if curves is not None:
                        sec[curves.columns] = curves.seconds_one(f)
                    gpu = float(_sum(np.maximum(sec, x[2 * k : 3 * k], out=sec)))
                return self._combine(gpu, float(x[-2]), float(x[-1]))
            comp = x[:, :k]
            if occupancy is not None and not decode_span and (f[:, _F.T_R] > f[:, _F.B]).any():
                cols, fill, power = occupancy
                stretch = occupancy_factor(f, fill, power) - 1.0
                comp = comp.copy()
                comp[:, cols] += x[:, occ : occ + len(cols)] * stretch[:, None]
            mem = x[:, k : 2 * k]  # (a view of this call's product: stretched in place)
            if ops.ramp is not None:
                ops.ramp.stretch(mem, f, c_library=decode_span)
            sec = np.maximum(comp, mem)
            if ops.eager is None:
                gpu = _sum(sec, axis=1)
                if curves is not None:
                    gpu = gpu + (curves.total(f[0]) if decode_span else curves.totals(f))
            else:
                if curves is not None:
                    sec[:, curves.columns] = curves.seconds(f, c_library=decode_span)
                gpu = _sum(np.maximum(sec, x[:, 2 * k : 3 * k], out=sec), axis=1)
            return self._combine(gpu, x[:, -2], x[:, -1])
        rows = np.atleast_2d(f)
        gpu = self._gpu(rows, per_operator=False)[0]
        over, host = (rows @ self._fixed).T
        out = self._combine(gpu, over, host)
        return float(out[0]) if f.ndim == 1 else out

    def _base(self, first: np.ndarray, varying: Sequence[int]) -> np.ndarray:
        """:func:`hot_product` of a step's features but the ``varying`` ones (a decode span's
        common features, from its first row ``first``), which depend on its batch alone: kept
        per batch (up to :data:`_SPAN_BASES` of them), a dictionary lookup instead of two
        numpy calls."""
        fixed = first.copy()
        for i in varying:
            fixed[i] = 0.0
        key = fixed.tobytes()
        bases = self._bases
        base = bases.get(key)
        if base is None:
            if len(bases) >= _SPAN_BASES:
                bases.clear()
            base = bases[key] = hot_product(fixed, self._hot)
        return base

    @functools.cached_property
    def _bases(self) -> dict[bytes, np.ndarray]:
        return {}

    @functools.cached_property
    def _varying_last(self) -> tuple[np.ndarray, np.ndarray]:
        """(The features in the order a step's product sums them — those a decode span does
        not vary, then :attr:`_varying` — and the hot matrix's rows in that order): summed
        feature by feature (:func:`hot_product`), the common part first and the varying
        terms added to it, as :func:`span_hot_product` adds them to a span's common part
        (a zero feature's terms, 0.0, leave the sums' bits as they are)."""
        varying = self._varying
        order = np.array(
            [i for i in range(_F.NUM_FEATURES) if i not in varying] + list(varying),
            dtype=np.intp,
        )
        return order, np.ascontiguousarray(self._hot[order])

    @functools.cached_property
    def _varying(self) -> tuple[int, ...]:
        """The features that change from step to step of a decode span, ascending: the pairs
        and KV tokens (their absorbed forms under MLA absorption), and with a sliding window
        its pairs and KV tokens too (``FeatureMap.decode``). Every step's product is the
        product of its other features plus these terms in this order (the compiled kernels
        take them from ``CompiledStepCost``'s packed model)."""
        fm = self.feature_map
        varying = [_F.P_A, _F.K_A] if fm.absorb_max >= 1.0 else [_F.P, _F.K]
        if fm.window:
            varying += [_F.P_SW, _F.K_SW]
        return tuple(sorted(varying))

    def step_with_features(
        self, new_tokens: np.ndarray, context_lens: np.ndarray, pad: int = 0
    ) -> tuple[float, np.ndarray]:
        """(seconds, features) of one step; seconds equal :meth:`step_seconds`. ``pad``: more
        rows of one token over an empty context (a CUDA graph's padding)."""
        if pad:
            new_tokens, context_lens = padded_rows(new_tokens, context_lens, pad)
        f = self.feature_map.step(new_tokens, context_lens)
        return float(self.seconds_from_features(f)), f

    def decode_span_with_features(
        self, context_lens: np.ndarray, num_steps: int, pad: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(seconds of each step, features of each step, shape (num_steps, features)) of a
        decode span; the seconds equal :meth:`decode_span_seconds`. ``pad``: more rows of one
        token over an empty context at every step (a CUDA graph's padding, as
        :meth:`step_with_features` prices it step by step)."""
        f = self.feature_map.decode(context_lens, num_steps, pad)
        return self.seconds_from_features(f, decode_span=True), f

    def decode_round_with_features(
        self, context_lens: np.ndarray, num_steps: int, pad: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`decode_span_with_features` for a multi-step scheduling round: the host
        schedules and prepares inputs once for the whole round, so the host time a step
        exposes (:meth:`host_bound_seconds_from_features`) is paid by its first step only."""
        seconds, f = self.decode_span_with_features(context_lens, num_steps, pad)
        if num_steps > 1:
            seconds = np.array(seconds, dtype=np.float64)
            seconds[1:] -= self.host_bound_seconds_from_features(f[1:])
        return seconds, f

    def decode_span_seconds(self, context_lens: np.ndarray, num_steps: int) -> np.ndarray:
        """Seconds of ``num_steps`` consecutive decode steps, shape (num_steps,).

        Step ``j`` decodes one token for every row with context ``context_lens + j``; equal to
        ``[step_seconds(ones, context_lens + j) for j in range(num_steps)]``, vectorised over j.
        """
        if num_steps <= 0 or len(context_lens) == 0:
            return np.zeros(max(int(num_steps), 0))
        f = self.feature_map.decode(context_lens, num_steps)
        return self.seconds_from_features(f, decode_span=True)

    # --- the pieces of a step -----------------------------------------------------------------

    @property
    def host_overlaps(self) -> bool:
        """Whether the host's per-step work hides behind the GPU step."""
        return self.params.cuda_graphs and self.params.host_overlap

    def _combine(self, gpu, over, host):
        if self.host_overlaps:
            return np.maximum(gpu, host) + over
        return gpu + host + over

    def _split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features of one micro-batch on one rank, micro-batches, steps) of feature rows.

        Rows may be span sums: the per-step average is split. With ``dp > 1`` the result has
        two blocks: one rank's share (attention, dense layers) and the micro-batch's tokens of
        every rank (the routed experts under wide EP).
        """
        if self._simple:
            ones = np.ones(len(rows))
            return rows, ones, ones
        steps = rows[:, _F.ONE]
        a = rows / np.where(steps > 0, steps, 1.0)[:, None]
        seqs = a[:, _F.B]
        # Micro-batches and busy ranks hold whole sequences: never more parts than sequences.
        m = np.clip(seqs, 1.0, float(self._microbatches))
        dp = float(self.parallelism.dp)
        ranks = seqs / m
        if dp > 1:
            # The step waits for its busiest rank: the step's work shared as its tokens are
            # between the busiest rank and the rest (a long prompt chunk stays on one rank).
            busiest = a[:, _F.T_MAX]
            shares = a[:, _F.T] / np.where(busiest > 0, busiest, 1.0)
            ranks = np.minimum(ranks, np.where(busiest > 0, shares, dp))
        ranks = np.clip(ranks, 1.0, dp)
        rank = self.feature_map.split(a, m * ranks)
        if dp > 1:
            rank = np.concatenate([rank, self.feature_map.split(a, m)], axis=1)
        return rank, m, steps

    def _gpu(self, rows: np.ndarray, per_operator: bool = True):
        """(GPU seconds, micro-batch features, micro-batches, steps, per-operator seconds of one
        micro-batch (None unless ``per_operator`` under PP), stage seconds or None) for
        feature rows (n, features)."""
        a, m, steps = self._split(rows)
        if self._stages is None:
            sec = self._ops.seconds(a)
            return sec.sum(axis=1) * steps, a, m, steps, sec, None
        stage = self._stages.seconds(a) @ self._stage_of
        gpu = pipeline_seconds(stage, m, self.params.pp_overlap_steps) * steps
        sec = self._ops.seconds(a) if per_operator else None
        return gpu, a, m, steps, sec, stage

    def gpu_seconds_from_features(self, features: np.ndarray) -> np.ndarray:
        """GPU seconds of each feature row (pipelined under PP), shape (rows,)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        return self._gpu(rows, per_operator=False)[0]

    def host_seconds_from_features(self, features: np.ndarray) -> np.ndarray | float:
        """Host seconds of the serving loop for each feature row (a float for one vector):
        ``host_step_s + host_per_seq_s·sequences + host_per_token_s·tokens``. Under CUDA
        graphs it overlaps the GPU; :meth:`host_bound_seconds_from_features` is what shows."""
        f = np.asarray(features, dtype=np.float64)
        host = f @ self._fixed[:, 1]
        return float(host) if f.ndim == 1 else host

    def host_bound_seconds_from_features(self, features: np.ndarray) -> np.ndarray:
        """Seconds of each step the GPU waits for the host, shape (rows,): ``max(0, host −
        gpu)`` when it overlaps, all of ``host`` when it does not (plus, then, the kernel-issue
        stalls already inside the GPU time)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        gpu = self._gpu(rows, per_operator=False)[0] if self.host_overlaps else None
        return self._host_bound(rows, gpu)

    def _host_bound(self, rows: np.ndarray, gpu: np.ndarray | None) -> np.ndarray:
        """:meth:`host_bound_seconds_from_features` of feature rows whose GPU seconds are
        ``gpu`` (read only when the host overlaps the GPU)."""
        host = rows @ self._fixed[:, 1]
        if not self.host_overlaps:
            return host
        return np.maximum(host - gpu, 0.0)

    def pp_stage_seconds(self, features: np.ndarray) -> np.ndarray:
        """Seconds one micro-batch spends in each pipeline stage (its hand-off to the next
        stage included), shape (pp,) for one feature vector or (rows, pp)."""
        f = np.asarray(features, dtype=np.float64)
        out = self.pipeline_from_features(np.atleast_2d(f)).stage_s
        return out[0] if f.ndim == 1 else out

    def pipeline_from_features(self, features: np.ndarray) -> PipelineTime:
        """Stage times, micro-batches, pipelined GPU time and bubble of feature rows (arrays
        of one entry per row; a single stage without PP)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        gpu, _, m, steps, sec, stage = self._gpu(rows)
        if stage is None:
            stage = sec.sum(axis=1, keepdims=True)
        per_step = gpu / np.where(steps > 0, steps, 1.0)
        return PipelineTime(stage, m, gpu, bubble_fraction(stage, m, per_step))


__all__ = ["OperatorSides", "StepCostModel"]
