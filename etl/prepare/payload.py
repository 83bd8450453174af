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


def _value_parts(col: pl.Expr, kind: str, needs: tuple[bool, bool]) -> tuple[str, pl.Expr, str]:
    """One field's value as JSON text, as (text before, expression, text after), so that its
    member is one `concat_str` with no intermediate string per part. Null stays null (the
    member is left out)."""
    if kind == "money":
        return "", _money_text(col), ""
    if kind in ("int", "number"):
        return "", col.cast(pl.String), ""
    if kind == "bool":
        return "", pl.when(col).then(pl.lit("true")).otherwise(pl.lit("false")), ""
    if kind == "date":
        return '"', col.dt.strftime("%Y-%m-%d"), '"'
    if kind == "str_list":
        listed = pl.struct(col.alias("v")).struct.json_encode().str.slice(5).str.head(-1)
        return "", pl.when(col.is_not_null()).then(listed), ""
    return '"', _escaped(col, needs), '"'


def _member(key: str, before: str, value: pl.Expr, after: str = "") -> pl.Expr:
    """`"key":<before><value><after>`; null when the value is null."""
    return pl.concat_str([pl.lit(f'"{key}":{before}'), value, *([pl.lit(after)] if after else [])])


def _members(
    tree: dict[str, Any], kinds: dict[str, str], needs: dict[str, tuple[bool, bool]]
) -> list[pl.Expr]:
    members = []
    for key, sub in tree.items():
        if isinstance(sub, dict):
            members.append(_member(key, "", _object(sub, kinds, needs)))
        else:
            parts = _value_parts(pl.col(sub), kinds.get(sub, "str"), needs.get(sub, (True, True)))
            members.append(_member(key, *parts))
    return members


def _object(
    tree: dict[str, Any], kinds: dict[str, str], needs: dict[str, tuple[bool, bool]]
) -> pl.Expr:
    """A nested JSON object from the tree of field paths; null when every member is null."""
    body = pl.concat_str(_members(tree, kinds, needs), separator=",", ignore_nulls=True)
    return pl.when(body == "").then(None).otherwise(pl.concat_str([pl.lit("{"), body, pl.lit("}")]))


_CONTROLS = "[\n\r\t]"
_QUOTES = r'["\\]'
_EITHER = '["\\\\\n\r\t]'


def _escaped(expr: pl.Expr, needs: tuple[bool, bool] = (True, True)) -> pl.Expr:
    """A string's JSON escapes, without the quotes around it. `needs` says whether the column
    holds any quote or backslash, and any newline or tab, so clean columns skip the
    replacement passes. Other control characters never get here: the validator rejects them
    (rule `control_chars`). Literal replacements: the backslash first, so that the ones added
    for quotes are not doubled."""
    quotes, controls = needs
    if quotes:
        expr = expr.str.replace_all("\\", "\\\\", literal=True)
        expr = expr.str.replace_all('"', '\\"', literal=True)
    if controls:
        for raw, escaped in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            expr = expr.str.replace_all(raw, escaped, literal=True)
    return expr


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
        # no amount: a constant project with an empty amount column, not a designation; a
        # null part makes the whole item null
        items.append(pl.concat_str([
            pl.lit('{"' + by + '":"'),
            _escaped(project, needs.get(prefix + by, (True, True))),
            pl.lit('","amountDesignated":'),
            _money_text(amount),
            pl.lit("}"),
        ]))
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
    members = _members(_tree(plain), kinds, needs)
    designations = _designations(fields, needs)
    if designations is not None:
        members.append(_member("designations", "[", designations, "]"))
    # The source and id are always there: the object is never empty.
    body = pl.concat_str(members, separator=",", ignore_nulls=True)
    return pl.concat_str([pl.lit("{"), body, pl.lit("}")])


def strip_empty(frame: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Empty strings are 'no value': make them null so the payload omits them."""
    text = [f for f in fields if frame.schema[f] == pl.String]
    return frame.with_columns(
        [pl.when(pl.col(f) == "").then(None).otherwise(pl.col(f)).alias(f) for f in text]
    )
