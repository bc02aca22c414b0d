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
        "requests": "9d9054f124a5dd95",
        "steps": "2323172dfb00d1ee",
        "features": "a59455d5d5498017",
        "itl": "3121027df64990c9",
        "summary": "54ff9d938a8f3b7e",
    },
    "saturating": {
        "requests": "6f1f0f254d43c2c6",
        "steps": "9a22e2e64c75c2aa",
        "features": "14b773399796e751",
        "itl": "15191428aea9a530",
        "summary": "420a7df9501821f3",
    },
    "chunked_preempt": {
        "requests": "29e1c4e3983930d3",
        "steps": "7c4d9af1639ba1d0",
        "features": "50b40fbc5b83832a",
        "itl": "0d7444870e3e1542",
        "summary": "3e2c0b103df09058",
    },
    "prefix_caching": {
        "requests": "26abfaacef6135e1",
        "steps": "561800af15a29549",
        "features": "d12aa08fdd2818fc",
        "itl": "1b7a4fbdf219d60a",
        "summary": "2e4ac5e2581c350e",
    },
    "multi_turn": {
        "requests": "aed5f8335f291f5c",
        "steps": "d629fc1dbdda8015",
        "features": "7d3ecc53417834ce",
        "itl": "71ced2c2ddab0b98",
        "summary": "830a889bf9c48d7a",
    },
    "multi_turn_no_think": {
        "requests": "8e7f789d12c3c2f5",
        "steps": "ef68c33d955a2870",
        "features": "01db63f83d65981e",
        "itl": "d5ccb9668d0c8345",
        "summary": "4bd2dfc986bd8d43",
    },
    "closed_loop": {
        "requests": "d8050ae9f80cf5ff",
        "steps": "9f0ff79d3ed6c42d",
        "features": "af9f79d71b7aeee7",
        "itl": "8d30d05c43c78347",
        "summary": "c187c2c867e4e85f",
    },
    "disaggregated": {
        "requests": "edb7e1dd1b06d11a",
        "steps": "57eff339f384ab9d",
        "features": "e4593537e3f9a902",
        "itl": "873b286968a238d6",
        "summary": "0e1dafb114c1fad4",
    },
    "sarathi": {
        "requests": "7fd5e6d0f92cda23",
        "steps": "df0a7804a908224d",
        "features": "dcaf9fd18e733dfe",
        "itl": "c65aca7fb0e35ab6",
        "summary": "d842c5792adbdb0f",
    },
    "sglang_prefill_first": {
        "requests": "072e3720fb2f3e44",
        "steps": "708b177e7f418b53",
        "features": "3fb2bcf605da9df4",
        "itl": "5fd80e8d13805477",
        "summary": "a3cbce183515c1cb",
    },
    "vllm_v0_multi_step": {
        "requests": "039325c7f3c15408",
        "steps": "db83f2f13b96f884",
        "features": "2fa94d27fb847803",
        "itl": "e12f04130889df80",
        "summary": "22c2120a6ce1853c",
    },
    "speculative": {
        "requests": "b9e1c63d7811cbc9",
        "steps": "3e706b90275f8cd9",
        "features": "3c31faf9a83ca347",
        "itl": "a5ee8bc04279f368",
        "summary": "e12fc3997f972d04",
    },
    "kv_offload": {
        "requests": "745ee708052b7e9a",
        "steps": "06451e521708ee7d",
        "features": "d4f8cef2e7bb332e",
        "itl": "fde576a1ca20ef28",
        "summary": "d1fe5712266a620c",
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
