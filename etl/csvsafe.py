"""CSV injection defence for files a person opens in a spreadsheet (rejects, ledger exports).

A text cell starting with `=`, `+`, `-`, `@`, tab or carriage return is executed by Excel,
LibreOffice and Google Sheets as a formula. Following the OWASP "CSV Injection" guidance such
cells get a leading single quote `'`, which makes the spreadsheet show the text instead.

Numbers are not formulas: columns with a numeric dtype are never touched, and a text cell that is a
plain decimal number ("-25.00", "-5") is left as it is. A leading "+" ("+1", "+44 20 ...") is not
how numbers are written in the data, so such cells are neutralized like any other.

Everything is one vectorized polars expression per text column: no Python per row.
"""

from __future__ import annotations

import polars as pl

# First characters that make a spreadsheet evaluate the cell.
FORMULA_START = r"^[=+\-@\t\r]"
# A plain decimal number, optionally negative: "-5", "-25.00", "0.5". Not formulas.
PLAIN_NUMBER = r"^-?[0-9]+(?:\.[0-9]+)?$"
QUOTE = "'"


def neutralize_expr(column: str, *, cast: bool = False) -> pl.Expr:
    """`column` with formula-like cells prefixed by `'`; nulls stay null.

    The column must be String (or `cast=True` to cast it to String first, e.g. Categorical).
    """
    value = pl.col(column).cast(pl.String) if cast else pl.col(column)
    risky = value.str.contains(FORMULA_START) & ~value.str.contains(PLAIN_NUMBER)
    return pl.when(risky).then(pl.lit(QUOTE) + value).otherwise(value).alias(column)


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
