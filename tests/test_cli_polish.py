"""First-use polish (issue 16), through the installed command as a user runs it: listings that
never cut an identifier, deployments said in instances and GPUs, vLLM's option spellings
(``--request-rate``, ``--num-prompts``, ``--max-concurrency`` with a rate, ``--goodput``,
``--percentile-metrics``, ``--metric-percentiles``), one meaning per option, defaults in
``--help``, progress without a terminal, and outputs that appear only when they are ready.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import servesim

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "examples" / "measured"
SERVESIM = str(Path(sys.executable).parent / "servesim")
BOX = set("│┃┏┓┗┛┡┩└┘┌┐─━╇╈┼")
SMALL = ["--input-len", "200", "--output-len", "20"]


def servesim_cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SERVESIM, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def ok(*args, **kwargs) -> subprocess.CompletedProcess:
    p = servesim_cli(*args, **kwargs)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return p


def one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def summary(p: subprocess.CompletedProcess) -> dict:
    doc = json.loads(p.stdout)
    doc.pop("sim_wall_s")
    return doc


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- API = CLI (item 4)


def test_servesim_error_is_importable_from_the_package():
    from servesim import ServesimError

    assert ServesimError is servesim.errors.ServesimError
    with pytest.raises(servesim.ServesimError, match="workload.num_requests"):
        servesim.simulate({"workload": {"num_requests": 0}})


def test_the_api_and_the_cli_run_the_same_default_workload():
    api = servesim.simulate({"workload": {"num_requests": 20}})
    cli = summary(ok("simulate", "-n", "20", "--json"))
    assert cli["scenario"]["workload"] == servesim.validation.to_data(api.scenario.workload)
    assert cli["workload_description"] == api.workload_description
    assert cli["completed"] == api.summary["completed"] == 20
    assert cli["p99_ttft_ms"] == pytest.approx(api.summary["p99_ttft_ms"])
    # ... and the scenario default is that same workload with its 1,000 requests
    default = servesim.Scenario().workload
    assert (default.preset, default.num_requests) == ("conversation", 1000)
    assert default.arrival == api.scenario.workload.arrival


# --------------------------------------------------------------------------- listings (item 5)


def test_models_piped_is_plain_text_and_never_cuts_an_id():
    p = ok("models", env={"COLUMNS": "80"})
    assert not BOX & set(p.stdout) and "…" not in p.stdout
    from servesim.model import list_models

    firsts = [line.split()[0] for line in p.stdout.splitlines()[2:] if line.strip()]
    for entry in list_models():
        assert entry.id in firsts


def test_models_on_a_narrow_terminal_fold_ids_instead_of_cutting_them():
    p = ok("models", env={"COLUMNS": "80", "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    assert BOX & set(p.stdout)  # a terminal gets the table
    assert "…" not in p.stdout


def test_analyze_piped_is_plain_text_with_whole_file_names(tmp_path):
    long_name = tmp_path / ("a-rather-long-step-log-name-" * 3 + ".jsonl")
    long_name.write_text((MEASURED / "steps.jsonl").read_text())
    p = ok("analyze", long_name, "-m", "llama-3.1-8b", "-g", "h100", env={"COLUMNS": "80"})
    assert not BOX & set(p.stdout) and "…" not in p.stdout
    assert long_name.name in p.stdout


# --------------------------------------------------------------------------- deployment (item 6)


def test_the_deployment_says_instances_and_gpus():
    p = ok("simulate", "-m", "llama-3.1-70b", "--tp", "4", "-n", "5", *SMALL,
           env={"COLUMNS": "200"})  # fmt: skip
    assert "1 instance × TP4 = 4 × H100 (bf16)" in p.stdout
    p = ok("simulate", "--replicas", "2", "-n", "5", *SMALL, env={"COLUMNS": "200"})
    assert "2 instances × TP1 = 2 × H100 (bf16), router round_robin" in p.stdout


# --------------------------------------------------------------------------- vLLM spellings (7)


def test_request_rate_and_num_prompts_are_rate_and_num_requests():
    vllm = summary(ok("simulate", "--request-rate", "7", "--num-prompts", "25", "--json"))
    ours = summary(ok("simulate", "--rate", "7", "-n", "25", "--json"))
    assert vllm == ours and ours["completed"] == 25


def test_max_concurrency_caps_requests_in_flight_under_a_rate(tmp_path):
    out = tmp_path / "run"
    ok("simulate", "--rate", "50", "--max-concurrency", "3", "-n", "60", *SMALL, "-o", out)
    reqs = rows(out / "requests.csv")
    events = sorted(
        [(float(r["arrival_s"]), 1) for r in reqs] + [(float(r["finish_s"]), -1) for r in reqs],
        key=lambda e: (e[0], e[1]),  # a finish frees its slot before a send at the same time
    )
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak == 3
    # First come, first served: sends follow the order the requests were due.
    sent = [float(r["arrival_s"]) for r in sorted(reqs, key=lambda r: int(r["session_id"]))]
    assert sent == sorted(sent)
    doc = json.loads((out / "summary.json").read_text())
    assert doc["scenario"]["workload"]["max_concurrency"] == 3
    assert "at most 3 in flight" in doc["workload_description"]
    # The cap binds: without it the same arrivals overlap far more, and finish sooner.
    free = summary(ok("simulate", "--rate", "50", "-n", "60", *SMALL, "--json"))
    assert free["duration"] < doc["duration"]


def test_max_concurrency_with_a_closed_loop_is_one_line():
    p = servesim_cli("simulate", "--concurrency", "4", "--max-concurrency", "2")
    one_line_error(p, "--concurrency", "--max-concurrency")


def test_goodput_is_vllms_spelling_of_the_slos():
    vllm = summary(ok("simulate", "-n", "40", "--goodput", "ttft:300", "tpot:20", "--json"))
    ours = summary(ok("simulate", "-n", "40", "--slo-ttft-ms", "300", "--slo-tpot-ms", "20",
                      "--json"))  # fmt: skip
    assert vllm == ours and "goodput" in ours
    assert ours["scenario"]["slo"] == {"ttft_ms": 300.0, "tpot_ms": 20.0, "e2el_ms": None}
    same = summary(ok("simulate", "-n", "40", "--goodput", "ttft:300,tpot:20", "--json"))
    assert same == ours


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--goodput", "ttft=300"], ["--goodput", "'ttft=300' is not METRIC:MS"]),
        (["--goodput", "itl:30"], ["--goodput", "'itl:30'"]),
        (["--goodput", "ttft:-1"], ["--goodput"]),
        (["--goodput", "ttft:300", "--slo-ttft-ms", "200"], ["--goodput", "give each target once"]),
        (["--percentile-metrics", "ttft,latency"], ["--percentile-metrics"]),
        (["--metric-percentiles", "50,101"], ["--metric-percentiles"]),
        (["--metric-percentiles", "p99"], ["--metric-percentiles"]),
    ],
)
def test_bad_vllm_spellings_are_one_line(args, needles):
    one_line_error(servesim_cli("simulate", "-n", "5", *args), *needles)


def test_percentile_options_choose_the_table_and_the_summary(tmp_path):
    out = tmp_path / "run"
    p = ok("simulate", "-n", "40", "--percentile-metrics", "ttft,itl",
           "--metric-percentiles", "50,95,99.9", "-o", out, env={"COLUMNS": "200"})  # fmt: skip
    table = p.stdout[p.stdout.index("Latency (ms)") : p.stdout.index("Engine")]
    header = next(line for line in table.splitlines() if "metric" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["metric", "mean", "median", "p95",
                                                           "p99.9"]  # fmt: skip
    assert "TTFT" in table and "ITL" in table and "TPOT" not in table and "E2EL" not in table
    doc = json.loads((out / "summary.json").read_text())
    assert {"p95_ttft_ms", "p99.9_ttft_ms", "p95_itl_ms", "p99.9_itl_ms"} <= set(doc)
    assert "p95_tpot_ms" not in doc
    assert doc["median_ttft_ms"] <= doc["p95_ttft_ms"] <= doc["p99.9_ttft_ms"]


# --------------------------------------------------------------------------- conventions (8)


def test_simulate_help_shows_the_defaults():
    p = ok("simulate", "--help", env={"COLUMNS": "200"})
    # (Batch sizes are the engine's for the GPU: vLLM's by HBM and A100 or not.)
    shown = ("(meta-llama/Llama-3.1-8B)", "vLLM 8192, 2048 on an A100", "vLLM 1024, 256 on an",
             "vLLM 0.9)", "(conversation)",
             "(1000)", "(20)", "--request-rate", "--num-prompts", "--max-concurrency")  # fmt: skip
    for text in shown:
        assert text in p.stdout, text


LONG_OPTIONS = (
    "--num-scheduler-steps",
    "--scheduler-recv-interval",
    "--max-num-batched-tokens",
    "--gpu-memory-utilization",
    "--num-speculative-tokens",
    "--no-async-scheduling",
)


def test_help_in_a_narrow_terminal_shows_every_option_whole():
    """Rich's panels cut long option names at 80 columns (``--num-scheduler-st…``); narrow
    terminals get click's plain layout, which wraps the descriptions instead."""
    p = ok("simulate", "--help", env={"COLUMNS": "80"})
    assert "…" not in p.stdout and "╭" not in p.stdout
    for name in LONG_OPTIONS:
        assert name in p.stdout, name
    # A group named alone prints its help (click's exit status for it, 2), plain too.
    alone = servesim_cli(env={"COLUMNS": "80"})
    assert alone.returncode == 2 and "Usage: servesim" in alone.stdout + alone.stderr
    assert "simulate" in alone.stdout + alone.stderr and "Traceback" not in alone.stderr
    wide = ok("simulate", "--help", env={"COLUMNS": "200"})
    assert "╭" in wide.stdout  # (the rich panels where they fit)
    # Rich's markup escapes are not printed in the plain layout (a pip command copied from
    # it must work), and the rich layout still shows the brackets.
    for width in ("80", "200"):
        for command, extra in (("simulate", "'servesim[fast]'"), ("kernels", "servesim[kernels]")):
            text = " ".join(ok(command, "--help", env={"COLUMNS": width}).stdout.split())
            assert extra in text.replace("│ ", "").replace(" │", "") and "\\[" not in text


