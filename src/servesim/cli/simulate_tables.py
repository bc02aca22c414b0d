"""The tables ``servesim simulate`` prints: the scenario, throughput, latency and engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servesim.formatting import number
from servesim.metrics import LATENCY_METRICS

if TYPE_CHECKING:
    from rich.table import Table

# NOTE: rich is imported where it is used: a --json run never loads it (start-up time).


def fleet_description(result) -> str:
    """E.g. "1 instance × TP4 = 4 × H100 (bf16)" or "1 prefill instance × TP2 = 2 × H100
    (bf16) + 2 decode instances × TP1 = 2 × H100 (bf16)"."""
    from servesim.scenario import describe_instances

    parts = []
    for g in result.groups:
        par = g.parallelism
        fleet = describe_instances(
            len(g.instances), g.hardware.name, par.tp, par.pp, par.ep, g.group.role, par.dp
        )
        parts.append(f"{fleet} ({g.cost.resolved.weight_dtype})")
    text = " + ".join(parts)
    if len(result.groups) > 1 or len(result.groups[0].instances) > 1:
        text += f", router {result.scenario.router}"
    return text


def summary_tables(
    result,
    metrics: tuple[str, ...] = LATENCY_METRICS,
    percentiles: tuple[float, ...] | None = None,
) -> list[Table]:
    """Rich tables of a run: scenario, throughput, latency percentiles, engine.

    The latency table has a row per metric of ``metrics`` and the columns mean, median, p90
    and p99, or mean, median and ``percentiles`` (whose values the summary must hold)."""
    from rich.table import Table

    s = result.summary
    sc = result.scenario
    t1 = Table(title="Scenario", show_header=False, title_justify="left")
    t1.add_column(style="bold")
    t1.add_column()
    t1.add_row("model", f"{result.model.name}")
    t1.add_row("deployment", fleet_description(result))
    steps = sc.num_scheduler_steps or 1
    t1.add_row(
        "engine",
        f"{sc.engine}"
        + (f" {sc.engine_version}" if sc.engine_version else "")
        + (f", {steps} scheduler steps" if steps > 1 else "")
        + (", host work between steps" if not _host_overlaps(sc) else "")
        + _attention_note(result)
        + (", API server" if sc.api_server else ", in-process (no API server)"),
    )
    t1.add_row(
        "scheduler",
        f"{sc.scheduler.policy}, max_num_batched_tokens "
        f"{sc.scheduler.max_num_batched_tokens}, max_num_seqs {sc.scheduler.max_num_seqs}, "
        f"prefix caching {'on' if sc.scheduler.enable_prefix_caching else 'off'}"
        + (f", admission {sc.scheduler.admission}" if sc.scheduler.admission != "greedy" else ""),
    )
    t1.add_row("workload", result.workload_description)
    memory = result.memory
    bs = sc.scheduler.block_size
    if memory.kv_full_groups == 0:
        blocks = (
            f"{memory.num_kv_blocks:,} blocks of {bs}, sliding window: at most "
            f"{memory.kv_window_blocks:,} a request"
        )
    elif memory.kv_swa_pool_ratio:
        blocks = (
            f"{memory.num_kv_blocks:,} blocks of {bs}; sliding-window layers in a pool of "
            f"{memory.kv_swa_pool_ratio:g}× as many tokens"
        )
    elif memory.kv_groups == 1:
        blocks = f"{memory.num_kv_blocks:,} blocks of {bs}"
    else:
        blocks = (
            f"hybrid: {memory.num_kv_blocks:,} pages of {bs} over {memory.kv_groups} layer "
            f"groups, {memory.kv_window_blocks * bs} sliding-window tokens a request"
        )
    t1.add_row(
        "KV cache",
        f"{memory.kv_capacity_tokens:,} tokens ({blocks})"
        + (", pinned" if memory.kv_pinned else ""),
    )

    t2 = Table(title="Throughput", show_header=False, title_justify="left")
    t2.add_column(style="bold")
    t2.add_column(justify="right")
    t2.add_row("completed requests", number(s["completed"]))
    if s.get("num_skipped"):
        t2.add_row("skipped requests", number(s["num_skipped"]))
    t2.add_row("duration (s)", number(s["duration"], 2))
    t2.add_row("request throughput (req/s)", number(s["request_throughput"], 2))
    t2.add_row("output throughput (tok/s)", number(s["output_throughput"], 1))
    t2.add_row("total token throughput (tok/s)", number(s["total_token_throughput"], 1))
    if "goodput" in s:
        t2.add_row("goodput (req/s)", number(s["goodput"], 2))

    from servesim.metrics import percentile_name

    t3 = Table(title="Latency (ms)", title_justify="left")
    t3.add_column("metric", style="bold")
    cols = ["mean", "median"]
    cols += ["p90", "p99"] if percentiles is None else [percentile_name(q) for q in percentiles]
    cols = list(dict.fromkeys(c for c in cols if c != "p50"))  # p50 is the median
    for col in cols:
        t3.add_column(col, justify="right")
    for key in metrics:
        t3.add_row(key.upper(), *(number(s[f"{c}_{key}_ms"], 2) for c in cols))

    t4 = Table(title="Engine", show_header=False, title_justify="left")
    t4.add_column(style="bold")
    t4.add_column(justify="right")
    t4.add_row("steps", number(s["num_steps"]))
    t4.add_row("preemptions", number(s["num_preemptions"]))
    if "fidelity_shares" in s:
        shares = " · ".join(
            f"{name} {share:.0%}" for name, share in s["fidelity_shares"].items() if share >= 0.005
        )
        t4.add_row("fidelity (share of operator time)", shares)
    if s.get("mean_api_ttft_ms"):
        t4.add_row(
            "API server share of TTFT",
            f"{s['api_ttft_fraction']:.1%} ({s['mean_api_ttft_ms']:.2f} ms)",
        )
    t4.add_row("KV cache peak usage", f"{s['kv_cache_peak_usage']:.1%}")
    t4.add_row("prefix cache hit rate", f"{s['prefix_cache_hit_rate']:.1%}")
    for key, label in (("mfu", "MFU"), ("mbu", "MBU")):
        if key in s:
            t4.add_row(label, f"{s[key]:.1%}")
    if "num_kv_transfers" in s:
        t4.add_row(
            "KV transfers (P→D)",
            f"{s['num_kv_transfers']:,}, mean {s['mean_kv_transfer_ms']:.2f} ms",
        )
    if "spec_acceptance_rate" in s:
        t4.add_row("draft acceptance rate", f"{s['spec_acceptance_rate']:.1%}")
        t4.add_row("tokens per verify step", number(s["spec_tokens_per_verify_step"], 2))
        if "spec_speedup_tpot" in s:
            t4.add_row("TPOT speed-up vs no speculation", f"{s['spec_speedup_tpot']:.2f}×")
    if "kv_offload_loaded_blocks" in s:
        t4.add_row(
            "KV blocks spilled / loaded (CPU tier)",
            f"{s['kv_offload_spilled_blocks']:,} / {s['kv_offload_loaded_blocks']:,}",
        )
    t4.add_row("host-bound share of step time", f"{s['host_bound_fraction']:.1%}")
    t4.add_row("GPUs", number(s["num_gpus"]))
    t4.add_row("average power (W, all GPUs)", number(s["avg_power_w"], 0))
    t4.add_row("energy per output token (J)", number(s["energy_per_output_token_j"], 3))
    wall = number(s["sim_wall_s"], 3)
    t4.add_row(
        "simulation wall time (s)",
        wall + (" (compiled kernels)" if s.get("compiled_kernels") else ""),
    )
    if "track_record" in s:
        from servesim.track_record import summary_rows

        for label, text in summary_rows(s["track_record"]):
            t4.add_row(label, text)
    return [t1, t2, t3, t4]


