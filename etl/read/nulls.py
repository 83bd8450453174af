"""`source.null_values` applied to string columns, exactly or ignoring case."""

from __future__ import annotations

import itertools
import math

import polars as pl

from etl.spec.parse import Source

_MAX_SPELLINGS = 4096  # case spellings listed per null value; beyond, cells are lower-cased


def case_spellings(values: list[str]) -> list[str] | None:
    """Every text whose lower case is one of `values` lower-cased: "null" -> "null", "NULL",
    "Null", "nULL"... (None when a value is not ASCII, or has too many spellings). Only
    ASCII letters and the Kelvin sign (U+212A, lower-cased "k") lower-case to ASCII, so for
    ASCII values the list is exact, and `is_in` on it matches what lower-casing each cell
    would, without a copy of every cell."""
    found: set[str] = set()
    for value in {v.lower() for v in values}:
        if not value.isascii():
            return None
        choices = [{c, c.upper(), *(["\u212a"] if c == "k" else [])} for c in value]
        if math.prod(len(c) for c in choices) > _MAX_SPELLINGS:  # a "k" has three
            return None
        found.update("".join(p) for p in itertools.product(*choices))
    return sorted(found)


def null_exprs(columns: list[str], source: Source) -> list[pl.Expr]:
    """Each column with the cells listed in `null_values` made null (with
    `null_values_ignore_case`, "null", "Null" and "NULL" alike); vectorized `is_in`."""
    if not source.null_values:
        return [pl.col(c) for c in columns]
    spellings = source.null_values if not source.null_values_ignore_case else \
        case_spellings(source.null_values)
    if spellings is not None:
        hit = [pl.col(c).is_in(spellings) for c in columns]
    else:
        wanted = sorted({v.lower() for v in source.null_values})
        hit = [pl.col(c).str.to_lowercase().is_in(wanted) for c in columns]
    return [
        pl.when(h).then(None).otherwise(pl.col(c)).alias(c)
        for c, h in zip(columns, hit, strict=True)
    ]
