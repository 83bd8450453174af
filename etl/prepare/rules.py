"""The built-in rules every payload of a target must pass, as data the validator runs.

- REQUIRED: fields that must be present (checked by pandera as not-nullable);
- CHECKS: simple per-field checks (pandera);
- cross-field rules: polars expressions true where a row FAILS, with a message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL = r"^[^@\s;,<>()\[\]\"']+@" + _LABEL + r"(?:\." + _LABEL + r")*\.[A-Za-z]{2,}$"

REQUIRED: dict[str, tuple[str, ...]] = {
    "contact_transaction": ("referenceId",),
    "gift_transaction": ("transactionId", "amount", "giftDate", "giftType"),
}


@dataclass(frozen=True)
class RowRule:
    """A rule over whole rows: `fails` is true where the row breaks it."""

    field: str
    rule: str
    fails: pl.Expr
    message: pl.Expr


def _email(field: str, present: set[str]) -> list[RowRule]:
    if field not in present:
        return []
    col = pl.col(field)
    return [
        RowRule(
            field,
            "email",
            col.is_not_null() & ~col.str.contains(EMAIL),
            pl.lit("not a valid email address"),
        )
    ]


CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# Dates before this are typos (1020 for 2020) or placeholders (0001-01-01), not gifts;
# `rules: {<field>: {earliest: ...}}` moves it for one date field.
EARLIEST = dt.date(1900, 1, 1)


def _earliest(dates: dict[str, dt.date]) -> list[RowRule]:
    return [
        RowRule(
            f,
            "earliest",
            pl.col(f) < pl.lit(day),
            pl.lit(f"is before {day.isoformat()} (set rules.{f}.earliest to accept older dates)"),
        )
        for f, day in dates.items()
    ]


def row_rules(
    target: str,
    present: set[str],
    designations: int,
    today: dt.date,
    text: list[str],
    dates: dict[str, dt.date] | None = None,
) -> list[RowRule]:
    """The target's cross-field and format rules, for the fields the spec maps (`dates`: each
    date field and the earliest date it accepts)."""

    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in present else pl.lit(None)

    rules: list[RowRule] = [
        RowRule(
            f,
            "control_chars",
            pl.col(f).str.contains(CONTROL),
            pl.lit("contains a control character (a byte below 0x20 other than tab/newline)"),
        )
        for f in text
    ]
    rules += _earliest(dates or {})
    if target == "contact_transaction":
        no_person = col("firstName").is_null() | col("lastName").is_null()
        rules.append(
            RowRule(
                "name",
                "name_required",
                no_person & col("name").is_null(),
                pl.lit("needs firstName and lastName, or name (organization)"),
            )
        )
        rules += _email("email", present)
        return rules
    amount = col("amount")  # Decimal(38, 2) from parse_amount: every comparison is exact
    rules.append(
        RowRule(
            "amount",
            "positive",
            amount.is_not_null() & (amount <= 0),
            pl.lit("must be greater than 0"),
        )
    )
    rules.append(
        RowRule(
            "giftDate",
            "not_future",
            col("giftDate") > pl.lit(today),
            pl.lit(f"is in the future (after {today.isoformat()})"),
        )
    )
    rules.append(
        RowRule(
            "contact",
            "contact_required",
            col("contact.id").is_null() & col("contact.referenceId").is_null(),
            pl.lit("needs contact.id or contact.referenceId"),
        )
    )
    rules += _email("contact.email", present)
    if designations:
        parts = [
            pl.col(f"designations.{i}.amountDesignated")
            for i in range(designations)
            if f"designations.{i}.amountDesignated" in present
        ]
        if parts:
            total = pl.sum_horizontal([p.fill_null(0) for p in parts])
            rules.append(
                RowRule(
                    "designations",
                    "designations_sum",
                    amount.is_not_null() & (total != amount),
                    pl.lit("designations sum to ")
                    + total.round(2).cast(pl.String)
                    + pl.lit(", not the amount ")
                    + amount.cast(pl.String),
                )
            )
            for p in parts:
                rules.append(
                    RowRule(
                        "designations",
                        "designation_positive",
                        p.is_not_null() & (p <= 0) & (amount > 0),
                        pl.lit("a designated amount is not positive: ")
                        + p.round(2).cast(pl.String),
                    )
                )
    return rules
