"""`servesim simulate` through the installed console script."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SERVESIM = str(Path(sys.executable).parent / "servesim")
TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


def run(*args, cwd=None):
    return subprocess.run([SERVESIM, "simulate", *args], capture_output=True, text=True, cwd=cwd)


def test_default_scenario_prints_a_summary_table():
    p = run()
    assert p.returncode == 0, p.stderr
    for text in (
        "Llama-3.1-8B",
        "H100",
        "TTFT",
        "TPOT",
        "ITL",
        "E2EL",
        "completed requests",
        "1,000",
    ):
        assert text in p.stdout


def test_json_summary_uses_vllm_metric_names():
    p = run("-n", "50", "--json", "--slo-ttft-ms", "500", "--slo-tpot-ms", "50")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    for key in (
        "completed",
        "duration",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "p90_tpot_ms",
        "mean_itl_ms",
        "p99_itl_ms",
        "median_e2el_ms",
        "goodput",
        "num_steps",
        "num_preemptions",
        "kv_cache_peak_usage",
        "sim_wall_s",
    ):
        assert key in s, key
    assert s["completed"] == 50
    assert s["scenario"]["slo"]["ttft_ms"] == 500
    assert 0 <= s["goodput"] <= s["request_throughput"] + 1e-9


def test_same_seed_same_output_and_seed_changes_it():
    a = json.loads(run("-n", "40", "--json", "--seed", "7").stdout)
    b = json.loads(run("-n", "40", "--json", "--seed", "7").stdout)
    c = json.loads(run("-n", "40", "--json", "--seed", "8").stdout)
    for key in ("median_ttft_ms", "p99_itl_ms", "duration"):
        assert a[key] == b[key]
    assert a["duration"] != c["duration"]


def test_out_dir_has_summary_requests_and_steps(tmp_path):
    out = tmp_path / "run"
    p = run(
        "-n", "30", "--input-len", "256", "--output-len", "16", "--rate", "5", "--out", str(out)
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = list(csv.DictReader((out / "requests.csv").open()))
    assert len(rows) == summary["completed"] == 30
    assert {r["output_tokens"] for r in rows} == {"16"}
    steps = list(csv.DictReader((out / "steps.csv").open()))
    assert sum(int(s["num_steps"]) for s in steps) == summary["num_steps"]


def test_the_scenario_echoed_in_summary_json_reruns_the_same_scenario(tmp_path):
    # rate: inf is JSON-unsafe; the echo spells it "inf" so the block is a working config.
    out = tmp_path / "run"
    p = run("-n", "4", "--input-len", "64", "--output-len", "8", "--rate", "inf", "--out", str(out))
    assert p.returncode == 0, p.stderr
    echoed = json.loads((out / "summary.json").read_text())["scenario"]
    config = tmp_path / "again.json"
    config.write_text(json.dumps(echoed))
    again = json.loads(run("--config", str(config), "--json").stdout)
    first = json.loads((out / "summary.json").read_text())
    assert again["scenario"] == echoed
    assert again["mean_e2el_ms"] == first["mean_e2el_ms"]


def test_fixed_lengths_single_request_ttft_equals_the_prefill_estimate():
    s = json.loads(run("-n", "1", "--input-len", "1024", "--output-len", "2", "--json").stdout)
    from dataclasses import replace

    import numpy as np

    from servesim.cost import CostParams, Parallelism, build_step_cost
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    # simulate prices operators from the measured kernel tables (scenario kernel_tables); a
    # 1,024-token step is above vLLM V1's largest CUDA graph (512 tokens): it runs eagerly.
    # (vLLM's own decode-attention kernels: kernel_backend.)
    model, hw = load_model("llama-3.1-8b"), load_hardware("H100")
    params = CostParams(kernel_tables=True, kernel_backend="vllm")
    cost = build_step_cost(model, hw, Parallelism(), params)
    eager = build_step_cost(model, hw, Parallelism(), replace(params, cuda_graphs=False))
    prefill = eager.step_seconds(np.array([1024]), np.array([0]))
    decode = cost.step_seconds(np.array([1]), np.array([1024]))
    # The API server's time (vllm profile): before scheduling, and after the token's step.
    from servesim.engines import PROFILES

    v = PROFILES["vllm"]
    api = v.api_request_s + 1024 * v.api_per_input_token_s + v.api_stream_s
    assert s["mean_ttft_ms"] == pytest.approx((prefill + api) * 1000, rel=1e-9)
    assert s["mean_api_ttft_ms"] == pytest.approx(api * 1000, rel=1e-9)
    assert s["mean_e2el_ms"] == pytest.approx((prefill + decode + api) * 1000, rel=1e-9)
    # Every token is delayed alike: the gap between them is the decode step alone.
    assert s["mean_itl_ms"] == pytest.approx(decode * 1000, rel=1e-9)


def test_sharegpt_workload_through_the_cli():
    p = run("--workload", "sharegpt", "-n", "1000", "--rate", "inf", "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["scenario"]["workload"]["preset"] == "sharegpt"
    assert s["completed"] == 1000
    # vLLM's 1,000-prompt ShareGPT sample has 215,196 input tokens (Llama 3 tokenizer)
    assert s["total_input_tokens"] == pytest.approx(215_196, rel=0.10)
    assert "sharegpt" in run("--help").stdout


def test_fp16_weights_from_the_flag_and_from_a_scenario_file(tmp_path):
    flag = run("-n", "20", "--weight-dtype", "fp16", "--json")
    assert flag.returncode == 0, flag.stderr
    assert json.loads(flag.stdout)["scenario"]["weight_dtype"] == "fp16"
    config = tmp_path / "fp16.yaml"
    config.write_text(
        "hardware: A100\nweight_dtype: fp16\nworkload: {preset: code, num_requests: 20}\n"
    )
    from_file = run("--config", str(config), "--json")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["scenario"]["weight_dtype"] == "fp16"
    help_text = run("--help").stdout
    assert "fp16" in help_text


def test_vllm_before_0_14_runs_host_work_between_steps_unless_async_scheduling():
    sync = run("-n", "40", "--engine-version", "0.11.0")
    assert sync.returncode == 0, sync.stderr
    assert "host work between steps" in sync.stdout
    flagged = run("-n", "40", "--engine-version", "0.11.0", "--async-scheduling", "--json")
    assert flagged.returncode == 0, flagged.stderr
    assert json.loads(flagged.stdout)["scenario"]["async_scheduling"] is True
    slow = json.loads(run("-n", "40", "--engine-version", "0.11.0", "--json").stdout)
    assert slow["mean_tpot_ms"] > json.loads(flagged.stdout)["mean_tpot_ms"]
    assert "host work between steps" not in run("-n", "40").stdout


def test_sglang_before_0_4_6_runs_flashinfer_attention_unless_told_fa3():
    base = ("-n", "40", "-g", "H200", "--engine", "sglang-0.4", "--engine-version", "0.4.0")
    default = run(*base)
    assert default.returncode == 0, default.stderr
    assert "FlashInfer attention" in default.stdout
    fa3 = json.loads(run(*base, "--attention-backend", "fa3", "--json").stdout)
    assert fa3["scenario"]["attention_backend"] == "fa3"
    assert json.loads(run(*base, "--json").stdout)["mean_tpot_ms"] > fa3["mean_tpot_ms"]
    assert "FlashInfer attention" not in run(*base, "--attention-backend", "fa3").stdout
    bad = run(*base, "--attention-backend", "xformers")
    assert bad.returncode == 2
    assert "attention_backend" in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
    assert "CUDA-core decode" not in default.stdout  # (Llama-3.1-8B: 4 query heads per KV head)
    grouped = run("-n", "8", "-g", "H200", "-m", "llama-3.1-70b", "--tp", "4", *base[4:])
    assert grouped.returncode == 0, grouped.stderr
    assert "CUDA-core decode of 8" in grouped.stdout  # (the table may wrap the rest)
    gpt_oss = ("-n", "8", "-m", "gpt-oss-120b", "--engine-version", "0.11.0")
    assert "Triton attention" in run(*gpt_oss, "-g", "A100-80GB").stdout
    assert "Triton attention" not in run(*gpt_oss, "-g", "H100").stdout


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces not present")
def test_replay_of_the_azure_trace(tmp_path):
    p = run("--replay", str(TRACES / "azure_llm_2023_conv.csv"), "-n", "200", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["completed"] == 200


def test_replay_time_window_and_rate_scale(tmp_path):
    trace = tmp_path / "t.csv"
    rows = "".join(f"{t}.0,100,4\n" for t in range(100))  # one request per second for 100 s
    trace.write_text("timestamp,input_tokens,output_tokens\n" + rows)
    p = run("--replay", str(trace), "--time-window", "20:60", "--rate-scale", "2", "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["completed"] == 40  # requests at t = 20..59 s
    assert s["scenario"]["workload"]["time_window"] == [20.0, 60.0]
    assert s["duration"] == pytest.approx(39 / 2, abs=0.5)  # 40 s of trace replayed 2x faster


def test_config_file_and_flag_override(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        "model: qwen2.5-0.5b\nhardware: L4\n"
        "scheduler: {policy: sarathi, max_num_batched_tokens: 512}\n"
        "workload: {num_requests: 20, input_len: 300, output_len: 8, arrival: {kind: burst}}\n"
    )
    p = run("--config", str(cfg), "--json", "--scheduler", "orca")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["scenario"]["hardware"] == "L4"
    assert s["scenario"]["scheduler"]["policy"] == "orca"
    assert s["scenario"]["scheduler"]["max_num_batched_tokens"] == 512
    assert s["completed"] == 20


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "llama-9b"], "unknown model"),
        (["--hardware", "H999"], "unknown GPU"),
        (["--scheduler", "fifo"], "scheduler.policy: 'fifo' is not one of vllm, sarathi"),
        (["--rate", "0"], "--rate"),
        (["--rate", "-2"], "--rate"),
        (["--block-size", "0"], "block_size"),
        (["--replay", "/nonexistent/trace.csv"], "does not exist"),
        (["--config", "/nonexistent/s.yaml"], "does not exist"),
        (["--model", "llama-3.1-405b"], "--tp"),
        (["--tp", "3"], "does not divide"),
        (["--input-len", "-5", "--output-len", "3"], "input_len"),
        (
            ["--input-len", "200000", "--output-len", "8", "-n", "2", "--on-oversized", "error"],
            "context window",
        ),
        (["--input-len", "200000", "--output-len", "8", "-n", "2"], "skipped"),
        (["--time-window", "30:10"], "--time-window"),
        (["--seed", "-1"], "seed"),
        (["--concurrency", "2", "--rate", "5"], "exclude each other"),
        (["--burstiness", "0.5"], "--burstiness needs --rate"),
        (["--prefill-tp", "2"], "prefill_tp: applies only with disaggregate"),
        (["--cpu-kv-cache-gib", "8"], "cpu_kv_cache_gib: applies only with kv_offload"),
        (["--trace-format", "azure"], "trace_format applies only with trace"),
        (["--burstiness", "0.5", "--rate", "inf"], "--rate inf has none"),
        (["--input-len", "abc", "--output-len", "3"], "'abc' is not a length"),
        (["--time-window", "10:20"], "time_window applies only with trace"),
        # Absurd counts: refused with the bound, not run for ever (issue 16).
        (["-n", "99999999999999999999"], "workload.num_requests: must be <= 10,000,000"),
        (["--concurrency", "99999999999999999999"], "concurrency: must be <= 10,000,000"),
        (["--replicas", "99999999999999999999"], "replicas: must be <= 10,000 (got"),
        (["--disaggregate", "99999999999999999999:1"], "more than 10,000 instances"),
        (["--max-num-seqs", "99999999999999999999"], "max_num_seqs: must be <= 10,000,000"),
        (["--input-len", "99999999999999999999", "--output-len", "3"], "<= 100,000,000"),
        (
            ["--engine", "vllm-v0", "--num-scheduler-steps", "99999999999999999999"],
            "num_scheduler_steps: must be <= 1024",
        ),
        (
            ["--max-model-len", "1000000"],
            "max_model_len: 1,000,000 tokens is longer than the 131,072-token context window",
        ),
        # typer/click's own checks: one line too, not a usage box.
        (["-n", "abc"], "error: --num-requests: 'abc' is not a valid int"),
        (["--bogus"], "No such option: --bogus"),
        (["--gpu-memory-utilization", "0.01"], "raise --gpu-memory-utilization to 0.25 or more"),
        (["--engine-version", "latest"], "engine_version: 'latest' is not a release number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    out = tmp_path / "out"
    p = (
        run(*args, "-n", "5", "--out", str(out))
        if "-n" not in args
        else run(*args, "--out", str(out))
    )
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert needle in lines[0]
    assert "Traceback" not in p.stderr
    assert not out.exists()  # nothing half-written


def test_unwritable_out_is_refused_before_the_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # A run of 10^6 requests would take minutes: the refusal must come before it.
    p = run("-n", "1000000", "--out", str(blocker / "run"))
    assert p.returncode == 2, p.stderr
    target = blocker / "run"
    expected = f"error: --out: cannot write {target}: {blocker} is a file"
    assert p.stderr.strip() == expected


def test_malformed_trace_row_names_the_row(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.0,12,-3\n"
    )
    p = run("--replay", str(trace))
    assert p.returncode == 2
    assert "row" in p.stderr and "-3" in p.stderr


def test_failed_run_leaves_an_existing_out_dir_untouched(tmp_path):
    out = tmp_path / "run"
    assert run("-n", "5", "--out", str(out)).returncode == 0
    before = (out / "summary.json").read_text()
    p = run("-n", "5", "--out", str(out), "--model", "nope-model")
    assert p.returncode == 2
    assert (out / "summary.json").read_text() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run"]


def test_every_registered_command_is_dispatched_to_its_module():
    import servesim.cli.commands  # noqa: F401
    from servesim.cli import COMMAND_MODULES
    from servesim.cli.app import app

    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    registered |= {g.name for g in app.registered_groups}
    assert registered == set(COMMAND_MODULES)
    for command, module in COMMAND_MODULES.items():
        callbacks = [
            c.callback
            for c in app.registered_commands
            if (c.name or c.callback.__name__) == command
        ]
        groups = [g for g in app.registered_groups if g.name == command]
        owner = callbacks[0].__module__ if callbacks else "servesim.cli.trace_cmds"
        assert owner == f"servesim.cli.{module}" or groups, command


def test_every_simulate_option_is_the_overlays_or_the_commands_own():
    """A new option must be read by the flags-to-scenario overlay or listed as the command's
    own (else `simulate` would accept it and silently ignore it)."""
    import inspect

    from servesim.cli.simulate_cmd import COMMAND_OPTIONS, simulate_command
    from servesim.scenario_overlay import OPTIONS

    options = set(inspect.signature(simulate_command).parameters)
    assert options - set(COMMAND_OPTIONS) == OPTIONS


def test_help_lists_every_command():
    p = subprocess.run([SERVESIM, "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for command in (
        "simulate",
        "models",
        "hardware",
        "flops",
        "estimate",
        "report",
        "trace",
        "calibrate",
        "compare",
        "analyze",
        "sweep",
        "capacity",
        "plan",
        "version",
    ):
        assert command in p.stdout, command


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("schedular: {policy: vllm}\n", "schedular: unknown field (did you mean scheduler?)"),
        ("instances: [{cont: 2}]\n", "instances.0.cont: unknown field (did you mean count?)"),
        ("slo: {zzz: 1}\n", "slo.zzz: unknown field (valid here: ttft_ms, tpot_ms, e2el_ms)"),
    ],
)
def test_unknown_config_field_suggests_the_close_one(tmp_path, yaml_text, expected):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml_text)
    p = run("--config", str(cfg))
    assert p.returncode == 2
    assert p.stderr.strip() == f"error: {cfg}: {expected}"


def test_a_trace_in_another_format_shows_the_columns_wanted_and_a_short_header(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "note": "x" * 500}) + "\n")
    p = run("--replay", str(trace), "--trace-format", "azure", "-n", "5")
    assert p.returncode == 2, p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("error: trace_format: t.jsonl has no column 'TIMESTAMP': the azure "
                           "format reads columns TIMESTAMP, ContextTokens, GeneratedTokens; "
                           """its header is '{"timestamp": 0,"note": "xx""")  # fmt: skip
    assert line.endswith("…' (it is JSON lines: use --trace-format jsonl or auto)")
    assert "x" * 100 not in line


