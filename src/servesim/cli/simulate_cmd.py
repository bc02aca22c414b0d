"""Command: ``servesim simulate``.

Its options are declared here; :mod:`servesim.scenario_overlay` turns the flags into scenario
fields, and :mod:`servesim.cli.simulate_tables` draws the tables it prints.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import typer

from servesim.cli import importing
from servesim.cli.app import OUTPUT_PATH, app
from servesim.cli.progress import LazyProgress
from servesim.cli.simulate_tables import summary_tables
from servesim.errors import ServesimError
from servesim.metrics import LATENCY_METRICS
from servesim.paths import writable_dir
from servesim.scenario_overlay import LENGTH_HELP, overlay
from servesim.workload.spec import DEFAULT_NUM_REQUESTS, DEFAULT_RATE_RPS

# NOTE: rich is imported where it is used: a --json run never loads it (start-up time).

COMMAND_OPTIONS = (
    "config", "percentile_metrics", "metric_percentiles", "trace", "trace_limit", "report", "out",
    "table_format", "as_json", "engine_log",
)  # fmt: skip
"""Options that are no scenario field: the file under the flags, the engine log whose KV cache
size it pins (``scheduler.kv_cache_tokens``), and what to write and print.
Every other option is the overlay's (:data:`servesim.scenario_overlay.OPTIONS`; a test checks)."""


