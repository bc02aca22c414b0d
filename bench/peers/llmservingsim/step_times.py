"""One forward step, LLMServingSim's measured H100 tables against servesim's cost model.

    python bench/peers/llmservingsim/tables.py --from-git /path/to/LLMServingSim/.git  # once
    python bench/peers/llmservingsim/step_times.py   # prints and writes results/step_times.md

LLMServingSim (github.com/casys-kaist/LLMServingSim, MIT) prices a step from tables measured on
real GPUs (``SOURCES.md``). On the H100, the one GPU of theirs servesim's catalog has, there are:

- ``layers.csv`` (per-layer operator times by token count, 1 … 2,048 tokens, no KV cache) for
  Llama-3.1-8B at TP 1 and 2, Llama-3.1-70B at TP 1, 2 and 4, Mixtral-8x7B at TP 1, 2 and 4;
- ``attention.csv`` (FlashAttention-2 ``flash_attn_varlen_func`` times by chunk, keys and batch)
  for Llama-3.1-70B and Mixtral-8x7B at TP 4 only.

So three comparisons: every ``layers.csv`` operator against servesim's by token count; the
attention rows of both TP-4 tables against servesim's ``attention``; and whole steps where both
kinds of table exist (Llama-3.1-70B, TP 4), composed as LLMServingSim's trace generator composes
them: embedding, then per layer every block operator and attention, then final norm and LM head
(LM head at one row per sequence). All times are per GPU.

servesim runs at both rungs of its cost model: the roofline (``CostParams()``) and the measured
kernel tables (``CostParams(kernel_tables=True, custom_allreduce=True)``).

What each side leaves out, and so is left out of the comparison:

- servesim's ``all_reduce`` and ``logits_gather`` (LLMServingSim's tables are one GPU's kernels;
  its network simulator adds the collectives), ``sampler``, host and per-step overhead;
- LLMServingSim's ``attn`` rows of ``layers.csv`` (a full-prefill attention at no cache that
  its simulator reads only when the attention predictor fails; no profiler in the repository
  writes it), and for Mixtral its ``gate`` (router GEMM plus Hugging Face's routing bookkeeping:
  softmax, top-k, one-hot, nonzero) and its experts (``expert.w1/w2/w3``, ``act_fn``: one expert
  at a time, weights not split by TP), which have no one-to-one servesim operator;
- the residual adds, which LLMServingSim does not time and servesim fuses into ``add_rmsnorm``
  (compared with LLMServingSim's two RMSNorms); servesim's ``attention`` also writes the new
  tokens' K and V into the cache (a few µs at most here), LLMServingSim's kernel does not.

NOTE: LLMServingSim's decode rows are keyed ``(batch, kv)`` with ``kv`` the keys of the whole
batch (its profiler gives each of the ``batch`` sequences ``kv // batch`` keys), so a decode
step of ``b`` sequences at ``c`` keys each is compared with row ``(b, b·c)``; its simulator reads
``kv`` as per-sequence instead (last table of the report).
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402

GPU = "H100"
RUNGS = ("roofline", "kernel tables")
COMMAND = "python bench/peers/llmservingsim/step_times.py"

# servesim operator -> the LLMServingSim layers.csv rows it stands for (summed).
BLOCK_OPS = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "o_proj": ("o_proj",),
    "gate_up_proj": ("gate_proj", "up_proj"),
    "down_proj": ("down_proj",),
    "act_fn": ("act_fn",),
    "rope": ("rope",),
    "add_rmsnorm": ("input_layernorm", "post_layernorm"),
}
HEAD_OPS = {
    "embedding": ("embedding",),
    "final_norm": ("final_layernorm",),
    "lm_head": ("lm_head",),
}
GEMMS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
DENSE = tuple(BLOCK_OPS)
MIXTRAL_DENSE = ("qkv_proj", "o_proj", "rope", "add_rmsnorm")  # experts and gate left out

# servesim operators with no LLMServingSim table (see the module docstring).
NOT_COMPARED = ("sampler", "all_reduce", "logits_gather")

TOKENS = tuple(2**i for i in range(12))  # 1 … 2,048, the range of layers.csv
FULL_PREFILLS = (32, 64, 128, 256, 512, 1024)  # the table's chunk + keys stop at 2,048
CHUNKED_PREFILLS = ((128, 512), (128, 1024), (128, 1920), (256, 1024), (256, 1792), (512, 1536))
"""(chunk, keys in all): ``chunk`` new tokens after ``keys - chunk`` cached ones."""
DECODE_BATCHES = (1, 2, 8, 32, 64, 128, 256)
DECODE_KEYS = (32, 128, 512, 2048, 8192, 32768)
"""Keys per sequence; a (batch, keys) pair is kept where its row was measured (the profiler
stops at batch × whole-batch keys of 0.93M (70B) or 2.3M (Mixtral), so large batches have short
contexts only)."""
PREDICTION_POINTS = tuple((b, c) for c in (512, 2048) for b in (1, 8, 32, 64, 128, 256))
MISREAD_POINT = (128, 2048)  # quoted in the summary


@dataclass(frozen=True)
class Case:
    """One ``layers.csv``: servesim's model id (LLMServingSim's is the same) and the TP degree."""

    model: str
    tp: int
    ops: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.model.split('/')[1]} TP{self.tp}"


LAYER_CASES = (
    Case("meta-llama/Llama-3.1-8B", 1, DENSE),
    Case("meta-llama/Llama-3.1-8B", 2, DENSE),
    Case("meta-llama/Llama-3.1-70B", 1, DENSE),
    Case("meta-llama/Llama-3.1-70B", 2, DENSE),
    Case("meta-llama/Llama-3.1-70B", 4, DENSE),
    Case("mistralai/Mixtral-8x7B-v0.1", 1, MIXTRAL_DENSE),
    Case("mistralai/Mixtral-8x7B-v0.1", 2, MIXTRAL_DENSE),
    Case("mistralai/Mixtral-8x7B-v0.1", 4, MIXTRAL_DENSE),
)
ATTENTION_CASES = (LAYER_CASES[4], LAYER_CASES[7])
STEP_CASE = LAYER_CASES[4]


@dataclass(frozen=True)
class Pair:
    """One quantity, seconds: LLMServingSim's and servesim's per rung."""

    theirs: float
    ours: dict[str, float]

    def err(self, rung: str) -> float:
        return self.ours[rung] / self.theirs - 1.0


def _sum(pairs: list[Pair]) -> Pair:
    return Pair(sum(p.theirs for p in pairs), {r: sum(p.ours[r] for p in pairs) for r in RUNGS})


# --------------------------------------------------------------------------- servesim's side


def rung_costs(case: Case) -> dict:
    from servesim.cost import build_step_cost
    from servesim.cost.params import CostParams, Parallelism
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    model, hw, par = load_model(case.model), load_hardware(GPU), Parallelism(tp=case.tp)
    params = {
        "roofline": CostParams(kernel_tables=False),
        "kernel tables": CostParams(kernel_tables=True, custom_allreduce=True),
    }
    return {rung: build_step_cost(model, hw, par, p) for rung, p in params.items()}


def servesim_ops(cost, new_tokens: np.ndarray, context: np.ndarray) -> dict[str, float]:
    """servesim's seconds per operator of one step, per layer for the block operators (and
    attention), per step for the embedding, final norm and LM head."""
    layers = cost.model.num_layers
    out = {}
    for op in cost.operator_breakdown(new_tokens, context):
        if op.name in NOT_COMPARED:
            continue
        out[op.name] = op.seconds if op.name in HEAD_OPS else op.seconds / layers
    return out


# --------------------------------------------------------------------------- the comparisons


def linear_rows(case: Case) -> dict[int, dict[str, Pair]]:
    """tokens -> operator -> Pair, per layer (block operators) or per step (head operators).
    The step is ``tokens`` one-token sequences, so the LM head has as many rows as the table's."""
    theirs = tables.read_layers(tables.table_path(case.model, case.tp, "layers.csv"))
    costs = rung_costs(case)
    rows = {}
    for m in TOKENS:
        ours = {r: servesim_ops(c, np.ones(m), np.zeros(m)) for r, c in costs.items()}
        rows[m] = {
            op: Pair(sum(theirs[(n, m)] for n in names), {r: ours[r][op] for r in RUNGS})
            for op, names in (BLOCK_OPS | HEAD_OPS).items()
            if op in case.ops or op in HEAD_OPS
        }
    return rows


