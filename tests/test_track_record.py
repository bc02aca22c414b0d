"""servesim's track record on published runs (servesim.track_record, catalog/track_record.json)."""

import json
import subprocess
import sys

import pytest

from servesim import track_record as tr
from servesim.model import load_model
from servesim.run import simulate
from servesim.scenario import build_scenario


@pytest.mark.parametrize(
    ("model", "cls"),
    [
        ("meta-llama/Llama-3.1-8B", "dense < 10B"),
        ("Qwen/Qwen2.5-14B", "dense 10-30B"),
        ("meta-llama/Llama-3.1-70B", "dense 30-100B"),
        ("meta-llama/Llama-3.1-405B", "dense >= 100B"),
        ("mistralai/Mixtral-8x7B-v0.1", "MoE"),
        ("Qwen/Qwen3-30B-A3B", "MoE"),
        ("deepseek-ai/DeepSeek-V3", "MoE + MLA (DeepSeek-V3)"),
        ("openai/gpt-oss-120b", "MoE + MXFP4 (gpt-oss)"),
    ],
)
def test_models_fall_in_their_class(model, cls):
    assert tr.model_class_of(load_model(model)) == cls


def _rows(engine, gpu, cls, errors):
    return [({"engine": engine, "gpu": gpu, "model_class": cls}, e, -e) for e in errors]


def test_the_table_holds_every_level_with_hand_checked_medians():
    rows = _rows("vllm", "H100", "dense < 10B", [0.1, -0.3, 0.2]) + _rows(
        "sglang", "H100", "MoE", [-0.5]
    )
    table = tr.build_table(rows, "test")
    g = table["groups"]
    assert g["engine=vllm|gpu=H100|model_class=dense < 10B"]["metrics"] == 3
    # |error| 0.1, 0.3, 0.2 -> median 0.2; speed bias (here -error) -0.1, 0.3, -0.2 -> -0.1
    assert g["engine=vllm|gpu=H100|model_class=dense < 10B"]["median_abs_error"] == 0.2
    assert g["engine=vllm|gpu=H100|model_class=dense < 10B"]["speed_bias"] == -0.1
    assert g["gpu=H100"]["metrics"] == 4
    assert g["all"]["metrics"] == 4
    assert g["all"]["too_fast_share"] == 0.5  # biases -0.1, 0.3, -0.2, 0.5


def test_lookup_takes_the_most_specific_group_with_enough_metrics():
    n = tr.MIN_METRICS
    rows = (
        _rows("vllm", "H100", "dense < 10B", [0.05] * n)
        + _rows("vllm", "H100", "MoE", [0.4] * (n - 1))  # too few on its own
        + _rows("sglang", "H200", "MoE", [0.3] * n)
    )
    table = tr.build_table(rows, "test")
    got = tr.lookup("vllm", "H100", "dense < 10B", table)
    assert got["group"] == {"engine": "vllm", "gpu": "H100", "model_class": "dense < 10B"}
    assert got["median_abs_error"] == pytest.approx(0.05)
    assert got["source"] == "test"
    # Too few MoE runs on vLLM/H100: all vLLM runs on the H100 stand for it.
    got = tr.lookup("vllm", "H100", "MoE", table)
    assert got["group"] == {"engine": "vllm", "gpu": "H100"}
    assert got["metrics"] == 2 * n - 1
    # A group that leaves the GPU (or the engine) open says so.
    assert tr.describe(tr.lookup("vllm", "B200", "MoE", table)).startswith(
        "vllm (any GPU): 59 metrics"
    )
    # A profile scores against its engine's runs (sglang-0.4 -> sglang).
    assert tr.lookup("sglang-0.4", "H200", "MoE", table)["group"]["engine"] == "sglang"
    # No runs of the engine: the GPU's; an unknown GPU too: all runs.
    assert tr.lookup("lmdeploy", "H200", "MoE", table)["group"] == {
        "gpu": "H200", "model_class": "MoE"}  # fmt: skip
    assert tr.lookup("lmdeploy", "B200", "MoE", table)["group"] == {}
    assert tr.describe(tr.lookup("lmdeploy", "B200", "MoE", table)).startswith(
        "all published runs: 89 metrics"
    )


