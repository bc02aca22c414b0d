"""One operator of a forward step: what it computes and moves, at which rate, in which group.

An :class:`Operator` is one kind of kernel; its FLOPs and bytes (per GPU, per occurrence) are
``sum(coefficient[k] * feature[k])`` over the step features of ``features.py``. The operator
lists are built in ``operators.py`` (the step) and ``layer_operators.py`` (the layers).

Scopes: with attention data parallelism (``Parallelism.dp > 1``) an operator either runs on
one rank's share of the batch (``rank``: attention, dense layers, shared experts, head) or on the
tokens of every rank (``global``: the routed experts, fed by an all-to-all under wide EP or by an
all-gather when every GPU holds a slice of every expert). The step cost model evaluates the two
scopes on different feature vectors.

Groups: ``qkv_o`` (attention projections), ``attention`` (the attention kernel and KV-cache
write), ``mlp`` / ``moe`` (GEMMs only; the router counts as moe), ``head`` (the LM or value head
GEMMs), ``norm_other`` (norms, rope, activation functions, MoE routing glue, embedding gather,
sampler), ``comm`` (all-reduce, logits gather, pipeline sends), ``overhead`` (per step host
time). Linear groups (``qkv_o``, ``mlp``, ``moe``, ``head``) carry exactly 2 FLOPs per weight
element (and bias element) per token; elementwise FLOPs live in ``norm_other`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.cost.features import ONE, T
from servesim.cost.weights import Matrix

GROUPS = ("qkv_o", "attention", "mlp", "moe", "head", "norm_other", "comm", "overhead")

# Rates an operator can run at; resolved against the hardware in ``build.py``.
RATE_GEMM = "gemm"  # tensor cores at the block weights' dtype peak, GEMM efficiency curve
RATE_GEMM_EXPERT = "gemm_expert"  # tensor cores at the routed experts' dtype peak
RATE_GEMM_ACT = "gemm_act"  # tensor cores at the activation dtype (LM head, router)
RATE_ATTENTION = "attention"  # tensor cores at the activation dtype, attention efficiency
RATE_VECTOR = "vector"  # elementwise: CUDA cores
ATTENTION_KERNELS = 2.0
"""Kernels of one attention call: the KV-cache write and the attention kernel."""
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
    prompt_scale: float = 1.0
    """MLA's absorbed attention: how many times their FLOP time the prompt rows' (query, key)
    pairs take, where the engine runs them on a slower kernel than the tables time
    (``CostParams.mla_prompt_attention_scale``). A decode row has as many pairs as KV tokens
    read, so the prompt rows' pairs are ``P_A − K_A``; the excess is time, not work (FLOP
    padding: ``coefficients.prompt_kernel_padding``)."""
    time_scale: float = 1.0
    """Measured time of the block this operator belongs to over the sum of its operators'
    own prices (an engine's MLA block: ``ResolvedParams.mla_block_scale``). Scales the time
    (compute and memory sides, launches, measured curves, the CPU's kernel issue without CUDA
    graphs), not the FLOPs and bytes."""


@dataclass(frozen=True)
class ElementBytes:
    """Bytes per element of each kind of tensor an operator moves."""

    weight: float
    """Block weights: attention projections, dense MLP, shared experts."""
    expert: float
    """Routed experts' weights."""
    kv: float
    """KV-cache entries."""
    act: float
    """Activations, and the embedding, LM head, router and norm weights."""


def gemm(
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


def vector(
    name: str,
    count: int,
    flops_per_token: float,
    bytes_per_token: float,
    kernels: float = 1.0,
    const_bytes: float = 0.0,
) -> Operator:
    """An elementwise kernel (norm, rope, activation, routing glue) over the step's tokens."""
    return Operator(
        name=name,
        group="norm_other",
        count=count,
        flops=((T, flops_per_token),),
        bytes=((T, bytes_per_token), (ONE, const_bytes)),
        rate=RATE_VECTOR,
        kernels=kernels,
    )
