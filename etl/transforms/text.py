"""Text transforms: whitespace and case, nulls and defaults, combining columns, names."""

from __future__ import annotations

import string
from typing import Literal

import polars as pl

from etl.transforms.helpers import (
    F,
    as_text,
    blank_to_null,
    collapse_ws,
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
    collapsed = collapse_ws(as_text(expr)).str.strip_chars(" ")
    return Step(blank_to_null(collapsed))


@transform("upper")
def upper(expr: pl.Expr) -> Step:
    """Upper-case."""
    return Step(as_text(expr).str.to_uppercase())


@transform("lower")
def lower(expr: pl.Expr) -> Step:
    """Lower-case."""
    return Step(as_text(expr).str.to_lowercase())


# Surname particles kept lower-case when they are neither the first nor the last word:
# "maria de la cruz" -> "Maria de la Cruz", "JOHANN VON NEUMANN" -> "Johann von Neumann". As the
# first word a particle keeps the case it was written in: "de la Cruz" and "van Beethoven" stay
# so, "De Luca" stays so (only the person knows); a value with no case to keep ("DE LA CRUZ",
# "de la cruz": "del smith" may be Del Smith) starts with a capital, "De la Cruz". The last
# word is a name ("Ana De"). "le", "bin" and "ibn" are particles only as written: "Le" and
# "Bin" are also family and given names (Vietnamese, Chinese), so only one written in lower case
# in a cased value stays lower; "do" is never one.
# fmt: off
_PARTICLES = (
    "da", "das", "de", "del", "della", "den", "der", "di", "dos", "du", "la", "van", "von",
)
_AS_WRITTEN = ("le", "bin", "ibn")
# fmt: on
_PARTICLE_FIXES = {f" {p.title()} ": f" {p} " for p in _PARTICLES}
# A particle written in lower case at the start, followed by another word.
_LOWER_FIRST = r"^(" + "|".join(_PARTICLES + _AS_WRITTEN) + r")\s+\S"
# After title-casing a string padded with one space each side: Mc + letter at a word start, and
# the generational suffixes II/III/IV as whole words.
_NAME_FIXES = {
    **{f"{b}Mc{c}": f"{b}Mc{c.upper()}" for b in " -" for c in string.ascii_lowercase},
    **{f" {n.title()}{e}": f" {n}{e}" for n in ("II", "III", "IV") for e in " ,."},
}


@transform("title")
def title(expr: pl.Expr) -> Step:
    """Title-case names: O'Brien, McDonald, Mary-Jane, Maria de la Cruz, de la Cruz, John
    Smith III.

    A value already written with an inner capital ("DeLuca", "MacArthur", "LaToya") is kept.
    """
    titled = F("text").str.to_titlecase()  # already handles O'Brien and Mary-Jane
    padded = pl.concat_str([pl.lit(" "), titled, pl.lit(" ")])
    fixed = padded.str.replace_many(_NAME_FIXES).str.strip_prefix(" ").str.strip_suffix(" ")
    # A particle match consumes the space after it, so a second pass catches "de la".
    fixed = fixed.str.replace_many(_PARTICLE_FIXES).str.replace_many(_PARTICLE_FIXES)
    # Each step reads the one before as a struct field: computed once, not once per use.
    scope = pl.struct(text=as_text(expr)).struct.with_fields(
        fixed=fixed, cased=F("text").str.contains(r"\p{Lu}")
    )
    # Only a value that was cased at all has a case to keep ("de la cruz" has none).
    scope = scope.struct.with_fields(
        first=pl.when(F("cased")).then(F("text").str.extract(_LOWER_FIRST, 1))
    )
    for word in _AS_WRITTEN:  # lower inside only where a cased value wrote it lower
        inside = f" {word} "
        written = F("cased") & F("text").str.contains(inside, literal=True)
        scope = scope.struct.with_fields(fixed=pl.when(written)
                                         .then(F("fixed").str.replace_all(
                                             inside.title(), inside, literal=True))
                                         .otherwise(F("fixed")))
    # The first word is an ASCII particle: the titled text has it at the same place.
    kept = pl.concat_str([F("first"), F("fixed").str.slice(F("first").str.len_chars())])
    deliberate = F("text").str.contains(r"\p{Ll}\p{Lu}\p{Ll}")  # lower, upper, lower
    scope = scope.struct.with_fields(
        value=pl.when(deliberate).then(F("text"))
        .when(F("first").is_not_null()).then(kept)
        .otherwise(F("fixed"))
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
    full = collapse_ws(as_text(expr)).str.strip_chars(" ")
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
