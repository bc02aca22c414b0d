"""Rebuild a published run's workload as its benchmark client sent it: the fidelity suite's
case → request lengths and send times (``bench/fidelity/run.py`` builds the rest of the scenario).

What a case states decides how exact the replay is, best first: a published list of every
request's lengths (``workload.requests``); the client's own draws, re-drawn with its seed and
checked against its printed totals or throughput ratio (``sglang.bench_serving``); requests
written at exactly the printed (or rate-implied) token totals with the length distributions'
shapes; else length distributions whose level the totals fix. Chat-endpoint clients count the
messages' tokens only: the server's chat template goes in front of every prompt.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from servesim.calibrate.clients import (
    SGLANG_CLIENT_SEED,
    sglang_random_draws,
    sglang_sharegpt_send_times,
)


class Unmappable(Exception):
    """The case cannot be rebuilt as a servesim scenario (the reason is reported)."""


def from_totals(w: dict[str, Any], ilen: Any) -> tuple[Any, Any] | None:
    """Length distributions matching a case's stated token totals (the benchmark's printed
    "Total input tokens" / "Total generated tokens"), or None without them: a random dataset's
    uniform ranges, or the sharegpt preset's shape at the case's mean lengths."""
    n = w.get("num_prompts")
    tin, tout = w.get("total_input_tokens"), w.get("total_output_tokens")
    if not (
        isinstance(n, int) and isinstance(tin, (int, float)) and isinstance(tout, (int, float))
    ):
        return None
    mean_in, mean_out = tin / n, tout / n
    if isinstance(ilen, (int, float)) and isinstance(w.get("output_len"), (int, float)):
        # A random dataset: uniform up to the given length (SGLang's and older vLLM's
        # range_ratio semantics, [ratio·len, len]); the totals give the lower bound.
        def uniform(mean: float, top: float) -> Any:
            if abs(mean - top) <= 0.03 * top:
                return int(top)
            return {"kind": "uniform", "lo": max(1, int(2 * mean - top)), "hi": int(top)}

        return uniform(mean_in, ilen), uniform(mean_out, w["output_len"])

    if w.get("dataset") not in ("sharegpt", "ShareGPT"):
        return None
    from servesim.workload.presets import PRESET_TABLES, SHAREGPT_BOUNDS, fit_table_to_mean

    def table(role: str, mean: float) -> dict[str, Any]:
        # The sharegpt preset's shape (prompts as measured, answers assumed), at the level of
        # the case's own totals (its tokenizer and EOS stops set them).
        shape = PRESET_TABLES[("sharegpt", role)]
        values = fit_table_to_mean(shape.values, mean, *SHAREGPT_BOUNDS[role])
        return {"kind": "quantiles", "probs": list(shape.probs), "values": list(values)}

    return table("input", mean_in), table("output", mean_out)


def client_text(case: dict[str, Any]) -> str:
    """The case's notes and launch arguments, where it names the benchmark client it ran."""
    return str(case.get("notes", "")) + " " + json.dumps(case.get("engine_args") or {})


def chat_template_tokens(case: dict[str, Any]) -> int:
    """Tokens the server's chat template added to each prompt, when the case's client was
    ``vllm bench serve --backend openai-chat`` (its token totals and random lengths count the
    messages' content only; the server renders the template around them), else 0."""
    if "--backend openai-chat" not in client_text(case):
        return 0
    from servesim.chat_templates import chat_template_tokens

    return chat_template_tokens(str(case.get("model", ""))) or 0


def sglang_client(case: dict[str, Any]) -> bool:
    """Whether the case's client was SGLang's ``sglang.bench_serving`` (as its notes or launch
    arguments name it)."""
    return "sglang.bench_serving" in client_text(case)


def sglang_random_lengths(w: dict[str, Any]) -> tuple[Any, Any] | None:
    """Lengths of SGLang's random dataset at the case's ``range_ratio`` r below 1: prompts
    uniform in [max(⌊r·len⌋, 1), len], answers in [⌊r·len⌋, len] (``sample_random_requests`` in
    the 0.4.5-0.5.3 wheels' ``bench_serving.py``, r = 0.0 by default: lengths up to the given
    value, not equal to it). An answer of 0 tokens is taken as 1 (the server's first token)."""
    ilen, olen, ratio = w.get("input_len"), w.get("output_len"), w.get("range_ratio")
    if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        return None
    if not isinstance(ilen, int) or not isinstance(olen, int):
        return None
    lo_in, lo_out = max(int(ilen * ratio), 1), max(int(olen * ratio), 1)
    return (
        {"kind": "uniform", "lo": lo_in, "hi": ilen},
        {"kind": "uniform", "lo": lo_out, "hi": olen},
    )


