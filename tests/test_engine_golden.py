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
        "requests": "c6653013a7f5f449",
        "steps": "097064c20c0fefd4",
        "features": "882a5b74d6957032",
        "itl": "5cb05b5b896e3706",
        "summary": "2609de18c612402e",
    },
    "chunked_preempt": {
        "requests": "d1df6f2c54550f67",
        "steps": "b31fac79a3e3bad3",
        "features": "d0516503f140693d",
        "itl": "187ee4aad05b3825",
        "summary": "c570b0cfe0bba64f",
    },
    "prefix_caching": {
        "requests": "61f58ccf4dc61776",
        "steps": "2e696ad5579d6cdd",
        "features": "2a3fd130f4aed297",
        "itl": "0ebf5031bc8aaf7c",
        "summary": "781f3248b3c95ca0",
    },
    "multi_turn": {
        "requests": "41bd04ba7b7b44e1",
        "steps": "6fbf0eef283c08cd",
        "features": "1a16f7a414e95798",
        "itl": "f6dee702bc5e145a",
        "summary": "0bfd351225948f7d",
    },
    "multi_turn_no_think": {
        "requests": "321f948324ff5d69",
        "steps": "d59f47dcc6f2418e",
        "features": "68568118a16d0543",
        "itl": "2844fded437c8738",
        "summary": "aed1e4a237076107",
    },
    "closed_loop": {
        "requests": "fac61d2ad215dac5",
        "steps": "6754178d37fff65d",
        "features": "c1dd70877aa50649",
        "itl": "172e1b3742e45799",
        "summary": "39497d1097e820b3",
    },
    "disaggregated": {
        "requests": "59f959875da27153",
        "steps": "d59202da9892b52c",
        "features": "f972d30193ccd764",
        "itl": "f8675abdcb197aa8",
        "summary": "a1c0a8e5dd0f5f02",
    },
    "sarathi": {
        "requests": "1bee6996e7f4277f",
        "steps": "794ce3f4d979d18b",
        "features": "7d3d37acc1f64c0f",
        "itl": "912103129b4febbe",
        "summary": "c0748c3be93b2429",
    },
    "sglang_prefill_first": {
        "requests": "608ab6ba8e95fac3",
        "steps": "1cce2f19be417dac",
        "features": "cb5de11dd4119ca9",
        "itl": "c201ceab7552f1d4",
        "summary": "7009a5108fa83e4a",
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
        "requests": "a34ca0586159551b",
        "steps": "d74bb70c9116257f",
        "features": "e3b4d28411db3e59",
        "itl": "8975d289b7ad3ebc",
        "summary": "d29dff913088b5aa",
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
