"""Reading a Hugging Face ``config.json``: the fields of a ``ModelSpec``, checked.

Configs of different families name the same thing differently (``n_embd``, ``d_model``,
``hidden_size``), leave some facts out (Qwen2's q/k/v biases, GPT-2's MLP width) and describe
MoE layouts, sliding windows and quantisation each their own way; this module reads them all
into one set of field values. It returns plain values (the ``MLASpec`` and ``MoESpec`` keyword
arguments as dicts) and imports nothing of ``model.py``, which builds the spec
(``ModelSpec.from_hf_config``) and owns the catalog lookup.
"""

from __future__ import annotations

from typing import Any

from servesim.errors import ServesimError

# --- architecture facts not spelled out in configs -----------------------------------------

_QKV_BIAS_TYPES = frozenset({"qwen2", "qwen2_moe"})
_QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3", "gemma3_text"})
_SINK_TYPES = frozenset({"gpt_oss"})
_TIED_BY_DEFAULT_TYPES = frozenset(
    {"gpt2", "gemma", "gemma2", "gemma3", "gemma3_text", "cohere", "cohere2"}
)
"""Families whose transformers config class ties the LM head to the input embedding unless told
otherwise (``tie_word_embeddings=True``: ``GPT2Config`` by inheritance, ``GemmaConfig``,
``Gemma2Config``, ``Gemma3TextConfig``, ``CohereConfig``, ``Cohere2Config``), so their
config.json files leave the
key out; every other family's class defaults to untied."""
_SLIDING_PATTERN_DEFAULTS = {"gemma2": 2, "gemma3": 6, "gemma3_text": 6}
"""Families whose every ``pattern``-th layer attends to the full context and the others to the
window, with the pattern their config class assumes when config.json does not say
(``sliding_window_pattern``): Gemma 2 alternates (``Gemma2Config.layer_types``), Gemma 3 keeps
one full layer in six (``Gemma3TextConfig``)."""
_LLAMA4_TYPES = frozenset({"llama4", "llama4_text"})
"""Llama 4: every MoE layer also runs one shared expert as wide as a routed one (transformers'
``Llama4TextMoe.shared_expert = Llama4TextMLP(config)``), dense layers are
``intermediate_size_mlp`` wide, and layers with RoPE attend within ``attention_chunk_size``-token
chunks (``no_rope_layers``: 3 of every 4)."""
_UNGATED_MLP_TYPES = frozenset({"gpt2", "gpt_neox", "gptj", "opt", "falcon", "phi", "starcoder2"})
# NOTE: GPT-2 and GPT-J configs write `n_inner: null` for their default MLP width, 4 x n_embd
# (transformers GPT2Config / GPTJConfig).
_NULL_WIDTH_IS_4X_TYPES = frozenset({"gpt2", "gptj"})

_TORCH_DTYPES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
}


# --- parameter counting helpers (pure) -----------------------------------------------------

MAX_CONFIG_INT = 2**31 - 1
"""Largest integer a config.json field may hold (configs are int32; a larger value is a
corrupt file, and would overflow the cost model's int64 arithmetic)."""

MAX_LAYERS = 10_000
"""Most transformer layers a config may have (the largest published models have ~200; the
cost model visits every layer, so an absurd count would run for hours)."""


def _shown(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


class _Reader:
    """Typed access to one config dict; every error names the config file and field."""

    def __init__(self, cfg: dict, source: str):
        self.cfg = cfg
        self.source = source

    def error(self, key: str, problem: str) -> ServesimError:
        field = f"{self.source}: {key}"
        return ServesimError(
            f"{field} {problem}",
            field=field,
            fix="check the model's config.json against the one on the Hugging Face Hub",
        )

    def has(self, key: str) -> bool:
        return self.cfg.get(key) is not None

    def _find(self, key: str, aliases: tuple[str, ...]) -> tuple[str, Any]:
        for k in (key, *aliases):
            if self.cfg.get(k) is not None:
                return k, self.cfg[k]
        return key, None

    def integer(
        self,
        key: str,
        *,
        aliases: tuple[str, ...] = (),
        default: int | None = None,
        minimum: int = 1,
        maximum: int = MAX_CONFIG_INT,
    ) -> int:
        found, value = self._find(key, aliases)
        if value is None:
            if default is None:
                raise self.error(key, "is missing")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(found, f"must be an integer, got {_shown(value)}")
        if value < minimum:
            raise self.error(found, f"must be >= {minimum}, got {_shown(value)}")
        if value > maximum:
            raise self.error(found, f"must be <= {maximum:,}, got {_shown(value)}")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        value = self.cfg.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_shown(value)}")
        return value

    def text(self, key: str, *, default: str) -> str:
        value = self.cfg.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_shown(value)}")
        return value


