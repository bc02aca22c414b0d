"""Scheduling policies: budgets, chunking, decodes-first, admission rules, preemption."""

from collections import deque

import numpy as np
import pytest
from engine_factories import make_request

from servesim.engine.kv_cache import KVBlockManager
from servesim.engine.running import RunningTable
from servesim.engine.scheduler import SchedulerConfig, SchedulerState, schedule
from servesim.errors import ServesimError


def make_state(num_blocks=1000, block_size=16, prefix_caching=True):
    kv = KVBlockManager(num_blocks, block_size, prefix_caching)
    return SchedulerState(deque(), RunningTable(), kv)


def commit(state, batch):
    """Apply a scheduled batch as the instance would (tokens only)."""
    run = state.running
    run.computed = run.computed + batch.new_tokens
    emit = (batch.new_tokens > 0) & (run.computed == run.tokens)
    run.tokens = run.tokens + emit


def test_long_prompt_is_chunked_under_the_token_budget():
    st = make_state()
    st.waiting.append(make_request(rid=0, prompt=10_000, output=5))
    cfg = SchedulerConfig(max_num_batched_tokens=8192)
    b1 = schedule(st, cfg, 0.0)
    assert b1.new_tokens.tolist() == [8192]
    commit(st, b1)
    b2 = schedule(st, cfg, 0.0)
    assert b2.new_tokens.tolist() == [10_000 - 8192]


def test_running_requests_get_the_budget_before_new_ones():
    st = make_state()
    cfg = SchedulerConfig(max_num_batched_tokens=100)
    st.waiting.extend([make_request(rid=0, prompt=60), make_request(rid=1, prompt=60)])
    b = schedule(st, cfg, 0.0)
    assert b.new_tokens.tolist() == [60, 40]  # the second prompt is chunked
    commit(st, b)
    st.waiting.append(make_request(rid=2, prompt=50))
    b = schedule(st, cfg, 0.0)
    # Row 0 decodes (1), row 1 finishes its prompt (20), the newcomer gets the rest (79 > 50).
    assert b.new_tokens.tolist() == [1, 20, 50]


def test_sarathi_serves_decodes_before_ongoing_prefills():
    st = make_state()
    cfg = SchedulerConfig(policy="sarathi", max_num_batched_tokens=64)
    st.waiting.extend([make_request(rid=0, prompt=100), make_request(rid=1, prompt=10)])
    b = schedule(st, cfg, 0.0)
    assert b.new_tokens.tolist() == [64]
    commit(st, b)
    b = schedule(st, cfg, 0.0)
    assert b.new_tokens.tolist() == [36, 10]
    commit(st, b)
    # Now row 0 decodes... make row 0 a long prefill again by adding a new long request:
    st.waiting.append(make_request(rid=2, prompt=500))
    b = schedule(st, cfg, 0.0)
    assert b.new_tokens.tolist() == [1, 1, 62]


def test_sarathi_order_puts_decode_rows_first():
    st = make_state()
    cfg = SchedulerConfig(policy="sarathi", max_num_batched_tokens=10)
    a = make_request(rid=0, prompt=100)  # long prefill, older
    b = make_request(rid=1, prompt=5)
    st.running.append(a)
    b.num_computed_tokens = 5
    b.num_output_tokens = 1  # decoding
    st.running.append(b)
    st.kv.allocate(a, 0)
    st.kv.allocate(b, 5)
    st.running.refresh_blocks(1)
    batch = schedule(st, cfg, 0.0)
    assert batch.new_tokens.tolist() == [9, 1]
    vllm = schedule(
        make_state_with([make_request(rid=0, prompt=100)]),
        SchedulerConfig(max_num_batched_tokens=10),
        0.0,
    )
    assert vllm.new_tokens.tolist() == [10]


def make_state_with(reqs):
    st = make_state()
    st.waiting.extend(reqs)
    return st


def test_orca_admits_only_whole_prompts():
    st = make_state()
    cfg = SchedulerConfig(policy="orca", max_num_batched_tokens=100)
    st.waiting.extend([make_request(rid=0, prompt=60), make_request(rid=1, prompt=60)])
    b = schedule(st, cfg, 0.0)
    assert b.new_tokens.tolist() == [60]
    assert len(st.waiting) == 1


