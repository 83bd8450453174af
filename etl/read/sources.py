"""Spec source -> polars frames of raw string columns, one per file, each row tagged with where it
came from: `_source_file`, `_record` (1-based data record, header excluded), `_line` (the physical
line the record starts on) and `_shape_error` (set when the record is ragged).

CSV columns are always read as strings (so postal code 01234 stays 01234) and typed later by the
spec. Decoding lives in `etl.read.textfile` (strict, streamed), ragged-record detection in
`etl.read.csvlayout`; this module opens a file and hands out its rows, whole or in batches.
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from etl.base.errors import SourceError
from etl.base.filecheck import check_unchanged, file_digest, refuse_binary, regular_stat
from etl.read.compressed import compression_of, decompressed, inner_name, renamed_errors
from etl.read.csvlayout import record_layout, unclosed_quote
from etl.read.excel import open_excel
from etl.read.ndjson import open_ndjson
from etl.read.nulls import null_exprs
from etl.read.rejects import is_rejects, source_positions, unguard_exprs, unguard_name
from etl.read.sourcefile import Blocks, SourceFile, SparseMeta, check_header
from etl.read.textfile import first_bad_utf8, line_of, text_checks, utf8_file
from etl.spec.parse import LoadedSpec, Source


@dataclass
class RawFile:
    """One file as read: its rows (strings), header and identity."""

    path: Path
    display: str
    frame: pl.DataFrame
    header: list[str]
    sha256: str
    size: int
    warnings: list[str] = field(default_factory=list)


def resolve_files(loaded: LoadedSpec) -> list[Path]:
    """The files the spec's source path or glob names, in name order."""
    pattern = loaded.spec.source.path
    base = loaded.base_dir
    full = os.path.normpath(pattern if Path(pattern).is_absolute() else str(base / pattern))
    if globlib.has_magic(pattern):
        # is_file(): regular files only (a FIFO or a device among the drops is not one)
        files = sorted(Path(p) for p in globlib.glob(full) if Path(p).is_file())
    else:
        files = [Path(full)] if os.path.lexists(full) else []
        if files:
            regular_stat(files[0])
    if not files:
        raise SourceError("no file matches the source path", path=full)
    return files


def _polars_error(
    exc: Exception,
    path: Path,
    data: Path | None = None,
    source: Source | None = None,
    header: list[str] | None = None,
) -> SourceError:
    text = str(exc)
    if "utf-8" in text.lower() or "utf8" in text.lower():
        bad = first_bad_utf8(path)
        if bad:
            return SourceError(
                f"byte 0x{bad[1]} is not valid UTF-8 (set source.encoding, e.g. cp1252)",
                path=path,
                line=line_of(path, bad[0]),
            )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    where = unclosed_quote(data, source, header or []) if data and source else None
    if "not properly escaped" in text or "escaped" in first or where is not None:
        if where is not None:
            return SourceError(
                f"a quoted field is never closed (unterminated quote{where[1]})",
                path=path,
                line=where[0],
            )
        first = "a quoted field is never closed (unterminated quote)"
    return SourceError(f"cannot parse the file: {first}", path=path)


@contextmanager
def open_csv(path: Path, source: Source, needed: list[str], display: str) -> Iterator[SourceFile]:
    """Open one CSV file (or a .csv.gz / .zip around one): check its header against the spec,
    find its record layout."""
    before = regular_stat(path, display)
    kind = compression_of(path, source)
    if kind is None:
        digest, size = text_checks(path, source, display)
        with _open_csv_text(path, source, needed, display, lambda: (digest, size)) as src:
            yield src
    else:
        digest, size = file_digest(path)
        with decompressed(path, kind, source, display) as plain, renamed_errors(display):
            text_checks(plain, source, display)
            with _open_csv_text(plain, source, needed, display, lambda: (digest, size)) as src:
                yield replace(src, path=path)  # the file itself, not the temporary copy
    check_unchanged(path, display, before, digest)


