"""ModelSpec parsing, parameter counts against published figures, and catalog resolution."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.errors import ServesimError
from servesim.model import (
    CatalogEntry,
    ModelSpec,
    MoESpec,
    list_models,
    load_model,
    parse_param_count,
)

CATALOG_DIR = Path(__file__).parents[1] / "src" / "servesim" / "catalog" / "models"
ENTRIES = list_models()
IDS = [e.id for e in ENTRIES]


def llama_like(**overrides) -> dict:
    """A small Llama-style config.json; overrides replace or add fields."""
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    cfg.update(overrides)
    return {k: v for k, v in cfg.items() if v is not ...}


def parse(**overrides) -> ModelSpec:
    return ModelSpec.from_hf_config(llama_like(**overrides), "test")


# --- the shipped catalog -------------------------------------------------------------------


def test_index_and_files_agree():
    index = yaml.safe_load((CATALOG_DIR / "index.yaml").read_text())
    listed = {row["file"] for row in index["models"]}
    shipped = {p.name for p in CATALOG_DIR.glob("*.json")}
    assert listed == shipped
    assert len(IDS) == len(set(IDS)) == 32
    for entry in ENTRIES:
        org, name = entry.id.split("/")
        assert entry.path.name == f"{org}--{name}.json"
        assert entry.source


@pytest.mark.parametrize("model_id", IDS)
def test_every_shipped_model_parses(model_id):
    spec = load_model(model_id)
    assert spec.name == model_id
    assert spec.num_attention_heads % spec.num_kv_heads == 0
    assert 0 < spec.params_active <= spec.params_total
    assert sum(spec.params_breakdown().values()) == spec.params_total
    assert sum(spec.params_breakdown(active=True).values()) == spec.params_active


def _published_active_convention(entry: CatalogEntry, spec: ModelSpec) -> int:
    """Our active count under the publisher's convention for the input embedding."""
    if entry.active_excludes_embedding and not spec.tie_word_embeddings:
        return spec.params_active - spec.params_breakdown(active=True)["embedding"]
    return spec.params_active


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_total_params_match_published(entry):
    spec = load_model(entry.id)
    assert spec.params_total == pytest.approx(entry.published_total, rel=entry.tolerance)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_active_params_match_published(entry):
    spec = load_model(entry.id)
    ours = _published_active_convention(entry, spec)
    assert ours == pytest.approx(entry.published_active, rel=entry.tolerance)


def test_only_a_documented_entry_relaxes_the_one_percent_rule():
    relaxed = [e for e in ENTRIES if e.tolerance != 0.01]
    assert [e.id for e in relaxed] == ["Qwen/Qwen3-30B-A3B"]
    assert relaxed[0].tolerance <= 0.02 and "3.353B" in relaxed[0].note


def test_llama_3_1_8b_counted_by_hand():
    h, vocab, kv_dim, ffn, layers = 4096, 128256, 8 * 128, 14336, 32
    embed = vocab * h
    per_layer = (
        h * h  # q_proj
        + 2 * h * kv_dim  # k_proj, v_proj
        + h * h  # o_proj
        + 3 * h * ffn  # gate, up, down
        + 2 * h  # input and post-attention RMSNorm
    )
    expected = embed + layers * per_layer + h + vocab * h  # + final norm + untied lm_head
    assert expected == 8_030_261_248
    assert load_model("meta-llama/Llama-3.1-8B").params_total == expected


def test_gpt_j_counted_by_hand():
    """GPT-J: n_embd/n_layer/n_head/n_positions names, `n_inner: null` = 4 x n_embd, a
    non-gated GELU MLP (fc_in, fc_out), untied LM head; one LayerNorm per layer (parallel
    attention + MLP) with weight and bias counts as the two RMSNorm weights of a Llama layer."""
    spec = load_model("EleutherAI/gpt-j-6b")
    h, vocab, layers, ffn = 4096, 50400, 28, 16384
    assert (spec.hidden_size, spec.num_layers, spec.num_attention_heads) == (h, layers, 16)
    assert (spec.intermediate_size, spec.head_dim, spec.max_position_embeddings) == (ffn, 256, 2048)
    assert not spec.gated_mlp and spec.attention_type == "MHA" and not spec.qkv_bias
    per_layer = 4 * h * h + 2 * h * ffn + 2 * h
    assert spec.params_total == 2 * vocab * h + layers * per_layer + h == 6_050_254_848
    # the model card's 6,053,381,344 also counts biases servesim leaves out: 0.05% more
    assert spec.params_total == pytest.approx(6_053_381_344, rel=0.001)


