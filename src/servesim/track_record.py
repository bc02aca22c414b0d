"""servesim's track record: how far its predictions were from published measurements of
deployments like the one simulated.

The accuracy suite (``bench/fidelity/run.py``) rebuilds published benchmark runs of real
serving stacks as scenarios and scores every metric they printed (TTFT, TPOT/ITL, E2EL,
throughput). ``python bench/fidelity/run.py --write-track-record`` condenses its results into
``catalog/track_record.json``: for each group of runs — the real engine, the GPU, the model's
class (:func:`model_class`) — the metrics scored, their median absolute relative error and
their median *speed bias* (how much faster than measured servesim predicted: +0.2 = 20%
optimistic), overall and per metric family (TTFT, TPOT/ITL, E2E, throughput); and for each
way a run loads its server (:func:`load_regime`: a static batch, in process, a closed loop of
few or many streams, a burst, an open loop) the same figures over every run of that load. A
simulation looks up the most specific group with at least :data:`MIN_METRICS` metrics
(:func:`lookup`) and its own load's figures, and reports them beside its own numbers
(``summary.json`` ``track_record``, lines of the summary table), so a prediction comes with how
close servesim has been to real GPUs on that kind of deployment — metric by metric — and where
it has not been checked at all.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

TRACK_RECORD_PATH = Path(__file__).parent / "catalog" / "track_record.json"

MIN_METRICS = 30
"""Fewest scored metrics a group needs to stand for a scenario (else a broader group does)."""

MIN_FAMILY_METRICS = 10
"""Fewest scored metrics of one family (TTFT, ...) a group needs for the summary table to show
that family's figures (``summary.json`` has every family with its count)."""

MIN_SOURCES = 2
"""Fewest publishers (:func:`publisher`: a repository or a site) a group's metrics, or a
family's, need to stand for a scenario or be shown: one publisher's runs share its setup (its
benchmark client, gateway, engine flags), so on their own they say how servesim did on that
setup, not on deployments like it."""

FAMILIES = ("TTFT", "TPOT/ITL", "E2E", "throughput")
"""The metric families scored, in the order they are shown."""

CLOSED_LOOP_FEW = 4
"""Closed loops of at most this many streams are lightly loaded (:func:`load_regime`): a request
rarely waits, so its TTFT is what it meets outside its prefill step plus that step."""

LOADS = (
    "static batch",
    "in process",
    f"closed loop, <= {CLOSED_LOOP_FEW} streams",
    f"closed loop, > {CLOSED_LOOP_FEW} streams",
    "burst (rate inf)",
    "open loop",
)
"""How a run loads its server (:func:`load_regime`)."""

ENGINE_FAMILY = {
    "vllm": "vllm",
    "vllm-v0": "vllm-v0",
    "sglang": "sglang",
    "sglang-0.4": "sglang",
    "trtllm": "trtllm",
    "trtllm-pytorch": "trtllm",
    "lmdeploy": "lmdeploy",
    "gpt-fast": "gpt-fast",
}
"""Engine profile -> the real engine whose published runs score it (the suite's ``engine``)."""

LEVELS: tuple[tuple[str, ...], ...] = (
    ("engine", "gpu", "model_class"),
    ("engine", "gpu"),
    ("engine", "model_class"),
    ("engine",),
    ("gpu", "model_class"),
    ("gpu",),
    (),
)
"""Groupings from the most specific to all runs, in the order :func:`lookup` tries them."""


def model_class(*, moe: bool, mla: bool, mxfp4_experts: bool, params_total: float) -> str:
    """The class a model's runs are grouped in: MoE by kind, dense by total parameters."""
    if moe:
        if mla:
            return "MoE + MLA (DeepSeek-V3)"
        if mxfp4_experts:
            return "MoE + MXFP4 (gpt-oss)"
        return "MoE"
    billions = params_total / 1e9
    if billions < 10:
        return "dense < 10B"
    if billions < 30:
        return "dense 10-30B"
    if billions < 100:
        return "dense 30-100B"
    return "dense >= 100B"


def model_class_of(model: Any) -> str:
    """:func:`model_class` of a :class:`~servesim.model.ModelSpec`."""
    return model_class(
        moe=model.moe is not None,
        mla=model.mla is not None,
        mxfp4_experts=model.moe is not None and model.dtype == "mxfp4",
        params_total=model.params_total,
    )


