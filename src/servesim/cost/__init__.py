"""The analytical cost model: FLOPs, bytes and time of forward steps, and the memory budget.

Pure functions of (model, hardware, parallelism, params); no I/O. Typical use::

    cost = build_step_cost(model, hw, Parallelism(tp=2), CostParams())
    cost.step_seconds(new_tokens, context_lens)  # hot path, seconds
    plan = plan_memory(model, hw, Parallelism(tp=2), CostParams())

Serving features: pipeline micro-batches (``CostParams.pp_microbatches``,
``StepCostModel.pipeline_from_features``), wide expert parallelism with all-to-all
(``Parallelism(dp=..., ep=...)``, ``CostParams.moe_skew``), host overhead and CUDA graphs
(``CostParams.cuda_graphs``, ``host_*``), power and energy (``energy_from_features``), KV
transfer over the host link (``kv_transfer_seconds``) and drafting costs (``draft_cost``).
"""

from __future__ import annotations

from servesim.cost.accounting import OperatorCost, StepTime
from servesim.cost.build import build_step_cost
from servesim.cost.flops import flops_breakdown
from servesim.cost.memory import (
    GiB,
    MemoryPlan,
    kv_transfer_seconds,
    plan_memory,
    weights_bytes_per_gpu,
)
from servesim.cost.operator import GROUPS
from servesim.cost.params import CostParams, Parallelism, gemm_efficiency, valid_tps
from servesim.cost.pipeline import PipelineTime, bubble_fraction, pipeline_seconds
from servesim.cost.speculative import DraftCost, draft_cost
from servesim.cost.step import StepCostModel

__all__ = [
    "GROUPS",
    "CostParams",
    "DraftCost",
    "GiB",
    "MemoryPlan",
    "OperatorCost",
    "Parallelism",
    "PipelineTime",
    "StepCostModel",
    "StepTime",
    "bubble_fraction",
    "build_step_cost",
    "draft_cost",
    "flops_breakdown",
    "gemm_efficiency",
    "kv_transfer_seconds",
    "pipeline_seconds",
    "plan_memory",
    "valid_tps",
    "weights_bytes_per_gpu",
]
