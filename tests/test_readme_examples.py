"""The README's console examples say what the commands print today.

A doc audit found seven examples whose numbers had drifted as the cost model improved. Each
example here is run as written (from the repository root, so ``examples/...`` resolves) and
every number of its README output must appear in the real output, in order: the tables may
wrap differently at another terminal width, the figures may not change. (Wall-clock lines
are left out; where the README shows part of an output, the rest is not compared.)
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVESIM = str(Path(sys.executable).parent / "servesim")

EXAMPLES = (
    "servesim simulate",
    "servesim simulate -n 300 --speculative eagle --acceptance-rate 0.8 --json",
    "servesim flops llama-3.1-8b --input-len 2048 --output-len 256",
    "servesim estimate llama-3.1-8b --hardware h100 --batch 1 --input-len 2048 --output-len 256",
    "servesim estimate llama-3.1-405b --hardware h100 --input-len 1024 --output-len 128",
    "servesim model llama-3.1-8b",
    "servesim model llama-3.1",
    "servesim hardware H1OO",
    "servesim capacity examples/sweeps/llama8b_h100.yaml --slo-ttft-ms 500 --slo-tpot-ms 30",
)
"""Examples that run in seconds on their own (no GPU, network, extra or earlier command)."""

NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?")
SKIPPED_LINES = ("wall time",)


def readme_blocks() -> dict[str, str]:
    """``{command: the output the README shows under it}`` for each ``$ servesim`` console
    block (a block's later ``$`` lines start their own)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        command, lines = None, []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command is not None:
                    blocks.setdefault(command, "\n".join(lines))
                command, lines = line[2:].split("  #")[0].strip(), []
            elif command is not None:
                lines.append(line)
        if command is not None:
            blocks.setdefault(command, "\n".join(lines))
    return blocks


def numbers(text: str) -> list[str]:
    kept = [ln for ln in text.splitlines() if not any(s in ln for s in SKIPPED_LINES)]
    return [n.replace(",", "").lstrip("+") for n in NUMBER.findall("\n".join(kept))]


def in_order(wanted: list[str], got: list[str]) -> list[str]:
    """The numbers of ``wanted`` not found in ``got`` in order (a subsequence)."""
    missing, at = [], 0
    for n in wanted:
        try:
            at = got.index(n, at) + 1
        except ValueError:
            missing.append(n)
    return missing


@pytest.mark.parametrize("command", EXAMPLES)
def test_the_readme_shows_what_the_command_prints(command: str):
    shown = readme_blocks()[command]
    args = shlex.split(command)[1:]
    p = subprocess.run([SERVESIM, *args], capture_output=True, text=True, cwd=ROOT,
                       env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
                       timeout=300)  # fmt: skip
    got = p.stdout + p.stderr
    if "--json" in args:  # (the README lists some keys of the JSON, rounded)
        import json

        doc = json.loads(p.stdout)
        pairs = re.findall(r"(\w+) ([-\d.]+)", shown)
        assert pairs
        for key, value in pairs:
            decimals = len(value.split(".")[1]) if "." in value else 0
            assert f"{doc[key]:.{decimals}f}" == value, (key, doc[key], value)
        return
    missing = in_order(numbers(shown), numbers(got))
    assert not missing, f"README numbers not printed by `{command}`: {missing}\n{got}"


def test_every_listed_example_is_in_the_readme():
    assert set(EXAMPLES) <= set(readme_blocks())
