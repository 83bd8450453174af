"""Valid rows -> the exact wire JSON of the target, built as polars strings (no per-row Python).

Dotted field paths become nested objects (`contact.address.city`), `designations.<i>.*` columns a
list of designation objects, money a JSON number with two decimals, dates `YYYY-MM-DD`, and empty
values are omitted (as the CRM+ docs advise: send only what you have).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from etl.targets import Target


def _tree(fields: list[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for f in fields:
        node = tree
        parts = f.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = f
    return tree


def _value_text(col: pl.Expr, kind: str, needs: tuple[bool, bool]) -> pl.Expr:
    """One field's value as JSON text; null stays null (and the member is left out)."""
    if kind == "money":
        return _money_text(col)
    if kind in ("int", "number"):
        return col.cast(pl.String)
    if kind == "bool":
        return pl.when(col).then(pl.lit("true")).otherwise(pl.lit("false"))
    if kind == "date":
        return pl.lit('"') + col.dt.strftime("%Y-%m-%d") + pl.lit('"')
    if kind == "str_list":
        listed = pl.struct(col.alias("v")).struct.json_encode().str.slice(5).str.head(-1)
        return pl.when(col.is_not_null()).then(listed)
    return _json_text(col, needs)


def _object(
    tree: dict[str, Any],
    kinds: dict[str, str],
    needs: dict[str, tuple[bool, bool]],
    top: bool = False,
) -> pl.Expr:
    """A JSON object from the tree of field paths; null when every member is null."""
    members = []
    for key, sub in tree.items():
        value = (
            _object(sub, kinds, needs)
            if isinstance(sub, dict)
            else _value_text(pl.col(sub), kinds.get(sub, "str"), needs.get(sub, (True, True)))
        )
        members.append(pl.lit(f'"{key}":') + value)
    body = pl.concat_str(members, separator=",", ignore_nulls=True)
    if top:  # the source and id are always there: never empty
        return pl.concat_str([pl.lit("{"), body, pl.lit("}")])
    return pl.when(body == "").then(None).otherwise(pl.lit("{") + body + pl.lit("}"))


_QUOTES = r'["\\]'
_CONTROLS = "[\n\r\t]"
_EITHER = '["\\\\\n\r\t]'


def _json_text(expr: pl.Expr, needs: tuple[bool, bool] = (True, True)) -> pl.Expr:
    """A string as a JSON string literal. `needs` says whether the column holds any quote or
    backslash, and any newline or tab, so clean columns skip the replacement passes. Other
    control characters never get here: the validator rejects them (rule `control_chars`)."""
    quotes, controls = needs
    if quotes:
        expr = expr.str.replace_all(_QUOTES, r"\$0")
    if controls:
        for raw, escaped in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            expr = expr.str.replace_all(raw, escaped, literal=True)
    return pl.lit('"') + expr + pl.lit('"')


def escape_needs(frame: pl.DataFrame, columns: list[str]) -> dict[str, tuple[bool, bool]]:
    """For each string column: does any value need quote/backslash or control escapes?"""
    text = [c for c in columns if frame.schema[c] == pl.String]
    if not text:
        return {}
    # One scan a column for any of them; only columns that have some are looked at again.
    row = frame.select(
        [pl.col(c).str.contains(_EITHER).any().alias(f"e{i}") for i, c in enumerate(text)]
    ).row(0)
    needs = {c: (False, False) for c in text}
    dirty = [c for c, hit in zip(text, row, strict=True) if hit]
    if dirty:
        row = frame.select(
            [pl.col(c).str.contains(_QUOTES).any().alias(f"q{i}") for i, c in enumerate(dirty)]
            + [pl.col(c).str.contains(_CONTROLS).any().alias(f"c{i}")
               for i, c in enumerate(dirty)]
        ).row(0)
        n = len(dirty)
        needs |= {c: (bool(row[i]), bool(row[n + i])) for i, c in enumerate(dirty)}
    return needs


def _money_text(expr: pl.Expr) -> pl.Expr:
    """Money as a JSON number with exactly two decimals (a decimal type: no float noise)."""
    return expr.round(2).cast(pl.Decimal(18, 2)).cast(pl.String)


def _designations(fields: list[str], needs: dict[str, tuple[bool, bool]]) -> pl.Expr | None:
    """The designations array as JSON text (null when a gift has none)."""
    count = len({f.split(".")[1] for f in fields if f.startswith("designations.")})
    if not count:
        return None
    items = []
    for i in range(count):
        prefix = f"designations.{i}."
        by = next(
            f[len(prefix) :]
            for f in fields
            if f.startswith(prefix) and not f.endswith("amountDesignated")
        )
        project = pl.col(prefix + by)
        amount = pl.col(prefix + "amountDesignated")
        items.append(
            # no amount: a constant project with an empty amount column, not a designation
            pl.when(project.is_not_null() & amount.is_not_null()).then(
                pl.concat_str(
                    [
                        pl.lit('{"' + by + '":'),
                        _json_text(project, needs.get(prefix + by, (True, True))),
                        pl.lit(',"amountDesignated":'),
                        _money_text(amount).fill_null("null"),
                        pl.lit("}"),
                    ]
                )
            )
        )
    joined = pl.concat_str(items, separator=",", ignore_nulls=True)
    return pl.when(joined == "").then(None).otherwise(joined)


def payload_expr(
    target: Target, fields: list[str], needs: dict[str, tuple[bool, bool]] | None = None
) -> pl.Expr:
    """A String expression: the compact wire JSON of each row. `needs` (from `escape_needs`)
    lets clean string columns skip escaping; without it every column is escaped."""
    needs = needs or {}
    plain = [f for f in fields if not f.startswith("designations.")]
    kinds = {f: target.kind(f) or "str" for f in plain}
    text = _object(_tree(plain), kinds, needs, top=True)
    designations = _designations(fields, needs)
    if designations is None:
        return text
    member = pl.lit(',"designations":[') + designations + pl.lit("]")
    return pl.concat_str([text.str.head(-1), member, pl.lit("}")], ignore_nulls=True)


def strip_empty(frame: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Empty strings are 'no value': make them null so the payload omits them."""
    text = [f for f in fields if frame.schema[f] == pl.String]
    return frame.with_columns(
        [pl.when(pl.col(f) == "").then(None).otherwise(pl.col(f)).alias(f) for f in text]
    )