@contextmanager
def _open_csv_text(
    path: Path, source: Source, needed: list[str], display: str,
    checks: Callable[[], tuple[str, int]],
) -> Iterator[SourceFile]:
    """`checks` gives the file's sha256 and size (or raises its error), before it is used."""
    with utf8_file(path, source) as (data, notes):
        opts: dict[str, Any] = dict(
            separator=source.delimiter,
            quote_char=source.quote_char,
            infer_schema=False,
            has_header=False,
            truncate_ragged_lines=True,
        )
        try:
            first = pl.read_csv(data, n_rows=1, **opts)
        except pl.exceptions.PolarsError as exc:
            raise _polars_error(exc, path, data, source) from None
        if first.height == 0:  # polars found no record at all
            where = unclosed_quote(data, source, [])
            if where is not None:
                raise SourceError(
                    "a quoted field in the header is never closed (unterminated quote)",
                    path=display,
                    line=where[0],
                )
            raise SourceError("no header record (the file has only blank lines)", path=display)
        width = first.width
        if source.header:
            header = [str(v or "").removeprefix("\ufeff").strip() for v in first.row(0)]
            if any(str(v or "") != h for v, h in zip(first.row(0), header, strict=True)):
                notes.append("spaces around header names were trimmed")
        else:
            header = list(source.columns or [])
            width = max(width, len(header))
        full_width = len(header)
        positions = list(range(len(header)))
        from_rejects = is_rejects(header)
        if from_rejects:  # a rejects.csv fed back: the source rows again (etl/read/rejects.py)
            positions = source_positions(header)
            header = [unguard_name(header[i]) for i in positions]
            notes.append("a rejects file: the tool's _ columns and formula guards left out")
        check_header(Path(display), header, needed)
        schema = {f"c{i}": pl.String for i in range(width)}

        def scan(part: Path | bytes = data) -> pl.LazyFrame:
            exact = source.null_values if not source.null_values_ignore_case else None
            frame = pl.scan_csv(
                part,
                schema=schema,
                missing_columns="insert",
                # A block may start with a long record: cut as any other (not a schema error)
                extra_columns="raise" if isinstance(part, Path) else "ignore",
                null_values=exact or None,
                **opts,
            ).select([pl.col(f"c{i}").alias(c) for i, c in zip(positions, header, strict=True)])
            if from_rejects:
                frame = frame.with_columns(unguard_exprs(header))
            return frame if exact else frame.with_columns(null_exprs(header, source))

        def on_error(exc: Exception) -> SourceError:
            return _polars_error(exc, path, data, source, header)

        layout = record_layout(data, source.delimiter, source.quote_char, full_width)
        skip = 1 if source.header else 0
        blanks = int((layout.blank() >= skip).sum())
        blank_note = f"{blanks} blank line(s) skipped"
        if blanks:
            notes.append(blank_note)

        def irregular(rows: int) -> SparseMeta:
            # polars found another number of records than the layout (irregular quoting): the
            # layout is left out, and said so (see SourceFile.fallback)
            if blanks:
                notes.remove(blank_note)
            notes.append("could not check field counts per record (quoting is irregular)")
            return SparseMeta(rows, skip, None)

        # The layout's record count is checked against polars' at the end of the first full
        # read (SourceFile.batches), not by a counting pass of its own: polars counts a CSV by
        # mapping all of it, which costs the file's size in memory.
        def read_range(start: int, end: int) -> pl.LazyFrame:
            with data.open("rb") as fh:
                fh.seek(start)
                return scan(fh.read(end - start))

        digest, size = checks()
        yield SourceFile(
            path, display, header, digest, size, notes, scan,
            SparseMeta(layout.count, skip, layout), on_error, full_width, irregular,
            Blocks(read_range, offsets) if (offsets := layout.block_offsets()) else None,
        )


