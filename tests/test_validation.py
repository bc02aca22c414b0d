"""servesim.validation: spec classes, conversion and the one-line errors users see."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest
from msgspec import Meta

from servesim.errors import ServesimError
from servesim.validation import (
    FieldError,
    Spec,
    all_problems,
    convert,
    field_default,
    field_names,
    replace,
    revalidate,
    to_data,
)


class _Kind(Spec, tag_field="kind"):
    pass


class Circle(_Kind, tag="circle"):
    radius: Annotated[float, Meta(gt=0)]


class Square(_Kind, tag="square"):
    side: Annotated[float, Meta(gt=0)]
    label: str | None = None


class Link(Spec):
    name: Annotated[str, Meta(min_length=1)]
    bandwidth: Annotated[float, Meta(gt=0)]


class Thing(Spec, kw_only=True):
    name: str
    count: Annotated[int, Meta(ge=1)] = 1
    colour: Literal["red", "green"] = "red"
    shape: Circle | Square | None = None
    links: list[Link] = []
    peaks: dict[str, Annotated[float, Meta(gt=0)]] = {}
    window: tuple[float, float] | None = None
    path: Path | None = None
    lo: int = 0
    hi: int = 0

    def __post_init__(self) -> None:
        if self.hi < self.lo:
            raise FieldError("hi", f"{self.hi} is below lo ({self.lo})")


def error(data: dict, source: str = "", prefix: str = "") -> ServesimError:
    with pytest.raises(ServesimError) as info:
        convert(data, Thing, source, prefix)
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"name": "a", "count": 0}, "count", "count: must be >= 1 (got 0)"),
        ({"name": "a", "count": "x"}, "count", "count: must be an integer (got 'x')"),
        ({"name": "a", "count": True}, "count", "count: must be an integer (got True)"),
        ({"name": "a", "colour": "blue"}, "colour", "must be 'green' or 'red' (got 'blue')"),
        ({"name": "a", "cuont": 2}, "cuont", "cuont: unknown field (did you mean count?)"),
        ({"name": "a", "zzz": 2}, "zzz", "unknown field (valid here: name, count, colour"),
        ({}, "name", "name: is required"),
        ({"name": "a", "shape": {"kind": "oval"}}, "shape.kind", "'oval' is not a kind here"),
        ({"name": "a", "shape": {"kind": "square", "side": -1}}, "shape.side", "must be > 0"),
        ({"name": "a", "shape": {"kind": "square", "sid": 1}}, "shape.sid", "did you mean side?"),
        ({"name": "a", "shape": 3}, "shape", "must be a mapping (got 3)"),
        ({"name": "a", "links": [{"name": "", "bandwidth": 1}]}, "links.0.name", "not be empty"),
        ({"name": "a", "links": [{"name": "x"}]}, "links.0.bandwidth", "is required"),
        ({"name": "a", "peaks": {"ok": 1.0, "bad": -2.0}}, "peaks.bad", "must be > 0 (got -2)"),
        ({"name": "a", "window": [1.0]}, "window", "must be a list of 2 items, got 1"),
        ({"name": "a", "path": 5}, "path", "path"),
        ({"name": "a", "lo": 5, "hi": 2}, "hi", "hi: 2 is below lo (5)"),
    ],
)
def test_each_problem_is_one_line_naming_the_field(data: dict, field: str, text: str):
    err = error(data)
    assert err.field == field
    assert text in str(err)


def test_source_and_prefix_lead_the_message():
    err = error({"name": "a", "count": 0}, source="run.yaml", prefix="thing")
    assert str(err) == "run.yaml: thing.count: must be >= 1 (got 0)"
    assert err.field == "thing.count"


def test_numbers_written_as_strings_are_read():
    # YAML reads `1e3` as a string; the field's type says it is a number.
    thing = convert({"name": "a", "peaks": {"y": "1e3"}}, Thing)
    assert thing.peaks == {"y": 1000.0}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "a", "peaks": {"x": "inf"}}, "peaks.x"),
        ({"name": "a", "peaks": {"x": 1.0, "y": float("inf")}}, "peaks.y"),
        ({"name": "a", "links": [{"name": "l", "bandwidth": "inf"}]}, "links.0.bandwidth"),
        ({"name": "a", "window": [0.0, "-inf"]}, "window.1"),
        ({"name": "a", "window": [0.0, "nan"]}, "window.1"),
    ],
)
def test_a_range_check_does_not_let_infinity_through(data: dict, field: str):
    # (`gt=0` holds for inf; the arithmetic downstream would fail far from the input.)
    err = error(data)
    assert err.field == field
    assert "must be a finite number" in str(err)


def test_an_arrival_rate_may_be_infinite():
    class Arrival(Spec):
        rate: float

    assert convert({"rate": "inf"}, Arrival).rate == float("inf")
    with pytest.raises(ServesimError, match="rate: must be a finite number"):
        convert({"rate": "-inf"}, Arrival)


def test_paths_convert_and_dump_as_strings():
    thing = convert({"name": "a", "path": "runs/x.yaml"}, Thing)
    assert thing.path == Path("runs/x.yaml")
    assert to_data(thing)["path"] == "runs/x.yaml"


def test_to_data_round_trips_with_tuples_as_lists():
    thing = convert(
        {"name": "a", "shape": {"kind": "circle", "radius": 2}, "window": [0, 5]}, Thing
    )
    data = to_data(thing)
    assert data["shape"] == {"kind": "circle", "radius": 2.0}
    assert data["window"] == [0.0, 5.0]
    assert convert(data, Thing) == thing


def test_specs_are_frozen_and_replace_makes_a_copy():
    thing = convert({"name": "a"}, Thing)
    with pytest.raises(AttributeError):
        thing.count = 3  # type: ignore[misc]
    assert replace(thing, count=3).count == 3 and thing.count == 1


def test_revalidate_checks_what_the_constructor_does_not():
    built = Thing(name="a", count=0)  # constructors skip range checks
    with pytest.raises(ServesimError, match="count: must be >= 1"):
        revalidate(built)
    assert revalidate(Thing(name="a", count=2)) == Thing(name="a", count=2)
    with pytest.raises(ValueError, match="hi: 1 is below lo"):
        Thing(name="a", lo=2, hi=1)  # rules do run


def test_all_problems_lists_every_top_level_mistake():
    problems = all_problems({"count": 0, "colr": "red", "peaks": {"a": -1.0}}, Thing)
    found = {p.dotted: p.message for p in problems}
    assert found["colr"].startswith("unknown field (did you mean colour?")
    assert found["name"] == "is required"
    assert found["count"] == "must be >= 1 (got 0)"
    assert found["peaks.a"] == "must be > 0 (got -1)"
    assert all_problems({"name": "a"}, Thing) == []


def test_all_problems_is_strict_about_numbers_when_asked():
    assert all_problems({"name": "a", "count": "2"}, Thing, strict=False) == []
    (problem,) = all_problems({"name": "a", "count": "2"}, Thing)
    assert problem.message == "must be an integer (got '2')"


def test_rules_spanning_fields_are_checked_after_the_types():
    (problem,) = all_problems({"name": "a", "lo": 3, "hi": 1}, Thing)
    assert problem.dotted == "hi" and problem.message == "1 is below lo (3)"


def test_field_helpers():
    assert field_names(Square) == ("side", "label")
    assert field_default(Thing, "count") == 1
    with pytest.raises(KeyError):
        field_default(Thing, "name")
    assert msgspec.structs.fields(Thing)[0].name == "name"
