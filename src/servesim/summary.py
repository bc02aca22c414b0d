"""The summary of a finished run: ``summary.json``'s metrics, from the records and the fleet.

:func:`servesim.metrics.summarize` computes the vLLM-named latency and throughput statistics
from the request records; this module adds what needs the fleet as well: step and event
counts, the API server's share of TTFT, MFU and MBU, energy, the fidelity rung the cost model
stood on, per-instance figures, KV offload and transfer counts, speculative decoding against
the same run without it, and the calibration's extrapolation warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from servesim.cost.dtypes import tensor_core_peak
from servesim.engine.loop import ApiLatency
from servesim.engine.records import RunRecords
from servesim.engines import release_outside_profile
from servesim.errors import ServesimError
from servesim.fleet import Fleet, InstanceGroupRuntime
from servesim.metrics import SLO, pairwise_sum, summarize
from servesim.scenario import Scenario, engine_profile_of


def run_summary(
    fleet: Fleet,
    records: RunRecords,
    num_events: int,
    wall: float,
    without_speculation: Callable[[], dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], Mapping[str, np.ndarray]]:
    """(summary metrics, per-step extras) of a run of ``fleet`` that left ``records``, with
    ``num_events`` events in ``wall`` seconds of simulating.

    ``without_speculation``: the summary of the same run without speculative decoding, called
    when the run has it (None: leave the speculation figures out, as a served run does). The
    extras are per step record: ``flops``, ``hbm_bytes`` (per GPU), ``power_w``,
    ``t_host_bound`` and ``t_<group>`` predicted seconds per operator group (summing to the
    step's duration)."""
    scenario, runtimes, api = fleet.scenario, fleet.groups, fleet.api
    model, max_model_len = fleet.model, fleet.max_model_len
    profile = engine_profile_of(scenario)

    requests = records.request_columns()
    if len(requests["request_id"]) == 0:
        pinned = any(g.memory.kv_pinned for g in runtimes)
        reasons = records.skipped_reasons
        # (More GPUs hold more KV cache; they do not lengthen the model's context window.)
        fixes = ["shorten the requests"]
        if max_model_len < model.max_position_embeddings:
            fixes.append("raise --max-model-len")
        if pinned:
            fixes.append("raise --kv-cache-tokens")
        if set(reasons) - {"longer_than_context"}:
            fixes.append("use more GPUs")
        raise ServesimError(
            f"no request could be served ({records.num_skipped} skipped: {reasons})",
            field="workload",
            fix=", ".join(fixes[:-1]) + (" or " if len(fixes) > 1 else "") + fixes[-1],
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
            "num_gpus": sum(g.gpus_per_instance * len(g.instances) for g in runtimes),
            "num_events": num_events,
            "sim_wall_s": wall,
            "compiled_kernels": any(i.compiled for g in runtimes for i in g.instances),
        }
    )
    summary.update(_api_summary(api, requests, summary))
    summary["engine"] = profile.name
    step_extra, utilisation = _step_work(runtimes, records, steps, summary["duration"])
    summary.update(utilisation)
    summary["energy_per_request_j"] = summary["energy_j"] / summary["completed"]
    tokens_out = max(1, summary["total_output_tokens"])
    summary["energy_per_output_token_j"] = summary["energy_j"] / tokens_out
    summary["per_instance"] = _per_instance(runtimes, requests, steps, summary["duration"])
    loaded = sum(i.kv.num_loaded_blocks for g in runtimes for i in g.instances)
    spilled = sum(i.kv.num_spilled_blocks for g in runtimes for i in g.instances)
    if scenario.kv_offload:
        summary["kv_offload_spilled_blocks"] = spilled
        summary["kv_offload_loaded_blocks"] = loaded
    if records.num_kv_transfers:
        summary["num_kv_transfers"] = records.num_kv_transfers
        summary["mean_kv_transfer_ms"] = (
            1000 * records.kv_transfer_seconds / records.num_kv_transfers
        )
    if scenario.speculative is not None and without_speculation is not None:
        summary.update(_speculation_summary(scenario, steps, summary, without_speculation))
    if records.skipped_reasons:
        summary["skipped_reasons"] = dict(records.skipped_reasons)
    if scenario.calibration is not None:
        from servesim.calibrate.calibration import extrapolation_warning

        warning = extrapolation_warning(scenario.calibration, steps)
        if warning:
            summary["calibration_warning"] = warning
    record = _track_record(scenario, runtimes, model)
    if record is not None:
        summary["track_record"] = record
    if model.unmodelled:
        summary["model_caveats"] = list(model.unmodelled)
    outside = release_outside_profile(scenario.engine, scenario.engine_version)
    if outside is not None:
        summary["engine_warning"] = outside
    fragile = _kv_memory_sensitivity(runtimes, summary["kv_cache_peak_usage"])
    if fragile is not None:
        summary["kv_memory_sensitivity"] = fragile
    return summary, step_extra


