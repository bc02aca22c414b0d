"""Deployment planning: search bounds and pruning, cheapest, Pareto frontier, unreachable SLOs."""

import math

import pytest

from servesim.errors import ServesimError
from servesim.hardware import load_hardware
from servesim.sweep.measure import run_point
from servesim.sweep.plan import (
    PLAN_TOLERANCE,
    ROUTING_MARGIN,
    Deployment,
    Evaluation,
    pareto_frontier,
    parse_plan,
    require_feasible,
    scenario_for,
    search_plan,
)

WORKLOAD = {"preset": "conversation", "num_requests": 150}


def make_spec(**fields):
    data = {
        "model": "meta-llama/Llama-3.1-8B",
        "workload": WORKLOAD,
        "rate": 30,
        "slo": {"ttft_ms": 500, "tpot_ms": 40},
        "hardware": ["H100", "H200"],
        "max_gpus": 2,
        "max_num_batched_tokens": [8192],
    }
    data.update(fields)
    return parse_plan(data)


def make_eval(cost, ttft, tpot=10.0, failing=()):
    dep = Deployment("H100", 1, int(cost), 8192, 256)
    return Evaluation(dep, {"ttft_ms": ttft, "tpot_ms": tpot, "e2el_ms": ttft}, failing,
                      cost, cost / 10, {})  # fmt: skip


def serial(percentile=99.0):
    return lambda scenarios: [run_point(sc, percentile) for sc in scenarios]


class FakeFleet:
    """Each replica of TP ``t`` serves ``10 * t`` req/s; TTFT explodes near capacity."""

    def __init__(self, tpot_ms=lambda tp: 20.0 / tp):
        self.tpot_ms = tpot_ms
        self.simulated = []

    def __call__(self, scenarios):
        out = []
        for sc in scenarios:
            rate = sc.workload.arrival.rate
            self.simulated.append((sc.tp, sc.replicas, rate))
            load = rate / (10.0 * sc.tp * sc.replicas)
            ttft = 100 / (1 - load) if load < 1 else math.inf
            m = {"slo_ttft_ms": ttft, "slo_tpot_ms": self.tpot_ms(sc.tp), "slo_e2el_ms": ttft,
                 "usd_per_hour": 3.0 * sc.tp * sc.replicas,
                 "usd_per_million_output_tokens": 1.0, "num_skipped": 0}  # fmt: skip
            out.append({"status": "ok", "error": None, "metrics": m})
        return out

    def counts(self, tp, rate):
        return [r for t, r, x in self.simulated if t == tp and x == rate]


def test_pareto_frontier_keeps_only_undominated_points_cheapest_first():
    a, b, c, d, e = (make_eval(1, 300), make_eval(2, 200), make_eval(2, 250),
                     make_eval(3, 250), make_eval(4, 100))  # fmt: skip
    assert pareto_frontier([e, d, c, b, a]) == [a, b, e]
    assert pareto_frontier([]) == []


def test_search_skips_replica_counts_that_certainly_fall_short_and_stops_after_extras():
    fleet = FakeFleet()
    spec = make_spec(rate=35, slo={"ttft_ms": 500}, hardware=["H100"], max_gpus=8,
                     extra_replicas=1)  # fmt: skip
    plan = search_plan(spec, fleet)
    # One TP1 replica meets TTFT <= 500 ms up to 8 req/s (load 0.8): the search brackets it.
    cap = plan.replica_capacity[Deployment("H100", 1, 1, 8192, 1024)]
    assert cap.rate <= 8 < cap.upper_rate <= 8 * (1 + PLAN_TOLERANCE)
    n_min = math.ceil(35 / (cap.upper_rate * ROUTING_MARGIN))
    # 35 req/s needs 5 replicas (7 req/s each); counts from n_min up, one extra (6), no more.
    assert 2 < n_min < 5
    assert fleet.counts(tp=1, rate=35) == [1, *range(n_min, 7)]  # 1: the capacity's first probe
    assert plan.cheapest.deployment.gpus == 5
    # TP8: one replica (80 req/s) meets the SLO at 35 req/s at once; 2 would be 16 GPUs.
    assert fleet.counts(tp=8, rate=35) == [1]
    # No scenario is simulated twice.
    assert len(fleet.simulated) == len(set(fleet.simulated))


def test_search_stops_a_shape_when_more_replicas_do_not_help():
    fleet = FakeFleet(tpot_ms=lambda tp: 50.0 if tp == 1 else 10.0)  # TPOT fixed by TP
    spec = make_spec(rate=5, hardware=["H100"], max_gpus=8)
    plan = search_plan(spec, fleet)
    # TP1 misses TPOT <= 40 ms at every rate: dropped after its capacity search.
    assert fleet.counts(tp=1, rate=5) == [1]
    assert any("TP1" in n and "out of reach" in n and "TPOT" in n for n in plan.notes)
    assert plan.cheapest.deployment.tp == 2


