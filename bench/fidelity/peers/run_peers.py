"""Run the peer estimators (NVIDIA AIConfigurator, llm-analysis, GenZ) on the fidelity cases.

    bash bench/fidelity/peers/setup_peers.sh                 # once: each tool in its own venv
    .venv/bin/python bench/fidelity/peers/run_peers.py       # all cases -> peers/results.json
    .venv/bin/python bench/fidelity/peers/run_peers.py --only llm-analysis --cases 'x.json'

Reads every case of ``bench/fidelity/cases/*.json`` (SCHEMA.md), skips those that carry a
``skip`` key, maps each case onto each tool's inputs where the tool can represent it, runs the
tool in a subprocess of its own venv (``aic_runner.py`` / ``llma_runner.py`` /
``genz_runner.py``, with a timeout) and writes ``results.json`` (with ``--only``, the other
tools' entries already there are kept)::

    {"tool":    {tool: {"name", "version", "how_invoked", "defaults"}},
     "cases":   {case_id: {tool: {metric: value}}},   # servesim metric names, whole deployment,
                                                      # only metrics the case publishes
     "details": {case_id: {tool: {"inputs", "cli", "model_source", "raw", "metrics", ...}}},
     "skipped": {case_id: {tool: why}},                # the tool cannot represent the case
     "failed":  {case_id: {tool: error}},              # the tool was run and refused / errored
     "summary": {tool: {"represented", "skipped", "failed"}}}

Every mapping decision is listed in README.md beside this file. Nothing in servesim imports
this script and servesim's tests do not need it; it reads servesim's model catalog (to give the
tools the same ``config.json`` servesim runs) and engine profiles (default batch caps) when
``servesim`` is importable, so run it with the project's venv.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import glob
import importlib
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CASES_GLOB = str(HERE.parent / "cases" / "*.json")
RESULTS = HERE / "results.json"
VENVS = Path(os.environ.get("PEER_VENVS", "/work/peer-venvs"))

AIC = "aiconfigurator"
LLMA = "llm-analysis"
GENZ = "genz"
TOOLS = (AIC, LLMA, GENZ)
RUNNERS = {AIC: "aic_runner.py", LLMA: "llma_runner.py", GENZ: "genz_runner.py"}
DISTRIBUTIONS = {AIC: "aiconfigurator", LLMA: "llm-analysis", GENZ: "genz-llm"}

# --- what each tool has ------------------------------------------------------------------------

# servesim gpu id -> AIConfigurator system. Left out on purpose: H100-PCIe and L4 (the systems
# exist in 0.12.0 but ship no performance data), A100-40GB (a100_sxm is the 80 GB part: 2.0 TB/s
# against 1.6 TB/s), H800, H20, A10G, L40, MI300X (no system).
AIC_SYSTEMS = {
    "H100": "h100_sxm",
    "H200": "h200_sxm",
    "A100-80GB": "a100_sxm",
    "L40S": "l40s",
    "B200": "b200_sxm",
}
# case engine -> AIConfigurator backend: it models these three frameworks' kernels only.
AIC_BACKENDS = {"trtllm": "trtllm", "vllm": "vllm", "vllm-v0": "vllm", "sglang": "sglang"}
# weight dtype -> AIConfigurator quant modes (fp16 runs as its 16-bit "bfloat16" GEMM tables;
# int8/int4 in the schema are weight-only)
AIC_GEMM = {
    "bf16": "bfloat16",
    "fp16": "bfloat16",
    "fp8": "fp8",
    "int8": "int8_wo",
    "int4": "int4_wo",
    "fp4": "nvfp4",
}
AIC_MOE = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8", "int4": "int4_wo", "fp4": "nvfp4"}
AIC_KV = {None: "bfloat16", "fp8": "fp8", "int8": "int8"}

# servesim gpu id -> llm-analysis gpu config name (its shipped gpu_configs/*.json)
LLMA_GPUS = {
    "H100": "h100-sxm-80gb",
    "H100-PCIe": "h100-pcie-80gb",
    "A100-80GB": "a100-sxm-80gb",
    "A100-40GB": "a100-sxm-40gb",
    "A10G": "a10g-pcie-24gb",
}
# weight dtype -> llm-analysis dtype config (w<weight bits>a<activation bits>e<embedding bits>).
# fp8 runs as w8a8: the tool has no FP8 entry and takes 8-bit GEMMs at the GPU's int8 peak,
# which is the FP8 peak on Hopper.
LLMA_DTYPES = {
    "bf16": "w16a16e16",
    "fp16": "w16a16e16",
    "fp8": "w8a8e16",
    "int8": "w8a16e16",
    "int4": "w4a16e16",
    "fp4": "w4a4e16",
}
KV_BYTES = {None: 2, "fp8": 1, "int8": 1}
"""Bytes of a KV-cache element for a case's ``kv_dtype`` (null: the activations' 16 bits)."""
# Hub ids of models llm-analysis ships a config for (its model_configs/*.json), used only when
# servesim's catalog does not resolve the model. Keys are lower-case base ids (-chat/-instruct
# dropped, as servesim does).
LLMA_SHIPPED = {
    # NousResearch/Llama-2-7b-hf is an ungated re-upload of meta-llama/Llama-2-7b-hf
    "meta-llama/llama-2-7b-hf": "NousResearch_Llama-2-7b-hf",
    # a fine-tune of Llama-2-70b: the same network shape
    "meta-llama/llama-2-70b-hf": "upstage_Llama-2-70b-instruct-v2",
    "eleutherai/gpt-j-6b": "EleutherAI_gpt-j-6b",
}

# servesim gpu id -> GenZ system (its shipped Systems/system_configs.py: datasheet peak FLOP/s,
# HBM bandwidth and size, link bandwidth). H200, B200, L40S, L4, A10G, H800, H20: not shipped.
GENZ_SYSTEMS = {
    "H100": "H100_GPU",
    "A100-80GB": "A100_80GB_GPU",
    "A100-40GB": "A100_40GB_GPU",
    "MI300X": "MI300X",
}
# weight dtype -> GenZ ``bits``: one precision for weights, activations and KV cache (its
# System.compute_multiplier / mem_multiplier: fp8 and int8 compute at 2x, int4/fp4 at 4x the
# bf16 rate).
GENZ_BITS = {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "int8": "int8", "int4": "int4",
             "fp4": "fp4"}  # fmt: skip
GENZ_KV_BYTES = {"bf16": 2, "fp8": 1, "int8": 1, "int4": 0.5, "fp4": 0.5}

# Batch caps when a case states none (offline runs), as servesim's engine profiles give them;
# used only if servesim.engines cannot be imported.
DEFAULT_MAX_NUM_SEQS = {"vllm": 256, "vllm-v0": 256, "sglang": 1024, "trtllm": 2048}

_VARIANT = re.compile(r"-(instruct|chat|base)(?=-|$)", re.IGNORECASE)


@functools.cache
def _servesim(module: str):
    """``servesim.<module>`` from this checkout, or None when it cannot be imported."""
    if str(REPO / "src") not in sys.path:
        sys.path.insert(0, str(REPO / "src"))
    try:
        return importlib.import_module(f"servesim.{module}")
    except Exception:
        return None


# --- the case, reduced to what the tools take -------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One case as a fixed-length batch the tools can take."""

    kind: str
    """``batch``: one lock-step batch (static / latency modes); ``steady``: a closed loop of
    ``batch`` requests in flight (online, fixed concurrency); ``throughput``: a backlog drained
    at ``batch`` requests in flight (offline; only throughputs are comparable)."""
    isl: int
    osl: int
    batch: int
    """Requests per replica (batch size or concurrency)."""
    replicas: int
    note: str = ""
    prompts: int | None = None
    """workload.num_prompts, for the duration of a backlog or closed loop."""


