"""The only place the stages are wired: spec -> source -> mapping -> validate -> payload.

`validate_pipeline` is the dry run (no network) and the first half of `etl run`, so a row the dry
run accepts is exactly a row the run sends.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from etl import __version__
from etl.base.filecheck import FileChanged
from etl.base.spill import Spill
from etl.prepare import donors, mapping
from etl.prepare.kept import SAMPLE_REJECTS, Kept, add_counts, first_failures
from etl.prepare.lookups import Lookups, field_exprs
from etl.prepare.mapping import ERR, OUT, RAW
from etl.prepare.payload import payload_expr, scan_text, strip_empty
from etl.prepare.result import FileInfo, ValidationResult
from etl.prepare.validate import (
    FAILURE_SCHEMA,
    duplicate_failures,
    failures,
    same_id,
    unique_failures,
)
from etl.read.sourcefile import MetaChanged
from etl.read.sources import SourceFile, open_source, resolve_files
from etl.spec.parse import LoadedSpec
from etl.targets import get_target

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
    duplicates: dict[str, object]  # possible duplicate donors (etl/prepare/donors.py)
    failure_counts: pl.DataFrame | None = None  # field, rule, count: when failures are sampled


def _compute(
    raw: pl.DataFrame, loaded: LoadedSpec, offset: int, lookups: Lookups | None = None
) -> pl.DataFrame:
    """Source rows -> typed fields, their errors and raw values, plus the meta columns."""
    spec = loaded.spec
    plans = mapping.plan(spec, get_target(spec.target))
    first = [p for p in plans if not p.field.startswith("designations.")]
    second = [p for p in plans if p.field.startswith("designations.")]
    frame = raw.with_row_index("_row", offset=offset).with_columns(pl.col("_row").cast(pl.Int64))
    looked_up = []
    for table in (lookups or Lookups()).tables_for(frame, first):
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
            lf = mapping.with_stages(lf, group).with_columns(field_exprs(group))
    # Plan order (keys first, then the spec's mappings) is the order of the payload's members.
    names = (
        [p.field for p in plans] + [ERR + p.field for p in plans] + [RAW + p.field for p in plans]
    )
    return lf.select(*META, *[pl.col(OUT + n).alias(n) for n in names]).collect()


def _reject_rows(
    raw: pl.DataFrame, header: list[str], fails: pl.DataFrame, offset: int
) -> pl.DataFrame:
    """Original columns of each rejected row plus `_source_file`.. `_error` (joined reasons)."""
    reasons = fails.group_by("_row", maintain_order=True).agg(
        pl.col("field").str.join(" | ").alias("_field"),
        pl.col("rule").str.join(" | ").alias("_rule"),
        pl.col("value").fill_null("").str.join(" | ").alias("_value"),
        pl.col("error").str.join(" | ").alias("_error"),
    )
    source_cols = [c for c in header if c in raw.columns]
    rows = raw.with_row_index("_row", offset=offset).with_columns(pl.col("_row").cast(pl.Int64))
    return rows.join(reasons, on="_row", how="inner", maintain_order="left").select(
        *source_cols, "_source_file", "_record", "_field", "_rule", "_value", "_error"
    )


BATCH_ROWS = 100_000  # rows validated at a time: bounds memory whatever the file's size
IN_FLIGHT = 2  # batches validated at once (each holds about BATCH_ROWS rows' columns)


SPILL_ROWS = 2_000_000  # files above this many rows park the file-wide pass's values on disk
SPILL_PART_ROWS = 500_000  # about this many rows a partition: what the check holds at a time


def _file_wide(src: SourceFile, loaded: LoadedSpec, offset: int) -> pl.DataFrame:
    """Pass one over the file, reading only the columns of the id and of `unique` fields, and
    keeping only those values and the row numbers. A big file parks them on disk partitioned by
    value (`etl.base.spill`), so that memory stays flat: only one partition is checked at a
    time, and only the failures are kept."""
    spec = loaded.spec
    target = get_target(spec.target)
    unique = sorted(f for f, r in spec.rules.items() if r.unique)
    plans = [
        p for p in mapping.plan(spec, target) if p.field == target.id_field or p.field in unique
    ]
    fields = [p.field for p in plans]
    columns = sorted({c for p in plans for c in p.sources()} & set(src.header))
    parts = 1 if src.meta.rows <= SPILL_ROWS else -(-src.meta.rows // SPILL_PART_ROWS)
    checks = [(target.id_field, same_id(pl.col(target.id_field)))]
    checks += [(f, pl.col(f)) for f in unique if f in fields]
    spills = {field: Spill(parts) for field, _ in checks}
    try:
        seen = offset
        # Batch by batch, so that only these few columns are ever held for the whole file.
        for batch in src.batches(BATCH_ROWS, columns or src.header[:1], full=False):
            lf = mapping.with_stages(batch.lazy(), plans)
            part = lf.select([p.value.alias(p.field) for p in plans]).collect()
            part = strip_empty(part, fields).with_row_index("_row", offset=seen).with_columns(
                pl.col("_row").cast(pl.Int64))
            seen += batch.height
            for field, key in checks:
                spills[field].add(part.select("_row", field), key)
        found = [
            duplicate_failures(rows, target.id_field, spec.keys.duplicates, offset)
            for rows in spills[target.id_field].parts()
        ]
        for field, _ in checks[1:]:
            found += [unique_failures(rows, field) for rows in spills[field].parts()]
    finally:
        for spill in spills.values():
            spill.close()
    if not found:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    return pl.concat(found, how="vertical").sort("_row")


@dataclass
class Batch:
    """One batch of a file after validation."""

    rows: int
    rejects: pl.DataFrame
    failures: pl.DataFrame
    payloads: pl.DataFrame
    amounts: pl.DataFrame
    donor_keys: donors.BatchDonors  # the valid rows' donor keys, hashed


def _validate_batch(
    raw: pl.DataFrame,
    header: list[str],
    loaded: LoadedSpec,
    offset: int,
    today: dt.date,
    wide_pass: Callable[[], pl.DataFrame],
    lookups: Lookups | None = None,
) -> Batch:
    spec = loaded.spec
    target = get_target(spec.target)
    out = _compute(raw, loaded, offset, lookups)
    fields = [c for c in out.columns if c not in META and not c.startswith((ERR, RAW))]
    out = strip_empty(out, fields)
    n_designations = len({f.split(".")[1] for f in fields if f.startswith("designations.")})
    scan = scan_text(out, fields)

    def mine() -> pl.DataFrame:  # the file-wide checks' failures (a pass beside the first batch)
        return wide_pass().filter(pl.col("_row").is_between(offset, offset + raw.height - 1))

    fails = failures(out, spec, fields, n_designations, today, mine, scan.control)
    bad = fails.select("_row").unique()
    rejects = _reject_rows(raw, header, fails, offset)
    out = out.select("_row", "_source_file", "_record", *fields)
    keep = ~out["_row"].is_in(bad["_row"].implode())
    key = pl.lit(f"{spec.target}:{spec.keys.source}:") + pl.col(target.id_field)
    payload = payload_expr(target, fields, scan.needs)
    payloads = out.filter(keep).select(
        "_source_file", "_record", key.alias("_key"), payload.alias("_payload")
    )
    found = donors.from_batch(out, keep, donors.donor_fields(spec))
    return Batch(out.height, rejects, fails, payloads, _amounts(out, keep, fields), found)


def _batches(
    src: SourceFile,
    loaded: LoadedSpec,
    offset: int,
    today: dt.date,
    sinks: Sinks,
    on_rows: Callable[[str, int, int], None] | None,
    wide_pass: Future[pl.DataFrame],
) -> tuple[Kept, list[pl.DataFrame], dict[str, object], int, int, int]:
    """The batches of one open file: validated, sunk, kept. `MetaChanged` before the first
    batch is taken (sunk) means "read again"; after it, the file changed while it was read."""
    kept = Kept(sinks.payloads is not None, sinks.rejects is not None)
    amounts: list[pl.DataFrame] = []
    rows = valid = rejected = 0
    found = donors.FileDonors(src.meta.rows, SPILL_ROWS, SPILL_PART_ROWS, BATCH_ROWS)
    lookups = Lookups()

    def take(batch: Batch) -> None:  # in file order, in this thread: the sinks see one batch
        nonlocal rows, valid, rejected
        rows += batch.rows
        valid += batch.payloads.height
        rejected += batch.rejects.height
        if on_rows is not None:
            on_rows(src.display, rows, rows - valid)
        if sinks.payloads is not None:
            sinks.payloads(batch.payloads)
        if sinks.rejects is not None:
            sinks.rejects(batch.rejects)
        kept.add(batch.payloads, batch.rejects, batch.failures)
        amounts.append(batch.amounts)
        found.add(batch.donor_keys)

    # IN_FLIGHT batches are validated at once (polars lets go of the GIL, and one batch alone
    # leaves a core idle between its many small steps); they are taken in file order. With
    # IN_FLIGHT 1, each is validated in this thread.
    pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="batch") if IN_FLIGHT > 1 else None
    pending: deque[Future[Batch]] = deque()
    try:
        read = 0
        for raw in src.batches(BATCH_ROWS):
            args = (raw, src.header, loaded, offset + read, today, wide_pass.result, lookups)
            read += raw.height
            if pool is None:
                take(_validate_batch(*args))
                continue
            pending.append(pool.submit(_validate_batch, *args))
            if len(pending) >= IN_FLIGHT:
                take(pending.popleft().result())
        while pending:
            take(pending.popleft().result())
        if not rows:  # a file without data: the file-wide pass must still have read it whole
            wide_pass.result()
        duplicates = donors.file_block(found, src.display, loaded.spec)
    except MetaChanged:
        if rows:
            raise FileChanged(src.display) from None
        raise
    finally:
        for left in pending:
            left.cancel()
        if pool is not None:
            pool.shutdown(wait=True)
        found.close()
    return kept, amounts, duplicates, rows, valid, rejected


def _validate_file(
    path: Path,
    loaded: LoadedSpec,
    offset: int,
    today: dt.date,
    sinks: Sinks,
    on_rows: Callable[[str, int, int], None] | None = None,
) -> FileOutcome:
    """Validate one file batch by batch; payloads and rejects go to their sinks when there are
    some; `on_rows` hears (file, rows so far, rejected so far) after every batch."""
    with open_source(path, loaded) as src, ThreadPoolExecutor(1, thread_name_prefix="wide") as pool:
        for attempt in range(3):  # the first full read may find the layout wrong: again
            # The file-wide pass runs in a thread while the first batch is transformed: a batch
            # needs its result only to be validated, so no batch is done before it.
            wide = pool.submit(_file_wide, src, loaded, offset)
            try:
                done = _batches(src, loaded, offset, today, sinks, on_rows, wide)
                break
            except MetaChanged:
                wait([wide])  # both reads stop; the next attempt reads without the layout
                if attempt == 2:
                    raise
        display, digest, size, notes = src.display, src.sha256, src.size, src.warnings
    kept, amounts, duplicates, rows, valid, rejected = done
    info = FileInfo(
        path=display, sha256=digest, size=size, rows=rows, valid=valid, rejected=rejected
    )
    # The accounting invariant: every input row is valid or rejected, never both or neither.
    if rows != valid + rejected:
        raise AssertionError(f"row accounting broken for {path}: {info}")
    return FileOutcome(
        info,
        pl.concat(kept.rejects, how="diagonal_relaxed") if kept.rejects else pl.DataFrame(),
        pl.concat(kept.failures, how="diagonal_relaxed") if kept.failures else _EMPTY_FAILURES,
        pl.concat(kept.payloads) if kept.payloads else _EMPTY_PAYLOADS,
        pl.concat(amounts) if amounts else _EMPTY_AMOUNTS,
        [f"{display}: {w}" for w in notes],
        duplicates,
        kept.counts,
    )


@dataclass(frozen=True)
class Sinks:
    """Where a dry run's payloads and rejects go batch by batch (None: kept in memory)."""

    payloads: Callable[[pl.DataFrame], None] | None = None
    rejects: Callable[[pl.DataFrame], None] | None = None


