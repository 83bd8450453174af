"""`SourceFile`: one source file open for reading, whatever its format (CSV, Excel, NDJSON,
Parquet): its header, identity and rows on demand, with the same meta columns."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from etl.base.errors import ColumnsMissing, SourceError
from etl.base.filecheck import FileChanged
from etl.read import csvlayout
from etl.read.csvlayout import Records


@dataclass
class SourceFile:
    """One source file, open for reading: its header and identity, and its rows on demand,
    whole (`frame`) or in batches (`batches`), always with the same meta columns:
    `_record`, `_line`, `_shape_error`, `_source_file`."""

    path: Path
    display: str
    header: list[str]
    sha256: str
    size: int
    warnings: list[str]
    scan: Callable[[], pl.LazyFrame]  # every header column, as scanned (header row included)
    meta: Meta  # per scanned row: its line, field count, whether it is data
    on_error: Callable[[Exception], SourceError]
    width: int  # the field count every record should have
    # The meta to use when the file has another number of rows than `meta.rows` (a CSV layout
    # that does not agree with polars): `batches` switches to it at the end of the first full
    # read and raises `MetaChanged`, so that the caller reads again; `frame` switches at once.
    fallback: Callable[[int], Meta] | None = None
    # A CSV file's blocks of STEP records, each parsed alone from its byte range: `batches`
    # holds one block at a time (polars' streaming reader reads ahead of its consumer, and its
    # buffer grows with the file). None: read as one stream.
    blocks: Blocks | None = None

    def _finish(self, frame: pl.DataFrame, start: int, full: bool = True) -> pl.DataFrame:
        meta = self.meta.columns(start, frame.height, self.width)
        if not full:
            meta = meta.select("_record")
        frame = pl.concat([frame, meta], how="horizontal").filter(
            pl.col("_record").is_not_null()
        )
        return frame.with_columns(pl.lit(self.display).alias("_source_file")) if full else frame

    def frame(self, columns: list[str] | None = None, *, full: bool = True) -> pl.DataFrame:
        """The whole file (only `columns`, when given) with the meta columns; with
        `full=False` only `_record` (a file-wide pass keeps a column or two of every row)."""
        try:
            frame = self.scan().select(columns or self.header).collect()
        except pl.exceptions.PolarsError as exc:
            raise self.on_error(exc) from None
        if frame.height != self.meta.rows and self.fallback is not None:
            self.meta, self.fallback = self.fallback(frame.height), None
        return self._finish(frame, 0, full)

    def batches(
        self, rows: int, columns: list[str] | None = None, *, full: bool = True
    ) -> Iterator[pl.DataFrame]:
        """The file in batches of about `rows` rows, in order, with the meta columns (only
        `columns` and `_record` with `columns` and `full=False`, as `frame`)."""
        if self.blocks is not None:
            yield from self._from_blocks(self.blocks, rows, columns, full)
            return
        start = 0
        scan = self.scan() if columns is None else self.scan().select(columns)
        try:
            for batch in scan.collect_batches(chunk_size=rows):
                yield self._finish(batch, start, full)
                start += batch.height
        except pl.exceptions.PolarsError as exc:
            raise self.on_error(exc) from None
        if start != self.meta.rows and self.fallback is not None:
            self.meta, self.fallback = self.fallback(start), None
            raise MetaChanged(self.display)
        self.fallback = None  # checked: the meta holds

    def _from_blocks(
        self, blocks: Blocks, rows: int, columns: list[str] | None, full: bool
    ) -> Iterator[pl.DataFrame]:
        """`batches` from blocks of records parsed alone. A block that does not parse, or has
        another number of records than the layout says, means the layout and polars disagree:
        the file is then read as one stream (`blocks` dropped) and `MetaChanged` raised."""
        start, pending, held = 0, [], 0
        edges = blocks.offsets
        step = csvlayout.STEP
        # The header is a scanned row but no record: the first batch takes it on top, so that
        # every batch holds `rows` records (1M records: 10 batches, not 10 and one of 1 row).
        want = rows + self.meta.skip

        def parse(k: int) -> pl.DataFrame:
            lf = blocks.read(edges[k], edges[k + 1])
            return (lf if columns is None else lf.select(columns)).collect()

        # A thread parses up to a batch of blocks ahead (polars lets go of the GIL): what the
        # streaming reader overlapped, with a bound on what is held.
        ahead = max(1, -(-rows // step))
        with ThreadPoolExecutor(1, thread_name_prefix="csv-blocks") as pool:
            queued = deque(pool.submit(parse, k) for k in range(min(ahead, len(edges) - 1)))
            for k in range(len(edges) - 1):
                future = queued.popleft()
                if k + ahead < len(edges) - 1:
                    queued.append(pool.submit(parse, k + ahead))
                expect = min(step, self.meta.rows - k * step)
                frame = self._block(future, expect)
                if frame is None:
                    for left in queued:
                        left.cancel()
                    self.blocks = None
                    raise MetaChanged(self.display)
                pending.append(frame)
                held += frame.height
                while held >= want or (k == len(edges) - 2 and held):
                    batch = pl.concat(pending, rechunk=False) if len(pending) > 1 else pending[0]
                    out, rest = batch.head(want), batch.slice(want)
                    pending, held = ([rest] if rest.height else []), rest.height
                    yield self._finish(out, start, full)
                    start += out.height
                    want = rows
        if start != self.meta.rows:  # the layout counted more records than the blocks hold
            self.blocks = None
            raise MetaChanged(self.display)
        self.fallback = None  # checked: the meta holds

    def _block(self, future: Future[pl.DataFrame], expect: int) -> pl.DataFrame | None:
        """A parsed block, or None when it does not hold the records the layout says."""
        try:
            frame = future.result()
        except pl.exceptions.PolarsError as exc:
            if self.fallback is None:  # the layout was checked: a real error in the data
                raise self.on_error(exc) from None
            return None  # perhaps a block edge polars does not see as one: read as a stream
        return frame if frame.height == expect else None


@dataclass(frozen=True)
class Blocks:
    """How to read a CSV file in blocks of STEP records: `read(start, end)` scans the bytes
    between two offsets of `offsets` (records 0, STEP, 2*STEP..., then the end of the file)."""

    read: Callable[[int, int], pl.LazyFrame]
    offsets: list[int]


class MetaChanged(FileChanged):
    """The file's rows did not match its meta (see `SourceFile.fallback`): what was read with
    the old meta is wrong (record numbers, lines); read the file again. The first full read
    catches it (etl/prepare/runner.py); a later read that meets it means the file changed while
    it was read, and it stops as such (a drop is left for the next run)."""


class Meta:
    """Per scanned row of a file: the line it starts on, its field count and whether it is a
    data record (header rows and blank lines are not); `columns` turns a slice of rows into a
    batch's `_record` (null: not data), `_line` and `_shape_error` columns."""

    rows: int  # scanned rows
    skip = 0  # of which the first are header rows

    def columns(self, start: int, n: int, expected: int) -> pl.DataFrame:
        raise NotImplementedError


