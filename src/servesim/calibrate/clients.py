"""How benchmark clients draw their requests, re-drawn exactly where their code allows it.

``sglang.bench_serving`` (the 0.4.0-0.5.1 wheels read) seeds NumPy's global generator with
``--seed`` (default 1) and, for its ``random`` dataset, draws every prompt length, then every
answer length (``sample_random_requests``: ``randint(max(int(len·r), 1), len + 1)``, then
``randint(int(len·r), len + 1)``), then, at a finite rate, one exponential interval of mean
1/rate after each send (``get_request``); at rate inf every request goes out at t = 0. Its
ShareGPT sampler shuffles with Python's ``random`` and draws nothing from NumPy, so a ShareGPT
run's send times are the seed's first exponentials. NumPy's legacy generator is frozen across
releases, so the same seed gives the same draws today.

A re-draw is only as good as the assumptions behind it (the client's version, its seed): the
callers check it against what the run printed (its token totals, or their ratio) before they
use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import numpy as np

SGLANG_CLIENT_SEED = 1
"""``sglang.bench_serving``'s default ``--seed``."""


@dataclass(frozen=True)
class ClientDraws:
    """One run's requests as its client drew them, in send order."""

    sent_s: np.ndarray
    """Send times (s from the first send)."""
    prompt_tokens: np.ndarray
    answer_tokens: np.ndarray
    """As drawn: SGLang's random dataset can draw 0 (the server still emits one token)."""


def sglang_send_times(rng: np.random.RandomState, n: int, rate: float) -> np.ndarray:
    """``sglang.bench_serving``'s send times of ``n`` requests from its generator ``rng``: 0,
    then one exponential interval of mean 1/``rate`` (s) after each send; all 0 at rate inf."""
    if not np.isfinite(rate):
        return np.zeros(n)
    intervals = [rng.exponential(1.0 / rate) for _ in range(n - 1)]
    return np.array([0.0, *accumulate(intervals)])


def sglang_random_draws(
    input_len: int,
    output_len: int,
    num_prompts: int,
    range_ratio: float,
    request_rate: float,
    seed: int = SGLANG_CLIENT_SEED,
) -> ClientDraws:
    """The requests ``sglang.bench_serving --dataset-name random`` sends: lengths in
    [max(⌊r·len⌋, 1), len] for prompts and [⌊r·len⌋, len] for answers (r = ``range_ratio``;
    fixed lengths at r = 1, whose one-value draws leave the generator's stream as it was), then
    the send times at ``request_rate`` (req/s, inf: a burst)."""
    rng = np.random.RandomState(seed)
    prompts = rng.randint(max(int(input_len * range_ratio), 1), input_len + 1, size=num_prompts)
    answers = rng.randint(int(output_len * range_ratio), output_len + 1, size=num_prompts)
    return ClientDraws(sglang_send_times(rng, num_prompts, request_rate), prompts, answers)


def sglang_sharegpt_send_times(
    num_prompts: int, request_rate: float, seed: int = SGLANG_CLIENT_SEED
) -> np.ndarray:
    """The send times of a ``sglang.bench_serving`` ShareGPT run (its sampler draws nothing
    from NumPy): the seed's first exponentials at ``request_rate`` (req/s)."""
    return sglang_send_times(np.random.RandomState(seed), num_prompts, request_rate)
