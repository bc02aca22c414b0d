"""Deployment planning: the cheapest fleet that serves a load within latency SLOs.

The search space is hardware × TP × scheduler knobs × replicas (data-parallel instances behind
the scenario's router), bounded by ``max_gpus``:

1. **Shapes**: for each GPU type, every TP the model's heads allow up to one node (and
   ``max_gpus``), × each scheduler knob combination; shapes whose weights and one KV block do
   not fit in memory are dropped (``plan_memory``).
2. **Capacity per replica**: a capacity search (bisection over the rate, ``PLAN_TOLERANCE``)
   on one replica of each shape, started at the plan's rate and capped there. ``n`` replicas
   behind a router each see about ``rate / n``; where that is above a rate one replica was
   seen to fail at (``upper_rate``, with ``ROUTING_MARGIN``), ``n`` certainly falls short and
   is never simulated. A shape whose single replica misses the SLOs at any rate is dropped:
   more replicas only lower each one's load.
3. **Rounds**: each round simulates every live shape at its next replica count, in parallel on
   the executor. A shape stops after it has met the SLOs and ``extra_replicas`` more counts
   were tried (those cost more but may cut latency: frontier points), when the next count
   exceeds ``max_gpus``, or when a replica more no longer improves the metric that fails.

Every simulation is keyed by its scenario's hash, so none runs twice (one replica at the plan's
rate is both a capacity probe and the first count of a round).
Cost: GPUs × catalog price per GPU-hour; per million output tokens at the offered rate.
"""

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from servesim.cost import CostParams, Parallelism, plan_memory, valid_tps
from servesim.engines import engine_profile
from servesim.errors import ServesimError
from servesim.hardware import Hardware, load_hardware
from servesim.metrics import SLO
from servesim.model import load_model
from servesim.scenario import (
    Scenario,
    SLOSpec,
    build_scenario,
    describe_instances,
    merge,
)
from servesim.sweep.capacity import (
    METRIC_LABELS,
    Capacity,
    capacity_search,
    describe_slo,
    with_rate,
)
from servesim.sweep.measure import SLO_METRICS, failing_constraints
from servesim.sweep.spec import scenario_id
from servesim.validation import FieldError, Spec, convert, to_data

PLAN_TOLERANCE = 0.1
"""Relative precision of the per-replica capacity searches: they only bound replica counts."""

ROUTING_MARGIN = 1.3
"""Slack on one replica's failing rate before a replica count is ruled out.

NOTE: the capacity search feeds one replica a Poisson stream; behind round robin a replica sees
every n-th arrival of the fleet's stream, which is steadier (Erlang gaps: squared coefficient
of variation 1/n instead of 1), so it sustains more than alone at the same latency. Kingman's
approximation of the queueing wait, ∝ (c_a² + c_s²)/2 · ρ/(1 − ρ), puts the gain for two
replicas (service variation c_s² ≈ 0.5) at +11% of rate at 70% utilisation and up to +30% at
30% (tight SLOs): a margin of 1.1 could rule out the cheapest count (seen with a variant of the
cost model, where a replica behind a two-way router passed at 20 req/s and alone failed at
16.8, +19%). The margin keeps counts just below ``rate / upper_rate`` in the search rather than
ruling them out."""

SKIPPED = "num_skipped"
"""Pseudo-constraint: a deployment that had to skip requests (too long for its KV cache)."""

RunBatch = Callable[[list[Scenario]], list[dict[str, Any]]]
"""Runs scenarios (``run_point`` with the plan's percentile) and returns records in order."""


class PlanSpec(Spec, kw_only=True):
    """What to plan for (validated at the boundary)."""

    model: str
    workload: Annotated[
        dict[str, Any], Meta(description="workload mapping; its arrival rate is `rate`")
    ]
    rate: Annotated[float, Meta(gt=0, description="offered load, requests/s")]
    slo: SLOSpec
    percentile: Annotated[float, Meta(gt=0, le=100)] = 99.0
    hardware: Annotated[list[str], Meta(min_length=1, description="GPU types to consider")]
    max_gpus: Annotated[int, Meta(ge=1, description="most GPUs in a deployment")] = 8
    max_num_batched_tokens: Annotated[list[int], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [2048, 8192]
    )
    max_num_seqs: (
        Annotated[
            list[int],
            Meta(
                min_length=1,
                description="running-request caps to try; default: the engine's own on each GPU",
            ),
        ]
        | None
    ) = None
    extra_replicas: Annotated[
        int, Meta(ge=0, description="replica counts tried past the first that meets the SLOs")
    ] = 1
    base: Annotated[
        dict[str, Any], Meta(description="other scenario fields (dtypes, router, seed...)")
    ] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate):
            raise FieldError("rate", f"must be a finite number of requests/s (got {self.rate})")


