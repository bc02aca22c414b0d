"""Validation at the boundary: frozen spec classes and one-line errors for user mistakes.

Every spec a user writes (scenario, workload, hardware file, sweep, plan, calibration, sessions
file) is a :class:`Spec`: a frozen ``msgspec.Struct`` that refuses unknown fields. Raw data
(parsed YAML, CLI flags, a dict) becomes a spec only through :func:`convert`, which checks
types and constraints (``Annotated[int, Meta(ge=1)]``) and runs each class's
``__post_init__`` (cross-field rules), and turns the first problem into a
:class:`~servesim.errors.ServesimError` that names the field, the bad value and the fix.

NOTE: msgspec rather than pydantic, measured: importing pydantic and building the first model
costs ~0.1 s of every CLI start (`bench/bench_startup.py`), msgspec ~5 ms; a small
``servesim simulate`` is ~0.25 s in all. Constructing a spec directly (``SchedulerSpec(...)``)
runs ``__post_init__`` but not the type and range checks: :func:`revalidate` does the whole
check for a spec built in code (the Python API calls it).

NOTE: modules of specs on the ``simulate`` path do not use ``from __future__ import
annotations``: msgspec would ``eval`` every string annotation the first time it converts to a
class (~5 ms for Scenario and its parts); real annotations cost nothing extra.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from servesim.errors import ServesimError

T = TypeVar("T")


class Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every user-facing spec: frozen, keyword-only, unknown fields refused.

    (msgspec applies ``kw_only`` to the fields a class itself defines: a subclass that lists a
    required field after an optional one says ``kw_only=True`` again.)
    """


class FieldError(ServesimError):
    """A rule broken by one field, raised in a spec's ``__post_init__``: the error the user
    sees names that field (``workload.input_len: ...``) rather than the whole spec.

    (A ValueError, so conversion reports it with the spec's path in front.)"""

    def __init__(self, field: str, message: str):
        super().__init__(message, field=field)


# --------------------------------------------------------------------------- to and from data


def _decode_extra(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, (str, Path)):
        return Path(value)
    raise TypeError(f"Expected `{getattr(kind, '__name__', kind)}`, got `{type(value).__name__}`")


