"""servesim beside Vidur on the same requests: wall time and the predicted serving metrics.

    bash bench/peers/vidur/setup_vidur.sh            # once: Vidur's own venv + its profile tables
    python bench/peers/vidur/run_comparison.py       # all workloads (tens of minutes: Vidur)
    python bench/peers/vidur/run_comparison.py --only fixed-low-1k --no-save

Both simulators get the *same request list* (arrival times and token counts written to one
file each in the format it reads), so metric differences come from the models, not from
sampling. Setup, shared by both (Vidur's names in brackets):

- Llama-3-8B on one A100-80GB. Vidur ships (in its repository) profiles of Llama-3-8B for the
  A100 only; its H100 tables live on HuggingFace, out of reach here. servesim runs
  meta-llama/Llama-3.1-8B, the same network apart from RoPE scaling and context length.
- vLLM-style scheduler: 256 running requests [batch_size_cap], 4,096 batched tokens
  [max_tokens_in_batch], KV blocks of 16 tokens, 90% of HBM for weights + KV
  [memory_margin_fraction 0.1], no prefix caching (neither workload shares prefixes).
- Requests capped at 4,096 tokens in all (Vidur's Llama-3-8B context; the prompt is cut, as
  Vidur's own trace loader does).

Metrics are computed by one function from each simulator's per-request records (arrival,
first token, finish, output tokens), with vLLM's definitions: TTFT = first token - arrival,
TPOT = (E2E - TTFT) / (output - 1), throughput = output tokens / (last finish - first arrival).
Wall time is the whole process (interpreter start, imports, reading the requests, simulating,
writing results) for both; servesim's in-process ``sim_wall_s`` is listed too. Vidur's
predictors are trained once by ``setup_vidur.sh`` and cached; the runs here reuse that cache,
which is Vidur's fastest path.
"""

from __future__ import annotations

import argparse
import csv
import glob
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
RESULTS = HERE / "results"
AZURE_CONV = REPO.parent / "shared" / "traces" / "azure_llm_2023_conv.csv"
DEFAULT_VENV = HERE / ".venv"

MAX_TOKENS = 4096  # prompt + output per request (Vidur's Llama-3-8B max_model_len)
MAX_NUM_SEQS = 256
MAX_BATCHED_TOKENS = 4096
BLOCK_SIZE = 16
GPU_MEMORY_UTILIZATION = 0.9
VIDUR_DATE = "2023-11-16"  # Vidur's trace replay keeps the rows of one date


@dataclass(frozen=True)
class Workload:
    """One comparison point: lengths, Poisson rate (requests/s) and request count."""

    name: str
    lengths: str  # "fixed" (512 in / 128 out) or "azure-conv" (the Azure 2023 conv trace rows)
    rate: float
    num_requests: int
    seed: int = 0


WORKLOADS = [
    Workload(f"{lengths}-{level}-{n // 1000}k", lengths, rate, n)
    for lengths, rates in (("fixed", (5.0, 30.0)), ("azure-conv", (2.0, 12.0)))
    for level, rate in zip(("low", "sat"), rates, strict=True)
    for n in (1000, 10000)
]


# --------------------------------------------------------------------------- the requests


@dataclass(frozen=True)
class Requests:
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray


def cap_lengths(inputs: np.ndarray, outputs: np.ndarray, max_tokens: int = MAX_TOKENS):
    """Cut prompts so prompt + output <= max_tokens (Vidur's trace loader does the same)."""
    outputs = np.clip(outputs, 1, max_tokens - 1)
    inputs = np.clip(inputs, 1, None)
    inputs = np.minimum(inputs, max_tokens - outputs)
    return inputs.astype(np.int64), outputs.astype(np.int64)


def azure_lengths(n: int, path: Path = AZURE_CONV) -> tuple[np.ndarray, np.ndarray]:
    """The first n (ContextTokens, GeneratedTokens) rows of the Azure trace, cycled if needed."""
    with open(path, newline="") as f:
        rows = [(int(r["ContextTokens"]), int(r["GeneratedTokens"])) for r in csv.DictReader(f)]
    picked = [rows[i % len(rows)] for i in range(n)]
    return np.array([p[0] for p in picked]), np.array([p[1] for p in picked])


