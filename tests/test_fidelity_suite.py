"""The accuracy suite's dataset and its mapping of cases to scenarios (bench/fidelity)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("fidelity_run", ROOT / "bench/fidelity/run.py")
fid = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fid)
import workloads as wl  # noqa: E402  (bench/fidelity, on the path once run.py is loaded)

CASES = fid.load_cases()
REQUIRED = ("id", "source", "engine", "model", "gpu", "tp", "mode", "workload", "metrics")


def case_by_id(case_id: str) -> dict:
    """The suite's one case of that id."""
    (case,) = [c for c in CASES if c["id"] == case_id]
    return case


def test_the_dataset_is_large_and_varied():
    live = [c for c in CASES if not c.get("skip")]
    assert len(live) >= 150
    assert len({c["engine"] for c in live}) >= 5
    assert len({c["gpu"] for c in live}) >= 6
    assert {"static", "offline", "online", "latency"} <= {c["mode"] for c in live}


def test_every_case_has_an_id_a_source_and_its_setup():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids))
    for c in CASES:
        if c.get("skip"):
            continue
        missing = [k for k in REQUIRED if c.get(k) in (None, "", {})]
        assert not missing, (c["id"], missing)
        assert c["engine"] in fid.ENGINE_OF or c["engine"] == "kernel", c["id"]


def test_no_case_comes_from_a_held_out_source():
    for c in CASES:
        text = json.dumps(c).lower()
        for held in fid.HELD_OUT:
            assert held.lower() not in c["source"].lower(), (c["id"], held)
        assert "perf-overview.md" not in text or "not" in text, c["id"]


def test_every_metric_belongs_to_a_family():
    for c in CASES:
        for metric in c["metrics"]:
            assert fid.family(metric) is not None, (c["id"], metric)


def test_a_static_batch_case_is_one_burst_of_the_batch_in_process():
    case = {"id": "x", "engine": "trtllm", "model": "meta-llama/Llama-3.1-8B", "gpu": "H100",
            "tp": 1, "mode": "static", "weight_dtype": "fp8",
            "workload": {"input_len": 128, "output_len": 128}, "load": {"batch_size": 64},
            "metrics": {"output_throughput": 1.0}}  # fmt: skip
    sc = fid.scenario_of(case)
    assert sc["scheduler"]["policy"] == "static"
    assert sc["scheduler"]["max_num_seqs"] == 64
    assert sc["workload"]["num_requests"] == 64
    assert sc["workload"]["arrival"] == {"kind": "burst"}
    assert sc["api_server"] is False
    assert sc["engine"] == "trtllm" and sc["weight_dtype"] == "fp8"


def test_stated_token_totals_set_the_mean_lengths():
    w = {"dataset": "random", "input_len": 1024, "output_len": 1024, "num_prompts": 100,
         "total_input_tokens": 51200, "total_output_tokens": 102400}  # fmt: skip
    ilen, olen = wl.fixed_lengths(w)
    assert ilen == {"kind": "uniform", "lo": 0 + 1, "hi": 1024}  # mean 512: uniform [0, 1024]
    assert olen == 1024
    case = {"id": "t", "mode": "online", "engine": "vllm", "model": "m", "gpu": "H100",
            "workload": w, "load": {"request_rate": 4.0}}  # fmt: skip
    sc = fid.scenario_of(case)
    assert sc["workload"]["arrival"] == {"kind": "poisson", "rate": 4.0}
    assert "api_server" not in sc  # online runs go through the API server (the default)
    # The run's requests: the uniform shape at exactly the stated total, the fixed length as it
    # is, in a shuffled order.
    rows = [r.split(",") for r in Path(sc["workload"]["trace"]).read_text().splitlines()[1:]]
    prompts = np.array([int(r[1]) for r in rows])
    assert len(rows) == 100 and prompts.sum() == 51200 and {int(r[2]) for r in rows} == {1024}
    assert 1 <= prompts.min() <= 10 and prompts.max() >= 1015  # (the midpoints of 1..1024)
    assert (np.diff(prompts) < 0).any()  # (not sorted)