def test_no_command_s_rich_help_is_cut_at_the_narrowest_width_that_gets_it():
    from servesim.cli import COMMAND_MODULES, RICH_HELP_MIN_COLUMNS

    width = {"COLUMNS": str(RICH_HELP_MIN_COLUMNS)}
    for command in [*sorted(set(COMMAND_MODULES) - {"version", "trace"}), "trace merge"]:
        p = ok(*command.split(), "--help", env=width)
        assert "╭" in p.stdout, command
        assert "…" not in p.stdout, f"{command}: raise RICH_HELP_MIN_COLUMNS"


def test_model_and_gpu_are_options_everywhere_and_words_where_they_were():
    by_word = ok("estimate", "llama-3.1-8b", "--hardware", "h100", "--input-len", "100",
                 "--output-len", "10", "--json").stdout  # fmt: skip
    by_option = ok("estimate", "-m", "llama-3.1-8b", "-g", "h100", "--input-len", "100",
                   "--output-len", "10", "--json").stdout  # fmt: skip
    assert by_word == by_option
    assert ok("flops", "-m", "llama-3.1-8b", "--input-len", "9", "--output-len", "3").stdout
    assert json.loads(ok("model", "--model", "llama-3.1-8b", "--json").stdout)["num_layers"] == 32
    assert json.loads(ok("hardware", "-g", "h100", "--json").stdout)["name"] == "H100"
    one_line_error(servesim_cli("flops", "--input-len", "9", "--output-len", "3"), "--model")
    one_line_error(
        servesim_cli("flops", "llama-3.1-8b", "-m", "qwen3-8b", "--input-len", "9",
                     "--output-len", "3"),
        "--model", "given twice",
    )  # fmt: skip


