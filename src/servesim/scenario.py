"""The scenario: everything that defines one simulated deployment run, validated at the boundary.

A scenario is a frozen :class:`~servesim.validation.Spec` (unknown fields refused): the CLI
builds one from flags and/or a YAML file, the Python API takes one directly, and
``summary.json`` echoes it back.
"""

import importlib.util
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta

from servesim import knobs
from servesim.engines import DEFAULT_ENGINE, ENGINES, engine_profile, scheduler_defaults
from servesim.errors import ServesimError
from servesim.textfile import PARSE_ERRORS, load_yaml, not_a_file, parse_problem, read_text
from servesim.validation import FieldError, Spec, convert, did_you_mean, field_default, replace
from servesim.workload import WorkloadSpec
from servesim.workload.spec import MAX_REQUESTS, MAX_TOKENS, PRESET_NAMES

VERSION_PATTERN = r"^v?\d+(\.\d+)*(\.?(dev|a|b|rc|post)\d*)?$"
"""A release number as engines print them: 0.5.3, v1.0.0, 0.5.3.post3, 1.3.0rc20."""

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B"
DEFAULT_HARDWARE = "H100"

AtLeastOne = Annotated[int, Meta(ge=1)]

MAX_INSTANCES = 10_000
"""Most instances a fleet may have (each one is simulated; a larger count is a typo)."""

MAX_KV_CACHE_TOKENS = 1_000_000_000
"""Largest pinned KV cache, tokens (a billion: beyond any GPU's memory, a larger one is a typo)."""

MAX_SCHEDULER_STEPS = 1024
"""Most decode steps per scheduling round (vLLM V0 multi-step used 8 to 16)."""


class SchedulerSpec(Spec):
    """Scheduler and KV-cache knobs (vLLM names; defaults :mod:`servesim.knobs`'s, vLLM V1's on
    an H100).

    Built from fields (:func:`build_scenario`, the CLI, a YAML file), the fields left out take
    the scenario's engine profile's defaults (``servesim.engines``), which for ``vllm`` are the
    defaults below."""

    policy: Annotated[str, Meta(description=f"one of {', '.join(knobs.POLICIES)}")] = knobs.POLICY
    max_num_batched_tokens: Annotated[
        int, Meta(ge=1, le=MAX_TOKENS, description="token budget per step")
    ] = knobs.MAX_NUM_BATCHED_TOKENS
    max_num_seqs: Annotated[
        int, Meta(ge=1, le=MAX_REQUESTS, description="most running requests")
    ] = knobs.MAX_NUM_SEQS
    block_size: Annotated[int, Meta(ge=1, description="tokens per KV block")] = knobs.BLOCK_SIZE
    enable_prefix_caching: bool = knobs.ENABLE_PREFIX_CACHING
    enable_chunked_prefill: bool = knobs.ENABLE_CHUNKED_PREFILL
    long_prefill_token_threshold: AtLeastOne | None = None
    admission: Annotated[
        str,
        Meta(description=f"when a waiting request's KV fits: one of {', '.join(knobs.ADMISSIONS)}"),
    ] = knobs.ADMISSION
    gpu_memory_utilization: Annotated[float, Meta(gt=0, le=1)] = knobs.GPU_MEMORY_UTILIZATION
    kv_cache_tokens: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=MAX_KV_CACHE_TOKENS,
                description="KV cache size in tokens, pinned to what the engine logs (vLLM "
                "'GPU KV cache size: N tokens', SGLang max_total_num_tokens); per engine, so "
                "per rank under attention DP. Default: the memory plan's",
            ),
        ]
        | None
    ) = None
    hybrid_kv_cache: (
        Annotated[
            bool,
            Meta(
                description="vLLM's hybrid KV cache manager: sliding-window layers keep only "
                "their window's pages (false: vLLM's --disable-hybrid-kv-cache-manager). "
                "Default: the engine's (vLLM V1 from 0.9.2)",
            ),
        ]
        | None
    ) = None
    recv_interval: Annotated[
        int, Meta(ge=1, le=10_000, description="decode steps between reads of new requests")
    ] = knobs.RECV_INTERVAL
    stream_interval: Annotated[
        int, Meta(ge=1, le=10_000, description="tokens between streamed chunks")
    ] = knobs.STREAM_INTERVAL

    def __post_init__(self) -> None:
        # (here, so that a file's or a dict's mistake names scheduler.policy at validation,
        # not the run's engine later)
        for name, choices in (("policy", knobs.POLICIES), ("admission", knobs.ADMISSIONS)):
            value = getattr(self, name)
            if value not in choices:
                hint = did_you_mean(value, choices)
                close = f" ({hint})" if hint.startswith("did you mean") else ""
                raise FieldError(name, f"{value!r} is not one of {', '.join(choices)}{close}")