def load_regime(scenario: Any) -> str:
    """How ``scenario`` (a :class:`~servesim.scenario.Scenario`) loads its server, one of
    :data:`LOADS`: a ``static`` batch; ``in process`` (no API server: offline benchmarks);
    a closed loop of at most :data:`CLOSED_LOOP_FEW` streams or of more (``closed`` arrivals, or
    a burst capped by ``max_concurrency``); a ``burst`` (every request at t=0); else an open
    loop (Poisson, gamma, constant rate, a trace's timestamps)."""
    if scenario.scheduler.policy == "static":
        return LOADS[0]
    if not scenario.api_server:
        return LOADS[1]
    workload = scenario.workload
    arrival = workload.arrival
    kind = arrival.kind if arrival is not None else None
    streams = arrival.concurrency if kind == "closed" else None
    if kind == "burst" and workload.max_concurrency is not None:
        streams = workload.max_concurrency
    if streams is not None:
        return LOADS[2] if streams <= CLOSED_LOOP_FEW else LOADS[3]
    return LOADS[4] if kind == "burst" else LOADS[5]


def publisher(source: str) -> str:
    """Who published a run, from the accuracy suite's ``source``: the repository of
    ``github owner/repo path`` or of a ``https://github.com/owner/repo/...`` link, else the
    site of a link (``blogs.oracle.com``), else the text itself."""
    words = source.split()
    if len(words) >= 2 and words[0] == "github":
        return "/".join(words[1].split("/")[:2])
    if "://" in source:
        site, _, path = source.split("://", 1)[1].partition("/")
        site = site.removeprefix("www.")
        if site == "github.com":
            return "/".join(path.split("/")[:2])
        return site
    return source


def group_key(level: Iterable[str], group: Mapping[str, str]) -> str:
    """The table key of ``group`` at ``level``: ``"engine=vllm|gpu=H100"``, ``"all"``."""
    parts = [f"{name}={group[name]}" for name in level]
    return "|".join(parts) if parts else "all"


def _stats(scored: list[tuple[float, float, str | None]]) -> dict[str, Any]:
    """Count, median |error|, median speed bias and share too fast of ``(error, bias,
    publisher)`` triples, and the publishers they come from (where the rows name them)."""
    # (Four decimals: a tenth of a percentage point is more than the figures can carry.)
    out = {
        "metrics": len(scored),
        "median_abs_error": round(statistics.median(abs(e) for e, _, _ in scored), 4),
        "speed_bias": round(statistics.median(b for _, b, _ in scored), 4),
        "too_fast_share": round(sum(b > 0 for _, b, _ in scored) / len(scored), 4),
    }
    sources = {p for _, _, p in scored if p is not None}
    if sources:
        out["sources"] = len(sources)
    return out


def _stats_by_family(scored: list[tuple[str | None, float, float, str | None]]) -> dict[str, Any]:
    """:func:`_stats` of ``(family, error, bias, publisher)`` rows, with ``families``: the same
    per family (in :data:`FAMILIES` order; rows without a family count only in the whole)."""
    out = _stats([(e, b, p) for _, e, b, p in scored])
    families = {}
    for fam in FAMILIES:
        mine = [(e, b, p) for f, e, b, p in scored if f == fam]
        if mine:
            families[fam] = _stats(mine)
    if families:
        out["families"] = families
    return out


def _enough(stats: Mapping[str, Any], metrics: int) -> bool:
    """Whether ``stats`` has ``metrics`` scored metrics and :data:`MIN_SOURCES` publishers
    (a table that does not count them passes that test)."""
    return stats["metrics"] >= metrics and stats.get("sources", MIN_SOURCES) >= MIN_SOURCES


def build_table(
    rows: Iterable[tuple[Mapping[str, str], float, float]], source: str
) -> dict[str, Any]:
    """The track-record table from scored metrics: ``(group, error, speed_bias)`` rows, where
    ``group`` names the run's ``engine``, ``gpu`` and ``model_class`` (and optionally the
    metric's ``family``, the run's ``load``, see :func:`load_regime`, and its ``source``, its
    :func:`publisher`), ``error`` is predicted / measured − 1 and ``speed_bias`` how much faster
    than measured the prediction was (both fractions). ``groups`` holds every level of
    :data:`LEVELS`, ``loads`` every load regime the rows name; with sources, each figure counts
    its publishers (``sources``)."""
    by_key: dict[str, list[tuple[str | None, float, float, str | None]]] = {}
    by_load: dict[str, list[tuple[str | None, float, float, str | None]]] = {}
    for group, error, bias in rows:
        row = (group.get("family"), error, bias, group.get("source"))
        for level in LEVELS:
            by_key.setdefault(group_key(level, group), []).append(row)
        if group.get("load") is not None:
            by_load.setdefault(group["load"], []).append(row)
    groups = {key: _stats_by_family(scored) for key, scored in sorted(by_key.items())}
    table: dict[str, Any] = {"source": source, "min_metrics": MIN_METRICS, "groups": groups}
    if by_load:
        table["loads"] = {n: _stats_by_family(by_load[n]) for n in LOADS if n in by_load}
    return table


