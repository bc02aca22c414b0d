"""Readers for serving-benchmark results: vLLM ``bench serve --save-result`` and SGLang
``bench_serving`` output.

- **vLLM** writes one JSON object: settings (``model_id``, ``num_prompts``, ``request_rate``
  — a number or ``"inf"``, ``burstiness``, ``max_concurrency``), results (``duration``,
  ``completed``, ``total_input_tokens``, ``total_output_tokens``, ``request_throughput``,
  ``output_throughput``, ``total_token_throughput``, ``{mean,median,std,pNN}_{ttft,tpot,itl,
  e2el}_ms``) and, with ``--save-detailed`` (older versions always), per-request arrays
  ``input_lens``, ``output_lens``, ``ttfts`` (seconds), ``itls`` (a list of gaps in seconds
  per request) and ``errors``.
- **SGLang** appends one JSON object per run to a JSON-lines file, with the same ideas under
  slightly different names (``mean_e2e_latency_ms`` for E2EL, ``total_throughput``); with
  ``--output-details`` it adds the same per-request arrays.

Both become a :class:`BenchResult` with vLLM's metric names. Failed requests (0 output
tokens, or an error message) are dropped from the per-request arrays.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servesim.errors import ServesimError
from servesim.textfile import not_a_file

LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
STATS = ("mean", "median", "p99")
THROUGHPUTS = ("request_throughput", "output_throughput", "total_token_throughput")
COMPARE_METRICS = THROUGHPUTS + tuple(f"{s}_{m}_ms" for m in LATENCY_METRICS for s in STATS)
"""The metrics ``servesim compare`` reports, by their vLLM names."""

_SGLANG_NAMES = {"e2e_latency": "e2el"}


@dataclass(frozen=True)
class BenchResult:
    """One benchmark run, normalised to vLLM's names; seconds unless a name says ``_ms``."""

    source: str
    tool: str
    """``vllm`` or ``sglang`` (from the keys the file uses)."""
    model_id: str | None
    num_prompts: int | None
    request_rate: float
    """Requests/s the client aimed for; ``inf``: all sent at once."""
    burstiness: float
    """Gamma shape of the inter-arrival times (1 = Poisson)."""
    max_concurrency: int | None
    duration_s: float
    completed: int
    total_input_tokens: int | None
    total_output_tokens: int | None
    input_lens: np.ndarray | None
    """Prompt tokens of each successful request, in send order (None when not saved)."""
    output_lens: np.ndarray | None
    ttfts_s: np.ndarray | None
    itls_s: tuple[np.ndarray, ...] | None
    metrics: dict[str, float]
    """Summary metrics as written in the file (vLLM names)."""
    backend: str | None = None
    """The server API the client benchmarked, as the file names it (``backend``: ``vllm``,
    ``sglang``, ``openai``, ``lmdeploy``...); None when the file does not say."""
    random_lengths: tuple[int, int, float] | None = None
    """SGLang's random dataset as the run was configured (``random_input_len``,
    ``random_output_len``, ``random_range_ratio``): lengths drawn uniformly in
    ``[ratio · len, len]``. None for other datasets, and for vLLM's files, which do not save
    the dataset's settings."""


