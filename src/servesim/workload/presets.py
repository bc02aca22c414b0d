"""Built-in length distributions: two fitted to the Azure LLM inference trace 2023
(``conversation``, ``code``) and one to vLLM's ShareGPT benchmark sample (``sharegpt``).

Source of ``conversation`` and ``code``: Azure LLM inference trace 2023 (Azure/AzurePublicDataset,
``AzureLLMInferenceTrace_conv.csv`` and ``AzureLLMInferenceTrace_code.csv``, one hour on
2023-11-16, CC-BY 4.0), published with Patel et al., "Splitwise: Efficient generative LLM
inference using phase splitting", ISCA 2024.

Both services' lengths are multi-modal (the conversation prompts cluster near 400, 1,000 and
4,100 tokens; its outputs near 100 and 400), which no lognormal follows; a 32-point quantile
table does, so each preset is a :class:`~servesim.workload.spec.QuantileLength` sampled by
geometric interpolation between the quantiles and clipped to the observed range.

Fitted with (from the repository root, with the public trace copies next to it)::

    python -m servesim.workload.fit_presets ../shared/traces/azure_llm_2023_conv.csv
    python -m servesim.workload.fit_presets ../shared/traces/azure_llm_2023_code.csv

Trace facts for picking a rate: conversation 19,366 requests in 3,502 s (5.5 req/s, inter-arrival
CV 1.09, close to Poisson); code 8,819 requests in 3,436 s (2.6 req/s, CV 13: very bursty).

``sharegpt``: see :data:`SHAREGPT_DOC` (prompts and answers shaped as published 320-request runs
of vLLM's sample, both at the published 1,000-request means; no data file is shipped or needed).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from servesim.workload.spec import QuantileLength

# fmt: off
QUANTILE_PROBS: tuple[float, ...] = (
    0.0, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6,
    0.65, 0.7, 0.75, 0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0,
)  # denser in the upper tail, where long prompts dominate KV use

# ContextTokens / GeneratedTokens quantiles at QUANTILE_PROBS (np.quantile, linear, rounded).
_CONVERSATION_INPUT = (
    2, 29, 120, 181, 200, 207, 372, 387, 396, 403, 414, 703, 984, 1020, 1045, 1071,
    1097, 1130, 1189, 1315, 1876, 2309, 2734, 4075, 4083, 4086, 4090, 4098, 4142, 4831, 6179, 14050,
)
_CONVERSATION_OUTPUT = (
    7, 16, 28, 41, 48, 54, 67, 77, 85, 91, 96, 103, 113, 129, 151, 177,
    217, 384, 395, 400, 411, 416, 424, 430, 451, 468, 509, 540, 601, 643, 954, 1000,
)
_CODE_INPUT = (
    3, 17, 44, 75, 102, 147, 232, 386, 578, 770, 939, 1075, 1261, 1469, 1690, 1909,
    2164, 2433, 2744, 3192, 3920, 4434, 5188, 6097, 7303, 7430, 7435, 7436, 7436, 7436, 7437, 7437,
)
_CODE_OUTPUT = (
    6, 6, 6, 6, 6, 7, 7, 8, 9, 9, 10, 11, 12, 13, 14, 16,
    18, 20, 24, 29, 39, 46, 55, 69, 90, 105, 128, 171, 251, 359, 825, 1899,
)
# Prompts: quantiles at QUANTILE_PROBS of a published run of vLLM's ShareGPT sample, scaled to
# the published mean (fit_quantile_table, then fit_table_to_mean). Answers: quantiles of the
# longest answer each request got in three published runs, the top 1% stretched to the filter's
# bound (tail_to_bound), scaled to the published mean. See SHAREGPT_DOC.
_SHAREGPT_INPUT = (
    4, 5, 7, 8, 10, 11, 13, 17, 23, 29, 37, 48, 62, 81, 129, 188,
    256, 323, 357, 414, 507, 545, 647, 697, 731, 790, 812, 812, 814, 831, 942, 986,
)
_SHAREGPT_OUTPUT = (
    4, 4, 5, 7, 9, 11, 15, 20, 23, 38, 59, 96, 133, 167, 194, 223,
    258, 290, 317, 349, 392, 422, 438, 464, 510, 539, 558, 623, 659, 1095, 1643, 1818,
)
# fmt: on

SHAREGPT_DOC = """ShareGPT as vLLM's serving benchmark samples it (``--dataset-name sharegpt``).

What is sampled: ShareGPT_V3_unfiltered_cleaned_split.json; per conversation with 2+ turns the
first human turn is the prompt and the following gpt turn fixes the output length; pairs with
prompt or output under 4 tokens, a prompt over 1,024 tokens or prompt + output over 2,048 are
dropped (vLLM ``ShareGPTDataset`` and ``is_valid_sequence``: min_len 4, max_prompt_len 1024,
max_total_len 2048, in benchmarks/benchmark_dataset.py, now vllm/benchmarks/datasets.py); the
dataset is shuffled with seed 0 and ``--num-prompts`` pairs (1,000 by default) are kept.

