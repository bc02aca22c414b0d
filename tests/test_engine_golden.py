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
        "requests": "bd3fe63459165c66",
        "steps": "e597699849c5f9e9",
        "features": "affae25ce1df7467",
        "itl": "7cc3b0a13af6366c",
        "summary": "e6719c33aedaec29",
    },
    "saturating": {
        "requests": "ae6e7c89d5dc8330",
        "steps": "a443cdf6a8459152",
        "features": "3a2eefd09ca6b731",
        "itl": "dda9d972ff8f9979",
        "summary": "b8f7bc8b14dc2dee",
    },
    "chunked_preempt": {
        "requests": "0edafd826e40f2d7",
        "steps": "f777937e8d21859b",
        "features": "955a5d899193a7f3",
        "itl": "11a525b2c1b1024f",
        "summary": "ea92bc1e723c252c",
    },
    "prefix_caching": {
        "requests": "1635a687473eefd5",
        "steps": "2ac0952f566105ec",
        "features": "f54d9aa7ce9ef816",
        "itl": "a60fe63a83a1151f",
        "summary": "f21ffe62738e72cc",
    },
    "multi_turn": {
        "requests": "804bab8e21c820bc",
        "steps": "0db6bb7331b4eb71",
        "features": "fc47b4deee7d2e8f",
        "itl": "93026fa04d942050",
        "summary": "ea53e65d7a219ab2",
    },
    "multi_turn_no_think": {
        "requests": "a04c49fab9b9fdae",
        "steps": "6f7d7d8cee11631e",
        "features": "53b46f0dc89b5014",
        "itl": "89cb0cc1a6d903e6",
        "summary": "a8f13663407d8776",
    },
    "closed_loop": {
        "requests": "08e7587593d3909f",
        "steps": "01fdbdc889f7605a",
        "features": "11e6eb6c84171d24",
        "itl": "4ad2d2679a715982",
        "summary": "2c901a23461a58e7",
    },
    "disaggregated": {
        "requests": "93f0bbe8fc1794fc",
        "steps": "e099b72cb6b17136",
        "features": "a5e2db73ac95f4d5",
        "itl": "5a99b96a94597417",
        "summary": "52231c3c82c34654",
    },
    "sarathi": {
        "requests": "552ccef016d217c1",
        "steps": "db99d6fb20868b5d",
        "features": "846bfe8cf35262ef",
        "itl": "f0d34c6b905b73a2",
        "summary": "0a5cee796426e2ac",
    },
    "sglang_prefill_first": {
        "requests": "a9cc3c12127b05ba",
        "steps": "8c831cfd7a6ac07b",
        "features": "0135dc0a8b6db49d",
        "itl": "e3bc7562d5e1e24e",
        "summary": "547fab2bb4c55cb8",
    },
    "vllm_v0_multi_step": {
        "requests": "1854dd828bad9bce",
        "steps": "486e7f03903ea9a0",
        "features": "6506ab9a163e8d96",
        "itl": "fd8aa28520e62280",
        "summary": "a967534130b1c684",
    },
    "speculative": {
        "requests": "ec44d4ba95c4ad78",
        "steps": "5d33c0c893a269c0",
        "features": "9cd17211445a5fec",
        "itl": "4955cf8cdae364ae",
        "summary": "9c4f2b21dfebd8a6",
    },
    "kv_offload": {
        "requests": "8ec5683445c29b5e",
        "steps": "626f34d783e6fe8c",
        "features": "94416656a3acfe06",
        "itl": "8e065cfd382c68ed",
        "summary": "4516168a6ea0527f",
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
