"""Model architecture specs parsed from Hugging Face ``config.json`` files.

A :class:`ModelSpec` holds only what the cost and memory models need: shapes of every weight
matrix, attention layout (MHA/GQA/MQA, MLA), MoE layout and sliding-window layers.

NOTE: the dataclasses below are the interface the cost model is written against; the parameter
counts and the catalog lookup (``load_model``, ``list_models``) live in this module too, the
reading of a ``config.json`` in ``hf_config.py``.

Parameter counts are exact, weight by weight, for the families the catalog ships (Llama,
Mistral, Mixtral, Qwen2/2.5/3 and their MoE variants, DeepSeek-V2/V3, gpt-oss). Other configs
parse by the same conventions; architectures with extras those families lack (LayerNorm biases,
learned position embeddings, per-layer extra norms) are counted without those extras.

The catalog of shipped architectures lives in ``servesim/catalog/models/``: one HF
``config.json`` per model (``<org>--<name>.json``) and ``index.yaml`` with aliases and the
published parameter counts the tests hold our counts to.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml

from servesim.errors import ServesimError
from servesim.hf_config import read_hf_config
from servesim.textfile import PARSE_ERRORS, parse_problem, read_text


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
    mlp_only_layers: tuple[int, ...] = ()
    """Layers (0-based) forced to a dense MLP although the pattern makes them MoE (Qwen)."""
    shared_expert_gate: bool = False
    """A learned sigmoid gate (hidden -> 1) scales the shared expert's output (Qwen2-MoE)."""


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
    model_type: str = ""
    """The config's ``model_type`` (llama, qwen2, deepseek_v3, gpt_oss...)."""
    mlp_bias: bool = False
    """Dense MLP projections carry biases (Llama ``mlp_bias``)."""
    base_dtype: str = "bf16"
    """Dtype of the weights a quantization leaves alone (embeddings, norms, router; all
    weights when ``quant_scope`` is ``"none"``)."""
    quant_scope: str = "none"
    """Which weights are stored in ``dtype`` when it is a quantized format: ``"none"`` (not
    quantized: everything is ``dtype``), ``"linear"`` (every linear layer but the router and the
    LM head, e.g. DeepSeek-V3 fp8) or ``"experts"`` (only routed-expert weights, gpt-oss mxfp4)."""
    weight_block_scaled: bool = False
    """The quantised weights carry one scale per block of weights (``quantization_config``'s
    ``weight_block_size``, or compressed-tensors' ``block`` strategy: DeepSeek-V3/R1's and
    Qwen3's FP8 checkpoints, 128×128 blocks), not one per tensor or channel: their GEMMs run
    block-scaled FP8 kernels (DeepGEMM and kin)."""
    num_mtp_layers: int = 0
    """Multi-token-prediction modules shipped with the checkpoint (DeepSeek-V3: 1). They are
    not part of the serving model and are NOT counted in the parameter counts."""
    unmodelled: tuple[str, ...] = ()
    """What the config describes that servesim does not model, a sentence each (linear-attention
    or state-space layers priced as attention): runs report them as warnings."""

    # --- layer layout -------------------------------------------------------------------

    def is_moe_layer(self, layer: int) -> bool:
        """Whether layer ``layer`` (0-based) has a routed-expert FFN."""
        if self.moe is None or layer < self.moe.first_dense_layers:
            return False
        if layer in self.moe.mlp_only_layers:
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

    @property
    def attention_type(self) -> str:
        """``"MLA"``, ``"MHA"`` (one KV head per query head), ``"MQA"`` (one KV head) or
        ``"GQA"``; sliding-window layers are reported separately (``num_sliding_layers``)."""
        if self.mla is not None:
            return "MLA"
        if self.num_kv_heads == self.num_attention_heads:
            return "MHA"
        if self.num_kv_heads == 1:
            return "MQA"
        return "GQA"

    # --- parameter counts ---------------------------------------------------------------

    def params_breakdown(self, active: bool = False) -> dict[str, int]:
        """Parameters (elements) by component, every weight and bias counted once.

        Keys: ``embedding``, ``attention`` (projections, biases, sinks), ``mlp`` (dense layers),
        ``moe_experts`` (routed experts plus shared experts), ``router`` (gates, their biases,
        the shared-expert gate), ``norms`` (every norm weight: per layer, q/k norms, MLA latent
        norms, the final norm) and ``lm_head`` (0 when tied to the embedding).

        With ``active=True`` a routed-expert layer counts only the ``experts_per_token`` experts
        one token runs through: the per-token ("activated") parameters. The router counts in
        full (every token scores every expert) and so does the input embedding table, although
        a token only reads one row of it; some publishers leave it out of their active figure
        (see ``CatalogEntry.active_excludes_embedding``).
        """
        moe_layers = self.num_moe_layers
        dense_layers = self.num_layers - moe_layers
        embedding = self.vocab_size * self.hidden_size
        experts = 0
        router = 0
        if self.moe is not None:
            moe = self.moe
            routed = moe.experts_per_token if active else moe.num_experts
            shared = moe.num_shared_experts * _ffn_params(
                self.hidden_size, moe.shared_expert_intermediate_size, self.gated_mlp, False
            )
            expert = _ffn_params(
                self.hidden_size, moe.expert_intermediate_size, self.gated_mlp, moe.expert_bias
            )
            experts = moe_layers * (routed * expert + shared)
            gate = moe.num_experts * self.hidden_size + (moe.num_experts if moe.router_bias else 0)
            shared_gate = self.hidden_size if moe.shared_expert_gate else 0
            router = moe_layers * (gate + shared_gate)
        return {
            "embedding": embedding,
            "attention": self.num_layers * _attention_params(self),
            "mlp": dense_layers
            * _ffn_params(self.hidden_size, self.intermediate_size, self.gated_mlp, self.mlp_bias),
            "moe_experts": experts,
            "router": router,
            "norms": self.num_layers * _layer_norm_params(self) + self.hidden_size,
            "lm_head": 0 if self.tie_word_embeddings else embedding,
        }

    @property
    def params_total(self) -> int:
        """Every parameter of the checkpoint's serving model (MTP modules excluded), elements."""
        return sum(self.params_breakdown().values())

    @property
    def params_active(self) -> int:
        """Parameters one token runs through: routed experts count only the top-k (elements).

        Includes the input embedding table (once when tied to the LM head).
        """
        return sum(self.params_breakdown(active=True).values())

    # --- parsing ------------------------------------------------------------------------

    @classmethod
    def from_hf_config(cls, cfg: dict, name: str, *, source: str = "config.json") -> ModelSpec:
        """Build a spec from a parsed Hugging Face ``config.json`` (see ``hf_config.py``).

        ``source`` names the file in error messages. A missing required field or a value of the
        wrong type raises :class:`ServesimError` naming the field (``config.json: hidden_size is
        missing``).
        """
        fields = read_hf_config(cfg, source)
        mla, moe = fields.pop("mla"), fields.pop("moe")
        return cls(
            name=name,
            mla=None if mla is None else MLASpec(**mla),
            moe=None if moe is None else MoESpec(**moe),
            **fields,
        )


