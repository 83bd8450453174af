"""`etl run` as one call: the dry run (same path, same report files), then ledger and sender.

    run_pipeline(spec_path, RunOptions(token=..., base_url=...)) -> RunSummary

Order: validate and write the reports -> open the ledger, settle what a crash left `sending`
(in doubt) -> plan every source row against earlier runs (already accepted, changed, in doubt) ->
record the rows -> ask which organization the key writes to (refuse a mismatch) -> send.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from etl import __version__
from etl.client import DEFAULT_BASE_URL, CrmClient, OrganizationMismatch
from etl.dryrun import DryRun, dry_run
from etl.errors import CredentialsRefused, SpecError, TransientError
from etl.ledger import OK_STATUSES, KeyState, Ledger
from etl.load import Batch, Item, Sender, SendSettings, Stopped, money
from etl.mapping import key_expr
from etl.ratelimit import RequestBudget
from etl.result import ValidationResult
from etl.spec import LoadedSpec, load_spec
from etl.targets import get_target

EXIT_OK, EXIT_ROWS, EXIT_USAGE, EXIT_SOURCE, EXIT_CREDENTIALS, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5


@dataclass(kw_only=True)
class RunOptions:
    """How to run: where to, with which key, which ledger; test hooks at the end."""

    token: str
    base_url: str = DEFAULT_BASE_URL
    ledger_path: Path | None = None
    out_dir: Path | None = None
    sandbox: bool = False
    in_doubt: str | None = None
    requests_per_hour: float | None = None  # override the spec's budget (None: the spec's)
    unlimited: bool = False
    transport: httpx.AsyncBaseTransport | None = None
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    handle_signals: bool = True
    notify: Callable[[str], None] = lambda message: None
    on_progress: Callable[[dict[str, Any]], None] | None = None


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
    in_doubt_found: int = 0
    in_doubt_bound: int = 0
    elapsed_seconds: float = 0.0
    report_dir: str | None = None
    sandbox_batch: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["http"] = {str(k): v for k, v in self.http.items()}
        return data


def default_ledger_path(loaded: LoadedSpec, *, sandbox: bool = False) -> Path:
    """`load.ledger` (relative to the spec), else `<spec folder>/.ledger/<name>.sqlite`;
    a sandbox run gets `.sandbox` before the suffix so rehearsals never mix with real runs."""
    configured = loaded.spec.load.ledger
    path = (loaded.base_dir / configured) if configured else (
        loaded.base_dir / ".ledger" / f"{loaded.spec.name}.sqlite")
    return path.with_name(f"{path.stem}.sandbox{path.suffix}") if sandbox else path


def run_pipeline(spec_path: Path, options: RunOptions) -> tuple[DryRun, RunSummary]:
    """Validate exactly as the dry run does (same report files), then submit the valid rows."""
    dry = dry_run(spec_path, out_dir=options.out_dir)
    loaded = load_spec(spec_path)
    if loaded.sha256 != dry.result.spec_hash:
        raise SpecError("the spec changed while the run was reading it; run again", path=spec_path)
    ledger_path = options.ledger_path or default_ledger_path(loaded, sandbox=options.sandbox)
    summary = asyncio.run(_submit(dry, loaded, ledger_path, options))
    summary.report_dir = str(dry.paths.out_dir)
    return dry, summary


@dataclass
class Plan:
    """Every source row of the run in source order, with what to do with it.

    `rows` are ledger rows (source_file, record, key, payload_hash, status, reason, error_code,
    error_details, amount_cents, currency); `sends` the indices of rows to send."""

    rows: list[tuple[Any, ...]]
    keys: list[str]
    payloads: list[str]
    cents: list[int | None]
    sends: list[int]

    def sends_by_file(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i in self.sends:
            out.setdefault(self.rows[i][0], []).append(i)
        return out


def _valid_frame(result: ValidationResult, gift: bool) -> pl.DataFrame:
    frame = result.payloads
    if gift:
        amount = pl.col("_payload").str.json_path_match("$.amount").cast(pl.Float64)
        money = [(amount * 100).round(0).cast(pl.Int64).alias("_cents"),
                 pl.col("_payload").str.json_path_match("$.currencyCode").alias("_currency")]
    else:
        money = [pl.lit(None, pl.Int64).alias("_cents"), pl.lit(None, pl.String).alias("_currency")]
    return frame.with_columns(*money)


def _rejected_frame(result: ValidationResult, loaded: LoadedSpec) -> pl.DataFrame:
    spec = loaded.spec
    rejects = result.rejects.select(pl.exclude("_field", "_rule", "_value", "_error"))
    try:  # the id of a rejected row, when its columns allow (joins the ledger to the source)
        ident = rejects.select(key_expr(spec.keys.id).cast(pl.String).alias("_id"))["_id"]
    except Exception:  # a row too broken for an id keeps a null key
        ident = pl.Series("_id", [None] * rejects.height, dtype=pl.String)
    fails = result.failures.group_by("_source_file", "_record", maintain_order=True).agg(
        pl.col("rule").str.join(" | ").alias("_code"),
        pl.struct(pl.col("field"), pl.col("rule").alias("code"), pl.col("error").alias("message"))
        .struct.json_encode().str.join(",").alias("_details"))
    keyed = rejects.select("_source_file", "_record").with_columns(
        (pl.lit(f"{spec.target}:{spec.keys.source}:") + ident).alias("_key"))
    return keyed.join(fails, on=["_source_file", "_record"], how="left").with_columns(
        ("[" + pl.col("_details") + "]").alias("_details"), pl.lit(True).alias("_invalid"))


def plan_rows(result: ValidationResult, loaded: LoadedSpec, prior: dict[str, KeyState],
              policy: str) -> Plan:
    """Classify every source row against what earlier runs did with its key."""
    gift = loaded.spec.target == "gift_transaction"
    both = pl.concat([_valid_frame(result, gift), _rejected_frame(result, loaded)],
                     how="diagonal_relaxed")
    order = {f.path: i for i, f in enumerate(result.files)}
    both = both.with_columns(pl.col("_source_file").replace_strict(
        order, default=len(order), return_dtype=pl.Int64).alias("_fi")).sort("_fi", "_record")
    plan = Plan([], [], [], [], [])
    seen: set[str] = set()
    cols = [both[c].to_list() for c in ("_source_file", "_record", "_key", "_payload", "_cents",
                                         "_currency", "_invalid", "_code", "_details")]
    for i, (file, rec, key, payload, cents, cur, invalid, code, details) in enumerate(zip(
            *cols, strict=True)):
        plan.keys.append(key)
        plan.payloads.append(payload)
        plan.cents.append(cents)
        if invalid:
            plan.rows.append((file, rec, key, None, "rejected", "invalid", code, details, None,
                              None))
            continue
        digest = hashlib.sha256(payload.encode()).hexdigest()
        status, reason, code, details = "pending", "new", None, None
        state = prior.get(key)
        if key in seen:
            status, code = "rejected", "DUPLICATE_KEY_IN_RUN"
        elif state is not None and state.doubt_hash is not None:
            if policy == "park":
                status, reason, code = "in_doubt", "parked", "IN_DOUBT"
            else:
                reason = "resend_in_doubt"
        elif state is not None and state.accepted_hash is not None:
            if state.accepted_hash == digest:
                status, reason = "already_accepted", f"accepted in run {state.accepted_run}"
            elif gift:
                status, reason, code = "conflict", "changed", "CHANGED_AFTER_ACCEPT"
                details = (f"accepted in run {state.accepted_run} with another payload; "
                           "gifts are never re-sent: reverse or correct it in CRM+")
            else:
                reason = "update"
        seen.add(key)
        if status == "pending":
            plan.sends.append(i)
        plan.rows.append((file, rec, key, digest, status, reason, code, details, cents, cur))
    return plan


def _batches(plan: Plan, loaded: LoadedSpec, run_id: int, first_id: int) -> list[Batch]:
    spec = loaded.spec
    size = spec.load.batch_size
    out: list[Batch] = []
    for file, rows in plan.sends_by_file().items():
        envelope: dict[str, object] = {}
        if spec.target == "gift_transaction":
            envelope = {"createImport": True, "batch": f"{spec.name}-run{run_id}",
                        "importName": f"{spec.name}: {Path(file).name} (run {run_id})",
                        "batchTotal": 0}
        for start in range(0, len(rows), size):
            items = [Item(first_id + i, plan.keys[i], plan.payloads[i], plan.cents[i])
                     for i in rows[start:start + size]]
            out.append(Batch(f"r{run_id}-b{len(out) + 1:06d}", items, envelope))
    return out


class _Recorder:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def sending(self, batch: Batch) -> None:
        self.ledger.mark_sending(batch.id, [i.row_id for i in batch.items])

    def settle(self, batch: Batch, outcomes: Any) -> None:
        self.ledger.settle((o.row_id, o.status, o.attempts, o.http_status, o.code, o.details)
                           for o in outcomes)


async def _submit(dry: DryRun, loaded: LoadedSpec, ledger_path: Path,
                  options: RunOptions) -> RunSummary:
    spec = loaded.spec
    target = get_target(spec.target)
    policy = options.in_doubt or spec.load.in_doubt or (
        "park" if spec.target == "gift_transaction" else "resend")
    started = time.monotonic()
    with Ledger(ledger_path) as ledger:
        found = ledger.recover()
        if found:
            options.notify(f"{found} rows were in doubt after an interrupted run "
                           f"(policy: {policy})")
        plan = plan_rows(dry.result, loaded, ledger.prior_state(), policy)
        run_id = ledger.start_run(
            pipeline=spec.name, target=spec.target, spec_path=str(loaded.path),
            spec_hash=loaded.sha256, tool_version=__version__, base_url=options.base_url,
            in_doubt_policy=policy)
        ledger.add_files(run_id, [(f.path, f.sha256, f.size, f.rows) for f in dry.result.files])
        first_id = ledger.add_rows([(run_id, *r) for r in plan.rows])
        batches = _batches(plan, loaded, run_id, first_id)
        per_hour = None if options.unlimited else (
            options.requests_per_hour or spec.load.requests_per_hour)
        budget = RequestBudget(requests_per_hour=per_hour, reserve_share=spec.load.reserve_share,
                               burst=2)
        client = CrmClient(options.base_url, options.token, timeout=spec.load.timeout_seconds,
                           transport=options.transport, observe=budget.observe)
        sender = Sender(client, budget, target, spec.keys.source, _Recorder(ledger),
                        SendSettings(concurrency=spec.load.concurrency,
                                     max_attempts=spec.load.max_attempts,
                                     backoff_base=options.backoff_base,
                                     backoff_cap=options.backoff_cap),
                        on_progress=_progress(options, batches))
        organization: str | None = None
        exit_code, reason = EXIT_OK, "finished"
        interrupted = _Interrupt(sender, options.handle_signals)
        try:
            async with client:
                if not batches:  # a re-run of loaded files spends no request at all
                    options.notify("nothing to send: every valid row was handled before")
                else:
                    organization = await _check_organization(sender, spec.organization)
                    ledger.set_run(run_id, organization=organization)
                    options.notify(f"writing to organization: {organization}")
                    await sender.run(batches)
        except CredentialsRefused as exc:
            exit_code, reason = EXIT_CREDENTIALS, client.redact(str(exc))
        except TransientError as exc:
            exit_code, reason = EXIT_ROWS, client.redact(f"CRM+ unreachable: {exc}")
        except Stopped:
            pass
        finally:
            interrupted.restore()
        counts = ledger.counts(run_id)
        if exit_code == EXIT_OK and interrupted.fired:
            exit_code, reason = EXIT_INTERRUPTED, "interrupted: stopped sending"
        elif exit_code == EXIT_OK and any(s not in OK_STATUSES for s in counts):
            exit_code, reason = EXIT_ROWS, "finished: some rows not accepted"
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
            notices=dict(client.notices), in_doubt_found=found,
            in_doubt_bound=spec.load.concurrency * spec.load.batch_size,
            elapsed_seconds=round(time.monotonic() - started, 3))
        ledger.finish_run(run_id, exit_code, reason, summary.to_json())
    return summary


async def _check_organization(sender: Sender, expected: str | None) -> str:
    reply = await sender.request("organization")
    data = reply.data if isinstance(reply.data, dict) else {}
    name = str(data.get("organizationName") or data.get("name") or "(unnamed)")
    if expected is not None and name.strip().casefold() != expected.strip().casefold():
        raise OrganizationMismatch(
            f"the API key writes to organization {name!r}, but the spec names {expected!r}; "
            "refusing to write (use the key of the intended organization)")
    return name


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
