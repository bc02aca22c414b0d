"""The scenario: everything that defines one simulated deployment run, validated at the boundary.

A scenario is a pydantic model (``extra="forbid"``, frozen): the CLI builds one from flags
and/or a YAML file, the Python API takes one directly, and ``summary.json`` echoes it back.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servesim.engine.router import ROUTERS
from servesim.engine.scheduler import POLICIES
from servesim.errors import ServesimError
from servesim.workload import WorkloadSpec

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B"
DEFAULT_HARDWARE = "H100"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SchedulerSpec(_Strict):
    """Scheduler and KV-cache knobs (vLLM names; defaults follow vLLM v1 on an H100)."""

    policy: str = Field(default="vllm", description=f"one of {', '.join(POLICIES)}")
    max_num_batched_tokens: int = Field(default=8192, ge=1, description="token budget per step")
    max_num_seqs: int = Field(default=256, ge=1, description="most running requests")
    block_size: int = Field(default=16, ge=1, description="tokens per KV block")
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    long_prefill_token_threshold: int | None = Field(default=None, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)


class InstanceGroup(_Strict):
    """Identical instances sharing hardware, parallelism and dtypes (heterogeneous fleets are
    lists of groups behind one router)."""

    hardware: str | None = Field(default=None, description="GPU id; default the scenario's")
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    count: int = Field(default=1, ge=1, description="instances in the group")
    role: Literal["mixed", "prefill", "decode"] = "mixed"
    weight_dtype: str | None = None
    kv_dtype: str | None = None


class SpeculativeSpec(_Strict):
    """Speculative decoding (vLLM ``--speculative-config``)."""

    method: str = Field(description="draft:MODEL | ngram | eagle")
    num_speculative_tokens: int = Field(default=3, ge=1, le=16, description="k, drafts per step")
    acceptance_rate: float = Field(
        default=0.7, ge=0, le=1, description="per-position acceptance probability"
    )
    acceptance_per_position: tuple[float, ...] | None = Field(
        default=None, description="acceptance probability of draft i given drafts < i accepted"
    )
    mode: Literal["self_verify", "cpu_verify", "baseline"] | None = Field(
        default=None,
        description="self_verify: drafts proposed on the GPU before the verify step; "
        "cpu_verify: drafts proposed on the host beside the verify step; baseline: off. "
        "Default: cpu_verify for ngram, else self_verify",
    )


class SLOSpec(_Strict):
    """Latency targets for goodput, milliseconds."""

    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    e2el_ms: float | None = Field(default=None, gt=0)


DEFAULT_WORKLOAD: dict[str, Any] = {
    "preset": "conversation",
    "num_requests": 1000,
    "arrival": {"kind": "poisson", "rate": 20.0},
}
"""1,000 requests of the conversation preset, Poisson at 20 req/s: about the most Llama-3.1-8B
on one H100 sustains before queues grow (simulated: 18.4 req/s completed, TTFT p99 ~0.25 s)."""


def default_workload() -> WorkloadSpec:
    """The default workload (:data:`DEFAULT_WORKLOAD`) as a validated spec."""
    return WorkloadSpec.model_validate(DEFAULT_WORKLOAD)


class Scenario(_Strict):
    """One simulated deployment: model × hardware × parallelism × scheduler × workload."""

    model: str = DEFAULT_MODEL
    hardware: str = DEFAULT_HARDWARE
    tp: int = Field(default=1, ge=1, description="tensor-parallel GPUs per instance")
    pp: int = Field(default=1, ge=1, description="pipeline stages per instance")
    ep: int = Field(default=1, ge=1, description="expert-parallel groups inside the TP group")
    replicas: int = Field(default=1, ge=1, description="data-parallel instances")
    weight_dtype: str | None = Field(default=None, description="bf16 | fp8 | int8 | int4 | fp4")
    kv_dtype: str | None = Field(default=None, description="bf16 | fp8")
    cuda_graphs: bool = Field(
        default=True, description="CUDA graphs / async scheduling hide host time behind the GPU"
    )
    instances: list[InstanceGroup] | None = Field(
        default=None, description="heterogeneous fleet; replaces hardware/tp/pp/ep/replicas"
    )
    disaggregate: str | None = Field(
        default=None, description="P:D prefill and decode instances (prefill/decode disaggregation)"
    )
    prefill_tp: int | None = Field(default=None, ge=1)
    decode_tp: int | None = Field(default=None, ge=1)
    kv_transfer_link: Literal["intra_node", "inter_node"] = Field(
        default="inter_node", description="link the KV cache crosses from prefill to decode"
    )
    speculative: SpeculativeSpec | None = None
    calibration: Path | None = Field(
        default=None, description="calibration.yaml from `servesim calibrate` (fitted cost model)"
    )
    kv_offload: bool = Field(
        default=False,
        description="spill evicted KV blocks (cached prefixes, preempted requests) to CPU memory",
    )
    cpu_kv_cache_gib: float = Field(
        default=64.0, gt=0, description="memory of the offload tier per instance, GiB"
    )
    kv_offload_gbps: float | None = Field(
        default=None,
        gt=0,
        description="GB/s per GPU to and from the offload tier; default the GPU's host link "
        "(set it, with cpu_kv_cache_gib, to model e.g. a CXL memory expander)",
    )
    router: str = Field(default="round_robin", description=f"one of {', '.join(ROUTERS)}")
    scheduler: SchedulerSpec = SchedulerSpec()
    workload: WorkloadSpec = Field(default_factory=default_workload)
    slo: SLOSpec = SLOSpec()
    seed: int = Field(default=0, ge=0, description="random seed (numpy accepts only >= 0)")
    fast_forward: bool = True
    max_model_len: int | None = Field(
        default=None, ge=1, description="context window; default the model's"
    )
    on_oversized: Literal["skip", "error"] = Field(
        default="skip",
        description="a request longer than the context window or the KV cache: skip it "
        "(counted in summary.json) or stop the run",
    )

    @model_validator(mode="after")
    def _no_orphan_knobs(self) -> Scenario:
        # A knob of a feature that is off would be silently ignored; say so instead. (Compared
        # with the default, not "was it given": a scenario dumped and re-read gives them all.)
        needs = {
            "disaggregate": (("prefill_tp", "decode_tp"), self.disaggregate is not None),
            "kv_offload": (("cpu_kv_cache_gib", "kv_offload_gbps"), self.kv_offload),
        }
        for feature, (knobs, on) in needs.items():
            for knob in knobs:
                if not on and getattr(self, knob) != type(self).model_fields[knob].default:
                    raise ValueError(f"{knob} applies only with {feature}")
        return self


def parse_disaggregate(text: str) -> tuple[int, int]:
    """``"P:D"`` → (prefill instances, decode instances)."""
    p, sep, d = text.partition(":")
    try:
        counts = (int(p), int(d))
    except ValueError:
        counts = (0, 0)
    if not sep or min(counts) < 1:
        raise ServesimError(
            f"{text!r} is not P:D", field="disaggregate", fix="e.g. 1:1 or 2:3 (instances)"
        )
    return counts


def instance_groups(sc: Scenario) -> list[InstanceGroup]:
    """The fleet a scenario describes, as groups of identical instances."""
    if sc.instances:
        if sc.disaggregate:
            raise ServesimError(
                "use either instances (with roles) or disaggregate", field="disaggregate"
            )
        return [g if g.hardware else g.model_copy(update={"hardware": sc.hardware})
                for g in sc.instances]  # fmt: skip
    common = {"hardware": sc.hardware, "pp": sc.pp, "ep": sc.ep,
              "weight_dtype": sc.weight_dtype, "kv_dtype": sc.kv_dtype}  # fmt: skip
    if sc.disaggregate:
        p, d = parse_disaggregate(sc.disaggregate)
        return [
            InstanceGroup(role="prefill", count=p, tp=sc.prefill_tp or sc.tp, **common),
            InstanceGroup(role="decode", count=d, tp=sc.decode_tp or sc.tp, **common),
        ]
    return [InstanceGroup(role="mixed", count=sc.replicas, tp=sc.tp, **common)]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model at ``loc`` below ``model``; [] when it cannot be told."""
    current = model
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if isinstance(part, int):
            continue  # a list index
        field = current.model_fields.get(part)
        if field is None:
            return []
        candidates = _models_in(field.annotation)
        if len(candidates) > 1 and parts:
            # A tagged union puts the tag next in the location ("arrival.poisson.rate").
            tag = parts.pop(0)
            candidates = [m for m in candidates if _tag_of(m) == tag]
        if len(candidates) != 1:
            return []
        current = candidates[0]
    return list(current.model_fields)