def test_a_runs_rates_give_its_token_totals_when_it_prints_none():
    # LMDeploy's profile_throughput prints RPS, output and total tok/s over one elapsed time:
    # 3,000 Llama-2 ShareGPT requests averaged 246.9 prompt and 232.7 output tokens.
    case = case_by_id("lmdeploy_v020_reqtput_llama2_7b_a100_tp1_conc256_sharegpt3000")
    assert "total_output_tokens" not in case["workload"]
    w = wl.with_rate_totals(case)
    assert w["total_output_tokens"] == round(3000 * 3387.419 / 14.556)
    assert w["total_input_tokens"] == round(3000 * (6981.159 - 3387.419) / 14.556)
    rows = Path(fid.scenario_of(case)["workload"]["trace"]).read_text().splitlines()[1:]
    assert sum(int(r.split(",")[2]) for r in rows) == w["total_output_tokens"]
    # stated totals, stated lengths, or missing rates: the workload as it is
    stated = {**case, "workload": {**case["workload"], "total_input_tokens": 1}}
    assert wl.with_rate_totals(stated) is stated["workload"]
    fixed = {**case, "workload": {**case["workload"], "input_len": 200, "output_len": 100}}
    assert wl.with_rate_totals(fixed) is fixed["workload"]
    bare = {**case, "metrics": {"request_throughput": 14.556}}
    assert wl.with_rate_totals(bare) is case["workload"]


def test_lengths_at_a_total_keep_the_shape_and_hit_the_total_exactly():
    table = {"kind": "quantiles", "probs": [0.0, 0.5, 1.0], "values": [10, 100, 1000]}
    lengths = wl.lengths_at_total(table, 101, 20_000, seed=0)
    assert lengths.sum() == 20_000 and lengths.min() >= 1
    # the midpoints' quantiles, scaled: the median is the table's median times the level
    shape = np.exp(np.interp((np.arange(101) + 0.5) / 101, [0, 0.5, 1], np.log([10, 100, 1000])))
    scale = 20_000 / shape.sum()
    assert np.median(lengths) == pytest.approx(100 * scale, abs=1)
    assert np.sort(lengths) == pytest.approx(shape * scale, abs=1)
    same = wl.lengths_at_total(table, 101, 20_000, seed=0)
    assert (same == lengths).all()  # (deterministic)
    # a level so low that the floor of 1 token binds still sums exactly
    assert wl.lengths_at_total(table, 101, 150, seed=0).sum() == 150
    assert wl.lengths_at_total(1024, 10, 10_000, seed=0) is None  # (no shape)
    # no stated totals, or no distribution: the runner keeps its distributions
    assert wl.requests_at_totals({"num_prompts": 10}, table, table) is None
    both_fixed = {"num_prompts": 10, "total_input_tokens": 99,
                  "total_output_tokens": 100}  # fmt: skip
    assert wl.requests_at_totals(both_fixed, 10, 10) is None


def test_sharegpt_totals_set_the_level_of_sharegpts_shape():
    from servesim.workload.presets import PRESET_TABLES, quantile_table_mean

    w = {"dataset": "sharegpt", "num_prompts": 1000,
         "total_input_tokens": 215_312, "total_output_tokens": 150_000}  # fmt: skip
    ilen, olen = wl.fixed_lengths(w)
    assert ilen["kind"] == olen["kind"] == "quantiles"
    assert quantile_table_mean(tuple(ilen["values"])) == pytest.approx(215.312, rel=1e-3)
    assert quantile_table_mean(tuple(olen["values"])) == pytest.approx(150.0, rel=1e-3)
    # the preset's shape: the same quantile ratios (up to rounding)
    shape = PRESET_TABLES[("sharegpt", "output")].values
    ratios = [v / s for v, s in zip(olen["values"], shape, strict=True) if s >= 100]
    assert max(ratios) / min(ratios) < 1.02
    assert max(olen["values"]) <= 2044 and max(ilen["values"]) <= 1024


