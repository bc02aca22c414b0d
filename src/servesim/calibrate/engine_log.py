"""What an engine's start-up log says about its memory: the KV cache it allocated, its weights.

Serving engines print, once they have sized their KV cache, how many tokens it holds — the
figure a simulation of the deployment should use (``scheduler.kv_cache_tokens``). The reader
recognises the lines of:

- vLLM V1: ``GPU KV cache size: 464,848 tokens``, ``Model loading took 14.2488 GiB``,
  ``Available KV cache memory: 24.83 GiB``, ``vLLM API server version 0.10.1.1``;
- vLLM V0: ``# GPU blocks: 27310, # CPU blocks: 2048`` (× the block size, 16 unless the log's
  ``block_size=`` says otherwise), ``Loading model weights took 14.9888 GB``;
- SGLang: ``max_total_num_tokens=46611`` (or ``KV Cache is allocated. #tokens: 46611``),
  ``Load weight end. ... mem usage=15.54 GB``;
- TensorRT-LLM: ``Allocated 52.08 GiB for max tokens in paged KV cache (2730752)``.

A log of several ranks prints each line once per rank: the first figure is taken (every rank
of an engine sizes the same cache). Anything else in the file is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servesim.errors import ServesimError
from servesim.textfile import not_a_file, text_lines

_NUMBER = r"(\d[\d,]*)"
_TOKENS = (
    ("vllm", re.compile(r"GPU KV cache size: " + _NUMBER + r" tokens")),
    ("sglang", re.compile(r"max_total_num_tokens=" + _NUMBER)),
    ("sglang", re.compile(r"KV Cache is allocated\. #tokens: " + _NUMBER)),
    ("trtllm", re.compile(r"for max tokens in paged KV cache \(" + _NUMBER + r"\)")),
)
_V0_BLOCKS = re.compile(r"# (?:GPU|cuda) blocks: " + _NUMBER)
_BLOCK_SIZE = re.compile(r"\bblock_size=(\d+)")
_VERSION = (
    ("vllm", re.compile(r"vLLM API server version v?([0-9][\w.+-]*)")),
    ("vllm", re.compile(r"Initializing an? (?:V1 )?LLM engine \(v([0-9][\w.+-]*)\)")),
    # (newer vLLM prints its version in a block-letter banner: "▄▄ ▄█ █ ... version 0.31.0")
    ("vllm", re.compile(r"[▄█▀].*\bversion v?([0-9][\w.+-]*)")),
    ("trtllm", re.compile(r"TensorRT-LLM version: ([0-9][\w.+-]*)")),
)
_WEIGHTS_GIB = (
    re.compile(r"Model loading took (-?[\d.]+) ?GiB"),
    re.compile(r"Loading model weights took (-?[\d.]+) ?GB"),
    re.compile(r"Load weight end\..*mem usage=(-?[\d.]+) ?GB"),
)
_KV_GIB = re.compile(r"Available KV cache memory: (-?[\d.]+) ?GiB")
V0_BLOCK_SIZE = 16
"""vLLM V0's default KV block, when its log does not print ``block_size=``."""


@dataclass(frozen=True)
class EngineLogMemory:
    """The memory figures of one engine start-up log (None: the log does not print it)."""

    engine: str
    """``vllm``, ``sglang`` or ``trtllm``: whose line gave the KV cache size."""
    kv_cache_tokens: int
    """Tokens the engine's KV cache holds (one engine; under attention DP, one rank)."""
    version: str | None = None
    weights_gib: float | None = None
    """Weights on one GPU, GiB (the engines print GiB, SGLang and V0 labelled "GB")."""
    kv_cache_gib: float | None = None
    """vLLM's "Available KV cache memory" of one GPU, GiB."""


def read_engine_log(path: str | Path) -> EngineLogMemory:
    """The KV cache size and weights a vLLM, SGLang or TensorRT-LLM start-up log prints.

    Raises ServesimError (field ``--engine-log``) when the file cannot be read or prints no KV
    cache size.
    """
    field = "--engine-log"
    if not Path(path).is_file():
        raise ServesimError(f"{path} {not_a_file(path)}", field=field, fix="check the path")
    tokens: tuple[str, int] | None = None
    v0_blocks: int | None = None
    block_size = V0_BLOCK_SIZE
    version: str | None = None
    weights: float | None = None
    kv_gib: float | None = None
    for _, line in text_lines(path, field=field, errors="replace"):
        if tokens is None:
            for engine, pattern in _TOKENS:
                if m := pattern.search(line):
                    tokens = (engine, int(m.group(1).replace(",", "")))
                    break
        if v0_blocks is None and (m := _V0_BLOCKS.search(line)):
            v0_blocks = int(m.group(1).replace(",", ""))
        if m := _BLOCK_SIZE.search(line):
            block_size = int(m.group(1))
        if version is None:
            for _, pattern in _VERSION:
                if m := pattern.search(line):
                    version = m.group(1)
                    break
        if weights is None:
            for pattern in _WEIGHTS_GIB:
                if m := pattern.search(line):
                    weights = float(m.group(1))
                    break
        if kv_gib is None and (m := _KV_GIB.search(line)):
            kv_gib = float(m.group(1))
    if tokens is None and v0_blocks is not None:
        tokens = ("vllm", v0_blocks * block_size)
    if tokens is None:
        raise ServesimError(
            f"{path}: no KV cache size in the log (vLLM 'GPU KV cache size: N tokens' or "
            "'# GPU blocks: N', SGLang 'max_total_num_tokens=N', TensorRT-LLM 'Allocated ... "
            "for max tokens in paged KV cache (N)')",
            field=field,
            fix="give the engine's start-up log, from its launch until it serves",
        )
    engine, count = tokens
    if count < 1:
        raise ServesimError(
            f"{path}: the engine logged a KV cache of {count} tokens (it could not start)",
            field=field,
            fix="give the log of a server that started",
        )
    return EngineLogMemory(engine, count, version, weights, kv_gib)


def pin_to_engine_log(
    path: str | Path, data: dict[str, Any], source: str = ""
) -> tuple[str, dict[str, Any]]:
    """(A one-line note, scenario ``data`` with its KV cache pinned to what the start-up log at
    ``path`` prints: ``scheduler.kv_cache_tokens``). The note names the engine and release the
    log printed and compares the size with servesim's own plan for ``data``.

    Raises ServesimError (field ``--engine-log``) when ``data`` pins the cache already, or the
    log cannot be read (:func:`read_engine_log`)."""
    import numpy as np

    from servesim.fleet import build_fleet
    from servesim.scenario import build_scenario

    facts = read_engine_log(path)
    scheduler = dict(data.get("scheduler") or {})
    if scheduler.get("kv_cache_tokens") is not None:
        raise ServesimError(
            "--engine-log and --kv-cache-tokens (or scheduler.kv_cache_tokens) both pin the KV "
            "cache",
            field="--engine-log",
            fix="give one of them",
        )
    fleet = build_fleet(build_scenario(data, source=source), np.random.default_rng(0))
    # (per engine, as the log counts it: one attention-DP rank's share)
    own = min(g.memory.kv_capacity_tokens // g.parallelism.dp for g in fleet.groups)
    scheduler["kv_cache_tokens"] = facts.kv_cache_tokens
    release = f" {facts.version}" if facts.version else ""
    note = (
        f"engine log: {facts.engine}{release}, KV cache {facts.kv_cache_tokens:,} tokens "
        f"(pinned; servesim's own plan: {own:,}, {own / facts.kv_cache_tokens - 1:+.1%})"
    )
    return note, {**data, "scheduler": scheduler}