class InstanceGroup(Spec):
    """Identical instances sharing hardware, parallelism and dtypes (heterogeneous fleets are
    lists of groups behind one router)."""

    hardware: Annotated[str, Meta(description="GPU id; default the scenario's")] | None = None
    tp: AtLeastOne = 1
    pp: AtLeastOne = 1
    ep: AtLeastOne = 1
    dp: AtLeastOne = 1
    count: Annotated[int, Meta(ge=1, le=MAX_INSTANCES, description="instances in the group")] = 1
    role: Literal["mixed", "prefill", "decode"] = "mixed"
    weight_dtype: str | None = None
    kv_dtype: str | None = None


class SpeculativeSpec(Spec):
    """Speculative decoding (vLLM ``--speculative-config``)."""

    method: Annotated[str, Meta(description="draft:MODEL | ngram | eagle")]
    num_speculative_tokens: Annotated[int, Meta(ge=1, le=16, description="k, drafts per step")] = 3
    acceptance_rate: Annotated[
        float, Meta(ge=0, le=1, description="per-position acceptance probability")
    ] = 0.7
    acceptance_per_position: Annotated[
        tuple[float, ...] | None,
        Meta(description="acceptance probability of draft i given drafts < i accepted"),
    ] = None
    mode: Annotated[
        Literal["self_verify", "cpu_verify", "baseline"] | None,
        Meta(
            description="self_verify: drafts proposed on the GPU before the verify step; "
            "cpu_verify: drafts proposed on the host beside the verify step; baseline: off. "
            "Default: cpu_verify for ngram, else self_verify"
        ),
    ] = None


PositiveMs = Annotated[float, Meta(gt=0, description="milliseconds")]


class SLOSpec(Spec):
    """Latency targets for goodput, milliseconds."""

    ttft_ms: PositiveMs | None = None
    tpot_ms: PositiveMs | None = None
    e2el_ms: PositiveMs | None = None


def default_workload() -> WorkloadSpec:
    """The default workload: an empty one, every field filled by
    :class:`~servesim.workload.WorkloadSpec`'s defaults (1,000 conversation requests, Poisson at
    20 req/s)."""
    return convert({}, WorkloadSpec)


