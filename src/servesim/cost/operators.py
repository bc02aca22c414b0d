"""The operators of one forward step, as linear functions of a few batch features.

Every operator's FLOPs and bytes (per GPU, per occurrence) are written as
``sum(coefficient[k] * feature[k])`` over the step features below, so a step is costed by
reducing the batch to those features once and evaluating a small matrix product. The features
are sums over the batch rows (row i: ``n_i`` new tokens, ``c_i`` tokens already cached):

==========  ==============================================================================
ONE         1 (constant terms: weights)
B           rows (sequences) in the step; the LM head and sampler run once per row
T           Σ n_i, tokens computed this step
T_A         tokens on MLA's weight-absorbed (decode) path (0 for non-MLA models)
T_R         T − T_A, tokens on the regular path
P           attention (query, key) pairs of full-attention layers on the regular path:
            Σ n_i·c_i + n_i(n_i+1)/2 (causal inside the chunk)
K           KV tokens read by a full-attention layer on the regular path: Σ c_i + n_i
P_A, K_A    the same for the rows on MLA's absorbed path
P_SW, K_SW  pairs and KV tokens of sliding-window layers (span capped at the window)
D_EXP       expected distinct routed experts hit per GPU in one MoE layer (balanced routing)
M_EXP       tokens each hit expert receives (the GEMM height of the expert kernels)
I_*         1 when B, T, T_A, T_R (respectively) is positive, else 0
==========  ==============================================================================

MLA convention (vLLM's MLA backends, FlashMLA for decode): rows with at most
``CostParams.mla_absorb_max_new_tokens`` new tokens use the *absorbed* form — ``W_UK`` is
applied to the queries and ``W_UV`` to the attention output, so attention is MQA over the
cached latent (QK width ``kv_lora_rank + qk_rope_head_dim``, V width ``kv_lora_rank``). Other
rows (prefill chunks) up-project the cached latent of every context and new token with
``kv_b_proj`` and run ordinary attention (QK width ``qk_nope + qk_rope``, V width ``v_head_dim``).
Both forms apply each weight once per new token, except that the regular form also
up-projects the latents of the context tokens; at zero context the linear layers follow the
2 × parameters rule exactly either way.

Scopes: with attention data parallelism (``Parallelism.dp > 1``) an operator either runs on
one rank's share of the batch (``rank``: attention, dense layers, shared experts, head) or on the
tokens of every rank (``global``: the routed experts under wide EP, fed by an all-to-all). The
step cost model evaluates the two scopes on different feature vectors.

Pipeline stages: ``build_operators(..., stage=...)`` lists the operators of one stage (its
layers; the embedding on the first stage; the final norm, head and sampler on the last; one
activation hand-off to the next stage); without ``stage`` the list covers every stage.

Groups: ``qkv_o`` (attention projections), ``attention`` (the attention kernel and KV-cache
write), ``mlp`` / ``moe`` (GEMMs only; the router counts as moe), ``head`` (the LM or value head
GEMMs), ``norm_other`` (norms, rope, activation functions, MoE routing glue, embedding gather,
sampler), ``comm`` (all-reduce, logits gather, pipeline sends), ``overhead`` (per step host
time). Linear groups (``qkv_o``, ``mlp``, ``moe``, ``head``) carry exactly 2 FLOPs per weight
element (and bias element) per token; elementwise FLOPs live in ``norm_other`` only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from servesim.cost.params import Parallelism
from servesim.model import ModelSpec

FEATURES = (
    "ONE",
    "B",
    "T",
    "T_A",
    "T_R",
    "P",
    "K",
    "P_A",
    "K_A",
    "P_SW",
    "K_SW",
    "D_EXP",
    "M_EXP",
    "I_B",
    "I_T",
    "I_TA",
    "I_TR",
)
ONE, B, T, T_A, T_R, P, K, P_A, K_A, P_SW, K_SW, D_EXP, M_EXP, I_B, I_T, I_TA, I_TR = range(
    len(FEATURES)
)
NUM_FEATURES = len(FEATURES)
INDICATOR = {B: I_B, T: I_T, T_A: I_TA, T_R: I_TR}
"""The 0/1 feature saying whether a count feature is positive: an operator's constant costs
(weight reads, kernel launches, tile padding) are charged on the indicator of its ``active``
feature, so an operator that does not run this step costs nothing."""

GROUPS = ("qkv_o", "attention", "mlp", "moe", "head", "norm_other", "comm", "overhead")

# Rates an operator can run at; resolved against the hardware in ``step.py``.
RATE_GEMM = "gemm"  # tensor cores at the block weights' dtype peak, GEMM efficiency curve
RATE_GEMM_EXPERT = "gemm_expert"  # tensor cores at the routed experts' dtype peak
RATE_GEMM_ACT = "gemm_act"  # tensor cores at the activation dtype (LM head, router)
RATE_ATTENTION = "attention"  # tensor cores at the activation dtype, attention efficiency
RATE_VECTOR = "vector"  # elementwise: CUDA cores
RATE_LINK_TP = "link_tp"  # the TP group's link
RATE_LINK_PP = "link_pp"  # the link between pipeline stages
RATE_LINK_EP = "link_ep"  # the expert-parallel group's link (all-to-all)

SCOPE_RANK = "rank"
SCOPE_GLOBAL = "global"


@dataclass(frozen=True)
class Operator:
    """One kind of kernel in the step. FLOPs/bytes are per GPU and per occurrence."""

    name: str
    group: str
    count: int
    """Occurrences per step (e.g. the number of layers it appears in)."""
    flops: tuple[tuple[int, float], ...]
    """(feature, FLOPs per unit of that feature)."""
    bytes: tuple[tuple[int, float], ...]
    """(feature, bytes per unit): HBM bytes, or bytes each GPU sends for link operators."""
    rate: str
    kernels: float = 1.0
    """Kernels launched per occurrence (each costs ``kernel_launch_s``)."""
    m_feature: int = ONE
    """Feature giving the GEMM height for the efficiency curve (ONE: no curve)."""
    active: int = T
    """The operator only runs (and pays its launches) when this feature is > 0."""
    hops: float = 0.0
    """Link latencies paid per occurrence (ring steps) for link operators."""
    scope: str = SCOPE_RANK
    """``rank``: runs on one data-parallel rank's tokens; ``global``: on every rank's tokens
    (routed experts under wide EP). The same thing when ``dp = 1``."""
    shape: tuple[int, int] | None = None
    """GEMMs: (n, k) of the weight on one GPU, so a measured GEMM table can price it."""


@dataclass(frozen=True)
class StageLayers:
    """The layers one pipeline stage runs (or, with ``first`` and ``last`` both set and
    ``sends = pp − 1``, the whole model)."""

    layers: int
    sliding: int
    """Of ``layers``, how many use a sliding window."""
    moe: int
    """Of ``layers``, how many are MoE layers."""
    first: bool
    """Holds the embedding."""
    last: bool
    """Holds the final norm, the head and the sampler."""
    sends: int
    """Activation hand-offs to a next stage (1 on every stage but the last)."""


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """Layers of each pipeline stage: even split, the first ``num_layers % pp`` take one more."""
    base, extra = divmod(num_layers, pp)
    out, start = [], 0
    for s in range(pp):
        size = base + (1 if s < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def whole_model(model: ModelSpec, pp: int = 1) -> StageLayers:
    """Every layer of ``model``, with the ``pp − 1`` hand-offs of a ``pp``-stage pipeline."""
    return StageLayers(
        layers=model.num_layers,
        sliding=sliding_layers(model),
        moe=model.num_moe_layers,
        first=True,
        last=True,
        sends=pp - 1,
    )


def pipeline_stages(model: ModelSpec, pp: int) -> tuple[StageLayers, ...]:
    """The ``pp`` stages of ``model``: layers as :func:`stage_layers`, MoE layers where the model
    puts them, sliding-window layers spread in proportion (gpt-oss alternates them)."""
    n_sw, total = sliding_layers(model), model.num_layers
    out = []
    for s, layers in enumerate(stage_layers(total, pp)):
        # Rounded cumulative shares, so the stages' sliding layers add up to the model's.
        sliding = round(n_sw * layers.stop / total) - round(n_sw * layers.start / total)
        out.append(
            StageLayers(
                layers=len(layers),
                sliding=sliding,
                moe=sum(model.is_moe_layer(i) for i in layers),
                first=s == 0,
                last=s == pp - 1,
                sends=0 if s == pp - 1 else 1,
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class Matrix:
    """A weight matrix as held by one GPU: ``k`` inputs, ``n`` outputs, ``bias`` elements."""

    name: str
    k: float
    n: float
    bias: float = 0.0

    @property
    def elements(self) -> float:
        return self.k * self.n + self.bias


# --- weight shapes per GPU -----------------------------------------------------------------


def attention_matrices(model: ModelSpec, par: Parallelism) -> list[Matrix]:
    """Attention projections of one layer as held by one GPU.

    MLA's down-projections (``q_a``, ``kv_a``) are replicated on every TP rank, as in vLLM;
    everything else is split by heads.
    """
    d, tp = model.hidden_size, par.tp
    hq = model.num_attention_heads / tp
    if model.mla is None:
        hd = model.head_dim
        hkv = par.kv_heads_per_gpu(model)
        width = (hq + 2 * hkv) * hd
        return [
            Matrix("qkv_proj", d, width, width if model.qkv_bias else 0.0),
            Matrix("o_proj", hq * hd, d, d if model.o_bias else 0.0),
        ]
    m = model.mla
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    bias = 1.0 if model.qkv_bias else 0.0  # MLA biases sit on the input projections only
    mats = []
    if m.q_lora_rank:
        mats += [
            Matrix("q_a_proj", d, m.q_lora_rank, bias * m.q_lora_rank),
            Matrix("q_b_proj", m.q_lora_rank, hq * qk),
        ]
    else:
        mats.append(Matrix("q_proj", d, hq * qk, bias * hq * qk))
    kv_a = m.kv_lora_rank + m.qk_rope_head_dim
    mats += [
        Matrix("kv_a_proj", d, kv_a, bias * kv_a),
        Matrix("kv_b_proj", m.kv_lora_rank, hq * (m.qk_nope_head_dim + m.v_head_dim)),
        Matrix("o_proj", hq * m.v_head_dim, d, d if model.o_bias else 0.0),
    ]
    return mats


def dense_mlp_matrices(model: ModelSpec, par: Parallelism) -> list[Matrix]:
    """Dense MLP of one layer as held by one GPU (column/row split by TP)."""
    d, width = model.hidden_size, model.intermediate_size / par.tp
    up = 2 * width if model.gated_mlp else width
    bias = 1.0 if model.mlp_bias else 0.0
    return [Matrix("gate_up_proj", d, up, bias * up), Matrix("down_proj", width, d, bias * d)]


def expert_matrices(model: ModelSpec, par: Parallelism) -> list[Matrix]:
    """One routed expert's matrices as held by one GPU of its expert group."""
    moe = model.moe
    assert moe is not None
    d, width = model.hidden_size, moe.expert_intermediate_size / par.expert_tp
    up = 2 * width if model.gated_mlp else width
    return [
        Matrix("experts_gate_up", d, up, up if moe.expert_bias else 0.0),
        Matrix("experts_down", width, d, d / par.expert_tp if moe.expert_bias else 0.0),
    ]