def make_requests(w: Workload) -> Requests:
    """Poisson arrivals from t = 0 and the workload's lengths, reproducible from ``w.seed``."""
    rng = np.random.default_rng(w.seed)
    gaps = rng.exponential(1.0 / w.rate, w.num_requests)
    arrival = np.cumsum(gaps) - gaps[0]
    if w.lengths == "fixed":
        inputs = np.full(w.num_requests, 512)
        outputs = np.full(w.num_requests, 128)
    elif w.lengths == "azure-conv":
        inputs, outputs = azure_lengths(w.num_requests)
    else:
        raise ValueError(f"unknown lengths {w.lengths!r}")
    inputs, outputs = cap_lengths(inputs, outputs)
    return Requests(arrival, inputs, outputs)


def write_vidur_trace(path: Path, req: Requests) -> None:
    """Vidur's ``trace_replay`` format: Date, Time (s), PromptTokenCount, CompletionTokenCount."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Date", "Time", "PromptTokenCount", "CompletionTokenCount"])
        for t, i, o in zip(req.arrival_s, req.input_tokens, req.output_tokens, strict=True):
            w.writerow([VIDUR_DATE, repr(float(t)), int(i), int(o)])


def write_servesim_trace(path: Path, req: Requests) -> None:
    """servesim's generic CSV replay: timestamp (s), input_tokens, output_tokens."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "input_tokens", "output_tokens"])
        for t, i, o in zip(req.arrival_s, req.input_tokens, req.output_tokens, strict=True):
            w.writerow([repr(float(t)), int(i), int(o)])


# --------------------------------------------------------------------------- the commands


def vidur_command(python: str, trace: Path, out_dir: Path, cache_dir: Path) -> list[str]:
    """``python -m vidur.main`` with the shared knobs; plots and traces off (its fastest run)."""
    p = "random_forrest_execution_time_predictor_config"
    return [
        python, "-m", "vidur.main",
        "--replica_config_device", "a100",
        "--replica_config_network_device", "a100_dgx",
        "--replica_config_model_name", "meta-llama/Llama-3-8B",
        "--replica_config_tensor_parallel_size", "1",
        "--replica_config_num_pipeline_stages", "1",
        "--cluster_config_num_replicas", "1",
        "--replica_scheduler_config_type", "vllm",
        "--vllm_scheduler_config_batch_size_cap", str(MAX_NUM_SEQS),
        "--vllm_scheduler_config_max_tokens_in_batch", str(MAX_BATCHED_TOKENS),
        "--cache_config_block_size", str(BLOCK_SIZE),
        "--cache_config_memory_margin_fraction", str(round(1 - GPU_MEMORY_UTILIZATION, 6)),
        "--request_generator_config_type", "trace_replay",
        "--trace_request_generator_config_trace_file", str(trace),
        "--trace_request_generator_config_date", VIDUR_DATE,
        "--trace_request_generator_config_prefill_scale_factor", "1",
        "--trace_request_generator_config_decode_scale_factor", "1",
        "--trace_request_generator_config_time_scale_factor", "1",
        "--trace_request_generator_config_max_tokens", str(MAX_TOKENS),
        "--execution_time_predictor_config_type", "random_forrest",
        f"--{p}_model_profiling_dataset", "servesim-peers/vidur-a100-meta-llama-3-8b",
        f"--{p}_network_profiling_dataset", "servesim-peers/vidur-a100-dgx",
        f"--{p}_cache_dir", str(cache_dir),
        f"--{p}_prediction_max_batch_size", str(MAX_NUM_SEQS),
        f"--{p}_prediction_max_tokens_per_request", str(2 * MAX_BATCHED_TOKENS),
        f"--{p}_prediction_max_prefill_chunk_size", str(MAX_BATCHED_TOKENS),
        # NOTE: one random-forest setting instead of Vidur's 27-point grid search with 10-fold
        # cross-validation: that search takes hours on two cores for the attention table, and
        # on the MLP tables it picked these values (depth 16-32, split 2, 250-750 trees).
        # Training happens once, in setup_vidur.sh; it does not change the timed runs.
        f"--{p}_k_fold_cv_splits", "2",
        f"--{p}_num_estimators", "250",
        f"--{p}_max_depth", "32",
        f"--{p}_min_samples_split", "2",
        "--metrics_config_output_dir", str(out_dir),
        "--no-metrics_config_store_plots",
        "--no-metrics_config_enable_chrome_trace",
        "--no-metrics_config_write_json_trace",
    ]  # fmt: skip


