"""Measure real forward steps on a GPU and write them as a servesim step log.

A random-weight model is built from a config the servesim catalog ships (transformers +
PyTorch, ``from_config``: no download), then prefill and decode steps over a grid of batch
sizes and context lengths are timed with CUDA events after warm-up. Each timed repeat is
one ``"type": "step"`` line with the exact per-row batch (``new_tokens``, ``context_lens``)
and ``phases`` (``forward``: the model, ``sample``: argmax over the last logits), ready for
``servesim calibrate`` and ``servesim analyze``. The first line (``"type": "meta"``)
records the command, GPU, and torch / transformers / CUDA versions.

    python bench/gpu/measure_steps.py --model llama-3.2-1b --out data/measured/steps.jsonl
    servesim calibrate data/measured/steps.jsonl --model data/measured/config.json \\
        --hardware h100 --software "transformers 4.x sdpa" --holdout 0.25

What it measures is a PyTorch/transformers forward (SDPA attention, contiguous KV cache, no
CUDA graphs), not a serving engine: calibrate a serving engine from its own step log
(``servesim.profile.step``). ``--layers N`` truncates the model to N layers (faster, fits
smaller GPUs); the truncated ``config.json`` is written next to the log — pass that path as
``--model`` so the cost model counts the same layers.

Needs a CUDA GPU, torch and transformers; importing this file needs neither.
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DECODE_CONTEXTS = (128, 512, 2048, 8192)
PREFILL_TOKENS = (16, 32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)
PREFILL_CONTEXTS = (0, 2048, 8192)
QUICK = {
    "decode_batches": (1, 8, 64),
    "decode_contexts": (512, 4096),
    "prefill_tokens": (64, 256, 1024),
    "prefill_contexts": (0, 2048),
}


def grid(quick: bool = False) -> list[tuple[int, int, int]]:
    """(batch, new tokens per row, context per row) of every point to time.

    Decode points: ``new = 1``. Prefill points: one row, except 2 rows for 2048+ tokens (two
    prompts of a batch). Uniform rows keep the HF batch unpadded.
    """
    db = QUICK["decode_batches"] if quick else DECODE_BATCHES
    dc = QUICK["decode_contexts"] if quick else DECODE_CONTEXTS
    pt = QUICK["prefill_tokens"] if quick else PREFILL_TOKENS
    pc = QUICK["prefill_contexts"] if quick else PREFILL_CONTEXTS
    points = [(b, 1, c) for b in db for c in dc]
    for t in pt:
        rows = 2 if t >= 2048 else 1
        points += [(rows, t // rows, c) for c in pc]
    return points


def step_record(
    index: int, start_s: float, forward_s: float, sample_s: float, batch: int, new: int, ctx: int
) -> dict[str, Any]:
    """One step-log line (servesim's format) for a uniform batch."""
    decode = batch if new == 1 and ctx > 0 else 0
    return {
        "type": "step",
        "step": index,
        "start_s": start_s,
        "duration_s": forward_s + sample_s,
        "batch_size": batch,
        "prefill_tokens": batch * new - decode,
        "decode_tokens": decode,
        "context_tokens": batch * ctx,
        "phases": {"forward": forward_s, "sample": sample_s},
        "new_tokens": [new] * batch,
        "context_lens": [ctx] * batch,
    }


def kv_bytes_per_token(config: dict[str, Any], dtype_bytes: int) -> int:
    """K and V bytes per token over all layers (standard multi-head / GQA attention)."""
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * dtype_bytes


def catalog_config(name: str) -> tuple[str, dict[str, Any]]:
    """(catalog id, HF config dict) of a servesim catalog model (or a config.json path)."""
    from servesim.model import list_models, load_model

    spec = load_model(name)
    for entry in list_models():
        if entry.id == spec.name:
            return entry.id, json.loads(entry.path.read_text())
    path = Path(name)
    return spec.name, json.loads((path / "config.json" if path.is_dir() else path).read_text())


def _build_model(config: dict[str, Any], dtype: Any) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(config)
    hf_config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(
            hf_config, torch_dtype=dtype, attn_implementation="sdpa"
        )
    return model.eval()


def _logits_kwarg(model: Any) -> dict[str, int]:
    """Ask for the last position's logits only (the LM head runs once per sequence, as in a
    serving engine); the keyword changed name across transformers versions."""
    params = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: 1}
    return {}


