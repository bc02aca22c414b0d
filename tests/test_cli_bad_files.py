"""Input files that are not what they should be, through the installed console script (issue 16):
not UTF-8, a non-mapping ``workload``, CSV fields and lines too long to be records, numbers
out of range. Each is one line on stderr naming the file and the fix, exit code 2, no
traceback; a sweep's journal with a torn binary tail is resumed past it.

The class as a whole is fuzzed in test_fuzz_inputs.py; the shared readers are
``servesim.textfile``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.errors import ServesimError
from servesim.textfile import MAX_LINE_BYTES, csv_rows, read_text, text_lines

SERVESIM = str(Path(sys.executable).parent / "servesim")
ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "examples" / "measured"

# Random bytes that are not UTF-8 from the first byte on (as `head -c 4096 /dev/urandom`).
GARBAGE = b"\x81" + random.Random(16).randbytes(4095)


def servesim(*args, cwd=None):
    return subprocess.run(
        [SERVESIM, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- not UTF-8


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    assert servesim("simulate", "-n", "5", "--out", run).returncode == 0
    (run / "requests.csv").write_bytes(GARBAGE)
    return run


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["simulate", "--config", "{g}"], "--config"),
        (["simulate", "--replay", "{g_jsonl}"], "trace"),
        (["simulate", "--replay", "{g_csv}", "--trace-format", "csv"], "trace"),
        (["simulate", "--replay", "{g_csv}", "--trace-format", "azure"], "trace"),
        (["simulate", "--calibration", "{g}", "-n", "5"], "calibration"),
        (["hardware", "{g}"], "hardware"),
        (["model", "{g}"], "model"),
        (
            ["estimate", "{g}", "--hardware", "H100", "--input-len", "8", "--output-len", "8"],
            "model",
        ),  # fmt: skip
        (
            [
                "estimate",
                "llama-3.1-8b",
                "--hardware",
                "{g}",
                "--input-len",
                "8",
                "--output-len",
                "8",
            ],
            "hardware",
        ),  # fmt: skip
        (["sweep", "{g}", "--dry-run"], "SWEEP"),
        (["capacity", "{g}", "--slo-ttft-ms", "100"], "SCENARIO"),
        (["plan", "-m", "llama-3.1-8b", "--rate", "1", "--workload", "{g_yaml}"], "--workload"),
        (
            ["compare", str(MEASURED / "vllm_bench_serve.json"), "--scenario", "{g}"],
            "--scenario",
        ),  # fmt: skip
        (["calibrate", "{g_csv}", "--model", "llama-3.1-8b", "--hardware", "H100"], "LOGS"),
        (["report", "{run}"], "requests.csv"),
    ],
)
def test_a_file_that_is_not_utf8_is_one_line(tmp_path, args, names):
    files = {}
    for name in ("g", "g.jsonl", "g.csv", "g.yaml"):
        files[name.replace(".", "_")] = tmp_path / name
        (tmp_path / name).write_bytes(GARBAGE)
    files["run"] = _run_dir(tmp_path) if "{run}" in args else None
    argv = [a.format(**files) for a in args]
    line = assert_one_line_error(servesim(*argv, cwd=tmp_path), names)
    assert "line 1: byte 0x81 at column 1 is not UTF-8 text" in line
    assert "save it as UTF-8" in line


def test_the_error_names_the_line_and_column_of_the_first_bad_byte(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_bytes(b"timestamp,input_tokens,output_tokens\n0,10,5\n1,1\xe9,5\n")
    p = servesim("simulate", "--replay", trace, "--trace-format", "csv", "-n", "5")
    assert_one_line_error(p, "t.csv line 3: byte 0xe9 at column 4 is not UTF-8 text")


def test_a_sweep_resumes_past_a_binary_tail_of_its_journal(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "base:\n  workload: {preset: conversation, num_requests: 8}\n"
        "grid:\n  scheduler.max_num_seqs: [16, 32]\n"
    )
    out = tmp_path / "out"
    assert servesim("sweep", sweep, "-o", out, "-j", "1").returncode == 0
    with (out / "journal.jsonl").open("ab") as f:
        f.write(GARBAGE)  # a crash (or a full disk) left junk after the last record
    again = servesim("sweep", sweep, "-o", out, "-j", "1")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert "0 run now, 2 from the journal" in again.stdout


# --------------------------------------------------------------------------- workload: 5


@pytest.mark.parametrize("flags", [["-n", "50"], ["--rate", "3"], []])
def test_a_workload_that_is_not_a_mapping_names_the_field(tmp_path, flags):
    config = tmp_path / "w.yaml"
    config.write_text("workload: 5\n")
    p = servesim("simulate", "--config", config, *flags)
    assert_one_line_error(p, "w.yaml: workload: must be a mapping")


@pytest.mark.parametrize("flags", [["-n", "50"], ["--rate", "3"], []])
def test_a_workload_named_by_a_missing_file_names_the_file(tmp_path, flags):
    # A string is a preset or a workload file (relative to the scenario file), never ignored.
    config = tmp_path / "w.yaml"
    config.write_text("workload: some.yaml\n")
    p = servesim("simulate", "--config", config, *flags)
    assert_one_line_error(p, "w.yaml: workload", f"{tmp_path / 'some.yaml'} does not exist")


def test_a_trace_given_as_a_workload_points_to_replay(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,10\n")
    p = servesim("simulate", "--workload", trace, "-n", "5")
    assert_one_line_error(p, "--workload", "looks like a request trace", f"--replay {trace}")


@pytest.mark.parametrize("command", [["simulate", "-c"], ["capacity"]])
def test_a_sweep_file_given_as_a_scenario_points_to_sweep(command):
    sweep = ROOT / "examples" / "sweeps" / "hardware_tp.yaml"
    extra = ["--slo-ttft-ms", "100"] if command == ["capacity"] else []
    p = servesim(*command, sweep, *extra)
    assert_one_line_error(p, "is a sweep file", f"servesim sweep {sweep}")


def test_capacity_names_it_too_rather_than_replacing_it_with_the_flag(tmp_path):
    config = tmp_path / "w.yaml"
    config.write_text("workload: 5\n")
    p = servesim("capacity", config, "-n", "20", "--slo-ttft-ms", "100")
    assert_one_line_error(p, "w.yaml: workload: must be a mapping (got 5)")


def test_plan_names_a_workload_file_whose_workload_is_not_a_mapping(tmp_path):
    config = tmp_path / "w.yaml"
    config.write_text("workload: 5\n")
    p = servesim("plan", "-m", "llama-3.1-8b", "--rate", "1", "--workload", config)
    assert_one_line_error(p, "--workload", "workload must be a mapping")


# --------------------------------------------------------------------------- long fields, lines


LONG = "1" * 200_000  # over the csv module's default field limit (131,072)


@pytest.mark.parametrize(
    ("name", "text", "args", "needle"),
    [
        ("long.csv", f"timestamp,input_tokens,output_tokens\n0,{LONG},5\n",
         ["simulate", "--replay", "{f}", "--trace-format", "csv", "-n", "5"],
         "long.csv row 1: input_tokens"),
        ("az.csv", f'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,"{LONG}",5\n',
         ["simulate", "--replay", "{f}", "-n", "5"], "az.csv row 1: ContextTokens"),
        ("ops.csv", f"op,tokens,context,batch,seconds\nstep,{LONG},5,1,0.1\n",
         ["calibrate", "{f}", "--model", "llama-3.1-8b", "--hardware", "H100"],
         "ops.csv row 2: tokens"),
    ],
)  # fmt: skip
def test_a_csv_field_over_the_csv_modules_limit_is_read_and_judged(
    tmp_path, name, text, args, needle
):
    path = tmp_path / name
    path.write_text(text)
    line = assert_one_line_error(
        servesim(*[a.format(f=path) for a in args]), needle, "out of range"
    )
    assert len(line) < 300  # the 200,000-digit value is cut short in the message


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("huge.csv", ["simulate", "--replay", "{f}", "--trace-format", "csv", "-n", "5"]),
        ("huge.jsonl", ["simulate", "--replay", "{f}", "-n", "5"]),
        ("huge.csv", ["calibrate", "{f}", "--model", "llama-3.1-8b", "--hardware", "H100"]),
    ],
)
def test_a_line_longer_than_any_record_stops_the_read_early(tmp_path, name, args):
    path = tmp_path / name
    with path.open("w") as f:  # a header, then one line of 1.5x the cap and no newline
        f.write("timestamp,input_tokens,output_tokens\n" if name.endswith(".csv") else "")
        f.write("9" * (MAX_LINE_BYTES * 3 // 2))
    p = servesim(*[a.format(f=path) for a in args])
    assert_one_line_error(p, f"{name} line", "is longer than 16 MiB")


# --------------------------------------------------------------------------- out-of-range numbers


BIG = "99999999999999999999999"


@pytest.mark.parametrize(
    ("name", "text", "fmt", "needle"),
    [
        ("t.csv", f"timestamp,input_tokens,output_tokens\n0,10,5\n1,{BIG},5\n", "csv",
         f"t.csv row 2: input_tokens is {BIG}, out of range"),
        ("t.jsonl", f'{{"timestamp": 0, "input_tokens": 10, "output_tokens": {BIG}}}\n', "jsonl",
         f"t.jsonl line 1: output_tokens is {BIG}, out of range"),
        ("az.csv", f"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,{BIG},5\n",
         "azure", f"az.csv row 1: ContextTokens is {BIG}, out of range"),
        ("b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
         f"0,ChatGPT,472,{BIG},490,Conversation log\n", "burstgpt",
         f"b.csv row 1: Response tokens is {BIG}, out of range"),
        ("m.jsonl", f'{{"timestamp": 0, "input_length": {BIG}, "output_length": 4, '
         '"hash_ids": []}\n', "mooncake", f"m.jsonl line 1: input_length is {BIG}, out of range"),
        ("s.jsonl", f'{{"start_s": 0, "turns": [{{"input_tokens": {BIG}, "output_tokens": 1}}]}}\n',
         "sessions", "s.jsonl line 1: turns.0.input_tokens: must be <="),
        ("t2.csv", "timestamp,input_tokens,output_tokens\n0,10,5\n1e300,10,5\n", "csv",
         "t2.csv row 2: timestamp is 1e300, out of range"),
        ("az2.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n9999-01-01 00:00:00,10,5\n",
         "azure", "az2.csv row 1: TIMESTAMP is 9999-01-01 00:00:00, out of range"),
    ],
)  # fmt: skip
def test_an_out_of_range_number_in_a_trace_names_file_row_and_column(
    tmp_path, name, text, fmt, needle
):
    path = tmp_path / name
    path.write_text(text)
    p = servesim("simulate", "--replay", path, "--trace-format", fmt, "-n", "5")
    assert_one_line_error(p, needle)


def test_an_out_of_range_count_in_a_step_log_names_the_line(tmp_path):
    lines = (MEASURED / "steps.jsonl").read_text().splitlines()
    rec = next(r for r in map(json.loads, lines) if r.get("type") == "step")
    rec["context_tokens"] = int(BIG)
    log = tmp_path / "steps.jsonl"
    log.write_text(json.dumps(rec) + "\n")
    p = servesim("calibrate", log, "--model", "llama-3.1-8b", "--hardware", "H100")
    assert_one_line_error(p, "steps.jsonl line 1: context_tokens is", "out of range")


def test_a_nan_in_a_calibration_file_is_refused(tmp_path):
    cal = tmp_path / "cal.yaml"
    logs = MEASURED / "steps.jsonl"
    assert servesim("calibrate", logs, "--model", "llama-3.1-8b", "--hardware", "H100",
                    "-o", cal).returncode == 0  # fmt: skip
    text = cal.read_text()
    cal.write_text(text.replace("step_overhead_s: 0.0001", "step_overhead_s: .nan", 1))
    p = servesim("simulate", "--calibration", cal, "-n", "5")
    assert_one_line_error(p, "params.step_overhead_s: must be a finite number")


# --------------------------------------------------------------------------- the shared readers


def test_read_text_drops_a_byte_order_mark_and_refuses_an_oversized_file(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_bytes(b"\xef\xbb\xbfmodel: x\n")
    assert read_text(path) == "model: x\n"
    with pytest.raises(ServesimError, match="--config: a.yaml is larger than"):
        read_text(path, field="--config", name="a.yaml", limit=5)


def test_text_lines_are_bounded_and_numbered(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"ab\n" + b"x" * 50 + b"\ncd")
    lines = text_lines(path, "trace", "t.jsonl", limit=10)
    assert next(lines) == (1, "ab\n")
    with pytest.raises(ServesimError, match="t.jsonl line 2 is longer than"):
        next(lines)
    # errors="replace" (step logs): undecodable bytes are read as U+FFFD, the line is kept.
    path.write_bytes(b"a\xffb\n")
    assert list(text_lines(path, errors="replace")) == [(1, "a\ufffdb\n")]


def test_csv_rows_bound_a_quoted_field_across_lines_and_read_lone_cr_line_ends(tmp_path):
    path = tmp_path / "t.csv"
    with path.open("w") as f:  # a quote never closed: the field runs on past the line cap
        f.write('a,b\n1,"')
        f.writelines("x" * 1023 + "\n" for _ in range(MAX_LINE_BYTES // 1024 + 1))
    with pytest.raises(ServesimError, match="t.csv line [0-9]+: not valid CSV .field larger"):
        list(csv_rows(path, "trace", "t.csv"))
    path.write_bytes(b"a,b\r1,2\r3,4\r")
    assert [row for _, row in csv_rows(path)] == [["a", "b"], ["1", "2"], ["3", "4"]]


def test_a_folder_given_for_an_input_file_is_named_as_not_a_file(tmp_path):
    for args in (("simulate", "-c", tmp_path), ("sweep", tmp_path), ("compare", tmp_path),
                 ("simulate", "--replay", tmp_path), ("simulate", "--workload", tmp_path),
                 ("simulate", "--calibration", tmp_path)):  # fmt: skip
        p = servesim(*args)
        assert_one_line_error(p, f"{tmp_path} is not a file")
        assert "does not exist" not in p.stderr