def parse_plan(data: dict[str, Any]) -> PlanSpec:
    """Validate plan inputs; a bad field raises ServesimError naming it."""
    spec = convert(data, PlanSpec, "plan")
    if not SLO(**to_data(spec.slo)).any:
        raise ServesimError(
            "no SLO given", field="--slo-ttft-ms", fix="give --slo-ttft-ms and/or --slo-tpot-ms"
        )
    base = spec.base if isinstance(spec.base, dict) else {}
    if (base.get("scheduler") or {}).get("kv_cache_tokens") is not None:
        raise ServesimError(
            "pins one deployment's KV cache, but the plan compares deployments whose caches differ",
            field="scheduler.kv_cache_tokens",
            fix="leave it out of the plan's base scenario (each deployment's memory plan sizes it)",
        )
    return spec


@dataclass(frozen=True)
class Deployment:
    """One fleet: ``replicas`` instances of ``tp`` GPUs each."""

    hardware: str
    tp: int
    replicas: int
    max_num_batched_tokens: int
    max_num_seqs: int

    @property
    def gpus(self) -> int:
        return self.tp * self.replicas

    @property
    def label(self) -> str:
        return describe_instances(self.replicas, self.hardware, self.tp)


@dataclass(frozen=True)
class Evaluation:
    """A deployment simulated at the plan's rate."""

    deployment: Deployment
    values: dict[str, float]
    """TTFT, TPOT, E2EL at the plan's percentile, ms."""
    failing: tuple[str, ...]
    """Constraints missed (SLO metric names, or ``num_skipped``); empty: meets the SLOs."""
    usd_per_hour: float
    usd_per_million_output_tokens: float
    metrics: dict[str, Any]

    @property
    def meets(self) -> bool:
        return not self.failing


@dataclass(frozen=True)
class Plan:
    """Every deployment simulated, and what was ruled out without simulating it."""

    spec: PlanSpec
    evaluations: tuple[Evaluation, ...]
    notes: tuple[str, ...]
    """Shapes ruled out, and why (does not fit, needs too many GPUs, ...)."""
    replica_capacity: dict[Deployment, Capacity] = field(default_factory=dict)
    """One replica's capacity search per shape (``upper_rate`` inf: it passed at the plan's
    rate, where the search stops)."""

    @property
    def feasible(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.meets]

    @property
    def cheapest(self) -> Evaluation | None:
        """Lowest $/hour; ties to fewer GPUs, then lower TTFT."""
        return min(
            self.feasible,
            key=lambda e: (e.usd_per_hour, e.deployment.gpus, e.values["ttft_ms"]),
            default=None,
        )

    def frontier(self, metric: str = "ttft_ms") -> list[Evaluation]:
        return pareto_frontier(self.feasible, metric)


def pareto_frontier(evaluations: list[Evaluation], metric: str = "ttft_ms") -> list[Evaluation]:
    """Deployments no other beats on both $/hour and ``metric`` latency, cheapest first."""
    ordered = sorted(evaluations, key=lambda e: (e.usd_per_hour, e.values[metric]))
    front: list[Evaluation] = []
    for e in ordered:
        if not front or e.values[metric] < front[-1].values[metric]:
            front.append(e)
    return front


@dataclass
class _Shape:
    """A deployment shape (replicas aside) being searched."""

    base: Deployment
    next_replicas: int = 1
    passes: int = 0
    last: Evaluation | None = None
    done: bool = False
    history: list[Evaluation] = field(default_factory=list)


def _display_name(name: str, hw: Hardware) -> str:
    """The catalog id when ``name`` is a shipped GPU (H100 for "h100-sxm"), else as given."""
    try:
        return hw.name if load_hardware(hw.name) == hw else name
    except ServesimError:
        return name


