"""The self-contained HTML report of a run: ``build_report`` and ``write_report``.

Everything is inline (CSS, SVG charts; no script, no external URL), so the file opens offline,
from an e-mail attachment or a CI artifact, exactly as written.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from servesim.formatting import number
from servesim.report import figures, series
from servesim.report.data import RunData, read_run, scenario_label
from servesim.scenario import describe_instances

# (vLLM name, label, unit, digits) of the throughput rows.
THROUGHPUT_ROWS = (
    ("completed", "completed requests", "", 0),
    ("num_skipped", "skipped requests", "", 0),
    ("duration", "duration", "s", 2),
    ("total_input_tokens", "input tokens", "tokens", 0),
    ("total_output_tokens", "output tokens", "tokens", 0),
    ("request_throughput", "request throughput", "req/s", 2),
    ("output_throughput", "output token throughput", "tokens/s", 1),
    ("total_token_throughput", "total token throughput", "tokens/s", 1),
    ("goodput", "goodput (requests meeting every SLO)", "req/s", 2),
)
LATENCY_METRICS = (
    ("ttft", "TTFT (time to first token)"),
    ("tpot", "TPOT (time per output token)"),
    ("itl", "ITL (inter-token latency)"),
    ("e2el", "E2EL (end-to-end latency)"),
)
LATENCY_STATS = ("mean", "median", "std", "p90", "p99")
ENGINE_ROWS = (
    ("num_steps", "engine steps", "", 0),
    ("num_preemptions", "preemptions", "", 0),
    ("kv_cache_peak_usage", "KV cache peak usage", "%", 1),
    ("prefix_cache_hit_rate", "prefix cache hit rate", "%", 1),
    ("mfu", "MFU (model FLOPs utilisation)", "%", 1),
    ("mbu", "MBU (memory bandwidth utilisation)", "%", 1),
    ("sim_wall_s", "simulation wall time", "s", 3),
)
_SLOWEST_COLUMNS = (
    ("request_id", "request", 0), ("instance", "instance", 0), ("arrival_s", "arrival (s)", 3),
    ("queued_ms", "queued (ms)", 1), ("ttft_ms", "TTFT (ms)", 1), ("tpot_ms", "TPOT (ms)", 2),
    ("e2el_ms", "E2EL (ms)", 1), ("input_tokens", "input", 0), ("output_tokens", "output", 0),
    ("cached_tokens", "cached", 0), ("preemptions", "preemptions", 0),
)  # fmt: skip

#: The page may load nothing: a browser blocks (and logs) any fetch, so the page provably
#: stands alone; inline styles (ours and the SVGs') are all it uses.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.sub { color: #667; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0 1em; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.92em; color: #445; }
.tables { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
figure { margin: 0.5em 0; } figure svg { max-width: 100%; height: auto; }
.note { color: #667; }
details pre { background: #f6f7f9; padding: 0.8em; overflow-x: auto; }
"""


def fmt(value: Any, digits: int = 2, unit: str = "") -> str:
    """A number for a table cell (:func:`servesim.formatting.number`), ``digits`` decimals;
    ``unit == "%"`` shows a fraction (0.25) as a percentage (25.0)."""
    return number(value, digits, percent=unit == "%")


def _e(text: Any) -> str:
    return html.escape(str(text))


def _metric_table(title: str, rows: tuple, summary: dict[str, Any]) -> str:
    body = []
    for key, label, unit, digits in rows:
        if key not in summary:
            continue
        body.append(
            f"<tr><td>{_e(label)}</td><td><code>{_e(key)}</code></td>"
            f'<td class="num" data-key="{_e(key)}">{fmt(summary[key], digits, unit)}</td>'
            f"<td>{_e(unit)}</td></tr>"
        )
    head = "<tr><th>metric</th><th>vLLM name</th><th class=num>value</th><th>unit</th></tr>"
    return f"<table><caption><b>{_e(title)}</b></caption>{head}{''.join(body)}</table>"


