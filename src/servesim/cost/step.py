"""Time of one forward step of a batch: the roofline over the operators of ``operators.py``.

Each operator takes ``max(FLOPs / (peak × efficiency), bytes / (bandwidth × efficiency))``
plus a fixed ``kernel_launch_s`` per kernel it launches (or link latency per ring step for
communication); the step adds them up (kernels run one after another) and adds a per-step host
overhead. ``build_step_cost`` folds all of that into a few small arrays once, so that timing a
step is: reduce the batch to the features of ``operators.py`` (one Gram product of the
per-row columns), one small matrix product, one elementwise ``max`` and a sum.

Units: seconds, FLOPs, bytes. FLOPs and bytes reported by ``StepTime`` are per GPU (one TP
rank) summed over all pipeline stages; with ``tp = pp = 1`` they are the whole model's.
With ``pp > 1`` the step time is the latency of one batch through every stage in turn (how
stages overlap across micro-batches is the engine's business).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.cost import operators as ops_mod
from servesim.cost.dtypes import (
    activation_dtype,
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
    build_operators,
)
from servesim.cost.params import CostParams, Parallelism
from servesim.errors import ServesimError
from servesim.hardware import Hardware
from servesim.model import ModelSpec

_F = ops_mod  # feature indices: _F.T, _F.P, ...


@dataclass(frozen=True)
class StepTime:
    """One step's predicted time and where it goes."""

    total_s: float
    """Seconds for the whole step (equals ``StepCostModel.step_seconds``)."""
    by_group: dict[str, float]
    """Seconds per operator group (see ``operators.GROUPS``); they sum to ``total_s``."""
    flops: float
    """FLOPs executed per GPU, summed over pipeline stages."""
    bytes: float
    """HBM bytes moved per GPU (weights, activations, KV), summed over pipeline stages."""
    comm_bytes: float
    """Bytes each GPU sends over links (all-reduce ring traffic, logits gather, stage sends)."""
    flops_by_group: dict[str, float]
    bytes_by_group: dict[str, float]
    fidelity: str
    """``roofline`` | ``calibrated`` | ``profiled``: the rung of the ladder the numbers stand on."""


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
    """``compute``, ``memory`` or ``link``: which side of the roofline set its time."""


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


def resolve_params(model: ModelSpec, hw: Hardware, params: CostParams) -> ResolvedParams:
    """Fill the defaults of ``params`` from ``model`` and ``hw``.

    Which weights a quantised checkpoint stores in ``model.dtype`` follows
    ``model.quant_scope``: ``experts`` (gpt-oss mxfp4) leaves attention and dense MLPs in
    ``model.base_dtype``; ``linear`` and ``none`` put every block weight in ``model.dtype``. An
    explicit ``params.weight_dtype`` quantises every block weight (vLLM ``--quantization``).
    """
    quantized = model.quant_scope != "none"
    act = activation_dtype(model.base_dtype if quantized else model.dtype)
    if params.weight_dtype is not None:
        block = expert = normalize_dtype(params.weight_dtype, field="weight_dtype")
    else:
        expert = normalize_dtype(model.dtype, field="dtype")
        # NOTE: fp32 checkpoints are served in bf16, as vLLM's dtype="auto" does.
        expert = act if expert in ("fp32", "tf32") else expert
        block = act if model.quant_scope == "experts" else expert
    ce = hw.compute_efficiency if params.compute_efficiency is None else params.compute_efficiency
    return ResolvedParams(
        weight_dtype=block,
        expert_dtype=expert,
        kv_dtype=normalize_dtype(params.kv_dtype or act, field="kv_dtype"),
        act_dtype=act,
        compute_efficiency=ce,
        memory_efficiency=(
            hw.memory_efficiency if params.memory_efficiency is None else params.memory_efficiency
        ),
        attention_efficiency=(
            ce if params.attention_efficiency is None else params.attention_efficiency
        ),
        kernel_launch_s=(
            hw.kernel_launch_s if params.kernel_launch_s is None else params.kernel_launch_s
        ),
    )