def _version(text: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def length_spread(case: dict) -> str:
    """Why request lengths vary, or "" when every request has exactly input_len / output_len."""
    w = case.get("workload") or {}
    isl, osl = w.get("input_len"), w.get("output_len")
    if not (isinstance(isl, int) and isinstance(osl, int) and isl > 0 and osl > 0):
        return "no fixed input_len / output_len"
    if w.get("dataset") not in (None, "random", "fixed"):
        return f"dataset {w['dataset']!r}"
    for key, value in w.items():
        if "std" in key and value:
            return f"{key} {value}"
    n = w.get("num_prompts")
    for total, length in (("total_input_tokens", isl), ("total_output_tokens", osl)):
        if isinstance(n, int) and isinstance(w.get(total), int):
            mean = w[total] / n
            if abs(mean - length) > 0.01 * length:
                return f"{total}/num_prompts = {mean:.0f}, not {length}"
    ratio = w.get("range_ratio", w.get("random_range_ratio"))
    if ratio is not None:
        # The benchmark client decides: SGLang's bench_serving (and vLLM's before 0.8) draws
        # lengths in [ratio*len, len], 1.0 = fixed; vLLM's since 0.9 in [(1-ratio)*len,
        # (1+ratio)*len], 0.0 = fixed (vllm-project/vllm#16126, in the 0.8 series: ambiguous).
        notes = case.get("notes", "")
        # `vllm bench serve` (the CLI, vLLM >= 0.9) is the client whatever the server.
        vllm_cli = re.search(r"vllm bench serve", notes, re.IGNORECASE)
        sglang_client = not vllm_cli and (
            case.get("engine") == "sglang"
            or re.search(r"sglang\.bench_serving|SGLang's bench_serving", notes, re.IGNORECASE)
        )
        version = _version(case.get("engine_version", ""))
        if vllm_cli:
            fixed = 0
        elif sglang_client or (version is not None and version < (0, 8)):
            fixed = 1
        elif version is not None and version >= (0, 9):
            fixed = 0
        else:
            return f"range_ratio {ratio} (its meaning depends on the vLLM client's version)"
        if ratio != fixed:
            return f"range_ratio {ratio}"
    return ""


def engine_cap(case: dict) -> tuple[int | None, str]:
    """The engine's cap on sequences in flight: stated in the case, else the engine default."""
    args = case.get("engine_args") or {}
    for key in ("max_num_seqs", "max_batch_size", "max_running_requests"):
        if isinstance(args.get(key), int):
            return args[key], f"engine_args.{key}"
    engine = case.get("engine")
    engines = _servesim("engines")
    if engines is not None and engine in getattr(engines, "PROFILES", {}):
        return engines.PROFILES[engine].max_num_seqs, f"servesim engine profile {engine!r} default"
    if engine in DEFAULT_MAX_NUM_SEQS:
        return DEFAULT_MAX_NUM_SEQS[engine], f"{engine} default max_num_seqs"
    return None, "no cap known"


def in_flight(case: dict, replicas: int, clients: int | None) -> tuple[int | None, str]:
    """Requests running at once per replica: clients, prompts and the engine's cap bound it."""
    load = case.get("load") or {}
    prompts = (case.get("workload") or {}).get("num_prompts")
    cap, cap_src = engine_cap(case)
    bounds = []
    if clients is not None:
        bounds.append((clients, "load.concurrency"))
    if cap:
        bounds.append((cap, cap_src))
    if isinstance(load.get("max_concurrency"), int):
        bounds.append((math.ceil(load["max_concurrency"] / replicas), "load.max_concurrency"))
    if isinstance(prompts, int):
        bounds.append((math.ceil(prompts / replicas), "workload.num_prompts"))
    if not bounds:
        return None, "no batch cap stated or known"
    value, src = min(bounds)
    return value, f"in flight per replica = {value} ({src})"


def shape_of(case: dict) -> tuple[Shape | None, str]:
    mode = case.get("mode")
    if mode == "kernel":
        return None, "kernel case: neither tool exposes single-operator timings"
    spread = length_spread(case)
    if spread:
        return None, f"variable request lengths ({spread}): both tools take one fixed ISL/OSL"
    workload = case["workload"]
    isl, osl = workload["input_len"], workload["output_len"]
    prompts = workload.get("num_prompts") if isinstance(workload.get("num_prompts"), int) else None
    replicas = int(case.get("replicas") or 1)
    load = case.get("load") or {}
    if mode in ("static", "latency"):
        bs = load.get("batch_size")
        if not isinstance(bs, int) or bs % replicas:
            return None, f"batch_size {bs!r} does not split evenly over {replicas} replicas"
        return Shape("batch", isl, osl, bs // replicas, replicas, "", prompts), ""
    if mode not in ("offline", "online"):
        return None, f"unknown mode {mode!r}"
    rate = load.get("request_rate")
    unbounded = rate is None or rate == "inf" or (isinstance(rate, float) and math.isinf(rate))
    if not unbounded:
        return None, (
            f"Poisson arrivals at {rate} req/s: neither tool models arrivals or queueing "
            "(AIConfigurator's aggregated mode takes a concurrency, not a rate)"
        )
    conc = load.get("concurrency") if mode == "online" else None
    if isinstance(conc, int):
        if conc % replicas:
            return None, f"concurrency {conc} does not split evenly over {replicas} replicas"
        batch, note = in_flight(case, replicas, conc // replicas)
        # more clients than the engine runs at once: the rest queue, which neither tool sees
        kind = "steady" if batch == conc // replicas else "throughput"
        note = f"closed loop of {conc}; {note}"
        return Shape(kind, isl, osl, batch, replicas, note, prompts), ""
    batch, note = in_flight(case, replicas, None)
    if batch is None:
        return None, note
    return Shape("throughput", isl, osl, batch, replicas, f"backlog; {note}", prompts), ""


# --- models ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    case_model: str
    config: dict | None
    """The Hugging Face config.json servesim runs for this case, if servesim resolves it."""
    servesim_id: str | None
    source: str


def _base_id(name: str) -> str:
    return _VARIANT.sub("", name.strip()).lower()


def resolve_model(name: str) -> Model:
    """The config.json servesim would run (its catalog, or a path the case gives)."""
    for base in (Path(name), REPO / name, HERE.parent / "cases" / name):
        path = base / "config.json" if base.is_dir() else base
        if path.is_file() and path.suffix == ".json":
            return Model(name, json.loads(path.read_text()), None, str(path))
    catalog = _servesim("model")
    if catalog is None:  # servesim's deps missing: run with the project's venv
        return Model(name, None, None, "servesim not importable (run with the project's venv)")
    try:
        spec = catalog.load_model(name)
    except Exception as err:
        return Model(name, None, None, f"servesim does not resolve it ({err})")
    for entry in catalog.list_models():
        if entry.id == spec.name:
            cfg = json.loads(Path(entry.path).read_text())
            return Model(name, cfg, entry.id, f"servesim catalog {entry.path.name}")
    return Model(name, None, None, "servesim resolves it but no catalog file was found")


def is_moe(cfg: dict) -> bool:
    return any(
        isinstance(cfg.get(k), int) and cfg[k] > 1
        for k in ("num_local_experts", "num_experts", "n_routed_experts")
    )


def aic_bundled_config(name: str, site: Path | None) -> tuple[dict | None, str]:
    """AIConfigurator's own copy of a Hub config.json (its model_configs/), if it has one."""
    if site is None:
        return None, ""
    folder = site / "aiconfigurator_core" / "model_configs"
    for hub_id in dict.fromkeys((name, _VARIANT.sub("", name))):
        path = folder / f"{hub_id.replace('/', '--')}_config.json"
        if path.is_file():
            return json.loads(path.read_text()), f"AIConfigurator bundled {path.name}"
    return None, ""


def llma_model(cfg: dict, label: str) -> tuple[dict | None, str]:
    """An llm-analysis ModelConfig (its JSON format) for a Hugging Face config.json.

    Fields as the tool's own Hugging Face importer reads them, plus the MLP width: the
    importer leaves ``ffn_embed_dim`` at 4 x hidden; here it is the model's, and a gated
    (SiLU) MLP's three matrices count as 1.5 x intermediate_size in the tool's two-matrix MLP,
    so the weights it streams per step are the model's. Returns None with the reason when the
    tool's formulas cannot describe the network.
    """
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    if not (isinstance(hidden, int) and isinstance(heads, int)):
        return None, "config.json lacks hidden_size / num_attention_heads"
    if is_moe(cfg):
        return None, (
            "mixture of experts: llm-analysis counts a dense MLP's FLOPs (16*b*s*h^2) and "
            "streams every expert's weights each step"
        )
    if cfg.get("kv_lora_rank"):
        return None, "multi-head latent attention: llm-analysis models MHA/GQA only"
    head_dim = cfg.get("head_dim")
    if isinstance(head_dim, int) and head_dim * heads != hidden:
        return None, (
            f"head_dim x heads = {head_dim * heads} != hidden {hidden}: llm-analysis derives "
            "head_dim = hidden / heads"
        )
    inter = cfg.get("intermediate_size") or 4 * hidden
    gated = cfg.get("hidden_act") in ("silu", "swiglu")
    ffn = int(inter * 1.5) if gated else int(inter)
    return {
        "name": label,
        "num_layers": cfg["num_hidden_layers"],
        "n_head": heads,
        "hidden_dim": hidden,
        "vocab_size": cfg["vocab_size"],
        "max_seq_len": cfg.get("max_position_embeddings"),
        "num_key_value_heads": cfg.get("num_key_value_heads") or heads,
        "ffn_embed_dim": ffn,
        "expansion_ratio": ffn / hidden,
        "model_type": cfg.get("model_type"),
    }, ""


def llma_shipped(name: str, site: Path | None) -> str | None:
    if site is None:
        return None
    base = _base_id(name)
    shipped = LLMA_SHIPPED.get(base) or base.replace("/", "_")
    folder = site / "llm_analysis" / "model_configs"
    by_lower = {p.stem.lower(): p.stem for p in folder.glob("*.json")}
    return by_lower.get(shipped.lower())


def genz_model(cfg: dict, label: str) -> tuple[dict | None, str]:
    """Keyword arguments of a GenZ ``ModelConfig`` for a Hugging Face config.json, named as
    GenZ's own presets name them (its ``Models/Model_sets/``: Llama-3.1-8B is hidden 4096, 32
    heads, 8 KV heads, ``num_ffi`` 2, intermediate 14336, 32 decoder layers). Returns None with
    the reason when its model cannot describe the network."""
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    if not (isinstance(hidden, int) and isinstance(heads, int)):
        return None, "config.json lacks hidden_size / num_attention_heads"
    if cfg.get("kv_lora_rank"):
        return None, "multi-head latent attention: GenZ's attention is MHA/GQA"
    if len(set(cfg.get("layer_types") or ())) > 1:
        return None, "layers of different attention types (sliding and full): GenZ has one"
    mixed = cfg.get("first_k_dense_replace") or cfg.get("mlp_only_layers")
    if mixed or cfg.get("decoder_sparse_step", 1) not in (1, None):
        return None, "dense and MoE layers mixed: GenZ's ModelConfig repeats one layer"
    gated = cfg.get("hidden_act") in ("silu", "swiglu") or any(
        "Gemma" in a for a in cfg.get("architectures") or ()
    )
    spec: dict = {
        "model": label,
        "vocab_size": cfg["vocab_size"],
        "max_model_len": cfg.get("max_position_embeddings") or 128 * 1024,
        "hidden_size": hidden,
        "intermediate_size": cfg.get("intermediate_size") or 4 * hidden,
        "num_ffi": 2 if gated else 1,
        "num_decoder_layers": cfg["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": cfg.get("head_dim") or hidden // heads,
        "hidden_act": cfg.get("hidden_act") or "gelu",
    }
    if cfg.get("sliding_window") and cfg.get("use_sliding_window", True):
        spec["sliding_window"] = cfg["sliding_window"]
    if is_moe(cfg):
        experts = next(
            cfg[k] for k in ("num_local_experts", "num_experts", "n_routed_experts") if cfg.get(k)
        )
        shared = cfg.get("shared_expert_intermediate_size")
        spec.update(
            num_experts=experts,
            expert_top_k=cfg["num_experts_per_tok"],
            moe_intermediate_size=cfg.get("moe_intermediate_size") or spec["intermediate_size"],
            n_shared_experts=cfg.get("n_shared_experts") or (1 if shared else 0),
        )
        if shared:
            spec["shared_expert_intermediate_size"] = shared
    return spec, ""


# --- mapping a case onto each tool ------------------------------------------------------------


@dataclass
class Job:
    case_id: str
    tool: str
    kwargs: dict
    cli: str
    shape: Shape
    model_source: str
    notes: list[str]
    model_config: dict | None = None
    """The config the tool was given, when run_peers.py wrote it (translated or renamed)."""

    def shown(self) -> tuple[dict, str]:
        """kwargs and CLI with the temporary model file named by where it came from."""
        if self.tool == GENZ:  # (the model travels in the job itself, no file)
            return self.kwargs, self.cli
        key = "model_path" if self.tool == AIC else "model_name"
        path = str(self.kwargs[key])
        if not path.startswith("/") or "servesim-peers-" not in path:
            return self.kwargs, self.cli
        label = f"<{self.model_source}>"
        return {**self.kwargs, key: label}, self.cli.replace(shlex.quote(path), label)


def map_aic(case: dict, shape: Shape, model: Model, site: Path | None, tmp: Path) -> Job | str:
    backend = AIC_BACKENDS.get(case.get("engine"))
    if backend is None:
        return f"engine {case.get('engine')!r}: AIConfigurator models trtllm, vllm and sglang only"
    system = AIC_SYSTEMS.get(case.get("gpu"))
    if system is None:
        return f"gpu {case.get('gpu')!r}: no AIConfigurator system with performance data"
    wdt, kvdt = case.get("weight_dtype"), case.get("kv_dtype")
    if wdt not in AIC_GEMM or kvdt not in AIC_KV:
        return f"dtype weight={wdt!r} kv={kvdt!r} has no AIConfigurator quant mode"
    cfg, source = model.config, model.source
    if cfg is None:
        cfg, source = aic_bundled_config(model.case_model, site)
        if cfg is None:
            return f"no config.json: {model.source}; AIConfigurator bundles none for it"
    notes = []
    cfg = dict(cfg)
    if cfg.get("architectures", [""])[0] == "MistralForCausalLM":
        window = cfg.get("sliding_window")
        if window is not None and window < shape.isl + shape.osl:
            return "Mistral sliding window shorter than the sequence: AIConfigurator has none"
        cfg["architectures"] = ["LlamaForCausalLM"]
        notes.append("MistralForCausalLM run as LlamaForCausalLM (same network at this length)")
    folder = tmp / "aic" / re.sub(r"[^A-Za-z0-9._-]", "_", f"{source}_{shape.isl + shape.osl}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    tp, pp = int(case.get("tp") or 1), int(case.get("pp") or 1)
    attn_tp, dp, batch = tp, 1, shape.batch
    launch = str((case.get("engine_args") or {}).get("launch", ""))
    if backend == "sglang" and "--enable-dp-attention" in launch:
        found = re.search(r"--dp(?:-size)?[ =](\d+)", launch)
        dp = int(found.group(1)) if found else tp  # SGLang 0.4 set dp = tp for DP attention
        if tp % dp:
            return f"DP attention over {dp} ranks does not split tp {tp}"
        attn_tp, per_rank = tp // dp, -(-batch // dp)
        rounded = "" if batch % dp == 0 else f" ({batch} rounded up to {per_rank * dp})"
        batch = per_rank
        notes.append(
            f"SGLang DP attention: attention tp {attn_tp} x dp {dp}, batch per rank{rounded}"
        )
    kwargs = {
        "model_path": str(folder),
        "system_name": system,
        "mode": "static" if shape.kind == "batch" else "agg",
        "backend_name": backend,
        "isl": shape.isl,
        "osl": shape.osl,
        "batch_size": batch,
        "tp_size": attn_tp,
        "pp_size": pp,
        "gemm_quant_mode": AIC_GEMM[wdt],
        "kvcache_quant_mode": AIC_KV[kvdt],
    }
    if dp > 1:
        kwargs["attention_dp_size"] = dp
    checkpoint_fp8 = wdt == "fp8" and "fp8" in json.dumps(cfg.get("quantization_config", ""))
    if checkpoint_fp8:  # an FP8 checkpoint config (block scales...): the tool reads its format
        del kwargs["gemm_quant_mode"]
        notes.append("GEMM/MoE quant modes inferred by the tool from the checkpoint's config")
    if is_moe(cfg):
        if wdt not in AIC_MOE:
            return f"weight dtype {wdt!r} has no AIConfigurator MoE quant mode"
        kwargs.update(moe_tp_size=tp, moe_ep_size=1)
        if not checkpoint_fp8:
            kwargs["moe_quant_mode"] = AIC_MOE[wdt]
        notes.append("MoE experts tensor-parallel over all GPUs (moe_tp=tp, ep=1)")
    flags = {
        "model_path": "--model-path",
        "system_name": "--system",
        "mode": "--estimate-mode",
        "backend_name": "--backend",
        "isl": "--isl",
        "osl": "--osl",
        "batch_size": "--batch-size",
        "tp_size": "--tp",
        "pp_size": "--pp",
        "attention_dp_size": "--attention-dp-size",
        "gemm_quant_mode": "--gemm-quant-mode",
        "kvcache_quant_mode": "--kvcache-quant-mode",
        "moe_tp_size": "--moe-tp-size",
        "moe_ep_size": "--moe-ep-size",
        "moe_quant_mode": "--moe-quant-mode",
    }
    cli = "aiconfigurator cli estimate " + " ".join(
        f"{flags[k]} {shlex.quote(str(v))}" for k, v in kwargs.items()
    )
    return Job(case["id"], AIC, kwargs, cli, shape, source, notes, cfg)


def map_llma(case: dict, shape: Shape, model: Model, site: Path | None, tmp: Path) -> Job | str:
    if shape.kind == "steady":
        return "online closed loop: llm-analysis has no continuous-batching or queueing model"
    gpu = LLMA_GPUS.get(case.get("gpu"))
    if gpu is None:
        return f"gpu {case.get('gpu')!r}: llm-analysis ships no config for it"
    if int(case.get("pp") or 1) > 1:
        return "pipeline parallel: llm-analysis's inference latency covers one pipeline stage"
    wdt, kvdt = case.get("weight_dtype"), case.get("kv_dtype")
    if wdt not in LLMA_DTYPES or kvdt not in KV_BYTES:
        return f"dtype weight={wdt!r} kv={kvdt!r} has no llm-analysis dtype config"
    spec = None
    if model.config is not None:
        spec, why = llma_model(model.config, re.sub(r"\W", "_", model.servesim_id or "model"))
        if spec is None:
            return why
        path = tmp / "llma" / f"{spec['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec, indent=1))
        model_name, source = str(path), f"{model.source}, translated (llm_model in run_peers.py)"
    else:
        model_name = llma_shipped(model.case_model, site)
        if model_name is None:
            return f"no model config: {model.source}; llm-analysis ships none for it"
        source = f"llm-analysis shipped model_configs/{model_name}.json"
    kwargs = {
        "model_name": model_name,
        "gpu_name": gpu,
        "dtype_name": LLMA_DTYPES[wdt],
        "batch_size_per_gpu": shape.batch,
        "seq_len": shape.isl,
        "num_tokens_to_generate": shape.osl,
        "tp_size": int(case.get("tp") or 1),
        "kv_cache_dtype_bytes": KV_BYTES[kvdt],
    }
    cli = "python -m llm_analysis.analysis infer " + " ".join(
        f"--{k} {shlex.quote(str(v))}" for k, v in kwargs.items()
    )
    notes = []
    if shape.kind == "throughput":
        notes.append("backlog taken as back-to-back static batches of the in-flight count")
    return Job(case["id"], LLMA, kwargs, cli, shape, source, notes, spec)


GENZ_SYSTEM_EFF = 1.0
"""GenZ's ``system_eff`` (its compute and memory efficiency, one number): the tool's default,
1.0; ``--genz-system-eff`` sets another for a sensitivity run."""


def map_genz(
    case: dict,
    shape: Shape,
    model: Model,
    site: Path | None,
    tmp: Path,
    system_eff: float = GENZ_SYSTEM_EFF,
) -> Job | str:
    if shape.kind == "steady":
        return (
            "online closed loop: GenZ prices a prefill, a decode step or one given mixed step "
            "(chunked_moddeling), with no continuous-batching or queueing model to run a loop"
        )
    system = GENZ_SYSTEMS.get(case.get("gpu"))
    if system is None:
        return f"gpu {case.get('gpu')!r}: GenZ ships no system for it"
    wdt, kvdt = case.get("weight_dtype"), case.get("kv_dtype")
    if wdt not in GENZ_BITS:
        return f"weight dtype {wdt!r} has no GenZ precision"
    if model.config is None:
        return f"no config.json: {model.source}"
    spec, why = genz_model(model.config, model.servesim_id or model.case_model)
    if spec is None:
        return why
    notes = []
    kv_bytes = KV_BYTES.get(kvdt)
    if kv_bytes != GENZ_KV_BYTES[GENZ_BITS[wdt]]:
        notes.append(
            f"KV cache in {GENZ_BITS[wdt]} (GenZ's one precision), the case's is {kvdt or 'bf16'}"
        )
    kwargs = {
        "model": spec,
        "system_name": system,
        "bits": GENZ_BITS[wdt],
        "batch_size": shape.batch,
        "input_tokens": shape.isl,
        "output_tokens": shape.osl,
        "tensor_parallel": int(case.get("tp") or 1),
        "pipeline_parallel": int(case.get("pp") or 1),
        "system_eff": system_eff,
    }
    cli = (
        f"GenZ.prefill_moddeling / decode_moddeling(model=ModelConfig(**model), "
        f"system_name={system!r}, bits={kwargs['bits']!r}, batch_size={shape.batch}, "
        f"input_tokens={shape.isl}, output_tokens={shape.osl} (and {shape.osl // 2}), Bb=1, "
        f"tensor_parallel={kwargs['tensor_parallel']}, "
        f"pipeline_parallel={kwargs['pipeline_parallel']}, system_eff={system_eff})"
    )
    if shape.kind == "throughput":
        notes.append("backlog taken as back-to-back static batches of the in-flight count")
    source = f"{model.source}, translated (genz_model in run_peers.py)"
    return Job(case["id"], GENZ, kwargs, cli, shape, source, notes, spec)


# --- running and converting --------------------------------------------------------------------


def run_job(job: Job, python: Path, timeout: float) -> dict:
    runner = HERE / RUNNERS[job.tool]
    env = dict(os.environ, AICONFIGURATOR_LOG_LEVEL="ERROR", HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(
            [str(python), str(runner)],
            input=json.dumps({"kwargs": job.kwargs, "fit_batch": job.shape.kind != "batch"}),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"error": f"no result (exit {proc.returncode}): {proc.stderr[-800:]}"}


def to_metrics(shape: Shape, ttft_ms, tpot_ms, e2el_ms, req_s, out_tok_s) -> dict[str, float]:
    """servesim metric names for the whole deployment, from one replica's figures."""
    req, out = req_s * shape.replicas, out_tok_s * shape.replicas
    m = {
        "output_throughput": out,
        "request_throughput": req,
        "total_token_throughput": req * (shape.isl + shape.osl),
    }
    if shape.prompts and shape.kind != "batch":  # drained at the steady rate: no ramp, no tail
        m["duration"] = shape.prompts / req
    if shape.kind == "throughput":  # TTFT/E2EL of a drained backlog include queueing: not given
        return m
    # A lock-step batch gives every request the same TTFT, TPOT and E2EL (so every percentile is
    # the one value); a steady state gives one typical request. Neither tool spreads the gaps
    # between tokens, so ITL gets its mean and median only.
    stats = ("mean", "median", "p90", "p99") if shape.kind == "batch" else ("mean", "median")
    for s in stats:
        m[f"{s}_ttft_ms"] = ttft_ms
        m[f"{s}_e2el_ms"] = e2el_ms
        if shape.osl > 1:
            m[f"{s}_tpot_ms"] = tpot_ms
    if shape.osl > 1:
        m["mean_itl_ms"] = m["median_itl_ms"] = tpot_ms
    if shape.kind == "batch":
        m["duration"] = e2el_ms / 1000.0
    return m


def ran_shape(job: Job, raw: dict) -> Shape:
    """The shape the tool ran: a backlog or closed loop shrunk to what fits its memory model
    keeps only throughputs comparable (the rest of the clients queue)."""
    ran = raw.get("batch_size_run", raw.get("batch_size_per_gpu", job.shape.batch))
    if "attention_dp_size" in job.kwargs:
        ran *= job.kwargs["attention_dp_size"]
    if ran == job.shape.batch:
        return job.shape
    note = f"{job.shape.note}; in flight capped at {ran} by the tool's memory estimate"
    return dataclasses.replace(job.shape, kind="throughput", batch=ran, note=note)


def metrics_of(job: Job, raw: dict, shape: Shape) -> dict[str, float]:
    if job.tool == GENZ:
        # A lock-step batch: TTFT = its prefill, then OSL - 1 decode steps (an engine's count).
        ttft, tpot = raw["prefill_ms"], raw["decode_ms"]
        e2el = ttft + (shape.osl - 1) * tpot
        per_s = shape.batch / (e2el / 1e3)
        return to_metrics(shape, ttft, tpot, e2el, per_s, per_s * shape.osl)
    if job.tool == AIC:
        return to_metrics(
            shape,
            raw["ttft_ms"],
            raw["tpot_ms"],
            raw["request_latency_ms"],
            raw["seq_per_s"],
            raw["tokens_per_s"],
        )
    total = raw["total_latency"]
    return to_metrics(
        shape,
        raw["prefill_latency"] * 1e3,
        raw["decode_latency"] * 1e3,
        total * 1e3,
        shape.batch / total,
        shape.batch * shape.osl / total,
    )


def site_packages(python: Path) -> Path | None:
    found = sorted(python.parent.parent.glob("lib/python*/site-packages"))
    return found[0] if found else None


def tool_version(python: Path, dist: str) -> str | None:
    if not python.exists():
        return None
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    return proc.stdout.strip() or None


TOOL_INFO = {
    AIC: {
        "name": "NVIDIA AIConfigurator (PyPI aiconfigurator)",
        "how_invoked": (
            "aiconfigurator.cli.api.cli_estimate (the function behind `aiconfigurator cli "
            "estimate`) in its own venv, one subprocess per case (aic_runner.py); estimate "
            "mode 'static' for static/latency cases, 'agg' (in-flight batching at a fixed "
            "batch/concurrency) for online closed-loop and offline cases; per-case CLI "
            "equivalent in details[case][aiconfigurator].cli"
        ),
        "defaults": (
            "database_mode SILICON, perf-db version 'current' for the system/backend (not the "
            "case's engine version), attention/fmha/comm quant modes and attention backend "
            "left to the tool, free_gpu_memory_fraction and max_seq_len the tool's"
        ),
    },
    LLMA: {
        "name": "llm-analysis (PyPI llm-analysis, cli99/llm-analysis)",
        "how_invoked": (
            "llm_analysis.analysis.infer (the function behind `python -m "
            "llm_analysis.analysis infer`) in its own venv, one subprocess per case "
            "(llma_runner.py); per-case CLI equivalent in details[case][llm-analysis].cli"
        ),
        "defaults": (
            "flops_efficiency 1.0, hbm_memory_efficiency 1.0, intra/inter-node memory "
            "efficiency 1.0 (its constant.py), use_kv_cache True, layernorm 2 bytes, "
            "ds_zero 0"
        ),
    },
    GENZ: {
        "name": "GenZ (PyPI genz-llm, abhibambhaniya/GenZ-LLM-Analyzer)",
        "how_invoked": (
            "GenZ.prefill_moddeling and GenZ.decode_moddeling (Bb=1) in its own venv, one "
            "subprocess per case (genz_runner.py); the model as a GenZ.ModelConfig translated "
            "from servesim's config.json (details[case][genz].model_config)"
        ),
        "defaults": (
            "system_eff 1 (compute and memory efficiency 1.0: datasheet peaks of its "
            "Systems/system_configs.py), collective_strategy 'GenZ' (its analytic ring "
            "all-reduce), no offload; decode timed at ISL + OSL/2 of KV (the mean step), "
            "memory checked at ISL + OSL"
        ),
    },
}


def merged_results(old: dict, new: dict, tools: tuple[str, ...]) -> dict:
    """``new`` (a run of ``tools`` only) with the other tools' entries of ``old`` kept: per
    tool under ``tool`` and ``summary``, per case and tool under ``cases``, ``details``,
    ``skipped`` and ``failed``; ``case_files`` lists the files either run read."""
    out = dict(new)
    out["case_files"] = sorted(set(old.get("case_files", [])) | set(new.get("case_files", [])))
    for key in ("tool", "summary"):
        out[key] = {t: v for t, v in old.get(key, {}).items() if t not in tools} | new[key]
    for key in ("cases", "details", "skipped", "failed"):
        merged: dict[str, dict] = {}
        for case_id, by_tool in old.get(key, {}).items():
            kept = {t: v for t, v in by_tool.items() if t not in tools}
            if kept:
                merged[case_id] = kept
        for case_id, by_tool in new[key].items():
            merged.setdefault(case_id, {}).update(by_tool)
        out[key] = merged
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="*", default=[CASES_GLOB], help="case files (globs)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--aic-python", type=Path, default=VENVS / "aic" / "bin" / "python")
    ap.add_argument("--llma-python", type=Path, default=VENVS / "llma" / "bin" / "python")
    ap.add_argument("--genz-python", type=Path, default=VENVS / "genz" / "bin" / "python")
    ap.add_argument(
        "--genz-system-eff",
        type=float,
        default=GENZ_SYSTEM_EFF,
        help="GenZ's system_eff (default: the tool's own, 1.0; another for a sensitivity run)",
    )
    ap.add_argument("--only", choices=TOOLS, action="append", help="run only this tool")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per tool run")
    ap.add_argument("--jobs", type=int, default=2, help="tool runs in parallel")
    args = ap.parse_args(argv)
    tools = tuple(args.only or TOOLS)
    mappers = {
        AIC: map_aic,
        LLMA: map_llma,
        GENZ: functools.partial(map_genz, system_eff=args.genz_system_eff),
    }
    pythons = {AIC: args.aic_python, LLMA: args.llma_python, GENZ: args.genz_python}

    files = sorted({f for pattern in args.cases for f in glob.glob(pattern)})
    cases = []
    for f in files:
        for case in json.loads(Path(f).read_text()):
            cases.append(case)
    versions = {t: tool_version(pythons[t], DISTRIBUTIONS[t]) for t in tools}
    sites = {t: site_packages(pythons[t]) for t in tools}

    skipped: dict[str, dict[str, str]] = {}
    jobs: list[Job] = []
    models: dict[str, Model] = {}
    with tempfile.TemporaryDirectory(prefix="servesim-peers-") as tmp_name:
        tmp = Path(tmp_name)
        for case in cases:
            cid = case["id"]
            if "skip" in case:
                skipped[cid] = {t: f"case skipped: {case['skip']}" for t in tools}
                continue
            shape, why = shape_of(case)
            if shape is None:
                skipped[cid] = {t: why for t in tools}
                continue
            name = case.get("model", "")
            if name not in models:
                models[name] = resolve_model(name)
            for tool in tools:
                if versions[tool] is None:
                    skipped.setdefault(cid, {})[tool] = f"{tool} not installed at {pythons[tool]}"
                    continue
                mapper = mappers[tool]
                job = mapper(case, shape, models[name], sites[tool], tmp)
                if isinstance(job, str):
                    skipped.setdefault(cid, {})[tool] = job
                else:
                    if shape.note:
                        job.notes.append(shape.note)
                    jobs.append(job)
        print(f"{len(cases)} cases, {len(jobs)} tool runs", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            raws = list(pool.map(lambda j: run_job(j, pythons[j.tool], args.timeout), jobs))

    by_id = {c["id"]: c for c in cases}
    out_cases: dict[str, dict] = {}
    details: dict[str, dict] = {}
    failed: dict[str, dict[str, str]] = {}
    for job, raw in zip(jobs, raws, strict=True):
        published = by_id[job.case_id].get("metrics") or {}
        inputs, cli = job.shown()
        record = {
            "inputs": inputs,
            "cli": cli,
            "model_source": job.model_source,
            "servesim_resolves_model": models[by_id[job.case_id].get("model", "")].servesim_id,
            "shape": dataclasses.asdict(job.shape),
            "notes": job.notes,
            "raw": raw,
        }
        if job.tool in (LLMA, GENZ) and job.model_config is not None:
            record["model_config"] = job.model_config
        details.setdefault(job.case_id, {})[job.tool] = record
        if "error" in raw:
            failed.setdefault(job.case_id, {})[job.tool] = raw["error"]
            continue
        if raw.get("kv_cache_warning"):
            job.notes.append(f"tool warning: {raw['kv_cache_warning']}")
        shape = ran_shape(job, raw)
        if shape is not job.shape:
            record["shape"] = dataclasses.asdict(shape)
        metrics = metrics_of(job, raw, shape)
        record["metrics"] = metrics
        shared = {k: metrics[k] for k in published if k in metrics}
        if shared:
            out_cases.setdefault(job.case_id, {})[job.tool] = shared
        else:
            skipped.setdefault(job.case_id, {})[job.tool] = (
                f"ran, but predicts none of the published metrics {sorted(published)}"
            )

    summary = {
        t: {
            "represented": sum(t in v for v in out_cases.values()),
            "skipped": sum(t in v for v in skipped.values()),
            "failed": sum(t in v for v in failed.values()),
        }
        for t in tools
    }
    result = {
        "tool": {t: {**TOOL_INFO[t], "version": versions[t]} for t in tools},
        "case_files": [str(Path(f).resolve().relative_to(REPO)) for f in files],
        "cases": out_cases,
        "details": details,
        "skipped": skipped,
        "failed": failed,
        "summary": summary,
    }
    if args.only and args.out.is_file():
        result = merged_results(json.loads(args.out.read_text()), result, tools)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    print(json.dumps(summary), file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
