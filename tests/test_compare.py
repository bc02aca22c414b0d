"""``compare``: benchmark results in, the same requests simulated, metrics side by side."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from servesim.calibrate import (
    COMPARE_METRICS,
    compare,
    extrapolation_warning,
    measured_metrics,
    read_bench_result,
    write_comparison_csv,
)
from servesim.calibrate.synthetic import vllm_result_from_run
from servesim.cost import CostParams
from servesim.errors import ServesimError
from servesim.run import simulate
from servesim.scenario import Scenario, build_scenario

EXAMPLES = Path(__file__).parent.parent / "examples" / "measured"
DEPLOY = {"model": "llama-3.1-8b", "hardware": "h100"}
LENGTHS = {
    "input_len": {"kind": "uniform", "lo": 100, "hi": 1500},
    "output_len": {"kind": "uniform", "lo": 8, "hi": 120},
}


@functools.cache
def simulated(arrival: str) -> object:
    arrivals = {"poisson": {"kind": "poisson", "rate": 5.0}, "burst": {"kind": "burst"}}
    workload = {**LENGTHS, "num_requests": 30, "arrival": arrivals[arrival]}
    return simulate(build_scenario({**DEPLOY, "seed": 3, "workload": workload}))


def write(tmp_path: Path, doc: dict, name: str = "bench.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(("arrival", "rate"), [("poisson", 5.0), ("burst", math.inf)])
def test_a_simulated_benchmark_is_reproduced_exactly(tmp_path, arrival, rate):
    """Same requests, same traffic, same seed: every metric matches (error 0)."""
    doc = vllm_result_from_run(simulated(arrival), request_rate=rate)
    bench = read_bench_result(write(tmp_path, doc))
    cmp = compare(bench, {**DEPLOY, "seed": 3})
    assert [r.metric for r in cmp.rows] == list(COMPARE_METRICS)
    for row in cmp.rows:
        assert row.error_pct == pytest.approx(0.0, abs=1e-9), row
    assert cmp.model == "meta-llama/Llama-3.1-8B" and cmp.hardware == "H100"
    assert cmp.scenario.workload.arrival.kind == arrival


def test_metrics_from_per_request_arrays_match_the_file(tmp_path):
    """Without the summary keys, the arrays give the same TTFT, TPOT and E2EL as vLLM."""
    doc = vllm_result_from_run(simulated("poisson"), request_rate=5.0)
    full = measured_metrics(read_bench_result(write(tmp_path, doc)))
    stripped = {k: v for k, v in doc.items() if not k.endswith("_ms")}
    derived = measured_metrics(read_bench_result(write(tmp_path, stripped, "s.json")))
    for key in (
        "mean_ttft_ms",
        "median_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "median_tpot_ms",
        "mean_e2el_ms",
        "median_e2el_ms",
        "p99_e2el_ms",
    ):
        assert derived[key] == pytest.approx(full[key], rel=1e-4, abs=1e-3), key
    # ITLs in the arrays are per-request averages, so only their mean is exact.
    assert derived["mean_itl_ms"] == pytest.approx(full["mean_itl_ms"], rel=0.02)


def test_failed_requests_are_dropped(tmp_path):
    doc = vllm_result_from_run(simulated("burst"), request_rate=math.inf)
    doc["input_lens"].append(500)
    doc["output_lens"].append(0)
    doc["ttfts"].append(0.0)
    doc["itls"].append([])
    doc["errors"].append("Internal Server Error")
    doc["num_prompts"] += 1
    bench = read_bench_result(write(tmp_path, doc))
    assert len(bench.input_lens) == doc["completed"] == len(doc["errors"]) - 1
    cmp = compare(bench, DEPLOY)
    assert "1 of the 31 requests failed in the benchmark" in " ".join(cmp.notes)


def test_traffic_mapping_and_notes(tmp_path):
    base = vllm_result_from_run(simulated("burst"), request_rate=math.inf)
    capped = read_bench_result(write(tmp_path, {**base, "max_concurrency": 4}, "c.json"))
    cmp = compare(capped, DEPLOY)
    # every request due at once behind the client's 4 slots: a shared queue, not 4 users
    # with an equal share each
    assert cmp.scenario.workload.arrival.kind == "burst"
    assert cmp.scenario.workload.max_concurrency == 4
    assert not any("closed loop" in n for n in cmp.notes)

    gamma = {**base, "request_rate": 3.0, "burstiness": 0.5, "max_concurrency": 8}
    for key in ("input_lens", "output_lens", "ttfts", "itls", "errors"):
        gamma.pop(key)
    cmp = compare(read_bench_result(write(tmp_path, gamma, "g.json")), DEPLOY)
    arrival = cmp.scenario.workload.arrival
    assert (arrival.kind, arrival.rate, arrival.burstiness) == ("gamma", 3.0, 0.5)
    assert cmp.scenario.workload.max_concurrency == 8  # (the benchmark's cap, simulated)
    text = " ".join(cmp.notes)
    assert "mean" in text and "--save-detailed" in text and "capped" not in text


def test_sglang_names(tmp_path):
    line = {
        "backend": "sglang",
        "request_rate": float("inf"),
        "max_concurrency": None,
        "duration": 10.0,
        "completed": 20,
        "total_input_tokens": 20_000,
        "total_output_tokens": 2_000,
        "request_throughput": 2.0,
        "output_throughput": 200.0,
        "total_throughput": 2200.0,
        "mean_e2e_latency_ms": 900.0,
        "median_e2e_latency_ms": 850.0,
        "p99_e2e_latency_ms": 1500.0,
        "mean_ttft_ms": 50.0,
    }
    path = tmp_path / "sg.jsonl"
    path.write_text(json.dumps({**line, "duration": 1.0}) + "\n" + json.dumps(line) + "\n")
    bench = read_bench_result(path)  # the last run by default
    assert bench.tool == "sglang" and bench.duration_s == 10.0 and math.isinf(bench.request_rate)
    got = measured_metrics(bench)
    assert got["mean_e2el_ms"] == 900.0 and got["total_token_throughput"] == 2200.0
    assert math.isnan(got["p99_itl_ms"])
    assert read_bench_result(path, run=0).duration_s == 1.0
    with pytest.raises(ServesimError, match="holds 2 run"):
        read_bench_result(path, run=5)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("duration"), "missing duration"),
        (lambda d: d.update(completed=0), "nothing to compare"),
        (lambda d: d.update(ttfts=[0.1]), "ttfts must be a list of"),
        (lambda d: d["input_lens"].__setitem__(0, -3), "input_lens\\[0\\] is -3"),
        (lambda d: d.update(request_rate="fast"), "request_rate is 'fast'"),
        (lambda d: d.pop("output_lens"), "input_lens and output_lens go together"),
    ],
)
def test_bad_benchmark_files(tmp_path, edit, message):
    doc = vllm_result_from_run(simulated("burst"), request_rate=math.inf)
    edit(doc)
    with pytest.raises(ServesimError, match=message):
        read_bench_result(write(tmp_path, doc))


def test_no_lengths_at_all(tmp_path):
    doc = {"duration": 5.0, "completed": 3}
    with pytest.raises(ServesimError, match="neither per-request lengths"):
        compare(read_bench_result(write(tmp_path, doc)), DEPLOY)


def test_csv(tmp_path):
    doc = vllm_result_from_run(simulated("burst"), request_rate=math.inf)
    cmp = compare(read_bench_result(write(tmp_path, doc)), {**DEPLOY, "seed": 3})
    lines = write_comparison_csv(cmp, tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "metric,measured,predicted,error_pct"
    assert len(lines) == 1 + len(COMPARE_METRICS)
    assert lines[1].startswith("request_throughput,") and lines[1].endswith(",0.0")


def test_extrapolation_warning_takes_the_run_step_columns():
    from servesim.calibrate import Calibration, MeasuredRange

    cal = Calibration(
        model="meta-llama/Llama-3.1-8B",
        hardware="H100",
        tp=1,
        num_points=20,
        params={},
        measured_range=MeasuredRange(tokens=(1, 256), batch=(1, 8), context=(0, 10_000)),
    )
    steps = simulated("burst").records.step_columns()
    text = extrapolation_warning(cal, steps)
    assert text is not None and "batch" in text and "tokens" in text


def test_calibrated_compare_closes_the_gap(tmp_path):
    """The example benchmark was timed with the true parameters of the example step log:
    the defaults miss it by tens of percent, a calibration from the step log by little."""
    from servesim.calibrate import calibrate, write_calibration
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    bench = read_bench_result(EXAMPLES / "vllm_bench_serve.json")
    scenario = {**DEPLOY, "seed": 7}  # the seed make_examples.py simulated with
    before = {r.metric: r.error_pct for r in compare(bench, scenario).rows}
    run = calibrate(
        [EXAMPLES / "steps.jsonl"], load_model(DEPLOY["model"]), load_hardware(DEPLOY["hardware"])
    )
    path = write_calibration(run.calibration, tmp_path / "cal.yaml")
    if "calibration" in Scenario.__struct_fields__:
        cmp = compare(bench, scenario, calibration=path)
    else:  # NOTE: until simulate takes a calibration, give it the calibrated parameters
        cal = run.calibration
        with mock.patch(
            "servesim.fleet.CostParams", lambda **kw: cal.cost_params(CostParams(**kw))
        ):
            cmp = compare(bench, scenario)
    after = {r.metric: r.error_pct for r in cmp.rows}
    assert cmp.predicted["fidelity"] == "calibrated"
    assert abs(before["mean_tpot_ms"]) > 10 and abs(after["mean_tpot_ms"]) < 2
    assert abs(before["mean_e2el_ms"]) > 10 and abs(after["mean_e2el_ms"]) < 3
    assert np.nanmax(np.abs([after[k] for k in after if "ttft" not in k])) < 3


SGLANG_RANDOM = {
    "backend": "sglang",
    "dataset_name": "random",
    "random_input_len": 1000,
    "random_output_len": 100,
    "random_range_ratio": 0.5,
    "request_rate": "inf",
    "max_concurrency": None,
    "duration": 20.0,
    "completed": 40,
    "total_input_tokens": 30_000,
    "total_output_tokens": 3_000,
    "output_throughput": 150.0,
    "median_ttft_ms": 900.0,
    "mean_e2e_latency_ms": 5000.0,
}


def test_sglang_random_dataset_lengths_are_drawn_as_its_client_draws_them(tmp_path):
    path = tmp_path / "sg.jsonl"
    path.write_text(json.dumps(SGLANG_RANDOM) + "\n")
    bench = read_bench_result(path)
    assert bench.backend == "sglang" and bench.random_lengths == (1000, 100, 0.5)
    cmp = compare(bench, DEPLOY)
    assert cmp.scenario.engine == "sglang"  # from the file's backend
    text = " ".join(cmp.notes)
    assert "random dataset" in text and "from the benchmarked backend 'sglang'" in text
    from servesim.calibrate.compare import _lengths

    inputs, outputs, sent, _ = _lengths(bench, seed=0)
    assert len(inputs) == 40 and inputs.min() >= 500 and inputs.max() <= 1000
    assert outputs.min() >= 50 and outputs.max() <= 100
    assert len(set(inputs.tolist())) > 10  # drawn, not all at the mean
    assert sent is None and "not the benchmark's own draws" in text


def test_sglang_random_runs_replay_the_clients_own_draws_when_they_give_its_totals(tmp_path):
    # sglang.bench_serving, seed 1: 40 prompts of 500-1000 tokens at 4 req/s draw 31,338 prompt
    # and 2,841 answer tokens, then the send times (servesim.calibrate.clients).
    from servesim.calibrate.clients import sglang_random_draws
    from servesim.calibrate.compare import _lengths

    doc = {**SGLANG_RANDOM, "num_prompts": 40, "request_rate": 4.0,
           "total_input_tokens": 31_338, "total_output_tokens": 2_841}  # fmt: skip
    path = tmp_path / "sg.jsonl"
    path.write_text(json.dumps(doc) + "\n")
    bench = read_bench_result(path)
    inputs, outputs, sent, notes = _lengths(bench)
    draws = sglang_random_draws(1000, 100, 40, 0.5, 4.0)
    assert (inputs == draws.prompt_tokens).all() and (outputs == draws.answer_tokens).all()
    assert sent is not None and sent[0] == 0.0 and sent[-1] == pytest.approx(9.6755, abs=1e-3)
    assert "client's own random draws" in notes[0]
    from servesim.calibrate.compare import benchmark_workload

    workload, notes = benchmark_workload(bench, tmp_path / "t.csv")
    assert "arrival" not in workload  # (the trace's send times)
    rows = (tmp_path / "t.csv").read_text().splitlines()[1:]
    assert [float(r.split(",")[0]) for r in rows] == pytest.approx(sent.tolist())
    assert not any("drawn anew" in n for n in notes)
    assert compare(bench, DEPLOY).scenario.workload.arrival is None
    # totals the default seed does not give: servesim's own draws, as before
    other = tmp_path / "o.jsonl"
    other.write_text(json.dumps({**doc, "total_output_tokens": 2_842}) + "\n")
    assert _lengths(read_bench_result(other))[2] is None


def test_an_openai_backend_selects_no_engine_and_the_scenario_or_flag_wins(tmp_path):
    from servesim.calibrate.compare import ENGINE_OF_BACKEND

    assert "openai" not in ENGINE_OF_BACKEND and "openai-chat" not in ENGINE_OF_BACKEND
    path = tmp_path / "sg.jsonl"
    path.write_text(json.dumps({**SGLANG_RANDOM, "backend": "openai"}) + "\n")
    assert compare(read_bench_result(path), DEPLOY).scenario.engine == "vllm"
    path.write_text(json.dumps(SGLANG_RANDOM) + "\n")
    cmp = compare(read_bench_result(path), {**DEPLOY, "engine": "sglang-0.4"})
    assert cmp.scenario.engine == "sglang-0.4"
    assert not any("benchmarked backend" in n for n in cmp.notes)


def test_compare_command_takes_an_engine_flag(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "sg.jsonl"
    path.write_text(json.dumps(SGLANG_RANDOM) + "\n")
    args = [sys.executable, "-m", "servesim", "compare", str(path), "-m", "llama-3.1-8b",
            "-g", "h100", "--engine", "vllm", "--json"]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert not any("benchmarked backend" in n for n in doc["notes"])


def test_chat_template_tokens_go_in_front_of_every_prompt_as_one_shared_prefix(tmp_path):
    """A chat benchmark (openai-chat) counts the messages only; the server's template adds N
    tokens to each prompt. Without N the comparison says so; with N the replayed prompts are
    N longer and share the template's full 16-token blocks."""
    from servesim.calibrate.compare import (
        benchmark_workload,
        prompt_hash_ids,
        template_tokens_of,
    )

    doc = {**vllm_result_from_run(simulated("burst"), request_rate=math.inf),
           "backend": "openai-chat"}  # fmt: skip
    bench = read_bench_result(write(tmp_path, doc))
    plain = compare(bench, DEPLOY)  # (Llama 3.1: no template count shipped)
    assert any("knows none for this model" in n for n in plain.notes)
    templated = compare(bench, DEPLOY, chat_template_tokens=67)
    assert any(n.startswith("67 chat-template tokens") for n in templated.notes)
    # A model family servesim knows gets its template by default; 0 turns it off, silently.
    tokens, notes = template_tokens_of(bench, "Qwen/Qwen3-8B", None)
    assert tokens == 8 and "model family's chat template" in notes[0]
    assert template_tokens_of(bench, "openai/gpt-oss-120b", None)[0] == 67
    assert template_tokens_of(bench, "Qwen/Qwen3-8B", 0) == (0, [])
    completions = read_bench_result(write(tmp_path, {**doc, "backend": "vllm"}, "c.json"))
    assert template_tokens_of(completions, "Qwen/Qwen3-8B", None) == (0, [])
    # The simulated prompts carry the template; the totals count as the client counts, its
    # messages only (vLLM bench's "Total input tokens", total token throughput).
    assert templated.predicted["template_input_tokens"] == 67 * bench.completed
    assert templated.predicted["total_input_tokens"] == plain.predicted["total_input_tokens"]
    total = {r.metric: r for r in templated.rows}["total_token_throughput"]
    p = templated.predicted
    assert total.predicted == pytest.approx(
        (p["total_input_tokens"] + p["total_output_tokens"]) / p["duration"], rel=1e-12
    )
    # The template's 4 full blocks are shared ids 0-3; the rest of each prompt is its own:
    # 167 tokens = 10 full blocks (4 shared + 6 own, ids 4-9); 77 tokens = the template's 4.
    ids = prompt_hash_ids(np.array([67 + 100, 67 + 10]), 67)
    assert ids == ["0 1 2 3 4 5 6 7 8 9", "0 1 2 3"]
    _, notes = benchmark_workload(bench, tmp_path / "r.csv", 0, 67)
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0] == "timestamp,input_tokens,output_tokens,hash_ids"
    with pytest.raises(ServesimError, match="chat-template-tokens"):
        compare(bench, DEPLOY, chat_template_tokens=-1)


