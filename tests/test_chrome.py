"""Chrome trace helpers: constructors, the atomic writer, and the validator's rules."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.trace import chrome


def trace(*events) -> dict:
    return {"traceEvents": list(events)}


def good_events() -> list[dict]:
    return [
        chrome.process_name(1, "instance 0"),
        chrome.thread_name(1, 7, "steps"),
        chrome.process_sort_index(1, 0),
        chrome.thread_sort_index(1, 7, 0),
        chrome.complete("step 0", 0.0, 10.0, 1, 7, cat="step", args={"batch": 3}),
        chrome.complete("attention", 1.0, 4.0, 1, 7),
        chrome.begin("decode", 12.0, 1, 7),
        chrome.end(15.5, 1, 7, name="decode"),
        chrome.async_begin("request 5", 5, 0.5, 1, cat="request", args={"input": 100}),
        chrome.async_end("request 5", 5, 14.0, 1, cat="request"),
        chrome.counter("kv_cache", 3.0, 1, {"used": 0.5}),
        chrome.instant("preempt", 4.0, 1, 7, scope="p"),
    ]


def test_constructors_spell_the_format():
    x = chrome.complete("a", 1.5, 2.0, 3, 4, cat="c", args={"k": 1})
    assert x == {
        "name": "a",
        "ph": "X",
        "ts": 1.5,
        "dur": 2.0,
        "pid": 3,
        "tid": 4,
        "cat": "c",
        "args": {"k": 1},
    }
    assert "cat" not in chrome.complete("a", 0, 0, 1, 1)
    assert "args" not in chrome.begin("a", 0, 1, 1)
    b = chrome.async_begin("r", 9, 1.0, 2, cat="request")
    e = chrome.async_end("r", 9, 2.0, 2, cat="request", tid=5)
    assert (b["ph"], b["id"], b["cat"], "tid" in b) == ("b", 9, "request", False)
    assert (e["ph"], e["tid"]) == ("e", 5)
    assert chrome.counter("kv", 1.0, 2, {"used": 3}) == {
        "name": "kv",
        "ph": "C",
        "ts": 1.0,
        "pid": 2,
        "args": {"used": 3},
    }
    assert chrome.thread_name(1, 2, "t") == {
        "name": "thread_name",
        "ph": "M",
        "ts": 0,
        "pid": 1,
        "tid": 2,
        "args": {"name": "t"},
    }
    assert chrome.end(3.0, 1, 2)["ph"] == "E" and "name" not in chrome.end(3.0, 1, 2)
    assert chrome.instant("i", 1.0, 1, 2)["s"] == "t"


def test_valid_trace_has_no_problems():
    assert chrome.validate_trace(trace(*good_events())) == []


def test_write_trace_object_form_without_display_time_unit(tmp_path):
    path = tmp_path / "t.json"
    size = chrome.write_trace(path, good_events(), {"scenario": "x"})
    text = path.read_text()
    assert size == len(text.encode())
    obj = json.loads(text)
    assert set(obj) == {"traceEvents", "otherData"} and "displayTimeUnit" not in text
    assert obj["otherData"] == {"scenario": "x"} and obj["traceEvents"] == good_events()
    assert chrome.validate_trace(obj) == []
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary left over


def test_write_trace_refuses_nan_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        chrome.write_trace(tmp_path / "t.json", [chrome.counter("c", 0, 1, {"v": float("nan")})])
    assert list(tmp_path.iterdir()) == []


def test_load_trace_accepts_both_forms(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([chrome.instant("i", 0, 1, 1)]))
    assert chrome.load_trace(tmp_path / "a.json")["traceEvents"][0]["name"] == "i"
    chrome.write_trace(tmp_path / "b.json", good_events())
    assert len(chrome.load_trace(tmp_path / "b.json")["traceEvents"]) == len(good_events())


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([{"name": "a", "ph": "X", "ts": -1, "dur": 1, "pid": 1, "tid": 1}], "ts must be"),
        ([{"name": "a", "ph": "X", "ts": "5", "dur": 1, "pid": 1, "tid": 1}], "ts must be"),
        ([{"name": "a", "ph": "X", "ts": 0, "dur": -2, "pid": 1, "tid": 1}], "dur must be"),
        ([{"name": "a", "ph": "X", "ts": 0, "pid": 1, "tid": 1}], "dur must be"),
        ([{"name": "a", "ph": "X", "ts": 0, "dur": 1, "pid": "1", "tid": 1}], "pid must be"),
        ([{"name": "a", "ph": "X", "ts": 0, "dur": 1, "pid": 1}], "tid must be"),
        ([{"name": "a", "ph": "Q", "ts": 0, "pid": 1, "tid": 1}], "unknown phase"),
        ([chrome.begin("a", 0, 1, 1)], "B never closed"),
        ([chrome.end(1, 1, 1)], "E with no open B"),
        ([chrome.begin("a", 0, 1, 1), chrome.end(1, 1, 2)], "E with no open B"),
        ([chrome.begin("a", 0, 1, 1), chrome.end(1, 1, 1, name="b")], "different name"),
        ([chrome.async_begin("r", 1, 0, 1, cat="req")], "b never closed"),
        ([chrome.async_end("r", 1, 0, 1, cat="req")], "e with no open b"),
        (
            [
                chrome.async_begin("r", 1, 0, 1, cat="req"),
                chrome.async_end("r", 1, 1, 1, cat="other"),
            ],
            "e with no open b",
        ),
        ([{"name": "r", "ph": "b", "id": 1, "ts": 0, "pid": 1}], "need a cat"),
        ([{"name": "r", "ph": "b", "cat": "c", "ts": 0, "pid": 1}], "need an integer or string id"),
        ([chrome.counter("c", 0, 1, {})], "at least one series"),
        ([chrome.counter("c", 0, 1, {"v": "high"})], "finite numbers"),
        ([{"name": "labels", "ph": "M", "pid": 1, "tid": 0, "args": {}}], "metadata name"),
        ([{"name": "thread_name", "ph": "M", "pid": 1, "args": {"name": "t"}}], "integer tid"),
        ([{"name": "process_name", "ph": "M", "pid": 1, "args": {}}], "args.name"),
        ([chrome.instant("i", 0, 1, 1, scope="x")], "scope"),
        ([chrome.complete("a", 0, 10, 1, 1), chrome.complete("b", 5, 10, 1, 1)], "overlaps"),
        (["not an event"], "not an object"),
    ],
)
def test_validator_names_each_broken_rule(events, expected):
    problems = chrome.validate_trace(trace(*events))
    assert problems and any(expected in p for p in problems), problems


def test_validator_rejects_display_time_unit_and_array_form():
    obj = trace(*good_events())
    obj["displayTimeUnit"] = "ns"
    assert any("displayTimeUnit" in p for p in chrome.validate_trace(obj))
    assert "object form" in chrome.validate_trace(good_events())[0]
    assert chrome.validate_trace({"events": []}) == ["traceEvents must be a list"]


def test_overlaps_on_different_rows_and_rounding_slack_are_fine():
    events = [
        chrome.complete("a", 0, 10, 1, 1),
        chrome.complete("b", 5, 10, 1, 2),
        chrome.complete("c", 5, 10, 2, 1),
        chrome.complete("parent", 100.0, 0.3, 1, 1),
        chrome.complete("child", 100.1, 0.2000001, 1, 1),
    ]
    assert chrome.validate_trace(trace(*events)) == []


def test_problem_list_is_capped():
    events = [chrome.end(float(i), 1, 1) for i in range(150)]
    problems = chrome.validate_trace(trace(*events))
    assert len(problems) == 101 and problems[-1] == "... and 50 more problems"


@st.composite
def span_trees(draw, depth=0, start=0.0, length=1000.0):
    """Random well-nested slices inside [start, start + length)."""
    events = []
    at = start
    for _ in range(draw(st.integers(0, 3 if depth < 3 else 0))):
        gap = draw(st.floats(0, length / 4))
        dur = draw(st.floats(0, length / 4))
        if at + gap + dur > start + length:
            break
        events.append(chrome.complete(f"d{depth}", at + gap, dur, 1, 1))
        events.extend(draw(span_trees(depth + 1, at + gap, dur)))
        at += gap + dur
    return events


@settings(max_examples=60, deadline=None)
@given(span_trees(), st.randoms())
def test_well_nested_slices_validate_in_any_order(events, rng):
    rng.shuffle(events)
    assert chrome.validate_trace(trace(*events)) == []
