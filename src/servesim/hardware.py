"""Accelerator specs (peak FLOP/s, HBM, links, efficiencies, power, price) from YAML files.

Units everywhere: FLOP/s, bytes, bytes/s (10^9 bytes/s = 1 GB/s, never GiB/s), seconds, watts,
US dollars per GPU-hour. Peak FLOP/s figures are **dense** (no 2:4 sparsity).

Memory tiers: HBM (``hbm_bytes``, ``hbm_bandwidth``) and host DRAM (``cpu_memory_bytes``,
``cpu_memory_bandwidth``, per GPU) reached over ``host_link`` (PCIe), the tier KV offload uses.

The shipped catalog is one YAML file per accelerator under ``servesim/catalog/hardware/``; every
figure there carries its source and a confidence grade (``datasheet``, ``measured`` or
``estimated``). ``load_hardware`` reads a shipped id or alias (case-insensitive) or the path of a
user's own YAML with the same fields; the file is validated once, here, at the boundary.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta

from servesim.errors import ServesimError
from servesim.textfile import PARSE_ERRORS, not_a_file, parse_problem, read_text, yaml_loader
from servesim.validation import Problem, Spec, all_problems, field_names, non_finite, to_data

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")
"""Dtypes a ``peak_flops`` table may list (int8 in OP/s)."""

CONFIDENCE_GRADES = ("datasheet", "measured", "estimated")
"""How a figure was obtained: read from a vendor document, measured publicly, or estimated."""


@dataclass(frozen=True)
class Link:
    """A communication link as seen by one GPU."""

    name: str
    bandwidth: float
    """Unidirectional bandwidth per GPU, bytes/s."""
    latency_s: float
    """One-way latency of a small message, seconds."""
    peer_bandwidth: float | None = None
    """Unidirectional bandwidth of one direct GPU-to-GPU link in a full mesh (AMD Infinity
    Fabric), bytes/s; ``None`` on a switched fabric (NVSwitch, PCIe switch, a NIC) where a pair
    of GPUs can use the whole ``bandwidth``."""

    def bandwidth_among(self, n_gpus: int) -> float:
        """Unidirectional bandwidth per GPU, bytes/s, for a collective over ``n_gpus`` GPUs.

        On a full mesh a GPU reaches its ``n_gpus - 1`` peers over that many direct links, so a
        TP=2 group on MI300X gets one 64 GB/s link, not the 448 GB/s of all seven.
        """
        if n_gpus < 1:
            raise ServesimError(f"must be >= 1, got {n_gpus}", field="n_gpus")
        if self.peer_bandwidth is None or n_gpus == 1:
            return self.bandwidth
        return min(self.bandwidth, (n_gpus - 1) * self.peer_bandwidth)


DEFAULT_HOST_LINK = Link("PCIe Gen4 x16 (default)", 31.5e9, 1.0e-5)
"""Host link of a spec that names none: PCIe Gen4 x16 (16 GT/s × 16 lanes, 128b/130b: 31.5e9
bytes/s per direction), which every data-centre GPU since A100 has at least."""

GiB = 2**30


@dataclass(frozen=True)
class Hardware:
    """One accelerator model."""

    name: str
    vendor: str
    peak_flops: dict[str, float]
    """Dense peak FLOP/s per dtype: keys among fp32, tf32, bf16, fp16, fp8, int8, fp4."""
    hbm_bytes: float
    hbm_bandwidth: float
    """HBM bandwidth, bytes/s."""
    intra_node: Link
    inter_node: Link
    gpus_per_node: int = 8
    compute_efficiency: float = 0.7
    """Typical achievable fraction of peak FLOP/s for large GEMMs."""
    memory_efficiency: float = 0.8
    """Typical achievable fraction of peak HBM bandwidth for streaming reads."""
    kernel_launch_s: float = 4e-6
    """Fixed latency per kernel (launch + tail), seconds."""
    l2_bytes: float | None = None
    """Last-level (L2) cache, bytes: a measured GEMM table row whose weights fit in it was read
    from L2 by the benchmark's repeats (``servesim.cost.build``: no faster than HBM allows
    inside a forward pass). None: not given (no such floor)."""
    multiprocessors: int | None = None
    """Streaming multiprocessors: how many thread blocks of a kernel that runs one block per
    SM execute at once. A decode kernel that walks each sequence's KV in one block per head
    runs more blocks than this in waves (``servesim.cost.step.DecodeRamp``, FlashAttention-2
    under vLLM V1). None: not given (one wave whatever the blocks)."""
    tdp_w: float = 700.0
    idle_w: float = 100.0
    price_per_gpu_hour: float = 0.0
    """Default on-demand price, USD per GPU-hour (a documented default, override per run)."""
    aliases: tuple[str, ...] = ()
    confidence: str = "datasheet"
    """How trustworthy the figures are: datasheet, measured, estimated."""
    sources: dict[str, str] = field(default_factory=dict)
    """Where each figure comes from (field name -> citation)."""
    description: str = ""
    """Full product name, e.g. "NVIDIA H100 SXM5 80GB HBM3"."""
    architecture: str | None = None
    """GPU generation (``ampere``, ``ada``, ``hopper``, ``blackwell``: the datacentre B200/B300
    family, compute capability 10.x; ``blackwell-rtx``: the GB20x parts of the RTX PRO and
    GeForce RTX 50 lines, 12.x, without the datacentre parts' ``tcgen05`` tensor-memory
    instructions; ``cdna3``), which decides the kernels an engine picks where they differ by
    generation (vLLM's MXFP4 MoE: Marlin before Hopper and on GB20x, see
    ``servesim.cost.kernels.vllm_mxfp4_kernel``; the FP8 factors of the fitted rung,
    ``servesim.cost.fp8_fit``); None: not given."""
    confidence_by_field: dict[str, str] = field(default_factory=dict)
    """Grade of one figure (field name -> datasheet/measured/estimated) where it differs from
    ``confidence``."""
    host_link: Link = DEFAULT_HOST_LINK
    """The GPU's link to host (CPU) memory, per direction: the path of KV offload and swap.
    Raw link rate; ``servesim.cost.memory.kv_transfer_seconds`` applies the achievable share."""
    cpu_memory_bytes: float = 128.0 * GiB
    """Host DRAM per GPU (the server's memory divided by its GPUs): the capacity of a CPU KV
    tier."""
    cpu_memory_bandwidth: float = 50e9
    """Host DRAM bandwidth per GPU (the server's share), bytes/s. KV offload is usually limited
    by ``host_link`` rather than by this."""

    def peak_for(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype``; raises ServesimError when the GPU cannot run it."""
        if dtype not in self.peak_flops:
            have = ", ".join(sorted(self.peak_flops))
            raise ServesimError(
                f"{self.name} has no {dtype} tensor-core throughput",
                field="dtype",
                fix=f"use one of: {have}",
            )
        return self.peak_flops[dtype]

    def ridge_point(self, dtype: str = "bf16") -> float:
        """Arithmetic intensity, FLOP/byte, above which a kernel is compute-bound (peak / BW)."""
        return self.peak_for(dtype) / self.hbm_bandwidth

    def confidence_for(self, name: str) -> str:
        """Confidence grade of one figure (a field name), falling back to the file's grade."""
        return self.confidence_by_field.get(name, self.confidence)

    def with_overrides(self, **fields: Any) -> Hardware:
        """A copy with some fields replaced, validated like a YAML file (e.g. a negotiated
        ``price_per_gpu_hour`` or a calibrated ``compute_efficiency``)."""
        known = [f.name for f in dataclasses.fields(self)]
        for key in fields:
            if key not in known:
                raise ServesimError(
                    f"{key} is not a hardware field", field=key, fix=_did_you_mean(key, known)
                )
        merged = {**self.to_dict(), **_plain(fields)}
        return _build(merged, where=f"overrides of {self.name}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (links as nested dicts, aliases as a list)."""
        return _plain(dataclasses.asdict(self))


# --- YAML schema (the validation boundary) ---------------------------------------------------

_EXAMPLE = "see `servesim hardware H100 --yaml` for a complete example"

# A user file may omit the fields ``Hardware`` has defaults for; one source of truth for them.
_DEFAULT = {f.name: f.default for f in dataclasses.fields(Hardware)}

Grade = Literal["datasheet", "measured", "estimated"]
DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4"]
Architecture = Literal["ampere", "ada", "hopper", "blackwell", "blackwell-rtx", "cdna3"]


class _LinkFile(Spec):
    name: Annotated[str, Meta(min_length=1)]
    bandwidth: Annotated[float, Meta(gt=0)]
    latency_s: Annotated[float, Meta(ge=0)]
    peer_bandwidth: Annotated[float, Meta(gt=0)] | None = None


class _SourceFile(Spec):
    cite: Annotated[str, Meta(min_length=1)]
    confidence: Grade | None = None
    """Grade of this figure; absent means the file's ``confidence``."""


PositiveFloat = Annotated[float, Meta(gt=0)]
Fraction = Annotated[float, Meta(gt=0, le=1)]
NonNegative = Annotated[float, Meta(ge=0)]


class _HardwareFile(Spec, kw_only=True):
    # NOTE: msgspec is strict: `hbm_bandwidth: "fast"` or `true` is an error, not a number.
    name: Annotated[str, Meta(min_length=1, pattern=r"^\S+$")]
    vendor: Annotated[str, Meta(min_length=1)]
    description: str = ""
    architecture: Architecture | None = None
    aliases: list[str] = []
    peak_flops: Annotated[dict[DType, PositiveFloat], Meta(min_length=1)]
    hbm_bytes: PositiveFloat
    hbm_bandwidth: PositiveFloat
    intra_node: _LinkFile
    inter_node: _LinkFile
    gpus_per_node: Annotated[int, Meta(ge=1)] = _DEFAULT["gpus_per_node"]
    compute_efficiency: Fraction = _DEFAULT["compute_efficiency"]
    memory_efficiency: Fraction = _DEFAULT["memory_efficiency"]
    kernel_launch_s: NonNegative = _DEFAULT["kernel_launch_s"]
    l2_bytes: PositiveFloat | None = None
    multiprocessors: Annotated[int, Meta(ge=1)] | None = None
    tdp_w: PositiveFloat = _DEFAULT["tdp_w"]
    idle_w: NonNegative = _DEFAULT["idle_w"]
    price_per_gpu_hour: NonNegative = _DEFAULT["price_per_gpu_hour"]
    confidence: Grade = "datasheet"
    sources: dict[str, _SourceFile] = {}
    confidence_by_field: dict[str, Grade] = {}
    host_link: _LinkFile | None = None
    cpu_memory_bytes: PositiveFloat = _DEFAULT["cpu_memory_bytes"]
    cpu_memory_bandwidth: PositiveFloat = _DEFAULT["cpu_memory_bandwidth"]


def _plain_citations(data: dict[str, Any]) -> dict[str, Any]:
    # A bare string in ``sources`` is a citation graded like the rest of the file.
    sources = data.get("sources")
    if isinstance(sources, dict):
        cites = {k: {"cite": v} if isinstance(v, str) else v for k, v in sources.items()}
        data = {**data, "sources": cites}
    return data


def _check_consistency(spec: _HardwareFile, where: str) -> None:
    """Rules that span fields, each reported against the field a user would edit."""
    if spec.idle_w > spec.tdp_w:
        raise ServesimError(
            f"idle_w must not exceed tdp_w, got {spec.idle_w:g} > {spec.tdp_w:g} (in {where})",
            field="idle_w",
        )
    known = sorted(field_names(_HardwareFile))
    for group in ("sources", "confidence_by_field"):
        for key in getattr(spec, group):
            if key not in known:
                raise ServesimError(
                    f"{group} names unknown field {key!r} (in {where})",
                    field=group,
                    fix=_did_you_mean(key, known),
                )


def _build(data: Any, where: str) -> Hardware:
    """Validate one parsed YAML document (or a merged dict) and build the frozen ``Hardware``."""
    if not isinstance(data, dict):
        raise ServesimError(
            f"{where} must be a YAML mapping of hardware fields, got {type(data).__name__}",
            field="hardware",
            fix=_EXAMPLE,
        )
    data = _plain_citations(data)
    try:
        spec = msgspec.convert(data, _HardwareFile)
    except msgspec.ValidationError:
        # Only a bad file pays for checking field by field, to report every mistake at once.
        raise _as_servesim_error(all_problems(data, _HardwareFile), where) from None
    infinite = non_finite(to_data(spec))
    if infinite is not None:
        raise _as_servesim_error([infinite], where)
    _check_consistency(spec, where)
    grades = dict(spec.confidence_by_field)
    for key, src in spec.sources.items():
        if src.confidence is not None:
            grades.setdefault(key, src.confidence)
    return Hardware(
        name=spec.name,
        vendor=spec.vendor,
        description=spec.description,
        architecture=spec.architecture,
        aliases=tuple(spec.aliases),
        peak_flops=dict(spec.peak_flops),
        hbm_bytes=spec.hbm_bytes,
        hbm_bandwidth=spec.hbm_bandwidth,
        intra_node=_link(spec.intra_node),
        inter_node=_link(spec.inter_node),
        gpus_per_node=spec.gpus_per_node,
        compute_efficiency=spec.compute_efficiency,
        memory_efficiency=spec.memory_efficiency,
        kernel_launch_s=spec.kernel_launch_s,
        l2_bytes=spec.l2_bytes,
        multiprocessors=spec.multiprocessors,
        tdp_w=spec.tdp_w,
        idle_w=spec.idle_w,
        price_per_gpu_hour=spec.price_per_gpu_hour,
        confidence=spec.confidence,
        sources={key: src.cite for key, src in spec.sources.items()},
        confidence_by_field=grades,
        host_link=_link(spec.host_link) if spec.host_link else DEFAULT_HOST_LINK,
        cpu_memory_bytes=spec.cpu_memory_bytes,
        cpu_memory_bandwidth=spec.cpu_memory_bandwidth,
    )


def _link(spec: _LinkFile) -> Link:
    return Link(spec.name, spec.bandwidth, spec.latency_s, spec.peer_bandwidth)


def _as_servesim_error(problems: list[Problem], where: str) -> ServesimError:
    """One line naming every bad field, first field first (so ``ServesimError.field`` is it)."""
    text = "; ".join(f"{p.dotted} {_hardware_words(p)}" if p.path else p.message for p in problems)
    return ServesimError(f"{text} (in {where}; {_EXAMPLE})", field=problems[0].dotted or None)


def _hardware_words(problem: Problem) -> str:
    if problem.message.startswith("unknown field"):
        return "is not a known field; " + problem.message.removeprefix("unknown field (")[:-1]
    if problem.path == ("name",) and problem.message.startswith("must match"):
        return "must be one word without spaces"
    return problem.message


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    return "known: " + ", ".join(choices)


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and nested dicts as plain dicts and lists (YAML/JSON shaped)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# NOTE: libyaml's C parser (when PyYAML was built with it) reads the catalog ~10× faster than the
# pure-Python one; the safe constructor and our resolver below are the same either way.
_SafeBase = yaml_loader()  # (duplicate keys refused, as in every user file)


class _Loader(_SafeBase):  # type: ignore[misc,valid-type]
    """SafeLoader that reads ``3.35e12`` as a float.

    NOTE: YAML 1.1 (PyYAML) only treats scientific notation as a float when it has a dot and a
    signed exponent (``3.35e+12``); the catalog is written in the YAML 1.2 style people expect.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except (yaml.YAMLError, *PARSE_ERRORS) as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or parse_problem(err)
        raise ServesimError(
            f"{where} is not valid YAML{at}: {problem}",
            field="hardware",
            fix="check indentation and quoting",
        ) from None


# --- the catalog ------------------------------------------------------------------------------


def _key(name: str) -> str:
    """Lookup key: case-insensitive; `_` and spaces read as `-` (h100_sxm finds H100-SXM)."""
    return re.sub(r"[\s_]+", "-", name.strip()).lower()


_CATALOG_DIR = Path(__file__).parent / "catalog" / "hardware"

# A shipped file's top-level `name:` and `aliases:` lines: enough to index the catalog without
# parsing and validating every spec (start-up time: only the requested GPU's file is read whole).
_NAME_LINES = re.compile(r"^(?:name|aliases):.*$", re.MULTILINE)


@functools.lru_cache(maxsize=1)
def _shipped_files() -> dict[str, Path]:
    """Lookup key (id and every alias) -> the shipped YAML file that defines it."""
    index: dict[str, Path] = {}
    for path in sorted(_CATALOG_DIR.glob("*.yaml")):
        header = _parse_yaml("\n".join(_NAME_LINES.findall(path.read_text("utf-8"))), path.name)
        if not isinstance(header, dict) or not isinstance(header.get("name"), str):
            # A packaging bug, not a user mistake: every shipped file starts with its names.
            raise RuntimeError(f"hardware catalog: {path.name} has no one-line `name:`")
        for name in (header["name"], *(header.get("aliases") or ())):
            if _key(name) in index:
                raise RuntimeError(f"hardware catalog: {name!r} is claimed twice ({path.name})")
            index[_key(name)] = path
    return index


@functools.cache
def _load_shipped(path: Path) -> tuple[Hardware, str]:
    """One shipped file, parsed and validated once: (spec, YAML text)."""
    text = path.read_text(encoding="utf-8")
    return _build(_parse_yaml(text, path.name), where=path.name), text


def _shipped(key: str) -> tuple[Hardware, str] | None:
    path = _shipped_files().get(key)
    return None if path is None else _load_shipped(path)


def list_hardware() -> list[Hardware]:
    """Every shipped accelerator, sorted by id."""
    specs = [_load_shipped(path)[0] for path in set(_shipped_files().values())]
    return sorted(specs, key=lambda hw: hw.name)


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text


def _lookup(name: str) -> tuple[Hardware, str]:
    found = _shipped(_key(name))
    if found is not None:
        return found
    close = difflib.get_close_matches(_key(name), list(_shipped_files()), n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys(_load_shipped(_shipped_files()[c])[0].name for c in close))
    hint = f"did you mean {' or '.join(suggestions)}? " if suggestions else ""
    ids = ", ".join(hw.name for hw in list_hardware())
    raise ServesimError(
        f"unknown GPU {name!r}",
        field="hardware",
        fix=f"{hint}shipped: {ids}; or give the path of your own YAML file",
    )


def load_hardware(name_or_path: str) -> Hardware:
    """A shipped accelerator by id or alias (case-insensitive), or a user's YAML file by path.

    Shipped entries are parsed once and cached; a user's file is read on every call so edits
    show up. Any problem (unknown name, missing file, a missing/negative/mistyped field) raises
    :class:`ServesimError` naming the field and the file.
    """
    text = str(name_or_path).strip()
    if not text:
        raise ServesimError("hardware is empty", field="hardware", fix="give a GPU id such as H100")
    found = None if _looks_like_path(text) else _shipped(_key(text))
    if found is not None:
        return found[0]
    path = Path(text).expanduser()
    if path.is_file():
        return _build(_parse_yaml(read_text(path, field="hardware", name=text), text), where=text)
    if _looks_like_path(text):
        raise ServesimError(
            f"hardware file {text} {not_a_file(path)}",
            field="hardware",
            fix="check the path; `servesim hardware` lists the shipped ids",
        )
    return _lookup(text)[0]


def shipped_yaml(name: str) -> str:
    """The YAML text of a shipped accelerator (id or alias): a template for your own file."""
    return _lookup(name)[1]
