"""Built-in length distributions fitted to the Azure LLM inference trace 2023.

Source: Azure LLM inference trace 2023 (Azure/AzurePublicDataset,
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
"""

from __future__ import annotations

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
# fmt: on

PRESET_TABLES: dict[tuple[str, str], QuantileLength] = {
    ("conversation", "input"): QuantileLength(probs=QUANTILE_PROBS, values=_CONVERSATION_INPUT),
    ("conversation", "output"): QuantileLength(probs=QUANTILE_PROBS, values=_CONVERSATION_OUTPUT),
    ("code", "input"): QuantileLength(probs=QUANTILE_PROBS, values=_CODE_INPUT),
    ("code", "output"): QuantileLength(probs=QUANTILE_PROBS, values=_CODE_OUTPUT),
}
"""(preset name, "input" | "output") → its quantile table, tokens."""


def preset_table(name: str, role: str) -> QuantileLength:
    """The quantile table of one preset's input or output lengths."""
    return PRESET_TABLES[(name, role)]


def fit_quantile_table(lengths: np.ndarray) -> tuple[int, ...]:
    """Quantiles of observed lengths at :data:`QUANTILE_PROBS`, rounded to whole tokens."""
    values = np.quantile(np.asarray(lengths, dtype=np.float64), QUANTILE_PROBS)
    return tuple(int(v) for v in np.rint(values))