class Scenario(Spec):
    """One simulated deployment: model × hardware × parallelism × scheduler × workload."""

    model: str = DEFAULT_MODEL
    hardware: str = DEFAULT_HARDWARE
    tp: Annotated[int, Meta(ge=1, description="tensor-parallel GPUs per instance")] = 1
    pp: Annotated[int, Meta(ge=1, description="pipeline stages per instance")] = 1
    ep: Annotated[int, Meta(ge=1, description="expert-parallel groups inside the TP group")] = 1
    dp: Annotated[
        int,
        Meta(
            ge=1,
            description="attention data-parallel ranks per instance, tp GPUs each (SGLang "
            "--enable-dp-attention, vLLM --data-parallel-size; MoE models): each rank runs "
            "attention on its own requests, the experts see every rank's tokens",
        ),
    ] = 1
    replicas: Annotated[
        int, Meta(ge=1, le=MAX_INSTANCES, description="data-parallel instances")
    ] = 1
    engine: Annotated[
        str,
        Meta(description=f"serving engine profile: {', '.join(ENGINES)} (see servesim.engines)"),
    ] = DEFAULT_ENGINE
    engine_version: (
        Annotated[
            str,
            Meta(
                description="the engine's release (e.g. 0.5.3): measured tables that hold "
                "several collections (the MoE kernels) price it from the one nearest to it; "
                "default the newest",
            ),
        ]
        | None
    ) = None
    num_scheduler_steps: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=MAX_SCHEDULER_STEPS,
                description="decode steps per scheduling round (vLLM V0 multi-step)",
            ),
        ]
        | None
    ) = None
    kernel_tables: Annotated[
        bool,
        Meta(
            description="price operators from measured kernel tables where the GPU has them "
            "(catalog/kernels); false: the roofline rung"
        ),
    ] = True
    api_server: Annotated[
        bool,
        Meta(
            description="requests come through the engine's API server: TTFT and E2EL include "
            "its request handling, tokenisation and streaming (false: in-process, as offline "
            "benchmarks and the LLM class run)"
        ),
    ] = True
    weight_dtype: (
        Annotated[str, Meta(description="bf16 | fp16 | fp8 | int8 | int4 | fp4")] | None
    ) = None
    kv_dtype: Annotated[str, Meta(description="bf16 | fp8")] | None = None
    cuda_graphs: Annotated[
        bool, Meta(description="CUDA graphs / async scheduling hide host time behind the GPU")
    ] = True
    async_scheduling: (
        Annotated[
            bool,
            Meta(
                description="the host schedules step n+1 while the GPU runs step n (vLLM "
                "--async-scheduling, SGLang's and TensorRT-LLM's overlap schedulers; an arrival "
                "during step n then joins step n+2); false: host work runs between steps; "
                "default the engine's at engine_version (vLLM: on from 0.14, not with ngram/draft "
                "speculation)"
            ),
        ]
        | None
    ) = None
    attention_backend: (
        Annotated[
            Literal["fa3", "flashinfer", "triton"],
            Meta(
                description="the engine's attention backend for models without MLA, where it "
                "changes the price (SGLang --attention-backend, vLLM VLLM_ATTENTION_BACKEND): "
                "flashinfer reads the KV cache in decode at 0.57 of the measured FA3 rate on "
                "Hopper; triton (vLLM's TRITON_ATTN) runs prompts at 1/2.8 of the measured "
                "curve's plateau (~2x FlashAttention-2's time at 1k keys per query, ~2.6x at "
                "16k); fa3: the measured tables; default the engine's at engine_version (SGLang: "
                "FlashInfer on Hopper before 0.4.6 and, until 0.5.8, for models outside its FA3 "
                "list; vLLM: Triton for GPT-OSS before Hopper and on RTX Blackwell)"
            ),
        ]
        | None
    ) = None
    sampler: (
        Annotated[
            Literal["flashinfer", "sort", "triton"],
            Meta(
                description="how vLLM's memory-profiling run samples its dummy rows, which sets "
                "the activation peak taken out of the KV cache (per row and vocabulary entry: "
                "sort 38 bytes, flashinfer and triton 14): flashinfer (FlashInfer's top-k/top-p "
                "kernel: the Docker images before 0.11.1, and every install from 0.21), sort "
                "(PyTorch: 0.11.1-0.16, and pip installs without FlashInfer before 0.11.1), "
                "triton (0.17-0.20); default the release's with FlashInfer installed; other "
                "engines ignore it"
            ),
        ]
        | None
    ) = None
    instances: Annotated[
        list[InstanceGroup] | None,
        Meta(description="heterogeneous fleet; replaces hardware/tp/pp/ep/replicas"),
    ] = None
    disaggregate: Annotated[
        str | None,
        Meta(description="P:D prefill and decode instances (prefill/decode disaggregation)"),
    ] = None
    prefill_tp: AtLeastOne | None = None
    decode_tp: AtLeastOne | None = None
    kv_transfer_link: Annotated[
        Literal["intra_node", "inter_node"],
        Meta(description="link the KV cache crosses from prefill to decode"),
    ] = "inter_node"
    speculative: SpeculativeSpec | None = None
    calibration: Annotated[
        Path | None,
        Meta(description="calibration.yaml from `servesim calibrate` (fitted cost model)"),
    ] = None
    kv_offload: Annotated[
        bool,
        Meta(description="spill evicted KV blocks (cached prefixes, preempted requests) to CPU"),
    ] = False
    cpu_kv_cache_gib: Annotated[
        float, Meta(gt=0, description="memory of the offload tier per instance, GiB")
    ] = 64.0
    kv_offload_gbps: (
        Annotated[
            float,
            Meta(
                gt=0,
                description="GB/s per GPU to and from the offload tier; default the GPU's host "
                "link (set it, with cpu_kv_cache_gib, to model e.g. a CXL memory expander)",
            ),
        ]
        | None
    ) = None
    router: Annotated[str, Meta(description=f"one of {', '.join(knobs.ROUTERS)}")] = "round_robin"
    scheduler: SchedulerSpec = SchedulerSpec()
    workload: WorkloadSpec = msgspec.field(default_factory=default_workload)
    slo: SLOSpec = SLOSpec()
    seed: Annotated[int, Meta(ge=0, description="random seed (numpy accepts only >= 0)")] = 0
    fast_forward: bool = True
    compiled: Annotated[
        Literal["auto", "on", "off"],
        Meta(
            description="price steps with numba-compiled kernels (the fast extra): auto = for "
            "workloads of at least 50,000 requests when numba is installed (5,000 once a "
            "compiled run left them in numba's cache); same results"
        ),
    ] = "auto"
    max_model_len: (
        Annotated[int, Meta(ge=1, description="context window; default the model's")] | None
    ) = None
    on_oversized: Annotated[
        Literal["skip", "error"],
        Meta(
            description="a request longer than the context window or the KV cache: skip it "
            "(counted in summary.json) or stop the run"
        ),
    ] = "skip"

    def __post_init__(self) -> None:
        profile = engine_profile_of(self)
        if self.compiled == "on" and importlib.util.find_spec("numba") is None:
            raise FieldError(
                "compiled",
                "'on' needs numba, which is not installed; install it with "
                "pip install 'servesim[fast]', or use compiled: auto (or --compiled auto)",
            )
        if self.engine_version is not None and not re.match(VERSION_PATTERN, self.engine_version):
            raise FieldError(
                "engine_version",
                f"{self.engine_version!r} is not a release number; use one such as 0.5.3 or "
                "1.0.0rc1",
            )
        if (self.num_scheduler_steps or 1) > 1 and profile.name != "vllm-v0":
            raise FieldError(
                "num_scheduler_steps",
                f"multi-step scheduling is a vLLM V0 feature (engine is {profile.name}); "
                "use engine vllm-v0",
            )
        # A knob of a feature that is off would be silently ignored; say so instead. (Compared
        # with the default, not "was it given": a scenario dumped and re-read gives them all.)
        needs = {
            "disaggregate": (("prefill_tp", "decode_tp"), self.disaggregate is not None),
            "kv_offload": (("cpu_kv_cache_gib", "kv_offload_gbps"), self.kv_offload),
        }
        for feature, (names, on) in needs.items():
            for knob in names:
                if not on and getattr(self, knob) != field_default(Scenario, knob):
                    raise FieldError(knob, f"applies only with {feature}")