def scenario_for(spec: PlanSpec, dep: Deployment, rate: float) -> Scenario:
    """The scenario of ``dep`` at ``rate`` requests/s (the workload's arrival kind kept)."""
    data = merge(
        spec.base,
        {
            "model": spec.model,
            "hardware": dep.hardware,
            "tp": dep.tp,
            "replicas": dep.replicas,
            "scheduler": {
                "max_num_batched_tokens": dep.max_num_batched_tokens,
                "max_num_seqs": dep.max_num_seqs,
            },
            "workload": spec.workload,
            "slo": {k: v for k, v in to_data(spec.slo).items() if v is not None},
        },
    )
    return with_rate(build_scenario(data, source=f"plan {dep.label}"), rate)


def _shapes(spec: PlanSpec) -> tuple[list[Deployment], list[str]]:
    """Every (hardware, TP, knobs) with one replica that fits in memory; notes on the rest."""
    model = load_model(spec.model)
    shapes: list[Deployment] = []
    notes: list[str] = []
    misfits: set[tuple[str, int]] = set()
    for name in spec.hardware:
        hw = load_hardware(name)
        display = _display_name(name, hw)
        limit = min(spec.max_gpus, hw.gpus_per_node)
        seqs = spec.max_num_seqs or [_engine_max_num_seqs(spec, display)]
        knobs = list(itertools.product(spec.max_num_batched_tokens, seqs))
        for tp in valid_tps(model, limit=limit):
            for mnbt, mns in knobs:
                dep = Deployment(display, tp, 1, mnbt, mns)
                sc = scenario_for(spec, dep, spec.rate)
                try:
                    plan_memory(
                        model, hw, Parallelism(tp=tp, pp=sc.pp, ep=sc.ep),
                        CostParams(weight_dtype=sc.weight_dtype, kv_dtype=sc.kv_dtype),
                        gpu_memory_utilization=sc.scheduler.gpu_memory_utilization,
                        block_size=sc.scheduler.block_size,
                        max_num_batched_tokens=mnbt, max_num_seqs=mns,
                        **engine_profile(sc.engine).kv_memory(sc.engine_version),
                    )  # fmt: skip
                except ServesimError as err:
                    if (display, tp) not in misfits:  # one note, whichever knobs
                        misfits.add((display, tp))
                        notes.append(f"{display} TP{tp}: does not fit ({err})")
                    continue
                shapes.append(dep)
    return shapes, notes


def _engine_max_num_seqs(spec: PlanSpec, hardware: str) -> int:
    """The running-request cap the plan's engine (or the base scenario's) sets itself on
    ``hardware`` (vLLM V1: 1,024 on GPUs of 70 GiB or more, 256 below)."""
    base_sched = spec.base.get("scheduler") if isinstance(spec.base, dict) else None
    if isinstance(base_sched, dict) and "max_num_seqs" in base_sched:
        return int(base_sched["max_num_seqs"])
    data = merge(spec.base, {"model": spec.model, "hardware": hardware})
    return build_scenario(data, source="plan").scheduler.max_num_seqs


def _evaluate(dep: Deployment, record: dict[str, Any], slo: SLO) -> Evaluation:
    m = record["metrics"]
    values = {k: m[f"slo_{k}"] for k in SLO_METRICS}
    failing = failing_constraints(values, slo)
    if m.get("num_skipped", 0) > 0:
        failing = (*failing, SKIPPED)
    return Evaluation(
        dep, values, failing, m["usd_per_hour"], m["usd_per_million_output_tokens"], m
    )


def _stalled(before: Evaluation | None, after: Evaluation) -> bool:
    """Whether one replica more left every failing metric within 1% (more will not help).

    NOTE: TPOT is set by the per-replica batch, not the queue: past some count, replicas do
    not cut it, and a shape whose TPOT misses the SLO there would otherwise be scanned up to
    ``max_gpus`` for nothing. Skipped requests depend on one replica's KV cache, never on
    the count.
    """
    if SKIPPED in after.failing:
        return True
    if before is None or not after.failing:
        return False
    return all(
        m in before.failing and not after.values[m] < 0.99 * before.values[m] for m in after.failing
    )


