"""Benchmark clients' own request draws (servesim.calibrate.clients)."""

import numpy as np
import pytest

from servesim.calibrate.clients import (
    SGLANG_CLIENT_SEED,
    sglang_random_draws,
    sglang_send_times,
    sglang_sharegpt_send_times,
)


def test_sglangs_random_draws_give_the_totals_its_client_printed():
    # DataCrunch's H200 runs (sglang.bench_serving 0.4.0, seed 1, range ratio 0) printed
    # 152,612 prompt and 160,347 answer tokens for 300 prompts of up to 1,024 tokens.
    draws = sglang_random_draws(1024, 1024, 300, 0.0, 1.0)
    assert SGLANG_CLIENT_SEED == 1
    assert int(draws.prompt_tokens.sum()) == 152_612
    assert int(draws.answer_tokens.sum()) == 160_347
    assert draws.prompt_tokens.min() >= 1 and draws.answer_tokens.min() >= 0
    # then one exponential interval (mean 1 s at 1 req/s) after each send
    assert draws.sent_s[0] == 0.0 and (np.diff(draws.sent_s) > 0).all()
    assert draws.sent_s[-1] / 299 == pytest.approx(1.0, rel=0.15)


def test_the_draws_follow_the_generators_order():
    # prompts, then answers, then the intervals, all from one legacy generator
    rng = np.random.RandomState(7)
    prompts = rng.randint(250, 1001, size=5)
    answers = rng.randint(25, 101, size=5)  # (answers from ⌊r·len⌋: 25)
    gaps = [rng.exponential(0.5) for _ in range(4)]
    draws = sglang_random_draws(1000, 100, 5, 0.25, 2.0, seed=7)
    assert (draws.prompt_tokens == prompts).all() and (draws.answer_tokens == answers).all()
    assert np.diff(draws.sent_s) == pytest.approx(gaps)


def test_fixed_lengths_leave_the_send_times_to_the_seed():
    # one-value ranges draw nothing: the sends are the seed's first exponentials
    fixed = sglang_random_draws(3200, 800, 20, 1.0, 10.0)
    assert set(fixed.prompt_tokens) == {3200} and set(fixed.answer_tokens) == {800}
    assert fixed.sent_s == pytest.approx(sglang_sharegpt_send_times(20, 10.0))
    gaps = np.random.RandomState(1).exponential(0.1, size=19)
    assert np.diff(fixed.sent_s) == pytest.approx(gaps)


def test_a_burst_sends_everything_at_once():
    assert (sglang_random_draws(100, 10, 8, 0.0, float("inf")).sent_s == 0).all()
    assert (sglang_send_times(np.random.RandomState(1), 3, float("inf")) == 0).all()
