"""`servesim hardware`: the catalog table, one GPU in full, JSON, YAML and the error path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import servesim.cli.commands  # noqa: F401  (registers every command on the app)
from servesim.cli.app import app
from servesim.errors import ServesimError
from servesim.hardware import list_hardware, load_hardware

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["hardware", *args])


def test_the_table_lists_every_gpu_with_dense_figures():
    result = run()
    assert result.exit_code == 0, result.output
    for hw in list_hardware():
        assert hw.name in result.output
    assert "…" not in result.output  # nothing cut off at 80 columns
    h100_row = next(line for line in result.output.splitlines() if line.split()[:1] == ["H100"])
    # id, vendor, HBM GB, HBM TB/s, bf16, fp8, fp4, link, TDP, $/GPU-h
    assert h100_row.split() == ["H100", "NVIDIA", "85.5", "3.35", "989", "1979", "-", "450",
                                "700", "2.99"]  # fmt: skip


@pytest.mark.parametrize(
    "row",
    [
        # id, vendor, HBM GB, HBM TB/s, bf16, fp8, fp4, link GB/s (one direction), TDP, $/GPU-h
        "H800 NVIDIA 85.5 3.35 989 1979 - 200 700 2.50",
        "H20 NVIDIA 102.6 4.00 148 296 - 450 400 1.50",
        "L40 NVIDIA 48.3 0.86 181 362 - 32 300 0.70",
        "A10G NVIDIA 24.1 0.60 70 - - 32 300 1.01",
    ],
    ids=lambda row: row.split()[0],
)
def test_the_table_shows_the_export_and_cloud_variants(row: str):
    result = run()
    assert result.exit_code == 0, result.output
    name = row.split()[0]
    line = next(line for line in result.output.splitlines() if line.split()[:1] == [name])
    assert line.split() == row.split()


@pytest.mark.parametrize("name", ["H800", "H20", "L40", "A10G"])
def test_each_new_gpu_shows_its_sources(name: str):
    result = run(name)
    assert result.exit_code == 0, result.output
    for text in ("Sources", "peak_flops (", "intra_node (", "price_per_gpu_hour (estimated)"):
        assert text in result.output, text


def test_json_lists_every_gpu():
    result = run("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [d["name"] for d in data] == [hw.name for hw in list_hardware()]
    b200 = next(d for d in data if d["name"] == "B200")
    assert b200["peak_flops"]["fp4"] == 9e15


def test_one_gpu_shows_every_figure_with_its_source():
    result = run("mi300x")
    assert result.exit_code == 0, result.output
    for text in ("MI300X", "1,307.4 TFLOP/s", "5.3 TB/s", "64 GB/s to each peer", "Sources",
                 "compute_efficiency (measured)", "price_per_gpu_hour (estimated)"):  # fmt: skip
        assert text in result.output, text
    row = next(line for line in result.output.splitlines() if "architecture" in line)
    assert "cdna3" in row


def test_an_sm_count_shows_where_the_catalog_gives_one():
    a100 = run("A100-80GB")
    row = next(line for line in a100.output.splitlines() if "multiprocessors" in line)
    assert "108 SMs" in row and "datasheet" in row
    assert "multiprocessors" not in run("H100").output


def test_one_gpu_as_json_round_trips_to_the_same_spec():
    result = run("H100", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == load_hardware("H100").to_dict()


def test_yaml_prints_a_template_that_loads(tmp_path: Path):
    result = run("l4", "--yaml")
    assert result.exit_code == 0, result.output
    path = tmp_path / "mine.yaml"
    path.write_text(result.output.replace("name: L4", "name: MyL4"))
    mine = load_hardware(str(path))
    assert mine.name == "MyL4" and mine.peak_flops == load_hardware("L4").peak_flops
    assert mine.multiprocessors == 58  # (the serial decode walk's waves)
    assert yaml.safe_load(result.output)["vendor"] == "NVIDIA"


def test_a_user_file_by_path(tmp_path: Path):
    text = run("H100", "--yaml").output.replace("name: H100", "name: H100-cheap")
    text = text.replace("price_per_gpu_hour: 2.99", "price_per_gpu_hour: 1.5")
    path = tmp_path / "h100-cheap.yaml"
    path.write_text(text)
    result = run(str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["price_per_gpu_hour"] == 1.5


def test_unknown_gpu_raises_the_user_error():
    result = run("H1OO")
    assert isinstance(result.exception, ServesimError)
    assert "did you mean H100" in str(result.exception)


def test_yaml_needs_a_name():
    result = run("--yaml")
    assert result.exit_code == 2


@pytest.mark.parametrize("args", [["H1OO"], ["missing/gpu.yaml", "--json"]])
def test_console_script_exits_2_with_one_line(args: list[str]):
    script = Path(sys.executable).parent / "servesim"
    proc = subprocess.run(
        [str(script), "hardware", *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: hardware") and "Traceback" not in proc.stderr