# --- parameter counting helpers (pure) -----------------------------------------------------


def _ffn_params(hidden: int, width: int, gated: bool, bias: bool) -> int:
    """Weights (+ biases) of one feed-forward block: gate/up/down (gated) or up/down."""
    if width == 0:
        return 0
    in_proj = (2 if gated else 1) * width
    weights = hidden * in_proj + width * hidden
    return weights + (in_proj + hidden if bias else 0)


def _attention_params(spec: ModelSpec) -> int:
    """Projection weights, biases and sinks of one attention block (norms not included)."""
    h = spec.hidden_size
    sinks = spec.num_attention_heads if spec.attention_sinks else 0
    o_bias = h if spec.o_bias else 0
    mla = spec.mla
    if mla is None:
        q = spec.num_attention_heads * spec.head_dim
        kv = spec.num_kv_heads * spec.head_dim
        qkv_bias = q + 2 * kv if spec.qkv_bias else 0
        return h * (q + 2 * kv) + qkv_bias + q * h + o_bias + sinks
    heads = spec.num_attention_heads
    q_out = heads * (mla.qk_nope_head_dim + mla.qk_rope_head_dim)
    in_bias = spec.qkv_bias
    if mla.q_lora_rank is None:
        q = h * q_out + (q_out if in_bias else 0)
    else:
        # q_a (hidden -> rank), q_a_layernorm (in norms), q_b (rank -> heads x qk dim)
        q = h * mla.q_lora_rank + (mla.q_lora_rank if in_bias else 0) + mla.q_lora_rank * q_out
    kv_a_out = mla.kv_lora_rank + mla.qk_rope_head_dim
    kv_a = h * kv_a_out + (kv_a_out if in_bias else 0)
    kv_b = mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
    o = heads * mla.v_head_dim * h
    return q + kv_a + kv_b + o + o_bias + sinks


