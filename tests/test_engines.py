"""Engine profiles: multi-step rounds, prefill-first steps, synchronous host work, CUDA-graph
padding, API-server latency, and each named profile's effect through the real simulator."""

from dataclasses import replace

import numpy as np
import pytest
from engine_factories import LinearCost, by_request, make_session, run_sessions

from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.engine.loop import ApiLatency
from servesim.engines import (
    ENGINES,
    PROFILES,
    SGLANG04_TRITON_MLA_PROMPT_SCALE,
    attention_backend,
    engine_profile,
    flashinfer_decode_cuda_cores,
    host_overlap_of,
    mla_decode_rows,
    mla_fused_down_proj,
    mla_prompt_absorb,
    mla_prompt_attention_scale,
    scheduler_defaults,
)
from servesim.errors import ServesimError
from servesim.fleet import build_fleet
from servesim.hardware import load_hardware
from servesim.model import load_model
from servesim.run import simulate
from servesim.scenario import build_scenario

BASE = 0.01  # LinearCost: a decode step of a few rows takes ~10 ms


# --- multi-step scheduling -------------------------------------------------------------------


def test_a_round_runs_n_decode_steps_and_delivers_its_tokens_together():
    records, _, _ = run_sessions(
        [make_session(0, 0.0, 32, 9)], num_scheduler_steps=4, fast_forward=False
    )
    steps = records.step_columns()
    # prefill (first token), then rounds of 4 decode steps: 8 more tokens = 2 rounds.
    assert steps["num_steps"].tolist() == [1, 4, 4]
    values, weights = records.itl_pairs()
    gaps = np.repeat(values, weights)
    # The engine makes the request's output once per round: its 4 tokens reach the client as
    # one chunk, so the client records one gap per round (vLLM 0.6.0 with 10-step rounds:
    # median ITL ~10 x TPOT, LambdaLabsML/vllm-benchmark benchmark_v0.md), none of zero.
    assert len(gaps) == 2
    assert gaps.tolist() == pytest.approx(steps["duration_s"][1:].tolist(), rel=1e-12)
    r = by_request(records)
    # Every token is still delivered and counted (TPOT divides by them, not by the chunks).
    assert r["output_tokens"][0] == 9


def test_a_request_arriving_mid_round_waits_for_the_round_to_end():
    sessions = [make_session(0, 0.0, 32, 40), make_session(1, 0.015, 32, 2)]
    records, _, _ = run_sessions(sessions, num_scheduler_steps=8)
    steps = records.step_columns()
    round_end = steps["start_s"][1] + steps["duration_s"][1]
    assert steps["num_steps"][1] == 8
    r = by_request(records)
    # The second request is scheduled only when the 8-step round ends, not at its arrival.
    assert r["first_scheduled_s"][1] == pytest.approx(round_end, rel=1e-12)
    # With single-step scheduling it is scheduled at the first step boundary after arrival.
    single, _, _ = run_sessions(sessions, num_scheduler_steps=1)
    assert by_request(single)["first_scheduled_s"][1] < round_end - 5 * BASE


def test_a_row_finishing_mid_round_keeps_its_slot_until_the_round_ends():
    sessions = [make_session(0, 0.0, 32, 3), make_session(1, 0.0, 32, 20)]
    records, _, _ = run_sessions(sessions, num_scheduler_steps=8)
    r = by_request(records)
    assert r["output_tokens"].tolist() == [3, 20]
    steps = records.step_columns()
    # Request 0 needs 2 more tokens after its first, but the round computes 8 steps for both.
    assert steps["num_steps"][1] == 8
    assert r["finish_s"][0] == pytest.approx(steps["start_s"][1] + steps["duration_s"][1])
    assert steps["decode_tokens"][1] == 2 + 8


def test_rounds_conserve_tokens_and_kv_blocks():
    sessions = [make_session(i, 0.003 * i, 20 + 7 * i, 5 + 3 * i) for i in range(12)]
    records, instances, _ = run_sessions(sessions, num_scheduler_steps=6, num_blocks=400)
    r = by_request(records)
    assert r["output_tokens"].tolist() == [5 + 3 * i for i in range(12)]
    assert instances[0].kv.num_free_blocks == 400


# --- prefill-first scheduling ----------------------------------------------------------------


def test_prefill_first_runs_prompt_steps_without_decodes():
    sessions = [make_session(0, 0.0, 64, 30), make_session(1, 0.05, 64, 5)]
    records, _, _ = run_sessions(sessions, policy="prefill_first", fast_forward=False)
    steps = records.step_columns()
    prompt_steps = steps["prefill_tokens"] > 0
    assert prompt_steps.sum() == 2
    # The second prompt's step carries no decode of the first request.
    assert (steps["decode_tokens"][prompt_steps] == 0).all()
    mixed, _, _ = run_sessions(sessions, policy="vllm", fast_forward=False)
    m = mixed.step_columns()
    assert ((m["prefill_tokens"] > 0) & (m["decode_tokens"] > 0)).any()


def test_prefill_first_continues_a_chunked_prompt_before_decoding():
    sessions = [make_session(0, 0.0, 16, 20), make_session(1, 0.02, 300, 3)]
    records, _, _ = run_sessions(
        sessions, policy="prefill_first", max_num_batched_tokens=128, fast_forward=False
    )
    steps = records.step_columns()
    chunks = steps["prefill_tokens"][steps["prefill_tokens"] > 0].tolist()
    assert chunks[1:] == [128, 128, 44]
    assert (steps["decode_tokens"][steps["prefill_tokens"] > 0] == 0).all()


# --- CUDA-graph padding ----------------------------------------------------------------------


def test_a_decode_batch_pays_for_the_captured_graph_size():
    def pad(b):
        return 8 if b <= 8 else b

    sessions = [make_session(i, 0.0, 16, 4) for i in range(3)]
    cost = LinearCost(per_token=1e-3, per_context=0)
    padded, _, _ = run_sessions(sessions, graph_batch=pad, cost=cost)
    plain, _, _ = run_sessions(sessions, cost=cost)
    decode_padded = padded.step_columns()["duration_s"][1:]
    decode_plain = plain.step_columns()["duration_s"][1:]
    # 8 rows instead of 3 at 1 ms a row per step.
    assert (decode_padded - decode_plain).sum() == pytest.approx(5e-3 * 3, rel=1e-9)


def test_graph_batch_rounds_up_to_the_captured_sizes():
    v = PROFILES["vllm"]
    assert [v.graph_batch(b) for b in (1, 3, 5, 9, 256, 257, 512, 600)] == [
        1, 4, 8, 16, 256, 272, 512, 600,
    ]  # fmt: skip
    assert PROFILES["sglang"].graph_batch(10) == 12
    assert PROFILES["trtllm"].graph_batch(37) == 37
    # The sizes are searched by bisection: a profile must list them ascending.
    with pytest.raises(ValueError, match="must ascend"):
        replace(v, cuda_graph_sizes=(1, 8, 4))


# --- API-server latency ----------------------------------------------------------------------


def test_api_latency_delays_scheduling_and_every_token_alike():
    api = ApiLatency(request_s=0.004, per_input_token_s=1e-5, stream_s=0.002)
    sessions = [make_session(0, 1.0, 100, 5)]
    with_api, _, _ = run_sessions(sessions, api=api)
    without, _, _ = run_sessions(sessions)
    a, b = by_request(with_api), by_request(without)
    before = 0.004 + 100 * 1e-5
    assert a["first_scheduled_s"][0] == pytest.approx(b["first_scheduled_s"][0] + before)
    ttft = lambda r: r["first_token_s"][0] - r["arrival_s"][0]  # noqa: E731
    assert ttft(a) == pytest.approx(ttft(b) + before + 0.002, rel=1e-12)
    assert a["finish_s"][0] - b["finish_s"][0] == pytest.approx(before + 0.002, rel=1e-9)
    assert np.allclose(with_api.itl_pairs()[0], without.itl_pairs()[0])


def test_a_follow_up_turn_starts_after_the_client_received_the_answer():
    from servesim.workload.session import RequestSpec, Session

    turns = (RequestSpec(50, 3, (), 16), RequestSpec(60, 3, (), 16))
    session = Session(0, 0.0, turns, think_times_s=(0.5,))
    api = ApiLatency(stream_s=0.01)
    records, _, _ = run_sessions([session], api=api)
    r = by_request(records)
    assert r["arrival_s"][1] == pytest.approx(r["finish_s"][0] + 0.5, rel=1e-12)


def _tiny_cost():
    # Steps far shorter than the API server's request time: a request is scheduled the moment
    # it reaches the scheduler.
    return LinearCost(base=1e-9, per_token=1e-12, per_context=0.0)


def test_the_api_server_takes_a_burst_one_request_at_a_time():
    api = ApiLatency(request_s=0.004)
    burst = [make_session(i, 0.0, 16, 1) for i in range(4)]
    records, _, _ = run_sessions(burst, api=api, cost=_tiny_cost())
    reached = by_request(records)["first_scheduled_s"]
    assert reached == pytest.approx([0.004, 0.008, 0.012, 0.016], abs=1e-9)
    # One API server per instance taking requests: two instances halve the spread.
    records, _, _ = run_sessions(burst, api=api, cost=_tiny_cost(), num_instances=2)
    reached = np.sort(by_request(records)["first_scheduled_s"])
    assert reached == pytest.approx([0.004, 0.004, 0.008, 0.008], abs=1e-9)


def test_an_asyncio_server_begins_every_request_of_a_burst_before_it_finishes_one():
    # 0.4 of each request's 10 ms before the handler's first await: for a burst of 5 the
    # first request reaches the scheduler after 5 x 4 ms + 6 ms, the next ones 6 ms apart.
    api = ApiLatency(request_s=0.010, before_await_share=0.4)
    burst = [make_session(i, 0.0, 16, 1) for i in range(5)]
    records, _, _ = run_sessions(burst, api=api, cost=_tiny_cost())
    reached = by_request(records)["first_scheduled_s"]
    assert reached == pytest.approx([0.026, 0.032, 0.038, 0.044, 0.050], abs=1e-9)
    # The last one reaches it when it would in one piece (the work is the same) ...
    one_piece, _, _ = run_sessions(burst, api=ApiLatency(request_s=0.010), cost=_tiny_cost())
    assert by_request(one_piece)["first_scheduled_s"][-1] == pytest.approx(0.050, abs=1e-9)
    # ... and two servers split the burst: 3 begun by one (12 ms), 2 by the other (8 ms),
    # then each finishes its own 6 ms apart.
    records, _, _ = run_sessions(burst, api=api, cost=_tiny_cost(), num_instances=2)
    reached = np.sort(by_request(records)["first_scheduled_s"])
    assert reached == pytest.approx([0.014, 0.018, 0.020, 0.024, 0.030], abs=1e-9)


