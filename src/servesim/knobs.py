"""The scheduler and KV-cache knobs: their names, defaults and checks, defined once.

Every layer that takes one of these knobs takes its default from here: the scenario's
``SchedulerSpec`` (the boundary), the ``vllm`` engine profile (``servesim.engines``), the
cost model's memory plan (``servesim.cost.memory.plan_memory``) and the engine's
``SchedulerConfig``. They are vLLM's documented engine-argument defaults (8,192 batched tokens,
256 sequences); vLLM V1 itself sizes the batch by the GPU when a scenario names one
(``servesim.engines.vllm_v1_batch_defaults``), and other engines' defaults are their
profiles', each cited there.

This module sits below all of them and imports nothing heavy (the CLI loads it at start-up).
"""

from servesim.errors import ServesimError

POLICIES = ("vllm", "sarathi", "orca", "static", "prefill_first")
"""Scheduler policies (``servesim.engine.scheduler`` implements them)."""

ROUTERS = ("round_robin", "least_outstanding", "power_of_two", "prefix_affinity")
"""Routers in front of the instances (``servesim.engine.router`` implements them)."""

ADMISSIONS = ("greedy", "reserve", "guaranteed")
"""How a scheduler decides that a waiting request's KV fits (``servesim.engine.admission``):
``greedy`` (vLLM: the prompt's blocks fit now; a shortage later preempts), ``reserve``
(SGLang: the prompt plus an adaptive share of every running request's remaining output
tokens fit), ``guaranteed`` (TensorRT-LLM ``GUARANTEED_NO_EVICT``: every request's whole
remaining output fits)."""

POLICY = "vllm"
ADMISSION = "greedy"
MAX_NUM_BATCHED_TOKENS = 8192
"""Token budget of one step (prefill chunks + decodes)."""
MAX_NUM_SEQS = 256
"""Most requests running at once on one instance."""
RECV_INTERVAL = 1
"""Decode steps between two reads of newly arrived requests (SGLang's
``--scheduler-recv-interval``; a step with prompt work, and an idle engine, read at once)."""
STREAM_INTERVAL = 1
"""Tokens between two streamed chunks of a request's tokens (SGLang's ``--stream-interval``): its
1st, (N+1)th, (2N+1)th ... and last token are sent, each with those held since (SGLang 0.5.9); a
benchmark client's ITL is per chunk."""
BLOCK_SIZE = 16
"""Tokens per KV block."""
ENABLE_PREFIX_CACHING = True
ENABLE_CHUNKED_PREFILL = True
GPU_MEMORY_UTILIZATION = 0.9
"""Fraction of HBM the server may use (weights, activations, KV cache)."""


def check_positive_ints(**knobs: int) -> None:
    """ServesimError naming the first of ``knobs`` that is not a positive integer (for the
    components built without a spec; a spec checks its fields at the boundary)."""
    for name, value in knobs.items():
        if int(value) != value or value < 1:
            raise ServesimError(
                f"must be a positive integer, got {value}", field=name, fix="use a positive integer"
            )