def engine_profile_of(sc: "Scenario"):
    """The scenario's :class:`~servesim.engines.EngineProfile` (FieldError for an unknown
    name)."""
    if sc.engine not in ENGINES:
        valid = ", ".join(ENGINES)
        raise FieldError("engine", f"unknown engine {sc.engine!r} (use one of: {valid})")
    return engine_profile(sc.engine).at_release(sc.engine_version)


def scheduler_steps(sc: "Scenario") -> int:
    """Decode steps per scheduling round: the scenario's, else its engine's."""
    return sc.num_scheduler_steps or engine_profile_of(sc).num_scheduler_steps


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
    if max(counts) > MAX_INSTANCES:
        raise ServesimError(
            f"{text!r} has more than {MAX_INSTANCES:,} instances on a side",
            field="disaggregate",
            fix="e.g. 1:1 or 2:3 (instances)",
        )
    return counts


def describe_instances(
    count: int, hardware: str, tp: int, pp: int = 1, ep: int = 1, role: str = "mixed",
    dp: int = 1,
) -> str:  # fmt: skip
    """Instances and GPUs said plainly: ``1 instance × TP4 = 4 × H100``, ``2 prefill instances
    × TP2 PP2 = 8 × H100``, ``1 instance × TP1 DP8 = 8 × H200`` (``1 × H100 (TP4)`` read as
    one GPU). ``ep`` beyond ``tp`` without ``dp`` implies ``dp = ep / tp`` (wide EP)."""
    kind = "" if role == "mixed" else f"{role} "
    noun = "instance" if count == 1 else "instances"
    ranks = attention_dp_ranks(tp, ep, dp)
    shape = f"TP{tp}" + (f" PP{pp}" if pp > 1 else "") + (f" DP{ranks}" if ranks > 1 else "")
    shape += f" EP{ep}" if ep > 1 else ""
    return f"{count:,} {kind}{noun} × {shape} = {count * tp * pp * ranks:,} × {hardware}"


