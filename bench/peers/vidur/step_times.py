"""One forward step, Vidur's measured operator profiles against servesim's cost model.

    python bench/peers/vidur/step_times.py      # prints and writes results/step_times.md
    python bench/peers/vidur/step_times.py --gemm-efficiency   # the A100 catalog figure

Two GPUs, each with the model Vidur profiled on it (``profiles/SOURCES.md``):

- A100-80GB, Meta-Llama-3-8B (servesim ``llama-3.1-8b``, the same shapes): Vidur's MLP table and
  the attention rows transcribed from its attention table;
- H100, Llama-2-7B (servesim ``meta-llama/Llama-2-7b-hf``): Vidur's MLP table only. Its H100
  attention table is a Git-LFS file no public copy of which could be read, so on the H100 only
  the linear operators are compared; and its MLP table stops at 4,096 tokens, so do the prompts.

servesim is run at both rungs of its cost model: the roofline (``CostParams()``) and the measured
kernel tables (``CostParams(kernel_tables=True, custom_allreduce=True)``). Prefill steps hold one
prompt (128 … 8,192 tokens, no cache), decode steps a batch of 1 … 256 sequences at 512 … 4,096
cached tokens each (the batch × context points Vidur's profile measured).

Vidur's step is its per-layer sum over 32 layers: the linear/norm/rope/add operators of the
MLP table at the step's token count, plus attention (decode: +10% for a GQA batch, Vidur's
``attention_decode_batching_overhead_fraction``) and ``attn_kv_cache_save``. It has no LM
head, embedding, final norm, sampling or host time, so those servesim operators (and servesim's
host and per-step overhead) are left out of the comparison; servesim's ``attention`` operator
(kernel and KV-cache write) is compared with Vidur's attention plus ``attn_kv_cache_save``, its
fused ``add_rmsnorm`` with Vidur's two norms and residual add. Table values are interpolated
here, where Vidur predicts them with random forests (0.1-1% error on these tables); the new
comparison reads Vidur's measured rows directly (prefill lengths and decode points are all rows
of the profile). The two tables at the end, kept from the first comparison, time the whole
servesim step (roofline) against fitted Vidur rows.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import profiles  # noqa: E402

LAYERS = 32
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
OTHER_OPS = ("mlp_act", "input_layernorm", "post_attention_layernorm", "attn_rope", "add")
LINEAR_OPS = GEMM_OPS + OTHER_OPS
DECODE_BATCHING_OVERHEAD = 0.1  # Vidur's attention_decode_batching_overhead_fraction

# servesim operators Vidur has no counterpart for (it times the transformer layers only).
NOT_IN_VIDUR = ("embedding", "final_norm", "lm_head", "sampler")
RUNGS = ("roofline", "kernel tables")
DECODE_BATCHES = (1, 8, 32, 64, 128, 256)
COMMAND = "python bench/peers/vidur/step_times.py"


@dataclass(frozen=True)
class Case:
    """One GPU: Vidur's tables of the model it profiled there, and servesim's ids for both."""

    hardware: str
    vidur_model: str
    model: str
    mlp_table: Path
    attention_samples: Path | None  # None: Vidur's attention table is not available
    prompts: tuple[int, ...]
    contexts: tuple[int, ...]


CASES = (
    Case(
        "A100-80GB",
        "Meta-Llama-3-8B",
        "llama-3.1-8b",
        profiles.MLP_TABLE,
        profiles.ATTENTION_SAMPLES,
        (128, 256, 512, 1024, 2048, 4096, 8192),
        (512, 1024, 2048, 4096),
    ),
    Case(
        "H100",
        "Llama-2-7b-hf",
        "meta-llama/Llama-2-7b-hf",
        profiles.PROFILES / "h100_llama2_7b_mlp_tp1.csv",
        None,
        (128, 256, 512, 1024, 2048, 4096),
        (512,),  # linear operators do not depend on the context
    ),
)


@dataclass(frozen=True)
class Parts:
    """One step's time split the way both sides can be compared, ms."""

    gemm: float
    """The four projections: QKV, O, gate/up, down."""
    other: float
    """Norms, residual add, rope, activation."""
    attention: float | None
    """Attention kernel and KV-cache write (None: not compared)."""

    @property
    def linear(self) -> float:
        return self.gemm + self.other

    @property
    def total(self) -> float:
        return self.linear + (self.attention or 0.0)


