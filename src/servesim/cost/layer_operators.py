"""The operators of a stage's transformer layers: attention (MHA/GQA/MQA or MLA) and the
feed-forward (dense MLP or MoE), each counted over the layers that have it.

MLA convention (vLLM's MLA backends, FlashMLA for decode): rows with at most
``CostParams.mla_absorb_max_new_tokens`` new tokens use the *absorbed* form — ``W_UK`` is
applied to the queries and ``W_UV`` to the attention output, so attention is MQA over the
cached latent (QK width ``kv_lora_rank + qk_rope_head_dim``, V width ``kv_lora_rank``). Other
rows (prefill chunks) up-project the cached latent of every context and new token with
``kv_b_proj`` and run ordinary attention (QK width ``qk_nope + qk_rope``, V width ``v_head_dim``).
Both forms apply each weight once per new token, except that the regular form also
up-projects the latents of the context tokens; at zero context the linear layers follow the
2 × parameters rule exactly either way.
"""

from __future__ import annotations

import dataclasses

from servesim.cost.features import D_EXP, K_A, K_SW, M_EXP, ONE, P_A, P_SW, T_A, T_R, K, P, T
from servesim.cost.operator import (
    ATTENTION_KERNELS,
    RATE_ATTENTION,
    RATE_GEMM,
    RATE_GEMM_ACT,
    RATE_GEMM_EXPERT,
    RATE_LINK_EP,
    SCOPE_GLOBAL,
    SCOPE_RANK,
    ElementBytes,
    Operator,
    gemm,
    vector,
)
from servesim.cost.params import Parallelism
from servesim.cost.stages import StageLayers
from servesim.cost.weights import (
    Matrix,
    attention_matrices,
    dense_mlp_matrices,
    expert_matrices,
    materialized_mla_matrices,
    router_matrix,
    shared_expert_matrices,
)
from servesim.model import ModelSpec

# --- attention -------------------------------------------------------------------------------


def attention_operators(
    model: ModelSpec, par: Parallelism, st: StageLayers, nb: ElementBytes
) -> list[Operator]:
    """Projections, rope, q/k norms and the attention kernels (full and sliding-window layers)
    of MHA/GQA/MQA layers."""
    L, hq = st.layers, model.num_attention_heads / par.tp
    weight_bytes, kv_bytes, act_bytes = nb.weight, nb.kv, nb.act
    ops: list[Operator] = []
    qkv, o = attention_matrices(model, par)
    hd, hkv = model.head_dim, par.kv_heads_per_gpu(model)
    ops.append(gemm(qkv, "qkv_o", L, T, weight_bytes, act_bytes))
    ops.append(gemm(o, "qkv_o", L, T, weight_bytes, act_bytes))
    ops.append(vector("rope", L, 3.0 * (hq + hkv) * hd, 2.0 * (hq + hkv) * hd * act_bytes))
    if model.qk_norm:
        ops.append(
            vector(
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
                kernels=ATTENTION_KERNELS,
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
                kernels=ATTENTION_KERNELS,
            )
        )
    return ops


