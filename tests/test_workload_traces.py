"""Trace readers and replay: the public Azure traces, example files, every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from servesim.errors import ServesimError
from servesim.workload import build_workload, read_sessions, read_trace, select_rows
from servesim.workload.fit_presets import main as fit_main
from servesim.workload.traces import detect_format

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workloads"


def azure(name: str) -> Path:
    path = TRACES / f"azure_llm_2023_{name}.csv"
    if not path.is_file():
        pytest.skip(f"public trace {path} not present")
    return path


def replay(**spec) -> list:
    return list(build_workload(spec, np.random.default_rng(0)))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- Azure 2023


@pytest.mark.parametrize(("name", "rows"), [("conv", 19_366), ("code", 8_819)])
def test_azure_trace_reads_every_row(name, rows):
    table = read_trace(azure(name))
    assert table.format == "azure"
    assert len(table) == rows
    assert table.timestamps_s[0] == 0.0
    assert (np.diff(table.timestamps_s) >= 0).all()
    assert table.input_tokens.min() >= 1 and table.output_tokens.min() >= 1
    assert table.hash_ids is None


def test_azure_timestamps_are_seconds_from_the_first_request():
    table = read_trace(azure("conv"))
    # 18:15:46.6805900 → 18:15:50.9951690 and, last, 19:14:08.4025270
    assert table.timestamps_s[1] == pytest.approx(4.314579, abs=1e-6)
    assert table.duration_s == pytest.approx(3501.721937, abs=1e-6)
    assert (table.input_tokens[0], table.output_tokens[0]) == (374, 44)


def test_rate_scale_halves_the_duration():
    path = azure("conv")
    normal = replay(trace=str(path))
    fast = replay(trace=str(path), rate_scale=2)
    assert len(fast) == len(normal)
    assert fast[-1].start_s == pytest.approx(normal[-1].start_s / 2)
    assert [s.turns for s in fast[:50]] == [s.turns for s in normal[:50]]


def test_time_window_and_max_requests():
    path = azure("conv")
    table = read_trace(path)
    inside = int(((table.timestamps_s >= 600) & (table.timestamps_s < 1200)).sum())
    out = replay(trace=str(path), time_window=[600, 1200])
    assert len(out) == inside
    assert out[0].start_s == 0.0 and out[-1].start_s < 600
    assert len(replay(trace=str(path), time_window=[600, 1200], max_requests=10)) == 10


def test_empty_window_is_an_error():
    with pytest.raises(ServesimError, match="no requests .* in \\[5000.0, 6000.0\\]"):
        replay(trace=str(azure("code")), time_window=[5000, 6000])


def test_trace_can_be_re_timed_by_an_arrival_process():
    out = replay(
        trace=str(azure("code")), max_requests=100, arrival={"kind": "constant", "rate": 10}
    )
    assert [s.start_s for s in out[:3]] == pytest.approx([0.0, 0.1, 0.2])
    table = read_trace(azure("code"))
    assert [s.turns[0].input_tokens for s in out] == table.input_tokens[:100].tolist()


def test_trace_in_a_closed_loop():
    out = replay(
        trace=str(azure("code")), max_requests=10, arrival={"kind": "closed", "concurrency": 2}
    )
    assert [len(s.turns) for s in out] == [5, 5]


def test_fitting_command_runs(capsys):
    assert fit_main([str(azure("code"))]) == 0
    assert "input (8819 rows): (3, 17," in capsys.readouterr().out


# --------------------------------------------------------------------------- BurstGPT


def test_burstgpt_example():
    path = EXAMPLES / "burstgpt_sample.csv"
    assert detect_format(path) == "burstgpt"
    table = read_trace(path)
    assert len(table) == 8 and table.num_clamped == 1
    assert table.timestamps_s.tolist() == [0, 2, 2, 5, 9, 11, 16, 20]
    assert table.output_tokens[2] == 1  # "Response tokens" 0 counted as 1 token
    assert table.input_tokens.tolist()[:2] == [472, 1013]


def test_zero_token_policies():
    path = EXAMPLES / "burstgpt_sample.csv"
    dropped = read_trace(path, zero_tokens="drop")
    assert len(dropped) == 7 and dropped.num_dropped == 1
    with pytest.raises(ServesimError, match="row 3: Response tokens is 0"):
        read_trace(path, zero_tokens="error")


# --------------------------------------------------------------------------- Mooncake


def test_mooncake_example():
    path = EXAMPLES / "mooncake_sample.jsonl"
    assert detect_format(path) == "mooncake"
    out = replay(trace=str(path))
    assert [s.start_s for s in out] == pytest.approx([0, 0.25, 0.9, 1.4, 3.0, 3.1])
    first = out[0].turns[0]
    assert first.hash_block_size == 512
    assert first.hash_ids == (0, 1, 2)
    assert (first.input_tokens, first.output_tokens) == (1500, 40)
    # requests 0, 1, 3, 5 share the leading blocks 0, 1
    assert [s.turns[0].hash_ids[:2] for s in out].count((0, 1)) == 4


def test_mooncake_rate_scale_and_window():
    path = EXAMPLES / "mooncake_sample.jsonl"
    out = replay(trace=str(path), time_window=[0.5, 3.05], rate_scale=4)
    assert [s.start_s for s in out] == pytest.approx([0, 0.5 / 4, 2.1 / 4])


# --------------------------------------------------------------------------- generic


def test_generic_csv_with_column_mapping():
    spec = dict(
        trace=str(EXAMPLES / "requests.csv"),
        timestamp_col="arrival_s",
        input_col="prompt",
        output_col="completion",
    )
    out = replay(**spec)
    assert [s.turns[0].input_tokens for s in out] == [812, 96, 2048, 400, 1500]
    assert out[1].start_s == pytest.approx(0.35)


def test_csv_hash_ids_and_datetime_timestamps(tmp_path):
    path = write(
        tmp_path,
        "t.csv",
        "timestamp,input_tokens,output_tokens,hash_ids\n"
        '2024-05-10T10:00:01.5,20,4,"[7, 8]"\n'
        "2024-05-10T10:00:00,20,4,7 9\n",
    )
    table = read_trace(path, hash_block_size=16)
    assert table.timestamps_s.tolist() == [0.0, 1.5]  # sorted by time
    assert table.hash_ids == ((7, 9), (7, 8))


def test_jsonl_with_ms_timestamps(tmp_path):
    lines = [{"t": 1000, "in": 10, "out": 3}, {"t": 3500, "in": 11, "out": 4}]
    path = write(tmp_path, "t.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    table = read_trace(
        path, timestamp_col="t", input_col="in", output_col="out", timestamp_unit="ms"
    )
    assert table.format == "jsonl"
    assert table.timestamps_s.tolist() == [0.0, 2.5]


def test_select_rows_is_pure():
    table = read_trace(EXAMPLES / "burstgpt_sample.csv")
    fast = select_rows(table, rate_scale=2)
    assert fast.duration_s == 10 and table.duration_s == 20


# --------------------------------------------------------------------------- sessions files


def test_sessions_example():
    out = replay(trace=str(EXAMPLES / "sessions_sample.jsonl"))
    assert [s.session_id for s in out] == [1, 2, 3]
    assert [s.start_s for s in out] == [0.0, 1.5, 7.25]
    assert out[0].think_times_s == (4.0, 12.5)
    assert [t.input_tokens for t in out[1].turns] == [3000, 3300, 3600, 3950]
    for s in out:
        for prev, turn in zip(s.turns, s.turns[1:], strict=False):
            full = prev.num_full_blocks
            assert turn.hash_ids[:full] == prev.hash_ids[:full]
    assert out[2].turns[0].hash_ids == ()  # a lone turn is unique content


def test_sessions_without_context_extension():
    out = replay(trace=str(EXAMPLES / "sessions_sample.jsonl"), sessions_extend_context=False)
    first, second = out[0].turns[:2]
    assert not set(first.hash_ids) & set(second.hash_ids)


def test_sessions_max_requests_cuts_the_last_session_and_window_selects():
    out = replay(trace=str(EXAMPLES / "sessions_sample.jsonl"), max_requests=5)
    assert [len(s.turns) for s in out] == [3, 2]
    out = replay(trace=str(EXAMPLES / "sessions_sample.jsonl"), time_window=[1, 10], rate_scale=2)
    assert [s.start_s for s in out] == [0.0, (7.25 - 1.5) / 2]
    assert out[0].think_times_s == (0.8, 0.8, 1.1)  # think times are not scaled


def test_sessions_in_closed_loop():
    out = replay(
        trace=str(EXAMPLES / "sessions_sample.jsonl"),
        arrival={"kind": "closed", "concurrency": 1, "think_time_s": 9},
    )
    assert len(out) == 1 and len(out[0].turns) == 8
    assert out[0].think_times_s == (4.0, 12.5, 9.0, 0.8, 0.8, 1.1, 9.0)


def test_sessions_file_explicit_ids(tmp_path):
    line = {
        "start_s": 3,
        "hash_block_size": 4,
        "turns": [{"input_tokens": 8, "output_tokens": 1, "hash_ids": [5, 6, 7]}],
    }
    path = write(tmp_path, "s.jsonl", json.dumps(line) + "\n")
    (session,) = read_sessions(path)
    assert session.start_s == 0
    (out,) = replay(trace=str(path), trace_format="sessions")
    assert out.turns[0].hash_ids == (5, 6, 7) and out.turns[0].hash_block_size == 4


# --------------------------------------------------------------------------- bad input


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(ServesimError, match=f"{missing} does not exist"):
        replay(trace=str(missing))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1,2,3\n4,5,-3\n", "t.csv row 2: GeneratedTokens is -3"),
        ("1,2,3\n4,x,3\n", "t.csv row 2: ContextTokens is 'x', not a number"),
        ("1,2,3\n4,,3\n", "t.csv row 2: ContextTokens is missing"),
        ("1,2,3\n4,5\n", "t.csv row 2: GeneratedTokens is missing"),
        ("1,2,3\n4,5,2.5\n", "t.csv row 2: GeneratedTokens is 2.5, not a whole number"),
        ("1,2,3\n4,5,nan\n", "t.csv row 2: GeneratedTokens is missing"),
        ("1,2,3\n4,-1,3\n", "t.csv row 2: ContextTokens is -1"),
    ],
)
def test_bad_csv_rows(tmp_path, body, message):
    path = write(tmp_path, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + body)
    with pytest.raises(ServesimError, match=message):
        read_trace(
            path,
            "csv",
            timestamp_col="TIMESTAMP",
            input_col="ContextTokens",
            output_col="GeneratedTokens",
            timestamp_unit="s",
        )


def test_bad_azure_timestamp(tmp_path):
    path = write(
        tmp_path,
        "a.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,3,4\nyesterday,3,4\n",
    )
    with pytest.raises(ServesimError, match="a.csv row 2: TIMESTAMP is 'yesterday'"):
        read_trace(path)


def test_missing_column_lists_the_columns(tmp_path):
    path = write(tmp_path, "t.csv", "when,in,out\n0,1,2\n")
    with pytest.raises(ServesimError) as err:
        read_trace(path, "csv")
    assert str(err.value) == (
        "timestamp_col: t.csv has no column 'timestamp': the csv format reads columns "
        "timestamp, input_tokens, output_tokens; its header is 'when,in,out' "
        "(check --trace-format, or set timestamp_col to its name)"
    )


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ['{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [1]}', "{oops"],
            "m.jsonl line 2: not valid JSON",
        ),
        (
            ['{"timestamp": 0, "input_length": 5, "hash_ids": [1]}'],
            "m.jsonl line 1: output_length is missing",
        ),
        (
            ['{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": "x"}'],
            "line 1: hash_ids is not a list",
        ),
        (
            ['{"timestamp": 0, "input_length": 600, "output_length": 2, "hash_ids": [1, 2, 3]}'],
            "line 1: hash_ids has 3 ids but 600 \\+ 2 tokens fill only 2 blocks of 512",
        ),
        (
            ['{"timestamp": "soon", "input_length": 6, "output_length": 2, "hash_ids": []}'],
            "line 1: timestamp is 'soon', not a number",
        ),
        (
            ['{"timestamp": 0, "input_length": null, "output_length": 2, "hash_ids": []}'],
            "line 1: input_length is missing",
        ),
        (["[1, 2]"], "line 1: expected a JSON object"),
    ],
)
def test_bad_mooncake_lines(tmp_path, lines, message):
    path = write(tmp_path, "m.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(ServesimError, match=message):
        read_trace(path, "mooncake")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"start_s": 0, "turns": []}, "line 1: turns"),
        (
            {"start_s": 0, "turns": [{"input_tokens": 5, "output_tokens": 0}]},
            "line 1: turns.0.output_tokens",
        ),
        (
            {"start_s": 0, "turns": [{"input_tokens": 5, "output_tokens": 1, "think_time_s": 2}]},
            "turns.0.think_time_s is set",
        ),
        ({"start_s": -1, "turns": [{"input_tokens": 5, "output_tokens": 1}]}, "line 1: start_s"),
        (
            {"start_s": 0, "turns": [{"input_tokens": 5, "output_tokens": 1, "extra": 1}]},
            "line 1: turns.0.extra",
        ),
        (
            {
                "start_s": 0,
                "turns": [{"input_tokens": 30, "output_tokens": 2, "hash_ids": [1, 2, 3]}],
            },
            "line 1: turns.0.hash_ids has 3 ids but 30 \\+ 2 tokens fill only 2 blocks of 16",
        ),
    ],
)
def test_bad_sessions_lines(tmp_path, line, message):
    path = write(tmp_path, "s.jsonl", json.dumps(line) + "\n")
    with pytest.raises(ServesimError, match=message):
        replay(trace=str(path), trace_format="sessions")


def test_repeated_session_ids(tmp_path):
    line = json.dumps(
        {"session_id": 4, "start_s": 0, "turns": [{"input_tokens": 5, "output_tokens": 1}]}
    )
    path = write(tmp_path, "s.jsonl", f"{line}\n{line}\n")
    with pytest.raises(ServesimError, match="session_id values repeat"):
        read_sessions(path)


def test_unknown_suffix_and_format(tmp_path):
    path = write(tmp_path, "t.parquet", "")
    with pytest.raises(ServesimError, match="set trace_format"):
        replay(trace=str(path))
    csv_path = write(tmp_path, "t.csv", "a\n1\n")
    with pytest.raises(ServesimError, match="unknown trace format 'xml'"):
        read_trace(csv_path, "xml")


def test_empty_trace(tmp_path):
    path = write(tmp_path, "t.csv", "timestamp,input_tokens,output_tokens\n")
    with pytest.raises(ServesimError, match="no requests"):
        read_trace(path)


def test_errors_happen_at_build_time_not_mid_stream(tmp_path):
    path = write(tmp_path, "t.csv", "timestamp,input_tokens,output_tokens\n0,1,-1\n")
    with pytest.raises(ServesimError):
        build_workload({"trace": str(path)}, np.random.default_rng(0))
