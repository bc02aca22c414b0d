"""The one number formatter of the CLI's tables and the HTML report (``servesim.formatting``)."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.formatting import MISSING, cell, number


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (1234.5678, 2, "1,234.57"),
        (1234.5678, 0, "1,235"),
        (0.5, 3, "0.500"),
        (1000, 2, "1,000"),  # an integer is exact, whatever the digits
        (np.int64(12345), 1, "12,345"),
        (np.float64(2.5), 1, "2.5"),
        (float("inf"), 2, "inf"),
        (None, 2, MISSING),
        (float("nan"), 2, MISSING),
        (True, 2, MISSING),  # a bool is no number
    ],
)
def test_number(value, digits, text):
    assert number(value, digits) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12345.6, "12,346"),
        (999.94, "999.9"),
        (100.0, "100.0"),
        (99.994, "99.99"),
        (-1500.0, "-1,500"),
    ],
)
def test_number_without_digits_shows_fewer_decimals_as_it_grows(value, text):
    assert number(value) == text


def test_a_percentage_is_a_fraction_times_100():
    assert number(0.257, 1, percent=True) == "25.7"
    assert number(1, 1, percent=True) == "100.0"
    assert number(None, 1, percent=True) == MISSING


def test_a_cell_is_a_number_text_or_json():
    assert cell(2048) == "2,048" and cell(0.1234) == "0.12" and cell(1.5, 0) == "2"
    assert cell("H100") == "H100" and cell(None) == MISSING
    assert cell(True) == "true" and cell([1, 2]) == "[1, 2]" and cell({"a": 1}) == '{"a": 1}'
