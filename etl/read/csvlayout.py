"""Where each CSV record starts and how many fields it has, found without Python per row.

polars pads a short record with nulls and cuts a long one, so ragged records are found here:
delimiters outside quotes are counted with vectorized string operations over the file's lines,
and records spanning lines (quoted newlines) are stitched by the running parity of quotes.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from etl.spec.parse import Source


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
    qe = _re_escape(quote)

    def outside(text: pl.Expr) -> pl.Expr:  # separators outside quotes, starting outside
        closed = text.str.replace_all(f"{qe}[^{qe}]*{qe}", "").str.replace(f"{qe}.*$", "")
        return closed.str.count_matches(sep, literal=True)

    # Streaming, one line at a time: only small integer columns are ever held, never the
    # file's lines (a running sum over the lines would make polars hold them all).
    df = lines.select(
        pl.col("line"),
        q.alias("q"),
        pl.when(q == 0).then(seps).otherwise(outside(pl.col("l"))).alias("seps"),
        (pl.col("l") == "").alias("blank"),
    ).collect(engine="streaming")
    inside = (pl.col("q").cum_sum() - pl.col("q")) % 2 == 1
    df = df.with_columns(inside.alias("inside"))
    # A line that starts inside a quoted field (rare: quoted newlines) is inside up to its first
    # quote and outside after it; a line without quotes is all inside. Those lines are read
    # again, and only them.
    again = df.filter(pl.col("inside") & (pl.col("q") > 0))["line"]
    if again.len():
        after = pl.col("l").str.replace(f"^[^{qe}]*{qe}", "")
        fixed = (
            lines.filter(pl.col("line").is_in(again.implode()))
            .select(pl.col("line"), outside(after).alias("fixed"))
            .collect(engine="streaming")
        )
        df = df.join(fixed, on="line", how="left", maintain_order="left")
    else:
        df = df.with_columns(pl.lit(None, pl.UInt32).alias("fixed"))
    seps_in = pl.when(pl.col("q") == 0).then(0).otherwise(pl.col("fixed"))
    df = df.select(
        pl.col("line"),
        (~pl.col("inside")).alias("start"),
        pl.when(pl.col("inside")).then(seps_in).otherwise(pl.col("seps")).alias("seps"),
        pl.col("blank"),
    )
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
    layout: pl.DataFrame | None, rows: int, skip: int, width: int, notes: list[str]
) -> pl.DataFrame:
    """Per scanned row, compactly (a few bytes a row, whatever the file's size): the line it
    starts on, its field count, and whether it is a data record. `expand_meta` turns a slice of
    it into the `_record`, `_line` and `_shape_error` columns of a batch."""
    if layout is None or layout.height != rows:
        notes.append("could not check field counts per record (quoting is irregular)")
        layout = pl.select(
            pl.repeat(None, rows, dtype=pl.Int64).alias("line"),
            pl.repeat(width, rows, dtype=pl.Int64).alias("fields"),
            pl.repeat(False, rows, dtype=pl.Boolean).alias("blank"),
        )
    data = ~pl.col("blank") & (pl.int_range(pl.len()) >= skip)
    meta = layout.select(
        pl.col("line").cast(pl.UInt32),
        pl.col("fields").cast(pl.UInt32),
        data.alias("data"),
    )
    blanks = int(layout.slice(skip)["blank"].sum())
    if blanks:
        notes.append(f"{blanks} blank line(s) skipped")
    return meta


def expand_meta(meta: pl.DataFrame, before: int, expected: int) -> pl.DataFrame:
    """`_record` (null: not data; numbered after `before` earlier records), `_line` and
    `_shape_error` for a slice of `csv_meta`'s frame."""
    data = pl.col("data")
    return meta.select(
        pl.when(data).then(data.cast(pl.Int64).cum_sum() + before).alias("_record"),
        pl.col("line").cast(pl.Int64).alias("_line"),
        pl.when(pl.col("fields") != expected)
        .then(pl.format("record has {} fields, the header has " + str(expected), "fields"))
        .alias("_shape_error"),
    )
