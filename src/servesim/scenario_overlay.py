"""Command-line flags over a scenario's fields: the overlay every command shares.

``servesim simulate``, ``serve``, ``capacity``, ``sweep`` and ``plan`` take a scenario (a
``--config`` file, a sweep's base, or nothing) and flags that change some of its fields. The
flags arrive here as a mapping of option names (``simulate``'s parameter names: ``tp``,
``max_num_seqs``, ``rate``, ...) to the values given, ``None`` for a flag left out, and leave as
the scenario's fields, still unvalidated: :func:`servesim.scenario.build_scenario` checks them.

The flags' own syntax (``--input-len lognormal:median=800``, ``--rate inf``, ``--goodput
ttft:500``, ``--time-window 600:1200``) is read here too, each bad value one error naming the
flag. Nothing here knows of typer or the terminal: the CLI parses options, calls
:func:`overlay`, and prints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servesim.errors import ServesimError
from servesim.scenario import merge, workload_fields
from servesim.textfile import not_a_file
from servesim.workload.spec import PRESET_NAMES

SCENARIO_OPTIONS = (
    "model", "hardware", "tp", "pp", "ep", "dp", "replicas", "disaggregate", "prefill_tp",
    "decode_tp", "weight_dtype", "kv_dtype", "cuda_graphs", "async_scheduling", "attention_backend",
    "sampler", "kv_offload",
    "calibration",
    "cpu_kv_cache_gib", "kv_offload_gbps", "router", "engine", "engine_version",
    "num_scheduler_steps",
    "api_server", "seed", "max_model_len", "on_oversized", "fast_forward", "compiled",
)  # fmt: skip
"""Options that set the scenario field of the same name."""

SECTION_OPTIONS: dict[str, dict[str, str]] = {
    "scheduler": {
        "scheduler": "policy",
        "max_num_batched_tokens": "max_num_batched_tokens",
        "max_num_seqs": "max_num_seqs",
        "admission": "admission",
        "block_size": "block_size",
        "prefix_caching": "enable_prefix_caching",
        "chunked_prefill": "enable_chunked_prefill",
        "gpu_memory_utilization": "gpu_memory_utilization",
        "kv_cache_tokens": "kv_cache_tokens",
        "hybrid_kv_cache": "hybrid_kv_cache",
        "recv_interval": "recv_interval",
        "stream_interval": "stream_interval",
    },
    "slo": {"slo_ttft_ms": "ttft_ms", "slo_tpot_ms": "tpot_ms", "slo_e2el_ms": "e2el_ms"},
    "speculative": {
        "speculative": "method",
        "num_speculative_tokens": "num_speculative_tokens",
        "acceptance_rate": "acceptance_rate",
        "spec_mode": "mode",
    },
}
"""Options that set a field of a scenario section: section → {option → field}."""

WORKLOAD_OPTIONS = (
    "workload", "num_requests", "input_len", "output_len", "rate", "burstiness", "concurrency",
    "max_concurrency", "replay", "trace_format", "rate_scale", "time_window",
)  # fmt: skip
"""Options that set workload fields (:func:`workload_flags`)."""

OPTIONS = frozenset(
    (*SCENARIO_OPTIONS, *(o for fields in SECTION_OPTIONS.values() for o in fields), "goodput")
    + WORKLOAD_OPTIONS
)
"""Every option :func:`overlay` reads (``goodput``: vLLM's spelling of the SLO section)."""

LENGTH_HELP = (
    "tokens: an integer (fixed), a preset (conversation, code, sharegpt), or KIND:key=value,... "
    "e.g. lognormal:median=800,sigma=1.0 | uniform:lo=100,hi=2000 | normal:mean=500,std=100 | "
    "zipf:a=1.2,max=4096 | empirical:path=lengths.txt"
)

GOODPUT_FIELDS = ("ttft_ms", "tpot_ms", "e2el_ms")
"""The SLO fields ``--goodput`` sets (vLLM's keys ttft, tpot, e2el)."""


# --------------------------------------------------------------------------- the overlay


def given(**fields: Any) -> dict[str, Any]:
    """The fields the user set (flags left out are None)."""
    return {k: v for k, v in fields.items() if v is not None}


def overlay(base: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The scenario fields of ``base`` (a scenario file's, ``{}`` for none) with the flags of
    ``options`` over them (option name → value; None or absent: not given).

    Sections merge field by field (``--max-num-seqs`` keeps the file's other scheduler
    fields); ``--workload FILE`` replaces the file's workload, the other workload flags merge
    into it (:func:`merge_workload`)."""
    flags = flag_fields(options)
    workload = options.get("workload")
    file_workload = None
    if workload is not None and workload not in PRESET_NAMES and options.get("replay") is None:
        file_workload = workload_fields(workload, "--workload")
        workload = None
    w = workload_flags({**options, "workload": workload})
    data = merge(base, flags)
    spec = data.get("speculative")
    if "speculative" in flags and isinstance(spec, Mapping) and "method" not in spec:
        named = [
            "--" + option.replace("_", "-")
            for option in SECTION_OPTIONS["speculative"]
            if options.get(option) is not None
        ]
        raise ServesimError(
            f"{' and '.join(named)} {'shapes' if len(named) == 1 else 'shape'} speculative "
            "decoding, which is off",
            field="--speculative",
            fix="add --speculative ngram, eagle or draft:MODEL",
        )
    if file_workload is not None:
        data["workload"] = file_workload
    if w:
        data["workload"] = merge_workload(data.get("workload"), w)
    return data


def flag_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The scenario fields, workload aside, that the flags of ``options`` set."""
    flags = given(**{name: options.get(name) for name in SCENARIO_OPTIONS})
    if "calibration" in flags:
        flags["calibration"] = str(flags["calibration"])
    for section, fields in SECTION_OPTIONS.items():
        values = given(**{field: options.get(option) for option, field in fields.items()})
        if section == "slo":
            values = merge_goodput(values, options.get("goodput") or [])
        if values:
            flags[section] = values
    return flags


def workload_flags(options: Mapping[str, Any]) -> dict[str, Any]:
    """The workload fields the workload flags of ``options`` set (:data:`WORKLOAD_OPTIONS`;
    ``workload`` here is a preset name: :func:`overlay` reads a workload file itself)."""
    o = {name: options.get(name) for name in WORKLOAD_OPTIONS}
    workload, num_requests, replay = o["workload"], o["num_requests"], o["replay"]
    concurrency, max_concurrency = o["concurrency"], o["max_concurrency"]
    rate, burstiness = o["rate"], o["burstiness"]
    w: dict[str, Any] = {}
    if replay is not None:
        if not Path(replay).is_file():
            problem = not_a_file(replay)
            raise ServesimError(f"trace file {replay} {problem}", field="--replay")
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
    if o["trace_format"]:
        w["trace_format"] = o["trace_format"]
    if o["rate_scale"] is not None:
        w["rate_scale"] = o["rate_scale"]
    if o["time_window"] is not None:
        w["time_window"] = parse_time_window(o["time_window"])
    if o["input_len"] is not None:
        w["input_len"] = parse_length(o["input_len"], "--input-len")
    if o["output_len"] is not None:
        w["output_len"] = parse_length(o["output_len"], "--output-len")
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
        w["arrival"] = _arrival(parse_rate(rate), burstiness)
    return w


def _arrival(rate: float, burstiness: float | None) -> dict[str, Any]:
    """The arrival process of ``--rate`` (requests/s) and ``--burstiness``."""
    if math.isinf(rate) and burstiness is not None:
        raise ServesimError(
            "--burstiness shapes the gaps between arrivals; --rate inf has none",
            field="--burstiness",
            fix="give a finite --rate",
        )
    if math.isinf(rate):
        return {"kind": "burst"}
    if burstiness is not None and burstiness != 1.0:
        return {"kind": "gamma", "rate": rate, "burstiness": burstiness}
    return {"kind": "poisson", "rate": rate}


def merge_workload(base: Any, flags: dict[str, Any]) -> Any:
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


def named_workload(text: str, num_requests: int | None = None) -> dict[str, Any]:
    """A whole workload named by ``--workload`` (a preset or a workload file: a workload, or a
    scenario with one), with ``--num-requests`` over it (a trace's ``max_requests``).

    For the commands whose ``--workload`` replaces the scenario's workload (``capacity``,
    ``plan``), where ``simulate``'s sets a preset over it."""
    workload = workload_fields(text, "--workload")
    if num_requests is not None:
        workload["max_requests" if "trace" in workload else "num_requests"] = num_requests
    return workload


# --------------------------------------------------------------------------- flag syntax


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
    """``--rate``: requests/s > 0, ``inf`` for every request at t=0."""
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
        if slo.get(key, ms) != ms:
            raise ServesimError(
                f"{name.strip().lower()} is given twice ({slo[key]:g} and {ms:g} ms)",
                field="--goodput",
                fix="give each target once",
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