def fixed_lengths(w: dict[str, Any], sglang_client: bool = False) -> tuple[Any, Any]:
    ilen, olen = w.get("input_len"), w.get("output_len")
    if isinstance(ilen, dict) and isinstance(olen, dict):
        return ilen, olen  # (servesim length distributions, as the source's client drew them)
    totals = from_totals(w, ilen)
    if totals is not None:
        return totals
    sglang = sglang_random_lengths(w) if sglang_client else None
    if sglang is not None:
        return sglang
    if w.get("dataset") in ("sharegpt", "ShareGPT") and not isinstance(ilen, int):
        return "sharegpt", "sharegpt"
    if not isinstance(ilen, (int, float)) or not isinstance(olen, (int, float)):
        raise Unmappable(f"lengths not stated as numbers ({ilen!r}, {olen!r})")
    ratio = w.get("range_ratio")
    if ratio and 0 < ratio < 1:
        # vLLM's random dataset: uniform in [len·(1 − r), len·(1 + r)] (older: [len·r, len]).
        lo, hi = int(ilen * (1 - ratio)), int(ilen * (1 + ratio))
        olo, ohi = int(olen * (1 - ratio)), int(olen * (1 + ratio))
        return (
            {"kind": "uniform", "lo": max(1, lo), "hi": max(1, hi)},
            {"kind": "uniform", "lo": max(1, olo), "hi": max(1, ohi)},
        )
    return int(ilen), max(1, int(olen))


def client_seed(case: dict[str, Any]) -> int:
    """The ``--seed`` the case's client was run with (its notes or launch arguments), else
    ``sglang.bench_serving``'s default."""
    found = re.search(r"--seed[ =](\d+)", client_text(case))
    return int(found.group(1)) if found else SGLANG_CLIENT_SEED


def sglang_client_requests(case: dict[str, Any]) -> list[tuple[float, int, int]] | None:
    """(send time s, prompt tokens, answer tokens) of each request as ``sglang.bench_serving``
    drew them for a random-dataset case (``servesim.calibrate.clients.sglang_random_draws``),
    checked against the case's stated token totals (or, where it states none, against the
    ratio of the input and output token throughputs it printed, :func:`same_token_ratio`);
    else None. The totals must match exactly, or their ratio the printed throughputs' to the
    figures' rounding, which tells that the version and seed drew as assumed. Fixed lengths
    (range ratio 1) cannot be checked so; their send times are taken as the seed's draws all
    the same (their one-value length draws leave NumPy's legacy stream alone), no worse than a
    Poisson draw of servesim's own."""
    w = case.get("workload") or {}
    load = case.get("load") or {}
    ilen, olen, n = w.get("input_len"), w.get("output_len"), w.get("num_prompts")
    tin, tout = w.get("total_input_tokens"), w.get("total_output_tokens")
    if not (sglang_client(case) and w.get("dataset") == "random"):
        return None
    if not all(isinstance(x, int) for x in (ilen, olen, n)):
        return None
    ratio = float(w.get("range_ratio") or 0.0)
    totals = isinstance(tin, int) and isinstance(tout, int)
    fixed = ratio >= 1
    rates = None if totals or fixed else published_token_rates(case)
    if not (totals or fixed or rates is not None):
        return None
    rate = load.get("request_rate")
    rate = float(rate) if isinstance(rate, (int, float)) else math.inf
    draws = sglang_random_draws(ilen, olen, n, ratio, rate, client_seed(case))
    drawn_in, drawn_out = int(draws.prompt_tokens.sum()), int(draws.answer_tokens.sum())
    if totals and (drawn_in != tin or drawn_out != tout):
        return None
    if rates is not None and not same_token_ratio(drawn_in, drawn_out, *rates):
        return None
    return list(
        zip(
            draws.sent_s.tolist(),
            draws.prompt_tokens.tolist(),
            draws.answer_tokens.tolist(),
            strict=True,
        )
    )


def sglang_sharegpt_send_times_of(case: dict[str, Any]) -> list[float] | None:
    """The send times of a ``sglang.bench_serving`` ShareGPT run at a finite rate
    (``servesim.calibrate.clients.sglang_sharegpt_send_times``); else None. The prompts and
    answers it picked stay unknown (the runner writes them at the run's totals)."""
    w, load = case.get("workload") or {}, case.get("load") or {}
    rate, n = load.get("request_rate"), w.get("num_prompts")
    if not (sglang_client(case) and w.get("dataset") in ("sharegpt", "ShareGPT")):
        return None
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and isinstance(n, int)):
        return None
    return sglang_sharegpt_send_times(n, float(rate), client_seed(case)).tolist()