def model_operators(
    model: ModelSpec, par: Parallelism, resolved: ResolvedParams, head: str
) -> tuple[Operator, ...]:
    """The operator list for ``model`` with the resolved dtypes."""
    return build_operators(
        model,
        par,
        weight_bytes=dtype_bytes(resolved.weight_dtype),
        expert_bytes=dtype_bytes(resolved.expert_dtype),
        kv_bytes=dtype_bytes(resolved.kv_dtype),
        act_bytes=dtype_bytes(resolved.act_dtype),
        head=head,
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
) -> np.ndarray:
    """Extra FLOP-equivalents the GEMM efficiency curve adds, as feature coefficients.

    A GEMM over ``m`` rows at efficiency ``eff·m/(m + h)`` takes as long as one over ``m + h``
    rows at ``eff``: the padding is ``h`` rows of that GEMM, paid once when it runs. For routed
    experts ``m`` is the tokens per hit expert, so each hit expert's GEMM is padded: ``h`` rows
    per hit expert, a term in ``D_EXP``.
    """
    pad = np.zeros_like(flops)
    for i, op in enumerate(operators):
        if op.m_feature == _F.ONE or half_tokens == 0.0:
            continue
        if op.m_feature == _F.M_EXP:
            assert moe is not None
            _, top_k, ep = moe
            # FLOPs = c·T with m = T·k/hit and D = hit/ep:  c·T·h/m = c·h·D·ep/k.
            pad[i, _F.D_EXP] = flops[i, _F.T] * half_tokens * ep / top_k
        else:
            pad[i, INDICATOR[op.active]] = flops[i, op.m_feature] * half_tokens
    return pad


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
    are added to both sides (``max(a + L, b + L) = max(a, b) + L``). The host overhead is one
    more row whose two sides are equal. A step's time is the sum over the rows.
    """

    model: ModelSpec
    hardware: Hardware
    parallelism: Parallelism
    params: CostParams
    resolved: ResolvedParams
    operators: tuple[Operator, ...]
    feature_map: FeatureMap
    _flops: np.ndarray  # (ops, features) FLOPs per feature unit, all occurrences
    _bytes: np.ndarray  # (ops, features) bytes (HBM or link) per feature unit
    _coef_t: np.ndarray  # (features, 2·rows): [compute seconds | memory seconds] per unit
    _group_idx: np.ndarray  # (rows,) index into GROUPS; rows = operators + the overhead row
    _is_link: np.ndarray  # (ops,) bool: bytes are link bytes, not HBM bytes
    _groups: tuple[str, ...]  # groups reported in by_group

    def features(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> np.ndarray:
        """The batch reduced to the step features (see ``FeatureMap.step``)."""
        return self.feature_map.step(new_tokens, context_lens)

    def step_seconds(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> float:
        """Seconds of one forward step of the batch (hot path: a few µs for 256 rows)."""
        if len(new_tokens) == 0:
            return 0.0
        return float(self.seconds_from_features(self.feature_map.step(new_tokens, context_lens)))

    # --- features: what the engine records, so work and breakdowns come later, in bulk -----

    def seconds_from_features(self, features: np.ndarray) -> np.ndarray | float:
        """Step seconds of one feature vector (a float) or of rows of them (an array)."""
        x = features @ self._coef_t
        half = x.shape[-1] // 2
        return np.maximum(x[..., :half], x[..., half:]).sum(axis=-1)

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

    def operator_sides_from_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(compute, memory) seconds of every operator for rows of step features.

        Both have shape (rows, operators + 1): column ``i`` is ``operators[i]``, the last column
        the host overhead. Launch/latency seconds are in both sides, so a step takes
        ``np.maximum(compute, memory).sum(axis=1)`` (what calibration refits, side by side).
        """
        x = np.atleast_2d(features) @ self._coef_t
        half = x.shape[-1] // 2
        return x[:, :half], x[:, half:]

    def work_from_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(FLOPs, HBM bytes) per GPU for rows of (possibly summed) step features.

        Both are linear in the features, so a span's summed features give its exact totals.
        """
        hbm = np.where(self._is_link[:, None], 0.0, self._bytes)
        return features @ self._flops.sum(axis=0), features @ hbm.sum(axis=0)

    def group_seconds_from_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Seconds per operator group for rows of step features, shape (rows,) per group.

        Exact for a single step's features. For a decode span's *summed* features the per-
        operator max() is taken once over the sum, which differs from summing per step only
        where an operator flips between compute- and memory-bound inside the span.
        """
        x = np.atleast_2d(features) @ self._coef_t
        half = x.shape[-1] // 2
        row_secs = np.maximum(x[:, :half], x[:, half:])
        out = {}
        for g in self._groups:
            out[g] = row_secs[:, self._group_idx == GROUPS.index(g)].sum(axis=1)
        return out

    def decode_span_seconds(self, context_lens: np.ndarray, num_steps: int) -> np.ndarray:
        """Seconds of ``num_steps`` consecutive decode steps, shape (num_steps,).

        Step ``j`` decodes one token for every row with context ``context_lens + j``; equal to
        ``[step_seconds(ones, context_lens + j) for j in range(num_steps)]``, vectorised over j.
        """
        if num_steps <= 0 or len(context_lens) == 0:
            return np.zeros(max(int(num_steps), 0))
        f = self.feature_map.decode(context_lens, num_steps)
        x = f @ self._coef_t
        half = x.shape[1] // 2
        return np.maximum(x[:, :half], x[:, half:]).sum(axis=1)

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
        x = f @ self._coef_t
        half = x.shape[0] // 2
        row_secs = np.maximum(x[:half], x[half:])
        op_flops = self._flops @ f
        op_bytes = self._bytes @ f
        ngroups = len(GROUPS)
        ops = self._group_idx[: len(self.operators)]
        secs = np.bincount(self._group_idx, weights=row_secs, minlength=ngroups)
        flops = np.bincount(ops, weights=op_flops, minlength=ngroups)
        hbm = np.bincount(ops, weights=np.where(self._is_link, 0.0, op_bytes), minlength=ngroups)
        return StepTime(
            total_s=float(row_secs.sum()),
            by_group={g: float(secs[GROUPS.index(g)]) for g in self._groups},
            flops=float(op_flops.sum()),
            bytes=float(hbm.sum()),
            comm_bytes=float(op_bytes[self._is_link].sum()),
            flops_by_group={g: float(flops[GROUPS.index(g)]) for g in self._groups},
            bytes_by_group={g: float(hbm[GROUPS.index(g)]) for g in self._groups},
            fidelity=self.params.fidelity,
        )

    def operator_breakdown(
        self, new_tokens: np.ndarray, context_lens: np.ndarray
    ) -> list[OperatorCost]:
        """Per-operator FLOPs, bytes, seconds and bound of one step (seconds sum to the step
        time less the host overhead)."""
        new_tokens = np.asarray(new_tokens)
        context_lens = np.asarray(context_lens)
        _check_batch(new_tokens, context_lens)
        if new_tokens.shape[0] == 0:
            return []
        f = self.feature_map.step(new_tokens, context_lens)
        x = f @ self._coef_t
        half = x.shape[0] // 2
        flops, nbytes = self._flops @ f, self._bytes @ f
        out = []
        for i, op in enumerate(self.operators):
            if self._is_link[i]:
                bound = "link"
            else:
                bound = "compute" if x[i] > x[half + i] else "memory"
            out.append(
                OperatorCost(
                    op.name,
                    op.group,
                    float(flops[i]),
                    float(nbytes[i]),
                    float(max(x[i], x[half + i])),
                    bound,
                )
            )
        return out


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
    operators = model_operators(model, par, res, params.head)
    feature_map = FeatureMap.for_model(model, par, params)
    flops, nbytes = coefficient_matrices(operators)
    pad = padding_flops(operators, flops, params.gemm_half_tokens, feature_map.moe)

    peak_gemm = tensor_core_peak(hw.peak_flops, res.weight_dtype, res.act_dtype)
    peak_expert = tensor_core_peak(hw.peak_flops, res.expert_dtype, res.act_dtype)
    peak_act = tensor_core_peak(hw.peak_flops, res.act_dtype, res.act_dtype)
    tp_link = hw.inter_node if par.tp > hw.gpus_per_node else hw.intra_node
    pp_link = hw.inter_node if par.gpus > hw.gpus_per_node else hw.intra_node
    flop_rate = {
        ops_mod.RATE_GEMM: peak_gemm * res.compute_efficiency,
        ops_mod.RATE_GEMM_EXPERT: peak_expert * res.compute_efficiency,
        ops_mod.RATE_GEMM_ACT: peak_act * res.compute_efficiency,
        ops_mod.RATE_ATTENTION: peak_act * res.attention_efficiency,
        ops_mod.RATE_VECTOR: vector_peak(hw.peak_flops, res.act_dtype) * res.compute_efficiency,
    }
    links = {ops_mod.RATE_LINK_TP: tp_link, ops_mod.RATE_LINK_PP: pp_link}
    # On a full mesh (MI300X) a collective over few GPUs uses only that many direct links.
    link_bw = {
        ops_mod.RATE_LINK_TP: tp_link.bandwidth_among(min(par.tp, hw.gpus_per_node)),
        ops_mod.RATE_LINK_PP: pp_link.bandwidth_among(2),
    }

    attn_mem = params.attention_memory_efficiency or res.memory_efficiency
    nops = len(operators)
    sec_per_flop = np.zeros(nops)
    sec_per_byte = np.zeros(nops)
    launch = np.zeros((nops + 1, NUM_FEATURES))  # last row: the per-step host overhead
    for i, op in enumerate(operators):
        on = INDICATOR[op.active]
        if op.rate in links:
            link = links[op.rate]
            sec_per_byte[i] = 1.0 / (link_bw[op.rate] * params.comm_efficiency)
            launch[i, on] = op.count * op.hops * link.latency_s
        else:
            sec_per_flop[i] = 1.0 / flop_rate[op.rate]
            mem_eff = attn_mem if op.rate == ops_mod.RATE_ATTENTION else res.memory_efficiency
            sec_per_byte[i] = 1.0 / (hw.hbm_bandwidth * mem_eff)
            launch[i, on] = op.count * op.kernels * res.kernel_launch_s
    launch[nops, _F.ONE] = params.step_overhead_s
    launch[nops, _F.B] = params.overhead_per_seq_s
    launch[nops, _F.T] = params.overhead_per_token_s
    no_row = np.zeros((1, NUM_FEATURES))
    compute = np.concatenate([(flops + pad) * sec_per_flop[:, None], no_row]) + launch
    memory = np.concatenate([nbytes * sec_per_byte[:, None], no_row]) + launch
    coef = np.concatenate([compute, memory])
    present = {op.group for op in operators} | {"comm", "overhead"}
    return StepCostModel(
        model=model,
        hardware=hw,
        parallelism=par,
        params=params,
        resolved=res,
        operators=operators,
        feature_map=feature_map,
        _flops=flops,
        _bytes=nbytes,
        _coef_t=np.ascontiguousarray(coef.T),
        _group_idx=np.array(
            [GROUPS.index(op.group) for op in operators] + [GROUPS.index("overhead")],
            dtype=np.intp,
        ),
        _is_link=np.array([op.rate in links for op in operators]),
        _groups=tuple(g for g in GROUPS if g in present),
    )


__all__ = [
    "FEATURES",
    "OperatorCost",
    "StepCostModel",
    "StepTime",
    "build_step_cost",
    "resolve_params",
]
