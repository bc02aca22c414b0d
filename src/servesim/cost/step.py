"""Time of one forward step of a batch: the roofline over the operators of ``operators.py``.

Each operator takes ``max(FLOPs / (peak × efficiency), bytes / (bandwidth × efficiency))``
plus a fixed ``kernel_launch_s`` per kernel it launches (or link latency per ring step for
communication); the GPU part of a step adds them up (kernels run one after another).
``build_step_cost`` folds all of that into a few small arrays once, so that timing a step is:
reduce the batch to the features of ``operators.py`` (one Gram product of the per-row
columns), one small matrix product, one elementwise ``max`` and a sum.

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

from dataclasses import dataclass

import numpy as np

from servesim.cost import kernels as kernels_mod
from servesim.cost import operators as ops_mod
from servesim.cost.dtypes import (
    activation_dtype,
    check_kv_dtype,
    check_weight_dtype,
    dtype_bytes,
    normalize_dtype,
    tensor_core_peak,
    vector_peak,
)
from servesim.cost.features import FeatureMap
from servesim.cost.operators import (
    FEATURES,
    GROUPS,
    INDICATOR,
    NUM_FEATURES,
    Operator,
    StageLayers,
    build_operators,
    pipeline_stages,
)
from servesim.cost.params import CostParams, Parallelism
from servesim.cost.power import active_seconds, gpu_power_watts, utilisation
from servesim.errors import ServesimError
from servesim.hardware import Hardware
from servesim.model import ModelSpec

_F = ops_mod  # feature indices: _F.T, _F.P, ...
_NF = NUM_FEATURES


@dataclass(frozen=True)
class StepTime:
    """One step's predicted time and where it goes."""

    total_s: float
    """Seconds for the whole step (equals ``StepCostModel.step_seconds``)."""
    by_group: dict[str, float]
    """Seconds per operator group (see ``operators.GROUPS``); they sum to ``total_s``. Under
    pipeline parallelism each GPU group is scaled to its share of the pipelined time; the
    host time the GPU does not hide counts as ``overhead``."""
    flops: float
    """FLOPs executed per GPU, summed over pipeline stages."""
    bytes: float
    """HBM bytes moved per GPU (weights, activations, KV), summed over pipeline stages."""
    comm_bytes: float
    """Bytes each GPU sends over links (all-reduce ring traffic, logits gather, stage sends,
    all-to-all)."""
    flops_by_group: dict[str, float]
    bytes_by_group: dict[str, float]
    fidelity: str
    """``measured`` | ``fitted`` | ``calibrated`` | ``roofline``: the rung of the ladder most of
    the step's operator time stands on (see ``RUNGS``)."""
    gpu_s: float = 0.0
    """Seconds of GPU work (pipelined under PP; with eager kernel issue without CUDA graphs)."""
    host_s: float = 0.0
    """Host seconds of the serving loop (overlapped with ``gpu_s`` under CUDA graphs)."""
    bubble_fraction: float = 0.0
    """Share of stage-time the pipeline stages sit idle (0 without PP)."""


@dataclass(frozen=True)
class OperatorCost:
    """One operator's share of a step (all its occurrences, e.g. every layer)."""

    name: str
    group: str
    flops: float
    """FLOPs per GPU."""
    bytes: float
    """HBM bytes per GPU, or bytes each GPU sends for link operators."""
    seconds: float
    bound: str
    """``compute``, ``memory``, ``link`` or ``launch`` (the CPU issuing kernels without CUDA
    graphs): which limit set its time."""


@dataclass(frozen=True)
class PipelineTime:
    """How a step's GPU work flows through the pipeline (arrays: one entry per feature row)."""

    stage_s: np.ndarray
    """Shape (..., pp): seconds one micro-batch spends in each stage, its hand-off included."""
    microbatches: np.ndarray
    """Micro-batches the step is split into: ``min(pp_microbatches, sequences)``."""
    gpu_s: np.ndarray
    """GPU seconds of the step under the pipelined schedule."""
    bubble_fraction: np.ndarray
    """``1 − m·Σ_s t_s / (pp · gpu_s)``: the share of stage-time the stages sit idle."""


@dataclass(frozen=True)
class ResolvedParams:
    """``CostParams`` with every ``None`` replaced by the model's or hardware's value."""

    weight_dtype: str
    """Dtype of the block weights: attention projections, dense MLP, shared experts."""
    expert_dtype: str
    """Dtype of the routed experts' weights."""
    kv_dtype: str
    act_dtype: str
    """Activations, and the weights quantisation leaves alone: embedding, LM head, router,
    norms."""
    compute_efficiency: float
    memory_efficiency: float
    attention_efficiency: float
    kernel_launch_s: float
    attention_memory_efficiency: float = 0.0
    """Fraction of HBM bandwidth attention reaches reading the KV cache."""
    attention_half_tokens: float = 0.0
    """Keys per query at which prefill attention reaches half its efficiency (0: flat)."""
    attention_source: str = "roofline"
    """Where the attention efficiencies come from (``roofline``: the GEMM figures)."""
    tables: kernels_mod.KernelTables | None = None
    """The GPU's measured kernel tables (None: none shipped, or turned off)."""
    tables_from: Hardware | None = None
    """When ``tables`` belong to another GPU of the same architecture: that GPU (its GEMM times
    are rescaled by the two rooflines; see ``kernels.SAME_ARCHITECTURE``)."""