def test_requests_sent_one_at_a_time_see_no_staging():
    api = ApiLatency(request_s=0.010, before_await_share=0.4)
    spread = [make_session(i, 0.1 * i, 16, 1) for i in range(4)]
    records, _, _ = run_sessions(spread, api=api, cost=_tiny_cost())
    r = by_request(records)
    assert r["first_scheduled_s"] - r["arrival_s"] == pytest.approx([0.010] * 4, abs=1e-9)


def test_a_lone_turn_taken_at_once_is_the_staged_take_of_it():
    # A turn alone at an idle server (nothing sent or begun) skips the sent queue: the
    # ARRIVAL event is the one the API_TAKE handler makes of it, to the bit, also after a
    # busy spell (the server's clock past the send).
    from engine_factories import build_simulation

    from servesim.engine.loop import EventKind

    api = ApiLatency(request_s=0.0123, per_input_token_s=3.1e-6, before_await_share=0.4)
    for busy_until in (0.0, 0.7):
        events = []
        for take_now in (True, False):
            session = make_session(0, 0.5, 333, 1)
            sim = build_simulation([session], api=api, cost=_tiny_cost())
            sim.now = 0.5
            sim._api_busy[0] = busy_until
            got = sim._arrival(session, 0, 0.5, take_now=take_now)
            if not take_now:  # (the staged route: an API_TAKE event, then its handler)
                assert [e.kind for e in got] == [EventKind.API_TAKE]
                assert not sim._api_taking[0] and len(sim._api_sent) == 1
                got = sim._api_take()
            assert [e.kind for e in got] == [EventKind.ARRIVAL] and sim._api_taking[0]
            events.append((got[0], sim._api_busy[0], len(sim._api_sent), len(sim._api_begun[0])))
        assert events[0] == events[1]
        assert events[0][0].time == max(0.5, busy_until) + api.request_seconds(333)


def test_a_send_during_a_burst_waits_behind_the_begun_requests():
    from servesim.workload.session import RequestSpec, Session

    api = ApiLatency(request_s=0.010, before_await_share=0.4)
    burst = [make_session(i, 0.0, 16, 1) for i in range(3)]
    # Sent at 15 ms, while the server finishes the burst's begun requests (first at 18 ms).
    late = Session(3, 0.015, (RequestSpec(16, 1, (), 16),))
    records, _, _ = run_sessions([*burst, late], api=api, cost=_tiny_cost())
    r = by_request(records)
    order = np.argsort(r["session_id"])
    reached = r["first_scheduled_s"][order]
    assert reached == pytest.approx([0.018, 0.024, 0.030, 0.040], abs=1e-9)


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_the_share_before_the_first_await_is_a_fraction(share):
    with pytest.raises(ValueError, match="before_await_share"):
        ApiLatency(request_s=0.01, before_await_share=share)


def test_python_api_servers_stage_a_burst_and_the_others_do_not():
    for name in ("vllm", "vllm-v0", "sglang", "trtllm-pytorch", "lmdeploy"):
        assert PROFILES[name].api_before_await_share == pytest.approx(0.4), name
    for name in ("trtllm", "gpt-fast"):
        assert PROFILES[name].api_before_await_share == 0.0, name


def test_a_later_send_does_not_hold_up_an_earlier_one_at_the_api_server():
    from servesim.workload.session import RequestSpec, Session

    # A's follow-up is known at ~0.004 s but sent at 1.0 s; B, sent at 0.9 s, must not wait
    # behind it.
    a = Session(0, 0.0, (RequestSpec(16, 1, (), 16), RequestSpec(16, 1, (), 16)),
                think_times_s=(1.0 - 0.004,))  # fmt: skip
    b = make_session(1, 0.9, 16, 1)
    records, _, _ = run_sessions([a, b], api=ApiLatency(request_s=0.004), cost=_tiny_cost())
    r = by_request(records)
    b_row = int(np.flatnonzero(r["session_id"] == 1)[0])
    assert r["first_scheduled_s"][b_row] == pytest.approx(0.904, abs=1e-6)


# --- synchronous host work -------------------------------------------------------------------


def test_synchronous_host_work_adds_to_the_step():
    model, hw = load_model("llama-3.1-8b"), load_hardware("H100")
    overlap = build_step_cost(model, hw, Parallelism(), CostParams())
    serial = build_step_cost(model, hw, Parallelism(), CostParams(host_overlap=False))
    new, ctx = np.ones(64), np.full(64, 1000)
    host = overlap.host_seconds_from_features(overlap.features(new, ctx))
    gpu = overlap.gpu_seconds_from_features(overlap.features(new, ctx))[0]
    over = CostParams().step_overhead_s
    assert overlap.step_seconds(new, ctx) == pytest.approx(max(gpu, host) + over, rel=1e-9)
    assert serial.step_seconds(new, ctx) == pytest.approx(gpu + host + over, rel=1e-9)


# --- profiles through the simulator ----------------------------------------------------------


def _run(engine, **fields):
    wl = {"num_requests": 64, "input_len": 512, "output_len": 128,
          "arrival": {"kind": "poisson", "rate": 8}}  # fmt: skip
    return simulate(build_scenario({"engine": engine, "workload": wl, **fields})).summary


def test_every_profile_runs_and_summary_echoes_the_engine():
    for name in ENGINES:
        s = _run(name)
        assert s["engine"] == name
        assert s["completed"] == 64


def test_vllm_v0_is_slower_per_token_than_v1_and_multi_step_recovers_most_of_it():
    v1, v0 = _run("vllm"), _run("vllm-v0")
    v0_steps = _run("vllm-v0", num_scheduler_steps=8)
    # V0's synchronous host work (~3 ms a step) adds to every decode step of an 8B on H100.
    assert v0["mean_tpot_ms"] > 1.2 * v1["mean_tpot_ms"]
    assert v0_steps["mean_tpot_ms"] < v0["mean_tpot_ms"]
    # Tokens arrive a round at a time: the client's median gap is a whole round of 8 steps.
    assert v0_steps["median_itl_ms"] > 4 * v0_steps["median_tpot_ms"]
    assert v0["median_itl_ms"] < 1.5 * v0["median_tpot_ms"]


def test_vllm_overlaps_host_work_from_0_14_or_with_async_scheduling():
    vllm, sglang = engine_profile("vllm"), engine_profile("sglang")
    # Async scheduling: a flag from 0.10, the default from 0.14 (vllm#27614).
    assert not host_overlap_of(vllm, "0.10.2", None)
    assert not host_overlap_of(vllm, "0.13.0", None)
    assert not host_overlap_of(vllm, "0.14.0rc1", None)
    assert host_overlap_of(vllm, "0.14", None) and host_overlap_of(vllm, "v0.15.1", None)
    assert host_overlap_of(vllm, None, None)  # the newest release
    assert host_overlap_of(vllm, "0.10.2", True) and not host_overlap_of(vllm, "0.14.0", False)
    assert host_overlap_of(sglang, "0.4.3", None)  # (no release rule: the profile's)
    # 0.14 leaves it off for non-EAGLE speculative decoding, unless the deployment turns it on
    # (vLLM config/vllm.py). Under pipeline parallelism it runs only from 0.15.0 (vllm#32359;
    # 0.10.2 and 0.14.0 refuse --async-scheduling with pp > 1): before, the host never
    # overlaps, whatever the flag says; the newest release (None) overlaps.
    assert not host_overlap_of(vllm, "0.14.0", None, pp=2)
    assert not host_overlap_of(vllm, "0.10.2", True, pp=2)
    assert host_overlap_of(vllm, "0.15.0", None, pp=2) and host_overlap_of(vllm, None, None, pp=4)
    assert host_overlap_of(vllm, "0.14.0", None, pp=1)
    assert host_overlap_of(sglang, "0.4.3", None, pp=2)  # (no such rule)
    assert not host_overlap_of(vllm, "0.15.0", None, speculative_method="ngram")
    assert not host_overlap_of(vllm, None, None, speculative_method="draft:meta-llama/Llama-3.2-1B")
    assert host_overlap_of(vllm, None, None, speculative_method="eagle")
    assert host_overlap_of(vllm, None, True, speculative_method="ngram")
    # SGLang's overlap scheduler is off with any speculative decoding.
    assert not host_overlap_of(sglang, None, None, speculative_method="eagle")
    assert host_overlap_of(engine_profile("trtllm"), None, None, speculative_method="ngram")
    assert _schedules_ahead("vllm") and not _schedules_ahead("vllm", pp=2)  # (see fleet.py)
    assert not _schedules_ahead(
        "vllm", speculative={"method": "ngram", "num_speculative_tokens": 3}
    )
    # Through the simulator: every decode step of 0.11.0 pays the host's time on top.
    sync, flagged = (
        _run("vllm", engine_version="0.11.0"),
        _run("vllm", engine_version="0.11.0", async_scheduling=True),
    )
    newest = _run("vllm")
    assert flagged["mean_tpot_ms"] == newest["mean_tpot_ms"]
    host_ms = 1e3 * (CostParams().host_step_s + CostParams().host_per_seq_s)
    assert sync["median_itl_ms"] - flagged["median_itl_ms"] > host_ms


def test_cpp_runtimes_have_less_host_overhead_than_python_engines():
    trt, v1 = _run("trtllm"), _run("vllm")
    assert trt["mean_tpot_ms"] < v1["mean_tpot_ms"]
    assert trt["mean_api_ttft_ms"] < v1["mean_api_ttft_ms"]


def test_no_api_server_reports_engine_time_only():
    on, off = _run("vllm"), _run("vllm", api_server=False)
    assert off["mean_api_ttft_ms"] == 0.0
    assert on["mean_ttft_ms"] - off["mean_ttft_ms"] == pytest.approx(
        on["mean_api_ttft_ms"], rel=0.05
    )
    assert 0 < on["api_ttft_fraction"] < 1


def test_profile_defaults_fill_only_the_scheduler_fields_left_out():
    sc = build_scenario({"engine": "sglang"})
    assert sc.scheduler.policy == "prefill_first"
    assert sc.scheduler.max_num_seqs == PROFILES["sglang"].max_num_seqs
    sc = build_scenario({"engine": "sglang", "scheduler": {"max_num_seqs": 7, "policy": "vllm"}})
    assert (sc.scheduler.max_num_seqs, sc.scheduler.policy) == (7, "vllm")
    # V0 with chunked prefill turned on is V0's chunked scheduler (decodes first).
    chunked = scheduler_defaults(PROFILES["vllm-v0"], {"enable_chunked_prefill": True})
    assert chunked["policy"] == "sarathi"


