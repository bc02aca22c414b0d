"""Sweep files: expansion into validated scenarios, axes, ids, and clear errors."""

import pytest

from servesim.errors import ServesimError
from servesim.sweep.spec import (
    axis_names,
    check_axis,
    expand,
    load_sweep_file,
    parse_sweep,
    scenario_id,
    set_path,
)

BASE = {"workload": {"preset": "conversation", "num_requests": 50}}


def make_sweep(**fields):
    return parse_sweep({"base": BASE, **fields})


def test_grid_is_the_cartesian_product_with_the_last_axis_fastest():
    spec = make_sweep(grid={"tp": [1, 2], "workload.arrival.rate": [5, 10, 20]})
    points = expand(spec, spec.base)
    assert [p.index for p in points] == list(range(6))
    assert [(p.axes["tp"], p.axes["workload.arrival.rate"]) for p in points] == [
        (1, 5.0), (1, 10.0), (1, 20.0), (2, 5.0), (2, 10.0), (2, 20.0),
    ]  # fmt: skip
    assert points[4].scenario.tp == 2
    assert points[4].scenario.workload.arrival.rate == 10.0
    # The rest of the base is kept.
    assert points[4].scenario.workload.num_requests == 50


def test_cases_are_crossed_with_the_grid_and_every_axis_shows_its_effective_value():
    spec = make_sweep(
        cases=[{"hardware": "H100"}, {"hardware": "H200", "tp": 2}],
        grid={"scheduler.max_num_batched_tokens": [2048, 8192]},
    )
    points = expand(spec, spec.base)
    assert axis_names(spec) == ["hardware", "tp", "scheduler.max_num_batched_tokens"]
    assert [(p.axes["hardware"], p.axes["tp"], p.axes["scheduler.max_num_batched_tokens"])
            for p in points] == [
        ("H100", 1, 2048), ("H100", 1, 8192), ("H200", 2, 2048), ("H200", 2, 8192),
    ]  # fmt: skip


def test_rate_axis_on_a_base_without_workload_varies_the_default_workload():
    spec = parse_sweep({"grid": {"workload.arrival.rate": [3]}})
    (point,) = expand(spec, spec.base)
    assert point.scenario.workload.arrival.rate == 3.0
    assert point.scenario.workload.num_requests == 1000  # the default workload's


def test_rate_axis_on_a_workload_without_arrival_means_poisson():
    spec = make_sweep(grid={"workload.arrival.rate": [7]})
    (point,) = expand(spec, spec.base)
    assert point.scenario.workload.arrival.kind == "poisson"


def test_scenario_id_is_stable_and_ignores_how_a_value_was_written():
    a = expand(make_sweep(grid={"workload.arrival.rate": [20]}), BASE)[0]
    b = expand(make_sweep(grid={"workload.arrival.rate": [20.0]}), BASE)[0]
    assert a.scenario_id == b.scenario_id == scenario_id(a.scenario)
    assert len(a.scenario_id) == 16
    c = expand(make_sweep(grid={"workload.arrival.rate": [21]}), BASE)[0]
    assert c.scenario_id != a.scenario_id


def test_unknown_top_level_axis_names_it_and_lists_valid_fields():
    with pytest.raises(ServesimError) as err:
        expand(make_sweep(grid={"tensor_parallel": [1, 2]}), BASE)
    text = str(err.value)
    assert "unknown axis 'tensor_parallel'" in text
    assert "valid top-level fields" in text and "tp" in text and "scheduler" in text


def test_unknown_nested_axis_lists_the_fields_of_its_parent():
    with pytest.raises(ServesimError) as err:
        check_axis("scheduler.max_batched_tokens")
    assert "scheduler has no field 'max_batched_tokens'" in str(err.value)
    assert "max_num_batched_tokens" in str(err.value)


def test_empty_sweep_and_empty_axis_are_errors():
    with pytest.raises(ServesimError, match="the sweep is empty"):
        expand(make_sweep(), BASE)
    with pytest.raises(ServesimError, match="axis 'tp' has no values"):
        expand(make_sweep(grid={"tp": []}), BASE)


def test_bad_value_names_the_scenario_and_the_field():
    with pytest.raises(ServesimError) as err:
        expand(make_sweep(grid={"tp": [1, 0]}), BASE)
    assert "sweep scenario 1 (tp=0)" in str(err.value)
    assert "tp" in str(err.value)


def test_duplicate_scenarios_are_an_error():
    with pytest.raises(ServesimError, match="are the same scenario"):
        expand(make_sweep(cases=[{"tp": 1}, {}], grid={"seed": [0]}), BASE)


def test_sweep_file_fields_are_checked():
    with pytest.raises(ServesimError, match="gird"):
        parse_sweep({"gird": {"tp": [1]}})
    with pytest.raises(ServesimError, match="grid.tp"):
        parse_sweep({"grid": {"tp": 2}})  # a value, not a list of values


def test_set_path_refuses_to_descend_into_a_scalar():
    with pytest.raises(ServesimError, match="not a mapping"):
        set_path({"tp": 2}, "tp.size", 3)


def test_base_path_is_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "sub").mkdir()
    base = "tp: 2\nworkload: {preset: code, num_requests: 9}\n"
    (tmp_path / "sub" / "base.yaml").write_text(base)
    sweep = tmp_path / "sub" / "sweep.yaml"
    sweep.write_text("base: base.yaml\ngrid:\n  replicas: [1, 2]\n")
    spec, base = load_sweep_file(sweep)
    points = expand(spec, base)
    assert [(p.scenario.tp, p.scenario.replicas) for p in points] == [(2, 1), (2, 2)]
    assert points[0].scenario.workload.preset == "code"


def test_missing_sweep_file_is_a_clear_error(tmp_path):
    with pytest.raises(ServesimError, match="does not exist"):
        load_sweep_file(tmp_path / "nope.yaml")
