"""Valid rows -> the exact wire JSON of the target, built as polars strings (no per-row Python).

Dotted field paths become nested objects (`contact.address.city`), `designations.<i>.*` columns a
list of designation objects, money a JSON number with two decimals, dates `YYYY-MM-DD`, and empty
values are omitted (as the CRM+ docs advise: send only what you have).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from etl.targets import Target

MONEY_KEYS = ("amount", "amountDesignated")


def _tree(fields: list[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for f in fields:
        node = tree
        parts = f.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = f
    return tree


def _struct(tree: dict[str, Any], kinds: dict[str, str]) -> list[pl.Expr]:
    exprs = []
    for key, sub in tree.items():
        if isinstance(sub, dict):
            exprs.append(pl.struct(_struct(sub, kinds)).alias(key))
            continue
        col = pl.col(sub)
        if kinds.get(sub) == "money" or sub.endswith(".amountDesignated"):
            col = col.round(2).cast(pl.Decimal(18, 2))
        exprs.append(col.alias(key))
    return exprs


def _designations(fields: list[str]) -> pl.Expr | None:
    count = len({f.split(".")[1] for f in fields if f.startswith("designations.")})
    if not count:
        return None
    items = []
    for i in range(count):

        def col(name: str, dtype: pl.DataType, i: int = i) -> pl.Expr:
            path = f"designations.{i}.{name}"
            return pl.col(path) if path in fields else pl.lit(None, dtype)

        project = pl.coalesce(
            col("code", pl.String()),
            col("name", pl.String()),
            col("id", pl.Int64()).cast(pl.String),
        )
        items.append(
            pl.when(project.is_not_null()).then(
                pl.struct(
                    col("id", pl.Int64()).alias("id"),
                    col("name", pl.String()).alias("name"),
                    col("code", pl.String()).alias("code"),
                    col("amountDesignated", pl.Float64())
                    .round(2)
                    .cast(pl.Decimal(18, 2))
                    .alias("amountDesignated"),
                )
            )
        )
    return pl.concat_list(items).list.drop_nulls().alias("designations")


def payload_expr(target: Target, fields: list[str]) -> pl.Expr:
    """A String expression: the compact wire JSON of each row."""
    plain = [f for f in fields if not f.startswith("designations.")]
    members = _struct(_tree(plain), target.fields)
    designations = _designations(fields)
    if designations is not None:
        members.append(designations)
    text = pl.struct(members).struct.json_encode()
    for _ in range(2):  # nested objects can empty out in two steps (address, then contact)
        text = (
            text.str.replace_all(r',"[^"\\]*":null', "")
            .str.replace_all(r'\{"[^"\\]*":null,?', "{")
            .str.replace_all(r',"[^"\\]*":(?:\{\}|\[\])', "")
            .str.replace_all(r'\{"[^"\\]*":(?:\{\}|\[\]),?', "{")
        )
    keys = "|".join(MONEY_KEYS)
    return text.str.replace_all(f'"({keys})":"(-?[0-9]+\\.[0-9]+)"', '"${1}":${2}')


def strip_empty(frame: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Empty strings are 'no value': make them null so the payload omits them."""
    text = [f for f in fields if frame.schema[f] == pl.String]
    return frame.with_columns(
        [pl.when(pl.col(f) == "").then(None).otherwise(pl.col(f)).alias(f) for f in text]
    )
