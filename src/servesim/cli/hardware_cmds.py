"""Commands: ``servesim hardware`` lists the accelerator catalog or shows one GPU in full."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from servesim.cli.app import app, positional_or_option
from servesim.cli.tables import print_table

if TYPE_CHECKING:  # the catalog (YAML, validation) loads when a command runs, not for --help
    from servesim.hardware import Hardware, Link

_NONE = "-"


def _tera(value: float | None) -> str:
    return _NONE if value is None else f"{value / 1e12:.0f}"


def _list_table(gpus: list[Hardware]) -> Table:
    table = Table(
        title="Accelerators: dense peak (no sparsity), GB = 1e9 bytes",
        caption="link: intra-node GB/s per GPU, one direction. $: a default price to override.",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("id", no_wrap=True, style="bold")
    table.add_column("vendor", no_wrap=True)
    # NOTE: units on a second header line keep the table inside 80 columns without ellipses.
    for header in ("HBM\nGB", "HBM\nTB/s", "bf16\nTFLOP/s", "fp8\nTFLOP/s", "fp4\nTFLOP/s"):
        table.add_column(header, justify="right", no_wrap=True)
    for header in ("link\nGB/s", "TDP\nW", "$/GPU\n-hour"):
        table.add_column(header, justify="right", no_wrap=True)
    for hw in gpus:
        table.add_row(
            hw.name,
            hw.vendor,
            f"{hw.hbm_bytes / 1e9:.1f}",
            f"{hw.hbm_bandwidth / 1e12:.2f}",
            _tera(hw.peak_flops.get("bf16")),
            _tera(hw.peak_flops.get("fp8")),
            _tera(hw.peak_flops.get("fp4")),
            f"{hw.intra_node.bandwidth / 1e9:.0f}",
            f"{hw.tdp_w:.0f}",
            f"{hw.price_per_gpu_hour:.2f}",
        )
    return table


def _link_text(link: Link) -> str:
    text = f"{link.name}: {link.bandwidth / 1e9:g} GB/s per direction, {link.latency_s * 1e6:g} µs"
    if link.peer_bandwidth is not None:
        text += f" ({link.peer_bandwidth / 1e9:g} GB/s to each peer)"
    return text


def _spec_rows(hw: Hardware) -> list[tuple[str, str, str]]:
    """(field, value with units, confidence) for every figure, in reading order."""
    rows = [("architecture", hw.architecture)] if hw.architecture else []
    rows += [
        (f"peak_flops.{dtype}", f"{value / 1e12:,.1f} T{'OP' if dtype == 'int8' else 'FLOP'}/s")
        for dtype, value in hw.peak_flops.items()
    ]
    gib = hw.hbm_bytes / 2**30
    ridge = "bf16" if "bf16" in hw.peak_flops else next(iter(hw.peak_flops))
    rows += [
        ("hbm_bytes", f"{hw.hbm_bytes / 1e9:.2f} GB ({gib:.2f} GiB, {hw.hbm_bytes:.0f} bytes)"),
        ("hbm_bandwidth", f"{hw.hbm_bandwidth / 1e12:.3g} TB/s"),
        (f"ridge point ({ridge})", f"{hw.ridge_point(ridge):.0f} FLOP/byte"),
        ("intra_node", _link_text(hw.intra_node)),
        ("inter_node", _link_text(hw.inter_node)),
        ("gpus_per_node", str(hw.gpus_per_node)),
        ("compute_efficiency", f"{hw.compute_efficiency:.2f} of peak"),
        ("memory_efficiency", f"{hw.memory_efficiency:.2f} of peak"),
        ("kernel_launch_s", f"{hw.kernel_launch_s * 1e6:g} µs"),
    ]
    if hw.l2_bytes is not None:
        rows.append(("l2_bytes", f"{hw.l2_bytes / 2**20:g} MB"))
    if hw.multiprocessors is not None:
        rows.append(("multiprocessors", f"{hw.multiprocessors} SMs"))
    rows += [
        ("tdp_w", f"{hw.tdp_w:g} W"),
        ("idle_w", f"{hw.idle_w:g} W"),
        ("price_per_gpu_hour", f"${hw.price_per_gpu_hour:.2f} (default, override)"),
    ]
    return [(name, value, hw.confidence_for(name.split(".")[0])) for name, value in rows]


def _show(console: Console, hw: Hardware) -> None:
    title = hw.description or hw.name
    table = Table(title=f"{hw.name}: {title}")
    table.add_column("field", no_wrap=True)
    table.add_column("value")
    table.add_column("confidence", no_wrap=True)
    for name, value, grade in _spec_rows(hw):
        table.add_row(name, value, grade if "ridge" not in name else "derived")
    console.print(table)
    if hw.aliases:
        console.print(f"aliases: {', '.join(hw.aliases)}", highlight=False)
    console.print("\n[bold]Sources[/bold]")
    for name, cite in hw.sources.items():
        console.print(f"- [bold]{name}[/bold] ({hw.confidence_for(name)}): {cite}", highlight=False)


@app.command("hardware")
def hardware_cmd(
    name: str | None = typer.Argument(
        None, help="GPU id or alias (case-insensitive), or a path to your own hardware YAML."
    ),
    hardware_option: str | None = typer.Option(
        None, "--hardware", "-g", help="The GPU, as an option (the same as NAME)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    as_yaml: bool = typer.Option(
        False, "--yaml", help="Print the shipped YAML of NAME (a template for your own file)."
    ),
) -> None:
    """List the accelerator catalog, or show one GPU's full spec with its sources."""
    from servesim.hardware import list_hardware, load_hardware, shipped_yaml

    name = positional_or_option(name, hardware_option, "--hardware", required=False)
    console = Console()
    if as_yaml:
        if name is None:
            raise typer.BadParameter("--yaml needs a GPU id, e.g. `servesim hardware H100 --yaml`")
        typer.echo(shipped_yaml(name), nl=False)
        return
    if name is None:
        gpus = list_hardware()
        if as_json:
            typer.echo(json.dumps([hw.to_dict() for hw in gpus], indent=2))
        else:
            print_table(_list_table(gpus), console)
        return
    hw = load_hardware(name)
    if as_json:
        typer.echo(json.dumps(hw.to_dict(), indent=2))
    else:
        _show(console, hw)
