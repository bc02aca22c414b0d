"""GPU memory of one replica: weights, KV cache per token, reserves, and the KV blocks left.

The budget follows vLLM: of ``hbm_bytes × gpu_memory_utilization``, the weights, the peak
activation memory of a ``max_num_batched_tokens`` forward step and the runtime's own memory are
taken out; the rest is paged KV cache in blocks of ``block_size`` tokens.

    num_kv_blocks = floor((hbm × util − weights − activation_reserve − runtime_reserve)
                          / (block_size × kv_bytes_per_token))

With pipeline parallelism each stage is budgeted separately and the plan reports the stage with
the fewest KV blocks (usually the first or last: they hold the embedding or LM head). With
attention data parallelism (``dp > 1``) every rank has its own KV cache and its share of the
step's tokens; the plan reports one GPU's budget and the blocks of all ``dp`` ranks together.

KV offload: :func:`kv_transfer_seconds` prices moving KV over a link (the host's PCIe link to
CPU memory, ``Hardware.host_link``; or a NIC for disaggregation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from servesim import knobs
from servesim.cost.dtypes import dtype_bytes
from servesim.cost.features import sliding_layers
from servesim.cost.params import CostParams, Parallelism, valid_tps
from servesim.cost.resolve import ResolvedParams, resolve_params
from servesim.cost.stages import stage_layers
from servesim.cost.weights import (
    attention_matrices,
    dense_mlp_matrices,
    expert_matrices,
    materialized_mla_matrices,
    norm_elements_per_layer,
    router_matrix,
    shared_expert_matrices,
)
from servesim.errors import ServesimError
from servesim.hardware import Hardware, Link
from servesim.model import ModelSpec

GiB = float(2**30)

RUNTIME_RESERVE_BASE_BYTES = 1.5 * GiB
"""CUDA context (~0.5 GiB), cuBLAS/attention workspaces (~0.3 GiB) and captured CUDA graphs
(~0.5–0.7 GiB) on every GPU."""
RUNTIME_RESERVE_MULTI_GPU_BYTES = 0.5 * GiB
"""Extra on every GPU of a multi-GPU replica: NCCL communicators and custom all-reduce buffers."""
LOGITS_BYTES_PER_VOCAB_ENTRY = 8.0
"""Sampler peak per sequence and vocabulary entry: fp32 logits plus an fp32 probability copy."""

SAMPLER_BYTES_PER_VOCAB_ENTRY: dict[str, float] = {
    # Persistent logits buffers (fp32 logits and probabilities), beside the activations.
    "logits": LOGITS_BYTES_PER_VOCAB_ENTRY,
    # vLLM's profiling run samples every row with top-k (vocab − 1) and top-p (0.9). Sorting
    # the logits holds, per entry: the model's bf16 logits (2), their fp32 copy (4), the sorted
    # values (4) and int64 indices (8), the index input (8) and the radix sort's double
    # buffers (4 + 8) = 38 bytes. A public vLLM 0.6 (V0) log agrees: Phi-4 (GPTQ), 256
    # sequences x 100,352 entries, a 2,048-token step: "PyTorch activation peak memory takes
    # 0.94GiB" = 39 B an entry, the forward pass needing ~0.3 GiB (github xinyuwei-david/
    # david-share, Deep-Learning/Phi4/readme.md).
    "sort": 38.0,
    # FlashInfer's top_k_top_p_sampling_from_logits (vLLM V1 where FlashInfer is installed,
    # until the sampler became opt-in): bf16 logits (2), fp32 copy (4), top-k-masked logits
    # (4) and probabilities (4).
    "flashinfer": 14.0,
    # vLLM 0.17-0.20's Triton top-k/top-p masks the fp32 logits in place: bf16 logits (2),
    # fp32 copy (4), then the probabilities (4) and the exponential draws (4) of the sampling.
    "triton": 14.0,
}
"""Sampler peak bytes per sampled row and vocabulary entry, by how the engine samples."""

CUDA_TOTAL_SHORTFALL_BYTES = 0.5 * GiB
"""How much less total memory CUDA reports (``cudaMemGetInfo``, which vLLM multiplies by
``gpu_memory_utilization``) than nvidia-smi's ``memory.total`` (the catalog's ``hbm_bytes``):
public vLLM logs print total_gpu_memory 79.11-79.19 GiB on H100 80GB HBM3 (79.65 GiB in
nvidia-smi) and 39.49 GiB on A100-SXM4-40GB (40.0)."""
PROFILED_NON_TORCH_BYTES = 0.2 * GiB
"""What vLLM's memory profile counts outside PyTorch's allocator on one GPU (cuBLAS and
attention workspaces): public logs print ``non_torch_memory takes`` 0.03-0.35 GiB. The CUDA
context and the CUDA graphs are not counted: the context predates the profile's baseline and
the graphs are captured after the KV cache is sized, both in the ``1 − gpu_memory_utilization``
the engine leaves."""
PROFILED_NON_TORCH_MULTI_GPU_BYTES = 0.2 * GiB
"""Extra non-torch memory per GPU of a multi-GPU replica (NCCL communicators, custom
all-reduce buffers)."""
STATIC_FRACTION_SHORTFALL_BYTES = 1.0 * GiB
"""How far the memory SGLang's ``mem_fraction_static`` is a share of — what CUDA reports free
once the context and the distributed groups are up ("Load weight begin. avail mem=", or its
"avail mem" plus the weights' "mem usage") — falls short of nvidia-smi's total, whatever the
TP: public logs print 21.63 GiB of an L4's 22.49 at TP4, 23.08 of an RTX 4090's 23.99 at TP4
and 78.47 of an H100's 79.65 at TP1 (bench/fidelity/memory.py)."""
PROFILED_CUDA_GRAPH_BYTES = 0.5 * GiB
"""The CUDA graphs' memory a profiled budget takes out where the engine estimates it before
sizing the cache (vLLM from 0.20.0): vLLM logs "Graph capturing finished ..., took" 0.38-0.65
GiB for 7B-8B models at TP 1-2 on one node (0.10-0.11), and a 0.31.0 log estimates 0.35 GiB
for a 1.5B model."""


@dataclass(frozen=True)
class MemoryPlan:
    """Memory budget of one GPU (of the binding pipeline stage). Bytes unless said otherwise."""

    weights_bytes_per_gpu: float
    kv_bytes_per_token: float
    """KV cache one token takes on this GPU, over all of this GPU's layers."""
    activation_reserve_bytes: float
    runtime_reserve_bytes: float
    kv_cache_bytes: float
    num_kv_blocks: int
    kv_capacity_tokens: int
    """``num_kv_blocks × block_size``: tokens of KV the replica can hold at once (all ``dp``
    ranks together)."""
    usable_bytes: float
    """``hbm_bytes × gpu_memory_utilization``."""
    block_size: int
    gpu_memory_utilization: float
    kv_pinned: bool = False
    """Whether the scenario pinned the KV cache's size (``scheduler.kv_cache_tokens``) instead
    of the plan deriving it from the memory left."""
    kv_groups: int = 1
    """Groups of layers sharing the cache's pages: 1 (uniform), or the hybrid layout's
    full-attention group plus its sliding-window groups (:func:`kv_layout`). A block is then
    one page of one group: ``kv_bytes_per_token`` is a group's, and ``kv_capacity_tokens``
    is ``num_kv_blocks // kv_groups × block_size``, the size vLLM logs."""
    kv_window_blocks: int = 0
    """The most pages a request holds in each sliding-window group (hybrid layout, or a model
    whose every layer slides: ``kv_full_groups`` 0); 0: no such group."""
    kv_full_groups: int = 1
    """Full-attention groups among ``kv_groups``: 1, or 0 when every layer uses a sliding
    window and the engine pages it so (``CostParams.sliding_kv``): one group whose requests
    hold ``kv_window_blocks`` pages at most."""
    kv_swa_pool_ratio: float = 0.0
    """SGLang's hybrid SWA memory (``CostParams.swa_pool_ratio``): the sliding-window layers'
    own pool holds this many tokens per token of the cache (the full-attention layers' pool,
    whose tokens ``kv_capacity_tokens`` counts and ``kv_bytes_per_token`` prices with this
    share of the sliding layers' KV); 0: one pool of every layer."""
    kv_step_window_tokens: int = 0
    """The window (tokens) whose pages a prompt chunk of ``n`` tokens holds during its step in
    each sliding-window group, ``cdiv(window - 1 + n, block_size) + 1`` (vLLM V1 frees those
    the window has passed at the request's next step); 0: never more than ``kv_window_blocks``."""

    def max_concurrent_seqs(self, seq_len: int) -> int:
        """Sequences of ``seq_len`` tokens whose KV fits at once (block-granular; ignores the
        scheduler's ``max_num_seqs``; a sliding-window group holds ``kv_window_blocks`` pages of
        each at most)."""
        if seq_len < 1:
            raise ServesimError(
                f"must be >= 1, got {seq_len}", field="seq_len", fix="use a positive length"
            )
        full = math.ceil(seq_len / self.block_size)
        sliding = (self.kv_groups - self.kv_full_groups) * min(full, self.kv_window_blocks)
        return self.num_kv_blocks // (self.kv_full_groups * full + sliding)


def kv_layout(model: ModelSpec, par: Parallelism, block_size: int) -> tuple[int, int, int]:
    """(Layers per group, groups, pages a request holds at most in a sliding-window group) of
    vLLM's hybrid KV cache manager for ``model`` (``kv_cache_utils.
    _get_kv_cache_config_uniform_page_size``, wheel-checked in 0.9.2-0.11): layers are grouped
    ``min(full, sliding)`` at a time, the last group of a kind padded, every page holding
    ``block_size`` tokens of one group; a sliding group frees the pages its window has passed
    (``SlidingWindowManager.remove_skipped_blocks``), keeping ``cdiv(window - 1, block_size) +
    1``. ``(num_layers, 1, 0)`` — one uniform group — for a model without sliding-window
    layers, with more full-attention than sliding ones (servesim's page accounting assumes one
    full-attention group), only sliding ones, or under pipeline parallelism."""
    sliding = sliding_layers(model)
    full = model.num_layers - sliding
    if not 0 < full <= sliding or par.pp > 1:
        return model.num_layers, 1, 0
    assert model.sliding_window is not None
    window_blocks = (model.sliding_window - 1 + block_size - 1) // block_size + 1
    return full, 1 + math.ceil(sliding / full), window_blocks


SLIDING_WINDOW_PAGES: dict[str, tuple[Callable[[int, int], int], bool]] = {
    # vLLM V1's SlidingWindowManager (0.8.3 on; one group of every layer): the pages of the
    # window's last ``window - 1`` tokens, plus one for a window that starts mid-page; a prompt
    # chunk holds ``window - 1 + n`` tokens' pages during its step (``SlidingWindowSpec``).
    "vllm": (lambda window, bs: (window - 1 + bs - 1) // bs + 1, True),
    # vLLM V0's BlockSpaceManagerV1 (the default before 0.6.3): a block table that wraps
    # around after ``ceil(window / block_size)`` blocks (``block_sliding_window``).
    "vllm-v0": (lambda window, bs: -(-window // bs), False),
    # vLLM V0's BlockSpaceManagerV2 / SelfAttnBlockSpaceManager (0.6.3 on, and with
    # multi-step): ``window // block_size + 1`` blocks, + 1 for a window that starts mid-block
    # (``max_block_sliding_window``).
    "vllm-v0-v2": (lambda window, bs: window // bs + 2, False),
}
"""Per engine rule (``CostParams.sliding_kv``, checked in the 0.5.4, 0.7.3, 0.8.3 and 0.10.2
wheels): (the most pages a request holds, whether a prompt chunk holds its own pages beside the
window's during its step)."""


def sliding_only_layout(
    model: ModelSpec, par: Parallelism, block_size: int, rule: str
) -> tuple[int, int] | None:
    """(Pages a request holds at most, window tokens a prompt chunk's step adds pages for: 0
    for none) when every layer of ``model`` uses a sliding window and ``rule``'s engine pages
    it so; None for any other model, or under pipeline parallelism (servesim's per-stage page
    accounting is uniform)."""
    window = model.sliding_window
    if window is None or model.num_sliding_layers < model.num_layers or par.pp > 1:
        return None
    pages, chunks = SLIDING_WINDOW_PAGES[rule]
    return pages(window, block_size), window if chunks else 0


def default_runtime_reserve(
    par: Parallelism, profiled: bool = False, graph_reserve: bool = False
) -> float:
    """Bytes the runtime keeps per GPU: 1.5 GiB, plus 0.5 GiB when the replica spans GPUs;
    under a profiled budget (vLLM, ``plan_memory``'s ``profiled``) only the non-torch memory the
    profile sees: 0.2 GiB, plus 0.2 GiB across GPUs, plus the CUDA graphs' 0.5 GiB where the
    profile estimates them (``graph_reserve``)."""
    if profiled:
        extra = PROFILED_NON_TORCH_MULTI_GPU_BYTES if par.gpus > 1 else 0.0
        graphs = PROFILED_CUDA_GRAPH_BYTES if graph_reserve else 0.0
        return PROFILED_NON_TORCH_BYTES + extra + graphs
    extra = RUNTIME_RESERVE_MULTI_GPU_BYTES if par.gpus > 1 else 0.0
    return RUNTIME_RESERVE_BASE_BYTES + extra


def layer_weight_bytes(
    model: ModelSpec,
    par: Parallelism,
    layer: int,
    w_bytes: float,
    act_bytes: float,
    expert_bytes: float | None = None,
    mla_materialized: bool = False,
    marlin_mxfp4: bool = False,
) -> float:
    """Bytes of weights of layer ``layer`` held by one GPU: block weights in ``w_bytes``, routed
    experts in ``expert_bytes`` (default ``w_bytes``), router and norms in ``act_bytes``;
    ``mla_materialized``: MLA's absorbed decode weights too (``CostParams.mla_materialized``);
    ``marlin_mxfp4``: MXFP4 experts laid out for vLLM's Marlin kernel
    (:func:`marlin_mxfp4_expert_bytes`) instead of ``expert_bytes`` each."""
    expert_bytes = w_bytes if expert_bytes is None else expert_bytes
    total = sum(m.elements for m in attention_matrices(model, par)) * w_bytes
    if mla_materialized and model.mla is not None:
        w_q_uk, w_qr, w_uv_o = materialized_mla_matrices(model, model.num_attention_heads / par.tp)
        total += (w_q_uk.elements + w_uv_o.elements) * w_bytes + w_qr.elements * act_bytes
    total += norm_elements_per_layer(model, par) * act_bytes
    if model.is_moe_layer(layer):
        moe = model.moe
        assert moe is not None
        total += router_matrix(model).elements * act_bytes
        local_experts = moe.num_experts / par.ep
        if marlin_mxfp4:
            total += local_experts * marlin_mxfp4_expert_bytes(model, par)
        else:
            per_expert = sum(m.elements for m in expert_matrices(model, par))
            total += local_experts * per_expert * expert_bytes
        total += sum(m.elements for m in shared_expert_matrices(model, par)) * w_bytes
    else:
        total += sum(m.elements for m in dense_mlp_matrices(model, par)) * w_bytes
    return total


MARLIN_MXFP4_PAD = (256, 128)
"""vLLM's MXFP4 MoE on its Marlin backend pads the hidden size to a multiple of 256 and each
GPU's expert intermediate size to a multiple of 128 ("the moe marlin kernel requires that
for each linear n % 256 == 0 and k % 128 == 0": ``Mxfp4MoEMethod.create_weights``, checked in
the 0.10.2 wheel): gpt-oss's 2,880 becomes 3,072 and 2,944 (1,536 a GPU at TP2)."""


def marlin_mxfp4_expert_bytes(model: ModelSpec, par: Parallelism) -> float:
    """Bytes one routed expert takes on one GPU as vLLM's Marlin MXFP4 backend holds it: the
    padded (:data:`MARLIN_MXFP4_PAD`) gate/up and down weights at 4 bits, one 8-bit scale a 32
    weights, and the bf16 biases of models that have them. gpt-oss-120b at TP1: 14.43 MB an
    expert, 65.9 GiB of weights in all — vLLM 0.10.1's log on an H100, "Model loading took
    65.97 GiB" (vllm-project/vllm#23278), where the unpadded 4.5-bit size gives 64.1 GiB."""
    moe = model.moe
    assert moe is not None
    hidden_pad, inter_pad = MARLIN_MXFP4_PAD
    hidden = math.ceil(model.hidden_size / hidden_pad) * hidden_pad
    inter = math.ceil(moe.expert_intermediate_size / par.expert_tp / inter_pad) * inter_pad
    gated = 2 if model.gated_mlp else 1
    weights = (gated + 1) * inter * hidden * (0.5 + 1 / 32)
    bias = (gated * inter + hidden) * 2.0 if moe.expert_bias else 0.0
    return weights + bias


def kv_bytes_per_token_per_layer(model: ModelSpec, par: Parallelism, kv_bytes: float) -> float:
    """KV bytes one token takes in one layer on one GPU.

    GQA/MHA: K and V of the GPU's KV heads (split by TP, one replicated head per GPU when TP
    exceeds the KV heads). MLA: the latent plus the rope key, the same on every TP rank.
    NOTE: sliding-window layers are counted like the others here; vLLM's hybrid KV cache
    manager (``CostParams.hybrid_kv``, :func:`kv_layout`) pages them apart.
    """
    if model.mla is not None:
        return (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * kv_bytes
    return 2.0 * par.kv_heads_per_gpu(model) * model.head_dim * kv_bytes


def activation_reserve(
    model: ModelSpec,
    par: Parallelism,
    act_bytes: float,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    *,
    last_stage: bool = True,
    head: str = "lm",
    moe_chunk_tokens: int | None = None,
    profiled: bool = False,
    sampler: str = "logits",
) -> float:
    """Peak activation bytes of a ``max_num_batched_tokens`` step (what vLLM's profiling run sees).

    ``tokens × act_bytes × (4·d + widest)`` where ``4·d`` covers hidden states and residual in
    and out, and ``widest`` is the widest per-token intermediate per GPU: the QKV+attention
    output, the dense MLP (gate+up and activation output: 3·I/tp gated, 2·I/tp otherwise), or the
    fused MoE caches (k·(3·I_e/expert_tp + d)) plus the shared experts. A fused-MoE kernel that
    runs ``moe_chunk_tokens`` at a time holds its caches for that many tokens only. The last
    stage adds the sampler: ``rows × vocab × SAMPLER_BYTES_PER_VOCAB_ENTRY[sampler]``, with
    ``max_num_seqs`` rows. ``profiled``: a profiling run (vLLM) runs the forward pass, frees its
    activations, then samples ``min(max_num_seqs, max_num_batched_tokens)`` rows (one per
    dummy request), so the peak is the larger of the two, not their sum.
    """
    d, tp = model.hidden_size, par.tp
    gated = 3.0 if model.gated_mlp else 2.0
    widest = sum(m.n for m in attention_matrices(model, par)[:-1]) + model.hidden_size / tp
    if model.num_dense_layers:
        widest = max(widest, gated * model.intermediate_size / tp)
    if model.num_moe_layers:
        moe = model.moe
        assert moe is not None
        experts = moe.experts_per_token * (gated * moe.expert_intermediate_size / par.expert_tp + d)
        shared = gated * moe.num_shared_experts * moe.shared_expert_intermediate_size / tp
        if moe_chunk_tokens is not None and max_num_batched_tokens > moe_chunk_tokens:
            # (the routed experts' caches hold one chunk; count them as that share of a step)
            experts *= moe_chunk_tokens / max_num_batched_tokens
        widest = max(widest, experts + shared)
    forward = max_num_batched_tokens * act_bytes * (4.0 * d + widest)
    if not (last_stage and head == "lm"):
        return forward
    per_entry = SAMPLER_BYTES_PER_VOCAB_ENTRY[sampler]
    if profiled:
        rows = min(max_num_seqs, max_num_batched_tokens)
        return max(forward, rows * model.vocab_size * per_entry)
    return forward + max_num_seqs * model.vocab_size * per_entry


def _stage_plans(
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism,
    params: CostParams,
    res: ResolvedParams,
    util: float,
    block_size: int,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    kv_of_free: bool = False,
    kv_of_static: bool = False,
    kv_of_total: bool = False,
    profiled: bool = False,
    sampler: str = "logits",
    graph_reserve: bool = False,
) -> MemoryPlan:
    act_bytes = dtype_bytes(res.act_dtype)
    kv_layer = kv_bytes_per_token_per_layer(model, par, dtype_bytes(res.kv_dtype))
    if params.runtime_reserve_bytes is not None:
        runtime = params.runtime_reserve_bytes
    elif kv_of_static:
        runtime = STATIC_FRACTION_SHORTFALL_BYTES
    else:
        runtime = default_runtime_reserve(par, profiled, graph_reserve)
    if kv_of_free or kv_of_total:
        usable = hw.hbm_bytes
    elif kv_of_static:
        # SGLang's mem_fraction_static: a share of what CUDA reports free after start-up, for
        # weights and KV; activations and CUDA graphs live in the rest.
        usable = (hw.hbm_bytes - runtime) * util
    elif profiled:
        usable = (hw.hbm_bytes - CUDA_TOTAL_SHORTFALL_BYTES) * util
    else:
        usable = hw.hbm_bytes * util
    stages = stage_layers(model.num_layers, par.pp)
    best: MemoryPlan | None = None
    # NOTE: with dp > 1 the scheduler's budgets are the replica's; each rank gets its share.
    rank_tokens = math.ceil(max_num_batched_tokens / par.dp)
    rank_seqs = math.ceil(max_num_seqs / par.dp)
    for s, layers in enumerate(stages):
        first, last = s == 0, s == len(stages) - 1
        weights = stage_weight_bytes(
            model, par, res, layers, first, last, params.head, params.mla_materialized
        )
        act = activation_reserve(
            model,
            par,
            act_bytes,
            rank_tokens,
            rank_seqs,
            last_stage=last,
            head=params.head,
            moe_chunk_tokens=params.moe_chunk_tokens,
            profiled=profiled,
            sampler=sampler,
        )
        group_layers, groups, window_blocks, full_groups, step_window = len(layers), 1, 0, 1, 0
        if params.hybrid_kv:
            layout = kv_layout(model, par, block_size)
            if layout[1] > 1:  # (a uniform layout keeps the stage's own layers)
                group_layers, groups, window_blocks = layout
                step_window = model.sliding_window or 0
        if params.sliding_kv is not None:
            only = sliding_only_layout(model, par, block_size, params.sliding_kv)
            if only is not None:
                (window_blocks, step_window), full_groups = only, 0
        kv_token = kv_layer * group_layers
        swa_ratio = 0.0
        if params.swa_pool_ratio is not None and groups == 1 and full_groups == 1:
            sliding = sliding_layers(model)
            if 0 < sliding < model.num_layers:
                # (SGLang splits every layer's tokens as the whole model's layers do)
                swa_ratio = params.swa_pool_ratio
                full = model.num_layers - sliding
                kv_token *= (full + swa_ratio * sliding) / model.num_layers
        kv_cache = usable - weights if kv_of_static else usable - weights - act - runtime
        if kv_of_free:
            kv_cache *= util
        elif kv_of_total:
            # A share of all HBM whatever the weights take, allocated chunk by chunk as
            # requests need it: never more than the weights, activations and runtime leave.
            kv_cache = min(usable * util, kv_cache)
        blocks = max(0, math.floor(kv_cache / (block_size * kv_token))) if kv_token else 0
        blocks *= par.dp  # every rank holds its own cache
        plan = MemoryPlan(
            weights_bytes_per_gpu=weights,
            kv_bytes_per_token=kv_token,
            activation_reserve_bytes=act,
            runtime_reserve_bytes=runtime,
            kv_cache_bytes=kv_cache,
            num_kv_blocks=blocks,
            kv_capacity_tokens=blocks // groups * block_size,
            usable_bytes=usable,
            block_size=block_size,
            gpu_memory_utilization=util,
            kv_groups=groups,
            kv_window_blocks=window_blocks,
            kv_full_groups=full_groups,
            kv_swa_pool_ratio=swa_ratio,
            kv_step_window_tokens=step_window,
        )
        if best is None or (plan.num_kv_blocks, -plan.weights_bytes_per_gpu) < (
            best.num_kv_blocks,
            -best.weights_bytes_per_gpu,
        ):
            best = plan
    assert best is not None
    return best


def stage_weight_bytes(
    model: ModelSpec,
    par: Parallelism,
    res: ResolvedParams,
    layers: range,
    first: bool,
    last: bool,
    head: str = "lm",
    mla_materialized: bool = False,
) -> float:
    """Weight bytes one GPU of a pipeline stage holds: its ``layers``, the embedding on the
    first stage, the final norm and head on the last (the vocabulary split ``tp`` ways)."""
    w_bytes, e_bytes = dtype_bytes(res.weight_dtype), res.expert_bytes
    act_bytes = dtype_bytes(res.act_dtype)
    d, vocab_rows = model.hidden_size, model.vocab_size / par.tp
    from servesim.cost.aic_tables import MXFP4_MARLIN  # (loaded by the kernels anyway)

    marlin = res.mxfp4_kernel == MXFP4_MARLIN and res.expert_dtype == "mxfp4"
    weights = sum(
        layer_weight_bytes(model, par, i, w_bytes, act_bytes, e_bytes, mla_materialized, marlin)
        for i in layers
    )
    if first:
        weights += vocab_rows * d * act_bytes  # embedding, split by vocabulary rows
    if last:
        weights += d * act_bytes  # final norm
        if head == "value":
            weights += (d * d + 2 * d + 1) * act_bytes
        elif not (model.tie_word_embeddings and first):
            # A tied head shares the embedding only when both sit on the same GPU.
            weights += vocab_rows * d * act_bytes
    return weights


def weights_bytes_per_gpu(
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism | None = None,
    params: CostParams | None = None,
) -> float:
    """Weight bytes on the most loaded GPU of a replica (no KV or reserves; never raises for
    lack of room). Useful to budget a draft model or an EAGLE head next to the target."""
    par = par or Parallelism()
    params = params or CostParams()
    par.check(model)
    res = resolve_params(model, hw, params)
    stages = stage_layers(model.num_layers, par.pp)
    return max(
        stage_weight_bytes(
            model,
            par,
            res,
            layers,
            s == 0,
            s == len(stages) - 1,
            params.head,
            params.mla_materialized,
        )
        for s, layers in enumerate(stages)
    )


HOST_LINK_EFFICIENCY = 0.85
"""Achievable fraction of a link's bandwidth for large DMA copies of KV blocks: pinned host
memory reaches ~53–55 GB/s of PCIe Gen5 x16's 63 GB/s on H100 (nvbandwidth / bandwidthTest
host-to-device; estimate for other links)."""


def kv_transfer_seconds(
    tokens: np.ndarray | float,
    kv_bytes_per_token: float,
    link: Link,
    *,
    efficiency: float = HOST_LINK_EFFICIENCY,
    lanes: int = 1,
) -> np.ndarray | float:
    """Seconds to move the KV of ``tokens`` tokens over ``link``: one latency plus
    ``tokens × kv_bytes_per_token / (bandwidth × efficiency × lanes)``.

    ``kv_bytes_per_token`` is what one GPU holds (``MemoryPlan.kv_bytes_per_token``); ``lanes``
    GPUs move their shards in parallel over their own links (each GPU of a TP group has its own
    PCIe link and NIC). Vectorised over ``tokens``; 0 tokens cost nothing.
    """
    if not 0.0 < efficiency <= 1.0:
        raise ServesimError(
            f"must be in (0, 1], got {efficiency}", field="efficiency", fix="use e.g. 0.85"
        )
    n = np.asarray(tokens, dtype=np.float64)
    secs = n * kv_bytes_per_token / (link.bandwidth * efficiency * max(lanes, 1))
    out = np.where(n > 0, secs + link.latency_s, 0.0)
    return float(out) if out.ndim == 0 else out


def plan_memory(
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism | None = None,
    params: CostParams | None = None,
    gpu_memory_utilization: float = knobs.GPU_MEMORY_UTILIZATION,
    block_size: int = knobs.BLOCK_SIZE,
    max_num_batched_tokens: int = knobs.MAX_NUM_BATCHED_TOKENS,
    max_num_seqs: int = knobs.MAX_NUM_SEQS,
    kv_of_free: bool = False,
    kv_of_static: bool = False,
    kv_cache_tokens: int | None = None,
    kv_of_total: bool = False,
    profiled: bool = False,
    sampler: str = "logits",
    strict: bool = True,
    graph_reserve: bool = False,
) -> MemoryPlan:
    """Memory budget of ``model`` on ``hw`` split as ``par`` (pure arithmetic, no I/O); the
    knobs' defaults are :mod:`servesim.knobs`'s. ``kv_cache_tokens`` pins the KV cache of each
    engine (attention-DP rank) to that many tokens instead (:func:`pin_kv_cache`).

    ``gpu_memory_utilization`` is vLLM's fraction of all HBM for weights, activations and KV;
    with ``kv_of_free`` it is TensorRT-LLM's ``kv_cache_free_gpu_mem_fraction``: the KV cache
    takes that fraction of what the weights, activations and runtime leave free; with
    ``kv_of_static`` it is SGLang's ``mem_fraction_static``: the fraction of the memory the
    runtime leaves that holds the weights and the KV cache (activations and CUDA graphs live
    in the rest, so no activation reserve is taken from it); with ``kv_of_total`` it is LMDeploy
    TurboMind's ``cache_max_entry_count`` before 0.2.2: the KV cache takes that share of all
    HBM, whatever the weights hold (at most what they, the activations and the runtime leave).
    ``profiled``: vLLM's profiled budget, ``gpu_memory_utilization`` × the total CUDA reports
    (:data:`CUDA_TOTAL_SHORTFALL_BYTES` under ``hbm_bytes``) less the weights, the larger of
    the profiling run's forward and sampler peaks (:func:`activation_reserve`) and the non-torch
    memory the profile sees (:func:`default_runtime_reserve`); ``sampler`` names how the
    sampler's peak is counted (:data:`SAMPLER_BYTES_PER_VOCAB_ENTRY`); ``graph_reserve``: the
    profile also takes out the CUDA graphs' memory (:data:`PROFILED_CUDA_GRAPH_BYTES`).

    Raises ServesimError when not even one KV block fits, naming the smallest TP that fits;
    with ``strict`` False it returns that plan instead (no blocks; ``kv_cache_bytes`` says by
    how much the budget falls short, as the engine's log would).
    """
    par = par or Parallelism()
    params = params or CostParams()
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise ServesimError(
            f"must be in (0, 1], got {gpu_memory_utilization}",
            field="gpu_memory_utilization",
            fix=f"use e.g. {knobs.GPU_MEMORY_UTILIZATION}",
        )
    knobs.check_positive_ints(
        block_size=block_size,
        max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=max_num_seqs,
    )
    par.check(model)
    res = resolve_params(model, hw, params)
    args = (
        gpu_memory_utilization, block_size, max_num_batched_tokens, max_num_seqs, kv_of_free,
        kv_of_static, kv_of_total, profiled, sampler, graph_reserve,
    )  # fmt: skip
    plan = _stage_plans(model, hw, par, params, res, *args)
    if kv_cache_tokens is not None:
        # (Weights that fill the GPU by themselves are the model's problem, whatever is pinned:
        # the fix is more GPUs, not fewer KV tokens.)
        if plan.weights_bytes_per_gpu < hw.hbm_bytes or not strict:
            return pin_kv_cache(plan, kv_cache_tokens, hw, par.dp)
    elif plan.num_kv_blocks >= 1 or not strict:
        return plan
    fix = _suggest_fit(model, hw, par, params, res, args)
    reserves = plan.activation_reserve_bytes + plan.runtime_reserve_bytes
    raise ServesimError(
        f"{model.name} needs {plan.weights_bytes_per_gpu / GiB:.1f} GiB of weights per GPU "
        f"(tp={par.tp}, pp={par.pp}, {_dtypes(res)}), {hw.name} has "
        f"{(plan.usable_bytes - reserves) / GiB:.1f} GiB usable at "
        f"gpu_memory_utilization={gpu_memory_utilization} "
        f"({plan.usable_bytes / GiB:.1f} GiB less {reserves / GiB:.1f} GiB of activation and "
        "runtime reserves)",
        field="model",
        fix=fix,
    )


def pin_kv_cache(plan: MemoryPlan, tokens: int, hw: Hardware, dp: int = 1) -> MemoryPlan:
    """``plan`` with its KV cache pinned to ``tokens`` per engine (each of ``dp`` attention-DP
    ranks holds its own): ``tokens // block_size`` blocks, as the engine logs its size (vLLM's
    "GPU KV cache size: N tokens", SGLang's ``max_total_num_tokens``); in the hybrid layout
    ``kv_groups`` pages per such token slot, as vLLM's log divides them.

    The reserves no longer decide the size, but the cache must still fit beside the weights:
    raises ServesimError (field ``scheduler.kv_cache_tokens``) when it would not, or when it is
    smaller than one block.
    """
    bs = plan.block_size
    blocks = tokens // bs
    if blocks < 1:
        raise ServesimError(
            f"{tokens:,} tokens is less than one KV block of {bs}",
            field="scheduler.kv_cache_tokens",
            fix=f"pin at least {bs} tokens, or leave it out to use the memory plan",
        )
    groups = plan.kv_groups
    cache = blocks * groups * bs * plan.kv_bytes_per_token
    room = hw.hbm_bytes - plan.weights_bytes_per_gpu
    if cache > room:
        slot = groups * bs * plan.kv_bytes_per_token
        most = int(room // slot) * bs if plan.kv_bytes_per_token else 0
        raise ServesimError(
            f"{tokens:,} tokens of KV take {cache / GiB:.1f} GiB a GPU, but only "
            f"{max(room, 0.0) / GiB:.1f} GiB of {hw.name}'s {hw.hbm_bytes / GiB:.1f} GiB are left "
            f"beside {plan.weights_bytes_per_gpu / GiB:.1f} GiB of weights",
            field="scheduler.kv_cache_tokens",
            fix=f"pin at most {max(most, 0):,} tokens, the most that fit beside the weights",
        )
    return dataclasses.replace(
        plan,
        kv_cache_bytes=cache,
        num_kv_blocks=blocks * groups * dp,
        kv_capacity_tokens=blocks * dp * bs,
        kv_pinned=True,
    )


def _dtypes(res: ResolvedParams) -> str:
    if res.expert_dtype == res.weight_dtype:
        return res.weight_dtype
    return f"{res.weight_dtype}, experts {res.expert_dtype}"


def _suggest_fit(model, hw, par, params, res, args) -> str:
    """A CLI hint: the smallest ``gpu_memory_utilization`` up to the default that makes room
    for one KV block (when the user lowered it); under a profiled budget whose sampler peak
    binds, the most ``max_num_seqs`` (halving) that does; else the smallest TP (at the same
    PP)."""
    utilization, *rest = args
    for step in range(1, round(knobs.GPU_MEMORY_UTILIZATION / 0.05) + 1):  # 0.05 .. 0.90
        candidate_util = round(step * 0.05, 2)
        if candidate_util <= utilization:
            continue
        plan = _stage_plans(model, hw, par, params, res, candidate_util, *rest)
        if plan.num_kv_blocks >= 1:
            return f"raise --gpu-memory-utilization to {candidate_util:g} or more"
    _, block_size, budget, seqs, *kinds, profiled, sampler, graphs = args
    while profiled and seqs > 1:
        seqs //= 2
        fewer = (utilization, block_size, budget, seqs, *kinds, profiled, sampler, graphs)
        if _stage_plans(model, hw, par, params, res, *fewer).num_kv_blocks >= 1:
            rows = min(seqs, budget)
            return (
                f"lower --max-num-seqs to {seqs} or fewer (the engine's profiling run samples "
                f"{rows} dummy rows), or use more GPUs"
            )
    for tp in valid_tps(model, limit=64):
        if tp <= par.tp:
            continue
        if par.dp > 1:
            ep = tp * par.dp if par.ep > 1 else 1
        else:
            ep = par.ep if tp % par.ep == 0 else 1
        candidate = Parallelism(tp=tp, pp=par.pp, ep=ep, dp=par.dp)
        if _stage_plans(model, hw, candidate, params, res, *args).num_kv_blocks >= 1:
            return f"use --tp {tp}" if par.pp == 1 else f"use --tp {tp} --pp {par.pp}"
    return "use more pipeline stages (--pp) or a smaller --weight-dtype"