def resolve_params(model: ModelSpec, hw: Hardware, params: CostParams) -> ResolvedParams:
    """Fill the defaults of ``params`` from ``model`` and ``hw``.

    Which weights a quantised checkpoint stores in ``model.dtype`` follows
    ``model.quant_scope``: ``experts`` (gpt-oss mxfp4) leaves attention and dense MLPs in
    ``model.base_dtype``; ``linear`` and ``none`` put every block weight in ``model.dtype``. An
    explicit ``params.weight_dtype`` quantises every block weight (vLLM ``--quantization``) and
    must have tensor cores on ``hw`` (int4 is weight-only and runs anywhere); a checkpoint's own
    format runs weight-only where the GPU lacks its tensor cores (fp8 on A100, as vLLM's Marlin
    kernels do). Raises ServesimError for a format the GPU cannot run or a KV dtype that is no
    KV-cache format.
    """
    quantized = model.quant_scope != "none"
    act = activation_dtype(model.base_dtype if quantized else model.dtype)
    if params.weight_dtype is not None:
        block = expert = normalize_dtype(params.weight_dtype, field="weight_dtype")
        check_weight_dtype(hw.name, hw.peak_flops, block)
    else:
        expert = normalize_dtype(model.dtype, field="dtype")
        # NOTE: fp32 checkpoints are served in bf16, as vLLM's dtype="auto" does.
        expert = act if expert in ("fp32", "tf32") else expert
        block = act if model.quant_scope == "experts" else expert
    kv = normalize_dtype(params.kv_dtype or act, field="kv_dtype")
    check_kv_dtype(kv)
    ce = hw.compute_efficiency if params.compute_efficiency is None else params.compute_efficiency
    me = hw.memory_efficiency if params.memory_efficiency is None else params.memory_efficiency
    # NOTE: a calibration fits the efficiencies to the user's own measurements; measured
    # tables of other machines must not override it.
    use_tables = params.kernel_tables and params.fidelity != "calibrated"
    fit = kernels_mod.attention_fit_for(hw) if use_tables else None
    attn, attn_mem, half, source = ce, me, 0.0, "roofline"
    tables = kernels_mod.load_tables(hw.name) if use_tables else None
    tables_from = None
    borrowed = kernels_mod.transfer_source(hw.name) if use_tables else None
    if borrowed is not None:
        from servesim.hardware import load_hardware

        tables_from = load_hardware(borrowed)
        tables = kernels_mod.load_tables(tables_from.name)
    if fit is not None:
        curve, source = fit
        attn, attn_mem, half = curve.efficiency, curve.memory_efficiency, curve.half_tokens
    if params.attention_efficiency is not None:
        attn, source = params.attention_efficiency, "given"
    if params.attention_memory_efficiency is not None:
        attn_mem = params.attention_memory_efficiency
    if params.attention_half_tokens is not None:
        half = params.attention_half_tokens
    return ResolvedParams(
        weight_dtype=block,
        expert_dtype=expert,
        kv_dtype=kv,
        act_dtype=act,
        compute_efficiency=ce,
        memory_efficiency=me,
        attention_efficiency=attn,
        kernel_launch_s=(
            hw.kernel_launch_s if params.kernel_launch_s is None else params.kernel_launch_s
        ),
        attention_memory_efficiency=attn_mem,
        attention_half_tokens=half,
        attention_source=source,
        tables=tables,
        tables_from=tables_from,
    )


def model_operators(
    model: ModelSpec,
    par: Parallelism,
    resolved: ResolvedParams,
    head: str,
    stage: StageLayers | None = None,
    moe_load: float = 1.0,
    custom_allreduce: bool = False,
) -> tuple[Operator, ...]:
    """The operator list for ``model`` with the resolved dtypes (one ``stage`` or all)."""
    return build_operators(
        model,
        par,
        weight_bytes=dtype_bytes(resolved.weight_dtype),
        expert_bytes=dtype_bytes(resolved.expert_dtype),
        kv_bytes=dtype_bytes(resolved.kv_dtype),
        act_bytes=dtype_bytes(resolved.act_dtype),
        head=head,
        stage=stage,
        moe_load=moe_load,
        custom_allreduce=custom_allreduce,
    )