def shared_expert_matrices(model: ModelSpec, par: Parallelism) -> list[Matrix]:
    """All shared experts of one MoE layer, fused, as held by one GPU (split by TP)."""
    moe = model.moe
    assert moe is not None
    width = moe.num_shared_experts * moe.shared_expert_intermediate_size / par.tp
    if width == 0:
        return []
    d = model.hidden_size
    up = 2 * width if model.gated_mlp else width
    return [Matrix("shared_gate_up", d, up), Matrix("shared_down", width, d)]


def router_matrix(model: ModelSpec) -> Matrix:
    """The MoE gate, with the shared-expert gate when there is one (replicated on every GPU)."""
    moe = model.moe
    assert moe is not None
    outputs = moe.num_experts + (1 if moe.shared_expert_gate else 0)
    return Matrix("router", model.hidden_size, outputs, moe.num_experts if moe.router_bias else 0)


def norm_elements_per_layer(model: ModelSpec, par: Parallelism) -> float:
    """Norm weights of one layer (replicated): two hidden norms, plus q/k or MLA latent norms."""
    n = 2.0 * model.hidden_size
    if model.qk_norm:
        n += 2.0 * model.head_dim
    if model.mla is not None:
        n += model.mla.kv_lora_rank + (model.mla.q_lora_rank or 0)
    return n


