"""Command: ``servesim plan``: the cheapest deployment meeting latency SLOs."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from servesim.cli.app import OUTPUT_PATH, RAY_HELP, WORKERS_HELP, app, output_file
from servesim.cli.progress import ProgressLines
from servesim.errors import ServesimError
from servesim.formatting import number
from servesim.paths import writable_file


def _csv_list(text: str, flag: str, cast: Callable[[str], Any] = str) -> list[Any]:
    """``"a,b,c"`` → ``[cast(a), cast(b), cast(c)]``; a bad item names the flag."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ServesimError("is empty", field=flag, fix="give a comma-separated list")
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise ServesimError(f"{text!r} is not a list of numbers", field=flag) from None


def _plan_table(plan, metric: str) -> Table:
    """The Pareto frontier (cost vs ``metric``), cheapest first; the cheapest is its first row."""
    from servesim.sweep.capacity import METRIC_LABELS

    spec = plan.spec
    cheapest = plan.cheapest
    several_seqs = len({e.deployment.max_num_seqs for e in plan.frontier(metric)}) > 1
    table = Table(title=f"Pareto frontier: cost vs p{spec.percentile:g} {METRIC_LABELS[metric]}")
    table.add_column("deployment", no_wrap=True)
    table.add_column("GPUs", justify="right")
    table.add_column("batch tok", justify="right")
    if several_seqs:
        table.add_column("max seqs", justify="right")
    for m in ("ttft_ms", "tpot_ms"):
        table.add_column(f"p{spec.percentile:g} {METRIC_LABELS[m]} ms", justify="right")
    table.add_column("$/hour", justify="right")
    table.add_column("$/M out tok", justify="right")
    for e in plan.frontier(metric):
        d = e.deployment
        table.add_row(
            d.label + (" *" if e is cheapest else ""),
            str(d.gpus),
            f"{d.max_num_batched_tokens:,}",
            *([f"{d.max_num_seqs:,}"] if several_seqs else []),
            number(e.values["ttft_ms"], 1),
            number(e.values["tpot_ms"], 1),
            number(e.usd_per_hour),
            number(e.usd_per_million_output_tokens),
        )
    return table