def read_hf_config(cfg: Any, source: str = "config.json") -> dict[str, Any]:
    """The ``ModelSpec`` fields (all but ``name``) a parsed Hugging Face ``config.json`` gives.

    ``mla`` and ``moe`` are the keyword arguments of ``MLASpec`` and ``MoESpec``, or None.
    ``source`` names the file in error messages. A missing required field or a value of the
    wrong type raises :class:`ServesimError` naming the field (``config.json: hidden_size is
    missing``).
    """
    if not isinstance(cfg, dict):
        raise ServesimError(
            f"{source}: expected a JSON object, got {type(cfg).__name__}",
            field=source,
            fix="pass the model's config.json",
        )
    cfg = _text_config(cfg)
    read = _Reader(cfg, source)
    model_type = read.text("model_type", default="")
    hidden = read.integer("hidden_size", aliases=("n_embd", "d_model"))
    layers = read.integer(
        "num_hidden_layers", aliases=("n_layer", "num_layers"), maximum=MAX_LAYERS
    )
    heads = read.integer("num_attention_heads", aliases=("n_head", "num_heads"))
    kv_heads = read.integer(
        "num_key_value_heads", aliases=("num_kv_heads", "n_head_kv"), default=heads
    )
    if heads % kv_heads:
        raise read.error(
            "num_key_value_heads",
            f"({kv_heads}) must divide num_attention_heads ({heads})",
        )
    mla = _parse_mla(read)
    if mla is not None:
        # NOTE: for MLA the q·k width is nope + rope; V has its own width in the MLASpec.
        head_dim = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    else:
        explicit = read.integer("head_dim", default=0, minimum=0)
        head_dim = explicit or _even_split(read, hidden, heads)
    moe = _parse_moe(read, model_type, layers)
    all_moe = moe is not None and moe["first_dense_layers"] == 0 and moe["layer_freq"] == 1
    all_moe = all_moe and not moe["mlp_only_layers"]
    default_width = 4 * hidden if model_type in _NULL_WIDTH_IS_4X_TYPES else None
    # (Llama 4's dense layers have a width of their own; intermediate_size is its experts')
    dense_key = "intermediate_size_mlp" if model_type in _LLAMA4_TYPES else "intermediate_size"
    intermediate = read.integer(
        dense_key,
        aliases=("ffn_hidden_size", "n_inner"),
        # an all-MoE model may omit the dense width: no layer uses it
        default=0 if all_moe else default_width,
        minimum=0 if all_moe else 1,
    )
    context = read.integer(
        "max_position_embeddings", aliases=("n_positions", "max_sequence_length", "seq_length")
    )
    window, sliding_layers = _parse_sliding(read, layers, context, model_type)
    dtype, base_dtype, scope = _parse_dtype(read)
    attention_bias = read.flag("attention_bias", default=False)
    return dict(
        architecture=_architecture(read, model_type),
        hidden_size=hidden,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=read.integer("vocab_size"),
        max_position_embeddings=context,
        tie_word_embeddings=read.flag(
            "tie_word_embeddings", default=model_type in _TIED_BY_DEFAULT_TYPES
        ),
        dtype=dtype,
        gated_mlp=model_type not in _UNGATED_MLP_TYPES,
        # Qwen2's q/k/v projections always carry a bias; its config has no flag for it
        qkv_bias=attention_bias
        or read.flag("qkv_bias", default=False)
        or model_type in _QKV_BIAS_TYPES,
        o_bias=attention_bias,
        qk_norm=model_type in _QK_NORM_TYPES or read.flag("use_qk_norm", default=False),
        moe=moe,
        mla=mla,
        sliding_window=window,
        num_sliding_layers=sliding_layers,
        attention_sinks=model_type in _SINK_TYPES,
        model_type=model_type,
        mlp_bias=read.flag("mlp_bias", default=False),
        base_dtype=base_dtype,
        quant_scope=scope,
        weight_block_scaled=_block_scaled(read.cfg.get("quantization_config")),
        num_mtp_layers=read.integer("num_nextn_predict_layers", default=0, minimum=0),
        unmodelled=_unmodelled_layers(read, model_type, layers),
    )


