"""Every file under examples/ through the real command it is meant for (issue 16).

A file added to examples/ without a command here fails
``test_every_example_file_has_a_command``: an example nobody runs is an example that stops
working. Each command runs as a user runs it (the installed console script, from the
repository root, where the examples' relative paths start) with a small request count.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SERVESIM = str(Path(sys.executable).parent / "servesim")

DOCS = {"workloads/README.md"}
"""Files that are documentation, not inputs."""

SIMULATE_N = ["--json", "-n", "30"]

COMMANDS: dict[str, list[str]] = {
    # measured: calibrate, analyze and compare read them (the README's commands)
    "measured/steps.jsonl": ["calibrate", "{f}", "--model", "llama-3.1-8b", "--hardware", "h100",
                             "--holdout", "0.25", "-o", "{tmp}/calibration.yaml"],
    "measured/ops.csv": ["calibrate", "{f}", "--model", "llama-3.1-8b", "--hardware", "h100",
                         "-o", "{tmp}/ops-calibration.yaml"],
    "measured/steps_rows.jsonl": ["analyze", "examples/measured/steps.jsonl", "{f}", "--model",
                                  "llama-3.1-8b", "--hardware", "h100", "-o", "{tmp}/analysis"],
    "measured/vllm_bench_serve.json": ["compare", "{f}", "-g", "h100", "--json"],
    "measured/sglang_bench_serving.jsonl": ["compare", "{f}", "--model", "llama-3.1-8b",
                                            "--hardware", "h100", "--json"],
    "measured/make_examples.py": ["python", "{tmp}/make_examples.py"],
    # scenarios: simulate --config
    "scenarios/closed_loop_70b.yaml": ["simulate", "--config", "{f}", *SIMULATE_N],
    "scenarios/replay_azure_code.yaml": ["simulate", "--config", "{f}", *SIMULATE_N],
    # sweeps: sweep (a few requests per scenario); the base scenario: capacity
    "sweeps/batch_budget_vs_rate.yaml": ["sweep", "{f}", "-n", "8", "-j", "1", "-o", "{tmp}/s1"],
    "sweeps/hardware_tp.yaml": ["sweep", "{f}", "-n", "8", "-j", "1", "-o", "{tmp}/s2"],
    "sweeps/llama8b_h100.yaml": ["capacity", "{f}", "-n", "60", "--slo-ttft-ms", "500",
                                 "--slo-tpot-ms", "30", "--tolerance", "0.2", "--json"],
    # workload files: simulate --workload (capacity, sweep and plan take them too: see below)
    "workloads/agentic_sessions.yaml": ["simulate", "--workload", "{f}", *SIMULATE_N],
    "workloads/closed_loop.yaml": ["simulate", "--workload", "{f}", *SIMULATE_N],
    "workloads/conversation.yaml": ["simulate", "--workload", "{f}", *SIMULATE_N],
    "workloads/replay_custom_csv.yaml": ["simulate", "--workload", "{f}", *SIMULATE_N],
    "workloads/replay_mooncake.yaml": ["simulate", "--workload", "{f}", *SIMULATE_N],
    # trace files: simulate --replay (requests.csv needs its columns named: its workload file)
    "workloads/azure_llm_2023_code_sample.csv": ["simulate", "--replay", "{f}", "--rate-scale",
                                                 "2", *SIMULATE_N],
    "workloads/burstgpt_sample.csv": ["simulate", "--replay", "{f}", *SIMULATE_N],
    "workloads/mooncake_sample.jsonl": ["simulate", "--replay", "{f}", *SIMULATE_N],
    "workloads/sessions_sample.jsonl": ["simulate", "--replay", "{f}", *SIMULATE_N],
    "workloads/requests.csv": ["simulate", "--workload",
                               "examples/workloads/replay_custom_csv.yaml", *SIMULATE_N],
    "workloads/prompt_lengths.txt": ["simulate", "--input-len", "empirical:path={f}",
                                     "--output-len", "32", *SIMULATE_N],
}  # fmt: skip


def run(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    cmd = [a.replace("{tmp}", str(tmp)) for a in args]
    cmd = [sys.executable, *cmd[1:]] if cmd[0] == "python" else [SERVESIM, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_every_example_file_has_a_command():
    files = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.is_file()}
    files = {f for f in files if "__pycache__" not in f}
    assert files - DOCS == set(COMMANDS), "add the new example's command to COMMANDS"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_example_runs_through_its_command(name, tmp_path):
    if name.endswith(".py"):  # regenerates its folder: run a copy, so the repository is kept
        shutil.copy(EXAMPLES / name, tmp_path)
    args = [a.replace("{f}", f"examples/{name}") for a in COMMANDS[name]]
    p = run(args, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    if args[0] == "simulate":
        assert json.loads(p.stdout)["completed"] > 0


def test_no_example_reads_outside_the_repository():
    """A user's clone has examples/ but not the ../shared data folder of servesim's own CI."""
    for path in EXAMPLES.rglob("*"):
        if path.suffix in (".yaml", ".md", ".py"):
            assert "../shared" not in path.read_text(), path
    assert "../shared" not in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["capacity", "examples/sweeps/llama8b_h100.yaml", "--workload",
         "examples/workloads/conversation.yaml", "-n", "100", "--slo-ttft-ms", "300",
         "--slo-tpot-ms", "20", "--tolerance", "0.2", "--json"],
        ["plan", "-m", "llama-3.1-8b", "--rate", "2", "--slo-ttft-ms", "2000", "-g", "H100",
         "--max-gpus", "1", "--max-num-batched-tokens", "8192", "--workload",
         "examples/workloads/conversation.yaml", "-n", "30", "--json"],
    ],
    ids=["capacity", "plan"],
)  # fmt: skip
def test_a_workload_file_is_taken_wherever_a_workload_is(args, tmp_path):
    p = run(args, tmp_path)
    assert p.returncode == 0, p.stderr
    json.loads(p.stdout)