def attention_dp_ranks(tp: int, ep: int, dp: int) -> int:
    """Attention data-parallel ranks of an instance: ``dp``, or ``ep / tp`` when ``ep`` exceeds
    ``tp`` and ``dp`` is 1 (``--ep`` beyond ``--tp`` asks for wide EP over DP ranks)."""
    if dp == 1 and ep > tp and ep % tp == 0:
        return ep // tp
    return dp


def instance_groups(sc: Scenario) -> list[InstanceGroup]:
    """The fleet a scenario describes, as groups of identical instances."""
    if sc.instances:
        if sc.disaggregate:
            raise ServesimError(
                "use either instances (with roles) or disaggregate", field="disaggregate"
            )
        return [g if g.hardware else replace(g, hardware=sc.hardware)
                for g in sc.instances]  # fmt: skip
    common = {"hardware": sc.hardware, "pp": sc.pp, "ep": sc.ep, "dp": sc.dp,
              "weight_dtype": sc.weight_dtype, "kv_dtype": sc.kv_dtype}  # fmt: skip
    if sc.disaggregate:
        p, d = parse_disaggregate(sc.disaggregate)
        return [
            InstanceGroup(role="prefill", count=p, tp=sc.prefill_tp or sc.tp, **common),
            InstanceGroup(role="decode", count=d, tp=sc.decode_tp or sc.tp, **common),
        ]
    return [InstanceGroup(role="mixed", count=sc.replicas, tp=sc.tp, **common)]


def build_scenario(data: dict[str, Any], source: str = "scenario") -> Scenario:
    """Validate ``data`` into a Scenario; a bad field raises ServesimError naming it.

    Scheduler fields ``data`` leaves out take the engine profile's defaults; a ``workload``
    given as a string is a preset or a workload file (:func:`workload_fields`)."""
    if isinstance(data, dict) and isinstance(data.get("workload"), str):
        data = {**data, "workload": workload_fields(data["workload"], "workload")}
    engine = data.get("engine", DEFAULT_ENGINE) if isinstance(data, dict) else None
    sched = data.get("scheduler", {}) if isinstance(data, dict) else None
    if isinstance(engine, str) and engine in ENGINES and isinstance(sched, dict):
        gpu = _gpu_of(data.get("hardware", DEFAULT_HARDWARE))
        api = data.get("api_server", True) is not False
        split = tuple(data.get(k, 1) for k in ("tp", "pp", "dp"))
        split = split if all(isinstance(v, int) and v >= 1 for v in split) else (1, 1, 1)
        profile = engine_profile(engine)
        window, long_ok, mla = None, True, False
        if profile.long_context_chunking is not None or profile.window_budget:
            window, long_ok, mla = context_window_of(data)
        data = {
            **data,
            "scheduler": scheduler_defaults(
                profile,
                sched,
                gpu,
                api,
                split,
                window,
                long_ok,
                release=_release_of(data),
                mla=mla,
            ),
        }
    return convert(data, Scenario, source)


def _release_of(data: dict[str, Any]) -> str | None:
    """The scenario's ``engine_version`` when it reads as a release (validation reports a bad
    one later)."""
    release = data.get("engine_version")
    return release if isinstance(release, str) and re.match(VERSION_PATTERN, release) else None


def context_window_of(data: dict[str, Any]) -> tuple[int | None, bool, bool]:
    """(The context window a scenario's model serves with: its own, or ``max_model_len`` when
    smaller — None when the model does not load here, validation reports that later; whether
    vLLM V0's long-context chunking may apply: not with a sliding window or speculative
    decoding; whether the model has MLA)."""
    from servesim.model import load_model

    name = data.get("model", DEFAULT_MODEL)
    if not isinstance(name, str):
        return None, False, False
    try:
        model = load_model(name)
    except ServesimError:
        return None, False, False
    window = model.max_position_embeddings
    given = data.get("max_model_len")
    window = min(window, given) if isinstance(given, int) and given > 0 else window
    long_ok = model.sliding_window is None and not data.get("speculative")
    return window, long_ok, model.mla is not None


