"""Commands: ``servesim sweep`` and ``servesim capacity`` (``plan``: plan_cmd.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress, TextColumn
from rich.table import Table

from servesim.cli.app import OUTPUT_PATH, RAY_HELP, WORKERS_HELP, app
from servesim.cli.progress import ProgressLines, bar_columns
from servesim.errors import ServesimError
from servesim.formatting import cell, number
from servesim.paths import writable_dir

SHOWN_METRICS = (
    ("request_throughput", "req/s"),
    ("p99_ttft_ms", "p99 TTFT ms"),
    ("p99_tpot_ms", "p99 TPOT ms"),
    ("goodput", "goodput"),
    ("usd_per_hour", "$/h"),
)
MAX_ROWS_SHOWN = 20


def _progress(console: Console, label: str) -> Progress:
    return Progress(
        *bar_columns(label),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # no stray blank line in logs and pipes
    )


# --------------------------------------------------------------------------- sweep


def _short_names(axes: list[str]) -> list[str]:
    """Column headers: an axis's last path segment unless two axes share it."""
    last = [a.rsplit(".", 1)[-1] for a in axes]
    return [short if last.count(short) == 1 else a for a, short in zip(axes, last, strict=True)]


def _rows_table(rows: list[dict[str, Any]], axes: list[str], title: str = "Results") -> Table:
    shown = min(len(rows), MAX_ROWS_SHOWN)
    if shown < len(rows):
        title += f" ({shown} of {len(rows)} rows)"
    table = Table(title=title)
    table.add_column("#", justify="right")
    for name in _short_names(axes):
        table.add_column(name, justify="right")
    metrics = [(k, label) for k, label in SHOWN_METRICS if any(k in r for r in rows)]
    for _, label in metrics:
        table.add_column(label, justify="right")
    table.add_column("status")
    for r in rows[:MAX_ROWS_SHOWN]:
        table.add_row(
            str(r["index"]),
            *(cell(r.get(a)) for a in axes),
            *(cell(r.get(k)) for k, _ in metrics),
            r["status"],
        )
    return table


def _planned(point) -> dict[str, Any]:
    """A dry run's row: the scenario's fleet built as the run would build it (its deployment
    checked: the split, the memory plan), nothing simulated."""
    from servesim.run import prepare

    row = {"index": point.index, **point.axes, "status": "planned"}
    try:
        prepare(point.scenario, sessions=iter(()))
    except ServesimError as err:
        row.update(status="invalid", error=str(err))
    return row


