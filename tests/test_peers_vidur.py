"""The Vidur comparison's pure parts: request files, Vidur's output parsing, the metric
definitions and the profile tables it builds. Vidur itself is never run here."""

from __future__ import annotations

import csv
import importlib.util
import lzma
import sys
from pathlib import Path

import numpy as np
import pytest

PEERS = Path(__file__).resolve().parents[1] / "bench" / "peers" / "vidur"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"peers_vidur_{name}", PEERS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


rc = _load("run_comparison")
profiles = _load("profiles")


# --------------------------------------------------------------------------- requests


def test_cap_lengths_cuts_the_prompt_like_vidurs_trace_loader():
    inputs, outputs = rc.cap_lengths(np.array([4000, 100, 0]), np.array([200, 5000, 7]), 4096)
    assert inputs.tolist() == [3896, 1, 1]
    assert outputs.tolist() == [200, 4095, 7]
    assert (inputs + outputs <= 4096).all()


def test_make_requests_is_reproducible_and_starts_at_zero():
    w = rc.Workload("t", "fixed", rate=10.0, num_requests=500, seed=3)
    a, b = rc.make_requests(w), rc.make_requests(w)
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert a.arrival_s[0] == 0.0 and (np.diff(a.arrival_s) >= 0).all()
    assert set(a.input_tokens.tolist()) == {512} and set(a.output_tokens.tolist()) == {128}
    # Poisson at 10 req/s: the mean gap is close to 0.1 s
    assert np.diff(a.arrival_s).mean() == pytest.approx(0.1, rel=0.15)


def test_azure_lengths_read_the_trace_in_order_and_cycle(tmp_path):
    path = tmp_path / "conv.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nx,10,2\ny,20,3\n")
    inputs, outputs = rc.azure_lengths(5, path)
    assert inputs.tolist() == [10, 20, 10, 20, 10]
    assert outputs.tolist() == [2, 3, 2, 3, 2]


def test_both_request_files_carry_the_same_requests(tmp_path):
    req = rc.Requests(np.array([0.0, 0.25, 1.5]), np.array([5, 6, 7]), np.array([1, 2, 3]))
    rc.write_vidur_trace(tmp_path / "v.csv", req)
    rc.write_servesim_trace(tmp_path / "s.csv", req)
    v = list(csv.DictReader(open(tmp_path / "v.csv")))
    s = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["Date"] for r in v] == [rc.VIDUR_DATE] * 3
    assert [float(r["Time"]) for r in v] == [float(r["timestamp"]) for r in s] == [0, 0.25, 1.5]
    assert [r["PromptTokenCount"] for r in v] == [r["input_tokens"] for r in s] == ["5", "6", "7"]
    assert [r["CompletionTokenCount"] for r in v] == [r["output_tokens"] for r in s]


def test_workloads_cover_the_issue():
    names = {w.name for w in rc.WORKLOADS}
    assert len(names) == 8
    for lengths in ("fixed", "azure-conv"):
        for level in ("low", "sat"):
            assert {f"{lengths}-{level}-1k", f"{lengths}-{level}-10k"} <= names


def test_commands_share_the_knobs(tmp_path):
    v = rc.vidur_command("py", tmp_path / "t.csv", tmp_path / "o", tmp_path / "c")
    after = {v[i]: v[i + 1] for i in range(len(v) - 1)}
    assert after["--replica_scheduler_config_type"] == "vllm"
    assert after["--vllm_scheduler_config_batch_size_cap"] == str(rc.MAX_NUM_SEQS)
    assert after["--vllm_scheduler_config_max_tokens_in_batch"] == str(rc.MAX_BATCHED_TOKENS)
    assert after["--cache_config_block_size"] == "16"
    assert after["--cache_config_memory_margin_fraction"] == "0.1"
    assert after["--trace_request_generator_config_prefill_scale_factor"] == "1"
    assert after["--trace_request_generator_config_time_scale_factor"] == "1"
    s = rc.servesim_command(tmp_path / "t.csv", tmp_path / "o")
    after = {s[i]: s[i + 1] for i in range(len(s) - 1)}
    assert after["--max-num-seqs"] == str(rc.MAX_NUM_SEQS)
    assert after["--max-num-batched-tokens"] == str(rc.MAX_BATCHED_TOKENS)
    assert after["--block-size"] == "16" and after["--gpu-memory-utilization"] == "0.9"
    assert "--no-prefix-caching" in s and "--chunked-prefill" in s
    assert "--no-chunked-prefill" in rc.servesim_command(tmp_path / "t", tmp_path / "o", False)
    assert rc.vidur_env()["HF_HUB_OFFLINE"] == "1"