def test_published_per_request_lengths_are_replayed_as_sent():
    (case,) = [c for c in CASES if c["id"] == "vllmv054_lambda_llama3_8b_h100_tp1_sharegpt320_inf"]
    sc = fid.scenario_of(case)
    w = sc["workload"]
    assert w["trace_format"] == "csv" and w["arrival"] == {"kind": "burst"}
    assert set(w) == {"trace", "trace_format", "arrival"}
    rows = Path(w["trace"]).read_text().splitlines()
    assert rows[0] == "timestamp,input_tokens,output_tokens" and len(rows) == 321
    requests = case["workload"]["requests"]
    assert rows[1] == f"0.0,{requests['input_lens'][0]},{requests['output_lens'][0]}"
    assert sum(int(r.split(",")[1]) for r in rows[1:]) == case["workload"]["total_input_tokens"]
    # a source's lists carry no send times: they are replayed for a burst only, or behind a
    # client's N slots (every request due at once, sent in the list's order as slots free)
    with pytest.raises(fid.Unmappable, match="replayed for bursts"):
        fid.scenario_of({**case, "load": {"request_rate": 2.0}})
    capped = fid.scenario_of({**case, "load": {"concurrency": 4}})["workload"]
    assert capped["arrival"] == {"kind": "burst"} and capped["max_concurrency"] == 4
    assert Path(capped["trace"]).read_text().splitlines() == rows


def test_sglangs_client_draws_are_redrawn_and_checked_against_its_totals():
    # DataCrunch's H200 runs: sglang.bench_serving, seed 1, random 1024/1024, range ratio 0.
    (case,) = [
        c for c in CASES if c["id"] == "sglang_h200_dc_llama_70b_bf16_tp4_random1024_1024_n300_rps1"
    ]
    requests = wl.sglang_client_requests(case)
    sent, prompts, answers = (np.array(x) for x in zip(*requests, strict=True))
    assert len(prompts) == 300 and prompts.sum() == case["workload"]["total_input_tokens"]
    assert answers.sum() == case["workload"]["total_output_tokens"]
    assert sent[0] == 0.0 and (np.diff(sent) > 0).all()
    assert 299 / sent[-1] == pytest.approx(1.0, rel=0.15)  # one request a second
    sc = fid.scenario_of(case)
    assert set(sc["workload"]) == {"trace", "trace_format"}  # the recorded send times
    # another seed, or totals the client did not print, is not taken for the client's draws
    other = {**case, "workload": {**case["workload"], "total_input_tokens": 152_613}}
    assert wl.sglang_client_requests(other) is None
    # (then the uniform shapes at the stated totals, sent at servesim's Poisson times)
    w = fid.scenario_of(other)["workload"]
    assert w["arrival"] == {"kind": "poisson", "rate": 1.0}
    rows = Path(w["trace"]).read_text().splitlines()[1:]
    assert sum(int(r.split(",")[1]) for r in rows) == 152_613
    assert {r.split(",")[0] for r in rows} == {"0.0"}
    seeded = {**case, "notes": case["notes"] + " --seed 7"}
    assert wl.sglang_client_requests(seeded) is None
    # at rate inf every request is sent at t=0: a burst
    (burst,) = [
        c for c in CASES if c["id"] == "sglang_h200_dc_llama_70b_bf16_tp4_random1024_1024_n3000_inf"
    ]
    assert {t for t, _, _ in wl.sglang_client_requests(burst)} == {0.0}
    assert fid.scenario_of(burst)["workload"]["arrival"] == {"kind": "burst"}


