"""CSV injection defence for files a person opens in a spreadsheet: every CSV the tool writes
(rejects.csv, needs_review.csv, `etl ledger export --format csv`) goes through `write_csv`.

Every CSV starts with a UTF-8 byte-order mark unless asked not to (see `write_csv`).

A text cell starting with `=`, `+`, `-`, `@`, tab or carriage return is executed by Excel,
LibreOffice and Google Sheets as a formula. Following the OWASP "CSV Injection" guidance such
cells get a leading single quote `'`, which makes the spreadsheet show the text instead.

Header cells are text like any other (a source file's header becomes the rejects' header), so
column names get the same rule.

Numbers are not formulas: columns with a numeric dtype are never touched, and a text cell that is a
plain decimal number ("-25.00", "-5") is left as it is. A leading "+" ("+1", "+44 20 ...") is not
how numbers are written in the data, so such cells are neutralized like any other.

Everything is one vectorized polars expression per text column: no Python per row.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from etl.base.redact import redact, redact_expr, redact_frame
from etl.base.safe_write import atomic

# First characters that make a spreadsheet evaluate the cell.
FORMULA_START = r"^[=+\-@\t\r]"
# A plain decimal number, optionally negative: "-5", "-25.00", "0.5". Not formulas.
PLAIN_NUMBER = r"^-?[0-9]+(?:\.[0-9]+)?$"
QUOTE = "'"
_FORMULA = re.compile(FORMULA_START)
_NUMBER = re.compile(PLAIN_NUMBER)


def neutralize_expr(column: str, *, cast: bool = False) -> pl.Expr:
    """`column` with formula-like cells prefixed by `'`; nulls stay null.

    The column must be String (or `cast=True` to cast it to String first, e.g. Categorical).
    """
    value = pl.col(column).cast(pl.String) if cast else pl.col(column)
    return neutralize_expr_of(value).alias(column)


def neutralize_expr_of(value: pl.Expr) -> pl.Expr:
    """A String expression with formula-like cells prefixed by `'`."""
    risky = value.str.contains(FORMULA_START) & ~value.str.contains(PLAIN_NUMBER)
    return pl.when(risky).then(pl.lit(QUOTE) + value).otherwise(value)


def neutralize_formulas(df: pl.DataFrame) -> pl.DataFrame:
    """A copy of `df` whose text cells cannot be executed by a spreadsheet.

    String columns are neutralized; Categorical/Enum columns are cast to String first (they are
    text too). Numeric, temporal, boolean and nested columns are returned unchanged. Column names
    and order are kept.
    """
    exprs: list[pl.Expr] = []
    for name, dtype in df.schema.items():
        if dtype == pl.String:
            exprs.append(neutralize_expr(name))
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            exprs.append(neutralize_expr(name, cast=True))
    return df.with_columns(exprs) if exprs else df


def neutralize_name(name: str) -> str:
    """A column name with the same rule as a cell: formula-like names get a leading `'`."""
    return QUOTE + name if _FORMULA.match(name) and not _NUMBER.match(name) else name


def neutralize_header(df: pl.DataFrame) -> pl.DataFrame:
    """`df` with formula-like column names prefixed by `'` (order kept; a name that would then
    clash with another column gets more quotes until it is unique)."""
    taken = set(df.columns)
    renames: dict[str, str] = {}
    for name in df.columns:
        safe = neutralize_name(name)
        if safe == name:
            continue
        while safe in taken:
            safe = QUOTE + safe
        taken.add(safe)
        renames[name] = safe
    return df.rename(renames) if renames else df


def write_csv(df: pl.DataFrame, path: str | Path, *, bom: bool = True) -> Path:
    """The one CSV writer: header and cells spreadsheet-safe, secrets redacted, written whole
    to a temporary file and renamed over `path` (refused if `path` is a link or a device).

    UTF-8 with a byte-order mark by default: Excel opens a CSV without one in the machine's
    ANSI code page and garbles accented names ("ZoÃ«"); with it, Excel reads UTF-8. The tool's
    own CSV reader, polars and Python's "utf-8-sig" skip the mark. `bom=False` for programs that
    do not (`output.csv_bom: false` in a spec)."""
    safe = neutralize_header(neutralize_formulas(redact_frame(df)))
    with atomic(path) as tmp:
        safe.write_csv(tmp, include_bom=bom)
    return Path(path)


def write_csv_lazy(frame: pl.LazyFrame | None, path: str | Path, *, bom: bool = True) -> Path:
    """`write_csv` for rows too many to hold: the same rules, streamed by polars from a lazy
    frame into the file (None: an empty file, as an empty frame gives)."""
    if frame is None:
        return write_csv(pl.DataFrame(), path, bom=bom)
    schema = frame.collect_schema()
    text = [n for n, t in schema.items()
            if t == pl.String or isinstance(t, pl.Categorical | pl.Enum)]
    frame = frame.with_columns(
        [neutralize_expr_of(redact_expr(pl.col(n).cast(pl.String))).alias(n) for n in text])
    renamed = {n: redact(n) for n in schema}
    safe = neutralize_header(pl.DataFrame(schema={renamed[n]: t for n, t in schema.items()}))
    frame = frame.rename(dict(zip(schema, safe.columns, strict=True)))
    with atomic(path) as tmp:
        frame.sink_csv(tmp, include_bom=bom)
    return Path(path)