def sliding_layers(model: ModelSpec) -> int:
    """Layers that use a sliding window (0 when the model has none, or uses MLA)."""
    if model.sliding_window is None or model.mla is not None:
        return 0
    return min(model.num_sliding_layers, model.num_layers)


def expected_distinct_experts(tokens, num_experts: int, top_k: int):
    """Expected number of distinct experts hit when ``tokens`` tokens each pick ``top_k`` of
    ``num_experts`` experts uniformly at random (balanced routing): ``E·(1 − (1 − k/E)^T)``.

    Works on floats and numpy arrays.
    """
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


# --- the operator list ---------------------------------------------------------------------


def _gemm(
    mat: Matrix,
    group: str,
    count: int,
    tokens: int,
    w_bytes: float,
    act_bytes: float,
    rate: str = RATE_GEMM,
    active: int | None = None,
) -> Operator:
    """A GEMM applied to ``tokens`` rows: 2 FLOPs per weight element per row; reads the weights
    once and the input rows, writes the output rows."""
    return Operator(
        name=mat.name,
        group=group,
        count=count,
        flops=((tokens, 2.0 * mat.elements),),
        bytes=((ONE, mat.elements * w_bytes), (tokens, (mat.k + mat.n) * act_bytes)),
        rate=rate,
        m_feature=tokens,
        active=tokens if active is None else active,
        shape=(mat.n, mat.k),
    )