def test_sglangs_client_draws_are_checked_against_the_printed_throughput_ratio():
    # SGLang's H200 attention-backend runs print input and output tok/s but no totals: the
    # seed-1 draws give 817,757 / 105,408 tokens, the printed rates' ratio to 5 digits.
    case = case_by_id("sglang_attnbench_h200_llama31_8b_tp1_fa3_random8192_1024_n200_rps16")
    assert "total_input_tokens" not in case["workload"]
    requests = wl.sglang_client_requests(case)
    sent, prompts, answers = (np.array(x) for x in zip(*requests, strict=True))
    assert (prompts.sum(), answers.sum()) == (817_757, 105_408)
    assert prompts.sum() / answers.sum() == pytest.approx(17652.56 / 2275.4, rel=1e-5)
    assert sent[0] == 0.0 and 199 / sent[-1] == pytest.approx(16.0, rel=0.2)
    assert wl.published_token_rates(case) == (17652.56, 2275.4)
    # the ratio from the metrics when the printed rates are not kept (total − output)
    bare = {**case, "metrics_as_published": {}}
    assert wl.published_token_rates(bare) == pytest.approx((17652.56, 2275.4))
    assert wl.sglang_client_requests(bare) == requests
    # printed rates of another ratio, or another seed, are not the client's draws
    off = {**case, "metrics_as_published": {**case["metrics_as_published"],
           "output_token_throughput_tok_s": 2276.4}}  # fmt: skip
    assert wl.sglang_client_requests(off) is None
    assert wl.sglang_client_requests({**case, "notes": case["notes"] + " --seed 7"}) is None
    # fixed lengths (range ratio 1) match any ratio, so nothing checks the seed; their one-value
    # draws leave NumPy's legacy stream alone: the send times are the seed's first exponentials
    fixed = {**case, "workload": {**case["workload"], "range_ratio": 1.0}}
    sent, prompts, answers = (
        np.array(x) for x in zip(*wl.sglang_client_requests(fixed), strict=True)
    )
    assert set(prompts) == {8192} and set(answers) == {1024}
    gaps = np.random.RandomState(1).exponential(1 / 16, size=199)
    assert np.diff(sent) == pytest.approx(gaps)
    assert not wl.same_token_ratio(817_757, 0, 17652.56, 2275.4)


def test_sglangs_sharegpt_runs_replay_the_clients_send_times():
    # sglang.bench_serving's ShareGPT sampler shuffles with Python's random: the NumPy seed's
    # first exponentials are the send times (DataCrunch, 1,200 requests at 4 req/s).
    case = case_by_id("sglang_h200_dc_llama_405b_bf16_tp8_sharegpt_n1200_rps4")
    sent = wl.sglang_sharegpt_send_times_of(case)
    gaps = np.random.RandomState(1).exponential(1 / 4, size=1199)
    assert sent[0] == 0.0 and np.diff(sent) == pytest.approx(gaps)
    assert sent[-1] < case["metrics"]["duration"]  # (296.7 s, before the run's 321.8 s end)
    w = fid.scenario_of(case)["workload"]
    assert "arrival" not in w  # (the trace's times)
    rows = Path(w["trace"]).read_text().splitlines()[1:]
    assert [float(r.split(",")[0]) for r in rows] == pytest.approx(sent)
    assert sum(int(r.split(",")[2]) for r in rows) == case["workload"]["total_output_tokens"]
    # not for another client, a burst, or a random dataset
    assert wl.sglang_sharegpt_send_times_of({**case, "notes": "vllm bench serve"}) is None
    assert wl.sglang_sharegpt_send_times_of({**case, "load": {"request_rate": "inf"}}) is None
    random = {**case, "workload": {**case["workload"], "dataset": "random"}}
    assert wl.sglang_sharegpt_send_times_of(random) is None


