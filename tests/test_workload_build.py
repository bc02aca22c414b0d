"""build_workload: determinism, laziness, closed loops, shared prefixes, multi-turn content."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.workload import Session, build_workload, describe
from servesim.workload.content import PREFIX_ID_BASE, UNIQUE_ID_START


def make_spec(**overrides) -> dict:
    base = {
        "num_requests": 200,
        "input_len": {"kind": "lognormal", "median": 300, "sigma": 0.8, "max": 4000},
        "output_len": {"kind": "uniform", "lo": 1, "hi": 300},
        "arrival": {"kind": "poisson", "rate": 10.0},
    }
    base.update(overrides)
    return base


def sessions(spec: dict, seed: int = 0) -> list[Session]:
    return list(build_workload(spec, np.random.default_rng(seed)))


def requests(spec: dict, seed: int = 0) -> list:
    return [turn for s in sessions(spec, seed) for turn in s.turns]


# --------------------------------------------------------------------------- basics


def test_same_seed_identical_and_different_seed_differs():
    spec = make_spec(
        multi_turn={
            "turns": {"kind": "uniform", "lo": 1, "hi": 4},
            "think_time_s": {"kind": "exponential", "mean_s": 3},
        },
        prefix_groups=3,
        prefix_len=100,
        prefix_fraction=0.5,
    )
    assert sessions(spec, 1) == sessions(spec, 1)
    assert sessions(spec, 1) != sessions(spec, 2)


def test_count_order_and_first_arrival():
    out = sessions(make_spec(num_requests=10_000))
    assert len(out) == 10_000
    starts = [s.start_s for s in out]
    assert starts[0] == 0.0 and starts == sorted(starts)
    assert [s.session_id for s in out] == list(range(10_000))
    # 10 req/s: about 1,000 s for 10,000 requests
    assert starts[-1] == pytest.approx(1000, rel=0.05)


def test_lazy_streaming_of_ten_million_requests():
    began = time.perf_counter()
    first = list(
        itertools.islice(
            build_workload(make_spec(num_requests=10**7), np.random.default_rng(0)), 10
        )
    )
    assert len(first) == 10
    assert time.perf_counter() - began < 0.5


def test_rate_change_keeps_the_same_requests():
    # One child stream per purpose: a sweep over rates compares the same requests.
    slow = requests(make_spec(arrival={"kind": "poisson", "rate": 1.0}))
    fast = requests(make_spec(arrival={"kind": "gamma", "rate": 50.0, "burstiness": 0.3}))
    assert slow == fast


def test_plain_requests_carry_no_hash_ids():
    assert all(r.hash_ids == () for r in requests(make_spec()))


def test_lengths_follow_the_spec():
    out = requests(
        make_spec(num_requests=5000, input_len=64, output_len={"kind": "uniform", "lo": 5, "hi": 9})
    )
    assert {r.input_tokens for r in out} == {64}
    assert {r.output_tokens for r in out} == {5, 6, 7, 8, 9}


# --------------------------------------------------------------------------- closed loop


def test_closed_loop_shares_requests_among_users():
    out = sessions(
        make_spec(
            num_requests=10, arrival={"kind": "closed", "concurrency": 3, "think_time_s": 0.5}
        )
    )
    assert [s.session_id for s in out] == [0, 1, 2]
    assert all(s.start_s == 0.0 for s in out)
    assert [len(s.turns) for s in out] == [4, 3, 3]
    assert all(s.think_times_s == (0.5,) * (len(s.turns) - 1) for s in out)


def test_closed_loop_with_more_users_than_requests():
    out = sessions(make_spec(num_requests=2, arrival={"kind": "closed", "concurrency": 5}))
    assert [len(s.turns) for s in out] == [1, 1]


def test_closed_loop_of_conversations_keeps_every_request():
    spec = make_spec(
        num_requests=300,
        multi_turn={"turns": {"kind": "uniform", "lo": 1, "hi": 6}, "think_time_s": 7.0},
        arrival={
            "kind": "closed",
            "concurrency": 4,
            "think_time_s": {"kind": "exponential", "mean_s": 1},
        },
    )
    out = sessions(spec)
    assert len(out) == 4
    assert sum(len(s.turns) for s in out) == 300
    # think times inside conversations (7 s) and between them (random) both appear
    thinks = [t for s in out for t in s.think_times_s]
    assert 7.0 in thinks and any(t != 7.0 for t in thinks)


# --------------------------------------------------------------------------- shared prefixes


def test_prefix_groups_share_leading_ids():
    spec = make_spec(
        num_requests=2000, prefix_groups=4, prefix_len=100, hash_block_size=16, prefix_fraction=0.75
    )
    out = requests(spec)
    with_prefix = [r for r in out if r.hash_ids]
    assert len(with_prefix) / len(out) == pytest.approx(0.75, abs=0.04)
    full_blocks = 100 // 16
    heads = {r.hash_ids[:full_blocks] for r in with_prefix}
    assert len(heads) == 4  # one shared head per group
    for r in with_prefix:
        assert r.input_tokens >= 100 + 1
        assert len(r.hash_ids) == -(-(r.input_tokens + r.output_tokens) // 16)
        assert all(i >= PREFIX_ID_BASE for i in r.hash_ids[:full_blocks])
        # the partial prefix block mixes in the request's own tokens: a fresh id
        assert UNIQUE_ID_START <= r.hash_ids[full_blocks] < PREFIX_ID_BASE
    tails = [i for r in with_prefix for i in r.hash_ids[full_blocks:]]
    assert len(tails) == len(set(tails))  # everything after the prefix is unique


def test_prefix_ids_are_the_same_in_every_run():
    spec = make_spec(num_requests=50, prefix_groups=1, prefix_len=64, hash_block_size=16)
    a = {r.hash_ids[:4] for r in requests(spec, seed=1)}
    b = {r.hash_ids[:4] for r in requests(spec, seed=2)}
    assert a == b and len(a) == 1


# --------------------------------------------------------------------------- multi-turn


def check_conversation(session: Session) -> None:
    """Turn k+1 extends turn k: its prompt holds turn k's prompt + output, and its ids start
    with turn k's full-block ids; the rest are ids never used before in the session."""
    seen: set[int] = set()
    for prev, turn in zip(session.turns, session.turns[1:], strict=False):
        bs = prev.hash_block_size
        assert turn.input_tokens > prev.input_tokens + prev.output_tokens
        full = (prev.input_tokens + prev.output_tokens) // bs
        assert turn.hash_ids[:full] == prev.hash_ids[:full]
        seen.update(prev.hash_ids)
        assert not seen.intersection(turn.hash_ids[full:])
    for turn in session.turns:
        bs = turn.hash_block_size
        assert len(turn.hash_ids) == -(-(turn.input_tokens + turn.output_tokens) // bs)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    max_turns=st.integers(1, 6),
    block=st.sampled_from([1, 7, 16, 512]),
    new_len=st.integers(1, 700),
    prefix=st.booleans(),
)
def test_multi_turn_extends_the_previous_turn(seed, max_turns, block, new_len, prefix):
    spec = make_spec(
        num_requests=60,
        hash_block_size=block,
        multi_turn={
            "turns": {"kind": "uniform", "lo": 1, "hi": max_turns},
            "new_message_len": new_len,
        },
        **({"prefix_groups": 2, "prefix_len": 600} if prefix else {}),
    )
    out = sessions(spec, seed)
    assert sum(len(s.turns) for s in out) == 60
    for s in out:
        assert len(s.think_times_s) == len(s.turns) - 1
        check_conversation(s)


