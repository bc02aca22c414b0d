"""Quantisation in the cost model: which weight and KV dtypes a GPU can run, and what they buy."""

from __future__ import annotations

import numpy as np
import pytest
from cost_factories import decode, deepseek_v3, h100, llama_3_1_8b

from servesim.cost import CostParams, Parallelism, build_step_cost, plan_memory
from servesim.errors import ServesimError
from servesim.hardware import load_hardware


def test_a_weight_dtype_the_gpu_cannot_run_is_refused():
    a100, m = load_hardware("A100"), llama_3_1_8b()
    with pytest.raises(ServesimError) as err:
        build_step_cost(m, a100, params=CostParams(weight_dtype="fp8"))
    assert err.value.field == "weight_dtype"
    assert "A100-80GB has no fp8 tensor cores" in str(err.value)
    assert "bf16" in err.value.fix and "int8" in err.value.fix and "int4" in err.value.fix
    with pytest.raises(ServesimError, match="no fp4 tensor cores"):
        plan_memory(m, load_hardware("H100"), params=CostParams(weight_dtype="fp4"))
    # int4 is weight-only and runs anywhere; int8 has A100 tensor cores; fp4 on Blackwell.
    build_step_cost(m, a100, params=CostParams(weight_dtype="int4"))
    build_step_cost(m, a100, params=CostParams(weight_dtype="int8"))
    build_step_cost(m, load_hardware("B200"), params=CostParams(weight_dtype="fp4"))
    # A checkpoint's own fp8 runs weight-only where the GPU has no fp8 (vLLM's Marlin path).
    build_step_cost(deepseek_v3(), a100, Parallelism(tp=8))


def test_kv_dtype_must_be_a_cache_format_and_fp8_doubles_capacity():
    with pytest.raises(ServesimError) as err:
        build_step_cost(llama_3_1_8b(), h100(), params=CostParams(kv_dtype="int4"))
    assert err.value.field == "kv_dtype"
    a100 = load_hardware("A100")
    bf16 = plan_memory(llama_3_1_8b(), a100)
    fp8 = plan_memory(llama_3_1_8b(), a100, params=CostParams(kv_dtype="fp8"))  # storage only
    assert fp8.kv_bytes_per_token == bf16.kv_bytes_per_token / 2 == 65536
    assert fp8.kv_capacity_tokens == pytest.approx(2 * bf16.kv_capacity_tokens, rel=0.001)


def test_int4_weights_speed_up_small_batch_decode_only():
    m = llama_3_1_8b()
    bf16 = build_step_cost(m, h100())
    int4 = build_step_cost(m, h100(), params=CostParams(weight_dtype="int4"))
    assert int4.step_seconds(*decode(1)) < 0.5 * bf16.step_seconds(*decode(1))
    prefill = np.array([4096]), np.array([0])
    assert int4.step_seconds(*prefill) == pytest.approx(bf16.step_seconds(*prefill), rel=0.01)


def test_int8_gemms_stand_on_the_fp8_rows_where_the_gpu_has_them():
    # No table times INT8 GEMMs; vLLM runs INT8 and FP8 W8A8 through the same CUTLASS kernels
    # and the peaks match on Hopper: the same bytes, the same rows (the fitted rung).
    m, rows = llama_3_1_8b(), (np.full(8, 1), np.full(8, 1000))

    def step(dtype: str, gpu: str = "H100"):
        params = CostParams(kernel_tables=True, weight_dtype=dtype)
        cost = build_step_cost(m, load_hardware(gpu), params=params)
        f = cost.features(*rows)
        return float(cost.seconds_from_features(f)), cost.rung_seconds_from_features(f)

    (int8, rungs), (fp8, _) = step("int8"), step("fp8")
    assert int8 == pytest.approx(fp8, rel=1e-9)
    assert rungs["fitted"][0] > rungs["measured"][0]  # (the attention stays measured)
    # Without FP8 rows (A100: INT8 tensor cores, no FP8) INT8 stays on the roofline.
    (_, a100), (_, a100_bf16) = step("int8", "A100"), step("bf16", "A100")
    assert a100["roofline"][0] > 0.0 and a100["fitted"][0] == a100_bf16["fitted"][0]
