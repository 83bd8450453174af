"""What a dry run (and the validation part of a run) produces: plain data for the report stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl


@dataclass(frozen=True)
class FileInfo:
    """One source file as read: checksum and row accounting (rows == valid + rejected)."""

    path: str
    sha256: str
    size: int
    rows: int
    valid: int
    rejected: int


@dataclass
class ValidationResult:
    """Everything the report needs. Frames are polars DataFrames, never pandas.

    - `rejects`: one row per rejected source row: the original source columns (as strings) plus
      `_source_file`, `_record` (1-based data record number, header excluded), `_field`, `_rule`,
      `_value`, `_error` (several failures of one row are joined with " | " in the same order).
    - `failures`: one row per failure (a row can fail several rules): columns
      `_source_file`, `_record`, `field`, `rule`, `value`, `error`.
    - `payloads`: one row per valid row: `_source_file`, `_record`, `_key` (idempotency key,
      e.g. "gift_transaction:LegacyCRM:G-1001"), `_payload` (the wire JSON, a compact string).
    - `control_totals`: {"rows": {"read": n, "valid": n, "rejected": n},
                         "amounts": {"USD": {"read": "1234.50", "valid": "1200.00"}, ...}}
      (amount totals are decimal strings with 2 places; empty for contact pipelines).
    """

    pipeline: str
    spec_path: str
    spec_hash: str
    tool_version: str
    target: str
    files: list[FileInfo]
    rejects: pl.DataFrame
    failures: pl.DataFrame
    payloads: pl.DataFrame
    control_totals: dict[str, dict[str, object]]
    warnings: list[str] = field(default_factory=list)
    payloads_sampled: bool = False  # True: `payloads` is a sample, the rest went to a sink
    # True: `rejects` is a sample (the rest went to a sink: rejects.csv) and `failures` too,
    # the first few of each field and rule with their row's source columns; `failure_counts`
    # (field, rule, count) then counts them all.
    rejects_sampled: bool = False
    failure_counts: pl.DataFrame | None = None
    csv_bom: bool = True  # the spec's `output.csv_bom`: rejects.csv starts with a UTF-8 BOM
    # Different donor ids with the same email or name + postal code (etl/prepare/donors.py):
    # {"groups", "by": {signal: {"groups", "donors"}}, "sample": [...], "sample_limit", "note"}
    possible_duplicates: dict[str, Any] | None = None

    @property
    def read(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def valid(self) -> int:
        return sum(f.valid for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def reject_rate(self) -> float:
        return self.rejected / self.read if self.read else 0.0


@dataclass(frozen=True)
class ReportPaths:
    """Where the report files were written."""

    out_dir: Path
    report_json: Path
    rejects_csv: Path
    payloads_jsonl: Path
    report_html: Path