def time_point(
    model: Any, batch: int, new: int, ctx: int, warmup: int, repeats: int, vocab: int
) -> list[tuple[float, float, float]]:
    """(start perf_counter s, forward s, sample s) of each timed repeat at one grid point."""
    import torch
    from transformers import DynamicCache

    extra = _logits_kwarg(model)
    ids = torch.randint(0, vocab, (batch, new), device="cuda")
    cache = DynamicCache()
    # Fill the context in chunks of <= 8192 tokens per forward (activations stay small).
    chunk = max(1, 8192 // batch)
    for lo in range(0, ctx, chunk):
        hi = min(ctx, lo + chunk)
        prefix = torch.randint(0, vocab, (batch, hi - lo), device="cuda")
        model(
            input_ids=prefix,
            past_key_values=cache,
            use_cache=True,
            cache_position=torch.arange(lo, hi, device="cuda"),
            **extra,
        )
    out = []
    events = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
    for i in range(warmup + repeats):
        positions = torch.arange(ctx, ctx + new, device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        events[0].record()
        logits = model(
            input_ids=ids,
            past_key_values=cache,
            use_cache=True,
            cache_position=positions,
            **extra,
        ).logits
        events[1].record()
        logits[:, -1].argmax(dim=-1)
        events[2].record()
        torch.cuda.synchronize()
        if ctx:
            cache.crop(ctx)  # drop this step's tokens so every repeat sees the same context
        else:
            cache = DynamicCache()
        if i >= warmup:
            fwd = events[0].elapsed_time(events[1]) / 1e3
            smp = events[1].elapsed_time(events[2]) / 1e3
            out.append((start, fwd, smp))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="llama-3.2-1b", help="servesim catalog model")
    parser.add_argument("--out", type=Path, required=True, help="step log to write (JSONL)")
    parser.add_argument("--layers", type=int, default=None, help="keep only N layers")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--kv-budget-gib",
        type=float,
        default=40.0,
        help="skip grid points whose KV cache would exceed this",
    )
    parser.add_argument("--quick", action="store_true", help="a small grid (smoke test)")
    args = parser.parse_args(argv)

    try:
        import torch
        import transformers
    except ImportError as err:
        sys.exit(f"measure_steps needs torch and transformers: {err}")
    if not torch.cuda.is_available():
        sys.exit("measure_steps needs a CUDA GPU")

    model_id, config = catalog_config(args.model)
    if args.layers:
        config["num_hidden_layers"] = args.layers
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config_path = args.out.parent / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = _build_model(config, dtype)
    per_token = kv_bytes_per_token(config, 2)
    meta = {
        "type": "meta",
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "model": model_id,
        "layers": config["num_hidden_layers"],
        "config": str(config_path),
        "dtype": args.dtype,
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "attention": "sdpa",
        "warmup": args.warmup,
        "repeats": args.repeats,
    }
    index = 0
    with args.out.open("w") as f:
        f.write(json.dumps(meta) + "\n")
        for batch, new, ctx in grid(args.quick):
            if per_token * batch * (ctx + new) > args.kv_budget_gib * 2**30:
                continue
            with torch.inference_mode():
                timings = time_point(
                    model, batch, new, ctx, args.warmup, args.repeats, config["vocab_size"]
                )
            for start, fwd, smp in timings:
                f.write(json.dumps(step_record(index, start, fwd, smp, batch, new, ctx)) + "\n")
                index += 1
            med = statistics.median(t[1] + t[2] for t in timings)
            print(f"batch {batch:4d} new {new:5d} ctx {ctx:5d}: {med * 1e3:8.3f} ms", flush=True)
            torch.cuda.empty_cache()
    print(f"wrote {index} steps to {args.out} (config: {config_path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