def mla_attention_operators(
    model: ModelSpec,
    par: Parallelism,
    st: StageLayers,
    nb: ElementBytes,
    fused_down_proj: bool = False,
    block_scale: float = 1.0,
    materialized: bool = False,
    prompt_scale: float = 1.0,
) -> list[Operator]:
    """Projections, latent norms, rope and both attention paths of MLA layers (see the module
    docstring: the regular path for prefill chunks, the absorbed path for decodes).
    ``fused_down_proj``: ``q_a_proj`` and ``kv_a_proj`` (both read the hidden states, both
    replicated) run as one GEMM of their stacked weights, ``qkv_a_proj``. ``block_scale``: the
    engine's measured MLA block over the sum of these operators (``Operator.time_scale``).
    ``materialized``: decode rows multiply by the materialized ``W_Q_UK``/``W_QR`` and
    ``W_UV_O`` instead of the query up-projection, ``W_UK``, ``W_UV`` and ``o_proj``, which
    only prompt rows run (``CostParams.mla_materialized``). ``prompt_scale``: how many times
    its FLOP time the engine's kernel takes for the prompt rows on the absorbed path
    (``CostParams.mla_prompt_attention_scale``); decode rows keep the tables' rate."""
    L, hq = st.layers, model.num_attention_heads / par.tp
    weight_bytes, kv_bytes, act_bytes = nb.weight, nb.kv, nb.act
    ops: list[Operator] = []
    m = model.mla
    r, rope, nope, v = m.kv_lora_rank, m.qk_rope_head_dim, m.qk_nope_head_dim, m.v_head_dim
    mats = {x.name: x for x in attention_matrices(model, par)}
    if fused_down_proj and "q_a_proj" in mats:
        q_a, kv_a = mats.pop("q_a_proj"), mats.pop("kv_a_proj")
        mats["qkv_a_proj"] = Matrix("qkv_a_proj", q_a.k, q_a.n + kv_a.n, q_a.bias + kv_a.bias)
    # (Materialized: the query up-projection and o_proj run on prompt rows only.)
    up_rows = T_R if materialized else T
    for name in ("q_a_proj", "qkv_a_proj", "q_b_proj", "q_proj", "kv_a_proj"):
        if name in mats:
            rows = up_rows if name in ("q_b_proj", "q_proj") else T
            ops.append(gemm(mats[name], "qkv_o", L, rows, weight_bytes, act_bytes))
    ops.append(gemm(mats["o_proj"], "qkv_o", L, up_rows, weight_bytes, act_bytes))
    if m.q_lora_rank:
        ops.append(vector("q_a_layernorm", L, 4.0 * m.q_lora_rank, 2.0 * m.q_lora_rank * act_bytes))
    ops.append(vector("kv_a_layernorm", L, 4.0 * r, 2.0 * r * act_bytes))
    ops.append(vector("rope", L, 3.0 * (hq + 1) * rope, 2.0 * (hq + 1) * rope * act_bytes))
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
            kernels=ATTENTION_KERNELS,
            active=T_R,
        )
    )
    # Absorbed path: W_UK on the queries, MQA over the latent, W_UV on the output.
    if materialized:
        ops += _materialized_absorption(model, hq, L, nb)
    else:
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
            kernels=ATTENTION_KERNELS,
            active=T_A,
            prompt_scale=prompt_scale,
        )
    )
    if not materialized:
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
    if block_scale != 1.0:
        ops = [dataclasses.replace(op, time_scale=op.time_scale * block_scale) for op in ops]
    return ops


def _materialized_absorption(
    model: ModelSpec, hq: float, layers: int, nb: ElementBytes
) -> list[Operator]:
    """Decode rows' query and output projections through the materialized absorbed weights
    (:func:`materialized_mla_matrices`): ``W_QR`` stays in the activation dtype (vLLM does not
    requantize it)."""
    w_q_uk, w_qr, w_uv_o = materialized_mla_matrices(model, hq)
    return [
        gemm(w_q_uk, "qkv_o", layers, T_A, nb.weight, nb.act),
        gemm(w_qr, "qkv_o", layers, T_A, nb.act, nb.act),
        gemm(w_uv_o, "qkv_o", layers, T_A, nb.weight, nb.act),
    ]


# --- feed-forward ----------------------------------------------------------------------------