def _tag_of(model: type[BaseModel]) -> Any:
    kind = model.model_fields.get("kind")
    return None if kind is None else kind.default


def format_validation_error(
    err: ValidationError, source: str, model: type[BaseModel] | None = None
) -> str:
    """One line naming the first bad field, e.g. ``scenario.yaml: scheduler.block_size: ...``.

    With ``model`` (the class that was validated), an unknown field gets a "did you mean".
    """
    first = err.errors()[0]
    # Tagged unions add the tag to the location (e.g. "arrival.poisson.rate"): keep it, it
    # names the variant the user wrote.
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = (
        f" (got {got!r})"
        if isinstance(got, (int, float, str)) and not isinstance(got, bool)
        else ""
    )
    if first["type"] == "extra_forbidden":
        known = _fields_at(model, tuple(first["loc"][:-1])) if model is not None else []
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean {close[0]}?"
        else:
            hint = f"valid here: {', '.join(known)}" if known else "check the spelling"
        msg, shown = f"unknown field ({hint})", ""
    prefix = f"{source}: " if source else ""
    where = f"{loc}: " if loc else ""
    return f"{prefix}{where}{msg}{shown}"


def build_scenario(data: dict[str, Any], source: str = "scenario") -> Scenario:
    """Validate ``data`` into a Scenario; a bad field raises ServesimError naming it."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ServesimError(format_validation_error(err, source, Scenario)) from None


def read_yaml_file(path: str | Path, what: str, field: str) -> Any:
    """The parsed YAML (or JSON) document at ``path``; ``what`` and ``field`` name it in the
    error a missing file or bad YAML raises."""
    p = Path(path)
    if not p.is_file():
        raise ServesimError(f"{what} {p} does not exist", field=field)
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ServesimError(f"{p}: not valid YAML ({err.__class__.__name__})") from None


def load_scenario_file(path: str | Path) -> dict[str, Any]:
    """Read a scenario YAML (or JSON) file as a plain dict (validated later, with overrides)."""
    p = Path(path)
    data = read_yaml_file(p, "scenario file", "--config")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ServesimError(f"{p}: a scenario file must be a mapping of fields")
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into ``base`` (CLI flags override the scenario file)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