def test_bad_engine_fields_are_one_line_errors():
    with pytest.raises(ServesimError, match="engine: unknown engine 'vlm'"):
        build_scenario({"engine": "vlm"})
    with pytest.raises(ServesimError, match="num_scheduler_steps: multi-step .* vllm-v0"):
        build_scenario({"engine": "vllm", "num_scheduler_steps": 4})
    with pytest.raises(ServesimError, match="unknown engine"):
        engine_profile("tgi")


def test_every_profile_cites_its_coefficients():
    for p in PROFILES.values():
        assert {"scheduler", "host", "api"} <= set(p.sources), p.name
        assert all(len(text) > 30 for text in p.sources.values())


def test_which_steps_run_under_cuda_graphs():
    v1, v0, trt, fast = (PROFILES[n] for n in ("vllm", "vllm-v0", "trtllm", "gpt-fast"))
    # V1: piecewise graphs for any step up to 512 tokens, decode batches up to 512 sequences.
    assert v1.graphed(False, 512, 3) and not v1.graphed(False, 513, 3)
    assert v1.graphed(True, 400, 400) and not v1.graphed(True, 600, 600)
    # V0 / SGLang: a step with prompt tokens runs eagerly, however small.
    assert not v0.graphed(False, 17, 2) and v0.graphed(True, 256, 256)
    assert not v0.graphed(True, 300, 300)  # above the largest captured batch
    # A C++ runtime never issues kernels from Python; gpt-fast compiles every decode batch.
    assert trt.graphed(False, 100_000, 1) and fast.graphed(True, 4096, 4096)


def test_prompt_steps_pay_the_cpu_kernel_issue_under_eager_engines():
    from servesim.cost import CostParams as Params

    wl = {"num_requests": 1, "input_len": 200, "output_len": 2, "arrival": {"kind": "burst"}}
    model, hw = load_model("llama-3.1-70b"), load_hardware("H100")
    fields = {"model": "llama-3.1-70b", "tp": 4, "workload": wl, "api_server": False}
    v0 = simulate(build_scenario({**fields, "engine": "vllm-v0"})).summary
    p = PROFILES["vllm-v0"]
    params = Params(kernel_tables=True, custom_allreduce=True, host_overlap=False,
                    host_step_s=p.host_step_s, host_per_seq_s=p.host_per_seq_s,
                    host_per_token_s=p.host_per_token_s,
                    kernel_backend=p.kernel_backend)  # fmt: skip
    eager = build_step_cost(model, hw, Parallelism(tp=4), replace(params, cuda_graphs=False))
    graph = build_step_cost(model, hw, Parallelism(tp=4), params)
    prompt, empty = np.array([200]), np.array([0])
    assert v0["mean_ttft_ms"] == pytest.approx(1000 * eager.step_seconds(prompt, empty), rel=1e-9)
    # ~1,000 kernels issued 30 µs apart: the eager prefill of a short prompt is far slower.
    assert eager.step_seconds(prompt, empty) > 1.3 * graph.step_seconds(prompt, empty)


def test_vllm_v1_sizes_its_batch_by_the_gpu_and_the_usage_context():
    from servesim.engines import vllm_v1_batch_defaults

    gib = 2**30
    # vLLM arg_utils: >= 70 GiB and not an A100 → 8192 (server) / 16384 (LLM class), 1024 seqs.
    assert vllm_v1_batch_defaults(79.6 * gib, "H100", True) == (8192, 1024)
    assert vllm_v1_batch_defaults(79.6 * gib, "H100", False) == (16384, 1024)
    assert vllm_v1_batch_defaults(80 * gib, "A100-80GB", True) == (2048, 256)
    assert vllm_v1_batch_defaults(80 * gib, "A100-80GB", False) == (8192, 256)
    assert vllm_v1_batch_defaults(45 * gib, "L40S", True) == (2048, 256)
    h100 = build_scenario({"hardware": "H100"}).scheduler
    assert (h100.max_num_batched_tokens, h100.max_num_seqs) == (8192, 1024)
    a100 = build_scenario({"hardware": "A100-80GB"}).scheduler
    assert (a100.max_num_batched_tokens, a100.max_num_seqs) == (2048, 256)
    offline = build_scenario({"hardware": "H200", "api_server": False}).scheduler
    assert offline.max_num_batched_tokens == 16384
    given = build_scenario({"hardware": "A100-80GB", "scheduler": {"max_num_seqs": 64}}).scheduler
    assert (given.max_num_batched_tokens, given.max_num_seqs) == (2048, 64)
    # By release (0.8.0-0.8.5, 0.9.0 wheels): 0.8.5 gave the 80 GB A100 the larger values;
    # 0.8.0-0.8.4 only GPUs named H100/H200 (a B200 took 2048), 1024 sequences everywhere
    # before 0.8.4.
    assert vllm_v1_batch_defaults(80 * gib, "A100-80GB", True, "0.8.5") == (8192, 1024)
    assert vllm_v1_batch_defaults(80 * gib, "A100-80GB", True, "0.9.0") == (2048, 256)
    assert vllm_v1_batch_defaults(178 * gib, "B200", True, "0.8.3") == (2048, 1024)
    assert vllm_v1_batch_defaults(178 * gib, "B200", True, "0.8.4") == (2048, 256)
    assert vllm_v1_batch_defaults(79.6 * gib, "H100-PCIe", True, "0.8.0") == (8192, 1024)
    old = build_scenario({"hardware": "A100-80GB", "engine_version": "0.8.5"}).scheduler
    assert (old.max_num_batched_tokens, old.max_num_seqs) == (8192, 1024)
    # Engines with fixed defaults keep them on any GPU.
    v0 = build_scenario({"hardware": "A100-80GB", "engine": "vllm-v0", "max_model_len": 8192})
    v0 = v0.scheduler  # (a short window: see the long-context rule below)
    assert (v0.max_num_batched_tokens, v0.max_num_seqs) == (8192, 256)


def test_sglang_chunks_prompts_by_gpu_memory():
    from servesim.engines import sglang_batch_defaults

    gib = 2**30
    assert sglang_batch_defaults(22 * gib, "A10G", True) == (2048, 4096)
    assert sglang_batch_defaults(80 * gib, "H100", True) == (8192, 4096)
    assert sglang_batch_defaults(131 * gib, "H200", True) == (8192, 4096)
    assert sglang_batch_defaults(178 * gib, "B200", True) == (16384, 4096)
    s = build_scenario({"engine": "sglang", "hardware": "MI300X"}).scheduler
    assert (s.max_num_batched_tokens, s.max_num_seqs) == (16384, 4096)


def test_sglang_captures_decode_graphs_by_gpu_memory_and_tp():
    from servesim.engines import sglang_graph_sizes_by_gpu

    gib = 2**30
    h100_tp1 = sglang_graph_sizes_by_gpu(80 * gib, 1)
    assert h100_tp1[:6] == (1, 2, 4, 8, 12, 16) and h100_tp1[-1] == 256
    assert sglang_graph_sizes_by_gpu(80 * gib, 8)[-1] == 512
    assert sglang_graph_sizes_by_gpu(180 * gib, 1)[-1] == 512
    # Five tiers from 0.5.3 (0.5.3-0.5.9 wheels): T4 8; A10G/L4 24 (16 before 0.5.5), 80 from
    # TP 4; A100-40GB/L40S 32, 160; then 256/512 and 512.
    assert sglang_graph_sizes_by_gpu(15 * gib, 1)[-1] == 8
    assert sglang_graph_sizes_by_gpu(22 * gib, 1)[-1] == 24
    assert sglang_graph_sizes_by_gpu(22 * gib, 1, "0.5.4")[-1] == 16
    assert sglang_graph_sizes_by_gpu(22 * gib, 4)[-1] == 80
    assert sglang_graph_sizes_by_gpu(45 * gib, 1)[-1] == 32
    assert sglang_graph_sizes_by_gpu(45 * gib, 4)[-1] == 160
    # 0.5.0-0.5.2 (0.5.2 wheel): 1, 2, 4, 8, 16…160 by 8, to 256 over 90 GiB, 8 or 80 under 35.
    assert sglang_graph_sizes_by_gpu(80 * gib, 8, "0.5.2") == (1, 2, 4, 8, *range(16, 161, 8))
    assert sglang_graph_sizes_by_gpu(140 * gib, 1, "0.5.2")[-1] == 256
    assert sglang_graph_sizes_by_gpu(22 * gib, 1, "0.5.2") == (1, 2, 4, 8)
    # The 0.4 profile keeps that release's sizes (1, 2, 4, multiples of 8 up to 160; 8 or 80
    # under 25,000 MiB) and 8192-token chunks (2048 under 25,000 MiB): 0.4.0-0.4.9 wheels.
    old = engine_profile("sglang-0.4")
    assert old.for_gpu(80 * gib, 8).cuda_graph_sizes == (1, 2, 4, *range(8, 161, 8))
    assert old.for_gpu(22 * gib, 1).cuda_graph_sizes == (1, 2, 4, 8)
    assert old.for_gpu(22 * gib, 4).cuda_graph_sizes[-1] == 80
    assert engine_profile("sglang").for_gpu(80 * gib, 8).cuda_graph_sizes[-1] == 512
    # The prefill chunk of 0.5.3 on: 4,096 tokens on a 35-60 GiB GPU (8,192 before).
    l40s = build_scenario({"engine": "sglang", "hardware": "L40S"}).scheduler
    assert l40s.max_num_batched_tokens == 4096
    old_l40s = {"engine": "sglang", "engine_version": "0.5.2", "hardware": "L40S"}
    assert build_scenario(old_l40s).scheduler.max_num_batched_tokens == 8192
    b200 = build_scenario({"engine": "sglang-0.4", "hardware": "B200"}).scheduler
    assert b200.max_num_batched_tokens == 8192
    l4 = build_scenario({"engine": "sglang-0.4", "hardware": "L4"}).scheduler
    assert l4.max_num_batched_tokens == 2048


