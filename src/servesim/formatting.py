"""Numbers as a table cell shows them: the one formatter of the CLI's tables and the report.

Rules, the same everywhere:

- missing (``None``, NaN, or a bool where a number belongs) is ``–``;
- an integer is exact, with thousands separators (``1,000``), whatever ``digits`` says;
- a float has ``digits`` decimals and thousands separators (``1,234.57``); without ``digits``,
  fewer as it grows: 2 below 100, 1 below 1,000, none from 1,000;
- an infinite float is ``inf`` (``-inf``), as Python writes it.
"""

from __future__ import annotations

import json
import math
from numbers import Integral, Real
from typing import Any

MISSING = "–"
"""What a cell shows for a value that is absent or not a number (an en dash)."""


def number(value: Any, digits: int | None = None, *, percent: bool = False) -> str:
    """``value`` for a table cell: ``number(1234.5678) == "1,234.57"``, ``number(3) == "3"``.

    ``digits``: decimals of a float (None: 2, 1 or 0 as it grows past 100 and 1,000).
    ``percent``: ``value`` is a fraction shown as a percentage (0.257 -> ``25.7`` with
    ``digits=1``)."""
    if value is None or isinstance(value, bool):
        return MISSING
    if percent:
        value = value * 100.0
    if isinstance(value, Integral):
        return f"{value:,}"
    value = float(value)
    if math.isnan(value):
        return MISSING
    if digits is None:
        digits = 0 if abs(value) >= 1000 else 1 if abs(value) >= 100 else 2
    return f"{value:,.{digits}f}"


def cell(value: Any, digits: int | None = None) -> str:
    """Any value of a results row: a number as :func:`number` writes it, text as it is, and
    anything else (a bool, a list, a mapping) as JSON (``true``, ``[1, 2]``)."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, Real) and not isinstance(value, bool)):
        return number(value, digits)
    return json.dumps(value)