def _layer_norm_params(spec: ModelSpec) -> int:
    """Norm weights in one decoder layer: input and post-attention norms, q/k or MLA norms."""
    total = 2 * spec.hidden_size
    if spec.qk_norm:
        total += 2 * spec.head_dim
    if spec.mla is not None:
        total += spec.mla.kv_lora_rank + (spec.mla.q_lora_rank or 0)
    return total


# --- config parsing helpers -----------------------------------------------------------------


# --- catalog ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    """One shipped architecture: where its config is and what its publisher says it weighs."""

    id: str
    """Hugging Face Hub id, e.g. ``meta-llama/Llama-3.1-8B``."""
    aliases: tuple[str, ...]
    """Other names that resolve to it (older Hub names, common short names)."""
    path: Path
    """The shipped ``config.json`` copy."""
    published_total: int
    """Total parameters as published (elements)."""
    published_active: int
    """Parameters active per token as published (elements); equals the total for dense models."""
    source: str
    """Where the published figures come from."""
    active_excludes_embedding: bool = False
    """The publisher's active figure leaves out the input embedding table (DeepSeek, OpenAI)."""
    tolerance: float = 0.01
    """Relative gap allowed between our exact counts and the published (rounded) figures."""
    note: str = ""


_UNITS = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_VARIANT_SUFFIX = re.compile(r"-(instruct|chat|base)(?=-|$)")


