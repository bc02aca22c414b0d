"""KV cache size against engines' own start-up logs: servesim's memory plan vs what vLLM printed.

    python bench/fidelity/memory.py [--json]

Each case in ``memory_logs.json`` is one published start-up log (a file committed to a public
repository, cited with its commit, or a log pasted in an issue): the server's launch settings
and the three numbers the engine prints as it sizes its cache, quoted in ``log_lines``:

- the weights on one GPU (vLLM "Model loading took X GiB"; SGLang "Load weight end. ... mem
  usage=X GB");
- the KV cache of one GPU (vLLM "Available KV cache memory: Y GiB"; SGLang "KV Cache is
  allocated. ... K size: A GB, V size: B GB", A + B);
- the tokens the replica's cache holds (vLLM "GPU KV cache size: N tokens"; SGLang "#tokens:
  N").

The script builds each case's scenario (engine ``vllm`` at the logged release, the same model,
GPU, TP and scheduler settings), takes the first instance group's memory plan and prints the
signed error of each number (the KV cache's GiB as a difference: a server that failed to
start logs a budget near or below zero), with the median over the cases. ``generic`` is the
same plan under the rule servesim used before the engines' own (a 1.5 GiB runtime reserve,
+0.5 GiB across GPUs, in the engine's reading of the knob; for vLLM also nvidia-smi's total and
the forward and sampler peaks added; ``servesim.cost.memory.plan_memory``'s ``profiled``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from servesim.cost.memory import GiB, MemoryPlan, default_runtime_reserve, plan_memory
from servesim.fleet import build_fleet, memory_rules
from servesim.scenario import build_scenario, engine_profile_of

CASES = Path(__file__).with_name("memory_logs.json")


def load_cases(path: Path = CASES) -> list[dict[str, Any]]:
    """The published start-up logs (see the module docstring)."""
    return json.loads(path.read_text())


def scenario_of(case: dict[str, Any]) -> dict[str, Any]:
    """The scenario of a case's server: its engine release, model, GPU, TP and settings
    (``gpu_memory_utilization`` is SGLang's ``mem_fraction_static`` for an SGLang case)."""
    scheduler: dict[str, Any] = {"gpu_memory_utilization": case["gpu_memory_utilization"]}
    for knob in ("max_num_batched_tokens", "max_num_seqs"):
        if case.get(knob) is not None:
            scheduler[knob] = case[knob]
    extra = {"sampler": case["sampler"]} if case.get("sampler") is not None else {}
    return {
        **extra,
        "model": case["model"],
        "hardware": case["gpu"],
        "tp": case["tp"],
        "engine": case["engine"],
        "engine_version": case["engine_version"],
        "max_model_len": case["max_model_len"],
        "scheduler": scheduler,
        "workload": {"num_requests": 1},
    }


def plans(case: dict[str, Any]) -> tuple[MemoryPlan, MemoryPlan, MemoryPlan | None]:
    """(servesim's plan, the generic rule's plan, the fleet's own plan) for ``case``.

    The plans are recomputed from the fleet's model, GPU, parallelism, cost parameters,
    scheduler limits and memory rules (:func:`servesim.fleet.memory_rules`) with ``strict``
    off, so a server that failed to start (a negative KV budget in its log) still gets its
    numbers; a case naming its ``sampler`` (a pip install without FlashInfer) sets the
    scenario's ``sampler``. The fleet's own plan (None when the fleet had to be built with a
    pinned cache) is what a simulation of the scenario uses.
    """
    scenario = scenario_of(case)
    pinned = case["logged"]["kv_cache_tokens"] is None
    if pinned:
        scenario["scheduler"]["kv_cache_tokens"] = 1024  # (builds whatever the budget)
    built = build_scenario(scenario)
    fleet = build_fleet(built, np.random.default_rng(0))
    group = fleet.groups[0]
    rules = memory_rules(built, engine_profile_of(built))
    common = {
        "gpu_memory_utilization": case["gpu_memory_utilization"],
        "block_size": fleet.config.block_size,
        "max_num_batched_tokens": fleet.config.max_num_batched_tokens,
        "max_num_seqs": fleet.config.max_num_seqs,
        "strict": False,
    }
    args = (fleet.model, group.hardware, group.parallelism)
    plan = plan_memory(*args, group.params, **common, **rules)
    # The generic rule: the 1.5 GiB runtime reserve (+0.5 GiB across GPUs) in the engine's
    # reading of the knob, no profiled peak (vLLM: the engine-agnostic budget).
    old = dataclasses.replace(
        group.params, runtime_reserve_bytes=default_runtime_reserve(group.parallelism)
    )
    kinds = {k: rules[k] for k in ("kv_of_free", "kv_of_static", "kv_of_total")}
    generic = plan_memory(*args, old, **common, **kinds)
    return plan, generic, None if pinned else group.memory


def compare(case: dict[str, Any]) -> dict[str, Any]:
    """servesim's weights (GiB), KV cache (GiB a GPU) and KV tokens for ``case``, with their
    signed errors against the log (predicted / logged − 1; None where the log has no such
    line), under the engine's rule and the generic one."""
    plan, generic, _ = plans(case)
    logged = case["logged"]

    def error(predicted: float, measured: float | None) -> float | None:
        return None if measured is None else predicted / measured - 1.0

    return {
        "id": case["id"],
        "weights_gib": plan.weights_bytes_per_gpu / GiB,
        "kv_cache_gib": plan.kv_cache_bytes / GiB,
        "kv_cache_tokens": plan.kv_capacity_tokens,
        "weights_error": error(plan.weights_bytes_per_gpu / GiB, logged["weights_gib"]),
        "kv_gib_delta": plan.kv_cache_bytes / GiB - logged["kv_cache_gib"],
        "generic_kv_gib_delta": generic.kv_cache_bytes / GiB - logged["kv_cache_gib"],
        "kv_tokens_error": error(plan.kv_capacity_tokens, logged["kv_cache_tokens"]),
        "generic_kv_tokens_error": error(generic.kv_capacity_tokens, logged["kv_cache_tokens"]),
        "activation_reserve_gib": plan.activation_reserve_bytes / GiB,
        "runtime_reserve_gib": plan.runtime_reserve_bytes / GiB,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median absolute errors over the cases that print each number; the KV cache's GiB as
    an absolute difference (GiB a GPU), since a failed start logs a budget near or below 0."""

    def med(key: str) -> float:
        return statistics.median(abs(r[key]) for r in rows if r[key] is not None)

    tokens = [abs(r["kv_tokens_error"]) for r in rows if r["kv_tokens_error"] is not None]
    return {
        "cases": len(rows),
        "weights_median_abs_error": med("weights_error"),
        "kv_tokens_median_abs_error": med("kv_tokens_error"),
        "kv_tokens_max_abs_error": max(tokens),
        "generic_kv_tokens_median_abs_error": med("generic_kv_tokens_error"),
        "kv_gib_median_abs_delta": med("kv_gib_delta"),
        "generic_kv_gib_median_abs_delta": med("generic_kv_gib_delta"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows and summary as JSON")
    args = parser.parse_args(argv)
    cases = load_cases()
    rows = [compare(c) for c in cases]
    summary = summarize(rows)
    if args.json:
        json.dump({"rows": rows, "summary": summary}, sys.stdout, indent=1)
        print()
        return 0
    by_id = {c["id"]: c for c in cases}
    print(
        f"{'case':52s} {'KV GiB':>7s} {'Δ ours':>8s} {'Δ generic':>9s} "
        f"{'KV tokens':>10s} {'ours':>7s} {'generic':>8s}"
    )
    for r in rows:
        logged = by_id[r["id"]]["logged"]
        gib = logged["kv_cache_gib"]
        if logged["kv_cache_tokens"] is None:
            tokens = f"{'(failed to start)':>27s}"
        else:
            tokens = (
                f"{logged['kv_cache_tokens']:>10,d} {r['kv_tokens_error']:>+7.1%} "
                f"{r['generic_kv_tokens_error']:>+8.1%}"
            )
        print(
            f"{r['id']:52s} {gib:>7.2f} {r['kv_gib_delta']:>+8.2f} "
            f"{r['generic_kv_gib_delta']:>+9.2f} {tokens}"
        )
    print(
        f"{summary['cases']} logs: KV cache size median |error| "
        f"{summary['kv_tokens_median_abs_error']:.1%} (largest "
        f"{summary['kv_tokens_max_abs_error']:.1%}; generic rule "
        f"{summary['generic_kv_tokens_median_abs_error']:.1%}); KV GiB a GPU median "
        f"|difference| {summary['kv_gib_median_abs_delta']:.2f} (generic "
        f"{summary['generic_kv_gib_median_abs_delta']:.2f}); weights median |error| "
        f"{summary['weights_median_abs_error']:.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