def test_gpt2_style_names_and_null_width():
    gpt2 = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_embd": 64,
        "n_layer": 2,
        "n_head": 4,
        "n_inner": None,
        "n_positions": 1024,
        "vocab_size": 100,
    }
    spec = ModelSpec.from_hf_config(gpt2, "tiny-gpt2")
    assert (spec.hidden_size, spec.num_layers, spec.num_attention_heads) == (64, 2, 4)
    assert (spec.intermediate_size, spec.max_position_embeddings) == (256, 1024)
    assert ModelSpec.from_hf_config({**gpt2, "n_inner": 96}, "x").intermediate_size == 96
    # a null width means 4 x hidden only where transformers says so: a Llama still needs one
    with pytest.raises(ServesimError, match="intermediate_size is missing"):
        parse(intermediate_size=None)


def test_older_families_layout():
    llama2_70b, llama1 = load_model("llama2-70b"), load_model("llama-7b")
    assert llama2_70b.attention_type == "GQA" and llama2_70b.num_kv_heads == 8
    assert llama2_70b.max_position_embeddings == 4096 and llama2_70b.dtype == "fp16"
    assert llama1.attention_type == "MHA" and llama1.max_position_embeddings == 2048
    v01, v03 = load_model("mistralai/Mistral-7B-v0.1"), load_model("mistral-7b")
    assert (v01.sliding_window, v01.num_sliding_layers) == (4096, 32)
    assert v03.sliding_window is None
    qwen2 = load_model("Qwen/Qwen2-7B")
    assert qwen2.qkv_bias and qwen2.num_sliding_layers == 0 and qwen2.num_kv_heads == 4


def test_deepseek_v3_mla_attention_counted_by_hand():
    spec = load_model("deepseek-ai/DeepSeek-V3")
    h, heads = 7168, 128
    attention = (
        h * 1536  # q_a_proj
        + 1536 * heads * (128 + 64)  # q_b_proj
        + h * (512 + 64)  # kv_a_proj_with_mqa
        + 512 * heads * (128 + 128)  # kv_b_proj
        + heads * 128 * h  # o_proj
    )
    assert spec.params_breakdown()["attention"] == 61 * attention
    norms = 61 * (2 * h + 1536 + 512) + h  # layer norms, q_a/kv_a layernorms, final norm
    assert spec.params_breakdown()["norms"] == norms
    # 256 routed + 1 shared expert per MoE layer, each gate/up/down at width 2048
    expert = 3 * h * 2048
    assert spec.params_breakdown()["moe_experts"] == 58 * (256 + 1) * expert
    assert spec.params_breakdown(active=True)["moe_experts"] == 58 * (8 + 1) * expert
    # router weight plus the per-expert score-correction bias
    assert spec.params_breakdown()["router"] == 58 * (256 * h + 256)
    assert spec.params_breakdown()["mlp"] == 3 * 3 * h * 18432


def test_gpt_oss_counts_biases_and_sinks():
    spec = load_model("openai/gpt-oss-120b")
    h, heads, kv, hd, width = 2880, 64, 8, 64, 2880
    attention = h * (heads + 2 * kv) * hd + (heads + 2 * kv) * hd + heads * hd * h + h + heads
    assert spec.params_breakdown()["attention"] == 36 * attention
    expert = h * 2 * width + 2 * width + width * h + h  # gate_up (+bias), down (+bias)
    assert spec.params_breakdown()["moe_experts"] == 36 * 128 * expert
    assert spec.params_breakdown()["router"] == 36 * (128 * h + 128)


def test_qwen2_has_qkv_bias_and_qwen3_has_qk_norm():
    q2 = load_model("Qwen/Qwen2.5-0.5B")
    assert q2.qkv_bias and not q2.o_bias and q2.tie_word_embeddings
    h, q, kv = 896, 14 * 64, 2 * 64
    assert q2.params_breakdown()["attention"] == 24 * (h * (q + 2 * kv) + q + 2 * kv + q * h)
    assert q2.params_breakdown()["lm_head"] == 0
    q3 = load_model("Qwen/Qwen3-8B")
    assert q3.qk_norm and not q3.qkv_bias
    assert q3.params_breakdown()["norms"] == 36 * (2 * 4096 + 2 * 128) + 4096