def published_token_rates(case: dict[str, Any]) -> tuple[float, float] | None:
    """(Input, output) token throughputs (tok/s) the client printed, when the case keeps them
    (``metrics_as_published``) or its input rate follows from its metrics (total − output);
    else None. Over one run their ratio is the ratio of the run's token totals."""
    shown = case.get("metrics_as_published") or {}
    rate_in, rate_out = (
        shown.get("input_token_throughput_tok_s"),
        shown.get("output_token_throughput_tok_s"),
    )
    if not (isinstance(rate_in, (int, float)) and isinstance(rate_out, (int, float))):
        metrics = case.get("metrics") or {}
        total, rate_out = metrics.get("total_token_throughput"), metrics.get("output_throughput")
        if not (isinstance(total, (int, float)) and isinstance(rate_out, (int, float))):
            return None
        rate_in = total - rate_out
    if rate_in <= 0 or rate_out <= 0:
        return None
    return float(rate_in), float(rate_out)


PRINTED_RATE_STEP = 0.01
"""The step of a throughput as ``sglang.bench_serving`` prints it (tok/s, two decimals)."""


def same_token_ratio(total_in: int, total_out: int, rate_in: float, rate_out: float) -> bool:
    """Whether drawn token totals have the ratio of the printed throughputs, to the rounding
    of the printed figures (one step of each, twice over for a rate taken as a difference): a
    redraw that is not the client's misses it by far (the ratio of 200 uniform draws varies by
    ~3%)."""
    if total_out <= 0:
        return False
    tolerance = 2 * PRINTED_RATE_STEP * (1 / rate_in + 1 / rate_out)
    return abs((total_in / total_out) / (rate_in / rate_out) - 1.0) <= tolerance


def request_list(case: dict[str, Any]) -> list[tuple[float, int, int]] | None:
    """(send time s, prompt tokens, answer tokens) of each request, when they are known: listed
    by the source (``workload.requests``, as ``benchmark_serving.py --save-result`` writes
    ``input_lens`` / ``output_lens``; a burst, so all at t=0) or re-drawn as the source's client
    drew them (:func:`sglang_client_requests`); else None."""
    requests = (case.get("workload") or {}).get("requests")
    if not requests:
        return sglang_client_requests(case)
    ilens, olens = requests["input_lens"], requests["output_lens"]
    if len(ilens) != len(olens):
        raise Unmappable("workload.requests: input_lens and output_lens differ in length")
    return [(0.0, i, o) for i, o in zip(ilens, olens, strict=True)]


def quantiles(dist: Any, probs: Any) -> Any:
    """The quantiles at ``probs`` of a length distribution as the runner writes them: a
    ``quantiles`` table (interpolated in log space, as servesim's sampler draws it) or a
    ``uniform`` range; None for anything else (a fixed length: see :func:`requests_at_totals`)."""
    import numpy as np

    kind = dist.get("kind") if isinstance(dist, dict) else None
    if kind == "quantiles":
        values = np.asarray(dist["values"], dtype=np.float64)
        return np.exp(np.interp(probs, dist["probs"], np.log(values)))
    if kind == "uniform":
        return dist["lo"] + probs * (dist["hi"] - dist["lo"])
    return None


def lengths_at_total(dist: Any, n: int, total: int, seed: int) -> Any:
    """``n`` token lengths with the shape of ``dist`` (:func:`quantiles`) that sum to exactly
    ``total``: its quantiles at the midpoints (i + ½)/n, scaled to the total and rounded by
    largest remainders (each at least 1 token), in an order shuffled with ``seed``; None when
    ``dist`` has no shape.

    A run's printed token totals are facts of that run, and the runner fits the distributions'
    level to them (:func:`from_totals`); ``n`` random draws from those then miss the totals by
    sampling noise alone (100 ShareGPT-shaped answers: ~5%), which moves every throughput and
    the load. The midpoints keep the fitted shape without the noise."""
    import numpy as np

    shape = quantiles(dist, (np.arange(n) + 0.5) / n)
    if shape is None:
        return None
    scaled = np.maximum(shape * (total / shape.sum()), 1.0)
    lengths = np.floor(scaled).astype(np.int64)
    short = int(total - lengths.sum())
    if short > 0:
        lengths[np.argsort(lengths - scaled, kind="stable")[:short]] += 1
    elif short < 0:
        # (only where the floor of 1 token lifted some: take back from the longest)
        lengths[np.argsort(-lengths, kind="stable")[:-short]] -= 1
    return np.random.default_rng(seed).permutation(lengths)


