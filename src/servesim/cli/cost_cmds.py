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
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Latency and memory of one batch from the analytical cost model (no queueing).

    The batch's prompts run as one prefill step, then every sequence decodes together.
    """
    import dataclasses

    import numpy as np

    from servesim.cost import CostParams, Parallelism, build_step_cost, plan_memory
    from servesim.engines import engine_profile, hybrid_kv, mla_decode_rows, mla_fused_down_proj
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    spec = load_model(positional_or_option(model, model_option, "--model"))
    for caveat in spec.unmodelled:
        Console(stderr=True).print(f"warning: {spec.name}: {caveat}")
    hw = load_hardware(hardware)
    if ep > 1 and spec.moe is None:  # (before the split's own rules, which assume experts)
        from servesim.errors import ServesimError

        raise ServesimError(f"{spec.name} has no experts to spread", field="ep", fix="use --ep 1")
    par = Parallelism(tp=tp, pp=pp, ep=ep, dp=dp)
    # As `simulate` prices a step under its default engine (vLLM, newest release: custom
    # all-reduce, MLA's down-projections as one GEMM, short MLA prompts on the decode pathway
    # on Hopper, its kernels' tables and MLA block).
    vllm = engine_profile("vllm")
    params = CostParams(
        weight_dtype=weight_dtype,
        kv_dtype=kv_dtype,
        kernel_tables=kernel_tables,
        kernel_backend=vllm.kernel_backend,
        custom_allreduce=tp <= hw.gpus_per_node,
        mla_fused_down_proj=mla_fused_down_proj(vllm, None),
        mla_absorb_max_new_tokens=mla_decode_rows(vllm, None, hw.architecture),
        hybrid_kv=hybrid_kv(vllm, None),
    )
    # (and sizes its memory as `vllm serve` on this GPU: its step budgets, its profiled rule)
    assert vllm.batch_defaults is not None
    budget, seqs = vllm.batch_defaults(hw.hbm_bytes, hw.name, True, None)
    plan = plan_memory(
        spec, hw, par, params,
        gpu_memory_utilization=gpu_memory_utilization, kv_cache_tokens=kv_cache_tokens,
        max_num_batched_tokens=budget, max_num_seqs=seqs, **vllm.kv_memory(None),
    )  # fmt: skip
    cost = build_step_cost(spec, hw, par, params)
    # A prompt step past vLLM's CUDA-graph sizes on this GPU runs without one, as `simulate`
    # prices it (the eager cost model: every kernel's CPU issue time).
    graphs = vllm.for_gpu(hw.hbm_bytes, tp * dp, dp, None).for_batch(None, seqs, budget)
    prompt_cost = cost
    if graphs.graph_max_tokens is not None and not graphs.graphed(False, batch * input_len, batch):
        prompt_cost = build_step_cost(spec, hw, par, dataclasses.replace(params, cuda_graphs=False))

    prompts = np.full(batch, input_len)
    prefill = prompt_cost.step_time(prompts, np.zeros(batch, dtype=np.int64))
    steps = output_len - 1
    # A sequence of output_len tokens needs output_len − 1 decode steps after the prefill.
    span = cost.decode_span_seconds(prompts, max(steps, 1))
    decode_start = cost.step_time(np.ones(batch, dtype=np.int64), prompts)
    total_s = prefill.total_s + (float(span.sum()) if steps else 0.0)
    seq_len = input_len + output_len
    max_seqs = plan.max_concurrent_seqs(seq_len)
    peak = hw.peak_flops.get(cost.resolved.act_dtype, 0.0)
    result = {
        "model": spec.name,
        "hardware": hw.name,
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
            "prefill": _rung_shares(prompt_cost, prompts, np.zeros(batch, dtype=np.int64)),
            "decode": _rung_shares(cost, np.ones(batch, dtype=np.int64), prompts),
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
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_estimate(result, cost.hardware.name)


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
        title=f"{r['model']} on {r['gpus']}× {gpu} ({split}, {dtypes}, KV {r['kv_dtype']}): "
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
