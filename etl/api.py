"""The public Python API: `etl.validate`, `etl.run`, `etl.reconcile` (docs/api.md).

Each call takes a spec path and keyword options, opens the `Pipeline` once (as the CLI does) and
makes one library call. They raise `EtlError` (`etl.EtlError`; `.exit_code` is the CLI's exit
code) for a problem with the spec, a source file, the ledger or the credentials, and return the
same summaries the CLI renders: a run that rejects rows still returns, with `exit_code` 1.

Thin on purpose: the orchestrators are `etl.run.*` and `etl.confirm.reconcile`; this module only
resolves the options a script would otherwise copy from the CLI (the API key from the
environment, the ledger, the report folder).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from etl.base.errors import EtlError
from etl.base.redact import register, secret_from_env
from etl.confirm.reconcile import ReconcileOptions, ReconcileSummary
from etl.confirm.reconcile import reconcile as reconcile_pipeline
from etl.load.client import DEFAULT_BASE_URL, check_base_url
from etl.report.write import DryRun
from etl.run.dry_run import dry_run
from etl.run.options import RunOptions, RunSummary
from etl.run.submit import run_pipeline
from etl.spec.pipeline import open_pipeline

__all__ = ["TOKEN_ENV", "ApiUsageError", "DryRun", "ReconcileSummary", "Report", "RunSummary",
           "reconcile", "run", "validate"]

TOKEN_ENV = "VIRTUOUS_API_TOKEN"  # noqa: S105 - the variable's name, not a secret
Report = DryRun  # what `validate` returns: .report (report.json as a dict), .paths, .summary


def validate(spec: str | Path, *, out: str | Path | None = None,
             files: list[str | Path] | None = None,
             payload_limit: int | None = None) -> DryRun:
    """The dry run (`etl validate`): read, map and validate every row, write report.json,
    rejects.csv, payloads.jsonl and report.html into `out` (default: the spec's output.dir,
    else reports/<name>). Nothing is sent. `files` limits the run to these source files."""
    pipeline = open_pipeline(spec, out_dir=_path(out))
    return dry_run(pipeline, payload_limit=payload_limit,
                   files=[Path(f) for f in files] if files is not None else None,
                   keep_payloads=False)


def run(spec: str | Path, *, token: str | None = None, base_url: str = DEFAULT_BASE_URL,
        out: str | Path | None = None, ledger: str | Path | None = None, sandbox: bool = False,
        requests_per_hour: float | None = None, notify: Callable[[str], None] | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        **gates: Any) -> RunSummary:
    """Validate exactly as `validate`, then send the valid rows (`etl run`). Rows an earlier run
    got accepted are never sent again; a crashed run resumes from its ledger.

    `token`: the API key (default: the environment variable VIRTUOUS_API_TOKEN; never logged).
    `ledger`: default load.ledger, else `<spec folder>/.ledger/<name>.sqlite`. `sandbox=True`
    names the rehearsal ledger (`<name>.sandbox.sqlite`): pass a local sandbox's `base_url`
    and key. `requests_per_hour` overrides the spec's budget (one budget per organization).
    `gates`: the other `RunOptions` fields (in_doubt, new_only, archive, quarantine, min_age,
    max_reject_rate, max_failed, recover_ledger, skip_crm_check, handle_signals)."""
    options = RunOptions(token=_token(token), base_url=_base_url(base_url),
                         requests_per_hour=requests_per_hour, notify=notify or _silent,
                         on_progress=on_progress, **_run_gates(gates))
    pipeline = open_pipeline(spec, ledger_path=_path(ledger), sandbox=sandbox,
                             out_dir=_path(out))
    return run_pipeline(pipeline, options)[1]


def reconcile(spec: str | Path, *, token: str | None = None,
              base_url: str = DEFAULT_BASE_URL, out: str | Path | None = None,
              ledger: str | Path | None = None, sandbox: bool = False,
              window_hours: float = 30.0, min_interval_hours: float = 1.0, force: bool = False,
              after_batch: bool = False, requests_per_hour: float | None = None,
              notify: Callable[[str], None] | None = None) -> ReconcileSummary:
    """Move the ledger's accepted rows to confirmed / needs_review (`etl reconcile`): polls
    CRM+ for what it holds, at most every `min_interval_hours` unless `force`; rows still
    unseen after `window_hours` go to needs_review (review CSV in `out`). `after_batch=True`
    says the nightly batch has run (a sandbox's `run_batch()`)."""
    options = ReconcileOptions(token=_token(token), base_url=_base_url(base_url),
                               window_hours=window_hours, min_interval_hours=min_interval_hours,
                               force=force, after_batch=after_batch,
                               requests_per_hour=requests_per_hour, notify=notify or _silent)
    pipeline = open_pipeline(spec, ledger_path=_path(ledger), sandbox=sandbox,
                             out_dir=_path(out))
    return reconcile_pipeline(pipeline, options)


_RUN_GATES = frozenset({"in_doubt", "new_only", "archive", "quarantine", "min_age",
                        "max_reject_rate", "max_failed", "recover_ledger", "skip_crm_check",
                        "handle_signals"})


class ApiUsageError(EtlError):
    """A wrong argument to the API (exit code 2, like a CLI usage error)."""


def _run_gates(gates: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(gates) - _RUN_GATES)
    if unknown:
        raise ApiUsageError(f"etl.run() got unknown option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(_RUN_GATES))}")
    return {k: Path(v) if k in ("archive", "quarantine") and v is not None else v
            for k, v in gates.items()}


def _token(token: str | None) -> str:
    if token is None:
        token = secret_from_env(TOKEN_ENV)
    register(token)  # never in a log, report or ledger, whichever way it came
    if not token:
        raise ApiUsageError(f"no API key: pass token=... or set {TOKEN_ENV}")
    return token


def _base_url(url: str) -> str:
    try:
        return check_base_url(url)
    except ValueError as exc:
        raise ApiUsageError(str(exc)) from None


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None


def _silent(message: str) -> None:
    """The library's default: say nothing (pass `notify=print` or a logger's info)."""
