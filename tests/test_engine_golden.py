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
        "requests": "90353e72e9522af1",
        "steps": "b8cb429acbe35581",
        "features": "d1920b675fb1ee74",
        "itl": "c14df5bd4b7a16a7",
        "summary": "29e1e12c9c5ad4b4",
    },
    "saturating": {
        "requests": "ebb60dac28ec551c",
        "steps": "fdc0b732349d3a01",
        "features": "86b4ef49db2b6717",
        "itl": "30e883edae1d8e81",
        "summary": "a80c81f4ff9757a2",
    },
    "chunked_preempt": {
        "requests": "b18c5942ffd167a5",
        "steps": "261e3b6b690f75c5",
        "features": "65703a002028a2ce",
        "itl": "982f1ce4b10b9c00",
        "summary": "5b1256c2a61e8543",
    },
    "prefix_caching": {
        "requests": "a5b5206649e63562",
        "steps": "618e8beab29eb565",
        "features": "f6c7f79400258538",
        "itl": "0e3ddf001206cbc9",
        "summary": "32d6f23450e02fb5",
    },
    "multi_turn": {
        "requests": "4bb3d15bba902624",
        "steps": "a807571f23d68ece",
        "features": "b7d6bfe3684705e5",
        "itl": "88458cf06ed2fe9f",
        "summary": "a6d9df392cc2b39e",
    },
    "multi_turn_no_think": {
        "requests": "07e7f47713612255",
        "steps": "bc118035bb233abf",
        "features": "6f7b27d16b9602b6",
        "itl": "179d8011f3f8ef70",
        "summary": "9417d482472bb5ab",
    },
    "closed_loop": {
        "requests": "63c3e26526df5312",
        "steps": "2ed5bc0895ae329f",
        "features": "3fd972d79b3175b7",
        "itl": "662336dbd7f605bb",
        "summary": "c3bd2b945b46352a",
    },
    "disaggregated": {
        "requests": "8f236bc9209188f1",
        "steps": "a1393c6d0629029b",
        "features": "eb46a57668e04cd4",
        "itl": "a54746dfc9d1e559",
        "summary": "3cd90d1210ae97c7",
    },
    "sarathi": {
        "requests": "cf416091032e5f55",
        "steps": "86a73575a0829829",
        "features": "7ccbfb277277f982",
        "itl": "27a65989575b4909",
        "summary": "f66f7368c9e16b5e",
    },
    "sglang_prefill_first": {
        "requests": "fd96a45462407b8b",
        "steps": "67ba08c477179855",
        "features": "33359b6867d74719",
        "itl": "8293eda9af0d0d24",
        "summary": "ffb4d441b9a8c71c",
    },
    "vllm_v0_multi_step": {
        "requests": "2ef7a250024783c3",
        "steps": "93cf06cf4d5e9ba4",
        "features": "3dbdba622e7bf426",
        "itl": "6f649ccf0d6c7258",
        "summary": "ba1c79c46be68c94",
    },
    "speculative": {
        "requests": "0992f29cfbb61c57",
        "steps": "d224db91308eeaa0",
        "features": "b73efa18ee2ae9b3",
        "itl": "cb4c69dd2c5b843b",
        "summary": "26449dcf431f4177",
    },
    "kv_offload": {
        "requests": "4fbecb056ae43503",
        "steps": "15b409176d7197fa",
        "features": "3ffabbe48c4eb94b",
        "itl": "6c6a51d9bb8522a1",
        "summary": "cdd44af5a989f3fc",
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