def _load_objects(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        obj = json.loads(text)
        objs = obj if isinstance(obj, list) else [obj]
    except json.JSONDecodeError:
        objs = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                objs.append(json.loads(line))
            except json.JSONDecodeError:
                raise ServesimError(
                    "not valid JSON",
                    field=f"{path.name} line {i + 1}",
                    fix="pass a vLLM --save-result JSON or an SGLang bench_serving JSONL file",
                ) from None
    objs = [o for o in objs if isinstance(o, dict)]
    if not objs:
        raise ServesimError(f"{path.name} holds no benchmark result object", field="MEASURED")
    return objs


def _number(obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> float | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ServesimError(
                f"missing {key}",
                field=where,
                fix="pass the JSON a benchmark wrote (vllm bench serve --save-result)",
            )
        return None
    if isinstance(value, str) and value.lower() in ("inf", "infinity"):
        return math.inf
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise ServesimError(f"{key} is {value!r}, not a number", field=where)
    return float(value)


def _array(obj: dict[str, Any], key: str, where: str, n: int | None) -> np.ndarray | None:
    raw = obj.get(key)
    if raw is None:
        return None
    if not isinstance(raw, list) or (n is not None and len(raw) != n):
        raise ServesimError(
            f"{key} must be a list" + (f" of {n} entries (one per request)" if n else ""),
            field=where,
        )
    out = np.empty(len(raw))
    for i, v in enumerate(raw):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
            raise ServesimError(f"{key}[{i}] is {v!r}; expected a number >= 0", field=where)
        out[i] = v
    return out


def _itls(obj: dict[str, Any], where: str, n: int) -> list[np.ndarray] | None:
    raw = obj.get("itls")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != n:
        raise ServesimError(f"itls must be a list of {n} lists (one per request)", field=where)
    out = []
    for i, gaps in enumerate(raw):
        if not isinstance(gaps, list):
            raise ServesimError(f"itls[{i}] must be a list of seconds", field=where)
        arr = np.asarray(gaps, dtype=float) if gaps else np.zeros(0)
        if arr.size and not (arr >= 0).all():
            raise ServesimError(f"itls[{i}] has a negative or missing gap", field=where)
        out.append(arr)
    return out


def _summary_metrics(obj: dict[str, Any], tool: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in obj.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        name = key
        if tool == "sglang":
            for theirs, ours in _SGLANG_NAMES.items():
                name = name.replace(theirs, ours)
            if name == "total_throughput":
                name = "total_token_throughput"
        out[name] = float(value)
    return out


def read_bench_result(path: str | Path, run: int | None = None) -> BenchResult:
    """Read a vLLM or SGLang benchmark result; ``run`` picks a line of a multi-run JSONL file
    (0-based; default the last). Raises ServesimError naming a missing or bad field."""
    path = Path(path)
    if not path.is_file():
        raise ServesimError(f"{path} {not_a_file(path)}", field="MEASURED", fix="check the path")
    objs = _load_objects(path)
    index = len(objs) - 1 if run is None else run
    if not 0 <= index < len(objs):
        raise ServesimError(
            f"{path.name} holds {len(objs)} run(s); there is no run {run}",
            field="--run",
            fix=f"use 0..{len(objs) - 1}",
        )
    obj = objs[index]
    where = path.name if len(objs) == 1 else f"{path.name} run {index}"
    tool = "sglang" if any("e2e_latency" in k for k in obj) else "vllm"
    duration = _number(obj, "duration", where)
    completed = _number(obj, "completed", where)
    assert duration is not None and completed is not None
    if not duration > 0 or not completed >= 1:
        raise ServesimError(
            f"duration {duration} s with {completed:g} completed requests; nothing to compare",
            field=where,
            fix="pass the result of a run that completed requests",
        )
    rate = _number(obj, "request_rate", where, required=False)
    burst = _number(obj, "burstiness", where, required=False)
    conc = _number(obj, "max_concurrency", where, required=False)
    inputs = _array(obj, "input_lens", where, None)
    n = None if inputs is None else len(inputs)
    outputs = _array(obj, "output_lens", where, n)
    ttfts = _array(obj, "ttfts", where, n)
    itls = _itls(obj, where, n) if n is not None else None
    if (inputs is None) != (outputs is None):
        raise ServesimError("input_lens and output_lens go together", field=where)
    if inputs is not None and outputs is not None:
        ok = outputs > 0
        errors = obj.get("errors")
        if isinstance(errors, list) and len(errors) == len(ok):
            ok &= np.array([not e for e in errors])
        ok &= inputs > 0
        keep = np.flatnonzero(ok)
        inputs, outputs = inputs[keep].astype(np.int64), outputs[keep].astype(np.int64)
        ttfts = None if ttfts is None else ttfts[keep]
        itls = None if itls is None else [itls[i] for i in keep.tolist()]
        if len(keep) == 0:
            raise ServesimError("no request succeeded (every output_lens is 0)", field=where)
    tin = _number(obj, "total_input_tokens", where, required=False)
    tout = _number(obj, "total_output_tokens", where, required=False)
    num_prompts = _number(obj, "num_prompts", where, required=False)
    backend = obj.get("backend") if isinstance(obj.get("backend"), str) else None
    return BenchResult(
        source=path.name,
        tool=tool,
        model_id=obj.get("model_id") if isinstance(obj.get("model_id"), str) else None,
        num_prompts=None if num_prompts is None else int(num_prompts),
        request_rate=math.inf if rate is None else rate,
        burstiness=1.0 if burst is None else burst,
        max_concurrency=None if conc is None or conc == math.inf else int(conc),
        duration_s=duration,
        completed=int(completed),
        total_input_tokens=None if tin is None else int(tin),
        total_output_tokens=None if tout is None else int(tout),
        input_lens=inputs,
        output_lens=outputs,
        ttfts_s=ttfts,
        itls_s=None if itls is None else tuple(itls),
        metrics=_summary_metrics(obj, tool),
        backend=backend,
        random_lengths=_random_lengths(obj, where),
    )


def _random_lengths(obj: dict[str, Any], where: str) -> tuple[int, int, float] | None:
    """SGLang's ``random`` dataset settings of a run, or None for another dataset."""
    if obj.get("dataset_name") not in ("random", "random-ids"):
        return None
    inp = _number(obj, "random_input_len", where, required=False)
    out = _number(obj, "random_output_len", where, required=False)
    ratio = _number(obj, "random_range_ratio", where, required=False)
    if inp is None or out is None or not (inp >= 1 and out >= 1):
        return None
    ratio = 0.0 if ratio is None else ratio
    if not 0 <= ratio <= 1:
        raise ServesimError(f"random_range_ratio is {ratio}; expected 0..1", field=where)
    return int(inp), int(out), ratio


def _stats_ms(prefix: str, values_s: np.ndarray) -> dict[str, float]:
    if values_s.size == 0:
        return {}
    ms = values_s * 1000.0
    return {
        f"mean_{prefix}_ms": float(ms.mean()),
        f"median_{prefix}_ms": float(np.median(ms)),
        f"p99_{prefix}_ms": float(np.percentile(ms, 99)),
    }


def measured_metrics(bench: BenchResult) -> dict[str, float]:
    """The :data:`COMPARE_METRICS` of a run: as the file wrote them, else computed from the
    per-request arrays as vLLM does (TPOT = Σ gaps / (output − 1) over requests with more than
    one output token; E2EL = TTFT + Σ gaps); NaN when neither is available."""
    out = {k: bench.metrics[k] for k in COMPARE_METRICS if k in bench.metrics}
    derived: dict[str, float] = {
        "request_throughput": bench.completed / bench.duration_s,
    }
    if bench.total_output_tokens is not None:
        derived["output_throughput"] = bench.total_output_tokens / bench.duration_s
        if bench.total_input_tokens is not None:
            derived["total_token_throughput"] = (
                bench.total_input_tokens + bench.total_output_tokens
            ) / bench.duration_s
    if bench.ttfts_s is not None:
        derived.update(_stats_ms("ttft", bench.ttfts_s))
    if bench.itls_s is not None and bench.output_lens is not None:
        decode_s = np.array([g.sum() for g in bench.itls_s])
        derived.update(_stats_ms("itl", np.concatenate([*bench.itls_s, np.zeros(0)])))
        multi = bench.output_lens > 1
        derived.update(_stats_ms("tpot", decode_s[multi] / (bench.output_lens[multi] - 1)))
        if bench.ttfts_s is not None:
            derived.update(_stats_ms("e2el", bench.ttfts_s + decode_s))
    for key in COMPARE_METRICS:
        out.setdefault(key, derived.get(key, math.nan))
    return out