def parse_param_count(text: str | float | int) -> int:
    """``"8.03B"`` -> ``8_030_000_000``; ``"494M"`` -> ``494_000_000``; numbers pass through."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return round(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMBT])\s*", str(text))
    if not match:
        raise ServesimError(
            f"cannot read parameter count {text!r}",
            field="index.yaml",
            fix="write it like 8.03B or 494M",
        )
    # Decimal keeps 8.03 x 1e9 from becoming 8029999999.999999
    return int(Decimal(match.group(1)) * _UNITS[match.group(2)])


def _models_dir() -> Path:
    return Path(__file__).parent / "catalog" / "models"


@functools.lru_cache(maxsize=1)
def _catalog() -> tuple[CatalogEntry, ...]:
    directory = _models_dir()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: faster
    index = yaml.load((directory / "index.yaml").read_text(encoding="utf-8"), Loader=loader)
    entries = []
    for row in index["models"]:
        total = parse_param_count(row["published_total"])
        entries.append(
            CatalogEntry(
                id=row["id"],
                aliases=tuple(row.get("aliases") or ()),
                path=directory / row["file"],
                published_total=total,
                published_active=parse_param_count(row.get("published_active", total)),
                source=row["source"],
                active_excludes_embedding=bool(row.get("active_excludes_embedding", False)),
                tolerance=float(row.get("tolerance", 0.01)),
                note=row.get("note", ""),
            )
        )
    return tuple(entries)


def list_models() -> list[CatalogEntry]:
    """The shipped architectures, in catalog order."""
    return list(_catalog())


@functools.cache
def _load_entry(entry_id: str) -> ModelSpec:
    entry = next(e for e in _catalog() if e.id == entry_id)
    return ModelSpec.from_hf_config(_read_json(entry.path), entry.id, source=entry.path.name)


def _read_json(path: Path) -> dict:
    try:
        text = read_text(path, field="model")
    except OSError as err:
        raise ServesimError(
            f"cannot read {path}: {err.strerror}", field="model", fix="check the path"
        ) from err
    try:
        return json.loads(text)
    except PARSE_ERRORS as err:
        raise ServesimError(
            f"{path} is not valid JSON ({parse_problem(err)})",
            field="model",
            fix="pass a Hugging Face config.json",
        ) from err


def _name_index() -> dict[str, set[str]]:
    """Lower-cased name -> catalog ids it names (ids, short names after the org, aliases)."""
    names: dict[str, set[str]] = {}
    for entry in _catalog():
        for name in (entry.id, entry.id.split("/")[-1], *entry.aliases):
            names.setdefault(name.lower(), set()).add(entry.id)
    return names


def _resolve_name(name: str) -> str:
    """The catalog id ``name`` designates, or a ServesimError saying why there is none."""
    names = _name_index()
    query = name.strip().lower()
    forms = [query]
    base = _VARIANT_SUFFIX.sub("", query)
    if base != query:
        forms.append(base)  # an -Instruct/-Chat/-Base variant shares its base's architecture
    for form in forms:
        if form in names:
            return _unique(name, names[form])
    for form in forms:
        # a unique prefix ending at a hyphen: "mixtral-8x7b" for "mixtral-8x7b-v0.1"
        hits = {i for key, ids in names.items() if key.startswith(form + "-") for i in ids}
        if hits:
            return _unique(name, hits)
    ids = {key: sorted(v)[0] for key, v in names.items()}
    close = difflib.get_close_matches(forms[-1], list(ids), n=8, cutoff=0.5)
    suggestions = list(dict.fromkeys(ids[c] for c in close))[:4]
    hint = f"did you mean {', '.join(suggestions)}? " if suggestions else ""
    raise ServesimError(
        f"unknown model {name!r}",
        field="model",
        fix=f"{hint}`servesim models` lists the catalog; a path to a config.json works too",
    )


def _unique(name: str, ids: set[str]) -> str:
    if len(ids) == 1:
        return next(iter(ids))
    raise ServesimError(
        f"{name!r} is ambiguous: it matches {', '.join(sorted(ids))}",
        field="model",
        fix="give the full id",
    )


def load_model(name_or_path: str) -> ModelSpec:
    """The :class:`ModelSpec` for a catalog name or a ``config.json`` path.

    Accepts, in this order: an existing file (a ``config.json``) or directory holding one; a
    catalog id as on the Hub, case-insensitive (``meta-llama/Llama-3.1-8B``); the same with an
    ``-Instruct``/``-Chat``/``-Base`` suffix, which shares the base model's architecture (the
    base config is used, including its context length); a short name or alias
    (``llama-3.1-8b``); a unique hyphen-bounded prefix (``mixtral-8x7b``). Anything else raises
    :class:`ServesimError` with the closest catalog ids, or the candidates when ambiguous.

    Catalog entries are parsed once per process (cached); paths are read on every call.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise ServesimError(
                f"{path} has no config.json",
                field="model",
                fix="point at the model's folder or at its config.json",
            )
        return ModelSpec.from_hf_config(_read_json(config), path.resolve().name, source=str(config))
    if path.is_file():
        label = path.parent.resolve().name if path.name == "config.json" else path.stem
        return ModelSpec.from_hf_config(_read_json(path), label or path.stem, source=str(path))
    if name_or_path.strip().endswith(".json"):
        raise ServesimError(
            f"no such file: {name_or_path}", field="model", fix="check the path to config.json"
        )
    return _load_entry(_resolve_name(name_or_path))
