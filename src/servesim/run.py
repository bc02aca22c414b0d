"""``simulate(scenario) -> Result``: the Python API the CLI is a thin layer over.

Builds the model, hardware, cost model, KV caches, instances, router and workload from a
:class:`~servesim.scenario.Scenario`, runs the event loop, and summarises the records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from servesim.cost import (
    CostParams,
    MemoryPlan,
    Parallelism,
    StepCostModel,
    build_step_cost,
    plan_memory,
)
from servesim.cost.dtypes import tensor_core_peak
from servesim.engine.instance import Instance
from servesim.engine.kv_cache import KVBlockManager
from servesim.engine.loop import Simulation
from servesim.engine.records import RunRecords
from servesim.engine.request import Request
from servesim.engine.router import make_router
from servesim.engine.scheduler import SchedulerConfig
from servesim.errors import ServesimError
from servesim.hardware import Hardware, load_hardware
from servesim.metrics import SLO, summarize
from servesim.model import ModelSpec, load_model
from servesim.scenario import Scenario
from servesim.workload import build_workload, describe


@dataclass
class Result:
    """A finished run: the scenario, its summary metrics and the raw records."""

    scenario: Scenario
    summary: dict[str, Any]
    records: RunRecords
    model: ModelSpec
    hardware: Hardware
    memory: MemoryPlan
    workload_description: str
    step_extra: dict[str, np.ndarray]
    """Per step record, derived from the cost model: ``flops``, ``hbm_bytes`` (per GPU) and
    ``t_<group>`` predicted seconds per operator group (summing to the step's duration)."""


def _oversized_check(
    scenario: Scenario, max_model_len: int, kv_tokens: int
) -> Callable[[Request], str | None]:
    """Why a request can never be served here (None if it can)."""

    def check(req: Request) -> str | None:
        total = req.prompt_tokens + req.max_output_tokens
        if total > max_model_len:
            reason = "longer_than_context"
            detail = f"the model's context window is {max_model_len} tokens"
        elif req.max_tokens > kv_tokens:
            reason = "larger_than_kv_cache"
            detail = f"the whole KV cache holds {kv_tokens} tokens"
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


def simulate(scenario: Scenario, on_progress: Callable[[int], None] | None = None) -> Result:
    """Run ``scenario`` to completion. Same scenario (seed included) → identical results."""
    model = load_model(scenario.model)
    hardware = load_hardware(scenario.hardware)
    par = Parallelism(tp=scenario.tp)
    params = CostParams()
    sched = scenario.scheduler
    memory = plan_memory(
        model,
        hardware,
        par,
        params,
        gpu_memory_utilization=sched.gpu_memory_utilization,
        block_size=sched.block_size,
        max_num_batched_tokens=sched.max_num_batched_tokens,
        max_num_seqs=sched.max_num_seqs,
    )
    cost = build_step_cost(model, hardware, par, params)
    config = SchedulerConfig(
        policy=sched.policy,
        max_num_batched_tokens=sched.max_num_batched_tokens,
        max_num_seqs=sched.max_num_seqs,
        block_size=sched.block_size,
        enable_prefix_caching=sched.enable_prefix_caching,
        enable_chunked_prefill=sched.enable_chunked_prefill,
        long_prefill_token_threshold=sched.long_prefill_token_threshold,
    )
    instances = [
        Instance(
            i,
            config,
            KVBlockManager(memory.num_kv_blocks, sched.block_size, sched.enable_prefix_caching),
            cost,
            fast_forward=scenario.fast_forward,
        )
        for i in range(scenario.replicas)
    ]
    workload_rng, router_rng = np.random.default_rng(scenario.seed).spawn(2)
    sessions = build_workload(scenario.workload, workload_rng)
    max_model_len = scenario.max_model_len or model.max_position_embeddings
    records = RunRecords()
    sim = Simulation(
        instances,
        make_router(scenario.router, router_rng),
        sessions,
        records,
        admission_check=_oversized_check(
            scenario, max_model_len, memory.num_kv_blocks * sched.block_size
        ),
        on_progress=on_progress,
    )
    started = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - started

    requests = records.request_columns()
    if len(requests["request_id"]) == 0:
        raise ServesimError(
            f"no request could be served ({records.num_skipped} skipped: "
            f"{records.skipped_reasons})",
            field="workload",
            fix="shorten the requests, raise --max-model-len, or use more GPUs",
        )
    slo = SLO(scenario.slo.ttft_ms, scenario.slo.tpot_ms, scenario.slo.e2el_ms)
    summary: dict[str, Any] = summarize(requests, *records.itl_pairs(), slo=slo)
    steps = records.step_columns()
    summary.update(
        {
            "num_skipped": records.num_skipped,
            "num_steps": int(steps["num_steps"].sum()),
            "num_step_records": len(steps["num_steps"]),
            "num_preemptions": int(requests["preemptions"].sum()),
            "prefix_cache_hit_rate": float(
                requests["cached_tokens"].sum() / max(1, requests["input_tokens"].sum())
            ),
            "kv_cache_peak_usage": float(steps["kv_usage"].max())
            if len(steps["kv_usage"])
            else 0.0,
            "num_events": sim.num_events,
            "sim_wall_s": wall,
        }
    )
    step_extra, utilisation = _step_work(
        cost, hardware, records, steps, summary["duration"], scenario.replicas
    )
    summary.update(utilisation)
    if records.skipped_reasons:
        summary["skipped_reasons"] = dict(records.skipped_reasons)
    return Result(
        scenario=scenario,
        summary=summary,
        records=records,
        model=model,
        hardware=hardware,
        memory=memory,
        workload_description=describe(scenario.workload),
        step_extra=step_extra,
    )


def _step_work(
    cost: StepCostModel,
    hardware: Hardware,
    records: RunRecords,
    steps: dict[str, np.ndarray],
    duration: float,
    replicas: int,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-step FLOPs, bytes and group times from the recorded features; run MFU and MBU.

    MFU = FLOPs executed per GPU / (duration × dense peak of the compute dtype), averaged over
    replicas; MBU the same with HBM bytes and bandwidth. Both count the whole run duration,
    idle gaps included, as a fleet operator would.
    """
    features = records.step_features()
    flops, hbm = cost.work_from_features(features)
    groups = cost.group_seconds_from_features(features)
    total = sum(groups.values())
    # NOTE: exact for single steps; a span's groups are rescaled to its exact duration.
    scale = np.divide(steps["duration_s"], total, out=np.zeros_like(total), where=total > 0)
    extra = {"flops": flops, "hbm_bytes": hbm}
    extra.update({f"t_{g}": v * scale for g, v in groups.items()})
    res = cost.resolved
    peak = tensor_core_peak(hardware.peak_flops, res.weight_dtype, res.act_dtype)
    denom = duration * replicas
    util = {
        "mfu": float(flops.sum() / (denom * peak)) if denom > 0 else float("nan"),
        "mbu": float(hbm.sum() / (denom * hardware.hbm_bandwidth)) if denom > 0 else float("nan"),
        "fidelity": cost.params.fidelity,
    }
    return extra, util
