"""Valid rows -> the exact wire JSON of the target, built as polars strings (no per-row Python).

Dotted field paths become nested objects (`contact.address.city`), `designations.<i>.*` columns a
list of designation objects, money a JSON number with two decimals, dates `YYYY-MM-DD`, and empty
values are omitted (as the CRM+ docs advise: send only what you have).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from etl.prepare.rules import CONTROL
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


def _member(key: str, before: str, value: pl.Expr, after: str = "", lead: str = "") -> pl.Expr:
    """`<lead>"key":<before><value><after>`; null when the value is null."""
    return pl.concat_str(
        [pl.lit(f'{lead}"{key}":{before}'), value, *([pl.lit(after)] if after else [])])


def _members(
    tree: dict[str, Any], kinds: dict[str, str], needs: dict[str, tuple[bool, bool]],
    lead: str = "",
) -> list[pl.Expr]:
    """Each member's text, null when its value is; each but the first starts with `lead`."""
    members = []
    for i, (key, sub) in enumerate(tree.items()):
        comma = lead if i else ""
        if isinstance(sub, dict):
            members.append(_object_member(key, sub, kinds, needs, comma))
        else:
            parts = _value_parts(pl.col(sub), kinds.get(sub, "str"), needs.get(sub, (True, True)))
            members.append(_member(key, *parts, lead=comma))
    return members


def _leaves(tree: dict[str, Any]) -> list[str]:
    return [f for sub in tree.values() for f in (_leaves(sub) if isinstance(sub, dict) else [sub])]


def _object_member(
    key: str, tree: dict[str, Any], kinds: dict[str, str], needs: dict[str, tuple[bool, bool]],
    lead: str = "",
) -> pl.Expr:
    """`"key":{...}`, a nested JSON object from the tree of field paths; null when every
    member is null (told by the columns' nulls, not by comparing the text)."""
    body = pl.concat_str(_members(tree, kinds, needs), separator=",", ignore_nulls=True)
    # A bool member is never null (a null bool is written false): it makes the object present.
    present = pl.any_horizontal([
        pl.lit(True) if kinds.get(f) == "bool" else pl.col(f).is_not_null() for f in _leaves(tree)
    ])
    return pl.when(present).then(_member(key, "{", body, "}", lead))


_CONTROLS = "[\n\r\t]"
_QUOTES = r'["\\]'
# Anything a value may need escaped in JSON, or that the rule `control_chars` rejects.
_SPECIAL = r'[\x00-\x1f\x7f"\\]'


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


@dataclass(frozen=True)
class TextScan:
    """What a batch's string columns hold, from one scan a column: for the payload, whether
    a column needs quote/backslash or control escapes (`needs`); for validation, which columns
    hold a control character the rule `control_chars` rejects (`control`: the others cannot
    fail it)."""

    needs: dict[str, tuple[bool, bool]]
    control: list[str]


def scan_text(frame: pl.DataFrame, columns: list[str]) -> TextScan:
    """One scan a string column for any character that needs escaping or is a control
    character; only the columns that have some are looked at again."""
    text = [c for c in columns if frame.schema[c] == pl.String]
    if not text:
        return TextScan({}, [])
    row = frame.select(
        [pl.col(c).str.contains(_SPECIAL).any().alias(f"e{i}") for i, c in enumerate(text)]
    ).row(0)
    needs = {c: (False, False) for c in text}
    dirty = [c for c, hit in zip(text, row, strict=True) if hit]
    if not dirty:
        return TextScan(needs, [])
    checks = [(_QUOTES, "q"), (_CONTROLS, "c"), (CONTROL, "x")]
    row = frame.select(
        [pl.col(c).str.contains(pattern).any().alias(f"{tag}{i}")
         for pattern, tag in checks for i, c in enumerate(dirty)]
    ).row(0)
    n = len(dirty)
    needs |= {c: (bool(row[i]), bool(row[n + i])) for i, c in enumerate(dirty)}
    return TextScan(needs, [c for i, c in enumerate(dirty) if row[2 * n + i]])


def _money_text(expr: pl.Expr) -> pl.Expr:
    """Money as a JSON number with exactly two decimals (a decimal type: no float noise)."""
    return expr.round(2).cast(pl.Decimal(18, 2)).cast(pl.String)


def _designations(
    fields: list[str], needs: dict[str, tuple[bool, bool]], lead: str = ""
) -> pl.Expr | None:
    """The `"designations":[...]` member (null when a gift has none), or None without any."""
    count = len({f.split(".")[1] for f in fields if f.startswith("designations.")})
    if not count:
        return None
    items, present = [], []
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
        present.append(project.is_not_null() & amount.is_not_null())
    joined = pl.concat_str(items, separator=",", ignore_nulls=True)
    return pl.when(pl.any_horizontal(present)).then(_member("designations", "[", joined, "]", lead))


def payload_expr(
    target: Target, fields: list[str], needs: dict[str, tuple[bool, bool]] | None = None
) -> pl.Expr:
    """A String expression: the compact wire JSON of each row. `needs` (from `scan_text`)
    lets clean string columns skip escaping; without it every column is escaped.

    The source comes first and is never null (a constant, `keys.source`): it opens the object,
    and every other member brings its own comma, so the object is one `concat_str` of its
    members with no copy of a joined body."""
    needs = needs or {}
    plain = [f for f in fields if not f.startswith("designations.")]
    if plain[:1] != [target.source_field]:
        raise ValueError(f"the payload's first field must be {target.source_field}")
    kinds = {f: target.kind(f) or "str" for f in plain}
    members = _members(_tree(plain), kinds, needs, lead=",")
    designations = _designations(fields, needs, lead=",")
    if designations is not None:
        members.append(designations)
    return pl.concat_str([pl.lit("{"), *members, pl.lit("}")], ignore_nulls=True)


def strip_empty(frame: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Empty strings are 'no value': make them null so the payload omits them."""
    text = [f for f in fields if frame.schema[f] == pl.String]
    return frame.with_columns(
        [pl.when(pl.col(f) == "").then(None).otherwise(pl.col(f)).alias(f) for f in text]
    )