def _latency_table(summary: dict[str, Any]) -> str:
    head = "".join(f"<th class=num>{s}</th>" for s in LATENCY_STATS)
    body = []
    for key, label in LATENCY_METRICS:
        cells = "".join(
            f'<td class="num" data-key="{s}_{key}_ms" title="{s}_{key}_ms">'
            f"{fmt(summary.get(f'{s}_{key}_ms'))}</td>"
            for s in LATENCY_STATS
        )
        body.append(f"<tr><td>{_e(label)}</td><td><code>*_{key}_ms</code></td>{cells}</tr>")
    return (f"<table><caption><b>Latency (ms)</b></caption><tr><th>metric</th>"
            f"<th>vLLM name</th>{head}</tr>{''.join(body)}</table>")  # fmt: skip


def _scenario_section(run: RunData) -> str:
    s = run.summary
    sc = s.get("scenario") or {}
    sched = sc.get("scheduler") or {}
    slo = {k: v for k, v in (sc.get("slo") or {}).items() if v is not None}
    model, _ = scenario_label(s)
    replicas = sc.get("replicas", 1)
    gpu = (s.get("hardware_info") or {}).get("name") or sc.get("hardware") or "?"
    fleet = describe_instances(
        replicas, gpu, sc.get("tp") or 1, sc.get("pp") or 1, sc.get("ep") or 1,
        dp=sc.get("dp") or 1,
    )  # fmt: skip
    rows = [
        ("model", model),
        ("hardware", fleet + (f", router {sc.get('router')}" if replicas > 1 else "")),
        ("scheduler", ", ".join(f"{k} {v}" for k, v in sched.items())),
        ("workload", s.get("workload_description", "")),
        ("KV cache", f"{fmt((s.get('memory') or {}).get('kv_capacity_tokens'), 0)} tokens"),
        ("SLOs", ", ".join(f"{k} {v}" for k, v in slo.items()) or "none"),
        ("seed", sc.get("seed", "")),
    ]
    if s.get("track_record"):
        from servesim.track_record import summary_rows

        rows.extend(summary_rows(s["track_record"]))
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    raw = json.dumps(sc, indent=2)
    return (f"<h2>Scenario</h2><table>{table}</table>"
            f"<details><summary>scenario as run (summary.json)</summary><pre>{_e(raw)}</pre>"
            "</details>")  # fmt: skip


def _breakdown_table(run: RunData) -> str:
    breakdown = series.op_breakdown(run)
    if not breakdown:
        return ('<p class="note">The steps table has no per-operator-group columns '
                "(<code>t_*</code>): shown instead is the distribution of step times.</p>"
                )  # fmt: skip
    kinds = list(breakdown)
    groups = list(breakdown[kinds[0]])
    head = "".join(f"<th class=num>{_e(k)}</th>" for k in kinds)
    body = "".join(
        f"<tr><td><code>t_{_e(g)}</code></td>"
        + "".join(f'<td class="num">{fmt(breakdown[k][g], 3)}</td>' for k in kinds)
        + "</tr>"
        for g in groups
    )
    totals = "".join(f'<td class="num"><b>{fmt(sum(breakdown[k].values()), 3)}</b></td>'
                     for k in kinds)  # fmt: skip
    caption = "<caption><b>Mean time per step (ms) by operator group</b></caption>"
    return (f"<table>{caption}<tr><th>group</th>{head}</tr>{body}"
            f"<tr><td>sum</td>{totals}</tr></table>")  # fmt: skip


def _slowest_table(run: RunData) -> str:
    rows = series.slowest_requests(run, 10)
    head = "".join(f"<th class=num>{_e(label)}</th>" for _, label, _ in _SLOWEST_COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{fmt(r[k], d)}</td>' for k, _, d in _SLOWEST_COLUMNS)
        + "</tr>"
        for r in rows
    )
    return f'<table id="slowest"><tr>{head}</tr>{body}</table>'


