"""The dry-run report stage: a `ValidationResult` -> report.json, rejects.csv, payloads.jsonl and
report.html in one directory, plus a short plain-text summary for the terminal.

    paths = write_report(result, Path("reports/gifts"), payload_limit=1000)
    print(summary_table(result))

Fast for big runs: failures are aggregated with a polars group_by, rejects and payloads are
written by polars, and only the first few sample rows (HTML) go through Python.
Each file is written to a temporary name and renamed (etl/base/safe_write.py), so a crashed run
never leaves a half report, a link or device in the folder is never written through, and a
registered secret (the API key) is redacted from every file.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from etl.base.csvsafe import write_csv, write_csv_lazy
from etl.base.redact import redact_frame
from etl.base.safe_write import atomic, check_target, replace, write_json, write_text
from etl.prepare.result import ReportPaths, ValidationResult
from etl.report.approve import amount_rows
from etl.report.html import render_html


@dataclass
class DryRun:
    """A finished dry run: the result, where its report went, and the text summary."""

    result: ValidationResult
    paths: ReportPaths
    report: dict[str, Any]
    summary: str


REPORT_JSON = "report.json"
REJECTS_CSV = "rejects.csv"
PAYLOADS_JSONL = "payloads.jsonl"
REPORT_HTML = "report.html"


def write_report(
    result: ValidationResult,
    out_dir: Path,
    *,
    payload_limit: int | None = None,
    prematch: dict[str, Any] | None = None,
    payloads_file: Path | None = None,
    report: dict[str, Any] | None = None,
    rejects_spool: RejectSpool | None = None,
) -> ReportPaths:
    """Write the four report files into `out_dir` (created if needed) and return their paths.

    `payload_limit` caps payloads.jsonl to the first n payloads (None: all of them).
    """
    if payload_limit is not None and payload_limit < 0:
        raise ValueError(f"payload_limit must be >= 0 or None, got {payload_limit}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        out_dir=out_dir,
        report_json=out_dir / REPORT_JSON,
        rejects_csv=out_dir / REJECTS_CSV,
        payloads_jsonl=out_dir / PAYLOADS_JSONL,
        report_html=out_dir / REPORT_HTML,
    )
    for path in (paths.report_json, paths.rejects_csv, paths.payloads_jsonl, paths.report_html):
        check_target(path)  # refuse before writing any: never half a report
    report = report if report is not None else build_report(result, prematch)
    write_json(paths.report_json, report)
    if rejects_spool is not None:  # spooled batch by batch (RejectSpool)
        rejects_spool.write_csv(paths.rejects_csv, bom=result.csv_bom)
    else:
        write_csv(result.rejects, paths.rejects_csv, bom=result.csv_bom)
    if payloads_file is not None:  # already written batch by batch (PayloadWriter)
        replace(payloads_file, paths.payloads_jsonl)
    else:
        with atomic(paths.payloads_jsonl) as tmp:
            _write_payloads(result.payloads, tmp, payload_limit)
    write_text(paths.report_html, render_html(result, report))
    return paths


def build_report(
    result: ValidationResult, prematch: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The content of report.json (key order is the output order); `prematch` is the spec's
    `match:` prediction (etl/match/), present only when the spec has that section."""
    files_ok = [(f.path, f.rows == f.valid + f.rejected) for f in result.files]
    overall_ok = result.read == result.valid + result.rejected
    report = {
        "pipeline": result.pipeline,
        "target": result.target,
        "spec": {"path": result.spec_path, "hash": result.spec_hash},
        "tool_version": result.tool_version,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "counts": {
            "read": result.read,
            "rejected": result.rejected,
            "valid": result.valid,
            "reject_rate": round(result.reject_rate(), 6),
        },
        "files": [
            {
                "path": f.path,
                "sha256": f.sha256,
                "size": f.size,
                "rows": f.rows,
                "rejected": f.rejected,
                "valid": f.valid,
            }
            for f in result.files
        ],
        "failures": failure_counts(result.failures, counts=result.failure_counts),
        "control_totals": json.loads(json.dumps(result.control_totals, default=str)),
        "warnings": list(result.warnings),
        "invariant": {
            "rule": "read == valid + rejected",
            "ok": overall_ok and all(ok for _, ok in files_ok),
            "overall": overall_ok,
            "files": [{"path": path, "ok": ok} for path, ok in files_ok],
            # The frames agree with the counts (one reject row per rejected row, one payload
            # per valid row).
            "rejects_rows_match": result.rejects_sampled
            or result.rejects.height == result.rejected,
            "payload_rows_match": result.payloads_sampled or result.payloads.height == result.valid,
        },
    }
    if result.possible_duplicates is not None:
        report["possible_duplicates"] = result.possible_duplicates
    if prematch is not None:
        report["prematch"] = prematch
    return report