@dataclass(frozen=True)
class Point:
    """One step shape: ``batch`` sequences of ``new`` tokens after ``cached`` tokens each."""

    phase: str
    batch: int
    new: int
    cached: int

    @property
    def keys(self) -> int:
        return self.new + self.cached

    def label(self) -> list[str]:
        """Two cells: (batch, keys) for a decode, (new tokens, keys) for a prefill."""
        first = self.batch if self.phase == "decode" else self.new
        return [f"{first:,}", f"{self.keys:,}"]

    def theirs_attention(self, att: tables.AttentionTable) -> float:
        if self.phase == "decode":
            return att.decode[(self.batch, self.batch * self.keys)]
        return att.prefill[(self.new, self.keys)]


def points(att: tables.AttentionTable) -> list[Point]:
    out = [Point("prefill", 1, c, 0) for c in FULL_PREFILLS]
    out += [Point("prefill", 1, c, k - c) for c, k in CHUNKED_PREFILLS]
    out += [
        Point("decode", b, 1, c - 1)
        for b in DECODE_BATCHES
        for c in DECODE_KEYS
        if (b, b * c) in att.decode
    ]
    for p in out:
        p.theirs_attention(att)  # KeyError if the table lacks it
    return out


def _step_arrays(p: Point) -> tuple[np.ndarray, np.ndarray]:
    return np.full(p.batch, float(p.new)), np.full(p.batch, float(p.cached))


