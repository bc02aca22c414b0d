"""The compiled step pricing (``servesim.cost.compiled``, numba) against the reference path:
the same features bit for bit, the same seconds to the last bits of rounding, and whole runs
with the same records."""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from engine_factories import PROPERTY_RUN, assert_same_records  # noqa: E402
from test_engine_golden import SCENARIOS, _assert_close, _golden, figures  # noqa: E402

from servesim.cost.compiled import CompiledStepCost  # noqa: E402
from servesim.cost.features import B  # noqa: E402
from servesim.engine.instance import span_ends  # noqa: E402
from servesim.engine.kv_cache import KVBlockManager  # noqa: E402
from servesim.errors import ServesimError  # noqa: E402
from servesim.fleet import COMPILED_MIN_REQUESTS, build_fleet, compiled_pricing  # noqa: E402
from servesim.run import simulate  # noqa: E402
from servesim.scenario import build_scenario  # noqa: E402

MODELS = {
    # dense GQA on an H100 with kernel tables: curves, occupancy, decode ramp, CUDA graphs
    "dense": {"model": "llama3.1-8b"},
    # an MoE model: the expert features
    "moe": {"model": "mistralai/Mixtral-8x7B-v0.1", "tp": 2},
    # sliding-window layers and attention sinks: the features come from the reference
    "window": {"model": "openai/gpt-oss-120b"},
    # MLA with weight absorption (DeepSeek-V3 on 8 H200s): the reference's features too
    "mla": {"model": "deepseek-ai/DeepSeek-V3", "hardware": "H200", "tp": 8},
    # a GPU without kernel tables: the roofline and borrowed rungs
    "no_tables": {"model": "llama3.1-8b", "hardware": "MI300X"},
    # vLLM V0 (host work between steps, no overlap)
    "vllm_v0": {"model": "llama3.1-8b", "engine": "vllm-v0"},
    # vLLM V1's FlashAttention-2 walks each sequence serially: a multi-head model in every
    # step (an A100), a grouped-query model in steps with a prompt chunk (an L40S)
    "walk_mha": {"model": "meta-llama/Llama-2-7b-hf", "hardware": "A100-80GB"},
    "walk_gqa": {"model": "llama3.1-8b", "hardware": "L40S"},
}


def _costs(name: str) -> list[CompiledStepCost]:
    """The compiled costs of one instance of the scenario (its graphed and eager ones)."""
    scenario = build_scenario({**MODELS[name], "compiled": "on"})
    instance = build_fleet(scenario, np.random.default_rng(0)).instances[0]
    costs = [instance.cost] + ([instance.eager_cost] if instance.eager_cost is not None else [])
    assert all(isinstance(c, CompiledStepCost) for c in costs), name
    return costs


def _batches(rng: np.random.Generator, n: int = 60):
    """Mixed batches: decodes over short and long contexts, prompt chunks, a lone prompt."""
    for _ in range(n):
        rows = int(rng.integers(1, 300))
        new = np.ones(rows, dtype=np.int64)
        prompts = rng.random(rows) < rng.random()
        new[prompts] = rng.integers(1, 4096, int(prompts.sum()))
        context = rng.integers(0, 32_000, rows).astype(np.int64)
        context[prompts] = rng.integers(0, 3, int(prompts.sum())) * rng.integers(0, 8192)
        yield new, context
    yield np.array([5000], dtype=np.int64), np.array([0], dtype=np.int64)
    yield np.array([1], dtype=np.int64), np.array([0], dtype=np.int64)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_step_is_priced_as_the_reference_prices_it(name):
    rng = np.random.default_rng(7)
    for cost in _costs(name):
        for new, context in _batches(rng):
            got, got_f = cost.step_with_features(new, context)
            want, want_f = cost.model.step_with_features(new, context)
            np.testing.assert_array_equal(got_f, want_f)
            assert got == want, (name, len(new))


