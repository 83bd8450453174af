"""The hints next to each reject in report.html: the first rule of a small table that fits."""

from __future__ import annotations

import pytest

from etl.report.approve import amount_rows
from etl.report.hints import hint


@pytest.mark.parametrize(("rule", "value", "error", "expected"), [
    ("one_of", " CC", "is not one of: USD, EUR", "' CC' needs trim"),
    ("parse_amount", "7.073,96", "not an amount", "7.073,96 needs decimal: ','"),
    ("parse_amount", "-1 234,5", "not an amount", "-1 234,5 needs decimal: ','"),
    ("parse_date", "05/01/2024", "not a date in formats %Y-%m-%d, %d.%m.%Y: '05/01/2024'",
     "05/01/2024 is in none of the formats tried (%Y-%m-%d, %d.%m.%Y): add its format"),
    ("parse_amount", "1e3", "not an amount", ""),  # no hint rather than a wrong one
    ("parse_amount", "1,234", "not an amount", ""),  # a thousands comma is not a decimal
    ("required", "", "is required", "empty: give a value, or drop the row"),
    (None, None, None, ""),
])
def test_hint_table(rule, value, error, expected) -> None:
    assert hint(rule, value, error) == expected


def test_rejected_amounts_are_read_less_valid_with_separators() -> None:
    rows = amount_rows({"USD": {"read": "1234579.50", "valid": "1234567.50"},
                        "CAD": {"read": "-25.00", "valid": "0.00"}})
    assert rows == [("USD", "1,234,579.50", "1,234,567.50", "12.00"),
                    ("CAD", "-25.00", "0.00", "-25.00")]


def test_the_terminal_summary_shows_rejected_amounts_with_separators() -> None:
    from test_report import make_result

    from etl.report.write import summary_table

    result = make_result()
    result.control_totals = {"amounts": {"USD": {"read": "1234579.50", "valid": "1234567.50"}}}
    lines = summary_table(result).splitlines()
    head = next(i for i, ln in enumerate(lines) if "control totals" in ln)
    assert lines[head].split() == ["control", "totals", "read", "valid", "rejected"]
    assert lines[head + 1].split() == ["USD", "1,234,579.50", "1,234,567.50", "12.00"]
