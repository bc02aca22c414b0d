"""``simulate(scenario) -> Result``: the Python API the CLI is a thin layer over.

Builds the fleet (:mod:`servesim.fleet`), the router and the workload from a
:class:`~servesim.scenario.Scenario`, runs the event loop, and summarises the records
(:mod:`servesim.summary`). :func:`prepare` and :func:`summarize_run` are the two halves, for a
loop driven from outside (``servesim serve``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from servesim.cost import MemoryPlan
from servesim.engine.concurrency import CappedSimulation
from servesim.engine.loop import ApiLatency, Handoff, Simulation, StepObserver
from servesim.engine.records import RunRecords
from servesim.engine.request import Request
from servesim.engine.router import make_router
from servesim.errors import ServesimError
from servesim.fleet import Fleet, InstanceGroupRuntime, build_fleet, kv_transfer
from servesim.hardware import Hardware
from servesim.kernel_cache import record_kernels_cached
from servesim.model import ModelSpec
from servesim.scenario import Scenario
from servesim.summary import run_summary
from servesim.validation import replace
from servesim.workload import Session, build_workload, describe


@dataclass
class Result:
    """A finished run: the scenario, its summary metrics and the raw records."""

    scenario: Scenario
    summary: dict[str, Any]
    records: RunRecords
    model: ModelSpec
    hardware: Hardware
    """The first group's hardware (the only one unless the fleet is heterogeneous)."""
    memory: MemoryPlan
    """The first group's memory plan."""
    workload_description: str
    step_extra: Mapping[str, np.ndarray]
    """Per step record, derived from the cost model: ``flops``, ``hbm_bytes`` (per GPU) and
    ``t_<group>`` predicted seconds per operator group (summing to the step's duration)."""
    groups: list[InstanceGroupRuntime]


@dataclass
class Prepared:
    """A fleet built from a scenario and its event loop, ready to run (offline or online)."""

    fleet: Fleet
    sim: Simulation

    @property
    def scenario(self) -> Scenario:
        return self.fleet.scenario

    @property
    def model(self) -> ModelSpec:
        return self.fleet.model

    @property
    def max_model_len(self) -> int:
        return self.fleet.max_model_len

    @property
    def kv_tokens(self) -> int:
        """Tokens the smallest instance's KV cache holds."""
        return self.fleet.kv_tokens

    @property
    def runtimes(self) -> list[InstanceGroupRuntime]:
        return self.fleet.groups

    @property
    def api(self) -> ApiLatency | None:
        return self.fleet.api


def prepare(
    scenario: Scenario,
    on_progress: Callable[[int], None] | None = None,
    sessions: Iterator[Session] | None = None,
    on_step: StepObserver | None = None,
) -> Prepared:
    """Build ``scenario``'s fleet and event loop. ``sessions`` replaces the scenario's workload
    (online serving passes none and submits requests as clients send them)."""
    workload_rng, router_rng, engine_rng = np.random.default_rng(scenario.seed).spawn(3)
    fleet = build_fleet(scenario, engine_rng)
    entry = [i for i in fleet.instances if i.role != "decode"]
    decode = [i for i in fleet.instances if i.role == "decode"]
    handoff = None
    if decode:
        handoff = Handoff(decode, make_router("least_outstanding", router_rng), kv_transfer(fleet))
    if sessions is None:
        sessions = build_workload(scenario.workload, workload_rng)
    cap = scenario.workload.max_concurrency
    simulation = Simulation if cap is None else partial(CappedSimulation, max_concurrency=cap)
    sim = simulation(
        entry,
        make_router(scenario.router, router_rng),
        sessions,
        RunRecords(),
        admission_check=_oversized_check(
            scenario, fleet.max_model_len, fleet.kv_tokens, fleet.admits_alone
        ),
        on_progress=on_progress,
        handoff=handoff,
        api=fleet.api,
        on_step=on_step,
    )
    return Prepared(fleet, sim)


def simulate(scenario: Scenario, on_progress: Callable[[int], None] | None = None) -> Result:
    """Run ``scenario`` to completion. Same scenario (seed included) → identical results."""
    run = prepare(scenario, on_progress)
    started = time.perf_counter()
    run.sim.run()
    wall = time.perf_counter() - started
    if any(instance.compiled for instance in run.fleet.instances):
        record_kernels_cached()  # (numba wrote what it compiled: later runs may load it)
    return summarize_run(run, wall)


def summarize_run(run: Prepared, wall: float, compare_speculation: bool = True) -> Result:
    """The :class:`Result` of a finished (or stopped) run, ``wall`` seconds of it simulating.

    ``compare_speculation``: with speculative decoding, also simulate the scenario without it
    (offline only: a served run's workload is whatever the clients sent)."""
    scenario, fleet = run.scenario, run.fleet

    def without_speculation() -> dict[str, Any]:
        return simulate(replace(scenario, speculative=None)).summary

    summary, step_extra = run_summary(
        fleet, run.sim.records, run.sim.num_events, wall,
        without_speculation if compare_speculation else None,
    )  # fmt: skip
    return Result(
        scenario=scenario,
        summary=summary,
        records=run.sim.records,
        model=fleet.model,
        hardware=fleet.groups[0].hardware,
        memory=fleet.groups[0].memory,
        workload_description=describe(scenario.workload),
        step_extra=step_extra,
        groups=fleet.groups,
    )


def _oversized_check(
    scenario: Scenario,
    max_model_len: int,
    kv_tokens: int,
    admits_alone: Callable[[int, int], bool],
) -> Callable[[Request], str | None]:
    """Why a request can never be served here (None if it can): longer than the context
    window, more KV than the cache holds, or more than a look-ahead admission ever lets in
    (``admits_alone(prompt, output)``, e.g. ``Fleet.admits_alone``: SGLang's test asks room
    for the prompt and the whole output, strictly less than the cache)."""

    def check(req: Request) -> str | None:
        total = req.prompt_tokens + req.max_output_tokens
        if total > max_model_len:
            reason = "longer_than_context"
            detail = f"the model's context window is {max_model_len} tokens"
        elif req.max_tokens > kv_tokens:
            reason = "larger_than_kv_cache"
            detail = f"the whole KV cache holds {kv_tokens} tokens"
        elif not admits_alone(req.prompt_tokens, req.max_output_tokens):
            reason = "larger_than_kv_cache"
            detail = (
                "the engine's look-ahead admission lets a request in only when its prompt and "
                "its whole output fit in the KV cache with room to spare "
                f"(the cache holds {kv_tokens} tokens)"
            )
        else:
            return None
        if scenario.on_oversized == "error":
            raise ServesimError(
                f"request {req.request_id} needs {req.prompt_tokens} + {req.max_output_tokens} "
                f"tokens but {detail}",
                field="workload",
                fix="pass --on-oversized skip to skip such requests, or shorten them",
            )
        return reason

    return check