# --------------------------------------------------------------------------- results


def _vidur_metrics_file(tmp_path: Path) -> Path:
    out = tmp_path / "out" / "2025-01-01_00-00-00-000000"
    out.mkdir(parents=True)
    path = out / "request_metrics.csv"
    path.write_text(
        "Request Id,request_e2e_time,prefill_e2e_time,request_num_decode_tokens,"
        "request_num_prefill_tokens\n"
        "1,2.0,0.5,4,10\n"
        "0,1.0,0.1,10,10\n"
        "2,,,,\n"
    )
    return path


def test_vidur_request_metrics_are_found_and_joined_with_arrivals(tmp_path):
    path = _vidur_metrics_file(tmp_path)
    assert rc.find_vidur_request_metrics(tmp_path / "out") == path
    rt = rc.read_vidur_requests(path, np.array([0.0, 1.0, 2.0]))
    # request 2 never finished: left out
    assert rt.arrival_s.tolist() == [0.0, 1.0]
    assert rt.first_token_s.tolist() == [0.1, 1.5]
    assert rt.finish_s.tolist() == [1.0, 3.0]
    assert rt.output_tokens.tolist() == [10, 4]


def test_missing_vidur_output_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        rc.find_vidur_request_metrics(tmp_path)


def test_servesim_requests_are_read(tmp_path):
    path = tmp_path / "requests.csv"
    path.write_text(
        "request_id,arrival_s,first_token_s,finish_s,input_tokens,output_tokens\n"
        "0,0.0,0.1,1.0,10,10\n"
        "1,1.0,1.5,3.0,10,4\n"
    )
    rt = rc.read_servesim_requests(path)
    assert rt.finish_s.tolist() == [1.0, 3.0] and rt.output_tokens.tolist() == [10, 4]


def test_metrics_use_vllm_definitions():
    rt = rc.RequestTimes(
        arrival_s=np.array([0.0, 1.0, 2.0]),
        first_token_s=np.array([0.1, 1.5, 2.2]),
        finish_s=np.array([1.0, 3.0, 2.2]),
        output_tokens=np.array([10, 4, 1]),
    )
    m = rc.metrics(rt)
    assert m["completed"] == 3
    assert m["median_ttft_ms"] == pytest.approx(200.0)
    # TPOT = (E2E - TTFT) / (output - 1); the one-token request has none
    assert m["median_tpot_ms"] == pytest.approx((100.0 + 500.0) / 2)
    assert m["median_e2el_ms"] == pytest.approx(1000.0)
    assert m["output_throughput"] == pytest.approx(15 / 3.0)
    assert m["request_throughput"] == pytest.approx(1.0)


def test_rel_diff_is_relative_to_vidur():
    assert rc.rel_diff(110.0, 100.0) == pytest.approx(0.10)
    assert np.isnan(rc.rel_diff(1.0, 0.0))


