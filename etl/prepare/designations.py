"""Gift designations -> field plans: `designations.<i>.<code|name|id>` and
`designations.<i>.amountDesignated`, with the checks that keep an amount and its project together.
"""

from __future__ import annotations

import polars as pl

from etl.prepare.mapping import OUT, FieldPlan, error_cell, plan_mapping, quoted
from etl.spec.parse import Mapping, Spec
from etl.transforms.money import MONEY


def _named(m: Mapping) -> str:
    """How a message names where a mapping's value comes from."""
    if m.column is not None:
        return m.column
    if m.template is not None:
        return f"template {m.template!r}"
    return "its conditional mapping" if m.when is not None else f"constant {m.constant!r}"


def _money(expr: pl.Expr) -> pl.Expr:
    return expr.round(2).cast(pl.Decimal(18, 2)).cast(pl.String)


def designation_plans(spec: Spec) -> list[FieldPlan]:
    """`designations.<i>.<code|name|id>` and `designations.<i>.amountDesignated` columns.

    An amount needs a project and a project from the data needs an amount: either alone would
    send a gift with less designated than it says (the amount is dropped) or a designation with
    `amountDesignated: null`, so the row is rejected. A constant project with no amount is no
    designation (`code: {constant: B}` with an optional amount column)."""
    plans: list[FieldPlan] = []
    amounts: list[pl.Expr] = []
    every: list[tuple[str, pl.Expr]] = []  # all designation stages (the rest amount reads them)
    projects: list[pl.Expr] = []
    rest: tuple[int, pl.Expr, str] | None = None  # the designation without an amount
    for i, d in enumerate(spec.designations):
        by = "code" if d.code else ("name" if d.name else "id")
        m = d.code or d.name or d.id
        assert m is not None
        field = f"designations.{i}.{by}"
        value, error, raw, stages = plan_mapping(m, "int" if by == "id" else "str", field)
        plans.append(FieldPlan(field, value, error, raw, tuple(stages.items)))
        every += stages.items
        if d.amount is None:
            rest = (i, value, f"the designation {by} ({_named(m)}) is empty")
            continue
        field = f"designations.{i}.amountDesignated"
        amount, aerror, araw, astages = plan_mapping(d.amount, "money", field)
        orphan = value.is_null() & amount.is_not_null() & (amount != 0)
        missing = value.is_not_null() & amount.is_null() & aerror.is_null()
        checks = [
            pl.when(orphan).then(error_cell("designation_project", (
                pl.lit(f"{_named(d.amount)} is ") + _money(amount)
                + pl.lit(f" but the designation {by} ({_named(m)}) is empty: "
                         "an amount needs a project")))),
        ]
        if m.constant is None:
            checks.append(pl.when(missing).then(error_cell("designation_amount", (
                pl.lit(f"the designation {by} ({_named(m)}) is ") + quoted(value)
                + pl.lit(f" but its amount ({_named(d.amount)}) is empty")))))
        aerror = pl.coalesce(aerror, *checks)
        projects.append(value.is_not_null() & amount.is_not_null())
        amount = pl.when(value.is_not_null()).then(amount)
        amounts.append(amount.fill_null(pl.lit(0, MONEY)))
        plans.append(
            FieldPlan(field, amount, aerror, araw, tuple(stages.items + astages.items))
        )
        every += astages.items
    if rest is not None:
        index, value, named = rest
        gift = pl.col(OUT + "amount")
        total = (gift - pl.sum_horizontal(amounts) if amounts else gift).round(2)
        # The rest goes nowhere when its project is empty: fine for a gift with no designation
        # at all, a silent gap when others are designated.
        lost = value.is_null() & (total != 0) & pl.any_horizontal(projects or [pl.lit(False)])
        error = pl.when(lost).then(error_cell("designation_project", (
            pl.lit("the rest of the amount, ") + _money(total)
            + pl.lit(f", is designated to nothing: {named}"))))
        # An empty project with nothing left over is simply not there (not a 0.00 designation).
        nothing = value.is_null() & (total == 0)
        plans.append(
            FieldPlan(
                f"designations.{index}.amountDesignated",
                pl.when(nothing).then(None).otherwise(total),
                error,
                total.cast(pl.String),
                tuple(every),
            )
        )
    return plans
