"""The only place the stages are wired: spec -> source -> mapping -> validate -> payload.

`validate_pipeline` is the dry run (no network) and the first half of `etl run`, so a row the dry
run accepts is exactly a row the run sends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from etl import __version__, mapping
from etl.mapping import ERR, OUT, RAW
from etl.payload import escape_needs, payload_expr, strip_empty
from etl.result import FileInfo, ValidationResult
from etl.sources import RawFile, read_file, resolve_files
from etl.spec import LoadedSpec
from etl.targets import get_target
from etl.validate import failures

META = ["_row", "_source_file", "_record", "_line", "_shape_error"]


@dataclass
class FileOutcome:
    """One file after validation."""

    info: FileInfo
    rejects: pl.DataFrame
    failures: pl.DataFrame
    payloads: pl.DataFrame
    amounts: pl.DataFrame
    warnings: list[str]


DEDUPE_RATIO = 0.3  # transform distinct values only when a column repeats this much
DEDUPE_MIN_ROWS = 10_000


def _columns(plan: mapping.FieldPlan) -> set[str]:
    return {c for e in (plan.value, plan.error, plan.raw) for c in e.meta.root_names()}


def _exprs(group: list[mapping.FieldPlan]) -> list[pl.Expr]:
    return (
        [p.value.alias(OUT + p.field) for p in group]
        + [p.error.alias(OUT + ERR + p.field) for p in group]
        + [p.raw.cast(pl.String).alias(OUT + RAW + p.field) for p in group]
    )


def _by_distinct_value(frame: pl.DataFrame, plans: list[mapping.FieldPlan]) -> list[pl.DataFrame]:
    """Evaluate one-column mappings once per distinct source value when the column repeats a
    lot (names, dates, codes): a lookup table per column, joined back by value."""
    single = {p.field: next(iter(_columns(p))) for p in plans if len(_columns(p)) == 1}
    columns = sorted(set(single.values()))
    if not columns or frame.height < DEDUPE_MIN_ROWS:
        return []
    distinct = frame.select([pl.col(c).approx_n_unique().alias(c) for c in columns]).row(0)
    cheap = {c for c, n in zip(columns, distinct, strict=True) if n < frame.height * DEDUPE_RATIO}
    tables = []
    for column in sorted(cheap):
        group = [p for p in plans if single.get(p.field) == column]
        tables.append(frame.select(pl.col(column).unique()).select(pl.col(column), *_exprs(group)))
    return tables


def _compute(raw: RawFile, loaded: LoadedSpec, offset: int) -> pl.DataFrame:
    """Source rows -> typed fields, their errors and raw values, plus the meta columns."""
    spec = loaded.spec
    plans = mapping.plan(spec, get_target(spec.target))
    first = [p for p in plans if not p.field.startswith("designations.")]
    second = [p for p in plans if p.field.startswith("designations.")]
    frame = raw.frame.with_row_index("_row", offset=offset).with_columns(
        pl.col("_row").cast(pl.Int64)
    )
    looked_up = []
    for table in _by_distinct_value(frame, first):
        key = table.columns[0]
        # Distinct keys: a left join keeps every row, in order, so the columns line up.
        looked_up.append(
            frame.select(key)
            .join(table, on=key, how="left", nulls_equal=True, maintain_order="left")
            .drop(key)
        )
    done = {c for t in looked_up for c in t.columns}
    lf = pl.concat([frame, *looked_up], how="horizontal").lazy()
    rest = [p for p in first if OUT + p.field not in done]
    for group in (rest, second):
        if group:
            lf = lf.with_columns(_exprs(group))
    # Plan order (keys first, then the spec's mappings) is the order of the payload's members.
    names = (
        [p.field for p in plans] + [ERR + p.field for p in plans] + [RAW + p.field for p in plans]
    )
    return lf.select(*META, *[pl.col(OUT + n).alias(n) for n in names]).collect()


def _reject_rows(raw: RawFile, fails: pl.DataFrame, offset: int) -> pl.DataFrame:
    """Original columns of each rejected row plus `_source_file`.. `_error` (joined reasons)."""
    reasons = fails.group_by("_row", maintain_order=True).agg(
        pl.col("field").str.join(" | ").alias("_field"),
        pl.col("rule").str.join(" | ").alias("_rule"),
        pl.col("value").fill_null("").str.join(" | ").alias("_value"),
        pl.col("error").str.join(" | ").alias("_error"),
    )
    source_cols = [c for c in raw.header if c in raw.frame.columns]
    rows = raw.frame.with_row_index("_row", offset=offset).with_columns(
        pl.col("_row").cast(pl.Int64)
    )
    return rows.join(reasons, on="_row", how="inner", maintain_order="left").select(
        *source_cols, "_source_file", "_record", "_field", "_rule", "_value", "_error"
    )


PAYLOAD_CHUNK = 200_000  # rows per payload slice: bounds the memory of intermediate strings


def _payloads(out: pl.DataFrame, keep: pl.Series, key: pl.Expr, payload: pl.Expr) -> pl.DataFrame:
    """Payload JSON of the rows where `keep` is true, built slice by slice."""
    parts = [
        out.slice(start, PAYLOAD_CHUNK)
        .filter(keep.slice(start, PAYLOAD_CHUNK))
        .select("_source_file", "_record", key.alias("_key"), payload.alias("_payload"))
        for start in range(0, max(out.height, 1), PAYLOAD_CHUNK)
    ]
    return pl.concat(parts, rechunk=False)


def _validate_file(path: Path, loaded: LoadedSpec, offset: int, today: dt.date) -> FileOutcome:
    spec = loaded.spec
    target = get_target(spec.target)
    raw = read_file(path, loaded)
    out = _compute(raw, loaded, offset)
    fields = [c for c in out.columns if c not in META and not c.startswith((ERR, RAW))]
    out = strip_empty(out, fields)
    n_designations = len({f.split(".")[1] for f in fields if f.startswith("designations.")})
    fails = failures(out, spec, fields, target.id_field, n_designations, today)
    bad = fails.select("_row").unique()
    rejects = _reject_rows(raw, fails, offset)
    display, digest, size, notes = raw.display, raw.sha256, raw.size, raw.warnings
    del raw  # the source strings are no longer needed: free them before building payloads
    out = out.select("_row", "_source_file", "_record", *fields)
    keep = ~out["_row"].is_in(bad["_row"].implode())
    key = pl.lit(f"{spec.target}:{spec.keys.source}:") + pl.col(target.id_field)
    payload = payload_expr(target, fields, escape_needs(out, fields))
    payloads = _payloads(out, keep, key, payload)
    amounts = _amounts(out, keep, fields)
    info = FileInfo(
        path=display,
        sha256=digest,
        size=size,
        rows=out.height,
        valid=payloads.height,
        rejected=bad.height,
    )
    # The accounting invariant: every input row is valid or rejected, never both or neither.
    if info.rows != info.valid + info.rejected:
        raise AssertionError(f"row accounting broken for {path}: {info}")
    return FileOutcome(info, rejects, fails, payloads, amounts, [f"{display}: {w}" for w in notes])


def _amounts(out: pl.DataFrame, keep: pl.Series, fields: list[str]) -> pl.DataFrame:
    """Gift amount sums in cents by currency, for all parsed rows and for valid rows."""
    if "amount" not in fields:
        return pl.DataFrame(schema={"currency": pl.String, "stage": pl.String, "cents": pl.Int64})
    cur = pl.col("currencyCode") if "currencyCode" in fields else pl.lit(None, pl.String)
    frames = []
    for stage, frame in (
        ("read", out),
        ("valid", out.select(*cur.meta.root_names(), "amount").filter(keep)),
    ):
        frames.append(
            frame.group_by(cur.fill_null("(unspecified)").alias("currency"))
            .agg((pl.col("amount") * 100).round(0).cast(pl.Int64).sum().alias("cents"))
            .with_columns(pl.lit(stage).alias("stage"))
            .select("currency", "stage", "cents")
        )
    return pl.concat(frames)


def _control_totals(outcomes: list[FileOutcome]) -> dict[str, dict[str, object]]:
    read = sum(o.info.rows for o in outcomes)
    valid = sum(o.info.valid for o in outcomes)
    totals: dict[str, dict[str, object]] = {
        "rows": {"read": read, "valid": valid, "rejected": read - valid},
        "amounts": {},
    }
    sums = (
        pl.concat([o.amounts for o in outcomes])
        .group_by("currency", "stage")
        .agg(pl.col("cents").sum())
        .sort("currency", "stage")
    )
    for currency, stage, cents in sums.iter_rows():
        totals["amounts"].setdefault(currency, {"read": "0.00", "valid": "0.00"})
        sign = "-" if cents < 0 else ""
        totals["amounts"][currency][stage] = f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"  # type: ignore[index]
    return totals


def validate_pipeline(
    loaded: LoadedSpec, *, today: dt.date | None = None, files: list[Path] | None = None
) -> ValidationResult:
    """The dry run: read every source file (or only `files`, in that order), transform, validate
    and build payloads."""
    today = today or dt.date.today()
    outcomes: list[FileOutcome] = []
    offset = 0
    for path in resolve_files(loaded) if files is None else files:
        outcome = _validate_file(path, loaded, offset, today)
        offset += outcome.info.rows
        outcomes.append(outcome)
    return ValidationResult(
        pipeline=loaded.spec.name,
        spec_path=str(loaded.path),
        spec_hash=loaded.sha256,
        tool_version=__version__,
        target=loaded.spec.target,
        files=[o.info for o in outcomes],
        rejects=pl.concat([o.rejects for o in outcomes], how="diagonal_relaxed"),
        failures=pl.concat([o.failures for o in outcomes]).drop("_row"),
        payloads=pl.concat([o.payloads for o in outcomes]),
        control_totals=_control_totals(outcomes),
        warnings=[w for o in outcomes for w in o.warnings],
    )
