"""The ``servesim models`` and ``servesim model NAME`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import servesim.cli.commands  # noqa: F401  (registers every command on the app)
from servesim.cli.app import app
from servesim.errors import ServesimError
from servesim.model import list_models

WIDE = {"COLUMNS": "200"}  # rich wraps table cells to the terminal width


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def test_models_json_lists_the_catalog():
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [e.id for e in list_models()]
    by_id = {r["id"]: r for r in rows}
    llama = by_id["meta-llama/Llama-3.1-8B"]
    assert llama["params_total"] == 8_030_261_248
    assert (llama["num_attention_heads"], llama["num_kv_heads"]) == (32, 8)
    assert llama["attention"] == "GQA" and llama["moe"] is None
    assert llama["context_length"] == 131072 and llama["dtype"] == "bf16"
    ds = by_id["deepseek-ai/DeepSeek-V3"]
    assert ds["attention"] == "MLA" and ds["moe"]["num_experts"] == 256
    assert ds["moe"]["num_moe_layers"] == 58 and ds["dtype"] == "fp8"
    assert by_id["openai/gpt-oss-120b"]["num_sliding_layers"] == 18


def test_models_table_shows_layout_and_counts():
    result = invoke("models")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(line for line in lines if "deepseek-ai/DeepSeek-V3" in line)
    for cell in ("61", "7168", "128/128", "MLA", "256/8+1s", "671B", "37.6B", "160K", "fp8"):
        assert cell in row
    oss = next(line for line in lines if "openai/gpt-oss-120b" in line)
    assert "GQA+SWA" in oss and "128/4" in oss and "mxfp4" in oss
    assert sum("meta-llama/" in line for line in lines) == 10
    gptj = next(line for line in lines if "EleutherAI/gpt-j-6b" in line)
    for cell in ("GPTJ", "28", "4096", "16/16", "MHA", "6.05B", "2K"):
        assert cell in gptj, cell


def test_model_shows_breakdown_by_path(tmp_path):
    src = next(e for e in list_models() if e.id == "Qwen/Qwen3-8B").path
    (tmp_path / "config.json").write_text(src.read_text())
    result = invoke("model", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["name"] == tmp_path.name
    assert sum(payload["params_breakdown"].values()) == payload["params_total"]
    assert payload["params_breakdown"]["lm_head"] == 151936 * 4096


def test_model_text_output():
    result = invoke("model", "mixtral-8x7b")
    assert result.exit_code == 0, result.output
    assert "mistralai/Mixtral-8x7B-v0.1" in result.output
    assert "moe_experts" in result.output and "46,702,792,704" in result.output


def test_model_names_what_it_does_not_model(tmp_path):
    # A Qwen3-Next-style config (3 of 4 layers linear attention): the text says so, the JSON too.
    src = json.loads(next(e for e in list_models() if e.id == "Qwen/Qwen3-8B").path.read_text())
    (tmp_path / "config.json").write_text(json.dumps({**src, "full_attention_interval": 4}))
    text = invoke("model", str(tmp_path))
    assert text.exit_code == 0 and "not modelled:" in text.output
    payload = json.loads(invoke("model", str(tmp_path), "--json").output)
    assert len(payload["unmodelled"]) == 1 and "linear attention" in payload["unmodelled"][0]
    assert json.loads(invoke("model", "qwen3-8b", "--json").output)["unmodelled"] == []


def test_unknown_model_raises_a_user_error_in_process():
    result = invoke("model", "no-such-model")
    assert isinstance(result.exception, ServesimError)


SCRIPT = Path(sys.executable).parent / "servesim"


@pytest.mark.skipif(not SCRIPT.exists(), reason="servesim console script not installed")
def test_installed_command_end_to_end():
    ok = subprocess.run(
        [str(SCRIPT), "models", "--json"], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)) == len(list_models())
    bad = subprocess.run(
        [str(SCRIPT), "model", "llama-3.1"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model: 'llama-3.1' is ambiguous")
