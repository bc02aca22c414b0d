"""``servesim kernels`` through the CLI, and ``bench/gpu/measure_kernels.py`` without a GPU."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import servesim.cli.commands  # noqa: F401  (registers every command on the app)
from servesim.cli.app import app
from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost.attention_fit import attention_fit_for
from servesim.cost.fp8_fit import fp8_gemm_factors
from servesim.cost.kernels import (
    KERNELS_DIR,
    gemm_seconds,
    gpus_with_tables,
    load_tables,
)
from servesim.hardware import list_hardware, load_hardware
from servesim.model import load_model

runner = CliRunner()
SERVESIM = Path(sys.executable).parent / "servesim"
MEASURE = Path(__file__).parent.parent / "bench" / "gpu" / "measure_kernels.py"


def _kernels(*args: str) -> str:
    result = runner.invoke(app, ["kernels", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _roofline_s(hw, n: float, k: float, m: float) -> float:
    """The brief's formula, written out apart from the command's."""
    half = CostParams().gemm_half_tokens
    rate = hw.peak_flops["bf16"] * hw.compute_efficiency * m / (m + half)
    nbytes = 2.0 * (n * k + m * (n + k))
    memory = nbytes / (hw.hbm_bandwidth * hw.memory_efficiency)
    return max(2.0 * m * n * k / rate, memory) + hw.kernel_launch_s


# --- the list ---------------------------------------------------------------------------------


def test_list_names_every_gpu_with_its_tables_or_fallback():
    out = _kernels()
    names = ("H100", "H200", "A100-80GB", "B200", "B300", "GB200", "GB300", "RTX-PRO-6000")
    for name in (*names, "L40S", "MI300X", "A10G"):
        assert name in out
    assert "median fit" in out and "roofline" in out
    assert "m 1–16k" in out and "1800 rows" in out  # H100's GEMM coverage
    assert (
        "median of the fits of a100-80gb, b200, b300, gb200, gb300, h100, h200, l40s, "
        "rtx-pro-6000" in " ".join(out.split())
    )
    assert "from H100" in out and "same architecture" in " ".join(out.split())  # H800, H20


def test_list_json_matches_the_tables():
    docs = json.loads(_kernels("--json"))
    assert {d["gpu"] for d in docs} == {hw.name for hw in list_hardware()}
    with_tables = sorted(d["tables"].removeprefix("catalog/kernels/") for d in docs if d["tables"])
    assert with_tables == gpus_with_tables()
    by = {d["gpu"]: d for d in docs}
    t = load_tables("h100")
    h100 = by["H100"]
    assert h100["gemm"]["rows"] == len(t.gemm["m"]) == 1800
    assert h100["gemm"]["dtypes"] == ["bf16", "fp8", "fp8_block"] and h100["gemm"]["m"] == [
        1,
        16384,
    ]
    assert h100["attention_prefill"]["rows"] == len(t.attention_prefill["batch"])
    assert h100["attention_decode"]["context_len"] == [64, 131072]
    assert h100["allreduce"]["num_gpus"] == [2, 4, 8]
    assert h100["rungs"] == {
        "gemm": "measured", "allreduce": "measured", "attention": "fitted", "moe": "measured"
    }  # fmt: skip
    assert h100["fallback"] is None
    assert by["A100-80GB"]["gemm"]["dtypes"] == ["bf16"]
    assert by["L40S"]["allreduce"] is None and by["L40S"]["rungs"]["allreduce"] == "roofline"
    mi = by["MI300X"]
    assert mi["tables"] is None and mi["gemm"] is None and mi["rungs"]["gemm"] == "roofline"
    assert mi["rungs"]["moe"] == "fitted"  # (the nearest-ridge GPU's MoE utilisation)
    assert mi["attention_fit"]["prefill_error"] is None  # a median has no error of its own


# --- one GPU ----------------------------------------------------------------------------------


def test_h100_shows_its_fitted_attention_curve():
    out = _kernels("H100")
    fit, source = attention_fit_for(load_hardware("h100"))
    assert source == "fitted to catalog/kernels/h100"
    assert source in out
    assert f"e = {fit.efficiency:.2f}," in out and f"h = {fit.half_tokens:.0f}" in out
    text = " ".join(out.split())  # (whatever the terminal wraps)
    assert f"h' = h·(1 + {fit.kv_head_weight:g}·KV heads / heads)" in text
    assert f"{fit.memory_efficiency:.3f} of HBM bandwidth" in out
    assert f"median error {fit.prefill_error:.1%}" in out
    assert "gemm.csv" in out and "allreduce.csv" in out
    assert "measured vs servesim's roofline" in out and "14336 × 4096" in out


def test_json_numbers_are_the_librarys():
    doc = json.loads(_kernels("h100", "--json"))
    hw, tables = load_hardware("h100"), load_tables("h100")
    fit, source = attention_fit_for(hw)
    assert doc["attention_fit"] == {
        "efficiency": fit.efficiency,
        "half_tokens": fit.half_tokens,
        "fill_ctas": fit.fill_ctas,
        "fill_power": fit.fill_power,
        "kv_head_weight": fit.kv_head_weight,
        "memory_efficiency": fit.memory_efficiency,
        "prefill_error": fit.prefill_error,
        "decode_error": fit.decode_error,
        "efficiency_hd64": fit.efficiency_hd64,
        "half_tokens_hd64": fit.half_tokens_hd64,
        "fill_ctas_hd64": fit.fill_ctas_hd64,
        "fill_power_hd64": fit.fill_power_hd64,
        "kv_head_weight_hd64": fit.kv_head_weight_hd64,
        "prefill_error_hd64": fit.prefill_error_hd64,
        "efficiency_fp8": fit.efficiency_fp8,
        "half_tokens_fp8": fit.half_tokens_fp8,
        "fill_ctas_fp8": fit.fill_ctas_fp8,
        "fill_power_fp8": fit.fill_power_fp8,
        "kv_head_weight_fp8": fit.kv_head_weight_fp8,
        "prefill_error_fp8": fit.prefill_error_fp8,
        "memory_efficiency_fp8": fit.memory_efficiency_fp8,
        "decode_error_fp8": fit.decode_error_fp8,
        "decode_fixed_s": fit.decode_fixed_s,
        "decode_fixed_s_fp8": fit.decode_fixed_s_fp8,
        "decode_ramp_log_bytes": list(fit.decode_ramp_log_bytes),
        "decode_ramp": list(fit.decode_ramp),
        "decode_ramp_log_bytes_fp8": list(fit.decode_ramp_log_bytes_fp8),
        "decode_ramp_fp8": list(fit.decode_ramp_fp8),
        "decode_cells_fp8": list(fit.decode_cells_fp8),
        "decode_ramp_log_bytes_cells_fp8": list(fit.decode_ramp_log_bytes_cells_fp8),
        "decode_ramp_cells_fp8": list(fit.decode_ramp_cells_fp8),
        "decode_engine": fit.decode_engine,
        "decode_serial_rate": fit.decode_serial_rate,
        "source": source,
    }
    text = " ".join(_kernels("h100").split())  # (whatever the terminal wraps)
    assert f"decode ramp: calls of 4 MB–1 GB of KV take up to {max(fit.decode_ramp):.2f}×" in text
    fp8 = f"decode with an FP8 KV cache: reads at {fit.memory_efficiency_fp8:.3f}"
    assert fp8 in text and f"after {fit.decode_fixed_s_fp8 * 1e6:.1f} µs per call" in text
    assert "prefill in FP8" in _kernels("h100")
    narrow = f"heads at most 64 wide (own rows): e = {fit.efficiency_hd64:.2f}"
    assert narrow in _kernels("h100") and 0.5 < fit.efficiency_hd64 < fit.efficiency
    assert "the last wave's tail" in text  # (the H100's curves add the tail: fill_power 1)
    # The serial walk shows where the engine's decode table has one (vLLM's A100 table), not
    # on the H100's.
    assert "decode serial walk" not in text
    a100 = " ".join(_kernels("A100-80GB", "--engine", "vllm").split())
    assert "decode serial walk: where the kernel walks each sequence's KV" in a100
    assert "one block reads 22.4 GB/s" in a100
    # vLLM's H100 table reads an FP8 cache per kernel regime; so does the catalog's table, for
    # TensorRT-LLM from 1.0 only.
    vllm_fit, _ = attention_fit_for(load_hardware("h100"), "vllm")
    mha128, mha64, gqa128, _ = vllm_fit.decode_cells_fp8
    vllm = " ".join(_kernels("h100", "--engine", "vllm").split())
    regimes = f"multi-head 128-wide {mha128:.3f}, multi-head 64-wide {mha64:.3f}, grouped "
    assert f"kernel regime (the engine picks a kernel by head shape): {regimes}" in vllm
    assert f"grouped 128-wide {gqa128:.3f};" in vllm and "grouped 64-wide" not in vllm
    # (SGLang's table times 64-wide heads only grouped and below 1 GB: a ratio from there.)
    mha128, mha64, gqa128, gqa64 = attention_fit_for(load_hardware("h100"), "sglang")[
        0
    ].decode_cells_fp8
    sglang = " ".join(_kernels("h100", "--engine", "sglang").split())
    assert mha64 == 0.0 and 0.5 < gqa64 < 0.9 * gqa128
    assert f"grouped 128-wide {gqa128:.3f}, grouped 64-wide {gqa64:.3f}; a regime timed" in sglang
    trt_cells = attention_fit_for(load_hardware("h100"))[0].decode_cells_fp8
    assert (
        "kernel regime (TensorRT-LLM from 1.0 picks a kernel by head shape; other engines "
        f"read at the one fraction): multi-head 128-wide {trt_cells[0]:.3f}" in text
    )
    rows = doc["gemm_check"]["rows"]
    assert [(r["n"], r["k"], r["m"]) for r in rows] == [
        (n, k, m) for n, k in ((4096, 4096), (14336, 4096)) for m in (1, 16, 256, 4096)
    ]
    for r in rows:
        measured, _ = gemm_seconds(tables, "bf16", r["n"], r["k"], np.array([float(r["m"])]))
        assert r["measured_s"] == pytest.approx(float(measured[0]), rel=1e-12)
        assert r["roofline_s"] == pytest.approx(_roofline_s(hw, r["n"], r["k"], r["m"]), rel=1e-12)
        assert r["error"] == pytest.approx(r["roofline_s"] / r["measured_s"] - 1.0)
    # 14336 × 4096 sits between the measured 12288 and 16384 rows in n: 0.54 of the way in log.
    assert rows[4]["table_shapes"] == [[12288, 4096, 0.4642], [16384, 4096, 0.5358]]
    # The MoE tables of every engine, with the rows the cost model reads.
    assert set(doc["moe"]) == set(tables.moe) == {"vllm", "sglang", "trtllm"}
    for backend, moe in doc["moe"].items():
        assert moe["rows"] == len(tables.moe[backend]["seconds"])
        assert "fp8_block" in moe["dtypes"] and moe["shapes"] >= 4
        assert "tp8 ep1" in moe["splits"] and moe["num_tokens"] == [1.0, 16384.0]


def test_the_moe_tables_are_listed_per_engine():
    out = _kernels("H200")
    for backend in ("vllm", "sglang", "trtllm"):
        assert f"moe_{backend}.csv" in out and f"{backend}'s MoE kernels" in out


def test_the_engines_allreduce_tables_are_listed_with_their_modes_and_versions():
    out = _kernels("H100")
    assert "allreduce_vllm.csv" in out and "vllm's custom all-reduce, eager and" in out
    doc = json.loads(_kernels("h100", "--json"))["engine_allreduce"]
    tables = load_tables("h100").engine_allreduce
    assert set(doc) == set(tables) == {"vllm", "sglang"}
    assert doc["vllm"]["versions"] == ["0.14.0", "0.19.0", "0.24.0"]
    assert doc["vllm"]["rows"] == len(tables["vllm"]["seconds"]) and doc["vllm"]["num_gpus"] == [
        2,
        4,
        8,
    ]
    assert "allreduce_vllm.csv" not in _kernels("L40S")  # (PCIe: no all-reduce table at all)


def test_check_uses_the_cost_models_own_numbers():
    # o_proj of Llama-3.1-8B is a 4096 × 4096 GEMM: the command's roofline and measured
    # seconds are what the cost model charges it, on each rung.
    doc = json.loads(_kernels("H100", "--json"))
    model, hw = load_model("llama-3.1-8b"), load_hardware("h100")
    for tables in (False, True):
        cost = build_step_cost(model, hw, Parallelism(), CostParams(kernel_tables=tables))
        (op,) = [o for o in cost.operators if o.name == "o_proj"]
        for r in doc["gemm_check"]["rows"][:4]:
            (got,) = [
                o.seconds / op.count
                for o in cost.operator_breakdown(np.array([r["m"]]), np.array([0]))
                if o.name == "o_proj"
            ]
            want = r["measured_s"] if tables else r["roofline_s"]
            assert got == pytest.approx(want, rel=1e-9)


def test_plot_writes_a_png(tmp_path):
    out = tmp_path / "sub" / "h100.png"
    text = _kernels("H100", "--plot", str(out))
    assert "wrote" in text
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_a_gpu_without_tables_says_so_and_names_the_fallback():
    out = " ".join(_kernels("MI300X").split())
    assert "MI300X ships no measured kernel tables" in out
    assert "roofline GEMMs" in out and "median of the fits of" in out
    assert "MoE layers at the measured utilisation of the GPU with tables whose" in out
    fp8 = fp8_gemm_factors()
    assert f"plus {fp8.overhead_s * 1e6:.1f} µs each (activation quantisation" in out
    doc = json.loads(_kernels("mi300x", "--json"))
    assert doc["tables"] is None and "gemm_check" not in doc
    assert (
        doc["attention_fit"]["efficiency"]
        == attention_fit_for(load_hardware("mi300x"))[0].efficiency
    )


def test_unknown_gpu_and_plot_without_tables_are_one_line_errors(tmp_path):
    for args in (["kernels", "nope-gpu"], ["kernels", "MI300X", "--plot", str(tmp_path / "x.png")]):
        proc = subprocess.run([str(SERVESIM), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_subprocess_json():
    proc = subprocess.run(
        [str(SERVESIM), "kernels", "H100", "--json"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["gpu"] == "H100" and doc["tables"] == "catalog/kernels/h100"
    assert (
        doc["attention_fit"]["efficiency"] == attention_fit_for(load_hardware("h100"))[0].efficiency
    )


# --- bench/gpu/measure_kernels.py -------------------------------------------------------------


@pytest.fixture(scope="module")
def measure():
    spec = importlib.util.spec_from_file_location("measure_kernels", MEASURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # needs neither torch nor a GPU
    return module


def test_measure_dry_run_prints_the_plan_without_torch(tmp_path):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['measure_kernels.py', '--out', {str(tmp_path / 'k')!r}, '--dry-run']\n"
        "try:\n"
        f"    runpy.run_path({str(MEASURE)!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "gemm: 600 shapes per dtype" in out and "65536x16384" in out
    assert "attention_prefill: 440 points" in out and "attention_decode: 670 points" in out
    assert "allreduce: 23 sizes" in out
    assert out.strip().endswith("torch imported: False")
    assert not (tmp_path / "k").exists()  # a dry run writes nothing


def test_measure_grids_are_the_shipped_tables(measure):
    t = load_tables("h100")
    g = t.gemm
    shipped = set(
        zip(
            g["m"].astype(int).tolist(),
            g["n"].astype(int).tolist(),
            g["k"].astype(int).tolist(),
            strict=True,
        )
    )
    assert set(measure.gemm_points()) == shipped
    p = t.attention_prefill
    heads = set(
        zip(
            p["head_dim"].astype(int).tolist(),
            p["num_heads"].astype(int).tolist(),
            p["num_kv_heads"].astype(int).tolist(),
            strict=True,
        )
    )
    assert set(measure.HEAD_SHAPES) == heads
    assert set(measure.PREFILL_SEQ) == set(p["seq_len"].astype(int).tolist())
    d = t.attention_decode
    assert set(measure.DECODE_CONTEXTS) == set(d["context_len"].astype(int).tolist())
    a = t.allreduce
    assert set(measure.ALLREDUCE_BYTES) == set(a["bytes"].astype(int).tolist())
    assert measure.allreduce_gpu_counts(8) == [2, 4, 8]
    assert measure.allreduce_gpu_counts(6) == [2, 4, 6]
    assert measure.allreduce_gpu_counts(1) == []


def test_measure_writes_the_catalogs_format(measure, tmp_path):
    rows = {
        "gemm": [measure.gemm_row("bf16", 16, 4096, 4096, 1.25e-5)],
        "attention_prefill": [measure.prefill_row("bf16", 2, 1024, 32, 8, 128, 3.0e-4)],
        "attention_decode": [measure.decode_row("bf16", 8, 4096, 32, 8, 128, 4.0e-5)],
        "allreduce": [measure.allreduce_row(8, 2**20, 1.5e-5)],
    }
    for name, table in rows.items():
        measure.write_csv(tmp_path / f"{name}.csv", name, table)
        with (tmp_path / f"{name}.csv").open(newline="") as f:
            written = list(csv.reader(f))
        with (KERNELS_DIR / "h100" / f"{name}.csv").open(newline="") as f:
            assert written[0] == next(csv.reader(f))  # the shipped header
    text = (tmp_path / "gemm.csv").read_text()
    assert text == "dtype,m,n,k,seconds,tflops\nbf16,16,4096,4096,1.25e-05,42.95\n"
    # Derived columns follow catalog/kernels/README.md.
    assert rows["attention_prefill"][0]["tflops"] == pytest.approx(
        4 * 2 * 1024**2 * 32 * 128 / 2 / 3.0e-4 / 1e12
    )
    assert rows["attention_decode"][0]["gbps"] == pytest.approx(
        2 * 8 * 4096 * 8 * 128 * 2 / 4.0e-5 / 1e9
    )
    assert rows["allreduce"][0]["busbw_gbps"] == pytest.approx(2 * 7 / 8 * 2**20 / 1.5e-5 / 1e9)


def test_measure_without_torch_says_so(measure, tmp_path):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here")
    with pytest.raises(SystemExit, match="needs torch"):
        measure.main(["--out", str(tmp_path / "k")])


def test_one_gpu_names_its_engines_mla_block_scales():
    from servesim.cost.kernels import mla_block_scale

    def doc(gpu: str) -> dict:
        result = runner.invoke(app, ["kernels", gpu, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    assert doc("H200")["mla_block"] == {"vllm": mla_block_scale("H200", "vllm")}
    assert set(doc("H100")["mla_block"]) == {"trtllm", "vllm"}
    assert doc("A100-80GB")["mla_block"] == {}
    assert doc("H800")["mla_block"] == doc("H100")["mla_block"]  # (borrowed with the tables)
    text = runner.invoke(app, ["kernels", "H200"], env={"COLUMNS": "200"}).output
    assert f"vllm × {mla_block_scale('H200', 'vllm'):.2f}" in text


def test_one_gpu_counts_the_gemm_rows_its_benchmark_served_from_l2():
    def doc(gpu: str) -> dict:
        result = runner.invoke(app, ["kernels", gpu, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    l40s = doc("L40S")["l2_floor"]
    assert l40s["l2_bytes"] == 96 * 2**20 and l40s["floored"] > 100 and l40s["largest_speedup"] > 3
    assert doc("H100")["l2_floor"]["floored"] == 0  # (its fast rows are weights beyond L2)
    assert doc("B200")["l2_floor"] is None  # (no L2 size in the catalog)
    text = runner.invoke(app, ["kernels", "L40S"], env={"COLUMNS": "200"}).output
    assert f"{l40s['floored']} of the {l40s['rows']} bf16 GEMM rows beat the HBM roofline" in text


def _engine_tables_listed(key: str, prefix: str, phrase: str) -> dict:
    """The H200 page lists vLLM's and SGLang's own ``prefix`` tables (text and JSON ``key``,
    their rows as the library reads them): the JSON entries by engine."""
    out = _kernels("H200")
    doc = json.loads(_kernels("h200", "--json"))[key]
    tables = getattr(load_tables("h200"), key)
    for backend in ("vllm", "sglang"):
        assert f"{prefix}_{backend}.csv" in out and f"{backend}'s {phrase}" in out
        assert doc[backend]["rows"] == len(tables[backend]["seconds"])
    return doc


def test_the_engines_decode_attention_tables_are_listed():
    doc = _engine_tables_listed("engine_decode", "attention_decode", "decode attention")
    for backend in ("vllm", "sglang"):
        assert doc[backend]["dtypes"] == ["bf16", "fp8"] and doc[backend]["context_len"][0] == 64.0
    # The fit an engine prices with names its decode table.
    sglang = json.loads(_kernels("h200", "--engine", "sglang", "--json"))
    assert sglang["attention_fit"]["source"].endswith("(decode: attention_decode_sglang.csv)")
    assert sglang["attention_fit"]["memory_efficiency_fp8"] < 0.55


def test_the_engines_own_gemm_tables_are_listed():
    doc = _engine_tables_listed("engine_gemm", "gemm", "own fp8")
    assert doc["vllm"]["dtypes"] == ["fp8"] and doc["sglang"]["dtypes"] == ["fp8", "fp8_block"]
    assert json.loads(_kernels("A100-80GB", "--json"))["engine_gemm"] == {}  # (no FP8 units)


def test_a_gpu_where_vllm_runs_triton_shows_its_prefill_curve():
    """Before Hopper (and on RTX Blackwell) vLLM serves GPT-OSS on Triton attention: the GPU's
    page names the Triton prefill curve — the fitted plateau over the slowdown, the half-length
    times the scale — and Hopper's does not."""
    from servesim.cost.kernels import triton_prefill_factors

    slowdown, half_scale = triton_prefill_factors()
    doc = json.loads(_kernels("A100-80GB", "--json"))
    fit, triton = doc["attention_fit"], doc["triton_prefill"]
    assert triton["efficiency"] == pytest.approx(fit["efficiency"] / slowdown)
    assert triton["half_tokens"] == pytest.approx(fit["half_tokens"] * half_scale)
    assert "vLLM's Triton attention" in " ".join(_kernels("A100-80GB").split())
    assert json.loads(_kernels("H100", "--json"))["triton_prefill"] is None
    assert "Triton attention" not in _kernels("H100")
