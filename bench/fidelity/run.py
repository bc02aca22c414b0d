"""Score servesim against published real measurements: ``python bench/fidelity/run.py``.

Each case in ``bench/fidelity/cases/*.json`` (schema: ``SCHEMA.md``) is a published measurement
of a real serving stack with its setup. This script rebuilds each case as a servesim scenario
(model, GPU, TP/PP, dtypes, engine profile, lengths, request count, rate / concurrency / static
batch), simulates it, and compares every published metric with the prediction:

    error = (predicted − measured) / measured        (signed)

A prediction is *too fast* when it promises more than the GPUs delivered: a higher throughput or
a lower latency. Results are printed (per case, then median and mean absolute error by metric
family, GPU and engine, with the share of predictions that are too fast) and written to
``bench/fidelity/results/results.json`` and ``results.md``.

Nothing here is fitted to the cases: the engine profiles and the cost model run as shipped.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
RESULTS = HERE / "results"

sys.path.insert(0, str(HERE))
from workloads import (  # noqa: E402  (the case -> workload half of the suite)
    Unmappable,
    chat_template_tokens,
    fixed_lengths,
    request_list,
    requests_at_totals,
    sglang_client,
    sglang_sharegpt_send_times_of,
    with_rate_totals,
    write_trace,
)

HELD_OUT = (
    "perf-overview.md",
    "H200launch.md",
    "benchmark_vllm_060",
    "2024-09-05",
    "mlperf inference v4.1",
)
"""Sources the project's accuracy is checked on independently: never in this dataset."""

ENGINE_OF = {
    "vllm": "vllm",
    "vllm-v0": "vllm-v0",
    "sglang": "sglang",
    "trtllm": "trtllm",
    "lmdeploy": "lmdeploy",
    # Engines without a profile of their own run the closest one (README, "Accuracy"):
    "tgi": "vllm",  # Rust router, continuous batching with chunked prefill (TGI v3)
    # Dynamic SplitFuse = chunked prefill under a token budget; FastGen runs without CUDA graphs.
    "deepspeed-fastgen": "vllm",
    "gpt-fast": "gpt-fast",
    "mlc-llm": "trtllm",  # compiled model, C++ runtime
}

FAMILY_OF = {
    "output_throughput": "throughput",
    "total_token_throughput": "throughput",
    "request_throughput": "throughput",
    "decode_tok_per_s": "throughput",
    "ttft_ms": "TTFT",
    "tpot_ms": "TPOT/ITL",
    "itl_ms": "TPOT/ITL",
    "e2el_ms": "E2E",
    "duration": "E2E",
    "tflops": "kernel",
}
FAMILIES = ("throughput", "TTFT", "TPOT/ITL", "E2E")


def family(metric: str) -> str | None:
    if metric in FAMILY_OF:
        return FAMILY_OF[metric]
    for suffix, fam in FAMILY_OF.items():
        if metric.endswith("_" + suffix):
            return fam
    return None


def higher_is_faster(metric: str) -> bool:
    return family(metric) in ("throughput", "kernel")


def load_cases(folder: Path = CASES) -> list[dict[str, Any]]:
    """Every case of every ``*.json`` file in ``folder``, in file then list order."""
    cases: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        for case in json.loads(path.read_text()):
            case["_file"] = path.name
            cases.append(case)
    return cases


def source_key(case: dict[str, Any]) -> str:
    """The publication a case comes from (leave-one-source-out groups): repository + file, or
    the URL, without the commit and the table."""
    src = case.get("source", "")
    head = src.split(" @")[0].split(" (")[0]
    return head.strip() or case["id"]


# --- case → scenario --------------------------------------------------------------------------


def _before_cuda_graphs(case: dict[str, Any]) -> bool:
    """Engines of 2023 that decoded without CUDA graphs: vLLM before 0.2.2 (CUDA graphs came in
    vLLM 0.2.2, Nov 2023) and TGI before 1.3 (mid-2023 releases)."""
    version = str(case.get("engine_version", "")).lower()
    if case.get("engine") == "vllm-v0":
        return any(v in version for v in ("v0.1", "~v0.1", "v0.2.0", "~v0.2.0"))
    if case.get("engine") == "tgi":
        return "2023" in version
    return False


