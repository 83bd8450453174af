"""`source.null_values` applied to string columns, exactly or ignoring case."""

from __future__ import annotations

import polars as pl

from etl.spec.parse import Source


def null_exprs(columns: list[str], source: Source) -> list[pl.Expr]:
    """Each column with the cells listed in `null_values` made null (with
    `null_values_ignore_case`, "null", "Null" and "NULL" alike); vectorized `is_in`."""
    if not source.null_values:
        return [pl.col(c) for c in columns]
    if source.null_values_ignore_case:
        wanted = sorted({v.lower() for v in source.null_values})
        hit = [pl.col(c).str.to_lowercase().is_in(wanted) for c in columns]
    else:
        hit = [pl.col(c).is_in(source.null_values) for c in columns]
    return [
        pl.when(h).then(None).otherwise(pl.col(c)).alias(c)
        for c, h in zip(columns, hit, strict=True)
    ]
