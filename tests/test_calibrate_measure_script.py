"""``bench/gpu/measure_steps.py`` without a GPU: it imports, its grid and records are sound."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from servesim.calibrate import read_step_log
from servesim.cost import Parallelism, plan_memory
from servesim.hardware import load_hardware
from servesim.model import load_model

SCRIPT = Path(__file__).parent.parent / "bench" / "gpu" / "measure_steps.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("measure_steps", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # needs neither torch nor a GPU
    return module


def test_grid(script):
    points = script.grid()
    assert len(points) == len(set(points)) == 9 * 4 + 12 * 3
    assert all(new == 1 for b, new, c in points[:36])
    assert (2, 1024, 0) in points and (1, 16, 8192) in points
    assert len(script.grid(quick=True)) == 3 * 2 + 3 * 2


def test_records_are_a_step_log(script, tmp_path):
    recs = [
        script.step_record(0, 1.0, 0.004, 0.0001, 8, 1, 512),
        script.step_record(1, 1.1, 0.020, 0.0001, 2, 1024, 0),
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"type": "meta"}, *recs]))
    m = read_step_log(path)
    assert m.decode_tokens.tolist() == [8, 0] and m.prefill_tokens.tolist() == [0, 2048]
    assert m.seconds.tolist() == [0.0041, 0.0201]
    assert m.rows[1][0].tolist() == [1024, 1024]


def test_catalog_config_and_kv_bytes(script):
    model_id, config = script.catalog_config("llama-3.2-1b")
    assert model_id == "meta-llama/Llama-3.2-1B" and config["num_hidden_layers"] == 16
    plan = plan_memory(load_model("llama-3.2-1b"), load_hardware("h100"), Parallelism())
    assert script.kv_bytes_per_token(config, 2) == plan.kv_bytes_per_token


def test_main_without_torch_says_so(script, tmp_path):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here")
    with pytest.raises(SystemExit, match="needs torch and transformers"):
        script.main(["--out", str(tmp_path / "s.jsonl")])