def test_markdown_table_lists_every_workload():
    m = {k: 1.0 for k in rc.METRIC_KEYS}
    row = {
        "workload": {"name": "fixed-low-1k", "num_requests": 1000, "rate": 5.0},
        "vidur_wall_s": 10.0,
        "servesim_wall_s": 0.5,
        "servesim_sim_wall_s": 0.1,
        "speedup": 20.0,
        "vidur": m,
        "servesim": m,
        "servesim_no_chunked_prefill": m,
        "rel_diff": {k: 0.0 for k in rc.METRIC_KEYS},
    }
    lss = [
        {
            "workload": "2 x 64/32",
            "llmservingsim_published_s": 0.58,
            "servesim_wall_s": 0.2,
            "vidur_wall_s": 9.0,
            "speedup_vs_llmservingsim": 2.9,
            "speedup_vs_vidur": 45.0,
        }
    ]
    meta = {
        "date": "d",
        "machine": "m",
        "vidur_version": "0.0.26",
        "servesim_version": "0.1.0",
        "servesim_repeats": 3,
    }
    text = rc.render_markdown([row], lss, meta)
    assert "| fixed-low-1k | 1,000 | 5 | 10.00 | 0.50 | 0.100 | 20× | – | – |" in text
    compiled = {**row, "servesim_compiled_wall_s": 0.25, "speedup_compiled": 40.0}
    text = rc.render_markdown([compiled], lss, meta)
    assert "| fixed-low-1k | 1,000 | 5 | 10.00 | 0.50 | 0.100 | 20× | 0.25 | 40× |" in text
    assert "| 2 x 64/32 | 0.58 |" in text


# --------------------------------------------------------------------------- profiles

# Vidur's published profile tables are third-party data and are not committed (see
# bench/peers/vidur/profiles/SOURCES.md): the tests that read them run where they were placed.
needs_tables = pytest.mark.skipif(
    not (profiles.MLP_TABLE.exists() and profiles.ATTENTION_SAMPLES.exists()),
    reason="Vidur's profile tables are not in bench/peers/vidur/profiles/ (see SOURCES.md)",
)


def test_grid_matches_vidurs_profiler():
    g = profiles.grid()
    assert g[0] == (64, 0, 1, True) and g[1] == (64, 64, 1, True)
    # chunk 64 covers the KV range in its own steps: 16384 / 64 rows
    assert sum(1 for r in g if r[0] == 64 and r[1] > 0 and r[3]) == 255
    full = [r for r in g if r[3] and r[1] == 0]
    assert (32, 0, 1, True) in full  # full prefills start at 32 tokens
    decodes = [r for r in g if not r[3]]
    assert max(r[2] for r in decodes) == profiles.PROFILE_MAX_BATCH
    assert all(r[2] * r[1] <= profiles.PROFILE_MAX_TOKENS for r in decodes)


@needs_tables
def test_interpolants_stay_close_to_the_published_rows():
    model = profiles.fit(profiles.read_samples())
    report = profiles.fit_report(model)
    assert report["full_prefill_max_rel_err"] < 1e-9  # interpolation through every sample
    assert report["chunked_prefill_mean_rel_err"] < 0.10
    assert report["decode_mean_rel_err"] < 0.10
    # decode attention grows with the KV read
    assert model.decode(128, 2048) > model.decode(128, 512) > model.decode(8, 512)


@needs_tables
def test_attention_rows_have_vidurs_layout():
    model = profiles.fit(profiles.read_samples())
    rows = profiles.attention_rows(model)
    assert len(rows) == len(profiles.grid())
    assert all(len(r) == len(profiles.ATTENTION_COLUMNS) for r in rows[:100])
    col = profiles.ATTENTION_COLUMNS.index
    first = rows[0]
    assert first[col("prefill_chunk_size")] == 64 and first[col("is_prefill")] is True
    assert first[col("time_stats.attn_prefill.median")] == pytest.approx(0.011)


@needs_tables
def test_build_cache_lays_out_a_huggingface_snapshot(tmp_path):
    (tmp_path / "predictors").mkdir()  # stale predictors must go
    profiles.build_cache(tmp_path)
    assert not (tmp_path / "predictors").exists()
    repo = profiles.snapshot_dir(tmp_path, "compute", profiles.COMPUTE_DATASET)
    rev = (repo / "refs" / "main").read_text()
    snap = repo / "snapshots" / rev
    assert (snap / "config.json").exists()
    with lzma.open(snap / "mlp.csv.xz", "rt") as f:
        header = next(csv.reader(f))
    assert "time_stats.mlp_up_proj.median" in header and "num_tokens" in header
    net = profiles.snapshot_dir(tmp_path, "network", profiles.NETWORK_DATASET)
    assert (net / "snapshots" / rev / "all_reduce.csv.xz").exists()
