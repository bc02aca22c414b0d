"""LLMServingSim's published H100 performance tables: where they come from, and reading them.

The tables are third-party data (MIT licence, © 2024 CASYS Lab at KAIST) and are not committed
(``.gitignore``); ``SOURCES.md`` says what every column means. Recreate them from a clone of
github.com/casys-kaist/LLMServingSim (any clone that holds commit :data:`COMMIT`)::

    python bench/peers/llmservingsim/tables.py --from-git /path/to/LLMServingSim/.git

which writes each file below to ``tables/`` with ``git show`` and checks its Git blob hash, so
the bytes are exactly the published ones.

Units on the way in: ``layers.csv`` holds integer nanoseconds, ``attention.csv`` milliseconds,
``attn_decode_predictions.csv`` integer nanoseconds. Everything returned here is in seconds.
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TABLES = HERE / "tables"

REPOSITORY = "https://github.com/casys-kaist/LLMServingSim"
COMMIT = "5daddb21a545658d5150b535712d0494584b5278"
"""main on 2026-08-21; the files are unchanged since they were added (as
``llm_profile/perf_models/...``) in commit 9e3f0ece7cab1393f176a74d38601ef07103f2d3."""
SOURCE_DIR = "profiler/v0/perf_models"

# Path under SOURCE_DIR (and under TABLES) -> Git blob hash.
FILES = {
    "H100/meta-llama/Llama-3.1-8B/tp1/layers.csv": "8996d40dafbe513b8f6ea78602606a903f6ac39a",
    "H100/meta-llama/Llama-3.1-8B/tp2/layers.csv": "8635c2fe48aa9201753dd983fa558c3ef6daa040",
    "H100/meta-llama/Llama-3.1-70B/tp1/layers.csv": "1857935f18cfb79fc5775b99b2099fa5a0d48341",
    "H100/meta-llama/Llama-3.1-70B/tp2/layers.csv": "2a51f5f21209c871f1ab909acd4ee4ba311f5ec9",
    "H100/meta-llama/Llama-3.1-70B/tp4/layers.csv": "45804efeab0c592aef51ce43a83d25bea5c0e10f",
    "H100/meta-llama/Llama-3.1-70B/tp4/attention.csv": "8f2f7932ed0ed70c3d698b74f030baa1b4df91cf",
    "H100/meta-llama/Llama-3.1-70B/tp4/predictions/attn_decode_predictions.csv": (
        "fd67b8e8a3c90d2a89dee44565b19d84442d4a82"
    ),
    "H100/meta-llama/Llama-3.1-70B/tp4/predictions/attn_prefill_predictions.csv": (
        "ddb288a998a10e0b840346f21e26e52ae412d6b4"
    ),
    "H100/mistralai/Mixtral-8x7B-v0.1/tp1/layers.csv": "48ea553ac074f1c10996bcf1f79999e4e3ed06a7",
    "H100/mistralai/Mixtral-8x7B-v0.1/tp2/layers.csv": "d9af92f73db9ef8ad39e92a412ea9b570f30656f",
    "H100/mistralai/Mixtral-8x7B-v0.1/tp4/layers.csv": "19599aecef8bd1c15ee549cf9b778a491a9112a8",
    "H100/mistralai/Mixtral-8x7B-v0.1/tp4/attention.csv": (
        "6cad020d8664c43b047d2b95ae9f53652a754449"
    ),
    "H100/mistralai/Mixtral-8x7B-v0.1/tp4/predictions/attn_decode_predictions.csv": (
        "df91065209eed745a91073156a186a7ea06e9f18"
    ),
    "H100/mistralai/Mixtral-8x7B-v0.1/tp4/predictions/attn_prefill_predictions.csv": (
        "ef5a11a89c5a552d054d9d49bf08e7b1a0e25636"
    ),
}


def table_path(model: str, tp: int, name: str) -> Path:
    """Local path of one H100 table: ``name`` is ``layers.csv``, ``attention.csv`` or
    ``predictions/attn_{decode,prefill}_predictions.csv``."""
    return TABLES / "H100" / model / f"tp{tp}" / name


def missing() -> list[Path]:
    """Tables not (yet) recreated here."""
    return [TABLES / rel for rel in FILES if not (TABLES / rel).exists()]


def require() -> None:
    """Stop with the recreate command when any table is missing."""
    gone = missing()
    if gone:
        sys.exit(
            f"{len(gone)} LLMServingSim tables missing (first: {gone[0]}). They are third-party "
            "data, not committed; recreate them with\n"
            "    python bench/peers/llmservingsim/tables.py --from-git /path/to/LLMServingSim/.git"
            "\n(see bench/peers/llmservingsim/SOURCES.md)"
        )


def git_blob_hash(data: bytes) -> str:
    """The hash Git gives a file's bytes (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def recreate(git_dir: Path) -> None:
    """Write every table from a clone holding :data:`COMMIT`, checking each blob hash."""
    for rel, blob in FILES.items():
        data = subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{COMMIT}:{SOURCE_DIR}/{rel}"],
            check=True,
            capture_output=True,
        ).stdout
        if git_blob_hash(data) != blob:
            raise SystemExit(f"{rel}: blob {git_blob_hash(data)}, expected {blob}")
        out = TABLES / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        print(f"{out.relative_to(HERE)}  {len(data):,} bytes  ok")


