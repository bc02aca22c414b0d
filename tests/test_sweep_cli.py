"""`servesim sweep`, `capacity` and `plan` as a user runs them (a separate process each)."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
# NOTE: imports the command module itself, so these tests do not depend on its registration
# in servesim.cli.__init__ (the same `main` the console script runs).
RUN = "import sys, servesim.cli.sweep_cmds; from servesim.cli import main; main(sys.argv[1:])"

SMALL = """
base:
  workload: {preset: conversation, num_requests: 40}
grid:
  scheduler.max_num_batched_tokens: [512, 8192]
  workload.arrival.rate: %s
"""


def servesim(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}  # tables on one line each
    return subprocess.run([sys.executable, "-c", RUN, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env)  # fmt: skip


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_writes_tables_and_resumes(tmp_path):
    sweep = tmp_path / "small.yaml"
    sweep.write_text(SMALL % "[4, 30]")
    p = servesim("sweep", sweep, "--workers", 2, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "small-results"
    table = rows(out / "results.csv")
    assert [r["index"] for r in table] == ["0", "1", "2", "3"]
    assert {"scheduler.max_num_batched_tokens", "workload.arrival.rate", "p99_ttft_ms",
            "request_throughput", "usd_per_hour"} <= set(table[0])  # fmt: skip
    assert (out / "results.parquet").is_file() and (out / "journal.jsonl").is_file()
    assert "4 run now with local ×2" in p.stdout

    # Nothing left to run: not even a (dead) Ray cluster is needed.
    again = servesim("sweep", sweep, "-o", out, "--ray", f"127.0.0.1:{closed_port()}")
    assert again.returncode == 0, again.stderr
    assert "resuming: 4 of 4" in again.stderr and "0 run now, 4 from the journal" in again.stdout


def test_dry_run_lists_scenarios_without_running(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SMALL % "[4, 8, 16]")
    p = servesim("sweep", sweep, "--dry-run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "6 scenarios, all valid; none run" in p.stdout
    # A plan, not results: titled so, every row "planned" (nothing ran, nothing is "ok").
    assert "Plan (dry run: nothing simulated)" in p.stdout and "Results" not in p.stdout
    assert p.stdout.count("planned") == 6 and " ok " not in p.stdout
    assert not (tmp_path / "s-results").exists()


def test_num_requests_overrides_the_base_workload_of_every_scenario(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SMALL % "[4]")
    p = servesim("sweep", sweep, "-n", 7, "-j", 1, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert {r["completed"] for r in rows(tmp_path / "s-results" / "results.csv")} == {"7"}


def test_an_inline_base_may_name_a_workload_file_relative_to_the_sweep(tmp_path):
    (tmp_path / "w.yaml").write_text("preset: code\nnum_requests: 6\n")
    sweep = tmp_path / "sub" / "s.yaml"
    sweep.parent.mkdir()
    sweep.write_text("base:\n  workload: ../w.yaml\ngrid:\n  workload.arrival.rate: [4, 8]\n")
    p = servesim("sweep", sweep, "-j", 1, "-o", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert {r["completed"] for r in rows(tmp_path / "out" / "results.csv")} == {"6"}


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("{tpp: [1, 2]}", "unknown axis 'tpp'"),
        ("{scheduler.max_batch: [1]}", "scheduler has no field 'max_batch'"),
        ("{}", "the sweep is empty"),
        ("{tp: []}", "axis 'tp' has no values"),
        ("{tp: [1, -1]}", "sweep scenario 1 (tp=-1)"),
    ],
)
def test_bad_sweeps_are_one_line_and_exit_2(tmp_path, grid, message):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(f"grid: {grid}\n")
    p = servesim("sweep", sweep, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1
    assert message in p.stderr
    if "unknown axis 'tpp'" in message:
        assert "valid top-level fields: model, hardware, tp" in p.stderr


def test_dead_ray_address_is_exit_2_and_keeps_partial_results(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SMALL % "[4]")
    out = tmp_path / "out"
    assert servesim("sweep", sweep, "-o", out, "--workers", 1).returncode == 0
    sweep.write_text(SMALL % "[4, 30]")  # two more scenarios, for a cluster that is down
    port = closed_port()
    p = servesim("sweep", sweep, "-o", out, "--ray", f"127.0.0.1:{port}")
    assert p.returncode == 2
    assert f"the Ray cluster at 127.0.0.1:{port} does not answer" in p.stderr
    assert "2 of 4 finished scenarios are kept" in p.stderr
    assert len(rows(out / "results.csv")) == 2


def test_a_sweep_that_never_started_says_only_why(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SMALL % "[4]")
    p = servesim("sweep", sweep, "--workers", 0, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip() == "error: --workers: must be >= 1, got 0"


def test_capacity_reports_rate_tolerance_and_binding_constraint(tmp_path):
    scenario = tmp_path / "sc.yaml"
    scenario.write_text("workload: {preset: conversation, num_requests: 200,"
                        " arrival: {kind: poisson, rate: 10}}\n")  # fmt: skip
    p = servesim("capacity", scenario, "--slo-ttft-ms", 300, "--slo-tpot-ms", 40,
                 "--tolerance", 0.1, "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["capacity_rps"] < doc["failing_rps"] <= doc["capacity_rps"] * 1.1
    assert doc["binding"] in ("ttft_ms", "tpot_ms") and doc["tolerance"] == 0.1
    text = servesim("capacity", scenario, "--slo-ttft-ms", 300, "--slo-tpot-ms", 40,
                    "--tolerance", 0.1).stdout  # fmt: skip
    assert "capacity:" in text and "bisection tolerance 10%" in text
    assert "binding constraint:" in text


def test_capacity_unreachable_names_the_constraint(tmp_path):
    scenario = tmp_path / "sc.yaml"
    scenario.write_text("workload: {preset: conversation, num_requests: 100}\n")
    p = servesim("capacity", scenario, "--slo-ttft-ms", 5)
    assert p.returncode == 2
    assert "out of reach" in p.stderr and "p99 TTFT > 5 ms (best found" in p.stderr


def test_plan_prints_cheapest_and_frontier_and_plots(tmp_path):
    png = tmp_path / "plan.png"
    args = (
        "plan",
        "-m",
        "llama3.1-8b",
        "-r",
        30,
        "--slo-ttft-ms",
        500,
        "--slo-tpot-ms",
        40,
        "-g",
        "H100,H200",
        "--max-gpus",
        2,
        "-n",
        150,
        "--max-num-batched-tokens",
        8192,
    )
    p = servesim(*args, "-o", png, "--workers", 2)
    assert p.returncode == 0, p.stderr
    assert "cheapest:" in p.stdout and "Pareto frontier" in p.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(servesim(*args, "--json", "--workers", 1).stdout)
    best = doc["cheapest"]
    assert best["meets"] and best["gpus"] <= 2
    assert best["usd_per_hour"] == min(e["usd_per_hour"] for e in doc["evaluated"] if e["meets"])
    assert doc["frontier"][0]["usd_per_hour"] == best["usd_per_hour"]


def test_plan_unreachable_is_exit_2_with_best_found():
    p = servesim("plan", "-m", "llama3.1-8b", "-r", 30, "--slo-tpot-ms", 2, "-g", "H100",
                 "--max-gpus", 1, "-n", 100, "--max-num-batched-tokens", 8192)  # fmt: skip
    assert p.returncode == 2
    assert "no deployment of at most 1 GPUs meets p99 TPOT <= 2 ms" in p.stderr
    assert "best found: 1 instance × TP1 = 1 × H100" in p.stderr


def test_example_sweeps_are_valid():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if "grid" not in path.read_text() and "cases" not in path.read_text():
            continue  # a scenario the sweeps use as their base
        p = servesim("sweep", path, "--dry-run")
        assert p.returncode == 0, (path, p.stderr)


def test_a_missing_base_file_is_named_base(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base: gone.yaml\ngrid: {tp: [1]}\n")
    p = servesim("sweep", sweep, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr == f"error: base: scenario file {tmp_path / 'gone.yaml'} does not exist\n"


# Two scenarios that finish at once, then two that would run for minutes.
SLOW_TAIL = """
base:
  workload: {num_requests: 5, input_len: 10, output_len: 2, arrival: {kind: poisson, rate: 1000}}
grid:
  workload.num_requests: [5, 6, 3000000, 3000001]
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_writes_the_finished_results_and_stops_cleanly(tmp_path, workers):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SLOW_TAIL)
    out = tmp_path / "out"
    journal = out / "journal.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, "sweep", str(sweep), "-o", str(out), "-j", str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        # NOTE: not a sleep: the signal goes once the quick two are journaled, while the slow
        # two (minutes each) are certainly still running.
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if journal.is_file() and journal.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM, err  # ended by the signal, after its cleanup
    assert "interrupted: 2 of 4 finished scenarios are kept" in err
    assert "Traceback" not in err and "leaked" not in err, err
    assert [r["index"] for r in rows(out / "results.csv")] == ["0", "1"]
    assert sorted(p.name for p in out.iterdir()) == [
        "journal.jsonl", "results.csv", "results.parquet"
    ]  # fmt: skip
    assert stopped_in < 30  # the running scenarios were stopped, not waited for
