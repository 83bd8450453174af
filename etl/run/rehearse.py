"""`etl rehearse`: a whole migration against ONE local sandbox, in order, then its import.

Each spec runs (as `etl run`) against the same sandbox, so gifts sent after their contacts find
them; then the sandbox's nightly batch imports everything, its per-row outcome goes into each
ledger (`sandbox_outcomes`, etl/confirm/sandbox_outcomes.py), and each pipeline is reconciled.
Requests are paced by the sandbox's own limit (`GET /sandbox/rate-limit`), not by the spec's
budget for the real API: a sandbox started with `--sandbox-rate none` is not paced at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from etl.base.exitcodes import EXIT_OK, EXIT_ROWS
from etl.confirm.reconcile import ReconcileOptions, key_prefix, reconcile
from etl.confirm.sandbox_outcomes import fetch_outcomes, final_rows, record_outcomes, sandbox_pace
from etl.run.options import RunOptions, RunSummary
from etl.run.submit import run_pipeline
from etl.spec.pipeline import Pipeline

UNPACED = 1e9  # requests an hour that never wait: reconcile's budget has no "unlimited"
STOPS = (4, 5)  # credentials refused, interrupted: the next spec would fare no better


@dataclass
class PipelineResult:
    """One pipeline of a rehearsal: its run, its reconcile, its rows by final state."""

    name: str
    spec: str
    ledger: str
    run: RunSummary
    reconcile: dict[str, Any] | None = None
    states: dict[str, int] = field(default_factory=dict)
    sandbox_outcomes: dict[str, int] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "ledger": self.ledger,
                "run": {"exit_code": self.run.exit_code, "exit_reason": self.run.exit_reason,
                        "counts": self.run.counts, "requests": self.run.requests,
                        "elapsed_seconds": self.run.elapsed_seconds,
                        "report_dir": self.run.report_dir},
                "reconcile": self.reconcile, "states": self.states,
                "sandbox_outcomes": self.sandbox_outcomes, "rows": self.rows}


@dataclass
class Rehearsal:
    sandbox_url: str
    requests_per_hour: float | None
    pipelines: list[PipelineResult]
    batch: dict[str, Any] | None = None
    elapsed_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0: every run and reconcile clean and nothing left in the sandbox's needs update."""
        codes = [p.run.exit_code for p in self.pipelines]
        codes += [int(p.reconcile["exit_code"]) for p in self.pipelines if p.reconcile]
        if any(c in STOPS for c in codes):
            return max(c for c in codes if c in STOPS)
        stuck = any(p.sandbox_outcomes.get("needs_update") for p in self.pipelines)
        return EXIT_OK if not any(codes) and not stuck and self.batch is not None else EXIT_ROWS

    def to_json(self) -> dict[str, Any]:
        return {"sandbox_url": self.sandbox_url, "requests_per_hour": self.requests_per_hour,
                "exit_code": self.exit_code, "elapsed_seconds": round(self.elapsed_seconds, 2),
                "batch": self.batch, "pipelines": [p.to_json() for p in self.pipelines]}


def rehearse(pipelines: Sequence[Pipeline], base_url: str, token: str, *,
             notify: Callable[[str], None] = lambda m: None,
             clock: Callable[[], float] | None = None) -> Rehearsal:
    """Run, import, record outcomes, reconcile; see the module docstring."""
    import time

    now = clock or time.monotonic
    started = now()
    per_hour = sandbox_pace(base_url, token)
    notify(f"sandbox {base_url}: paced at " + (f"{per_hour:,.0f} requests/hour" if per_hour
                                                 else "no limit"))
    result = Rehearsal(base_url, per_hour, [])
    for pipeline in pipelines:
        notify(f"\n== {pipeline.spec.name} ==")
        options = RunOptions(token=token, base_url=base_url, notify=notify,
                             requests_per_hour=per_hour, unlimited=per_hour is None)
        summary = run_pipeline(pipeline, options)[1]
        result.pipelines.append(PipelineResult(pipeline.spec.name, str(pipeline.path),
                                               str(pipeline.ledger_path), summary))
        if summary.exit_code in STOPS:
            result.elapsed_seconds = now() - started
            return result
    result.batch = _run_batch(base_url, token)
    notify(f"\nsandbox import: {result.batch}")
    outcomes = fetch_outcomes(base_url, token)
    for pipeline, item in zip(pipelines, result.pipelines, strict=True):
        prefix = key_prefix(pipeline)
        if pipeline.ledger_path.exists():
            record_outcomes(pipeline.ledger_path, outcomes, prefix)
            done = reconcile(pipeline, ReconcileOptions(
                token=token, base_url=base_url, force=True, after_batch=True,
                requests_per_hour=per_hour or UNPACED, notify=notify))
            item.reconcile = done.to_json()
            item.rows = final_rows(pipeline.ledger_path, prefix)
        item.states = dict(Counter(r["status"] for r in item.rows))
        item.sandbox_outcomes = dict(Counter(r["sandbox_outcome"] for r in item.rows
                                             if r["sandbox_outcome"]))
    result.elapsed_seconds = now() - started
    return result


def _run_batch(base_url: str, token: str) -> dict[str, Any]:
    response = httpx.post(base_url.rstrip("/") + "/sandbox/run-batch", timeout=600.0,
                          headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    response.raise_for_status()
    batch: dict[str, Any] = response.json()
    return batch