def test_sglang_picks_its_memory_fraction_by_release_gpu_and_split():
    from servesim.engines import sglang04_mem_fraction_static, sglang_mem_fraction_static
    from servesim.scenario import build_scenario

    h100, h200 = 81559 * 2**20, 143771 * 2**20  # torch's total memory, MiB
    # 0.5.3+: reserve 512 + 1.5 × 8192 + 2 × 256 + 1024/8 = 13,440 MiB on one H100.
    assert sglang_mem_fraction_static(h100, 8192, 256, 1, 1, 1) == round(1 - 13440 / 81559, 3)
    # TP8 on H200: 512 + 12,288 + 1,024 + 1,024 = 14,848 MiB.
    assert sglang_mem_fraction_static(h200, 8192, 512, 8, 1, 1) == round(1 - 14848 / 143771, 3)
    # DP attention over 8 ranks adds 3 × 512 × 8 and, above 300 sequences, 1.5 × 512 × 8.
    dp = 14848 + 12288 + 6144
    assert sglang_mem_fraction_static(h200, 8192, 512, 8, 1, 8) == round(1 - dp / 143771, 3)
    # A big GPU keeps at least 10 GiB back.
    assert sglang_mem_fraction_static(h200, 2048, 8, 1, 1, 1) == round(1 - 10240 / 143771, 3)
    # 0.5.0-0.5.2 and 0.5.3rc0 (their wheels): (9.5 + p/2) GiB under 90 GiB, (12 + p/2) under
    # 160, 4 GiB more under DP attention; whatever the chunk and graphs.
    old = "0.5.3rc0"
    assert sglang_mem_fraction_static(h100, 8192, 160, 1, 1, 1, old) == round(1 - 10240 / 81559, 3)
    assert sglang_mem_fraction_static(h200, 8192, 256, 8, 1, 8, old) == round(
        1 - 20 * 1024 / 143771, 3
    )
    assert [sglang04_mem_fraction_static(h200, 8192, 160, tp, 1, 1) for tp in (1, 2, 4, 8, 16)] == [
        0.88, 0.87, 0.85, 0.81, 0.79
    ]  # fmt: skip
    # A scenario that leaves it out gets the engine's; one that gives it keeps it; vLLM 0.9.
    sc = build_scenario({"model": "qwen3-8b", "hardware": "H100", "engine": "sglang"})
    assert sc.scheduler.gpu_memory_utilization == 0.835
    dp8 = {"model": "deepseek-v3", "hardware": "H200", "engine": "sglang", "tp": 1, "dp": 8}
    assert build_scenario(dp8).scheduler.gpu_memory_utilization == round(1 - dp / 143771, 3)
    given = {"engine": "sglang", "scheduler": {"gpu_memory_utilization": 0.7}}
    assert build_scenario(given).scheduler.gpu_memory_utilization == 0.7
    assert build_scenario({"engine": "vllm"}).scheduler.gpu_memory_utilization == 0.9
    assert PROFILES["sglang"].kv_of_static and not PROFILES["vllm"].kv_of_static


def test_tensorrt_llm_pytorch_backend_graphs_only_exact_decode_batches():
    # TensorRT-LLM >= 1.0 (PyTorch backend): CUDA graphs for decode-only batches of 1-31, 32,
    # 64 and 128 sequences, enable_padding off: a batch of 33 runs eagerly, unpadded; every
    # step with a prompt runs eagerly. (SGLang pads 33 up to its graph of 40.)
    trt = engine_profile("trtllm-pytorch")
    assert trt.graphed(True, 32, 32) and trt.graphed(True, 64, 64)
    assert not trt.graphed(True, 33, 33) and not trt.graphed(True, 200, 200)
    assert not trt.graphed(False, 40, 8)  # a prompt in the step
    assert trt.graph_batch(33) == 33
    assert engine_profile("sglang").graph_batch(33) == 40
    assert engine_profile("trtllm").graphed(False, 4096, 8)  # the C++ runtime: no issue
    # The eager step of 33 costs more than the graphed one of 32 (Llama-3.1-8B, one H100).
    sc = {"model": "llama-3.1-8b", "hardware": "H100", "engine": "trtllm-pytorch",
          "workload": {"num_requests": 4}}  # fmt: skip
    from servesim.fleet import build_fleet
    from servesim.scenario import build_scenario

    inst = build_fleet(build_scenario(sc), np.random.default_rng(0)).instances[0]
    ctx = np.full(33, 500)
    graphed = inst.cost.step_seconds(np.ones(32, dtype=int), ctx[:32])
    eager = inst.eager_cost.step_seconds(np.ones(33, dtype=int), ctx)
    assert eager > 1.5 * graphed


def test_vllm_v0_chunks_the_prompts_of_long_context_models_by_default():
    # vLLM 0.5.4-0.7 (V0): max_model_len > 32,768 turns chunked prefill on with V0's
    # chunked budget (2048 from 0.6.5), unless the scenario says otherwise; without chunked
    # prefill a step holds one whole prompt: max(window, 2048) tokens.
    from servesim.scenario import build_scenario

    def sched(**fields):
        return build_scenario({"engine": "vllm-v0", **fields}).scheduler

    long = sched(model="llama-3.1-8b")  # 131,072-token context
    assert (long.enable_chunked_prefill, long.policy, long.max_num_batched_tokens) == (
        True, "sarathi", 2048
    )  # fmt: skip
    short = sched(model="llama-3.1-8b", max_model_len=32000)
    assert (short.enable_chunked_prefill, short.policy) == (False, "prefill_first")
    assert short.max_num_batched_tokens == 32000
    llama2 = sched(model="llama-2-7b")  # 4,096 tokens
    assert (llama2.enable_chunked_prefill, llama2.max_num_batched_tokens) == (False, 4096)
    assert sched(model="llama-2-7b", max_model_len=1024).max_num_batched_tokens == 2048
    off = sched(model="llama-3.1-8b", scheduler={"enable_chunked_prefill": False})
    assert (off.enable_chunked_prefill, off.max_num_batched_tokens) == (False, 131072)
    budget = sched(model="llama-3.1-8b", scheduler={"max_num_batched_tokens": 2048})
    assert (budget.enable_chunked_prefill, budget.max_num_batched_tokens) == (True, 2048)
    v1 = build_scenario({"engine": "vllm", "model": "llama-3.1-8b"}).scheduler
    assert v1.policy == "vllm" and v1.max_num_batched_tokens == 8192
    # vLLM's test is max_model_len > 32768 (0.5.4-0.7.3 wheels): a 32,768-token window is
    # not long context; one token more is.
    at = sched(model="llama-3.1-8b", max_model_len=32768)
    assert (at.enable_chunked_prefill, at.max_num_batched_tokens) == (False, 32768)
    assert sched(model="llama-3.1-8b", max_model_len=32769).enable_chunked_prefill is True


def test_vllm_v0_decodes_eagerly_past_its_graph_sequence_length():
    # vLLM V0 runs a decode batch's CUDA graph only while its longest sequence, the new token
    # included, is within max_seq_len_to_capture (8192): an 8,000-token prompt decodes 192
    # steps under the graph, then eagerly. A fast-forwarded span stops at the boundary, so
    # spans and single steps give the same records.
    from servesim.run import simulate
    from servesim.scenario import build_scenario

    def steps(engine: str, fast_forward: bool):
        scenario = build_scenario({
            "engine": engine, "model": "llama-3.1-8b", "api_server": False,
            "fast_forward": fast_forward,
            "workload": {"num_requests": 1, "input_len": 8000, "output_len": 400,
                         "arrival": {"kind": "burst"}},
        })  # fmt: skip
        cols = simulate(scenario).records.step_columns()
        return {k: np.asarray(v) for k, v in cols.items()}

    stepped = steps("vllm-v0", False)
    decode = stepped["prefill_tokens"] == 0
    seconds = stepped["duration_s"][decode]
    context = stepped["context_tokens"][decode]
    graphed, eager = seconds[context < 8192], seconds[context >= 8192]
    assert len(graphed) == 192 and len(eager) == 207
    assert eager.min() > 1.3 * graphed.max()  # (each kernel issued by the CPU)
    spans = steps("vllm-v0", True)
    assert spans["num_steps"][spans["prefill_tokens"] == 0].tolist() == [192, 207]
    assert np.isclose(spans["duration_s"].sum(), stepped["duration_s"].sum(), rtol=1e-12)
    # vLLM V1's piecewise graphs leave attention outside the graph: no such limit.
    v1 = steps("vllm", False)
    v1_seconds = v1["duration_s"][v1["prefill_tokens"] == 0]
    assert v1_seconds.max() < 1.05 * v1_seconds.min()


def test_vllm_v1_sizes_its_cuda_graphs_by_release_and_scheduler_limits():
    # (wheel-checked) before 0.10: 1, 2, 4, multiples of 8 to 512; from 0.10 up to
    # min(2 x max_num_seqs, 512); from 0.12 by 16 from 256; never past the token budget.
    from servesim.engines import vllm_v1_graph_sizes

    assert vllm_v1_graph_sizes("0.9.2", 64, 8192) == (1, 2, 4, *range(8, 513, 8))
    assert vllm_v1_graph_sizes("0.10.2", 64, 8192) == (1, 2, 4, *range(8, 129, 8))
    assert vllm_v1_graph_sizes("0.11.0", 1024, 8192) == (1, 2, 4, *range(8, 513, 8))
    newest = (1, 2, 4, *range(8, 256, 8), *range(256, 513, 16))
    assert vllm_v1_graph_sizes("0.12.0", 1024, 8192) == newest
    assert vllm_v1_graph_sizes(None, 256, 2048) == newest
    assert vllm_v1_graph_sizes(None, 1024, 100)[-1] == 96

    # A step of up to the largest size runs under the piecewise graphs: with 64 sequences a
    # 200-token mixed step runs eagerly from 0.10, under a graph before (and at 1,024).
    def graphed(**fields) -> bool:
        scenario = build_scenario({"engine": "vllm", "hardware": "H100", **fields})
        instance = build_fleet(scenario, np.random.default_rng(0)).instances[0]
        return instance.graphed(False, 200, 10)

    assert not graphed(engine_version="0.10.2", scheduler={"max_num_seqs": 64})
    assert graphed(engine_version="0.9.2", scheduler={"max_num_seqs": 64})
    assert graphed(engine_version="0.10.2")