KV_BOUND_USAGE = 0.95
"""KV-cache peak usage from which a run counts as bound by its KV cache."""
KV_SENSITIVE_PER_GIB = 0.10
"""Share of the KV cache one GiB of memory is, from which a KV-bound run's prediction is
flagged as only as sure as the memory plan."""


def _kv_memory_sensitivity(runtimes, peak_usage: float) -> dict[str, float] | None:
    """For a run its KV cache bounds (peak usage >= :data:`KV_BOUND_USAGE`), when one GiB per GPU
    is a large share of that cache (>= :data:`KV_SENSITIVE_PER_GIB`): the memory plan of the
    GPU with the smallest cache and that share. A GiB more or less of weights, activations or
    runtime reserve than the engine really takes then moves the run's capacity, and its
    throughput and queueing, by about that share (a GPT-OSS-120B run on one H100 has ~3.7 GiB
    of KV: 3% more weight bytes swings its metrics from 31% fast to 31% slow). None otherwise."""
    if peak_usage < KV_BOUND_USAGE:
        return None
    from servesim.cost.memory import GiB

    plans = [g.memory for g in runtimes if g.memory.kv_cache_bytes > 0]
    if any(p.kv_pinned for p in plans):
        return None  # (the scenario pinned the cache: no memory plan decides it)
    if not plans:
        return None
    plan = min(plans, key=lambda p: p.kv_cache_bytes)
    share = GiB / plan.kv_cache_bytes
    if share < KV_SENSITIVE_PER_GIB:
        return None
    return {
        "kv_cache_gib_per_gpu": plan.kv_cache_bytes / GiB,
        "capacity_change_per_gib": share,
        "usable_gib_per_gpu": plan.usable_bytes / GiB,
        "weights_gib_per_gpu": plan.weights_bytes_per_gpu / GiB,
        "activation_reserve_gib_per_gpu": plan.activation_reserve_bytes / GiB,
        "runtime_reserve_gib_per_gpu": plan.runtime_reserve_bytes / GiB,
    }


def kv_sensitivity_warning(fragile: Mapping[str, float]) -> str:
    """The one-line warning the CLI prints for ``summary["kv_memory_sensitivity"]``."""
    return (
        f"the KV cache bounds this run and holds {fragile['kv_cache_gib_per_gpu']:.1f} GiB a GPU "
        f"(of {fragile['usable_gib_per_gpu']:.1f} usable: weights "
        f"{fragile['weights_gib_per_gpu']:.1f}, activations "
        f"{fragile['activation_reserve_gib_per_gpu']:.1f}, runtime "
        f"{fragile['runtime_reserve_gib_per_gpu']:.1f}); each GiB the real engine takes more or "
        f"less moves its capacity by {fragile['capacity_change_per_gib']:.0%}: the prediction is "
        "only as sure as that memory plan (compare the engine's logged KV cache size, and pin "
        "it with --kv-cache-tokens)"
    )


