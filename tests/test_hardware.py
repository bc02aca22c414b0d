"""The hardware catalog: shipped figures, lookup, user YAML files and their validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from servesim.errors import ServesimError
from servesim.hardware import (
    CONFIDENCE_GRADES,
    DEFAULT_HOST_LINK,
    DTYPES,
    Hardware,
    Link,
    list_hardware,
    load_hardware,
    shipped_yaml,
)

CATALOG = Path(__file__).resolve().parents[1] / "src" / "servesim" / "catalog" / "hardware"
SHIPPED_IDS = (
    "H100 H100-PCIe H200 H800 H20 B200 B300 GB200 GB300 RTX-PRO-6000 A100-80GB A100-40GB A10G "
    "L40S L40 L4 MI300X"
).split()
MIB = 2**20
BLACKWELL_ULTRA = ("B300", "GB300")

# Every figure a shipped file must cite (the brief: "every figure's source").
CITED_FIELDS = {
    "peak_flops", "hbm_bytes", "hbm_bandwidth", "intra_node", "inter_node", "gpus_per_node",
    "compute_efficiency", "memory_efficiency", "kernel_launch_s", "tdp_w", "idle_w",
    "price_per_gpu_hour",
}  # fmt: skip


def minimal_spec(**changes: object) -> dict:
    """The smallest valid user YAML document, with some fields changed or removed (None)."""
    spec = {
        "name": "MyGPU",
        "vendor": "Acme",
        "peak_flops": {"bf16": 500e12, "fp8": 1000e12},
        "hbm_bytes": 64e9,
        "hbm_bandwidth": 2e12,
        "intra_node": {"name": "PCIe Gen5 x16", "bandwidth": 63e9, "latency_s": 5e-6},
        "inter_node": {"name": "Ethernet 100G", "bandwidth": 12.5e9, "latency_s": 2e-5},
    }
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def write_yaml(tmp_path: Path, doc: object, name: str = "my_gpu.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


def load_error(tmp_path: Path, doc: object) -> ServesimError:
    with pytest.raises(ServesimError) as info:
        load_hardware(str(write_yaml(tmp_path, doc)))
    return info.value


# --- the shipped catalog ----------------------------------------------------------------------


def test_every_shipped_yaml_loads_and_is_listed():
    files = sorted(CATALOG.glob("*.yaml"))
    assert len(files) == len(SHIPPED_IDS)
    listed = [hw.name for hw in list_hardware()]
    assert sorted(listed) == sorted(SHIPPED_IDS)
    for path in files:
        hw = load_hardware(str(path))  # by path too, not only by id
        assert hw == load_hardware(hw.name)


@pytest.mark.parametrize("hw", list_hardware(), ids=lambda hw: hw.name)
def test_every_figure_is_cited_and_graded(hw: Hardware):
    assert CITED_FIELDS <= set(hw.sources), CITED_FIELDS - set(hw.sources)
    assert all(len(cite) > 20 for cite in hw.sources.values())
    for name in CITED_FIELDS:
        assert hw.confidence_for(name) in CONFIDENCE_GRADES
    # Prices move every month: never claim more than an estimate for them.
    assert hw.confidence_for("price_per_gpu_hour") == "estimated"
    assert set(hw.peak_flops) <= set(DTYPES)


@pytest.mark.parametrize("hw", list_hardware(), ids=lambda hw: hw.name)
def test_dense_figures_keep_the_usual_ratios(hw: Hardware):
    peak = hw.peak_flops
    assert peak["fp16"] == pytest.approx(peak["bf16"])
    # Tensor-core TF32 is half of BF16, BF16 -> FP8 -> FP4 double; a 2x slip (a sparse figure
    # stored as dense, or half a dense one) breaks one of these.
    # rel=2%: the L40S datasheet itself prints TF32 183, BF16 362.05, FP8 733.
    assert peak["tf32"] == pytest.approx(peak["bf16"] / 2, rel=0.02)
    for low, high in (("bf16", "fp8"), ("fp8", "fp4")):
        if high in peak:
            # Blackwell Ultra (B300, GB300) runs dense NVFP4 at 3x its FP8 rate, not 2x (the
            # Blackwell Ultra datasheet: 15 PFLOPS NVFP4 against 5 FP8 on GB300).
            ratio = 3.0 if high == "fp4" and hw.name in BLACKWELL_ULTRA else 2.0
            assert peak[high] == pytest.approx(ratio * peak[low], rel=0.08), (low, high)
    # <=: cards whose FP16/BF16 tensor rate is halved for FP32 accumulation (L40, A10G) run
    # TF32 tensor ops at their FP32 CUDA-core rate.
    assert peak["fp32"] <= peak["bf16"] / 2


def test_h100_sxm_is_dense_and_in_decimal_units():
    h100 = load_hardware("H100")
    assert h100.peak_for("bf16") == pytest.approx(989.4e12, rel=0.01)  # not the 1979 sparse one
    assert h100.peak_for("fp8") == pytest.approx(2 * h100.peak_for("bf16"), rel=1e-3)
    assert h100.hbm_bandwidth == pytest.approx(3.35e12)  # 10^9 units, not GiB/s (3.60e12)
    assert h100.hbm_bytes == 81559 * MIB  # what nvidia-smi reports
    assert h100.intra_node.bandwidth == pytest.approx(450e9)  # 900 GB/s is both directions
    assert h100.inter_node.bandwidth == pytest.approx(50e9)  # 400 Gb/s NDR per GPU


@pytest.mark.parametrize(
    ("name", "bf16", "bandwidth", "mib"),
    [
        ("H100-PCIe", 756.5e12, 2.0e12, 81559),
        ("H200", 989.4e12, 4.8e12, 143771),
        ("B200", 2.25e15, 8.0e12, 183359),
        ("A100-80GB", 312e12, 2.039e12, 81920),
        ("A100-40GB", 312e12, 1.555e12, 40960),
        ("L40S", 362.05e12, 864e9, 46068),
        ("L4", 121e12, 300e9, 23034),
        ("H800", 989.4e12, 3.35e12, 81559),
        ("H20", 148e12, 4.0e12, 97871),
        ("L40", 181.05e12, 864e9, 46068),
        ("A10G", 70e12, 600e9, 23028),
    ],
)
def test_headline_figures(name: str, bf16: float, bandwidth: float, mib: int):
    hw = load_hardware(name)
    assert hw.peak_for("bf16") == pytest.approx(bf16, rel=0.01)
    assert hw.hbm_bandwidth == pytest.approx(bandwidth)
    assert hw.hbm_bytes == mib * MIB


def test_mi300x_figures_and_its_mesh():
    mi = load_hardware("mi300x")
    assert mi.peak_for("bf16") == pytest.approx(1307.4e12)
    assert mi.hbm_bytes == 205822885888  # rocm-smi VRAM Total Memory (B)
    assert mi.hbm_bandwidth == pytest.approx(5.3e12)
    # Full mesh: a TP=2 pair has one 64 GB/s link, eight GPUs use all seven.
    assert mi.intra_node.bandwidth_among(2) == pytest.approx(64e9)
    assert mi.intra_node.bandwidth_among(8) == pytest.approx(448e9)
    assert load_hardware("H100").intra_node.bandwidth_among(2) == pytest.approx(450e9)


def test_fp8_and_fp4_only_where_the_silicon_has_them():
    with_fp8 = {hw.name for hw in list_hardware() if "fp8" in hw.peak_flops}
    blackwell = {"B200", "B300", "GB200", "GB300", "RTX-PRO-6000"}  # (GB20x too)
    assert with_fp8 == {
        "H100", "H100-PCIe", "H200", "H800", "H20", "L40S", "L40", "L4", "MI300X"
    } | blackwell  # fmt: skip
    assert {hw.name for hw in list_hardware() if "fp4" in hw.peak_flops} == blackwell


def test_every_shipped_gpu_names_its_generation_and_it_agrees_with_its_dtypes():
    by_arch: dict[str, set[str]] = {}
    for hw in list_hardware():
        by_arch.setdefault(str(hw.architecture), set()).add(hw.name)
    assert by_arch == {
        "ampere": {"A100-40GB", "A100-80GB", "A10G"},
        "ada": {"L4", "L40", "L40S"},
        "hopper": {"H100", "H100-PCIe", "H200", "H800", "H20"},
        "blackwell": {"B200", "B300", "GB200", "GB300"},
        "blackwell-rtx": {"RTX-PRO-6000"},
        "cdna3": {"MI300X"},
    }
    # (FP8 tensor cores from Ada and Hopper on, FP4 from Blackwell: none on Ampere.)
    assert not any("fp8" in hw.peak_flops for hw in list_hardware() if hw.architecture == "ampere")


@pytest.mark.parametrize("hw", list_hardware(), ids=lambda hw: hw.name)
def test_ridge_point_is_plausible(hw: Hardware):
    # Dense bf16 FLOP per byte of HBM: ~120 (A10G) to ~420 (L40S) for this generation; the H20,
    # compute-capped for export, is the one deliberate outlier (148 TFLOPS on 4 TB/s: ~37).
    low = 30 if hw.name == "H20" else 100
    assert low < hw.ridge_point("bf16") < 500
    assert hw.ridge_point() == pytest.approx(hw.peak_for("bf16") / hw.hbm_bandwidth)


@pytest.mark.parametrize("hw", list_hardware(), ids=lambda hw: hw.name)
def test_operational_figures_are_in_range(hw: Hardware):
    # (<= 0.95: the RTX PRO 6000's peak is scaled to the clock its table was measured at.)
    assert 0.4 <= hw.compute_efficiency <= 0.95
    assert 0.6 <= hw.memory_efficiency <= 0.95
    assert 1e-6 <= hw.kernel_launch_s <= 1e-5
    assert 0 < hw.idle_w < hw.tdp_w <= 1400  # (GB300: 1,400 W)
    assert 0 < hw.price_per_gpu_hour < 10
    # An 8-GPU board or server, or a 72-GPU NVLink rack (GB200/GB300 NVL72).
    assert hw.gpus_per_node == (72 if hw.name in ("GB200", "GB300") else 8)
    assert hw.inter_node.bandwidth < hw.intra_node.bandwidth


def test_peak_for_a_missing_dtype_names_the_alternatives():
    with pytest.raises(ServesimError) as info:
        load_hardware("H100").peak_for("fp4")
    assert info.value.field == "dtype"
    assert "fp8" in str(info.value) and "fp4" in str(info.value)
    with pytest.raises(ServesimError):
        load_hardware("A100").peak_for("fp8")


# --- lookup ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("H100", "H100"),
        ("h100-sxm", "H100"),
        ("H100_SXM5", "H100"),
        ("NVIDIA H100 80GB HBM3", "H100"),  # the nvidia-smi name
        ("h100-pcie", "H100-PCIe"),
        ("a100", "A100-80GB"),
        ("A100-SXM4-40GB", "A100-40GB"),
        ("  l40s ", "L40S"),
        ("l40", "L40"),
        ("NVIDIA L40", "L40"),
        ("h800-sxm", "H800"),
        ("NVIDIA H800", "H800"),
        ("NVIDIA H20", "H20"),
        ("a10g", "A10G"),
        ("NVIDIA A10G", "A10G"),
        ("Mi300X", "MI300X"),
    ],
)
def test_ids_and_aliases_resolve_case_insensitively(query: str, expected: str):
    assert load_hardware(query).name == expected


def test_no_two_shipped_files_claim_one_name():
    seen: dict[str, str] = {}
    for hw in list_hardware():
        for name in (hw.name, *hw.aliases):
            assert name.lower() not in seen, (name, seen.get(name.lower()))
            seen[name.lower()] = hw.name


def test_the_name_index_agrees_with_the_full_specs():
    """The catalog is indexed from each file's `name:`/`aliases:` lines; the parsed spec must say
    the same, or a lookup would return a GPU under a name it does not have."""
    from servesim.hardware import _key, _load_shipped, _shipped_files

    index = _shipped_files()
    from_specs = {_key(n): hw.name for hw in list_hardware() for n in (hw.name, *hw.aliases)}
    assert set(index) == set(from_specs)
    for key, path in index.items():
        assert _load_shipped(path)[0].name == from_specs[key]


def test_shipped_entries_are_cached():
    assert load_hardware("H100") is load_hardware("h100-sxm")


def test_unknown_gpu_suggests_close_matches():
    with pytest.raises(ServesimError) as info:
        load_hardware("H1OO")
    assert info.value.field == "hardware"
    assert "did you mean H100" in str(info.value)
    with pytest.raises(ServesimError, match="did you mean MI300X"):
        load_hardware("mi300")


def test_shipped_yaml_is_a_template_that_round_trips(tmp_path: Path):
    text = shipped_yaml("h200")
    assert "name: H200" in text
    copy = write_yaml(tmp_path, text.replace("name: H200", "name: MyH200"), "copy.yaml")
    assert dataclasses.replace(load_hardware(str(copy)), name="H200") == load_hardware("H200")


# --- user YAML files -------------------------------------------------------------------------


def test_a_user_yaml_by_path_works_with_defaults(tmp_path: Path):
    hw = load_hardware(str(write_yaml(tmp_path, minimal_spec())))
    assert hw.name == "MyGPU"
    assert hw.peak_for("fp8") == 1000e12
    assert hw.intra_node == Link("PCIe Gen5 x16", 63e9, 5e-6)
    assert hw.gpus_per_node == 8 and hw.price_per_gpu_hour == 0.0  # dataclass defaults


def test_scientific_notation_without_a_dot_is_a_number(tmp_path: Path):
    # PyYAML (YAML 1.1) would read these as strings; the loader reads them as floats.
    text = yaml.safe_dump(minimal_spec()).replace("2000000000000.0", "2e12")
    assert "hbm_bandwidth: 2e12" in text
    assert load_hardware(str(write_yaml(tmp_path, text))).hbm_bandwidth == 2e12


def test_a_user_file_is_reread_after_an_edit(tmp_path: Path):
    path = write_yaml(tmp_path, minimal_spec(price_per_gpu_hour=1.0))
    assert load_hardware(str(path)).price_per_gpu_hour == 1.0
    write_yaml(tmp_path, minimal_spec(price_per_gpu_hour=2.0))
    assert load_hardware(str(path)).price_per_gpu_hour == 2.0


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"hbm_bandwidth": None}, "hbm_bandwidth", "is required"),
        ({"hbm_bandwidth": -1.0}, "hbm_bandwidth", "must be > 0"),
        ({"hbm_bandwidth": "fast"}, "hbm_bandwidth", "must be a number"),
        ({"hbm_bandwidth": True}, "hbm_bandwidth", "must be a number"),
        ({"gpus_per_node": 0}, "gpus_per_node", "must be >= 1"),
        ({"compute_efficiency": 1.5}, "compute_efficiency", "must be <= 1"),
        ({"peak_flops": {"bf16": -5.0}}, "peak_flops.bf16", "must be > 0"),
        ({"peak_flops": {"bf61": 1e12}}, "peak_flops", "unknown key 'bf61'"),
        ({"peak_flops": {}}, "peak_flops", ""),
        ({"intra_node": {"name": "x", "bandwidth": 1e9}}, "intra_node.latency_s", "is required"),
        ({"intra_node": 5}, "intra_node", "must be a mapping"),
        ({"hbm_bandwith": 1e12}, "hbm_bandwith", "did you mean hbm_bandwidth"),
        ({"confidence": "vibes"}, "confidence", "must be 'datasheet', 'estimated' or 'measured'"),
        ({"architecture": "hoper"}, "architecture", "must be 'ada', 'ampere', 'blackwell'"),
        ({"name": "My GPU"}, "name", "without spaces"),
        ({"idle_w": 800.0, "tdp_w": 300.0}, "idle_w", "must not exceed tdp_w"),
        ({"sources": {"hbm_bandwith": "x"}}, "sources", "did you mean hbm_bandwidth"),
    ],
)
def test_bad_user_yaml_names_the_field_and_the_file(
    tmp_path: Path, changes: dict, field: str, words: str
):
    err = load_error(tmp_path, minimal_spec(**changes))
    assert err.field == field
    assert words in str(err)
    assert "my_gpu.yaml" in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize("field", ["hbm_bandwidth", "hbm_bytes", "tdp_w"])
def test_an_infinite_figure_is_refused(tmp_path: Path, field: str):
    err = load_error(tmp_path, minimal_spec(**{field: float("inf")}))
    assert err.field == field
    assert f"{field} must be a finite number (got inf)" in str(err)


def test_every_bad_field_is_reported_at_once(tmp_path: Path):
    err = load_error(tmp_path, minimal_spec(vendor=None, hbm_bytes=-1.0))
    assert "vendor is required" in str(err) and "hbm_bytes must be > 0" in str(err)


@pytest.mark.parametrize("doc", [["H100"], "just text\n", ""], ids=["list", "scalar", "empty"])
def test_a_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path, doc: object):
    err = load_error(tmp_path, doc)
    assert "must be a YAML mapping" in str(err) and "my_gpu.yaml" in str(err)


def test_broken_yaml_syntax_names_the_line(tmp_path: Path):
    err = load_error(tmp_path, "name: X\nvendor: [unclosed\n")
    assert "my_gpu.yaml is not valid YAML at line" in str(err)


def test_a_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ServesimError, match="does not exist"):
        load_hardware(str(tmp_path / "nope.yaml"))


# --- overrides ---------------------------------------------------------------------------------


def test_with_overrides_replaces_and_keeps_the_rest():
    h100 = load_hardware("H100")
    cheap = h100.with_overrides(price_per_gpu_hour=1.25, compute_efficiency=0.65)
    assert cheap.price_per_gpu_hour == 1.25 and cheap.compute_efficiency == 0.65
    assert dataclasses.replace(cheap, price_per_gpu_hour=2.99, compute_efficiency=0.80) == h100
    assert h100.price_per_gpu_hour == 2.99  # the cached original is untouched
    assert cheap.confidence_for("peak_flops") == "datasheet"
    faster = h100.with_overrides(intra_node=Link("NVLink4", 400e9, 3e-6))
    assert faster.intra_node.bandwidth == 400e9


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price_per_gpu_hour": -1.0}, "price_per_gpu_hour"),
        ({"memory_efficiency": 0.0}, "memory_efficiency"),
        ({"idle_w": 5000.0}, "idle_w"),
        ({"pricee": 1.0}, "pricee"),
    ],
)
def test_with_overrides_validates(changes: dict, field: str):
    with pytest.raises(ServesimError) as info:
        load_hardware("H100").with_overrides(**changes)
    assert info.value.field == field


def test_to_dict_is_json_shaped():
    data = load_hardware("MI300X").to_dict()
    assert data["intra_node"]["peer_bandwidth"] == 64e9
    assert data["aliases"] == list(load_hardware("MI300X").aliases)
    assert data["sources"]["peak_flops"].startswith("AMD")


# --- memory tiers: host link and CPU memory (issue 5) -------------------------------------------

TIER_FIELDS = ("host_link", "cpu_memory_bytes", "cpu_memory_bandwidth")


@pytest.mark.parametrize("hw", list_hardware(), ids=lambda hw: hw.name)
def test_memory_tiers_are_cited_and_plausible(hw: Hardware):
    for name in TIER_FIELDS:
        assert name in hw.sources and hw.confidence_for(name) in CONFIDENCE_GRADES
    # PCIe Gen4 x16 31.5 GB/s or Gen5 x16 63 GB/s per direction, or on Grace-Blackwell
    # superchips NVLink-C2C at 450 GB/s per direction: far below HBM.
    if hw.name in ("GB200", "GB300"):
        assert hw.host_link.name == "NVLink-C2C" and hw.host_link.bandwidth == 450e9
    else:
        assert hw.host_link.name.startswith("PCIe Gen")
        assert hw.host_link.bandwidth in (31.5e9, 63e9)
    assert hw.host_link.bandwidth < hw.hbm_bandwidth / 5
    assert 32 * 2**30 <= hw.cpu_memory_bytes <= 512 * 2**30
    assert hw.cpu_memory_bandwidth > hw.host_link.bandwidth / 2


def test_export_variants_differ_from_h100_only_where_published():
    """H800 = H100 SXM with NVLink cut to 400 GB/s both ways; H20 = Hopper compute cut to ~15%
    with 96 GB at 4.0 TB/s and NVLink kept at 900 GB/s both ways."""
    h100, h800, h20 = load_hardware("H100"), load_hardware("H800"), load_hardware("H20")
    assert h800.peak_flops == h100.peak_flops
    assert (h800.hbm_bytes, h800.hbm_bandwidth) == (h100.hbm_bytes, h100.hbm_bandwidth)
    assert h800.intra_node.bandwidth == pytest.approx(200e9)  # 400 GB/s is both directions
    assert h800.intra_node.bandwidth_among(8) < h100.intra_node.bandwidth_among(8)
    assert h20.peak_for("bf16") == pytest.approx(0.15 * h100.peak_for("bf16"), rel=0.01)
    assert h20.peak_for("fp8") == pytest.approx(296e12)
    assert h20.intra_node.bandwidth == pytest.approx(450e9)
    assert h20.tdp_w == 400


def test_ampere_and_ada_cut_downs_keep_their_memory():
    """A10G: the A10's 24 GB at 600 GB/s with ~70 dense BF16 TFLOPS (not the A10's 125) and no
    FP8; L40: the L40S's memory with half its tensor rate."""
    a10g, l40, l40s = load_hardware("A10G"), load_hardware("L40"), load_hardware("L40S")
    assert a10g.peak_for("bf16") == pytest.approx(70e12)
    assert "fp8" not in a10g.peak_flops
    assert a10g.confidence_for("peak_flops") == "estimated"  # no vendor datasheet exists
    assert (l40.hbm_bytes, l40.hbm_bandwidth) == (l40s.hbm_bytes, l40s.hbm_bandwidth)
    assert l40.peak_for("fp8") == pytest.approx(l40s.peak_for("fp8") / 2, rel=0.02)
    assert l40.tdp_w == 300


