"""The weight matrices of one layer as one GPU holds them (split by TP, EP, replicated).

The operator list (``operators.py``) charges FLOPs and bytes per element of these; the memory
plan (``memory.py``) sums them into the weights a GPU stores.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.cost.params import Parallelism
from servesim.model import ModelSpec


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
    """Dense MLP of one layer as held by one GPU (column/row split by TP; by all ``tp·dp``
    GPUs when the ranks' tokens are gathered to it)."""
    d, width = model.hidden_size, model.intermediate_size / par.ffn_tp
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
    """All shared experts of one MoE layer, fused, as held by one GPU (split by TP; by all
    ``tp·dp`` GPUs when the ranks' tokens are gathered to them)."""
    moe = model.moe
    assert moe is not None
    width = moe.num_shared_experts * moe.shared_expert_intermediate_size / par.ffn_tp
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


def materialized_mla_matrices(model: ModelSpec, hq: float) -> tuple[Matrix, ...]:
    """The absorbed decode weights one GPU (``hq`` query heads) holds when MLA's absorption is
    materialized (vLLM 0.7.1-0.7.x, ``mla/utils.py``): ``W_Q_UK`` (``q_in`` × hq·kv_lora, the
    query up-projection's no-rope part times ``W_UK``), ``W_QR`` (its rope part, ``q_in`` ×
    hq·rope, kept in the activation dtype) and ``W_UV_O`` (hq·kv_lora × d, ``W_UV`` times
    ``o_proj``), where ``q_in`` is the query up-projection's input: q_lora_rank, or d."""
    m = model.mla
    assert m is not None
    r = m.kv_lora_rank
    q_in = m.q_lora_rank or model.hidden_size
    return (
        Matrix("w_q_uk", q_in, hq * r),
        Matrix("w_qr", q_in, hq * m.qk_rope_head_dim),
        Matrix("w_uv_o", hq * r, model.hidden_size),
    )
