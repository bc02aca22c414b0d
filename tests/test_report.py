"""The HTML report (servesim.report): the numbers behind the charts, the page, the CLI."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_report_data import SERVESIM, TWO_REQUESTS, make_run_dir, simulate_run

from servesim.errors import ServesimError
from servesim.report import build_report, series, write_report
from servesim.report.data import read_run
from servesim.report.page import fmt

# --- series: exact values on small inputs --------------------------------------------------


def test_binned_amount_spreads_a_step_over_its_duration():
    edges = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    # instance 0: 10 tokens over [0.5, 1.5), 6 over [3, 4); instance 1: 4 over [1, 3)
    instance, start = np.array([0.0, 0.0, 1.0]), np.array([0.5, 3.0, 1.0])
    duration, amount = np.array([1.0, 1.0, 2.0]), np.array([10.0, 6.0, 4.0])
    got = series.binned_amount(instance, start, duration, amount, edges)
    assert got.tolist() == pytest.approx([5.0, 5.0 + 2.0, 2.0, 6.0])


def test_binned_amount_conserves_the_total():
    rng = np.random.default_rng(0)
    dur = rng.uniform(0.001, 0.05, 500)
    start = np.concatenate(([0.0], np.cumsum(dur)[:-1]))
    amount = rng.integers(1, 500, 500).astype(float)
    edges = series.time_edges(float(start[-1] + dur[-1]), 37)
    got = series.binned_amount(np.zeros(500), start, dur, amount, edges)
    assert got.sum() == pytest.approx(amount.sum()) and (got >= -1e-9).all()


def test_binned_occupancy_is_the_time_weighted_count():
    edges = np.array([0.0, 1.0, 2.0])
    # one request waits [0, 1.5), another [0.5, 0.75)
    got = series.binned_occupancy(np.array([0.0, 0.5]), np.array([1.5, 0.75]), edges)
    assert got.tolist() == pytest.approx([1.25, 0.5])


def test_cdf_is_capped_and_ends_at_one():
    v, f = series.cdf(np.concatenate((np.arange(10_000.0), [np.nan])), max_points=100)
    assert len(v) <= 100 and f[-1] == 1.0 and v[-1] == 9999.0 and v[0] == 0.0
    assert (np.diff(v) >= 0).all() and (np.diff(f) > 0).all()


OP_STEPS = [
    {"instance": 0, "start_s": 0.0, "duration_s": 0.010, "batch_size": 1, "prefill_tokens": 100,
     "t_mlp": 0.006, "t_attention": 0.002},
    {"instance": 0, "start_s": 0.010, "duration_s": 0.020, "num_steps": 4, "batch_size": 1,
     "decode_tokens": 4, "t_mlp": 0.012, "t_attention": 0.004},
]  # fmt: skip
ONE_REQUEST = [{"request_id": 0, "instance": 0, "arrival_s": 0.0, "first_scheduled_s": 0.0,
                "first_token_s": 0.01, "finish_s": 0.03, "input_tokens": 100,
                "output_tokens": 5}]  # fmt: skip


def test_op_breakdown_divides_span_sums_by_steps(tmp_path):
    run = read_run(make_run_dir(tmp_path / "r", OP_STEPS, ONE_REQUEST,
                                extra_step_columns=("t_mlp", "t_attention")))  # fmt: skip
    got = series.op_breakdown(run)
    assert got["steps with prefill"] == pytest.approx({"mlp": 6.0, "attention": 2.0})
    assert got["decode-only steps"] == pytest.approx({"mlp": 3.0, "attention": 1.0})
    assert got["all steps"] == pytest.approx({"mlp": 18 / 5, "attention": 6 / 5})


def test_slowest_requests_are_sorted_by_e2el(tmp_path):
    reqs = [{"request_id": i, "instance": 0, "arrival_s": 0.0, "first_scheduled_s": 0.0,
             "first_token_s": 0.01, "finish_s": f, "input_tokens": 1, "output_tokens": 3}
            for i, f in enumerate([0.3, 0.9, 0.1, 0.5])]  # fmt: skip
    run = read_run(make_run_dir(tmp_path / "r", OP_STEPS, reqs))
    rows = series.slowest_requests(run, 3)
    assert [r["request_id"] for r in rows] == [1, 3, 0]
    assert rows[0]["e2el_ms"] == pytest.approx(900.0)
    assert rows[0]["tpot_ms"] == pytest.approx((900.0 - 10.0) / 2)


def test_fmt():
    assert fmt(1234.5678) == "1,234.57" and fmt(3, 0) == "3" and fmt(0.257, 1, "%") == "25.7"
    assert fmt(None) == fmt(float("nan")) == "–"


# --- the page ------------------------------------------------------------------------------


class _Cells(HTMLParser):
    """Text of the ``data-key`` cells, and the tags and URLs a page uses."""

    def __init__(self):
        super().__init__()
        self.cells: dict[str, str] = {}
        self.tags: list[str] = []
        self.urls: list[str] = []
        self._key = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        self._key = attrs.get("data-key")
        self.urls += [v for k, v in attrs.items() if k in ("src", "href", "xlink:href") and v]

    def handle_data(self, data):
        if self._key:
            self.cells[self._key] = self.cells.get(self._key, "") + data

    def handle_endtag(self, tag):
        self._key = None


def parse_cells(text: str) -> _Cells:
    parser = _Cells()
    parser.feed(text)
    return parser


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    return simulate_run(tmp_path_factory.mktemp("sim") / "run", "-n", "60")


@pytest.fixture(scope="module")
def real_report(real_run) -> str:
    return build_report(real_run)


def test_report_shows_the_summary_numbers(real_run, real_report):
    text = real_report
    summary = json.loads((real_run / "summary.json").read_text())
    cells = parse_cells(text).cells
    for stat in ("mean", "median", "p90", "p99"):
        for metric in ("ttft", "tpot", "itl", "e2el"):
            key = f"{stat}_{metric}_ms"
            assert float(cells[key].replace(",", "")) == pytest.approx(summary[key], abs=0.006)
    assert cells["completed"] == "60"
    assert float(cells["output_throughput"].replace(",", "")) == pytest.approx(
        summary["output_throughput"], abs=0.06
    )
    assert summary["scenario"]["model"] in text and summary["workload_description"] in text


def test_report_is_self_contained(real_report):
    text = real_report
    page = parse_cells(text)
    assert page.tags.count("svg") == 4
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert page.urls == [] or all(u.startswith("#") for u in page.urls), page.urls
    assert "default-src 'none'" in text  # the browser itself forbids any fetch
    # charts do not share element ids (each SVG salts its own)
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_the_same_run_gives_the_same_page_wherever_it_lies(real_run, real_report, tmp_path):
    moved = shutil.copytree(real_run, tmp_path / "elsewhere")
    assert build_report(moved) == real_report


def _rewrite_steps(src: Path, dst: Path, add: dict[str, float]) -> Path:
    """Copy a run; drop its t_* step columns, then add ``add``: column → share of duration."""
    shutil.copytree(src, dst)
    with (dst / "steps.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, c in enumerate(rows[0]) if not c.startswith("t_")]
    at = rows[0].index("duration_s")
    out = [[rows[0][i] for i in keep] + list(add)]
    for row in rows[1:]:
        out.append([row[i] for i in keep] + [repr(k * float(row[at])) for k in add.values()])
    with (dst / "steps.csv").open("w", newline="") as f:
        csv.writer(f).writerows(out)
    return dst


def test_op_groups_appear_when_steps_have_them(tmp_path, real_run):
    split = _rewrite_steps(real_run, tmp_path / "split", {"t_mlp": 0.6, "t_attention": 0.4})
    text = build_report(split)
    assert "<code>t_mlp</code>" in text and "<code>t_attention</code>" in text
    assert "no per-operator-group columns" not in text
    run = read_run(split)
    s = run.steps
    mean_ms = s["duration_s"].sum() / s["num_steps"].sum() * 1000
    assert series.op_breakdown(run)["all steps"] == pytest.approx(
        {"mlp": 0.6 * mean_ms, "attention": 0.4 * mean_ms}
    )
    plain = build_report(_rewrite_steps(real_run, tmp_path / "plain", {}))
    assert "no per-operator-group columns" in plain and "<code>t_mlp</code>" not in plain


def test_write_report_with_pngs(real_run, tmp_path):
    out = write_report(real_run, tmp_path / "sub" / "r.html", png_dir=tmp_path / "plots")
    assert out.read_text().startswith("<!DOCTYPE html>")
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["batch_kv.png", "latency_cdf.png", "step_breakdown.png",
                    "throughput_queue.png"]  # fmt: skip
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["r.html"]  # no temp file left


def test_not_a_run_folder_is_a_user_error(tmp_path):
    with pytest.raises(ServesimError, match="no summary.json"):
        build_report(tmp_path)


# --- the CLI, through the installed console script -------------------------------------------


def _servesim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SERVESIM), *args], capture_output=True, text=True, timeout=120)


_UNREGISTERED = "servesim report is missing: import report_cmd in servesim/cli/__init__.py"


def test_cli_report_of_a_fresh_run(real_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(real_run, run_dir)
    done = _servesim("report", str(run_dir), "--png")
    assert "No such command" not in done.stderr, _UNREGISTERED
    assert done.returncode == 0, done.stderr
    assert (run_dir / "report.html").stat().st_size > 10_000
    assert "track record on published runs" in (run_dir / "report.html").read_text()
    assert len(list((run_dir / "plots").glob("*.png"))) == 4
    done = _servesim("report", str(run_dir), "-o", str(tmp_path / "elsewhere" / "r.html"))
    assert done.returncode == 0 and (tmp_path / "elsewhere" / "r.html").exists()


def test_cli_report_of_a_folder_that_is_not_a_run(tmp_path):
    done = _servesim("report", str(tmp_path), "-o", str(tmp_path / "r.html"))
    assert "No such command" not in done.stderr, _UNREGISTERED
    assert done.returncode == 2
    assert "no summary.json" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_a_run_with_no_steps_and_no_latency_stats_still_reports(tmp_path, recwarn):
    text = build_report(make_run_dir(tmp_path / "r", [], TWO_REQUESTS))
    assert parse_cells(text).tags.count("svg") == 4
    assert parse_cells(text).cells["completed"] == "2"
    assert not [w for w in recwarn if "legend" in str(w.message)]