def test_out_is_a_folder_and_a_file_name_still_names_the_file(tmp_path):
    log = MEASURED / "steps.jsonl"
    cal = ["calibrate", log, "-m", "llama-3.1-8b", "-g", "h100"]
    ok(*cal, "-o", tmp_path / "cal")
    assert (tmp_path / "cal" / "calibration.yaml").is_file()
    ok(*cal, "-o", tmp_path / "mine.yaml")  # the spelling before the convention
    assert (tmp_path / "mine.yaml").is_file()
    ok(*cal, cwd=tmp_path)
    assert (tmp_path / "calibration.yaml").is_file()

    run = tmp_path / "run"
    ok("simulate", "-n", "10", *SMALL, "-o", run)
    ok("report", run, "-o", tmp_path / "rep")
    assert (tmp_path / "rep" / "report.html").is_file()
    ok("report", run, "-o", tmp_path / "r.html")
    assert (tmp_path / "r.html").is_file()


# --------------------------------------------------------------------------- progress (item 9)


def test_a_run_without_a_terminal_prints_progress_lines_on_stderr():
    p = ok("simulate", "-n", "300", "--json", env={"SERVESIM_PROGRESS_EVERY_S": "0"})
    lines = [line for line in p.stderr.splitlines() if line.startswith("simulating: ")]
    assert lines and "/300 requests (" in lines[-1]
    assert any("s elapsed, about" in line and "s left" in line for line in lines)
    json.loads(p.stdout)  # the summary is untouched
    quiet = ok("simulate", "-n", "300", "--json")  # the default interval: a short run is silent
    assert "simulating" not in quiet.stderr