def test_hopper_and_blackwell_hosts_are_pcie_gen5_and_ampere_gen4():
    assert load_hardware("H100").host_link.bandwidth == 63e9
    assert load_hardware("B200").host_link.bandwidth == 63e9
    assert load_hardware("A100").host_link.bandwidth == 31.5e9
    assert load_hardware("H100").cpu_memory_bytes == 256 * 2**30  # DGX H100: 2 TB / 8 GPUs


def test_a_user_file_without_tiers_gets_the_defaults(tmp_path: Path):
    hw = load_hardware(str(write_yaml(tmp_path, minimal_spec())))
    assert hw.host_link == DEFAULT_HOST_LINK
    assert hw.cpu_memory_bytes == Hardware.__dataclass_fields__["cpu_memory_bytes"].default
    tiered = minimal_spec(
        host_link={"name": "CXL", "bandwidth": 64e9, "latency_s": 1e-6},
        cpu_memory_bytes=1e12,
    )
    hw = load_hardware(str(write_yaml(tmp_path, tiered)))
    assert hw.host_link == Link("CXL", 64e9, 1e-6)
    assert hw.cpu_memory_bytes == 1e12
    assert hw.to_dict()["host_link"]["bandwidth"] == 64e9


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"host_link": {"name": "x", "bandwidth": 0.0, "latency_s": 0.0}}, "host_link.bandwidth"),
        (
            {"host_link": {"name": "x", "bandwidth": 1e9, "latency_s": 0.0, "peer": 1}},
            "host_link.peer",
        ),
        ({"cpu_memory_bytes": -1.0}, "cpu_memory_bytes"),
    ],
)
def test_bad_tier_fields_name_the_field(tmp_path: Path, changes: dict, field: str):
    err = load_error(tmp_path, minimal_spec(**changes))
    assert err.field == field


def test_tiers_can_be_overridden():
    hw = load_hardware("H100").with_overrides(host_link=Link("PCIe Gen6 x16", 121e9, 1e-5))
    assert hw.host_link.bandwidth == 121e9
    assert hw.cpu_memory_bytes == load_hardware("H100").cpu_memory_bytes


def test_l2_cache_is_an_optional_positive_figure_with_its_source():
    from servesim.hardware import load_hardware

    h100 = load_hardware("H100")
    assert h100.l2_bytes == 50 * 2**20 and "50 MB" in h100.sources["l2_bytes"]
    assert load_hardware("RTX-PRO-6000").l2_bytes == 128 * 2**20
    assert load_hardware("B200").l2_bytes is None
