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
        "requests": "ea712aece136c55e",
        "steps": "1d0c1dbcbc16948a",
        "features": "7a62b6a80b236af2",
        "itl": "77f6ed466462da4a",
        "summary": "6a24df02567b3539",
    },
    "saturating": {
        "requests": "2c643442b3813b23",
        "steps": "657e4bdeb0472bd6",
        "features": "f783b93fb9495701",
        "itl": "dd12c86f09ff4647",
        "summary": "9dde462ee22abec3",
    },
    "chunked_preempt": {
        "requests": "12225eaefa304286",
        "steps": "183e8115fb8eedf7",
        "features": "41b9ae7b37bf09d1",
        "itl": "81684252442f22c4",
        "summary": "89c6428b20c85d1a",
    },
    "prefix_caching": {
        "requests": "61f58ccf4dc61776",
        "steps": "2e696ad5579d6cdd",
        "features": "2a3fd130f4aed297",
        "itl": "0ebf5031bc8aaf7c",
        "summary": "781f3248b3c95ca0",
    },
    "multi_turn": {
        "requests": "4d9146dfd9f20e78",
        "steps": "e459694f8dda966d",
        "features": "bc0ae870e09cf14d",
        "itl": "e94df3a1c7f61f98",
        "summary": "5aa4af75546025bb",
    },
    "multi_turn_no_think": {
        "requests": "321f948324ff5d69",
        "steps": "d59f47dcc6f2418e",
        "features": "68568118a16d0543",
        "itl": "2844fded437c8738",
        "summary": "aed1e4a237076107",
    },
    "closed_loop": {
        "requests": "aee79f30b48bfa13",
        "steps": "1c7701a762c4b347",
        "features": "beec8f6a90567888",
        "itl": "26a5571e4c37da65",
        "summary": "b24fcd83432a2fbe",
    },
    "disaggregated": {
        "requests": "59f959875da27153",
        "steps": "d59202da9892b52c",
        "features": "f972d30193ccd764",
        "itl": "f8675abdcb197aa8",
        "summary": "a1c0a8e5dd0f5f02",
    },
    "sarathi": {
        "requests": "561bf2bbce17a667",
        "steps": "abce5915c9974dd6",
        "features": "472fece8a6aa32d4",
        "itl": "1710edc7517d50ca",
        "summary": "b0bd562579c0eb2e",
    },
    "sglang_prefill_first": {
        "requests": "986628153df72b14",
        "steps": "c29a600bc080e7ec",
        "features": "a564c79ca24ae901",
        "itl": "349b9d685da52883",
        "summary": "d15566cbf84370c3",
    },
    "vllm_v0_multi_step": {
        "requests": "c0c4f45cda710033",
        "steps": "801a5f2f4071c555",
        "features": "d11de476ba1d5154",
        "itl": "6c6a831f20d8e5b6",
        "summary": "25b4c2213ab10ee8",
    },
    "speculative": {
        "requests": "5425f4bc71ccbcec",
        "steps": "50b585d97d2ad97b",
        "features": "22e3d2813ac0b8f4",
        "itl": "e6e449a05a4b4ca6",
        "summary": "ec44b5529ac3307e",
    },
    "kv_offload": {
        "requests": "324f6d4743e00b89",
        "steps": "2b96b373f84817f1",
        "features": "aedf57fb1c7c7794",
        "itl": "a7aecb476f1884fe",
        "summary": "faf80dc66c70a300",
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