def _cached(run_batch: RunBatch, on_round: Callable[[str, int], None] | None):
    """``run(phase, scenarios)``: ``run_batch`` that simulates no scenario twice."""
    cache: dict[str, dict[str, Any]] = {}

    def run(phase: str, scenarios: list[Scenario]) -> list[dict[str, Any]]:
        ids = [scenario_id(sc) for sc in scenarios]
        todo = {i: sc for i, sc in zip(ids, scenarios, strict=True) if i not in cache}
        if todo:
            if on_round:
                on_round(phase, len(todo))
            cache.update(zip(todo, run_batch(list(todo.values())), strict=True))
        return [cache[i] for i in ids]

    return run


def _replica_capacities(
    spec: PlanSpec,
    shapes: list[Deployment],
    run,
    notes: list[str],
    evaluations: dict[Deployment, Evaluation],
) -> dict[Deployment, Capacity]:
    """One replica's capacity per shape: every search stepped in lockstep, probes in parallel.

    Each search's first probe is one replica at the plan's rate: a deployment in its own
    right, added to ``evaluations`` (so a plan that no shape can meet still has a best).
    """
    slo = SLO(**to_data(spec.slo))
    searches = {
        dep: capacity_search(
            scenario_for(spec, dep, spec.rate),
            slo,
            percentile=spec.percentile,
            tolerance=PLAN_TOLERANCE,
            start_rate=spec.rate,
            max_rate=spec.rate,
        )  # fmt: skip
        for dep in shapes
    }
    pending = {dep: next(search) for dep, search in searches.items()}
    capacities: dict[Deployment, Capacity] = {}
    while pending:
        deps = list(pending)
        records = run("capacity of one replica", [pending[d] for d in deps])
        for dep, record in zip(deps, records, strict=True):
            at_plan_rate = pending[dep].workload.arrival.rate == spec.rate
            if at_plan_rate and record["status"] == "ok":
                evaluations.setdefault(dep, _evaluate(dep, record, slo))
            try:
                pending[dep] = searches[dep].send(record)
                continue
            except StopIteration as stop:
                capacities[dep] = stop.value
            except (ServesimError, RuntimeError) as err:
                notes.append(f"{_shape_label(dep)}: one replica: {err}")
            del pending[dep]
    return capacities


def _shape_label(dep: Deployment) -> str:
    return f"{dep.hardware} TP{dep.tp} (max_num_batched_tokens {dep.max_num_batched_tokens})"


def search_plan(
    spec: PlanSpec,
    run_batch: RunBatch,
    on_round: Callable[[str, int], None] | None = None,
) -> Plan:
    """Simulate the deployments worth simulating (see the module docstring); a :class:`Plan`.

    ``run_batch`` runs scenarios (e.g. on a process pool or Ray); ``on_round(phase, n)`` is told
    before each batch of ``n`` simulations.
    """
    slo = SLO(**to_data(spec.slo))
    run = _cached(run_batch, on_round)
    candidates, notes = _shapes(spec)
    evaluations: dict[Deployment, Evaluation] = {}
    capacities = _replica_capacities(spec, candidates, run, notes, evaluations)
    shapes: list[_Shape] = []
    for dep, cap in capacities.items():
        n_min = 1
        if math.isfinite(cap.upper_rate):
            n_min = max(1, math.ceil(spec.rate / (cap.upper_rate * ROUTING_MARGIN)))
        if n_min * dep.tp > spec.max_gpus:
            notes.append(
                f"{_shape_label(dep)}: one replica sustains about {cap.rate:.3g} req/s within "
                f"the SLOs, so {spec.rate:g} req/s needs >= {n_min} replicas "
                f"(> {spec.max_gpus} GPUs)"
            )
            continue
        shapes.append(_Shape(dep, next_replicas=n_min))

    while live := [s for s in shapes if not s.done]:
        deps = [
            Deployment(s.base.hardware, s.base.tp, s.next_replicas,
                       s.base.max_num_batched_tokens, s.base.max_num_seqs)
            for s in live
        ]  # fmt: skip
        records = run("replica counts", [scenario_for(spec, d, spec.rate) for d in deps])
        for shape, dep, record in zip(live, deps, records, strict=True):
            if record["status"] != "ok":
                notes.append(f"{dep.label}: {_record_error(record)}")
                shape.done = True
                continue
            ev = evaluations.setdefault(dep, _evaluate(dep, record, slo))
            shape.passes += ev.meets
            stalled = not ev.meets and _stalled(shape.last, ev)
            shape.last = ev
            shape.next_replicas += 1
            shape.done = (
                shape.passes > spec.extra_replicas
                or shape.next_replicas * dep.tp > spec.max_gpus
                or stalled
            )
            if stalled:
                notes.append(
                    f"{_shape_label(dep)}: more replicas do not help "
                    f"({_failing_text(ev, spec)} at {dep.replicas} replicas)"
                )
    return Plan(spec, tuple(evaluations.values()), tuple(notes), capacities)