def _text_config(cfg: dict) -> dict:
    """The language-model part of a config: multimodal configs nest it under ``text_config``."""
    text = cfg.get("text_config")
    if "hidden_size" in cfg or not isinstance(text, dict):
        return cfg
    inherited = ("quantization_config", "torch_dtype", "dtype", "tie_word_embeddings")
    return {**{k: cfg[k] for k in inherited if k in cfg}, **text}


def _architecture(read: _Reader, model_type: str) -> str:
    archs = read.cfg.get("architectures")
    if archs is None:
        return model_type or "unknown"
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        raise read.error("architectures", f"must be a list of class names, got {_shown(archs)}")
    return archs[0]


def _even_split(read: _Reader, hidden: int, heads: int) -> int:
    if hidden % heads:
        raise read.error(
            "head_dim",
            f"is missing and hidden_size ({hidden}) is not a multiple of the {heads} heads",
        )
    return hidden // heads


def _parse_mla(read: _Reader) -> dict[str, Any] | None:
    if not read.has("kv_lora_rank"):
        return None
    q_rank = read.integer("q_lora_rank", default=0, minimum=0)
    return dict(
        q_lora_rank=q_rank or None,
        kv_lora_rank=read.integer("kv_lora_rank"),
        qk_nope_head_dim=read.integer("qk_nope_head_dim"),
        qk_rope_head_dim=read.integer("qk_rope_head_dim"),
        v_head_dim=read.integer("v_head_dim"),
    )


def _parse_moe(read: _Reader, model_type: str, layers: int) -> dict[str, Any] | None:
    num_experts = 0
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        num_experts = read.integer(key, default=0, minimum=0)
        if num_experts:
            break
    if not num_experts:
        return None
    top_k = read.integer("num_experts_per_tok", aliases=("experts_per_token", "moe_topk"))
    if top_k > num_experts:
        raise read.error("num_experts_per_tok", f"({top_k}) exceeds the {num_experts} experts")
    width = read.integer("moe_intermediate_size", default=0, minimum=0) or read.integer(
        "intermediate_size"
    )
    num_shared, shared_width, shared_gate = 0, 0, False
    if read.has("n_shared_experts"):
        # DeepSeek: n shared experts, each as wide as a routed one
        num_shared = read.integer("n_shared_experts", minimum=0)
        shared_width = width if num_shared else 0
    elif read.integer("shared_expert_intermediate_size", default=0, minimum=0):
        # Qwen-MoE: one shared expert of its own width, scaled by a sigmoid gate
        num_shared, shared_gate = 1, True
        shared_width = read.integer("shared_expert_intermediate_size")
    elif model_type in _LLAMA4_TYPES:
        # Llama 4: one ungated shared expert, as wide as a routed one (not in the config)
        num_shared, shared_width = 1, width
    first_dense, freq = _moe_layer_pattern(read)
    only_dense = read.cfg.get("mlp_only_layers") or []
    moe_layers = read.cfg.get("moe_layers") if model_type in _LLAMA4_TYPES else None
    if moe_layers is not None:
        # Llama 4 may list its MoE layers; the rest are dense
        if not isinstance(moe_layers, list) or not all(
            isinstance(i, int) and 0 <= i < layers for i in moe_layers
        ):
            raise read.error("moe_layers", f"must list layer indices below {layers}")
        first_dense, freq = 0, 1
        only_dense = [i for i in range(layers) if i not in set(moe_layers)]
    if not isinstance(only_dense, list) or not all(
        isinstance(i, int) and 0 <= i < layers for i in only_dense
    ):
        raise read.error("mlp_only_layers", f"must list layer indices below {layers}")
    gpt_oss = model_type == "gpt_oss"
    return dict(
        num_experts=num_experts,
        experts_per_token=top_k,
        expert_intermediate_size=width,
        num_shared_experts=num_shared,
        shared_expert_intermediate_size=shared_width,
        first_dense_layers=first_dense,
        layer_freq=freq,
        expert_bias=gpt_oss,
        # DeepSeek-V3's aux-loss-free balancing keeps a per-expert score bias in the checkpoint
        router_bias=gpt_oss or read.cfg.get("topk_method") == "noaux_tc",
        mlp_only_layers=tuple(sorted(only_dense)),
        shared_expert_gate=shared_gate,
    )


