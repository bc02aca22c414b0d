"""``bench/in_model_gemm.py`` on tiny stand-ins of Vidur's and LLMServingSim's profile files."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from bench_scripts import load_bench_script

from servesim.cost import kernels as K


@pytest.fixture(scope="module")
def script():
    return load_bench_script("in_model_gemm.py")


def _table_ms(n: float, k: float, tokens: int) -> float:
    return (
        1e3 * K.gemm_seconds(K.load_tables("H100"), "bf16", n, k, np.array([float(tokens)]))[0][0]
    )


def _vidur_row(tokens: int, tp: int, ms: dict[str, float]) -> dict[str, str]:
    row = {f"time_stats.{op}.median": str(v) for op, v in ms.items()}
    row.update(n_head="32", n_kv_head="8", n_embd="4096", n_expanded_embd="14336",
               use_gated_mlp="True", num_tokens=str(tokens),
               num_tensor_parallel_workers=str(tp))  # fmt: skip
    return row


def test_vidurs_four_gemms_have_the_layers_shapes(script):
    # Llama-3-8B at TP2: QKV 32+8+8 heads of 128 over 2 GPUs, O back to 4,096, the fused
    # gate+up 2 × 14,336 / 2, down 14,336 / 2 → 4,096.
    assert script.vidur_shapes(_vidur_row(512, 2, {})) == {
        "attn_pre_proj": (3072.0, 4096),
        "attn_post_proj": (4096, 2048.0),
        "mlp_up_proj": (14336.0, 4096),
        "mlp_down_proj": (4096, 7168.0),
    }


def test_a_vidur_profile_is_set_against_the_tables(script, tmp_path):
    # A profile timed 1.25x the tables at 1,024 tokens gives 1.25 for each of its GEMMs.
    ms = {op: 1.25 * _table_ms(n, k, 1024) for op, (n, k) in
          script.vidur_shapes(_vidur_row(1024, 1, {})).items()}  # fmt: skip
    folder = tmp_path / "data" / "profiling" / "compute" / "h100" / "org" / "model"
    folder.mkdir(parents=True)
    row = _vidur_row(1024, 1, ms)
    with (folder / "mlp.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    points = script.vidur_points(tmp_path, "h100")
    assert [(p[0], p[1]) for p in points] == [("org/model", 1024)] * 4
    # (an H100's rows at 1,024 tokens are compute-bound: servesim prices them as the table)
    assert [p[2] for p in points] == pytest.approx([1.25] * 4)
    assert [p[3] for p in points] == pytest.approx([1.25] * 4)


def test_llmservingsims_layers_split_k_and_v_from_the_large_projections(script, tmp_path):
    # Llama-3.1-8B at TP1: its q/o/gate/up/down at the tables' time (ratio 1), its k and v
    # (1,024 wide) at twice it; other layers (norms, attention) are not GEMMs.
    model = "meta-llama/Llama-3.1-8B"
    shapes = script.lss_shapes(model, 1)
    assert shapes["k_proj"] == (1024.0, 4096) and shapes["gate_proj"] == (14336.0, 4096)
    folder = tmp_path / "profiler" / "v0" / "perf_models" / "H100" / model / "tp1"
    folder.mkdir(parents=True)
    with (folder / "layers.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer_name", "input", "kv_cache", "tp_size", "latency(ns)"])
        for op, (n, k) in shapes.items():
            scale = 2.0 if op in script.SMALL_LSS else 1.0
            w.writerow([op, 256, 0, 1, round(scale * _table_ms(n, k, 256) * 1e6)])
        w.writerow(["input_layernorm", 256, 0, 1, 9000])
    big, small = script.lss_points(tmp_path)
    assert len(big) == 5 and len(small) == 2
    assert [p[2] for p in big] == pytest.approx([1.0] * 5, rel=1e-4)
    assert [p[2] for p in small] == pytest.approx([2.0] * 2, rel=1e-4)


def test_the_rtx_pro_6000s_small_gemms_are_set_against_the_l2_floor(script, tmp_path):
    # Llama-3.1-8B's o_proj at one token: its 32 MB of weights sit in the RTX PRO 6000's L2 in
    # the table's benchmark, so servesim prices it at the HBM roofline instead: a profile at
    # that time is 1 against servesim and more than 1 against the table.
    model = "meta-llama/Llama-3.1-8B"
    n, k = script.rtx_shapes(model, 1)["o_proj"]
    pricer = script.Pricer("RTX-PRO-6000")
    m = np.array([1.0])
    floor = (n * k * 2 + (n + k) * 2) / (pricer.hw.hbm_bandwidth * pricer.hw.memory_efficiency)
    folder = tmp_path / "profiler" / "perf" / "RTXPRO6000" / model / "bf16" / "tp1"
    folder.mkdir(parents=True)
    (folder / "dense.csv").write_text(f"layer,tokens,time_us\no_proj,1,{floor * 1e6}\n")
    [(name, tokens, to_table, to_servesim)] = script.rtx_points(tmp_path)
    assert (name, tokens) == (model, 1)
    assert to_servesim == pytest.approx(1.0, rel=1e-6)
    table = K.gemm_seconds(pricer.tables, "bf16", n, k, m)[0][0]
    assert to_table == pytest.approx(floor / table) and to_table > 1.2


def test_octaves_are_medians_per_power_of_two(script):
    points = [("a", 40, 0.9, 1.0), ("a", 50, 1.1, 1.0), ("b", 300, 1.3, 1.1),
              ("b", 400, 1.1, 1.1), ("a", 500, 1.2, 1.1)]  # fmt: skip
    bins = script.octaves(points)
    assert [b["tokens"] for b in bins] == [(32, 64), (256, 512)]
    assert [b["points"] for b in bins] == [2, 3]
    assert [b["median"] for b in bins] == pytest.approx([1.0, 1.2])
    assert [b["median"] for b in script.octaves(points, 3)] == pytest.approx([1.0, 1.1])
    assert script.median_abs_error(points) == pytest.approx(0.1)
    assert script.median_abs_error(points, 3) == pytest.approx(0.1)
