"""Command: ``servesim simulate``."""

from __future__ import annotations

import inspect
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from servesim.cli import importing
from servesim.cli.app import OUTPUT_PATH, app
from servesim.cli.progress import LazyProgress
from servesim.errors import ServesimError
from servesim.metrics import LATENCY_METRICS
from servesim.paths import writable_dir
from servesim.workload.spec import DEFAULT_NUM_REQUESTS, DEFAULT_RATE_RPS

if TYPE_CHECKING:
    from rich.table import Table

# NOTE: rich is imported where it is used: a --json run never loads it (start-up time).


def _stderr_print(text: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(text)


LENGTH_HELP = (
    "tokens: an integer (fixed), a preset (conversation, code, sharegpt), or KIND:key=value,... "
    "e.g. lognormal:median=800,sigma=1.0 | uniform:lo=100,hi=2000 | normal:mean=500,std=100 | "
    "zipf:a=1.2,max=4096 | empirical:path=lengths.txt"
)


def parse_length(text: str, flag: str) -> Any:
    """A length flag's value as the workload spec expects it."""
    text = text.strip()
    try:
        return int(text)  # negative values too: the workload spec says what is wrong
    except ValueError:
        pass
    if ":" not in text:
        return text  # a preset name; the workload spec validates it
    kind, _, rest = text.partition(":")
    spec: dict[str, Any] = {"kind": kind}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            raise ServesimError(f"{part!r} is not key=value", field=flag, fix=LENGTH_HELP)
        spec[key.strip()] = _number(value.strip())
    return spec


def _number(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ServesimError(
            f"{text!r} is not a number", field="--rate", fix="e.g. 10 or inf"
        ) from None
    if math.isnan(rate) or rate <= 0:
        raise ServesimError(
            f"is {text}; must be > 0 requests/s",
            field="--rate",
            fix="use inf to send every request at t=0",
        )
    return rate


GOODPUT_FIELDS = ("ttft_ms", "tpot_ms", "e2el_ms")
"""The SLO fields ``--goodput`` sets (vLLM's keys ttft, tpot, e2el)."""


def parse_goodput(values: list[str]) -> dict[str, float]:
    """vLLM's ``--goodput ttft:500 tpot:50`` (ms) as SLO fields ``{"ttft_ms": 500, ...}``."""
    slo: dict[str, float] = {}
    for item in (part for v in values for part in v.replace(",", " ").split()):
        name, sep, value = item.partition(":")
        key = f"{name.strip().lower()}_ms"
        try:
            ms = float(value)
        except ValueError:
            sep = ""
        if not sep or key not in GOODPUT_FIELDS or not math.isfinite(ms) or ms <= 0:
            raise ServesimError(
                f"{item!r} is not METRIC:MS",
                field="--goodput",
                fix="e.g. ttft:500 tpot:50 e2el:2000 (milliseconds > 0)",
            )
        slo[key] = ms
    return slo


def merge_goodput(slo: dict[str, float], goodput: list[str]) -> dict[str, float]:
    """``--slo-*-ms`` and ``--goodput`` together; the same target given twice, differently, is
    refused."""
    for key, ms in parse_goodput(goodput).items():
        if slo.get(key, ms) != ms:
            raise ServesimError(
                f"{key.removesuffix('_ms')} is {ms:g} ms here and {slo[key]:g} ms in "
                f"--slo-{key.replace('_', '-')}",
                field="--goodput",
                fix="give each target once",
            )
        slo[key] = ms
    return slo


def parse_percentile_metrics(text: str) -> tuple[str, ...]:
    """``--percentile-metrics ttft,tpot,itl,e2el`` (vLLM's names, any order, a subset)."""
    names = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    bad = [n for n in names if n not in LATENCY_METRICS]
    if bad or not names:
        raise ServesimError(
            f"{text!r} is not a list of latency metrics",
            field="--percentile-metrics",
            fix=f"a comma-separated subset of {','.join(LATENCY_METRICS)}",
        )
    return names


def parse_metric_percentiles(text: str) -> tuple[float, ...]:
    """``--metric-percentiles 50,95,99.9`` -> (50.0, 95.0, 99.9); each in [0, 100]."""
    try:
        qs = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        qs = ()
    if not qs or not all(0 <= q <= 100 for q in qs):
        raise ServesimError(
            f"{text!r} is not a list of percentiles",
            field="--metric-percentiles",
            fix="comma-separated numbers from 0 to 100, e.g. 50,95,99.9",
        )
    return tuple(dict.fromkeys(qs))


def parse_time_window(text: str) -> tuple[float, float]:
    """``"START:END"`` (trace seconds from its first request) -> (start, end)."""
    start, sep, end = text.partition(":")
    try:
        window = (float(start), float(end))
    except ValueError:
        sep = ""
    if not sep or not 0 <= window[0] < window[1]:
        raise ServesimError(
            f"{text!r} is not START:END with 0 <= START < END",
            field="--time-window",
            fix="seconds from the trace's first request, e.g. 600:1200",
        )
    return window


def workload_overrides(
    *,
    workload: str | None,
    num_requests: int | None,
    input_len: str | None,
    output_len: str | None,
    rate: str | None,
    burstiness: float | None,
    concurrency: int | None,
    replay: Path | None,
    max_concurrency: int | None = None,
    trace_format: str | None,
    rate_scale: float | None,
    time_window: str | None = None,
) -> dict[str, Any]:
    """Workload fields set by CLI flags (None = not given)."""
    w: dict[str, Any] = {}
    if replay is not None:
        if not replay.is_file():
            raise ServesimError(f"trace file {replay} does not exist", field="--replay")
        w["trace"] = str(replay)
        if workload is not None:
            raise ServesimError(
                "--workload names a synthetic workload; a replay brings its own",
                field="--workload",
                fix="drop --workload or --replay",
            )
        if num_requests is not None:
            w["max_requests"] = num_requests
    else:
        if workload is not None:
            w["preset"] = workload
        if num_requests is not None:
            w["num_requests"] = num_requests
    # Not tied to --replay: a --config file may name the trace (without one, the scenario's
    # validation says these apply only with a trace).
    if trace_format:
        w["trace_format"] = trace_format
    if rate_scale is not None:
        w["rate_scale"] = rate_scale
    if time_window is not None:
        w["time_window"] = parse_time_window(time_window)
    if input_len is not None:
        w["input_len"] = parse_length(input_len, "--input-len")
    if output_len is not None:
        w["output_len"] = parse_length(output_len, "--output-len")
    if concurrency is not None and max_concurrency is not None:
        raise ServesimError(
            "--concurrency is a closed loop of users, capped by its own count; "
            "--max-concurrency caps open-loop arrivals",
            field="--max-concurrency",
            fix="give one of them: --rate R --max-concurrency N is vllm bench serve's",
        )
    if concurrency is not None and rate is not None:
        raise ServesimError(
            "--concurrency (a closed loop of users) and --rate (open-loop arrivals) exclude "
            "each other",
            field="--concurrency",
            fix="for arrivals at --rate with at most N in flight, use --max-concurrency N",
        )
    if max_concurrency is not None:
        w["max_concurrency"] = max_concurrency
    if burstiness is not None and rate is None:
        raise ServesimError("--burstiness needs --rate", field="--burstiness", fix="e.g. --rate 10")
    if concurrency is not None:
        w["arrival"] = {"kind": "closed", "concurrency": concurrency}
    elif rate is not None:
        r = parse_rate(rate)
        if math.isinf(r) and burstiness is not None:
            raise ServesimError(
                "--burstiness shapes the gaps between arrivals; --rate inf has none",
                field="--burstiness",
                fix="give a finite --rate",
            )
        if math.isinf(r):
            w["arrival"] = {"kind": "burst"}
        elif burstiness is not None and burstiness != 1.0:
            w["arrival"] = {"kind": "gamma", "rate": r, "burstiness": burstiness}
        else:
            w["arrival"] = {"kind": "poisson", "rate": r}
    return w


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def fleet_description(result) -> str:
    """E.g. "1 instance × TP4 = 4 × H100 (bf16)" or "1 prefill instance × TP2 = 2 × H100
    (bf16) + 2 decode instances × TP1 = 2 × H100 (bf16)"."""
    from servesim.scenario import describe_instances

    parts = []
    for g in result.groups:
        par = g.parallelism
        fleet = describe_instances(
            len(g.instances), g.hardware.name, par.tp, par.pp, par.ep, g.group.role
        )
        parts.append(f"{fleet} ({g.cost.resolved.weight_dtype})")
    text = " + ".join(parts)
    if len(result.groups) > 1 or len(result.groups[0].instances) > 1:
        text += f", router {result.scenario.router}"
    return text


def summary_tables(
    result,
    metrics: tuple[str, ...] = LATENCY_METRICS,
    percentiles: tuple[float, ...] | None = None,
) -> list[Table]:
    """Rich tables of a run: scenario, throughput, latency percentiles, engine.

    The latency table has a row per metric of ``metrics`` and the columns mean, median, p90
    and p99, or mean, median and ``percentiles`` (whose values the summary must hold)."""
    from rich.table import Table

    s = result.summary
    sc = result.scenario
    t1 = Table(title="Scenario", show_header=False, title_justify="left")
    t1.add_column(style="bold")
    t1.add_column()
    t1.add_row("model", f"{result.model.name}")
    t1.add_row("deployment", fleet_description(result))
    steps = sc.num_scheduler_steps or 1
    t1.add_row(
        "engine",
        f"{sc.engine}"
        + (f", {steps} scheduler steps" if steps > 1 else "")
        + (", API server" if sc.api_server else ", in-process (no API server)"),
    )
    t1.add_row(
        "scheduler",
        f"{sc.scheduler.policy}, max_num_batched_tokens "
        f"{sc.scheduler.max_num_batched_tokens}, max_num_seqs {sc.scheduler.max_num_seqs}, "
        f"prefix caching {'on' if sc.scheduler.enable_prefix_caching else 'off'}",
    )
    t1.add_row("workload", result.workload_description)
    t1.add_row(
        "KV cache",
        f"{result.memory.kv_capacity_tokens:,} tokens "
        f"({result.memory.num_kv_blocks:,} blocks of {sc.scheduler.block_size})",
    )

    t2 = Table(title="Throughput", show_header=False, title_justify="left")
    t2.add_column(style="bold")
    t2.add_column(justify="right")
    t2.add_row("completed requests", _fmt(s["completed"]))
    if s.get("num_skipped"):
        t2.add_row("skipped requests", _fmt(s["num_skipped"]))
    t2.add_row("duration (s)", _fmt(s["duration"]))
    t2.add_row("request throughput (req/s)", _fmt(s["request_throughput"]))
    t2.add_row("output throughput (tok/s)", _fmt(s["output_throughput"], 1))
    t2.add_row("total token throughput (tok/s)", _fmt(s["total_token_throughput"], 1))
    if "goodput" in s:
        t2.add_row("goodput (req/s)", _fmt(s["goodput"]))

    from servesim.metrics import percentile_name

    t3 = Table(title="Latency (ms)", title_justify="left")
    t3.add_column("metric", style="bold")
    cols = ["mean", "median"]
    cols += ["p90", "p99"] if percentiles is None else [percentile_name(q) for q in percentiles]
    cols = list(dict.fromkeys(c for c in cols if c != "p50"))  # p50 is the median
    for col in cols:
        t3.add_column(col, justify="right")
    for key in metrics:
        t3.add_row(key.upper(), *(_fmt(s[f"{c}_{key}_ms"]) for c in cols))

    t4 = Table(title="Engine", show_header=False, title_justify="left")
    t4.add_column(style="bold")
    t4.add_column(justify="right")
    t4.add_row("steps", _fmt(s["num_steps"]))
    t4.add_row("preemptions", _fmt(s["num_preemptions"]))
    if "fidelity_shares" in s:
        shares = " · ".join(
            f"{name} {share:.0%}" for name, share in s["fidelity_shares"].items() if share >= 0.005
        )
        t4.add_row("fidelity (share of operator time)", shares)
    if s.get("mean_api_ttft_ms"):
        t4.add_row(
            "API server share of TTFT",
            f"{s['api_ttft_fraction']:.1%} ({s['mean_api_ttft_ms']:.2f} ms)",
        )
    t4.add_row("KV cache peak usage", f"{s['kv_cache_peak_usage']:.1%}")
    t4.add_row("prefix cache hit rate", f"{s['prefix_cache_hit_rate']:.1%}")
    for key, label in (("mfu", "MFU"), ("mbu", "MBU")):
        if key in s:
            t4.add_row(label, f"{s[key]:.1%}")
    if "num_kv_transfers" in s:
        t4.add_row(
            "KV transfers (P→D)",
            f"{s['num_kv_transfers']:,}, mean {s['mean_kv_transfer_ms']:.2f} ms",
        )
    if "spec_acceptance_rate" in s:
        t4.add_row("draft acceptance rate", f"{s['spec_acceptance_rate']:.1%}")
        t4.add_row("tokens per verify step", _fmt(s["spec_tokens_per_verify_step"]))
        if "spec_speedup_tpot" in s:
            t4.add_row("TPOT speed-up vs no speculation", f"{s['spec_speedup_tpot']:.2f}×")
    if "kv_offload_loaded_blocks" in s:
        t4.add_row(
            "KV blocks spilled / loaded (CPU tier)",
            f"{s['kv_offload_spilled_blocks']:,} / {s['kv_offload_loaded_blocks']:,}",
        )
    t4.add_row("host-bound share of step time", f"{s['host_bound_fraction']:.1%}")
    t4.add_row("GPUs", _fmt(s["num_gpus"]))
    t4.add_row("average power (W, all GPUs)", _fmt(s["avg_power_w"], 0))
    t4.add_row("energy per output token (J)", _fmt(s["energy_per_output_token_j"], 3))
    t4.add_row("simulation wall time (s)", _fmt(s["sim_wall_s"], 3))
    return [t1, t2, t3, t4]


@app.command("simulate")
def simulate_command(
    model: str = typer.Option(
        None, "--model", "-m", help="model id, short name or config.json path"
    ),
    hardware: str = typer.Option(
        None, "--hardware", "-g", help="GPU id (H100, H200, ...) or YAML path"
    ),
    tp: int = typer.Option(None, "--tp", help="tensor-parallel GPUs per instance"),
    pp: int = typer.Option(None, "--pp", help="pipeline-parallel stages per instance"),
    ep: int = typer.Option(None, "--ep", help="expert-parallel groups inside the TP group (MoE)"),
    replicas: int = typer.Option(None, "--replicas", help="data-parallel instances"),
    disaggregate: str = typer.Option(
        None,
        "--disaggregate",
        help="P:D prefill and decode instances (prefill/decode disaggregation)",
    ),
    prefill_tp: int = typer.Option(
        None, "--prefill-tp", help="TP of each prefill instance (with --disaggregate)"
    ),
    decode_tp: int = typer.Option(
        None, "--decode-tp", help="TP of each decode instance (with --disaggregate)"
    ),
    weight_dtype: str = typer.Option(
        None,
        "--weight-dtype",
        help="bf16 | fp16 | fp8 | int8 | int4 | fp4",
    ),
    kv_dtype: str = typer.Option(None, "--kv-dtype", help="bf16 | fp8"),
    cuda_graphs: bool = typer.Option(
        None, "--cuda-graphs/--no-cuda-graphs", help="host time hidden behind the GPU"
    ),
    speculative: str = typer.Option(None, "--speculative", help="draft:MODEL | ngram | eagle"),
    num_speculative_tokens: int = typer.Option(
        None, "--num-speculative-tokens", help="k drafts per step"
    ),
    acceptance_rate: float = typer.Option(
        None, "--acceptance-rate", help="per-position draft acceptance probability"
    ),
    spec_mode: str = typer.Option(None, "--spec-mode", help="self_verify | cpu_verify | baseline"),
    calibration: Path = typer.Option(
        None, "--calibration", help="calibration.yaml from `servesim calibrate`"
    ),
    kv_offload: bool = typer.Option(
        None,
        "--kv-offload/--no-kv-offload",
        help="spill evicted KV blocks to CPU memory instead of recomputing them",
    ),
    cpu_kv_cache_gib: float = typer.Option(
        None, "--cpu-kv-cache-gib", help="offload-tier memory per instance, GiB"
    ),
    kv_offload_gbps: float = typer.Option(
        None,
        "--kv-offload-gbps",
        help="offload-tier GB/s per GPU (e.g. of a CXL expander)",
    ),
    router: str = typer.Option(
        None, "--router", help="round_robin | least_outstanding | power_of_two | prefix_affinity"
    ),
    engine: str = typer.Option(
        None,
        "--engine",
        help="engine profile: vllm (V1, default) | vllm-v0 | sglang | trtllm | lmdeploy",
    ),
    num_scheduler_steps: int = typer.Option(
        None, "--num-scheduler-steps", help="decode steps per scheduling round (vllm-v0)"
    ),
    api_server: bool = typer.Option(
        None,
        "--api-server/--no-api-server",
        help="TTFT/E2EL include the API server (off = offline, in-process)",
    ),
    scheduler: str = typer.Option(
        None, "--scheduler", help="vllm | sarathi | orca | static | prefill_first"
    ),
    max_num_batched_tokens: int = typer.Option(
        None, "--max-num-batched-tokens", help="token budget per step"
    ),
    max_num_seqs: int = typer.Option(None, "--max-num-seqs", help="most running requests"),
    block_size: int = typer.Option(None, "--block-size", help="tokens per KV block"),
    prefix_caching: bool = typer.Option(
        None, "--prefix-caching/--no-prefix-caching", help="prefix caching"
    ),
    chunked_prefill: bool = typer.Option(
        None,
        "--chunked-prefill/--no-chunked-prefill",
        help="chunked prefill (vllm policy)",
    ),
    gpu_memory_utilization: float = typer.Option(
        None, "--gpu-memory-utilization", help="fraction of HBM for weights + KV"
    ),
    workload: str = typer.Option(
        None,
        "--workload",
        "-w",
        help="workload: a preset (conversation | code | sharegpt) or a workload YAML file",
    ),
    num_requests: int = typer.Option(
        None,
        "--num-requests",
        "-n",
        "--num-prompts",
        help="requests to send (a cap for --replay)",
        show_default=str(DEFAULT_NUM_REQUESTS),
    ),
    input_len: str = typer.Option(None, "--input-len", help=LENGTH_HELP),
    output_len: str = typer.Option(None, "--output-len", help=LENGTH_HELP),
    rate: str = typer.Option(
        None,
        "--rate",
        "-r",
        "--request-rate",
        help="requests/s (Poisson); inf = all at t=0",
        show_default=f"{DEFAULT_RATE_RPS:g}",
    ),
    burstiness: float = typer.Option(
        None, "--burstiness", help="gamma shape of inter-arrivals (1 = Poisson)"
    ),
    concurrency: int = typer.Option(
        None,
        "--concurrency",
        help="closed loop: this many users, each sending its next request when the last finished",
    ),
    max_concurrency: int = typer.Option(
        None,
        "--max-concurrency",
        help="at most N requests in flight: one due by the arrivals (--rate) while N are "
        "outstanding waits for one to finish (as vllm bench serve)",
    ),
    replay: Path = typer.Option(
        None, "--replay", help="replay a trace file (Azure, BurstGPT, Mooncake, CSV, JSONL)"
    ),
    trace_format: str = typer.Option(
        None, "--trace-format", help="auto | azure | burstgpt | mooncake | csv | jsonl | sessions"
    ),
    rate_scale: float = typer.Option(None, "--rate-scale", help="replay k× faster"),
    time_window: str = typer.Option(
        None, "--time-window", help="replay only START:END (trace seconds from its first request)"
    ),
    seed: int = typer.Option(None, "--seed", help="random seed"),
    slo_ttft_ms: float = typer.Option(None, "--slo-ttft-ms", help="TTFT target for goodput, ms"),
    slo_tpot_ms: float = typer.Option(None, "--slo-tpot-ms", help="TPOT target for goodput, ms"),
    slo_e2el_ms: float = typer.Option(None, "--slo-e2el-ms", help="E2EL target for goodput, ms"),
    goodput: list[str] = typer.Option(
        None,
        "--goodput",
        help="SLOs for goodput as vllm bench serve writes them: ttft:500 tpot:50 e2el:2000 (ms)",
    ),
    percentile_metrics: str = typer.Option(
        ",".join(LATENCY_METRICS),
        "--percentile-metrics",
        help="latency metrics in the table (and, with --metric-percentiles, the summary)",
    ),
    metric_percentiles: str = typer.Option(
        None,
        "--metric-percentiles",
        help="percentiles to report, e.g. 50,95,99.9: the table's columns, and "
        "p95_ttft_ms, p99.9_ttft_ms, ... in summary.json",
        show_default="mean, median, p90, p99",
    ),
    max_model_len: int = typer.Option(None, "--max-model-len", help="context window"),
    on_oversized: str = typer.Option(
        None,
        "--on-oversized",
        help="skip | error: a request longer than the context window or KV cache",
    ),
    fast_forward: bool = typer.Option(
        None,
        "--fast-forward/--no-fast-forward",
        help="jump over stable decode spans (same results, faster)",
    ),
    config: Path = typer.Option(
        None, "--config", "-c", help="scenario YAML; flags override its fields"
    ),
    trace: bool = typer.Option(
        False, "--trace", help="also write trace.json (Chrome trace for Perfetto) into --out"
    ),
    trace_limit: int = typer.Option(
        None, "--trace-limit", help="cap trace.json at about N events (a window from the start)"
    ),
    report: bool = typer.Option(False, "--report", help="also write report.html into --out"),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        click_type=OUTPUT_PATH,
        help="write summary.json, requests.csv, steps.csv here",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print summary.json to stdout instead of tables"
    ),
) -> None:
    """Simulate a serving deployment and report vLLM-benchmark metrics.

    With no options: Llama-3.1-8B on one H100, vLLM scheduler, 1,000 conversation requests at 20 req/s.
    """
    with importing():
        from servesim.output import summary_document, write_run
        from servesim.run import simulate
        from servesim.scenario import build_scenario, load_scenario_file, merge, workload_fields
        from servesim.workload.spec import PRESET_NAMES

    if (trace or report or trace_limit is not None) and out is None:
        raise ServesimError("needs --out DIR to write into", field="--trace/--report")
    if trace_limit is not None:
        from servesim.trace.simulated import check_limit

        check_limit(trace_limit)
    base = load_scenario_file(config) if config else {}
    flags: dict[str, Any] = _given(
        model=model,
        hardware=hardware,
        tp=tp,
        pp=pp,
        ep=ep,
        replicas=replicas,
        disaggregate=disaggregate,
        prefill_tp=prefill_tp,
        decode_tp=decode_tp,
        weight_dtype=weight_dtype,
        kv_dtype=kv_dtype,
        cuda_graphs=cuda_graphs,
        kv_offload=kv_offload,
        calibration=str(calibration) if calibration else None,
        cpu_kv_cache_gib=cpu_kv_cache_gib,
        kv_offload_gbps=kv_offload_gbps,
        router=router,
        engine=engine,
        num_scheduler_steps=num_scheduler_steps,
        api_server=api_server,
        seed=seed,
        max_model_len=max_model_len,
        on_oversized=on_oversized,
        fast_forward=fast_forward,
    )
    sched = _given(
        policy=scheduler,
        max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=max_num_seqs,
        block_size=block_size,
        enable_prefix_caching=prefix_caching,
        enable_chunked_prefill=chunked_prefill,
        gpu_memory_utilization=gpu_memory_utilization,
    )
    if sched:
        flags["scheduler"] = sched
    slo = merge_goodput(
        _given(ttft_ms=slo_ttft_ms, tpot_ms=slo_tpot_ms, e2el_ms=slo_e2el_ms), goodput or []
    )
    metrics = parse_percentile_metrics(percentile_metrics)
    percentiles = parse_metric_percentiles(metric_percentiles) if metric_percentiles else None
    if slo:
        flags["slo"] = slo
    spec = _given(
        method=speculative,
        num_speculative_tokens=num_speculative_tokens,
        acceptance_rate=acceptance_rate,
        mode=spec_mode,
    )
    if spec:
        flags["speculative"] = spec
    file_workload = None
    if workload is not None and workload not in PRESET_NAMES and replay is None:
        file_workload = workload_fields(workload, "--workload")
        workload = None
    w = workload_overrides(
        workload=workload,
        num_requests=num_requests,
        input_len=input_len,
        output_len=output_len,
        rate=rate,
        burstiness=burstiness,
        concurrency=concurrency,
        max_concurrency=max_concurrency,
        replay=replay,
        trace_format=trace_format,
        rate_scale=rate_scale,
        time_window=time_window,
    )
    data = merge(base, flags)
    if file_workload is not None:
        data["workload"] = file_workload
    if w:
        data["workload"] = _merge_workload(data.get("workload"), w)
    scenario = build_scenario(data, source=str(config) if config else "")
    if out is not None:
        writable_dir(out)  # before the run, not after it

    progress = LazyProgress(_expected_requests(scenario))
    try:
        result = simulate(scenario, on_progress=progress)
    finally:
        progress.close()
    if percentiles is not None:
        from servesim.metrics import latency_percentiles

        records = result.records
        result.summary.update(
            latency_percentiles(
                records.request_columns(), *records.itl_pairs(), metrics, percentiles
            )
        )
    written = ["summary.json", "requests.csv", "steps.csv"]
    if out is not None:
        write_run(
            result, out, extra=_extra_writers(trace or trace_limit is not None, trace_limit, report)
        )
        written += (["trace.json"] if trace or trace_limit is not None else []) + (
            ["report.html"] if report else []
        )
    if "calibration_warning" in result.summary:
        _stderr_print(f"warning: {result.summary['calibration_warning']}")
    if as_json:
        sys.stdout.write(json.dumps(summary_document(result), indent=2) + "\n")
        return
    from rich.console import Console

    console = Console()
    for table in summary_tables(result, metrics, percentiles):
        console.print(table)
    if out is not None:
        console.print(f"wrote {out}/: {', '.join(written)}")


def _shown_defaults() -> dict[str, str]:
    """What ``simulate --help`` shows as each option's default: the scenario's own defaults.

    NOTE: the options default to None (a flag left out must not override a --config file), so
    typer has no default to show; these are read from the specs, where each is defined once."""
    from servesim.engines import DEFAULT_ENGINE
    from servesim.scenario import (
        DEFAULT_HARDWARE,
        DEFAULT_MODEL,
        Scenario,
        SchedulerSpec,
        SpeculativeSpec,
    )
    from servesim.validation import field_default
    from servesim.workload.spec import DEFAULT_PRESET

    def text(value: Any) -> str:
        return ("on" if value else "off") if isinstance(value, bool) else str(value)

    shown = {name: text(field_default(Scenario, name)) for name in (
        "tp", "pp", "ep", "replicas", "cuda_graphs", "kv_offload", "cpu_kv_cache_gib", "router",
        "api_server", "seed", "on_oversized", "fast_forward")}  # fmt: skip
    sched = {"scheduler": "policy", "prefix_caching": "enable_prefix_caching",
             "chunked_prefill": "enable_chunked_prefill"}  # fmt: skip
    for name in ("max_num_batched_tokens", "max_num_seqs", "block_size",
                 "gpu_memory_utilization", "scheduler", "prefix_caching", "chunked_prefill"):  # fmt: skip
        shown[name] = text(field_default(SchedulerSpec, sched.get(name, name)))
    for name in ("num_speculative_tokens", "acceptance_rate"):
        shown[name] = text(field_default(SpeculativeSpec, name))
    shown.update(
        model=DEFAULT_MODEL,
        hardware=DEFAULT_HARDWARE,
        engine=DEFAULT_ENGINE,
        workload=DEFAULT_PRESET,
        weight_dtype="the checkpoint's",
        kv_dtype="the activations' (bf16 for most)",
        kv_offload_gbps="the GPU's host link",
        spec_mode="cpu_verify for ngram, else self_verify",
        num_scheduler_steps="the engine's",
        max_model_len="the model's",
        burstiness="1 (Poisson)",
    )
    return shown


_options = inspect.signature(simulate_command).parameters
for _name, _shown in _shown_defaults().items():
    _options[_name].default.show_default = _shown
del _options, _name, _shown


def _extra_writers(trace: bool, limit: int | None, report: bool) -> dict[str, Any]:
    """Files written beside summary.json, from the run folder's own files (atomically with it)."""
    extra: dict[str, Any] = {}
    if trace:
        from servesim.trace.simulated import write_simulated_trace

        def write_trace(path: Path) -> None:
            info = write_simulated_trace(path.parent, path, limit)
            for warning in info.warnings:
                _stderr_print(f"warning: {warning}")

        extra["trace.json"] = write_trace
    if report:
        from servesim.report import write_report

        extra["report.html"] = lambda path: write_report(path.parent, path)
    return extra


def _given(**fields: Any) -> dict[str, Any]:
    """The fields the user set (flags left out are None)."""
    return {k: v for k, v in fields.items() if v is not None}


def _merge_workload(base: Any, flags: dict[str, Any]) -> Any:
    """Workload flags over a file's workload; a replay flag replaces a synthetic base.

    A file's ``workload`` that is not a mapping is kept as it is, for the scenario's
    validation to name (flags cannot be merged into it)."""
    if base is not None and not isinstance(base, dict):
        return base
    if base is None:
        base = {}  # the workload spec fills in the default workload
    if "trace" in base and "num_requests" in flags:
        flags = {("max_requests" if k == "num_requests" else k): v for k, v in flags.items()}
    if "trace" in flags:
        base = {k: v for k, v in base.items() if k in ("name",)}
    elif flags.get("input_len") is not None and flags.get("output_len") is not None:
        base = {k: v for k, v in base.items() if k != "preset"}
    merged = dict(base)
    merged.update(flags)
    return merged


def _expected_requests(scenario) -> int | None:
    w = scenario.workload
    return w.num_requests if w.trace is None else w.max_requests
