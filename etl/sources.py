"""Spec source -> polars frames of raw string columns, one per file, each row tagged with where it
came from: `_source_file`, `_record` (1-based data record, header excluded), `_line` (the physical
line the record starts on) and `_shape_error` (set when the record is ragged).

CSV columns are always read as strings (so postal code 01234 stays 01234) and typed later by the
spec. Files in a legacy encoding are transcoded to UTF-8 in streaming chunks, strictly: a byte the
encoding cannot decode is a file-level error naming the line, never a silent replacement character.
"""

from __future__ import annotations

import codecs
import glob as globlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import polars as pl

from etl.errors import ColumnsMissing, SourceError
from etl.spec import LoadedSpec, Source

CHUNK = 1 << 22
UTF8 = {"utf-8", "utf8", "utf_8", "ascii", "us-ascii", "utf-8-sig", "utf_8_sig"}


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
        files = sorted(Path(p) for p in globlib.glob(full) if Path(p).is_file())
    else:
        files = [Path(full)] if Path(full).exists() else []
    if not files:
        raise SourceError("no file matches the source path", path=full)
    return files


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _line_of(path: Path, offset: int) -> int:
    """1-based line number of byte `offset`."""
    line = 1
    with path.open("rb") as fh:
        remaining = offset
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                break
            line += chunk.count(b"\n") or chunk.count(b"\r") * (b"\n" not in chunk)
            remaining -= len(chunk)
    return line


