"""Where each CSV record starts and how many fields it has, found without Python per row.

polars pads a short record with nulls and cuts a long one, so ragged records are found here:
delimiters outside quotes are counted with vectorized string operations over the file's lines,
and records spanning lines (quoted newlines) are stitched by the running parity of quotes.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from etl.spec import Source


def record_layout(path: Path, sep: str, quote: str | None) -> pl.DataFrame:
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


def unclosed_quote(data: Path, source: Source, header: list[str]) -> tuple[int, str] | None:
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


def csv_meta(
    layout: pl.DataFrame | None, rows: int, skip: int, width: int, expected: int, notes: list[str]
) -> pl.DataFrame:
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