def test_layer_layout_facts():
    ds = load_model("deepseek-v3")
    assert (ds.num_dense_layers, ds.num_moe_layers) == (3, 58)
    assert [ds.is_moe_layer(i) for i in (0, 2, 3, 60)] == [False, False, True, True]
    assert ds.attention_type == "MLA" and ds.kv_elements_per_token_per_layer == 512 + 64
    assert ds.dtype == "fp8" and ds.base_dtype == "bf16" and ds.quant_scope == "linear"
    assert ds.num_mtp_layers == 1
    oss = load_model("gpt-oss-120b")
    assert (oss.sliding_window, oss.num_sliding_layers, oss.num_full_attention_layers) == (
        128,
        18,
        18,
    )
    assert oss.attention_sinks and oss.moe.expert_bias and oss.moe.router_bias
    assert (oss.dtype, oss.quant_scope) == ("mxfp4", "experts")
    llama = load_model("llama-3.1-8b")
    assert llama.kv_elements_per_token_per_layer == 2 * 8 * 128
    assert llama.attention_type == "GQA" and llama.moe is None and llama.sliding_window is None
    mixtral = load_model("mixtral-8x7b")
    assert (mixtral.moe.num_experts, mixtral.moe.experts_per_token) == (8, 2)
    assert mixtral.num_moe_layers == 32 and mixtral.moe.expert_intermediate_size == 14336
    qwen_moe = load_model("Qwen/Qwen3-30B-A3B")
    assert qwen_moe.moe.expert_intermediate_size == 768 and qwen_moe.num_dense_layers == 0


def test_qwen_use_sliding_window_false_means_no_sliding_layers():
    # every Qwen2.5 config names a window but disables it
    for model_id in IDS:
        if model_id.startswith("Qwen/Qwen2.5"):
            raw = json.loads(next(e for e in ENTRIES if e.id == model_id).path.read_text())
            assert raw["sliding_window"] and raw["use_sliding_window"] is False
            assert load_model(model_id).num_sliding_layers == 0


# --- parsing conventions (synthetic configs) -----------------------------------------------


def test_defaults_kv_heads_and_head_dim():
    spec = parse(num_key_value_heads=...)
    assert spec.num_kv_heads == 8 and spec.head_dim == 8 and spec.attention_type == "MHA"
    assert parse(num_key_value_heads=1).attention_type == "MQA"
    assert parse(head_dim=32).head_dim == 32


def test_sliding_window_conventions():
    mistral = parse(model_type="mistral", sliding_window=1024)
    assert (mistral.sliding_window, mistral.num_sliding_layers) == (1024, 4)
    qwen_on = parse(
        model_type="qwen2", sliding_window=1024, use_sliding_window=True, max_window_layers=1
    )
    assert qwen_on.num_sliding_layers == 3
    qwen_off = parse(model_type="qwen2", sliding_window=1024, use_sliding_window=False)
    assert (qwen_off.sliding_window, qwen_off.num_sliding_layers) == (None, 0)
    types = ["sliding_attention", "full_attention"] * 2
    assert parse(sliding_window=128, layer_types=types).num_sliding_layers == 2
    # a window no shorter than the context never drops a token
    assert parse(sliding_window=4096).num_sliding_layers == 0


