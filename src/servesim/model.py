"""Model architecture specs parsed from Hugging Face ``config.json`` files.

A :class:`ModelSpec` holds only what the cost and memory models need: shapes of every weight
matrix, attention layout (MHA/GQA/MQA, MLA), MoE layout and sliding-window layers.

NOTE: the dataclasses below are the interface the cost model is written against; the parsing
(``ModelSpec.from_hf_config``, ``load_model``) and the parameter counts live in this module too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MoESpec:
    """Mixture-of-experts layout of the MoE layers of a model."""

    num_experts: int
    """Routed experts per MoE layer."""
    experts_per_token: int
    """Routed experts each token is sent to (top-k)."""
    expert_intermediate_size: int
    """Intermediate (FFN) width of one routed expert."""
    num_shared_experts: int = 0
    """Always-on shared experts per MoE layer (DeepSeek, Qwen2-MoE)."""
    shared_expert_intermediate_size: int = 0
    """Intermediate width of one shared expert."""
    first_dense_layers: int = 0
    """Leading layers that use a dense MLP instead of MoE (DeepSeek-V3: 3)."""
    layer_freq: int = 1
    """Every ``layer_freq``-th layer (after the dense ones) is an MoE layer."""
    expert_bias: bool = False
    """Expert projections carry biases (gpt-oss)."""
    router_bias: bool = False
    """The router (gate) has a bias vector."""


@dataclass(frozen=True)
class MLASpec:
    """Multi-head latent attention (DeepSeek-V2/V3) projection ranks and head dims."""

    q_lora_rank: int | None
    """Rank of the query down-projection; ``None`` when queries are projected directly."""
    kv_lora_rank: int
    """Rank of the compressed KV latent (what the KV cache stores, plus the rope key)."""
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a decoder-only transformer, in the units of its config (elements)."""

    name: str
    architecture: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    """Dense MLP intermediate width (used by dense layers)."""
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool = False
    dtype: str = "bf16"
    """Weight dtype the checkpoint ships in (bf16, fp16, fp8, mxfp4...)."""
    gated_mlp: bool = True
    """SwiGLU-style MLP with gate, up and down projections (3 matrices) instead of 2."""
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    """Per-head RMSNorm on queries and keys (Qwen3)."""
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    sliding_window: int | None = None
    """Window (tokens) of the sliding-window attention layers, if any."""
    num_sliding_layers: int = 0
    """How many layers use ``sliding_window``; the others attend to the full context."""
    attention_sinks: bool = False
    """Learned per-head attention sink logits (gpt-oss)."""

    # --- layer layout -------------------------------------------------------------------

    def is_moe_layer(self, layer: int) -> bool:
        """Whether layer ``layer`` (0-based) has a routed-expert FFN."""
        if self.moe is None or layer < self.moe.first_dense_layers:
            return False
        return (layer - self.moe.first_dense_layers) % self.moe.layer_freq == 0

    @property
    def num_moe_layers(self) -> int:
        return sum(self.is_moe_layer(i) for i in range(self.num_layers))

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def num_full_attention_layers(self) -> int:
        return self.num_layers - self.num_sliding_layers

    @property
    def kv_elements_per_token_per_layer(self) -> int:
        """Elements of KV cache one token occupies in one layer.

        MLA caches the compressed latent plus the shared rope key; MHA/GQA cache K and V for
        every KV head.
        """
        if self.mla is not None:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim
