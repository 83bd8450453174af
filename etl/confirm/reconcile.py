"""`etl reconcile`: close the loop after CRM+ answered 200 ("held", not "created").

    reconcile(pipeline, ReconcileOptions(token=..., base_url=...)) -> ReconcileSummary

1. Webhooks first: deliveries the receiver (`etl webhooks serve`) recorded in the ledger confirm
   the open rows (accepted / in doubt) whose key they carry, with the CRM+ contact or gift id.
2. Polling as the fallback, within the request budget and never more often than
   `min_interval_hours` (unless forced): bulk Query pages, or per-row lookups where cheaper
   (etl/confirm/poll.py). Two gifts with one transactionId -> needs_review "duplicate in CRM".
3. The window: an accepted row still unseen `window_hours` after it was sent, by a poll made after
   that, becomes needs_review; so does a GIFT in doubt (never re-sent on a read's word: a gift in
   Update Needed answers 404 to every read), with the import, batch and transactionId to look
   for, until a person runs `etl ledger resolve`. A CONTACT in doubt and not found after the batch
   ran (after the window, or `after_batch`) goes back to pending: contacts merge by reference.
4. needs_review.csv (spreadsheet-safe) lists every row a person must look at.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from etl.base.csvsafe import write_csv
from etl.base.errors import CredentialsRefused, TransientError
from etl.base.exitcodes import EXIT_CREDENTIALS, EXIT_OK, EXIT_USAGE  # noqa: F401
from etl.base.exitcodes import EXIT_ROWS as EXIT_REVIEW
from etl.confirm.poll import KeyGroup, Poller, PollResult, text_id
from etl.confirm.store import SKEW, OpenRow, ReconStore, iso, parse_time, split_key
from etl.load.budget import RequestBudget
from etl.load.client import DEFAULT_BASE_URL, CrmClient, check_organization
from etl.load.ledger import Ledger, LedgerError, damaged
from etl.load.plan import batch_name, import_name
from etl.load.sender import money
from etl.spec.parse import LoadedSpec
from etl.spec.pipeline import Pipeline

STAGES = ("open", "confirmed", "needs_review", "pending", "waiting")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class ReconcileOptions:
    """Where to ask, how long to wait, how often to poll; test hooks at the end."""

    token: str
    base_url: str = DEFAULT_BASE_URL
    window_hours: float = 30.0
    min_interval_hours: float = 1.0
    force: bool = False
    after_batch: bool = False
    requests_per_hour: float | None = None
    page_size: int = 1000
    clock: Callable[[], datetime] = utc_now
    transport: httpx.AsyncBaseTransport | None = None
    backoff_base: float = 0.5
    notify: Callable[[str], None] = lambda message: None


@dataclass
class ReconcileSummary:
    pipeline: str
    ledger: str
    exit_code: int = EXIT_OK
    exit_reason: str = ""
    open_before: int = 0
    confirmed: dict[str, int] = field(default_factory=dict)  # via -> rows
    needs_review: int = 0  # new in this pass
    duplicates: int = 0
    to_pending: int = 0
    waiting: int = 0
    open_reviews: int = 0  # every row a reconciliation left in needs_review
    reviews_confirmed: int = 0  # needs_review rows a poll found in CRM+ after all
    polled: bool = False
    poll: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    totals: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    review_csv: str | None = None
    elapsed_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def key_prefix(loaded: LoadedSpec) -> str:
    return f"{loaded.spec.target}:{loaded.spec.keys.source}:"


def reconcile(loaded: Pipeline, options: ReconcileOptions) -> ReconcileSummary:
    """Move open rows to confirmed / needs_review / pending; see the module docstring."""
    started = time.monotonic()
    path = loaded.ledger_path
    if not path.exists():
        raise LedgerError(f"no ledger at {path} (nothing was run yet)")
    review_dir = loaded.report_dir()  # refused (exit 2) before any work
    try:
        return _reconcile(loaded, path, options, started, review_dir)
    except sqlite3.DatabaseError as exc:
        raise damaged(path, exc) from None


def _reconcile(loaded: LoadedSpec, path: Path, options: ReconcileOptions,
               started: float, review_dir: Path) -> ReconcileSummary:
    summary = ReconcileSummary(pipeline=loaded.spec.name, ledger=str(path))
    spec = loaded.spec
    with Ledger(path) as ledger:
        ledger.claim(target=spec.target, source=spec.keys.source, pipeline=spec.name)
        ledger.recover()  # we hold the run lock: rows left `sending` are a crash's
        store = ReconStore(ledger.db)
        now = _ms(options.clock())
        settings = {k: getattr(options, k) for k in ("window_hours", "min_interval_hours",
                                                     "force", "after_batch", "base_url")}
        with store.tx():
            rec_id = store.start(now, json.dumps(settings))
        before = store.open_rows()
        summary.open_before = len(before)
        with store.tx():
            _apply_deliveries(store, now)
        reviews = store.review_rows()
        rows = store.open_rows() + reviews
        due, why = _poll_due(store, options, now, rows)
        summary.poll = {"reason": why}
        if due:
            try:
                result = asyncio.run(_poll(loaded, options, store, rows, now))
            except CredentialsRefused as exc:
                summary.exit_code, summary.exit_reason = EXIT_CREDENTIALS, str(exc)
            else:
                summary.polled, summary.requests = True, result.requests
                summary.poll.update(mode=result.mode, total=result.total,
                                    complete=result.complete, error=result.error)
                with store.tx():
                    _apply_poll(store, loaded, result, rows, now)
                    summary.reviews_confirmed = store.confirmed_count([r.id for r in reviews])
        if summary.exit_code != EXIT_CREDENTIALS:
            with store.tx():
                _apply_window(store, loaded, options, now, summary.polled)
        _tally(store, before, summary)
        summary.counts = store.status_counts()
        summary.open_reviews = store.open_review_count()
        summary.review_csv = str(_write_review(store, review_dir,
                                               bom=spec.output.csv_bom))
        if summary.exit_code == EXIT_OK:
            summary.exit_code, summary.exit_reason = _verdict(summary)
        summary.elapsed_seconds = round(time.monotonic() - started, 3)
        with store.tx():
            store.finish(rec_id, options.clock(), summary.polled, summary.exit_code,
                         json.dumps(summary.to_json()))
    return summary


def _ms(moment: datetime) -> datetime:
    """To the millisecond, as the ledger stores times."""
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


def _verdict(s: ReconcileSummary) -> tuple[int, str]:
    if s.open_reviews:
        return EXIT_REVIEW, f"{s.open_reviews} rows need review: see {s.review_csv}"
    if s.poll.get("error"):
        return EXIT_REVIEW, f"CRM+ unreachable: {s.poll['error']}"
    parts = [f"{s.waiting} rows still within the window"] if s.waiting else []
    if s.to_pending:
        parts.append(f"{s.to_pending} rows back to pending: `etl run` sends them")
    return EXIT_OK, "; ".join(parts) or "every row resolved"


def _apply_deliveries(store: ReconStore, now: datetime) -> None:
    """Webhook deliveries recorded by the receiver (even while reconcile was not running)."""
    for key, kind, crm_id, received in store.stored_events():
        if crm_id:
            store.found(key, crm_id, contact=kind == "contact", seen_at=received, via="webhook",
                        at=now)


def _poll_due(store: ReconStore, options: ReconcileOptions, now: datetime,
              rows: list[OpenRow]) -> tuple[bool, str]:
    if not rows:
        return False, "nothing open"
    if options.force:
        return True, "forced"
    if options.after_batch:
        return True, "the batch ran (--after-batch)"
    last = store.last_poll()
    if last is not None and now - last[0] < timedelta(hours=options.min_interval_hours):
        nxt = last[0] + timedelta(hours=options.min_interval_hours)
        return False, (f"polled at {iso(last[0])}; --min-interval {options.min_interval_hours} h:"
                       f" next poll from {iso(nxt)} (or --force)")
    return True, "due"


async def _poll(loaded: LoadedSpec, options: ReconcileOptions, store: ReconStore,
                rows: list[OpenRow], now: datetime) -> PollResult:
    spec = loaded.spec
    budget = RequestBudget(requests_per_hour=options.requests_per_hour
                           or spec.load.requests_per_hour,
                           reserve_share=spec.load.reserve_share, burst=2)
    client = CrmClient(options.base_url, options.token, timeout=spec.load.timeout_seconds,
                       transport=options.transport, observe=budget.observe)
    kind = "gift" if spec.target == "gift_transaction" else "contact"
    poller = Poller(client, budget, kind=kind, source=spec.keys.source, prefix=key_prefix(loaded),
                    max_attempts=spec.load.max_attempts, page_size=options.page_size,
                    backoff_base=options.backoff_base)
    times = [r.checked_at or r.sent_at for r in rows]
    since = min((t for t in times if t is not None), default=None)
    last = store.last_poll()
    hint = (math.ceil(last[1] / options.page_size) if last is not None and last[1] is not None
            else None)
    groups = _groups(store, loaded, rows)
    async with client:
        if spec.organization is not None:
            # Another organization's key finds nothing: in-doubt rows would be "proven absent"
            # and sent again, to the right organization, twice.
            try:
                reply = await poller.call("organization")
            except TransientError as exc:  # unreachable: nothing proven, nothing changes
                return PollResult(complete=False, error=client.redact(str(exc)))
            check_organization(reply, spec.organization, "reconcile against it")
        result = await poller.poll(groups, since - SKEW if since else None, hint)
    for why in result.fallbacks:
        options.notify(f"a bulk read proved nothing ({why}): per-row lookups instead")
    options.notify(f"poll ({result.mode}): {result.requests} requests, "
                   f"{len(result.found)} of {len({r.key for r in rows})} keys found")
    return result


def _groups(store: ReconStore, loaded: LoadedSpec, rows: list[OpenRow]) -> list[KeyGroup]:
    """Open keys by what one documented query selects: gifts by the batch the tool named
    (`<pipeline>-run<N>`) where possible, else the whole source; contacts in one group."""
    keys = {r.key for r in rows}
    spec = loaded.spec
    if spec.target != "gift_transaction":
        return [KeyGroup(keys)]
    sent = store.sent_where(keys)
    # A batch name selects a run's gifts only when the run sent it in the envelope and no
    # mapping gives the gifts a batch of their own.
    unnamed = store.single_endpoint_runs() if "batch" not in spec.mappings else None
    counts = store.sent_counts()
    by_batch: dict[int, set[str]] = {}
    rest: set[str] = set()
    for key in keys:
        run = sent.get(key, (None, None))[0]
        if run is None or unnamed is None or run in unnamed:
            rest.add(key)
        else:
            by_batch.setdefault(run, set()).add(key)
    groups = [KeyGroup(k, batch_name(spec.name, run), counts.get(run, len(k)))
              for run, k in sorted(by_batch.items())]
    return groups + ([KeyGroup(rest)] if rest else [])


def _apply_poll(store: ReconStore, loaded: LoadedSpec, result: PollResult,
                rows: list[OpenRow], now: datetime) -> None:
    contact = loaded.spec.target == "contact_transaction"
    for key, records in result.found.items():
        ids = sorted({i for r in records if (i := text_id(r.get("id")))})
        if not ids:
            continue
        if not contact and len(ids) > 1:
            dup = [i for (i,) in store.db.execute(
                "SELECT id FROM rows WHERE key=? AND (status IN ('accepted','in_doubt',"
                "'confirmed') OR (status='needs_review' AND review_from IS NOT NULL))", (key,))]
            store.duplicate(dup, ids, now)
            continue
        seen = parse_time(records[-1].get("modifiedDateTimeUtc")) or now
        store.found(key, ids[0], contact=contact, seen_at=seen, via=result.via.get(key, "poll"),
                    at=now)
    store.checked([r.id for r in rows if r.key in result.checked], now)
    store.add_poll(at=now, kind="gift" if not contact else "contact", mode=result.mode,
                   since=result.since, requests=result.requests, total=result.total,
                   found=len(result.found), complete=result.complete)


def _apply_window(store: ReconStore, loaded: LoadedSpec, options: ReconcileOptions,
                  now: datetime, polled_now: bool) -> None:
    """Unseen after the window (by a poll made after it) -> needs_review, with the place to
    look in CRM+; a CONTACT in doubt and proven absent after the batch ran -> pending (contacts
    merge by reference). A gift in doubt is never sent again on a read's word: a gift held in
    Update Needed answers 404 to every read, so after the window a person decides."""
    window = timedelta(hours=options.window_hours)
    gift = loaded.spec.target == "gift_transaction"
    rows = store.open_rows()
    where = store.sent_where(r.key for r in rows) if gift else {}
    review: list[tuple[int, str, str]] = []
    pending: list[int] = []
    for row in rows:
        expiry = (row.sent_at or now) + window
        checked = row.checked_at
        after_window = now >= expiry and checked is not None and checked >= expiry
        if row.status == "in_doubt" and not gift:
            batch_ran = options.after_batch and polled_now and checked is not None and \
                checked >= now
            if after_window or batch_ran:
                pending.append(row.id)
        elif after_window:
            hours = options.window_hours
            place = _place(loaded, row, where.get(row.key)) if gift else \
                "look in CRM+ Imports / needs update"
            if row.status == "in_doubt":
                review.append((row.id, "IN_DOUBT_NOT_FOUND", (
                    f"sent, no definite answer, and not readable in CRM+ {hours:g} h later: it "
                    f"may never have arrived, or wait in Update Needed / Match Needed. {place}. "
                    "Then `etl ledger resolve --absent ID` (the next run sends it once) or "
                    "`--found ID`")))
            else:
                review.append((row.id, "NOT_IN_CRM", f"accepted (held) but not in CRM+ "
                               f"{hours:g} h after it was sent: {place}"))
    store.review(review, now)
    store.to_pending(pending, now)


def _place(loaded: LoadedSpec, row: OpenRow, sent: tuple[int, str | None] | None) -> str:
    """Where a person finds a gift in CRM+: the import and batch it was sent in, its id."""
    ident = split_key(row.key)[2]
    if sent is None:
        return f"look in CRM+'s Gift and Contact Import Tool for transactionId {ident!r}"
    run, file = sent
    name = loaded.spec.name
    return (f"look in CRM+'s Gift and Contact Import Tool, import "
            f"{import_name(name, file or '?', run)!r}, batch {batch_name(name, run)!r}, "
            f"transactionId {ident!r} (Update Needed, Match Needed)")


def _tally(store: ReconStore, before: list[OpenRow], summary: ReconcileSummary) -> None:
    """Transitions of the rows open at the start, with control totals by currency."""
    db = store.db
    db.execute("CREATE TEMP TABLE IF NOT EXISTS recon_open (id INTEGER PRIMARY KEY)")
    db.execute("DELETE FROM recon_open")
    db.executemany("INSERT INTO recon_open VALUES (?)", [(r.id,) for r in before])
    after = {i: (s, via, code) for i, s, via, code in db.execute(
        "SELECT r.id, r.status, r.confirmed_via, r.error_code FROM rows r"
        " JOIN recon_open o ON o.id = r.id")}
    sums: dict[tuple[str, str], list[int]] = {}
    for row in before:
        status, via, code = after.get(row.id, (row.status, None, None))
        stage = {"confirmed": "confirmed", "needs_review": "needs_review",
                 "pending": "pending"}.get(status, "waiting")
        if stage == "confirmed":
            summary.confirmed[via or "?"] = summary.confirmed.get(via or "?", 0) + 1
        elif stage == "needs_review":
            summary.needs_review += 1
            summary.duplicates += code == "DUPLICATE_IN_CRM"
        elif stage == "pending":
            summary.to_pending += 1
        else:
            summary.waiting += 1
        for s in ("open", stage):
            cell = sums.setdefault((s, row.currency or ""), [0, 0])
            cell[0] += 1
            cell[1] += row.cents or 0
    summary.totals = [{"stage": s, "currency": c, "rows": n, "amount": money(cents)}
                      for (s, c), (n, cents) in sorted(
                          sums.items(), key=lambda kv: (STAGES.index(kv[0][0]), kv[0][1]))]


def _write_review(store: ReconStore, out_dir: Path, *, bom: bool = True) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_csv(store.review_frame(), out_dir / "needs_review.csv", bom=bom)


@dataclass
class ResolveSummary:
    pipeline: str
    ledger: str
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)  # decision -> id -> what

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resolve(loaded: Pipeline, *, absent: list[str], found: list[str],
            crm_id: str | None = None, clock: Callable[[], datetime] = utc_now) -> ResolveSummary:
    """A person's decisions after looking in CRM+ (the needs_review list): `absent` ids go back
    to pending (the next `etl run` sends each once), `found` ids are confirmed. Takes the run
    lock: no run may be sending meanwhile."""
    path = loaded.ledger_path
    if not path.exists():
        raise LedgerError(f"no ledger at {path} (nothing was run yet)")
    both = set(absent) & set(found)
    if both:
        raise LedgerError(f"ids given as both absent and found: {', '.join(sorted(both))}")
    summary = ResolveSummary(pipeline=loaded.spec.name, ledger=str(path))
    try:
        with Ledger(path) as ledger:
            spec = loaded.spec
            ledger.claim(target=spec.target, source=spec.keys.source, pipeline=spec.name)
            ledger.recover()
            store = ReconStore(ledger.db)
            now = _ms(clock())
            with store.tx():
                for decision, ids in (("absent", absent), ("found", found)):
                    if ids:
                        summary.outcomes[decision] = store.resolve(
                            ids, key_prefix(loaded), decision, now,
                            crm_id if decision == "found" else None)
    except sqlite3.DatabaseError as exc:
        raise damaged(path, exc) from None
    return summary

