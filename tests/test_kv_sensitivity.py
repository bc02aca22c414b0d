"""A run bound by a small KV cache says its prediction is only as sure as its memory plan."""

import json
import subprocess
import sys

import pytest

from servesim.cost.memory import GiB
from servesim.run import simulate
from servesim.scenario import build_scenario

# GPT-OSS-120B on one H100: ~64 GiB of weights leave ~3.7 GiB of KV cache.
STARVED = {
    "model": "openai/gpt-oss-120b",
    "hardware": "H100",
    "max_model_len": 32768,
    "workload": {"input_len": 2000, "output_len": 50, "num_requests": 120,
                 "arrival": {"kind": "burst"}},
}  # fmt: skip


def test_a_kv_bound_run_on_a_small_cache_reports_its_sensitivity():
    result = simulate(build_scenario(STARVED))
    s = result.summary
    assert s["kv_cache_peak_usage"] >= 0.95
    got = s["kv_memory_sensitivity"]
    plan = result.memory
    assert got["kv_cache_gib_per_gpu"] == pytest.approx(plan.kv_cache_bytes / GiB)
    assert got["capacity_change_per_gib"] == pytest.approx(GiB / plan.kv_cache_bytes)
    assert 0.15 < got["capacity_change_per_gib"] < 0.5
    parts = ("weights", "activation_reserve", "runtime_reserve", "kv_cache")
    total = sum(got[f"{p}_gib_per_gpu"] for p in parts)
    assert total == pytest.approx(got["usable_gib_per_gpu"], rel=0.02)


def test_runs_with_room_to_spare_or_a_large_cache_say_nothing():
    light = {**STARVED, "workload": {**STARVED["workload"], "num_requests": 2}}
    assert "kv_memory_sensitivity" not in simulate(build_scenario(light)).summary
    # Llama-3.1-8B on an H100 fills its ~53 GiB cache in this burst, but a GiB is 2% of it.
    big = {"workload": {"input_len": 4000, "output_len": 200, "num_requests": 600,
                        "arrival": {"kind": "burst"}}}  # fmt: skip
    s = simulate(build_scenario(big)).summary
    assert s["kv_cache_peak_usage"] >= 0.95 and "kv_memory_sensitivity" not in s


def test_the_cli_warns_once_on_stderr(tmp_path):
    path = tmp_path / "starved.json"
    path.write_text(json.dumps(STARVED))
    done = subprocess.run(
        [sys.executable, "-m", "servesim", "simulate", "-c", str(path), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout)["kv_memory_sensitivity"]["capacity_change_per_gib"] > 0.15
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "KV cache bounds this run" in warnings[0]
