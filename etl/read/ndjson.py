"""NDJSON / JSON Lines (`.ndjson`, `.jsonl`, or `source.format: ndjson`; also inside .gz/.zip):
one JSON object a line -> the same string frames as CSV.

Every value arrives as text: a string as it is, a number or boolean as its JSON text (7001,
true), null as null, a nested object or list as compact JSON text. Columns are the keys, in the
order they are first seen. Blank lines are skipped; `_record` counts the objects (1-based) and
`_line` is the line each one is on. A line that is not a JSON object is a file-level error
naming the line.

JSON numbers with a fraction pass through a 64-bit float on the way (polars' JSON reader keeps
no number text): 25.50 arrives as "25.5", which is the same amount, but a number with more than
15 significant digits would not be exact. Exports that quote amounts ("25.00") are exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import polars as pl

from etl.base.errors import SourceError
from etl.base.filecheck import check_unchanged, file_digest, regular_stat
from etl.read.compressed import compression_of, decompressed, renamed_errors
from etl.read.nulls import null_exprs
from etl.read.sourcefile import DenseMeta, SourceFile, check_header
from etl.read.textfile import text_checks, utf8_file
from etl.spec.parse import Source


def _first_bad_line(lines: pl.Series, numbers: pl.Series) -> tuple[int, str]:
    # only on the error path: find which line polars refused, to name it
    for text, number in zip(lines, numbers, strict=True):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return number, f"not valid JSON ({exc.msg} at column {exc.colno})"
        if not isinstance(value, dict):
            return number, f"a JSON {type(value).__name__}, not an object"
    return int(numbers[0]) if len(numbers) else 1, "cannot be read as JSON objects"


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype.is_nested():
            text = pl.struct(col.alias("v")).struct.json_encode().str.slice(5).str.head(-1)
            exprs.append(pl.when(col.is_not_null()).then(text).alias(name))
        else:
            exprs.append(col.cast(pl.String).alias(name))
    return frame.select(exprs)


def _read_lines(data: Path, display: str) -> tuple[pl.DataFrame, pl.Series]:
    text = data.read_text(encoding="utf-8")
    lines = pl.Series("text", text.split("\n")).str.strip_suffix("\r")
    numbers = pl.int_range(1, len(lines) + 1, eager=True, dtype=pl.Int64)
    keep = lines.str.strip_chars() != ""
    lines, numbers = lines.filter(keep), numbers.filter(keep)
    if lines.is_empty():
        return pl.DataFrame(), numbers
    body = ("\n".join(lines.to_list()) + "\n").encode()
    try:
        frame = pl.read_ndjson(body, infer_schema_length=None)
        if frame.height != len(lines):
            raise pl.exceptions.ComputeError("line count")
    except (pl.exceptions.PolarsError, ValueError):
        number, what = _first_bad_line(lines, numbers)
        raise SourceError(f"line is {what}: NDJSON needs one JSON object a line",
                          path=display, line=number) from None
    return _as_text(frame), numbers


@contextmanager
def _open_text(
    data: Path, source: Source, needed: list[str], display: str, digest: str, size: int
) -> Iterator[SourceFile]:
    with utf8_file(data, source) as (plain, notes):
        frame, numbers = _read_lines(plain, display)
    header = frame.columns
    check_header(Path(display), header, needed)
    frame = frame.with_columns(null_exprs(header, source))
    meta = pl.DataFrame({"line": numbers}).select(
        pl.col("line"),
        pl.lit(len(header), dtype=pl.UInt32).alias("fields"),
        pl.lit(True).alias("data"),
    )

    def on_error(exc: Exception) -> SourceError:
        return SourceError(f"cannot read the lines ({str(exc).splitlines()[0]})", path=display)

    yield SourceFile(
        data, display, header, digest, size, notes, frame.lazy, DenseMeta(meta), on_error,
        len(header),
    )


@contextmanager
def open_ndjson(path: Path, source: Source, needed: list[str], display: str
                ) -> Iterator[SourceFile]:
    """Open one NDJSON file (or a .gz / .zip around one) as a SourceFile."""
    before = regular_stat(path, display)
    kind = compression_of(path, source)
    if kind is None:
        digest, size = text_checks(path, source, display, "ndjson")
        with _open_text(path, source, needed, display, digest, size) as src:
            yield src
    else:
        digest, size = file_digest(path)
        with decompressed(path, kind, source, display) as plain, renamed_errors(display):
            text_checks(plain, source, display, "ndjson")
            with _open_text(plain, source, needed, display, digest, size) as src:
                yield replace(src, path=path)  # the file itself, not the temporary copy
    check_unchanged(path, display, before, digest)