def test_moe_layer_patterns():
    qwen2_moe = parse(
        model_type="qwen2_moe",
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=16,
        decoder_sparse_step=2,
        shared_expert_intermediate_size=32,
    )
    assert [qwen2_moe.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    assert qwen2_moe.moe.shared_expert_gate and qwen2_moe.moe.num_shared_experts == 1
    # two MoE layers: 4 routers of 64 plus a 64-wide shared gate; shared expert 3 x 64 x 32
    assert qwen2_moe.params_breakdown()["router"] == 2 * (4 * 64 + 64)
    assert qwen2_moe.params_breakdown()["moe_experts"] == 2 * (4 * 3 * 64 * 16 + 3 * 64 * 32)
    only = parse(num_experts=4, num_experts_per_tok=1, mlp_only_layers=[0, 2])
    assert [only.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    deepseek = parse(
        n_routed_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=16,
        n_shared_experts=2,
        first_k_dense_replace=1,
        moe_layer_freq=2,
        num_hidden_layers=6,
    )
    # HF DeepSeek: MoE when layer >= first_k_dense_replace and layer % moe_layer_freq == 0
    assert [deepseek.is_moe_layer(i) for i in range(6)] == [False, False, True, False, True, False]


def test_dtypes():
    assert parse(torch_dtype="float16").dtype == "fp16"
    assert parse(torch_dtype=..., dtype="float32").dtype == "fp32"
    assert parse(torch_dtype="torch.bfloat16").dtype == "bf16"
    awq = parse(quantization_config={"quant_method": "awq", "bits": 4})
    assert (awq.dtype, awq.base_dtype, awq.quant_scope) == ("int4", "bf16", "linear")
    assert (
        parse(quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True}).dtype
        == "int4"
    )
    ct = {
        "quant_method": "compressed-tensors",
        "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}},
    }
    assert parse(quantization_config=ct).dtype == "fp8"
    with pytest.raises(ServesimError, match="quantization_config"):
        parse(quantization_config={"quant_method": "mystery"})
    with pytest.raises(ServesimError, match="quantization_config"):
        parse(quantization_config={"quant_method": "gptq", "bits": 3})


def test_block_scaled_fp8_checkpoints_are_told_apart_from_per_tensor_ones():
    # DeepSeek-V3/R1 and Qwen3 FP8: fp8 with 128x128 weight blocks; compressed-tensors says
    # "block"; a per-tensor or per-channel FP8 checkpoint has neither.
    deepseek = {"quant_method": "fp8", "activation_scheme": "dynamic",
                "weight_block_size": [128, 128]}  # fmt: skip
    assert parse(quantization_config=deepseek).weight_block_scaled
    per_tensor = {"quant_method": "fp8", "activation_scheme": "static"}
    assert not parse(quantization_config=per_tensor).weight_block_scaled
    weights = {"num_bits": 8, "type": "float", "strategy": "block"}
    ct = {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": weights}}}
    assert parse(quantization_config=ct).weight_block_scaled
    weights["strategy"] = "channel"
    assert not parse(quantization_config=ct).weight_block_scaled
    assert not parse().weight_block_scaled
    assert load_model("deepseek-r1").weight_block_scaled


@pytest.mark.parametrize("key", ["modules_to_not_convert", "ignore", "exclude_modules"])
def test_a_checkpoint_that_leaves_attention_unquantised_has_expert_scope(key):
    # ModelOpt's NVFP4 DeepSeek-R1 checkpoints keep the MLA projections in bf16
    # (exclude_modules); compressed-tensors names its skips "ignore".
    quant = {"quant_method": "modelopt", "quant_algo": "NVFP4",
             key: ["lm_head", "model.layers.*.self_attn*"]}  # fmt: skip
    got = parse(quantization_config=quant)
    assert (got.dtype, got.quant_scope) == ("nvfp4", "experts")
    only_head = {"quant_method": "modelopt", "quant_algo": "NVFP4", key: ["lm_head"]}
    assert parse(quantization_config=only_head).quant_scope == "linear"


def test_multimodal_configs_use_their_text_config():
    outer = {"architectures": ["SomeVLM"], "torch_dtype": "float16", "text_config": llama_like()}
    spec = ModelSpec.from_hf_config(outer, "vlm")
    assert (spec.num_layers, spec.dtype) == (4, "bf16")  # the text config's own dtype wins


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": ...}, "config.json: hidden_size is missing"),
        ({"hidden_size": "4096"}, "config.json: hidden_size must be an integer"),
        ({"num_hidden_layers": True}, "num_hidden_layers must be an integer"),
        ({"vocab_size": 0}, "vocab_size must be >= 1"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
        ({"num_local_experts": 8}, "num_experts_per_tok is missing"),
        ({"layer_types": ["full_attention"]}, "layer_types"),
        ({"torch_dtype": "int8"}, "torch_dtype"),
    ],
)
def test_malformed_config_names_the_field(overrides, message):
    with pytest.raises(ServesimError, match=message):
        parse(**overrides)


def test_non_object_config_is_rejected():
    with pytest.raises(ServesimError, match="expected a JSON object"):
        ModelSpec.from_hf_config([1, 2], "x")


@settings(max_examples=60, deadline=None)
@given(
    hidden=st.integers(1, 64).map(lambda n: 8 * n),
    kv_heads=st.sampled_from([1, 2, 4, 8]),
    layers=st.integers(1, 6),
    ffn=st.integers(1, 500),
    vocab=st.integers(1, 5000),
    tied=st.booleans(),
    family=st.sampled_from(["llama", "qwen2", "qwen3"]),
)
def test_counts_equal_a_tensor_by_tensor_manifest(
    hidden, kv_heads, layers, ffn, vocab, tied, family
):
    """An independent count: list every tensor a HF checkpoint of that family holds."""
    heads = 8
    cfg = llama_like(
        model_type=family,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        num_hidden_layers=layers,
        intermediate_size=ffn,
        vocab_size=vocab,
        tie_word_embeddings=tied,
    )
    hd = hidden // heads
    tensors = [(vocab, hidden)] + ([] if tied else [(vocab, hidden)]) + [(hidden,)]
    for _ in range(layers):
        tensors += [(heads * hd, hidden), (kv_heads * hd, hidden), (kv_heads * hd, hidden)]
        tensors += [(hidden, heads * hd), (ffn, hidden), (ffn, hidden), (hidden, ffn)]
        tensors += [(hidden,), (hidden,)]
        if family == "qwen2":
            tensors += [(heads * hd,), (kv_heads * hd,), (kv_heads * hd,)]
        if family == "qwen3":
            tensors += [(hd,), (hd,)]
    expected = 0
    for shape in tensors:
        size = 1
        for dim in shape:
            size *= dim
        expected += size
    spec = ModelSpec.from_hf_config(cfg, "x")
    assert spec.params_total == spec.params_active == expected


def test_moe_active_counts_only_top_k():
    spec = parse(num_local_experts=8, num_experts_per_tok=2)
    total, active = spec.params_breakdown(), spec.params_breakdown(active=True)
    assert total["moe_experts"] == 4 * 8 * 3 * 64 * 128
    assert active["moe_experts"] == 4 * 2 * 3 * 64 * 128
    assert {k for k in total if total[k] != active[k]} == {"moe_experts"}
    no_moe = replace(spec, moe=None)
    assert no_moe.params_breakdown()["router"] == 0 and no_moe.num_moe_layers == 0
    assert MoESpec(8, 2, 128).layer_freq == 1


# --- resolution ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B"),
        ("META-LLAMA/llama-3.1-8b", "meta-llama/Llama-3.1-8B"),
        ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
        ("meta-llama/Meta-Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-70B"),
        ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistralai/Mistral-7B-v0.3"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistralai/Mixtral-8x7B-v0.1"),
        ("llama-3.1-8b", "meta-llama/Llama-3.1-8B"),
        ("qwen3-8b", "Qwen/Qwen3-8B"),
        ("deepseek-v3", "deepseek-ai/DeepSeek-V3"),
        ("gpt-oss-120b", "openai/gpt-oss-120b"),
        ("mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1"),
        ("  Qwen3-30B  ", "Qwen/Qwen3-30B-A3B"),
        ("Llama-2-7B", "meta-llama/Llama-2-7b-hf"),
        ("llama2-7b", "meta-llama/Llama-2-7b-hf"),
        ("meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-2-7b-hf"),
        ("llama2-70b", "meta-llama/Llama-2-70b-hf"),
        ("LLaMA-13B", "huggyllama/llama-13b"),
        ("llama-7b", "huggyllama/llama-7b"),
        ("gpt-j-6b", "EleutherAI/gpt-j-6b"),
        ("GPT-J 6B", "EleutherAI/gpt-j-6b"),
        ("EleutherAI/gpt-j-6B", "EleutherAI/gpt-j-6b"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-8B"),
        ("llama3-70b", "meta-llama/Meta-Llama-3-70B"),
        # same architecture as Llama 3.1 70B (index.yaml says so next to the alias)
        ("meta-llama/Llama-3.3-70B-Instruct", "meta-llama/Llama-3.1-70B"),
        ("Llama-3.3-70B-Instruct", "meta-llama/Llama-3.1-70B"),
        ("deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-V3"),
        ("mistral-7b", "mistralai/Mistral-7B-v0.3"),  # the short name keeps its meaning
        ("mistralai/Mistral-7B-Instruct-v0.1", "mistralai/Mistral-7B-v0.1"),
        ("Qwen/Qwen2-7B-Instruct", "Qwen/Qwen2-7B"),
        ("qwen2-72b", "Qwen/Qwen2-72B"),
    ],
)
def test_names_resolve(name, model_id):
    assert load_model(name).name == model_id


