"""Knobs of the cost model: how the model is split over GPUs, and the modelling constants."""

from __future__ import annotations

from dataclasses import dataclass

from servesim.errors import ServesimError
from servesim.model import ModelSpec

FIDELITIES = ("roofline", "calibrated", "profiled")
HEADS = ("lm", "value")


@dataclass(frozen=True)
class Parallelism:
    """How one model replica is split over GPUs.

    - ``tp``: tensor parallelism. Attention heads, MLP columns, embedding and LM head rows are
      split ``tp`` ways; two all-reduces per layer (plus one after the embedding) join the parts.
      When ``tp`` exceeds the KV heads, each KV head is replicated so every GPU holds one (vLLM).
    - ``pp``: pipeline stages; layers are split evenly, earlier stages take the remainder.
    - ``ep``: expert parallelism *inside the TP group* (vLLM ``--enable-expert-parallel`` with
      one data-parallel rank): the routed experts are spread over ``ep`` groups and each expert is
      tensor-split over the ``tp // ep`` GPUs of its group. Tokens are already on every GPU after
      attention, so EP changes which expert weights a GPU holds and reads, not the
      communication (the post-MoE all-reduce stays).
    """

    tp: int = 1
    pp: int = 1
    ep: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "ep"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ServesimError(
                    f"must be a positive integer, got {value!r}", field=name, fix=f"use --{name} 1"
                )
        if self.tp % self.ep:
            raise ServesimError(
                f"ep={self.ep} must divide tp={self.tp} (experts are spread inside the TP group)",
                field="ep",
                fix=f"use --ep {self.tp} or --ep 1",
            )

    @property
    def gpus(self) -> int:
        """GPUs in one replica."""
        return self.tp * self.pp

    @property
    def expert_tp(self) -> int:
        """GPUs each routed expert is tensor-split over."""
        return self.tp // self.ep

    def kv_heads_per_gpu(self, model: ModelSpec) -> int:
        """KV heads each GPU holds (1 when ``tp`` exceeds the KV heads: replicated)."""
        return max(1, model.num_kv_heads // self.tp)

    def check(self, model: ModelSpec) -> None:
        """Raise ServesimError when ``model`` cannot be split this way."""
        problem = _tp_problem(model, self.tp)
        if problem:
            raise ServesimError(
                problem,
                field="tp",
                fix="use --tp " + " or ".join(str(t) for t in valid_tps(model)[:6]),
            )
        if self.pp > model.num_layers:
            raise ServesimError(
                f"pp={self.pp} exceeds the {model.num_layers} layers of {model.name}",
                field="pp",
                fix=f"use --pp {model.num_layers} or fewer",
            )
        if self.ep > 1:
            if model.moe is None:
                raise ServesimError(
                    f"{model.name} has no experts to spread", field="ep", fix="use --ep 1"
                )
            if model.moe.num_experts % self.ep:
                raise ServesimError(
                    f"ep={self.ep} does not divide the {model.moe.num_experts} experts",
                    field="ep",
                    fix="use --ep 1",
                )


def _tp_problem(model: ModelSpec, tp: int) -> str | None:
    """Why ``model``'s attention cannot be split ``tp`` ways, or None when it can."""
    heads, kv = model.num_attention_heads, model.num_kv_heads
    if heads % tp:
        return f"tp={tp} does not divide the {heads} attention heads of {model.name}"
    # NOTE: MLA keeps one shared latent per token, so its KV heads never constrain TP.
    if model.mla is None and kv % tp and tp % kv:
        return f"tp={tp} neither divides nor is a multiple of the {kv} KV heads of {model.name}"
    return None


def valid_tps(model: ModelSpec, limit: int = 64) -> list[int]:
    """TP degrees up to ``limit`` that ``model``'s attention heads allow, ascending."""
    return [tp for tp in range(1, limit + 1) if _tp_problem(model, tp) is None]


@dataclass(frozen=True)
class CostParams:
    """Modelling constants. ``None`` means: take the model's or the hardware's default.

    Efficiencies are fractions of the hardware peak (0 < eff <= 1). Calibration produces a
    ``CostParams`` with fitted values and ``fidelity="calibrated"``.
    """

    weight_dtype: str | None = None
    """Dtype of the transformer-block weights; ``None``: the checkpoint's. Embedding and LM head
    stay in the activation dtype (quantised checkpoints keep them in bf16)."""
    kv_dtype: str | None = None
    """KV-cache dtype; ``None``: the activation dtype (bf16/fp16)."""
    compute_efficiency: float | None = None
    """Achievable fraction of peak FLOP/s for large GEMMs; ``None``: the hardware's."""
    memory_efficiency: float | None = None
    """Achievable fraction of HBM bandwidth; ``None``: the hardware's."""
    attention_efficiency: float | None = None
    """Fraction of peak FLOP/s the attention kernel reaches; ``None``: ``compute_efficiency``."""
    kernel_launch_s: float | None = None
    """Fixed seconds per kernel (launch gap + ramp/tail); ``None``: the hardware's."""
    step_overhead_s: float = 1e-4
    """Fixed seconds per step outside the kernels (scheduling, input preparation, sampler
    bookkeeping) that the GPU does not hide. A documented guess; calibration replaces it."""
    overhead_per_seq_s: float = 0.0
    """Extra host seconds per sequence in the step (input preparation growing with batch)."""
    comm_efficiency: float = 0.8
    """Fraction of link bandwidth collectives reach (NCCL all-reduce bus bandwidth on 8×H100
    NVLink is about 360 of 450 GB/s)."""
    gemm_half_tokens: float = 32.0
    """Tokens at which a GEMM reaches half its large-batch efficiency (see ``gemm_efficiency``)."""
    mla_absorb_max_new_tokens: int = 1
    """MLA rows with at most this many new tokens use the weight-absorbed (decode) path."""
    head: str = "lm"
    """``lm``: vocabulary logits and sampling; ``value``: a d×d + d×1 scoring head."""
    runtime_reserve_bytes: float | None = None
    """Memory the runtime keeps outside weights, KV and activations; ``None``: see
    ``servesim.cost.memory.default_runtime_reserve``."""
    fidelity: str = "roofline"
    """Which rung of the fidelity ladder these numbers stand on."""

    def __post_init__(self) -> None:
        for name in ("compute_efficiency", "memory_efficiency", "attention_efficiency"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ServesimError(
                    f"must be in (0, 1], got {value}", field=name, fix="use e.g. 0.7"
                )
        if not 0.0 < self.comm_efficiency <= 1.0:
            raise ServesimError(
                f"must be in (0, 1], got {self.comm_efficiency}",
                field="comm_efficiency",
                fix="use e.g. 0.8",
            )
        for name in ("kernel_launch_s", "runtime_reserve_bytes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ServesimError(f"must be >= 0, got {value}", field=name, fix="use 0 or more")
        for name in ("step_overhead_s", "overhead_per_seq_s", "gemm_half_tokens"):
            if getattr(self, name) < 0:
                raise ServesimError(
                    f"must be >= 0, got {getattr(self, name)}", field=name, fix="use 0 or more"
                )
        if self.mla_absorb_max_new_tokens < 0:
            raise ServesimError(
                "must be >= 0", field="mla_absorb_max_new_tokens", fix="use 1 (vLLM's default)"
            )
        if self.head not in HEADS:
            raise ServesimError(
                f"unknown head {self.head!r}", field="head", fix="use one of: lm, value"
            )
        if self.fidelity not in FIDELITIES:
            raise ServesimError(
                f"unknown fidelity {self.fidelity!r}",
                field="fidelity",
                fix="use one of: " + ", ".join(FIDELITIES),
            )


def gemm_efficiency(tokens: float, peak_efficiency: float, half_tokens: float) -> float:
    """Achieved fraction of peak FLOP/s of a GEMM over ``tokens`` rows.

    ``eff(M) = peak_efficiency × M / (M + half_tokens)``: tensor-core tiles are 64–128 rows, so
    a GEMM over few rows leaves most of each tile empty. Equivalently the GEMM takes as long as
    one over ``M + half_tokens`` rows at full efficiency. With the default 32 tokens, efficiency
    is 50% of peak-efficiency at 32 rows, 80% at 128, 97% at 1024, 99.6% at 8192. Small-M
    GEMMs are memory-bound anyway, so the curve mostly moves the compute/memory crossover
    (bf16 on H100: from about 258 to 226 tokens).
    """
    if tokens <= 0:
        return 0.0
    return peak_efficiency * tokens / (tokens + half_tokens)
