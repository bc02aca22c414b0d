"""The model and hardware specs the cost tests are built on (``cost_factories.py``), pinned to
the parameter counts their publishers state and to the shipped catalog."""

from __future__ import annotations

from cost_factories import (
    deepseek_v3,
    h100,
    llama_3_1_8b,
    llama_3_1_70b,
    llama_3_1_405b,
)

from servesim.model import ModelSpec


def test_llama_8b_spec_has_the_published_parameter_count():
    m = llama_3_1_8b()
    per_layer = (
        m.hidden_size * (m.num_attention_heads + 2 * m.num_kv_heads) * m.head_dim  # q, k, v
        + m.num_attention_heads * m.head_dim * m.hidden_size  # o
        + 3 * m.hidden_size * m.intermediate_size  # gate, up, down
        + 2 * m.hidden_size  # two RMSNorms
    )
    total = m.num_layers * per_layer + 2 * m.vocab_size * m.hidden_size + m.hidden_size
    assert total == 8_030_261_248  # the count Meta's model card rounds to 8B


def test_deepseek_v3_spec_layout():
    m = deepseek_v3()
    assert (m.num_moe_layers, m.num_dense_layers) == (58, 3)
    assert m.kv_elements_per_token_per_layer == 512 + 64


def test_fixtures_agree_with_the_shipped_catalog():
    from dataclasses import fields

    from servesim.model import load_model

    shape = [f.name for f in fields(ModelSpec) if f.name not in ("name", "architecture")]
    for fixture, catalog_id in [
        (llama_3_1_8b(), "llama-3.1-8b"),
        (llama_3_1_70b(), "llama-3.1-70b"),
        (llama_3_1_405b(), "llama-3.1-405b"),
    ]:
        shipped = load_model(catalog_id)
        diff = {
            k: (getattr(fixture, k), getattr(shipped, k))
            for k in shape
            if k not in ("model_type", "max_position_embeddings")
            and getattr(fixture, k) != getattr(shipped, k)
        }
        assert diff == {}, catalog_id
    ds = load_model("deepseek-v3")
    assert (ds.mla, ds.moe) == (deepseek_v3().mla, deepseek_v3().moe)
    assert (ds.dtype, ds.quant_scope) == ("fp8", "linear")


def test_h100_fixture_agrees_with_the_shipped_spec_where_the_tests_rely_on_it():
    from servesim.hardware import load_hardware

    hw = load_hardware("h100")
    mine = h100()
    assert hw.peak_flops["bf16"] == mine.peak_flops["bf16"]
    assert hw.peak_flops["fp8"] == mine.peak_flops["fp8"]
    assert (hw.hbm_bandwidth, hw.intra_node.bandwidth) == (3.35e12, 450e9)