def _encode_extra(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if _is_numpy_scalar(value):
        return value.item()
    raise TypeError(f"cannot write a {type(value).__name__}")


def _is_numpy_scalar(value: Any) -> bool:
    """A numpy number (``np.int64(2)`` from ``np.arange``): read as the Python number it
    holds, as a sweep written in numpy passes them."""
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0


def _python_numbers(data: Any) -> Any:
    """``data`` with numpy scalars as Python numbers (containers copied only where one is)."""
    if _is_numpy_scalar(data):
        return data.item()
    if isinstance(data, Mapping):
        items = {k: _python_numbers(v) for k, v in data.items()}
        return items if any(items[k] is not v for k, v in data.items()) else data
    if isinstance(data, (list, tuple)):
        values = [_python_numbers(v) for v in data]
        return values if any(a is not b for a, b in zip(values, data, strict=True)) else data
    return data


def _lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj


def to_data(spec: Any) -> Any:
    """``spec`` as plain JSON/YAML-ready data: dicts, lists, str, numbers, bools, None.

    Every field is written, defaults included (so a dumped spec reads back the same).
    """
    return _lists(msgspec.to_builtins(spec, enc_hook=_encode_extra))


def replace(spec: T, **changes: Any) -> T:
    """A copy of ``spec`` with ``changes``, for values the code computed: types and ranges are
    not re-checked (msgspec >= 0.21 re-runs ``__post_init__`` rules)."""
    return msgspec.structs.replace(spec, **changes)


def field_names(cls: type) -> tuple[str, ...]:
    """The field names of a spec class, in declaration order."""
    return cls.__struct_fields__


@functools.cache
def _field_infos(cls: type) -> dict[str, msgspec.structs.FieldInfo]:
    # NOTE: cached: msgspec.structs.fields resolves the annotations on every call (~0.8 ms for
    # Scenario), and Scenario's own rules look up defaults each time one is built.
    return {info.name: info for info in msgspec.structs.fields(cls)}


def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` (a factory is called); raises KeyError when required."""
    info = _field_infos(cls)[name]
    if info.default is not msgspec.NODEFAULT:
        return info.default
    if info.default_factory is not msgspec.NODEFAULT:
        return info.default_factory()
    raise KeyError(name)


def field_type(cls: type, name: str) -> Any:
    """The (resolved) annotation of field ``name`` of a spec class."""
    return _field_infos(cls)[name].type


# --------------------------------------------------------------------------- problems


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with user data: where (field path) and what, in plain words."""

    path: tuple[str | int, ...]
    message: str

    @property
    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path)


_AT = re.compile(r" - at `(?:(key)` in `)?\$(.*)`$")
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_WANT = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


_SOME_KEY = "[...]"
"""Where msgspec's path goes through a mapping's value it does not name the key."""


def _split_path(text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for match in _PART.finditer(text):
        name, index = match.groups()
        parts.append(name if name else int(index) if index else _SOME_KEY)
    return tuple(parts)


def _with_value(data: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A copy of ``data`` with ``value`` at ``path`` (only the containers on the path copied)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(data) if isinstance(data, Mapping) else list(data)
    copy[head] = _with_value(data[head], rest, value)  # type: ignore[index]
    return copy


def _name_keys(
    path: tuple[str | int, ...], text: str, data: Any, trial: Callable[[Any], Any]
) -> tuple[str | int, ...]:
    """``path`` with each unnamed mapping key found: the first key whose entry alone still
    fails the same way is the one at fault."""
    while _SOME_KEY in path:
        at = path.index(_SOME_KEY)
        mapping = _value_at(data, path[:at])
        culprit: Any = None
        if isinstance(mapping, Mapping):
            for key, value in mapping.items():
                try:
                    trial(_with_value(data, path[:at], {key: value}))
                except msgspec.ValidationError as err:
                    if str(err).startswith(text):
                        culprit = key
                        break
        if culprit is None:
            return path[:at]
        path = (*path[:at], culprit, *path[at + 1 :])
    return path


def _value_at(data: Any, path: tuple[str | int, ...]) -> Any:
    """What the user wrote at ``path`` (a missing step gives ``_MISSING``)."""
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


_MISSING = object()


def _shown(value: Any) -> str:
    if value is _MISSING or isinstance(value, (dict, list, tuple)):
        return ""
    if isinstance(value, float):
        return f" (got {value:g})"
    return f" (got {value!r})"


def _type_at(cls: type, path: tuple[str | int, ...], data: Any, union: bool = False) -> Any:
    """The msgspec.inspect type at ``path`` below spec class ``cls`` (None when unknown).

    ``union``: return the union found at ``path`` itself rather than the member chosen.
    """
    import msgspec.inspect as mi

    node: Any = mi.type_info(cls)
    walked: list[str | int] = []
    for part in (*path, None):
        while True:  # unwrap wrappers and pick a union's member by what the user wrote
            if isinstance(node, mi.Metadata):
                node = node.type
            elif isinstance(node, mi.UnionType):
                if union and part is None:
                    return node
                here = _value_at(data, tuple(walked))
                members = [t for t in node.types if not isinstance(t, mi.NoneType)]
                structs = [t for t in members if isinstance(t, mi.StructType)]
                if isinstance(here, Mapping) and structs:
                    tagged = [t for t in structs if t.tag is not None]
                    if tagged:
                        structs = [t for t in tagged if t.tag == here.get(t.tag_field)]
                    members = structs
                if len(members) != 1:
                    return None
                node = members[0]
            else:
                break
        if part is None:
            return node
        walked.append(part)
        if isinstance(node, mi.StructType) and isinstance(part, str):
            fields = {f.name: f.type for f in node.fields}
            if part not in fields:
                return None
            node = fields[part]
        elif isinstance(node, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
            node = node.item_type
        elif isinstance(node, mi.TupleType) and isinstance(part, int):
            node = node.item_types[part] if part < len(node.item_types) else None
        elif isinstance(node, mi.DictType):
            node = node.value_type
        else:
            return None
    return node


def _union_members(node: Any) -> list[Any]:
    """The alternatives of a union, through nested unions and ``Annotated`` wrappers."""
    import msgspec.inspect as mi

    if isinstance(node, mi.Metadata):
        return _union_members(node.type)
    if isinstance(node, mi.UnionType):
        return [m for t in node.types for m in _union_members(t)]
    return [] if node is None else [node]


def _fields_of(cls: type, path: tuple[str | int, ...], data: Any) -> list[str]:
    import msgspec.inspect as mi

    node = _type_at(cls, path, data)
    if isinstance(node, mi.StructType):
        return [f.name for f in node.fields]
    return []


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """``"did you mean X?"`` for the closest choice, else the valid choices."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return f"valid here: {', '.join(choices)}" if choices else "check the spelling"


def _friendly(text: str, got: Any, node: Any) -> str:
    """msgspec's message in the words a user needs."""
    if m := re.fullmatch(r"Expected `(\w+)` (>=|>|<=|<) (\S+)", text):
        bound = float(m.group(3))
        shown = f"{int(bound):,}" if bound.is_integer() and abs(bound) >= 1e4 else f"{bound:g}"
        return f"must be {m.group(2)} {shown}{_shown(got)}"
    if m := re.fullmatch(r"Expected `(\w+)` of length (>=|<=) (\d+)", text):
        what, op, n = m.group(1), m.group(2), int(m.group(3))
        if op == ">=" and n == 1:
            return "must not be empty"
        return f"must have {'at least' if op == '>=' else 'at most'} {n} " + (
            "characters" if what == "str" else "items"
        )
    if m := re.fullmatch(r"Expected `array` of length (\d+), got (\d+)", text):
        return f"must be a list of {m.group(1)} items, got {m.group(2)}"
    if m := re.fullmatch(r"Expected `str` matching regex (.*)", text):
        return f"must match {m.group(1)}{_shown(got)}"
    if m := re.fullmatch(r"Expected `([^`]+)`, got `(\w+)`", text):
        wants = [_WANT.get(w.strip(), w.strip()) for w in m.group(1).split("|")]
        wants = [w for w in wants if w != "null"] or ["null"]
        want = wants[0] if len(wants) == 1 else f"{', '.join(wants[:-1])} or {wants[-1]}"
        shown = _shown(got) or f" (got {m.group(2).replace('object', 'a mapping')})"
        return f"must be {want}{shown}"
    if text.startswith("Invalid enum value"):
        import msgspec.inspect as mi

        if isinstance(node, mi.LiteralType):
            names = [repr(v) for v in node.values]
            choices = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
            return f"must be {choices}{_shown(got)}"
        return f"is not one of the allowed values{_shown(got)}"
    return text


def problem_of(
    err: msgspec.ValidationError,
    cls: type,
    data: Any,
    base: tuple[str | int, ...] = (),
    trial: Callable[[Any], Any] | None = None,
) -> Problem:
    """One msgspec ValidationError from converting ``data`` to ``cls`` as a Problem.

    With ``base``, the error came from converting only the value at that path of ``data``;
    ``trial`` re-runs that conversion on edited data (to find a mapping key at fault).
    """
    text = str(err)
    path: tuple[str | int, ...] = base
    is_key = False
    if m := _AT.search(text):
        is_key = bool(m.group(1))
        text = text[: m.start()]
        path = (*base, *_split_path(m.group(2)))
        if _SOME_KEY in path:
            path = _name_keys(path, text, data, trial or (lambda d: _convert(d, cls)))
    if m := re.fullmatch(r"Object contains unknown field `(.+)`", text):
        name = m.group(1)
        return Problem(
            (*path, name), f"unknown field ({did_you_mean(name, _fields_of(cls, path, data))})"
        )
    if m := re.fullmatch(r"Object missing required field `(.+)`", text):
        return Problem((*path, m.group(1)), "is required")
    if text.startswith("Invalid value") and path and path[-1] == "kind":
        import msgspec.inspect as mi

        members = _union_members(_type_at(cls, path[:-1], data, union=True))
        tags = [t.tag for t in members if isinstance(t, mi.StructType) and t.tag is not None]
        got = _value_at(data, path)
        return Problem(path, f"{got!r} is not a kind here (valid: {', '.join(tags)})")
    if is_key:
        node = _type_at(cls, path, data)
        keys = getattr(getattr(node, "key_type", None), "values", None)
        bad = [k for k in _value_at(data, path) or () if keys is not None and k not in keys]
        if keys is not None and bad:
            return Problem(path, f"has unknown key {bad[0]!r} (expected one of: {', '.join(keys)})")
        return Problem(path, f"has a bad key: {_friendly(text, _MISSING, None)}")
    if (m := re.fullmatch(r"([A-Za-z_]\w*): (.+)", text, re.S)) and m.group(1) in _fields_of(
        cls, path, data
    ):
        return Problem((*path, m.group(1)), m.group(2))  # a rule's FieldError
    return Problem(path, _friendly(text, _value_at(data, path), _type_at(cls, path, data)))


def _convert(data: Any, cls: type[T], strict: bool = False) -> T:
    return msgspec.convert(data, cls, strict=strict, dec_hook=_decode_extra)


INFINITE_OK = frozenset({"rate"})
"""Fields where ``inf`` means something (an arrival ``rate: inf`` is a burst at t = 0)."""


def non_finite(data: Any, path: tuple[str | int, ...] = ()) -> Problem | None:
    """The first number in ``data`` (converted spec data: dicts, lists, numbers) that is NaN or
    infinite, as a Problem; None when every number is finite.

    A range check (``Meta(gt=0)``) lets ``inf`` through and the arithmetic downstream then
    fails far from the input (a KV cache of ``inf`` GiB, a bandwidth of ``inf``): no spec
    field takes one, except ``+inf`` where :data:`INFINITE_OK` names it."""
    if isinstance(data, float) and not math.isfinite(data):
        if data > 0 and path and path[-1] in INFINITE_OK:
            return None
        return Problem(path, f"must be a finite number (got {data})")
    if isinstance(data, Mapping):
        items: Any = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        found = non_finite(value, (*path, key))
        if found is not None:
            return found
    return None


def convert(data: Any, cls: type[T], source: str = "", prefix: str = "") -> T:
    """Validate ``data`` (a mapping from YAML, JSON or flags) into ``cls``.

    Numbers written as strings are read (``rate: inf`` in YAML is the string "inf"), as are
    0/1 for booleans; NaN and infinities are refused (:func:`non_finite`). The first problem
    raises ServesimError: ``"{source}: {prefix}.{field}: {what} (got X)"``.
    """
    data = _python_numbers(data)
    try:
        spec = _convert(data, cls)
    except msgspec.ValidationError as err:
        problem = problem_of(err, cls, data)
        raise error_of(problem, source, prefix) from None
    problem = non_finite(to_data(spec)) if isinstance(spec, msgspec.Struct) else None
    if problem is not None:
        raise error_of(problem, source, prefix)
    return spec


def error_of(problem: Problem, source: str = "", prefix: str = "") -> ServesimError:
    """A Problem as the one-line ServesimError the CLI prints."""
    where = ".".join(p for p in (prefix, problem.dotted) if p)
    text = f"{where}: {problem.message}" if where else problem.message
    err = ServesimError(f"{source}: {text}" if source else text)
    err.field = where or None
    return err


def all_problems(data: Mapping[str, Any], cls: type, strict: bool = True) -> list[Problem]:
    """Every top-level problem of ``data`` as ``cls`` (unknown, missing and bad fields), so a
    file with several mistakes is fixed in one pass; [] when it converts.

    ``strict``: a number must be written as a number (no "5", no true for 1)."""
    infos = _field_infos(cls)
    found = [
        Problem((key,), f"unknown field ({did_you_mean(key, list(infos))})")
        for key in data
        if key not in infos
    ]
    for name, info in infos.items():
        if name not in data:
            if info.required:
                found.append(Problem((name,), "is required"))
            continue
        try:
            _convert(data[name], info.type, strict)
        except msgspec.ValidationError as err:

            def trial(edited: Any, name: str = name, kind: Any = info.type) -> Any:
                return _convert(edited[name], kind, strict)

            found.append(problem_of(err, cls, data, base=(name,), trial=trial))
    if not found:
        try:
            _convert(data, cls, strict)
        except msgspec.ValidationError as err:
            found.append(problem_of(err, cls, data, trial=lambda d: _convert(d, cls, strict)))
    return found


def revalidate(spec: T) -> T:
    """Check a spec built in code as :func:`convert` checks data (types, ranges, rules)."""
    return convert(to_data(spec), type(spec))
