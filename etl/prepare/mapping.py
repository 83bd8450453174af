"""Spec mappings -> polars expressions: each target field's value, its error, and its raw value.

For every mapped field the stage produces three columns:
- `<field>`: the typed value the payload will carry (String, Decimal(38, 2) money, Date, ...);
- `__err__<field>`: "rule<US>message" where a transform, value map or typing failed, else null;
- `__raw__<field>`: what the user would recognise in the source (the raw column, when there is one).
No Python runs per row; everything here only builds expressions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import polars as pl

from etl import transforms
from etl.spec.model import Scalar
from etl.spec.parse import Case, KeyId, Mapping, Spec, template_columns
from etl.targets import Target
from etl.transforms.money import parse_number

SEP = "\x1f"  # separates the rule name from the message inside an error cell
ERR = "__err__"
RAW = "__raw__"
OUT = "\u2192"  # prefix of computed fields while source columns are still present
_BOOL = {
    "true": True,
    "t": True,
    "yes": True,
    "y": True,
    "1": True,
    "false": False,
    "f": False,
    "no": False,
    "n": False,
    "0": False,
}


STAGE = "\u21b3"  # prefix of intermediate columns (a transform's scope, a bound value)


@dataclass(frozen=True)
class FieldPlan:
    """The three expressions for one target field, and the intermediate columns they read.

    `stages` are (name, expression) pairs computed first (see `with_stages`): a chain of
    transforms whose value and error both need the same intermediate work computes it once.
    """

    field: str
    value: pl.Expr
    error: pl.Expr
    raw: pl.Expr
    stages: tuple[tuple[str, pl.Expr], ...] = ()

    def sources(self) -> set[str]:
        """The source columns this field reads."""
        exprs = [self.value, self.error, self.raw, *(e for _, e in self.stages)]
        names = {c for e in exprs for c in e.meta.root_names()}
        return {c for c in names if not c.startswith(STAGE)}


class Stages:
    """Collects one field's intermediate columns while its expressions are built."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.items: list[tuple[str, pl.Expr]] = []

    def bind(self, expr: pl.Expr) -> pl.Expr:
        """Compute `expr` once, as a column; return a reference to it."""
        name = f"{STAGE}{self.field}#{len(self.items)}"
        self.items.append((name, expr))
        return pl.col(name)

    def apply(self, build: Any, value: pl.Expr, bound: bool) -> tuple[pl.Expr, pl.Expr | None]:
        """Run one step (`build(value) -> Step`). A step with an error reads its input from a
        column and has its scope computed once; a step without one stays inline."""
        step = build(value)
        if step.error is None:
            return step.value, None
        if not bound:
            step = build(self.bind(value))
        if step.scope is not None and step.pick is not None:
            return step.pick(self.bind(step.scope))
        return step.value, step.error


def with_stages(lf: pl.LazyFrame, plans: list[FieldPlan]) -> pl.LazyFrame:
    """Add the plans' intermediate columns, layer by layer (a layer reads only earlier ones)."""
    stages = {name: expr for p in plans for name, expr in p.stages}
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            reads = [c for c in stages[name].meta.root_names() if c in stages]
            depth[name] = 1 + max((level(c) for c in reads), default=-1)
        return depth[name]

    layers: dict[int, list[pl.Expr]] = {}
    for name, expr in stages.items():
        layers.setdefault(level(name), []).append(expr.alias(name))
    for i in sorted(layers):
        lf = lf.with_columns(layers[i])
    return lf


def error_cell(rule: str, message: pl.Expr) -> pl.Expr:
    """An error cell: the rule name, the separator, the message."""
    return pl.lit(rule + SEP) + message


def _first_error(errors: list[pl.Expr]) -> pl.Expr:
    return pl.coalesce(errors) if errors else pl.lit(None, pl.String)


def quoted(expr: pl.Expr) -> pl.Expr:
    """The value as text in single quotes, for messages."""
    return pl.lit("'") + expr.cast(pl.String) + pl.lit("'")