def attention_rows(case: Case) -> list[tuple[Point, Pair]]:
    att = tables.read_attention(tables.table_path(case.model, case.tp, "attention.csv"))
    costs = rung_costs(case)
    rows = []
    for p in points(att):
        ours = {r: servesim_ops(c, *_step_arrays(p))["attention"] for r, c in costs.items()}
        rows.append((p, Pair(p.theirs_attention(att), ours)))
    return rows


@dataclass(frozen=True)
class StepRow:
    point: Point
    linear: Pair
    """Embedding, every block operator of every layer, final norm, LM head."""
    attention: Pair
    """Attention of every layer."""

    @property
    def total(self) -> Pair:
        return _sum([self.linear, self.attention])


def step_rows(case: Case) -> list[StepRow]:
    """Whole steps, composed as LLMServingSim's trace generator composes its tables."""
    layers_t = tables.read_layers(tables.table_path(case.model, case.tp, "layers.csv"))
    att = tables.read_attention(tables.table_path(case.model, case.tp, "attention.csv"))
    costs = rung_costs(case)
    n_layers = next(iter(costs.values())).model.num_layers
    rows = []
    for p in points(att):
        tokens = p.batch * p.new
        ours = {r: servesim_ops(c, *_step_arrays(p)) for r, c in costs.items()}
        block = sum(layers_t[(n, tokens)] for op in case.ops for n in BLOCK_OPS[op])
        head = layers_t[("embedding", tokens)] + layers_t[("final_layernorm", tokens)]
        head += layers_t[("lm_head", p.batch)]  # one LM-head row per sequence
        linear_ours = {
            r: n_layers * sum(ours[r][op] for op in case.ops) + sum(ours[r][op] for op in HEAD_OPS)
            for r in RUNGS
        }
        attn_ours = {r: n_layers * ours[r]["attention"] for r in RUNGS}
        rows.append(
            StepRow(
                p,
                Pair(n_layers * block + head, linear_ours),
                Pair(n_layers * p.theirs_attention(att), attn_ours),
            )
        )
    return rows