def test_eager_steps_of_every_prompt_length_price_as_the_reference():
    """An eager step's measured curves sit at ``log(tokens)`` on their grid: where numpy's
    AVX-512 ``log`` is an ulp off the C library's (9,170 and 19,143 tokens below 20,000 on one
    such CPU) the reference priced vLLM V0's eager steps differently from the kernels until
    it took the C library's too (``cost.libm.c_math``)."""
    eager = _costs("vllm_v0")[1]
    assert eager.model._ops.eager is not None
    context = np.zeros(1, dtype=np.int64)
    for tokens in range(1, 20_001):
        new = np.array([tokens], dtype=np.int64)
        assert (
            eager.step_with_features(new, context)[0]
            == eager.model.step_with_features(new, context)[0]
        ), tokens


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_decode_span_is_priced_as_the_reference_prices_it(name):
    """To the bit (the reference's product in the kernels' order, its logarithms the C
    library's): many random spans, padded or not, where one step in a few hundred differed by
    an ulp while numpy's vector ``log10`` priced the decode ramp."""
    rng = np.random.default_rng(11)
    for cost in _costs(name):
        shapes = [(1, 1, 0), (1, 40, 0), (7, 3, 0), (64, 200, 0), (256, 17, 0)]
        shapes += [(int(rng.integers(1, 40)), int(rng.integers(2, 60)), int(rng.integers(0, 8)))
                   for _ in range(30)]  # fmt: skip
        for rows, steps, pad in shapes:
            context = rng.integers(1, 20_000, rows).astype(np.int64)
            got, got_f = cost.decode_span_with_features(context, steps, pad)
            want, want_f = cost.model.decode_span_with_features(context, steps, pad)
            np.testing.assert_array_equal(got_f, want_f)
            np.testing.assert_array_equal(got, want)
            if pad:
                continue
            # The engine's call: the same steps, each end the previous plus the step, as the
            # reference (and step-by-step simulation) adds them.
            start = float(rng.random() * 1e4)
            ends, seconds, features = cost.decode_span_ends(context, steps, 0, start)
            np.testing.assert_array_equal(seconds, got)
            np.testing.assert_array_equal(features, got_f)
            np.testing.assert_array_equal(ends, span_ends(start, got))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padded_rows_price_as_the_rows_appended(name):
    """A CUDA graph's padding (``pad`` rows of one token over an empty context), counted in
    the kernels, prices as the padded arrays do: compiled and reference, a step, and each step
    of a span as that step alone (its padded rows over an empty context at every step: they
    grew with the others until a scenario-level fast-forward test found spans 0.4 µs a step
    dearer than the same steps one at a time)."""
    rng = np.random.default_rng(5)
    pad = 5
    for cost in _costs(name):
        for rows, steps in ((1, 1), (3, 40), (61, 7)):
            context = rng.integers(1, 20_000, rows).astype(np.int64)
            new = np.ones(rows, dtype=np.int64)
            padded_new = np.concatenate((new, np.ones(pad, dtype=np.int64)))
            padded = np.concatenate((context, np.zeros(pad, dtype=np.int64)))
            for priced in (cost, cost.model):
                got, got_f = priced.step_with_features(new, context, pad)
                want, want_f = priced.step_with_features(padded_new, padded)
                np.testing.assert_array_equal(got_f, want_f)
                assert got == want
                got, got_f = priced.decode_span_with_features(context, steps, pad)
                for j in sorted({0, steps // 2, steps - 1}):
                    at_j = np.concatenate((context + j, np.zeros(pad, dtype=np.int64)))
                    want, want_f = priced.step_with_features(padded_new, at_j)
                    np.testing.assert_array_equal(got_f[j], want_f)
                    assert got[j] == pytest.approx(want, rel=1e-12)
            assert cost.step_with_features(new, context, pad)[1][B] == rows + pad
            assert cost.step_with_features(new, context)[1][B] == rows


def test_the_compiled_seconds_differ_from_the_reference_only_in_rounding():
    """Not a tautology: a compiled model of another GPU prices the same batch differently."""
    h100 = _costs("dense")[0]
    mi300x = _costs("no_tables")[0]
    new, context = np.ones(32, dtype=np.int64), np.full(32, 2000, dtype=np.int64)
    assert h100.step_with_features(new, context)[0] != pytest.approx(
        mi300x.step_with_features(new, context)[0], rel=1e-3
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_whole_runs_give_the_golden_figures(name):
    """The golden scenarios priced by the compiled kernels: the golden figures (every integer
    column exactly, floats to the golden test's 1e-9), and the reference path's to the bit."""
    compiled = figures(name, compiled="on")
    _assert_close(compiled, _golden()[name], name)
    # (as text: every float's shortest repr, distinct for distinct floats, and NaN equal)
    reference = figures(name, compiled="off")
    assert json.dumps(compiled, sort_keys=True) == json.dumps(reference, sort_keys=True), name


LOGNORMAL_WORKLOAD = {
    "num_requests": 400,
    "input_len": {"kind": "lognormal", "median": 1000, "sigma": 1.0, "max": 16000},
    "output_len": {"kind": "lognormal", "median": 200, "sigma": 1.0, "max": 4000},
    "arrival": {"kind": "poisson", "rate": 30.0},
}

RUNS = {
    # the KV cache fills: preemptions, admissions every step
    "saturating": {"workload": LOGNORMAL_WORKLOAD, "scheduler": {"gpu_memory_utilization": 0.4}},
    # sliding-window layers: the hybrid KV layout's pages grow through the block manager
    "sliding_window": {
        "model": "openai/gpt-oss-120b",
        "workload": {
            **LOGNORMAL_WORKLOAD,
            "num_requests": 200,
            "arrival": {"kind": "poisson", "rate": 5.0},
        },
    },
    # no prefix caching: every new block is private
    "no_prefix_caching": {
        "workload": {**LOGNORMAL_WORKLOAD, "arrival": {"kind": "poisson", "rate": 3.0}},
        "scheduler": {"enable_prefix_caching": False},
    },
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_run_keeps_its_records_bit_for_bit_in_the_integer_columns(name):
    spec = RUNS[name]
    ref = simulate(build_scenario({**spec, "compiled": "off"}))
    fast = simulate(build_scenario({**spec, "compiled": "on"}))
    if name == "saturating":
        assert ref.summary["num_preemptions"] > 0  # (the run reaches the preempting paths)
    for table in ("step_columns", "request_columns"):
        a, b = getattr(ref.records, table)(), getattr(fast.records, table)()
        assert sorted(a) == sorted(b)
        for column in a:
            np.testing.assert_array_equal(a[column], b[column], err_msg=column)
    np.testing.assert_array_equal(ref.records.step_features(), fast.records.step_features())
    # The inter-token gaps the compiled commits write straight into the run's log.
    (ref_values, ref_weights), (values, weights) = ref.records.itl_pairs(), fast.records.itl_pairs()
    np.testing.assert_array_equal(ref_weights, weights)
    np.testing.assert_array_equal(ref_values, values)
    # The decode batches' shared new-token buffer was read, never written.
    from servesim.engine import instance

    assert (instance._ones_buffer == 1).all()


def test_a_decode_span_plan_is_the_scheduler_s_reservation_and_span_length():
    """``decode_span_plan`` against the calls it replaces when every row decodes (the
    reservation of one token a row, the batch's shape, the span's length), and refusing,
    with the table untouched, where they would not all apply."""
    from servesim.engine._commit_kernels import (
        GROW_PRIVATE,
        GROW_UNLESS_NAMED,
        batch_shape,
        decode_span_plan,
        reserve_running,
        span_steps,
    )
    from servesim.engine.running import (
        COMPUTED,
        MAX_OUT,
        NBLOCKS,
        NSHARED,
        PROMPT,
        SHAREABLE,
        TOKENS,
    )

    rng = np.random.default_rng(8)
    bs = 16
    planned = refused = 0
    for trial in range(300):
        n = int(rng.integers(1, 12))
        table = np.zeros((7, 16), dtype=np.int64)
        table[PROMPT, :n] = rng.integers(1, 300, n)
        table[TOKENS, :n] = table[PROMPT, :n] + rng.integers(1, 50, n)
        table[COMPUTED, :n] = table[TOKENS, :n] - 1
        table[MAX_OUT, :n] = (table[TOKENS, :n] - table[PROMPT, :n]) + rng.integers(0, 80, n)
        table[NBLOCKS, :n] = -(-table[COMPUTED, :n] // bs)
        if trial % 5 == 1:  # a prompt still being computed, or one with no output yet
            i = int(rng.integers(0, n))
            table[COMPUTED, i] -= 3 if trial % 2 else 0
            table[TOKENS, i] = table[PROMPT, i] if not trial % 2 else table[TOKENS, i]
            table[COMPUTED, i] = min(table[COMPUTED, i], table[TOKENS, i] - 1)
        grow = GROW_UNLESS_NAMED if trial % 3 == 0 else GROW_PRIVATE
        if grow == GROW_UNLESS_NAMED:
            table[SHAREABLE, :n] = table[NBLOCKS, :n] + rng.integers(0, 2, n)
            table[NSHARED, :n] = table[NBLOCKS, :n]
        free = int(rng.integers(0, 40))
        mine, theirs = table.copy(), table.copy()
        steps, first, grown, context = decode_span_plan(mine, n, free, bs, grow)
        new = np.full(20, -7, dtype=np.int64)
        need_total, _, _, reserved = reserve_running(theirs, n, 10**6, bs, free, grow, new)
        assert (new[n:] == -7).all()  # (only the first n written)
        new = new[:n]
        shape = batch_shape(theirs, n, new)
        decoding = need_total == n and shape[3] > 0
        if steps < 0:
            refused += 1
            np.testing.assert_array_equal(mine, table)  # (nothing changed)
            assert not decoding or reserved < 0
            continue
        planned += 1
        assert decoding and reserved == grown >= 0
        np.testing.assert_array_equal(mine, theirs)  # (the same blocks reserved)
        assert context == shape[2] == table[COMPUTED, :n].sum()
        assert (steps, first) == span_steps(theirs, n, free - grown, bs, 0)
    assert planned > 50 and refused > 20


@pytest.mark.parametrize("name", ["dense", "moe", "mla", "no_tables"])
def test_a_planned_step_or_span_is_priced_as_the_instance_prices_it_apart(name):
    """``fused_kernels.plan_priced_span``: ``decode_span_plan``'s plan, and what the instance
    writes when it prices that plan apart, to the bit: a span as ``decode_span_into``, one
    step as ``step_into`` (a token a row) ending at the start plus its seconds. A span longer
    than the buffers, no plan, or one step of an MLA model (its features come from the
    reference) leaves the buffers alone."""
    from servesim.engine._commit_kernels import GROW_PRIVATE, decode_span_plan
    from servesim.engine.running import COMPUTED, MAX_OUT, NBLOCKS, PROMPT, TOKENS
    from servesim.fused_kernels import HORIZON_EXTRA_STEPS as EXTRA
    from servesim.fused_kernels import span_planner

    cost = _costs(name)[0]
    planner = span_planner(cost)
    assert planner is not None
    plan, resume, arguments = planner
    rng = np.random.default_rng(11)
    bs, width = 16, cost.num_features
    ones = np.ones(64, dtype=np.int64)
    spans = steps_priced = unpriced = parts = 0
    for _ in range(200):
        n = int(rng.integers(1, 20))
        table = np.zeros((7, 32), dtype=np.int64)
        table[PROMPT, :n] = rng.integers(1, 3000, n)
        outputs = rng.integers(1, 200, n)
        table[TOKENS, :n] = table[PROMPT, :n] + outputs
        table[COMPUTED, :n] = table[TOKENS, :n] - 1
        table[MAX_OUT, :n] = outputs + rng.integers(1, 60, n)
        table[MAX_OUT, int(rng.integers(0, n))] -= int(rng.integers(0, 2)) * 59  # (ends soon)
        table[NBLOCKS, :n] = -(-table[COMPUTED, :n] // bs)
        free, capacity = int(rng.integers(0, 300)), int(rng.integers(1, 50))
        pad, start = int(rng.integers(0, 8)), float(rng.random() * 100)
        buffers = (np.full(capacity, np.nan), np.full(capacity, np.nan),
                   np.full((capacity, width), np.nan))  # fmt: skip
        mine, theirs = table.copy(), table.copy()
        # A horizon within the span (or none): the steps priced end a few past it, and
        # pricing on from there, in one call or several, gives the one call's bits.
        horizon = start + float(rng.random()) * 0.03 if rng.random() < 0.7 else np.inf
        *planned, end, priced = plan(mine, n, free, bs, GROW_PRIVATE, ones, pad, start,
                                     horizon, *arguments, *buffers)  # fmt: skip
        assert tuple(planned) == decode_span_plan(theirs, n, free, bs, GROW_PRIVATE)
        np.testing.assert_array_equal(mine, theirs)
        steps = planned[0]
        context = theirs[COMPUTED, :n]
        want = np.empty(max(steps, 1)), np.empty(max(steps, 1)), np.empty((max(steps, 1), width))
        if steps > 1 and steps <= capacity:
            seconds, ends = buffers[0], buffers[1]
            past = np.flatnonzero(ends[:priced] >= horizon)
            assert priced == (steps if not len(past) else min(steps, past[0] + 1 + EXTRA))
            assert end == ends[priced - 1]
            while priced < steps:  # (a checkpoint: on to a later horizon)
                later = ends[priced - 1] + float(rng.random()) * 0.02
                end, priced_now = resume(mine, n, priced, steps, pad, later, *arguments,
                                         *buffers)  # fmt: skip
                assert priced < priced_now <= steps and end == ends[priced_now - 1]
                priced = priced_now
                parts += 1
            assert end == cost.decode_span_into(context, steps, pad, start, *want)
            spans += 1
        elif steps == 1 and name != "mla":
            seconds = cost.step_into(ones[:n], context, pad, want[2])
            want[0][0], want[1][0] = seconds, start + seconds
            assert end == start + seconds
            steps_priced += 1
        else:
            assert end == -1.0 and all(np.isnan(b).all() for b in buffers)
            unpriced += 1
            continue
        for got, expected in zip(buffers, want, strict=True):
            np.testing.assert_array_equal(got[:steps], expected)
    assert spans > 30 and parts > 10 and unpriced > 10 and (steps_priced > 10 or name == "mla")


@pytest.mark.parametrize("engine", ["vllm", "trtllm"])
def test_spans_priced_in_parts_give_the_records_of_spans_priced_whole(engine, monkeypatch):
    """A planned decode span is priced a few steps past the next event that could cut it;
    where nothing does, its end event is a checkpoint that prices on. With the horizon at
    each span's own start (a checkpoint every few steps, cuts landing past the steps
    priced), a run's records are those of spans priced whole (no horizon), to the bit."""
    from servesim.engine import loop
    from servesim.engine.instance import Instance

    spec = {
        "model": "llama3.1-8b",
        "engine": engine,  # (vLLM forms a step ahead: a cut can land past the steps priced)
        "workload": {
            "num_requests": 300,
            "input_len": {"kind": "lognormal", "median": 400, "sigma": 1.0, "max": 4000},
            "output_len": {"kind": "lognormal", "median": 120, "sigma": 1.0, "max": 1000},
            "arrival": {"kind": "poisson", "rate": 4.0},
        },
        "compiled": "on",
    }
    whole = simulate(build_scenario(spec))
    # (The heap's next event as the horizon, replaced by ``now``: spans priced in parts.)
    start_step = Instance.start_step
    monkeypatch.setattr(
        Instance, "start_step", lambda self, now, horizon: start_step(self, now, now)
    )
    monkeypatch.setattr(loop.Simulation, "_horizon", lambda self: self.now)
    price_on, calls = Instance._price_on, []

    def counted(self, span, num_steps, horizon):
        calls.append(horizon)
        return price_on(self, span, num_steps, horizon)

    monkeypatch.setattr(Instance, "_price_on", counted)
    parts = simulate(build_scenario(spec))
    assert parts.summary["num_events"] > whole.summary["num_events"] + 100  # (checkpoints)
    if engine == "vllm":
        assert np.inf in calls  # (a cut past the steps priced)
    assert_same_records(whole.records, parts.records)
    np.testing.assert_array_equal(whole.records.step_features(), parts.records.step_features())


def test_the_compiled_row_removal_is_the_numpy_one():
    """``RunningTable.remove`` with the compiled compaction leaves the table, the token times
    and the requests as the numpy path does, for one row leaving and for several."""
    from servesim.engine._commit_kernels import remove_rows
    from servesim.engine.request import Request
    from servesim.engine.running import RunningTable

    rng = np.random.default_rng(12)
    for trial in range(40):
        n = int(rng.integers(1, 40))
        prompts = rng.integers(1, 500, n)
        computed = (rng.random(n) * prompts).astype(int)
        tables = []
        for _ in range(2):
            table = RunningTable()
            for i in range(n):
                req = Request(i, i, 0, 0.0, int(prompts[i]), 100)
                req.num_computed_tokens = int(computed[i])
                req.last_token_s = float(i) if i % 3 else None
                table.append(req)
            tables.append(table)
        drop = np.zeros(n, dtype=bool)
        drop[rng.choice(n, size=1 if trial % 2 else int(rng.integers(1, n + 1)), replace=False)] = (
            True
        )
        gone_numpy = tables[0].remove(drop)
        gone_compiled = tables[1].remove(drop, remove_rows)
        assert [r.request_id for r in gone_numpy] == [r.request_id for r in gone_compiled]
        np.testing.assert_array_equal(tables[0].columns(), tables[1].columns())
        np.testing.assert_array_equal(tables[0].last_token, tables[1].last_token)
        assert [r.request_id for r in tables[0].reqs] == [r.request_id for r in tables[1].reqs]
        assert len(tables[1].reqs) == n - int(drop.sum())


def _short_state(seed: int):
    """A scheduler state whose running rows' blocks fall short: prompts mid-chunk and decodes,
    a block manager with prefix caching whose LRU holds preempted requests' segments (so
    allocations evict), and the rows' new tokens as ``reserve_running`` shares a budget."""
    from servesim.engine import _commit_kernels as kernels
    from servesim.engine.request import Request
    from servesim.engine.running import RunningTable
    from servesim.engine.scheduler import SchedulerState

    rng = np.random.default_rng(seed)
    bs = 16
    kv = KVBlockManager(int(rng.integers(40, 400)), bs, enable_prefix_caching=True)
    running, waiting = RunningTable(), deque()
    rid = 0
    for _ in range(int(rng.integers(0, 4))):  # (segments cached by earlier preemptions)
        req = Request(rid, rid, 0, 0.0, int(rng.integers(16, 200)), 50)
        rid += 1
        req.num_computed_tokens = req.prompt_tokens
        if kv.allocate(req, req.num_computed_tokens):
            kv.free(req, preempted=True)
    for _ in range(int(rng.integers(1, 30))):
        prompt = int(rng.integers(1, 600))
        req = Request(rid, rid, 0, float(rid), prompt, int(rng.integers(1, 300)))
        rid += 1
        if rng.random() < 0.6:  # decoding: its prompt and some outputs computed
            req.num_output_tokens = int(rng.integers(1, req.max_output_tokens + 1))
            req.num_computed_tokens = req.num_tokens - 1
        else:  # a prompt mid-chunk
            req.num_computed_tokens = int(rng.integers(0, prompt))
        if not kv.allocate(req, req.num_computed_tokens):
            break
        running.append(req)
    state = SchedulerState(waiting, running, kv, compiled=kernels)
    n = len(running)
    new_tokens = running.token_buffer
    budget = int(rng.integers(n, 3000))
    *_, grown = kernels.reserve_running(
        running.int_buffer, n, budget, bs, kv.num_free_blocks, kernels.grow_mode(kv), new_tokens
    )
    return state, new_tokens[:n], grown


def test_a_compiled_shortage_preempts_as_the_numpy_walk_does():
    """``_reserve_short_compiled`` (the kernel's plan replayed on the block manager) leaves the
    running table, the queue, the block manager (held, cached, its LRU and evictions) and the
    preempted requests as ``_reserve_blocks`` leaves them, on random shortages."""
    from servesim.engine.scheduler import _reserve_blocks, _reserve_short_compiled

    short = 0
    for seed in range(300):
        mine, new_mine, grown = _short_state(seed)
        if grown >= 0:
            continue  # (every block fits: no shortage to plan)
        theirs, new_theirs, _ = _short_state(seed)
        got = _reserve_short_compiled(mine, new_mine)
        assert got is not None
        want = _reserve_blocks(theirs, new_theirs, None)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == want[1] > 0
        np.testing.assert_array_equal(mine.running.columns(), theirs.running.columns())
        a, b = mine.kv, theirs.kv
        assert (a.num_held, a.num_cached, a.num_evictions) == (
            b.num_held,
            b.num_cached,
            b.num_evictions,
        )
        assert list(a.lru.items()) == list(b.lru.items())
        for x, y in zip(mine.waiting, theirs.waiting, strict=True):
            assert (x.request_id, x.num_computed_tokens, x.num_preemptions, x.num_blocks) == (
                y.request_id, y.num_computed_tokens, y.num_preemptions, y.num_blocks
            )  # fmt: skip
        short += 1
    assert short > 100


def test_a_compiled_shortage_leaves_named_blocks_and_shared_holders_to_python():
    """Where a row still to grow is short of its named blocks the kernel changes nothing and
    says so; where a row holds a shared block the plan is not tried (a preempted row would
    free fewer blocks than it counts)."""
    from servesim.engine import _commit_kernels as kernels
    from servesim.engine.running import NBLOCKS, NSHARED, SHAREABLE
    from servesim.engine.scheduler import _reserve_short_compiled

    for seed in range(300):
        state, new_tokens, grown = _short_state(seed)
        if grown < 0:
            break
    table = state.running.int_buffer
    n = len(state.running)
    table[SHAREABLE, :n] = table[NBLOCKS, :n] + 1  # (every row short of a named block)
    before = table.copy()
    ops = np.empty(3 * n, dtype=np.int64)
    assert kernels.reserve_short(
        table, n, new_tokens, 16, state.kv.num_free_blocks, kernels.GROW_UNLESS_NAMED, ops
    ) == (-1, n)
    np.testing.assert_array_equal(table, before)
    table[SHAREABLE, :n] = table[NSHARED, :n]
    before = table.copy()
    held = state.kv.num_held
    state.kv.ref_counts[10**9] = 1  # (a shared block held somewhere)
    assert _reserve_short_compiled(state, new_tokens) is None
    np.testing.assert_array_equal(table, before)  # (nothing grown or preempted)
    assert not state.waiting and state.kv.num_held == held and len(state.running) == n


def test_auto_compiles_only_large_workloads(monkeypatch):
    small = build_scenario({"workload": {"num_requests": 1000}})
    large = build_scenario({"workload": {"num_requests": COMPILED_MIN_REQUESTS}})
    assert not compiled_pricing(small)
    assert compiled_pricing(large)
    assert not compiled_pricing(
        build_scenario({"workload": {"num_requests": 10**6}, "compiled": "off"})
    )
    assert compiled_pricing(build_scenario({"workload": {"num_requests": 10}, "compiled": "on"}))
    monkeypatch.setattr("servesim.fleet.numba_available", lambda: False)
    assert not compiled_pricing(large)


def test_on_without_numba_is_a_field_error(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "numba" else find_spec(name, *a),
    )
    with pytest.raises(ServesimError) as err:
        build_scenario({"compiled": "on"})
    assert "compiled" in str(err.value) and "servesim[fast]" in str(err.value)


def test_the_compiled_gap_folding_is_the_reference_folding():
    from servesim.engine._commit_kernels import fold_gaps
    from servesim.engine.instance import _fold_gaps

    rng = np.random.default_rng(3)
    step = 0.0125
    for gaps in (
        np.full(5, step),
        rng.random(7),
        np.where(rng.random(40) < 0.5, step, rng.random(40)),
        np.array([step]),
        np.zeros(0),
    ):
        want = _fold_gaps(gaps, step)
        # (Written into a log after what it held, from the position given: nothing else.)
        values, weights = np.full(len(gaps) + 5, -1.0), np.full(len(gaps) + 5, -1)
        end = fold_gaps(np.concatenate((gaps, [7.0])), len(gaps), step, values, weights, 2)
        assert end == 2 + len(want[0])
        np.testing.assert_array_equal(values[2:end], want[0])
        np.testing.assert_array_equal(weights[2:end], want[1])
        assert (values[:2] == -1).all() and (values[end:] == -1).all()
        assert (weights[:2] == -1).all() and (weights[end:] == -1).all()


def test_the_compiled_reads_of_a_batch_are_numpy_s():
    """A span's features summed (numpy's row-by-row order for a C-contiguous array, not the
    pairwise order of a contiguous axis: the float features of MoE models would differ), and
    a scheduled batch's shape, against the numpy expressions they replace."""
    from servesim.engine._commit_kernels import (
        GROW_PRIVATE,
        batch_shape,
        commit_span,
        holds_shared,
        reserve_running,
        sum_steps,
    )
    from servesim.engine._commit_kernels import span_ends as compiled_span_ends
    from servesim.engine.running import COMPUTED, MAX_OUT, NSHARED, PROMPT, TOKENS

    rng = np.random.default_rng(4)
    for m in (2, 3, 17, 200, 513):
        features = rng.random((m + 3, 18)) * rng.choice([1.0, 1e3, 1e9], size=(m + 3, 18))
        np.testing.assert_array_equal(sum_steps(features, m), np.add.reduce(features[:m], axis=0))
        durations = rng.random(m) * 0.05
        start = float(rng.random() * 1e4)
        # Each end the previous plus the step, as a step at a time adds them (a sum taken
        # from zero and then added to the start differs in the last place for some).
        stepped = list(itertools.accumulate(durations.tolist(), initial=start))[1:]
        np.testing.assert_array_equal(compiled_span_ends(start, durations), stepped)
        np.testing.assert_array_equal(span_ends(start, durations), stepped)
        # A span's commit sums its features into their first row, the later rows untouched
        # (none given: it leaves them to numpy).
        rows = np.zeros((7, 4), dtype=np.int64)
        rows[MAX_OUT] = 10**6
        for table_f in (features.copy(), np.zeros((0, 0))):
            log, log_weights = np.zeros(m + 5), np.zeros(m + 5, dtype=np.int64)
            end, _, _ = commit_span(
                rows.copy(), np.zeros(4), 4, m, 1.0, durations, 2.0, 16, GROW_PRIVATE, table_f,
                np.zeros(4, dtype=bool), log, log_weights, 2,
            )  # fmt: skip
            if len(table_f):
                np.testing.assert_array_equal(table_f[0], np.add.reduce(features[:m], axis=0))
                np.testing.assert_array_equal(table_f[1:], features[1:])
            # Its gaps: each row's first (1 s after its last token at 0), then a step each.
            assert end == 2 + 4 + m - 1
            np.testing.assert_array_equal(log[2:end], [1.0] * 4 + durations[1:m].tolist())
            np.testing.assert_array_equal(log_weights[2:end], [1] * 4 + [4] * (m - 1))
    table = np.zeros((7, 64), dtype=np.int64)
    n = 9
    table[PROMPT, :n] = rng.integers(1, 500, n)
    table[TOKENS, :n] = table[PROMPT, :n] + rng.integers(0, 40, n)
    table[COMPUTED, :n] = table[TOKENS, :n] - rng.integers(1, 3, n)
    new_tokens = np.where(rng.random(n) < 0.3, 0, table[TOKENS, :n] - table[COMPUTED, :n])
    need = table[TOKENS, :n] - table[COMPUTED, :n]
    budget = int(need.sum()) - 3  # (the last rows get fewer)
    new = np.empty(n, dtype=np.int64)
    need_total, scheduled, several, grown = reserve_running(table, n, budget, 16, 0, 2, new)
    assert need_total == need.sum() and grown == -1  # (blocks left to Python: grow mode 2)
    np.testing.assert_array_equal(
        new, np.minimum(np.maximum(budget - (need.cumsum() - need), 0), need)
    )
    assert scheduled == new.sum() == budget and several == (new > 1).any()
    rows = new_tokens > 0
    assert batch_shape(table, n, new_tokens) == (
        new_tokens.sum(),
        rows.sum(),
        table[COMPUTED, :n][rows].sum(),
        (table[TOKENS, :n] - table[PROMPT, :n]).min(),
    )
    assert not holds_shared(table, n)
    table[NSHARED, n] = 2  # (past the live rows: not read)
    assert not holds_shared(table, n)
    table[NSHARED, n - 1] = 2
    assert holds_shared(table, n)


def test_kernels_that_cannot_load_fall_back_under_auto_and_stop_a_run_that_asked(monkeypatch):
    """numba pins the numpy releases it supports: an install where it imports but its kernels
    do not load must not crash a large run (auto) and must say why when asked for (on)."""
    monkeypatch.setattr(
        "servesim.fleet._compiled_kernels_problem", lambda: "ImportError: Numba needs NumPy 2.3"
    )
    large = build_scenario({"workload": {"num_requests": COMPILED_MIN_REQUESTS}})
    assert not compiled_pricing(large)
    with pytest.raises(ServesimError) as err:
        compiled_pricing(build_scenario({"compiled": "on"}))
    assert "Numba needs NumPy" in str(err.value) and "compiled: off" in str(err.value)


def test_the_cli_runs_compiled_and_says_so():
    """Through the real command: ``--compiled on`` runs the kernels, the table's wall-time row
    and summary.json say so, and the figures are the reference run's."""
    import json as _json

    from test_cli_simulate import run

    table = run("-n", "200", "--compiled", "on")
    assert table.returncode == 0, table.stderr
    assert "(compiled kernels)" in table.stdout
    on = _json.loads(run("-n", "200", "--compiled", "on", "--json").stdout)
    off = _json.loads(run("-n", "200", "--compiled", "off", "--json").stdout)
    assert on["compiled_kernels"] is True and off["compiled_kernels"] is False
    for key in ("median_ttft_ms", "p99_itl_ms", "output_throughput", "num_steps"):
        assert on[key] == pytest.approx(off[key], rel=1e-9), key
    bad = run("-n", "200", "--compiled", "sometimes")
    assert bad.returncode == 2 and "compiled" in bad.stderr and "Traceback" not in bad.stderr


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    **PROPERTY_RUN,
    prefix=st.booleans(),
    sliding=st.sampled_from([0, 0, 1]),
)
def test_the_engine_kernels_keep_every_record(
    n, seed, num_blocks, block_size, policy, budget, ff, ahead, prefix, sliding
):  # fmt: skip
    """Random small runs (the engine-invariants test's space): the compiled commits, span
    lengths and budgets give the numpy path's records exactly, every column and gap."""
    from engine_factories import property_sessions, run_sessions

    sessions = property_sessions(n, seed, num_blocks, block_size, sliding)
    kw = dict(
        num_blocks=num_blocks, block_size=block_size, policy=policy,
        max_num_batched_tokens=budget, fast_forward=ff, schedule_ahead=ahead,
        enable_prefix_caching=prefix, sliding_groups=sliding, window_blocks=3,
        window_tokens=2 * block_size,
    )  # fmt: skip
    ref, _, _ = run_sessions(sessions, **kw)
    fast, insts, _ = run_sessions(sessions, compiled=True, **kw)
    for table in ("request_columns", "step_columns"):
        a, b = getattr(ref, table)(), getattr(fast, table)()
        for column in a:
            np.testing.assert_array_equal(a[column], b[column], err_msg=column)
    for x, y in zip(ref.itl_pairs(), fast.itl_pairs(), strict=True):
        np.testing.assert_array_equal(x, y)
    insts[0].kv.check_invariants()
    assert insts[0].kv.num_free_blocks == insts[0].kv.num_blocks


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(sorted(MODELS)),
    engine=st.sampled_from(["vllm", "sglang", "trtllm", "vllm-v0"]),
    rate=st.sampled_from([1.0, 8.0, 60.0]),
    turns=st.sampled_from([1, 3]),
    seed=st.integers(0, 10_000),
)
def test_random_runs_give_the_reference_records_to_the_bit(model, engine, rate, turns, seed):
    """Since the reference sums the hot product in the kernels' order and takes the C
    library's logarithms: whole runs of the real cost models, any engine, load and
    conversation shape, compiled and not, record for record, feature for feature."""
    workload = {
        "num_requests": 40,
        "input_len": {"kind": "lognormal", "median": 600, "sigma": 1.0, "max": 6000},
        "output_len": {"kind": "lognormal", "median": 80, "sigma": 1.0, "max": 800},
        "arrival": {"kind": "poisson", "rate": rate},
    }
    if turns > 1:
        workload["multi_turn"] = {"turns": turns}
    spec = {**MODELS[model], "engine": engine, "workload": workload, "seed": seed}
    ref = simulate(build_scenario({**spec, "compiled": "off"}))
    fast = simulate(build_scenario({**spec, "compiled": "on"}))
    assert_same_records(ref.records, fast.records)
    np.testing.assert_array_equal(ref.records.step_features(), fast.records.step_features())