def template_expr(template: str) -> pl.Expr:
    """`"{First} {Last}"` -> concatenation that skips null columns; all-blank -> null."""
    parts: list[pl.Expr] = []
    rest = template
    for col in template_columns(template):
        before, rest = rest.split("{" + col + "}", 1)
        if before:
            parts.append(pl.lit(before))
        parts.append(pl.col(col))
    if rest:
        parts.append(pl.lit(rest))
    joined = pl.concat_str(parts, ignore_nulls=True).str.strip_chars()
    return pl.when(joined == "").then(None).otherwise(joined)


def _condition(case: Case) -> pl.Expr:
    col = pl.col(case.column).cast(pl.String)  # typed Parquet columns compare as text
    if case.is_null is not None:
        return col.is_null() if case.is_null else col.is_not_null()
    if case.in_ is not None:
        return col.is_in([str(v) for v in case.in_])
    return col == str(case.equals)


def _branch(
    value: Scalar | Mapping | None, stages: Stages, common: Any
) -> tuple[pl.Expr, list[pl.Expr]]:
    """A `then` / `else`: a constant, or a mapping's value and errors (before typing), cast
    to `common` when given."""
    if isinstance(value, Mapping):
        expr, errors, _ = _chain(value, stages)
    else:
        expr, errors = pl.lit(value), []
    return (expr.cast(common) if common is not None else expr), errors


def _base(m: Mapping, stages: Stages) -> tuple[pl.Expr, list[pl.Expr]]:
    """The mapping's value before its transforms, and the errors of its branches."""
    if m.column is not None:
        return pl.col(m.column), []
    if m.template is not None:
        return template_expr(m.template), []
    if m.when is None:
        return pl.lit(m.constant), []
    # One when/then chain for the value and one for the error: a branch's error only counts
    # on the rows that take it (an organization's name is not split into first/last).
    # Branches that are mappings may differ in type (a parsed amount, a constant true): they
    # meet as text, and the field's typing parses the result like any other mapped text.
    common = pl.String if m.branches() else None
    values: Any = pl
    errors: Any = pl
    failing = False
    for case in m.when:
        cond = _condition(case)
        value, errs = _branch(case.then, stages, common)
        values = values.when(cond).then(value)
        errors = errors.when(cond).then(_first_error(errs))
        failing = failing or bool(errs)
    value, errs = _branch(m.else_, stages, common)
    error = errors.otherwise(_first_error(errs))
    return values.otherwise(value), ([error] if failing or errs else [])


def _chain(m: Mapping, stages: Stages) -> tuple[pl.Expr, list[pl.Expr], bool]:
    """Base value, transforms and value map: the value (untyped), its errors, and whether it
    is still a plain column (reading it twice costs nothing)."""
    value, errors = _base(m, stages)
    bound = m.column is not None
    for name, args in m.steps():
        fn = transforms.REGISTRY[name]
        value, error = stages.apply(lambda v, fn=fn, args=args: fn(v, **args), value, bound)
        if error is not None:
            errors.append(error_cell(name, error))
        bound = False
    if m.value_map is not None:
        if not bound:
            value = stages.bind(value)
        mapped = value.cast(pl.String).replace_strict(
            m.value_map, default=None, return_dtype=pl.String
        )
        unknown = value.is_not_null() & mapped.is_null()
        if m.unmapped == "reject":
            known = ", ".join(list(m.value_map)[:12])
            errors.append(
                pl.when(unknown).then(
                    error_cell(
                        "value_map",
                        pl.lit("unmapped value ") + quoted(value) + pl.lit(f" (mapped: {known})"),
                    )
                )
            )
        elif m.unmapped == "keep":
            mapped = pl.coalesce(mapped, value.cast(pl.String))
        elif m.unmapped == "default":
            mapped = pl.when(unknown).then(pl.lit(m.default)).otherwise(mapped)
        value, bound = mapped, False
    return value, errors, bound


