"""Build the operator-profile dataset Vidur 0.0.26 reads, offline, from the tables shipped here.

Vidur 0.0.26 (PyPI) no longer reads profiles from its repository: it downloads them from
HuggingFace datasets (``project-vajra/...``, files ``mlp.csv.xz``, ``attention.csv.xz``,
``all_reduce.csv.xz``, ``send_recv.csv.xz`` plus a ``config.json``) through
``huggingface_hub.snapshot_download``. This machine reaches PyPI only, so this module lays the
same files out as a HuggingFace cache (``datasets--ORG--NAME/snapshots/REV``) that
``snapshot_download`` resolves with ``HF_HUB_OFFLINE=1``.

Where the numbers come from (see ``profiles/SOURCES.md``):

- ``mlp.csv``: Vidur's own A100 profile of Meta-Llama-3-8B (microsoft/vidur,
  ``data/profiling/compute/a100/meta-llama/Meta-Llama-3-8B/mlp.csv``), tensor-parallel 1 rows,
  unchanged.
- ``attention.csv``: Vidur's A100 attention profile of the same model is a 9 MB file that no
  package carries (and that this project's repository snapshots leave out). 637 of its rows were
  read and are kept in ``a100_llama3_8b_attention_samples_tp1.csv``; :func:`attention_rows`
  rebuilds the profiler's full grid (Vidur's ``get_attention_input_combinations``) by
  interpolating those rows. The full-prefill curve (the one Vidur's vLLM scheduler uses:
  prefills are never chunked there) is every measured length from 32 to 8,192 tokens, so it is
  the measured one; chunked prefill and decode come from fits with a few parameters, printed by
  :func:`fit_report`.

Only numpy and the standard library are used, so the project's tests can check this module
without Vidur's environment.
"""

from __future__ import annotations

import csv
import io
import json
import lzma
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROFILES = HERE / "profiles"
MLP_TABLE = PROFILES / "a100_llama3_8b_mlp_tp1.csv"
ATTENTION_SAMPLES = PROFILES / "a100_llama3_8b_attention_samples_tp1.csv"

# Vidur's names for what we provide (its defaults name the H100 datasets; we pass these instead).
COMPUTE_DATASET = "servesim-peers/vidur-a100-meta-llama-3-8b"
NETWORK_DATASET = "servesim-peers/vidur-a100-dgx"
MODEL_NAME = "meta-llama/Llama-3-8B"
DEVICE = "a100"
NETWORK_DEVICE = "a100_dgx"
SNAPSHOT_REV = "0" * 40

# Llama-3-8B attention shape as Vidur's profile rows record it.
N_EMBD, N_Q_HEAD, N_KV_HEAD = 4096, 32, 8
PROFILE_MAX_MODEL_LEN = 16384  # the published rows say max_model_len 16384
PROFILE_MAX_BATCH = 512  # the published decode rows stop at batch 512 ...
PROFILE_MAX_TOKENS = 580_000  # ... and at batch × kv ≈ 580k tokens (kv 2112 stops at batch 272)


# --------------------------------------------------------------------------- the profiler's grid


def prefill_chunk_sizes(max_seq_len: int) -> list[int]:
    """Chunk sizes Vidur's attention profiler measures (its ``PREFILL_CHUNK_SIZE_SPACE``)."""
    space = (
        list(range(64, 128 + 1, 16))
        + list(range(128, 1024 + 1, 32))
        + list(range(1024, 4 * 1024 + 1, 64))
        + list(range(4 * 1024, 16 * 1024 + 1, 128))
        + list(range(16 * 1024, 64 * 1024 + 1, 256))
    )
    return [c for c in space if c <= max_seq_len]


def seq_lengths(max_seq_len: int) -> list[int]:
    """KV lengths (and full-prefill lengths) the profiler measures (``SEQ_LENGTH_SIZE_SPACE``)."""
    space = (
        list(range(0, 1024 + 1, 32))
        + list(range(1024, 4 * 1024 + 1, 64))
        + list(range(4 * 1024, 64 * 1024 + 1, 256))
    )
    return [s for s in space if s < max_seq_len]