def test_catalog_entries_are_cached():
    assert load_model("llama-3.1-8b") is load_model("meta-llama/Llama-3.1-8B")


def test_unknown_name_suggests_close_ids():
    with pytest.raises(ServesimError, match="unknown model 'llama-3.1-9b'") as err:
        load_model("llama-3.1-9b")
    assert "did you mean meta-llama/Llama-3.1-8B" in str(err.value)
    assert err.value.field == "model"


def test_ambiguous_name_lists_candidates():
    with pytest.raises(ServesimError, match="ambiguous") as err:
        load_model("llama-3.1")
    for size in ("8B", "70B", "405B"):
        assert f"meta-llama/Llama-3.1-{size}" in str(err.value)


def test_prefix_must_end_at_a_hyphen():
    with pytest.raises(ServesimError, match="unknown model"):
        load_model("qwen2.5-1")  # not a prefix of 1.5B or 14B at a hyphen


def test_config_file_and_directory(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(llama_like()))
    by_dir = load_model(str(folder))
    by_file = load_model(str(folder / "config.json"))
    assert by_dir == by_file
    assert by_dir.name == "my-model" and by_dir.num_layers == 4
    other = tmp_path / "tiny.json"
    other.write_text(json.dumps(llama_like(num_hidden_layers=2)))
    assert load_model(str(other)).name == "tiny"