def with_rate_totals(case: dict[str, Any]) -> dict[str, Any]:
    """The case's workload, with the token totals its throughputs imply when it states none:
    a run that completed its ``num_prompts`` printed request, output and total token rates over
    one duration, so output tokens per request = output ÷ request rate and prompt tokens per
    request = (total − output) ÷ request rate (LMDeploy's profile_throughput prints no totals:
    its Llama-2 ShareGPT sample of 3,000 averages 246.9 in / 232.7 out, where servesim's
    ShareGPT shape has ~197 out). Only for a dataset without stated lengths (ShareGPT): a
    source that normalised its rates differently (per GPU, per node) cannot move those."""
    w = case.get("workload") or {}
    metrics = case.get("metrics") or {}
    n = w.get("num_prompts")
    rates = [metrics.get(k) for k in ("request_throughput", "output_throughput")]
    total = metrics.get("total_token_throughput")
    if isinstance(w.get("total_input_tokens"), (int, float)) or not isinstance(n, int):
        return w
    if isinstance(w.get("input_len"), (int, float)) or isinstance(
        w.get("output_len"), (int, float)
    ):
        return w  # (stated lengths: nothing to level)
    if not all(isinstance(x, (int, float)) and x > 0 for x in (*rates, total)):
        return w
    requests, output = rates
    if total <= output:
        return w
    return {
        **w,
        "total_input_tokens": round(n * (total - output) / requests),
        "total_output_tokens": round(n * output / requests),
    }


def requests_at_totals(w: dict[str, Any], ilen: Any, olen: Any) -> list | None:
    """(0, prompt tokens, answer tokens) of each request: those of the two lengths that are
    distributions (uniform ranges, quantile tables) at their shapes and exactly the token totals
    workload ``w`` states (with those its rates imply: :func:`with_rate_totals`), a fixed one
    as it is; None without stated totals or without a distribution."""
    n, tin, tout = w.get("num_prompts"), w.get("total_input_tokens"), w.get("total_output_tokens")
    if not all(isinstance(x, int) and x > 0 for x in (n, tin, tout)):
        return None
    prompts = lengths_at_total(ilen, n, tin, seed=1)
    answers = lengths_at_total(olen, n, tout, seed=2)
    if prompts is None and answers is None:
        return None
    # A fixed length stays as it is: within 3% of its total (from_totals), and where outputs
    # stopped early at EOS, how many and where is unknown (a few much shorter, not all 1%).
    if prompts is None:
        if not isinstance(ilen, int):
            return None
        prompts = [ilen] * n
    if answers is None:
        if not isinstance(olen, int):
            return None
        answers = [olen] * n
    return [(0.0, int(i), int(o)) for i, o in zip(prompts, answers, strict=True)]


def write_trace(case_id: str, requests: list[tuple[float, int, int]], template: int = 0) -> Path:
    """``requests`` (:func:`request_list`) as a CSV trace (``timestamp,input_tokens,
    output_tokens``) under the system's temporary folder, one file per case. With a chat
    template of ``template`` tokens each prompt carries them in front, and a ``hash_ids``
    column shares the template's full blocks among all prompts (as ``servesim compare``
    writes its traces: ``calibrate.compare.prompt_hash_ids``)."""
    folder = Path(tempfile.gettempdir()) / "servesim-fidelity-traces"
    folder.mkdir(exist_ok=True)
    path = folder / f"{case_id}.csv"
    if not template:
        rows = "".join(f"{t!r},{i},{o}\n" for t, i, o in requests)
        path.write_text("timestamp,input_tokens,output_tokens\n" + rows)
        return path
    import numpy as np

    from servesim.calibrate.compare import prompt_hash_ids

    prompts = np.array([i for _, i, _ in requests], dtype=np.int64) + template
    ids = prompt_hash_ids(prompts, template)
    rows = "".join(
        f"{t!r},{i},{o},{h}\n"
        for (t, _, o), i, h in zip(requests, prompts.tolist(), ids, strict=True)
    )
    path.write_text("timestamp,input_tokens,output_tokens,hash_ids\n" + rows)
    return path