def write_prematch(dry: DryRun, prematch: dict[str, Any]) -> None:
    """Put a fresh `prematch` block into an already written report (`etl run` refreshes the
    pre-match cache after its dry run): report.json, report.html and the summary text."""
    dry.report["prematch"] = prematch
    write_json(dry.paths.report_json, dry.report)
    write_text(dry.paths.report_html, render_html(dry.result, dry.report))
    dry.summary = summary_table(dry.result, prematch)


def failure_counts(
    failures: pl.DataFrame, limit: int | None = None, counts: pl.DataFrame | None = None
) -> list[dict[str, Any]]:
    """[{field, rule, count}] by count descending (ties by field, rule), from a polars group_by
    of the failures, or from `counts` (field, rule, count) when the failures are a sample."""
    if counts is None:
        if failures.height == 0 or not {"field", "rule"} <= set(failures.columns):
            return []
        counts = failures.group_by("field", "rule").agg(pl.len().alias("count"))
    grouped = counts.sort(
        ["count", "field", "rule"], descending=[True, False, False], nulls_last=True)
    if limit is not None:
        grouped = grouped.head(limit)
    return grouped.select("field", "rule", "count").to_dicts()


def _payload_lines(payloads: pl.DataFrame, limit: int | None) -> pl.DataFrame:
    """The `_payload` column ready to be written one document per line."""
    if "_payload" not in payloads.columns:
        return pl.DataFrame(schema={"_payload": pl.String})
    column = payloads.select(pl.col("_payload").cast(pl.String)).drop_nulls()
    if limit is not None:
        column = column.head(limit)
    # Valid JSON only has raw line breaks between tokens, where a space means the same: keep one
    # document per line even if a payload was not written compactly.
    if column.select(pl.col("_payload").str.contains("[\r\n]").any()).item():
        column = column.with_columns(pl.col("_payload").str.replace_all("[\r\n]", " "))
    return redact_frame(column)


def _write_payloads(payloads: pl.DataFrame, path: Path, limit: int | None) -> None:
    """One compact JSON document per line, written by polars without any quoting."""
    _payload_lines(payloads, limit).write_csv(path, include_header=False, quote_style="never")