@dataclass(frozen=True)
class Row:
    """One step: Vidur's parts, its KV-cache write (inside ``attention``), servesim's per rung."""

    phase: str
    label: tuple[int, ...]
    vidur: Parts
    kv_save: float | None
    ours: dict[str, Parts]


# --------------------------------------------------------------------------- Vidur's side


@cache
def _mlp_columns(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    header, rows = profiles.mlp_rows(path)
    col = {h: i for i, h in enumerate(header)}
    n = np.array([float(r[col["num_tokens"]]) for r in rows])
    order = np.argsort(n, kind="stable")
    times = {
        op: np.array([float(r[col[f"time_stats.{op}.median"]]) for r in rows])[order]
        for op in LINEAR_OPS
    }
    return n[order], times


def vidur_ops_ms(tokens: float, ops: tuple[str, ...], path: Path = profiles.MLP_TABLE) -> float:
    """Per-step time of ``ops`` from a Vidur MLP table at ``tokens`` tokens, ms."""
    n, times = _mlp_columns(path)
    return LAYERS * sum(float(np.interp(tokens, n, times[op])) for op in ops)


def vidur_linear_ms(tokens: float) -> float:
    """Per-step time of the non-attention operators from Vidur's A100 MLP table, ms."""
    return vidur_ops_ms(tokens, LINEAR_OPS)


def measured_decode(samples: profiles.Samples, batch: int, kv: int) -> tuple[float, float]:
    """(attn_decode, attn_kv_cache_save) of Vidur's measured row, ms per layer."""
    d = samples.decode
    hit = d[(d[:, 0] == batch) & (d[:, 1] == kv)]
    if len(hit) != 1:
        raise KeyError(f"no measured decode row at batch {batch}, kv {kv}")
    return float(hit[0, 2]), float(hit[0, 3])


def vidur_parts(
    case: Case, att: profiles.AttentionModel | None, new_tokens: int, batch: int, kv: int
) -> tuple[Parts, float | None]:
    """(Vidur's parts, its KV-cache write) of a prefill (``batch`` 1, ``kv`` 0) or a decode."""
    tokens = new_tokens * batch
    gemm = vidur_ops_ms(tokens, GEMM_OPS, case.mlp_table)
    other = vidur_ops_ms(tokens, OTHER_OPS, case.mlp_table)
    if att is None:
        return Parts(gemm, other, None), None
    if kv == 0:
        if new_tokens not in att.samples.full_chunk:
            raise KeyError(f"no measured prefill row at {new_tokens} tokens")
        kernel, save = float(att.full_prefill(new_tokens)), float(att.full_save(new_tokens))
    else:
        kernel, save = measured_decode(att.samples, batch, kv)
        kernel *= 1.0 + DECODE_BATCHING_OVERHEAD * (batch > 1)
    return Parts(gemm, other, LAYERS * (kernel + save)), LAYERS * save


# --------------------------------------------------------------------------- servesim's side


def servesim_parts(cost, new_tokens: np.ndarray, context: np.ndarray, attention: bool) -> Parts:
    """servesim's operator seconds of one step, grouped as :class:`Parts`, ms."""
    gemm = other = attn = 0.0
    for op in cost.operator_breakdown(new_tokens, context):
        if op.name in NOT_IN_VIDUR:
            continue
        if op.group in ("qkv_o", "mlp"):
            gemm += op.seconds
        elif op.group == "attention":
            attn += op.seconds
        elif op.group == "norm_other":
            other += op.seconds
        else:
            raise ValueError(f"operator {op.name} ({op.group}) has no place in the comparison")
    return Parts(gemm * 1e3, other * 1e3, attn * 1e3 if attention else None)


def rung_costs(case: Case) -> dict:
    from servesim.cost import build_step_cost
    from servesim.cost.params import CostParams
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    model, hw = load_model(case.model), load_hardware(case.hardware)
    params = {
        "roofline": CostParams(kernel_tables=False),
        "kernel tables": CostParams(kernel_tables=True, custom_allreduce=True),
    }
    return {rung: build_step_cost(model, hw, params=p) for rung, p in params.items()}


def compare(case: Case) -> list[Row]:
    """Every prefill and decode step of ``case``, both sides."""
    att = None
    if case.attention_samples is not None:
        att = profiles.fit(profiles.read_samples(case.attention_samples))
    costs = rung_costs(case)
    rows = []
    steps = [("prefill", (s,), s, 1, 0) for s in case.prompts]
    for kv in case.contexts:
        for b in DECODE_BATCHES:
            if att is not None and b * kv > profiles.PROFILE_MAX_TOKENS:
                continue  # Vidur's profile stops there (and the KV cache outgrows the GPU)
            label = (b, kv) if att is not None else (b,)
            steps.append(("decode", label, 1, b, kv))
    for phase, label, new, b, kv in steps:
        vidur, save = vidur_parts(case, att, new, b, kv)
        new_tokens, context = np.full(b, float(new)), np.full(b, float(kv))
        ours = {
            rung: servesim_parts(cost, new_tokens, context, att is not None)
            for rung, cost in costs.items()
        }
        rows.append(Row(phase, label, vidur, save, ours))
    return rows


# --------------------------------------------------------------------------- the report


def _err(ours: float, vidur: float) -> float:
    return ours / vidur - 1.0


def medians(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Median |servesim / Vidur − 1| per rung: step totals (overall, prefill, decode), linear
    operators, their GEMMs, attention; with Vidur's attention, also the attention kernel and the
    step without Vidur's KV-cache write. Without it, the step is its linear operators."""
    has_attention = rows[0].vidur.attention is not None

    def save(r: Row) -> float:
        return r.kv_save or 0.0

    picks = {  # name: (servesim's value, Vidur's value, which rows)
        "overall": (lambda p: p.total, lambda r: r.vidur.total, None),
        "prefill": (lambda p: p.total, lambda r: r.vidur.total, "prefill"),
        "decode": (lambda p: p.total, lambda r: r.vidur.total, "decode"),
        "linear ops": (lambda p: p.linear, lambda r: r.vidur.linear, None),
        "of which GEMMs": (lambda p: p.gemm, lambda r: r.vidur.gemm, None),
    }
    if has_attention:
        picks["attention"] = (lambda p: p.attention, lambda r: r.vidur.attention, None)
        picks["attention kernel (Vidur's KV save left out)"] = (
            lambda p: p.attention,
            lambda r: r.vidur.attention - save(r),
            None,
        )
        picks["step (Vidur's KV save left out)"] = (
            lambda p: p.total,
            lambda r: r.vidur.total - save(r),
            None,
        )
    else:
        del picks["overall"]  # the same as "linear ops"
    out: dict[str, dict[str, float]] = {}
    for rung in RUNGS:
        out[rung] = {}
        for name, (ours, vidur, phase) in picks.items():
            errs = [
                abs(_err(ours(r.ours[rung]), vidur(r)))
                for r in rows
                if phase is None or r.phase == phase
            ]
            out[rung][name] = float(np.median(errs))
    return out


def _cell(ours: float, vidur: float) -> str:
    return f"{ours:.2f} ({round(_err(ours, vidur) * 100):+d}%)"


def case_tables(case: Case, rows: list[Row]) -> list[str]:
    has_attention = case.attention_samples is not None
    lines = [f"## {case.hardware}: Vidur {case.vidur_model} ↔ servesim `{case.model}`", ""]
    if not has_attention:
        lines += [
            "Linear operators only (Vidur's H100 attention table is not available; see "
            "`profiles/SOURCES.md`), so *step* below means the linear operators of the step.",
            "",
        ]
    for phase in ("prefill", "decode"):
        part = [r for r in rows if r.phase == phase]
        keys = "prompt tokens" if phase == "prefill" else "batch | context"
        if phase == "decode" and not has_attention:
            keys = "batch"
        head = f"| {keys} | Vidur linear | roofline | kernel tables |"
        rule = "|---:" * (len(keys.split("|")) + 3) + "|"
        if has_attention:
            head += " Vidur attention (KV save) | roofline | kernel tables |"
            head += " Vidur step | roofline | kernel tables |"
            rule += "---:|" * 6
        what = "one prompt, no cache" if phase == "prefill" else "every sequence at the context"
        lines += [f"{phase.capitalize()} steps ({what}), ms; servesim (its error):", "", head, rule]
        for r in part:
            v, ro, kt = r.vidur, r.ours["roofline"], r.ours["kernel tables"]
            cells = [" | ".join(f"{x:,}" for x in r.label), f"{v.linear:.2f}"]
            cells += [_cell(ro.linear, v.linear), _cell(kt.linear, v.linear)]
            if has_attention:
                cells += [f"{v.attention:.2f} ({r.kv_save:.2f})"]
                cells += [_cell(ro.attention, v.attention), _cell(kt.attention, v.attention)]
                cells += [f"{v.total:.2f}", _cell(ro.total, v.total), _cell(kt.total, v.total)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    med = medians(rows)
    lines += [
        "Median |servesim / Vidur − 1|:",
        "",
        "| | roofline | kernel tables |",
        "|---|---:|---:|",
    ]
    for key in med["roofline"]:
        a, b = med["roofline"][key], med["kernel tables"][key]
        name = key if has_attention or key not in ("prefill", "decode") else f"{key} (linear ops)"
        lines.append(f"| {name} | {a * 100:.0f}% | {b * 100:.0f}% |")
    lines.append("")
    return lines


def whole_step_tables() -> list[str]:
    """The first comparison (kept): servesim's whole step, roofline, against fitted Vidur rows."""
    from servesim.cost import build_step_cost
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    cost = build_step_cost(load_model("llama-3.1-8b"), load_hardware("A100-80GB"))
    att = profiles.fit(profiles.read_samples())
    lines = [
        "Decode step, every sequence at 640 cached tokens (ms):",
        "",
        "| batch | Vidur linear | Vidur attention | Vidur total | servesim | servesim vs Vidur |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for b in (1, 8, 32, 64, 128, 256):
        lin = vidur_linear_ms(b)
        attn = LAYERS * float(att.decode(b, 640)) * (1.1 if b > 1 else 1.0)
        total = lin + attn + LAYERS * float(att.decode_kv_save(b))
        ours = cost.step_seconds(np.ones(b), np.full(b, 640.0)) * 1e3
        lines.append(
            f"| {b} | {lin:.2f} | {attn:.2f} | {total:.2f} | {ours:.2f} "
            f"| {(ours / total - 1) * 100:+.0f}% |"
        )
    lines += [
        "",
        "Prefill step of whole 512-token prompts, no cache (ms):",
        "",
        "| prompts | Vidur linear | Vidur attention | Vidur KV save | Vidur total | servesim "
        "| servesim vs Vidur |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in (1, 2, 4, 8):
        tokens = 512 * k
        lin = vidur_linear_ms(tokens)
        attn = LAYERS * k * float(att.full_prefill(512))
        save = LAYERS * float(att.full_save(tokens))
        total = lin + attn + save
        ours = cost.step_seconds(np.full(k, 512.0), np.zeros(k)) * 1e3
        lines.append(
            f"| {k} | {lin:.1f} | {attn:.1f} | {save:.1f} | {total:.1f} | {ours:.1f} "
            f"| {(ours / total - 1) * 100:+.0f}% |"
        )
    return lines


# --------------------------------------------------------------------------- GEMM efficiency

# Weight elements of each projection of Llama-3-8B (hidden 4096, 8 KV heads of 128, FFN 14336).
GEMM_WEIGHTS = {
    "attn_pre_proj": 4096 * (4096 + 2 * 8 * 128),
    "attn_post_proj": 4096 * 4096,
    "mlp_up_proj": 4096 * 2 * 14336,
    "mlp_down_proj": 14336 * 4096,
}
A100_BF16_PEAK = 312e12


def gemm_efficiency() -> None:
    """Achieved fraction of the A100's dense bf16 peak in Vidur's measured projections (2·M·K·N
    FLOPs over the summed median times), per token count: the catalog's ``compute_efficiency``."""
    header, rows = profiles.mlp_rows()
    col = {h: i for i, h in enumerate(header)}
    print("tokens  " + "  ".join(f"{op:>14}" for op in GEMM_WEIGHTS) + "  all projections")
    large = []
    for r in rows:
        m = int(float(r[col["num_tokens"]]))
        power_of_two = m & (m - 1) == 0
        if m < 64 or not (power_of_two or m % 4096 == 0):
            continue  # powers of two from 64, and multiples of 4,096
        effs, flops, seconds = [], 0.0, 0.0
        for op, weights in GEMM_WEIGHTS.items():
            t = float(r[col[f"time_stats.{op}.median"]]) * 1e-3
            effs.append(2 * m * weights / t / A100_BF16_PEAK)
            flops, seconds = flops + 2 * m * weights, seconds + t
        eff = flops / seconds / A100_BF16_PEAK
        if m >= 512:
            large.append(eff)
        print(f"{m:>6}  " + "  ".join(f"{e:>14.3f}" for e in effs) + f"  {eff:>15.3f}")
    print(f"median at >= 512 tokens: {np.median(large):.3f} (catalog: compute_efficiency)")


def kv_save_note(tokens: int = 2048) -> str:
    """Vidur's KV-cache write of one prompt, against what HBM would take (it dominates its
    prefill attention)."""
    att = profiles.fit(profiles.read_samples())
    ms = float(att.full_save(tokens))
    nbytes = tokens * 2 * profiles.N_KV_HEAD * (profiles.N_EMBD // profiles.N_Q_HEAD) * 2
    return (
        f"NOTE: Vidur's A100 profile times the KV-cache write of one {tokens:,}-token prompt at "
        f"{ms:.2f} ms per layer: {nbytes / 1e6:.1f} MB of K and V at {nbytes / ms / 1e6:.0f} GB/s, "
        "a few µs of HBM time. It is most of Vidur's prefill attention, hence the rows without it."
    )


def main() -> None:
    if "--gemm-efficiency" in sys.argv[1:]:
        gemm_efficiency()
        return
    lines = [
        "# One forward step: servesim against Vidur's measured operator profiles",
        "",
        f"`{COMMAND}` (Vidur's tables: `bench/peers/vidur/profiles/SOURCES.md`). servesim at "
        "both rungs: roofline `CostParams()`, kernel tables `CostParams(kernel_tables=True, "
        "custom_allreduce=True)`. Left out on servesim's side: embedding, final norm, LM head, "
        "sampler, host and per-step overhead (Vidur has none of them). servesim's `attention` "
        "(kernel and KV-cache write) stands against Vidur's attention plus `attn_kv_cache_save`, "
        "whose share is in brackets.",
        "",
        kv_save_note(),
        "",
    ]
    summary = []
    for case in CASES:
        rows = compare(case)
        lines += case_tables(case, rows)
        med = medians(rows)
        summary.append(
            f"{case.hardware}: "
            + "; ".join(
                f"{k} {med['roofline'][k] * 100:.0f}% -> {med['kernel tables'][k] * 100:.0f}%"
                for k in med["roofline"]
            )
        )
    lines += ["## Whole steps (the first comparison, A100, servesim roofline)", ""]
    lines += whole_step_tables()
    text = "\n".join(lines) + "\n"
    print(text)
    print("median |error| roofline -> kernel tables")
    print("\n".join(summary))
    out = Path(__file__).resolve().parent / "results" / "step_times.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