def vidur_env() -> dict[str, str]:
    """Offline HuggingFace (profiles come from the local cache) and no wandb."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def servesim_executable() -> str:
    script = Path(sys.executable).parent / "servesim"
    return str(script) if script.exists() else (shutil.which("servesim") or "servesim")


def servesim_command(
    trace: Path, out_dir: Path, chunked_prefill: bool = True, compiled: str = "off"
) -> list[str]:
    """``servesim simulate`` replaying ``trace`` with the shared knobs (``compiled``: its
    ``--compiled``; off, the reference path, unless a run asks for the numba kernels)."""
    return [
        servesim_executable(), "simulate",
        "--model", "llama-3.1-8b",
        "--hardware", "A100-80GB",
        "--scheduler", "vllm",
        "--max-num-batched-tokens", str(MAX_BATCHED_TOKENS),
        "--max-num-seqs", str(MAX_NUM_SEQS),
        "--block-size", str(BLOCK_SIZE),
        "--gpu-memory-utilization", str(GPU_MEMORY_UTILIZATION),
        "--no-prefix-caching",
        "--chunked-prefill" if chunked_prefill else "--no-chunked-prefill",
        "--max-model-len", str(MAX_TOKENS),
        "--replay", str(trace),
        "--trace-format", "csv",
        "--out", str(out_dir),
        "--compiled", compiled,
    ]  # fmt: skip


# --------------------------------------------------------------------------- reading the results


@dataclass(frozen=True)
class RequestTimes:
    """Per-request times in seconds, aligned by request index."""

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    output_tokens: np.ndarray


def find_vidur_request_metrics(out_dir: Path) -> Path:
    """Vidur writes ``request_metrics.csv`` into a time-stamped folder under ``output_dir``."""
    hits = sorted(glob.glob(str(out_dir / "**" / "request_metrics.csv"), recursive=True))
    if not hits:
        raise FileNotFoundError(f"no request_metrics.csv under {out_dir}")
    return Path(hits[-1])


def read_vidur_requests(path: Path, arrival_s: np.ndarray) -> RequestTimes:
    """Vidur's per-request metrics (``Request Id``, ``request_e2e_time``, ``prefill_e2e_time``,
    ``request_num_decode_tokens``, seconds) joined with the arrival times we gave it.

    NOTE: Vidur's request ids are its generation order, which is the trace file's row order
    (arrivals sorted); ``prefill_e2e_time`` is arrival to the end of the prefill iteration, which
    also yields the first output token, so it is TTFT.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    n = len(arrival_s)
    e2e, ttft, out = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=np.int64)
    for r in rows:
        if not r.get("request_e2e_time"):
            continue  # an unfinished request has an empty row
        i = int(float(r["Request Id"]))
        e2e[i] = float(r["request_e2e_time"])
        ttft[i] = float(r["prefill_e2e_time"])
        out[i] = int(float(r["request_num_decode_tokens"]))
    done = ~np.isnan(e2e)
    a = np.asarray(arrival_s, dtype=float)[done]
    return RequestTimes(a, a + ttft[done], a + e2e[done], out[done])