def test_compare_command_takes_chat_template_tokens(tmp_path):
    import subprocess
    import sys

    doc = {**vllm_result_from_run(simulated("burst"), request_rate=math.inf),
           "backend": "openai-chat"}  # fmt: skip
    path = write(tmp_path, doc)
    base = [sys.executable, "-m", "servesim", "compare", str(path), "-g", "h100", "--json"]
    run = subprocess.run([*base, "--chat-template-tokens", "8"], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert any("8 chat-template tokens" in n for n in json.loads(run.stdout)["notes"])
    bad = subprocess.run([*base, "--chat-template-tokens", "-3"], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "chat-template-tokens" in bad.stderr


def test_compare_command_pins_the_cache_an_engine_log_prints(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "sg.jsonl"
    path.write_text(json.dumps(SGLANG_RANDOM) + "\n")
    log = tmp_path / "server.log"
    log.write_text(
        "[2025-03-08 12:29:29 TP0] max_total_num_tokens=46611, chunked_prefill_size=2048\n"
    )
    args = [sys.executable, "-m", "servesim", "compare", str(path), "-m", "llama-3.1-8b",
            "-g", "h100", "--engine-log", str(log), "--json"]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["kv_cache_tokens_pinned"] == 46_611
    note = " ".join(run.stderr.split())
    # (the plan compared is the engine compare simulates: SGLang's, from the file's backend)
    assert doc["engine"] == "sglang"
    assert "engine log: sglang, KV cache 46,611 tokens (pinned; servesim's own plan:" in note
