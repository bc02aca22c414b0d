"""``compare``: re-run a measured benchmark in the simulator and set the metrics side by side.

The simulated run replays the benchmark's requests — each successful request's prompt and
output tokens, in send order — with the benchmark's traffic:

- ``request_rate: inf``: a burst, every request due at t = 0;
- a finite rate: Poisson (``burstiness`` 1) or gamma inter-arrivals at that rate, with
  servesim's seed — the benchmark's own arrival times are not saved, so the draws differ;
- with ``max_concurrency: N`` on top of either, the same cap in the simulation (the workload's
  ``max_concurrency``): the benchmark holds a semaphore of N around each request, so a request
  due while N are in flight waits and goes out, in order, when any one finishes.

Without per-request lengths (vLLM without
``--save-detailed``) every request gets the mean lengths, or, for SGLang's random dataset, its
client's own draws and send times where they give the file's totals (``calibrate.clients``),
else lengths drawn the same way anew (noted). The engine profile follows the file's ``backend`` when
neither the scenario nor ``--engine`` names one (:data:`ENGINE_OF_BACKEND`).
"""

from __future__ import annotations

import csv
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servesim.calibrate.bench_results import COMPARE_METRICS, BenchResult, measured_metrics
from servesim.calibrate.clients import SGLANG_CLIENT_SEED, ClientDraws, sglang_random_draws
from servesim.errors import ServesimError
from servesim.scenario import Scenario, build_scenario
from servesim.validation import field_names
from servesim.workload.build import DEFAULT_HASH_BLOCK_SIZE

ENGINE_OF_BACKEND = {
    "sglang": "sglang",
    "sglang-native": "sglang",
    "sglang-oai": "sglang",
    "sglang-oai-chat": "sglang",
    "vllm": "vllm",
    "vllm-chat": "vllm",
    "lmdeploy": "lmdeploy",
    "lmdeploy-chat": "lmdeploy",
    "tensorrt-llm": "trtllm-pytorch",
    "trt": "trtllm-pytorch",
}
"""Engine profile of a benchmark's ``backend`` (vLLM's and SGLang's client names). OpenAI-API
backends (``openai``, ``openai-chat``) could be any server: they select nothing."""
CHAT_BACKENDS = frozenset({"openai-chat", "vllm-chat", "sglang-oai-chat", "lmdeploy-chat"})
"""Client backends that send chat requests: the benchmark counts the messages' content, the
server renders its chat template around each (tokens the benchmark's lengths leave out)."""


@dataclass(frozen=True)
class MetricRow:
    metric: str
    measured: float
    predicted: float

    @property
    def error_pct(self) -> float:
        """(predicted − measured) / measured × 100; NaN when either is missing or 0."""
        if not (math.isfinite(self.measured) and math.isfinite(self.predicted)):
            return math.nan
        if self.measured == 0:
            return math.nan
        return (self.predicted - self.measured) / self.measured * 100.0


@dataclass(frozen=True)
class Comparison:
    source: str
    scenario: Scenario
    model: str
    """The simulated model's name (as the catalog spells it)."""
    hardware: str
    rows: tuple[MetricRow, ...]
    notes: tuple[str, ...]
    predicted: dict[str, Any]
    """The simulated run's full summary (vLLM names)."""

    def as_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "measured_file": self.source,
            "model": self.model,
            "hardware": self.hardware,
            "tp": self.scenario.tp,
            "engine": self.scenario.engine,
            "kv_cache_tokens_pinned": self.scenario.scheduler.kv_cache_tokens,
            "fidelity": self.predicted.get("fidelity"),
            "rows": [
                {
                    "metric": r.metric,
                    "measured": clean(r.measured),
                    "predicted": clean(r.predicted),
                    "error_pct": clean(r.error_pct),
                }
                for r in self.rows
            ],
            "notes": list(self.notes),
        }


