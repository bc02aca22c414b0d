"""Validation of Parallelism and CostParams, and dtype resolution."""

from __future__ import annotations

import pytest
from cost_factories import deepseek_v3, gpt_oss_20b, h100, llama_3_1_8b

from servesim.cost import CostParams, Parallelism, build_step_cost, valid_tps
from servesim.cost.dtypes import dtype_bytes
from servesim.cost.resolve import resolve_params
from servesim.errors import ServesimError


def test_valid_tps_follow_heads_and_kv_heads():
    # 32 heads, 8 KV heads: TP must divide 32 and divide 8 or be a multiple of it.
    assert valid_tps(llama_3_1_8b()) == [1, 2, 4, 8, 16, 32]
    # MLA: only the 128 query heads constrain TP.
    assert valid_tps(deepseek_v3()) == [1, 2, 4, 8, 16, 32, 64]


@pytest.mark.parametrize(
    "par, field",
    [
        (dict(tp=3), "tp"),
        (dict(tp=64), "tp"),
        (dict(pp=33), "pp"),
    ],
)
def test_impossible_splits_are_rejected(par, field):
    with pytest.raises(ServesimError) as err:
        build_step_cost(llama_3_1_8b(), h100(), Parallelism(**par))
    assert err.value.field == field
    assert err.value.fix


def test_tp3_error_suggests_valid_degrees():
    with pytest.raises(ServesimError) as err:
        Parallelism(tp=3).check(llama_3_1_8b())
    assert err.value.fix == "use --tp 1 or 2 or 4 or 8 or 16 or 32"


def test_ep_rules():
    with pytest.raises(ServesimError):
        Parallelism(tp=2, ep=4)  # EP lives inside the TP group
    with pytest.raises(ServesimError) as err:
        Parallelism(tp=2, ep=2).check(llama_3_1_8b())
    assert "no experts" in str(err.value)
    Parallelism(tp=4, ep=4).check(gpt_oss_20b())  # 32 experts over 4 groups
    with pytest.raises(ServesimError):
        Parallelism(tp=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(compute_efficiency=0.0),
        dict(memory_efficiency=1.2),
        dict(comm_efficiency=0.0),
        dict(kernel_launch_s=-1.0),
        dict(step_overhead_s=-1.0),
        dict(head="reward"),
        dict(fidelity="guessed"),
        dict(mla_absorb_max_new_tokens=-1),
        dict(mla_prompt_absorb_below=0.0),
        dict(mla_prompt_prefix_floor=-1.0),
        dict(mla_prompt_attention_scale=0.0),
        dict(flashinfer_cuda_core_group=-1),
    ],
)
def test_cost_params_are_validated(kwargs):
    with pytest.raises(ServesimError):
        CostParams(**kwargs)


def test_dtype_sizes():
    assert [dtype_bytes(d) for d in ("bf16", "fp8", "int8", "int4", "fp4")] == [2, 1, 1, 0.5, 0.5]
    # Block-scaled 4-bit formats: an 8-bit scale per 32 values (MX), per 16 (NVFP4).
    assert dtype_bytes("mxfp4") == (32 * 4 + 8) / 8 / 32
    assert dtype_bytes("nvfp4") == (16 * 4 + 8) / 8 / 16
    assert dtype_bytes("bfloat16") == 2
    with pytest.raises(ServesimError) as err:
        build_step_cost(llama_3_1_8b(), h100(), params=CostParams(weight_dtype="fp7"))
    assert err.value.field == "weight_dtype"


def test_defaults_come_from_model_and_hardware():
    res = resolve_params(llama_3_1_8b(), h100(memory_efficiency=0.75), CostParams())
    assert (res.weight_dtype, res.kv_dtype, res.act_dtype) == ("bf16", "bf16", "bf16")
    assert (res.compute_efficiency, res.memory_efficiency, res.kernel_launch_s) == (
        0.7,
        0.75,
        4e-6,
    )
    assert res.attention_efficiency == 0.7


def test_quantisation_scope_decides_which_weights_are_small():
    # DeepSeek-V3 ships fp8 linear layers; gpt-oss only mxfp4 experts.
    ds = resolve_params(_with(deepseek_v3(), quant_scope="linear"), h100(), CostParams())
    assert (ds.weight_dtype, ds.expert_dtype, ds.act_dtype) == ("fp8", "fp8", "bf16")
    oss = resolve_params(_with(gpt_oss_20b(), quant_scope="experts"), h100(), CostParams())
    assert (oss.weight_dtype, oss.expert_dtype) == ("bf16", "mxfp4")
    forced = resolve_params(llama_3_1_8b(), h100(), CostParams(weight_dtype="fp8"))
    assert (forced.weight_dtype, forced.expert_dtype) == ("fp8", "fp8")


def _with(model, **fields):
    from dataclasses import replace

    return replace(model, **fields)
