"""The registry core: `Step`, the `transform` decorator that fills `REGISTRY`, and the checks
the spec runs against it (`check_args`, `suggest`). The transforms themselves live in the theme
modules of this package, which register themselves on import.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl


@dataclass(frozen=True)
class Step:
    """What one transform produces: the value, and a per-row error message (null when fine)."""

    value: pl.Expr
    error: pl.Expr | None = None
    # A step that binds its intermediate values in a struct ("scope") also hands over the
    # struct and `pick`, which rebuilds (value, error) from a reference to it: the mapping
    # stage then computes the struct once, as a column, instead of once inside the value and
    # once more inside the error.
    scope: pl.Expr | None = None
    pick: Callable[[pl.Expr], tuple[pl.Expr, pl.Expr | None]] | None = None


TransformFn = Callable[..., Step]

REGISTRY: dict[str, TransformFn] = {}

# Names of keyword arguments that name source columns (checked against the header before reading).
COLUMN_ARGS: dict[str, tuple[str, ...]] = {}


def transform(
    name: str, *, column_args: tuple[str, ...] = ()
) -> Callable[[TransformFn], TransformFn]:
    """Register `fn` under `name`; `column_args` lists its arguments that name source columns."""

    def register(fn: TransformFn) -> TransformFn:
        REGISTRY[name] = fn
        COLUMN_ARGS[name] = column_args
        return fn

    return register


def suggest(name: str, known: list[str]) -> str | None:
    """The closest known name, for 'did you mean' hints."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return close[0] if close else None


def check_args(name: str, args: dict[str, Any]) -> str | None:
    """Return a message when `args` do not fit transform `name`, else None (no data needed)."""
    fn = REGISTRY[name]
    sig = inspect.signature(fn)
    try:
        sig.bind(pl.lit(None), **args)
    except TypeError as exc:
        params = [p for p in list(sig.parameters)[1:]]
        return f"{exc}; {name} takes: {', '.join(params) or 'no arguments'}"
    return None