def prediction_rows(case: Case) -> list[tuple[int, int, float, float, Pair]]:
    """What LLMServingSim's simulator charges for decode attention (its predictions, looked up
    with per-sequence keys) against servesim: (batch, keys, the measured row it stands on, …)."""
    pred = tables.read_decode_predictions(
        tables.table_path(case.model, case.tp, "predictions/attn_decode_predictions.csv")
    )
    att = tables.read_attention(tables.table_path(case.model, case.tp, "attention.csv"))
    costs = rung_costs(case)
    rows = []
    for b, c in PREDICTION_POINTS:
        p = Point("decode", b, 1, c - 1)
        ours = {r: servesim_ops(cc, *_step_arrays(p))["attention"] for r, cc in costs.items()}
        measured_as_read = att.decode.get((b, c), float("nan"))
        measured_true = att.decode.get((b, b * c), float("nan"))
        rows.append((b, c, measured_as_read, measured_true, Pair(pred[(b, c)], ours)))
    return rows


# --------------------------------------------------------------------------- the report


def median_abs(pairs: list[Pair], rung: str) -> float:
    return float(np.median([abs(p.err(rung)) for p in pairs]))


def _cell(pair: Pair, rung: str, scale: float, fmt: str) -> str:
    return f"{pair.ours[rung] * scale:{fmt}} ({round(pair.err(rung) * 100):+d}%)"


def _cells(pair: Pair, scale: float = 1e6, fmt: str = ".1f") -> list[str]:
    return [f"{pair.theirs * scale:{fmt}}"] + [_cell(pair, r, scale, fmt) for r in RUNGS]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    rule = "|" + "|".join("---:" for _ in head) + "|"
    return ["| " + " | ".join(head) + " |", rule] + ["| " + " | ".join(r) + " |" for r in rows]


OVERALL = "overall (70B TP4 steps)"
PREFILL, DECODE = "prefill (70B TP4 steps)", "decode (70B TP4 steps)"
LINEAR, GEMM = "linear ops (block, per layer; 8 tables)", "of which GEMMs"
ATTENTION = "attention (70B and Mixtral TP4)"
ATT_PREFILL, ATT_DECODE = "attention, prefill rows", "attention, decode rows"


def headline(
    linear: dict[Case, dict[int, dict[str, Pair]]],
    attention: dict[Case, list[tuple[Point, Pair]]],
    steps: list[StepRow],
) -> dict[str, list[Pair]]:
    """The pairs behind each headline median."""
    cases = [(c, ops) for c, rows in linear.items() for ops in rows.values()]
    att = [(p, pair) for rows in attention.values() for p, pair in rows]
    return {
        OVERALL: [s.total for s in steps],
        PREFILL: [s.total for s in steps if s.point.phase == "prefill"],
        DECODE: [s.total for s in steps if s.point.phase == "decode"],
        LINEAR: [_sum([ops[o] for o in c.ops]) for c, ops in cases],
        GEMM: [_sum([ops[o] for o in c.ops if o in GEMMS]) for c, ops in cases],
        ATTENTION: [pair for _, pair in att],
        ATT_PREFILL: [pair for p, pair in att if p.phase == "prefill"],
        ATT_DECODE: [pair for p, pair in att if p.phase == "decode"],
    }


def operator_pairs(linear: dict[Case, dict[int, dict[str, Pair]]]) -> dict[str, list[Pair]]:
    """Every compared operator's pairs over all ``layers.csv`` tables and token counts."""
    return {
        op: [ops[op] for rows in linear.values() for ops in rows.values() if op in ops]
        for op in tuple(BLOCK_OPS) + tuple(HEAD_OPS)
    }


@dataclass(frozen=True)
class Findings:
    """Facts about LLMServingSim's attention tables the report states, computed from them."""

    prediction_ratio: dict[str, tuple[float, float]]
    """Case label -> median (prefill, decode) prediction / measured row at the same key."""
    long_keys: int
    long_seconds: float
    long_kv_bytes: float
    long_ours: dict[str, float]
    misread: tuple[int, int, float, dict[str, float]]
    """A decode step the simulator's per-sequence reading undercharges: (batch, keys per
    sequence, what it charges, servesim per rung), seconds."""


