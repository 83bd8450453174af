"""What a file keeps of its batches: everything (a run needs every row), or, when payloads
and rejects go to disk batch by batch (the CLI's dry run), bounded samples and counts.
"""

from __future__ import annotations

import polars as pl

from etl.base.frames import compact

SAMPLE_ROWS = 100  # payloads kept for the report when they go to a sink
SAMPLE_REJECTS = 100  # rejected rows kept for the report when they go to a sink
SAMPLE_FAILURES = 5  # failures kept per field and rule then (with their row's source columns)


class Kept:
    """What a file keeps of its batches: everything, or with sinks only bounded samples and
    counts (payloads and rejects went to disk batch by batch)."""

    def __init__(self, payloads_sampled: bool, rejects_sampled: bool) -> None:
        self.payloads_sampled, self.rejects_sampled = payloads_sampled, rejects_sampled
        self.payloads: list[pl.DataFrame] = []
        self.rejects: list[pl.DataFrame] = []
        self.failures: list[pl.DataFrame] = []
        self.counts: pl.DataFrame | None = None  # field, rule, count (sampled only)
        self.full = pl.DataFrame(schema={"field": pl.String, "rule": pl.String})

    def add(self, payloads: pl.DataFrame, rejects: pl.DataFrame, fails: pl.DataFrame) -> None:
        """One batch's payloads, rejected rows and failures."""
        if self.payloads_sampled:
            _take(self.payloads, payloads, SAMPLE_ROWS)
        else:
            self.payloads.append(payloads)
        if not self.rejects_sampled:
            self.rejects.append(rejects)
            self.failures.append(fails)
            return
        _take(self.rejects, rejects, SAMPLE_REJECTS)
        counts = fails.group_by("field", "rule").agg(pl.len().cast(pl.Int64).alias("count"))
        self.counts = add_counts([self.counts, counts])
        # The first failures of each field and rule, with their row's source columns (the
        # report shows a row's key columns beside them; that row may not be in the sample).
        # Once every field and rule of a batch has its samples, the batch adds none.
        full = self.full
        first = fails.join(full, on=["field", "rule"], how="anti") if full.height else fails
        if not first.height:
            return
        first = first.group_by("field", "rule", maintain_order=True).head(SAMPLE_FAILURES)
        where = ["_source_file", "_record"]
        source = rejects.drop("_field", "_rule", "_value", "_error")
        first = first.join(source, on=where, how="left", maintain_order="left")
        kept = first_failures([*self.failures, compact(first)])
        self.failures = [kept]
        self.full = kept.group_by("field", "rule").len().filter(
            pl.col("len") >= SAMPLE_FAILURES).select("field", "rule")


FAILURE_COLUMNS = ["_row", "_source_file", "_record", "field", "rule", "value", "error"]


def add_counts(parts: list[pl.DataFrame | None]) -> pl.DataFrame | None:
    """Failure counts (field, rule, count) added up."""
    frames = [p for p in parts if p is not None]
    if not frames:
        return None
    return pl.concat(frames).group_by("field", "rule", maintain_order=True).agg(
        pl.col("count").sum())


def first_failures(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The first SAMPLE_FAILURES failures of each field and rule, in file order."""
    return (
        pl.concat(parts, how="diagonal_relaxed")
        .group_by("field", "rule", maintain_order=True).head(SAMPLE_FAILURES)
        .select(*FAILURE_COLUMNS, pl.exclude(*FAILURE_COLUMNS))
    )


def _take(kept: list[pl.DataFrame], frame: pl.DataFrame, n: int) -> None:
    """Keep the first rows of `frame` while fewer than `n` are kept, copied (`compact`): a
    slice would keep the batch's text alive."""
    room = n - sum(k.height for k in kept)
    if room > 0 and frame.height:
        kept.append(compact(frame.head(room)))