def test_sglangs_client_draws_random_lengths_up_to_the_given_ones_below_ratio_one():
    # sglang.bench_serving's random dataset: prompts in [max(r·len, 1), len], answers in
    # [r·len, len]; the default r = 0.0 draws lengths up to the given value, not equal to it.
    w = {"dataset": "random", "input_len": 8192, "output_len": 1024, "range_ratio": 0.0,
         "num_prompts": 200}  # fmt: skip
    case = {"mode": "online", "engine": "sglang", "model": "meta-llama/Llama-3.1-8B",
            "gpu": "H200", "workload": w, "load": {"request_rate": 16.0},
            "notes": "Client: python3 -m sglang.bench_serving --backend sglang"}  # fmt: skip
    sc = fid.scenario_of(case)
    assert sc["workload"]["input_len"] == {"kind": "uniform", "lo": 1, "hi": 8192}
    assert sc["workload"]["output_len"] == {"kind": "uniform", "lo": 1, "hi": 1024}
    half = fid.scenario_of({**case, "workload": {**w, "range_ratio": 0.5}})
    assert half["workload"]["input_len"] == {"kind": "uniform", "lo": 4096, "hi": 8192}
    assert half["workload"]["output_len"] == {"kind": "uniform", "lo": 512, "hi": 1024}
    # fixed lengths: the client's send times replayed (see the ratio test), lengths as given
    fixed = fid.scenario_of({**case, "id": "t", "workload": {**w, "range_ratio": 1.0}})
    rows = Path(fixed["workload"]["trace"]).read_text().splitlines()[1:]
    assert {tuple(r.split(",")[1:]) for r in rows} == {("8192", "1024")}
    # vLLM's client reads a ratio of 0 as fixed lengths ([len·(1 − r), len·(1 + r)]).
    vllm = fid.scenario_of({**case, "notes": "vllm bench serve --backend vllm"})
    assert (vllm["workload"]["input_len"], vllm["workload"]["output_len"]) == (8192, 1024)


def test_a_chat_endpoint_client_adds_the_templates_tokens_as_a_shared_prefix():
    # vllm bench serve --backend openai-chat counts the messages' content; the server renders
    # the chat template around each (gpt-oss: harmony's system and developer messages).
    w = {"dataset": "random", "input_len": 128, "output_len": 4, "num_prompts": 10}
    case = {"mode": "online", "engine": "vllm", "model": "openai/gpt-oss-120b", "gpu": "H100",
            "workload": w, "load": {"request_rate": "inf"},
            "notes": "Client `vllm bench serve --backend openai-chat --endpoint "
                     "/v1/chat/completions`"}  # fmt: skip
    sc = fid.scenario_of(case)
    assert sc["workload"]["input_len"] == 128
    assert (sc["workload"]["prefix_groups"], sc["workload"]["prefix_len"]) == (1, 67)
    qwen = fid.scenario_of({**case, "model": "Qwen/Qwen3-8B"})
    assert qwen["workload"]["prefix_len"] == 8
    completions = fid.scenario_of({**case, "notes": "vllm bench serve --backend vllm"})
    assert "prefix_len" not in completions["workload"]
    assert wl.chat_template_tokens({**case, "model": "meta-llama/Llama-3.1-8B"}) == 0


def test_scoring_a_case_gives_signed_errors_and_the_too_fast_direction():
    case = {"id": "t", "engine": "gpt-fast", "model": "meta-llama/Llama-3.1-8B", "gpu": "H100",
            "tp": 1, "mode": "latency", "weight_dtype": "bf16", "source": "test",
            "workload": {"input_len": 16, "output_len": 32}, "load": {"batch_size": 1},
            "metrics": {"decode_tok_per_s": 1.0, "mean_ttft_ms": 1000.0}}  # fmt: skip
    row = fid.score_case(case)
    by_metric = {m["metric"]: m for m in row["metrics"]}
    # Far more tokens/s than 1 and far less than 1 s to the first token: too fast both ways.
    assert by_metric["decode_tok_per_s"]["error"] > 10 and by_metric["decode_tok_per_s"]["too_fast"]
    assert by_metric["mean_ttft_ms"]["error"] < -0.9 and by_metric["mean_ttft_ms"]["too_fast"]
    table = fid.aggregate([row], lambda r, m: m["family"])
    assert table["throughput"]["too_fast_share"] == 1.0


def test_every_online_case_gets_one_of_the_online_loads():
    # (The regimes themselves: tests/test_track_record.py.)
    from servesim.scenario import build_scenario
    from servesim.track_record import LOADS, load_regime

    found = set()
    for case in CASES:
        if case.get("mode") != "online" or case.get("skip"):
            continue
        try:
            found.add(load_regime(build_scenario(fid.scenario_of(case))))
        except fid.Unmappable:
            continue
    assert found == set(LOADS[2:])


