"""The online engine alone (no HTTP): driven by a fake clock, it produces exactly the offline
simulation's timings; the loop's online API (advance_to, submit) and the filler/prompt rules."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")

from servesim.run import prepare, simulate  # noqa: E402
from servesim.scenario import build_scenario  # noqa: E402
from servesim.serve.online import OnlineEngine  # noqa: E402
from servesim.serve.tokens import PromptCounter, filler_text  # noqa: E402

RATE, N, ISL, OSL = 8.0, 12, 900, 40


def _scenario(**extra):
    data = {
        "workload": {
            "num_requests": N,
            "input_len": ISL,
            "output_len": OSL,
            "arrival": {"kind": "constant", "rate": RATE},
        },
        "fast_forward": False,
    }
    data.update(extra)
    return build_scenario(data)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"replicas": 2},
        {"disaggregate": "1:1"},
        {"engine": "sglang", "scheduler": {"stream_interval": 8}},
    ],
)
def test_online_engine_reproduces_the_offline_run_exactly(extra):
    scenario = _scenario(**extra)
    offline = simulate(scenario).records.request_columns()
    clock = FakeClock()
    time_scale = 10.0
    engine = OnlineEngine(prepare(scenario, sessions=iter(())), time_scale, clock=clock)
    streams = []
    for i in range(N):
        clock.t = i / RATE / time_scale  # a client sends request i now (wall seconds)
        streams.append(engine.submit(ISL, OSL))
    engine._advance(1e9)
    first, finish = [], []
    for s in streams:
        emissions = [s.emissions.get_nowait() for _ in range(s.emissions.qsize())]
        assert sum(e.num_tokens for e in emissions) == OSL
        assert emissions[-1].finished and not any(e.finished for e in emissions[:-1])
        times = [e.time_s for e in emissions]
        assert times == sorted(times)
        first.append(times[0])
        finish.append(times[-1])
        if "scheduler" in extra:
            # Streamed in chunks: the first token alone, then at most 8 tokens an emission
            # (SGLang's prefill steps decode nothing, so 8 decode steps make a chunk).
            assert emissions[0].num_tokens == 1 and len(emissions) < OSL
            assert max(e.num_tokens for e in emissions) <= 8
    order = np.argsort(offline["request_id"])
    np.testing.assert_allclose(first, offline["first_token_s"][order], rtol=0, atol=1e-9)
    np.testing.assert_allclose(finish, offline["finish_s"][order], rtol=0, atol=1e-9)
    assert engine.sim.records.num_completed == N


def test_a_request_arrives_at_the_simulated_now_of_the_wall_clock():
    clock = FakeClock()
    engine = OnlineEngine(prepare(_scenario(), sessions=iter(())), 4.0, clock=clock)
    clock.t = 0.5
    stream = engine.submit(100, 3)
    assert stream.arrival_s == pytest.approx(2.0)
    assert engine.sim.next_event_time() >= 2.0
    assert engine.wall_at(engine.sim_now()) == pytest.approx(clock.t)


def test_advance_to_processes_only_due_events():
    clock = FakeClock()
    engine = OnlineEngine(prepare(_scenario(), sessions=iter(())), 1.0, clock=clock)
    stream = engine.submit(ISL, OSL)
    sim = engine.sim
    first = sim.next_event_time()
    sim.advance_to(first)
    assert sim.now == first
    later = sim.next_event_time()
    assert later is not None and later >= first
    sim.advance_to(later - 1e-9)
    assert sim.next_event_time() == later
    sim.advance_to(1e9)
    assert sim.next_event_time() is None and stream.sent == OSL


def test_prompts_count_token_ids_exactly_and_estimate_text():
    counter = PromptCounter(block_size=16)
    ids = list(range(40))
    p = counter.token_ids(ids)
    assert (p.num_tokens, len(p.hash_ids), p.exact) == (40, 2, True)
    same_prefix = counter.token_ids(ids[:32] + [7] * 20)
    assert same_prefix.hash_ids[:2] == p.hash_ids
    other = counter.token_ids([1] + ids[1:])
    assert other.hash_ids[0] != p.hash_ids[0] and other.hash_ids[1] != p.hash_ids[1]
    text = counter.text("x" * 400)
    assert (text.num_tokens, text.exact) == (100, False)
    one = [{"role": "user", "content": "x" * 40}]
    # The messages as text ("<|user|>\n" + 40 chars: 49 chars, 12 tokens by estimate), then
    # Llama-3-style wrappers (5) and priming (4).
    assert counter.chat(one).num_tokens == 12 + 5 + 4
    # A model family servesim knows: its template around the first message (gpt-oss: 67),
    # 5 for each further one. Two messages: 9 + 40 + 1 + 14 + 40 = 104 chars, 26 tokens.
    harmony = PromptCounter(block_size=16, template_tokens=67)
    assert harmony.chat(one).num_tokens == 12 + 67
    two = [*one, {"role": "assistant", "content": "y" * 40}]
    assert harmony.chat(two).num_tokens == 26 + 67 + 5


def test_filler_text_is_deterministic_one_word_a_token():
    assert filler_text(3, 0, 5) == filler_text(3, 0, 2) + filler_text(3, 2, 3)
    assert len(filler_text(0, 0, 7).split()) == 7


def test_every_simulate_option_is_served_or_named_as_not():
    """A new `simulate` option must be mapped by `serve` or listed as meaningless for it (else
    `serve` would accept it and silently ignore it)."""
    import inspect

    from servesim.cli import serve_cmd
    from servesim.cli.simulate_cmd import simulate_command

    handled = set(serve_cmd.SCENARIO_FIELDS) | set(serve_cmd.OTHER_OPTIONS)
    handled |= {option for fields in serve_cmd.SECTIONS.values() for option in fields}
    served = set(inspect.signature(simulate_command).parameters) - set(serve_cmd.NOT_SERVED)
    assert served <= handled, sorted(served - handled)


@pytest.mark.parametrize(
    ("prompt", "words"),
    [([], "prompt cannot be empty"), ([5, -1, 3], "token ids must be >= 0 (got -1)")],
)
def test_an_empty_or_negative_token_prompt_is_a_400_naming_it(prompt, words):
    from servesim.serve.protocol import ApiError, parse_generation

    with pytest.raises(ApiError, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        parse_generation({"prompt": prompt, "max_tokens": 4}, False, PromptCounter(16))
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
         "messages", "messages[0].content must be a string or a list"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages", "messages[0].content"),
        ({"prompt": [9223372036854775808]}, "prompt", "is out of vocabulary"),
        ({"prompt": [10**12]}, "prompt", "Token id 1000000000000 is out of vocabulary"),
        ({"prompt": [1.5, 2]}, "prompt", "prompt must be a string or a list of token ids"),
        ({"prompt": [1], "temperature": -1}, "temperature", "at least 0"),
        ({"prompt": [1], "temperature": "hot"}, "temperature", "must be a number"),
        ({"prompt": [1], "top_p": 2}, "top_p", "in (0, 1.0]"),
        ({"prompt": [1], "model": 5}, "model", "model must be a string"),
        ({"prompt": [1], "stream": True, "stream_options": "x"}, "stream_options", "object"),
    ],
)  # fmt: skip
def test_bodies_vllm_refuses_are_a_400_naming_the_field(body, param, words):
    from servesim.serve.protocol import ApiError, parse_generation

    counter = PromptCounter(16, vocab_size=128256)
    with pytest.raises(ApiError) as err:
        parse_generation({"max_tokens": 4, **body}, "messages" in body, counter)
    assert err.value.status == 400 and err.value.param == param
    assert words in str(err.value)


def test_min_tokens_past_the_context_is_a_400_and_a_draw_cut_there_stops_for_length():
    from servesim.serve.app import build_served
    from servesim.serve.protocol import ApiError, parse_generation

    served = build_served(_scenario(max_model_len=2048))
    near = {"prompt": list(range(2000)), "min_tokens": 100}
    with pytest.raises(ApiError, match="min_tokens must be less than or equal to max_tokens=48"):
        served.output_length(parse_generation(near, False, served.counter))
    # (a draw of at least 48 tokens is cut at the window: "length", as vLLM's max_tokens)
    tokens, reason = served.output_length(
        parse_generation({**near, "min_tokens": 48}, False, served.counter)
    )
    assert (tokens, reason) == (48, "length")


def test_metrics_series_exist_at_zero_before_any_request():
    pytest.importorskip("prometheus_client")
    from servesim.serve.app import build_served

    text = build_served(_scenario()).metrics.exposition().decode()
    for line in (
        'vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B"} 0.0',
        'vllm:num_preemptions_total{engine="0",model_name="meta-llama/Llama-3.1-8B"} 0.0',
        'vllm:request_success_total{engine="0",finished_reason="abort",'
        'model_name="meta-llama/Llama-3.1-8B"} 0.0',
    ):
        assert line in text, text


# --- a client that goes away (vLLM aborts its request) -----------------------------------


def _online(**extra) -> tuple[OnlineEngine, FakeClock]:
    clock = FakeClock()
    engine = OnlineEngine(prepare(_scenario(**extra), sessions=iter(())), 1.0, clock=clock)
    return engine, clock


def _finish_times(streams) -> list[float]:
    out = []
    for s in streams:
        emissions = [s.emissions.get_nowait() for _ in range(s.emissions.qsize())]
        out.append(emissions[-1].time_s if emissions and emissions[-1].finished else None)
    return out


def test_an_aborted_waiting_request_leaves_no_trace_on_the_others():
    """One sequence at a time: the second request waits; its client goes away before it is
    scheduled. The first finishes as it does alone, the second never runs, and it is counted
    as skipped (``aborted``)."""
    alone, _ = _online(scheduler={"max_num_seqs": 1})
    a = alone.submit(ISL, OSL)
    alone._advance(1e9)
    engine, _ = _online(scheduler={"max_num_seqs": 1})
    first, second = engine.submit(ISL, OSL), engine.submit(ISL, OSL)
    instance = engine.sim.instances[0]
    while not (instance.waiting and instance.running):  # (both past the API server)
        engine._advance(engine.sim.next_event_time())
    assert len(instance.waiting) == 1 and len(instance.running) == 1
    engine.abort(second)
    assert len(instance.waiting) == 0 and instance.num_outstanding == 1
    engine._advance(1e9)
    assert _finish_times([first]) == _finish_times([a])
    assert second.emissions.qsize() == 0 and second.finish_reason == "abort"
    records = engine.sim.records
    assert records.num_completed == 1 and records.skipped_reasons == {"aborted": 1}
    assert instance.kv.num_held == 0


def test_an_aborted_running_request_frees_its_room_after_the_step_in_flight():
    """Two requests decode together; one client goes away mid-decode: the step in flight
    completes with both, then the request leaves (its KV blocks freed), so the other decodes
    alone, sooner than beside it."""
    both, _ = _online()
    kept_together = both.submit(ISL, OSL)
    both.submit(ISL, OSL)
    both._advance(1e9)
    engine, clock = _online()
    kept, gone = engine.submit(ISL, OSL), engine.submit(ISL, OSL)
    instance = engine.sim.instances[0]
    while gone.sent < 5:
        engine._advance(engine.sim.next_event_time())
    clock.t = engine.sim.now
    assert instance.busy and len(instance.running) == 2
    held = instance.kv.num_held
    engine.abort(gone)
    assert len(instance.running) == 2 and instance.aborting == {gone.index}  # (step in flight)
    engine._advance(engine.sim.next_event_time())
    assert len(instance.running) == 1 and instance.kv.num_held < held
    engine._advance(1e9)
    assert _finish_times([kept])[0] < _finish_times([kept_together])[0]
    assert kept.sent == OSL and 5 <= gone.sent < OSL
    assert engine.sim.records.skipped_reasons == {"aborted": 1}
    assert instance.kv.num_held == 0 and instance.num_outstanding == 0
    # The run's inter-token gaps are those the clients heard: none for the token the step in
    # flight made for the request that was gone by its end (vLLM drops that output).
    _, weights = engine.sim.records.itl_pairs()
    assert weights.sum() == (OSL - 1) + (gone.sent - 1)


@pytest.mark.parametrize(
    "extra",
    [{}, {"engine": "sglang", "scheduler": {"stream_interval": 4}}],
    ids=["vllm", "sglang-stream-interval-4"],
)
def test_an_aborted_request_s_gaps_end_with_what_its_client_heard(extra):
    """The run's inter-token gaps are one per chunk a client received after its first: the
    token the step in flight made for a request whose client left is never heard (vLLM's
    output processor drops it; the stream gets nothing more), so it adds no gap, with a
    stream interval too."""
    for later in range(5):  # (abandoned at successive steps: some send a chunk, some not)
        engine, _ = _online(**extra)
        kept, gone = engine.submit(ISL, OSL), engine.submit(ISL, OSL)
        while gone.sent < 9:
            engine._advance(engine.sim.next_event_time())
        for _ in range(later):
            engine._advance(engine.sim.next_event_time())
        engine.abort(gone)
        engine._advance(1e9)
        chunks = [s.emissions.qsize() for s in (kept, gone)]
        assert kept.sent == OSL and gone.sent < OSL and min(chunks) > 2
        _, weights = engine.sim.records.itl_pairs()
        assert weights.sum() == (chunks[0] - 1) + (chunks[1] - 1), later


def test_a_request_aborted_in_the_api_server_is_dropped_on_arrival():
    engine, _ = _online()
    stream = engine.submit(ISL, OSL)
    assert not engine.sim.instances[0].waiting  # (the API server still has it)
    engine.abort(stream)
    engine._advance(1e9)
    assert engine.sim.records.num_completed == 0
    assert engine.sim.records.skipped_reasons == {"aborted": 1}
    assert engine.sim.instances[0].num_outstanding == 0


def test_an_abort_after_the_last_token_changes_nothing():
    engine, _ = _online()
    stream = engine.submit(ISL, 3)
    engine._advance(1e9)
    engine.abort(stream)
    assert stream.finish_reason == "length"
    assert engine.sim.records.num_completed == 1 and engine.sim.records.num_skipped == 0


def test_an_abort_at_any_instant_of_a_disaggregated_run_leaves_it_clean():
    """Prefill/decode disaggregation: a request abandoned at each instant something happens
    (in the API server, on the prefill instance, in the KV transfer, on the decode instance,
    after it finished) is dropped where it is; the other request always finishes, every
    instance (decode ones included) ends empty with all its KV blocks back."""
    probe, _ = _online(disaggregate="1:1")
    probe.submit(ISL, OSL)
    probe.submit(ISL, OSL)
    instants = []
    while (t := probe.sim.next_event_time()) is not None:
        instants.append(t)
        probe._advance(t)
    outcomes = set()
    for t in instants:
        engine, clock = _online(disaggregate="1:1")
        kept, gone = engine.submit(ISL, OSL), engine.submit(ISL, OSL)
        engine._advance(t)
        clock.t = engine.sim.now
        engine.abort(gone)
        engine._advance(1e9)
        records = engine.sim.records
        assert kept.sent == OSL
        assert records.num_completed + records.num_skipped == 2
        outcome = (records.num_completed, gone.sent == OSL)
        outcomes.add(outcome)
        if outcome == (2, False):
            # (Its last step was in flight when the client left: it finished in the engine,
            # as in vLLM, whose engine core applies the abort after that step.)
            cols = records.request_columns()
            finish = cols["finish_s"][cols["session_id"] == gone.index]
            assert len(finish) == 1 and finish[0] > t
        for inst in engine.sim.all_instances():
            assert not inst.waiting and len(inst.running) == 0 and inst.num_outstanding == 0
            inst.kv.check_invariants()
            assert inst.kv.num_free_blocks == inst.kv.num_blocks, inst.role
    # (aborted on the way, and finished before the client left: both happened)
    assert {(1, False), (2, True)} <= outcomes <= {(1, False), (2, True), (2, False)}