def _section(title: str, svg: str, caption: str, extra: str = "") -> str:
    return f"<h2>{_e(title)}</h2><p class=note>{_e(caption)}</p><figure>{svg}</figure>{extra}"


def build_report(run_dir: str | Path, png_dir: str | Path | None = None) -> str:
    """The HTML report of the run saved in ``run_dir``, as one self-contained string.

    With ``png_dir``, each chart is also written there as ``<name>.png``. Raises ServesimError
    when ``run_dir`` is not a run folder.
    """
    run = read_run(run_dir)
    figs = figures.all_figures(run)
    if png_dir is not None:
        png_dir = Path(png_dir)
        png_dir.mkdir(parents=True, exist_ok=True)
        for name, fig in figs.items():
            figures.save_png(fig, png_dir / f"{name}.png")
    svg = {name: figures.to_svg(fig, name) for name, fig in figs.items()}
    s = run.summary
    model, hardware = scenario_label(s)
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>servesim report: {_e(model)} on {_e(hardware)}</title><style>{_CSS}</style>",
        "</head><body>",
        f"<h1>servesim report: {_e(model)} on {_e(hardware)}</h1>",
        # NOTE: not the run folder's path: the page may be written in a temporary folder that
        # is renamed afterwards, and the same run should give the same bytes anywhere.
        f'<p class="sub">{_e(s.get("workload_description", ""))} · servesim '
        f"{_e(s.get('servesim_version', '?'))} · simulated, not measured</p>",
        _scenario_section(run),
        "<h2>Summary</h2><div class=tables>",
        _metric_table("Throughput", THROUGHPUT_ROWS, s),
        _metric_table("Engine", ENGINE_ROWS, s),
        "</div>",
        _latency_table(s),
        '<p class="note">Names and definitions follow vLLM <code>bench serve</code>: TTFT = first '
        "token − arrival; TPOT per request = (E2EL − TTFT) / (output tokens − 1), requests with "
        "one output token left out; ITL pooled over every token gap; E2EL = finish − arrival; "
        "goodput = requests meeting every SLO per second.</p>",
        _section("Latency distributions", svg["latency_cdf"],
                 "Cumulative fraction of requests; dashed: median, dotted: p99 (summary.json)."),
        _section("Throughput and queue over time", svg["throughput_queue"],
                 "Tokens the engine processed per second (prefill chunks and decode tokens), and "
                 "the mean number of requests waiting for their first scheduling."),
        _section("Batch size and KV cache over time", svg["batch_kv"],
                 "Running requests summed over instances; KV blocks in use, mean over instances "
                 "(time-weighted per bin; idle time counts as 0)."),
        _section("Step time by operator group", svg["step_breakdown"],
                 "Predicted time of each operator group (t_* columns of the steps table): mean per "
                 "step by kind of step, and GPU-seconds per second over time."
                 if run.op_columns else "Step times (ms per step), by kind of step.",
                 _breakdown_table(run)),
        "<h2>Slowest requests (E2EL)</h2>",
        _slowest_table(run),
        "</body></html>\n",
    ]  # fmt: skip
    return "\n".join(parts)


def write_report(
    run_dir: str | Path, out_path: str | Path, png_dir: str | Path | None = None
) -> Path:
    """Write the report of ``run_dir`` to ``out_path`` atomically (and PNGs into ``png_dir``).

    The PNGs are staged (:func:`~servesim.output.staged_folder`): ``png_dir`` is replaced as a
    whole once every chart and the page are built; a failure or an interrupt leaves it as it
    was."""
    out_path = Path(out_path)
    if png_dir is None:
        text = build_report(run_dir)
    else:
        from servesim.interrupts import sigterm_raises
        from servesim.output import staged_folder

        png_dir = Path(png_dir)
        with sigterm_raises(), staged_folder(png_dir.parent, (png_dir.name,)) as tmp:
            text = build_report(run_dir, tmp / png_dir.name)
    from servesim.paths import atomic_text

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_text(out_path) as f:
        f.write(text)
    return out_path