@app.command("plan")
def plan_command(
    model: str = typer.Option(
        ..., "--model", "-m", help="model id, short name or config.json path"
    ),
    workload: str = typer.Option(
        "conversation",
        "--workload",
        "-w",
        help="preset (conversation, code, sharegpt) or a workload/scenario YAML",
    ),
    rate: float = typer.Option(..., "--rate", "-r", help="offered load, requests/s (Poisson)"),
    slo_ttft_ms: float = typer.Option(None, "--slo-ttft-ms", help="TTFT target, ms"),
    slo_tpot_ms: float = typer.Option(None, "--slo-tpot-ms", help="TPOT target, ms"),
    slo_e2el_ms: float = typer.Option(None, "--slo-e2el-ms", help="end-to-end latency target, ms"),
    percentile: float = typer.Option(
        99.0, "--percentile", "-p", help="SLO percentile over requests"
    ),
    hardware: str = typer.Option(
        "H100,H200", "--hardware", "-g", help="comma-separated GPU types to consider"
    ),
    max_gpus: int = typer.Option(8, "--max-gpus", help="most GPUs in a deployment"),
    max_num_batched_tokens: str = typer.Option(
        "2048,8192",
        "--max-num-batched-tokens",
        help="token budgets per step to try (comma-separated)",
    ),
    max_num_seqs: str = typer.Option(
        None,
        "--max-num-seqs",
        help="running-request caps to try (comma-separated); default: the engine's own per GPU",
    ),
    extra_replicas: int = typer.Option(
        1,
        "--extra-replicas",
        help="replica counts tried past the first that meets the SLOs (frontier points)",
    ),
    num_requests: int = typer.Option(
        None, "--num-requests", "-n", help="requests per simulation (default 1000)"
    ),
    config: Path = typer.Option(
        None, "--config", "-c", help="scenario YAML for other fields (dtypes, router, seed, ...)"
    ),
    pareto: str = typer.Option(
        "ttft", "--pareto", help="latency of the frontier: ttft | tpot | e2el"
    ),
    workers: int = typer.Option(None, "--workers", "-j", help=WORKERS_HELP),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        click_type=OUTPUT_PATH,
        help="folder to write plan.png (cost vs latency) into; a path ending .png/.svg/.pdf: "
        "the file",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
) -> None:
    """Cheapest deployment (hardware × TP × replicas × scheduler knobs) meeting the SLOs.

    Prints it and the Pareto frontier of cost against tail latency; costs from the hardware
    catalog's price per GPU-hour.
    """
    from servesim.metrics import SLO
    from servesim.scenario import load_scenario_file
    from servesim.scenario_overlay import named_workload
    from servesim.sweep.capacity import describe_slo
    from servesim.sweep.executors import make_executor, run_ordered
    from servesim.sweep.measure import run_point
    from servesim.sweep.plan import parse_plan, plan_document, require_feasible, search_plan
    from servesim.validation import to_data

    metric = f"{pareto}_ms"
    if metric not in ("ttft_ms", "tpot_ms", "e2el_ms"):
        raise ServesimError(
            f"{pareto!r} is not a latency", field="--pareto", fix="ttft, tpot or e2el"
        )
    spec = parse_plan(
        {
            "model": model,
            "workload": named_workload(workload, num_requests),
            "rate": rate,
            "slo": {
                k: v
                for k, v in (
                    ("ttft_ms", slo_ttft_ms),
                    ("tpot_ms", slo_tpot_ms),
                    ("e2el_ms", slo_e2el_ms),
                )
                if v is not None
            },
            "percentile": percentile,
            "hardware": _csv_list(hardware, "--hardware"),
            "max_gpus": max_gpus,
            "max_num_batched_tokens": _csv_list(
                max_num_batched_tokens, "--max-num-batched-tokens", int
            ),
            "max_num_seqs": (
                _csv_list(max_num_seqs, "--max-num-seqs", int) if max_num_seqs else None
            ),
            "extra_replicas": extra_replicas,
            "base": load_scenario_file(config) if config else {},
        }
    )
    if out is not None:
        out = writable_file(output_file(out, "plan.png", (".png", ".svg", ".pdf"), Path(".")))
    err = Console(stderr=True, soft_wrap=True)
    point = partial(run_point, percentile=spec.percentile)
    lines = None if err.is_terminal else ProgressLines("plan", None, "rounds of deployments")
    with make_executor(workers, ray) as executor, err.status("planning") as status:
        rounds = 0

        def on_round(phase: str, n: int) -> None:
            nonlocal rounds
            if lines is not None:
                lines(rounds)
            rounds += 1
            status.update(f"round {rounds}: simulating {n} deployments ({phase})")

        plan = search_plan(spec, lambda scs: run_ordered(executor, point, scs), on_round)
    if out is not None and plan.evaluations:
        from servesim.sweep.plot import plot_plan

        plot_plan(plan, out, metric)
    best = require_feasible(plan)
    if as_json:
        sys.stdout.write(json.dumps(plan_document(plan, metric), indent=2) + "\n")
        return
    console = Console(soft_wrap=True)
    d = best.deployment
    slo = SLO(**to_data(spec.slo))
    console.print(f"{spec.model} at {spec.rate:g} req/s, {describe_slo(slo, spec.percentile)}")
    console.print(
        f"[bold]cheapest: {d.label} ({d.gpus} GPUs, max_num_batched_tokens "
        f"{d.max_num_batched_tokens:,}) at ${best.usd_per_hour:,.2f}/hour, "
        f"${best.usd_per_million_output_tokens:,.2f} per million output tokens[/bold]"
    )
    console.print(_plan_table(plan, metric))
    console.print(
        f"* cheapest. {len(plan.evaluations)} deployments simulated, {len(plan.feasible)} meet "
        "the SLOs (--json lists them all)",
        highlight=False,
    )
    for note in plan.notes:
        console.print(f"  skipped {note}", style="dim", highlight=False)
    if out is not None:
        console.print(f"wrote {out}")
