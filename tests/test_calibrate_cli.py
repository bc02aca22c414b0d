"""``servesim calibrate``, ``compare`` and ``analyze`` through the CLI: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import servesim.cli.calibrate_cmds  # noqa: F401  (registers the commands until cli/__init__ does)
from servesim.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples" / "measured"
STEPS = str(EXAMPLES / "steps.jsonl")
MODEL = ["--model", "llama-3.1-8b", "--hardware", "h100"]


def run(capsys, args: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_calibrate_writes_the_file_and_prints_the_fit(tmp_path, capsys):
    out_file = tmp_path / "cal.yaml"
    code, out, _ = run(
        capsys, ["calibrate", STEPS, *MODEL, "--software", "vllm 0.11.0", "-o", str(out_file)]
    )
    assert code == 0
    assert "compute_efficiency" in out and "Step-time error" in out
    assert f"wrote {out_file}" in out
    data = yaml.safe_load(out_file.read_text())
    assert data["software"] == "vllm 0.11.0" and data["model"] == "meta-llama/Llama-3.1-8B"
    assert data["status"]["memory_efficiency"] == "fitted"


def test_calibrate_json(tmp_path, capsys):
    code, out, _ = run(
        capsys,
        ["calibrate", STEPS, *MODEL, "-o", str(tmp_path / "c.yaml"), "--holdout", "0.2", "--json"],
    )
    doc = json.loads(out)
    assert code == 0 and doc["num_points"] < 128 and "holdout_after" in doc["quality"]
    assert doc["written_to"] == str(tmp_path / "c.yaml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["calibrate", "FEW", *MODEL], "only 5 measured step(s); a fit needs at least 12"),
        (["calibrate", str(EXAMPLES / "nope.jsonl"), *MODEL], "does not exist"),
        (["calibrate", STEPS, "--model", "llama-3.1-8b", "--hardware", "tpu9"], "hardware"),
        (["calibrate", STEPS, *MODEL, "--tp", "3"], "tp=3"),
        # A value typer checks itself: one line too, not its usage box.
        (["calibrate", STEPS, *MODEL, "--holdout", "0.95"], "--holdout: 0.95 is not in the range"),
        (["compare", str(EXAMPLES / "vllm_bench_serve.json")], "--hardware"),
        (
            [
                "analyze",
                STEPS,
                "--model",
                "llama-3.2-1b",
                "--hardware",
                "h100",
                "--calibration",
                "CAL",
            ],
            "fitted for model",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    if "FEW" in args:
        lines = (EXAMPLES / "steps_rows.jsonl").read_text().splitlines()[:5]
        (tmp_path / "few.jsonl").write_text("\n".join(lines) + "\n")
        args = [a if a != "FEW" else "few.jsonl" for a in args]
    if "CAL" in args:
        run(capsys, ["calibrate", STEPS, *MODEL, "-o", "cal.yaml"])
        args = [a if a != "CAL" else "cal.yaml" for a in args]
    code, _, err = run(capsys, args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err
    if args[0] == "calibrate":
        assert not (tmp_path / "calibration.yaml").exists()  # nothing half written


def test_compare_table_json_and_csv(tmp_path, capsys):
    bench = str(EXAMPLES / "vllm_bench_serve.json")
    code, out, _ = run(capsys, ["compare", bench, "--hardware", "h100", "--seed", "7"])
    assert code == 0
    assert "mean_tpot_ms" in out and "measured" in out and "error" in out
    csv_path = tmp_path / "c.csv"
    code, out, _ = run(
        capsys,
        ["compare", bench, "--hardware", "h100", "--json", "--csv", str(csv_path)],
    )
    doc = json.loads(out)
    assert code == 0 and doc["model"] == "meta-llama/Llama-3.1-8B" and len(doc["rows"]) == 15
    assert csv_path.read_text().startswith("metric,measured,predicted,error_pct\n")


def test_compare_with_a_scenario_file(tmp_path, capsys):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        "model: llama-3.1-8b\nhardware: h100\nscheduler: {max_num_seqs: 64}\n"
        "workload: {preset: conversation, num_requests: 5}\n"
    )
    bench = str(EXAMPLES / "sglang_bench_serving.jsonl")
    code, out, _ = run(capsys, ["compare", bench, "--scenario", str(scenario), "--json"])
    doc = json.loads(out)
    assert code == 0 and any("workload is replaced" in n for n in doc["notes"])


def test_analyze_sweep_and_outputs(tmp_path, capsys):
    out_dir = tmp_path / "an"
    code, out, _ = run(
        capsys,
        ["analyze", STEPS, str(EXAMPLES / "steps_rows.jsonl"), *MODEL, "-o", str(out_dir)],
    )
    assert code == 0
    assert "steps.jsonl" in out and "forward" in out
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "analysis_steps.csv",
        "analysis_sweep.csv",
        "gap_vs_batch.png",
        "phases.png",
    ]
    code, out, _ = run(capsys, ["analyze", STEPS, *MODEL, "--json"])
    doc = json.loads(out)
    assert code == 0 and doc["sources"][0]["steps"] == 128 and doc["written"] == []
