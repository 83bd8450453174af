"""Text transforms: whitespace and case, nulls and defaults, combining columns, names."""

from __future__ import annotations

import string
from typing import Literal

import polars as pl

from etl.transforms.helpers import (
    WS_RE,
    F,
    as_text,
    blank_to_null,
    step_result,
    string_list,
    strip_ws,
)
from etl.transforms.registry import Step, transform

# --------------------------------------------------------------------------------------------
# Whitespace and case.


@transform("trim")
def trim(expr: pl.Expr) -> Step:
    """Strip leading/trailing whitespace (incl. non-breaking spaces); blank becomes null."""
    return Step(blank_to_null(strip_ws(expr)))


@transform("collapse_whitespace")
def collapse_whitespace(expr: pl.Expr) -> Step:
    """Trim, and collapse internal runs of whitespace to one space; blank becomes null."""
    collapsed = as_text(expr).str.replace_all(WS_RE + "+", " ").str.strip_chars(" ")
    return Step(blank_to_null(collapsed))


@transform("upper")
def upper(expr: pl.Expr) -> Step:
    """Upper-case."""
    return Step(as_text(expr).str.to_uppercase())


@transform("lower")
def lower(expr: pl.Expr) -> Step:
    """Lower-case."""
    return Step(as_text(expr).str.to_lowercase())


# Name particles kept lower-case when they are neither the first nor the last word:
# "maria de la cruz" -> "Maria de la Cruz", but "de la cruz" -> "De la Cruz" and "ana de" ->
# "Ana De". "le"/"do" are left out: they are common Vietnamese family names.
# fmt: off
_PARTICLES = (
    "da", "das", "de", "del", "della", "den", "der", "di", "dos", "du", "la", "van", "von",
)
# fmt: on
_PARTICLE_FIXES = {f" {p.title()} ": f" {p} " for p in _PARTICLES}
# After title-casing a string padded with one space each side: Mc + letter at a word start, and
# the generational suffixes II/III/IV as whole words.
_NAME_FIXES = {
    **{f"{b}Mc{c}": f"{b}Mc{c.upper()}" for b in " -" for c in string.ascii_lowercase},
    **{f" {n.title()}{e}": f" {n}{e}" for n in ("II", "III", "IV") for e in " ,."},
}


@transform("title")
def title(expr: pl.Expr) -> Step:
    """Title-case names: O'Brien, McDonald, Mary-Jane, Maria de la Cruz, John Smith III.

    A value already written with an inner capital ("DeLuca", "MacArthur", "LaToya") is kept.
    """
    titled = F("text").str.to_titlecase()  # already handles O'Brien and Mary-Jane
    padded = pl.concat_str([pl.lit(" "), titled, pl.lit(" ")])
    fixed = padded.str.replace_many(_NAME_FIXES).str.strip_prefix(" ").str.strip_suffix(" ")
    # A particle match consumes the space after it, so a second pass catches "de la".
    fixed = fixed.str.replace_many(_PARTICLE_FIXES).str.replace_many(_PARTICLE_FIXES)
    cased = F("text").str.contains(r"\p{Ll}\p{Lu}\p{Ll}")  # lower, upper, lower: deliberate
    scope = pl.struct(text=as_text(expr)).struct.with_fields(
        value=pl.when(cased).then(F("text")).otherwise(fixed)
    )
    return step_result(scope, error=False)


# --------------------------------------------------------------------------------------------
# Nulls, defaults, combining columns.


@transform("null_if")
def null_if(expr: pl.Expr, *, values: list[str]) -> Step:
    """Null where the value equals one of `values` exactly (e.g. ["N/A", "none", "-"])."""
    return Step(as_text(expr).replace(string_list(values, "values"), None))


@transform("default")
def default(expr: pl.Expr, *, value: str | int | float) -> Step:
    """Replace null with `value`."""
    return Step(expr.fill_null(pl.lit(value)))


@transform("concat", column_args=("columns",))
def concat(expr: pl.Expr, *, columns: list[str], sep: str = " ") -> Step:
    """The value followed by the named columns, joined by `sep`; null/empty parts are skipped."""
    parts = [expr, *(pl.col(c) for c in string_list(columns, "columns"))]
    joined = pl.concat_str(
        [blank_to_null(as_text(p)) for p in parts], separator=sep, ignore_nulls=True
    )
    return Step(blank_to_null(joined))


@transform("coalesce", column_args=("columns",))
def coalesce(expr: pl.Expr, *, columns: list[str]) -> Step:
    """The first non-null of the value and the named columns (use it before parse_* steps)."""
    return Step(pl.coalesce(expr, *(pl.col(c) for c in string_list(columns, "columns"))))


@transform("truncate")
def truncate(expr: pl.Expr, *, length: int) -> Step:
    """Cut text longer than `length` characters (no error)."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be a whole number >= 0, not {length!r}")
    return Step(as_text(expr).str.slice(0, length))


@transform("replace")
def replace(expr: pl.Expr, *, pattern: str, with_: str = "", literal: bool = False) -> Step:
    """Replace matches of regex `pattern` (plain text if `literal: true`) by `with_` ($1: group)."""
    try:  # compile it now, so a bad pattern is a spec error rather than a failed run
        pl.select(pl.lit("").str.contains(pattern, literal=literal))
    except pl.exceptions.ComputeError as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return Step(as_text(expr).str.replace_all(pattern, with_, literal=literal))


# --------------------------------------------------------------------------------------------
# Names.

_NAME_SUFFIX = r"(?i),?\s+((?:jr|sr|ii|iii|iv)\.?)$"


@transform("split_name")
def split_name(expr: pl.Expr, *, part: Literal["first", "last"]) -> Step:
    """One part of a full name: "Last, First" or "First [Middle] Last"; Jr/Sr/II-IV stay on last."""
    if part not in ("first", "last"):
        raise ValueError(f"part must be 'first' or 'last', not {part!r}")
    full = as_text(expr).str.replace_all(WS_RE + "+", " ").str.strip_chars(" ")
    scope = pl.struct(full=full).struct.with_fields(
        suffix=F("full").str.extract(_NAME_SUFFIX, 1), base=F("full").str.replace(_NAME_SUFFIX, "")
    )
    comma = F("base").str.contains(",", literal=True)
    if part == "first":
        value = (
            pl.when(comma)
            .then(F("base").str.extract(r"^[^,]*,(.*)$", 1))
            .otherwise(F("base").str.extract(r"^(.*\S)\s+\S+$", 1))
        )
    else:
        last = (
            pl.when(comma)
            .then(F("base").str.extract(r"^([^,]*),", 1))
            .otherwise(F("base").str.extract(r"(\S+)$", 1))
        )
        last = blank_to_null(last.str.strip_chars(" "))
        value = pl.concat_str([last, F("suffix")], separator=" ", ignore_nulls=True)
    scope = scope.struct.with_fields(value=blank_to_null(value.str.strip_chars(" ,")))
    return step_result(scope, error=False)
