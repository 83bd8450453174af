"""`SourceFile`: one source file open for reading, whatever its format (CSV, Excel, NDJSON,
Parquet): its header, identity and rows on demand, with the same meta columns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from etl.base.errors import ColumnsMissing, SourceError
from etl.read.csvlayout import expand_meta


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
    meta: pl.DataFrame  # per scanned row: line, fields, data (see csv_meta), optional record
    on_error: Callable[[Exception], SourceError]
    width: int  # the field count every record should have

    def _finish(self, frame: pl.DataFrame, start: int, full: bool = True) -> pl.DataFrame:
        part = self.meta.slice(start, frame.height)
        before = int(self.meta["data"].head(start).sum()) if start else 0
        meta = expand_meta(part, before, self.width)
        if "record" in part.columns:  # Excel: the sheet's own row number, not a count
            meta = meta.with_columns(part["record"].cast(pl.Int64).alias("_record"))
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
        return self._finish(frame, 0, full)

    def batches(
        self, rows: int, columns: list[str] | None = None, *, full: bool = True
    ) -> Iterator[pl.DataFrame]:
        """The file in batches of about `rows` rows, in order, with the meta columns (only
        `columns` and `_record` with `columns` and `full=False`, as `frame`)."""
        start = 0
        scan = self.scan() if columns is None else self.scan().select(columns)
        try:
            for batch in scan.collect_batches(chunk_size=rows):
                yield self._finish(batch, start, full)
                start += batch.height
        except pl.exceptions.PolarsError as exc:
            raise self.on_error(exc) from None


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
