"""The package-level Python API: ``servesim.simulate`` and the lazily exported names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import servesim
from servesim.errors import ServesimError
from servesim.run import simulate as run_simulate
from servesim.scenario import build_scenario

FIELDS = {
    "model": "llama-3.1-8b",
    "hardware": "H100",
    "workload": {
        "num_requests": 20,
        "input_len": 256,
        "output_len": 32,
        "arrival": {"kind": "burst"},
    },
    "seed": 3,
}


def test_simulate_takes_a_dict_and_matches_the_run_module():
    via_package = servesim.simulate(FIELDS)
    direct = run_simulate(build_scenario(FIELDS))
    assert via_package.summary["completed"] == 20
    for key in ("mean_ttft_ms", "p99_itl_ms", "duration", "total_output_tokens"):
        assert via_package.summary[key] == direct.summary[key]


def test_simulate_takes_a_scenario_object_and_a_file(tmp_path: Path):
    scenario = servesim.build_scenario(FIELDS)
    assert isinstance(scenario, servesim.Scenario)
    from_object = servesim.simulate(scenario)
    assert isinstance(from_object, servesim.Result)
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "model: llama-3.1-8b\nhardware: H100\nseed: 3\n"
        "workload: {num_requests: 20, input_len: 256, output_len: 32, arrival: {kind: burst}}\n"
    )
    from_file = servesim.simulate(path)
    assert from_file.summary["mean_e2el_ms"] == from_object.summary["mean_e2el_ms"]
    assert servesim.simulate(str(path)).summary["duration"] == from_object.summary["duration"]


def test_bad_input_names_the_field():
    with pytest.raises(ServesimError, match="scheduler"):
        servesim.simulate({**FIELDS, "scheduler": {"policy": "fifo-magic"}})
    with pytest.raises(ServesimError, match="cannot simulate a list"):
        servesim.simulate([1, 2])  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        servesim.no_such_name  # noqa: B018


def test_a_scenario_built_in_code_is_range_checked_before_it_runs():
    from servesim.scenario import SchedulerSpec

    # A spec's constructor runs its cross-field rules but not the range checks: simulate does.
    scenario = servesim.Scenario(scheduler=SchedulerSpec(block_size=0))
    with pytest.raises(ServesimError, match=r"scheduler.block_size: must be >= 1 \(got 0\)"):
        servesim.simulate(scenario)
    with pytest.raises(ServesimError, match="prefill_tp: applies only with disaggregate"):
        servesim.Scenario(prefill_tp=2)


def test_importing_the_package_loads_no_heavy_dependency():
    code = "import sys, servesim; print(sorted({'numpy', 'msgspec', 'yaml'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_closed_loop_keeps_sending_after_a_refused_request():
    # Half the prompts exceed the served window: each refusal is counted, and the user who
    # sent it goes on with its next request (before, a refusal silently ended the user).
    fields = {
        "max_model_len": 2048,
        "workload": {
            "num_requests": 40,
            "input_len": {"kind": "uniform", "lo": 100, "hi": 4000},
            "output_len": 16,
            "arrival": {"kind": "closed", "concurrency": 4},
        },
    }
    s = run_simulate(build_scenario(fields)).summary
    assert s["num_skipped"] > 5
    assert s["completed"] + s["num_skipped"] == 40
    assert set(s["skipped_reasons"]) == {"longer_than_context"}


def test_numpy_numbers_read_as_the_numbers_they_hold():
    # (a sweep written with np.arange / np.linspace passes numpy scalars)
    import numpy as np

    data = {"tp": np.int64(1), "workload": {"num_requests": np.int64(20),
            "arrival": {"kind": "poisson", "rate": np.float64(20.0)}}}  # fmt: skip
    simulate = servesim.simulate
    got, want = simulate(data).summary, simulate({"workload": {"num_requests": 20}}).summary
    got.pop("sim_wall_s"), want.pop("sim_wall_s")
    assert got == want
    built = servesim.Scenario(tp=np.int64(1), workload=build_scenario(data).workload)
    assert simulate(built).summary["completed"] == 20


def test_on_progress_adds_up_to_every_request_refused_ones_included():
    done: list[int] = []
    lengths = {"kind": "uniform", "lo": 200, "hi": 2000}
    data = {"max_model_len": 1200,
            "workload": {"num_requests": 50, "input_len": lengths, "output_len": 20}}  # fmt: skip
    result = servesim.simulate(data, on_progress=done.append)
    assert 0 < result.summary["num_skipped"] < 50
    assert sum(done) == 50 == result.summary["completed"] + result.summary["num_skipped"]
    with pytest.raises(ServesimError, match="on_progress: must be callable"):
        servesim.simulate({"workload": {"num_requests": 2}}, on_progress=5)