def test_the_time_left_is_the_rate_since_the_first_request_finished(monkeypatch, capsys):
    """A slow start (numba compiling its kernels, ~10 s on a machine's first compiled run) does
    not stretch the estimate: 61 of 50,000 requests 13 s in, the first of them done at 10 s,
    is 20 a second from then (about 2,497 s left), not 61 in 13 s (10,643 s); a second after
    the first finish is too soon to say."""
    from servesim.cli import progress

    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    monkeypatch.setenv("SERVESIM_PROGRESS_EVERY_S", "0")
    lines = progress.ProgressLines("simulating", 50_000, "requests")
    for t, done in ((5.0, 0), (10.0, 1), (11.0, 21), (13.0, 61)):
        clock[0] = t
        lines(done)
    out = capsys.readouterr().err.splitlines()
    assert out[0] == "simulating: 0/50,000 requests (0%)"
    assert out[1] == "simulating: 1/50,000 requests (0%), 10 s elapsed"  # (no rate yet)
    assert out[2] == "simulating: 21/50,000 requests (0%), 11 s elapsed"  # (1 s of rate)
    assert out[3] == "simulating: 61/50,000 requests (0%), 13 s elapsed, about 2,497 s left"


def test_the_bar_estimates_from_the_rate_since_the_first_request_too():
    """On a terminal the bar's time left follows the same rule (rich's own estimate, over its
    30 s window, would count the slow start): none before the rate spans 2 s, then 20 a second
    since the first finish; a task without the field keeps rich's estimate."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from servesim.cli.progress import bar_columns

    clock = [100.0]
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    bar = Progress(*bar_columns("simulating"), console=console, get_time=lambda: clock[0])
    column = bar.columns[-1]
    run = bar.add_task("run", total=50_000, first=None)
    shown = []
    for t, done, first in ((100.0, 0, None), (110.0, 1, (110.0, 1)), (113.0, 61, (110.0, 1))):
        clock[0] = t
        bar.update(run, completed=done, first=first)
        shown.append(str(column.render(bar.tasks[0])))
    assert shown == ["-:--:--", "-:--:--", "0:41:36"]  # (49,939 at 20/s: 2,496.95 s)
    other = bar.add_task("sweep", total=10)
    clock[0] = 120.0
    bar.update(other, completed=5)
    assert str(column.render(bar.tasks[1])) == str(super(type(column), column).render(bar.tasks[1]))


def test_a_sweep_without_a_terminal_prints_progress_lines(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base:\n  workload: {num_requests: 5}\ngrid:\n  seed: [1, 2, 3]\n")
    p = ok("sweep", sweep, "-j", "1", "-o", tmp_path / "out",
           env={"SERVESIM_PROGRESS_EVERY_S": "0"})  # fmt: skip
    assert "sweep: 3/3 scenarios (100%)" in p.stderr
    p = ok("capacity", "examples/sweeps/llama8b_h100.yaml", "-n", "40", "--slo-ttft-ms", "500",
           "--tolerance", "0.3", env={"SERVESIM_PROGRESS_EVERY_S": "0"})  # fmt: skip
    assert "capacity: 2 probes simulated" in p.stderr


# --------------------------------------------------------------------------- outputs (item 11)


def test_report_png_is_staged_a_failure_keeps_the_previous_plots(tmp_path):
    run = tmp_path / "run"
    ok("simulate", "-n", "10", *SMALL, "-o", run)
    ok("report", run, "--png")
    plots = {p.name: p.read_bytes() for p in (run / "plots").iterdir()}
    assert "latency_cdf.png" in plots
    (run / "plots" / "mine.txt").write_text("not servesim's")  # replaced with the folder
    (run / "steps.csv").write_text("garbage\n")
    one_line_error(servesim_cli("report", run, "--png"), "steps.csv")
    assert {p.name: p.read_bytes() for p in (run / "plots").iterdir()} == {
        **plots,
        "mine.txt": b"not servesim's",
    }
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_a_failed_command_leaves_no_new_output_folder(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    p = servesim_cli("calibrate", bad, "-m", "llama-3.1-8b", "-g", "h100",
                     "-o", tmp_path / "new" / "deeper" / "cal.yaml")  # fmt: skip
    one_line_error(p, "bad.csv")
    assert not (tmp_path / "new").exists()
    # A folder that existed before is kept, whatever happens.
    (tmp_path / "kept").mkdir()
    one_line_error(servesim_cli("calibrate", bad, "-m", "llama-3.1-8b", "-g", "h100",
                                "-o", tmp_path / "kept" / "cal.yaml"), "bad.csv")  # fmt: skip
    assert (tmp_path / "kept").is_dir()


def test_max_concurrency_one_sends_each_request_when_the_last_finished():
    # Exact state: all due at t = 0 (burst), one slot: request k+1 is sent at the (client-side)
    # finish of request k, in the order they were due.
    result = servesim.simulate(
        {"workload": {"num_requests": 6, "input_len": 64, "output_len": 8,
                      "arrival": {"kind": "burst"}, "max_concurrency": 1}}
    )  # fmt: skip
    req = result.records.request_columns()
    order = req["session_id"].argsort()
    arrival, finish = req["arrival_s"][order], req["finish_s"][order]
    assert arrival[0] == 0.0
    assert list(arrival[1:]) == list(finish[:-1])
