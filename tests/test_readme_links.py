"""The README's links lead somewhere: every in-page anchor names a heading (as GitHub derives
a heading's anchor) and every relative link names a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation other than hyphens and underscores
    dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _headings(text: str) -> list[str]:
    lines, inside_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside_code = not inside_code
        elif not inside_code and line.startswith("#"):
            lines.append(line.lstrip("#").strip())
    return lines


def test_the_anchor_rule_on_headings_with_code_and_punctuation():
    assert github_anchor("Engine profiles: `--engine`") == "engine-profiles---engine"
    assert github_anchor("Live endpoint: `servesim serve`") == "live-endpoint-servesim-serve"


def test_every_in_page_link_names_a_heading():
    anchors = {github_anchor(h) for h in _headings(README)}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert len(links) >= 20  # (the contents line)
    assert sorted(set(links) - anchors) == []


def test_every_relative_link_names_a_file():
    targets = [t for t in re.findall(r"\]\(([^)#]+)\)", README) if "://" not in t]
    assert targets and all((ROOT / t).is_file() for t in targets), targets
