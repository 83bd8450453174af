"""Declarative batch import of donor data into Virtuous CRM+.

One package per stage; each imports only from those below it (docs/architecture.md, enforced by
import-linter in `python3 dev.py lint`):

    cli/         click skins: parse, open the Pipeline once, one library call, render
    run/         the orchestrators: dry_run, run_pipeline, prematch
    unattended/  drop folders, file moves, run lock, gates    | independent of each other
    confirm/     reconcile: webhooks, polling                 |
    match/       pre-match against what CRM+ already holds
    load/        plan, budget (the one retry loop), sender, client, ledger
    report/      report.json, rejects.csv, payloads.jsonl, report.html
    prepare/     mapping, rules, validation, payload JSON
    read/        files -> string frames
    spec/        YAML -> frozen objects; Pipeline
    transforms/, targets/   the vocabulary the YAML names
    base/        errors, exit codes, redaction, safe writes (imports nothing of etl)
    sandbox/     the local CRM+ server; only the CLI imports it
    api          the public Python API (docs/api.md), above run/ and confirm/ beside cli/

`import etl` stays cheap: the API's names load on first use (`etl.run`, `etl.validate`, ...).
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etl.api import (
        ApiUsageError,
        DryRun,
        ReconcileSummary,
        Report,
        RunSummary,
        reconcile,
        run,
        validate,
    )
    from etl.base.errors import EtlError

__version__ = "0.2.0"
__all__ = ["ApiUsageError", "DryRun", "EtlError", "ReconcileSummary", "Report", "RunSummary",
           "__version__", "reconcile", "run", "validate"]


class CallablePackage(types.ModuleType):
    """`etl.run` is both the package of orchestrators (`etl.run.submit`) and the API's
    `etl.run(spec, ...)`: calling the package calls `etl.api.run` (typed code: `from etl.api
    import run`)."""

    def __call__(self, spec: Any, **options: Any) -> Any:
        from etl.api import run as run_spec

        return run_spec(spec, **options)


if not TYPE_CHECKING:  # mypy: `etl.run` is the function (etl.api.run)
    from etl import run  # a docstring-only package: cheap; made callable below

    run.__class__ = CallablePackage


def __getattr__(name: str) -> Any:
    """Load the API on first use: `import etl` stays cheap (no polars, no httpx)."""
    if name == "EtlError":
        from etl.base.errors import EtlError

        return EtlError
    if name in __all__:
        from etl import api

        return getattr(api, name)
    raise AttributeError(f"module 'etl' has no attribute {name!r}")
