"""Money transforms: `parse_amount`."""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
import polars.selectors as cs
import pycountry

from etl.transforms.helpers import F, step_result, strip_ws, unless_typed
from etl.transforms.registry import Step, transform

_CURRENCY = r"(?:[$€£]|(?i:" + "|".join(sorted(c.alpha_3 for c in pycountry.currencies)) + "))"
_GROUP_SPACE = r"[ \x{A0}\x{202F}\x{2009}]"
_NUMBER = {
    # Decimal point: "," groups thousands, always in threes.
    ".": r"(?:(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)",
    # Decimal comma: "." or a (non-breaking / narrow) space groups thousands, in threes.
    ",": (
        r"(?:(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]{1,3}(?:" + _GROUP_SPACE + r"[0-9]{3})+|[0-9]+)"
        r"(?:,[0-9]+)?|,[0-9]+)"
    ),
}


def _amount_shape(number: str) -> str:
    """A regex for a whole amount: one sign ("-" or accounting parentheses), at most one
    currency symbol or code before or after the number (inside or outside the parentheses)."""
    cur = _CURRENCY
    forms = [
        rf"-?\s*{number}(?:\s*{cur})?",  # 25, -25, 25 USD
        rf"-?\s*{cur}\s*{number}",  # $25, -$25
        rf"{cur}\s*-\s*{number}",  # $-25
        rf"\(\s*{number}\s*\)(?:\s*{cur})?",  # (25), (25) USD
        rf"\(\s*{cur}\s*{number}\s*\)",  # ($25)
        rf"\(\s*{number}\s*{cur}\s*\)",  # (25 USD)
        rf"{cur}\s*\(\s*{number}\s*\)",  # $(25)
    ]
    return "^(?:" + "|".join(forms) + ")$"


_AMOUNT_SHAPE = {decimal: _amount_shape(number) for decimal, number in _NUMBER.items()}


MONEY = pl.Decimal(38, 2)  # every amount: exact cents, never a float
MAX_DIGITS = 16  # before the decimal mark: the payload's Decimal(18, 2), cents fit an Int64


@transform("parse_amount")
def parse_amount(expr: pl.Expr, *, decimal: Literal[".", ","] = ".") -> Step:
    """Parse money text to an exact amount (Decimal, 2 places): "$1,234.50", "(25.00)" = -25,
    "USD 12", "1.234,50 €".

    Thousands separators must form groups of three; with `decimal: ","` the comma is the decimal
    mark and "." or a space groups thousands. Never rounds: more than 2 decimals (other than
    trailing zeros) is an error, and so are more than 16 digits before the decimal mark, letters,
    "1e3" and blanks. Numbers (Parquet int, float and decimal columns) are read as the text of
    their value, so a float that is not exactly 2 decimals (0.30000000000000004) is an error too.
    """
    return _amount(expr, decimal, MONEY)


def parse_number(expr: pl.Expr) -> Step:
    """A plain number (kind `number`, e.g. exchangeRate) as Float64: the amount shapes, any
    number of decimals. Not money: money goes through `parse_amount`."""
    return _amount(expr, ".", None)


def _amount(expr: pl.Expr, decimal: str, money: pl.Decimal | None) -> Step:
    if decimal not in _NUMBER:
        raise ValueError(f"decimal must be '.' or ',', not {decimal!r}")
    # A typed number's text always has a decimal point (resolved when the query is planned).
    numeric = pl.dtype_of(expr).matches(cs.numeric())
    text = strip_ws(expr)
    if decimal == ",":
        text = pl.when(numeric).then(text.str.replace(".", ",", literal=True)).otherwise(text)
    # The shape test decides validity; the number is then read leniently (digits and the
    # decimal mark only), which is right for every value that has the shape.
    if decimal == ".":
        digits = F("text").str.replace_all(r"[^0-9.]", "")
    else:
        digits = F("text").str.replace_all(r"[^0-9,]", "").str.replace(",", ".", literal=True)
    scope = pl.struct(text=text).struct.with_fields(
        valid=F("text").str.contains(_AMOUNT_SHAPE[decimal]),
        negative=F("text").str.contains(r"^[^0-9.,]*[-(]"),
        digits=digits,
    )
    # One message column, built once (a `when` per message would build each for every row).
    messages = [(~F("valid"), f"not an amount (decimal mark '{decimal}'): '")]
    if money is None:
        amount = F("digits").cast(pl.Float64, strict=False)
    else:
        # Checked on the text, before any cast (a cast to 2 places would round 25.999 to 26).
        large = F("digits").str.contains(r"^0*[1-9][0-9]{" + str(MAX_DIGITS) + "}")
        precise = F("digits").str.contains(r"\.[0-9]{2}[0-9]*[1-9]")
        amount = F("digits").cast(money, strict=False)
        messages += [
            (large, f"too large (more than {MAX_DIGITS} digits before the decimal mark): '"),
            (precise, "has more than 2 decimals (amounts are never rounded): '"),
        ]
    chain: Any = pl
    for cond, message in messages:
        chain = chain.when(cond).then(pl.lit(message))
    prefix: pl.Expr = chain
    scope = scope.struct.with_fields(amount=amount, prefix=prefix)
    scope = scope.struct.with_fields(
        value=pl.when(F("prefix").is_null()).then(
            pl.when(F("negative")).then(-F("amount")).otherwise(F("amount"))
        ),
        error=pl.concat_str([F("prefix"), F("text"), pl.lit("'")]),
    )
    if money is None:
        return unless_typed(expr, cs.numeric(), expr.cast(pl.Float64), step_result(scope))
    # An amount already parsed (a chain, or the field's typing after parse_amount) stays.
    return unless_typed(expr, cs.by_dtype(money), expr.cast(money), step_result(scope))