def test_path_errors(tmp_path):
    with pytest.raises(ServesimError, match="has no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ServesimError, match="no such file"):
        load_model(str(tmp_path / "missing.json"))
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    with pytest.raises(ServesimError, match="not valid JSON"):
        load_model(str(broken))
    broken.write_text(json.dumps(llama_like(hidden_size=...)))
    with pytest.raises(ServesimError, match=r"config\.json: hidden_size is missing"):
        load_model(str(tmp_path))


def test_parse_param_count():
    assert parse_param_count("8.03B") == 8_030_000_000
    assert parse_param_count("494M") == 494_000_000
    assert parse_param_count(12) == 12
    with pytest.raises(ServesimError):
        parse_param_count("eight billion")


def _llama4_text(**overrides) -> dict:
    """Llama 4 Scout's text_config (meta-llama/Llama-4-Scout-17B-16E, config.json), nested as
    the multimodal config nests it; overrides replace its fields."""
    text = {
        "model_type": "llama4_text", "attention_chunk_size": 8192, "head_dim": 128,
        "hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
        "max_position_embeddings": 10485760, "num_attention_heads": 40,
        "num_experts_per_tok": 1, "num_hidden_layers": 48, "num_key_value_heads": 8,
        "num_local_experts": 16, "interleave_moe_layer_step": 1, "use_qk_norm": True,
        "vocab_size": 202048, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    }  # fmt: skip
    text.update(overrides)
    return {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
            "text_config": text, "vision_config": {"hidden_size": 1408}}  # fmt: skip


def test_llama_4_counts_its_shared_expert_dense_width_and_chunked_layers():
    # Meta: Scout 17B active of 109B (the text model 107.8B, the rest its vision encoder),
    # Maverick 17B active of 400B. Every MoE layer runs one shared expert as wide as a routed
    # one (transformers' Llama4TextMoe); without it the active count was 11.1B.
    scout = ModelSpec.from_hf_config(_llama4_text(), "scout")
    assert scout.moe.num_shared_experts == 1 and scout.moe.shared_expert_intermediate_size == 8192
    assert not scout.moe.shared_expert_gate and scout.num_moe_layers == 48
    assert scout.params_active == pytest.approx(17e9, rel=0.02)
    assert scout.params_total == pytest.approx(107.8e9, rel=0.01)
    # 3 of every 4 layers attend within 8,192-token chunks (no_rope_layers), taken as a window.
    assert (scout.sliding_window, scout.num_sliding_layers) == (8192, 36)
    # Maverick: MoE on every other layer (1, 3, ...), dense layers intermediate_size_mlp wide.
    maverick = ModelSpec.from_hf_config(
        _llama4_text(num_local_experts=128, interleave_moe_layer_step=2), "maverick"
    )
    assert [maverick.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    assert maverick.intermediate_size == 16384
    assert maverick.params_active == pytest.approx(17e9, rel=0.02)
    assert maverick.params_total == pytest.approx(400e9, rel=0.01)
    # An explicit moe_layers list, and no_rope_layers, are read as given.
    listed = ModelSpec.from_hf_config(_llama4_text(moe_layers=[0, 47]), "listed")
    assert listed.num_moe_layers == 2 and listed.is_moe_layer(47)
    flags = [1] * 40 + [0] * 8
    assert (
        ModelSpec.from_hf_config(_llama4_text(no_rope_layers=flags), "x").num_sliding_layers == 40
    )
    with pytest.raises(ServesimError, match="no_rope_layers"):
        ModelSpec.from_hf_config(_llama4_text(no_rope_layers=[1, 0]), "x")


def test_gemma_layouts_follow_their_config_classes():
    # Gemma 2 alternates sliding and full layers, Gemma 3 keeps one full layer in six
    # (transformers' layer_types: sliding when (i + 1) % pattern != 0), and both tie the LM head
    # to the embedding by default, which their config.json files leave out. Google: Gemma 2 9B
    # 9.24B; Gemma 3 27B 27.4B with its 0.4B vision encoder.
    gemma2 = parse(
        architectures=["Gemma2ForCausalLM"], model_type="gemma2", hidden_size=3584,
        intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
        num_key_value_heads=8, head_dim=256, sliding_window=4096, vocab_size=256000,
        max_position_embeddings=8192, tie_word_embeddings=...,
    )  # fmt: skip
    assert (gemma2.sliding_window, gemma2.num_sliding_layers) == (4096, 21)
    assert gemma2.tie_word_embeddings
    assert gemma2.params_total == pytest.approx(9.24e9, rel=0.01)
    text = {
        "model_type": "gemma3_text", "hidden_size": 5376, "intermediate_size": 21504,
        "num_hidden_layers": 62, "num_attention_heads": 32, "num_key_value_heads": 16,
        "head_dim": 128, "sliding_window": 1024, "sliding_window_pattern": 6,
        "vocab_size": 262208, "max_position_embeddings": 131072,
    }  # fmt: skip
    gemma3 = ModelSpec.from_hf_config(
        {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
         "text_config": text}, "gemma-3-27b",
    )  # fmt: skip
    assert (gemma3.sliding_window, gemma3.num_sliding_layers) == (1024, 52)
    assert gemma3.tie_word_embeddings and gemma3.qk_norm
    assert gemma3.params_total == pytest.approx(27.4e9 - 0.4e9, rel=0.01)
    # Without the key, Gemma 3's class default (6); an explicit pattern wins (Cohere 2: 4).
    no_key = {k: v for k, v in text.items() if k != "sliding_window_pattern"}
    assert ModelSpec.from_hf_config(no_key, "x").num_sliding_layers == 52
    assert parse(sliding_window=1024, sliding_window_pattern=4).num_sliding_layers == 3
    # A Llama says nothing and is untied (Cohere's families are tied); a Gemma that says
    # untied is untied.
    assert not parse().tie_word_embeddings
    assert parse(model_type="cohere2", tie_word_embeddings=...).tie_word_embeddings
    assert not ModelSpec.from_hf_config(
        {**text, "tie_word_embeddings": False}, "x"
    ).tie_word_embeddings


def test_linear_attention_and_state_space_layers_are_named_as_unmodelled():
    # Qwen3-Next: 3 of every 4 layers are Gated DeltaNet (full_attention_interval 4, or
    # layer_types), which servesim prices as attention; a run reports it. Mamba hybrids too.
    by_interval = parse(model_type="qwen3_next", full_attention_interval=4)
    assert len(by_interval.unmodelled) == 1 and "3 of its 4 layers" in by_interval.unmodelled[0]
    types = ["linear_attention"] * 3 + ["full_attention"]
    assert "3 of its 4" in parse(model_type="qwen3_next", layer_types=types).unmodelled[0]
    assert "state-space" in parse(model_type="nemotron_h").unmodelled[0]
    assert "2048 tokens a query" in parse(model_type="deepseek_v32", index_topk=2048).unmodelled[0]
    assert parse().unmodelled == () and load_model("llama-3.1-8b").unmodelled == ()


def test_a_run_reports_the_models_unmodelled_layers(tmp_path):
    import json
    import subprocess
    import sys

    config = llama_like(model_type="qwen3_next", full_attention_interval=4)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "servesim", "simulate", "-m", str(path), "--num-requests", "3",
         "--json"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    caveats = json.loads(done.stdout)["model_caveats"]
    assert caveats and "linear attention" in caveats[0]
    assert "warning:" in done.stderr and "linear attention" in " ".join(done.stderr.split())
