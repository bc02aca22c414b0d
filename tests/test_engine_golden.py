"""Golden outputs: a few whole scenarios must keep giving exactly the records they gave.

The digests below were recorded from the engine before its speed work (issue 19); any change
to a request or step record, a step's cost-model features, the multiset of inter-token gaps or
a summary statistic fails here. A deliberate change of behaviour re-records them:

    python tests/test_engine_golden.py    # prints the table to paste below

The summary digest covers the statistics :func:`servesim.metrics.summarize` computes from the
records (run.py adds the cost model's and the fleet's figures around them; those come from the
records and features compared here).

NOTE: inter-token gaps are compared as a multiset (value → total weight), since how the engine
folds equal gaps into (value, weight) pairs is its own business; the summary statistics computed
from them are compared exactly.
"""

from __future__ import annotations

import hashlib
import math

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


def _digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _summary_digest(summary: dict) -> str:
    def canon(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else v.hex()
        return v

    return hashlib.sha256(
        repr({k: canon(v) for k, v in sorted(summary.items())}).encode()
    ).hexdigest()[:16]


def digests(name: str) -> dict[str, str]:
    """Digests of one scenario's outputs."""
    result = simulate(build_scenario(SCENARIOS[name]))
    rec = result.records
    reqs = rec.request_columns()
    steps = rec.step_columns()
    values, weights = rec.itl_pairs()
    uniq, inverse = np.unique(values, return_inverse=True)
    pooled = np.bincount(inverse, weights=weights.astype(np.float64), minlength=len(uniq))
    return {
        "requests": _digest([reqs[c] for c in sorted(reqs)]),
        "steps": _digest([steps[c] for c in sorted(steps)]),
        "features": _digest([rec.step_features()]),
        "itl": _digest([uniq, pooled.astype(np.int64)]),
        # The engine's metrics (run.py adds the cost model's and the fleet's around them).
        "summary": _summary_digest(summarize(reqs, values, weights, SLO(300.0, 40.0, 20_000.0))),
    }


GOLDEN: dict[str, dict[str, str]] = {
    "low_load": {
        "requests": "b5c3ce8121bf41d4",
        "steps": "38391f890761426e",
        "features": "34be9f5491f63c21",
        "itl": "cfa79fbab3886c79",
        "summary": "945a6c9842879086",
    },
    "saturating": {
        "requests": "2b9b5e0120a61205",
        "steps": "a7d8cbe7202755ae",
        "features": "048a9790892d3ceb",
        "itl": "87096cde9f08ea20",
        "summary": "35d81b72d139245b",
    },
    "chunked_preempt": {
        "requests": "6cd2a45f81fb1d30",
        "steps": "715347a2e75bf5ca",
        "features": "3a958d565d2e771c",
        "itl": "ff01da3ad37eb18d",
        "summary": "85a113fa0a300885",
    },
    "prefix_caching": {
        "requests": "31204de6e3a999c6",
        "steps": "5b17714a38ed2b77",
        "features": "e6a963cadc4064bc",
        "itl": "f7739af733057d45",
        "summary": "0a06dcfe4cc49b42",
    },
    "multi_turn": {
        "requests": "87d77304fb75cea2",
        "steps": "66d2f7631830d1b9",
        "features": "0214a42467f608d1",
        "itl": "1d452dea4b74bc6a",
        "summary": "9941a4696752fade",
    },
    "multi_turn_no_think": {
        "requests": "ec6ee74706bdd6d6",
        "steps": "b4cbc917ade89e4c",
        "features": "51cc151d209e6c84",
        "itl": "757236173755d64a",
        "summary": "3b3b630858320d03",
    },
    "closed_loop": {
        "requests": "e489c4dd1f931a15",
        "steps": "992f7bd8e7b6850d",
        "features": "39389cfd6e15b400",
        "itl": "1c49b7e6285f51ed",
        "summary": "03f3c4982051ec22",
    },
    "disaggregated": {
        "requests": "adc8da4903014313",
        "steps": "ca719fcde8a27a9d",
        "features": "53bd21b0c3bf4570",
        "itl": "8de16c547f5c97fe",
        "summary": "7703a37a8b605055",
    },
    "sarathi": {
        "requests": "d5cbf74b862d801e",
        "steps": "83ef3b1ca1cde0a0",
        "features": "a9c38f1f9df458bc",
        "itl": "bf18298834daa83d",
        "summary": "34603b7969cd9eb8",
    },
    "sglang_prefill_first": {
        "requests": "a98d75790a97b870",
        "steps": "24a96730da3648df",
        "features": "03330b2b2215b61f",
        "itl": "6be609b2f87e9b3a",
        "summary": "ba2a72f670a990f3",
    },
    "vllm_v0_multi_step": {
        "requests": "0ca450be6e3cbcfa",
        "steps": "515c8f135941464c",
        "features": "3596a265fea44686",
        "itl": "a66220949f6df2a9",
        "summary": "3d2e4c382af61201",
    },
    "speculative": {
        "requests": "593505778ec41f3f",
        "steps": "41617f21bb3b5b4b",
        "features": "186068f719dc1f18",
        "itl": "f8c5064f76ab7c59",
        "summary": "126f8d6a25c01022",
    },
    "kv_offload": {
        "requests": "b020592e11e203c5",
        "steps": "350521cc452ab74e",
        "features": "240d8e8175d09bff",
        "itl": "febdbaeb76557cbd",
        "summary": "303ca7641e72a21b",
    },
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_outputs_match_the_recorded_digests(name):
    assert digests(name) == GOLDEN[name]


if __name__ == "__main__":
    print("GOLDEN: dict[str, dict[str, str]] = {")
    for scenario in SCENARIOS:
        print(f"    {scenario!r}: {digests(scenario)!r},")
    print("}")
