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
        "requests": "cb341211f7ce4950",
        "steps": "bfaffe58820ff67c",
        "features": "490a2350b9948df1",
        "itl": "a8ff141aefaa4e5a",
        "summary": "842a470f93d15c7f",
    },
    "saturating": {
        "requests": "8d0334ae98452aeb",
        "steps": "8b22e662d83468b7",
        "features": "5d65a4e12c0ca6d6",
        "itl": "6f1844b980e7e071",
        "summary": "d2348e926da08bb1",
    },
    "chunked_preempt": {
        "requests": "790e4d56467ea472",
        "steps": "699bd177a60a9d8c",
        "features": "5b0cd98647f28c4c",
        "itl": "2e7bedd6454359df",
        "summary": "4a49f3696a979216",
    },
    "prefix_caching": {
        "requests": "44a773955fa4617b",
        "steps": "f9641c38a8f27736",
        "features": "26aae0060600bac2",
        "itl": "32977e020d4423ce",
        "summary": "3ae755c6f4e1a286",
    },
    "multi_turn": {
        "requests": "d8e0004c30f2f40c",
        "steps": "402c5aaa9ed00fac",
        "features": "0dd54e4a6e82ca7a",
        "itl": "06f2034423f7fff8",
        "summary": "466b9bc6911e50a0",
    },
    "multi_turn_no_think": {
        "requests": "14e37ee6033f0013",
        "steps": "89c06cfc3e79b529",
        "features": "a470b64bc661607e",
        "itl": "29e50bd73ea1ad89",
        "summary": "bca52d2779031d85",
    },
    "closed_loop": {
        "requests": "f5c6f9d0a1203235",
        "steps": "ca876e36f30a5cb5",
        "features": "85888d5f842875b6",
        "itl": "446b34e01f35adda",
        "summary": "b7312271e9ec020c",
    },
    "disaggregated": {
        "requests": "77462eeccd1f8bd3",
        "steps": "3663f371f2508275",
        "features": "9a7e10aeceda6dc7",
        "itl": "85bbc42858c04b3a",
        "summary": "3aca49e22a8d57a7",
    },
    "sarathi": {
        "requests": "fa2311e4275e49c3",
        "steps": "e11e563f9d612b38",
        "features": "0a8c3cb0482f7dfd",
        "itl": "65de76ed3bd2b02d",
        "summary": "13153cafb9160084",
    },
    "sglang_prefill_first": {
        "requests": "986628153df72b14",
        "steps": "d65f0567ddb0dd7b",
        "features": "d9c6458ce40f2a17",
        "itl": "349b9d685da52883",
        "summary": "d15566cbf84370c3",
    },
    "vllm_v0_multi_step": {
        "requests": "e5cb46cf5554e965",
        "steps": "f236ce3e9882803b",
        "features": "c2ac6e7f4862b59e",
        "itl": "1de5d61076f2e934",
        "summary": "2f3df5b624b30ab4",
    },
    "speculative": {
        "requests": "ab67261208c63676",
        "steps": "cad9bde4d08c653b",
        "features": "fefcc75f483ebd63",
        "itl": "e390d6396581a762",
        "summary": "83aec9ae7e242ab0",
    },
    "kv_offload": {
        "requests": "08e1451dac1d71dc",
        "steps": "e71fd862ac87e7b3",
        "features": "dc662f91f1ba37de",
        "itl": "2f8226ccd9424945",
        "summary": "3e6b8df63c7ca91b",
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