def _record_error(record: dict[str, Any]) -> str:
    bug = "servesim bug: " if record["status"] == "crash" else ""
    return f"{bug}{record['error']}"


def _failing_text(ev: Evaluation, spec: PlanSpec) -> str:
    parts = []
    for m in ev.failing:
        if m == SKIPPED:
            parts.append(f"{ev.metrics.get('num_skipped', 0)} requests skipped")
        else:
            limit = getattr(spec.slo, m)
            parts.append(
                f"p{spec.percentile:g} {METRIC_LABELS[m]} {ev.values[m]:,.1f} ms > {limit:g} ms"
            )
    return ", ".join(parts)


def _violation(ev: Evaluation, spec: PlanSpec) -> float:
    """How far a deployment is from the SLOs: the worst ratio value / target (inf if skipping)."""
    if SKIPPED in ev.failing:
        return math.inf
    ratios = [
        ev.values[m] / getattr(spec.slo, m) for m in SLO_METRICS if getattr(spec.slo, m) is not None
    ]
    return max(math.inf if math.isnan(r) else r for r in ratios)


def require_feasible(plan: Plan) -> Evaluation:
    """The cheapest deployment meeting the SLOs; ServesimError naming what fails otherwise."""
    cheapest = plan.cheapest
    if cheapest is not None:
        return cheapest
    spec = plan.spec
    target = (
        f"no deployment of at most {spec.max_gpus} GPUs meets "
        f"{describe_slo(SLO(**to_data(spec.slo)), spec.percentile)} at {spec.rate:g} req/s"
    )
    fix = "raise --max-gpus, add --hardware types, relax the SLOs or lower --rate"
    if not plan.evaluations:
        why = "; ".join(plan.notes) or "no shape to try"
        raise ServesimError(f"{target}: {why}", field="plan", fix=fix)
    best = min(plan.evaluations, key=lambda e: _violation(e, spec))
    shown = ", ".join(
        f"p{spec.percentile:g} {METRIC_LABELS[m]} {best.values[m]:,.1f} ms"
        for m in SLO_METRICS
        if getattr(spec.slo, m) is not None
    )
    raise ServesimError(
        f"{target}; best found: {best.deployment.label} ({best.deployment.gpus} GPUs): {shown} "
        f"— fails {_failing_text(best, spec)}",
        field="plan",
        fix=fix,
    )


def evaluation_document(e: Evaluation) -> dict[str, Any]:
    """One simulated deployment as ``servesim plan --json`` lists it."""
    d = e.deployment
    return {
        "hardware": d.hardware,
        "tp": d.tp,
        "replicas": d.replicas,
        "gpus": d.gpus,
        "max_num_batched_tokens": d.max_num_batched_tokens,
        "max_num_seqs": d.max_num_seqs,
        "values_ms": e.values,
        "meets": e.meets,
        "failing": list(e.failing),
        "usd_per_hour": e.usd_per_hour,
        "usd_per_million_output_tokens": e.usd_per_million_output_tokens,
    }


def plan_document(plan: Plan, metric: str = "ttft_ms") -> dict[str, Any]:
    """``servesim plan --json``: the cheapest deployment (None if none meets the SLOs), the
    Pareto frontier of cost against ``metric``, every deployment simulated, and the shapes
    ruled out without simulating them."""
    cheapest = plan.cheapest
    return {
        "cheapest": None if cheapest is None else evaluation_document(cheapest),
        "frontier": [evaluation_document(e) for e in plan.frontier(metric)],
        "evaluated": [evaluation_document(e) for e in plan.evaluations],
        "notes": list(plan.notes),
    }
