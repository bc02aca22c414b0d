"""Run one scenario and flatten what a sweep, a capacity search or a plan needs from it.

These functions run inside worker processes (a process pool or Ray), so they take and return
plain, picklable values and never print.
"""

from __future__ import annotations

import math
import traceback
from typing import Any

import numpy as np

from servesim.errors import ServesimError
from servesim.metrics import SLO
from servesim.run import Result, simulate
from servesim.scenario import Scenario

SLO_METRICS = ("ttft_ms", "tpot_ms", "e2el_ms")
"""Per-request latencies an SLO may bound, milliseconds."""


def numeric_summary(summary: dict[str, Any]) -> dict[str, float | int]:
    """The summary's numeric metrics (nested and text entries left out)."""
    return {
        k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def deployment_cost(result: Result) -> dict[str, float]:
    """Price of the fleet a run used, from the hardware catalog.

    ``usd_per_hour``: GPUs × catalog price per GPU-hour, summed over instance groups.
    ``usd_per_million_output_tokens``: that hourly price over the output tokens the fleet
    produced per hour *at the offered load* (not at capacity).
    """
    per_hour = sum(
        g.hardware.price_per_gpu_hour * g.gpus_per_instance * len(g.instances)
        for g in result.groups
    )
    tokens_per_s = result.summary.get("output_throughput", float("nan"))
    per_mtok = (
        per_hour / (tokens_per_s * 3600.0) * 1e6
        if tokens_per_s and math.isfinite(tokens_per_s)
        else float("nan")
    )
    return {"usd_per_hour": per_hour, "usd_per_million_output_tokens": per_mtok}


def slo_values(result: Result, percentile: float) -> dict[str, float]:
    """TTFT, TPOT and E2EL at ``percentile`` (0-100] over completed requests, milliseconds.

    Same definitions as the summary (TPOT per request, requests with one output token left
    out; linear interpolation), so at 50/90/99 these equal ``median_``/``p90_``/``p99_``.
    """
    req = result.records.request_columns()
    ttft = req["first_token_s"] - req["arrival_s"]
    e2el = req["finish_s"] - req["arrival_s"]
    multi = req["output_tokens"] > 1
    tpot = (e2el[multi] - ttft[multi]) / (req["output_tokens"][multi] - 1)

    def pct(values: np.ndarray) -> float:
        return float(np.percentile(values * 1000.0, percentile)) if len(values) else float("nan")

    return {"ttft_ms": pct(ttft), "tpot_ms": pct(tpot), "e2el_ms": pct(e2el)}


def failing_constraints(values: dict[str, float], slo: SLO) -> tuple[str, ...]:
    """Names of the SLO metrics (``ttft_ms``...) that ``values`` miss; NaN counts as missed."""
    failing = []
    for name in SLO_METRICS:
        limit = getattr(slo, name)
        if limit is not None and not values[name] <= limit:
            failing.append(name)
    return tuple(failing)


def run_point(scenario: Scenario, percentile: float | None = None) -> dict[str, Any]:
    """Simulate ``scenario``; a flat record ``{"status", "error", "metrics"}``.

    ``metrics``: every numeric summary metric, the deployment's cost, and with ``percentile``
    the SLO latencies at it as ``slo_ttft_ms``, ``slo_tpot_ms``, ``slo_e2el_ms``.

    Status ``"ok"``; ``"error"`` for a ServesimError (e.g. the model does not fit at that TP:
    the scenario's answer, deterministic); ``"crash"`` for any other exception (a servesim
    bug: reported, never journaled, so a fixed servesim runs that scenario again).
    """
    try:
        result = simulate(scenario)
    except ServesimError as err:
        return {"status": "error", "error": str(err), "metrics": {}}
    except Exception as err:
        # NOTE: one buggy scenario must not throw away the hours of a long sweep.
        return {"status": "crash", "error": _crash_text(err), "metrics": {}}
    metrics: dict[str, Any] = numeric_summary(result.summary)
    metrics.update(deployment_cost(result))
    if percentile is not None:
        metrics.update({f"slo_{k}": v for k, v in slo_values(result, percentile).items()})
    return {"status": "ok", "error": None, "metrics": metrics}


def _crash_text(err: Exception) -> str:
    """``TypeError: message (at file.py:123 in function)``: the innermost frame of a bug."""
    frame = traceback.extract_tb(err.__traceback__)[-1]
    where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}"
    return f"{type(err).__name__}: {err} (at {where})"
