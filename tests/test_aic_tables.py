"""Reading NVIDIA AIConfigurator's tables (the ``servesim[kernels]`` extra) and reducing them.

A tiny synthetic ``systems/data`` tree (parquet written here with pyarrow) stands in for the
wheel, so these tests run on a default install; one test reads the real wheel when present.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from servesim.cost import aic_tables as A
from servesim.cost import attention_fit as AF
from servesim.cost import kernels as K


def _write(root, system, op, backend, version, table, rows):
    folder = root / system / op / backend / version
    folder.mkdir(parents=True, exist_ok=True)
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    pq.write_table(pa.table(cols), folder / f"{table}.parquet")


def _gemm_rows(latency_of):
    rows = []
    for dtype in ("bfloat16", "fp8", "fp8_block"):
        for m in (1, 16, 256, 4096):
            for n, k in ((4096, 4096), (6144, 4096), (5120, 3000)):
                for repeat in range(3):  # three repeats: the median is kept
                    lat = latency_of(dtype, m, n, k) * (1.0, 1.1, 0.8)[repeat]
                    rows.append(
                        {
                            "framework": "VLLM",
                            "device": "NVIDIA H200",
                            "gemm_dtype": dtype,
                            "m": m,
                            "n": n,
                            "k": k,
                            "latency": lat,
                        }
                    )
    return rows


def _flat_rate(tflops):
    return lambda dtype, m, n, k: 2 * m * n * k / (tflops * 1e12) * 1e3 + 0.005


@pytest.fixture()
def fake_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    # vLLM: two versions; the newest (0.24.0 > 0.9.1 > 0.14.0rc1 ordering checked below) wins.
    _write(root, "h200_sxm", "gemm", "vllm", "0.9.1", "gemm_perf", _gemm_rows(_flat_rate(100)))
    _write(root, "h200_sxm", "gemm", "vllm", "0.24.0", "gemm_perf", _gemm_rows(_flat_rate(500)))
    (root / "h200_sxm" / "gemm" / "vllm" / "0.25.0").mkdir()  # reuse.yaml only: skipped
    ar = []
    for n in (2, 4):
        for size in (1024, 1 << 20):
            for backend, lat in (("vllm_graph", 0.01), ("vllm_eager", 0.05)):
                ar.append(
                    {
                        "allreduce_dtype": "bfloat16",
                        "num_gpus": n,
                        "message_size": size,
                        "latency": lat * (1 + size / 1e6),
                        "backend": backend,
                    }
                )
    _write(root, "h200_sxm", "comm", "vllm", "0.24.0", "custom_allreduce_perf", ar)
    monkeypatch.setenv(A.DATA_ROOT_ENV, str(root))
    A.load_backend_tables.cache_clear()
    K.load_tables.cache_clear()
    AF.attention_fit.cache_clear()
    yield root
    A.load_backend_tables.cache_clear()
    K.load_tables.cache_clear()
    AF.attention_fit.cache_clear()


def test_version_folders_sort_as_releases():
    names = ["0.14.0rc1", "0.9.1", "0.24.0", "0.1.dev19262", "0.5.6.post2", "1.3.0rc20", "1.3.0"]
    assert sorted(names, key=A.version_key) == [
        "0.1.dev19262",
        "0.5.6.post2",
        "0.9.1",
        "0.14.0rc1",
        "0.24.0",
        "1.3.0rc20",
        "1.3.0",
    ]


def test_median_by_keeps_one_row_per_key_with_the_median():
    keys = {"a": np.array(["x", "x", "x", "y", "y"]), "b": np.array([1.0, 1.0, 1.0, 2.0, 2.0])}
    out, med = A.median_by(keys, np.array([3.0, 1.0, 2.0, 10.0, 20.0]))
    assert out["a"].tolist() == ["x", "y"]
    assert out["b"].tolist() == [1.0, 2.0]
    assert med.tolist() == [2.0, 15.0]  # odd count: the middle one; even: mean of the two


def test_gemm_reduction_keeps_bf16_and_fp8_with_hand_computed_throughput(fake_root):
    path = A.newest_table(fake_root, "h200_sxm", "gemm", "vllm", "gemm_perf")
    assert path.parent.name == "0.24.0"
    g = A.reduce_gemm(A.read_parquet(path), grid=False)
    # (vLLM's block-FP8 rows are left out: aic_tables.GEMM_LEFT_OUT)
    assert set(g["dtype"].tolist()) == {"bf16", "fp8"}
    rows = A.read_parquet(path)
    rows["framework"] = np.full(len(rows["m"]), "SGLang")
    assert "fp8_block" in A.reduce_gemm(rows, grid=False)["dtype"].tolist()
    row = (g["dtype"] == "bf16") & (g["m"] == 4096) & (g["n"] == 4096) & (g["k"] == 4096)
    seconds = (2 * 4096**3 / 500e12 * 1e3 + 0.005) / 1e3  # the median repeat (×1.0)
    assert g["seconds"][row][0] == pytest.approx(seconds)
    assert g["tflops"][row][0] == pytest.approx(2 * 4096**3 / seconds / 1e12)
    # The catalog grid drops off-grid shapes (5120 × 3000 is not on it).
    grid = A.reduce_gemm(A.read_parquet(path), grid=True)
    assert 5120 not in grid["n"].tolist() and 5120 in g["n"].tolist()


def test_allreduce_keeps_the_cuda_graph_rows(fake_root):
    path = A.newest_table(fake_root, "h200_sxm", "comm", "vllm", "custom_allreduce_perf")
    a = A.reduce_allreduce(A.read_parquet(path))
    row = (a["num_gpus"] == 2) & (a["bytes"] == 2048)
    assert a["seconds"][row][0] == pytest.approx(0.01 * (1 + 1024 / 1e6) / 1e3)


def test_an_engines_allreduce_keeps_both_modes_of_every_collection(fake_root):
    got = A.allreduce_by_version(fake_root, "h200_sxm", "vllm")
    assert got is not None
    a, versions = got
    assert versions == ["0.24.0"] and set(a["version"].tolist()) == {"0.24.0"}
    for mode, lat in (("graph", 0.01), ("eager", 0.05)):
        row = (a["mode"] == mode) & (a["num_gpus"] == 4) & (a["bytes"] == 2 * (1 << 20))
        assert a["seconds"][row][0] == pytest.approx(lat * (1 + (1 << 20) / 1e6) / 1e3)
        want = 2 * 3 / 4 * 2 * (1 << 20) / a["seconds"][row][0] / 1e9
        assert a["busbw_gbps"][row][0] == pytest.approx(want)
    # Another engine's kernel in the table (SGLang 0.5.6 timed TensorRT-LLM's) is no mode.
    trt = {"allreduce_dtype": ["bfloat16"], "num_gpus": [2], "message_size": [1024],
           "latency": [0.01], "backend": ["trtllm"]}  # fmt: skip
    cols = {k: np.array(v) for k, v in trt.items()}
    assert len(A.reduce_engine_allreduce(cols)["seconds"]) == 0
    assert A.allreduce_by_version(fake_root, "h200_sxm", "sglang") is None


def test_backend_tables_replace_the_catalog_and_fall_back_per_table(fake_root):
    catalog = K.load_tables("H200")
    vllm = K.load_tables("H200", "vllm")
    assert vllm.source.startswith(f"${A.DATA_ROOT_ENV}") or "h200_sxm" in vllm.source
    assert "gemm/vllm/0.24.0" in vllm.source
    # GEMMs now from the backend's table (the fake one runs at 500 TFLOP/s at most) ...
    assert vllm.gemm["tflops"].max() < 500 < catalog.gemm["tflops"].max() * 2
    assert len(vllm.gemm["m"]) != len(catalog.gemm["m"])
    # ... tables the backend lacks (attention, MoE) stay the catalog's.
    assert vllm.attention_prefill is catalog.attention_prefill
    assert set(vllm.moe) == set(catalog.moe)
    # A backend without tables, or the catalog forced by the environment, is the catalog.
    assert K.load_tables("H200", "sglang").source == "catalog/kernels/h200"


def test_catalog_can_be_forced_with_the_extra_installed(fake_root, monkeypatch):
    monkeypatch.setenv(K.TABLE_SOURCE_ENV, "catalog")
    K.load_tables.cache_clear()
    assert K.load_tables("H200", "vllm").source == "catalog/kernels/h200"


def test_a_step_is_priced_from_the_backend_tables(fake_root):
    from servesim.cost import CostParams, Parallelism, build_step_cost
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    model, hw = load_model("meta-llama/Llama-3.1-8B-Instruct"), load_hardware("H200")
    rows = np.array([2048])
    ctx = np.array([2048])
    base = build_step_cost(model, hw, Parallelism(), CostParams(kernel_tables=True))
    vllm = build_step_cost(
        model, hw, Parallelism(), CostParams(kernel_tables=True, kernel_backend="vllm")
    )
    # The fake vLLM GEMMs run at <= 500 TFLOP/s against the catalog's ~700 (bf16, large m):
    # a 2k-token prefill must take longer on them.
    assert vllm.step_seconds(rows, ctx) > base.step_seconds(rows, ctx)
    assert vllm.kernel_source != base.kernel_source


def test_without_the_wheel_there_are_no_backend_tables(monkeypatch):
    monkeypatch.setenv(A.DATA_ROOT_ENV, "/nonexistent/servesim-aic")
    A.load_backend_tables.cache_clear()
    assert A.load_backend_tables("H200", "vllm") is None
    A.load_backend_tables.cache_clear()


def test_the_real_wheel_reproduces_the_catalog_csvs():
    """The catalog's files are the real wheel's tables reduced onto the grid (when installed)."""
    import os

    if os.environ.get(A.DATA_ROOT_ENV) is None and A.data_root() is None:
        pytest.skip("aiconfigurator-core is not installed (pip install 'servesim[kernels]')")
    root = A.data_root()
    path = A.newest_table(root, "h200_sxm", "gemm", "trtllm", "gemm_perf")
    got = A.reduce_gemm(A.read_parquet(path), grid=True)
    ref = K.load_tables("H200").gemm
    assert len(got["m"]) == len(ref["m"])
    assert np.allclose(got["seconds"], ref["seconds"], rtol=1e-3)


def test_summary_names_the_tables_of_the_engine_profile(fake_root):
    from servesim.run import simulate
    from servesim.scenario import build_scenario

    def source(engine: str) -> str:
        fields = {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "hardware": "H200",
            "engine": engine,
            "workload": {"num_requests": 8, "input_len": 256, "output_len": 16},
        }
        return simulate(build_scenario(fields)).summary["kernel_source"]

    assert "gemm/vllm/0.24.0" in source("vllm")
    assert source("sglang") == "catalog/kernels/h200"  # the fake tree has no SGLang tables


def test_kernels_command_shows_the_engines_tables(fake_root):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "servesim", "kernels", "H200", "--json", *args],
            capture_output=True,
            text=True,
            check=False,
        )

    import json

    assert json.loads(run().stdout)["tables"] == "catalog/kernels/h200"
    vllm = json.loads(run("--engine", "vllm").stdout)
    assert "gemm/vllm/0.24.0" in vllm["tables"]
    bad = run("--engine", "nope")
    assert bad.returncode == 2 and "unknown engine" in bad.stderr


def _moe_rows(shapes, latency_ms):
    rows = []
    for dtype, hidden, experts, tp in shapes:
        for tokens in (1, 64, 1024):
            rows.append(
                {
                    "moe_dtype": dtype,
                    "num_tokens": tokens,
                    "hidden_size": hidden,
                    "inter_size": 2048,
                    "topk": 8,
                    "num_experts": experts,
                    "moe_tp_size": tp,
                    "moe_ep_size": 1,
                    "distribution": "balanced",
                    "latency": latency_ms * (1 + tokens / 64),
                }
            )
    return rows


def test_moe_tables_keep_every_collection_and_each_curve_comes_from_the_nearest(fake_root):
    # The newer collection re-measures one curve and drops another (as TensorRT-LLM 1.3.0rc23
    # holds none of the shapes rc20 has): every version's rows are kept, with their version.
    old = [("fp8_block", 7168, 256, 8), ("bfloat16", 7168, 256, 8)]
    new = [("fp8_block", 7168, 256, 8)]
    _write(fake_root, "h200_sxm", "moe", "trtllm", "1.3.0rc10", "moe_perf", _moe_rows(old, 2.0))
    _write(fake_root, "h200_sxm", "moe", "trtllm", "1.3.0rc20", "moe_perf", _moe_rows(new, 1.0))
    other_model = [dict(row, hidden_size=1) for row in _moe_rows(new, 1.0)]
    _write(fake_root, "h200_sxm", "moe", "trtllm", "1.3.0rc23", "moe_perf", other_model)
    paths = A.tables_newest_first(fake_root, "h200_sxm", "moe", "trtllm", "moe_perf")
    assert [p.parent.name for p in paths] == ["1.3.0rc23", "1.3.0rc20", "1.3.0rc10"]
    table, versions = A.moe_by_version(fake_root, "h200_sxm", "trtllm", {(7168, 2048, 8, 256)})
    assert versions == ["1.3.0rc20", "1.3.0rc10"]  # (rc23 holds no kept shape)
    assert sorted(table["version"].tolist()) == ["1.3.0rc10"] * 6 + ["1.3.0rc20"] * 3
    tables = K.KernelTables("H200", None, None, None, None, {"trtllm": table})
    shape, tokens = (7168, 2048, 8, 256), np.array([64.0])

    def layer_ms(dtype, release):
        secs, _ = K.moe_seconds(tables, "trtllm", (dtype,), shape, 8, 1, tokens, release)
        return round(float(secs[0]) * 1e3, 9)

    # fp8_block: the newest by default and for a later release, rc10 for an earlier one.
    assert layer_ms("fp8_block", None) == layer_ms("fp8_block", "1.3.0rc20") == 2.0
    assert layer_ms("fp8_block", "1.0.0") == layer_ms("fp8_block", "v1.3.0rc10") == 4.0
    assert layer_ms("fp8_block", "2.0") == 2.0  # (after every collection: the newest)
    # bf16 was measured in rc10 only: that is the curve whatever the release.
    assert layer_ms("bf16", None) == layer_ms("bf16", "1.3.0rc20") == 4.0
    assert A.moe_by_version(fake_root, "h200_sxm", "sglang", None) is None


def test_marlin_rows_get_dtypes_of_their_own(fake_root):
    # The kernel_source column names the kernel: Marlin's MXFP4 rows are another kernel than
    # the default MXFP4 ones (triton_kernels on Hopper), whatever the shape.
    triton = [dict(r, kernel_source="vllm_gptossmxfp4moe_triton_oaitritonmxfp4experts")
              for r in _moe_rows([("w4a16_mxfp4", 2880, 128, 1)], 1.0)]  # fmt: skip
    marlin = [dict(r, kernel_source="vllm_compressedtensorsw4a4mxfp4moe_marlin_marlinexperts")
              for r in _moe_rows([("w4a16_mxfp4", 3584, 896, 1)], 3.0)]  # fmt: skip
    int4 = [dict(r, kernel_source="vllm_compressedtensorswna16marlinmoe_marlin_marlinexperts")
            for r in _moe_rows([("int4_wo", 7168, 384, 1)], 3.0)]  # fmt: skip
    machete = [dict(r, kernel_source="vllm_machete_int4_moe")
               for r in _moe_rows([("int4_wo", 6144, 160, 1)], 3.0)]  # fmt: skip
    # (vLLM 0.19's INT4 collection is left out: A.MOE_KERNELS_LEFT_OUT says why.)
    left_out = [dict(r, kernel_source="vllm_marlin_int4_moe")
                for r in _moe_rows([("int4_wo", 4096, 128, 1)], 9.0)]  # fmt: skip
    rows = triton + marlin + int4 + machete + left_out
    _write(fake_root, "h100_sxm", "moe", "vllm", "0.24.0", "moe_perf", rows)
    table, _ = A.moe_by_version(fake_root, "h100_sxm", "vllm", None)
    by_hidden = dict(zip(table["hidden_size"].tolist(), table["dtype"].tolist(), strict=False))
    # (INT4 weight-only rows are kept when Marlin timed them: the same kernel family.)
    assert by_hidden == {2880.0: "mxfp4", 3584.0: A.MXFP4_MARLIN, 7168.0: A.INT4_MARLIN}
    assert sorted(table["dtype"].tolist()) == (
        [A.INT4_MARLIN] * 3 + ["mxfp4"] * 3 + [A.MXFP4_MARLIN] * 3
    )


def test_flashinfer_cutlass_fp8_rows_get_a_dtype_of_their_own(fake_root):
    # vLLM 0.24's per-tensor FP8 rows on Hopper time FlashInfer's CUTLASS MoE, 2-7x its Triton
    # fused MoE: a kernel of their own, not what Triton's per-tensor experts run.
    cutlass = [dict(r, kernel_source="vllm_modeloptfp8moe_flashinfer_cutlass_flashinferexperts")
               for r in _moe_rows([("fp8", 4096, 128, 4)], 5.0)]  # fmt: skip
    triton = [dict(r, kernel_source="vllm_fp8moe_triton_tritonexperts")
              for r in _moe_rows([("fp8_block", 4096, 128, 4)], 1.0)]  # fmt: skip
    _write(fake_root, "h200_sxm", "moe", "vllm", "0.24.0", "moe_perf", cutlass + triton)
    old = [dict(r, kernel_source="vllm_fused_moe") for r in _moe_rows([("fp8", 4096, 128, 4)], 1.0)]
    _write(fake_root, "h200_sxm", "moe", "vllm", "0.19.0", "moe_perf", old)
    table, _ = A.moe_by_version(fake_root, "h200_sxm", "vllm", None)
    by_version = sorted(set(zip(table["version"].tolist(), table["dtype"].tolist(), strict=True)))
    assert by_version == [("0.19.0", "fp8"), ("0.24.0", "fp8_block"), ("0.24.0", A.FP8_CUTLASS)]
    tables = K.KernelTables("H200", None, None, None, None, {"vllm": table})
    shape, tokens = (4096, 2048, 8, 128), np.array([64.0])

    def layer_ms(dtypes):
        secs, _ = K.moe_seconds(tables, "vllm", dtypes, shape, 4, 1, tokens, None)
        return round(float(secs[0]) * 1e3, 9)

    # Triton's per-tensor experts read the 0.19 rows (the newest of their kernel), TensorRT-LLM's
    # the CUTLASS rows: each engine's dtypes in order (kernels.moe_table_dtype).
    assert layer_ms(K.moe_table_dtype("fp8", False)) == 2.0
    assert layer_ms(K.moe_table_dtype("fp8", False, fp8_kernel=K.fp8_moe_kernel("trtllm"))) == 10.0
    assert layer_ms(K.moe_table_dtype("fp8", True)) == 2.0  # (block-FP8 rows: 1 ms x 2)


def test_nearest_version_is_the_oldest_collection_at_or_after_the_release():
    have = ["0.5.14", "0.5.10", "0.5.6.post2"]
    assert K.nearest_version(have, None) == "0.5.14"
    assert K.nearest_version(have, "0.5.3") == "0.5.6.post2"
    assert K.nearest_version(have, "0.5.7") == "0.5.10"
    assert K.nearest_version(have, "v0.5.10") == "0.5.10"
    assert K.nearest_version(have, "0.5.14.post1") == "0.5.14"
    assert K.nearest_version(have, "0.4.3.post2") == "0.5.6.post2"


def test_the_distil_script_writes_the_catalog_from_a_package_tree(fake_root, tmp_path):
    # (Its README template once held a brace the formatter read as a field: the script no
    # longer ran. Every GPU the fake tree lacks is listed as missing, not an error.)
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu" / "distil_kernels.py"
    out = tmp_path / "kernels"
    done = subprocess.run(
        [sys.executable, str(script), "--data-root", str(fake_root), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = K._read(out / "h200" / "allreduce_vllm.csv")
    assert set(table["mode"].tolist()) == {"graph", "eager"}
    assert set(table["version"].tolist()) == {"0.24.0"}
    readme = (out / "README.md").read_text()
    row = "| h200 | allreduce_vllm.csv | h200_sxm | custom_allreduce_perf | vllm | 0.24.0 |"
    assert row in readme
    assert "mla_{context,generation}_module_perf" in readme
    assert "missing: h100: no comm/vllm custom all-reduce table" in done.stderr


def test_an_engines_decode_table_keeps_the_kernel_it_runs_by_default_for_each_kv_dtype(
    monkeypatch,
):
    # SGLang's tables time several kernels; vLLM on Ada runs a bf16 cache on FlashAttention-2
    # and an FP8 one on FlashInfer. A shape timed by two kernels must not become their median.
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu" / "distil_kernels.py"
    spec = importlib.util.spec_from_file_location("distil_kernels", script)
    distil = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, distil)  # (its dataclasses look it up)
    spec.loader.exec_module(distil)
    rows = []
    for kv, main, other in (("bfloat16", "fa2", "triton"), ("fp8", "flashinfer", "fa2")):
        for batch in (1, 2, 4):
            for source, latency in ((main, 1.0), (other, 9.0)):
                # The default kernel times three batches of the grid shape, the other one.
                if source == other and batch != 1:
                    continue
                rows.append({
                    "kernel_source": source, "kv_cache_dtype": kv, "batch_size": batch,
                    "isl": 1000, "step": 24, "num_heads": 8, "num_key_value_heads": 1,
                    "head_dim": 128, "window_size": 0, "latency": latency,
                })  # fmt: skip
    cols = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    kept = distil.default_kernel_rows(cols)
    pairs = set(zip(kept["kv_cache_dtype"].tolist(), kept["kernel_source"].tolist(), strict=True))
    assert pairs == {("bfloat16", "fa2"), ("fp8", "flashinfer")}
    decode = A.reduce_decode(kept, grid=True)
    assert sorted(decode["seconds"].tolist()) == [1e-3] * 6  # (no 9 ms row left in a median)
