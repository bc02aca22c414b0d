"""Commands: ``servesim flops`` (FLOP accounting) and ``servesim estimate`` (one-batch latency
and memory from the analytical cost model)."""

from __future__ import annotations

import json

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from servesim.cli.app import app, positional_or_option
from servesim.knobs import GPU_MEMORY_UTILIZATION
from servesim.workload.spec import MAX_TOKENS

# NOTE: numpy and the cost model are imported inside the commands: `servesim --help` loads
# every command module, and should not pay for them.
GiB = 2**30

_PREFIXES = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _si(value: float, unit: str = "") -> str:
    """``1.46e13`` -> ``14.57 T``: three significant digits with an SI prefix."""
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}".rstrip()


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


@app.command("flops")
def flops_cmd(
    model: str | None = typer.Argument(None, help="Model id or alias, or a path to a config.json."),
    model_option: str | None = typer.Option(
        None, "--model", "-m", help="The model, as an option (the same as MODEL)."
    ),
    input_len: int = typer.Option(..., "--input-len", min=1, max=MAX_TOKENS, help="Prompt tokens."),
    output_len: int = typer.Option(
        ..., "--output-len", min=1, max=MAX_TOKENS, help="Generated tokens."
    ),
    head: str = typer.Option("lm", "--head", help="lm (vocabulary logits) or value (d×d + d×1)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """FLOPs of one request by component: prefill, per decode token, total.

    Linear layers count 2 FLOPs per parameter per token; attention is counted separately
    (causal, GQA/MLA-aware, window-capped). Decode is averaged over the generated tokens.
    """
    from servesim.cost import flops_breakdown
    from servesim.model import load_model

    spec = load_model(positional_or_option(model, model_option, "--model"))
    if input_len + output_len > spec.max_position_embeddings:
        Console(stderr=True).print(
            f"[yellow]warning:[/yellow] {input_len + output_len:,} tokens per sequence exceed "
            f"the model's context window ({spec.max_position_embeddings:,}); a server would "
            "refuse the request"
        )
    result = flops_breakdown(spec, input_len, output_len, head=head)
    result = {
        "params_total": spec.params_total,
        "params_active": spec.params_active,
        **result,
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(
        title=f"{spec.name}: FLOPs of one request ({input_len} in, {output_len} out, {head} head)",
        caption=f"params: {_si(spec.params_total)} total, {_si(spec.params_active)} active; "
        f"decode per token is the mean over contexts {input_len}..{input_len + output_len - 2}",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("component", no_wrap=True)
    for header in ("prefill", "decode / token", "total", "share"):
        table.add_column(header, justify="right", no_wrap=True)
    total = result["total_flops"]
    for name, row in result["by_component"].items():
        table.add_row(
            name,
            _si(row["prefill"], "FLOP"),
            _si(row["decode_per_token"], "FLOP"),
            _si(row["total"], "FLOP"),
            f"{100 * row['total'] / total:.1f}%" if total else "-",
        )
    table.add_section()
    table.add_row(
        "all",
        _si(result["prefill_flops"], "FLOP"),
        _si(result["decode_flops_per_token"], "FLOP"),
        _si(total, "FLOP"),
        "100%",
        style="bold",
    )
    Console().print(table)


@app.command("estimate")
def estimate_cmd(
    model: str | None = typer.Argument(None, help="Model id or alias, or a path to a config.json."),
    model_option: str | None = typer.Option(
        None, "--model", "-m", help="The model, as an option (the same as MODEL)."
    ),
    hardware: str = typer.Option(..., "--hardware", "-g", help="GPU id or alias, or a YAML path."),
    tp: int = typer.Option(1, "--tp", min=1, help="Tensor-parallel GPUs."),
    pp: int = typer.Option(1, "--pp", min=1, help="Pipeline stages."),
    ep: int = typer.Option(1, "--ep", min=1, help="Expert-parallel groups inside the TP group."),
    dp: int = typer.Option(
        1, "--dp", min=1, help="Attention data-parallel ranks, --tp GPUs each (MoE models)."
    ),
    batch: int = typer.Option(1, "--batch", min=1, help="Sequences decoded together."),
    input_len: int = typer.Option(
        ..., "--input-len", min=1, max=MAX_TOKENS, help="Prompt tokens per sequence."
    ),
    output_len: int = typer.Option(
        ..., "--output-len", min=1, max=MAX_TOKENS, help="Generated tokens per seq."
    ),
    weight_dtype: str | None = typer.Option(
        None, "--weight-dtype", help="Serve the weights as bf16/fp8/int4...; default: checkpoint."
    ),
    kv_dtype: str | None = typer.Option(None, "--kv-dtype", help="KV-cache dtype (bf16, fp8)."),
    gpu_memory_utilization: float = typer.Option(
        GPU_MEMORY_UTILIZATION,
        "--gpu-memory-utilization",
        help="Fraction of HBM the server may use.",
    ),
    kv_cache_tokens: int | None = typer.Option(
        None,
        "--kv-cache-tokens",
        min=1,
        help="Pin the KV cache to the engine's logged size, tokens (default: the memory plan's).",
    ),
    kernel_tables: bool = typer.Option(
        True,
        "--kernel-tables/--no-kernel-tables",
        help="Price operators from measured kernel tables where the GPU has them.",
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="Engine profile pricing the steps, as in simulate: vllm (V1, default) | vllm-v0 | "
        "sglang | sglang-0.4 | trtllm | trtllm-pytorch | lmdeploy | gpt-fast",
    ),
    engine_version: str | None = typer.Option(
        None, "--engine-version", help="The engine's release, e.g. 0.10.2 (default: newest)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Latency and memory of one batch from the analytical cost model (no queueing).

    The batch's prompts run as one prefill step, then every sequence decodes together, each
    step priced as `simulate` prices it under the same engine (--engine, --engine-version).
    """
    import numpy as np

    from servesim.cost.step import padded_rows
    from servesim.engines import release_outside_profile
    from servesim.fleet import build_fleet
    from servesim.scenario import build_scenario

    model_name = positional_or_option(model, model_option, "--model")
    given = {
        "engine": engine,
        "engine_version": engine_version,
        "weight_dtype": weight_dtype,
        "kv_dtype": kv_dtype,
    }
    scheduler = {"gpu_memory_utilization": gpu_memory_utilization}
    if kv_cache_tokens is not None:
        scheduler["kv_cache_tokens"] = kv_cache_tokens
    scenario = build_scenario(
        {
            "model": model_name,
            "hardware": hardware,
            "tp": tp,
            "pp": pp,
            "ep": ep,
            "dp": dp,
            **{key: value for key, value in given.items() if value is not None},
            "kernel_tables": kernel_tables,
            "compiled": "off",
            "scheduler": scheduler,
            # (The fleet is built for this scenario's engine and GPUs; no request is run.)
            "workload": {"num_requests": 1, "input_len": 1, "output_len": 1},
        },
        source="",  # (errors name the option's field alone, as simulate's do)
    )
    fleet = build_fleet(scenario, np.random.default_rng(scenario.seed))
    spec = fleet.model
    for caveat in spec.unmodelled:
        Console(stderr=True).print(f"warning: {spec.name}: {caveat}")
    outside = release_outside_profile(scenario.engine, scenario.engine_version)
    if outside is not None:
        Console(stderr=True).print(f"warning: engine: {outside}")
    group = fleet.groups[0]
    instance, plan, par = group.instances[0], group.memory, group.parallelism
    cost = group.cost
    prompts = np.full(batch, input_len)
    fresh = np.zeros(batch, dtype=np.int64)
    # Each step under the cost model simulate's instance would run it with: the CUDA graph's
    # (a decode batch padded to the captured size) or the eager one past the captured sizes.
    prompt_cost, _ = instance.step_cost(False, batch * input_len, batch, fresh)
    prefill = prompt_cost.step_time(prompts, fresh)
    steps = output_len - 1
    # A sequence of output_len tokens needs output_len − 1 decode steps after the prefill.
    span = _decode_seconds(instance, prompts, max(steps, 1))
    decode_cost, pad = instance.step_cost(True, batch, batch, prompts)
    # (the first decode step's rows, a CUDA graph's padding included)
    decode_rows = padded_rows(np.ones(batch, dtype=np.int64), prompts, pad)
    decode_start = decode_cost.step_time(*decode_rows)
    total_s = prefill.total_s + (float(span.sum()) if steps else 0.0)
    seq_len = input_len + output_len
    max_seqs = plan.max_concurrent_seqs(seq_len)
    hw = group.hardware
    peak = hw.peak_flops.get(cost.resolved.act_dtype, 0.0)
    result = {
        "model": spec.name,
        "hardware": hw.name,
        "engine": scenario.engine,
        "engine_version": scenario.engine_version,
        "tp": tp,
        "pp": pp,
        "ep": ep,
        "dp": dp,
        "gpus": par.gpus,
        "batch": batch,
        "input_len": input_len,
        "output_len": output_len,
        "weight_dtype": cost.resolved.weight_dtype,
        "expert_dtype": cost.resolved.expert_dtype,
        "kv_dtype": cost.resolved.kv_dtype,
        "fidelity": prefill.fidelity,
        "fidelity_shares": {
            "prefill": _rung_shares(prompt_cost, prompts, fresh),
            "decode": _rung_shares(decode_cost, *decode_rows),
        },
        "prefill_s": prefill.total_s,
        "decode_step_s": {
            "start": float(span[0]),
            "end": float(span[-1]),
            "mean": float(span.mean()),
        },
        "total_s": total_s,
        "output_tokens_per_s": batch * output_len / total_s,
        "decode_tokens_per_s": batch / float(span.mean()),
        "prefill_mfu": prefill.flops / (prefill.total_s * peak) if peak else None,
        "decode_mbu": decode_start.bytes / (decode_start.total_s * hw.hbm_bandwidth),
        "prefill_breakdown_s": prefill.by_group,
        "decode_breakdown_s": decode_start.by_group,
        "weights_bytes_per_gpu": plan.weights_bytes_per_gpu,
        "kv_bytes_per_token": plan.kv_bytes_per_token,
        "activation_reserve_bytes": plan.activation_reserve_bytes,
        "runtime_reserve_bytes": plan.runtime_reserve_bytes,
        "kv_cache_bytes": plan.kv_cache_bytes,
        "kv_capacity_tokens": plan.kv_capacity_tokens,
        "kv_groups": plan.kv_groups,
        "kv_window_tokens": plan.kv_window_blocks * plan.block_size,
        "max_concurrent_seqs": max_seqs,
        "batch_fits": batch <= max_seqs,
        "context_window": spec.max_position_embeddings,
        "fits_context": seq_len <= spec.max_position_embeddings,
    }
    if outside is not None:
        result["engine_warning"] = outside
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_estimate(result, cost.hardware.name)


def _decode_seconds(instance, context, num_steps: int):
    """Seconds of ``num_steps`` decode steps of every row from ``context``, each under the
    cost model ``instance`` would run it with (``Instance.step_cost``): a graph's padded rows,
    and, past its longest captured sequence, the eager steps, as the engine's spans split."""
    import numpy as np

    limit = instance.graph_max_seq_len
    first = num_steps
    if limit is not None:
        # (step j reads context + j; it runs eagerly once its longest reaches the limit)
        first = int(min(max(limit - int(context.max()), 0), num_steps))
    rows, parts = len(context), []
    for start, count in ((0, first), (first, num_steps - first)):
        if count <= 0:
            continue
        cost, pad = instance.step_cost(True, rows, rows, context + start)
        parts.append(cost.decode_span_with_features(context + start, count, pad)[0])
    return np.concatenate(parts)


def _rung_shares(cost, new_tokens, context) -> dict[str, float]:
    """Each fidelity rung's share of one step's operator time."""
    secs = cost.rung_seconds_from_features(cost.features(new_tokens, context))
    total = sum(float(v[0]) for v in secs.values())
    return {k: float(v[0]) / total for k, v in secs.items() if total > 0 and v[0] > 0}


def _print_estimate(r: dict, gpu: str) -> None:
    console = Console()
    split = f"tp={r['tp']}" + (f" pp={r['pp']}" if r["pp"] > 1 else "")
    split += f" dp={r['dp']}" if r["dp"] > 1 else ""
    split += f" ep={r['ep']}" if r["ep"] > 1 else ""
    dtypes = r["weight_dtype"]
    if r["expert_dtype"] != r["weight_dtype"]:
        dtypes += f", experts {r['expert_dtype']}"
    head = Table(
        title=f"{r['model']} on {r['gpus']}× {gpu} ({split}, {dtypes}, KV {r['kv_dtype']}) "
        f"under {r['engine']}{' ' + r['engine_version'] if r['engine_version'] else ''}: "
        f"batch {r['batch']}, {r['input_len']} in / {r['output_len']} out",
        caption="fidelity (share of operator time): "
        + "; ".join(
            f"{phase} " + ", ".join(f"{rung} {share:.0%}" for rung, share in shares.items())
            for phase, shares in r["fidelity_shares"].items()
        )
        + " (`servesim calibrate` fits it to your measurements)",
        box=box.SIMPLE_HEAD,
        show_header=False,
    )
    head.add_column("quantity", no_wrap=True)
    head.add_column("value", justify="right", no_wrap=True)
    decode = r["decode_step_s"]
    rows = [
        ("prefill (all prompts, one step)", _ms(r["prefill_s"])),
        ("decode step, first", _ms(decode["start"])),
        ("decode step, last", _ms(decode["end"])),
        ("total for the batch", _ms(r["total_s"])),
        ("output tokens/s", f"{r['output_tokens_per_s']:,.0f}"),
        ("decode tokens/s", f"{r['decode_tokens_per_s']:,.0f}"),
    ]
    if r["prefill_mfu"] is not None:
        rows.append(("prefill MFU", f"{100 * r['prefill_mfu']:.0f}%"))
    rows += [
        ("decode MBU (first step)", f"{100 * r['decode_mbu']:.0f}%"),
        ("weights per GPU", f"{r['weights_bytes_per_gpu'] / GiB:.2f} GiB"),
        (
            "KV cache per token (per GPU)"
            if r["kv_groups"] == 1
            else "KV per token, full-attention layers",
            f"{r['kv_bytes_per_token'] / 1024:.1f} KiB",
        ),
        *(
            [("sliding-window layers", f"{r['kv_window_tokens']:,} tokens a request (hybrid)")]
            if r["kv_groups"] > 1
            else []
        ),
        # (vLLM's profiled budget: the larger of the forward and sampler peaks, then what the
        # profile sees outside PyTorch; see plan_memory's ``profiled``)
        ("activation peak (profiling run)", _gib(r["activation_reserve_bytes"])),
        ("non-torch memory (and CUDA graphs)", _gib(r["runtime_reserve_bytes"])),
        (
            "KV cache",
            f"{_gib(r['kv_cache_bytes'])} = {r['kv_capacity_tokens']:,} tokens"
            if r["dp"] == 1
            else f"{_gib(r['kv_cache_bytes'])} per GPU = {r['kv_capacity_tokens']:,} tokens "
            f"over {r['dp']} ranks",
        ),
        (
            f"max concurrent seqs of {r['input_len'] + r['output_len']} tokens",
            f"{r['max_concurrent_seqs']:,}",
        ),
    ]
    for name, value in rows:
        head.add_row(name, value)
    console.print(head)
    if not r["fits_context"]:
        console.print(
            f"[yellow]warning:[/yellow] {r['input_len'] + r['output_len']:,} tokens per sequence "
            f"exceed the model's context window ({r['context_window']:,}); a server would "
            "refuse these requests.",
            highlight=False,
        )
    if not r["batch_fits"]:
        console.print(
            f"[yellow]warning:[/yellow] a batch of {r['batch']} does not fit in the KV cache "
            f"at once (at most {r['max_concurrent_seqs']}); a server would queue or preempt.",
            highlight=False,
        )
    where = Table(title="Where the time goes", box=box.SIMPLE_HEAD)
    where.add_column("group", no_wrap=True)
    where.add_column("prefill", justify="right", no_wrap=True)
    where.add_column("decode step", justify="right", no_wrap=True)
    pre, dec = r["prefill_breakdown_s"], r["decode_breakdown_s"]
    for group in pre:
        where.add_row(
            group,
            f"{_ms(pre[group])} {100 * pre[group] / r['prefill_s']:4.0f}%",
            f"{_ms(dec[group])} {100 * dec[group] / decode['start']:4.0f}%",
        )
    console.print(where)


def _gib(value: float) -> str:
    return f"{value / GiB:.2f} GiB"