def findings() -> Findings:
    ratios = {}
    for case in ATTENTION_CASES:
        att = tables.read_attention(tables.table_path(case.model, case.tp, "attention.csv"))
        pre = tables.read_prefill_predictions(
            tables.table_path(case.model, case.tp, "predictions/attn_prefill_predictions.csv")
        )
        dec = tables.read_decode_predictions(
            tables.table_path(case.model, case.tp, "predictions/attn_decode_predictions.csv")
        )
        ratios[case.label] = (
            float(np.median([pre[k] / v for k, v in att.prefill.items() if k in pre])),
            float(np.median([dec[k] / v for k, v in att.decode.items() if k in dec])),
        )
    case = STEP_CASE
    att = tables.read_attention(tables.table_path(case.model, case.tp, "attention.csv"))
    keys = max(kv for b, kv in att.decode if b == 1)
    head_dim = 128  # every model here
    kv_bytes = keys * 2 * (att.n_kv_head // att.tp) * head_dim * 2  # K and V, fp16
    p = Point("decode", 1, 1, keys - 1)
    ours = {r: servesim_ops(c, *_step_arrays(p))["attention"] for r, c in rung_costs(case).items()}
    b, c = MISREAD_POINT
    charged = next(pair for bb, cc, _, _, pair in prediction_rows(case) if (bb, cc) == (b, c))
    misread = (b, c, charged.theirs, charged.ours)
    return Findings(ratios, keys, att.decode[(1, keys)], kv_bytes, ours, misread)


def report() -> tuple[str, dict[str, dict[str, float]]]:
    linear = {c: linear_rows(c) for c in LAYER_CASES}
    attention = {c: attention_rows(c) for c in ATTENTION_CASES}
    steps = step_rows(STEP_CASE)
    groups = headline(linear, attention, steps)
    med = {r: {k: median_abs(v, r) for k, v in groups.items()} for r in RUNGS}
    per_op = operator_pairs(linear)
    op_med = {r: {op: median_abs(v, r) for op, v in per_op.items()} for r in RUNGS}
    found = findings()

    lines = [
        "# One forward step: servesim against LLMServingSim's measured H100 tables",
        "",
        f"`{COMMAND}` (LLMServingSim's tables: `bench/peers/llmservingsim/SOURCES.md`; "
        "what is compared and what is left out: the docstring of `step_times.py`). servesim at "
        "both rungs: roofline `CostParams()`, kernel tables `CostParams(kernel_tables=True, "
        "custom_allreduce=True)`. Cells: LLMServingSim, then servesim (its error). Every time "
        "is one GPU's; collectives, sampler, host and per-step overhead are left out.",
        "",
        "## Median |servesim / LLMServingSim − 1|",
        "",
    ]
    lines += _table(
        ["", "rows", "roofline", "kernel tables"],
        [[k, str(len(groups[k]))] + [f"{med[r][k] * 100:.0f}%" for r in RUNGS] for k in groups],
    )
    lines += ["", "Per operator, over the 8 `layers.csv` tables × 12 token counts:", ""]
    lines += _table(
        ["servesim", "LLMServingSim", "rows", "roofline", "kernel tables"],
        [
            [f"`{op}`", " + ".join((BLOCK_OPS | HEAD_OPS)[op]), str(len(pairs))]
            + [f"{op_med[r][op] * 100:.0f}%" for r in RUNGS]
            for op, pairs in per_op.items()
        ],
    )

    lines += ["", "## Linear operators by token count (per layer, µs)", ""]
    for case, rows in linear.items():
        lines += [f"{case.label} ({', '.join(case.ops)}):", ""]
        body = []
        for m, ops in rows.items():
            lin = _sum([ops[o] for o in case.ops])
            gemm = _sum([ops[o] for o in case.ops if o in GEMMS])
            body.append([f"{m:,}"] + _cells(lin) + _cells(gemm) + _cells(ops["lm_head"]))
        head = ["tokens", "LLMServingSim", "roofline", "kernel tables"]
        head += ["GEMMs", "roofline", "kernel tables", "LM head", "roofline", "kernel tables"]
        lines += _table(head, body) + [""]

    lines += [
        "## Attention (per layer, µs)",
        "",
        "Prefill rows: one sequence, `new` tokens after `keys − new` cached ones (full prompt "
        "when `new = keys`). Decode rows: `batch` sequences at `keys` keys each, i.e. the "
        "measured row `(batch, batch × keys)`.",
        "",
    ]
    for case, rows in attention.items():
        lines += [f"{case.label}:", ""]
        for phase, key in (("prefill", ["new", "keys"]), ("decode", ["batch", "keys"])):
            body = [p.label() + _cells(pair) for p, pair in rows if p.phase == phase]
            head = key + [f"LLMServingSim {phase}", "roofline", "kernel tables"]
            lines += _table(head, body) + [""]
    gbps = found.long_kv_bytes / found.long_seconds / 1e9
    lines += [
        f"NOTE: at batch 1, {STEP_CASE.label}'s decode rows grow linearly with the keys up to "
        f"the longest, {found.long_keys:,} keys: {found.long_seconds * 1e6:,.0f} µs to read "
        f"{found.long_kv_bytes / 1e6:.0f} MB of K and V ({gbps:.0f} GB/s; servesim "
        + ", ".join(f"{r} {found.long_ours[r] * 1e6:.1f} µs" for r in RUNGS)
        + "). The profiled kernel (`flash_attn_varlen_func` on contiguous K/V, no paged "
        "cache) does not spread one sequence's long context over the GPU here; at larger "
        "batches the same keys per sequence take about the same time until the GPU fills.",
        "",
    ]

    lines += [
        f"## Whole steps, {STEP_CASE.label} (ms, one GPU)",
        "",
        "Linear: embedding, every block operator of the 80 layers, final norm, LM head (one row "
        "per sequence); attention: 80 layers.",
        "",
    ]
    for phase, key in (("prefill", ["new", "keys"]), ("decode", ["batch", "keys"])):
        body = [
            s.point.label()
            + _cells(s.linear, 1e3, ".2f")
            + _cells(s.attention, 1e3, ".2f")
            + _cells(s.total, 1e3, ".2f")
            for s in steps
            if s.point.phase == phase
        ]
        head = key + ["linear", "roofline", "kernel tables", "attention", "roofline"]
        head += ["kernel tables", "step", "roofline", "kernel tables"]
        lines += [f"{phase.capitalize()} steps:", ""] + _table(head, body) + [""]

    lines += [
        "## Decode attention as LLMServingSim's simulator reads it (per layer, µs)",
        "",
        "Its simulator (LLMServingSim 2.0 to v1.0.0; main now reads newer profiler bundles) "
        "looks decode attention up in `attn_decode_predictions.csv` (a random forest fitted to "
        "the decode rows) by the number of decodes and their mean context rounded up to 64, "
        "i.e. it reads the whole-batch `kv` of the profile as per-sequence. "
        "Below: what it charges for `batch` sequences at `keys` keys each, the measured row it "
        "stands on (`batch` sequences at `keys / batch` keys), the row that measures this step "
        "(`batch × keys`; blank where not measured), and servesim for the step. Not in the "
        "medians above.",
        "",
        "Median prediction / measured row at the same key (prefill, decode): "
        + "; ".join(f"{k} {a:.2f}×, {b:.2f}×" for k, (a, b) in found.prediction_ratio.items())
        + ". The Mixtral files are scaled as the predictor's `--prefill-overhead` and "
        "`--decode-overhead` factors (default 1) would scale them; the repository does not say "
        "why.",
        "",
    ]
    pred_errs: dict[str, list[float]] = {r: [] for r in RUNGS}
    for case in ATTENTION_CASES:
        body = []
        for b, c, as_read, true, pair in prediction_rows(case):
            for r in RUNGS:
                pred_errs[r].append(abs(pair.err(r)))
            true_cell = "" if np.isnan(true) else f"{true * 1e6:.1f}"
            body.append(
                [f"{b}", f"{c:,}", f"{pair.theirs * 1e6:.1f}", f"{as_read * 1e6:.1f}", true_cell]
                + [_cell(pair, r, 1e6, ".1f") for r in RUNGS]
            )
        head = ["batch", "keys", "simulator charges", "row it reads", "row of this step"]
        lines += [f"{case.label}:", ""] + _table(head + list(RUNGS), body) + [""]
    lines += [
        "Median |servesim / what the simulator charges − 1|: "
        + ", ".join(f"{r} {np.median(pred_errs[r]) * 100:.0f}%" for r in RUNGS),
        "",
    ]
    signed = {
        r: {op: float(np.median([p.err(r) for p in v])) for op, v in per_op.items()} for r in RUNGS
    }
    paragraph = summary(med, op_med, signed, found)
    lines += ["## Summary (for the README)", "", *paragraph, ""]
    return "\n".join(lines), med


def summary(med, op_med, signed, found: Findings) -> list[str]:
    """The paragraph for the README (wrapped at 100 columns), from the measured numbers."""

    def pct(key: str, table=med) -> str:
        return f"{table['roofline'][key] * 100:.0f}% / {table['kernel tables'][key] * 100:.0f}%"

    def shorter(*ops: str) -> str:  # kernel-tables rung, signed medians
        errs = [signed["kernel tables"][op] for op in ops]
        if all(e < 0 for e in errs):
            word = "shorter"
        elif all(e > 0 for e in errs):
            word = "longer"
        else:
            word = "off"
        return " and ".join(f"{abs(e) * 100:.0f}%" for e in errs) + f" {word}"

    mixtral = found.prediction_ratio[ATTENTION_CASES[1].label]
    b, c, charged, ours = found.misread
    text = (
        "Against LLMServingSim's published H100 tables (`bench/peers/llmservingsim/`: per-layer "
        "operators of Llama-3.1-8B/70B and Mixtral-8x7B at TP 1–4, FlashAttention-2 at TP 4), "
        f"median |error| roofline / kernel tables: GEMMs {pct(GEMM)}, LM head "
        f"{pct('lm_head', op_med)}, all block operators {pct(LINEAR)}, attention "
        f"{pct(ATTENTION)}, whole Llama-3.1-70B TP-4 steps {pct(OVERALL)}. The gaps are in what "
        "they timed: Hugging Face's eager fp16 modules (servesim's fused vLLM-style RMSNorm "
        f"and rope are {shorter('add_rmsnorm', 'rope')}) and `flash_attn_varlen_func` on "
        "contiguous K/V, whose batch-1 decode reads K and V at "
        f"{found.long_kv_bytes / found.long_seconds / 1e9:.0f} GB/s "
        f"({found.long_seconds * 1e3:.2f} ms per layer at {found.long_keys:,} keys). Their "
        "decode rows count the whole batch's keys, which their simulator read as per-sequence "
        f"({b} × {c:,} keys: {charged * 1e6:.0f} µs charged, servesim "
        f"{ours['kernel tables'] * 1e6:.0f} µs); their Mixtral predictions are {mixtral[1]:.0f}× "
        f"(decode) and {mixtral[0]:.0f}× (prefill) its own measurements."
    )
    return textwrap.wrap(text, width=100, break_on_hyphens=False)


def main() -> None:
    tables.require()
    text, med = report()
    print(text)
    print("median |error| roofline -> kernel tables")
    for key in med["roofline"]:
        a, b = med["roofline"][key], med["kernel tables"][key]
        print(f"  {key}: {a * 100:.0f}% -> {b * 100:.0f}%")
    out = Path(__file__).resolve().parent / "results" / "step_times.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
