"""The parts of report.html a person approves from (issue 13): rejected amounts per currency,
rejects grouped by rule with the donor's key columns and a hint, the request plan. Every value
from the data goes through `esc`; only the sample rows become Python objects."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import polars as pl

from etl.prepare.result import ValidationResult
from etl.report.hints import hint
from etl.spec.model import Spec

SAMPLES_PER_RULE = 5


def key_columns(spec: Spec) -> list[str]:
    """The source columns that name a row and its donor: the id's columns, then the donor
    reference's (contact.referenceId / referenceId mapped from a column)."""
    ident = spec.keys.id
    cols = [ident.column] if ident.column else list(ident.hash or [])
    if ident.template:
        cols += [p.split("}")[0] for p in ident.template.split("{")[1:]]
    for field in ("contact.referenceId", "referenceId", "contact.id"):
        m = spec.mappings.get(field)
        column = getattr(m, "column", m if isinstance(m, str) else None)
        if isinstance(column, str):
            cols.append(column)
    return list(dict.fromkeys(cols))


def amount(text: object) -> str:
    """"1234567.5" -> "1,234,567.50"; anything else as it is."""
    try:
        return f"{Decimal(str(text)):,.2f}"
    except (InvalidOperation, ValueError):
        return "—" if text is None else str(text)


def amount_rows(amounts: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(currency, read, valid, rejected) with thousands separators; rejected = read - valid,
    the parsed amounts of the rejected rows (an amount that did not parse is in no total)."""
    out = []
    for cur, t in amounts.items():
        t = t if isinstance(t, dict) else {}
        try:
            rejected = str(Decimal(str(t.get("read"))) - Decimal(str(t.get("valid"))))
        except (InvalidOperation, ValueError):
            rejected = None
        out.append((str(cur), amount(t.get("read")), amount(t.get("valid")), amount(rejected)))
    return out


def rejects_by_rule(result: ValidationResult, keys: list[str]) -> list[dict[str, Any]]:
    """Per rule, most failures first: its count and a few failures with the row's key
    columns and a hint."""
    fails = result.failures
    if fails.height == 0 or "rule" not in fails.columns:
        return []
    if result.failure_counts is not None:  # the failures are a sample: count them all
        counts = result.failure_counts.group_by("rule").agg(pl.col("count").sum())
    else:
        counts = fails.group_by("rule").agg(pl.len().alias("count"))
    counts = counts.sort(["count", "rule"], descending=[True, False], nulls_last=True)
    where = ["_source_file", "_record"]
    sample = fails.sort(where).group_by("rule", maintain_order=True).head(SAMPLES_PER_RULE)
    if result.rejects_sampled:  # sampled failures carry their row's source columns
        keys = [k for k in keys if k in fails.columns]
    else:
        keys = [k for k in keys if k in result.rejects.columns]
    if (keys and not result.rejects_sampled and set(where) <= set(fails.columns)
            and set(where) <= set(result.rejects.columns)):
        sample = sample.join(result.rejects.select(*where, *keys).unique(where), on=where,
                             how="left")
    groups = []
    for rule, count in counts.iter_rows():
        rows = []
        for r in sample.filter(pl.col("rule").eq_missing(rule)).to_dicts():
            rows.append({"keys": {k: r.get(k) for k in keys}, "field": r.get("field"),
                         "record": r.get("_record"), "value": r.get("value"),
                         "hint": hint(rule, r.get("value"), r.get("error"))})
        groups.append({"rule": rule, "count": count, "samples": rows})
    return groups


def plan_lines(plan: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(what, requests) rows of the request plan, then the total and the time."""
    if not plan:
        return []
    rows = [(f"writes: {k}", f"{v:,}") for k, v in plan["writes"].items()]
    if plan["prematch_reads"]:
        rows.append(("pre-match reads", f"{plan['prematch_reads']:,}"))
    if plan["reconcile_method"] != "none":
        rows.append((f"reconcile reads ({plan['reconcile_method']})",
                     f"{plan['reconcile_reads']:,}"))
    rows.append(("total", f"{plan['total']:,}"))
    return rows
