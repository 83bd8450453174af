"""The transform registry: the name used in YAML -> a small function returning polars expressions.

Each transform takes the current value expression (a pl.Expr, usually String) plus keyword
arguments from the YAML, and returns a `Step`: the new value, and optionally an error expression
that is a String message for rows where the transform failed (null where it succeeded). The
pipeline turns non-null errors into row rejects with rule = the transform's name.

    mappings:
      amount:
        column: Amount
        transforms: [trim, {parse_amount: {decimal: ","}}]

No transform calls Python per row: all of them build vectorized polars expressions. Public names:
`REGISTRY`, `transform` (the decorator), `Step`, `check_args`, `suggest`, `COLUMN_ARGS`; the theme
modules (`text`, `dates`, `money`, `contact`) share `helpers`.

May import: etl.base only (it sits under etl.spec: the spec checks names and arguments here).
"""

from __future__ import annotations

from etl.transforms.registry import (
    COLUMN_ARGS,
    REGISTRY,
    Step,
    TransformFn,
    check_args,
    suggest,
    transform,
)

__all__ = ["COLUMN_ARGS", "REGISTRY", "Step", "TransformFn", "check_args", "suggest", "transform"]

# Importing the theme modules registers their transforms, in this order (REGISTRY keeps it).
# isort: off
from etl.transforms import text, dates, money, contact  # noqa: F401
# isort: on