def _track_record(scenario: Scenario, runtimes, model) -> dict[str, Any] | None:
    """How close servesim's default cost model came to published runs like this one (see
    :mod:`servesim.track_record`); None for a calibrated or roofline-only cost model, which
    the published runs did not score."""
    if scenario.calibration is not None or not scenario.kernel_tables:
        return None
    from servesim.track_record import load_regime, lookup, model_class_of

    return lookup(
        scenario.engine,
        runtimes[0].hardware.name,
        model_class_of(model),
        load=load_regime(scenario),
    )


def _api_summary(api: ApiLatency | None, requests, summary) -> dict[str, float]:
    """Where TTFT goes outside the engine: the API server's mean share, ms and fraction."""
    if api is None:
        return {"mean_api_ttft_ms": 0.0, "api_ttft_fraction": 0.0}
    before = api.request_s + api.per_input_token_s * requests["input_tokens"].astype(float)
    per_request = 1000.0 * (before + api.stream_s)
    mean = float(per_request.mean())
    ttft = summary["mean_ttft_ms"]
    return {"mean_api_ttft_ms": mean, "api_ttft_fraction": mean / ttft if ttft > 0 else 0.0}


def _shares(seconds: dict[str, float]) -> dict[str, float]:
    """Each rung's share of the run's operator time (they sum to 1)."""
    total = sum(seconds.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in seconds.items()}


def _best_rung(seconds: dict[str, float], base: str) -> str:
    """The rung most of the operator time stands on (``base`` when nothing ran)."""
    if not seconds or sum(seconds.values()) <= 0:
        return base
    return max(seconds, key=lambda k: seconds[k])


def _per_instance(runtimes, requests, steps, duration) -> list[dict[str, Any]]:
    """A few headline numbers per instance (requests finish on decode/mixed instances)."""
    out = []
    for g in runtimes:
        for inst in g.instances:
            mine = requests["instance"] == inst.instance_id
            its_steps = steps["instance"] == inst.instance_id
            ttft = (requests["first_token_s"] - requests["arrival_s"])[mine]
            out.append(
                {
                    "instance": inst.instance_id,
                    "label": inst.label,
                    "role": inst.role,
                    "hardware": g.hardware.name,
                    "tp": g.parallelism.tp,
                    "pp": g.parallelism.pp,
                    "completed": int(mine.sum()),
                    "output_throughput": (
                        float(requests["output_tokens"][mine].sum()) / duration if duration else 0.0
                    ),
                    "mean_ttft_ms": float(ttft.mean() * 1000) if len(ttft) else float("nan"),
                    "num_steps": int(steps["num_steps"][its_steps].sum()),
                    "busy_fraction": (
                        float(steps["duration_s"][its_steps].sum()) / duration if duration else 0.0
                    ),
                    "kv_cache_peak_usage": (
                        float(steps["kv_usage"][its_steps].max()) if its_steps.any() else 0.0
                    ),
                }
            )
    return out