def _version_before(case: dict[str, Any], version: tuple[int, ...]) -> bool:
    """Whether the case's engine version (its first x.y[.z]) is older than ``version``; False
    when it states none."""
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", str(case.get("engine_version", "")))
    if found is None:
        return False
    return tuple(int(g or 0) for g in found.groups()) < version


def _long_context(sc: dict[str, Any], args: dict[str, Any]) -> bool:
    """Whether vLLM V0's long-context chunking applies: no chunked-prefill choice in the case
    and a served window over the profile's threshold."""
    from servesim.engines import engine_profile
    from servesim.scenario import context_window_of

    if "enable_chunked_prefill" in args:
        return False
    window, eligible, _ = context_window_of(sc)
    threshold, _ = engine_profile("vllm-v0").long_context_chunking
    return eligible and window is not None and window > threshold


def _trtllm_pytorch(case: dict[str, Any]) -> bool:
    """Whether a TensorRT-LLM case ran the PyTorch backend: 1.0 and later unless the case says
    it served a TensorRT engine."""
    text = json.dumps(case.get("engine_args") or {}) + " " + str(case.get("notes", ""))
    if re.search(r"backend[ =:\"']+tensorrt|trtllm-build|TensorRT engine", text, re.IGNORECASE):
        return False
    # (A version that is not TensorRT-LLM's own, e.g. a NIM container's, says nothing.)
    found = re.match(r"v?(\d+)\.(\d+)", str(case.get("engine_version", "")).strip())
    return found is not None and int(found.group(1)) >= 1


def _release(case: dict[str, Any]) -> str | None:
    """The engine's release number as the case states it (``v0.5.3``, ``0.4.3.post2 (lmsysorg/
    sglang:latest, ...)``, ``0.7.4.dev181+g...``), or None when it names none (a NIM container,
    a date)."""
    text = str(case.get("engine_version", "")).strip()
    if text.lower().startswith(("nvidia", "nim", "main")):
        return None
    found = re.match(r"v?(\d+\.\d+(?:\.\d+)?(?:\.?(?:post|rc|dev)\d+)?)", text)
    return found.group(1) if found else None


MODELS = HERE / "models"
"""Configs of checkpoints the catalog does not ship (``models/<org>--<name>.json``, each an HF
``config.json`` as the case's notes describe it): a case naming one runs it."""


def _model_of(model_id: str) -> str:
    local = MODELS / (model_id.replace("/", "--") + ".json")
    return str(local) if local.is_file() else model_id


SGLANG_DP_NEEDS_DP_SIZE = "0.4.5"
"""From SGLang 0.4.5 ``--enable-dp-attention`` no longer sets ``dp_size`` to ``tp_size``: 0.4.5
-0.4.9 assert ``--dp`` > 1, and 0.5 turns DP attention off when ``dp_size`` is 1, its default
(``server_args.py``, checked in the 0.4.0-0.4.9, 0.5.3 and 0.5.9 wheels)."""


def _dp_attention_ranks(args: dict[str, Any], tp: int, release: str | None) -> int:
    """SGLang's attention data-parallel ranks as the case's server ran them (1: none):
    ``--dp``/``dp_size`` when given with ``--enable-dp-attention``; without it the TP size
    before 0.4.5, none from then on (see :data:`SGLANG_DP_NEEDS_DP_SIZE`)."""
    launch = str(args.get("launch", ""))
    if not (args.get("enable_dp_attention") or "--enable-dp-attention" in launch):
        return 1
    found = re.search(r"--dp(?:-size)?[ =](\d+)", launch)
    given = args.get("dp_size") or (int(found.group(1)) if found else None)
    if isinstance(given, int):
        return given
    from servesim.versions import release_before

    forced = release is not None and release_before(release, SGLANG_DP_NEEDS_DP_SIZE)
    return tp if forced else 1


