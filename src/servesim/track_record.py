"""servesim's track record: how far its predictions were from published measurements of
deployments like the one simulated.

The accuracy suite (``bench/fidelity/run.py``) rebuilds published benchmark runs of real
serving stacks as scenarios and scores every metric they printed (TTFT, TPOT/ITL, E2EL,
throughput). ``python bench/fidelity/run.py --write-track-record`` condenses its results into
``catalog/track_record.json``: for each group of runs — the real engine, the GPU, the model's
class (:func:`model_class`) — the metrics scored, their median absolute relative error and
their median *speed bias* (how much faster than measured servesim predicted: +0.2 = 20%
optimistic). A simulation looks up the most specific group with at least
:data:`MIN_METRICS` metrics (:func:`lookup`) and reports it beside its own numbers
(``summary.json`` ``track_record``, a line of the summary table), so a prediction comes with how
close servesim has been to real GPUs on that kind of deployment — and where it has not been
checked at all.
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


def group_key(level: Iterable[str], group: Mapping[str, str]) -> str:
    """The table key of ``group`` at ``level``: ``"engine=vllm|gpu=H100"``, ``"all"``."""
    parts = [f"{name}={group[name]}" for name in level]
    return "|".join(parts) if parts else "all"


def build_table(
    rows: Iterable[tuple[Mapping[str, str], float, float]], source: str
) -> dict[str, Any]:
    """The track-record table from scored metrics: ``(group, error, speed_bias)`` rows, where
    ``group`` names the run's ``engine``, ``gpu`` and ``model_class``, ``error`` is
    predicted / measured − 1 and ``speed_bias`` how much faster than measured the prediction
    was (both fractions)."""
    by_key: dict[str, list[tuple[float, float]]] = {}
    for group, error, bias in rows:
        for level in LEVELS:
            by_key.setdefault(group_key(level, group), []).append((error, bias))
    groups = {}
    for key, scored in sorted(by_key.items()):
        groups[key] = {
            "metrics": len(scored),
            "median_abs_error": statistics.median(abs(e) for e, _ in scored),
            "speed_bias": statistics.median(b for _, b in scored),
            "too_fast_share": sum(b > 0 for _, b in scored) / len(scored),
        }
    return {"source": source, "min_metrics": MIN_METRICS, "groups": groups}


@cache
def shipped_table() -> dict[str, Any] | None:
    """The table shipped with the package (None when the file is absent)."""
    if not TRACK_RECORD_PATH.is_file():
        return None
    return json.loads(TRACK_RECORD_PATH.read_text())


def lookup(
    engine_profile: str, gpu: str, model_cls: str, table: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The most specific group of published runs like this deployment with at least
    :data:`MIN_METRICS` scored metrics: ``{"group": {...}, "metrics": n, "median_abs_error": x,
    "speed_bias": y, "too_fast_share": z, "source": ...}``; None without a table.

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
        if stats is not None and stats["metrics"] >= MIN_METRICS:
            return {"group": {n: group[n] for n in level}, **stats, "source": table["source"]}
    return None


def describe(record: Mapping[str, Any]) -> str:
    """One line for the summary table: ``vllm · H100 · dense < 10B: 52 metrics, median |error|
    6%, 5% optimistic``; a group that leaves the engine or the GPU open says so (``vllm ·
    dense 30-100B (any GPU): ...``)."""
    group = record["group"]
    where = " · ".join(group.values()) or "all published runs"
    unmatched = [name for name in ("engine", "GPU") if group and name.lower() not in group]
    if unmatched:
        where += f" (any {' or '.join(unmatched)})"
    bias = record["speed_bias"]
    lean = f"{abs(bias):.0%} {'optimistic' if bias > 0 else 'pessimistic'}"
    return (
        f"{where}: {record['metrics']:,} metrics, median |error| "
        f"{record['median_abs_error']:.0%}, {lean}"
    )
