"""Pipeline-parallel formulas: how a step's micro-batches flow through the ``pp`` stages.

A step of ``B`` sequences is split into ``m = min(pp_microbatches, B)`` equal micro-batches.
With ``t_s`` the time of one micro-batch in stage ``s`` (its hand-off to the next stage
included),

    gpu = Σ_s t_s + (m − 1) · max_s t_s       (every step fills and drains the pipeline)
    gpu = max(m · max_s t_s, Σ_s t_s)         (pp_overlap_steps: steps overlap, no drain)

and the bubble — the share of stage-time the stages sit idle — is ``1 − m Σ_s t_s / (pp · gpu)``,
``(pp − 1)/(m + pp − 1)`` for equal stages. Units: seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PipelineTime:
    """How a step's GPU work flows through the pipeline (arrays: one entry per feature row)."""

    stage_s: np.ndarray
    """Shape (..., pp): seconds one micro-batch spends in each stage, its hand-off included."""
    microbatches: np.ndarray
    """Micro-batches the step is split into: ``min(pp_microbatches, sequences)``."""
    gpu_s: np.ndarray
    """GPU seconds of the step under the pipelined schedule."""
    bubble_fraction: np.ndarray
    """``1 − m·Σ_s t_s / (pp · gpu_s)``: the share of stage-time the stages sit idle."""


def pipeline_seconds(
    stage_s: np.ndarray, microbatches: np.ndarray | float, overlap_steps: bool = False
) -> np.ndarray:
    """GPU seconds of a step of ``microbatches`` micro-batches over stages taking ``stage_s``.

    ``stage_s`` has shape (..., pp): seconds of one micro-batch in each stage. Without overlap
    the first micro-batch crosses every stage and the slowest stage paces the others:
    ``Σ_s t_s + (m − 1)·max_s t_s`` (``(m + pp − 1)·t`` for equal stages). With
    ``overlap_steps`` the next step's micro-batches fill the drain, so a step takes
    ``max(m·max_s t_s, Σ_s t_s)``: the slowest stage is busy all the time, or a micro-batch
    cannot come round sooner than its trip through every stage.
    """
    stage_s = np.asarray(stage_s, dtype=np.float64)
    m = np.asarray(microbatches, dtype=np.float64)
    total, slowest = stage_s.sum(axis=-1), stage_s.max(axis=-1)
    if overlap_steps:
        return np.maximum(m * slowest, total)
    return total + (m - 1.0) * slowest


def bubble_fraction(
    stage_s: np.ndarray, microbatches: np.ndarray | float, gpu_s: np.ndarray | float
) -> np.ndarray:
    """Share of stage-time idle in a pipelined step: ``1 − m·Σ_s t_s / (pp · gpu_s)``."""
    stage_s = np.asarray(stage_s, dtype=np.float64)
    busy = np.asarray(microbatches, dtype=np.float64) * stage_s.sum(axis=-1)
    span = stage_s.shape[-1] * np.asarray(gpu_s, dtype=np.float64)
    return np.where(span > 0, 1.0 - busy / np.where(span > 0, span, 1.0), 0.0)


__all__ = ["PipelineTime", "bubble_fraction", "pipeline_seconds"]