def test_more_replicas_that_do_not_help_stop_the_scan():
    # TPOT grows with the per-replica load but never drops below 45 ms at 2+ replicas.
    class Stuck(FakeFleet):
        def __call__(self, scenarios):
            out = super().__call__(scenarios)
            for sc, rec in zip(scenarios, out, strict=True):
                if sc.replicas >= 2:
                    rec["metrics"]["slo_tpot_ms"] = 45.0
            return out

    fleet = Stuck()
    spec = make_spec(rate=15, hardware=["H100"], max_gpus=8, slo={"ttft_ms": 500, "tpot_ms": 40})
    plan = search_plan(spec, fleet)
    assert fleet.counts(tp=1, rate=15)[-2:] == [2, 3]  # 3 did not improve on 2: stop
    assert any("more replicas do not help" in n for n in plan.notes)


def test_real_plan_cheapest_meets_the_slos_and_is_on_the_frontier():
    spec = make_spec()
    plan = search_plan(spec, serial())
    best = require_feasible(plan)
    assert best.meets and best.usd_per_hour == min(e.usd_per_hour for e in plan.feasible)
    price = load_hardware(best.deployment.hardware).price_per_gpu_hour
    assert best.usd_per_hour == pytest.approx(best.deployment.gpus * price)
    assert best.usd_per_million_output_tokens == pytest.approx(
        best.usd_per_hour / (best.metrics["output_throughput"] * 3600) * 1e6
    )
    front = plan.frontier()
    assert front[0] is best or front[0].usd_per_hour == best.usd_per_hour
    # Every feasible deployment is on the frontier or dominated by a frontier point.
    for e in plan.feasible:
        assert any(f.usd_per_hour <= e.usd_per_hour and f.values["ttft_ms"] <= e.values["ttft_ms"]
                   for f in front)  # fmt: skip
    # The planner re-checked: simulating the verdicts again gives the same answer.
    again = run_point(scenario_for(spec, best.deployment, spec.rate), 99)["metrics"]
    assert again["slo_ttft_ms"] == best.values["ttft_ms"]


def test_pruned_replica_counts_really_fall_short():
    spec = make_spec(rate=40, hardware=["H100"], max_gpus=8, slo={"ttft_ms": 300, "tpot_ms": 40},
                     workload={**WORKLOAD, "num_requests": 400})  # fmt: skip
    plan = search_plan(spec, serial())
    cheapest = require_feasible(plan).deployment
    cap = plan.replica_capacity[Deployment("H100", 1, 1, 8192, 1024)]
    n_min = math.ceil(40 / (cap.upper_rate * ROUTING_MARGIN))
    assert n_min >= 2
    # The count just below the search's start, simulated anyway: it misses the SLOs.
    short = Deployment("H100", 1, n_min - 1, 8192, 1024)
    m = run_point(scenario_for(spec, short, 40), 99)["metrics"]
    assert m["slo_ttft_ms"] > 300 or m["slo_tpot_ms"] > 40
    assert cheapest.gpus >= n_min


def test_unreachable_plan_says_what_fails_and_the_best_found():
    plan = search_plan(make_spec(slo={"ttft_ms": 500, "tpot_ms": 1}, hardware=["H100"]), serial())
    with pytest.raises(ServesimError) as err:
        require_feasible(plan)
    text = str(err.value)
    assert "no deployment of at most 2 GPUs meets p99 TTFT <= 500 ms, p99 TPOT <= 1 ms" in text
    assert "best found:" in text and "fails p99 TPOT" in text


def test_a_model_that_fits_nowhere_is_reported():
    spec = make_spec(model="meta-llama/Llama-3.1-70B", hardware=["L4"], max_gpus=1)
    plan = search_plan(spec, serial())
    assert plan.evaluations == ()
    with pytest.raises(ServesimError, match="L4 TP1: does not fit"):
        require_feasible(plan)


def test_plan_inputs_are_validated():
    with pytest.raises(ServesimError, match="no SLO"):
        make_spec(slo={})
    with pytest.raises(ServesimError, match="rate"):
        make_spec(rate=0)
    with pytest.raises(ServesimError, match="hardware"):
        make_spec(hardware=[])
    with pytest.raises(ServesimError, match="hardware"):  # unknown GPU
        search_plan(make_spec(hardware=["H999"]), serial())


def test_running_request_caps_default_to_the_engines_own_per_gpu():
    from servesim.sweep.plan import _shapes

    # vLLM V1: 1,024 running requests on GPUs of 70 GiB or more, 256 below (L4, 24 GB).
    shapes, _ = _shapes(make_spec(hardware=["H100", "L4"]))
    assert {(d.hardware, d.max_num_seqs) for d in shapes} == {("H100", 1024), ("L4", 256)}
    shapes, _ = _shapes(make_spec(hardware=["H100"], max_num_seqs=[64, 128]))
    assert {d.max_num_seqs for d in shapes} == {64, 128}
    shapes, _ = _shapes(make_spec(hardware=["H100"], base={"engine": "sglang"}))
    assert {d.max_num_seqs for d in shapes} == {4096}