def test_vllm_v0_runs_mla_models_without_chunked_prefill_from_0_7_1():
    # 0.7.1-0.7.3 force chunked prefill off for MLA (vllm#12642); after MLA could chunk
    # (vllm#12639) V0's defaults still leave it off (0.8.0's _set_default_args_v0): one whole
    # prompt a step, the budget the 163,840-token window of DeepSeek-R1.
    from servesim.scenario import build_scenario

    def sched(**fields):
        sc = {"engine": "vllm-v0", "model": "deepseek-ai/DeepSeek-R1", "hardware": "H200",
              "tp": 8, **fields}  # fmt: skip
        return build_scenario(sc).scheduler

    for release in ("0.7.1", "0.7.4.dev181", "0.8.5", None):
        mla = sched(engine_version=release) if release else sched()
        assert (mla.enable_chunked_prefill, mla.policy, mla.max_num_batched_tokens) == (
            False, "prefill_first", 163840
        )  # fmt: skip
    # Before 0.7.1 (no MLA in vLLM) the long-context rule chunks it like any model.
    older = sched(engine_version="0.6.6")
    assert (older.enable_chunked_prefill, older.max_num_batched_tokens) == (True, 2048)
    # The scenario's choice wins; a model without MLA still chunks at 0.8.5.
    assert sched(scheduler={"enable_chunked_prefill": True}).enable_chunked_prefill is True
    llama = build_scenario({"engine": "vllm-v0", "model": "llama-3.1-8b",
                            "engine_version": "0.8.5"}).scheduler  # fmt: skip
    assert llama.enable_chunked_prefill is True


def test_vllm_v0_materializes_the_absorbed_mla_weights_in_0_7():
    # 0.7.1 (MLA's first release) until vllm#14770: the 0.7.3 wheel builds W_Q_UK/W_UV_O, the
    # 0.8.0 wheel does not; vLLM V1 never did; an unnamed release is the newest.
    from servesim.engines import mla_materialized

    v0 = engine_profile("vllm-v0")
    assert [mla_materialized(v0, r) for r in ("0.6.6", "0.7.1", "0.7.3", "0.7.4.dev181")] == [
        False, True, True, True
    ]  # fmt: skip
    assert not mla_materialized(v0, "0.8.0") and not mla_materialized(v0, None)
    assert not mla_materialized(engine_profile("vllm"), "0.7.3")
    scenario = build_scenario({"engine": "vllm-v0", "engine_version": "0.7.3",
                               "model": "deepseek-ai/DeepSeek-R1", "hardware": "H200",
                               "tp": 8, "workload": {"num_requests": 2}})  # fmt: skip
    instance = build_fleet(scenario, np.random.default_rng(0)).instances[0]
    assert instance.cost.params.mla_materialized is True


def test_deepseek_glue_kernels_by_engine_and_release():
    # Census of the unfused DeepSeek kernels (engines.py: rope 14, top-k 16 eager / 8 compiled,
    # SGLang's input_to_float8 pair 22 and copies 3, shared expert 5, scale and add 2).
    from servesim.engines import deepseek_glue_kernels

    sg, v0, v1 = engine_profile("sglang-0.4"), engine_profile("vllm-v0"), engine_profile("vllm")
    assert deepseek_glue_kernels(sg, "0.4.2") == (39.0, 23.0)
    assert deepseek_glue_kernels(sg, "0.4.2.post1") == (39.0, 23.0)  # (compiled top-k: post2)
    assert deepseek_glue_kernels(sg, "0.4.2.post2") == deepseek_glue_kernels(sg, "0.4.5.post3")
    assert deepseek_glue_kernels(sg, "0.4.3.post2") == (39.0, 15.0)
    assert deepseek_glue_kernels(sg, "0.4.6") == deepseek_glue_kernels(sg, None) == (0.0, 0.0)
    assert deepseek_glue_kernels(engine_profile("sglang"), "0.4.3") == (39.0, 15.0)
    # ROCm's fnuz path casts the absorbed weights instead of quantising the inputs.
    assert deepseek_glue_kernels(sg, "0.4.2.post4", "AMD") == (21.0, 15.0)
    assert deepseek_glue_kernels(sg, "0.4.2.post4", "NVIDIA") == (39.0, 15.0)
    assert deepseek_glue_kernels(v0, "0.7.3", "AMD") == deepseek_glue_kernels(v0, "0.7.3")
    # V0 never compiles the model: the rope glue stays in every release.
    assert deepseek_glue_kernels(v0, "0.7.1") == (15.0, 18.0)
    assert deepseek_glue_kernels(v0, "0.7.4.dev181") == deepseek_glue_kernels(v0, None) == (
        15.0, 10.0
    )  # fmt: skip
    assert deepseek_glue_kernels(v1, "0.8.4") == (3.0, 8.0)
    assert deepseek_glue_kernels(v1, "0.9.0") == (0.0, 8.0)
    assert deepseek_glue_kernels(v1, "0.10.2") == deepseek_glue_kernels(v1, None) == (0.0, 0.0)
    assert deepseek_glue_kernels(engine_profile("trtllm"), "0.17.0") == (0.0, 0.0)
    # Through the fleet: the scenario's release reaches the cost model.
    scenario = build_scenario({"engine": "sglang-0.4", "engine_version": "0.4.3.post2",
                               "model": "deepseek-ai/DeepSeek-R1", "hardware": "H200",
                               "tp": 8, "workload": {"num_requests": 2}})  # fmt: skip
    instance = build_fleet(scenario, np.random.default_rng(0)).instances[0]
    assert instance.cost.params.deepseek_glue_kernels == (39.0, 15.0)
    assert {"mla_glue", "moe_glue"} <= {op.name for op in instance.cost.operators}


def test_vllm_sizes_fused_moe_chunks_by_release():
    # VLLM_FUSED_MOE_CHUNK_SIZE's default (wheel-checked): 65,536 in 0.5.4, 32,768 from 0.6.0,
    # 16,384 from 0.12.0; engines without the rule hold a whole step.
    from servesim.engines import moe_chunk_tokens

    v0, v1 = engine_profile("vllm-v0"), engine_profile("vllm")
    assert moe_chunk_tokens(v0, "0.5.4") == 65536
    assert moe_chunk_tokens(v0, "0.7.4.dev181") == 32768
    assert moe_chunk_tokens(v1, "0.11.0") == 32768
    assert moe_chunk_tokens(v1, "0.12.0") == moe_chunk_tokens(v1, None) == 16384
    assert moe_chunk_tokens(engine_profile("sglang"), "0.5.3") is None
    # Through the fleet: DeepSeek-R1 under V0 gets the chunked caches in its memory plan.
    scenario = build_scenario({"engine": "vllm-v0", "engine_version": "0.7.4",
                               "model": "deepseek-ai/DeepSeek-R1", "hardware": "H200",
                               "tp": 8, "workload": {"num_requests": 2}})  # fmt: skip
    instance = build_fleet(scenario, np.random.default_rng(0)).instances[0]
    assert instance.cost.params.moe_chunk_tokens == 32768


def test_vllm_v0_leaves_rocm_out_of_long_context_chunking_from_0_6_5():
    # vLLM 0.6.5 added `not current_platform.is_rocm()` to the long-context default (0.6.4's
    # wheel lacks it): an AMD GPU runs one whole prompt a step; an NVIDIA GPU still chunks.
    from servesim.scenario import build_scenario

    def sched(**fields):
        return build_scenario({"engine": "vllm-v0", "model": "llama-3.1-8b", **fields}).scheduler

    amd = sched(hardware="MI300X")
    assert (amd.enable_chunked_prefill, amd.max_num_batched_tokens) == (False, 131072)
    assert sched(hardware="MI300X", engine_version="0.6.5").enable_chunked_prefill is False
    assert sched(hardware="MI300X", engine_version="0.6.4").enable_chunked_prefill is True
    assert sched(hardware="H100", engine_version="0.7.3").enable_chunked_prefill is True
    # Only V0 has the rule: vLLM V1 always chunks.
    v1 = build_scenario({"engine": "vllm", "model": "llama-3.1-8b", "hardware": "MI300X"})
    assert v1.scheduler.enable_chunked_prefill is True


def _schedules_ahead(engine, **fields) -> bool:
    scenario = build_scenario({"engine": engine, **fields})
    return build_fleet(scenario, np.random.default_rng(0)).instances[0].schedule_ahead


def test_engines_that_overlap_by_scheduling_a_step_ahead_admit_arrivals_a_step_later(
    monkeypatch,
):
    # vLLM's async scheduling (0.14 on, or the flag), SGLang's and TensorRT-LLM's PyTorch
    # overlap schedulers form step n+1 as step n starts; the C++ runtimes do not.
    assert _schedules_ahead("vllm")
    assert not _schedules_ahead("vllm", engine_version="0.11.0")
    assert _schedules_ahead("vllm", engine_version="0.11.0", async_scheduling=True)
    assert _schedules_ahead("sglang") and _schedules_ahead("trtllm-pytorch")
    assert not _schedules_ahead("trtllm") and not _schedules_ahead("vllm-v0")
    assert not _schedules_ahead("vllm", cuda_graphs=False)  # (eager: no overlap)
    # Through the simulator: the same load waits about one more decode step for its first
    # token; the decode steps themselves are alike.
    ahead = _run("vllm")
    monkeypatch.setitem(PROFILES, "vllm", replace(PROFILES["vllm"], schedules_ahead=False))
    assert not _schedules_ahead("vllm")
    same_time = _run("vllm")
    extra_ms = ahead["mean_ttft_ms"] - same_time["mean_ttft_ms"]
    assert 0.5 * ahead["mean_tpot_ms"] < extra_ms < 1.5 * ahead["mean_tpot_ms"]
    assert ahead["mean_tpot_ms"] == pytest.approx(same_time["mean_tpot_ms"], rel=0.05)


def test_a_profile_names_only_known_overlap_blockers():
    with pytest.raises(ValueError, match="overlap_off_with"):
        replace(engine_profile("vllm"), overlap_off_with=("pipelines",))


def test_mla_down_projections_fuse_from_the_release_that_fused_them():
    """SGLang 0.4.6 (sgl-project/sglang#5619), vLLM 0.10.0 (vllm-project/vllm#21116) and
    TensorRT-LLM's PyTorch MLA run q_a and kv_a as one GEMM; earlier releases and engines not
    known to do it run two. The scenario's engine and release reach the cost model."""
    sglang, vllm = engine_profile("sglang"), engine_profile("vllm")
    assert not mla_fused_down_proj(sglang, "0.4.5.post3")
    assert mla_fused_down_proj(sglang, "0.4.6") and mla_fused_down_proj(sglang, None)
    assert not mla_fused_down_proj(engine_profile("sglang-0.4"), "0.4.3.post2")
    assert not mla_fused_down_proj(vllm, "0.9.2") and mla_fused_down_proj(vllm, "0.10.0")
    assert not mla_fused_down_proj(engine_profile("vllm-v0"), "0.7.3")
    assert mla_fused_down_proj(engine_profile("trtllm-pytorch"), "1.0.0")
    assert not mla_fused_down_proj(engine_profile("lmdeploy"), None)
    from servesim.fleet import build_fleet

    def fused(engine: str, version: str) -> bool:
        sc = {"model": "deepseek-r1", "hardware": "H200", "tp": 8, "engine": engine,
              "engine_version": version, "workload": {"num_requests": 2}}  # fmt: skip
        fleet = build_fleet(build_scenario(sc), np.random.default_rng(0))
        params = fleet.groups[0].params
        names = {op.name for op in fleet.instances[0].cost.operators}
        assert ("qkv_a_proj" in names) == params.mla_fused_down_proj
        return params.mla_fused_down_proj

    assert fused("sglang", "0.5.9") and not fused("sglang-0.4", "0.4.3.post2")


