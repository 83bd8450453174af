"""Reading a rejects.csv back (fix the cells, feed the file in again).

A file is a rejects file when its header has all three of the tool's `_source_file`,
`_record` and `_error` columns (a source export with all three is not plausible). Then:
- the columns the tool added (`TOOL_COLUMNS`) are left out, so the rows are the source rows
  again and keep their original keys (the key columns are source columns);
- the spreadsheet formula guard is taken off, only where the tool puts it (etl/base/csvsafe.py):
  a cell or header name of `'` followed by = + - @ tab or CR that is not a plain number;
  (a source cell that itself began with `'=` is read back as `=`: the guard cannot tell them
  apart; such a cell is rare, and the spreadsheet shows it as `=` anyway);
- the UTF-8 byte-order mark the tool writes is skipped like any other (etl/read/textfile.py).
"""

from __future__ import annotations

import re

import polars as pl

from etl.base.csvsafe import FORMULA_START, PLAIN_NUMBER, QUOTE

TOOL_COLUMNS = ("_source_file", "_record", "_field", "_rule", "_value", "_error")
MARKERS = frozenset({"_source_file", "_record", "_error"})
_GUARDED = "^" + QUOTE + FORMULA_START.removeprefix("^")


def is_rejects(header: list[str]) -> bool:
    """Is this header the header of a rejects.csv the tool wrote?"""
    return set(header) >= MARKERS


def source_positions(header: list[str]) -> list[int]:
    """Positions of the source columns in a rejects header (the tool's columns left out)."""
    return [i for i, name in enumerate(header) if name not in TOOL_COLUMNS]


def unguard_name(name: str) -> str:
    """A header name without the guard the tool added."""
    rest = name[1:]
    guarded = name.startswith(QUOTE) and re.match(FORMULA_START, rest) is not None
    return rest if guarded and re.match(PLAIN_NUMBER, rest) is None else name


def unguard_exprs(columns: list[str]) -> list[pl.Expr]:
    """Per column: the cell without the guard the tool added; every other cell as it is."""
    exprs = []
    for c in columns:
        rest = pl.col(c).str.slice(1)
        guarded = pl.col(c).str.contains(_GUARDED) & ~rest.str.contains(PLAIN_NUMBER)
        exprs.append(pl.when(guarded).then(rest).otherwise(pl.col(c)).alias(c))
    return exprs
