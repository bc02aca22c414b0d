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
        "requests": "d2f3d4abba41d1c1",
        "steps": "86d5f408d8bf82dd",
        "features": "7e636b7858c81f7b",
        "itl": "c52bd258a89538a6",
        "summary": "5df480edbb1cae7c",
    },
    "saturating": {
        "requests": "83880efd21f69ac6",
        "steps": "89a8585e3b26d31f",
        "features": "1984095f95198824",
        "itl": "48bb1d1a5f96616e",
        "summary": "2ffc1ca0c371582e",
    },
    "chunked_preempt": {
        "requests": "7be595f9e2b782df",
        "steps": "fe89b444db877c94",
        "features": "6d9dbe9fcecfe587",
        "itl": "a065ae7f33fb8ee5",
        "summary": "438139e41697fbb3",
    },
    "prefix_caching": {
        "requests": "05e3b1dd4bd9cb10",
        "steps": "2b30a6684654c2c5",
        "features": "a86e28f5d01b1326",
        "itl": "a8cbbfee09eb34b3",
        "summary": "ecbe775b866b9e4d",
    },
    "multi_turn": {
        "requests": "e2bc640286d53104",
        "steps": "498d33c9561d7733",
        "features": "40ef095aa7845bf1",
        "itl": "0f6670678b9c681e",
        "summary": "f714fa21f9f439e9",
    },
    "multi_turn_no_think": {
        "requests": "05b8a919f580fcf8",
        "steps": "ee5e716c9240a73d",
        "features": "14f033d697d24a9e",
        "itl": "ff1da629d4976c99",
        "summary": "58381abbc24063e6",
    },
    "closed_loop": {
        "requests": "46973be64d68620e",
        "steps": "3f528e79c6efc04d",
        "features": "25bc4f76c90c8024",
        "itl": "ed57312a3e9a59c1",
        "summary": "1ef41ab61822bbee",
    },
    "disaggregated": {
        "requests": "7fe6d1e6cdb989e9",
        "steps": "dbd394dce14b0eac",
        "features": "685e53f99ad1beb5",
        "itl": "ba18f5a9b60e27da",
        "summary": "057cdd86a0614c3e",
    },
    "sarathi": {
        "requests": "a8c61311063e812e",
        "steps": "ecc9a10eb87cf234",
        "features": "a564886c97652348",
        "itl": "511bca1f7af9c42d",
        "summary": "56193fa33097cb09",
    },
    "sglang_prefill_first": {
        "requests": "7eff9a10e9468cd3",
        "steps": "7d862af86e161ff2",
        "features": "dc51b1d8faf2f321",
        "itl": "f1f93eac8db7fba9",
        "summary": "6224738a17216484",
    },
    "vllm_v0_multi_step": {
        "requests": "282b31906e31c382",
        "steps": "044fb743af74651e",
        "features": "05d021c5161d858d",
        "itl": "392998e81d20d7ac",
        "summary": "b8446920cac8f546",
    },
    "speculative": {
        "requests": "a1b03c242656ad0d",
        "steps": "c9f82d5f8e8ff262",
        "features": "ddfe1a035510794b",
        "itl": "82e3ef959ae5a92c",
        "summary": "eb8a8f4f8df213f7",
    },
    "kv_offload": {
        "requests": "cc496c8755f1bb27",
        "steps": "60f3d8dd671e315d",
        "features": "0d7ceb4506a29569",
        "itl": "cd91d1a3e1c13339",
        "summary": "675667bca7763074",
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
