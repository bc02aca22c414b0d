"""``bench/mla_accuracy.py`` without AIConfigurator: its row selection and its block sum."""

from __future__ import annotations

import numpy as np
import pytest
from bench_scripts import load_bench_script

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.hardware import load_hardware
from servesim.model import load_model


@pytest.fixture(scope="module")
def script():
    return load_bench_script("mla_accuracy.py")


def test_measured_rows_key_prompts_by_length_and_decodes_by_context(script):
    cols = {
        "num_heads": np.array([16, 16, 16, 16, 32]),
        "gemm_type": np.array(["fp8_block", "fp8_block", "fp8_block", "bfloat16", "fp8_block"]),
        "kv_cache_dtype": np.array(["bfloat16"] * 5),
        "batch_size": np.array([4, 4, 4, 4, 4]),
        "isl": np.array([1, 1, 1, 1, 1]),
        "step": np.array([1024, 1024, 1024, 1024, 1024]),
        "latency": np.array([0.1, 0.3, 0.2, 9.0, 9.0]),  # ms
    }
    decode = script.measured_rows(cols, 16, decode=True)
    # The median of the three repeats at 16 heads with FP8-block GEMMs, in seconds; the
    # bf16-GEMM row and the 32-head row are left out.
    assert decode == {(4, 1024): pytest.approx(0.2e-3)}
    assert script.measured_rows(cols, 16, decode=False) == {(4, 1): pytest.approx(0.2e-3)}


def test_the_block_sum_is_the_mla_operators_of_one_layer(script):
    spec = load_model(script.MODEL)
    params = CostParams(kernel_tables=True, custom_allreduce=True, mla_fused_down_proj=True)
    cost = build_step_cost(spec, load_hardware("H200"), Parallelism(tp=8), params)
    L = spec.num_layers
    prompts, none = np.full(2, 1024), np.zeros(2, dtype=np.int64)
    ops = cost.operator_breakdown(prompts, none)
    by_name = {o.name: o.seconds for o in ops}
    block = script.module_seconds(cost, L, script.PREFILL_OPS, prompts, none)
    want = sum(by_name[n] for n in ("qkv_a_proj", "q_b_proj", "kv_b_proj", "attention", "o_proj",
                                    "q_a_layernorm", "kv_a_layernorm", "rope"))  # fmt: skip
    assert block == pytest.approx(want / L)
    # Neither the MoE nor the collectives are in the block; a prompt step has no absorbed path.
    assert block < cost.step_seconds(prompts, none) / L / 2
    assert by_name["attention_absorbed"] == 0.0
    decode = script.module_seconds(cost, L, script.DECODE_OPS, np.ones(2, int), prompts)
    assert 0.0 < decode < block


def test_the_catalogs_block_scale_is_the_scripts(script):
    # catalog/kernels/mla_block.json is the script's output; with aiconfigurator-core at hand,
    # one entry is recomputed (rerun `bench/mla_accuracy.py --write` when MLA pricing changes).
    import json

    from servesim.cost import aic_tables as A
    from servesim.cost import kernels as K

    stored = json.loads(K.MLA_BLOCK_FILE.read_text())["backends"]["vllm"]["h200"]
    assert stored["scale"] == pytest.approx(stored["geometric_mean"]) and stored["scale"] > 1.0
    root = A.data_root()
    if root is None:
        pytest.skip("aiconfigurator-core (servesim[kernels]) not installed")
    got = script.phase_ratios("h200", "vllm", A.SYSTEMS["h200"], root)
    assert got["scale"] == pytest.approx(stored["scale"], abs=1e-4)
    assert stored["rows"] == [len(got["prefill"]), len(got["decode"])]