def test_a_clients_concurrency_is_a_cap_over_one_queue_not_users_with_shares(tmp_path):
    # vllm bench serve / sglang.bench_serving --max-concurrency N, lmdeploy's N threads on one
    # queue: every request due at once, the next one sent when any of the N finishes.
    base = {"id": "x", "engine": "vllm", "engine_version": "0.11.0", "model": "Qwen/Qwen3-8B",
            "gpu": "H100", "tp": 1, "mode": "online",
            "workload": {"input_len": 200, "output_len": 100, "num_prompts": 40},
            "load": {"concurrency": 4}, "metrics": {"output_throughput": 1.0}}  # fmt: skip
    w = fid.scenario_of(base)["workload"]
    assert w["arrival"] == {"kind": "burst"} and w["max_concurrency"] == 4
    offline = fid.scenario_of({**base, "mode": "offline", "load": {"concurrency": 8}})
    assert offline["workload"]["arrival"] == {"kind": "burst"}
    assert offline["workload"]["max_concurrency"] == 8
    rated = fid.scenario_of({**base, "load": {"request_rate": 2.0, "max_concurrency": 3}})
    assert rated["workload"]["arrival"] == {"kind": "poisson", "rate": 2.0}
    assert rated["workload"]["max_concurrency"] == 3
    # The difference: one long answer (1,000 tokens) then 99 short ones (10) over 2 slots. One
    # queue runs the long one on one slot and every short one on the other; two users with 50
    # requests each leave the long one's user 49 short ones after it.
    from servesim.run import simulate
    from servesim.scenario import build_scenario

    trace = tmp_path / "t.csv"
    rows = ["0.0,100,1000"] + ["0.0,100,10"] * 99
    trace.write_text("timestamp,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    replay = {"trace": str(trace), "trace_format": "csv"}
    queue = {**replay, "arrival": {"kind": "burst"}, "max_concurrency": 2}
    users = {**replay, "arrival": {"kind": "closed", "concurrency": 2}}
    one = simulate(build_scenario({"engine": "vllm", "workload": queue})).summary
    two = simulate(build_scenario({"engine": "vllm", "workload": users})).summary
    assert one["completed"] == two["completed"] == 100
    assert one["duration"] < 0.8 * two["duration"]


def test_the_ttft_table_by_load_counts_only_ttft_metrics():
    def metric(fam, err):
        return {"family": fam, "error": err, "too_fast": err < 0, "speed_bias": -err}

    common = {"gpu": "H100", "engine": "vllm", "model": "meta-llama/Llama-3.1-8B"}
    rows = [
        {**common, "mode": "online", "load": "burst (rate inf)",
         "metrics": [metric("TTFT", -0.5), metric("E2E", 0.1)]},
        {**common, "mode": "static", "load": "static", "metrics": [metric("throughput", 0.2)]},
    ]  # fmt: skip
    tables = fid.tables(rows)
    assert tables["load"]["static"]["n"] == 1 and tables["load"]["burst (rate inf)"]["n"] == 2
    by_load = tables["load (TTFT only)"]
    assert list(by_load) == ["burst (rate inf)"]
    assert by_load["burst (rate inf)"]["n"] == 1
    assert by_load["burst (rate inf)"]["median_abs_error"] == 0.5


@pytest.mark.parametrize("mode", ["kernel", "unknown"])
def test_cases_that_are_not_end_to_end_runs_are_skipped_with_a_reason(mode):
    case = {"id": "k", "engine": "vllm", "model": "m", "gpu": "H100", "mode": mode,
            "workload": {"input_len": 1, "output_len": 1}, "metrics": {}}  # fmt: skip
    with pytest.raises(fid.Unmappable):
        fid.scenario_of(case)


def test_engine_releases_and_launch_flags_pick_their_profile_and_split():
    base = {"id": "x", "model": "deepseek-ai/DeepSeek-R1", "gpu": "H200", "tp": 8,
            "mode": "online", "workload": {"input_len": 1000, "output_len": 100,
                                           "num_prompts": 10},
            "load": {"request_rate": "inf"}, "metrics": {"output_throughput": 1.0}}  # fmt: skip
    trt1 = fid.scenario_of({**base, "engine": "trtllm", "engine_version": "v1.0.0"})
    assert trt1["engine"] == "trtllm-pytorch"
    trt0 = fid.scenario_of({**base, "engine": "trtllm", "engine_version": "v0.8.0"})
    assert trt0["engine"] == "trtllm"
    nim = {**base, "engine": "trtllm", "engine_version": "NVIDIA NIM container 1.8.0"}
    assert fid.scenario_of(nim)["engine"] == "trtllm"
    engine_built = {**base, "engine": "trtllm", "engine_version": "v1.0.0",
                    "engine_args": {"backend": "tensorrt"}}  # fmt: skip
    assert fid.scenario_of(engine_built)["engine"] == "trtllm"
    launch = "python3 -m sglang.launch_server --tp 8 --enable-dp-attention"
    dp = {**base, "engine": "sglang", "engine_version": "v0.5.3",
          "engine_args": {"launch": launch}}  # fmt: skip
    # SGLang's --enable-dp-attention (server_args.py, 0.4.0-0.4.9, 0.5.3, 0.5.9 wheels): the
    # ranks are the TP size before 0.4.5; from then on --dp must name them, and 0.5 turns
    # the flag off when it does not (dp_size 1): a plain TP8 server.
    sc = fid.scenario_of(dp)
    assert (sc["engine"], sc["tp"], sc.get("dp", 1)) == ("sglang", 8, 1)
    ranked = fid.scenario_of({**dp, "engine_args": {"launch": launch + " --dp 8"}})
    assert (ranked["tp"], ranked["dp"]) == (1, 8)
    four = fid.scenario_of({**dp, "engine_args": {"launch": launch, "dp_size": 4}})
    assert (four["tp"], four["dp"]) == (2, 4)
    old = fid.scenario_of({**dp, "engine_version": "0.4.3.post2"})
    assert (old["engine"], old["tp"], old["dp"]) == ("sglang-0.4", 1, 8)
    # TensorRT-LLM's --ep_size spreads the experts over the TP group.
    launch = "trtllm-serve m --tp_size 8 --ep_size 8"
    ep = {**base, "engine": "trtllm", "engine_version": "v1.0.0", "tp": 8,
          "engine_args": {"launch": launch, "ep_size": 8}}  # fmt: skip
    assert (fid.scenario_of(ep)["tp"], fid.scenario_of(ep)["ep"]) == (8, 8)
    assert "ep" not in fid.scenario_of({**ep, "engine_args": {}})
    # The release the case names, for the kernels nearest to it.
    assert fid.scenario_of(dp)["engine_version"] == "0.5.3"
    # Overlap switches: vLLM's --async-scheduling / --no-async-scheduling, SGLang's
    # --disable-overlap-schedule; nothing said: the engine's default.
    assert "async_scheduling" not in sc
    vllm = {**base, "engine": "vllm", "engine_version": "v0.11.0"}
    for launch, expected in (("vllm serve m --async-scheduling", True),
                             ("vllm serve m --no-async-scheduling", False)):  # fmt: skip
        got = fid.scenario_of({**vllm, "engine_args": {"launch": launch}})
        assert got["async_scheduling"] is expected
    sglang = "python3 -m sglang.launch_server --tp 8 --disable-overlap-schedule"
    off = fid.scenario_of({**dp, "engine_args": {"launch": sglang}})
    assert off["async_scheduling"] is False
    for stated, release in (
        ("0.4.3.post2 (lmsysorg/sglang:latest, Feb 2025)", "0.4.3.post2"),
        ("0.7.4.dev181+gf35f8e22 (nightly wheel)", "0.7.4.dev181"),
        ("v1.2.0rc1", "1.2.0rc1"),
        ("NVIDIA NIM container 1.8.0", None),
        ("main @ 2024-08-04 (between v0.5.3.post1 and v0.5.4)", None),
        ("not stated (June 2023)", None),
    ):
        assert fid._release({"engine_version": stated}) == release


def test_the_served_context_window_comes_from_the_launch():
    base = {"id": "x", "engine": "vllm-v0", "engine_version": "0.6.6",
            "model": "meta-llama/Llama-3.1-8B", "gpu": "H100", "tp": 1, "mode": "online",
            "workload": {"input_len": 1000, "output_len": 100, "num_prompts": 10},
            "load": {"request_rate": "inf"}, "metrics": {"output_throughput": 1.0}}  # fmt: skip
    assert (
        fid.scenario_of({**base, "engine_args": {"max_model_len": 2048}})["max_model_len"] == 2048
    )
    launch = {"launch": "vllm serve m --max-model-len 32768"}
    assert fid.scenario_of({**base, "engine_args": launch})["max_model_len"] == 32768
    assert "max_model_len" not in fid.scenario_of(base)


def test_prefix_caching_is_on_where_the_engine_had_it_on_by_default():
    """vLLM V1's prefix cache and SGLang's radix cache are on unless the launch turned them
    off (--disable-radix-cache, or the case's own engine_args); the other engines' are off."""
    base = {"id": "x", "model": "deepseek-ai/DeepSeek-R1", "gpu": "H200", "tp": 8,
            "mode": "online", "workload": {"input_len": 1000, "output_len": 100,
            "num_prompts": 10}, "load": {"request_rate": "inf"},
            "metrics": {"output_throughput": 1.0}}  # fmt: skip

    def caching(engine: str, version: str, **args) -> bool:
        case = {**base, "engine": engine, "engine_version": version, "engine_args": args}
        return fid.scenario_of(case)["scheduler"]["enable_prefix_caching"]

    assert caching("sglang", "v0.5.3", launch="python3 -m sglang.launch_server --tp 8")
    assert not caching("sglang", "v0.5.3", launch="sglang.launch_server --disable-radix-cache")
    assert not caching("sglang", "v0.5.3", enable_prefix_caching=False)
    assert caching("vllm", "v0.10.2", launch="vllm serve m")
    assert not caching("trtllm", "v1.0.0", launch="trtllm-serve m")


def test_an_attention_backend_the_launch_named_is_the_scenarios():
    """SGLang's A/B benchmark of its attention backends names ``attention_backend`` in its
    engine_args: the scenario takes the two servesim prices apart (fa3, flashinfer) and
    leaves the others (trtllm_mla, triton) to the engine's default."""
    case = {"id": "x", "engine": "sglang", "engine_version": "v0.5.3",
            "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "H200", "mode": "online",
            "workload": {"input_len": 1000, "output_len": 100, "num_prompts": 10},
            "load": {"request_rate": "inf"}, "metrics": {"output_throughput": 1.0}}  # fmt: skip

    def backend(name: str) -> str | None:
        args = {"attention_backend": name}
        return fid.scenario_of({**case, "engine_args": args}).get("attention_backend")

    assert backend("flashinfer") == "flashinfer" and backend("fa3") == "fa3"
    assert backend("triton") is None and backend("trtllm_mla") is None


def test_lmdeploys_cache_max_entry_count_is_a_block_count_from_one_on_else_a_share():
    base = {"id": "x", "engine": "lmdeploy", "engine_version": "v0.2.0",
            "model": "meta-llama/Llama-2-7b-hf", "gpu": "A100-80GB", "tp": 1, "mode": "offline",
            "workload": {"input_len": 1000, "output_len": 100, "num_prompts": 10},
            "load": {"max_concurrency": 8}, "metrics": {"output_throughput": 1.0}}  # fmt: skip
    blocks = {"cache_max_entry_count": 1000, "cache_block_seq_len": 128}
    sched = fid.scenario_of({**base, "engine_args": blocks})["scheduler"]
    assert sched["kv_cache_tokens"] == 128_000 and sched["block_size"] == 128
    share = fid.scenario_of({**base, "engine_args": {"cache_max_entry_count": 0.9}})["scheduler"]
    assert share["gpu_memory_utilization"] == 0.9 and "kv_cache_tokens" not in share
    # The LMDeploy benchmark runs pin their caches as their configs did (1,000 blocks for 7B).
    pinned = [c for c in CASES if c["engine"] == "lmdeploy"]
    assert pinned and all(c["engine_args"]["cache_max_entry_count"] >= 500 for c in pinned)
