"""Printing a listing table: boxed for a person, plain columns for a pipe.

Identifiers (model ids, file names) are never cut: on a terminal a cell too wide for its column
folds onto the next line; without a terminal (``servesim models | grep llama``, a log) the table
is plain text, one row a line, columns separated by two spaces or more, no box characters, at
its natural width whatever ``$COLUMNS`` says.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text


def print_table(table: Table, console: Console | None = None) -> None:
    """Print ``table`` (boxed on a terminal, plain columns otherwise); no cell is truncated."""
    console = console or Console()
    if console.is_terminal:
        for column in table.columns:
            column.overflow = "fold"
            column.no_wrap = False
        console.print(table)
        return
    console.file.write("".join(line + "\n" for line in plain_lines(table)))


def plain_lines(table: Table) -> list[str]:
    """``table`` as lines of text: its title, the header, a line per row, its caption."""
    columns = table.columns
    cells = [[_text(c.header) for c in columns]]
    body = [[_text(cell) for cell in c.cells] for c in columns]
    cells += [list(row) for row in zip(*body, strict=True)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [_text(table.title)] if table.title else []
    for row in cells:
        parts = [
            text.rjust(w) if c.justify == "right" else text.ljust(w)
            for text, w, c in zip(row, widths, columns, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    if table.caption:
        lines.append(_text(table.caption))
    return lines


def _text(value: object) -> str:
    """A cell's text without markup (``[bold]sum[/bold]`` -> ``sum``), on one line."""
    if isinstance(value, Text):
        text = value.plain
    elif isinstance(value, str):
        text = Text.from_markup(value).plain
    else:
        text = str(value)
    return " ".join(text.split())
