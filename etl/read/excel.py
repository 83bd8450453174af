"""Excel workbooks (.xlsx, .xlsm, .xls) -> the same string frames as CSV, through polars'
`read_excel` on the fastexcel (calamine) engine, an optional extra (`pip install 'etl[excel]'`).

Every cell arrives as text, as a CSV cell would: every column is read as string, so ZIP 01234
keeps its zero and an integer-valued number cell is "7001", never "7001.0". A date cell becomes
ISO text, `YYYY-MM-DD` (with ` HH:MM:SS` when it has a time of day), which `parse_date` reads
with the format "%Y-%m-%d"; a date typed as a plain number (an Excel serial such as 43831) stays
that number, which `parse_date` reads with `excel_serial: true`. `_record` and `_line` are the
spreadsheet's own row number, so a person finds the row.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from etl.base.errors import SourceError
from etl.base.filecheck import check_unchanged, file_digest, regular_stat, sniff
from etl.read.nulls import null_exprs
from etl.read.sourcefile import DenseMeta, SourceFile, check_header
from etl.spec.parse import Source

INSTALL = "pip install 'etl[excel]'"


def _sheet_names(path: Path) -> list[str]:
    import fastexcel  # only reached once the read_excel call needed it

    try:
        return list(fastexcel.read_excel(str(path)).sheet_names)
    except Exception:  # only a hint for a message already being built
        return []


def read_sheet(path: Path, source: Source, display: str) -> pl.DataFrame:
    """The chosen sheet from its row 1, every column as string, no row dropped: row i of the
    frame is sheet row i + 1 (calamine would start at the first used row, and a header_row
    counted from there would misnumber every row after leading empty ones)."""
    if importlib.util.find_spec("fastexcel") is None:
        raise SourceError(
            f"reading Excel files needs the optional fastexcel package: {INSTALL} "
            "(or export the sheet as CSV)",
            path=display,
        )
    sheet = 0 if source.sheet is None else source.sheet
    which = {"sheet_name": sheet} if isinstance(sheet, str) else {"sheet_id": sheet + 1}
    try:
        frame = pl.read_excel(
            path,
            engine="calamine",
            read_options={"header_row": None, "skip_rows": 0, "dtypes": "string"},
            has_header=False,
            drop_empty_rows=False,
            drop_empty_cols=False,
            raise_if_empty=False,
            **which,
        )
    except ValueError as exc:
        if "no matching sheet" not in str(exc):
            raise SourceError(f"not a readable Excel workbook ({exc})", path=display) from None
        names = ", ".join(map(repr, _sheet_names(path)))
        raise SourceError(
            f"no sheet {sheet!r} in the workbook (source.sheet: a name, or a 0-based index); "
            f"its sheets: {names}",
            path=display,
        ) from None
    except Exception as exc:  # fastexcel errors share no base class
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceError(f"not a readable Excel workbook ({first})", path=display) from None
    return frame


def _header(frame: pl.DataFrame, row: int, display: str) -> list[str]:
    if frame.height < row:
        raise SourceError(
            f"the sheet has {frame.height} row(s): no header on row {row} (source.header_row)",
            path=display,
        )
    cells = frame.row(row - 1)
    names = [str(v).strip() if v is not None else "" for v in cells]
    # an empty header cell over an empty column is just the edge of the used range
    return [n or f"(column {i + 1})" for i, n in enumerate(names)]


def _as_text(columns: list[str]) -> list[pl.Expr]:
    # a date cell comes as "2020-01-02 00:00:00": the date alone is what a person sees
    return [pl.col(c).str.replace(r"^(\d{4}-\d{2}-\d{2}) 00:00:00$", "$1").alias(c)
            for c in columns]


@contextmanager
def open_excel(
    path: Path, source: Source, needed: list[str], display: str
) -> Iterator[SourceFile]:
    """Open one sheet of a workbook as a SourceFile (rows numbered as the sheet numbers them)."""
    before = regular_stat(path, display)
    found = sniff(path)
    if found is None or found[0] not in ("xlsx", "xls", "ods", "zip"):
        what = found[1] if found else "not a workbook (no Excel signature in its first bytes)"
        raise SourceError(f"not an Excel workbook: this is {what}", path=display)
    digest, size = file_digest(path)
    raw = read_sheet(path, source, display)
    names = _header(raw, source.header_row, display)
    check_header(Path(display), names, needed)
    first = source.header_row + 1  # the sheet row of the first data row
    frame = raw.slice(source.header_row).rename(dict(zip(raw.columns, names, strict=True)))
    frame = frame.with_columns(_as_text(names)).with_columns(null_exprs(names, source))
    blank = pl.all_horizontal(pl.col(names).is_null()) if names else pl.lit(True)
    row = pl.int_range(first, first + frame.height, dtype=pl.Int64)
    meta = frame.select(
        row.alias("line"),
        pl.lit(len(names), dtype=pl.UInt32).alias("fields"),
        (~blank).alias("data"),
        pl.when(~blank).then(row).alias("record"),
    )
    notes = []
    empty = frame.height - int(meta["data"].sum())
    if empty:
        notes.append(f"{empty} empty row(s) in the sheet skipped")

    def on_error(exc: Exception) -> SourceError:
        return SourceError(f"cannot read the sheet ({str(exc).splitlines()[0]})", path=display)

    yield SourceFile(
        path, display, names, digest, size, notes, frame.lazy, DenseMeta(meta), on_error, len(names)
    )
    check_unchanged(path, display, before, digest)
