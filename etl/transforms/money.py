"""Money transforms: `parse_amount`."""

from __future__ import annotations

from typing import Literal

import polars as pl
import polars.selectors as cs
import pycountry

from etl.transforms.helpers import F, _message, _result, _strip, _unless_typed
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


@transform("parse_amount")
def parse_amount(expr: pl.Expr, *, decimal: Literal[".", ","] = ".") -> Step:
    """Parse money text to a number: "$1,234.50", "(25.00)" = -25, "USD 12", "1.234,50 €".

    Thousands separators must form groups of three; with `decimal: ","` the comma is the decimal
    mark and "." or a space groups thousands. Never rounds; letters, "1e3" and blanks are errors.
    """
    if decimal not in _NUMBER:
        raise ValueError(f"decimal must be '.' or ',', not {decimal!r}")
    # The shape test decides validity; the number is then read leniently (digits and the
    # decimal mark only), which is right for every value that has the shape.
    if decimal == ".":
        digits = F("text").str.replace_all(r"[^0-9.]", "")
    else:
        digits = F("text").str.replace_all(r"[^0-9,]", "").str.replace(",", ".", literal=True)
    scope = pl.struct(text=_strip(expr)).struct.with_fields(
        valid=F("text").str.contains(_AMOUNT_SHAPE[decimal]),
        negative=F("text").str.contains(r"^[^0-9.,]*[-(]"),
        amount=digits.cast(pl.Float64, strict=False),
    )
    scope = scope.struct.with_fields(
        value=pl.when(F("valid")).then(
            pl.when(F("negative")).then(-F("amount")).otherwise(F("amount"))
        ),
        error=_message(~F("valid"), f"not an amount (decimal mark '{decimal}'): '", F("text"), "'"),
    )
    return _unless_typed(expr, cs.numeric(), expr.cast(pl.Float64), _result(scope))