def read_servesim_requests(path: Path) -> RequestTimes:
    """servesim's ``requests.csv`` (arrival_s, first_token_s, finish_s, output_tokens)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["finish_s"]]

    def col(key: str, kind: type = float) -> np.ndarray:
        return np.array([kind(r[key]) for r in rows])

    return RequestTimes(
        col("arrival_s"), col("first_token_s"), col("finish_s"), col("output_tokens", int)
    )


def metrics(rt: RequestTimes) -> dict[str, float]:
    """vLLM-benchmark definitions over per-request times (latencies in ms)."""
    ttft = (rt.first_token_s - rt.arrival_s) * 1e3
    e2e = (rt.finish_s - rt.arrival_s) * 1e3
    multi = rt.output_tokens > 1
    tpot = (e2e[multi] - ttft[multi]) / (rt.output_tokens[multi] - 1)
    span = float(rt.finish_s.max() - rt.arrival_s.min())
    out: dict[str, float] = {"completed": int(len(rt.arrival_s))}
    for name, v in (("ttft_ms", ttft), ("tpot_ms", tpot), ("e2el_ms", e2e)):
        out[f"median_{name}"] = float(np.median(v))
        out[f"p99_{name}"] = float(np.percentile(v, 99))
    out["output_throughput"] = float(rt.output_tokens.sum() / span)
    out["request_throughput"] = float(len(rt.arrival_s) / span)
    return out


METRIC_KEYS = [
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_e2el_ms",
    "p99_e2el_ms",
    "output_throughput",
]


def rel_diff(ours: float, theirs: float) -> float:
    """(servesim - Vidur) / Vidur."""
    return (ours - theirs) / theirs if theirs else float("nan")


# --------------------------------------------------------------------------- running


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{cmd[0]} {cmd[1]} failed ({proc.returncode}):\n{tail}")
    return wall


def run_workload(w: Workload, venv: Path, servesim_repeats: int, compiled: bool = True) -> dict:
    req = make_requests(w)
    with tempfile.TemporaryDirectory(prefix=f"peers-{w.name}-") as tmp:
        tmp_path = Path(tmp)
        v_trace, s_trace = tmp_path / "vidur.csv", tmp_path / "servesim.csv"
        write_vidur_trace(v_trace, req)
        write_servesim_trace(s_trace, req)

        s_walls = []
        for k in range(servesim_repeats):
            out = tmp_path / f"servesim-{k}"
            s_walls.append(timed(servesim_command(s_trace, out)))
        summary = json.loads((tmp_path / "servesim-0" / "summary.json").read_text())
        s_metrics = metrics(read_servesim_requests(tmp_path / "servesim-0" / "requests.csv"))
        # The numba kernels (the fast extra), with their cache warm (a first run fills it).
        c_walls = []
        if compiled:
            warm = tmp_path / "servesim-compiled-warm"
            timed(servesim_command(s_trace, warm, compiled="on"))
            for k in range(servesim_repeats):
                out = tmp_path / f"servesim-compiled-{k}"
                c_walls.append(timed(servesim_command(s_trace, out, compiled="on")))
            c_metrics = metrics(read_servesim_requests(out / "requests.csv"))
            for key, value in s_metrics.items():  # (the same run, to the last bits of rounding)
                assert math.isclose(c_metrics[key], value, rel_tol=1e-9), key
        timed(servesim_command(s_trace, tmp_path / "servesim-nochunk", chunked_prefill=False))
        s_nochunk = metrics(read_servesim_requests(tmp_path / "servesim-nochunk" / "requests.csv"))

        v_out = tmp_path / "vidur"
        v_cmd = vidur_command(str(venv / "bin" / "python"), v_trace, v_out, venv / "vidur_cache")
        v_wall = timed(v_cmd, env=vidur_env(), cwd=tmp_path)
        v_metrics = metrics(read_vidur_requests(find_vidur_request_metrics(v_out), req.arrival_s))

    s_wall = statistics.median(s_walls)
    return {
        "workload": asdict(w),
        "mean_input_tokens": float(req.input_tokens.mean()),
        "mean_output_tokens": float(req.output_tokens.mean()),
        "vidur_wall_s": v_wall,
        "servesim_wall_s": s_wall,
        "servesim_wall_s_runs": s_walls,
        "servesim_sim_wall_s": float(summary["sim_wall_s"]),
        "speedup": v_wall / s_wall,
        "servesim_compiled_wall_s": statistics.median(c_walls) if c_walls else None,
        "speedup_compiled": v_wall / statistics.median(c_walls) if c_walls else None,
        "vidur": v_metrics,
        "servesim": s_metrics,
        "servesim_no_chunked_prefill": s_nochunk,
        "rel_diff": {k: rel_diff(s_metrics[k], v_metrics[k]) for k in METRIC_KEYS},
    }


def llmservingsim_rows(venv: Path, repeats: int) -> list[dict]:
    """The LLMServingSim workloads (Llama-3.1-8B on H100, all requests at t = 0): servesim's
    whole-process time as ``bench/bench_llmservingsim.py`` measures it, and Vidur's on the
    closest setup it has (Llama-3-8B, A100)."""
    spec = importlib.util.spec_from_file_location(
        "bench_lss", REPO / "bench" / "bench_llmservingsim.py"
    )
    assert spec and spec.loader
    lss = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lss)
    rows = []
    for name, (n, lin, lout, published) in lss.WORKLOADS.items():
        argv = lss.servesim_command() + [
            "simulate", "--model", "llama-3.1-8b", "--hardware", "H100",
            "--num-requests", str(n), "--input-len", str(lin), "--output-len", str(lout),
            "--rate", "inf", "--json",
        ]  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True)  # warm the file cache
        walls = [timed(argv) for _ in range(repeats)]
        req = Requests(np.zeros(n), np.full(n, lin), np.full(n, lout))
        with tempfile.TemporaryDirectory(prefix="peers-lss-") as tmp:
            trace = Path(tmp) / "vidur.csv"
            write_vidur_trace(trace, req)
            cmd = vidur_command(
                str(venv / "bin" / "python"), trace, Path(tmp) / "out", venv / "vidur_cache"
            )
            v_wall = timed(cmd, env=vidur_env(), cwd=Path(tmp))
        s_wall = statistics.median(walls)
        rows.append(
            {
                "workload": name,
                "llmservingsim_published_s": published,
                "servesim_wall_s": s_wall,
                "vidur_wall_s": v_wall,
                "speedup_vs_llmservingsim": published / s_wall,
                "speedup_vs_vidur": v_wall / s_wall,
            }
        )
    return rows


# --------------------------------------------------------------------------- the table


def _f(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _pct(x: float) -> str:
    return f"{x * 100:+.0f}%"


def render_markdown(results: list[dict], lss: list[dict], meta: dict) -> str:
    """The comparison tables, as the README shows them."""
    lines = [
        f"Measured {meta['date']} on {meta['machine']} (Vidur {meta['vidur_version']}, "
        f"servesim {meta['servesim_version']}).",
        "",
        "**Wall time** (whole process; servesim median of "
        f"{meta['servesim_repeats']} runs, Vidur one run with its predictors cached)",
        "",
        "| workload | requests | rate req/s | Vidur s | servesim s | servesim in-process s "
        "| speed-up | servesim `--compiled on` s | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        w = r["workload"]
        compiled = r.get("servesim_compiled_wall_s")
        lines.append(
            f"| {w['name']} | {w['num_requests']:,} | {w['rate']:g} | {_f(r['vidur_wall_s'], 2)} "
            f"| {_f(r['servesim_wall_s'], 2)} | {_f(r['servesim_sim_wall_s'], 3)} "
            f"| {_f(r['speedup'], 0)}× | {_f(compiled, 2) if compiled else '–'} "
            f"| {_f(r['speedup_compiled'], 0) + '×' if compiled else '–'} |"
        )
    lines += [
        "",
        "**Predicted metrics** (Vidur / servesim / relative difference (servesim − Vidur) / Vidur; "
        "ms, output tokens/s)",
        "",
        "| workload | TTFT p50 | TTFT p99 | TPOT p50 | TPOT p99 | E2E p50 | E2E p99 | throughput |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = []
        for k in METRIC_KEYS:
            digits = 0 if k == "output_throughput" or "e2el" in k else 1
            cells.append(
                f"{_f(r['vidur'][k], digits)} / {_f(r['servesim'][k], digits)} "
                f"({_pct(r['rel_diff'][k])})"
            )
        lines.append(f"| {r['workload']['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "servesim with chunked prefill off (whole prompts, as Vidur's vLLM scheduler runs them):",
        "",
        "| workload | TTFT p50 | TTFT p99 | TPOT p50 | TPOT p99 | E2E p50 | throughput |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m = r["servesim_no_chunked_prefill"]
        lines.append(
            f"| {r['workload']['name']} | {_f(m['median_ttft_ms'])} | {_f(m['p99_ttft_ms'])} "
            f"| {_f(m['median_tpot_ms'])} | {_f(m['p99_tpot_ms'])} | {_f(m['median_e2el_ms'], 0)} "
            f"| {_f(m['output_throughput'], 0)} |"
        )
    if lss:
        lines += [
            "",
            "**LLMServingSim's published workloads** (Llama-3.1-8B, all requests at t = 0; "
            "servesim on H100, Vidur on A100, the only GPU it has tables for here)",
            "",
            "| workload | LLMServingSim s (published) | Vidur s | servesim s | vs LLMServingSim "
            "| vs Vidur |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in lss:
            lines.append(
                f"| {r['workload']} | {r['llmservingsim_published_s']:.2f} "
                f"| {_f(r['vidur_wall_s'], 2)} | {_f(r['servesim_wall_s'], 3)} "
                f"| {_f(r['speedup_vs_llmservingsim'], 1)}× | {_f(r['speedup_vs_vidur'], 0)}× |"
            )
    return "\n".join(lines) + "\n"


def _meta(venv: Path, repeats: int) -> dict:
    import servesim

    version = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('vidur'))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "vidur_version": version or "?",
        "servesim_version": getattr(servesim, "__version__", "?"),
        "servesim_repeats": repeats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=Path(os.environ.get("VIDUR_VENV", DEFAULT_VENV)))
    ap.add_argument("--only", nargs="*", help="workload names (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="servesim runs per workload")
    ap.add_argument("--no-lss", action="store_true", help="skip the LLMServingSim workloads")
    ap.add_argument("--no-save", action="store_true", help="print only; keep results/ as is")
    ap.add_argument(
        "--no-compiled", action="store_true", help="skip the runs with --compiled on (numba)"
    )
    args = ap.parse_args()
    if not (args.venv / "bin" / "python").exists() or not (args.venv / "vidur_cache").exists():
        sys.exit(f"no Vidur environment at {args.venv}: run bash bench/peers/vidur/setup_vidur.sh")

    chosen = [w for w in WORKLOADS if not args.only or w.name in args.only]
    results = []
    for w in chosen:
        print(f"{w.name}: running ...", file=sys.stderr, flush=True)
        compiled = not args.no_compiled and importlib.util.find_spec("numba") is not None
        results.append(run_workload(w, args.venv, args.repeats, compiled))
        r = results[-1]
        print(
            f"{w.name}: Vidur {r['vidur_wall_s']:.1f} s, servesim {r['servesim_wall_s']:.2f} s "
            f"({r['speedup']:.0f}×)",
            file=sys.stderr,
            flush=True,
        )
    lss = [] if args.no_lss else llmservingsim_rows(args.venv, max(args.repeats, 5))
    meta = _meta(args.venv, args.repeats)
    table = render_markdown(results, lss, meta)
    print(table)
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "comparison.md").write_text(table)
        payload = {"meta": meta, "workloads": results, "llmservingsim": lss}
        (RESULTS / "comparison.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
