"""A pinned KV cache (``scheduler.kv_cache_tokens``): the engine's logged size, not the plan's."""

import json
import subprocess
import sys

import numpy as np
import pytest

from servesim.cost.memory import GiB, pin_kv_cache, plan_memory
from servesim.cost.params import Parallelism
from servesim.errors import ServesimError
from servesim.fleet import build_fleet
from servesim.hardware import load_hardware
from servesim.model import load_model
from servesim.run import simulate
from servesim.scenario import build_scenario
from servesim.sweep.plan import parse_plan

SMALL = {"workload": {"input_len": 500, "output_len": 100, "num_requests": 40}}


def fleet_of(data):
    return build_fleet(build_scenario(data), np.random.default_rng(0))


def test_the_pinned_size_is_the_cache_in_whole_blocks():
    fleet = fleet_of({**SMALL, "scheduler": {"kv_cache_tokens": 20_007}})
    memory = fleet.groups[0].memory
    assert memory.kv_pinned
    assert memory.num_kv_blocks == 1_250 and fleet.kv_tokens == 20_000  # 20,007 // 16 blocks
    assert memory.kv_cache_bytes == 20_000 * memory.kv_bytes_per_token
    assert fleet.instances[0].kv.num_free_blocks == 1_250
    # Unpinned, the same scenario's plan derives a far larger cache from the memory left.
    plan = fleet_of(SMALL).groups[0].memory
    assert not plan.kv_pinned and plan.kv_capacity_tokens > 400_000


def test_pinning_the_plans_own_size_changes_nothing():
    base = simulate(build_scenario(SMALL))
    tokens = base.memory.kv_capacity_tokens
    pinned = simulate(build_scenario({**SMALL, "scheduler": {"kv_cache_tokens": tokens}}))
    assert pinned.memory.kv_pinned and pinned.memory.num_kv_blocks == base.memory.num_kv_blocks
    for key in ("duration", "mean_ttft_ms", "mean_tpot_ms", "num_steps"):
        assert pinned.summary[key] == base.summary[key], key


def test_each_attention_dp_rank_holds_the_pinned_size():
    model, hw = load_model("qwen3-30b-a3b"), load_hardware("H100")
    par = Parallelism(tp=1, dp=2)
    plan = plan_memory(model, hw, par, kv_cache_tokens=32_000)
    assert plan.num_kv_blocks == 2 * 2_000 and plan.kv_capacity_tokens == 64_000
    assert plan.kv_cache_bytes == 32_000 * plan.kv_bytes_per_token  # per GPU


def test_a_pin_can_go_past_the_plans_reserves_but_not_past_the_memory():
    # GPT-OSS-120B on one H100: the plan keeps ~3.7 GiB for the KV cache; an engine that
    # reserves less logs more, which a pin may say, up to what the weights leave of the HBM.
    model, hw = load_model("openai/gpt-oss-120b"), load_hardware("H100")
    plan = plan_memory(model, hw)
    room = hw.hbm_bytes - plan.weights_bytes_per_gpu
    most = int(room // (16 * plan.kv_bytes_per_token)) * 16
    assert most > plan.kv_capacity_tokens
    assert pin_kv_cache(plan, most, hw).kv_capacity_tokens == most
    with pytest.raises(ServesimError) as err:
        pin_kv_cache(plan, most + 16, hw)
    assert err.value.field == "scheduler.kv_cache_tokens"
    assert f"pin at most {most:,} tokens" in str(err.value)
    with pytest.raises(ServesimError, match="less than one KV block of 16"):
        pin_kv_cache(plan, 15, hw)


def test_a_pinned_cache_is_not_flagged_as_only_as_sure_as_the_memory_plan():
    starved = {
        "model": "openai/gpt-oss-120b",
        "max_model_len": 32768,
        "workload": {"input_len": 2000, "output_len": 50, "num_requests": 120,
                     "arrival": {"kind": "burst"}},
    }  # fmt: skip
    assert "kv_memory_sensitivity" in simulate(build_scenario(starved)).summary
    pinned = simulate(build_scenario({**starved, "scheduler": {"kv_cache_tokens": 54_000}}))
    assert pinned.summary["kv_cache_peak_usage"] >= 0.95
    assert "kv_memory_sensitivity" not in pinned.summary


def test_a_draft_model_leaves_a_pinned_size_alone():
    data = {**SMALL, "speculative": {"method": "draft:llama-3.2-1b"}}
    assert fleet_of(data).kv_tokens < fleet_of(SMALL).kv_tokens  # the plan makes room
    pinned = fleet_of({**data, "scheduler": {"kv_cache_tokens": 16_000}})
    assert pinned.kv_tokens == 16_000  # the engine's logged size already counts the drafter


def test_the_cli_pins_it_and_rejects_a_bad_pin():
    done = subprocess.run(
        [sys.executable, "-m", "servesim", "simulate", "--kv-cache-tokens", "16000",
         "--num-requests", "20", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    memory = json.loads(done.stdout)["memory"]
    assert memory["kv_capacity_tokens"] == 16_000 and memory["kv_pinned"] is True
    bad = subprocess.run(
        [sys.executable, "-m", "servesim", "simulate", "--kv-cache-tokens", "10000000",
         "--num-requests", "20"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "scheduler.kv_cache_tokens" in bad.stderr and "pin at most" in bad.stderr
    assert f"{10_000_000 * 128 * 1024 / GiB:.1f} GiB" in bad.stderr  # 128 KiB a token (8B)


def test_a_plan_refuses_a_pinned_cache():
    data = {
        "model": "meta-llama/Llama-3.1-8B",
        "workload": {"preset": "conversation", "num_requests": 50},
        "rate": 5,
        "slo": {"ttft_ms": 500},
        "hardware": ["H100"],
        "max_gpus": 1,
        "base": {"scheduler": {"kv_cache_tokens": 10_000}},
    }
    with pytest.raises(ServesimError) as err:
        parse_plan(data)  # (refused as the plan is read, before any deployment is sized)
    assert err.value.field == "scheduler.kv_cache_tokens"


def test_weights_that_fill_the_gpu_are_the_models_error_whatever_is_pinned():
    """Mixtral-8x7B's 87 GiB of bf16 weights on one H100: the fix is more GPUs, not a smaller
    pin (the pin's error said "pin at most 0 tokens")."""
    spec = {"model": "mistralai/Mixtral-8x7B-v0.1", "hardware": "H100", "tp": 1,
            "scheduler": {"kv_cache_tokens": 9000}, "workload": {"num_requests": 3}}  # fmt: skip
    with pytest.raises(ServesimError) as err:
        simulate(build_scenario(spec))
    assert err.value.field == "model" and "--tp 2" in str(err.value)
    memory = fleet_of({**spec, "tp": 2}).groups[0].memory
    assert memory.kv_pinned and memory.kv_capacity_tokens == 9000 // 16 * 16  # (whole blocks)
