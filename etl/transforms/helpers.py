"""Helpers shared by the transform modules (private to the `etl.transforms` package).

Performance note: polars' common-subexpression elimination is not reliable for these trees,
and a sub-expression referenced k times is computed k times (and nests: a transform that
used its input 4 times, after one that did the same, would compute the first one 16 times).
So each transform uses `expr` once. When it needs intermediate values several times it binds
them as fields of a struct (`pl.struct(text=...)`, then `.struct.with_fields(...)` reading
them with `pl.field`), which evaluates each field once, like a `let`. `step_result` hands that
struct over in the Step (`scope`, `pick`), so the mapping stage computes it once as a column
and reads both the value and the error from it (`etl.prepare.mapping.Stages`).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import polars.selectors as cs

from etl.transforms.registry import Step

# Unicode White_Space plus zero-width space and BOM: what `trim` strips from both ends.
WS_CHARS = (
    " \t\n\r\v\f\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\ufeff"
)
# The same as a regex class (Rust regex: `\s` is Unicode White_Space).
WS_RE = r"[\s\x{200B}\x{FEFF}]"
# The runs of WS_RE that are not already one plain space: two or more, or one other than " ".
# Replacing these with " " gives what replacing every run does, without a match (and its
# copy) at each space between words.
WS_RUNS = WS_RE + r"{2,}|[^\S ]|[\x{200B}\x{FEFF}]"


def collapse_ws(expr: pl.Expr) -> pl.Expr:
    """Every run of whitespace as one space (not trimmed)."""
    return expr.str.replace_all(WS_RUNS, " ")

F = pl.field


def as_text(expr: pl.Expr) -> pl.Expr:
    """The value as String (a no-op for String columns; numbers and dates become text)."""
    return expr.cast(pl.String)


def strip_ws(expr: pl.Expr) -> pl.Expr:
    return as_text(expr).str.strip_chars(WS_CHARS)


def blank_to_null(expr: pl.Expr) -> pl.Expr:
    return expr.replace("", None)


def error_message(when: pl.Expr, *parts: str | pl.Expr) -> pl.Expr:
    """A String error where `when` holds (else null): the parts joined, str parts as text."""
    exprs = [pl.lit(p) if isinstance(p, str) else p for p in parts]
    return pl.when(when).then(pl.concat_str(exprs))


def step_result(scope: pl.Expr, *, error: bool = True) -> Step:
    """The Step held by the `value` and `error` fields of a scope struct."""

    def pick(s: pl.Expr) -> tuple[pl.Expr, pl.Expr | None]:
        return s.struct.field("value"), (s.struct.field("error") if error else None)

    value, err = pick(scope)
    return Step(value, err, scope=scope, pick=pick)


def unless_typed(expr: pl.Expr, selector: cs.Selector, typed: pl.Expr, step: Step) -> Step:
    """`typed` (no error) when `expr` already has a dtype matching `selector`, else `step`.

    The dtype test is resolved when the query is planned, so only one branch ever runs.
    """
    already = pl.dtype_of(expr).matches(selector)

    def choose(value: pl.Expr, error: pl.Expr | None) -> tuple[pl.Expr, pl.Expr]:
        # All null, yet not a bare literal: the planner only drops the untaken branch when the
        # taken one reads a column.
        no_error = pl.when(typed.is_null() & typed.is_not_null()).then(pl.lit("", pl.String))
        error = error if error is not None else pl.lit(None, pl.String)
        return (
            pl.when(already).then(typed).otherwise(value),
            pl.when(already).then(no_error).otherwise(error),
        )

    value, error = choose(step.value, step.error)
    inner = step.pick
    if step.scope is None or inner is None:
        return Step(value, error)
    # The scope is guarded too, so a column that is already typed never computes it.
    return Step(
        value,
        error,
        scope=pl.when(~already).then(step.scope),
        pick=lambda s: choose(*inner(s)),
    )


def string_list(value: Sequence[str] | str, what: str) -> list[str]:
    """A YAML list of strings (a lone string counts as a list of one)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings, not {value!r}")
    return list(value)