def _speculation_summary(
    scenario: Scenario, steps, summary, without_speculation: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Acceptance, tokens per verification, and the speed-up against the same run without it."""
    proposed = int(steps["spec_proposed"].sum())
    accepted = int(steps["spec_accepted"].sum())
    rows = int(steps["spec_rows"].sum())
    out: dict[str, Any] = {
        "spec_acceptance_rate": accepted / proposed if proposed else float("nan"),
        "spec_mean_accepted_tokens": accepted / rows if rows else float("nan"),
        "spec_tokens_per_verify_step": (accepted + rows) / rows if rows else float("nan"),
    }
    if not scenario.speculative or scenario.speculative.mode == "baseline":
        return out
    baseline = without_speculation()
    out["baseline_mean_tpot_ms"] = baseline["mean_tpot_ms"]
    out["baseline_output_throughput"] = baseline["output_throughput"]
    out["spec_speedup_tpot"] = baseline["mean_tpot_ms"] / summary["mean_tpot_ms"]
    out["spec_speedup_e2el"] = baseline["mean_e2el_ms"] / summary["mean_e2el_ms"]
    return out


def _step_work(
    runtimes: list[InstanceGroupRuntime],
    records: RunRecords,
    steps: dict[str, np.ndarray],
    duration: float,
) -> tuple[Mapping[str, np.ndarray], dict[str, Any]]:
    """(Per-step FLOPs, bytes and group times from the recorded features, computed when first
    read; the run's MFU, MBU, energy, host-bound share and fidelity rungs).

    MFU = FLOPs executed ÷ (duration × dense peak FLOP/s of the compute dtype), over all GPUs
    of the fleet; MBU the same with HBM bytes and bandwidth. Both count the whole run
    duration, idle gaps included, as a fleet operator would.

    NOTE: memory. The cost model's per-operator intermediate is ~40 floats a step record and
    the per-step extras another ~12: a million records at once would need gigabytes. The run's
    totals are summed a block of records at a time, in numpy's pairwise order
    (:func:`~servesim.metrics.pairwise_sum`, so they equal whole-array sums bit for bit), and
    the per-step extras are only computed if something reads them (steps.csv).
    """
    instance, durations = steps["instance"], steps["duration_s"]
    total_flops = total_bytes = peak_flops = peak_bytes = energy = 0.0
    host_bound_total = busy_total = 0.0
    rung_total: dict[str, float] = {}
    extrapolated = 0
    for g in runtimes:
        ids = [i.instance_id for i in g.instances]
        take = _group_rows(instance, ids)
        cost = g.cost
        rung_names: list[str] = []

        def block_sums(a: int, b: int, cost=cost, take=take, rung_names=rung_names) -> np.ndarray:
            rows = slice(a, b) if isinstance(take, slice) else take[a:b]
            sub, dur = records.step_feature_rows(rows), durations[rows]
            flops, hbm = cost.work_from_features(sub)
            power = cost.power_from_features(sub, dur)
            rungs, host_bound = cost.rungs_and_host_bound_from_features(sub)
            rung_names[:] = list(rungs)
            sums = [flops, hbm, power * dur, dur, host_bound]
            sums += rungs.values()
            out = [np.add.reduce(x) for x in sums]
            return np.array([*out, float(np.count_nonzero(cost.extrapolated_from_features(sub)))])

        n = len(instance) if isinstance(take, slice) else len(take)
        sums = pairwise_sum(n, block_sums, leaf=_BLOCK).tolist()
        flops, hbm, energy_per_gpu, busy, host_bound = sums[:5]
        gpus = g.gpus_per_instance
        # NOTE: work_from_features is one TP rank's work summed over the pipeline stages, so a
        # replica's work is that times tp·dp (not pp: stages split the layers).
        ranks = g.parallelism.tp * g.parallelism.dp
        res = cost.resolved
        peak = tensor_core_peak(g.hardware.peak_flops, res.weight_dtype, res.act_dtype)
        total_flops += flops * ranks
        total_bytes += hbm * ranks
        peak_flops += peak * gpus * len(ids)
        peak_bytes += g.hardware.hbm_bandwidth * gpus * len(ids)
        # Energy: each step at its modelled power, idle gaps at idle power, on every GPU.
        energy += energy_per_gpu * gpus
        energy += g.hardware.idle_w * gpus * max(0.0, duration * len(ids) - busy)
        host_bound_total += host_bound
        busy_total += busy
        for name, secs in zip(rung_names, sums[5:-1], strict=True):
            rung_total[name] = rung_total.get(name, 0.0) + secs
        extrapolated += int(sums[-1])
    util = {
        "mfu": total_flops / (duration * peak_flops) if duration > 0 else float("nan"),
        "mbu": total_bytes / (duration * peak_bytes) if duration > 0 else float("nan"),
        "fidelity": _best_rung(rung_total, runtimes[0].cost.params.fidelity),
        "fidelity_shares": _shares(rung_total),
        "kernel_source": runtimes[0].cost.kernel_source,
        "kernel_extrapolated_steps": extrapolated,
        "energy_j": energy,
        "avg_power_w": energy / duration if duration > 0 else float("nan"),
        "host_bound_fraction": host_bound_total / busy_total if busy_total > 0 else 0.0,
    }
    return StepExtra(runtimes, records, steps), util


_BLOCK = 1 << 16
"""Step records the cost model explains at a time (its intermediates are ~40 floats a row)."""


def _group_rows(instance: np.ndarray, ids: list[int]) -> slice | np.ndarray:
    """The step records of an instance group: all of them (the usual case: no gather) or
    their indices."""
    rows = np.isin(instance, ids)
    return slice(None) if rows.all() else np.flatnonzero(rows)


class StepExtra(Mapping[str, np.ndarray]):
    """Per step record: ``flops``, ``hbm_bytes`` (per GPU), ``t_<group>`` predicted seconds per
    operator group (summing to the step's duration), ``power_w`` and ``t_host_bound``;
    computed from the recorded features when first read (a sweep never reads them), or a
    block of records at a time (:meth:`row_blocks`: a writer need not hold them all)."""

    def __init__(self, runtimes, records: RunRecords, steps: dict[str, np.ndarray]):
        self._args: tuple | None = (runtimes, records, steps)
        self._columns: dict[str, np.ndarray] = {}

    def _get(self) -> dict[str, np.ndarray]:
        if self._args is not None:
            self._columns = _step_extra(*self._args)
            self._args = None
        return self._columns

    def __getitem__(self, key: str) -> np.ndarray:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def row_blocks(self, blocks: int = 4) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
        """(rows, the columns of those step records) for consecutive runs of ``blocks`` ×
        65,536 records, at least one (empty for a run without steps). Where one instance group
        runs every step and nothing read the columns yet, each run is worked out on its own
        (in the same blocks as the whole columns: the same values to the bit); else they are
        slices of the whole columns."""
        size = blocks * _BLOCK
        if self._args is None or len(self._args[0]) != 1:
            columns = self._get()
            n = len(next(iter(columns.values())))
            for start in range(0, max(n, 1), size):
                rows = slice(start, start + size)
                yield rows, {name: column[rows] for name, column in columns.items()}
            return
        runtimes, records, steps = self._args
        n = len(steps["instance"])
        for start in range(0, max(n, 1), size):
            stop = min(start + size, n)
            yield slice(start, stop), _step_extra(runtimes, records, steps, start, stop)


def _step_extra(
    runtimes, records: RunRecords, steps, start: int = 0, stop: int | None = None
) -> dict[str, np.ndarray]:
    """The columns of :class:`StepExtra` for the step records ``start:stop`` (all by default),
    a block of records at a time."""
    instance, durations = steps["instance"], steps["duration_s"]
    stop = len(instance) if stop is None else stop
    n = stop - start
    extra: dict[str, np.ndarray] = {"flops": np.zeros(n), "hbm_bytes": np.zeros(n)}
    for g in runtimes:
        take = _group_rows(instance[start:stop], [i.instance_id for i in g.instances])
        if isinstance(take, slice):
            take = np.arange(n)
        for a in range(0, max(len(take), 1), _BLOCK):
            rows = take[a : a + _BLOCK]  # (positions in start:stop)
            sub, dur = records.step_feature_rows(rows + start), durations[rows + start]
            extra["flops"][rows], extra["hbm_bytes"][rows] = g.cost.work_from_features(sub)
            groups, host_bound = g.cost.groups_and_host_bound_from_features(sub)
            total = sum(groups.values())
            # NOTE: exact for single steps; a span's groups are rescaled to its exact duration.
            scale = np.divide(dur, total, out=np.zeros_like(total), where=total > 0)
            for name, secs in groups.items():
                extra.setdefault(f"t_{name}", np.zeros(n))[rows] = secs * scale
            extra.setdefault("power_w", np.zeros(n))[rows] = g.cost.power_from_features(sub, dur)
            extra.setdefault("t_host_bound", np.zeros(n))[rows] = host_bound
    return extra