def test_sglang_absorbs_mla_prompt_batches_by_its_default_backend():
    """SGLang's default MLA attention backend by release and GPU (the wheels'
    ``model_specific_adjustment`` / ``_handle_model_specific_adjustments``) sets when a prompt
    batch runs absorbed: Triton at any prefix (before 0.4.6 everywhere, then off Hopper),
    FA3 on Hopper from 0.4.6 below 8,192 cached tokens, FlashInfer on SM100 (any prefix in
    0.5.0rc0-rc2, FA3's rule from 0.5.1), never with trtllm_mla (SM100 from 0.5.4) or aiter
    (ROCm from 0.4.7); vLLM and TensorRT-LLM never pick one form per batch."""
    inf = float("inf")
    old, new = engine_profile("sglang-0.4"), engine_profile("sglang")
    assert mla_prompt_absorb(old, "0.4.3.post2", "hopper") == inf
    assert mla_prompt_absorb(old, "0.4.5", "hopper") == inf
    assert mla_prompt_absorb(old, "0.4.6", "hopper") == 8192
    assert mla_prompt_absorb(old, None, "hopper") == 8192
    assert mla_prompt_absorb(old, "0.4.2.post4", "cdna3") == inf
    assert mla_prompt_absorb(old, "0.4.9", "cdna3") is None
    assert mla_prompt_absorb(old, "0.4.9", "ampere") == inf
    assert mla_prompt_absorb(new, "0.5.3", "hopper") == 8192
    assert mla_prompt_absorb(new, "0.5.0rc0", "blackwell") == inf
    assert mla_prompt_absorb(new, "0.5.3", "blackwell") == 8192
    assert mla_prompt_absorb(new, "0.5.4", "blackwell") is None
    assert mla_prompt_absorb(new, None, "blackwell") is None
    assert mla_prompt_absorb(new, None, "blackwell-rtx") == inf
    assert mla_prompt_absorb(new, None, "cdna3") is None
    assert mla_prompt_absorb(new, None, "cdna4") is None
    for engine in ("vllm", "vllm-v0", "trtllm", "trtllm-pytorch", "lmdeploy"):
        assert mla_prompt_absorb(engine_profile(engine), None, "hopper") is None

    def params(engine: str, version: str, caching: bool):
        sc = {"model": "deepseek-r1", "hardware": "H200", "tp": 8, "engine": engine,
              "engine_version": version, "workload": {"num_requests": 2},
              "scheduler": {"enable_prefix_caching": caching}}  # fmt: skip
        return build_fleet(build_scenario(sc), np.random.default_rng(0)).groups[0].params

    sglang = params("sglang", "0.5.3", True)
    assert sglang.mla_prompt_absorb_below == 8192 and sglang.mla_prompt_prefix_floor == 1.0
    assert params("sglang", "0.5.3", False).mla_prompt_prefix_floor == 0.0
    assert params("sglang-0.4", "0.4.3.post2", True).mla_prompt_absorb_below == inf
    assert params("vllm", "0.11.0", True).mla_prompt_absorb_below is None


def test_sglang_04s_triton_mla_prompt_kernel_is_slower_on_hopper_through_045():
    """SGLang 0.4.0-0.4.5 run MLA prompt rows on the absorbed path through the Triton extend
    kernel (sgl-project/sglang#3550 measured it against FlashInfer MLA on 8×H200); from 0.4.6
    Hopper's default is FA3, and off Hopper nothing measured it: the tables' rate there."""
    old, new = engine_profile("sglang-0.4"), engine_profile("sglang")
    scale = SGLANG04_TRITON_MLA_PROMPT_SCALE
    assert scale > 1.0
    assert mla_prompt_attention_scale(old, "0.4.3.post2", "hopper") == scale
    assert mla_prompt_attention_scale(old, "0.4.5", "hopper") == scale
    assert mla_prompt_attention_scale(old, "0.4.6", "hopper") == 1.0
    assert mla_prompt_attention_scale(old, None, "hopper") == 1.0
    assert mla_prompt_attention_scale(old, "0.4.3", "ampere") == 1.0
    for profile in (new, engine_profile("vllm-v0"), engine_profile("trtllm")):
        assert mla_prompt_attention_scale(profile, "0.4.3", "hopper") == 1.0
    sc = {"model": "deepseek-r1", "hardware": "H200", "tp": 8, "engine": "sglang-0.4",
          "engine_version": "0.4.3.post2", "workload": {"num_requests": 2}}  # fmt: skip
    fleet = build_fleet(build_scenario(sc), np.random.default_rng(0))
    assert fleet.groups[0].params.mla_prompt_attention_scale == scale


def test_flashinfer_decodes_on_cuda_cores_by_release_group_and_cache():
    """SGLang's FlashInfer backend decodes on FlashInfer's CUDA-core kernel or its tensor-core
    one (``should_use_tensor_core``): before 0.4.3 (FlashInfer 0.1.6) CUDA cores for the groups
    0.1.6 built, 1, 2, 4 and 8; from 0.4.3 (FlashInfer 0.2) for groups up to 4 over a 16-bit
    cache. The fleet passes the group of one GPU's heads to the cost model, 0 for tensor
    cores: Llama-3.1-70B on 4 H200s has 16 query heads over 2 KV heads."""
    old = engine_profile("sglang-0.4")
    assert flashinfer_decode_cuda_cores(old, "0.4.0", 8, None)
    assert flashinfer_decode_cuda_cores(old, "0.4.2.post4", 4, "fp8")
    assert not flashinfer_decode_cuda_cores(old, "0.4.0", 16, None)
    assert not flashinfer_decode_cuda_cores(old, "0.4.0", 6, None)
    assert not flashinfer_decode_cuda_cores(old, "0.4.3", 8, None)
    assert flashinfer_decode_cuda_cores(old, "0.4.3", 4, None)
    assert not flashinfer_decode_cuda_cores(old, "0.4.3", 4, "fp8")
    assert flashinfer_decode_cuda_cores(engine_profile("sglang"), None, 2, None)

    def group(model: str, tp: int, version: str) -> int:
        sc = {"model": model, "hardware": "H200", "tp": tp, "engine": "sglang-0.4",
              "engine_version": version, "workload": {"num_requests": 2}}  # fmt: skip
        fleet = build_fleet(build_scenario(sc), np.random.default_rng(0))
        return fleet.groups[0].params.flashinfer_cuda_core_group

    assert group("llama-3.1-70b", 4, "0.4.0") == 8
    assert group("llama-3.1-70b", 4, "0.4.3") == 0
    assert group("llama-3.1-8b", 1, "0.4.3") == 4
    assert group("llama-3.1-8b", 1, "0.4.6") == 0  # (FA3 from 0.4.6 on Hopper)


def test_sglang_attention_backend_by_release_gpu_and_model_class():
    """SGLang's default attention backend for non-MLA models (the wheels'
    ``model_specific_adjustment`` / ``_handle_attention_backend``): FlashInfer before 0.4.6;
    from 0.4.6 FA3 on Hopper for the classes of that release's ``is_fa3_default_architecture``
    list (Mistral only in 0.4.6, Qwen3 from 0.4.7), FlashInfer for the others; FA3 for GPT-OSS
    and, from 0.5.8, for every class. Off Hopper none is named (nothing to price it by); other
    engines name none."""
    old, new = engine_profile("sglang-0.4"), engine_profile("sglang")
    assert attention_backend(old, "0.4.0", "hopper", "LlamaForCausalLM") == "flashinfer"
    assert attention_backend(old, "0.4.5", "hopper", "LlamaForCausalLM") == "flashinfer"
    assert attention_backend(old, "0.4.6", "hopper", "LlamaForCausalLM") == "fa3"
    assert attention_backend(old, "0.4.6", "hopper", "MistralForCausalLM") == "fa3"
    assert attention_backend(old, "0.4.7", "hopper", "MistralForCausalLM") == "flashinfer"
    assert attention_backend(old, "0.4.6", "hopper", "Qwen3ForCausalLM") == "flashinfer"
    assert attention_backend(old, "0.4.7", "hopper", "Qwen3ForCausalLM") == "fa3"
    assert attention_backend(new, "0.5.3", "hopper", "MixtralForCausalLM") == "flashinfer"
    assert attention_backend(new, "0.5.8", "hopper", "MixtralForCausalLM") == "fa3"
    assert attention_backend(new, None, "hopper", "GPTJForCausalLM") == "fa3"
    assert attention_backend(new, "0.5.3", "hopper", "GptOssForCausalLM") == "fa3"
    assert attention_backend(old, "0.4.0", "ampere", "LlamaForCausalLM") is None
    assert attention_backend(new, "0.5.3", "blackwell", "MixtralForCausalLM") is None
    for engine in ("vllm", "vllm-v0", "trtllm", "trtllm-pytorch", "lmdeploy"):
        assert (
            attention_backend(engine_profile(engine), "0.4.0", "hopper", "LlamaForCausalLM") is None
        )

    def backend(engine: str, version: str, model: str = "llama-3.1-8b", **sc):
        spec = {"model": model, "hardware": "H200", "engine": engine, "engine_version": version}
        scenario = build_scenario({**spec, "workload": {"num_requests": 2}, **sc})
        return build_fleet(scenario, np.random.default_rng(0)).groups[0].params.attention_backend

    assert backend("sglang-0.4", "0.4.0") == "flashinfer"
    assert backend("sglang", "0.5.3") == "fa3"
    assert backend("sglang", "0.5.3", attention_backend="flashinfer") == "flashinfer"
    assert backend("sglang-0.4", "0.4.0", attention_backend="fa3") == "fa3"
    # (MLA models keep their engines' own MLA rules.)
    assert backend("sglang-0.4", "0.4.0", model="deepseek-r1", tp=8) is None
    assert backend("vllm", "0.11.0") is None


