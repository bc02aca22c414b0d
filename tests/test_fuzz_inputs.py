"""Every file a user hands servesim, fuzzed: random bytes, truncated files, extreme numbers.

The contract (README, "A user mistake"): bad input is one line on stderr naming the file or
field and the fix, exit code 2, no traceback, and nothing half-written; input that happens to
be valid runs (exit 0). Each command runs in-process through ``servesim.cli.main``, the
console script's entry point, so an example costs milliseconds, not an interpreter start.
"""

from __future__ import annotations

import functools
import io
import os
import re
import tempfile
import traceback
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import servesim.cli.commands  # noqa: F401  (registers every command, as `servesim --help` does)
from servesim.cli import main

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ROOT / "examples" / "workloads"
MEASURED = ROOT / "examples" / "measured"

FUZZ = settings(
    # SERVESIM_FUZZ_EXAMPLES=2000 for a deeper search than the suite's few seconds per reader.
    max_examples=int(os.environ.get("SERVESIM_FUZZ_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Numbers a reader must refuse or carry without overflow: past int64/uint64/float range, a
# Python int with more digits than int() parses, non-finite spellings, zero and negatives.
EXTREMES = [
    "99999999999999999999999",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1e400",
    "-1e400",
    "1e-400",
    "1" + "0" * 5000,
    "nan",
    "inf",
    "-1",
    "0",
    "2.5",
]
_NUMBER = re.compile(rb"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


# --------------------------------------------------------------------------- running the CLI


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``servesim ARGS`` in this process; an exception that
    escapes ``main`` is a traceback on stderr, as the console script would print it."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with warnings.catch_warnings(record=True) as caught, redirect_stdout(out), redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except BaseException:  # noqa: BLE001 - the test reports it
            traceback.print_exc(file=err)
            code = 1
    # A Python warning reaches a user's terminal as stderr lines too.
    text = err.getvalue() + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return code, out.getvalue(), text


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), temp folders included."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


def check_contract(args: list[str], workdir: Path, ok_allowed: bool = True) -> None:
    """Run ``args``; assert exit 0 (valid input) or 2 with one line and nothing written."""
    before = snapshot(workdir)
    code, _, err = run_cli(args)
    shown = f"servesim {' '.join(args)}\n--- stderr ---\n{err}"
    assert "Traceback" not in err, shown
    if code == 0 and ok_allowed:
        return
    assert code == 2, shown
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), shown
    assert lines[0].startswith("error: "), shown
    assert snapshot(workdir) == before, f"{shown}\nthe working folder changed"


# --------------------------------------------------------------------------- valid seeds


def _scenario() -> bytes:
    return (
        b"model: meta-llama/Llama-3.1-8B\nhardware: H100\ntp: 1\n"
        b"scheduler: {max_num_batched_tokens: 2048, max_num_seqs: 64}\n"
        b"workload:\n  preset: conversation\n  num_requests: 5\n"
        b"  arrival: {kind: poisson, rate: 20}\nslo: {ttft_ms: 500, tpot_ms: 30}\nseed: 3\n"
    )


def _azure() -> bytes:
    return (
        b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
        b"2023-11-16 18:15:46.6805900,374,44\n"
        b"2023-11-16 18:15:50.9951690,396,109\n"
        b"2023-11-16 18:15:51.2157350,879,55\n"
    )


def _csv_trace() -> bytes:
    return b"timestamp,input_tokens,output_tokens\n0.0,812,128\n0.35,96,512\n1.2,2048,64\n"


def _jsonl_trace() -> bytes:
    return (
        b'{"timestamp": 0.0, "input_tokens": 812, "output_tokens": 128}\n'
        b'{"timestamp": 0.5, "input_tokens": 96, "output_tokens": 512}\n'
    )


@functools.cache
def _calibration() -> bytes:
    from servesim.calibrate import calibrate, write_calibration
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    run = calibrate(
        [MEASURED / "steps.jsonl"], load_model("llama-3.1-8b"), load_hardware("h100"), tp=1
    )
    with tempfile.TemporaryDirectory() as tmp:
        return write_calibration(run.calibration, Path(tmp) / "cal.yaml").read_bytes()


def _hardware() -> bytes:
    from servesim.hardware import shipped_yaml

    return shipped_yaml("H100").encode()


def _model_config() -> bytes:
    from servesim.model import list_models

    entry = next(e for e in list_models() if e.id == "meta-llama/Llama-3.2-1B")
    return entry.path.read_bytes()


def _sweep() -> bytes:
    return (
        b"name: fuzz\nbase:\n  workload: {preset: conversation, num_requests: 5}\n"
        b"grid:\n  scheduler.max_num_seqs: [16, 32]\n  workload.arrival.rate: [5, 10]\n"
    )


# Each reader: the valid file it takes, its name, and the command that reads it ({f} is the
# file, {out} an existing output folder that must be left as it was when the command refuses
# the file).
READERS = {
    "scenario": (_scenario, "s.yaml", "simulate --config {f} -n 5 --out {out}"),
    "azure": (_azure, "t.csv", "simulate --replay {f} -n 5 --out {out}"),
    "csv": (_csv_trace, "t.csv", "simulate --replay {f} --trace-format csv -n 5 --out {out}"),
    "jsonl": (_jsonl_trace, "t.jsonl", "simulate --replay {f} -n 5 --out {out}"),
    "burstgpt": (
        lambda: (WORKLOADS / "burstgpt_sample.csv").read_bytes(),
        "b.csv",
        "simulate --replay {f} -n 5 --out {out}",
    ),
    "mooncake": (
        lambda: (WORKLOADS / "mooncake_sample.jsonl").read_bytes(),
        "m.jsonl",
        "simulate --replay {f} --trace-format mooncake -n 5 --out {out}",
    ),
    "sessions": (
        lambda: (WORKLOADS / "sessions_sample.jsonl").read_bytes(),
        "s.jsonl",
        "simulate --replay {f} --trace-format sessions -n 5 --out {out}",
    ),
    "hardware": (_hardware, "gpu.yaml", "simulate --hardware {f} -n 5 --out {out}"),
    "model": (
        _model_config,
        "config.json",
        "estimate {f} --hardware H100 --input-len 64 --output-len 8",
    ),
    "calibration": (_calibration, "cal.yaml", "simulate --calibration {f} -n 5 --out {out}"),
    "sweep": (_sweep, "sweep.yaml", "sweep {f} --out {out} --dry-run"),
    "step log": (
        lambda: (MEASURED / "steps.jsonl").read_bytes(),
        "steps.jsonl",
        "calibrate {f} --model llama-3.1-8b --hardware H100 -o {out}/cal.yaml",
    ),
    "op csv": (
        lambda: (MEASURED / "ops.csv").read_bytes(),
        "ops.csv",
        "calibrate {f} --model llama-3.1-8b --hardware H100 -o {out}/cal.yaml",
    ),
}


# --------------------------------------------------------------------------- mutations


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """Random bytes, the valid file cut short, a number in it made extreme, or a byte in it
    replaced with one that is not UTF-8."""
    kind = draw(st.sampled_from(["bytes", "truncated", "extreme", "not utf-8"]))
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    if kind == "truncated":
        return valid[: draw(st.integers(0, max(len(valid) - 1, 0)))]
    if kind == "extreme":
        numbers = list(_NUMBER.finditer(valid))
        if not numbers:
            return valid
        m = draw(st.sampled_from(numbers))
        value = draw(st.sampled_from(EXTREMES)).encode()
        return valid[: m.start()] + value + valid[m.end() :]
    at = draw(st.integers(0, max(len(valid) - 1, 0)))
    return (
        valid[:at]
        + draw(st.sampled_from([b"\xff", b"\x81", b"\xc3(", b"\xed\xa0\x80"]))
        + valid[at + 1 :]
    )


@pytest.mark.parametrize("reader", list(READERS))
def test_a_fuzzed_input_file_is_one_line_and_exit_2(reader, tmp_path_factory):
    make, name, command = READERS[reader]
    valid = make()
    base = tmp_path_factory.mktemp(reader.replace(" ", "_"))

    @FUZZ
    @given(data=mutated(valid))
    def fuzz(data: bytes) -> None:
        workdir = Path(tempfile.mkdtemp(dir=base))
        path = workdir / name
        path.write_bytes(data)
        out = workdir / "out"  # an output folder holding the user's earlier work
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
        args = command.format(f=path, out=out).split()
        check_contract(args, workdir)

    fuzz()


@pytest.mark.parametrize("reader", list(READERS))
def test_the_valid_seed_runs(reader, tmp_path):
    """The fuzz starts from files that are valid: each seed alone exits 0."""
    make, name, command = READERS[reader]
    path = tmp_path / name
    path.write_bytes(make())
    code, _, err = run_cli(command.format(f=path, out=tmp_path / "out").split())
    assert code == 0, err
