"""Rewrite the README's Markdown tables from a benchmark's fresh ones, by their header line.

The README quotes tables that ``bench/kernel_accuracy.py`` and ``bench/fidelity/run.py`` print.
Both take ``--readme PATH``: every table in that file whose header line is, character for
character, a header the script produced gets the script's rows; everything else in the file
stays as it was (prose, other tables, a table whose header the script no longer prints).
"""

from __future__ import annotations

from pathlib import Path


def _table_spans(lines: list[str]):
    """(header index, end index) of each Markdown table in ``lines``: a line starting with
    ``|`` followed by a ``|---`` separator, its body the ``|`` lines after that."""
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            yield i, j
            i = j
        else:
            i += 1


def markdown_tables(text: str) -> dict[str, list[str]]:
    """The Markdown tables in ``text``: header line -> its body rows (the lines after the
    ``|---`` separator that start with ``|``). A header seen twice keeps its last table."""
    lines = text.split("\n")
    return {lines[i]: lines[i + 2 : j] for i, j in _table_spans(lines)}


def replace_tables(text: str, fresh: dict[str, list[str]]) -> tuple[str, list[str]]:
    """``text`` with the body of every table whose header is a key of ``fresh`` replaced by
    ``fresh``'s rows; and the headers of the tables whose rows changed."""
    lines = text.split("\n")
    out: list[str] = []
    changed: list[str] = []
    done = 0
    for i, j in _table_spans(lines):
        header = lines[i]
        if header not in fresh:
            continue
        if lines[i + 2 : j] != fresh[header]:
            changed.append(header)
        out += [*lines[done : i + 2], *fresh[header]]
        done = j
    out += lines[done:]
    return "\n".join(out), changed


def update_readme(path: Path, printed: str) -> list[str]:
    """Replace the tables of the file ``path`` that ``printed`` (a script's Markdown output)
    has; returns the headers of those whose rows changed (the file is rewritten only then)."""
    text = path.read_text()
    new, changed = replace_tables(text, markdown_tables(printed))
    if changed:
        path.write_text(new)
    return changed