def _client_draws(bench: BenchResult) -> ClientDraws | None:
    """SGLang's random-dataset requests as its client drew them with its default seed
    (``calibrate.clients``), when their token totals are exactly the file's: what the client
    sent, send times included; else None."""
    if bench.random_lengths is None or bench.num_prompts != bench.completed:
        return None
    if bench.total_input_tokens is None or bench.total_output_tokens is None:
        return None
    inp, out, ratio = bench.random_lengths
    draws = sglang_random_draws(inp, out, bench.completed, ratio, bench.request_rate)
    if int(draws.prompt_tokens.sum()) != bench.total_input_tokens:
        return None
    if int(draws.answer_tokens.sum()) != bench.total_output_tokens:
        return None
    return draws


def _lengths(
    bench: BenchResult, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """(Prompt tokens, answer tokens, send times or None, notes) of each request replayed."""
    if bench.input_lens is not None and bench.output_lens is not None:
        sent = bench.num_prompts or len(bench.input_lens)
        failed = sent - len(bench.input_lens)
        notes = [f"{failed} of the {sent} requests failed in the benchmark and are left out"]
        return bench.input_lens, bench.output_lens, None, notes if failed > 0 else []
    draws = _client_draws(bench)
    if draws is not None:
        note = (
            f"no per-request lengths in {bench.source}: its client's own random draws "
            f"(sglang.bench_serving, seed {SGLANG_CLIENT_SEED}), which give exactly its token "
            "totals" + (", sent at the client's times" if np.isfinite(bench.request_rate) else "")
        )
        answers = np.maximum(draws.answer_tokens, 1)  # (a 0-token answer still emits one)
        times = draws.sent_s if np.isfinite(bench.request_rate) else None
        return draws.prompt_tokens, answers, times, [note]
    if bench.random_lengths is not None:
        # SGLang bench_serving's random dataset: lengths uniform in [ratio · len, len].
        inp, out, ratio = bench.random_lengths
        rng = np.random.default_rng(seed)
        n = bench.completed
        inputs = rng.integers(max(1, int(inp * ratio)), inp + 1, size=n)
        outputs = rng.integers(max(1, int(out * ratio)), out + 1, size=n)
        note = (
            f"no per-request lengths in {bench.source}: lengths drawn as its random dataset "
            f"draws them (uniform in [{ratio:g} × {inp}, {inp}] in, [{ratio:g} × {out}, {out}] "
            "out), not the benchmark's own draws (its default seed's do not give its totals)"
        )
        return inputs, outputs, None, [note]
    if bench.total_input_tokens is None or bench.total_output_tokens is None:
        raise ServesimError(
            f"{bench.source} has neither per-request lengths (input_lens, output_lens) nor "
            "total_input_tokens / total_output_tokens",
            field="MEASURED",
            fix="re-run the benchmark with --save-result --save-detailed",
        )
    n = bench.completed
    inp = max(1, round(bench.total_input_tokens / n))
    out = max(1, round(bench.total_output_tokens / n))
    note = (
        f"no per-request lengths in {bench.source} (vLLM saves them with --save-detailed): "
        f"every request simulated at the mean, {inp} in / {out} out"
    )
    return np.full(n, inp), np.full(n, out), None, [note]


def _arrival(bench: BenchResult, recorded: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The benchmark's traffic as workload fields (``arrival``, and ``max_concurrency`` when it
    capped the requests in flight), with notes on what differs. ``recorded``: the trace holds
    the client's own send times, so no arrival process is drawn."""
    cap = {"max_concurrency": bench.max_concurrency} if bench.max_concurrency else {}
    if recorded:
        return cap, []
    if math.isinf(bench.request_rate):
        return {"arrival": {"kind": "burst"}, **cap}, []
    notes = [
        "arrival times are drawn anew with the simulation's seed (benchmarks do not save "
        "theirs), so queueing differs run to run"
    ]
    if bench.burstiness == 1.0:
        arrival = {"kind": "poisson", "rate": bench.request_rate}
    else:
        arrival = {"kind": "gamma", "rate": bench.request_rate, "burstiness": bench.burstiness}
    return {"arrival": arrival, **cap}, notes


def template_tokens_of(bench: BenchResult, model: str, given: int | None) -> tuple[int, list[str]]:
    """The chat-template tokens to add to each replayed prompt, and a note: ``given`` when set;
    else, for a chat benchmark, the model family's (:mod:`servesim.chat_templates`), or 0 with
    a note that the template is left out."""
    from servesim.chat_templates import chat_template_tokens

    chat = (bench.backend or "").lower() in CHAT_BACKENDS
    known = chat_template_tokens(model) if chat and given is None else None
    tokens = given if given is not None else (known or 0)
    if tokens:
        whose = " (the model family's chat template)" if known is not None else ""
        return tokens, [
            f"{tokens} chat-template tokens added in front of every prompt{whose} as one "
            "shared prefix (a prefix cache keeps its full blocks); --chat-template-tokens "
            "sets another count"
        ]
    if chat and given is None:
        return 0, [
            f"the benchmark sent chat requests ({bench.backend}): its lengths count the "
            "messages only, and the server's chat template adds tokens to each; servesim "
            "knows none for this model (--chat-template-tokens N adds them)"
        ]
    return 0, []


def as_client_counts(summary: dict[str, Any], template_tokens: int) -> dict[str, Any]:
    """``summary`` with its input-token totals as a chat benchmark's client counts them: the
    messages' tokens only (vLLM bench's "Total input tokens" and total token throughput leave
    out the ``template_tokens`` the server rendered around each prompt; the simulated prompts
    carry them, counted apart as ``template_input_tokens``). Unchanged when
    ``template_tokens`` is 0."""
    if not template_tokens:
        return summary
    template = template_tokens * summary["completed"]
    counted = summary["total_input_tokens"] - template
    duration = summary["duration"]
    return {
        **summary,
        "total_input_tokens": counted,
        "template_input_tokens": template,
        "total_token_throughput": (
            (counted + summary["total_output_tokens"]) / duration if duration > 0 else math.nan
        ),
    }


def prompt_hash_ids(inputs: np.ndarray, template_tokens: int) -> list[str]:
    """Each prompt's block ids: the template's full blocks shared by every prompt (ids from
    0), then ids of the prompt's own (unique content)."""
    shared = template_tokens // DEFAULT_HASH_BLOCK_SIZE
    head = list(range(shared))
    cells, next_id = [], shared
    for n in inputs.tolist():
        own = max(0, int(n) // DEFAULT_HASH_BLOCK_SIZE - shared)
        cells.append(" ".join(map(str, head + list(range(next_id, next_id + own)))))
        next_id += own
    return cells


def benchmark_workload(
    bench: BenchResult, trace_path: Path, seed: int = 0, template_tokens: int = 0
) -> tuple[dict[str, Any], list[str]]:
    """Write the benchmark's requests to ``trace_path`` (CSV) and return the workload mapping
    that replays them with the benchmark's traffic, plus notes on what differs.
    ``template_tokens``: tokens the server's chat template adds in front of every prompt."""
    inputs, outputs, sent, notes = _lengths(bench, seed)
    inputs = np.asarray(inputs) + template_tokens
    columns = ["timestamp", "input_tokens", "output_tokens"]
    times = [0] * len(inputs) if sent is None else sent.tolist()
    rows = [
        [t, int(i), int(o)]
        for t, i, o in zip(times, inputs.tolist(), np.asarray(outputs).tolist(), strict=True)
    ]
    if template_tokens:
        columns.append("hash_ids")
        for row, ids in zip(rows, prompt_hash_ids(inputs, template_tokens), strict=True):
            row.append(ids)
    with trace_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    traffic, more = _arrival(bench, recorded=sent is not None)
    workload = {
        "name": bench.source,
        "trace": str(trace_path),
        "trace_format": "csv",
        **traffic,
    }
    if template_tokens:
        workload["hash_block_size"] = DEFAULT_HASH_BLOCK_SIZE  # (the ids' block, stated)
    return workload, notes + more


def with_benchmarked_engine(scenario: dict[str, Any], bench: BenchResult) -> dict[str, Any]:
    """``scenario`` (a copy) with the engine profile of the benchmarked server the file names
    (:data:`ENGINE_OF_BACKEND`) where it names none."""
    data = dict(scenario)
    engine = ENGINE_OF_BACKEND.get((bench.backend or "").lower())
    if "engine" not in data and engine is not None:
        data["engine"] = engine
    return data


def compare(
    bench: BenchResult,
    scenario: dict[str, Any],
    calibration: str | Path | None = None,
    chat_template_tokens: int | None = None,
) -> Comparison:
    """Simulate ``bench``'s requests on the deployment of ``scenario`` (a scenario mapping:
    model, hardware, tp, scheduler...; its workload is replaced) and compare the metrics.

    ``calibration``: a calibration file for the simulation (needs a servesim whose
    ``Scenario`` has a ``calibration`` field). ``chat_template_tokens``: tokens the server's
    chat template added to every prompt (a chat benchmark's lengths count the messages only);
    None: the model family's for a chat benchmark (:func:`template_tokens_of`), else 0.
    """
    if chat_template_tokens is not None and chat_template_tokens < 0:
        raise ServesimError(
            f"is {chat_template_tokens}",
            field="--chat-template-tokens",
            fix="give the tokens the chat template adds to each prompt (0 or more)",
        )
    from servesim.run import simulate  # NOTE: the engine is only needed here

    data = with_benchmarked_engine(scenario, bench)
    notes: list[str] = []
    if "engine" not in scenario and "engine" in data:
        notes.append(
            f"engine profile {data['engine']!r}, from the benchmarked backend {bench.backend!r} "
            "(its release is not in the file; set engine / engine_version in --scenario or "
            "--engine)"
        )
    if "workload" in data:
        notes.append("the scenario's workload is replaced by the benchmark's requests")
    if calibration is not None:
        if "calibration" not in field_names(Scenario):
            raise ServesimError(
                "this servesim's simulate cannot take a calibration yet",
                field="--calibration",
                fix="drop --calibration",
            )
        data["calibration"] = str(calibration)
    with tempfile.TemporaryDirectory(prefix="servesim-compare-") as tmp:
        seed = data.get("seed", 0)
        template, more = template_tokens_of(bench, str(data.get("model", "")), chat_template_tokens)
        notes.extend(more)
        trace = Path(tmp) / "requests.csv"
        workload, more = benchmark_workload(bench, trace, seed, template)
        notes.extend(more)
        data["workload"] = workload
        result = simulate(build_scenario(data, source="scenario"))
    notes.extend(_model_note(bench.model_id, result.model.name))
    predicted = as_client_counts(result.summary, template)
    measured = measured_metrics(bench)
    if predicted["completed"] != bench.completed:
        notes.append(
            f"the simulation completed {predicted['completed']} of the {bench.completed} "
            f"requests ({predicted.get('num_skipped', 0)} skipped as too long for it)"
        )
    rows = tuple(
        MetricRow(k, float(measured[k]), float(predicted.get(k, math.nan))) for k in COMPARE_METRICS
    )
    return Comparison(
        source=bench.source,
        scenario=result.scenario,
        model=result.model.name,
        hardware=result.hardware.name,
        rows=rows,
        notes=tuple(notes),
        predicted=predicted,
    )


def _model_note(benchmarked: str | None, simulated: str) -> list[str]:
    """A note when the file names a model other than the one simulated (an id, an alias or a
    local path: its last part is compared when it does not resolve here)."""
    if not benchmarked:
        return []
    from servesim.model import load_model

    try:
        same = load_model(benchmarked).name == simulated
    except ServesimError:
        tail = benchmarked.rstrip("/").rsplit("/", 1)[-1].lower()
        same = tail == simulated.rsplit("/", 1)[-1].lower()
    if same:
        return []
    return [f"the benchmark ran {benchmarked!r}; the simulation runs {simulated!r}"]


def write_comparison_csv(cmp: Comparison, path: str | Path) -> Path:
    """``metric,measured,predicted,error_pct`` rows (empty cells where a value is missing)."""
    path = Path(path)

    def cell(x: float) -> str:
        return repr(x) if math.isfinite(x) else ""

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "measured", "predicted", "error_pct"])
        for r in cmp.rows:
            w.writerow([r.metric, cell(r.measured), cell(r.predicted), cell(r.error_pct)])
    return path