def scenario_of(case: dict[str, Any]) -> dict[str, Any]:
    """The servesim scenario fields that rebuild ``case`` (Unmappable when they cannot)."""
    mode = case.get("mode")
    engine = ENGINE_OF.get(case.get("engine", ""))
    if engine is None:
        raise Unmappable(f"no engine profile for {case.get('engine')!r}")
    if engine == "sglang" and "0.4" in str(case.get("engine_version", "")):
        engine = "sglang-0.4"  # (that release's fixed chunk and CUDA-graph sizes)
    if engine == "trtllm" and _trtllm_pytorch(case):
        engine = "trtllm-pytorch"  # (1.x's default backend)
    load = case.get("load") or {}
    args = case.get("engine_args") or {}
    w = with_rate_totals(case)
    sc: dict[str, Any] = {
        "model": _model_of(case["model"]),
        "hardware": case["gpu"],
        "tp": int(case.get("tp") or 1),
        "pp": int(case.get("pp") or 1),
        "replicas": int(case.get("replicas") or 1),
        "engine": engine,
        "seed": 0,
    }
    release = _release(case)
    dp = _dp_attention_ranks(args, sc["tp"], release)
    if dp > 1:
        sc.update(tp=sc["tp"] // dp, dp=dp)
    if release is not None:
        sc["engine_version"] = release  # (the kernels nearest to that release)
    flags = str(args.get("launch", "")).split()
    if args.get("async_scheduling") is True or "--async-scheduling" in flags:
        sc["async_scheduling"] = True  # (vLLM 0.10-0.13: host work overlaps only with it)
    off = ("--no-async-scheduling", "--disable-overlap-schedule")  # (vLLM, SGLang)
    if args.get("async_scheduling") is False or any(flag in flags for flag in off):
        sc["async_scheduling"] = False
    if args.get("attention_backend") in ("fa3", "flashinfer"):
        sc["attention_backend"] = args["attention_backend"]  # (SGLang --attention-backend)
    ep = args.get("ep_size")
    if isinstance(ep, int) and ep > 1:
        sc["ep"] = ep  # (experts spread over the TP group: TensorRT-LLM's --ep_size)
    if case.get("engine") == "deepspeed-fastgen" or _before_cuda_graphs(case):
        sc["cuda_graphs"] = False
    wd = case.get("weight_dtype")
    if wd and wd not in ("fp16", "bf16"):
        sc["weight_dtype"] = wd
    elif wd == "fp16":
        sc["weight_dtype"] = "fp16"
    kv = case.get("kv_dtype")
    if kv:
        sc["kv_dtype"] = "fp8" if kv in ("fp8", "int8") else kv
    # Prefix caching as the source states it; vLLM V1 has it on by default (a preempted
    # request then finds its prompt's blocks again instead of recomputing them), and so has
    # SGLang's radix cache unless the server was started with --disable-radix-cache.
    default_on = case.get("engine") == "vllm" or (
        case.get("engine") == "sglang"
        and "--disable-radix-cache" not in str(args.get("launch", ""))
    )
    caching = args.get("enable_prefix_caching", default_on)
    sched: dict[str, Any] = {"enable_prefix_caching": bool(caching)}
    if engine == "vllm" and case.get("engine") != "vllm":
        # Engines run on the vLLM profile keep its fixed budget, not vLLM V1's GPU-dependent
        # defaults (a TGI or FastGen server does not size its batch the way vLLM does).
        sched.update(max_num_batched_tokens=8192, max_num_seqs=256)
    window = args.get("max_model_len")
    found = re.search(r"--max-model-len[ =](\d+)", str(args.get("launch", "")))
    window = int(found.group(1)) if found and not isinstance(window, int) else window
    if isinstance(window, int):
        sc["max_model_len"] = window  # (the served context window, as the server was started)
    # (MLA models run V0 without chunked prefill from 0.7.1: the engine profile's rule,
    # engines.VLLM_V0_MLA_NO_CHUNKING.)
    if engine == "vllm-v0" and _long_context(sc, args):
        if _version_before(case, (0, 6, 5)):
            # vLLM V0 before 0.6.5 chunked long-context prompts 512 tokens at a time (the
            # profile's rule has 0.6.5's 2048, vllm#10544).
            sched.update(enable_chunked_prefill=True, max_num_batched_tokens=512)
    for key in ("max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization"):
        if isinstance(args.get(key), (int, float)):
            sched[key] = args[key]
    if engine == "lmdeploy":
        # TurboMind's KV knobs: cache_max_entry_count below 1 is a share of the memory
        # (engines.LMDEPLOY_KV_OF_FREE), from 1 on a count of cache_block_seq_len-token blocks.
        block = args.get("cache_block_seq_len")
        if isinstance(block, int):
            sched["block_size"] = block
        entries = args.get("cache_max_entry_count")
        if isinstance(entries, (int, float)) and entries >= 1:
            sched["kv_cache_tokens"] = int(entries) * (block if isinstance(block, int) else 128)
        elif isinstance(entries, float):
            sched["gpu_memory_utilization"] = entries
    found = re.search(r"--scheduler-recv-interval[ =](\d+)", str(args.get("launch", "")))
    if found:
        sched["recv_interval"] = int(found.group(1))  # (SGLang reads new requests every N steps)
    found = re.search(r"--stream-interval[ =](\d+)", str(args.get("launch", "")))
    if found:
        sched["stream_interval"] = int(found.group(1))  # (tokens reach the client in chunks)
    if isinstance(args.get("enable_chunked_prefill"), bool):
        sched["enable_chunked_prefill"] = args["enable_chunked_prefill"]
    steps = args.get("num_scheduler_steps")
    if isinstance(steps, int) and steps > 1 and engine == "vllm-v0":
        sc["num_scheduler_steps"] = steps
    ilen, olen = fixed_lengths(w, sglang_client(case))
    workload: dict[str, Any] = {"input_len": ilen, "output_len": olen}
    if mode in ("static", "latency"):
        batch = int(load.get("batch_size") or 1)
        # One batch of B prompts prefilled together, then decoded in lock step.
        # (The static policy has no token budget; this sizes the activation reserve, as a
        # static engine sizes its activation buffers for the whole batch's prompts.)
        prompt = ilen if isinstance(ilen, int) else 2048
        budget = max(2048, batch * prompt)
        sched.update(policy="static", max_num_seqs=batch, max_num_batched_tokens=budget)
        workload.update(num_requests=batch, arrival={"kind": "burst"})
        sc["api_server"] = False
    elif mode == "offline":
        n = int(w.get("num_prompts") or 1000)
        workload["num_requests"] = n
        cap = load.get("max_concurrency") or load.get("concurrency")
        workload["arrival"] = {"kind": "burst"}
        if cap:
            workload["max_concurrency"] = int(cap)  # (N slots over one queue, as online)
        sc["api_server"] = False
    elif mode == "online":
        n = int(w.get("num_prompts") or 1000)
        workload["num_requests"] = n
        rate, conc = load.get("request_rate"), load.get("concurrency")
        if isinstance(conc, (int, float)) and not isinstance(rate, (int, float)):
            # The clients (vllm bench serve and benchmark_serving.py, sglang.bench_serving:
            # --max-concurrency) make every request due at once and hold a semaphore of N
            # around each: the next request in the list goes out when any slot frees. Not N
            # users with an equal share each (a closed loop), whose tails finish unevenly.
            workload["arrival"] = {"kind": "burst"}
            workload["max_concurrency"] = int(conc)
        elif isinstance(rate, (int, float)) and math.isfinite(rate):
            workload["arrival"] = {"kind": "poisson", "rate": float(rate)}
            if isinstance(load.get("max_concurrency"), int):
                workload["max_concurrency"] = int(load["max_concurrency"])
        else:
            workload["arrival"] = {"kind": "burst"}
    else:
        raise Unmappable(f"mode {mode!r} is not an end-to-end run")
    template = chat_template_tokens(case)
    requests = request_list(case)
    if requests is not None:
        # Every request's lengths (and send time) are known: replay them as sent.
        arrival = workload.get("arrival")
        listed = bool(w.get("requests"))  # (published lists carry no send times: a burst's)
        if arrival != {"kind": "burst"} and (listed or (arrival or {}).get("kind") != "poisson"):
            raise Unmappable(
                "per-request lengths are replayed for bursts (and the client's "
                "draws for Poisson runs) only"
            )
        if arrival != {"kind": "burst"}:
            workload.pop("arrival")  # (the client's draws: the trace's send times)
    elif mode in ("online", "offline"):
        # The lengths' shapes at exactly the run's totals, sent as the load says.
        requests = requests_at_totals(w, ilen, olen)
        sent = sglang_sharegpt_send_times_of(case) if requests is not None else None
        if sent is not None and workload.get("max_concurrency") is None:
            # (the client's own send times: the trace's, in place of a Poisson draw)
            requests = [(t, i, o) for t, (_, i, o) in zip(sent, requests, strict=True)]
            workload.pop("arrival", None)
    if requests is not None:
        workload = _trace_workload(case["id"], requests, template, workload)
    elif template:
        # The template is the same text in front of every message (its few tokens after the
        # message are counted with it): one shared prefix, which a prefix cache keeps.
        workload.update(prefix_groups=1, prefix_len=template)
    sc["scheduler"] = sched
    sc["workload"] = workload
    return sc


def _trace_workload(
    case_id: str, requests: list[tuple[float, int, int]], template: int, traffic: dict[str, Any]
) -> dict[str, Any]:
    """The workload that replays ``requests`` as a trace (:func:`write_trace`, a chat template
    of ``template`` tokens in front of each prompt as shared blocks), with the ``arrival`` and
    ``max_concurrency`` of ``traffic`` (no arrival: the trace's send times)."""
    workload = {"trace": str(write_trace(case_id, requests, template)), "trace_format": "csv"}
    workload.update({k: v for k, v in traffic.items() if k in ("arrival", "max_concurrency")})
    if template:
        from servesim.workload.build import DEFAULT_HASH_BLOCK_SIZE

        workload["hash_block_size"] = DEFAULT_HASH_BLOCK_SIZE  # (the ids' block)
    return workload


def predicted(summary: dict[str, Any], metric: str) -> float | None:
    if metric in summary:
        return float(summary[metric])
    if metric == "decode_tok_per_s":
        return 1000.0 / summary["mean_tpot_ms"]
    return None


def score_case(
    case: dict[str, Any], baseline: bool = False, roofline: bool = False
) -> dict[str, Any]:
    """Simulate one case; per metric the measured and predicted values and the error."""
    out: dict[str, Any] = {
        "id": case["id"],
        "engine": case.get("engine"),
        "gpu": case.get("gpu"),
        "mode": case.get("mode"),
        "model": case.get("model", ""),
        "source": source_key(case),
        "metrics": [],
    }
    if case.get("skip"):
        out["skipped"] = str(case["skip"])
        return out
    try:
        fields = scenario_of(case)
        if roofline:
            fields = {**fields, "kernel_tables": False}
        if baseline:
            fields = {**fields, "engine": "vllm", "api_server": False}
            fields.pop("num_scheduler_steps", None)
            if fields["scheduler"].get("policy") != "static":
                fields["scheduler"] = {**fields["scheduler"], "policy": "vllm"}
        from servesim.calibrate.compare import as_client_counts
        from servesim.errors import ServesimError
        from servesim.run import simulate
        from servesim.scenario import build_scenario
        from servesim.track_record import load_regime

        started = time.perf_counter()
        scenario = build_scenario(fields)
        summary = simulate(scenario).summary
        out["sim_s"] = time.perf_counter() - started
        out["load"] = load_regime(scenario)
    except Unmappable as err:
        out["skipped"] = str(err)
        return out
    except ServesimError as err:
        out["skipped"] = f"servesim: {err}"
        return out
    if "trace" in fields["workload"]:
        # (The trace file is a temporary copy of the case's requests: name them instead.)
        count = case["workload"]["num_prompts"]
        if case["workload"].get("requests"):
            trace = f"workload.requests of the case ({count} requests)"
        elif request_list(case) is not None:
            trace = f"the client's draws of the case ({count} requests)"
        else:
            trace = f"{count} requests: the lengths' shapes at the case's token totals"
        fields = {**fields, "workload": {**fields["workload"], "trace": trace}}
    out["scenario"] = fields
    # (The client's token totals leave the server's chat template out.)
    summary = as_client_counts(summary, chat_template_tokens(case))
    for metric, measured in (case.get("metrics") or {}).items():
        if family(metric) not in FAMILIES or not isinstance(measured, (int, float)):
            continue
        pred = predicted(summary, metric)
        if pred is None or not math.isfinite(pred) or measured <= 0:
            continue
        err = (pred - measured) / measured
        faster = higher_is_faster(metric)
        too_fast = err > 0 if faster else err < 0
        # Speed bias: predicted speed over measured speed − 1 (speed = throughput or 1/latency).
        speed = pred / measured - 1 if faster else measured / pred - 1
        out["metrics"].append(
            {
                "metric": metric,
                "family": family(metric),
                "measured": measured,
                "predicted": pred,
                "error": err,
                "too_fast": too_fast,
                "speed_bias": speed,
            }
        )
    return out


# --- summaries ---------------------------------------------------------------------------------


def aggregate(rows: list[dict[str, Any]], key) -> dict[str, dict[str, float]]:
    """Median / mean absolute error, count and share too fast, grouped by ``key(row, metric)``
    (metrics whose key is None are left out)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        for m in row["metrics"]:
            name = key(row, m)
            if name is not None:
                groups[name].append(m)
    out = {}
    for name, ms in sorted(groups.items()):
        errs = [abs(m["error"]) for m in ms]
        out[name] = {
            "n": len(ms),
            "median_abs_error": statistics.median(errs),
            "mean_abs_error": statistics.fmean(errs),
            "median_signed_error": statistics.median(m["error"] for m in ms),
            "median_speed_bias": statistics.median(m["speed_bias"] for m in ms),
            "too_fast_share": sum(m["too_fast"] for m in ms) / len(ms),
        }
    return out


@functools.cache
def model_family(model: str) -> str:
    """The model's class for grouping (``track_record.model_class``: MoE by kind, dense by
    total parameters)."""
    from servesim.model import load_model
    from servesim.track_record import model_class_of

    return model_class_of(load_model(_model_of(model)))


def tables(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    return {
        "family": aggregate(rows, lambda r, m: m["family"]),
        "gpu": aggregate(rows, lambda r, m: r["gpu"]),
        "engine": aggregate(rows, lambda r, m: r["engine"]),
        "mode": aggregate(rows, lambda r, m: r["mode"]),
        "load": aggregate(rows, lambda r, m: r["load"]),
        # (TTFT is the family furthest off; by load it separates the fixed latency a lone
        # request sees from queueing.)
        "load (TTFT only)": aggregate(
            rows, lambda r, m: r["load"] if m["family"] == "TTFT" else None
        ),
        "model": aggregate(rows, lambda r, m: model_family(r["model"])),
        "all": aggregate(rows, lambda r, m: "all"),
    }


PEERS = HERE / "peers" / "results.json"


def peer_comparison(rows: list[dict[str, Any]], path: Path = PEERS) -> dict[str, dict[str, Any]]:
    """Per peer tool, servesim's and the peer's errors on exactly the (case, metric) pairs the
    peer could represent (``peers/run_peers.py`` wrote its predictions)."""
    if not path.is_file():
        return {}
    peers = json.loads(path.read_text())
    ours = {(r["id"], m["metric"]): m for r in rows for m in r["metrics"]}
    out: dict[str, dict[str, Any]] = {}
    for tool in peers.get("tool", {}):
        pairs = []
        for case_id, by_tool in peers["cases"].items():
            for metric, value in (by_tool.get(tool) or {}).items():
                m = ours.get((case_id, metric))
                if m is None or not isinstance(value, (int, float)) or value <= 0:
                    continue
                err = (value - m["measured"]) / m["measured"]
                faster = higher_is_faster(metric)
                pairs.append((m, err, err > 0 if faster else err < 0, m["family"]))
        if not pairs:
            continue
        by_family: dict[str, list] = defaultdict(list)
        for p in pairs:
            by_family[p[3]].append(p)
        out[tool] = {
            "version": peers["tool"][tool].get("version"),
            "families": {
                fam: {
                    "n": len(ps),
                    "servesim_median_abs_error": statistics.median(abs(p[0]["error"]) for p in ps),
                    "peer_median_abs_error": statistics.median(abs(p[1]) for p in ps),
                    "servesim_too_fast": sum(p[0]["too_fast"] for p in ps) / len(ps),
                    "peer_too_fast": sum(p[2] for p in ps) / len(ps),
                }
                for fam, ps in sorted(by_family.items()) + [("all", pairs)]
            },
        }
    return out


README_TABLES = {
    "family": "family",
    "model": "model",
    "gpu": "gpu",
    "engine": "engine",
    "mode": "mode",
    "load": "load",
    "TTFT, by load": "load (TTFT only)",
}
"""The README's accuracy tables (the first cell of the header) and the summary table each one
quotes, whole percents (``--readme``)."""


def summary_table(title: str, group: dict[str, dict[str, Any]], digits: int) -> list[str]:
    """One summary table (``tables(rows)``'s ``group``) as Markdown lines, the errors and bias
    as percents with ``digits`` decimals."""
    lines = [
        f"| {title} | metrics | median abs. error | mean abs. error | median speed bias "
        "| too fast |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in group.items():
        lines.append(
            f"| {name} | {t['n']} | {t['median_abs_error']:.{digits}%} "
            f"| {t['mean_abs_error']:.{digits}%} | {t['median_speed_bias']:+.{digits}%} "
            f"| {t['too_fast_share']:.0%} |"
        )
    return lines


def readme_tables(summary: dict[str, Any]) -> str:
    """The README's accuracy tables (:data:`README_TABLES`) from ``summary``, as Markdown."""
    lines = []
    for title, key in README_TABLES.items():
        lines += [*summary_table(title, summary["tables"][key], 0), ""]
    return "\n".join(lines)


def markdown(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "# servesim against published measurements",
        "",
        f"{summary['cases_scored']} cases scored ({summary['metrics_scored']} metrics), "
        f"{summary['cases_skipped']} skipped; servesim {summary['servesim_version']}.",
        "Error = (predicted − measured) / measured; *too fast* = a higher throughput or lower "
        "latency than measured; speed bias = predicted speed / measured speed − 1, where speed "
        "is a throughput or 1 / a latency (positive: servesim is optimistic).",
        "",
    ]
    for title, group in summary["tables"].items():
        lines += [f"## By {title}", "", *summary_table(title, group, 1), ""]
    for tool, cmp in summary.get("peers", {}).items():
        lines += [
            f"## Against {tool} {cmp['version']} on the rows it can represent",
            "",
            "| family | metrics | servesim median abs. error | "
            f"{tool} median abs. error | servesim too fast | {tool} too fast |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for fam, t in cmp["families"].items():
            lines.append(
                f"| {fam} | {t['n']} | {t['servesim_median_abs_error']:.1%} "
                f"| {t['peer_median_abs_error']:.1%} | {t['servesim_too_fast']:.0%} "
                f"| {t['peer_too_fast']:.0%} |"
            )
        lines.append("")
    lines += [
        "## Every case",
        "",
        "| case | metric | measured | predicted | error |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        for m in row["metrics"]:
            lines.append(
                f"| {row['id']} | {m['metric']} | {m['measured']:.4g} | {m['predicted']:.4g} "
                f"| {m['error']:+.1%} |"
            )
    skipped = [r for r in rows if "skipped" in r]
    if skipped:
        lines += ["", "## Skipped", "", "| case | why |", "|---|---|"]
        lines += [f"| {r['id']} | {r['skipped']} |" for r in skipped]
    return "\n".join(lines) + "\n"


def write_track_record(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Condense the scored metrics into the package's track record (see
    ``servesim.track_record``): grouped by the real engine, GPU and model class, each group
    also by metric family, and by load regime."""
    from servesim.track_record import TRACK_RECORD_PATH, build_table, publisher

    scored = [
        ({"engine": r["engine"], "gpu": r["gpu"], "model_class": model_family(r["model"]),
          "family": m["family"], "load": r["load"], "source": publisher(r["source"])},
         m["error"], m["speed_bias"])
        for r in rows for m in r["metrics"]
    ]  # fmt: skip
    source = (
        f"servesim {summary['servesim_version']} accuracy suite (bench/fidelity): "
        f"{summary['metrics_scored']:,} metrics of {summary['cases_scored']} published runs"
    )
    table = build_table(scored, source)
    TRACK_RECORD_PATH.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {TRACK_RECORD_PATH} ({len(table['groups'])} groups)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--only", default=None, help="substring of the case ids to run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--quiet", action="store_true", help="print the summary tables only")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="every case on the vllm profile without API-server time (before engine profiles)",
    )
    parser.add_argument(
        "--roofline", action="store_true", help="the roofline rung only (no kernel tables)"
    )
    parser.add_argument(
        "--write-track-record",
        action="store_true",
        help="also write the package's track record (src/servesim/catalog/track_record.json)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="rewrite the accuracy tables of this Markdown file (README.md) from the full run",
    )
    args = parser.parse_args(argv)

    cases = load_cases()
    leaked = [c["id"] for c in cases if any(h.lower() in c.get("source", "").lower()
                                            for h in HELD_OUT)]  # fmt: skip
    if leaked:
        print(f"held-out sources in the dataset: {leaked}", file=sys.stderr)
        return 2
    if args.only:
        cases = [c for c in cases if args.only in c["id"]]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        n = len(cases)
        rows = list(
            pool.map(score_case, cases, [args.baseline] * n, [args.roofline] * n, chunksize=1)
        )
    wall = time.perf_counter() - started

    from servesim import __version__

    scored = [r for r in rows if r["metrics"]]
    summary = {
        "servesim_version": __version__,
        "cases_total": len(rows),
        "cases_scored": len(scored),
        "cases_skipped": sum("skipped" in r for r in rows),
        "metrics_scored": sum(len(r["metrics"]) for r in rows),
        "wall_s": wall,
        "tables": tables(rows),
    }
    if not args.only:
        summary["peers"] = peer_comparison(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"summary": summary, "cases": rows}, indent=1)
    )
    (args.out / "results.md").write_text(markdown(summary, rows))
    if args.write_track_record:
        if args.only or args.baseline or args.roofline:
            print("--write-track-record needs the full default run", file=sys.stderr)
            return 2
        write_track_record(rows, summary)
    if args.readme is not None:
        if args.only or args.baseline or args.roofline:
            print("--readme needs the full default run", file=sys.stderr)
            return 2
        sys.path.insert(0, str(HERE.parent))
        from readme_tables import update_readme

        changed = update_readme(args.readme, readme_tables(summary))
        print(f"{args.readme}: {len(changed)} table(s) rewritten")

    if not args.quiet:
        for row in rows:
            for m in row["metrics"]:
                print(f"{row['id'][:60]:60s} {m['metric']:24s} {m['measured']:>10.4g} "
                      f"{m['predicted']:>10.4g} {m['error']:+7.1%}")  # fmt: skip
    for title, group in summary["tables"].items():
        print(f"\nby {title}:  n  median|err|  mean|err|  speed bias  too fast")
        for name, t in group.items():
            print(f"  {name:22s} {t['n']:4d}  {t['median_abs_error']:8.1%}  "
                  f"{t['mean_abs_error']:8.1%}  {t['median_speed_bias']:+8.1%}  "
                  f"{t['too_fast_share']:6.0%}")  # fmt: skip
    for tool, cmp in summary.get("peers", {}).items():
        print(f"\nagainst {tool} on its rows:  n  servesim  {tool}")
        for fam, t in cmp["families"].items():
            print(f"  {fam:12s} {t['n']:4d}  {t['servesim_median_abs_error']:7.1%}  "
                  f"{t['peer_median_abs_error']:7.1%}")  # fmt: skip
    print(f"\n{summary['cases_scored']} cases scored, {summary['cases_skipped']} skipped, "
          f"{wall:.0f} s; wrote {args.out}/results.json and results.md")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