def _stderr_print(text: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(text)


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
    dp: int = typer.Option(
        None,
        "--dp",
        help="attention data-parallel ranks per instance, --tp GPUs each (MoE; SGLang "
        "--enable-dp-attention is --tp 1 --dp N)",
    ),
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
    async_scheduling: bool = typer.Option(
        None,
        "--async-scheduling/--no-async-scheduling",
        help="host schedules step n+1 during step n, so arrivals join step n+2 (default: the "
        "engine's at its version)",
    ),
    attention_backend: str = typer.Option(
        None,
        "--attention-backend",
        help="fa3 | flashinfer | triton: the engine's attention backend for models without "
        "MLA (default: the engine's at its version)",
    ),
    sampler: str = typer.Option(
        None,
        "--sampler",
        help="flashinfer | sort | triton: how vLLM's memory profile samples (sort: a pip "
        "install without FlashInfer; default the release's Docker image)",
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
        help="engine profile: vllm (V1, default) | vllm-v0 | sglang | sglang-0.4 | trtllm | "
        "trtllm-pytorch | lmdeploy | gpt-fast",
    ),
    engine_version: str = typer.Option(
        None,
        "--engine-version",
        help="the engine's release, e.g. 0.5.3: MoE kernels from the measured collection "
        "nearest to it",
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
    admission: str = typer.Option(
        None,
        "--admission",
        help="when a waiting request's KV fits: greedy (vLLM) | reserve (SGLang) | guaranteed "
        "(TensorRT-LLM GUARANTEED_NO_EVICT)",
    ),
    block_size: int = typer.Option(None, "--block-size", help="tokens per KV block"),
    prefix_caching: bool = typer.Option(
        None, "--prefix-caching/--no-prefix-caching", help="prefix caching"
    ),
    chunked_prefill: bool = typer.Option(
        None,
        "--chunked-prefill/--no-chunked-prefill",
        help="chunked prefill (vllm policy)",
    ),
    recv_interval: int = typer.Option(
        None,
        "--scheduler-recv-interval",
        help="decode steps between reads of new requests (SGLang's flag; default 1)",
    ),
    stream_interval: int = typer.Option(
        None,
        "--stream-interval",
        help="tokens between streamed chunks; ITL is per chunk (SGLang's flag; default 1)",
    ),
    gpu_memory_utilization: float = typer.Option(
        None, "--gpu-memory-utilization", help="fraction of HBM for weights + KV"
    ),
    kv_cache_tokens: int = typer.Option(
        None,
        "--kv-cache-tokens",
        help="pin the KV cache to the engine's logged size, tokens (vLLM 'GPU KV cache size')",
    ),
    engine_log: Path = typer.Option(
        None,
        "--engine-log",
        help="pin the KV cache to the size a vLLM, SGLang or TensorRT-LLM start-up log prints "
        "(and say how far servesim's own plan is from it)",
    ),
    hybrid_kv_cache: bool = typer.Option(
        None,
        "--hybrid-kv-cache/--no-hybrid-kv-cache",
        help="vLLM's hybrid KV cache manager for sliding-window models "
        "(--no-: vLLM's --disable-hybrid-kv-cache-manager)",
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
    compiled: str = typer.Option(
        None,
        "--compiled",
        help="auto | on | off: price steps with numba-compiled kernels (pip install "
        "'servesim\\[fast]'; same results); auto = from 50,000 requests when numba is installed, "
        "5,000 once a compiled run left the kernels in numba's cache",
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
        help="write summary.json, requests.csv, steps.csv here (see --format)",
    ),
    table_format: str = typer.Option(
        None,
        "--format",
        help="csv | parquet: the request and step tables --out writes (default csv; parquet "
        "writes and reads a large run many times faster, the same values)",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print summary.json to stdout instead of tables"
    ),
) -> None:
    """Simulate a serving deployment and report vLLM-benchmark metrics.

    With no options: Llama-3.1-8B on one H100, vLLM scheduler, 1,000 conversation requests at 20 req/s.
    """
    # NOTE: first, before any other local name: every option by name, None where left out.
    options = dict(locals())
    with importing():
        from servesim.output import check_table_format, summary_document, table_files, write_run
        from servesim.run import simulate
        from servesim.scenario import build_scenario, load_scenario_file

    if (trace or report or trace_limit is not None) and out is None:
        raise ServesimError("needs --out DIR to write into", field="--trace/--report")
    if table_format is not None and out is None:
        raise ServesimError("needs --out DIR to write into", field="--format")
    table_format = check_table_format(table_format)
    if trace_limit is not None:
        from servesim.trace.simulated import check_limit

        check_limit(trace_limit)
    base = load_scenario_file(config) if config else {}
    metrics = parse_percentile_metrics(percentile_metrics)
    percentiles = (
        None if metric_percentiles is None else parse_metric_percentiles(metric_percentiles)
    )
    data = overlay(base, options)
    logged = None
    if engine_log is not None:
        from servesim.calibrate.engine_log import pin_to_engine_log

        logged, data = pin_to_engine_log(engine_log, data, str(config) if config else "")
    scenario = build_scenario(data, source=str(config) if config else "")
    if out is not None:
        writable_dir(out)  # before the run, not after it

    _say_if_compiling(scenario)
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
    written = ["summary.json", *table_files(table_format)]
    if out is not None:
        write_run(
            result,
            out,
            extra=_extra_writers(trace or trace_limit is not None, trace_limit, report),
            table_format=table_format,
        )
        written += (["trace.json"] if trace or trace_limit is not None else []) + (
            ["report.html"] if report else []
        )
    if logged is not None:
        _stderr_print(logged)
    for caveat in result.summary.get("model_caveats", ()):
        _stderr_print(f"warning: {result.model.name}: {caveat}")
    if "engine_warning" in result.summary:
        _stderr_print(f"warning: engine: {result.summary['engine_warning']}")
    if "calibration_warning" in result.summary:
        _stderr_print(f"warning: {result.summary['calibration_warning']}")
    if "kv_memory_sensitivity" in result.summary:
        from servesim.summary import kv_sensitivity_warning

        _stderr_print(f"warning: {kv_sensitivity_warning(result.summary['kv_memory_sensitivity'])}")
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
        "tp", "pp", "ep", "dp", "replicas", "cuda_graphs", "kv_offload", "cpu_kv_cache_gib", "router",
        "api_server", "seed", "on_oversized", "fast_forward", "compiled")}  # fmt: skip
    sched = {"scheduler": "policy", "prefix_caching": "enable_prefix_caching",
             "chunked_prefill": "enable_chunked_prefill"}  # fmt: skip
    for name in ("max_num_batched_tokens", "max_num_seqs", "block_size", "admission",
                 "gpu_memory_utilization", "kv_cache_tokens", "scheduler", "prefix_caching",
                 "chunked_prefill", "recv_interval", "stream_interval"):  # fmt: skip
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
        engine_version="the newest tables",
        max_model_len="the model's",
        kv_cache_tokens="the memory plan's",
        hybrid_kv_cache="the engine's (vLLM V1 from 0.9.2)",
        burstiness="1 (Poisson)",
        # (vLLM's defaults by GPU, the engine profile's batch_defaults)
        max_num_batched_tokens="the engine's for the GPU; vLLM 8192, 2048 on an A100 or under "
        "70 GB",
        max_num_seqs="the engine's for the GPU; vLLM 1024, 256 on an A100 or under 70 GB",
        gpu_memory_utilization="the engine's; vLLM 0.9",
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


def _say_if_compiling(scenario) -> None:
    """A line on stderr before a run whose compiled kernels numba is likely to compile first
    (no marker of a compiled run on this install: :mod:`servesim.kernel_cache`), so a first
    run's silent 10-20 s reads as what it is."""
    if scenario.compiled == "off":
        return
    from servesim.fleet import compiled_pricing
    from servesim.kernel_cache import kernels_cached

    if compiled_pricing(scenario) and not kernels_cached():
        sys.stderr.write(
            "note: numba compiles servesim's kernels on an install's first compiled run "
            "(~10-20 s); later runs load them from its cache in ~0.3 s\n"
        )


def _expected_requests(scenario) -> int | None:
    w = scenario.workload
    return w.num_requests if w.trace is None else w.max_requests
