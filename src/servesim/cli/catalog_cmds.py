"""Commands: ``servesim models`` (the model catalog) and ``servesim model NAME`` (one model)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from servesim.cli.app import app, positional_or_option
from servesim.cli.tables import print_table

if TYPE_CHECKING:  # the catalog loads when a command runs, not for --help
    from servesim.model import CatalogEntry, ModelSpec


def format_params(count: float) -> str:
    """``8030261248`` -> ``"8.03B"``: three significant digits, K/M/B/T suffix."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(int(count))


def _context(tokens: int) -> str:
    return f"{tokens // 1024}K" if tokens % 1024 == 0 else str(tokens)


def _attention(spec: ModelSpec) -> str:
    return spec.attention_type + ("+SWA" if spec.num_sliding_layers else "")


def _moe(spec: ModelSpec) -> str:
    if spec.moe is None:
        return "-"
    shared = f"+{spec.moe.num_shared_experts}s" if spec.moe.num_shared_experts else ""
    return f"{spec.moe.num_experts}/{spec.moe.experts_per_token}{shared}"


def _spec_json(spec: ModelSpec) -> dict:
    """The facts a user asks about one architecture, JSON-ready (counts in elements)."""
    moe = spec.moe
    return {
        "architecture": spec.architecture,
        "model_type": spec.model_type,
        "num_layers": spec.num_layers,
        "hidden_size": spec.hidden_size,
        "num_attention_heads": spec.num_attention_heads,
        "num_kv_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "intermediate_size": spec.intermediate_size,
        "vocab_size": spec.vocab_size,
        "attention": spec.attention_type,
        "sliding_window": spec.sliding_window,
        "num_sliding_layers": spec.num_sliding_layers,
        "moe": None
        if moe is None
        else {
            "num_experts": moe.num_experts,
            "experts_per_token": moe.experts_per_token,
            "expert_intermediate_size": moe.expert_intermediate_size,
            "num_shared_experts": moe.num_shared_experts,
            "num_moe_layers": spec.num_moe_layers,
        },
        "kv_elements_per_token_per_layer": spec.kv_elements_per_token_per_layer,
        "params_total": spec.params_total,
        "params_active": spec.params_active,
        "context_length": spec.max_position_embeddings,
        "dtype": spec.dtype,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "unmodelled": list(spec.unmodelled),
    }


def _entry_json(entry: CatalogEntry, spec: ModelSpec) -> dict:
    return {
        "id": entry.id,
        "aliases": list(entry.aliases),
        **_spec_json(spec),
        "published_total": entry.published_total,
        "published_active": entry.published_active,
        "source": entry.source,
    }


@app.command("models")
def models(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """List the shipped model architectures (any other HF config.json works by path)."""
    from servesim.model import list_models, load_model

    rows = [(entry, load_model(entry.id)) for entry in list_models()]
    if as_json:
        typer.echo(json.dumps([_entry_json(e, s) for e, s in rows], indent=2))
        return
    table = Table(title="servesim model catalog", title_justify="left")
    for header in ("id", "architecture", "layers", "hidden", "heads/kv", "attention", "MoE"):
        table.add_column(header, justify="right" if header in ("layers", "hidden") else "left")
    for header in ("total", "active", "context", "dtype"):
        table.add_column(header, justify="right" if header != "dtype" else "left")
    for entry, spec in rows:
        table.add_row(
            entry.id,
            spec.architecture.removesuffix("ForCausalLM"),
            str(spec.num_layers),
            str(spec.hidden_size),
            f"{spec.num_attention_heads}/{spec.num_kv_heads}",
            _attention(spec),
            _moe(spec),
            format_params(spec.params_total),
            format_params(spec.params_active),
            _context(spec.max_position_embeddings),
            spec.dtype,
        )
    print_table(table)
    Console().print(
        "MoE = routed experts/top-k (+shared). Active counts the input embedding. "
        "`servesim model NAME` shows one model; NAME may be a path to a config.json."
    )


@app.command("model")
def model(
    name: str | None = typer.Argument(
        None, help="Catalog id, short name, or path to a config.json."
    ),
    model_option: str | None = typer.Option(
        None, "--model", "-m", help="The model, as an option (the same as NAME)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show one model's layout and parameter breakdown."""
    from servesim.model import load_model

    spec = load_model(positional_or_option(name, model_option, "--model"))
    breakdown = spec.params_breakdown()
    active = spec.params_breakdown(active=True)
    if as_json:
        payload = {
            "name": spec.name,
            **_spec_json(spec),
            "params_breakdown": breakdown,
            "params_breakdown_active": active,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    console = Console()
    console.print(
        f"[bold]{spec.name}[/bold]  {spec.architecture}  {spec.num_layers} layers, "
        f"hidden {spec.hidden_size}, {spec.num_attention_heads}/{spec.num_kv_heads} heads "
        f"x {spec.head_dim}, {_attention(spec)}, MoE {_moe(spec)}, "
        f"context {spec.max_position_embeddings}, {spec.dtype}"
    )
    table = Table(title="parameters", title_justify="left")
    table.add_column("component")
    table.add_column("total", justify="right")
    table.add_column("active per token", justify="right")
    for component, count in breakdown.items():
        table.add_row(component, f"{count:,}", f"{active[component]:,}")
    table.add_row("[bold]sum[/bold]", f"{spec.params_total:,}", f"{spec.params_active:,}")
    print_table(table, console)
    for caveat in spec.unmodelled:
        console.print(f"[yellow]not modelled:[/yellow] {caveat}")
