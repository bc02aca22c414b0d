"""The fits stored beside the catalog's tables are the fits of those tables, and only read back
under the inputs they were made with."""

import dataclasses

import pytest

from servesim.cost import attention_fit as AF
from servesim.cost import fp8_fit as FP8
from servesim.cost import kernels as K
from servesim.cost import shipped_fits as SF
from servesim.hardware import load_hardware


def _flat(fit: dict) -> dict:
    """``fit`` with each tuple field (the decode ramps) spread over one key per element, for
    ``pytest.approx``, which compares no nested sequences."""
    out = {}
    for key, value in fit.items():
        if value is None or isinstance(value, str):
            continue  # (a label, decode_engine: compared exactly, ``_labels``)
        if isinstance(value, tuple):
            out[f"{key}.len"] = len(value)
            out.update({f"{key}[{i}]": v for i, v in enumerate(value)})
        else:
            out[key] = value
    return out


def _labels(fit: dict) -> dict:
    """``fit``'s fields that are labels, not numbers (which tables' kernels it was fitted to)."""
    return {k: v for k, v in fit.items() if v is None or isinstance(v, str)}


@pytest.mark.parametrize("gpu", K.gpus_with_tables())
def test_every_shipped_fit_is_the_fit_of_its_tables(gpu):
    hw = load_hardware(gpu)
    assert (K.table_folder(gpu) / SF.FILE_NAME).is_file(), "rerun bench/gpu/distil_kernels.py"
    tables = K.read_tables(K.table_folder(gpu), hw.name)
    figures = (hw.peak_flops["bf16"], hw.hbm_bandwidth, hw.kernel_launch_s)
    stored = SF.shipped_fit(hw.name, "attention", AF.fit_inputs(*figures))
    assert stored is not None
    # (The fit's last bits depend on the CPU's SIMD paths in numpy's reductions: a stored fit
    # equals a fresh one to rounding, not to the bit, on another machine.)
    fresh = dataclasses.asdict(AF.fit_tables(tables, *figures))
    shipped = dataclasses.asdict(AF.AttentionFit.from_stored(stored))
    assert _flat(shipped) == pytest.approx(_flat(fresh), rel=1e-9)
    assert _labels(shipped) == _labels(fresh) == {"decode_engine": None}
    # Each engine's own decode table has its fit stored too (decode fractions its own).
    assert set(tables.engine_decode or ()) == set(K.ENGINE_DECODE_BACKENDS)
    for engine in tables.engine_decode:
        stored = SF.shipped_fit(hw.name, AF.fit_kind(engine), AF.fit_inputs(*figures))
        fresh = dataclasses.asdict(AF.fit_tables(tables, *figures, engine=engine))
        shipped = dataclasses.asdict(AF.AttentionFit.from_stored(stored))
        assert _flat(shipped) == pytest.approx(_flat(fresh), rel=1e-9)
        assert _labels(shipped) == _labels(fresh) == {"decode_engine": engine}
    if "fp8" in hw.peak_flops and (tables.gemm["dtype"] == "fp8").any():
        fp8_inputs = FP8.fit_inputs(hw)
        stored = SF.shipped_fit(hw.name, "fp8", fp8_inputs)
        fresh = dataclasses.asdict(FP8.gpu_fp8_factors(tables.gemm, **fp8_inputs))
        assert dataclasses.asdict(FP8.Fp8Factors(**stored)) == pytest.approx(fresh, rel=1e-9)
        assert FP8._factors_of_gpu(gpu) == FP8._factors_of_gpu(gpu, shipped=False)
    else:
        assert SF.shipped_fit(hw.name, "fp8", {}) is None


def test_a_fit_is_read_back_only_under_its_own_inputs():
    hw = load_hardware("H100")
    inputs = AF.fit_inputs(hw.peak_flops["bf16"], hw.hbm_bandwidth, hw.kernel_launch_s)
    assert SF.shipped_fit("H100", "attention", inputs) is not None
    # Another peak (an edited hardware file): no stored fit; the curve is fitted afresh.
    other = dict(inputs, peak=inputs["peak"] * 0.9)
    assert SF.shipped_fit("H100", "attention", other) is None
    # Nor one fitted with another form of the length curve (the KV-head weight is keyed too).
    assert SF.shipped_fit("H100", "attention", dict(inputs, kv_head_weight=0.0)) is None
    fresh = AF.attention_fit("H100", other["peak"], hw.hbm_bandwidth, hw.kernel_launch_s)
    stored = AF.attention_fit("H100", inputs["peak"], hw.hbm_bandwidth, hw.kernel_launch_s)
    assert fresh != stored and fresh == AF.attention_fit(
        "H100", other["peak"], hw.hbm_bandwidth, hw.kernel_launch_s, shipped=False
    )
    assert SF.shipped_fit("MI300X", "attention", inputs) is None  # (no tables, no fits)


def test_fits_only_rewrites_a_folders_fits_from_its_tables(tmp_path):
    """``distil_kernels.py --fits-only`` refits the tables already in the output folder (no
    aiconfigurator-core needed): from the shipped L40S tables it writes the shipped fits, and a
    folder without a GPU's tables is left alone."""
    import json
    import shutil
    import sys

    sys.path.insert(0, str(K.table_folder("l40s").parents[4] / "tests"))
    from bench_scripts import load_bench_script

    distil = load_bench_script("gpu/distil_kernels.py")
    folder = tmp_path / "l40s"
    shutil.copytree(K.table_folder("l40s"), folder)
    (folder / SF.FILE_NAME).unlink()
    assert distil.main(["--out", str(tmp_path), "--fits-only"]) == 0
    written = json.loads((folder / SF.FILE_NAME).read_text())
    shipped = json.loads((K.table_folder("l40s") / SF.FILE_NAME).read_text())
    assert written.keys() == shipped.keys() >= {"attention", "attention_vllm", "fp8"}
    for kind in written:
        assert written[kind]["inputs"] == shipped[kind]["inputs"]
        assert written[kind]["fit"].keys() == shipped[kind]["fit"].keys()
    walk = written["attention_vllm"]["fit"]["decode_serial_rate"]
    assert walk > 0 and walk == pytest.approx(
        shipped["attention_vllm"]["fit"]["decode_serial_rate"], rel=1e-9
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l40s"]
