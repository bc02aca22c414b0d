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
        "requests": "f42babf284b5f2dc",
        "steps": "1943f0298fc21c9c",
        "features": "cdcd3828d6b2ca8a",
        "itl": "06d41ce85971597c",
        "summary": "623270aa99c215da",
    },
    "saturating": {
        "requests": "689f32684257423d",
        "steps": "16d7188c06825b89",
        "features": "82eae8afa5a55d80",
        "itl": "1a9c4b784e92b309",
        "summary": "54c8bc6a87df3e0b",
    },
    "chunked_preempt": {
        "requests": "cdf1874ce16cfc19",
        "steps": "041196e6e1a7c706",
        "features": "986f8c4f2e9ab178",
        "itl": "650ad59bfe35f51d",
        "summary": "86bd5814d85a7875",
    },
    "prefix_caching": {
        "requests": "a8e56e4e049a3625",
        "steps": "594ee81f212fd502",
        "features": "7b91be700dd51897",
        "itl": "e080d94c5f307a8e",
        "summary": "da3ef241536d71be",
    },
    "multi_turn": {
        "requests": "a4862269bb1c53cb",
        "steps": "2e879f4d9f7f0e88",
        "features": "82c883c46cf2648a",
        "itl": "0ddc910384b856da",
        "summary": "b69a381d79bd710f",
    },
    "multi_turn_no_think": {
        "requests": "b132eee2a2fbe007",
        "steps": "f1a090afed28f547",
        "features": "61158444093801da",
        "itl": "2aeee4dacf7913a3",
        "summary": "da97d178039f8242",
    },
    "closed_loop": {
        "requests": "03bf3573cfafbd8e",
        "steps": "d77cfc8bc4498bba",
        "features": "2af3a55abe3b8880",
        "itl": "b52947f772735e29",
        "summary": "427758823af19b3a",
    },
    "disaggregated": {
        "requests": "35217bf2c3309d1d",
        "steps": "ff39740a9c7dc140",
        "features": "32c6890a385e2a28",
        "itl": "f2f81eaf8c2b1a5d",
        "summary": "dc3def7d10bc74ea",
    },
    "sarathi": {
        "requests": "9f81109f99734202",
        "steps": "c36e787e572570c8",
        "features": "a1ca781b0967dd5b",
        "itl": "7818c81afb31ac7c",
        "summary": "fe754c8732114b72",
    },
    "sglang_prefill_first": {
        "requests": "a24a4c9dbd948af7",
        "steps": "a17cea13208d52f1",
        "features": "3c2913471b926ed7",
        "itl": "1ee437f3a2c3e4bb",
        "summary": "3f57f555cff83366",
    },
    "vllm_v0_multi_step": {
        "requests": "6e6e99c2726e7ef6",
        "steps": "ff3dfc92c36dc04c",
        "features": "e4d2898f43f6e3f6",
        "itl": "44dedd30aa51c6af",
        "summary": "7cc9e74d3a8d091f",
    },
    "speculative": {
        "requests": "37b004d6ec1eb873",
        "steps": "d9a2298901b58f59",
        "features": "551288a379798d67",
        "itl": "103f40117a881111",
        "summary": "52567a2f9ad29351",
    },
    "kv_offload": {
        "requests": "c6c54fd1b898a6ff",
        "steps": "b7e816c7aa956e3e",
        "features": "12de14ed86a768be",
        "itl": "1c76aa8209938435",
        "summary": "6a70f78abb2edb43",
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