def _vector(
    name: str,
    count: int,
    flops_per_token: float,
    bytes_per_token: float,
    kernels: float = 1.0,
    const_bytes: float = 0.0,
) -> Operator:
    return Operator(
        name=name,
        group="norm_other",
        count=count,
        flops=((T, flops_per_token),),
        bytes=((T, bytes_per_token), (ONE, const_bytes)),
        rate=RATE_VECTOR,
        kernels=kernels,
    )


def build_operators(
    model: ModelSpec,
    par: Parallelism,
    *,
    weight_bytes: float,
    expert_bytes: float | None = None,
    kv_bytes: float,
    act_bytes: float,
    head: str = "lm",
    stage: StageLayers | None = None,
    moe_load: float = 1.0,
    custom_allreduce: bool = False,
) -> tuple[Operator, ...]:
    """All operators of one forward step of ``model`` split as ``par``, per GPU.

    Counts cover every layer of every pipeline stage (a step's latency crosses all stages),
    or only ``stage``'s layers when given (see :func:`pipeline_stages`).
    ``weight_bytes``/``expert_bytes``/``kv_bytes``/``act_bytes``: bytes per element of the
    block weights (attention, dense MLP, shared experts), the routed experts (default: as the
    block weights), the KV cache and activations (also the embedding, LM head, router and norm
    weights). ``moe_load``: token-expert pairs the busiest EP rank receives, relative to the
    mean (``1 + CostParams.moe_skew`` when ``ep > 1``). ``custom_allreduce``: see
    ``CostParams.custom_allreduce``.
    """
    st = stage or whole_model(model, par.pp)
    d, L, tp = model.hidden_size, st.layers, par.tp
    expert_bytes = weight_bytes if expert_bytes is None else expert_bytes
    hq = model.num_attention_heads / tp
    ops: list[Operator] = []

    # Norms: vLLM fuses the residual add into the RMSNorm: reads x and residual, writes both.
    ops.append(
        _vector("add_rmsnorm", 2 * L, 5.0 * d, 4.0 * d * act_bytes, const_bytes=d * act_bytes)
    )

    # --- attention ---
    if model.mla is None:
        qkv, o = attention_matrices(model, par)
        hd, hkv = model.head_dim, par.kv_heads_per_gpu(model)
        ops.append(_gemm(qkv, "qkv_o", L, T, weight_bytes, act_bytes))
        ops.append(_gemm(o, "qkv_o", L, T, weight_bytes, act_bytes))
        ops.append(_vector("rope", L, 3.0 * (hq + hkv) * hd, 2.0 * (hq + hkv) * hd * act_bytes))
        if model.qk_norm:
            ops.append(
                _vector(
                    "qk_norm",
                    L,
                    4.0 * (hq + hkv) * hd,
                    2.0 * (hq + hkv) * hd * act_bytes,
                    kernels=2.0,
                )
            )
        kv_tok = 2.0 * hkv * hd * kv_bytes  # one token's K and V in one layer on one GPU
        # Per token: write its K,V into the cache; read Q, write O. Per KV token: read K,V.
        per_token = kv_tok + 2.0 * hq * hd * act_bytes
        n_sw = st.sliding
        if L - n_sw:
            ops.append(
                Operator(
                    "attention",
                    "attention",
                    L - n_sw,
                    ((P, 4.0 * hq * hd),),
                    ((K, kv_tok), (T, per_token)),
                    RATE_ATTENTION,
                    kernels=2.0,
                )
            )
        if n_sw:
            ops.append(
                Operator(
                    "attention_sliding",
                    "attention",
                    n_sw,
                    ((P_SW, 4.0 * hq * hd),),
                    ((K_SW, kv_tok), (T, per_token)),
                    RATE_ATTENTION,
                    kernels=2.0,
                )
            )
    else:
        m = model.mla
        r, rope, nope, v = m.kv_lora_rank, m.qk_rope_head_dim, m.qk_nope_head_dim, m.v_head_dim
        mats = {x.name: x for x in attention_matrices(model, par)}
        for name in ("q_a_proj", "q_b_proj", "q_proj", "kv_a_proj"):
            if name in mats:
                ops.append(_gemm(mats[name], "qkv_o", L, T, weight_bytes, act_bytes))
        ops.append(_gemm(mats["o_proj"], "qkv_o", L, T, weight_bytes, act_bytes))
        if m.q_lora_rank:
            ops.append(
                _vector("q_a_layernorm", L, 4.0 * m.q_lora_rank, 2.0 * m.q_lora_rank * act_bytes)
            )
        ops.append(_vector("kv_a_layernorm", L, 4.0 * r, 2.0 * r * act_bytes))
        ops.append(_vector("rope", L, 3.0 * (hq + 1) * rope, 2.0 * (hq + 1) * rope * act_bytes))
        latent = (r + rope) * kv_bytes  # one token's cache entry in one layer
        # Regular path: up-project the latent of every context and new token, then MHA.
        kv_b = mats["kv_b_proj"]
        ops.append(
            Operator(
                "kv_b_proj",
                "qkv_o",
                L,
                ((K, 2.0 * kv_b.elements),),
                ((ONE, kv_b.elements * weight_bytes), (K, r * kv_bytes + kv_b.n * act_bytes)),
                RATE_GEMM,
                kernels=2.0,
                m_feature=K,
                active=T_R,
            )
        )
        ops.append(
            Operator(
                "attention",
                "attention",
                L,
                ((P, 2.0 * hq * (nope + rope + v)),),
                (
                    (K, hq * (nope + v) * act_bytes + rope * kv_bytes),
                    (T_R, hq * (nope + rope + v) * act_bytes + latent),
                ),
                RATE_ATTENTION,
                kernels=2.0,
                active=T_R,
            )
        )
        # Absorbed path: W_UK on the queries, MQA over the latent, W_UV on the output.
        ops.append(
            Operator(
                "kv_b_absorbed_q",
                "qkv_o",
                L,
                ((T_A, 2.0 * hq * nope * r),),
                ((ONE, hq * nope * r * weight_bytes), (T_A, hq * (nope + r) * act_bytes)),
                RATE_GEMM,
                m_feature=T_A,
                active=T_A,
            )
        )
        ops.append(
            Operator(
                "attention_absorbed",
                "attention",
                L,
                ((P_A, 2.0 * hq * (2 * r + rope)),),
                ((K_A, latent), (T_A, hq * (2 * r + rope) * act_bytes + latent)),
                RATE_ATTENTION,
                kernels=2.0,
                active=T_A,
            )
        )
        ops.append(
            Operator(
                "kv_b_absorbed_o",
                "qkv_o",
                L,
                ((T_A, 2.0 * hq * r * v),),
                ((ONE, hq * r * v * weight_bytes), (T_A, hq * (r + v) * act_bytes)),
                RATE_GEMM,
                m_feature=T_A,
                active=T_A,
            )
        )

    # --- feed-forward ---
    n_moe = st.moe
    n_dense = L - n_moe
    gated = 3.0 if model.gated_mlp else 2.0  # activation: read gate+up (or up), write
    if n_dense:
        up, down = dense_mlp_matrices(model, par)
        ops.append(_gemm(up, "mlp", n_dense, T, weight_bytes, act_bytes))
        ops.append(_gemm(down, "mlp", n_dense, T, weight_bytes, act_bytes))
        ops.append(_vector("act_fn", n_dense, 4.0 * down.k, gated * down.k * act_bytes))
    if n_moe:
        moe = model.moe
        assert moe is not None
        E, k, ep = moe.num_experts, moe.experts_per_token, par.ep
        ops.append(
            Operator(
                "router",
                "moe",
                n_moe,
                ((T, 2.0 * router_matrix(model).elements),),
                ((ONE, router_matrix(model).elements * act_bytes), (T, d * act_bytes + 4.0 * E)),
                RATE_GEMM_ACT,
                m_feature=T,
            )
        )
        # Routing glue: top-k softmax, sort tokens by expert, weighted sum of the k outputs.
        ops.append(
            _vector(
                "moe_routing",
                n_moe,
                5.0 * E + 2.0 * k * d,
                8.0 * E + 8.0 * k + (k + 1) * d * act_bytes,
                kernels=3.0,
            )
        )
        # Token-expert pairs per token that land on one GPU; the busiest EP rank gets
        # ``moe_load`` times its share. Under wide EP (dp > 1) T counts every rank's tokens.
        pairs = k / ep * (moe_load if ep > 1 else 1.0)
        expert_scope = SCOPE_GLOBAL if par.all_to_all else SCOPE_RANK
        if par.all_to_all:
            # Dispatch: each GPU sends its share of its rank's tokens (the rank's tp GPUs split
            # them), k copies each, (ep − 1)/ep of them to other GPUs; combine brings the
            # outputs back. The busiest receiver sees ``moe_load`` × the mean.
            a2a = k * d * act_bytes * (ep - 1) / ep / tp * moe_load
            for name in ("moe_dispatch", "moe_combine"):
                ops.append(
                    Operator(
                        name,
                        "comm",
                        n_moe,
                        (),
                        ((T, a2a),),
                        RATE_LINK_EP,
                        kernels=0.0,
                        hops=ep - 1.0,
                    )
                )
        for mat in expert_matrices(model, par):
            ops.append(
                Operator(
                    mat.name,
                    "moe",
                    n_moe,
                    ((T, pairs * 2.0 * mat.elements),),
                    (
                        (D_EXP, mat.elements * expert_bytes),
                        (T, pairs * (mat.k + mat.n) * act_bytes),
                    ),
                    RATE_GEMM_EXPERT,
                    m_feature=M_EXP,
                    scope=expert_scope,
                )
            )
        width = moe.expert_intermediate_size / par.expert_tp
        act_fn = _vector(
            "experts_act_fn", n_moe, pairs * 4.0 * width, pairs * gated * width * act_bytes
        )
        ops.append(dataclasses.replace(act_fn, scope=expert_scope))
        shared = shared_expert_matrices(model, par)
        for mat in shared:
            ops.append(_gemm(mat, "moe", n_moe, T, weight_bytes, act_bytes))
        if shared:
            ops.append(
                _vector("shared_act_fn", n_moe, 4.0 * shared[1].k, gated * shared[1].k * act_bytes)
            )

    # --- once per step ---
    if st.first:
        ops.append(
            Operator("embedding", "norm_other", 1, (), ((T, d * 2.0 * act_bytes),), RATE_VECTOR)
        )
    if st.last:
        ops.extend(_head_operators(model, par, head, act_bytes))
    ops.extend(_communication(model, par, st, head, act_bytes, custom_allreduce))
    return tuple(op for op in ops if op.count > 0)