@cache
def shipped_table() -> dict[str, Any] | None:
    """The table shipped with the package (None when the file is absent)."""
    if not TRACK_RECORD_PATH.is_file():
        return None
    return json.loads(TRACK_RECORD_PATH.read_text())


def lookup(
    engine_profile: str,
    gpu: str,
    model_cls: str,
    table: Mapping[str, Any] | None = None,
    load: str | None = None,
) -> dict[str, Any] | None:
    """The most specific group of published runs like this deployment with at least
    :data:`MIN_METRICS` scored metrics from :data:`MIN_SOURCES` publishers: ``{"group": {...},
    "metrics": n, "sources": k, "median_abs_error": x, "speed_bias": y, "too_fast_share": z,
    "families": {...}, "source": ...}``; None without a table. With ``load``
    (:func:`load_regime` of the scenario) and enough runs of that load, ``"load"`` holds their
    figures too: ``{"regime": load, "metrics": ..., "families": ...}``.

    ``engine_profile`` is the scenario's engine profile (``sglang-0.4`` scores against SGLang's
    runs); a profile without published runs of its own engine falls through to the GPU's and
    then to all runs."""
    table = shipped_table() if table is None else table
    if table is None:
        return None
    group = {"engine": ENGINE_FAMILY.get(engine_profile), "gpu": gpu, "model_class": model_cls}
    groups = table["groups"]
    for level in LEVELS:
        if any(group[name] is None for name in level):
            continue
        stats = groups.get(group_key(level, group))
        if stats is not None and _enough(stats, MIN_METRICS):
            found = {"group": {n: group[n] for n in level}, **stats, "source": table["source"]}
            at_load = (table.get("loads") or {}).get(load) if load is not None else None
            if at_load is not None and _enough(at_load, MIN_METRICS):
                found["load"] = {"regime": load, **at_load}
            return found
    return None


def describe(record: Mapping[str, Any]) -> str:
    """One line for the summary table: ``vllm · dense < 10B (any GPU): 371 metrics from 6
    sources, median |error| 6%, 5% optimistic``; a group that leaves the engine or the GPU
    open says so."""
    group = record["group"]
    where = " · ".join(group.values()) or "all published runs"
    unmatched = [name for name in ("engine", "GPU") if group and name.lower() not in group]
    if unmatched:
        where += f" (any {' or '.join(unmatched)})"
    return f"{where}: {_figures(record)}"


def _lean(bias: float) -> str:
    """A median speed bias in words: ``30% optimistic`` (faster than measured)."""
    return f"{abs(bias):.0%} {'optimistic' if bias > 0 else 'pessimistic'}"


def _figures(stats: Mapping[str, Any]) -> str:
    """``52 metrics from 3 sources, median |error| 8%, 3% pessimistic`` of a group's or a
    load's figures (the sources where the table counts them)."""
    sources = stats.get("sources")
    sources_text = f" from {sources} sources" if sources is not None else ""
    return (
        f"{stats['metrics']:,} metrics{sources_text}, median |error| "
        f"{stats['median_abs_error']:.0%}, {_lean(stats['speed_bias'])}"
    )


def describe_families(stats: Mapping[str, Any]) -> str | None:
    """The families of ``stats`` (a :func:`lookup` result or its ``load``) with at least
    :data:`MIN_FAMILY_METRICS` metrics from :data:`MIN_SOURCES` publishers: ``TTFT 25% (30%
    optimistic) · TPOT/ITL 16% (12% optimistic) · ...`` (median |error|, then the median speed
    bias); None when none has."""
    parts = []
    families = stats.get("families") or {}
    for fam in FAMILIES:  # (the stored table's keys are sorted)
        t = families.get(fam)
        if t is None or not _enough(t, MIN_FAMILY_METRICS):
            continue
        parts.append(f"{fam} {t['median_abs_error']:.0%} ({_lean(t['speed_bias'])})")
    return " · ".join(parts) or None


def describe_load(record: Mapping[str, Any]) -> str | None:
    """One line for the runs of the scenario's load (``record["load"]``): ``closed loop, <= 4
    streams: 279 metrics, median |error| 12%, 1% pessimistic; TTFT 31% (45% optimistic) ...``;
    None when the record has none."""
    load = record.get("load")
    if load is None:
        return None
    line = f"{load['regime']}: {_figures(load)}"
    families = describe_families(load)
    return f"{line}; {families}" if families else line


def summary_rows(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows for a summary table or report: the matched group
    (:func:`describe`), its metric families (:func:`describe_families`) and the runs of the
    scenario's load (:func:`describe_load`), the last two where there are enough metrics."""
    rows = [("track record on published runs", describe(record))]
    families = describe_families(record)
    if families:
        rows.append(("  by metric (median |error|, bias)", families))
    at_load = describe_load(record)
    if at_load:
        rows.append(("  all runs of this load", at_load))
    return rows
