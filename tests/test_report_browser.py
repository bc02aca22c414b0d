"""The report in a real headless browser (Debian's ``chromium``): it loads without a console
message, its charts draw, and the numbers it shows are summary.json's.

Skipped only when chromium is not installed (CI installs it: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image
from test_report import parse_cells
from test_report_data import simulate_run

from servesim.report import write_report
from servesim.report.page import CSP

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="needs chromium (apt-get install -y chromium)")  # fmt: skip
WINDOW = "1200,5000"


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless chromium on a local page, logging the page's console to stderr."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def console_messages(stderr: str) -> list[str]:
    """Messages the page logged (errors, CSP violations, uncaught exceptions): ``CONSOLE`` lines."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def colored_fraction(png: Path) -> float:
    """Fraction of a screenshot's pixels in colour: chart lines and areas, not text or rules."""
    rgb = image.imread(png)[..., :3].astype(np.float64)
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    return float((saturation > 0.25).mean())


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = simulate_run(tmp_path_factory.mktemp("sim") / "run", "-n", "60")
    out = write_report(run_dir, run_dir / "report.html")
    return out, json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_the_page_loads_clean_and_shows_the_summary(report, tmp_path):
    page, summary = report
    done = chromium(page, tmp_path / "profile", "--dump-dom")
    assert console_messages(done.stderr) == []
    dom = parse_cells(done.stdout)
    assert dom.tags.count("svg") == 4
    for key in ("median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "mean_e2el_ms", "p99_itl_ms"):
        shown = float(dom.cells[key].replace(",", ""))
        assert shown == pytest.approx(summary[key], abs=0.006), key
    assert dom.cells["completed"] == str(summary["completed"])


@pytest.mark.slow
def test_the_charts_draw(report, tmp_path):
    page, _ = report
    shot = tmp_path / "page.png"
    chromium(page, tmp_path / "profile", f"--screenshot={shot}", f"--window-size={WINDOW}")
    # The same page with its charts cut out: what colour is left is not from the charts.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<svg.*?</svg>", "", page.read_text(), flags=re.DOTALL))
    bare_shot = tmp_path / "bare.png"
    chromium(bare, tmp_path / "profile", f"--screenshot={bare_shot}", f"--window-size={WINDOW}")
    drawn, without = colored_fraction(shot), colored_fraction(bare_shot)
    assert without < 0.001
    assert drawn > 0.01, f"only {drawn:.2%} of the page is in colour: charts did not draw"


@pytest.mark.slow
def test_the_console_check_can_fail(tmp_path):
    """A page that fetches (blocked by the report's CSP) and runs a script is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        f'<html><head><meta http-equiv="Content-Security-Policy" content="{CSP}"></head>'
        '<body><img src="https://example.com/x.png"><script>console.log(1)</script></body></html>'
    )
    done = chromium(bad, tmp_path / "profile", "--dump-dom")
    found = console_messages(done.stderr)
    assert len(found) == 2 and all("Content Security Policy" in m for m in found)
