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
        "requests": "aa72e3824add4ba8",
        "steps": "373321466008b8b6",
        "features": "265d3a2ac37221fc",
        "itl": "8d18dbae23124058",
        "summary": "db4806c0a5752630",
    },
    "saturating": {
        "requests": "32ecfc57b82ce401",
        "steps": "8d918f44729f3feb",
        "features": "44d3ddca0ae1dd6a",
        "itl": "ff539f26007dc2dd",
        "summary": "dfe6625b5cb742e7",
    },
    "chunked_preempt": {
        "requests": "5bb53502601c3b46",
        "steps": "4e522ada83581315",
        "features": "65703a002028a2ce",
        "itl": "42c02e2ca45b808d",
        "summary": "718b437304ed3115",
    },
    "prefix_caching": {
        "requests": "b9ba3fd0f542f664",
        "steps": "59945db1a2ae8897",
        "features": "d762bf39f013cca9",
        "itl": "c5178bb77c99eb5d",
        "summary": "59256f0853f728c1",
    },
    "multi_turn": {
        "requests": "fee53f138a919ba5",
        "steps": "5af69590b169b855",
        "features": "f293c1807c7610ba",
        "itl": "73499009be6a07c3",
        "summary": "2ce1ac7f2c25fad0",
    },
    "multi_turn_no_think": {
        "requests": "73dc862765abb6f8",
        "steps": "4a5f875c34cb3769",
        "features": "67c09ba335673445",
        "itl": "67b4460a677a45e3",
        "summary": "ee60c27527e999eb",
    },
    "closed_loop": {
        "requests": "9a3f11ac3e471939",
        "steps": "a05c1ce990a9db3a",
        "features": "76dc0a5239e33c17",
        "itl": "52bafdef624222d8",
        "summary": "a3fe3335feab9a07",
    },
    "disaggregated": {
        "requests": "867738b0a4687f82",
        "steps": "50f3286fc8eae0ce",
        "features": "e3f3875d7d6b9a2a",
        "itl": "06a03a78e9274735",
        "summary": "3c39197cd271ea6b",
    },
    "sarathi": {
        "requests": "6a1b2089b27aaa23",
        "steps": "2923522ef02413c9",
        "features": "787764341ead52e1",
        "itl": "2dfaf857d44b4228",
        "summary": "cdca68e4bb489cef",
    },
    "sglang_prefill_first": {
        "requests": "fd96a45462407b8b",
        "steps": "67ba08c477179855",
        "features": "33359b6867d74719",
        "itl": "8293eda9af0d0d24",
        "summary": "ffb4d441b9a8c71c",
    },
    "vllm_v0_multi_step": {
        "requests": "fb8fa679dd60c68f",
        "steps": "6e9405512deaa4a5",
        "features": "f94e4469607c75d4",
        "itl": "571f02712e5c5d2b",
        "summary": "a7902c9c1d6fd892",
    },
    "speculative": {
        "requests": "c587a7bdea77e2ab",
        "steps": "0a9971b5cf86345d",
        "features": "b4feeb7d58173404",
        "itl": "1f46d383d085bac1",
        "summary": "42fd0d35d9ecb7e8",
    },
    "kv_offload": {
        "requests": "c4277710fdd8bc42",
        "steps": "c675c7e1e23aada8",
        "features": "312619c0c71d0982",
        "itl": "4713a1f13c01f6ff",
        "summary": "05da4eb98618ac05",
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