# --------------------------------------------------------------------------- readers


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_layers(path: Path) -> dict[tuple[str, int], float]:
    """``layers.csv``: (layer name, tokens) -> seconds for one layer on one GPU.

    Every row has ``kv_cache`` 0 and the file's one ``tp_size``; tokens run 1 … 2,048. Where a
    key repeats, the first row counts (as LLMServingSim's own loader does).
    """
    out: dict[tuple[str, int], float] = {}
    for r in _rows(path):
        if r["kv_cache"] != "0":
            raise ValueError(f"{path}: unexpected kv_cache {r['kv_cache']}")
        out.setdefault((r["layer_name"], int(r["input"])), int(r["latency(ns)"]) * 1e-9)
    return out


@dataclass(frozen=True)
class AttentionTable:
    """``attention.csv``: measured ``flash_attn_varlen_func`` times, seconds per layer per GPU.

    NOTE: the keys are the profiler's, not a serving batch's. ``prefill[(chunk, kv)]``: one
    sequence, ``chunk`` query tokens against ``kv`` keys *in all* (``kv >= chunk``; the chunk's
    own keys included), causal. ``decode[(batch, kv)]``: ``batch`` sequences of one query each
    against ``kv // batch`` keys each: ``kv`` is the keys of the whole batch, not per sequence.
    """

    n_q_head: int
    n_kv_head: int
    tp: int
    prefill: dict[tuple[int, int], float]
    decode: dict[tuple[int, int], float]


def read_attention(path: Path) -> AttentionTable:
    """Median times of ``attention.csv``; where a key repeats (the profiler's grids list batch
    128 and chunk 128 twice), the first row counts."""
    rows = _rows(path)
    shapes = {(r["n_q_head"], r["n_kv_head"], r["num_tensor_parallel_workers"]) for r in rows}
    if len(shapes) != 1:
        raise ValueError(f"{path}: several head shapes {shapes}")
    ((hq, hkv, tp),) = shapes
    prefill: dict[tuple[int, int], float] = {}
    decode: dict[tuple[int, int], float] = {}
    for r in rows:
        if r["is_prefill"] == "True":
            key = (int(r["prefill_chunk_size"]), int(r["kv_cache_size"]))
            prefill.setdefault(key, float(r["time_stats.attn_prefill.median"]) * 1e-3)
        else:
            key = (int(r["batch_size"]), int(r["kv_cache_size"]))
            decode.setdefault(key, float(r["time_stats.attn_decode.median"]) * 1e-3)
    return AttentionTable(int(hq), int(hkv), int(tp), prefill, decode)


def read_decode_predictions(path: Path) -> dict[tuple[int, int], float]:
    """``attn_decode_predictions.csv``: (batch, kv) -> seconds, the random-forest fit of the
    decode rows that LLMServingSim's simulator looks up (by the number of decodes and their mean
    context rounded up to 64, i.e. reading ``kv`` as per-sequence)."""
    return {
        (int(r["batch_size"]), int(r["kv_cache_size"])): int(r["prediction"]) * 1e-9
        for r in _rows(path)
    }


def read_prefill_predictions(path: Path) -> dict[tuple[int, int], float]:
    """``attn_prefill_predictions.csv``: (chunk, kv) -> seconds, the random-forest fit of the
    prefill rows (the file's columns are ``kv_cache_size, prefill_chunk_size``; the key here is
    in :class:`AttentionTable`'s order)."""
    return {
        (int(r["prefill_chunk_size"]), int(r["kv_cache_size"])): int(r["prediction"]) * 1e-9
        for r in _rows(path)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from-git", type=Path, help="git directory of an LLMServingSim clone")
    args = parser.parse_args()
    if args.from_git:
        recreate(args.from_git)
    gone = missing()
    print(f"{len(FILES) - len(gone)} of {len(FILES)} tables present in {TABLES}")


if __name__ == "__main__":
    main()
