"""The sweep file: a base scenario plus axes to vary, expanded into validated scenarios.

A sweep file (YAML) looks like::

    name: batch-budget-vs-rate        # optional label
    base: ../scenarios/llama8b.yaml   # a scenario file (relative to this file) or a mapping
    grid:                             # cartesian product of every axis
      scheduler.max_num_batched_tokens: [2048, 8192]
      workload.arrival.rate: [5, 10, 20]
    cases:                            # optional list of overrides, crossed with the grid
      - {hardware: H100, tp: 1}
      - {hardware: H200, tp: 1}

An axis is a dotted path into :class:`~servesim.scenario.Scenario` (``tp``, ``hardware``,
``model``, ``replicas``, ``scheduler.max_num_batched_tokens``, ``workload.arrival.rate``...).
A value replaces what the base has at that path (a mapping value replaces the whole sub-mapping).
Every generated scenario is validated with :func:`~servesim.scenario.build_scenario` before
anything runs, so a typo stops the sweep at once rather than after hours.
"""

import copy
import hashlib
import itertools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from servesim.errors import ServesimError
from servesim.scenario import (
    Scenario,
    build_scenario,
    load_scenario_file,
    read_yaml_file,
    workload_fields,
)
from servesim.validation import Spec, convert, field_default, field_names, field_type, to_data


class SweepSpec(Spec):
    """What a sweep file holds (validated at the boundary, never mutated)."""

    name: Annotated[str, Meta(description="label for reports")] | None = None
    base: Annotated[
        dict[str, Any] | str,
        Meta(description="the scenario every point starts from: a mapping, or a scenario file"),
    ] = msgspec.field(default_factory=dict)
    grid: Annotated[
        dict[str, list[Any]], Meta(description="axis (dotted path) -> values; cartesian product")
    ] = msgspec.field(default_factory=dict)
    cases: Annotated[
        list[dict[str, Any]],
        Meta(description="explicit overrides ({axis: value}), crossed with grid"),
    ] = msgspec.field(default_factory=list)


@dataclass(frozen=True)
class SweepPoint:
    """One scenario of a sweep."""

    index: int
    """Position in the sweep (0-based, grid order: the last axis varies fastest)."""
    scenario_id: str
    """Stable hash of the validated scenario (16 hex digits): the resume key."""
    axes: dict[str, Any]
    """Effective value of every axis in this scenario (JSON-ready)."""
    scenario: Scenario


