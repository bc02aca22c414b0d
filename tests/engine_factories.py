"""Factories for driving engine components alone, with a simple linear step-cost model."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from servesim.engine.instance import Instance
from servesim.engine.kv_cache import KVBlockManager
from servesim.engine.loop import Simulation
from servesim.engine.records import RunRecords
from servesim.engine.request import Request
from servesim.engine.router import make_router
from servesim.engine.scheduler import SchedulerConfig
from servesim.workload.session import RequestSpec, Session


class LinearCost:
    """step = base + per_token × new tokens + per_context × context tokens (seconds)."""

    def __init__(self, base=0.01, per_token=1e-5, per_context=1e-7):
        self.base, self.per_token, self.per_context = base, per_token, per_context

    def step_seconds(self, new_tokens, context_lens):
        return (
            self.base
            + self.per_token * float(np.sum(new_tokens))
            + self.per_context * float(np.sum(context_lens))
        )

    def step_with_features(self, new_tokens, context_lens, pad=0):
        if pad:
            new_tokens = np.concatenate((new_tokens, np.ones(pad, dtype=new_tokens.dtype)))
            context_lens = np.concatenate((context_lens, np.zeros(pad, dtype=context_lens.dtype)))
        seconds = self.step_seconds(new_tokens, context_lens)
        return seconds, np.array([1.0, float(np.sum(new_tokens)), float(np.sum(context_lens))])

    def decode_span_with_features(self, context_lens, num_steps, pad=0):
        if pad:
            context_lens = np.concatenate((context_lens, np.zeros(pad, dtype=context_lens.dtype)))
        b = len(context_lens)
        j = np.arange(num_steps)
        features = np.stack(
            [np.ones(num_steps), np.full(num_steps, float(b)), float(np.sum(context_lens)) + b * j],
            axis=1,
        )
        return self.decode_span_seconds(context_lens, num_steps), features

    def decode_round_with_features(self, context_lens, num_steps, pad=0):
        return self.decode_span_with_features(context_lens, num_steps, pad)

    def decode_span_seconds(self, context_lens, num_steps):
        j = np.arange(num_steps)
        b = len(context_lens)
        return (
            self.base
            + self.per_token * b
            + self.per_context * (float(np.sum(context_lens)) + b * j)
        )


def make_request(rid=0, prompt=32, output=4, hash_ids=(), hbs=16, **kw) -> Request:
    return Request(
        request_id=rid,
        session_id=rid,
        turn=0,
        arrival_s=0.0,
        prompt_tokens=prompt,
        max_output_tokens=output,
        hash_ids=tuple(hash_ids),
        hash_block_size=hbs,
        **kw,
    )


def make_session(sid, start, input_tokens, output_tokens, hash_ids=(), hbs=16) -> Session:
    return Session(sid, start, (RequestSpec(input_tokens, output_tokens, tuple(hash_ids), hbs),))


def run_sessions(sessions, **kw):
    """Run ``sessions`` to completion on :func:`build_simulation`'s simulation (its keyword
    arguments); returns (records, instances, simulation)."""
    sim = build_simulation(sessions, **kw)
    sim.run()
    return sim.records, sim.instances, sim


def build_simulation(
    sessions,
    *,
    num_blocks=10_000,
    block_size=16,
    cost=None,
    fast_forward=True,
    num_instances=1,
    router="round_robin",
    cpu_blocks=0,
    load_seconds=0.0,
    num_scheduler_steps=1,
    graph_batch=None,
    api=None,
    schedule_ahead=False,
    sliding_groups=0,
    window_blocks=0,
    window_tokens=0,
    full_groups=1,
    compiled=False,
    **sched,
) -> Simulation:
    """A simulation of ``sessions`` on ``num_instances`` instances with a stand-in cost model
    (``LinearCost`` unless ``cost``), not started: ``run()``, or ``submit`` and ``advance_to``
    as the online engine drives it (``compiled``: the instances run the engine's numba
    kernels)."""
    cfg = SchedulerConfig(block_size=block_size, **sched)
    cost = cost or LinearCost()
    instances = [
        Instance(
            i,
            cfg,
            KVBlockManager(
                num_blocks,
                block_size,
                cfg.enable_prefix_caching,
                cpu_blocks,
                sliding_groups=sliding_groups,
                window_blocks=window_blocks,
                window_tokens=window_tokens,
                full_groups=full_groups,
            ),
            cost,
            fast_forward=fast_forward,
            kv_load_seconds_per_block=load_seconds,
            num_scheduler_steps=num_scheduler_steps,
            graph_batch=graph_batch,
            schedule_ahead=schedule_ahead,
            compiled=compiled,
        )
        for i in range(num_instances)
    ]
    records = RunRecords()
    rng = np.random.default_rng(0)
    return Simulation(instances, make_router(router, rng), iter(sessions), records, api=api)


def assert_same_records(a: RunRecords, b: RunRecords) -> None:
    """Two runs' request and step records and inter-token pairs are equal, to the bit."""
    for cols_a, cols_b in (
        (a.request_columns(), b.request_columns()),
        (a.step_columns(), b.step_columns()),
    ):
        assert list(cols_a) == list(cols_b)
        for name in cols_a:
            np.testing.assert_array_equal(cols_a[name], cols_b[name], err_msg=name)
    for x, y in zip(a.itl_pairs(), b.itl_pairs(), strict=True):
        np.testing.assert_array_equal(x, y)


def by_request(records: RunRecords) -> dict[str, np.ndarray]:
    cols = records.request_columns()
    order = np.argsort(cols["request_id"])
    return {k: v[order] for k, v in cols.items()}


PROPERTY_RUN = dict(
    n=st.integers(1, 40),
    seed=st.integers(0, 10_000),
    num_blocks=st.integers(70, 400),
    block_size=st.sampled_from([1, 4, 16]),
    policy=st.sampled_from(["vllm", "sarathi", "orca", "static", "prefill_first"]),
    budget=st.integers(64, 2048),
    ff=st.booleans(),
    ahead=st.booleans(),
)
"""The engine property tests' common draws (hypothesis strategies): requests
(:func:`property_sessions`), cache, policy, step budget, fast-forward, scheduling ahead."""


def property_sessions(n, seed, num_blocks, block_size, sliding=0):
    """The engine property tests' requests: ``n`` single-turn sessions, all at t = 0 (even
    ``seed``) or spread over 2 s, each short enough to fit the cache alone (with ``sliding``
    window groups too), half of them sharing one of three prefixes."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 2, n)) if seed % 2 else np.zeros(n)
    max_len = num_blocks * block_size // (2 + 4 * sliding)
    sessions = []
    for i in range(n):
        lin = int(rng.integers(1, max(2, min(600, max_len - 60))))
        lout = int(rng.integers(1, 60 if not sliding else max(2, min(60, max_len - lin))))
        hashes = (int(rng.integers(0, 3)),) if rng.random() < 0.5 else ()
        sessions.append(make_session(i, float(t[i]), lin, lout, hashes, hbs=32))
    return sessions