def test_orca_runs_a_prompt_larger_than_the_budget_alone():
    st = make_state()
    cfg = SchedulerConfig(policy="orca", max_num_batched_tokens=100)
    st.waiting.append(make_request(rid=0, prompt=500))
    assert schedule(st, cfg, 0.0).new_tokens.tolist() == [500]


def test_static_admits_only_into_an_empty_batch():
    st = make_state()
    cfg = SchedulerConfig(policy="static", max_num_seqs=2)
    st.waiting.extend([make_request(rid=i, prompt=10) for i in range(3)])
    b = schedule(st, cfg, 0.0)
    assert b.new_tokens.tolist() == [10, 10]
    commit(st, b)
    st.waiting.append(make_request(rid=9, prompt=10))
    b = schedule(st, cfg, 0.0)
    assert b.new_tokens.tolist() == [1, 1] and len(st.waiting) == 2


def test_max_num_seqs_caps_the_batch():
    st = make_state_with([make_request(rid=i, prompt=4) for i in range(10)])
    b = schedule(st, SchedulerConfig(max_num_seqs=3), 0.0)
    assert len(b.new_tokens) == 3 and len(st.waiting) == 7


def test_kv_shortage_preempts_the_newest_request_and_requeues_it_first():
    st = make_state(num_blocks=4, block_size=4)
    cfg = SchedulerConfig(block_size=4)
    st.waiting.extend(
        [make_request(rid=0, prompt=8, output=10), make_request(rid=1, prompt=8, output=10)]
    )
    b = schedule(st, cfg, 0.0)
    assert b.new_tokens.tolist() == [8, 8] and st.kv.num_free_blocks == 0
    commit(st, b)
    # Each now needs a 9th token slot → a new block each, none free: rid 1 (newest) is preempted.
    b = schedule(st, cfg, 1.0)
    assert b.num_preempted == 1
    assert [r.request_id for r in st.running.reqs] == [0]
    assert b.new_tokens.tolist() == [1]
    victim = st.waiting[0]
    assert victim.request_id == 1 and victim.num_computed_tokens == 0
    assert victim.num_preemptions == 1 and victim.num_output_tokens == 1
    st.kv.check_invariants()


def test_no_admission_in_a_step_with_preemption():
    st = make_state(num_blocks=4, block_size=4)
    cfg = SchedulerConfig(block_size=4)
    st.waiting.extend(
        [make_request(rid=0, prompt=8, output=10), make_request(rid=1, prompt=8, output=10)]
    )
    commit(st, schedule(st, cfg, 0.0))
    st.waiting.append(make_request(rid=2, prompt=1))
    b = schedule(st, cfg, 1.0)
    assert b.num_preempted == 1 and b.num_admitted == 0


def test_prefix_cache_hit_reduces_prefill_tokens_and_is_recorded():
    st = make_state(block_size=4)
    cfg = SchedulerConfig(block_size=4)
    a = make_request(rid=0, prompt=16, hash_ids=(1, 2, 3, 4), hbs=4)
    st.waiting.append(a)
    commit(st, schedule(st, cfg, 0.0))
    st.kv.register_full_blocks(st.running.sync(0))
    b = make_request(rid=1, prompt=16, hash_ids=(1, 2, 3, 4), hbs=4)
    st.waiting.append(b)
    batch = schedule(st, cfg, 0.5)
    assert batch.new_tokens.tolist() == [1, 4]  # 12 of 16 tokens cached (one block kept to compute)
    assert b.num_cached_tokens == 12 and b.first_scheduled_s == 0.5


@pytest.mark.parametrize(
    "kw",
    [
        {"policy": "fifo"},
        {"block_size": 0},
        {"max_num_seqs": -1},
        {"max_num_batched_tokens": 0},
        {"long_prefill_token_threshold": 0},
    ],
)
def test_bad_knobs_raise_user_errors(kw):
    with pytest.raises(ServesimError):
        SchedulerConfig(**kw)


def test_long_prefill_threshold_caps_chunks():
    st = make_state_with([make_request(rid=0, prompt=1000)])
    b = schedule(st, SchedulerConfig(long_prefill_token_threshold=256), 0.0)
    assert b.new_tokens.tolist() == [256]
    assert np.all(b.new_tokens <= 256)