@contextmanager
def open_parquet(
    path: Path, needed: list[str], display: str, source: Source | None = None
) -> Iterator[SourceFile]:
    """Open one Parquet file; every column becomes a string (nested ones as JSON text), except
    dates and datetimes, which stay so. A datetime with a time zone becomes the wall-clock time
    in its own zone (or in `source.timezone`), so that its date is the date there, never the
    date in UTC: 2020-01-01 23:30 America/Los_Angeles is a gift of 2020-01-01."""
    before = regular_stat(path, display)
    refuse_binary(path, display, "parquet")
    digest, size = file_digest(path)
    zone = source.timezone if source is not None else None
    try:
        schema = pl.read_parquet_schema(path)
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceError(
            f"not a readable Parquet file ({str(exc).splitlines()[0]})", path=display
        ) from None
    header = list(schema)
    check_header(Path(display), header, needed)
    exprs = []
    for c in header:
        dtype = schema[c]
        if dtype.is_nested():
            text = pl.struct(pl.col(c).alias("v")).struct.json_encode().str.slice(5).str.head(-1)
            # A null is no value, as an empty CSV cell: never the text "null".
            exprs.append(pl.when(pl.col(c).is_null()).then(None).otherwise(text).alias(c))
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
            local = pl.col(c).dt.convert_time_zone(zone) if zone else pl.col(c)
            exprs.append(local.dt.replace_time_zone(None).alias(c))
        elif dtype in (pl.Date, pl.Datetime):
            # Typed dates stay dates: parse_date (and date fields) take them as they are, so a
            # spec's text formats never misread them. Everything else becomes a string.
            exprs.append(pl.col(c))
        else:
            exprs.append(pl.col(c).cast(pl.String).alias(c))

    def on_error(exc: Exception) -> SourceError:
        return SourceError(
            f"cannot read the Parquet data ({str(exc).splitlines()[0]})", path=display
        )

    meta = SparseMeta(rows, 0, None)  # no lines; every row is data, of every column
    yield SourceFile(
        path,
        display,
        header,
        digest,
        size,
        [],
        lambda: pl.scan_parquet(path).select(exprs),
        meta,
        on_error,
        len(header),
    )
    check_unchanged(path, display, before, digest)


_BY_SUFFIX = {
    ".parquet": "parquet", ".pq": "parquet",
    ".xlsx": "excel", ".xlsm": "excel", ".xls": "excel",
    ".ndjson": "ndjson", ".jsonl": "ndjson",
}


def format_of(path: Path, source: Source) -> str:
    """csv, parquet, excel or ndjson: `source.format`, else the extension (inside .gz/.zip)."""
    if source.format:
        return source.format
    return _BY_SUFFIX.get(Path(inner_name(path)).suffix.lower(), "csv")


@contextmanager
def open_source(path: Path, loaded: LoadedSpec) -> Iterator[SourceFile]:
    """Open one source file with the spec's options (format from the extension)."""
    source = loaded.spec.source
    fmt = format_of(path, source)
    display = _display(path)
    needed = loaded.spec.columns()
    if fmt != "excel" and (source.sheet is not None or source.header_row != 1):
        raise SourceError(f"sheet and header_row apply to Excel sources; this is {fmt}",
                          path=display)
    opener = {
        "parquet": lambda: open_parquet(path, needed, display, source),
        "excel": lambda: open_excel(path, source, needed, display),
        "ndjson": lambda: open_ndjson(path, source, needed, display),
    }.get(fmt, lambda: open_csv(path, source, needed, display))
    with opener() as src:
        yield src


def read_csv(path: Path, source: Source, needed: list[str], display: str) -> RawFile:
    """A whole CSV file at once: every column as strings plus the meta columns."""
    with open_csv(path, source, needed, display) as src:
        return RawFile(path, display, src.frame(), src.header, src.sha256, src.size, src.warnings)


def read_parquet(
    path: Path, needed: list[str], display: str, source: Source | None = None
) -> RawFile:
    """A whole Parquet file at once."""
    with open_parquet(path, needed, display, source) as src:
        return RawFile(path, display, src.frame(), src.header, src.sha256, src.size, src.warnings)


def read_file(path: Path, loaded: LoadedSpec) -> RawFile:
    """A whole source file at once, with the spec's options."""
    with open_source(path, loaded) as src:
        return RawFile(
            path, src.display, src.frame(), src.header, src.sha256, src.size, src.warnings
        )


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