def coefficient_matrices(operators: tuple[Operator, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs, bytes) coefficient matrices, shape (operators, features), times each count.

    Constant terms (weights) are charged on the indicator of the operator's ``active`` feature,
    so an operator that does not run in a step moves nothing.
    """
    flops = np.zeros((len(operators), NUM_FEATURES))
    nbytes = np.zeros((len(operators), NUM_FEATURES))
    for i, op in enumerate(operators):
        for feat, value in op.flops:
            flops[i, INDICATOR[op.active] if feat == _F.ONE else feat] += value * op.count
        for feat, value in op.bytes:
            nbytes[i, INDICATOR[op.active] if feat == _F.ONE else feat] += value * op.count
    return flops, nbytes


def padding_flops(
    operators: tuple[Operator, ...],
    flops: np.ndarray,
    half_tokens: float,
    moe: tuple[float, float, float] | None,
    moe_load: float = 1.0,
) -> np.ndarray:
    """Extra FLOP-equivalents the GEMM efficiency curve adds, as feature coefficients.

    A GEMM over ``m`` rows at efficiency ``eff·m/(m + h)`` takes as long as one over ``m + h``
    rows at ``eff``: the padding is ``h`` rows of that GEMM, paid once when it runs. For routed
    experts ``m`` is the tokens per hit expert, so each hit expert's GEMM is padded: ``h`` rows
    per hit expert, a term in ``D_EXP``.
    """
    pad = np.zeros_like(flops)
    for i, op in enumerate(operators):
        if op.m_feature == _F.ONE or half_tokens == 0.0 or op.rate == ops_mod.RATE_ATTENTION:
            continue
        if op.m_feature == _F.M_EXP:
            assert moe is not None
            _, top_k, ep = moe
            # FLOPs = c·L·T (L = moe_load) with m = L·T·k/hit and D = hit/ep:
            # c·L·T·h/m = c·h·D·ep/k.
            pad[i, _F.D_EXP] = flops[i, _F.T] / moe_load * half_tokens * ep / top_k
        else:
            pad[i, INDICATOR[op.active]] = flops[i, op.m_feature] * half_tokens
    return pad


def pipeline_seconds(
    stage_s: np.ndarray, microbatches: np.ndarray | float, overlap_steps: bool = False
) -> np.ndarray:
    """GPU seconds of a step of ``microbatches`` micro-batches over stages taking ``stage_s``.

    ``stage_s`` has shape (..., pp): seconds of one micro-batch in each stage. Without overlap
    the first micro-batch crosses every stage and the slowest stage paces the others:
    ``Σ_s t_s + (m − 1)·max_s t_s`` (``(m + pp − 1)·t`` for equal stages). With
    ``overlap_steps`` the next step's micro-batches fill the drain, so a step takes
    ``max(m·max_s t_s, Σ_s t_s)``: the slowest stage is busy all the time, or a micro-batch
    cannot come round sooner than its trip through every stage.
    """
    stage_s = np.asarray(stage_s, dtype=np.float64)
    m = np.asarray(microbatches, dtype=np.float64)
    total, slowest = stage_s.sum(axis=-1), stage_s.max(axis=-1)
    if overlap_steps:
        return np.maximum(m * slowest, total)
    return total + (m - 1.0) * slowest


def bubble_fraction(
    stage_s: np.ndarray, microbatches: np.ndarray | float, gpu_s: np.ndarray | float
) -> np.ndarray:
    """Share of stage-time idle in a pipelined step: ``1 − m·Σ_s t_s / (pp · gpu_s)``."""
    stage_s = np.asarray(stage_s, dtype=np.float64)
    busy = np.asarray(microbatches, dtype=np.float64) * stage_s.sum(axis=-1)
    span = stage_s.shape[-1] * np.asarray(gpu_s, dtype=np.float64)
    return np.where(span > 0, 1.0 - busy / np.where(span > 0, span, 1.0), 0.0)


@dataclass(frozen=True, eq=False)
class _Sides:
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

    def seconds(self, a: np.ndarray) -> np.ndarray:
        """Per-operator seconds for feature rows ``a`` (n, features'): shape (n, operators)."""
        sec = np.maximum(a @ self.compute, a @ self.memory)
        if self.curves is not None:
            sec[:, self.curves.columns] = self.curves.seconds(a)
        if self.eager is not None:
            np.maximum(sec, a @ self.eager, out=sec)
        return sec


@dataclass(frozen=True, eq=False)
class StepCostModel:
    """Times forward steps of one model replica. Build with :func:`build_step_cost`.

    Batch convention for every method: row ``i`` is one sequence with ``context_lens[i]`` tokens
    already in its KV cache and ``new_tokens[i]`` tokens computed this step (1 for a decode, a
    chunk for a prefill). Arrays are 1-D, equal length, non-negative integers (as ints or
    floats); the hot path does not check them.

    Every operator's time is ``max(compute · f, memory · f)`` for the step's feature vector
    ``f`` (see ``operators.py``): compute and memory seconds are linear in the features (the GEMM
    efficiency curve included, see :func:`padding_flops`), and the fixed launch/latency seconds
    are added to both sides (``max(a + L, b + L) = max(a, b) + L``). The GPU part of a step is
    the sum over the operators (pipelined under PP); host and overhead are combined with it as
    the module docstring says.

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
    _ops: _Sides  # the whole-model operators (every stage)
    _stages: _Sides | None  # every stage's operators, rows grouped by stage (pp > 1)
    _stage_of: np.ndarray | None  # (stage rows, pp) 0/1
    _fixed: np.ndarray  # (features, 2): [overhead, host] seconds per feature unit
    _group_idx: np.ndarray  # (operators,) index into GROUPS
    _groups: tuple[str, ...]  # groups reported in by_group
    _microbatches: int  # pp_microbatches resolved (1 without PP)
    _simple: bool  # pp == dp == 1: features are used as they come
    _hot: np.ndarray | None  # simple and with CUDA graphs: [compute | memory | fixed] at once

    # --- the hot path -------------------------------------------------------------------------

    def features(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> np.ndarray:
        """The batch reduced to the step features (see ``FeatureMap.step``)."""
        return self.feature_map.step(new_tokens, context_lens)

    def step_seconds(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> float:
        """Seconds of one forward step of the batch (hot path: a few µs for 256 rows)."""
        if len(new_tokens) == 0:
            return 0.0
        return float(self.seconds_from_features(self.feature_map.step(new_tokens, context_lens)))

    def seconds_from_features(self, features: np.ndarray) -> np.ndarray | float:
        """Step seconds of one feature vector (a float) or of rows of them (an array)."""
        f = np.asarray(features, dtype=np.float64)
        if self._hot is not None:  # the hot path: one small product
            x = f @ self._hot
            k = self._hot.shape[1] // 2 - 1
            curves = self._ops.curves
            if f.ndim == 1:
                gpu = float(np.maximum(x[:k], x[k : 2 * k]).sum())
                if curves is not None:
                    gpu += curves.total(f)
                return self._combine(gpu, float(x[-2]), float(x[-1]))
            gpu = np.maximum(x[:, :k], x[:, k : 2 * k]).sum(axis=1)
            if curves is not None:
                gpu = gpu + curves.totals(f)
            return self._combine(gpu, x[:, -2], x[:, -1])
        rows = np.atleast_2d(f)
        gpu = self._gpu(rows, per_operator=False)[0]
        over, host = (rows @ self._fixed).T
        out = self._combine(gpu, over, host)
        return float(out[0]) if f.ndim == 1 else out

    def step_with_features(
        self, new_tokens: np.ndarray, context_lens: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """(seconds, features) of one step; seconds equal :meth:`step_seconds`."""
        f = self.feature_map.step(new_tokens, context_lens)
        return float(self.seconds_from_features(f)), f

    def decode_span_with_features(
        self, context_lens: np.ndarray, num_steps: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(seconds of each step, features of each step, shape (num_steps, features)) of a
        decode span; the seconds equal :meth:`decode_span_seconds`."""
        f = self.feature_map.decode(context_lens, num_steps)
        return self.seconds_from_features(f), f

    def decode_round_with_features(
        self, context_lens: np.ndarray, num_steps: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`decode_span_with_features` for a multi-step scheduling round: the host
        schedules and prepares inputs once for the whole round, so the host time a step
        exposes (:meth:`host_bound_seconds_from_features`) is paid by its first step only."""
        seconds, f = self.decode_span_with_features(context_lens, num_steps)
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
        return self.seconds_from_features(self.feature_map.decode(context_lens, num_steps))

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
        ranks = np.clip(seqs / m, 1.0, dp)
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
        host = rows @ self._fixed[:, 1]
        if not self.host_overlaps:
            return host
        return np.maximum(host - self._gpu(rows, per_operator=False)[0], 0.0)

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

    # --- features: what the engine records, so work and breakdowns come later, in bulk -----

    def operator_sides_from_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(compute, memory) seconds of every operator for rows of step features.

        Both have shape (rows, operators + 1): column ``i`` is ``operators[i]``, the last column
        the per-step overhead (``step_overhead_s`` and the ``overhead_per_*`` terms). Launch/
        latency seconds are in both sides, so the GPU part and the overhead of a step take
        ``np.maximum(compute, memory).sum(axis=1)`` (what calibration refits, side by side);
        the host time (:meth:`host_seconds_from_features`) is apart. Without CUDA graphs each
        side is raised to the kernel-issue time; under PP the sides are scaled to the pipelined
        GPU time.
        """
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        a, m, steps = self._split(rows)
        comp, mem = a @ self._ops.compute, a @ self._ops.memory
        if self._ops.eager is not None:
            issue = a @ self._ops.eager
            comp, mem = np.maximum(comp, issue), np.maximum(mem, issue)
        if not self._simple:
            gpu, *_, sec, _ = self._gpu(rows)
            scale = _ratio(gpu, sec.sum(axis=1))[:, None]
            comp, mem = comp * scale, mem * scale
        over = (rows @ self._fixed[:, 0])[:, None]
        return np.concatenate([comp, over], axis=1), np.concatenate([mem, over], axis=1)

    def _work_features(self, rows: np.ndarray) -> np.ndarray:
        """Features whose linear FLOPs/bytes are a step's work on one GPU: every micro-batch
        reads the weights again."""
        a, m, steps = self._split(rows)
        return a if self._simple else a * (m * steps)[:, None]

    def work_from_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(FLOPs, HBM bytes) per GPU for rows of (possibly summed) step features.

        Both are linear in the features without PP or DP, so a span's summed features give its
        exact totals; with micro-batches the weights count once per micro-batch.
        """
        f = np.asarray(features, dtype=np.float64)
        w = self._work_features(np.atleast_2d(f))
        hbm = np.where(self._ops.is_link, 0.0, self._ops.nbytes)
        flops, nbytes = w @ self._ops.flops.sum(axis=1), w @ hbm.sum(axis=1)
        if f.ndim == 1:
            return flops[0], nbytes[0]
        return flops, nbytes

    def rung_seconds_from_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """GPU seconds per fidelity rung (``RUNGS``) for rows of step features, shape (rows,)
        per rung: which share of each step's operator time stands on measured tables, fitted
        curves, a calibration or the roofline (scaled to the pipelined time under PP)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        gpu, _, _, steps, sec, _ = self._gpu(rows)
        scale = _ratio(gpu, sec.sum(axis=1))
        rung = self._ops.rung
        return {r: sec[:, rung == j].sum(axis=1) * scale for j, r in enumerate(RUNGS)}

    def _dominant_rung(self, rows: np.ndarray) -> str:
        """The rung most of a step's operator time stands on."""
        secs = {k: float(v.sum()) for k, v in self.rung_seconds_from_features(rows).items()}
        if sum(secs.values()) <= 0:
            return self.params.fidelity
        return max(secs, key=lambda k: secs[k])

    def extrapolated_from_features(self, features: np.ndarray) -> np.ndarray:
        """Whether each row has a measured operator outside its table's range (the achieved
        throughput was clamped at the last measured point)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        curves = self._ops.curves
        if curves is None:
            return np.zeros(len(rows), dtype=bool)
        return curves.outside(self._split(rows)[0])

    def group_seconds_from_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Seconds per operator group for rows of step features, shape (rows,) per group.

        They sum to the step time: GPU groups (scaled to the pipelined time under PP) plus
        ``overhead``, which also holds the host time the GPU does not hide. Exact for a single
        step's features. For a decode span's *summed* features the per-operator max() is taken
        once over the sum, which differs from summing per step only where an operator flips
        between compute- and memory-bound inside the span.
        """
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        gpu, _, _, steps, sec, _ = self._gpu(rows)
        scale = _ratio(gpu, sec.sum(axis=1)) if not self._simple else np.ones(len(rows))
        over, host = (rows @ self._fixed).T
        exposed = np.maximum(host - gpu, 0.0) if self.host_overlaps else host
        out = {}
        for g in self._groups:
            if g == "overhead":
                out[g] = over + exposed
            else:
                out[g] = sec[:, self._group_idx == GROUPS.index(g)].sum(axis=1) * scale
        return out

    # --- energy ---------------------------------------------------------------------------------

    def utilisation_from_features(self, features: np.ndarray, durations: np.ndarray) -> np.ndarray:
        """Power-weighted busy fraction ``u`` in [0, 1] of each step on one GPU (see
        :func:`servesim.cost.power.utilisation`): compute- and memory-side seconds of every
        operator (launch gaps, link waits and pipeline bubbles are idle time), over the step's
        ``durations`` (seconds; the engine's, which may include drafting or KV loads)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        w = self._work_features(rows)
        comp, mem = w @ self._ops.busy_compute, w @ self._ops.busy_memory
        active = active_seconds(comp, mem, self.params.memory_power_weight).sum(axis=1)
        # The whole-model operators are summed over the pp stages' GPUs: average over them.
        return utilisation(active, np.asarray(durations, dtype=np.float64) * self.parallelism.pp)

    def power_from_features(self, features: np.ndarray, durations: np.ndarray) -> np.ndarray:
        """Average watts per GPU over each step: ``idle_w + (tdp_w − idle_w) · u``."""
        u = self.utilisation_from_features(features, durations)
        return gpu_power_watts(self.hardware.tdp_w, self.hardware.idle_w, u)

    def energy_from_features(self, features: np.ndarray, durations: np.ndarray) -> np.ndarray:
        """Joules per GPU of each step (or span): average power × duration, shape (rows,).
        A replica's energy is this times ``parallelism.gpus``; idle gaps between steps draw
        ``hardware.idle_w`` per GPU."""
        return self.power_from_features(features, durations) * np.asarray(durations, float)

    # --- one step, explained ------------------------------------------------------------------

    def step_time(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> StepTime:
        """Same number as :meth:`step_seconds`, with the breakdown by operator group."""
        new_tokens = np.asarray(new_tokens)
        context_lens = np.asarray(context_lens)
        _check_batch(new_tokens, context_lens)
        if new_tokens.shape[0] == 0:
            zeros = dict.fromkeys(self._groups, 0.0)
            return StepTime(
                0.0, zeros, 0.0, 0.0, 0.0, dict(zeros), dict(zeros), self.params.fidelity
            )
        f = self.feature_map.step(new_tokens, context_lens)
        rows = f[None, :]
        groups = self.group_seconds_from_features(rows)
        w = self._work_features(rows)[0]
        op_flops = self._ops.flops.T @ w
        op_bytes = self._ops.nbytes.T @ w
        ngroups = len(GROUPS)
        link = self._ops.is_link
        flops = np.bincount(self._group_idx, weights=op_flops, minlength=ngroups)
        hbm = np.bincount(self._group_idx, weights=np.where(link, 0.0, op_bytes), minlength=ngroups)
        pipe = self.pipeline_from_features(rows)
        return StepTime(
            total_s=float(self.seconds_from_features(f)),
            by_group={g: float(groups[g][0]) for g in self._groups},
            flops=float(op_flops.sum()),
            bytes=float(hbm.sum()),
            comm_bytes=float(op_bytes[link].sum()),
            flops_by_group={g: float(flops[GROUPS.index(g)]) for g in self._groups},
            bytes_by_group={g: float(hbm[GROUPS.index(g)]) for g in self._groups},
            fidelity=self._dominant_rung(rows),
            gpu_s=float(pipe.gpu_s[0]),
            host_s=float(self.host_seconds_from_features(f)),
            bubble_fraction=float(pipe.bubble_fraction[0]),
        )

    def operator_breakdown(
        self, new_tokens: np.ndarray, context_lens: np.ndarray
    ) -> list[OperatorCost]:
        """Per-operator FLOPs, bytes, seconds and bound of one step (seconds sum to the step
        time less the ``overhead`` group; scaled to the pipelined time under PP)."""
        new_tokens = np.asarray(new_tokens)
        context_lens = np.asarray(context_lens)
        _check_batch(new_tokens, context_lens)
        if new_tokens.shape[0] == 0:
            return []
        rows = self.feature_map.step(new_tokens, context_lens)[None, :]
        gpu, a, _, _, sec, _ = self._gpu(rows)
        scale = float(_ratio(gpu, sec.sum(axis=1))[0]) if not self._simple else 1.0
        ops = self._ops
        comp, mem = (a @ ops.compute)[0], (a @ ops.memory)[0]
        issue = (a @ ops.eager)[0] if ops.eager is not None else np.zeros_like(comp)
        w = self._work_features(rows)[0]
        flops, nbytes = ops.flops.T @ w, ops.nbytes.T @ w
        out = []
        for i, op in enumerate(self.operators):
            if issue[i] > max(comp[i], mem[i]):
                bound = "launch"
            elif ops.is_link[i]:
                bound = "link"
            else:
                bound = "compute" if comp[i] > mem[i] else "memory"
            out.append(
                OperatorCost(
                    op.name,
                    op.group,
                    float(flops[i]),
                    float(nbytes[i]),
                    float(sec[0, i] * scale),
                    bound,
                )
            )
        return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _check_batch(new_tokens: np.ndarray, context_lens: np.ndarray) -> None:
    if new_tokens.ndim != 1 or new_tokens.shape != context_lens.shape:
        raise ServesimError(
            f"new_tokens {new_tokens.shape} and context_lens {context_lens.shape} must be 1-D "
            "arrays of the same length",
            field="batch",
            fix="pass one entry per sequence",
        )
    if (new_tokens < 0).any() or (context_lens < 0).any():
        raise ServesimError(
            "token counts must be >= 0", field="batch", fix="check the batch composition"
        )


@dataclass(frozen=True)
class _Rates:
    """What an operator's rate resolves to on the hardware."""

    flop_rate: dict[str, float]
    """FLOP/s (peak × efficiency) per compute rate."""
    link_bw: dict[str, float]
    """Achievable bytes/s per link rate (comm efficiency included)."""
    link_latency: dict[str, float]
    sec_per_byte_hbm: float
    sec_per_byte_attention: float
    kernel_launch_s: float
    eager_launch_s: float | None
    """CPU seconds per kernel issue without CUDA graphs; None with graphs."""


def _rates(hw: Hardware, par: Parallelism, params: CostParams, res: ResolvedParams) -> _Rates:
    peak_gemm = tensor_core_peak(hw.peak_flops, res.weight_dtype, res.act_dtype)
    peak_expert = tensor_core_peak(hw.peak_flops, res.expert_dtype, res.act_dtype)
    peak_act = tensor_core_peak(hw.peak_flops, res.act_dtype, res.act_dtype)
    node = hw.gpus_per_node
    tp_link = hw.inter_node if par.tp > node else hw.intra_node
    pp_link = hw.inter_node if par.gpus > node else hw.intra_node
    ep_link = hw.inter_node if par.tp * par.dp > node else hw.intra_node
    # On a full mesh (MI300X) a collective over few GPUs uses only that many direct links.
    bandwidth = {
        ops_mod.RATE_LINK_TP: tp_link.bandwidth_among(min(par.tp, node)),
        ops_mod.RATE_LINK_PP: pp_link.bandwidth_among(2),
        ops_mod.RATE_LINK_EP: ep_link.bandwidth_among(min(par.ep, node)),
    }
    attn_mem = res.attention_memory_efficiency or res.memory_efficiency
    return _Rates(
        flop_rate={
            ops_mod.RATE_GEMM: peak_gemm * res.compute_efficiency,
            ops_mod.RATE_GEMM_EXPERT: peak_expert * res.compute_efficiency,
            ops_mod.RATE_GEMM_ACT: peak_act * res.compute_efficiency,
            ops_mod.RATE_ATTENTION: peak_act * res.attention_efficiency,
            ops_mod.RATE_VECTOR: vector_peak(hw.peak_flops, res.act_dtype) * res.compute_efficiency,
        },
        link_bw={k: v * params.comm_efficiency for k, v in bandwidth.items()},
        link_latency={
            ops_mod.RATE_LINK_TP: tp_link.latency_s,
            ops_mod.RATE_LINK_PP: pp_link.latency_s,
            ops_mod.RATE_LINK_EP: ep_link.latency_s,
        },
        sec_per_byte_hbm=1.0 / (hw.hbm_bandwidth * res.memory_efficiency),
        sec_per_byte_attention=1.0 / (hw.hbm_bandwidth * attn_mem),
        kernel_launch_s=res.kernel_launch_s,
        eager_launch_s=None if params.cuda_graphs else params.eager_launch_s,
    )


RUNGS = ("measured", "fitted", "calibrated", "roofline")
"""The rungs of the fidelity ladder an operator's time can stand on, best first: priced from a
measured kernel table; from an efficiency curve fitted to measured tables; from efficiencies
fitted to the user's own measurements (``servesim calibrate``); from datasheet peaks."""


def attention_padding(
    operators: tuple[Operator, ...], flops: np.ndarray, half_tokens: float
) -> np.ndarray:
    """Extra FLOP-equivalents of prefill attention's length curve, as feature coefficients.

    Attention over ``s`` keys per query reaches ``e·s/(s + h)`` of the peak, so it takes as
    long as its FLOPs times ``1 + h/s`` at ``e``. A prompt of ``n`` new tokens has ``n²/2``
    (query, key) pairs over ``s ≈ n`` keys: ``h·n/2`` extra pairs, a term in the row's tokens.
    (A decode row gets ``h/2`` extra pairs; decode attention is memory-bound, so that
    compute-side term does not show.)
    """
    pad = np.zeros_like(flops)
    if half_tokens <= 0.0:
        return pad
    tokens_of = {_F.P: _F.T_R, _F.P_SW: _F.T, _F.P_A: _F.T_A}
    for i, op in enumerate(operators):
        if op.rate != ops_mod.RATE_ATTENTION or not op.flops:
            continue
        pair = op.flops[0][0]
        pad[i, tokens_of[pair]] += flops[i, pair] * half_tokens / 2.0
    return pad


def _measured_curves(
    operators: tuple[Operator, ...],
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism,
    params: CostParams,
    res: ResolvedParams,
) -> kernels_mod.MeasuredCurves | None:
    """Curves for the operators a measured table prices: dense GEMMs (by rows), the TP
    all-reduce (by tokens) when the engine runs a custom all-reduce inside one node, and the
    routed experts of an MoE layer (by tokens; the first expert operator carries the whole
    measured layer, the others are part of it)."""
    tables = res.tables
    if tables is None:
        return None
    grid = kernels_mod.M_GRID
    columns, features, curves, ranges = [], [], [], []
    act = dtype_bytes(res.act_dtype)
    moe_curve = _moe_curve(model, par, params, res) if par.dp == 1 else None
    for i, op in enumerate(operators):
        got = None
        if op.scope != ops_mod.SCOPE_RANK:
            continue
        if op.rate == ops_mod.RATE_GEMM_EXPERT and moe_curve is not None:
            first = not any(operators[c].rate == ops_mod.RATE_GEMM_EXPERT for c in columns)
            seconds, measured = moe_curve
            columns.append(i)
            features.append(_F.T)
            curves.append(seconds * op.count if first else np.zeros_like(seconds))
            ranges.append(measured)
            continue
        if op.shape is not None and op.rate in (ops_mod.RATE_GEMM, ops_mod.RATE_GEMM_ACT):
            dtype = res.weight_dtype if op.rate == ops_mod.RATE_GEMM else res.act_dtype
            table = kernels_mod.table_dtype(dtype)
            if table is not None:
                got = kernels_mod.gemm_seconds(tables, table, op.shape[0], op.shape[1], grid)
            if got is not None and res.tables_from is not None:
                # Another GPU's measured utilisation, applied to this GPU's roofline.
                n, k = op.shape
                mine = _roofline_gemm_seconds(hw, params, res, dtype, n, k, grid)
                theirs = _roofline_gemm_seconds(res.tables_from, params, res, dtype, n, k, grid)
                got = (got[0] * mine / theirs, got[1])
        elif res.tables_from is not None:
            continue  # all-reduce and MoE tables do not transfer between GPUs
        elif op.name == "all_reduce" and params.custom_allreduce and par.tp <= hw.gpus_per_node:
            per_token = model.hidden_size * act
            got = kernels_mod.allreduce_seconds(tables, par.tp, grid * per_token)
            if got is not None:
                got = (got[0], (got[1][0] / per_token, got[1][1] / per_token))
        if got is None:
            continue
        seconds, measured = got
        columns.append(i)
        features.append(op.m_feature if op.shape is not None else _F.T)
        curves.append(seconds * op.count)
        ranges.append(measured)
    if not columns:
        return None
    return kernels_mod.MeasuredCurves(
        columns=np.array(columns, dtype=np.intp),
        features=np.array(features, dtype=np.intp),
        table=np.stack(curves, axis=1),
        measured_range=np.array(ranges, dtype=np.float64),
    )


def _roofline_gemm_seconds(
    hw: Hardware, params: CostParams, res: ResolvedParams, dtype: str, n: float, k: float, m
) -> np.ndarray:
    """The roofline rung's seconds of one ``m × k`` by ``k × n`` GEMM on ``hw`` (its datasheet
    peak and MAMF efficiency, the GEMM efficiency curve, one launch)."""
    peak = tensor_core_peak(hw.peak_flops, dtype, res.act_dtype) * hw.compute_efficiency
    flops = 2.0 * (m + params.gemm_half_tokens) * n * k
    nbytes = n * k * dtype_bytes(dtype) + m * (n + k) * dtype_bytes(res.act_dtype)
    memory = nbytes / (hw.hbm_bandwidth * hw.memory_efficiency)
    return np.maximum(flops / peak, memory) + hw.kernel_launch_s


def _moe_curve(
    model: ModelSpec, par: Parallelism, params: CostParams, res: ResolvedParams
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Seconds of one MoE layer's routed experts on ``M_GRID`` tokens, from the measured table
    of the engine's MoE kernels (None: no table for this shape, split or dtype)."""
    moe = model.moe
    if moe is None or res.tables is None or res.tables.moe is None or res.tables_from is not None:
        return None
    # NOTE: fp8 checkpoints in the catalog (DeepSeek) are block-scaled; fp8 chosen with
    # --weight-dtype is per-tensor, as vLLM's on-the-fly quantisation is.
    block = params.weight_dtype is None and normalize_dtype(model.dtype, field="dtype") == "fp8"
    dtypes = kernels_mod.moe_table_dtype(res.expert_dtype, block)
    shape = (model.hidden_size, moe.expert_intermediate_size, moe.experts_per_token,
             moe.num_experts)  # fmt: skip
    return kernels_mod.moe_seconds(
        res.tables, params.moe_backend, dtypes, shape, par.expert_tp, par.ep, kernels_mod.M_GRID
    )


def _sides(
    operators: tuple[Operator, ...],
    rates: _Rates,
    half_tokens: float,
    feature_map: FeatureMap,
    dp: int,
    res: ResolvedParams | None = None,
    curves: kernels_mod.MeasuredCurves | None = None,
    calibrated: bool = False,
) -> _Sides:
    """Coefficient matrices of ``operators`` (transposed: features' × operators)."""
    flops, nbytes = coefficient_matrices(operators)
    pad = padding_flops(operators, flops, half_tokens, feature_map.moe, feature_map.moe_load)
    if res is not None:
        pad = pad + attention_padding(operators, flops, res.attention_half_tokens)
    nops = len(operators)
    sec_per_flop = np.zeros(nops)
    sec_per_byte = np.zeros(nops)
    launch = np.zeros((nops, NUM_FEATURES))
    issue = np.zeros((nops, NUM_FEATURES))
    is_link = np.zeros(nops, dtype=bool)
    for i, op in enumerate(operators):
        on = INDICATOR[op.active]
        if op.rate in rates.link_bw:
            is_link[i] = True
            sec_per_byte[i] = 1.0 / rates.link_bw[op.rate]
            launch[i, on] = op.count * op.hops * rates.link_latency[op.rate]
            kernels = 1.0  # a collective is one call for the CPU to issue
        else:
            sec_per_flop[i] = 1.0 / rates.flop_rate[op.rate]
            per_byte = (
                rates.sec_per_byte_attention
                if op.rate == ops_mod.RATE_ATTENTION
                else rates.sec_per_byte_hbm
            )
            sec_per_byte[i] = per_byte
            launch[i, on] = op.count * op.kernels * rates.kernel_launch_s
            kernels = op.kernels
        if rates.eager_launch_s is not None:
            issue[i, on] = op.count * kernels * rates.eager_launch_s
    busy_c = (flops + pad) * sec_per_flop[:, None]
    busy_m = np.where(is_link[:, None], 0.0, nbytes * sec_per_byte[:, None])
    compute = busy_c + launch
    memory = nbytes * sec_per_byte[:, None] + launch
    rung = np.full(nops, RUNGS.index("calibrated" if calibrated else "roofline"), dtype=np.intp)
    if res is not None and res.attention_source not in ("roofline", "given") and not calibrated:
        rung[[op.rate == ops_mod.RATE_ATTENTION for op in operators]] = RUNGS.index("fitted")
    if curves is not None:
        # Priced by their curves: the linear sides of these operators are zero. Curves borrowed
        # from another GPU of the same architecture are fitted, not measured, on this one.
        compute[curves.columns] = 0.0
        memory[curves.columns] = 0.0
        borrowed = res is not None and res.tables_from is not None
        rung[curves.columns] = RUNGS.index("fitted" if borrowed else "measured")
    scopes = [op.scope for op in operators]

    def widen(mat: np.ndarray) -> np.ndarray:
        """(operators, features) -> (features', operators); global-scope operators read the
        second block of the features when dp > 1."""
        if dp == 1:
            return np.ascontiguousarray(mat.T)
        out = np.zeros((2 * NUM_FEATURES, nops))
        for i, scope in enumerate(scopes):
            block = NUM_FEATURES if scope == ops_mod.SCOPE_GLOBAL else 0
            out[block : block + NUM_FEATURES, i] = mat[i]
        return out

    return _Sides(
        compute=widen(compute),
        memory=widen(memory),
        eager=widen(issue) if rates.eager_launch_s is not None else None,
        busy_compute=widen(busy_c),
        busy_memory=widen(busy_m),
        flops=widen(flops),
        nbytes=widen(nbytes),
        is_link=is_link,
        curves=curves,
        rung=rung,
    )


def build_step_cost(
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism | None = None,
    params: CostParams | None = None,
) -> StepCostModel:
    """Precompute the step-time coefficients of ``model`` on ``hw`` split as ``par``.

    Raises ServesimError when the split is impossible or a dtype unknown or unsupported.
    """
    par = par or Parallelism()
    params = params or CostParams()
    par.check(model)
    res = resolve_params(model, hw, params)
    feature_map = FeatureMap.for_model(model, par, params)
    load = feature_map.moe_load
    custom = params.custom_allreduce
    operators = model_operators(
        model, par, res, params.head, moe_load=load, custom_allreduce=custom
    )
    rates = _rates(hw, par, params, res)
    half = params.gemm_half_tokens
    calibrated = params.fidelity == "calibrated"

    def sides(ops: tuple[Operator, ...]) -> _Sides:
        curves = _measured_curves(ops, model, hw, par, params, res)
        return _sides(ops, rates, half, feature_map, par.dp, res, curves, calibrated)

    whole = sides(operators)

    stages = stage_of = None
    if par.pp > 1:
        stage_ops = [
            model_operators(
                model, par, res, params.head, stage=st, moe_load=load, custom_allreduce=custom
            )
            for st in pipeline_stages(model, par.pp)
        ]
        stages = sides(tuple(o for s in stage_ops for o in s))
        stage_of = np.zeros((sum(len(s) for s in stage_ops), par.pp))
        start = 0
        for s, ops_s in enumerate(stage_ops):
            stage_of[start : start + len(ops_s), s] = 1.0
            start += len(ops_s)

    fixed = np.zeros((NUM_FEATURES, 2))  # [overhead, host] seconds per feature unit
    fixed[_F.ONE] = params.step_overhead_s, params.host_step_s
    fixed[_F.B] = params.overhead_per_seq_s, params.host_per_seq_s
    fixed[_F.T] = params.overhead_per_token_s, params.host_per_token_s
    present = {op.group for op in operators} | {"comm", "overhead"}
    simple = par.pp == 1 and par.dp == 1
    return StepCostModel(
        model=model,
        hardware=hw,
        parallelism=par,
        params=params,
        resolved=res,
        operators=operators,
        feature_map=feature_map,
        _ops=whole,
        _stages=stages,
        _stage_of=stage_of,
        _fixed=fixed,
        _group_idx=np.array([GROUPS.index(op.group) for op in operators], dtype=np.intp),
        _groups=tuple(g for g in GROUPS if g in present),
        _microbatches=(params.pp_microbatches or par.pp) if par.pp > 1 else 1,
        _simple=simple,
        _hot=np.concatenate([whole.compute, whole.memory, fixed], axis=1)
        if simple and whole.eager is None
        else None,
    )


__all__ = [
    "FEATURES",
    "OperatorCost",
    "PipelineTime",
    "StepCostModel",
    "StepTime",
    "bubble_fraction",
    "build_step_cost",
    "pipeline_seconds",
    "resolve_params",
]
