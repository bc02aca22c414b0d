"""Command: ``servesim serve``: a simulated vLLM server (OpenAI-compatible HTTP API).

Its scenario options are ``simulate``'s own (the same ``typer.Option`` objects, read from
:func:`~servesim.cli.simulate_cmd.simulate_command`'s signature), minus the ones that describe
arrivals (clients send the requests) or offline outputs; plus the server's options.
"""

from __future__ import annotations

import inspect
import sys
import typing
from pathlib import Path
from typing import Any

import typer

from servesim.cli import importing
from servesim.cli.app import app
from servesim.cli.simulate_cmd import _given, _merge_workload, simulate_command, workload_overrides
from servesim.errors import ServesimError

NOT_SERVED = (
    "num_requests", "rate", "burstiness", "concurrency", "replay", "trace_format", "rate_scale",
    "time_window", "max_concurrency", "trace", "trace_limit", "report", "as_json",
    "percentile_metrics", "metric_percentiles", "goodput", "fast_forward", "on_oversized",
)  # fmt: skip
"""``simulate`` options that have no meaning for a server: arrivals (clients send them),
printed outputs, fast-forward (it runs step by step) and ``--on-oversized`` (a request too long
for the context or the KV cache gets vLLM's 400)."""

OTHER_OPTIONS = ("config", "out", "workload", "input_len", "output_len")
"""``simulate`` options the server reads besides the scenario fields and sections below."""

SCENARIO_FIELDS = (
    "model", "hardware", "tp", "pp", "ep", "replicas", "disaggregate", "prefill_tp", "decode_tp",
    "weight_dtype", "kv_dtype", "cuda_graphs", "kv_offload", "calibration", "cpu_kv_cache_gib",
    "kv_offload_gbps", "router", "engine", "num_scheduler_steps", "api_server", "seed",
    "max_model_len", "on_oversized", "fast_forward",
)  # fmt: skip
"""Options that set the scenario field of the same name."""

SECTIONS = {
    "scheduler": {
        "scheduler": "policy",
        "max_num_batched_tokens": "max_num_batched_tokens",
        "max_num_seqs": "max_num_seqs",
        "block_size": "block_size",
        "prefix_caching": "enable_prefix_caching",
        "chunked_prefill": "enable_chunked_prefill",
        "gpu_memory_utilization": "gpu_memory_utilization",
    },
    "slo": {"slo_ttft_ms": "ttft_ms", "slo_tpot_ms": "tpot_ms", "slo_e2el_ms": "e2el_ms"},
    "speculative": {
        "speculative": "method",
        "num_speculative_tokens": "num_speculative_tokens",
        "acceptance_rate": "acceptance_rate",
        "spec_mode": "mode",
    },
}
"""Options that set a field of a scenario section: option → field."""

PIP_EXTRA = "pip install 'servesim[serve]'"


def _server_options(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(
        8000, "--port", min=0, max=65535, help="port to listen on (0: any free one)"
    ),
    time_scale: float = typer.Option(
        1.0,
        "--time-scale",
        min=1e-3,
        max=1e4,
        help="simulated time runs K× faster than wall time (10: a 50 ms step takes 5 ms)",
    ),
    tokenizer: Path = typer.Option(
        None,
        "--tokenizer",
        exists=True,
        dir_okay=False,
        help="tokenizer.json to count text prompts (default: estimated, 4 characters a token)",
    ),
    served_model_name: str = typer.Option(
        None,
        "--served-model-name",
        help="model name clients send (default: the model's Hugging Face id)",
    ),
    drain_s: float = typer.Option(
        5.0,
        "--drain-s",
        min=0,
        help="on SIGINT/SIGTERM, seconds open streams may finish before they are closed",
    ),
) -> None:
    """(Signature only: the server's own options.)"""


def scenario_from_options(options: dict[str, Any]):
    """The scenario ``simulate``'s options describe: ``--config`` overlaid by the flags given.

    NOTE: the same overlay as ``simulate``'s, written as tables; the two should become one
    function in ``simulate_cmd`` once its concurrent hardening lands."""
    from servesim.scenario import build_scenario, load_scenario_file, merge

    config = options.get("config")
    flags = _given(**{name: options.get(name) for name in SCENARIO_FIELDS})
    if "calibration" in flags:
        flags["calibration"] = str(flags["calibration"])
    for section, fields in SECTIONS.items():
        given = _given(**{field: options.get(opt) for opt, field in fields.items()})
        if given:
            flags[section] = given
    workload = workload_overrides(
        workload=options.get("workload"),
        num_requests=None,
        input_len=options.get("input_len"),
        output_len=options.get("output_len"),
        rate=None,
        burstiness=None,
        concurrency=None,
        replay=None,
        trace_format=None,
        rate_scale=None,
    )
    data = merge(load_scenario_file(config) if config else {}, flags)
    if workload:
        data["workload"] = _merge_workload(data.get("workload"), workload)
    return build_scenario(data, source=str(config) if config else "")


def serve_command(**options: Any) -> None:
    """Serve a simulated deployment behind vLLM's OpenAI-compatible HTTP API.

    Clients (an OpenAI SDK, `vllm bench serve`, a gateway) see the latency the simulated engine gives them: queueing, chunked prefill, preemption and prefix caching included. Prometheus metrics under vLLM's names at /metrics.

    Ctrl-C (or SIGTERM) stops it; with --out it then writes the run folder of the requests it served, as `simulate --out` does.
    """
    with importing():
        try:
            import prometheus_client  # noqa: F401
            import uvicorn  # noqa: F401

            from servesim.serve.app import build_served, listen, run_server
        except ImportError as err:
            raise ServesimError(
                f"needs the server's dependencies ({err.name} is missing)", fix=PIP_EXTRA
            ) from None
    scenario = scenario_from_options(options)
    out = options.get("out")
    if out is not None:
        from servesim.paths import writable_dir

        writable_dir(out)
    served = build_served(
        scenario, options["time_scale"], options.get("served_model_name"), options.get("tokenizer")
    )
    host = options["host"]
    sock = listen(host, options["port"])
    port = sock.getsockname()[1]
    sys.stderr.write(
        f"servesim serve: {served.model_name} at http://{host}:{port}/v1 "
        f"(time scale {options['time_scale']:g}; Ctrl-C stops)\n"
    )
    run_server(served, sock, out, options["drain_s"])


def _signature() -> tuple[inspect.Signature, dict[str, Any]]:
    """``simulate``'s served options followed by the server's own, and their types."""
    hints = typing.get_type_hints(simulate_command) | typing.get_type_hints(_server_options)
    params = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for f in (simulate_command, _server_options)
        for p in inspect.signature(f).parameters.values()
        if p.name not in NOT_SERVED
    ]
    hints = {p.name: hints[p.name] for p in params} | {"return": None}
    return inspect.Signature(params), hints


serve_command.__signature__, serve_command.__annotations__ = _signature()  # type: ignore[attr-defined]
app.command("serve")(serve_command)