def test_attention_data_parallel_ranks_from_the_command_line():
    p = run("--model", "deepseek-v3", "-g", "H200", "--tp", "1", "--dp", "8", "--engine",
            "sglang", "-n", "40", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["num_gpus"] == 8 and s["completed"] == 40
    assert s["scenario"]["dp"] == 8
    bad = run("--dp", "2", "-n", "5")  # a dense model has no experts to gather to
    assert bad.returncode == 2 and "dp" in bad.stderr and "Traceback" not in bad.stderr


def test_the_summary_table_names_the_engines_release():
    args = ["-m", "qwen3-30b-a3b", "-g", "H100", "--engine", "sglang", "-n", "3"]
    p = run(*args, "--engine-version", "0.5.3")
    assert p.returncode == 0, p.stderr
    assert "sglang 0.5.3, API server" in p.stdout


def test_requests_too_long_for_a_pinned_cache_name_the_pin_in_the_fix():
    p = run("-n", "5", "--input-len", "100", "--kv-cache-tokens", "16")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1
    assert "larger_than_kv_cache" in p.stderr and "raise --kv-cache-tokens" in p.stderr
    # Without a pin the memory plan decides: the fix does not mention one.
    q = run("-n", "2", "--input-len", "200000")
    assert q.returncode == 2 and "--kv-cache-tokens" not in q.stderr


def test_a_release_outside_the_engine_profile_warns_and_still_runs():
    p = run("-n", "3", "--engine", "vllm", "--engine-version", "0.5.4", "--json")
    assert p.returncode == 0, p.stderr
    assert "warning: engine: vllm 0.5.4 predates the vllm profile" in p.stderr
    assert "--engine vllm-v0" in json.loads(p.stdout)["engine_warning"]
    q = run("-n", "3", "--engine", "vllm", "--engine-version", "0.10.2", "--json")
    assert "engine_warning" not in json.loads(q.stdout) and "warning: engine" not in q.stderr


def test_the_engine_line_says_where_vllms_decode_walks_each_sequence_serially():
    """vLLM V1 on an A100 runs FlashAttention-2, which walks a multi-head model's sequences in
    every step and a grouped model's in steps with a prompt chunk; the engine line says which.
    SGLang (FlashInfer) and vLLM on an H100 (FlashAttention-3) split: no note."""
    note = "FlashAttention-2 decode walks each sequence serially"

    def line(*args: str) -> str:
        out = subprocess.run(
            [SERVESIM, "simulate", "-n", "8", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "250"},  # (the engine line on one table row)
        )
        assert out.returncode == 0, out.stderr
        return next(row for row in out.stdout.splitlines() if "│ engine" in row)

    reread = "re-reading a KV head per query head once a step's KV outgrows the L2"
    mha = line("-g", "A100-80GB", "-m", "meta-llama/Llama-2-7b-hf")
    assert f"{note} (every step)" in mha and reread not in mha  # (nothing to re-read)
    assert f"{note} (steps with a prompt chunk or drafts), {reread}" in line("-g", "A100-80GB")
    assert note not in line("-g", "A100-80GB", "--engine", "sglang")
    assert note not in line()
