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

``sharegpt``: see :data:`SHAREGPT_DOC` (no data file is shipped or needed: the table is fitted to
published means of vLLM's sample).
"""

from __future__ import annotations

import math

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
# Truncated-lognormal quantiles at QUANTILE_PROBS (fit_truncated_lognormal_table, see below).
_SHAREGPT_INPUT = (
    4, 7, 10, 15, 20, 24, 33, 43, 54, 66, 79, 94, 111, 131, 154, 180,
    212, 250, 298, 359, 440, 492, 553, 629, 725, 770, 822, 880, 947, 984, 1016, 1024,
)
_SHAREGPT_OUTPUT = (
    4, 12, 18, 24, 29, 34, 44, 53, 63, 73, 84, 96, 109, 124, 140, 159,
    182, 209, 242, 286, 347, 388, 442, 516, 629, 696, 787, 922, 1168, 1412, 1834, 2044,
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

No median or percentile of this sample was found published, so the shape is an assumption:
each length is a lognormal truncated to the filter's bounds (prompt 4-1,024; output 4-2,044,
the most a 4-token prompt leaves under 2,048), with sigma 1.4 for prompts (short questions and
pasted documents) and 1.0 for outputs, and its median chosen so the sampled mean equals the
published mean. The fitted tables sample to means 215.1 / 198.4 tokens (medians ~131 / ~124,
p99 ~948 / ~1,177). Input and output are drawn independently: the joint prompt + output <= 2,048
rule of the real sample is not enforced (about 0.2% of drawn pairs break it). A Llama 2
tokenizer cuts the same text into more tokens; refit with :func:`fit_truncated_lognormal_table`
for other figures."""

SHAREGPT_MEAN_TOKENS: dict[str, float] = {"input": 215.196, "output": 198.343}
"""Published mean prompt and output lengths of vLLM's ShareGPT sample (see SHAREGPT_DOC)."""

SHAREGPT_BOUNDS: dict[str, tuple[int, int]] = {"input": (4, 1024), "output": (4, 2044)}
"""Token bounds vLLM's filter leaves each length."""

SHAREGPT_SIGMA: dict[str, float] = {"input": 1.4, "output": 1.0}
"""Assumed lognormal spreads (no published percentile to fit them to)."""

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


def truncated_lognormal_table(median: float, sigma: float, lo: int, hi: int) -> tuple[int, ...]:
    """Quantiles at :data:`QUANTILE_PROBS` of a lognormal (``median``, ``sigma``) truncated to
    ``[lo, hi]`` tokens, rounded to whole tokens."""
    from statistics import NormalDist  # NOTE: only fitting needs it; keep it off the import path

    dist = NormalDist(math.log(median), sigma)
    a, b = dist.cdf(math.log(lo)), dist.cdf(math.log(hi))
    values = []
    for p in QUANTILE_PROBS:
        q = min(max(a + p * (b - a), 1e-15), 1 - 1e-15)
        values.append(min(max(math.exp(dist.inv_cdf(q)), lo), hi))
    return tuple(int(v) for v in np.rint(values))


def fit_truncated_lognormal_table(mean: float, sigma: float, lo: int, hi: int) -> tuple[int, ...]:
    """The :func:`truncated_lognormal_table` whose sampled mean is ``mean`` tokens (bisection on
    the median). ``fit_truncated_lognormal_table(215.196, 1.4, 4, 1024)`` is the ShareGPT input
    table."""
    low, high = float(lo), float(hi)
    for _ in range(100):
        median = math.sqrt(low * high)
        if quantile_table_mean(truncated_lognormal_table(median, sigma, lo, hi)) < mean:
            low = median
        else:
            high = median
    return truncated_lognormal_table(math.sqrt(low * high), sigma, lo, hi)
