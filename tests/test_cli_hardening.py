"""Inputs a demanding user found wanting (a bug hunt through the installed console script):
each is refused in one line with exit code 2 naming what to change, or, where the input is
fine, the output says what was done with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SERVESIM = str(Path(sys.executable).parent / "servesim")
ROOT = Path(__file__).resolve().parents[1]


def servesim(*args, cwd=None):
    return subprocess.run(
        [SERVESIM, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


def test_infinite_cpu_kv_cache_and_hardware_figures_are_refused(tmp_path: Path):
    line = one_line_error(servesim("simulate", "-n", "5", "--kv-offload",
                                   "--cpu-kv-cache-gib", "inf"))  # fmt: skip
    assert "cpu_kv_cache_gib: must be a finite number (got inf)" in line
    hw = servesim("hardware", "H100", "--yaml").stdout
    path = tmp_path / "hw.yaml"
    path.write_text(hw.replace("name: H100", "name: MyH100").replace(
        "hbm_bandwidth: ", "hbm_bandwidth: .inf #"))  # fmt: skip
    line = one_line_error(servesim("simulate", "-n", "5", "-g", path))
    assert "hbm_bandwidth must be a finite number (got inf)" in line
    assert servesim("hardware", path).returncode == 2


def test_a_rate_too_low_for_the_clock_is_refused_and_a_burst_is_fine():
    line = one_line_error(servesim("simulate", "-n", "30", "--rate", "1e-300"))
    assert "workload.arrival: rate 1e-300 requests/s spreads 30 requests" in line
    assert "use a rate of at least 3e-09 requests/s" in line
    assert servesim("simulate", "-n", "5", "--rate", "inf", "--json").returncode == 0


def test_an_unchunked_budget_below_the_context_window_is_refused():
    line = one_line_error(servesim("simulate", "-n", "5", "--max-num-batched-tokens", "10",
                                   "--no-chunked-prefill"))  # fmt: skip
    assert "max_num_batched_tokens: is 10, below the 131,072-token context window" in line
    # Without a budget given, one prompt of the whole window fits a step (vLLM's default).
    p = servesim("simulate", "-n", "5", "--no-chunked-prefill", "--json")
    assert json.loads(p.stdout)["scenario"]["scheduler"]["max_num_batched_tokens"] == 131072
    fits = servesim("simulate", "-n", "5", "--no-chunked-prefill", "--max-model-len", "4096",
                    "--max-num-batched-tokens", "4096", "--json")  # fmt: skip
    assert fits.returncode == 0, fits.stderr


def test_a_key_given_twice_in_a_scenario_file_is_refused(tmp_path: Path):
    path = tmp_path / "dup.yaml"
    path.write_text("model: meta-llama/Llama-3.1-8B\nhardware: H100\nmodel: Qwen/Qwen3-8B\n")
    line = one_line_error(servesim("simulate", "--config", path, "-n", "5"))
    assert "the key 'model' is given twice at line 3" in line
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"model": "x",\n')
    assert "not valid JSON" in one_line_error(servesim("simulate", "--config", bad_json))


def test_messages_name_the_right_fix():
    line = one_line_error(servesim("estimate", "llama-3.1-8b", "-g", "h100", "--input-len",
                                   "100", "--output-len", "10", "--ep", "3"))  # fmt: skip
    assert "has no experts to spread (use --ep 1)" in line
    line = one_line_error(servesim("simulate", "-n", "5", "--input-len", "200000"))
    assert "(shorten the requests)" in line and "more GPUs" not in line
    assert "/tmp is not a file" in one_line_error(servesim("hardware", "/tmp"))
    line = one_line_error(servesim("simulate", "-n", "5", "--metric-percentiles", ""))
    assert "--metric-percentiles" in line
    line = one_line_error(servesim("flops", "llama-3.1-8b", "--input-len", "9" * 20,
                                   "--output-len", "10"))  # fmt: skip
    assert "--input-len" in line
    p = servesim("flops", "llama-3.1-8b", "--input-len", "500000", "--output-len", "10")
    assert p.returncode == 0 and "exceed the model's context window" in p.stderr


def test_compare_notes_a_model_other_than_the_benchmarks():
    measured = ROOT / "examples" / "measured" / "vllm_bench_serve.json"
    p = servesim("compare", measured, "-g", "h100", "-m", "qwen3-8b", "--json")
    assert p.returncode == 0, p.stderr
    notes = json.loads(p.stdout)["notes"]
    assert any("the benchmark ran 'meta-llama/Llama-3.1-8B'" in n for n in notes), notes
    same = json.loads(servesim("compare", measured, "-g", "h100", "--json").stdout)["notes"]
    assert not any("the benchmark ran" in n for n in same)


def test_a_sweep_dry_run_checks_each_deployment_and_an_all_failed_sweep_is_exit_2(
    tmp_path: Path,
):
    base = ROOT / "examples" / "sweeps" / "llama8b_h100.yaml"
    sweep = tmp_path / "sw.yaml"
    sweep.write_text(f"name: t\nbase: {base}\ngrid:\n  tp: [1, 3]\n")
    p = servesim("sweep", sweep, "--dry-run")
    line = one_line_error(p)
    assert "1 of 2 scenarios cannot run (scenario 1: tp=3 does not divide" in line
    assert "invalid" in p.stdout
    sweep.write_text(f"name: t\nbase: {base}\ngrid:\n  tp: [3, 5]\n")
    p = servesim("sweep", sweep, "-n", "5", "-o", tmp_path / "out", "--workers", "1")
    assert p.returncode == 2 and "all 2 scenarios failed" in p.stderr.splitlines()[-1]
    assert (tmp_path / "out" / "results.csv").is_file()  # (the table of errors is written)


@pytest.mark.parametrize("text", ["0", "-1", "nan", "abc"])
def test_the_progress_interval_falls_back_on_a_bad_value(monkeypatch, text):
    from servesim.cli.progress import LINE_EVERY_S, line_every_s

    monkeypatch.setenv("SERVESIM_PROGRESS_EVERY_S", text)
    assert line_every_s() == (0.0 if text == "0" else LINE_EVERY_S)
