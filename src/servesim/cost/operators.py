"""The operators of one forward step, as linear functions of a few batch features.

Every operator's FLOPs and bytes (per GPU, per occurrence) are written as
``sum(coefficient[k] * feature[k])`` over the step features of ``features.py`` (``ONE``,
``B``, ``T``, attention pairs ``P`` and KV tokens ``K`` per path, the MoE features, the 0/1
indicators), so a step is costed by reducing the batch to those features once and evaluating a
small matrix product. :func:`build_operators` lists them in the order a step runs them: the
norms, each layer's attention and feed-forward (``layer_operators.py``), then what runs once
per step — the embedding, the head and sampler, and the communication. ``operator.py`` defines
an operator, its rates, scopes and groups.

Pipeline stages: ``build_operators(..., stage=...)`` lists the operators of one stage (its
layers; the embedding on the first stage; the final norm, head and sampler on the last; one
activation hand-off to the next stage); without ``stage`` the list covers every stage.
"""

from __future__ import annotations

from servesim.cost.features import B, T
from servesim.cost.layer_operators import (
    attention_operators,
    feed_forward_operators,
    mla_attention_operators,
)
from servesim.cost.operator import (
    RATE_GEMM_ACT,
    RATE_LINK_PP,
    RATE_LINK_TP,
    RATE_VECTOR,
    ElementBytes,
    Operator,
    gemm,
    vector,
)
from servesim.cost.params import Parallelism
from servesim.cost.stages import (
    StageLayers,
    pipeline_stages,
    sliding_layers,
    stage_layers,
    whole_model,
)
from servesim.cost.weights import Matrix
from servesim.model import ModelSpec


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
    mla_fused_down_proj: bool = False,
    mla_block_scale: float = 1.0,
    mla_materialized: bool = False,
    mla_prompt_attention_scale: float = 1.0,
    deepseek_glue_kernels: tuple[float, float] = (0.0, 0.0),
    allreduce_norm_fusion: bool = False,
) -> tuple[Operator, ...]:
    """All operators of one forward step of ``model`` split as ``par``, per GPU.

    Counts cover every layer of every pipeline stage (a step's latency crosses all stages),
    or only ``stage``'s layers when given (see :func:`pipeline_stages`).
    ``weight_bytes``/``expert_bytes``/``kv_bytes``/``act_bytes``: bytes per element of the
    block weights (attention, dense MLP, shared experts), the routed experts (default: as the
    block weights), the KV cache and activations (also the embedding, LM head, router and norm
    weights). ``moe_load``: token-expert pairs the busiest EP rank receives, relative to the
    mean (``1 + CostParams.moe_skew`` when ``ep > 1``). ``custom_allreduce``,
    ``mla_fused_down_proj``, ``mla_materialized``, ``mla_prompt_attention_scale``,
    ``deepseek_glue_kernels``, ``allreduce_norm_fusion``: see
    ``CostParams``; ``mla_block_scale``: see ``ResolvedParams.mla_block_scale``.
    """
    st = stage or whole_model(model, par.pp)
    nb = ElementBytes(
        weight=weight_bytes,
        expert=weight_bytes if expert_bytes is None else expert_bytes,
        kv=kv_bytes,
        act=act_bytes,
    )
    d = model.hidden_size
    # Norms: vLLM fuses the residual add into the RMSNorm: reads x and residual, writes both.
    # With the all-reduce fusion every norm that follows a TP all-reduce (all but the stage's
    # first pre-attention norm) runs inside the all-reduce's kernel: its bytes, no launch.
    norms = 2 * st.layers
    fused = norms - 1 if allreduce_norm_fusion and par.tp > 1 else 0
    norm = {"flops_per_token": 5.0 * d, "bytes_per_token": 4.0 * d * act_bytes}
    ops = [
        vector("add_rmsnorm", norms - fused, **norm, const_bytes=d * act_bytes),
        vector("allreduce_rmsnorm", fused, **norm, kernels=0.0, const_bytes=d * act_bytes),
    ]
    if model.mla is None:
        ops += attention_operators(model, par, st, nb)
    else:
        ops += mla_attention_operators(
            model,
            par,
            st,
            nb,
            mla_fused_down_proj,
            block_scale=mla_block_scale,
            materialized=mla_materialized,
            prompt_scale=mla_prompt_attention_scale,
        )
    ops += feed_forward_operators(model, par, st, nb, moe_load)
    if model.mla is not None:
        ops += _deepseek_glue(st, deepseek_glue_kernels)
    ops += _once_per_step(model, par, st, head, act_bytes, custom_allreduce)
    return tuple(op for op in ops if op.count > 0)


def _deepseek_glue(st: StageLayers, kernels: tuple[float, float]) -> list[Operator]:
    """An engine release's unfused glue kernels in the stage's MLA layers and MoE layers
    (``CostParams.deepseek_glue_kernels``): launches only, no modelled FLOPs or bytes, and
    outside the MLA block's measured time scale (the block was measured on a release
    without them)."""
    per_attention, per_moe = kernels
    ops = []
    if per_attention:
        ops.append(vector("mla_glue", st.layers, 0.0, 0.0, kernels=per_attention))
    if per_moe and st.moe:
        ops.append(vector("moe_glue", st.moe, 0.0, 0.0, kernels=per_moe))
    return ops


# --- once per step ---------------------------------------------------------------------------


def _once_per_step(
    model: ModelSpec,
    par: Parallelism,
    st: StageLayers,
    head: str,
    act_bytes: float,
    custom_allreduce: bool,
) -> list[Operator]:
    """The embedding (first stage), the head (last stage) and the stage's communication."""
    d = model.hidden_size
    ops: list[Operator] = []
    if st.first:
        ops.append(
            Operator("embedding", "norm_other", 1, (), ((T, d * 2.0 * act_bytes),), RATE_VECTOR)
        )
    if st.last:
        ops.extend(_head_operators(model, par, head, act_bytes))
    ops.extend(_communication(model, par, st, head, act_bytes, custom_allreduce))
    return ops


def _head_operators(
    model: ModelSpec, par: Parallelism, head: str, act_bytes: float
) -> list[Operator]:
    """Final norm, LM head and sampler (or the value head) of the last stage."""
    d, tp, vocab = model.hidden_size, par.tp, model.vocab_size
    ops = [vector("final_norm", 1, 5.0 * d, 4.0 * d * act_bytes, const_bytes=d * act_bytes)]
    if head == "lm":
        lm = Matrix("lm_head", d, vocab / tp)
        ops.append(gemm(lm, "head", 1, B, act_bytes, act_bytes, rate=RATE_GEMM_ACT))
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
            gemm(
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
            gemm(
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
        # GPUs then all-gather their slices of the combined tokens. When the ranks' tokens are
        # gathered to the feed-forward, the gather and scatter (layer_operators) carry both:
        # the attention output's TP partial sums go into the gather unreduced.
        moe_a2a = st.moe if par.all_to_all else 0
        per_layer = 0 if par.moe_gather else 2 * st.layers - moe_a2a
        ops.append(
            Operator(
                "all_reduce",
                "comm",
                per_layer + (1 if st.first else 0),
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


__all__ = [
    # The stage layout ``build_operators(stage=...)`` takes, with the operator lists.
    "StageLayers",
    "build_operators",
    "pipeline_stages",
    "sliding_layers",
    "stage_layers",
    "whole_model",
]