@pytest.mark.parametrize(
    ("source", "who"),
    [
        ("github gpustack/gpustack docs/performance-lab/qwen3-8b/h100.md", "gpustack/gpustack"),
        ("github NVIDIA/TensorRT-LLM docs/source/performance.md", "NVIDIA/TensorRT-LLM"),
        ("https://github.com/vllm-project/vllm/issues/12315", "vllm-project/vllm"),
        ("https://www.blogs.oracle.com/cloud-infrastructure/post/x", "blogs.oracle.com"),
        ("https://docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance", "docs.nvidia.com"),
        ("a paper, table 3", "a paper, table 3"),
    ],
)  # fmt: skip
def test_a_run_s_publisher_is_its_repository_or_site(source, who):
    assert tr.publisher(source) == who


def test_a_group_stands_only_with_runs_from_enough_publishers():
    n = tr.MIN_METRICS

    def rows(gpu, cls, publishers, bias):
        return [
            ({"engine": "vllm", "gpu": gpu, "model_class": cls, "family": "TTFT",
              "source": publishers[i % len(publishers)]}, -bias, bias)
            for i in range(n)
        ]  # fmt: skip

    table = tr.build_table(
        rows("H100", "dense < 10B", ["one/page"], 2.0)
        + rows("A100-80GB", "dense < 10B", ["two/a", "three/b"], 0.1),
        "test",
    )
    groups = table["groups"]
    assert groups["engine=vllm|gpu=H100|model_class=dense < 10B"]["sources"] == 1
    assert groups["engine=vllm|model_class=dense < 10B"]["sources"] == 3
    assert groups["engine=vllm|model_class=dense < 10B"]["families"]["TTFT"]["sources"] == 3
    # One publisher's 30 metrics do not stand for the H100: vLLM's small dense runs on any GPU do.
    got = tr.lookup("vllm", "H100", "dense < 10B", table)
    assert got["group"] == {"engine": "vllm", "model_class": "dense < 10B"}
    # (30 errors of 2.0 and 30 of 0.1: the median is their mean, 1.05.)
    assert tr.describe(got) == (
        "vllm · dense < 10B (any GPU): 60 metrics from 3 sources, median |error| 105%, "
        "105% optimistic"
    )
    # Two publishers suffice; their TTFT family (10+ metrics, 2 sources) is shown.
    got = tr.lookup("vllm", "A100-80GB", "dense < 10B", table)
    assert got["group"]["gpu"] == "A100-80GB" and got["sources"] == 2
    assert tr.describe_families(got) == "TTFT 10% (10% optimistic)"
    # A family from one publisher is not shown, however many metrics it has.
    single = tr.build_table(rows("H100", "MoE", ["one/page"], 0.3), "test")["groups"]["all"]
    assert single["families"]["TTFT"]["metrics"] == n
    assert tr.describe_families(single) is None


@pytest.mark.parametrize(
    ("fields", "regime"),
    [
        ({"scheduler": {"policy": "static"}, "api_server": False,
          "workload": {"arrival": {"kind": "burst"}}}, "static batch"),
        ({"api_server": False, "workload": {"arrival": {"kind": "burst"}}}, "in process"),
        ({"workload": {"arrival": {"kind": "closed", "concurrency": 4}}},
         "closed loop, <= 4 streams"),
        ({"workload": {"arrival": {"kind": "closed", "concurrency": 5}}},
         "closed loop, > 4 streams"),
        ({"workload": {"arrival": {"kind": "burst"}, "max_concurrency": 2}},
         "closed loop, <= 4 streams"),
        ({"workload": {"arrival": {"kind": "burst"}}}, "burst (rate inf)"),
        ({"workload": {"arrival": {"kind": "poisson", "rate": 2.0}}}, "open loop"),
        ({}, "open loop"),
    ],
)  # fmt: skip
def test_a_scenario_has_one_load_regime(fields, regime):
    assert tr.load_regime(build_scenario(fields)) == regime