def _transcode(
    path: Path, encoding: str, out: Path, cr_only: bool, quote: str | None = None
) -> None:
    """Decode `path` strictly in chunks and write it as UTF-8 (with `cr_only`, line ends that
    are a lone CR, not followed by LF, become LF: old-Mac files and files mixing CR with LF;
    with `quote` too, only the lone CRs outside quoted fields, which are line ends)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    carry = ""  # a CR at the end of a chunk: is it followed by LF?
    inside = False  # within a quoted field at the end of the previous chunk
    with path.open("rb") as src, out.open("w", encoding="utf-8", newline="") as dst:
        while True:
            chunk = src.read(CHUNK)
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                bad = chunk[exc.start : exc.start + 1]
                raise SourceError(
                    f"byte 0x{bad.hex() or '??'} cannot be decoded as {encoding} "
                    f"(is the file in another encoding? set source.encoding)",
                    path=path,
                    line=_line_of(path, offset + exc.start),
                ) from None
            if cr_only:
                text, carry = carry + text, ""
                if text.endswith("\r") and not final:
                    text, carry = text[:-1], "\r"
                if quote is None:
                    text = _LONE_CR.sub("\n", text)
                else:
                    text, inside = _lone_crs_outside_quotes(text, quote, inside)
            dst.write(text.removeprefix("\ufeff") if offset == 0 else text)
            if final:
                break
            offset += len(chunk)


_LONE_CR = re.compile("\r(?!\n)")


def _lone_crs_outside_quotes(text: str, quote: str, inside: bool) -> tuple[str, bool]:
    """Lone CRs outside quoted fields -> LF; returns the text and whether a quote is open."""
    if "\r" not in text:
        return text, (text.count(quote) % 2 == 1) != inside
    parts, pos = [], 0
    for m in re.finditer(re.escape(quote) + "|\r(?!\n)", text):
        if m.group() == quote:
            inside = not inside
        elif not inside:
            parts += [text[pos : m.start()], "\n"]
            pos = m.end()
    parts.append(text[pos:])
    return "".join(parts), inside


def _first_bad_utf8(path: Path) -> tuple[int, str] | None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                return offset + exc.start, chunk[exc.start : exc.start + 1].hex()
            if not chunk:
                return None
            offset += len(chunk)


@contextmanager
def utf8_file(path: Path, source: Source) -> Iterator[tuple[Path, list[str]]]:
    """Yield a UTF-8 version of `path` (the file itself when it already is one)."""
    notes: list[str] = []
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    cr_only = b"\r" in head and b"\n" not in head
    if cr_only:
        notes.append("old-Mac CR-only line endings converted to LF")
    mixed = False
    if not cr_only and re.search(rb"\r(?!\n)", head[:-1]):
        # a lone CR outside a quoted field is a line end (inside one it is data)
        quote = source.quote_char or ""
        text = head[:-1].decode("latin-1")  # byte positions; quote and CR are ASCII
        mixed = not quote or _lone_crs_outside_quotes(text, quote, False)[0] != text
        if mixed:
            notes.append("line endings mix CR with LF/CRLF: lone CRs converted to LF")
    needs_copy = cr_only or mixed or source.encoding.lower() not in UTF8
    if not needs_copy:
        yield path, notes
        return
    with TemporaryDirectory(prefix="etl-") as tmp:
        out = Path(tmp) / "utf8.csv"
        enc = source.encoding if source.encoding.lower() not in UTF8 else "utf-8-sig"
        _transcode(path, enc, out, cr_only or mixed, source.quote_char if mixed else None)
        yield out, notes


def _record_layout(path: Path, sep: str, quote: str | None) -> pl.DataFrame:
    """Per CSV record: the physical line it starts on, its field count, and whether it is blank.

    Counts delimiters outside quotes with vectorized string ops over the file's lines; records
    spanning lines (quoted newlines) are stitched by the running parity of quote characters.
    """
    lines = pl.scan_lines(path, name="l").with_row_index("line", offset=1)
    seps = pl.col("l").str.count_matches(sep, literal=True)
    if quote is None:
        return lines.select(
            pl.col("line"), (seps + 1).alias("fields"), (pl.col("l") == "").alias("blank")
        ).collect(engine="streaming")
    q = pl.col("l").str.count_matches(quote, literal=True)
    inside_before = (q.cum_sum() - q) % 2 == 1
    qe = _re_escape(quote)
    opened = pl.when(inside_before).then(pl.lit(quote) + pl.col("l")).otherwise(pl.col("l"))
    outside = opened.str.replace_all(f"{qe}[^{qe}]*{qe}", "").str.replace(f"{qe}.*$", "")
    # A line without quotes is all inside a quoted field when one is open: no separators count.
    counted = (
        pl.when(q == 0)
        .then(pl.when(inside_before).then(0).otherwise(seps))
        .otherwise(outside.str.count_matches(sep, literal=True))
    )
    # Streaming: only the small integer columns are ever held, never the file's lines.
    df = lines.select(
        pl.col("line"),
        (~inside_before).alias("start"),
        counted.alias("seps"),
        (pl.col("l") == "").alias("blank"),
    ).collect(engine="streaming")
    if df["start"].all():  # no record spans lines: one line, one record
        return df.select("line", (pl.col("seps") + 1).alias("fields"), "blank")
    rec = df.select(pl.col("start").cum_sum().alias("rec"), "line", "seps", "blank", "start")
    return (
        rec.group_by("rec", maintain_order=True)
        .agg(
            pl.col("line").first(),
            (pl.col("seps").sum() + 1).alias("fields"),
            (pl.col("blank").first() & (pl.len() == 1)).alias("blank"),
        )
        .select("line", "fields", "blank")
    )


def _re_escape(ch: str) -> str:
    return "\\" + ch if not ch.isalnum() else ch


def _unclosed_quote(data: Path, source: Source, header: list[str]) -> tuple[int, str] | None:
    """Where the quote that is never closed opens: its line, and its column when known."""
    quote = source.quote_char
    if quote is None:
        return None
    q = pl.col("l").str.count_matches(quote, literal=True)
    lines = (
        pl.scan_lines(data, name="l")
        .with_row_index("line", offset=1)
        .with_columns(((q.cum_sum() - q) % 2 == 1).alias("inside"), (q % 2 == 1).alias("odd"))
    )
    found = lines.select(
        pl.col("odd").sum().alias("n"),
        pl.col("line").filter(~pl.col("inside") & pl.col("odd")).last(),
        pl.col("l").filter(~pl.col("inside") & pl.col("odd")).last(),
    ).collect()
    n, line, text = found.row(0)
    if not n or n % 2 == 0 or line is None:
        return None
    qe = re.escape(quote)
    before = re.sub(f"{qe}[^{qe}]*{qe}", "", text).split(quote, 1)[0]
    index = before.count(source.delimiter)
    column = f", column {header[index]!r}" if index < len(header) else ""
    return int(line), column


def _polars_error(
    exc: Exception, path: Path, data: Path | None = None, source: Source | None = None,
    header: list[str] | None = None,
) -> SourceError:
    text = str(exc)
    if "utf-8" in text.lower() or "utf8" in text.lower():
        bad = _first_bad_utf8(path)
        if bad:
            return SourceError(
                f"byte 0x{bad[1]} is not valid UTF-8 (set source.encoding, e.g. cp1252)",
                path=path,
                line=_line_of(path, bad[0]),
            )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    where = _unclosed_quote(data, source, header or []) if data and source else None
    if "not properly escaped" in text or "escaped" in first or where is not None:
        if where is not None:
            return SourceError(
                f"a quoted field is never closed (unterminated quote{where[1]})",
                path=path,
                line=where[0],
            )
        first = "a quoted field is never closed (unterminated quote)"
    return SourceError(f"cannot parse the file: {first}", path=path)


def _check_header(path: Path, header: list[str], needed: list[str]) -> None:
    seen: set[str] = set()
    dupes = sorted({h for h in header if h in seen or seen.add(h)})  # type: ignore[func-returns-value]
    if dupes:
        raise SourceError(
            f"duplicate column names in the header: {', '.join(map(repr, dupes))}",
            path=path,
            line=1,
        )
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
    meta: pl.DataFrame  # per scanned row: _record (null: not data), _line, _shape_error
    on_error: Callable[[Exception], SourceError]

    def _finish(self, frame: pl.DataFrame, start: int) -> pl.DataFrame:
        meta = self.meta.slice(start, frame.height)
        return (
            pl.concat([frame, meta], how="horizontal")
            .filter(pl.col("_record").is_not_null())
            .with_columns(pl.lit(self.display).alias("_source_file"))
        )

    def frame(self, columns: list[str] | None = None) -> pl.DataFrame:
        """The whole file (only `columns`, when given) with the meta columns."""
        try:
            frame = self.scan().select(columns or self.header).collect()
        except pl.exceptions.PolarsError as exc:
            raise self.on_error(exc) from None
        return self._finish(frame, 0)

    def batches(self, rows: int) -> Iterator[pl.DataFrame]:
        """The file in batches of about `rows` rows, in order, with the meta columns."""
        start = 0
        try:
            for batch in self.scan().collect_batches(chunk_size=rows):
                yield self._finish(batch, start)
                start += batch.height
        except pl.exceptions.PolarsError as exc:
            raise self.on_error(exc) from None


def _csv_meta(layout: pl.DataFrame | None, rows: int, skip: int, width: int,
              expected: int, notes: list[str]) -> pl.DataFrame:
    """_record, _line and _shape_error per scanned row, from the record layout."""
    if layout is None or layout.height != rows:
        notes.append("could not check field counts per record (quoting is irregular)")
        layout = pl.DataFrame(
            {"line": [None] * rows, "fields": [width] * rows, "blank": [False] * rows},
            schema={"line": pl.Int64, "fields": pl.Int64, "blank": pl.Boolean},
        )
    data = ~pl.col("blank") & (pl.int_range(pl.len()) >= skip)
    meta = layout.select(
        pl.when(data).then(data.cast(pl.Int64).cum_sum()).alias("_record"),
        pl.col("line").cast(pl.Int64).alias("_line"),
        pl.when(pl.col("fields") != expected)
        .then(pl.format("record has {} fields, the header has " + str(expected), "fields"))
        .alias("_shape_error"),
    )
    blanks = int(layout.slice(skip)["blank"].sum())
    if blanks:
        notes.append(f"{blanks} blank line(s) skipped")
    return meta


@contextmanager
def open_csv(path: Path, source: Source, needed: list[str], display: str
             ) -> Iterator[SourceFile]:
    """Open one CSV file: check its header against the spec, find its record layout."""
    digest, size = file_digest(path)
    if size == 0:
        raise SourceError("the file is empty (not even a header)", path=display)
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
            where = _unclosed_quote(data, source, [])
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
        _check_header(Path(display), header, needed)
        index = {name: i for i, name in enumerate(header)}
        schema = {f"c{i}": pl.String for i in range(width)}

        def scan() -> pl.LazyFrame:
            return pl.scan_csv(
                data, schema=schema, missing_columns="insert",
                null_values=source.null_values or None, **opts,
            ).select([pl.col(f"c{index[c]}").alias(c) for c in header])

        def on_error(exc: Exception) -> SourceError:
            return _polars_error(exc, path, data, source, header)

        try:
            rows = scan().select(pl.len()).collect().item()
        except pl.exceptions.PolarsError as exc:
            raise on_error(exc) from None
        layout = _record_layout(data, source.delimiter, source.quote_char)
        meta = _csv_meta(layout, rows, 1 if source.header else 0, width, len(header), notes)
        yield SourceFile(path, display, header, digest, size, notes, scan, meta, on_error)


@contextmanager
def open_parquet(path: Path, needed: list[str], display: str) -> Iterator[SourceFile]:
    """Open one Parquet file; every column becomes a string (nested ones as JSON text), except
    dates, which stay dates."""
    digest, size = file_digest(path)
    try:
        schema = pl.read_parquet_schema(path)
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceError(
            f"not a readable Parquet file ({str(exc).splitlines()[0]})", path=display
        ) from None
    header = list(schema)
    _check_header(Path(display), header, needed)
    exprs = []
    for c in header:
        dtype = schema[c]
        if dtype.is_nested():
            exprs.append(
                pl.struct(pl.col(c).alias("v"))
                .struct.json_encode()
                .str.slice(5)
                .str.head(-1)
                .alias(c)
            )
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

    meta = pl.DataFrame({"_record": pl.int_range(1, rows + 1, eager=True)}).with_columns(
        pl.lit(None, pl.Int64).alias("_line"), pl.lit(None, pl.String).alias("_shape_error")
    )
    yield SourceFile(path, display, header, digest, size, [],
                     lambda: pl.scan_parquet(path).select(exprs), meta, on_error)


@contextmanager
def open_source(path: Path, loaded: LoadedSpec) -> Iterator[SourceFile]:
    """Open one source file with the spec's options (format from the extension)."""
    source = loaded.spec.source
    fmt = source.format or ("parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv")
    display = _display(path)
    needed = loaded.spec.columns()
    opener = (open_parquet(path, needed, display) if fmt == "parquet"
              else open_csv(path, source, needed, display))
    with opener as src:
        yield src


def read_csv(path: Path, source: Source, needed: list[str], display: str) -> RawFile:
    """A whole CSV file at once: every column as strings plus the meta columns."""
    with open_csv(path, source, needed, display) as src:
        return RawFile(path, display, src.frame(), src.header, src.sha256, src.size,
                       src.warnings)


def read_parquet(path: Path, needed: list[str], display: str) -> RawFile:
    """A whole Parquet file at once."""
    with open_parquet(path, needed, display) as src:
        return RawFile(path, display, src.frame(), src.header, src.sha256, src.size,
                       src.warnings)


def read_file(path: Path, loaded: LoadedSpec) -> RawFile:
    """A whole source file at once, with the spec's options."""
    with open_source(path, loaded) as src:
        return RawFile(path, src.display, src.frame(), src.header, src.sha256, src.size,
                       src.warnings)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
