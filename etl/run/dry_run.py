"""The dry run as one call: validate a pipeline and write its report folder."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.report.write import PayloadWriter, build_report, summary_table, write_report
from etl.prepare.result import ReportPaths, ValidationResult
from etl.prepare.runner import validate_pipeline
from etl.base.safe_write import report_folder
from etl.spec.parse import LoadedSpec, load_spec

if TYPE_CHECKING:
    from etl.match import MatchOptions


@dataclass
class DryRun:
    """A finished dry run: the result, where its report went, and the text summary."""

    result: ValidationResult
    paths: ReportPaths
    report: dict[str, Any]
    summary: str


def report_dir(loaded: LoadedSpec, out_dir: Path | None) -> Path:
    """The report folder, ready to write into: --out, else the spec's output.dir (relative to
    the spec), else reports/<name>. Only --out may name an existing folder the tool did not
    create (etl/base/safe_write.py: a spec must not be able to write into /etc); UnsafeOutput else."""
    if out_dir is not None:
        return report_folder(out_dir, explicit=True, origin="--out")
    if loaded.spec.output.dir:
        return report_folder(loaded.base_dir / loaded.spec.output.dir, explicit=False,
                             origin=f"{loaded.path}: output.dir")
    return report_folder(Path("reports") / loaded.spec.name, explicit=False,
                         origin="the default report folder")


def dry_run(
    spec_path: Path,
    *,
    out_dir: Path | None = None,
    payload_limit: int | None = None,
    files: list[Path] | None = None,
    match: MatchOptions | None = None,
    keep_payloads: bool = True,
) -> DryRun:
    """Validate `spec_path`'s sources (or only `files`) and write report.json, rejects.csv,
    payloads.jsonl, HTML. With a `match:` section the report predicts what already exists in
    CRM+ from the local pre-match cache; `match=MatchOptions(refresh=True, ...)` reads CRM+
    first (the only network a dry run may do, and only when asked)."""
    loaded = load_spec(spec_path)
    limit = payload_limit if payload_limit is not None else loaded.spec.output.payload_sample
    out = report_dir(loaded, out_dir)
    writer = None
    # Without keep_payloads (the CLI's dry run) payloads go to payloads.jsonl batch by batch and
    # memory stays bounded; a run, or a pre-match prediction, needs them all in memory.
    if not keep_payloads and loaded.spec.match is None:
        # Named per process and at random: two dry runs into one folder, or a reused pid after
        # a crash, never meet the same spool file (it is opened exclusively).
        spool = out / f".payloads.jsonl.{os.getpid()}.{secrets.token_hex(4)}.partial"
        writer = PayloadWriter(spool, limit)
    try:
        result = validate_pipeline(
            loaded, files=files, payload_sink=writer.write if writer else None
        )
    except BaseException:
        if writer:  # no half-written payloads left behind
            writer.close().unlink(missing_ok=True)
        raise
    spooled = writer.close() if writer else None
    prematch = None
    if loaded.spec.match is not None:  # only then pay for the HTTP client's import
        from etl.match import predict

        prematch = predict(loaded, result, match)
    report = build_report(result, prematch)
    paths = write_report(result, out, payload_limit=limit, prematch=prematch,
                         payloads_file=spooled, report=report)
    return DryRun(result, paths, report, summary_table(result, prematch))
