"""Accounting of a step: where its time, work and energy go.

The methods of :class:`StepAccounting` explain what :class:`servesim.cost.step.StepCostModel`
prices: seconds per operator group and per fidelity rung, FLOPs and bytes, the compute and
memory sides calibration refits, utilisation, power and energy, and the breakdown of one step.
They run after a simulation, in bulk, on the step features the engine recorded; none is on the
hot path. ``StepCostModel`` inherits them and provides the coefficient tables they read
(``_ops``, ``_fixed``, ``_group_idx``, ``_groups``) and the evaluation pieces (``_split``,
``_gpu``, ``pipeline_from_features``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.cost.operator import GROUPS
from servesim.cost.power import active_seconds, gpu_power_watts, utilisation
from servesim.errors import ServesimError

RUNGS = ("measured", "fitted", "calibrated", "roofline")
"""The rungs of the fidelity ladder an operator's time can stand on, best first: priced from a
measured kernel table; from an efficiency curve fitted to measured tables; from efficiencies
fitted to the user's own measurements (``servesim calibrate``); from datasheet peaks."""


@dataclass(frozen=True)
class StepTime:
    """One step's predicted time and where it goes."""

    total_s: float
    """Seconds for the whole step (equals ``StepCostModel.step_seconds``)."""
    by_group: dict[str, float]
    """Seconds per operator group (see ``operator.GROUPS``); they sum to ``total_s``. Under
    pipeline parallelism each GPU group is scaled to its share of the pipelined time; the
    host time the GPU does not hide counts as ``overhead``."""
    flops: float
    """FLOPs executed per GPU, summed over pipeline stages."""
    bytes: float
    """HBM bytes moved per GPU (weights, activations, KV), summed over pipeline stages."""
    comm_bytes: float
    """Bytes each GPU sends over links (all-reduce ring traffic, logits gather, stage sends,
    all-to-all)."""
    flops_by_group: dict[str, float]
    bytes_by_group: dict[str, float]
    fidelity: str
    """``measured`` | ``fitted`` | ``calibrated`` | ``roofline``: the rung of the ladder most of
    the step's operator time stands on (see ``RUNGS``)."""
    gpu_s: float = 0.0
    """Seconds of GPU work (pipelined under PP; with eager kernel issue without CUDA graphs)."""
    host_s: float = 0.0
    """Host seconds of the serving loop (overlapped with ``gpu_s`` under CUDA graphs)."""
    bubble_fraction: float = 0.0
    """Share of stage-time the pipeline stages sit idle (0 without PP)."""


@dataclass(frozen=True)
class OperatorCost:
    """One operator's share of a step (all its occurrences, e.g. every layer)."""

    name: str
    group: str
    flops: float
    """FLOPs per GPU."""
    bytes: float
    """HBM bytes per GPU, or bytes each GPU sends for link operators."""
    seconds: float
    bound: str
    """``compute``, ``memory``, ``link`` or ``launch`` (the CPU issuing kernels without CUDA
    graphs): which limit set its time."""