def _head_operators(
    model: ModelSpec, par: Parallelism, head: str, act_bytes: float
) -> list[Operator]:
    """Final norm, LM head and sampler (or the value head) of the last stage."""
    d, tp, vocab = model.hidden_size, par.tp, model.vocab_size
    ops = [_vector("final_norm", 1, 5.0 * d, 4.0 * d * act_bytes, const_bytes=d * act_bytes)]
    if head == "lm":
        lm = Matrix("lm_head", d, vocab / tp)
        ops.append(_gemm(lm, "head", 1, B, act_bytes, act_bytes, rate=RATE_GEMM_ACT))
        # Sampler: logits to fp32, softmax / top-p / sample: about three passes over the logits.
        ops.append(
            Operator(
                "sampler",
                "norm_other",
                1,
                ((B, 5.0 * vocab),),
                ((B, vocab * (act_bytes + 8.0)),),
                RATE_VECTOR,
                kernels=3.0,
                active=B,
            )
        )
    else:
        ops.append(
            _gemm(
                Matrix("value_dense", d, d, d),
                "head",
                1,
                B,
                act_bytes,
                act_bytes,
                rate=RATE_GEMM_ACT,
            )
        )
        ops.append(
            _gemm(
                Matrix("value_out", d, 1, 1), "head", 1, B, act_bytes, act_bytes, rate=RATE_GEMM_ACT
            )
        )
    return ops