def test_vllm_runs_short_mla_prompts_as_decodes_on_hopper_from_0_12():
    """vLLM 0.12 picks the FlashAttention MLA backend first on Hopper, whose builder sends rows
    of up to 512 new tokens down the decode (absorbed) pathway; 0.11 picked FlashMLA first
    (single-token decodes), and Blackwell's CUTLASS MLA and Triton MLA elsewhere take
    single-token rows only. Other engines' decode rows are single tokens."""
    vllm = engine_profile("vllm")
    assert mla_decode_rows(vllm, "0.12.0", "hopper") == 512
    assert mla_decode_rows(vllm, None, "hopper") == 512
    assert mla_decode_rows(vllm, "0.11.0", "hopper") == 1
    assert mla_decode_rows(vllm, None, "blackwell") == 1
    assert mla_decode_rows(vllm, None, "ampere") == 1
    for engine in ("vllm-v0", "sglang", "sglang-0.4", "trtllm", "trtllm-pytorch"):
        assert mla_decode_rows(engine_profile(engine), None, "hopper") == 1

    def params(version: str):
        sc = {"model": "deepseek-r1", "hardware": "H200", "tp": 8, "engine": "vllm",
              "engine_version": version, "workload": {"num_requests": 2}}  # fmt: skip
        return build_fleet(build_scenario(sc), np.random.default_rng(0)).groups[0].params

    assert params("0.12.0").mla_absorb_max_new_tokens == 512
    assert params("0.8.4").mla_absorb_max_new_tokens == 1


def test_vllm_v1_pages_sliding_window_layers_apart_from_0_9_2():
    # The hybrid KV cache manager (first in the 0.9.2 wheel) for gpt-oss: one full-attention
    # group, one sliding group; off before 0.9.2, with KV offload, disaggregation or
    # speculative decoding, and on engines without it.
    def kv_of(**fields):
        sc = {"engine": "vllm", "model": "openai/gpt-oss-120b", "hardware": "H100",
              "workload": {"num_requests": 2}, **fields}  # fmt: skip
        fleet = build_fleet(build_scenario(sc), np.random.default_rng(0))
        return fleet.instances[0].kv, fleet.groups[0].memory

    assert kv_of()[0].sliding_groups == 1
    kv, memory = kv_of(engine_version="0.10.2")
    assert (kv.sliding_groups, kv.window_blocks) == (1, 9)
    assert (memory.kv_groups, memory.kv_window_blocks) == (2, 9)
    old, old_memory = kv_of(engine_version="0.9.0")
    assert old.sliding_groups == 0
    # (Both run Marlin's MXFP4 layout on Hopper.) Twice the pages of half the layers: the
    # same logged size.
    assert kv.num_blocks == pytest.approx(2 * old.num_blocks, abs=2)
    assert memory.kv_capacity_tokens == pytest.approx(old_memory.kv_capacity_tokens, abs=32)
    assert kv_of(kv_offload=True)[0].sliding_groups == 0
    assert kv_of(engine="sglang")[0].sliding_groups == 0
    llama = build_fleet(build_scenario({"engine": "vllm", "model": "llama-3.1-8b"}),
                        np.random.default_rng(0))  # fmt: skip
    assert llama.instances[0].kv.sliding_groups == 0


def test_hybrid_kv_runs_more_long_requests_at_once_and_keeps_its_invariants():
    # 12k-token prompts of gpt-oss-120b on one H100 (Marlin's layout, ~1.9 GiB of KV): the
    # uniform layout fits two at a time; the hybrid layout four, so more decodes share steps
    # with the next prompts.
    def run(version):
        return _long_prompt_burst(
            version, "openai/gpt-oss-120b", 8, 100, hardware="H100", max_model_len=32768
        )

    hybrid, uniform = run("0.10.2"), run("0.9.0")
    assert hybrid.summary["completed"] == uniform.summary["completed"] == 8
    assert hybrid.summary["kv_cache_peak_usage"] <= 1.0
    assert hybrid.summary["duration"] < uniform.summary["duration"]
    assert hybrid.summary["median_tpot_ms"] > 1.5 * uniform.summary["median_tpot_ms"]


def test_the_hybrid_kv_cache_manager_follows_the_scenario_when_it_says():
    # scheduler.hybrid_kv_cache: false is vLLM's --disable-hybrid-kv-cache-manager; true turns
    # it on for a release before 0.9.2 (the layout still needs a sliding-window model).
    def layout(**sched):
        sc = {"engine": "vllm", "engine_version": "0.9.0", "model": "openai/gpt-oss-120b",
              "hardware": "H100", "workload": {"num_requests": 2}, "scheduler": sched}  # fmt: skip
        kv = build_fleet(build_scenario(sc), np.random.default_rng(0)).instances[0].kv
        return kv.sliding_groups

    assert layout() == 0 and layout(hybrid_kv_cache=True) == 1
    sc = {"engine": "vllm", "model": "openai/gpt-oss-120b", "hardware": "H100",
          "workload": {"num_requests": 2}, "scheduler": {"hybrid_kv_cache": False}}  # fmt: skip
    assert (
        build_fleet(build_scenario(sc), np.random.default_rng(0)).instances[0].kv.sliding_groups
        == 0
    )