def test_multi_turn_lengths_grow_by_output_plus_new_message():
    spec = make_spec(
        num_requests=40,
        input_len=100,
        output_len=30,
        multi_turn={"turns": 4, "new_message_len": 20, "think_time_s": 2.0},
    )
    out = sessions(spec)
    assert len(out) == 10
    assert [t.input_tokens for t in out[0].turns] == [100, 150, 200, 250]
    assert out[0].think_times_s == (2.0, 2.0, 2.0)


def test_multi_turn_last_session_is_cut_to_num_requests():
    spec = make_spec(num_requests=10, multi_turn={"turns": 4})
    assert [len(s.turns) for s in sessions(spec)] == [4, 4, 2]


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (
            {
                "preset": "conversation",
                "num_requests": 1000,
                "arrival": {"kind": "poisson", "rate": 10},
            },
            "conversation: 1000 req, Poisson 10 req/s",
        ),
        (
            {"name": "ci", "preset": "code", "num_requests": 5, "arrival": {"kind": "burst"}},
            "ci: 5 req, burst (all at t=0)",
        ),
        (
            {
                "num_requests": 8,
                "input_len": 128,
                "output_len": 16,
                "arrival": {"kind": "gamma", "rate": 2, "burstiness": 0.5},
            },
            "synthetic: 8 req, in 128, out 16 tok, gamma 2 req/s, burstiness 0.5",
        ),
        (
            {"trace": "x/conv.csv", "rate_scale": 2, "max_requests": 100},
            "conv.csv: trace replay, first 100 req, ×2 speed",
        ),
    ],
)
def test_describe(spec, text):
    assert describe(spec) == text


def test_describe_mentions_prefixes_and_sessions():
    text = describe(
        make_spec(prefix_groups=3, prefix_len=512, prefix_fraction=0.5, multi_turn={"turns": 3})
    )
    assert "3 shared prefixes of 512 tok, 50% of requests" in text
    assert "sessions of 3 turns" in text and "sessions/s" in text
