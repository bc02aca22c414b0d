"""Command: ``servesim serve``: a simulated vLLM server (OpenAI-compatible HTTP API).

Its scenario options are ``simulate``'s own (the same ``typer.Option`` objects, read from
:func:`~servesim.cli.simulate_cmd.simulate_command`'s signature), minus the ones that describe
arrivals (clients send the requests) or offline outputs; plus the server's options.
"""

from __future__ import annotations

import inspect
import math
import sys
import typing
from pathlib import Path
from typing import Any

import typer

from servesim.cli import importing
from servesim.cli.app import app
from servesim.cli.simulate_cmd import simulate_command
from servesim.errors import ServesimError
from servesim.scenario_overlay import SCENARIO_OPTIONS, SECTION_OPTIONS, overlay

NOT_SERVED = (
    "num_requests", "rate", "burstiness", "concurrency", "replay", "trace_format", "rate_scale",
    "time_window", "max_concurrency", "trace", "trace_limit", "report", "as_json",
    "percentile_metrics", "metric_percentiles", "goodput", "fast_forward", "on_oversized",
    "compiled",
)  # fmt: skip
"""``simulate`` options that have no meaning for a server: arrivals (clients send them),
printed outputs, fast-forward (it runs step by step), ``--compiled`` (a server prices one step at
a time, as it comes, on the reference path) and ``--on-oversized`` (a request too long
for the context or the KV cache gets vLLM's 400)."""

SCENARIO_FIELDS = SCENARIO_OPTIONS
"""Options that set the scenario field of the same name (the overlay's, as ``simulate``)."""

SECTIONS = SECTION_OPTIONS
"""Options that set a field of a scenario section: section → {option → field}."""

OTHER_OPTIONS = (
    "config", "out", "table_format", "workload", "input_len", "output_len", "engine_log",
)  # fmt: skip
"""``simulate`` options the server reads besides the scenario fields and sections above."""

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
    """The scenario ``simulate``'s options describe: ``--config`` overlaid by the flags given
    (the same overlay as ``simulate``'s), its KV cache pinned to ``--engine-log``'s size."""
    from servesim.scenario import build_scenario, load_scenario_file

    config = options.get("config")
    source = str(config) if config else ""
    data = overlay(load_scenario_file(config) if config else {}, options)
    if options.get("engine_log") is not None:
        from servesim.calibrate.engine_log import pin_to_engine_log

        note, data = pin_to_engine_log(options["engine_log"], data, source)
        sys.stderr.write(note + "\n")
    return build_scenario(data, source=source)


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
    for flag, name in (("--time-scale", "time_scale"), ("--drain-s", "drain_s")):
        # (typer's min/max let NaN through: every comparison with it is false)
        if not math.isfinite(options[name]):
            raise ServesimError(f"must be a finite number (got {options[name]})", field=flag)
    scenario = scenario_from_options(options)
    out = options.get("out")
    table_format = options.get("table_format")
    if table_format is not None and out is None:
        raise ServesimError("needs --out DIR to write into", field="--format")
    from servesim.output import check_table_format

    table_format = check_table_format(table_format)
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
    run_server(served, sock, out, options["drain_s"], table_format)


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