def _communication(
    model: ModelSpec,
    par: Parallelism,
    st: StageLayers,
    head: str,
    act_bytes: float,
    custom_allreduce: bool = False,
) -> list[Operator]:
    """TP all-reduces, the logits gather and pipeline hand-offs of ``st``."""
    d, tp, vocab = model.hidden_size, par.tp, model.vocab_size
    ops: list[Operator] = []
    if tp > 1:
        ring = 2.0 * (tp - 1) / tp  # ring all-reduce: each GPU sends 2(tp-1)/tp of the message
        # One after attention and one after each FFN, plus one after the vocab-split embedding.
        # Under wide EP the all-to-all combine replaces the post-MoE all-reduce; the rank's tp
        # GPUs then all-gather their slices of the combined tokens.
        moe_a2a = st.moe if par.all_to_all else 0
        ops.append(
            Operator(
                "all_reduce",
                "comm",
                2 * st.layers - moe_a2a + (1 if st.first else 0),
                (),
                ((T, ring * d * act_bytes),),
                RATE_LINK_TP,
                kernels=0.0,
                # A custom all-reduce crosses the link twice (peer writes, then a barrier);
                # NCCL's ring takes 2(tp - 1) steps. Same bytes either way (two-shot = ring).
                hops=2.0 if custom_allreduce else 2.0 * (tp - 1),
            )
        )
        if moe_a2a:
            ops.append(
                Operator(
                    "all_gather",
                    "comm",
                    moe_a2a,
                    (),
                    ((T, (tp - 1) / tp * d * act_bytes),),
                    RATE_LINK_TP,
                    kernels=0.0,
                    hops=tp - 1.0,
                )
            )
        if head == "lm" and st.last:
            ops.append(
                Operator(
                    "logits_gather",
                    "comm",
                    1,
                    (),
                    ((B, (tp - 1) / tp * vocab * act_bytes),),
                    RATE_LINK_TP,
                    kernels=0.0,
                    active=B,
                    hops=tp - 1.0,
                )
            )
    if st.sends:
        # vLLM sends hidden states and the residual to the next stage.
        ops.append(
            Operator(
                "pp_send",
                "comm",
                st.sends,
                (),
                ((T, 2.0 * d * act_bytes),),
                RATE_LINK_PP,
                kernels=0.0,
                hops=1.0,
            )
        )
    return ops