_EMPTY_PAYLOADS = pl.DataFrame(
    schema={
        "_source_file": pl.String,
        "_record": pl.Int64,
        "_key": pl.String,
        "_payload": pl.String,
    }
)
_EMPTY_FAILURES = pl.DataFrame(
    schema={
        "_row": pl.Int64,
        "_source_file": pl.String,
        "_record": pl.Int64,
        "field": pl.String,
        "rule": pl.String,
        "value": pl.String,
        "error": pl.String,
    }
)
_EMPTY_AMOUNTS = pl.DataFrame(schema={"currency": pl.String, "stage": pl.String, "cents": pl.Int64})


def _amounts(out: pl.DataFrame, keep: pl.Series, fields: list[str]) -> pl.DataFrame:
    """Gift amount sums in cents by currency, for all parsed rows and for valid rows."""
    if "amount" not in fields:
        return _EMPTY_AMOUNTS
    cur = pl.col("currencyCode") if "currencyCode" in fields else pl.lit(None, pl.String)
    cents = (pl.col("amount") * 100).round(0).cast(pl.Int64)
    # One grouping by currency and validity; the read sums add up its two halves.
    sums = out.select(
        cur.fill_null("(unspecified)").alias("currency"), keep.alias("valid"), cents.alias("cents")
    ).group_by("currency", "valid").agg(pl.col("cents").sum())
    read = sums.group_by("currency").agg(pl.col("cents").sum())
    valid = sums.filter(pl.col("valid"))
    return pl.concat([
        frame.select("currency", pl.lit(stage).alias("stage"), "cents")
        for stage, frame in (("read", read), ("valid", valid))
    ])


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
    loaded: LoadedSpec,
    *,
    today: dt.date | None = None,
    files: list[Path] | None = None,
    payload_sink: Callable[[pl.DataFrame], None] | None = None,
    reject_sink: Callable[[pl.DataFrame], None] | None = None,
    on_rows: Callable[[str, int, int], None] | None = None,
) -> ValidationResult:
    """The dry run: read every source file (or only `files`, in that order), transform, validate
    and build payloads. With `payload_sink`, payloads go to it batch by batch and the result
    keeps only a sample of them (`payloads_sampled`); with `reject_sink` so do the rejected
    rows, and the result keeps a sample of them and of the failures, with the failure counts
    (`rejects_sampled`): memory stays bounded for any file size."""
    today = today or dt.date.today()
    sinks = Sinks(payload_sink, reject_sink)
    outcomes: list[FileOutcome] = []
    offset = 0
    for path in resolve_files(loaded) if files is None else files:
        outcome = _validate_file(path, loaded, offset, today, sinks, on_rows)
        offset += outcome.info.rows
        outcomes.append(outcome)
    rejects = pl.concat([o.rejects for o in outcomes], how="diagonal_relaxed")
    failures = pl.concat([o.failures for o in outcomes], how="diagonal_relaxed")
    counts = None
    if reject_sink is not None:
        rejects = rejects.head(SAMPLE_REJECTS)
        failures = first_failures([failures]) if failures.height else failures
        counts = add_counts([o.failure_counts for o in outcomes])
    return ValidationResult(
        pipeline=loaded.spec.name,
        spec_path=str(loaded.path),
        spec_hash=loaded.sha256,
        tool_version=__version__,
        target=loaded.spec.target,
        files=[o.info for o in outcomes],
        rejects=rejects,
        failures=failures.drop("_row"),
        payloads=pl.concat([o.payloads for o in outcomes]),
        control_totals=_control_totals(outcomes),
        warnings=[w for o in outcomes for w in o.warnings],
        payloads_sampled=payload_sink is not None,
        rejects_sampled=reject_sink is not None,
        failure_counts=counts,
        csv_bom=loaded.spec.output.csv_bom,
        possible_duplicates=donors.combine([o.duplicates for o in outcomes]),
    )