class DenseMeta(Meta):
    """A row per scanned row (`line`, `fields`, `data`, optional `record`: the sheet's own row
    number): for sources read whole anyway (Excel, NDJSON)."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame, self.rows = frame, frame.height

    def columns(self, start: int, n: int, expected: int) -> pl.DataFrame:
        part = self.frame.slice(start, n)
        before = int(self.frame["data"].head(start).sum()) if start else 0
        data = pl.col("data")
        meta = part.select(
            pl.when(data).then(data.cast(pl.Int64).cum_sum() + before).alias("_record"),
            pl.col("line").cast(pl.Int64).alias("_line"),
            _shape_error(pl.col("fields"), expected),
        )
        if "record" in part.columns:  # Excel: the sheet's own row number, not a count
            meta = meta.with_columns(part["record"].cast(pl.Int64).alias("_record"))
        return meta


class SparseMeta(Meta):
    """Nothing per regular row: `rows` scanned rows, the first `skip` of them header rows, and
    the irregular records of a CSV layout (`Records`; None: lines unknown, as in Parquet, and
    every row has the expected field count)."""

    def __init__(self, rows: int, skip: int, records: Records | None) -> None:
        self.rows, self.skip, self.records = rows, skip, records
        self._jumps = records.jumps() if records else None
        self._odd = records.odd() if records else None
        self._blank = records.blank() if records else pl.Series("record", [], pl.Int64)

    def columns(self, start: int, n: int, expected: int) -> pl.DataFrame:
        row = pl.int_range(start, start + n, dtype=pl.Int64, eager=True).alias("record")
        frame = row.to_frame()
        if self._jumps is not None and self._odd is not None:
            jumps = self._jumps.rename({"record": "from"}).with_columns(
                pl.col("from").alias("record"))
            frame = frame.join_asof(jumps, on="record", strategy="backward")
            line = pl.col("line") + (pl.col("record") - pl.col("from"))
            frame = frame.join(self._odd, on="record", how="left", maintain_order="left")
            fields = pl.col("fields").fill_null(expected)
        else:
            line, fields = pl.lit(None, pl.Int64), pl.lit(expected, pl.Int64)
        blank = self._blank.filter(self._blank.is_between(start, start + n - 1))
        data = (pl.col("record") >= self.skip) & ~pl.col("record").is_in(blank.implode())
        skipped = int((self._blank.is_between(self.skip, start - 1)).sum()) if start else 0
        before = max(start - self.skip, 0) - skipped
        return frame.select(
            pl.when(data).then(data.cast(pl.Int64).cum_sum() + before).alias("_record"),
            line.cast(pl.Int64).alias("_line"),
            _shape_error(fields, expected),
        )


def _shape_error(fields: pl.Expr, expected: int) -> pl.Expr:
    return (
        pl.when(fields != expected)
        .then(pl.format("record has {} fields, the header has " + str(expected), fields))
        .alias("_shape_error")
    )


# The meta columns every frame gets (`SourceFile`) and the ones validation adds.
RESERVED = frozenset({"_source_file", "_record", "_line", "_shape_error", "_row"})


def check_header(path: Path, header: list[str], needed: list[str]) -> None:
    """SourceError on duplicate names or a column the spec needs that the header lacks."""
    seen: set[str] = set()
    dupes = sorted({h for h in header if h in seen or seen.add(h)})  # type: ignore[func-returns-value]
    if dupes:
        raise SourceError(
            f"duplicate column names in the header: {', '.join(map(repr, dupes))}",
            path=path,
            line=1,
        )
    taken = [h for h in header if h in RESERVED]
    if taken:
        raise SourceError(
            f"column names the reader uses for its own: {', '.join(map(repr, taken))}; rename "
            "them (a rejects.csv fed back keeps all of _source_file, _record and _error, and is "
            "then read without them)", path=path, line=1)
    missing = [c for c in needed if c not in header]
    if missing and len(header) == 1:
        guess = next((sep for sep in (",", ";", "\t", "|") if sep in header[0]), None)
        if guess is not None:
            raise SourceError(
                f"columns named in the spec are missing: {', '.join(map(repr, missing))}; "
                f"the header is one column {header[0]!r}: the file looks {guess!r}-delimited "
                f"(set source.delimiter: {guess!r})",
                path=path,
                line=1,
            )
    if missing:
        raise ColumnsMissing(path, missing, header)