def test_each_group_and_load_has_its_metric_families_with_hand_checked_medians():
    def row(fam, load, err):
        group = {"engine": "vllm", "gpu": "H100", "model_class": "dense < 10B"}
        return ({**group, "family": fam, "load": load}, err, -err)

    few = "closed loop, <= 4 streams"
    rows = [row("TTFT", few, -0.5), row("TTFT", few, -0.3), row("TTFT", "open loop", -0.1),
            row("throughput", few, 0.2)]  # fmt: skip
    table = tr.build_table(rows, "test")
    whole = table["groups"]["all"]
    assert whole["metrics"] == 4
    assert list(whole["families"]) == ["TTFT", "throughput"]  # (FAMILIES order)
    assert whole["families"]["TTFT"]["metrics"] == 3
    # TTFT errors -0.5, -0.3, -0.1: median |error| 0.3, speed bias (-error) 0.3, all too fast.
    assert whole["families"]["TTFT"]["median_abs_error"] == pytest.approx(0.3)
    assert whole["families"]["TTFT"]["speed_bias"] == pytest.approx(0.3)
    assert whole["families"]["TTFT"]["too_fast_share"] == 1.0
    assert list(table["loads"]) == [few, "open loop"]  # (LOADS order)
    assert table["loads"][few]["metrics"] == 3
    assert table["loads"][few]["families"]["TTFT"]["median_abs_error"] == pytest.approx(0.4)


def test_lookup_adds_the_runs_of_the_scenarios_load_when_there_are_enough():
    n = tr.MIN_METRICS
    few, many = "closed loop, <= 4 streams", "closed loop, > 4 streams"
    group = {"engine": "vllm", "gpu": "H100", "model_class": "dense < 10B"}
    rows = [({**group, "family": "TTFT", "load": few}, -0.3, 0.4)] * n
    rows += [({**group, "family": "E2E", "load": many}, 0.1, -0.1)] * (n - 1)
    table = tr.build_table(rows, "test")
    got = tr.lookup("vllm", "H100", "dense < 10B", table, load=few)
    assert got["load"]["regime"] == few and got["load"]["metrics"] == n
    assert tr.describe_load(got) == (
        f"{few}: {n} metrics, median |error| 30%, 40% optimistic; TTFT 30% (40% optimistic)"
    )
    assert tr.describe_families(got) == "TTFT 30% (40% optimistic) · E2E 10% (10% pessimistic)"
    # Too few runs of that load: no load line; no load asked: none either.
    assert "load" not in tr.lookup("vllm", "H100", "dense < 10B", table, load=many)
    assert "load" not in tr.lookup("vllm", "H100", "dense < 10B", table)
    labels = [label for label, _ in tr.summary_rows(got)]
    assert labels == ["track record on published runs", "  by metric (median |error|, bias)",
                      "  all runs of this load"]  # fmt: skip


def test_the_shipped_table_counts_every_metric_once_per_level():
    table = tr.shipped_table()
    assert table is not None, "run: python bench/fidelity/run.py --write-track-record"
    groups = table["groups"]
    total = groups["all"]["metrics"]
    assert total >= 1000
    for level in tr.LEVELS[:-1]:
        if len(level) == 1:
            keys = [k for k in groups if k.count("=") == 1 and k.startswith(level[0] + "=")]
            assert sum(groups[k]["metrics"] for k in keys) == total, level
    for stats in groups.values():
        assert 0 <= stats["median_abs_error"] and 0 <= stats["too_fast_share"] <= 1
        assert sum(f["metrics"] for f in stats["families"].values()) == stats["metrics"]
    assert f"{total:,} metrics" in table["source"]
    assert sum(load["metrics"] for load in table["loads"].values()) == total
    assert set(table["loads"]) <= set(tr.LOADS)


def test_a_simulation_reports_its_track_record_unless_calibrated_or_roofline():
    on = simulate(build_scenario({"workload": {"num_requests": 10}})).summary
    record = on["track_record"]
    # (vLLM's runs of small dense models on the H100 come from one publisher: the class's
    # runs on any GPU stand for it.)
    assert record["group"] == {"engine": "vllm", "model_class": "dense < 10B"}
    assert record["metrics"] >= tr.MIN_METRICS
    assert record["sources"] >= tr.MIN_SOURCES
    off = build_scenario({"workload": {"num_requests": 10}, "kernel_tables": False})
    assert "track_record" not in simulate(off).summary


def test_the_summary_table_shows_the_track_record():
    out = subprocess.run(
        [sys.executable, "-m", "servesim", "simulate", "-n", "10", "-m", "openai/gpt-oss-120b",
         "-g", "H200", "--tp", "2", "--engine", "sglang"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "track record on published runs" in out
    assert "by metric" in out and "TTFT" in out
    js = subprocess.run(
        [sys.executable, "-m", "servesim", "simulate", "-n", "10", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    record = json.loads(js)["track_record"]
    assert record["group"]["engine"] == "vllm"
    assert record["load"]["regime"] == "open loop"  # (the default: Poisson arrivals)
    assert "TTFT" in record["families"]
