"""Where each CSV record starts and how many fields it has, found without Python per row.

polars pads a short record with nulls and cuts a long one, so ragged records are found here:
delimiters outside quotes are counted with vectorized string operations over the file's lines,
and records spanning lines (quoted newlines) are stitched by the running parity of quotes.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from etl.spec.parse import Source

BLOCK = 1 << 23  # bytes of lines per chunk of the layout pass: its memory, whatever the size
STEP = 50_000  # every STEP-th record's byte offset is kept: the file is parsed in such blocks
WORKERS = 2  # threads counting a block's lines (polars lets go of the GIL)


def record_layout(path: Path, sep: str, quote: str | None, width: int) -> Records:
    """Per CSV record: the physical line it starts on, its field count, and whether it is blank,
    kept sparsely (`Records`): only what differs from one line per record of `width` fields,
    and the byte offset of every STEP-th record (where a block of records can be parsed alone).

    Counts delimiters outside quotes with vectorized string ops over the file's lines, a block
    of lines at a time (WORKERS blocks at once, a few blocks ahead at most); records spanning
    lines (quoted newlines) are stitched by the running parity of quote characters, carried
    from block to block with the record still open.
    """
    records = Records(width)
    parity = 0  # 1: the next line starts inside a quoted field
    first_line = 1
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="csv-layout") as pool:
        queued: deque[Future[tuple[pl.DataFrame, int | None]]] = deque()
        blocks = iter(byte_blocks(path))

        def submit() -> bool:
            found = next(blocks, None)
            if found is None:
                return False
            queued.append(pool.submit(_block_stats, *found, sep, quote))
            return True

        while len(queued) < WORKERS + 1 and submit():
            pass
        while queued:
            stats, eol = queued.popleft().result()
            submit()
            if eol is None:  # mixed line ends: no byte offsets (the file is parsed as a stream)
                records.offsets = None
            per_line, parity = _stitch(stats, parity, first_line)  # lines numbered in order
            first_line += stats.height
            records.add(per_line)
    return records.close(path.stat().st_size)


def byte_blocks(path: Path) -> Iterator[tuple[bytes, int]]:
    """The file a block of whole lines of about BLOCK bytes at a time, read, never mapped whole:
    the bytes and their offset in the file."""
    with path.open("rb") as fh:
        rest, at = b"", 0
        while block := fh.read(BLOCK):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            if cut:
                yield block[:cut], at
                at += cut
        if rest:
            yield rest, at


def _block_stats(
    data: bytes, at: int, sep: str, quote: str | None
) -> tuple[pl.DataFrame, int | None]:
    """Per line of a block, what does not depend on where the block starts (inside quotes or
    not): line (from 0 in the block), quotes, separators (outside quotes when the line starts
    outside, and after the first quote when it starts inside), blank, byte offset; and its line
    ends (`_eol`). Only polars reads the bytes: a worker thread holds the GIL for no pass."""
    lines = pl.scan_lines(data, name="l").collect().with_row_index("line")
    eol = _eol(lines, data)
    text = pl.col("l")
    size = text.str.len_bytes().cast(pl.Int64) + (eol or 0)
    offsets = (size.cum_sum() - size + at).alias("off")
    seps = text.str.count_matches(sep, literal=True).alias("seps")
    blank = (text == "").alias("blank")
    if quote is None:
        return lines.select("line", pl.lit(0, pl.UInt32).alias("q"), seps, seps.alias("after"),
                            blank, offsets), eol
    qe = _re_escape(quote)

    def outside(t: pl.Expr) -> pl.Expr:  # separators outside quotes, starting outside
        closed = t.str.replace_all(f"{qe}[^{qe}]*{qe}", "").str.replace(f"{qe}.*$", "")
        return closed.str.count_matches(sep, literal=True)

    df = lines.select(
        "line", text.str.count_matches(quote, literal=True).alias("q"), seps, blank, offsets)
    # Only lines with quotes need the regex; a line that starts inside a quoted field (rare:
    # quoted newlines) is inside up to its first quote and outside after it, and a line
    # without quotes is all inside (no separator of its own).
    quoted = df["q"] > 0
    if not quoted.any():
        return df.with_columns(pl.lit(0, pl.UInt32).alias("after")), eol
    fixes = lines.filter(quoted).select(
        "line", outside(text).alias("out"),
        outside(text.str.replace(f"^[^{qe}]*{qe}", "")).alias("after"),
    )
    df = df.join(fixes, on="line", how="left", maintain_order="left")
    return df.select(
        "line", "q", pl.when(pl.col("q") > 0).then(pl.col("out")).otherwise(pl.col("seps"))
        .alias("seps"), pl.col("after").fill_null(0), "blank", "off"), eol


def _stitch(stats: pl.DataFrame, parity: int, first_line: int) -> tuple[pl.DataFrame, int]:
    """A block's lines given the parity it starts with and the number of its first line: does
    a record start on each line, and its separators outside quotes; and the parity after the
    block."""
    q = pl.col("q")
    inside = (q.cum_sum() - q + parity) % 2 == 1
    parity = (parity + int(stats["q"].sum())) % 2
    return stats.select(
        pl.col("line").cast(pl.Int64) + first_line,
        pl.when(inside).then(pl.col("after")).otherwise(pl.col("seps")).alias("seps"),
        "blank", (~inside).alias("start"), "off"), parity


def _eol(lines: pl.DataFrame, data: bytes) -> int | None:
    """1 when every line of the block ends with LF alone, 2 with CRLF, None when both occur or
    a CR stands alone (scan_lines' lengths then do not give the byte offsets). scan_lines
    drops a CR before a line's LF and keeps any other: with none kept, the block's size tells
    how many bytes each line end takes."""
    text = pl.col("l")
    stray, chars = lines.select(
        text.str.contains("\r", literal=True).any().alias("cr"),
        text.str.len_bytes().sum().alias("chars")).row(0)
    if stray or data.endswith(b"\r"):  # a CR alone (one at the very end is dropped too)
        return None
    ends = lines.height - (0 if data.endswith(b"\n") else 1)  # lines with a line end
    if chars + ends == len(data):
        return 1
    return 2 if chars + 2 * ends == len(data) else None


class Records:
    """The record layout of a CSV file, kept sparsely: a few bytes per irregular record and
    nothing per regular one (one line, `width` fields, not blank), whatever the file's size.

    - `jumps`: (record, line) where a record does not start on the line after the line the
      previous record starts on (record 0 always: its own line);
    - `odd`: (record, fields) where the field count is not `width`;
    - `blank`: the records that are blank lines.
    Records are numbered from 0 as polars scans them (the header record included).
    """

    def __init__(self, width: int) -> None:
        self.width, self.count = width, 0
        self._jumps: list[pl.DataFrame] = []
        self._odd: list[pl.DataFrame] = []
        self._blank: list[pl.Series] = []
        self._open: pl.DataFrame | None = None  # the last record's lines: it may go on
        self._next_line = 1  # where the next record starts when it is regular
        # The byte offset of every STEP-th record (record 0, STEP, 2*STEP...), and the file's
        # size after the last; None when they cannot be known (mixed line ends).
        self.offsets: list[pl.Series] | None = []
        self.end = 0

    def add(self, per_line: pl.DataFrame) -> None:
        """A chunk of lines (line, seps, blank, start): the records that start in it, and the
        lines that continue the record left open by the chunk before."""
        if self._open is not None:
            per_line = pl.concat([self._open, per_line], how="vertical_relaxed")
        if per_line.height == 0:
            return
        last_start = per_line.select(pl.col("start").arg_true().last()).item()
        if last_start is None:  # no record starts here: it all continues the open one
            self._open = per_line
            return
        self._open = per_line.slice(last_start)  # may go on in the next chunk
        self._emit(_records(per_line.slice(0, last_start)))

    def close(self, end: int = 0) -> Records:
        if self._open is not None and self._open.height:
            self._emit(_records(self._open))
        self._open = None
        self.end = end
        return self

    def block_offsets(self) -> list[int] | None:
        """Byte offsets of records 0, STEP, 2*STEP... and the end of the file (None: unknown)."""
        if self.offsets is None:
            return None
        found = pl.concat(self.offsets).to_list() if self.offsets else []
        return [*found, self.end]

    def _emit(self, recs: pl.DataFrame) -> None:
        if recs.height == 0:
            return
        numbered = recs.with_row_index("record", offset=self.count).with_columns(
            pl.col("record").cast(pl.Int64))
        # Each record is taken to start on the line after the previous record's start: where
        # that is wrong (after a record of several lines, a blank line), a jump says so.
        expected = (pl.col("line") + 1).shift(1).fill_null(self._next_line)
        jumps = numbered.filter((pl.col("line") != expected) | (pl.col("record") == 0))
        odd = numbered.filter(pl.col("fields") != self.width)
        blank = numbered.filter(pl.col("blank"))["record"]
        if self.offsets is not None:
            self.offsets.append(numbered.filter(pl.col("record") % STEP == 0)["off"])
        if jumps.height:
            self._jumps.append(jumps.select("record", "line"))
        if odd.height:
            self._odd.append(odd.select("record", "fields"))
        if blank.len():
            self._blank.append(blank)
        self.count += recs.height
        self._next_line = int(recs["line"][-1]) + 1

    def jumps(self) -> pl.DataFrame:
        return _stack(self._jumps, {"record": pl.Int64, "line": pl.Int64})

    def odd(self) -> pl.DataFrame:
        return _stack(self._odd, {"record": pl.Int64, "fields": pl.Int64})

    def blank(self) -> pl.Series:
        return pl.concat(self._blank) if self._blank else pl.Series("record", [], pl.Int64)


def _records(per_line: pl.DataFrame) -> pl.DataFrame:
    """Lines (line, seps, blank, start; the first one starts a record) -> one row per record:
    line, fields, blank."""
    if bool(per_line["start"].all()):  # one line, one record
        return per_line.select(
            pl.col("line").cast(pl.Int64), (pl.col("seps").cast(pl.Int64) + 1).alias("fields"),
            "blank", "off")
    return (
        per_line.with_columns(pl.col("start").cum_sum().alias("rec"))
        .group_by("rec", maintain_order=True)
        .agg(
            pl.col("line").first().cast(pl.Int64),
            (pl.col("seps").cast(pl.Int64).sum() + 1).alias("fields"),
            (pl.col("blank").first() & (pl.len() == 1)).alias("blank"),
            pl.col("off").first(),
        )
        .drop("rec")
    )


def _stack(parts: list[pl.DataFrame], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


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