def scenario_id(scenario: Scenario) -> str:
    """Stable 16-hex-digit hash of a validated scenario.

    NOTE: hashed from the validated, fully-defaulted dump with sorted keys, so ``rate: 20`` and
    ``rate: 20.0``, or a field left at its default and the same value written out, are the
    same scenario; it does not depend on dict order, the process or the Python hash seed.
    """
    text = json.dumps(to_data(scenario), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_sweep(data: Any, source: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping; a bad field raises ServesimError naming it."""
    if not isinstance(data, dict):
        raise ServesimError(f"{source}: a sweep file must be a mapping (base, grid, cases)")
    return convert(data, SweepSpec, source)


def load_sweep_file(path: str | Path) -> tuple[SweepSpec, dict[str, Any]]:
    """Read a sweep YAML file: the spec and its base scenario as a plain dict.

    A ``base`` path, and a ``workload`` file an inline base names, are resolved relative to
    the sweep file's folder.
    """
    p = Path(path)
    data = read_yaml_file(p, "sweep file", "SWEEP")
    spec = parse_sweep(data if data is not None else {}, source=str(p))
    base = spec.base
    if isinstance(base, str):
        base_path = Path(base) if Path(base).is_absolute() else p.parent / base
        base = load_scenario_file(base_path, field="base")
    elif isinstance(base.get("workload"), str):
        workload = workload_fields(base["workload"], "base.workload", p.parent)
        base = {**base, "workload": workload}
    return spec, base


# --------------------------------------------------------------------------- axes


def _submodel(annotation: Any) -> type | None:
    """The spec class a field holds (``X`` or ``X | None``), else None (a union of kinds, a
    list, plain data)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _submodel(members[0])
    return None


def check_axis(path: str) -> None:
    """Raise ServesimError when ``path`` does not name a scenario field.

    Paths are checked as deep as the scenario's nested models go; below a union (e.g. the
    kinds of ``workload.arrival``) the generated scenario's validation checks the rest.
    """
    parts = path.split(".")
    model: type | None = Scenario
    for i, part in enumerate(parts):
        if model is None:
            return
        fields = field_names(model)
        if part not in fields:
            where = ".".join(parts[:i])
            scope = "top-level fields" if not where else f"fields of {where}"
            raise ServesimError(
                f"unknown axis {path!r}" + (f": {where} has no field {part!r}" if where else ""),
                field="grid",
                fix=f"valid {scope}: {', '.join(fields)}",
            )
        model = _submodel(field_type(model, part))


def _default_of(top: str) -> Any:
    """A scenario field's default as plain data (what a base without that key means)."""
    return to_data(field_default(Scenario, top))


def set_path(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``value`` at the dotted ``path`` (missing mappings created).

    A missing top-level mapping starts from the scenario's default (so ``workload.arrival.rate``
    on a base without ``workload`` varies the default workload's rate, not an empty one).
    """
    out = copy.deepcopy(data)
    parts = path.split(".")
    if len(parts) > 1 and parts[0] not in out:
        out[parts[0]] = _default_of(parts[0])
    node = out
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = {}
            # NOTE: an arrival with no kind means Poisson (the workload's documented default),
            # so `workload.arrival.rate` works on a base that names no arrival.
            if parts[: i + 1] == ["workload", "arrival"]:
                child = {"kind": "poisson"}
        elif not isinstance(child, dict):
            raise ServesimError(
                f"axis {path!r}: {'.'.join(parts[: i + 1])} is {child!r}, not a mapping",
                field="grid",
                fix="vary the whole field instead, or make the base a mapping there",
            )
        node[part] = child = dict(child)
        node = child
    node[parts[-1]] = value
    return out


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` of plain data, or None when it is not there."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


# --------------------------------------------------------------------------- expansion


def _combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    """The override mappings, one per point: every case × every grid point."""
    for axis, values in spec.grid.items():
        if not values:
            raise ServesimError(
                f"axis {axis!r} has no values", field="grid", fix="give at least one value"
            )
    if not spec.grid and not spec.cases:
        raise ServesimError(
            "the sweep is empty", field="grid", fix="give grid axes with values, or cases"
        )
    axes = list(spec.grid)
    grid = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*spec.grid.values())]
    cases = spec.cases or [{}]
    return [{**case, **point} for case in cases for point in grid]


def axis_names(spec: SweepSpec) -> list[str]:
    """Every axis of a sweep, in file order: case keys first, then grid axes."""
    names: dict[str, None] = {}
    for case in spec.cases:
        names.update(dict.fromkeys(case))
    names.update(dict.fromkeys(spec.grid))
    return list(names)


def _describe(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "base"


def expand(spec: SweepSpec, base: dict[str, Any]) -> list[SweepPoint]:
    """Every scenario of the sweep, validated; raises ServesimError on the first bad one."""
    names = axis_names(spec)
    for name in names:
        check_axis(name)
    build_scenario(base, source="sweep base")
    points: list[SweepPoint] = []
    seen: dict[str, int] = {}
    for index, overrides in enumerate(_combinations(spec)):
        data = base
        for path, value in overrides.items():
            data = set_path(data, path, value)
        scenario = build_scenario(data, source=f"sweep scenario {index} ({_describe(overrides)})")
        sid = scenario_id(scenario)
        if sid in seen:
            raise ServesimError(
                f"sweep scenarios {seen[sid]} and {index} ({_describe(overrides)}) are the same "
                "scenario",
                field="cases",
                fix="remove the duplicate case or axis value",
            )
        seen[sid] = index
        dump = to_data(scenario)
        axes = {name: get_path(dump, name) for name in names}
        points.append(SweepPoint(index, sid, axes, scenario))
    return points