def decode_batch_sizes(max_batch: int) -> list[int]:
    """Decode batch sizes the profiler measures (``BATCH_SIZE_SPACE``)."""
    space = list(range(1, 128 + 1)) + list(range(128, 1024 + 1, 8))
    return [b for b in space if b <= max_batch]


def grid(
    max_seq_len: int = PROFILE_MAX_MODEL_LEN,
    max_batch: int = PROFILE_MAX_BATCH,
    max_tokens: int = PROFILE_MAX_TOKENS,
) -> list[tuple[int, int, int, bool]]:
    """``(prefill_chunk_size, kv_cache_size, batch_size, is_prefill)`` in the profiler's order.

    NOTE: the grid matters beyond coverage: Vidur fits ``attn_kv_cache_save`` on ``num_tokens``
    alone over *all* rows (prefill and decode mixed), so the mix of rows sharing a token count
    shapes its prediction. Rebuilding the same grid keeps that mix.
    """
    rows: list[tuple[int, int, int, bool]] = []
    for chunk in prefill_chunk_sizes(max_seq_len):
        rows += [(chunk, i * chunk, 1, True) for i in range(max_seq_len // chunk)]
    rows += [(s, 0, 1, True) for s in seq_lengths(max_seq_len) if s > 0]
    for kv in seq_lengths(max_seq_len):
        if kv == 0:
            continue
        rows += [(0, kv, b, False) for b in decode_batch_sizes(max_batch) if b * kv <= max_tokens]
    return rows


# --------------------------------------------------------------------------- the samples


@dataclass(frozen=True)
class Samples:
    """Rows read from Vidur's published attention profile, milliseconds per layer."""

    full_chunk: np.ndarray
    full_prefill: np.ndarray
    full_save: np.ndarray
    chunked: np.ndarray  # columns: chunk, kv, attn_prefill, kv_cache_save
    decode: np.ndarray  # columns: batch, kv, attn_decode, kv_cache_save


def read_samples(path: Path = ATTENTION_SAMPLES) -> Samples:
    full, chunked, decode = [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            chunk, kv, batch = (
                int(row["prefill_chunk_size"]),
                int(row["kv_cache_size"]),
                int(row["batch_size"]),
            )
            save = float(row["attn_kv_cache_save_median_ms"])
            if row["phase"] == "decode":
                decode.append((batch, kv, float(row["attn_decode_median_ms"]), save))
            elif kv == 0:
                full.append((chunk, float(row["attn_prefill_median_ms"]), save))
            else:
                chunked.append((chunk, kv, float(row["attn_prefill_median_ms"]), save))
    full_arr = np.array(sorted(full), dtype=float)
    return Samples(
        full_chunk=full_arr[:, 0],
        full_prefill=full_arr[:, 1],
        full_save=full_arr[:, 2],
        chunked=np.array(chunked, dtype=float),
        decode=np.array(decode, dtype=float),
    )


@dataclass(frozen=True)
class AttentionModel:
    """Interpolants fitted to :class:`Samples`; every method returns ms per layer."""

    samples: Samples
    slope_chunks: np.ndarray  # chunk sizes with measured kv slopes
    slope_per_chunk_token: np.ndarray  # (d attn_prefill / d kv) / chunk, ms per token²
    save_a: float  # chunked-prefill kv_cache_save = save_a + save_b × chunk
    save_b: float
    decode_coef: np.ndarray  # attn_decode = c0 + c1·batch + c2·batch·kv
    decode_save: np.ndarray  # decode kv_cache_save = s0 + s1·batch

    def full_prefill(self, chunk: np.ndarray) -> np.ndarray:
        s = self.samples
        c = np.asarray(chunk, dtype=float)
        inside = np.interp(c, s.full_chunk, s.full_prefill)
        # past the last sample, attention FLOPs of a causal prefill grow with chunk²
        beyond = s.full_prefill[-1] * (c / s.full_chunk[-1]) ** 2
        below = s.full_prefill[0] * c / s.full_chunk[0]
        return np.where(c > s.full_chunk[-1], beyond, np.where(c < s.full_chunk[0], below, inside))

    def full_save(self, chunk: np.ndarray) -> np.ndarray:
        s = self.samples
        c = np.asarray(chunk, dtype=float)
        inside = np.interp(c, s.full_chunk, s.full_save)
        beyond = s.full_save[-1] + self.save_b * (c - s.full_chunk[-1])
        return np.where(c > s.full_chunk[-1], beyond, inside)

    def chunked_prefill(self, chunk: np.ndarray, kv: np.ndarray) -> np.ndarray:
        c = np.asarray(chunk, dtype=float)
        rate = np.interp(c, self.slope_chunks, self.slope_per_chunk_token)
        return self.full_prefill(c) + np.asarray(kv, dtype=float) * c * rate

    def chunked_save(self, chunk: np.ndarray) -> np.ndarray:
        return self.save_a + self.save_b * np.asarray(chunk, dtype=float)

    def decode(self, batch: np.ndarray, kv: np.ndarray) -> np.ndarray:
        b, k = np.asarray(batch, dtype=float), np.asarray(kv, dtype=float)
        c0, c1, c2 = self.decode_coef
        floor = float(self.samples.decode[:, 2].min())
        return np.maximum(c0 + c1 * b + c2 * b * k, floor)

    def decode_kv_save(self, batch: np.ndarray) -> np.ndarray:
        return self.decode_save[0] + self.decode_save[1] * np.asarray(batch, dtype=float)


def fit(samples: Samples) -> AttentionModel:
    """Fit the few parameters the interpolants need (least squares, no weights)."""
    ch = samples.chunked
    chunks, rates = [], []
    for chunk in np.unique(ch[:, 0]):
        rows = ch[ch[:, 0] == chunk]
        if len(rows) < 2:
            continue
        slope = np.polyfit(rows[:, 1], rows[:, 2], 1)[0]
        chunks.append(chunk)
        rates.append(slope / chunk)
    # kv_cache_save of a chunk that extends a cache: linear in the chunk (the plateau rows)
    plateau = ch[ch[:, 1] >= ch[:, 0]]
    save_b, save_a = np.polyfit(plateau[:, 0], plateau[:, 3], 1)
    d = samples.decode
    design = np.column_stack([np.ones(len(d)), d[:, 0], d[:, 0] * d[:, 1]])
    coef, *_ = np.linalg.lstsq(design, d[:, 2], rcond=None)
    save_coef = np.polyfit(d[:, 0], d[:, 3], 1)[::-1]
    return AttentionModel(
        samples=samples,
        slope_chunks=np.array(chunks),
        slope_per_chunk_token=np.array(rates),
        save_a=float(save_a),
        save_b=float(save_b),
        decode_coef=coef,
        decode_save=save_coef,
    )


def fit_report(model: AttentionModel) -> dict[str, float]:
    """Mean and worst relative error of the interpolants on the samples they came from."""
    s = model.samples
    out: dict[str, float] = {}
    for name, pred, meas in (
        ("full_prefill", model.full_prefill(s.full_chunk), s.full_prefill),
        (
            "chunked_prefill",
            model.chunked_prefill(s.chunked[:, 0], s.chunked[:, 1]),
            s.chunked[:, 2],
        ),
        ("decode", model.decode(s.decode[:, 0], s.decode[:, 1]), s.decode[:, 2]),
    ):
        err = np.abs(pred / meas - 1.0)
        out[f"{name}_mean_rel_err"] = float(err.mean())
        out[f"{name}_max_rel_err"] = float(err.max())
    return out


# --------------------------------------------------------------------------- Vidur's CSV rows

ATTENTION_STATS = (
    "attn_input_reshape",
    "attn_kv_cache_save",
    "attn_prefill",
    "attn_decode",
    "attn_output_reshape",
)
ATTENTION_COLUMNS = [
    f"time_stats.{op}.{stat}"
    for op in ATTENTION_STATS
    for stat in ("min", "max", "mean", "median", "std")
] + [
    "n_embd",
    "n_q_head",
    "n_kv_head",
    "block_size",
    "num_tensor_parallel_workers",
    "max_model_len",
    "batch_size",
    "prefill_chunk_size",
    "kv_cache_size",
    "is_prefill",
    "attention_backend",
]


def attention_rows(model: AttentionModel, block_size: int = 16) -> list[list[object]]:
    """Vidur ``attention.csv`` rows (its column layout) for the profiler's whole grid."""
    g = grid()
    chunk = np.array([r[0] for r in g], dtype=float)
    kv = np.array([r[1] for r in g], dtype=float)
    batch = np.array([r[2] for r in g], dtype=float)
    prefill = np.array([r[3] for r in g])
    full = prefill & (kv == 0)
    t_prefill = np.where(full, model.full_prefill(chunk), model.chunked_prefill(chunk, kv))
    t_prefill = np.where(prefill, t_prefill, 0.0)
    t_decode = np.where(prefill, 0.0, model.decode(batch, kv))
    t_save = np.where(
        prefill,
        np.where(full, model.full_save(chunk), model.chunked_save(chunk)),
        model.decode_kv_save(batch),
    )
    rows = []
    for i, (c, k, b, is_prefill) in enumerate(g):
        stats: list[object] = []
        for value in (0.0, t_save[i], t_prefill[i], t_decode[i], 0.0):
            v = round(float(value), 5)
            stats += [v, v, v, v, 0.0]  # min, max, mean, median, std: Vidur reads the median
        rows.append(
            stats
            + [N_EMBD, N_Q_HEAD, N_KV_HEAD, block_size, 1, PROFILE_MAX_MODEL_LEN, b, c, k]
            + [is_prefill, "AttentionBackend.FLASHINFER"]
        )
    return rows


def mlp_rows(path: Path = MLP_TABLE) -> tuple[list[str], list[list[str]]]:
    """The shipped MLP table (Vidur's published rows) as header and rows, unchanged."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(reader)


# --------------------------------------------------------------------------- the HF cache layout


def snapshot_dir(cache_root: Path, kind: str, dataset: str) -> Path:
    """Where ``snapshot_download(dataset, repo_type="dataset", cache_dir=...)`` looks.

    Vidur passes ``cache_dir=f"{cache_dir}/profiling_data/{kind}/"``; huggingface_hub keeps a
    dataset under ``datasets--ORG--NAME`` with ``refs/main`` naming the snapshot revision.
    """
    org, name = dataset.split("/")
    return cache_root / "profiling_data" / kind / f"datasets--{org}--{name}"


def _write_xz_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with lzma.open(path, "wt") as f:
        f.write(buf.getvalue())


def _publish(
    repo: Path, files: dict[str, tuple[list[str], list[list[object]]]], config: dict
) -> None:
    snap = repo / "snapshots" / SNAPSHOT_REV
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(SNAPSHOT_REV)
    (snap / "config.json").write_text(json.dumps(config, indent=2))
    for name, (header, rows) in files.items():
        _write_xz_csv(snap / name, header, rows)


def build_cache(cache_root: Path) -> dict[str, float]:
    """Write both datasets under ``cache_root`` (Vidur's ``cache_dir``); returns the fit report.

    NOTE: Vidur keys its cached predictors by configuration only, not by the profile data, so
    predictors trained on earlier tables are deleted here rather than silently reused.
    """
    for stale in ("predictors", "predictions", "training_predictions"):
        shutil.rmtree(cache_root / stale, ignore_errors=True)
    model = fit(read_samples())
    header, rows = mlp_rows()
    compute = snapshot_dir(cache_root, "compute", COMPUTE_DATASET)
    _publish(
        compute,
        {
            "mlp.csv.xz": (header, rows),
            "attention.csv.xz": (ATTENTION_COLUMNS, attention_rows(model)),
        },
        {"model": MODEL_NAME, "device_sku": DEVICE},
    )
    # TP1/PP1 never reads the network tables, but Vidur opens the dataset's config.json.
    net_header = ["size", "num_workers", "devices_per_node", "collective"]
    net_header += [f"time_stats.{c}.median" for c in ("all_reduce", "send_recv")]
    network = snapshot_dir(cache_root, "network", NETWORK_DATASET)
    _publish(
        network,
        {"all_reduce.csv.xz": (net_header, []), "send_recv.csv.xz": (net_header, [])},
        {"sku": NETWORK_DEVICE},
    )
    return fit_report(model)


if __name__ == "__main__":
    import sys

    root = Path(sys.argv[1] if len(sys.argv) > 1 else HERE / ".venv" / "vidur_cache")
    print(json.dumps(build_cache(root), indent=2))
    print(f"profiles written under {root}")