def _moe_layer_pattern(read: _Reader) -> tuple[int, int]:
    """``(first_dense_layers, layer_freq)`` reproducing the config's MoE layer pattern."""
    for key in ("decoder_sparse_step", "interleave_moe_layer_step"):
        if read.has(key):
            # Qwen-MoE, Llama 4: layer i is MoE when (i + 1) % step == 0 (step-1, 2*step-1, ...)
            step = read.integer(key)
            return step - 1, step
    # DeepSeek: layer i is MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0
    first_k = read.integer("first_k_dense_replace", default=0, minimum=0)
    freq = read.integer("moe_layer_freq", default=1)
    return -(-first_k // freq) * freq, freq


def _parse_sliding(
    read: _Reader, layers: int, context: int, model_type: str = ""
) -> tuple[int | None, int]:
    """``(sliding_window, num_sliding_layers)`` from whichever convention the config uses."""
    window = read.integer("sliding_window", default=0, minimum=0) or None
    chunk = read.integer("attention_chunk_size", default=0, minimum=0) or None
    layer_types = read.cfg.get("layer_types")
    if chunk is not None and window is None:
        # Llama 4's chunked local attention, taken as a window of one chunk: the same KV held
        # (the current chunk's), up to twice the attention work of long prompts on those layers
        # (a token attends to its chunk so far, not a whole chunk back).
        window = chunk
        if layer_types is None:
            no_rope = read.cfg.get("no_rope_layers") or []
            if not isinstance(no_rope, list) or (no_rope and len(no_rope) != layers):
                raise read.error("no_rope_layers", f"must list one flag per layer ({layers})")
            interval = read.integer("no_rope_layer_interval", default=4, minimum=1)
            flags = no_rope or [int((i + 1) % interval != 0) for i in range(layers)]
            layer_types = ["chunked_attention" if f else "full_attention" for f in flags]
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != layers:
            raise read.error("layer_types", f"must list one attention type per layer ({layers})")
        count = sum(t in ("sliding_attention", "chunked_attention") for t in layer_types)
        if count and window is None:
            raise read.error("sliding_window", "is missing but layer_types has sliding layers")
        sliding = count
    elif window is None:
        sliding = 0
    elif "use_sliding_window" in read.cfg:
        # Qwen2/3: the window applies only when enabled, and then from max_window_layers on
        if read.flag("use_sliding_window", default=False):
            sliding = max(0, layers - read.integer("max_window_layers", default=0, minimum=0))
        else:
            sliding = 0
    elif read.has("sliding_window_pattern") or model_type in _SLIDING_PATTERN_DEFAULTS:
        # Gemma 2/3, Cohere 2: layer i attends to the full context when (i + 1) % pattern == 0
        default = _SLIDING_PATTERN_DEFAULTS.get(model_type)
        pattern = read.integer("sliding_window_pattern", default=default, minimum=1)
        sliding = layers - layers // pattern
    else:
        # Mistral style: a window in the config applies to every layer
        sliding = layers
    # NOTE: a window as long as the context never drops a token: it is full attention
    if window is None or window >= context or sliding == 0:
        return None, 0
    return window, sliding


_STATE_SPACE_TYPES = frozenset(
    {"jamba", "nemotron_h", "falcon_h1", "bamba", "granitemoehybrid", "zamba2", "lfm2"}
)
"""Families mixing state-space (Mamba-style) layers with attention."""


def _unmodelled_layers(read: _Reader, model_type: str, layers: int) -> tuple[str, ...]:
    """Sentences naming what the config's layers do that servesim prices as dense attention:
    linear attention (Qwen3-Next's Gated DeltaNet, ``layer_types`` ``linear_attention`` or
    ``full_attention_interval``), sparse attention (DeepSeek-V3.2's ``index_topk``) and
    state-space layers."""
    types = read.cfg.get("layer_types")
    linear = 0
    if isinstance(types, list):
        linear = sum(t == "linear_attention" for t in types)
    elif read.has("full_attention_interval"):
        interval = read.integer("full_attention_interval", minimum=1)
        linear = layers - layers // interval
    out = []
    if linear:
        out.append(
            f"{linear} of its {layers} layers are linear attention, which servesim prices as "
            "full attention: their KV cache (a fixed state per request in the engine) and the "
            "attention work of long contexts are overestimated"
        )
    if read.has("index_topk"):
        out.append(
            f"its sparse attention (an indexer picks {read.integer('index_topk')} tokens a "
            "query: DeepSeek-V3.2's DSA) is priced as dense attention over the whole context, "
            "so long-context attention work is overestimated"
        )
    if model_type in _STATE_SPACE_TYPES or read.has("hybrid_override_pattern"):
        out.append(
            "its state-space (Mamba) layers are not modelled: servesim prices every layer as "
            "attention, so its KV cache and long-context attention work are overestimated"
        )
    return tuple(out)


def _parse_dtype(read: _Reader) -> tuple[str, str, str]:
    """``(dtype, base_dtype, quant_scope)``: the stored weight format and what it covers."""
    raw = read.cfg.get("torch_dtype") or read.cfg.get("dtype") or "bfloat16"
    if not isinstance(raw, str) or raw.removeprefix("torch.") not in _TORCH_DTYPES:
        raise read.error(
            "torch_dtype",
            f"is {_shown(raw)}, not a dtype servesim serves weights in (bfloat16, float16 or "
            "float32)",
        )
    base = _TORCH_DTYPES[raw.removeprefix("torch.")]
    quant = read.cfg.get("quantization_config")
    if quant is None:
        return base, base, "none"
    if not isinstance(quant, dict):
        raise read.error("quantization_config", "must be an object")
    dtype = _quant_dtype(read, quant)
    # The modules left in the base dtype: transformers' key, compressed-tensors' and ModelOpt's.
    skipped = [
        m
        for key in ("modules_to_not_convert", "ignore", "exclude_modules")
        for m in (quant.get(key) or [])
    ]
    attention_skipped = any("attn" in str(m) for m in skipped)
    return dtype, base, "experts" if attention_skipped else "linear"


def _block_scaled(quant: object) -> bool:
    """Whether a ``quantization_config`` stores one scale per block of weights: the ``fp8``
    method's ``weight_block_size`` (DeepSeek-V3, Qwen3 FP8), compressed-tensors' ``block``
    strategy."""
    if not isinstance(quant, dict):
        return False
    if quant.get("weight_block_size"):
        return True
    groups = quant.get("config_groups") or {}
    return any(
        str(((g or {}).get("weights") or {}).get("strategy", "")).lower() == "block"
        for g in (groups.values() if isinstance(groups, dict) else ())
    )


def _quant_dtype(read: _Reader, quant: dict) -> str:
    """The stored weight format, as a name the cost model sizes (fp8, int4, mxfp4...)."""
    method = str(quant.get("quant_method", "")).lower()
    bits = quant.get("bits") or quant.get("w_bit")
    if method in ("fp8", "fbgemm_fp8"):
        return "fp8"
    if method == "mxfp4":
        return "mxfp4"
    if method in ("awq", "gptq", "awq_marlin", "gptq_marlin") and bits in (4, 8):
        return f"int{bits}"
    if method == "bitsandbytes":
        # nf4/fp4 storage is half a byte per weight, like int4 (block scales aside)
        return "int4" if quant.get("load_in_4bit") else "int8"
    if method == "modelopt":
        algo = str(quant.get("quant_algo", "")).upper()
        if algo in ("FP8", "NVFP4"):
            return algo.lower()
    if method == "compressed-tensors":
        for group in (quant.get("config_groups") or {}).values():
            weights = group.get("weights") or {}
            kind, width = weights.get("type"), weights.get("num_bits")
            if kind == "float" and width in (4, 8):
                return "fp8" if width == 8 else "nvfp4"
            if kind == "int" and width in (4, 8):
                return f"int{width}"
    raise read.error(
        "quantization_config",
        f"uses a format servesim cannot size ({method or 'no quant_method'})",
    )