def test_the_cli_turns_the_hybrid_kv_cache_manager_off():
    import json
    import subprocess
    import sys

    def memory(*flags):
        done = subprocess.run(
            [sys.executable, "-m", "servesim", "simulate", "-m", "openai/gpt-oss-120b",
             "--num-requests", "10", "--json", *flags],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(done.stdout)["memory"]

    on, off = memory(), memory("--no-hybrid-kv-cache")
    assert (on["kv_groups"], on["kv_window_blocks"]) == (2, 9)
    assert (off["kv_groups"], off["kv_window_blocks"]) == (1, 0)
    assert on["num_kv_blocks"] == pytest.approx(2 * off["num_kv_blocks"], abs=2)
    assert on["kv_capacity_tokens"] == pytest.approx(off["kv_capacity_tokens"], abs=32)


def test_the_longest_request_leaves_room_for_its_last_chunks_sliding_pages():
    # fleet.kv_tokens (what the oversized-request check uses): under the hybrid layout the
    # longest prompt whose pages fit while its last budget-sized chunk computes, as vLLM
    # checks at start-up (SlidingWindowSpec.max_memory_usage_bytes).
    from servesim.engine.kv_cache import KVBlockManager
    from servesim.engine.scheduler import SchedulerConfig
    from servesim.fleet import request_kv_tokens

    kv = KVBlockManager(3408, 16, sliding_groups=1, window_blocks=9, window_tokens=128)
    chunked = SchedulerConfig(max_num_batched_tokens=8192)
    # 8,192-token chunks: cdiv(127 + 8192, 16) + 1 = 521 window pages → 2,887 full pages.
    assert request_kv_tokens(kv, chunked) == (3408 - 521) * 16
    whole = SchedulerConfig(policy="orca", enable_chunked_prefill=False)
    assert request_kv_tokens(kv, whole) == 1704 * 16  # (a whole prompt: both groups in full)
    assert request_kv_tokens(KVBlockManager(3408, 16), chunked) == 3408 * 16


def test_vllm_v0_admits_a_prompt_only_above_its_block_watermark():
    # 100 blocks of 16 (watermark int(0.01 x 100) = 1): two 792-token prompts with 8 outputs
    # need 50 blocks each. Without the watermark both run at once; vLLM V0 holds the second
    # back until the first has finished (100 - 50 - 50 = 0 < 1).
    fields = {
        "engine": "vllm-v0", "api_server": False,
        "scheduler": {"kv_cache_tokens": 1600},
        "workload": {"num_requests": 2, "input_len": 792, "output_len": 8,
                     "arrival": {"kind": "burst"}},
    }  # fmt: skip
    result = simulate(build_scenario(fields))
    assert result.groups[0].instances[0].kv.watermark_blocks == 1
    cols = result.records.request_columns()
    first, second = np.sort(cols["first_token_s"]), np.sort(cols["finish_s"])
    assert first[1] > second[0]  # the second prompt ran after the first request finished
    together = simulate(build_scenario({**fields, "engine": "vllm"}))
    cols = together.records.request_columns()
    assert together.groups[0].instances[0].kv.watermark_blocks == 0
    assert cols["first_token_s"].max() < cols["finish_s"].min()


def test_vllm_pages_a_sliding_window_only_model_by_its_window():
    # Mistral-7B-v0.1 (every layer slides over 4,096 tokens): vLLM V1's SlidingWindowManager
    # from 0.8.3, V0's block managers at every release; not with prefix caching on (servesim's
    # prefix cache keeps a request's shared pages), nor on engines that page every token.
    import sys

    from servesim.engines import sliding_kv

    v1, v0 = PROFILES["vllm"], PROFILES["vllm-v0"]
    assert [sliding_kv(v1, r) for r in ("0.8.2", "0.8.3", None)] == [None, "vllm", "vllm"]
    assert [sliding_kv(v0, r) for r in ("0.5.4", "0.6.3", None)] == [
        "vllm-v0", "vllm-v0-v2", "vllm-v0-v2",
    ]  # fmt: skip
    assert sliding_kv(PROFILES["sglang"], None) is None

    def fleet_of(**fields):
        sc = {"model": "mistralai/Mistral-7B-v0.1", "workload": {"num_requests": 2}, **fields}
        return build_fleet(build_scenario(sc), np.random.default_rng(0))

    old = fleet_of(engine="vllm-v0", engine_version="0.5.4")
    kv = old.instances[0].kv
    assert (kv.full_groups, kv.sliding_groups, kv.window_blocks, kv.window_tokens) == (
        0, 1, 256, 0,
    )  # fmt: skip
    assert old.kv_tokens == sys.maxsize  # (any length fits: it holds its window)
    kv = fleet_of(engine="vllm", scheduler={"enable_prefix_caching": False}).instances[0].kv
    assert (kv.full_groups, kv.window_blocks, kv.window_tokens) == (0, 257, 4096)
    assert fleet_of(engine="vllm").instances[0].kv.sliding_groups == 0  # (prefix caching on)
    assert fleet_of(engine="sglang").instances[0].kv.sliding_groups == 0


def test_a_sliding_window_only_model_runs_long_prompts_side_by_side():
    # 12k-token prompts in a 20,000-token cache: paged by every token one runs at a time
    # (vLLM 0.8.2); by the window (0.8.3 on) several at once: sooner done, same work.
    def run(version):
        return _long_prompt_burst(
            version, "mistralai/Mistral-7B-v0.1", 6, 200, api_server=False,
            scheduler={"enable_prefix_caching": False, "kv_cache_tokens": 20000},
        )  # fmt: skip

    window, every = run("0.8.3"), run("0.8.2")
    assert window.summary["completed"] == every.summary["completed"] == 6
    assert window.summary["kv_cache_peak_usage"] <= 1.0
    assert window.summary["duration"] < 0.8 * every.summary["duration"]
    assert window.memory.kv_full_groups == 0 and every.memory.kv_full_groups == 1


def test_the_cli_reports_a_sliding_window_only_cache():
    # Through the real command: summary.json's memory says one group without full-attention
    # pages and the window a request holds; the table says it in words.
    import json
    import os
    import subprocess
    import sys

    args = [sys.executable, "-m", "servesim", "simulate", "-m", "mistralai/Mistral-7B-v0.1",
            "--engine", "vllm-v0", "--num-requests", "5"]  # fmt: skip
    done = subprocess.run([*args, "--json"], capture_output=True, text=True, check=True)
    memory = json.loads(done.stdout)["memory"]
    assert (memory["kv_groups"], memory["kv_full_groups"], memory["kv_window_blocks"]) == (
        1,
        0,
        258,
    )
    wide = {**os.environ, "COLUMNS": "200"}
    table = subprocess.run(args, capture_output=True, text=True, check=True, env=wide).stdout
    assert "sliding window: at most 258 a request" in table


def _long_prompt_burst(version, model, num_requests, output_len, **fields):
    """A burst of 12,000-token prompts on vLLM ``version``, simulated."""
    from servesim.run import simulate

    workload = {"num_requests": num_requests, "input_len": 12000, "output_len": output_len,
                "arrival": {"kind": "burst"}}  # fmt: skip
    sc = {"engine": "vllm", "engine_version": version, "model": model, "workload": workload}
    return simulate(build_scenario({**sc, **fields}))


def test_sglang_pools_gpt_oss_sliding_window_layers_apart_from_0_5_8():
    # 0.5.0rc0-0.5.7 disable SGLang's hybrid SWA memory for GPT-OSS outright; 0.5.8 on keep it
    # but for the trtllm_mha attention of the datacentre Blackwells and speculative decoding.
    from servesim.engines import swa_pool_ratio

    sg = PROFILES["sglang"]
    assert swa_pool_ratio(sg, "0.5.7", "gpt_oss", "hopper", False) is None
    assert swa_pool_ratio(sg, "0.5.8", "gpt_oss", "hopper", False) == 0.8
    assert swa_pool_ratio(sg, None, "gpt_oss", "ampere", False) == 0.8
    assert swa_pool_ratio(sg, None, "gpt_oss", "blackwell-rtx", False) == 0.8  # (triton)
    assert swa_pool_ratio(sg, None, "gpt_oss", "blackwell", False) is None
    assert swa_pool_ratio(sg, None, "gpt_oss", "hopper", True) is None
    assert swa_pool_ratio(sg, None, "llama", "hopper", False) is None
    # Llama 4's chunked-attention layers are pooled too, on every GPU (opt-in before 0.5.8).
    assert swa_pool_ratio(sg, None, "llama4_text", "blackwell", True) == 0.8
    assert swa_pool_ratio(sg, "0.5.7", "llama4_text", "hopper", False) is None

    assert swa_pool_ratio(PROFILES["vllm"], None, "gpt_oss", "hopper", False) is None

    def memory(**fields):
        sc = {"engine": "sglang", "model": "openai/gpt-oss-120b", "hardware": "H200",
              "workload": {"num_requests": 2}, **fields}  # fmt: skip
        return build_fleet(build_scenario(sc), np.random.default_rng(0)).groups[0].memory

    new, old = memory(), memory(engine_version="0.5.7")
    assert (new.kv_swa_pool_ratio, old.kv_swa_pool_ratio) == (0.8, 0.0)
    # 18 full + 18 sliding layers: 36 / (18 + 0.8 x 18) = 1.11x the tokens.
    assert new.kv_capacity_tokens / old.kv_capacity_tokens == pytest.approx(36 / 32.4, rel=1e-3)
    assert memory(hardware="B200").kv_swa_pool_ratio == 0.0


def test_vllm_pages_llama_4s_chunked_layers_apart_from_0_10_0():
    # The hybrid manager's ChunkedLocalAttentionSpec first ships in 0.10.0 (not in 0.9.2).
    from servesim.engines import hybrid_kv

    v1 = PROFILES["vllm"]
    assert hybrid_kv(v1, "0.9.2", "gpt_oss") and not hybrid_kv(v1, "0.9.2", "llama4_text")
    assert hybrid_kv(v1, "0.10.0", "llama4_text") and hybrid_kv(v1, None, "llama4")
    assert not hybrid_kv(PROFILES["sglang"], None, "llama4_text")


@pytest.mark.parametrize(
    ("name", "release", "names"),
    [
        ("vllm", "0.5.4", "vllm-v0"),
        ("vllm", "v0.7.4.dev181+gf35f8e22", "vllm-v0"),
        ("vllm-v0", "0.11.0", "--engine vllm"),
        ("sglang", "0.4.3.post2", "sglang-0.4"),
        ("sglang-0.4", "0.5.3", "--engine sglang"),
        ("sglang-0.4", "0.3.6", "0.4.x only"),
    ],
)
def test_a_release_outside_its_profile_is_warned_about(name, release, names):
    from servesim.engines import release_outside_profile

    got = release_outside_profile(name, release)
    assert got is not None and names in got and release in got


@pytest.mark.parametrize(
    ("name", "release"),
    [("vllm", "0.8.0"), ("vllm", "0.8.0rc1"), ("vllm", "0.15.0"), ("vllm-v0", "0.10.2"),
     ("vllm-v0", "0.5.4"), ("sglang", "0.5.0rc0"), ("sglang", "0.5.9"), ("sglang-0.4", "0.4.6"),
     ("trtllm", "0.5.0"), ("vllm", None)],
)  # fmt: skip
def test_a_release_inside_its_profile_is_not(name, release):
    from servesim.engines import release_outside_profile

    assert release_outside_profile(name, release) is None


@pytest.mark.parametrize(
    ("release", "block", "share_of_total"),
    [("0.1.0", 128, True), ("0.2.0", 128, True), ("0.2.2", 128, False), ("0.3.0", 64, False),
     (None, 64, False)],
)  # fmt: skip
def test_lmdeploys_kv_cache_follows_its_release(release, block, share_of_total):
    """TurboMind's BlockManager: cache_max_entry_count (0.5) x all HBM before 0.2.2, 0.8 x the
    free memory from it; 128-token blocks before 0.3.0, 64 from it."""
    from servesim.cost.memory import plan_memory
    from servesim.engines import engine_profile, scheduler_defaults
    from servesim.hardware import load_hardware
    from servesim.model import load_model
    from servesim.run import simulate
    from servesim.scenario import build_scenario

    model, a100 = load_model("meta-llama/Llama-2-7b-hf"), load_hardware("A100-80GB")
    fields = {"model": "meta-llama/Llama-2-7b-hf", "hardware": "A100-80GB", "engine": "lmdeploy",
              "workload": {"num_requests": 2, "input_len": 100, "output_len": 5}}  # fmt: skip
    if release is not None:
        fields["engine_version"] = release
    memory = simulate(build_scenario(fields)).memory
    profile = engine_profile("lmdeploy")
    gpu = (a100.hbm_bytes, a100.name, a100.vendor)
    defaults = scheduler_defaults(profile, {}, gpu=gpu, release=release)
    assert defaults["block_size"] == block
    assert defaults["gpu_memory_utilization"] == (0.5 if share_of_total else 0.8)
    kv_token = memory.kv_bytes_per_token
    assert kv_token == 32 * 2 * 4096 * 2  # (Llama-2-7B fp16: 512 KiB a token)
    if share_of_total:
        expected = int(0.5 * a100.hbm_bytes) // (block * kv_token) * block
    else:
        plan = plan_memory(model, a100, gpu_memory_utilization=0.8, block_size=block,
                           max_num_batched_tokens=defaults["max_num_batched_tokens"],
                           max_num_seqs=defaults["max_num_seqs"], kv_of_free=True)  # fmt: skip
        expected = plan.kv_capacity_tokens
        usable = a100.hbm_bytes - plan.weights_bytes_per_gpu - plan.activation_reserve_bytes
        assert plan.kv_cache_bytes == pytest.approx(0.8 * (usable - plan.runtime_reserve_bytes))
    assert memory.kv_capacity_tokens == expected


def test_vllm_runs_gpt_oss_on_triton_attention_before_hopper():
    """vLLM V1 has no FlashAttention-2 kernel with attention sinks: GPT-OSS runs on its Triton
    backend on Ampere, Ada and RTX Blackwell, FlashAttention-3 on Hopper and FlashInfer on
    datacentre Blackwell (the tables' kernels); other models keep the tables' kernels."""
    vllm = engine_profile("vllm")
    for arch in ("ampere", "ada", "blackwell-rtx"):
        assert attention_backend(vllm, "0.11.0", arch, "GptOssForCausalLM") == "triton"
    for arch in ("hopper", "blackwell", "cdna3"):
        assert attention_backend(vllm, "0.11.0", arch, "GptOssForCausalLM") is None
    assert attention_backend(vllm, None, "ampere", "LlamaForCausalLM") is None

    def backend(hardware: str, **sc):
        spec = {"model": "gpt-oss-120b", "hardware": hardware, "engine": "vllm",
                "engine_version": "0.11.0", "workload": {"num_requests": 2}, **sc}  # fmt: skip
        return build_fleet(build_scenario(spec), np.random.default_rng(0)).groups[0].params

    a100 = backend("A100-80GB")
    assert a100.attention_backend == "triton" and not a100.fp8_attention
    assert backend("H100").attention_backend is None
    assert backend("A100-80GB", attention_backend="fa3").attention_backend == "fa3"


def test_engines_that_keep_micro_batches_in_flight_do_not_drain_the_pipeline_each_step():
    from servesim.engines import engine_profile
    from servesim.fleet import build_fleet
    from servesim.scenario import build_scenario

    assert engine_profile("vllm").pipeline_batch_queue
    assert engine_profile("sglang").pipeline_batch_queue
    assert not engine_profile("trtllm").pipeline_batch_queue

    def pp_step(engine: str, pp: int) -> float:
        sc = build_scenario({"engine": engine, "pp": pp, "workload": {"num_requests": 1}})
        cost = build_fleet(sc, np.random.default_rng(0)).instances[0].cost
        return cost.step_time(np.ones(64, dtype=int), np.full(64, 1000)).total_s

    # A decode step over two stages: with steps overlapping, no slower than one GPU's.
    assert pp_step("vllm", 2) <= pp_step("vllm", 1)
    assert pp_step("trtllm", 2) > pp_step("trtllm", 1)
