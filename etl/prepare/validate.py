"""Split transformed rows into valid rows and rejects-with-reasons.

Every failure of every row is collected (pandera lazy validation on the collected frame for the
per-field rules, polars expressions for the cross-field rules), as one long frame:
`_row, _source_file, _record, field, rule, value, error`. A row with any failure is rejected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandera.polars as pa
import polars as pl

from etl.base.frames import is_repeated
from etl.prepare.mapping import ERR, RAW, SEP
from etl.prepare.rules import EARLIEST, REQUIRED, row_rules
from etl.spec.parse import FieldRules, Spec
from etl.targets import get_target

FAILURE_SCHEMA = {"_row": pl.Int64, "field": pl.String, "rule": pl.String, "error": pl.String}


def _schema(
    spec: Spec, fields: list[str]
) -> tuple[pa.DataFrameSchema, dict[str, list[tuple[str, str]]]]:
    """A pandera schema for the declared and built-in per-field rules, plus, per column, the
    (rule, message) of each check in order (pandera reports failures by check number)."""
    columns: dict[str, pa.Column] = {}
    labels: dict[str, list[tuple[str, str]]] = {}
    required = set(REQUIRED[spec.target])
    for field in fields:
        rules = spec.rules.get(field) or FieldRules.model_validate({})
        checks: list[pa.Check] = []
        names: list[tuple[str, str]] = []
        if rules.pattern:
            checks.append(pa.Check.str_matches(f"^(?:{rules.pattern})$"))
            names.append(("pattern", f"does not match the pattern {rules.pattern}"))
        if rules.one_of is not None:
            checks.append(pa.Check.isin(rules.one_of))
            shown = ", ".join(map(str, rules.one_of[:10]))
            names.append(("one_of", f"is not one of: {shown}"))
        if rules.min is not None:
            checks.append(pa.Check.ge(rules.min))
            names.append(("min", f"is less than {rules.min:g}"))
        if rules.max is not None:
            checks.append(pa.Check.le(rules.max))
            names.append(("max", f"is more than {rules.max:g}"))
        if rules.max_length is not None:
            checks.append(pa.Check.str_length(max_value=rules.max_length))
            names.append(("max_length", f"is longer than {rules.max_length} characters"))
        must = rules.required or field in required
        if checks or must:
            columns[field] = pa.Column(
                None, checks=checks, nullable=not must, required=True
            )
            labels[field] = names
    return pa.DataFrameSchema(columns), labels


def _pandera_failures(frame: pl.DataFrame, spec: Spec, fields: list[str]) -> pl.DataFrame:
    schema, labels = _schema(spec, fields)
    if not schema.columns:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    try:
        schema.validate(frame.select(list(schema.columns)), lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    # pandera's index is the position in this frame; rows are numbered across all files.
    positions = cases.filter(pl.col("index").is_not_null())["index"].cast(pl.Int64)
    cases = cases.filter(pl.col("index").is_not_null()).with_columns(
        frame["_row"].gather(positions).alias("index")
    )
    rules: list[tuple[str, str, int | None, str, str]] = []
    for field, names in labels.items():
        rules.append((field, "not_nullable", None, "required", "is required"))
        for i, (rule, message) in enumerate(names):
            rules.append((field, "", i, rule, message))
    table = pl.DataFrame(
        rules, schema=["column", "check", "check_number", "rule", "error"], orient="row"
    )
    special = cases.filter(pl.col("check_number").is_null())
    by_number = cases.filter(pl.col("check_number").is_not_null())
    required = special.filter(pl.col("check") == "not_nullable").join(
        table.filter(pl.col("check") == "not_nullable").select("column", "rule", "error"),
        on="column",
    )
    unique = special.filter(pl.col("check") != "not_nullable").with_columns(
        pl.lit("unique").alias("rule"), pl.lit("is not unique in the file").alias("error")
    )
    numbered = by_number.join(
        table.filter(pl.col("check_number").is_not_null()).select(
            "column", pl.col("check_number").cast(pl.Int32), "rule", "error"
        ),
        on=["column", "check_number"],
    )
    out = pl.concat(
        [
            f.select(
                pl.col("index").cast(pl.Int64).alias("_row"),
                pl.col("column").alias("field"),
                "rule",
                "error",
            )
            for f in (required, unique, numbered)
        ]
    )
    return out.unique(maintain_order=True)


# Surrounding characters that never make two ids different: Unicode White_Space, zero-width
# space, BOM. CRM+'s docs do not say whether transactionId / referenceId compare with case:
# the pessimistic reading is that `G1`, `g1` and ` G1 ` are one id, so they are duplicates.
_AROUND = (
    " \t\n\r\v\f\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\ufeff"
)


def same_id(ident: pl.Expr) -> pl.Expr:
    """The id as duplicates are found: without surrounding spaces, in lower case."""
    return ident.str.strip_chars(_AROUND).str.to_lowercase()


def duplicate_failures(
    frame: pl.DataFrame, id_field: str, policy: str, offset: int
) -> pl.DataFrame:
    """Repeated ids under the duplicate policy. `frame` holds `_row` and the id of every data
    record of one file (or all rows of some ids: a partition of a file's ids, `etl.base.spill`),
    in file order; a row's record number is `_row` - `offset` + 1."""
    ident = pl.col(id_field)
    key = pl.col("_key")
    n = pl.len().over(key)
    rank = pl.int_range(pl.len()).over(key)
    if policy == "keep_first":
        loses = rank > 0
    elif policy == "keep_last":
        loses = rank < n - 1
    else:
        loses = pl.lit(True)
    record = pl.col("_row") - offset + 1
    # The record each row is reported against: the group's first, or for the first itself
    # its second (so that a reason always names two records).
    other = pl.when(rank == 0).then(record.get(1).over(key)).otherwise(record.first().over(key))
    other_id = pl.when(rank == 0).then(ident.get(1).over(key)).otherwise(ident.first().over(key))
    # The ranking windows below over every id of a big file would group millions of
    # singletons: find the repeated ids first (one count per id), then rank only those rows.
    numbered = frame.select("_row", id_field, same_id(ident).alias("_key"))
    repeated = numbered.filter(key.is_not_null() & is_repeated(key))
    marked = repeated.select(
        "_row",
        ident.alias("_id"),
        n.alias("_n"),
        loses.alias("_loses"),
        record.min().over(key).alias("_first"),
        other.alias("_other"),
        other_id.alias("_other_id"),
        (ident.n_unique().over(key) > 1).alias("_variants"),
    )
    exact = (
        pl.lit(f"{id_field} appears ")
        + pl.col("_n").cast(pl.String)
        + pl.lit(" times in the file (first on record ")
        + pl.col("_first").cast(pl.String)
        + pl.lit(f"; duplicates: {policy})")
    )
    variant = (
        pl.lit(f"{id_field} '")
        + pl.col("_id")
        + pl.lit("' and '")
        + pl.col("_other_id")
        + pl.lit("' (record ")
        + pl.col("_other").cast(pl.String)
        + pl.lit(") may be the same id: ")
        + pl.col("_n").cast(pl.String)
        + pl.lit(
            " ids in the file differ only in letter case or surrounding spaces, and CRM+ may "
            "treat them as one (first on record "
        )
        + pl.col("_first").cast(pl.String)
        + pl.lit(f"; duplicates: {policy})")
    )
    return marked.filter(pl.col("_loses")).select(
        pl.col("_row"),
        pl.lit(id_field).alias("field"),
        pl.lit("duplicate").alias("rule"),
        pl.when(pl.col("_variants")).then(variant).otherwise(exact).alias("error"),
    )


def unique_failures(frame: pl.DataFrame, field: str) -> pl.DataFrame:
    """A `unique` rule: the rows of `frame` (`_row` and `field`: a file's values, or all rows of
    some values) whose value is repeated."""
    col = pl.col(field)
    return frame.filter(col.is_not_null() & is_repeated(col)).select(
        "_row", pl.lit(field).alias("field"), pl.lit("unique").alias("rule"),
        pl.lit("is not unique in the file").alias("error"))


def failures(
    frame: pl.DataFrame,
    spec: Spec,
    fields: list[str],
    designations: int,
    today: dt.date,
    file_wide: Callable[[], pl.DataFrame],
    control: list[str] | None = None,
) -> pl.DataFrame:
    """Every failure of every row: `_row, _source_file, _record, field, rule, value, error`.
    `file_wide()` gives this batch's rows' failures of the file-wide checks: it is called last,
    so that a batch validated while the file-wide pass still runs waits for it only then.
    `control` names the string columns that hold some control character (from
    `etl.prepare.payload.scan_text`; None: any may), the only ones the rule can fail."""
    parts: list[pl.DataFrame] = [
        frame.filter(pl.col("_shape_error").is_not_null()).select(
            "_row",
            pl.lit("(record)").alias("field"),
            pl.lit("ragged").alias("rule"),
            pl.col("_shape_error").alias("error"),
        )
    ]
    # One query for every field's transform errors (field by field, each in row order).
    errors = [
        frame.lazy().filter(pl.col(ERR + f).is_not_null()).select(
            "_row",
            pl.lit(f).alias("field"),
            pl.col(ERR + f).str.split_exact(SEP, 1).struct.rename_fields(["rule", "error"])
            .alias("_split"),
        )
        for f in fields
        if ERR + f in frame.columns
    ]
    first = (
        pl.concat(errors).unnest(pl.selectors.by_dtype(pl.Struct)).collect()
        if errors
        else pl.DataFrame(schema=FAILURE_SCHEMA)
    )
    parts.append(first)
    checked = _pandera_failures(frame, spec, fields)
    present = set(fields)
    target = get_target(spec.target)
    dates = {
        f: (spec.rules[f].earliest if f in spec.rules else None) or EARLIEST
        for f in fields
        if target.kind(f) == "date"
    }
    rules = row_rules(
        spec.target,
        present,
        designations,
        today,
        [f for f in fields if frame.schema[f] == pl.String and (control is None or f in control)],
        dates,
    )
    if rules:
        flags = frame.select(
            "_row", *[r.fails.fill_null(False).alias(f"__rule{i}") for i, r in enumerate(rules)]
        )
        # Messages are built only for the rows that fail some rule (a few percent), not for
        # the whole batch once per rule.
        failing = flags.filter(pl.any_horizontal(pl.exclude("_row")))
        if failing.height:
            bad = frame.join(failing, on="_row", maintain_order="left").lazy()
            parts.append(pl.concat([
                bad.filter(pl.col(f"__rule{i}")).select(
                    "_row",
                    pl.lit(r.field).alias("field"),
                    pl.lit(r.rule).alias("rule"),
                    r.message.alias("error"),
                )
                for i, r in enumerate(rules)
            ]).collect())
    # A field whose transform failed is null: do not also report it as missing or invalid.
    wide = file_wide()
    unique = wide.filter(pl.col("rule") == "unique")
    failed = pl.concat([checked, unique, *[p for p in parts[1:] if p.height]], how="vertical")
    later = failed.join(first.select("_row", "field"), on=["_row", "field"], how="anti")
    dupes = wide.filter(pl.col("rule") != "unique")
    everything = pl.concat(
        [parts[0], first, later.unique(maintain_order=True), dupes], how="vertical"
    ).sort("_row", maintain_order=True)
    return _with_values(everything, frame, fields)


def _with_values(fails: pl.DataFrame, frame: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Attach `_source_file`, `_record` and the raw value of the failing field."""
    meta = frame.select("_row", "_source_file", "_record")
    out = fails.join(meta, on="_row", how="left", maintain_order="left")
    # Each failing field's raw value, on the rows where it failed: one query for all fields.
    named = set(out["field"].unique().to_list())
    values = [
        out.lazy().filter(pl.col("field") == f).select("_row").unique().join(
            frame.lazy().select("_row", pl.col(RAW + f).cast(pl.String).alias("value")), on="_row"
        ).with_columns(pl.lit(f).alias("field"))
        for f in fields
        if f in named and RAW + f in frame.columns
    ]
    if values:
        out = out.join(pl.concat(values).collect(), on=["_row", "field"], how="left",
                       maintain_order="left")
    else:
        out = out.with_columns(pl.lit(None, pl.String).alias("value"))
    return out.select("_row", "_source_file", "_record", "field", "rule", "value", "error")