class PayloadWriter:
    """payloads.jsonl written batch by batch (the dry run's payload sink), up to `limit`, by a
    thread of its own: polars writes while the next batch is validated (it releases the GIL),
    at most two batches behind. `close` waits for it and raises what it raised."""

    def __init__(self, path: Path, limit: int | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.limit, self.written = path, limit, 0
        self._fh = path.open("xb")  # a new file: never through a name planted in advance
        self._queue: queue.Queue[pl.DataFrame | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="payloads.jsonl", daemon=True)
        self._thread.start()

    def write(self, payloads: pl.DataFrame) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(payloads)

    def _run(self) -> None:
        while (payloads := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the error is raised by write or close
            try:
                self._write(payloads)
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc

    def _write(self, payloads: pl.DataFrame) -> None:
        room = None if self.limit is None else max(self.limit - self.written, 0)
        lines = _payload_lines(payloads, room)
        if lines.height:
            lines.write_csv(self._fh, include_header=False, quote_style="never")
            self.written += lines.height
            # To disk batch by batch, in this thread while the next batch is validated: the
            # fsync at `close` then waits for the last batch only, not for the whole file.
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> Path:
        self._queue.put(None)
        self._thread.join()
        try:
            if self._error is None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
        finally:
            self._fh.close()
        if self._error is not None:
            raise self._error
        return self.path

    def discard(self) -> None:
        """Stop and remove the partial file (a run that failed), raising nothing."""
        with contextlib.suppress(BaseException):  # the run's own error is what matters
            self.close()
        self.path.unlink(missing_ok=True)


class RejectSpool:
    """rejects.csv written batch by batch (the dry run's reject sink): each batch's rejected
    rows go to an Arrow IPC file in a temporary folder, and `write_csv` streams them all into
    the CSV at the end (files of one run may have different columns: their union, in order)."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="etl-rejects-"))
        self._files: list[Path] = []
        self._schemas: list[pl.Schema] = []
        self.rows = 0

    def write(self, rejects: pl.DataFrame) -> None:
        # An empty batch is spooled too when its columns are new: a file without rejects
        # still gives rejects.csv its header, as the frame written whole does.
        if rejects.height or rejects.schema not in self._schemas:
            self._schemas.append(rejects.schema)
            path = self._dir / f"{len(self._files)}.arrow"
            rejects.write_ipc(path)
            self._files.append(path)
            self.rows += rejects.height

    def write_csv(self, path: Path, *, bom: bool) -> None:
        frames = [pl.scan_ipc(f) for f in self._files]
        write_csv_lazy(pl.concat(frames, how="diagonal_relaxed") if frames else None, path,
                       bom=bom)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


# --- terminal summary -------------------------------------------------------------------------

MAX_FILES = 5
MAX_REASONS = 5
MAX_CURRENCIES = 4
NAME_WIDTH = 40


def summary_table(result: ValidationResult, prematch: dict[str, Any] | None = None) -> str:
    """A short fixed-width plain-text summary (no ANSI codes, < 25 lines) for terminals and mail."""
    lines = [f"{_show(result.pipeline)} -> {_show(result.target)}"]
    rows = [(_show(f.path), f.rows, f.valid, f.rejected) for f in result.files[:MAX_FILES]]
    if len(result.files) > MAX_FILES:
        more = result.files[MAX_FILES:]
        rows.append((f"... {len(more)} more files", *_sums(more)))
    rows.append(("total", result.read, result.valid, result.rejected))
    width = max(len("file"), *(len(r[0]) for r in rows))
    lines.append(f"  {'file':<{width}}  {'read':>11}  {'valid':>11}  {'rejected':>11}")
    lines += [f"  {n:<{width}}  {r:>11,}  {v:>11,}  {x:>11,}" for n, r, v, x in rows]
    lines.append(f"  reject rate {result.reject_rate():.2%}")
    reasons = failure_counts(result.failures, MAX_REASONS, result.failure_counts)
    if reasons:
        labels = [f"{_show(r['field'])} / {_show(r['rule'])}" for r in reasons]
        width = max(len("top failures (field / rule)"), *(len(label) for label in labels))
        lines.append(f"  {'top failures (field / rule)':<{width}}  {'count':>11}")
        for label, reason in zip(labels, reasons, strict=True):
            lines.append(f"  {label:<{width}}  {reason['count']:>11,}")
    amounts = result.control_totals.get("amounts") or {}
    if isinstance(amounts, dict) and amounts:
        lines.append(f"  {'control totals':<14}  {'read':>16}  {'valid':>16}  {'rejected':>16}")
        for currency, read, valid, rejected in amount_rows(amounts)[:MAX_CURRENCIES]:
            lines.append(f"  {_show(currency):<14}  {read:>16}  {valid:>16}  {rejected:>16}")
        if len(amounts) > MAX_CURRENCIES:
            lines.append(f"  ... {len(amounts) - MAX_CURRENCIES} more currencies in report.json")
    if result.warnings:
        lines.append(f"  {len(result.warnings)} warning(s): see report.json")
    dupes = result.possible_duplicates or {}
    if dupes.get("groups"):
        by = dupes["by"]
        lines.append(
            f"  possible duplicate donors: {dupes['groups']:,} group(s) (email "
            f"{by['email']['groups']:,}, name + postal {by['name_postal']['groups']:,}), "
            "not merged: see report.html")
    if prematch is not None:
        lines += prematch_lines(prematch)
    return "\n".join(lines)


def prematch_lines(block: dict[str, Any]) -> list[str]:
    """Two lines: what exists per signal, and what the policy and the nightly batch will do."""
    if block.get("status") != "ok":
        return ["  pre-match: no cache yet (`etl validate --refresh-match` or `etl run` fills it)"]
    cache, rows = block.get("cache") or {}, block["rows"]
    age = cache.get("age_seconds")
    when = (
        "just refreshed"
        if block.get("refresh")
        else (f"cache {_age(age)} old" if age is not None else "cache")
    )
    signals = ", ".join(f"{k} {v:,}" for k, v in (block.get("by_signal") or {}).items())
    effect, batch = block["policy_effect"], block["nightly_batch"]
    return [
        f"  pre-match ({when}, {cache.get('contacts', 0):,} contacts): {rows['existing']:,} "
        f"existing ({signals or 'none'}), {rows['new']:,} new",
        f"  policy {_show(block['policy'])}: send {effect['send']:,}, skip {effect['skip']:,}; "
        "nightly batch: " + ", ".join(f"{k} {v:,}" for k, v in batch.items()),
    ]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _sums(files: list[Any]) -> tuple[int, int, int]:
    return sum(f.rows for f in files), sum(f.valid for f in files), sum(f.rejected for f in files)


def _show(value: object) -> str:
    """A data value for the terminal: as is when plain, repr-quoted when it has control
    characters, surrounding blanks or is empty; long values are shortened in the middle."""
    if value is None:
        return "-"
    text = str(value)
    if not text or not text.isprintable() or text != text.strip():
        text = repr(text)
    if len(text) > NAME_WIDTH:
        keep = NAME_WIDTH - 3
        text = text[: keep // 2] + "..." + text[-(keep - keep // 2) :]
    return text