def _error_lines(rows: list[dict[str, Any]], limit: int = 3) -> list[str]:
    bad = [r for r in rows if r["status"] != "ok"]
    lines = [f"scenario {r['index']} ({r['status']}): {r['error']}" for r in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more (see the error column)")
    return lines


@app.command("sweep")
def sweep_command(
    sweep_file: Path = typer.Argument(
        ..., metavar="SWEEP.yaml", help="sweep file: base scenario + grid/cases of axes"
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        click_type=OUTPUT_PATH,
        help="output folder (default: ./<sweep name>-results)",
    ),
    workers: int = typer.Option(None, "--workers", "-j", help=WORKERS_HELP),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    fresh: bool = typer.Option(
        False, "--fresh", help="discard finished results and run everything again"
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="validate and list the scenarios; run nothing"
    ),
    num_requests: int = typer.Option(
        None,
        "--num-requests",
        "-n",
        help="override the base workload's request count (a trace's max_requests)",
    ),
) -> None:
    """Run every scenario of a sweep file; write results.parquet and results.csv.

    Resumable: finished scenarios are journaled as they finish and skipped when the same
    sweep runs again into the same folder.
    """
    from servesim.scenario_overlay import overlay
    from servesim.sweep.executors import SerialExecutor, make_executor
    from servesim.sweep.results import JOURNAL, read_journal, table_rows, write_tables
    from servesim.sweep.runner import run_sweep
    from servesim.sweep.spec import axis_names, expand, load_sweep_file

    spec, base = load_sweep_file(sweep_file)
    if num_requests is not None:
        base = overlay(base, {"num_requests": num_requests})
    points = expand(spec, base)
    axes = axis_names(spec)
    console = Console(soft_wrap=True)
    if dry_run:
        # Nothing ran: the table is the plan, each row a scenario that would run, or why not.
        rows = [_planned(p) for p in points]
        console.print(_rows_table(rows, axes, title="Plan (dry run: nothing simulated)"))
        bad = [r for r in rows if r["status"] != "planned"]
        if bad:
            raise ServesimError(
                f"{len(bad)} of {len(points)} scenarios cannot run (scenario {bad[0]['index']}: "
                f"{bad[0]['error']})",
                field="SWEEP",
                fix="the status column marks them; fix or drop those axis values",
            )
        console.print(f"{len(points)} scenarios, all valid; none run (--dry-run)")
        return
    out = writable_dir(out or Path(f"{spec.name or sweep_file.stem}-results"))
    err = Console(stderr=True, soft_wrap=True)
    done_before = (
        0 if fresh else len({p.scenario_id for p in points} & set(read_journal(out / JOURNAL)))
    )
    if done_before:
        err.print(
            f"resuming: {done_before} of {len(points)} scenarios already in {out}",
            soft_wrap=True,
        )
    progress = _progress(err, "sweep")
    task = progress.add_task("", total=len(points), completed=done_before)
    lines = None if err.is_terminal else ProgressLines("sweep", len(points), "scenarios")
    failures = 0
    finished = done_before

    def on_result(point, record) -> None:
        nonlocal failures, finished
        failures += record["status"] != "ok"
        finished += 1
        progress.update(task, advance=1, description=f"{failures} errors" if failures else "")
        if lines is not None:
            lines(finished)

    try:
        # Nothing left to run: no pool to start, no cluster to join.
        nothing_to_run = done_before == len(points)
        with SerialExecutor() if nothing_to_run else make_executor(workers, ray) as executor:
            with progress:
                outcome = run_sweep(points, out, executor, fresh=fresh, on_result=on_result)
    except (ServesimError, KeyboardInterrupt) as exc:
        # run_sweep wrote the tables on its way out; an executor that never started did not.
        kept = table_rows(points, read_journal(out / JOURNAL))
        if kept:
            write_tables(kept, out)
        note = (
            f"{len(kept)} of {len(points)} finished scenarios are kept in {out} "
            "(run again to resume)"
            if kept
            else "no scenario had finished"
        )
        if isinstance(exc, KeyboardInterrupt):
            err.print(f"interrupted: {note}", soft_wrap=True)
            raise typer.Exit(130) from None
        if not kept:
            raise  # nothing ran (a bad --workers, an unreachable cluster): the error says it all
        raise ServesimError(f"{exc}; {note}") from None
    console.print(_rows_table(outcome.rows, axes))
    for line in _error_lines(outcome.rows):
        err.print(line, highlight=False)
    where = f" with {executor.name} ×{executor.workers}" if outcome.ran else ""
    console.print(
        f"wrote {outcome.parquet} and {outcome.csv}: {len(outcome.rows)} rows "
        f"({outcome.ran} run now{where}, {outcome.reused} from the journal, "
        f"{outcome.errors} errors)",
        highlight=False,
        soft_wrap=True,
    )
    if outcome.rows and outcome.errors == len(outcome.rows):
        raise ServesimError(
            f"all {outcome.errors} scenarios failed (scenario {outcome.rows[0]['index']}: "
            f"{outcome.rows[0]['error']})",
            field="SWEEP",
            fix="see the error column; fix the base scenario or the axes",
        )
    if outcome.crashes:
        err.print(
            f"{outcome.crashes} scenarios hit a servesim bug (status crash; not journaled, so "
            "they run again on resume): please report it"
        )
        raise typer.Exit(1)


# --------------------------------------------------------------------------- capacity


def _slo(ttft: float | None, tpot: float | None, e2el: float | None, base=None):
    """The SLO of the ``--slo-*`` flags; a metric without a flag takes ``base``'s (the scenario
    file's ``slo:``)."""
    from servesim.metrics import SLO

    for flag, v in (("--slo-ttft-ms", ttft), ("--slo-tpot-ms", tpot), ("--slo-e2el-ms", e2el)):
        if v is not None and not v > 0:
            raise ServesimError(f"must be > 0 ms, got {v}", field=flag)

    def pick(flag: float | None, metric: str) -> float | None:
        return flag if flag is not None or base is None else getattr(base, metric)

    return SLO(pick(ttft, "ttft_ms"), pick(tpot, "tpot_ms"), pick(e2el, "e2el_ms"))


def _deployment(sc) -> str:
    """E.g. ``meta-llama/Llama-3.1-8B on 2 instances × TP1 = 2 × H100``."""
    from servesim.scenario import describe_instances

    if sc.instances or sc.disaggregate:
        return f"{sc.model} on its instance groups"
    return f"{sc.model} on {describe_instances(sc.replicas, sc.hardware, sc.tp, sc.pp, sc.ep, dp=sc.dp)}"


def _probe_cells(values: dict[str, float], slo) -> list[str]:
    return [number(values[m], 1) for m in ("ttft_ms", "tpot_ms", "e2el_ms") if getattr(slo, m)]


@app.command("capacity")
def capacity_command(
    scenario_file: Path = typer.Argument(
        ...,
        metavar="SCENARIO.yaml",
        help="the deployment and workload (its arrival rate is varied)",
    ),
    slo_ttft_ms: float = typer.Option(
        None, "--slo-ttft-ms", help="TTFT target, ms (default: the scenario's slo.ttft_ms)"
    ),
    slo_tpot_ms: float = typer.Option(
        None, "--slo-tpot-ms", help="TPOT target, ms (default: the scenario's slo.tpot_ms)"
    ),
    slo_e2el_ms: float = typer.Option(
        None, "--slo-e2el-ms", help="end-to-end latency target, ms (default: slo.e2el_ms)"
    ),
    percentile: float = typer.Option(
        99.0, "--percentile", "-p", help="SLO percentile over requests"
    ),
    tolerance: float = typer.Option(
        0.05, "--tolerance", help="relative precision of the rate (0.05 = 5%)"
    ),
    model: str = typer.Option(None, "--model", "-m", help="override the scenario's model"),
    hardware: str = typer.Option(None, "--hardware", "-g", help="override the scenario's GPU"),
    tp: int = typer.Option(None, "--tp", help="override tensor-parallel GPUs per instance"),
    replicas: int = typer.Option(None, "--replicas", help="override data-parallel instances"),
    num_requests: int = typer.Option(
        None, "--num-requests", "-n", help="override the workload's request count"
    ),
    workload: str = typer.Option(
        None,
        "--workload",
        "-w",
        help="replace the scenario's workload: a preset or a workload YAML",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Highest request rate (req/s) the deployment sustains within the SLOs.

    Bisection over the Poisson arrival rate, to the stated tolerance; says which constraint
    binds.
    """
    from servesim.scenario import build_scenario, load_scenario_file
    from servesim.scenario_overlay import named_workload, overlay
    from servesim.sweep.capacity import (
        METRIC_LABELS,
        capacity_document,
        describe_slo,
        find_capacity,
        steady_state_warning,
    )
    from servesim.sweep.measure import run_point

    # NOTE: --workload replaces the file's workload (a preset too), where simulate's merges
    # into it; --num-requests then applies to the new one.
    flags = {"model": model, "hardware": hardware, "tp": tp, "replicas": replicas}
    if workload is None:
        flags["num_requests"] = num_requests
    data = overlay(load_scenario_file(scenario_file, field="SCENARIO"), flags)
    if workload is not None:
        data["workload"] = named_workload(workload, num_requests)
    scenario = build_scenario(data, source=str(scenario_file))
    slo = _slo(slo_ttft_ms, slo_tpot_ms, slo_e2el_ms, base=scenario.slo)
    err = Console(stderr=True, soft_wrap=True)

    lines = None if err.is_terminal else ProgressLines("capacity", None, "probes simulated")
    probes = 0
    with err.status("finding capacity") as status:

        def evaluate(sc):
            nonlocal probes
            status.update(f"simulating {sc.workload.arrival.rate:,.3g} req/s")
            if lines is not None:
                lines(probes)
            probes += 1
            return run_point(sc, percentile)

        cap = find_capacity(
            scenario, slo, percentile=percentile, tolerance=tolerance, evaluate=evaluate
        )
    at, above = cap.at_capacity, cap.above_capacity
    if as_json:
        sys.stdout.write(json.dumps(capacity_document(cap), indent=2) + "\n")
        return
    console = Console(soft_wrap=True)
    b = cap.binding
    from servesim.workload import describe

    console.print(f"{_deployment(scenario)}; {describe(scenario.workload)}", highlight=False)
    console.print(f"SLOs: {describe_slo(slo, percentile)}", highlight=False)
    console.print(
        f"[bold]capacity: {cap.rate:,.3g} req/s[/bold] "
        f"(bisection tolerance {tolerance:.0%}: {cap.upper_rate:,.3g} req/s misses the SLOs)"
    )
    console.print(
        f"binding constraint: {METRIC_LABELS[b]} (p{percentile:g} {above.values[b]:,.1f} ms > "
        f"{getattr(slo, b):g} ms at {cap.upper_rate:,.3g} req/s; "
        f"{at.values[b]:,.1f} ms at capacity)"
    )
    warning = steady_state_warning(cap)
    if warning:
        err.print(f"warning: {warning}")
    skipped = at.metrics.get("num_skipped", 0)
    if skipped:
        err.print(
            f"warning: {skipped} requests were skipped (longer than the context window or the "
            "KV cache) and are left out of the percentiles"
        )
    table = Table(title="Probes (in the order simulated)")
    table.add_column("rate req/s", justify="right")
    for m in ("ttft_ms", "tpot_ms", "e2el_ms"):
        if getattr(slo, m):
            table.add_column(f"p{percentile:g} {METRIC_LABELS[m]} ms", justify="right")
    table.add_column("throughput req/s", justify="right")
    table.add_column("meets SLOs")
    for p in cap.probes:
        ok = "yes" if p.ok else "no: " + ", ".join(METRIC_LABELS[m] for m in p.failing)
        table.add_row(
            f"{p.rate:,.4g}",
            *_probe_cells(p.values, slo),
            number(p.metrics["request_throughput"]),
            ok,
        )
    console.print(table)