def plan_mapping(m: Mapping, kind: str, field: str) -> tuple[pl.Expr, pl.Expr, pl.Expr, Stages]:
    """Value, error and raw expressions for one mapping typed as `kind`, and their stages."""
    stages = Stages(field)
    value, errors, bound = _chain(m, stages)
    value, type_error = _typed(value, kind, stages, bound)
    if type_error is not None:
        errors.append(type_error)
    raw = pl.col(m.column) if m.column is not None else value.cast(pl.String)
    return value, _first_error(errors), raw, stages


def _typed(
    value: pl.Expr, kind: str, stages: Stages, bound: bool
) -> tuple[pl.Expr, pl.Expr | None]:
    """Bring a mapped value to the field's wire type; strings are parsed, with errors."""
    if kind in ("money", "number", "date"):
        fn, rule, args = {
            "date": (transforms.REGISTRY["parse_date"], "date", {"formats": ["%Y-%m-%d"]}),
            "money": (transforms.REGISTRY["parse_amount"], "number", {}),
            "number": (parse_number, "number", {}),
        }[kind]
        value, error = stages.apply(lambda v: fn(v, **args), value, bound)
        return value, (error_cell(rule, error) if error is not None else None)
    if kind in ("int", "bool") and not bound:
        value = stages.bind(value)
    if kind == "int":
        as_int = value.cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)
        bad = value.is_not_null() & as_int.is_null()
        return as_int, pl.when(bad).then(
            error_cell("integer", pl.lit("not a whole number: ") + quoted(value))
        )
    if kind == "bool":
        text = value.cast(pl.String).str.strip_chars().str.to_lowercase()
        as_bool = text.replace_strict(_BOOL, default=None, return_dtype=pl.Boolean)
        bad = value.is_not_null() & as_bool.is_null()
        message = error_cell("boolean", pl.lit("not yes/no: ") + quoted(value))
        return as_bool, pl.when(bad).then(message)
    text = value.cast(pl.String).str.strip_chars()
    text = pl.when(text == "").then(None).otherwise(text)
    if kind == "tags":
        return text.str.replace_all(r"\s*[|;]\s*", ";").str.strip_chars(";"), None
    if kind == "str_list":
        return text.str.split(";").list.eval(pl.element().str.strip_chars()), None
    return text, None


def _stable_hash(columns: list[str]) -> pl.Expr:
    """sha256 of the named columns (unit-separated, nulls marked): stable across runs and
    versions, unlike polars' own hash. hashlib runs once per batch of values."""

    def digest(s: pl.Series) -> pl.Series:
        return pl.Series([hashlib.sha256(v.encode()).hexdigest()[:24] for v in s], dtype=pl.String)

    joined = pl.concat_str(
        [pl.col(c).cast(pl.String).fill_null("\x00") for c in columns], separator=SEP
    )
    return joined.map_batches(digest, return_dtype=pl.String)


def key_expr(key: KeyId) -> pl.Expr:
    """The per-row id (referenceId / transactionId) from the spec's `keys.id`."""
    if key.column is not None:
        ident = pl.col(key.column).cast(pl.String).str.strip_chars()
        return pl.when(ident == "").then(None).otherwise(ident)
    if key.template is not None:
        return template_expr(key.template)
    return _stable_hash(list(key.hash or []))


def plan(spec: Spec, target: Target) -> list[FieldPlan]:
    """Expressions for every output field: the keys first, then mappings and designations."""
    ident = key_expr(spec.keys.id)
    raw_id = pl.col(spec.keys.id.column) if spec.keys.id.column else ident
    plans = [
        FieldPlan(
            target.source_field,
            pl.lit(spec.keys.source),
            pl.lit(None, pl.String),
            pl.lit(spec.keys.source),
        ),
        FieldPlan(target.id_field, ident, pl.lit(None, pl.String), raw_id),
    ]
    for field, m in spec.mappings.items():
        value, error, raw, stages = plan_mapping(m, target.kind(field) or "str", field)
        plans.append(FieldPlan(field, value, error, raw, tuple(stages.items)))
    # designations build on plan_mapping: their module imports this one
    from etl.prepare.designations import designation_plans

    return plans + designation_plans(spec)
