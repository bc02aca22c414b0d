"""Reading an engine's start-up log (``--engine-log``): the KV cache it printed, its weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.calibrate.engine_log import V0_BLOCK_SIZE, read_engine_log
from servesim.errors import ServesimError

ROOT = Path(__file__).resolve().parents[1]
LOGS = json.loads((ROOT / "bench/fidelity/memory_logs.json").read_text())


def write(tmp_path: Path, lines: list[str], name: str = "server.log") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "case",
    [c for c in LOGS if c["logged"]["kv_cache_tokens"] is not None],
    ids=lambda c: c["id"],
)
def test_the_published_logs_read_as_they_print(case, tmp_path):
    # The quoted lines of bench/fidelity/memory_logs.json (vLLM and SGLang, real logs).
    quoted = [line for line in case["log_lines"] if not line.startswith("(the page's summary)")]
    if not any("tokens" in line for line in quoted):
        pytest.skip("the KV size of this case is a summary, not a quoted log line")
    facts = read_engine_log(write(tmp_path, quoted))
    assert facts.kv_cache_tokens == case["logged"]["kv_cache_tokens"]
    assert facts.engine == ("vllm" if case["engine"] == "vllm" else "sglang")
    if case["logged"]["weights_gib"] is not None:
        assert facts.weights_gib == case["logged"]["weights_gib"]
    if case["engine"] == "vllm":
        assert facts.kv_cache_gib == case["logged"]["kv_cache_gib"]
        assert facts.version == case["engine_version"]


def test_vllm_v0_blocks_times_the_block_size(tmp_path):
    v0 = [
        "INFO 07-24 14:07:31 model_runner.py:692] Loading model weights took 14.9888 GB",
        "INFO 07-24 14:07:40 gpu_executor.py:102] # GPU blocks: 27310, # CPU blocks: 2048",
    ]
    facts = read_engine_log(write(tmp_path, v0))
    assert (facts.engine, facts.kv_cache_tokens) == ("vllm", 27310 * V0_BLOCK_SIZE)
    assert facts.weights_gib == 14.9888
    sized = [*v0, "Initializing an LLM engine (v0.5.4) with config: ..., block_size=32, ..."]
    facts = read_engine_log(write(tmp_path, sized, "b.log"))
    assert facts.kv_cache_tokens == 27310 * 32 and facts.version == "0.5.4"


def test_tensorrt_llm_and_several_ranks(tmp_path):
    line = "[TensorRT-LLM][INFO] Allocated 52.08 GiB for max tokens in paged KV cache (2730752)."
    trt = ["[TensorRT-LLM] TensorRT-LLM version: 0.16.0", line, line]  # (one line a rank)
    facts = read_engine_log(write(tmp_path, trt))
    assert (facts.engine, facts.kv_cache_tokens, facts.version) == ("trtllm", 2730752, "0.16.0")


def test_a_log_without_the_size_or_of_a_failed_start_is_one_clear_error(tmp_path):
    with pytest.raises(ServesimError) as err:
        read_engine_log(write(tmp_path, ["INFO starting", "INFO ready"]))
    assert err.value.field == "--engine-log" and "no KV cache size" in str(err.value)
    with pytest.raises(ServesimError) as err:
        read_engine_log(write(tmp_path, ["GPU KV cache size: 0 tokens"], "zero.log"))
    assert "could not start" in str(err.value)
    with pytest.raises(ServesimError) as err:
        read_engine_log(tmp_path / "missing.log")
    assert err.value.field == "--engine-log" and "does not exist" in str(err.value)


def test_the_cli_pins_the_logged_size_and_compares_its_own_plan(tmp_path):
    case = LOGS[0]  # vLLM 0.10.1.1, Qwen2-7B on an A100 80GB at utilisation 0.5
    log = write(tmp_path, case["log_lines"])
    args = [sys.executable, "-m", "servesim", "simulate", "-m", case["model"], "--hardware",
            case["gpu"], "--engine-version", case["engine_version"], "--gpu-memory-utilization",
            str(case["gpu_memory_utilization"]), "--max-model-len", str(case["max_model_len"]),
            "--num-requests", "20"]  # fmt: skip
    done = subprocess.run([*args, "--engine-log", str(log), "--json"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    memory = json.loads(done.stdout)["memory"]
    assert memory["kv_pinned"] is True and memory["kv_capacity_tokens"] == 464_848
    note = " ".join(done.stderr.split())  # (the console wraps it)
    assert "engine log: vllm 0.10.1.1, KV cache 464,848 tokens (pinned" in note
    assert "servesim's own plan: 465,440, +0.1%" in note
    both = subprocess.run([*args, "--engine-log", str(log), "--kv-cache-tokens", "1000"],
                          capture_output=True, text=True)  # fmt: skip
    assert both.returncode == 2 and "Traceback" not in both.stderr
    assert "--engine-log" in both.stderr and "both pin" in both.stderr


def test_serve_pins_the_logged_cache_too(tmp_path):
    from servesim.cli.serve_cmd import scenario_from_options

    log = write(tmp_path, ["(EngineCore_0 pid=1) INFO GPU KV cache size: 200,000 tokens"])
    scenario = scenario_from_options({"engine_log": log})
    assert scenario.scheduler.kv_cache_tokens == 200_000
