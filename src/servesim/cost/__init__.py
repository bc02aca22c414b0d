"""The analytical cost model: FLOPs, bytes and time of forward steps, and the memory budget.

Pure functions of (model, hardware, parallelism, params); no I/O. Typical use::

    cost = build_step_cost(model, hw, Parallelism(tp=2), CostParams())
    cost.step_seconds(new_tokens, context_lens)  # hot path, seconds
    plan = plan_memory(model, hw, Parallelism(tp=2), CostParams())
"""

from __future__ import annotations

from servesim.cost.flops import flops_breakdown
from servesim.cost.memory import GiB, MemoryPlan, plan_memory
from servesim.cost.operators import GROUPS
from servesim.cost.params import CostParams, Parallelism, gemm_efficiency, valid_tps
from servesim.cost.step import OperatorCost, StepCostModel, StepTime, build_step_cost

__all__ = [
    "GROUPS",
    "CostParams",
    "GiB",
    "MemoryPlan",
    "OperatorCost",
    "Parallelism",
    "StepCostModel",
    "StepTime",
    "build_step_cost",
    "flops_breakdown",
    "gemm_efficiency",
    "plan_memory",
    "valid_tps",
]
