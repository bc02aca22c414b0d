"""Golden outputs: a few whole scenarios must keep giving the records they gave.

The figures in ``engine_golden.json`` were recorded from the engine; any change to a request or
step record (every integer column exactly, every float column by its count, sum, sum of squares
and 21 quantiles), a step's cost-model features, the multiset of inter-token gaps (total weight,
weighted sum, weighted quantiles) or a summary statistic fails here. A deliberate change of
behaviour re-records them:

    python tests/test_engine_golden.py    # rewrites tests/engine_golden.json

Floats agree to :data:`RTOL` relative, not bit for bit: until session 60 the cost model's
matrix products ran on BLAS kernels that the CPU picks and that round the last bits differently
(digests recorded on one machine failed on another; ``OPENBLAS_CORETYPE=Sandybridge`` against
``Haswell`` on one machine moved the KV-offload scenario's step ends in their 15th digit). The
step pricing now sums in a fixed order and takes its logarithms from the C library
(``cost.step.hot_product``, ``libm_log10``; ``tests/test_cost_step_order.py`` runs scenarios
under other BLAS kernels and SIMD levels and finds the same bits), but the file was recorded
before and other machines' C libraries may differ in an ulp: the tolerance stays. Bit-for-bit
equality of two code paths on one machine is what the fast-forward equivalence tests check.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from servesim.metrics import SLO, summarize
from servesim.run import simulate
from servesim.scenario import build_scenario

LOGNORMAL = {
    "input_len": {"kind": "lognormal", "median": 1000, "sigma": 1.0, "max": 16000},
    "output_len": {"kind": "lognormal", "median": 200, "sigma": 1.0, "max": 4000},
}

SCENARIOS: dict[str, dict] = {
    # Low load: mostly decode spans of a small batch.
    "low_load": {
        "workload": {
            "num_requests": 300,
            "preset": "conversation",
            "arrival": {"kind": "poisson", "rate": 2.0},
        }
    },
    # Saturating: the KV cache fills, preemptions, admissions every step.
    "saturating": {
        "workload": {
            "num_requests": 400,
            **LOGNORMAL,
            "arrival": {"kind": "poisson", "rate": 40.0},
        },
        "scheduler": {"gpu_memory_utilization": 0.4},
    },
    # Chunked prefill on a small budget with preemption, no prefix caching.
    "chunked_preempt": {
        "workload": {
            "num_requests": 200,
            **LOGNORMAL,
            "arrival": {"kind": "poisson", "rate": 20.0},
        },
        "scheduler": {
            "max_num_batched_tokens": 512,
            "gpu_memory_utilization": 0.35,
            "enable_prefix_caching": False,
        },
    },
    # Shared prompt prefixes, two replicas behind the least-outstanding router.
    "prefix_caching": {
        "workload": {
            "num_requests": 300,
            "preset": "conversation",
            "prefix_groups": 4,
            "prefix_len": 1000,
            "arrival": {"kind": "poisson", "rate": 8.0},
        },
        "replicas": 2,
        "router": "least_outstanding",
    },
    # Conversations: follow-up turns with and without think time.
    "multi_turn": {
        "workload": {
            "num_requests": 240,
            "preset": "conversation",
            "multi_turn": {"turns": 4, "think_time_s": {"kind": "exponential", "mean_s": 2.0}},
            "arrival": {"kind": "poisson", "rate": 2.0},
        },
    },
    "multi_turn_no_think": {
        "workload": {
            "num_requests": 160,
            "preset": "conversation",
            "multi_turn": {"turns": 4},
            "arrival": {"kind": "poisson", "rate": 4.0},
        },
        "router": "power_of_two",
        "replicas": 2,
    },
    "closed_loop": {
        "workload": {
            "num_requests": 200,
            "preset": "conversation",
            "arrival": {"kind": "closed", "concurrency": 8, "think_time_s": 0.5},
        },
    },
    # Prefill/decode disaggregation.
    "disaggregated": {
        "workload": {
            "num_requests": 200,
            "preset": "code",
            "arrival": {"kind": "poisson", "rate": 6.0},
        },
        "disaggregate": "1:2",
    },
    # Other policies and engines.
    "sarathi": {
        "workload": {"num_requests": 200, **LOGNORMAL, "arrival": {"kind": "poisson", "rate": 10}},
        "scheduler": {"policy": "sarathi", "max_num_batched_tokens": 1024},
    },
    "sglang_prefill_first": {
        "workload": {
            "num_requests": 200,
            "preset": "sharegpt",
            "arrival": {"kind": "poisson", "rate": 10},
        },
        "engine": "sglang",
    },
    "vllm_v0_multi_step": {
        "workload": {
            "num_requests": 200,
            "preset": "conversation",
            "arrival": {"kind": "poisson", "rate": 5},
        },
        "engine": "vllm-v0",
        "num_scheduler_steps": 8,
        # (a 32,000-token window keeps vLLM V0's long-context chunked prefill off, and the
        # budget is pinned: this scenario pins multi-step rounds)
        "max_model_len": 32000,
        "scheduler": {"max_num_batched_tokens": 8192},
    },
    "speculative": {
        "workload": {
            "num_requests": 150,
            "preset": "conversation",
            "arrival": {"kind": "poisson", "rate": 5},
        },
        "speculative": {"method": "ngram", "num_speculative_tokens": 3},
    },
    "kv_offload": {
        "workload": {
            "num_requests": 200,
            "prefix_groups": 20,
            "prefix_len": 2000,
            "input_len": 500,
            "output_len": 100,
            "arrival": {"kind": "poisson", "rate": 30.0},
        },
        "scheduler": {"gpu_memory_utilization": 0.3},
        "kv_offload": True,
        "cpu_kv_cache_gib": 4.0,
    },
}


QUANTILES = np.linspace(0.0, 1.0, 21)
RTOL = 1e-9
"""Float figures must agree to 1e-9 relative: a last-bit difference in a step (the C library
of another machine, the recording's BLAS products) reaches an inter-token gap — a difference of
two step ends — in its ~12th digit. Any change of behaviour moves a sum or a quantile far more
than that."""


def _float_profile(x: np.ndarray) -> list[float]:
    """Count, sum, sum of squares and 21 quantiles of a float column (or of every column)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        return [0.0]
    return [float(x.size), float(np.sum(x)), float(np.sum(x * x))] + [
        float(q) for q in np.quantile(x, QUANTILES)
    ]


def _int_digest(x: np.ndarray) -> str:
    h = hashlib.sha256()
    a = np.ascontiguousarray(np.asarray(x, dtype=np.int64))
    h.update(str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def _columns(cols: dict[str, np.ndarray]) -> dict:
    """Integer columns exactly (a digest), float columns by their profile."""
    out: dict = {}
    for name in sorted(cols):
        a = np.asarray(cols[name])
        out[name] = _int_digest(a) if a.dtype.kind in "iub" else _float_profile(a)
    return out


def figures(name: str, compiled: str = "off") -> dict:
    """One scenario's outputs, reduced to what the golden file keeps (``compiled``: the
    scenario's step pricing, the reference path by default)."""
    result = simulate(build_scenario({**SCENARIOS[name], "compiled": compiled}))
    rec = result.records
    values, weights = rec.itl_pairs()
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order].astype(np.float64))
    # (the multiset of gaps: total weight, weighted sum, and its weighted quantiles)
    picks = np.searchsorted(cum, QUANTILES[1:-1] * cum[-1]) if len(cum) else []
    # (math.fsum, not np.dot: BLAS's dot sums in an order its CPU kernel picks)
    itl = [float(cum[-1]) if len(cum) else 0.0, math.fsum(values * weights.astype(np.float64))]
    ordered = values[order]
    itl += [float(ordered[i]) for i in picks]
    summary = summarize(rec.request_columns(), values, weights, SLO(300.0, 40.0, 20_000.0))
    return {
        "requests": _columns(rec.request_columns()),
        "steps": _columns(rec.step_columns()),
        "features": _float_profile(rec.step_features()),
        "itl": itl,
        # The engine's metrics (run.py adds the cost model's and the fleet's around them).
        "summary": {k: v for k, v in sorted(summary.items()) if isinstance(v, (int, float))},
    }


def _assert_close(got, want, where: str) -> None:
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for k in want:
            _assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, str) or isinstance(want, bool) or want is None:
        assert got == want, where
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), where
    else:
        assert got == pytest.approx(want, rel=RTOL, abs=1e-12), where


GOLDEN_FILE = Path(__file__).with_name("engine_golden.json")


@functools.cache
def _golden() -> dict:
    return json.loads(GOLDEN_FILE.read_text())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_outputs_match_the_recorded_figures(name):
    _assert_close(figures(name), _golden()[name], name)


if __name__ == "__main__":
    GOLDEN_FILE.write_text(json.dumps({n: figures(n) for n in SCENARIOS}, indent=0) + "\n")
    print(f"wrote {GOLDEN_FILE}")
