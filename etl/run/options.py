"""What goes into `etl run` (`RunOptions`: where to, with which key, the unattended gates,
test hooks) and what comes out (`RunSummary`).
The pipeline's own paths (spec, ledger, report folder) are on `etl.spec.pipeline.Pipeline`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from etl.load.client import DEFAULT_BASE_URL


@dataclass(kw_only=True)
class RunOptions:
    """How to run: where to, with which key; test hooks at the end."""

    token: str
    base_url: str = DEFAULT_BASE_URL
    in_doubt: str | None = None
    requests_per_hour: float | None = None  # override the spec's budget (None: the spec's)
    unlimited: bool = False
    transport: httpx.AsyncBaseTransport | None = None
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    handle_signals: bool = True
    notify: Callable[[str], None] = lambda message: None
    on_progress: Callable[[dict[str, Any]], None] | None = None
    # unattended runs (etl/unattended/drops.py, etl/unattended/gates.py)
    new_only: bool | None = None  # skip files processed before (None: when the source is a glob)
    archive: Path | None = None  # move processed (and re-delivered) files here
    quarantine: Path | None = None  # move unreadable files here and go on with the others
    min_age: float | None = 0.0  # leave younger files (None: drops.DROP_MIN_AGE for a glob)
    max_reject_rate: float | None = None  # over it, nothing is sent
    max_failed: int | None = None  # more failed rows than this: no further batches
    # a lost ledger (etl/load/ledger_guard.py)
    recover_ledger: bool = False  # rebuild what was sent from CRM+ before planning
    recover_max_pages: int = 1000  # FullGift pages (of 1,000) a recovery may read
    skip_crm_check: bool = False  # send a first time without asking CRM+ (you know it is empty)


@dataclass
class RunSummary:
    """What a run did, for the final table and --json-summary."""

    run_id: int
    pipeline: str
    ledger: str
    organization: str | None
    exit_code: int
    exit_reason: str
    counts: dict[str, int]
    totals: list[dict[str, Any]]
    requests: int = 0
    http: dict[int, int] = field(default_factory=dict)
    throttled: int = 0
    retries: int = 0
    split_requests: int = 0
    fallback_to_single: bool = False
    rows_per_batch_request: float = 0.0
    notices: dict[str, int] = field(default_factory=dict)
    in_doubt_found: int = 0  # rows a crash had left `sending`, found at the start
    in_doubt_new: int = 0  # rows of this run sent without a definite answer
    in_doubt_bound: int = 0
    elapsed_seconds: float = 0.0
    report_dir: str | None = None
    sandbox_batch: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)  # per file: outcome, statuses
    gates: dict[str, Any] = field(default_factory=dict)
    control_totals: dict[str, Any] = field(default_factory=dict)
    stale_lock_pid: int | None = None
    direct: dict[str, Any] | None = None  # load.create: direct: outcomes, requests, the policy

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["http"] = {str(k): v for k, v in self.http.items()}
        return data