class StepAccounting:
    """Where a step's time, work and energy go (mixed into ``StepCostModel``)."""

    # --- features: what the engine records, so work and breakdowns come later, in bulk -----

    def operator_sides_from_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(compute, memory) seconds of every operator for rows of step features.

        Both have shape (rows, operators + 1): column ``i`` is ``operators[i]``, the last column
        the per-step overhead (``step_overhead_s`` and the ``overhead_per_*`` terms). Launch/
        latency seconds are in both sides, so the GPU part and the overhead of a step take
        ``np.maximum(compute, memory).sum(axis=1)`` (what calibration refits, side by side);
        the host time (:meth:`host_seconds_from_features`) is apart. Without CUDA graphs each
        side is raised to the kernel-issue time; under PP the sides are scaled to the pipelined
        GPU time.
        """
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        a, m, steps = self._split(rows)
        comp, mem = self._ops.compute_seconds(a), self._ops.memory_seconds(a)
        if self._ops.eager is not None:
            issue = a @ self._ops.eager
            comp, mem = np.maximum(comp, issue), np.maximum(mem, issue)
        if not self._simple:
            gpu, *_, sec, _ = self._gpu(rows)
            scale = _ratio(gpu, sec.sum(axis=1))[:, None]
            comp, mem = comp * scale, mem * scale
        over = (rows @ self._fixed[:, 0])[:, None]
        return np.concatenate([comp, over], axis=1), np.concatenate([mem, over], axis=1)

    def _work_features(self, rows: np.ndarray) -> np.ndarray:
        """Features whose linear FLOPs/bytes are a step's work on one GPU: every micro-batch
        reads the weights again."""
        a, m, steps = self._split(rows)
        return a if self._simple else a * (m * steps)[:, None]

    def work_from_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(FLOPs, HBM bytes) per GPU for rows of (possibly summed) step features.

        Both are linear in the features without PP or DP, so a span's summed features give its
        exact totals; with micro-batches the weights count once per micro-batch.
        """
        f = np.asarray(features, dtype=np.float64)
        w = self._work_features(np.atleast_2d(f))
        hbm = np.where(self._ops.is_link, 0.0, self._ops.nbytes)
        flops, nbytes = w @ self._ops.flops.sum(axis=1), w @ hbm.sum(axis=1)
        if f.ndim == 1:
            return flops[0], nbytes[0]
        return flops, nbytes

    def rung_seconds_from_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """GPU seconds per fidelity rung (``RUNGS``) for rows of step features, shape (rows,)
        per rung: which share of each step's operator time stands on measured tables, fitted
        curves, a calibration or the roofline (scaled to the pipelined time under PP)."""
        return self.rungs_and_host_bound_from_features(features)[0]

    def rungs_and_host_bound_from_features(
        self, features: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(:meth:`rung_seconds_from_features`, ``host_bound_seconds_from_features``) of rows
        of step features, the operators' seconds worked out once for both (a run's totals
        read both of every record)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        gpu, _, _, steps, sec, _ = self._gpu(rows)
        scale = _ratio(gpu, sec.sum(axis=1))
        rung = self._ops.rung
        rungs = {r: sec[:, rung == j].sum(axis=1) * scale for j, r in enumerate(RUNGS)}
        return rungs, self._host_bound(rows, gpu)

    def _dominant_rung(self, rows: np.ndarray) -> str:
        """The rung most of a step's operator time stands on."""
        secs = {k: float(v.sum()) for k, v in self.rung_seconds_from_features(rows).items()}
        if sum(secs.values()) <= 0:
            return self.params.fidelity
        return max(secs, key=lambda k: secs[k])

    def extrapolated_from_features(self, features: np.ndarray) -> np.ndarray:
        """Whether each row has a measured operator outside its table's range (the achieved
        throughput was clamped at the last measured point)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        curves = self._ops.curves
        if curves is None:
            return np.zeros(len(rows), dtype=bool)
        return curves.outside(self._split(rows)[0])

    def group_seconds_from_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Seconds per operator group for rows of step features, shape (rows,) per group.

        They sum to the step time: GPU groups (scaled to the pipelined time under PP) plus
        ``overhead``, which also holds the host time the GPU does not hide. Exact for a single
        step's features. For a decode span's *summed* features the per-operator max() is taken
        once over the sum, which differs from summing per step only where an operator flips
        between compute- and memory-bound inside the span.
        """
        return self.groups_and_host_bound_from_features(features)[0]

    def groups_and_host_bound_from_features(
        self, features: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(:meth:`group_seconds_from_features`, ``host_bound_seconds_from_features``) of rows
        of step features, the operators' seconds worked out once for both (the per-step
        columns of steps.csv read both of every record)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        gpu, _, _, steps, sec, _ = self._gpu(rows)
        scale = _ratio(gpu, sec.sum(axis=1)) if not self._simple else np.ones(len(rows))
        over, host = (rows @ self._fixed).T
        exposed = np.maximum(host - gpu, 0.0) if self.host_overlaps else host
        out = {}
        for g in self._groups:
            if g == "overhead":
                out[g] = over + exposed
            else:
                out[g] = sec[:, self._group_idx == GROUPS.index(g)].sum(axis=1) * scale
        return out, self._host_bound(rows, gpu)

    # --- energy ---------------------------------------------------------------------------------

    def utilisation_from_features(self, features: np.ndarray, durations: np.ndarray) -> np.ndarray:
        """Power-weighted busy fraction ``u`` in [0, 1] of each step on one GPU (see
        :func:`servesim.cost.power.utilisation`): compute- and memory-side seconds of every
        operator (launch gaps, link waits and pipeline bubbles are idle time), over the step's
        ``durations`` (seconds; the engine's, which may include drafting or KV loads)."""
        rows = np.atleast_2d(np.asarray(features, dtype=np.float64))
        w = self._work_features(rows)
        comp, mem = w @ self._ops.busy_compute, w @ self._ops.busy_memory
        active = active_seconds(comp, mem, self.params.memory_power_weight).sum(axis=1)
        # The whole-model operators are summed over the pp stages' GPUs: average over them.
        return utilisation(active, np.asarray(durations, dtype=np.float64) * self.parallelism.pp)

    def power_from_features(self, features: np.ndarray, durations: np.ndarray) -> np.ndarray:
        """Average watts per GPU over each step: ``idle_w + (tdp_w − idle_w) · u``."""
        u = self.utilisation_from_features(features, durations)
        return gpu_power_watts(self.hardware.tdp_w, self.hardware.idle_w, u)

    def energy_from_features(self, features: np.ndarray, durations: np.ndarray) -> np.ndarray:
        """Joules per GPU of each step (or span): average power × duration, shape (rows,).
        A replica's energy is this times ``parallelism.gpus``; idle gaps between steps draw
        ``hardware.idle_w`` per GPU."""
        return self.power_from_features(features, durations) * np.asarray(durations, float)

    # --- one step, explained ------------------------------------------------------------------

    def step_time(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> StepTime:
        """Same number as :meth:`step_seconds`, with the breakdown by operator group."""
        new_tokens = np.asarray(new_tokens)
        context_lens = np.asarray(context_lens)
        _check_batch(new_tokens, context_lens)
        if new_tokens.shape[0] == 0:
            zeros = dict.fromkeys(self._groups, 0.0)
            return StepTime(
                0.0, zeros, 0.0, 0.0, 0.0, dict(zeros), dict(zeros), self.params.fidelity
            )
        f = self.feature_map.step(new_tokens, context_lens)
        rows = f[None, :]
        groups = self.group_seconds_from_features(rows)
        w = self._work_features(rows)[0]
        op_flops = self._ops.flops.T @ w
        op_bytes = self._ops.nbytes.T @ w
        ngroups = len(GROUPS)
        link = self._ops.is_link
        flops = np.bincount(self._group_idx, weights=op_flops, minlength=ngroups)
        hbm = np.bincount(self._group_idx, weights=np.where(link, 0.0, op_bytes), minlength=ngroups)
        pipe = self.pipeline_from_features(rows)
        return StepTime(
            total_s=float(self.seconds_from_features(f)),
            by_group={g: float(groups[g][0]) for g in self._groups},
            flops=float(op_flops.sum()),
            bytes=float(hbm.sum()),
            comm_bytes=float(op_bytes[link].sum()),
            flops_by_group={g: float(flops[GROUPS.index(g)]) for g in self._groups},
            bytes_by_group={g: float(hbm[GROUPS.index(g)]) for g in self._groups},
            fidelity=self._dominant_rung(rows),
            gpu_s=float(pipe.gpu_s[0]),
            host_s=float(self.host_seconds_from_features(f)),
            bubble_fraction=float(pipe.bubble_fraction[0]),
        )

    def operator_breakdown(
        self, new_tokens: np.ndarray, context_lens: np.ndarray
    ) -> list[OperatorCost]:
        """Per-operator FLOPs, bytes, seconds and bound of one step (seconds sum to the step
        time less the ``overhead`` group; scaled to the pipelined time under PP)."""
        new_tokens = np.asarray(new_tokens)
        context_lens = np.asarray(context_lens)
        _check_batch(new_tokens, context_lens)
        if new_tokens.shape[0] == 0:
            return []
        rows = self.feature_map.step(new_tokens, context_lens)[None, :]
        gpu, a, _, _, sec, _ = self._gpu(rows)
        scale = float(_ratio(gpu, sec.sum(axis=1))[0]) if not self._simple else 1.0
        ops = self._ops
        comp, mem = ops.compute_seconds(a)[0], ops.memory_seconds(a)[0]
        issue = (a @ ops.eager)[0] if ops.eager is not None else np.zeros_like(comp)
        w = self._work_features(rows)[0]
        flops, nbytes = ops.flops.T @ w, ops.nbytes.T @ w
        out = []
        for i, op in enumerate(self.operators):
            if issue[i] > max(comp[i], mem[i]):
                bound = "launch"
            elif ops.is_link[i]:
                bound = "link"
            else:
                bound = "compute" if comp[i] > mem[i] else "memory"
            out.append(
                OperatorCost(
                    op.name,
                    op.group,
                    float(flops[i]),
                    float(nbytes[i]),
                    float(sec[0, i] * scale),
                    bound,
                )
            )
        return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _check_batch(new_tokens: np.ndarray, context_lens: np.ndarray) -> None:
    if new_tokens.ndim != 1 or new_tokens.shape != context_lens.shape:
        raise ServesimError(
            f"new_tokens {new_tokens.shape} and context_lens {context_lens.shape} must be 1-D "
            "arrays of the same length",
            field="batch",
            fix="pass one entry per sequence",
        )
    if (new_tokens < 0).any() or (context_lens < 0).any():
        raise ServesimError(
            "token counts must be >= 0", field="batch", fix="check the batch composition"
        )


__all__ = ["RUNGS", "OperatorCost", "StepAccounting", "StepTime"]
