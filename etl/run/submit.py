"""`etl run` as one call: the dry run (same path, same report files), then ledger and sender.

    run_pipeline(open_pipeline(spec), RunOptions(token=..., base_url=...)) -> (DryRun, RunSummary)

Order: validate and write the reports -> open the ledger, settle what a crash left `sending`
(in doubt) -> plan every source row against earlier runs (already accepted, changed, in doubt) ->
record the rows -> ask which organization the key writes to (refuse a mismatch) -> send.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etl import __version__
from etl.base.errors import CredentialsRefused, SpecError, TransientError
from etl.load.budget import RequestBudget, Throttled
from etl.load.client import CrmClient, check_organization
from etl.load.ledger import OK_STATUSES, Ledger, damaged
from etl.load.ledger_guard import LedgerUnknown
from etl.load.plan import Plan, plan_rows
from etl.load.plan import batches as plan_batches
from etl.load.sender import Batch, Sender, SendSettings, Stopped, money
from etl.report.cost import cost_line, estimate
from etl.report.write import DryRun
from etl.run import direct as direct_path
from etl.run import prematch
from etl.run.dry_run import dry_run
from etl.run.lost_ledger import first_send_check, reader, recover
from etl.run.options import RunOptions, RunSummary
from etl.spec.parse import LoadedSpec
from etl.spec.pipeline import Pipeline
from etl.targets import get_target
from etl.unattended import drops
from etl.unattended.gates import RunLock, control_totals, reject_gate

__all__ = ["Plan", "RunOptions", "RunSummary", "plan_rows", "run_pipeline"]

from etl.base.exitcodes import (  # noqa: F401  (re-exported for etl.cli.run)
    EXIT_CREDENTIALS,
    EXIT_INTERRUPTED,
    EXIT_LEDGER_UNKNOWN,
    EXIT_OK,
    EXIT_ROWS,
    EXIT_SOURCE,
    EXIT_USAGE,
)


def run_pipeline(pipeline: Pipeline, options: RunOptions) -> tuple[DryRun | None, RunSummary]:
    """Validate exactly as the dry run does (same report files), then submit the valid rows.
    The ledger's lock (`pipeline.ledger_path`) is held for the whole run; a drop folder's
    processed files are left out (no DryRun when no file is left to read)."""
    ledger_path = pipeline.ledger_path
    try:
        return _run_locked(pipeline, ledger_path, options)
    except sqlite3.DatabaseError as exc:  # disk full, a damaged file: nothing is lost (in doubt)
        raise damaged(ledger_path, exc) from None


def _run_locked(loaded: Pipeline, ledger_path: Path,
                options: RunOptions) -> tuple[DryRun | None, RunSummary]:
    with RunLock(ledger_path) as lock:
        spec = loaded.spec
        with Ledger(ledger_path, lock=False) as ledger:  # before anything reads or writes it
            ledger.claim(target=spec.target, source=spec.keys.source, pipeline=spec.name)
        if lock.stale_message:
            options.notify(lock.stale_message)
        intake = _intake(loaded, ledger_path, options)
        if intake is not None and not intake.to_read:
            return None, _idle_run(loaded, ledger_path, options, intake, lock.stale_pid)
        dry = dry_run(loaded, files=intake.paths() if intake is not None else None)
        if loaded.spec_changed():  # the file's bytes, hashed again: not loaded a second time
            raise SpecError("the spec changed while the run was reading it; run again",
                            path=loaded.path)
        summary = asyncio.run(_submit(dry, loaded, ledger_path, options, intake, lock.stale_pid))
    summary.report_dir = str(dry.paths.out_dir)
    return dry, summary


def _intake(loaded: LoadedSpec, ledger_path: Path, options: RunOptions) -> drops.Intake | None:
    """A drop folder's files, oldest first, minus those processed before; unreadable ones
    quarantined. None: the source as it is (a single file, no drop options)."""
    if not (drops.is_drop(loaded) or options.new_only or options.archive or options.quarantine
            or options.min_age):
        return None
    with Ledger(ledger_path, lock=False) as ledger:
        return drops.intake(loaded, ledger.db, new_only=options.new_only,
                            quarantine_dir=options.quarantine, min_age=options.min_age,
                            notify=options.notify)


def _idle_run(loaded: LoadedSpec, ledger_path: Path, options: RunOptions, intake: drops.Intake,
              stale_pid: int | None) -> RunSummary:
    """No file left to read: the run is recorded all the same (what it saw, what it moved)."""
    spec = loaded.spec
    with Ledger(ledger_path, lock=False) as ledger:
        ledger.recover()
        run_id = ledger.start_run(
            pipeline=spec.name, target=spec.target, spec_path=str(loaded.path),
            spec_hash=loaded.sha256, tool_version=__version__, base_url=options.base_url)
        drops.settle_files(intake, ledger.db, run_id, [], options.archive, options.notify)
        summary = RunSummary(run_id=run_id, pipeline=spec.name, ledger=str(ledger_path),
                             organization=None, exit_code=EXIT_OK, exit_reason="no new files",
                             counts={}, totals=[], stale_lock_pid=stale_pid)
        _add_files(summary, intake)
        ledger.finish_run(run_id, summary.exit_code, summary.exit_reason, summary.to_json())
    return summary


def _add_files(summary: RunSummary, intake: drops.Intake) -> None:
    """Per-file outcomes into the summary; quarantined or unmovable files make the exit 1."""
    summary.files = [f.to_json() for f in intake.files]
    problems = intake.problems()
    if problems:
        summary.exit_reason += "; " + ", ".join(problems)
        summary.exit_code = summary.exit_code or EXIT_ROWS


class _Recorder:
    def __init__(self, ledger: Ledger, max_failed: int | None = None) -> None:
        self.ledger = ledger
        self.max_failed, self.failed = max_failed, 0
        self.stop: asyncio.Event | None = None
        self.tripped: str | None = None

    def sending(self, batch: Batch) -> None:
        self.ledger.mark_sending(batch.id, [i.row_id for i in batch.items])

    def settle(self, batch: Batch, outcomes: Any) -> None:
        self.ledger.settle((o.row_id, o.status, o.attempts, o.http_status, o.code, o.details)
                           for o in outcomes)
        # rows in doubt count too: a server that answers 500 to everything must stop the run
        self.failed += sum(o.status in ("failed", "in_doubt") for o in outcomes)
        if self.max_failed is not None and self.failed > self.max_failed and not self.tripped:
            self.tripped = (f"stopped: {self.failed} rows failed or in doubt, more than "
                            f"--max-failed {self.max_failed}; later batches were not sent")
            if self.stop is not None:
                self.stop.set()


async def _submit(dry: DryRun, loaded: LoadedSpec, ledger_path: Path, options: RunOptions,
                  intake: drops.Intake | None = None, stale_pid: int | None = None) -> RunSummary:
    spec = loaded.spec
    target = get_target(spec.target)
    policy = options.in_doubt or spec.load.in_doubt or (
        "park" if spec.target == "gift_transaction" else "resend")
    started = time.monotonic()
    with Ledger(ledger_path, lock=False) as ledger:  # run_pipeline holds its lock
        found = ledger.recover()
        if found:
            options.notify(f"{found} rows were in doubt after an interrupted run "
                           f"(policy: {policy})")
        if options.recover_ledger and spec.target == "gift_transaction":
            await recover(loaded, ledger, options)
        elif options.recover_ledger:
            options.notify("--recover-ledger: nothing to recover for contacts (a Contact "
                           "Transaction sent again merges by reference)")
        plan = plan_rows(dry.result, loaded, ledger.prior_state(), policy)
        run_id = ledger.start_run(
            pipeline=spec.name, target=spec.target, spec_path=str(loaded.path),
            spec_hash=loaded.sha256, tool_version=__version__, base_url=options.base_url,
            in_doubt_policy=policy)
        ledger.add_files(run_id, [(f.path, f.sha256, f.size, f.rows) for f in dry.result.files])
        first_id = ledger.add_rows([(run_id, *r) for r in plan.rows])
        hold = reject_gate(dry.result, options.max_reject_rate)
        if not hold:  # the spec's `match:` policy keeps back rows that exist in CRM+
            await prematch.apply_policy(plan, dry, loaded, ledger, run_id, first_id, options)
        direct = direct_path.is_direct(loaded)  # Find, Find, POST per row (etl/run/direct.py)
        batches = [] if hold or direct else plan_batches(plan, loaded, run_id, first_id)
        rows = direct_path.direct_rows(plan, ledger, first_id) if direct and not hold else []
        per_hour = None if options.unlimited else (
            options.requests_per_hour or spec.load.requests_per_hour)
        bound = 0
        if rows:
            try:
                bound = direct_path.announce(rows, loaded, per_hour, options.notify)
            except direct_path.DirectRefused as exc:
                ledger.finish_run(run_id, exc.exit_code, str(exc), {})
                raise
        elif batches:  # what the run will cost, before it spends anything (etl/report/cost.py)
            options.notify("plan: " + cost_line(estimate(spec, len(plan.sends), per_hour=per_hour)))
        budget = RequestBudget(requests_per_hour=per_hour, reserve_share=spec.load.reserve_share,
                               burst=2)
        client = CrmClient(options.base_url, options.token, timeout=spec.load.timeout_seconds,
                           transport=options.transport, observe=budget.observe)
        recorder = _Recorder(ledger, options.max_failed)
        sender = Sender(client, budget, target, spec.keys.source, recorder,
                        SendSettings(concurrency=spec.load.concurrency,
                                     max_attempts=spec.load.max_attempts,
                                     backoff_base=options.backoff_base,
                                     backoff_cap=options.backoff_cap,
                                     retry_unknown=policy == "resend" and not direct,
                                     max_wait=spec.load.max_wait_seconds),
                        on_progress=_progress(options, batches))
        recorder.stop = sender.stop
        loader = direct_path.make_loader(rows, loaded, ledger, sender, run_id=run_id,
                                         max_failed=options.max_failed,
                                         on_progress=options.on_progress) if rows else None
        organization: str | None = None
        exit_code, reason = EXIT_OK, "finished"
        interrupted = _Interrupt(sender, options.handle_signals)
        try:
            async with client:
                if hold:
                    options.notify(hold)
                elif not batches and not rows:  # a re-run of loaded files spends nothing
                    options.notify("nothing to send: every valid row was handled before")
                else:
                    organization = check_organization(
                        await sender.request("organization"), spec.organization, "write")
                    ledger.set_run(run_id, organization=organization)
                    options.notify(f"writing to organization: {organization}")
                    if spec.target == "gift_transaction" and not options.skip_crm_check and \
                            not ledger.has_sent():
                        await first_send_check(reader(sender), loaded, ledger_path)
                    if loader is not None:
                        await loader.run(rows)
                    else:
                        await sender.run(batches)
        except CredentialsRefused as exc:
            exit_code, reason = EXIT_CREDENTIALS, client.redact(str(exc))
        except LedgerUnknown as exc:
            exit_code, reason = EXIT_LEDGER_UNKNOWN, client.redact(str(exc))
        except Throttled as exc:
            exit_code, reason = EXIT_ROWS, client.redact(
                f"stopped: CRM+ kept answering 429 ({exc}); unsent rows stay pending for the "
                "next run")
        except TransientError as exc:
            exit_code, reason = EXIT_ROWS, client.redact(f"CRM+ unreachable: {exc}")
        except Stopped:
            pass
        finally:
            interrupted.restore()
        if loader is not None:  # the --max-failed gate, counted by the direct path
            recorder.failed, recorder.tripped = loader.stats.failed, loader.stats.tripped
        counts = ledger.counts(run_id)
        # rejected before sending: validation, and a key twice in one run (status "rejected")
        unsent = dry.result.rejected + sum(r[6] == "DUPLICATE_KEY_IN_RUN" for r in plan.rows)
        if exit_code == EXIT_OK and interrupted.fired:
            exit_code, reason = EXIT_INTERRUPTED, "interrupted: stopped sending"
        elif exit_code == EXIT_OK and (hold or recorder.tripped):
            exit_code, reason = EXIT_ROWS, hold or recorder.tripped or ""
        elif exit_code == EXIT_OK and any(s not in (*OK_STATUSES, *prematch.OK_STATUSES)
                                          for s in counts):
            exit_code, reason = EXIT_ROWS, "finished: " + _not_accepted(counts, unsent)
        elif exit_code == EXIT_OK:
            reason = "finished: " + _not_accepted(counts, unsent)
        doubt = counts.get("in_doubt", 0)
        new_doubt = ledger.sent_in_doubt(run_id)
        if doubt:
            parked = f", {doubt - new_doubt} parked from earlier runs" if doubt > new_doubt else ""
            advice = direct_path.doubt_advice(loaded.path) if direct else (
                f"after CRM+'s import has run, `etl reconcile {loaded.path} --after-batch` "
                "confirms them")
            reason += (f"; {new_doubt} rows went in doubt in this run (sent, no definite answer;"
                       f" never re-sent blindly){parked}: {advice}")
        totals = [{"stage": s, "currency": c, "rows": n, "amount": money(cents)}
                  for s, c, n, cents in ledger.totals(run_id)]
        st = sender.stats
        summary = RunSummary(
            run_id=run_id, pipeline=spec.name, ledger=str(ledger_path), organization=organization,
            exit_code=exit_code, exit_reason=reason, counts=counts, totals=totals,
            requests=budget.sent, http=dict(sorted(st.http.items())), throttled=budget.throttled,
            retries=st.retries, split_requests=st.split_requests, fallback_to_single=st.fallback,
            rows_per_batch_request=(round(st.rows_in_batches / st.batch_requests, 2)
                                    if st.batch_requests else 0.0),
            notices=dict(client.notices), in_doubt_found=found, in_doubt_new=new_doubt,
            in_doubt_bound=spec.load.concurrency * (1 if direct else spec.load.batch_size),
            elapsed_seconds=round(time.monotonic() - started, 3), stale_lock_pid=stale_pid,
            control_totals=control_totals(dry.result, totals),
            gates={"max_reject_rate": options.max_reject_rate,
                   "reject_rate": round(dry.result.reject_rate(), 4), "held": hold,
                   "max_failed": options.max_failed, "failed": recorder.failed,
                   "stopped": recorder.tripped})
        if direct:
            summary.direct = direct_path.summary_block(
                loader.stats if loader else None, bound, loaded)
            if loader is not None:
                options.notify(direct_path.summary_line(summary.direct))
        if intake is not None:
            drops.settle_files(intake, ledger.db, run_id, dry.result.files, options.archive,
                               options.notify)
            _add_files(summary, intake)
        ledger.finish_run(run_id, summary.exit_code, summary.exit_reason, summary.to_json())
    return summary


def _not_accepted(counts: dict[str, int], unsent: int) -> str:
    """The end-of-run line says what happened: "163 rejected by validation; 2,837 of 2,837 sent
    were accepted; 2 refused by CRM+, 1 in doubt". Validation rejects (never sent) are told
    apart from CRM+ refusals: both carry the ledger status `rejected`."""
    counts = dict(counts)
    rejected = counts.pop("rejected", 0)
    refused = max(0, rejected - unsent)
    accepted = counts.pop("accepted", 0)
    doubt, failed = counts.pop("in_doubt", 0), counts.pop("failed", 0)
    sent = accepted + refused + doubt + failed
    parts = [f"{rejected - refused:,} rejected by validation"] if rejected - refused else []
    # (a duplicate key counts with them: both are found before anything is sent)
    parts.append(f"{accepted:,} of {sent:,} sent were accepted" if sent else "nothing sent")
    others = [f"{n:,} {what}" for n, what in ((refused, "refused by CRM+"), (doubt, "in doubt"),
                                              (failed, "failed")) if n]
    others += [f"{n:,} {status.replace('_', ' ')}" for status, n in sorted(counts.items())
               if n and status not in ("confirmed", *prematch.OK_STATUSES)]
    return "; ".join(parts + ([", ".join(others)] if others else []))


class _Interrupt:
    """Ctrl-C / SIGTERM: stop taking batches, let requests in flight finish, record them."""

    def __init__(self, sender: Sender, enabled: bool) -> None:
        self.fired = False
        self.signals: list[signal.Signals] = []
        if not enabled:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, self._fire, sender)
                self.signals.append(sig)

    def _fire(self, sender: Sender) -> None:
        self.fired = True
        sender.stop.set()

    def restore(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.signals:
            loop.remove_signal_handler(sig)


def _progress(options: RunOptions, batches: list[Batch]) -> Callable[[Sender], None] | None:
    """Rows done, requests, budget left and the ETA from the budget, after every batch."""
    report, to_send = options.on_progress, sum(len(b.items) for b in batches)
    if report is None:
        return None
    return lambda s: report({
        "rows": s.stats.rows_done, "to_send": to_send, "accepted": s.stats.accepted_rows,
        "requests": s.budget.sent, "budget_remaining": s.budget.remaining,
        "eta_seconds": s.budget.eta(len(batches) - s.stats.batches_done)})