Published figures (Llama 3 tokenizer: Llama-3.1-8B-Instruct and DeepSeek-R1-Distill-Llama-8B
share it), 1,000 prompts, seed 0:

- Total input tokens 215,196 (mean prompt 215.196): vLLM ``benchmark_serving.py`` runs in
  github.com/vllm-project/vllm pull requests #17004 (Llama-3.1-8B-Instruct, four runs) and
  #15720, and cr7258/ai-infra-learning lesson/05-chunked-prefills/README.md @a994424a.
- Total num output tokens 198,343 (mean output 198.343): vLLM ``benchmark_throughput.py``
  (offline; its output count is the sampled output lengths, EOS ignored) in
  cr7258/ai-infra-learning lesson/05-chunked-prefills/README.md @a994424a ("Total num prompt
  tokens: 215196 / Total num output tokens: 198343"). Serving runs that stop at EOS generate
  fewer (196,961-197,328 in PR #17004).

The prompts' shape is measured: LambdaLabsML/vllm-benchmark
``results/prompt_320/1xH100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp1_len2048.json`` @a4f9f437
(vLLM's ``benchmark_serving.py --save-result``, ShareGPT, seed 0, 320 prompts: the first 320 of the
1,000, same tokenizer) lists each request's prompt tokens (``input_lens``, total 65,578; its first
200 average 213.3 tokens, as vLLM issue #12315's 200-prompt ``benchmark_throughput.py`` run of the
same sample implies: 213.4). The input table is their quantiles (:func:`fit_quantile_table`) times
the one factor, x1.06, that brings its sampled mean to the published 1,000-prompt mean
(:func:`fit_table_to_mean`), clipped to the filter's 4-1,024 tokens. The sample is bimodal: a
quarter of the prompts are under 22 tokens, a quarter over 338 (median 77, mean 205 in the run).

The answers' shape is measured too, as far as published runs show it: each request's answer cap
(the ShareGPT reply's length, sent as ``max_tokens``) is at least the longest answer any run of
it generated, and exactly that where two models stopped at the same length. Three Lambda runs
of the same 320 prompts with Llama 3 tokenizers (LambdaLabsML/vllm-benchmark ``results/
prompt_320/``: ``1xH100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp1_len2048.json`` and
``4xA100-80GB-SXM/Meta-Llama-3-70B-Instruct_tp4_len2000.json``, ``1xA100-80GB-SXM/
Meta-Llama-3-8B-Instruct_tp1_len2000.json``; ``output_lens``) give each request's longest
answer; 17 requests failed in every run and are left out. The 8B and the 70B model stopped at the
same length for 187 of the 242 requests both answered: there the cap is known; elsewhere one
model ran to the cap and the other stopped sooner, or both stopped at EOS. The table is the
quantiles of those 303 longest answers (none over 780 tokens) up to the 99th percentile; the
top 1% is spread from there to the filter's bound (:func:`tail_to_bound`, 0.99 →
2,044 tokens), then the whole table is scaled x0.89 to the published mean
(:func:`fit_table_to_mean`).

Why a thin tail: vLLM issue #12315's EOS-ignoring run of the first 200 prompts (its
``benchmark_throughput.py`` totals: 714.48 output tok/s at 3.28 req/s) generated 217.8 tokens a
request, 43,566 in all, while the longest answers of those 200 in the Lambda runs already sum to
41,455 (10 of them failed everywhere): 2,111 tokens are left for the ten failed requests and every
answer longer than any run wrote. A lognormal of sigma 1.0 at the published mean (the shape
assumed before) puts 3.1% of answers above 780 tokens, six of every 200, with 2,070 tokens
beyond 780 (almost the whole 2,111 before the failed requests' own answers, and more beyond
what the runs show for those six); this table puts 0.83% there (1.7 per 200, 745 tokens beyond
780). A cross-check from the Mistral tokenizer's sample (Lambda's Mistral-7B and Mixtral-8x7B
runs, a slightly different subset; their longest answers average 1.19x the Llama 3 runs'): 3 of
292 answered requests (1.0%, a lower bound) ran past 928 tokens, 780 in Llama 3 tokens. Input
and output are drawn independently. A Llama 2 or Mistral tokenizer cuts the same
text into more tokens (Mistral-7B's runs of these prompts: 73,671 prompt tokens); refit for
other figures."""

SHAREGPT_MEAN_TOKENS: dict[str, float] = {"input": 215.196, "output": 198.343}
"""Published mean prompt and output lengths of vLLM's ShareGPT sample (see SHAREGPT_DOC)."""

SHAREGPT_BOUNDS: dict[str, tuple[int, int]] = {"input": (4, 1024), "output": (4, 2044)}
"""Token bounds vLLM's filter leaves each length."""

SHAREGPT_TAIL_FROM = 0.99
"""Quantile from which the ShareGPT answer table runs to the filter's bound (:func:`tail_to_bound`):
answers longer than any published run generated, bounded by the EOS-ignoring 200-prompt total
(see SHAREGPT_DOC)."""

PRESET_TABLES: dict[tuple[str, str], QuantileLength] = {
    ("conversation", "input"): QuantileLength(probs=QUANTILE_PROBS, values=_CONVERSATION_INPUT),
    ("conversation", "output"): QuantileLength(probs=QUANTILE_PROBS, values=_CONVERSATION_OUTPUT),
    ("code", "input"): QuantileLength(probs=QUANTILE_PROBS, values=_CODE_INPUT),
    ("code", "output"): QuantileLength(probs=QUANTILE_PROBS, values=_CODE_OUTPUT),
    ("sharegpt", "input"): QuantileLength(probs=QUANTILE_PROBS, values=_SHAREGPT_INPUT),
    ("sharegpt", "output"): QuantileLength(probs=QUANTILE_PROBS, values=_SHAREGPT_OUTPUT),
}
"""(preset name, "input" | "output") → its quantile table, tokens."""


def preset_table(name: str, role: str) -> QuantileLength:
    """The quantile table of one preset's input or output lengths."""
    return PRESET_TABLES[(name, role)]


def fit_quantile_table(lengths: np.ndarray) -> tuple[int, ...]:
    """Quantiles of observed lengths at :data:`QUANTILE_PROBS`, rounded to whole tokens."""
    values = np.quantile(np.asarray(lengths, dtype=np.float64), QUANTILE_PROBS)
    return tuple(int(v) for v in np.rint(values))


def quantile_table_mean(values: tuple[int, ...]) -> float:
    """Mean, tokens, of a table at :data:`QUANTILE_PROBS` as the preset sampler draws it (ln of
    the value linear in the probability between quantiles), before rounding to whole tokens."""
    v = np.asarray(values, dtype=np.float64)
    ratio = v[1:] / v[:-1]
    flat = ratio == 1.0
    # the mean of exp(ln v0 + t ln(v1/v0)) over t in [0, 1] is (v1 - v0) / ln(v1/v0)
    segment = np.where(flat, v[:-1], np.diff(v) / np.log(np.where(flat, 2.0, ratio)))
    return float(np.sum(np.diff(QUANTILE_PROBS) * segment))


def tail_to_bound(values: tuple[int, ...], from_prob: float, hi: int) -> tuple[int, ...]:
    """A quantile table's ``values`` with every quantile above ``from_prob`` replaced by the
    geometric line from the quantile at ``from_prob`` to ``hi`` tokens at probability 1 (the
    sampler's own interpolation between the two), rounded to whole tokens: the share
    ``1 - from_prob`` spread from the longest observed lengths to the bound."""
    i = QUANTILE_PROBS.index(from_prob)
    start = float(values[i])
    head = tuple(int(v) for v in values[: i + 1])
    tail = (
        round(math.exp(math.log(start) + (p - from_prob) / (1 - from_prob) * math.log(hi / start)))
        for p in QUANTILE_PROBS[i + 1 :]
    )
    return head + tuple(int(v) for v in tail)


def _bisect_to_mean(
    table: Callable[[float], tuple[int, ...]], mean: float, low: float, high: float, steps: int
) -> tuple[float, float]:
    """The bracket ``(low, high)`` of the parameter at which ``table(parameter)``'s sampled mean
    reaches ``mean`` tokens, after ``steps`` geometric bisections (the mean grows with it)."""
    for _ in range(steps):
        middle = math.sqrt(low * high)
        if quantile_table_mean(table(middle)) < mean:
            low = middle
        else:
            high = middle
    return low, high


def scaled_quantile_table(
    values: tuple[float, ...], factor: float, lo: int, hi: int
) -> tuple[int, ...]:
    """A quantile table's ``values`` times ``factor``, rounded to whole tokens and clipped to
    ``[lo, hi]``."""
    scaled = np.clip(np.rint(np.asarray(values, dtype=np.float64) * factor), lo, hi)
    return tuple(int(v) for v in scaled)


def fit_table_to_mean(values: tuple[float, ...], mean: float, lo: int, hi: int) -> tuple[int, ...]:
    """:func:`scaled_quantile_table` of ``values`` by the factor whose sampled mean
    (:func:`quantile_table_mean`) is nearest ``mean`` tokens (bisection on the factor: the shape
    is kept, the level set). ``fit_table_to_mean(fit_quantile_table(lambda_prompts), 215.196, 4,
    1024)`` is the ShareGPT input table."""

    def table(factor: float) -> tuple[int, ...]:
        return scaled_quantile_table(values, factor, lo, hi)

    bracket = _bisect_to_mean(table, mean, 1e-3, 1e3, 200)
    return min(map(table, bracket), key=lambda t: abs(quantile_table_mean(t) - mean))