def _gpu_of(hardware: Any) -> tuple[float, str, str] | None:
    """(HBM bytes, name, vendor) of the scenario's GPU for the engine's defaults; None when the
    name does not resolve (validation names that field later)."""
    if not isinstance(hardware, str):
        return None
    from servesim.hardware import load_hardware

    try:
        hw = load_hardware(hardware)
    except ServesimError:
        return None
    return float(hw.hbm_bytes), hw.name, hw.vendor


def read_yaml_file(path: str | Path, what: str, field: str) -> Any:
    """The parsed YAML (or JSON) document at ``path``; ``what`` and ``field`` name it in the
    error a missing file or bad YAML raises."""
    p = Path(path)
    if not p.is_file():
        raise ServesimError(f"{what} {p} {not_a_file(p)}", field=field)
    text = read_text(p, field=field)
    try:
        return load_yaml(text)
    except (yaml.YAMLError, *PARSE_ERRORS) as err:
        kind = "JSON" if p.suffix.lower() == ".json" else "YAML"
        raise ServesimError(f"{p}: not valid {kind} ({parse_problem(err)})") from None


def load_scenario_file(path: str | Path, field: str = "--config") -> dict[str, Any]:
    """Read a scenario YAML (or JSON) file as a plain dict (validated later, with overrides);
    ``field`` names the option or field that gave the path, in errors."""
    p = Path(path)
    data = read_yaml_file(p, "scenario file", field)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ServesimError(f"{p}: a scenario file must be a mapping of fields")
    if "base" in data and ("grid" in data or "cases" in data):
        # (a sweep's base scenario and its axes: one scenario of it is a sweep's job)
        raise ServesimError(
            f"{p} is a sweep file (base: with grid: or cases:), not a scenario",
            field=field,
            fix=f"run it with `servesim sweep {path}`, or give one scenario",
        )
    if isinstance(data.get("workload"), str):
        where = f"{p}: workload"
        data = {**data, "workload": workload_fields(data["workload"], where, p.parent)}
    return data


def workload_fields(text: str, field: str, relative_to: Path | None = None) -> dict[str, Any]:
    """A workload named by one string: a preset (``conversation``, ``code``, ``sharegpt``) or
    a workload file (YAML/JSON: a workload mapping, or a scenario whose ``workload`` is one).

    A relative file path is taken from ``relative_to`` (the folder of the file naming it), else
    from the current folder. Paths inside the workload file (``trace:``) are from the current
    folder, as every path a scenario names.
    """
    if text in PRESET_NAMES:
        return {"preset": text}
    path = Path(text)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if not path.is_file():
        raise ServesimError(
            f"workload file {path} {not_a_file(path)}",
            field=field,
            fix=f"give a workload YAML or a preset ({', '.join(PRESET_NAMES)})",
        )
    if path.suffix.lower() in TRACE_SUFFIXES:
        raise ServesimError(
            f"{path} looks like a request trace, not a workload YAML",
            field=field,
            fix=f"replay it with --replay {text} (or `workload: {{trace: {text}}}` in a file)",
        )
    data = read_yaml_file(path, "workload file", field)
    workload = data.get("workload", data) if isinstance(data, dict) else data
    if not isinstance(workload, dict):
        raise ServesimError(
            f"{path}: workload must be a mapping (got {workload!r:.40})",
            field=field,
            fix="give a workload YAML (preset, num_requests, ...) or a scenario with one",
        )
    return dict(workload)


TRACE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
"""File kinds that are request traces (replayed), never workload YAML."""


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into ``base`` (CLI flags override the scenario file).

    A value of ``base`` that is not a mapping where ``overrides`` adds fields to one (a file's
    ``workload: 5`` under ``--num-requests``) is kept, for validation to name: replacing it
    would run something the user did not write."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif not (isinstance(value, dict) and out.get(key) is not None):
            out[key] = value
    return out