ATTENTION_NOTES = {"flashinfer": ", FlashInfer attention", "triton": ", Triton attention"}
"""The engine line's note for an attention backend priced apart from the measured tables."""


def _attention_note(result) -> str:
    """The engine line's note on the run's attention backend where it is priced apart (the
    scenario's or the engine's default at its release, on the first instance group's GPU)."""
    from servesim.cost.attention_fit import FLASHINFER_MEASURED_GROUP
    from servesim.fleet import attention_backend_of

    note = ATTENTION_NOTES.get(attention_backend_of(result.scenario, result.model) or "", "")
    group = result.groups[0].params.flashinfer_cuda_core_group if result.groups else 0
    if note and group > FLASHINFER_MEASURED_GROUP:
        # (Priced slower than the measured share: say why, it is a release's kernel choice.)
        note += f" (CUDA-core decode of {group} query heads per KV head)"
    if result.groups and result.groups[0].cost.resolved.attention_serial_rate > 0.0:
        # (Long contexts at small batches pay for it: say where a run's slowness comes from.)
        model = result.model
        every = model.num_kv_heads == model.num_attention_heads or model.sliding_window
        note += ", FlashAttention-2 decode walks each sequence serially" + (
            " (every step)" if every else " (steps with a prompt chunk or drafts)"
        )
        if model.num_kv_heads < model.num_attention_heads:
            note += ", re-reading a KV head per query head once a step's KV outgrows the L2"
    if result.groups and result.groups[0].params.allreduce_norm_fusion:
        note += ", all-reduces fused with the RMSNorm after them (FlashInfer)"
    return note


def _host_overlaps(sc) -> bool:
    """Whether the scenario's engine runs its host work beside the GPU steps."""
    from servesim.fleet import host_overlaps
    from servesim.scenario import engine_profile_of

    return sc.cuda_graphs and host_overlaps(sc, engine_profile_of(sc))