def feed_forward_operators(
    model: ModelSpec, par: Parallelism, st: StageLayers, nb: ElementBytes, moe_load: float
) -> list[Operator]:
    """The dense MLPs of the stage's dense layers, then its MoE layers.

    When the ranks' tokens are gathered to the feed-forward (``par.moe_gather``: SGLang's DP
    attention), every one of these runs on the tokens of all ranks (global scope), split over
    all ``tp·dp`` GPUs, between a gather and a scatter of the hidden states."""
    ops: list[Operator] = []
    n_dense = st.layers - st.moe
    gated = 3.0 if model.gated_mlp else 2.0  # activation: read gate+up (or up), write
    if par.moe_gather:
        ops += _gather_scatter(model, par, st.layers, nb.act)
    if n_dense:
        weight_bytes, act_bytes = nb.weight, nb.act
        up, down = dense_mlp_matrices(model, par)
        ops.append(gemm(up, "mlp", n_dense, T, weight_bytes, act_bytes))
        ops.append(gemm(down, "mlp", n_dense, T, weight_bytes, act_bytes))
        ops.append(vector("act_fn", n_dense, 4.0 * down.k, gated * down.k * act_bytes))
    if st.moe:
        ops += _moe(model, par, st.moe, nb, moe_load, gated)
    if par.moe_gather:
        ops = [dataclasses.replace(op, scope=SCOPE_GLOBAL) for op in ops]
    return ops


def _gather_scatter(
    model: ModelSpec, par: Parallelism, layers: int, act_bytes: float
) -> list[Operator]:
    """SGLang's DP-attention collectives around each feed-forward, over all N = ``tp·dp`` GPUs.

    A step with prompt tokens gathers by an all-reduce of a zero-filled buffer of every rank's
    tokens (each rank's attention-TP partial sums in its slot) and all-reduces the feed-forward
    output (each GPU then keeps its rank's rows): two ring all-reduces, 2(N − 1)/N of the global
    hidden states each. A decode step (its batch padded to the same length on every rank, for
    the CUDA graph) all-gathers and reduce-scatters instead: (N − 1)/N each. Priced per token on
    the regular (prompt) path and on MLA's absorbed (decode) path; a model without MLA prices
    every token as a prompt token. Source: SGLang ``layers/dp_attention.py`` (``_dp_gather``:
    all-reduce under ``SUM_LEN`` padding, all-gather under ``MAX_LEN``)."""
    gpus = par.tp * par.dp
    ring = (gpus - 1) / gpus * model.hidden_size * act_bytes
    ops = []
    for name in ("ffn_gather", "ffn_scatter"):
        ops.append(
            Operator(
                name,
                "comm",
                layers,
                (),
                ((T_R, 2.0 * ring), (T_A, ring)),
                RATE_LINK_EP,
                kernels=0.0,
                hops=gpus - 1.0,
            )
        )
    return ops


def _moe(
    model: ModelSpec, par: Parallelism, n_moe: int, nb: ElementBytes, moe_load: float, gated: float
) -> list[Operator]:
    """Router, routing glue, all-to-all (wide EP), routed and shared experts of ``n_moe``
    MoE layers."""
    d, tp = model.hidden_size, par.tp
    weight_bytes, expert_bytes, act_bytes = nb.weight, nb.expert, nb.act
    ops: list[Operator] = []
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
        vector(
            "moe_routing",
            n_moe,
            5.0 * E + 2.0 * k * d,
            8.0 * E + 8.0 * k + (k + 1) * d * act_bytes,
            kernels=3.0,
        )
    )
    # Token-expert pairs per token that land on one GPU; the busiest EP rank gets
    # ``moe_load`` times its share. Under attention DP (dp > 1) T counts every rank's tokens.
    pairs = k / ep * (moe_load if ep > 1 else 1.0)
    expert_scope = SCOPE_GLOBAL if par.dp > 1 else SCOPE_RANK

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
    act_fn = vector("experts_act_fn", n_moe, pairs * 4.0 * width, pairs * gated * width * act_bytes)
    ops.append(dataclasses.replace(act_fn, scope=expert_scope))
    shared = shared_expert_matrices(model, par)
    for mat in shared:
        ops.append(gemm(mat, "moe", n_moe, T, weight_bytes, act_bytes))
    if shared:
        ops.append(
            vector("shared_act_fn", n_moe, 4.0 * shared[1].k, gated * shared[1].k * act_bytes)
        )
    return ops
