"""Date transforms: `parse_date`."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import polars as pl
import polars.selectors as cs

from etl.transforms.helpers import (
    F,
    error_message,
    step_result,
    string_list,
    strip_ws,
    unless_typed,
)
from etl.transforms.registry import Step, transform

# Directives chrono (polars' strptime) understands; anything else is a typo in the spec.
_STRPTIME_DIRECTIVE = re.compile(
    r"%(?:[-_0]?[YCymbBhdeaAwuUWGgVjDxFvHkIlPpMSRTXrZzstn%]|\.?[369]?f|:{1,3}z|#z)"
)
_EXCEL_EPOCH_OFFSET = 25569  # days from 1899-12-30 (Excel's day 0) to 1970-01-01
_EXCEL_MAX = 2958465  # 9999-12-31


def _check_format(fmt: str) -> None:
    if "%" in _STRPTIME_DIRECTIVE.sub("", fmt):
        raise ValueError(f"unknown directive in date format {fmt!r}")


@transform("parse_date")
def parse_date(
    expr: pl.Expr, *, formats: Sequence[str] = ("%Y-%m-%d",), excel_serial: bool = False
) -> Step:
    """Parse text to a date with the one of the strptime `formats` that fits.

    A value that two formats read as different dates is rejected as ambiguous; datetime formats
    keep the date part; `excel_serial: true` also reads whole numbers 1..2958465 as Excel dates.
    """
    fmts = string_list(formats, "formats")
    if not fmts:
        raise ValueError("formats must list at least one strptime format")
    for fmt in fmts:
        _check_format(fmt)
    labels = {f"d{i}": fmt for i, fmt in enumerate(fmts)}
    parsed = {
        name: F("text").str.strptime(pl.Date, fmt, strict=False, exact=True)
        for name, fmt in labels.items()
    }
    if excel_serial:
        labels["excel"] = "excel serial"
        parsed["excel"] = F("text").str.extract(r"^([0-9]{1,7})(?:\.0+)?$", 1).cast(pl.Int32)
    scope = pl.struct(text=strip_ws(expr)).struct.with_fields(**parsed)

    checked = {  # chrono reads "12/31/99" with %Y as the year 99: demand four digits
        name: pl.when(F(name).dt.year() >= 1000).then(F(name))
        for name, fmt in labels.items()
        if "%Y" in fmt
    }
    if excel_serial:
        serial = F("excel")
        checked["excel"] = pl.when(serial.is_between(1, _EXCEL_MAX)).then(
            (serial - _EXCEL_EPOCH_OFFSET).cast(pl.Date)
        )
    if checked:
        scope = scope.struct.with_fields(**checked)

    clashes = [
        error_message(
            F(a).is_not_null() & F(b).is_not_null() & (F(a) != F(b)),
            *("ambiguous date '", F("text"), "': ", F(a).cast(pl.String), f" ({labels[a]}) or "),
            *(F(b).cast(pl.String), f" ({labels[b]})"),
        )
        for a, b in itertools.combinations(labels, 2)
    ]
    scope = scope.struct.with_fields(
        first=pl.coalesce([F(name) for name in labels]),
        clash=pl.coalesce(clashes) if clashes else pl.lit(None, pl.String),
    )
    wanted = ", ".join(fmts) + (" or an excel serial" if excel_serial else "")
    scope = scope.struct.with_fields(
        value=pl.when(F("clash").is_null()).then(F("first")),
        error=pl.coalesce(
            F("clash"),
            error_message(
                F("text").is_not_null() & F("first").is_null(),
                *(f"not a date in formats {wanted}: '", F("text"), "'"),
            ),
        ),
    )
    return unless_typed(expr, cs.date() | cs.datetime(), expr.cast(pl.Date), step_result(scope))
