"""The dry run as one call: validate a pipeline and write its report folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from etl.prepare.runner import validate_pipeline
from etl.report.approve import key_columns
from etl.report.cost import cost_line, estimate
from etl.report.write import (
    DryRun,
    PayloadWriter,
    RejectSpool,
    build_report,
    summary_table,
    write_report,
)
from etl.spec.pipeline import Pipeline

if TYPE_CHECKING:
    from collections.abc import Callable

    from etl.match import MatchOptions
    from etl.prepare.result import ValidationResult


def dry_run(
    pipeline: Pipeline,
    *,
    payload_limit: int | None = None,
    files: list[Path] | None = None,
    match: MatchOptions | None = None,
    keep_payloads: bool = True,
    on_rows: Callable[[str, int, int], None] | None = None,
) -> DryRun:
    """Validate the pipeline's sources (or only `files`) and write report.json, rejects.csv,
    payloads.jsonl, HTML into `pipeline.report_dir()`. With a `match:` section the report
    predicts what already exists in
    CRM+ from the local pre-match cache; `match=MatchOptions(refresh=True, ...)` reads CRM+
    first (the only network a dry run may do, and only when asked)."""
    if pipeline.spec.load.create == "direct":  # only then pay for the HTTP client's import
        from etl.run.direct import check_spec as check_direct

        check_direct(pipeline)  # contacts only, fields the nested body carries
    limit = payload_limit if payload_limit is not None else pipeline.spec.output.payload_sample
    out = pipeline.report_dir()
    writer = rejects = None
    # Without keep_payloads (the CLI's dry run) payloads go to payloads.jsonl, and rejected
    # rows to a spool for rejects.csv, batch by batch: memory stays bounded. A run, or a
    # pre-match prediction, needs them all in memory.
    if not keep_payloads and pipeline.spec.match is None:
        # Named per process and at random: two dry runs into one folder, or a reused pid after
        # a crash, never meet the same spool file (it is opened exclusively).
        spool = out / f".payloads.jsonl.{os.getpid()}.{secrets.token_hex(4)}.partial"
        writer = PayloadWriter(spool, limit)
        rejects = RejectSpool()
    try:
        try:
            result = validate_pipeline(
                pipeline, files=files, payload_sink=writer.write if writer else None,
                reject_sink=rejects.write if rejects else None, on_rows=on_rows,
            )
        except BaseException:
            if writer:  # no half-written payloads left behind
                writer.discard()
            raise
        spooled = writer.close() if writer else None
        return _report(pipeline, result, out, limit, match, spooled, rejects)
    finally:
        if rejects is not None:
            rejects.close()


def _report(
    pipeline: Pipeline,
    result: ValidationResult,
    out: Path,
    limit: int | None,
    match: MatchOptions | None,
    spooled: Path | None,
    rejects: RejectSpool | None,
) -> DryRun:
    prematch = None
    if pipeline.spec.match is not None:  # only then pay for the HTTP client's import
        from etl.match import predict

        prematch = predict(pipeline, result, match)
    report = build_report(result, prematch)
    contacts = ((prematch or {}).get("cache") or {}).get("contacts")
    report["key_columns"] = key_columns(pipeline.spec)  # the rejects' donor columns (HTML)
    report["requests"] = estimate(pipeline.spec, result.valid, contacts=contacts)
    paths = write_report(result, out, payload_limit=limit, prematch=prematch,
                         payloads_file=spooled, report=report, rejects_spool=rejects)
    summary = summary_table(result, prematch) + "\n  requests: " + cost_line(report["requests"])
    return DryRun(result, paths, report, summary)
