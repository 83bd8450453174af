"""Repeated source values transformed once per file: a lookup table per repeating column.

Names, dates and codes repeat a lot; a one-column mapping (its transforms, value map, checks)
is then evaluated on the column's distinct values and joined back by value. `Lookups` keeps the
tables of one file from batch to batch, up to LOOKUP_MAX values a column.
"""

from __future__ import annotations

import threading

import polars as pl

from etl.base.frames import compact
from etl.prepare import mapping
from etl.prepare.mapping import ERR, OUT, RAW

DEDUPE_RATIO = 0.3  # transform distinct values only when a column repeats this much
DEDUPE_MIN_ROWS = 10_000


def field_exprs(group: list[mapping.FieldPlan]) -> list[pl.Expr]:
    return (
        [p.value.alias(OUT + p.field) for p in group]
        + [p.error.alias(OUT + ERR + p.field) for p in group]
        + [p.raw.cast(pl.String).alias(OUT + RAW + p.field) for p in group]
    )


def _unseen(frame: pl.DataFrame, column: str, table: pl.DataFrame | None) -> pl.LazyFrame:
    """The column's distinct values in `frame` that `table` lacks (all without a table)."""
    values = frame.lazy().select(pl.col(column).unique())
    if table is None:
        return values
    return values.join(table.lazy().select(column), on=column, how="anti", nulls_equal=True)


LOOKUP_MAX = 50_000  # distinct values a column's lookup table keeps from batch to batch


class Lookups:
    """One-column mappings evaluated once per distinct source value when the column repeats a
    lot (names, dates, codes): a lookup table per column, joined back by value. The tables are
    kept from batch to batch of a file (up to LOOKUP_MAX values a column), so a value is
    transformed once per file; which columns repeat enough is decided on the first batch to
    ask (with batches validated at once, not always the file's first: the tables give the same
    values either way)."""

    def __init__(self) -> None:
        self.cheap: list[str] | None = None
        self.tables: dict[str, pl.DataFrame] = {}
        self.per_batch: set[str] = set()  # columns with too many values to keep a table of
        self.lock = threading.Lock()  # batches validated at once share the tables

    def tables_for(self, frame: pl.DataFrame, plans: list[mapping.FieldPlan]) -> list[pl.DataFrame]:
        """This batch's lookup tables (one per repeating column: its value, then the fields'
        value, error and raw columns); none for a small batch.

        Batches validated at once share the tables: each starts from the tables as they are,
        transforms the values they lack, and puts its tables back (the lock is held only to
        read and put them). Two batches that both lacked a value both transform it, and the
        table put last is kept: a value is always in a table once, in whichever table."""
        single = {p.field: next(iter(p.sources())) for p in plans if len(p.sources()) == 1}
        columns = sorted(set(single.values()))
        if not columns or frame.height < DEDUPE_MIN_ROWS:
            return []
        with self.lock:
            if self.cheap is None:
                distinct = frame.select(
                    [pl.col(c).approx_n_unique().alias(c) for c in columns]).row(0)
                self.cheap = [c for c, n in zip(columns, distinct, strict=True)
                              if n < frame.height * DEDUPE_RATIO]
            known = {c: self.tables.get(c) for c in self.cheap}
            per_batch = set(self.per_batch)
        # First the values no batch before had (all of them for a column without a table);
        # then only the columns with some are transformed: a transform costs its set-up even
        # on no rows (a title-casing's replacement automaton), and most batches of a file
        # bring no new codes, dates or first names.
        fresh = pl.collect_all([
            _unseen(frame, column, table) for column, table in known.items()])
        todo = [(column, values) for (column, table), values in zip(known.items(), fresh,
                                                                    strict=True)
                if values.height or table is None]  # (a per-batch column has no table)
        staged = []
        for column, values in todo:
            group = [p for p in plans if single.get(p.field) == column]
            staged.append(mapping.with_stages(values.lazy(), group)
                          .select(pl.col(column), *field_exprs(group)))
        done = dict(zip([c for c, _ in todo], pl.collect_all(staged), strict=True))
        tables = []
        for column, table in known.items():
            new = done.get(column)
            if new is None:  # nothing new: the table as it is
                assert table is not None
            elif column in per_batch:  # never kept: no copy
                table = new
            # Copied before it is kept: a table sharing the batch's text would keep it alive.
            else:
                table = compact(new) if table is None else pl.concat([table, compact(new)])
            tables.append(table)
        with self.lock:
            for column, table in zip(known, tables, strict=True):
                if column in self.per_batch:
                    continue
                if table.height <= LOOKUP_MAX:
                    self.tables[column] = table
                else:  # too many values to keep: this column's table is built per batch now
                    self.tables.pop(column, None)
                    self.per_batch.add(column)
        return tables
