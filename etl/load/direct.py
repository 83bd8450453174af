"""The seed's direct path (`load.create: direct`): per row, look the donor up, and create it only
when nobody has it, so the CRM+ id is known at once.

    1. GET /api/Contact/Find?referenceSource=&referenceId=   hit: confirmed with that id
    2. GET /api/Contact/Find?email=      (rows with an email)  hit: `on_email_match`
    3. POST /api/Contact  (nested, direct_shape.py)           200: confirmed with the new id

`POST /api/Contact` de-duplicates nothing: a second POST for a row is a second contact. So:

- the row is marked `sending` (committed) before its POST, exactly as a batch is; a kill -9
  between the Finds and the POST leaves it `pending` (nothing went out), a kill during the POST
  leaves it `sending`, which the next run's recovery turns into `in_doubt`;
- a POST without a definite answer (read timeout, reset, 5xx) raises `InDoubt` in the one retry
  loop (`retry_unknown=False`) and is never retried: the row is `in_doubt`;
- a row in doubt is looked up by reference again before anything else. Found: confirmed with
  that id. Not found: created again only when its last POST went out more than
  `load.direct_settle_seconds` ago (a server may still be working on a request its client gave
  up on); sooner, it stays `in_doubt` for the next run. Finds are reads: retried as reads are.

Rows sharing an email are handled one after another by one worker, so which of them meets the
other's new contact as an email match does not depend on timing.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from etl.base.errors import CredentialsRefused, RequestRejected, TransientError
from etl.base.redact import redact_value
from etl.load.budget import InDoubt, Throttled
from etl.load.client import EndpointMissing
from etl.load.direct_shape import nested_contact
from etl.load.ledger import Ledger, now
from etl.load.sender import Item, Sender, Stopped

VIA = "direct"  # rows.confirmed_via of a row the direct path confirmed


@dataclass(frozen=True)
class DirectRow:
    """One row to look up and maybe create: its ledger row id, key and flat payload."""

    row_id: int
    key: str
    payload: str
    reason: str = "new"  # the plan's reason: new, update, resend_in_doubt
    last_sent: datetime | None = None  # when a POST for this key last went out unanswered

    @property
    def flat(self) -> dict[str, Any]:
        data = json.loads(self.payload)
        return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Done:
    """What became of one row (a ledger update)."""

    row_id: int
    status: str  # confirmed | skipped_existing | accepted | in_doubt | rejected | failed | pending
    outcome: str  # for the summary: created, by_reference, email_associate, ...
    reason: str | None = None
    crm_id: str | None = None
    attempts: int = 0
    http_status: int | None = None
    code: str | None = None
    details: str | None = None


@dataclass(frozen=True, kw_only=True)
class DirectSettings:
    on_email_match: str = "skip"
    settle_seconds: float = 600.0
    concurrency: int = 2
    batch_id: str = "direct"
    max_failed: int | None = None


@dataclass
class DirectStats:
    outcomes: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)  # find_reference, find_email, create
    failed: int = 0  # failed or in doubt (the --max-failed gate counts both)
    tripped: str | None = None
    rows_done: int = 0


def contact_id(data: Any) -> str | None:
    """The id of a contact record as Find or the POST answers it (an int, or digits)."""
    cid = data.get("id") if isinstance(data, dict) else None
    if isinstance(cid, bool) or cid is None:
        return None
    text = str(cid).strip()
    return text if text.isdigit() else None


def _details(field_name: str, code: str, message: str) -> str:
    return json.dumps([{"field": field_name, "code": code, "message": message}])


class DirectLoader:
    """Runs the direct path over rows with `settings.concurrency` workers; see the module doc.
    Requests go through the sender's `request` (its budget, retry loop, stop and stats)."""

    def __init__(self, sender: Sender, ledger: Ledger, settings: DirectSettings, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_progress: Callable[[DirectStats], None] | None = None) -> None:
        self.sender, self.ledger, self.settings = sender, ledger, settings
        self.clock, self.on_progress = clock, on_progress
        self.stats = DirectStats()

    async def run(self, rows: Sequence[DirectRow]) -> DirectStats:
        """Every row (until stopped); raises CredentialsRefused / Throttled after recording."""
        groups: dict[str, list[DirectRow]] = {}
        for row in rows:
            email = str(row.flat.get("email") or "").strip().lower()
            groups.setdefault(email or f"\x00{row.row_id}", []).append(row)
        queue: asyncio.Queue[list[DirectRow]] = asyncio.Queue()
        for group in groups.values():
            queue.put_nowait(group)
        workers = max(1, min(self.settings.concurrency, len(groups)))
        await asyncio.gather(*(self._worker(queue) for _ in range(workers)))
        if self.sender.refused is not None:
            raise self.sender.refused
        if self.sender.throttled is not None:
            raise self.sender.throttled
        return self.stats

    async def _worker(self, queue: asyncio.Queue[list[DirectRow]]) -> None:
        while not self.sender.stop.is_set() and not queue.empty():
            for row in queue.get_nowait():
                if self.sender.stop.is_set():
                    return
                try:
                    done = await self._row(row)
                except (Stopped, CredentialsRefused, Throttled):
                    return  # the row is still `pending`: nothing was sent for it
                self._record(done)

    def _record(self, done: Done) -> None:
        stamp = now()
        confirmed = done.status == "confirmed"
        with self.ledger.tx():
            self.ledger.db.execute(
                "UPDATE rows SET status=?, reason=COALESCE(?, reason), crm_id=?,"
                " confirmed_at=?, confirmed_via=?, attempts=attempts+?, http_status=?,"
                " error_code=?, error_details=?, done_at=? WHERE id=?",
                (done.status, redact_value(done.reason), done.crm_id,
                 stamp if confirmed else None, VIA if confirmed else None, done.attempts,
                 done.http_status, redact_value(done.code), redact_value(done.details), stamp,
                 done.row_id))
        s = self.stats
        s.outcomes[done.outcome] += 1
        s.rows_done += 1
        # a row still settling was not sent in this run: it does not trip --max-failed
        s.failed += done.status in ("failed", "in_doubt") and done.outcome != "settling"
        limit = self.settings.max_failed
        if limit is not None and s.failed > limit and not s.tripped:
            s.tripped = (f"stopped: {s.failed} rows failed or in doubt, more than --max-failed "
                         f"{limit}; later rows were not looked up")
            self.sender.stop.set()
        if self.on_progress is not None:
            self.on_progress(s)

    async def _find(self, kind: str, params: dict[str, str | int]) -> str | None:
        """The contact id Find answers, None for a 404; a 200 without an id raises."""
        self.stats.requests[kind] += 1
        try:
            reply = await self.sender.request("contact_find", params=params)
        except EndpointMissing:
            return None
        cid = contact_id(reply.data)
        if cid is None:
            raise TransientError("Contact/Find answered 200 without a contact id",
                                 status=reply.status)
        return cid

    async def _row(self, row: DirectRow) -> Done:
        flat = row.flat
        ref = {"referenceSource": str(flat.get("referenceSource") or ""),
               "referenceId": str(flat.get("referenceId") or "")}
        try:
            cid = await self._find("find_reference", dict(ref))
        except Throttled:
            raise
        except (RequestRejected, TransientError) as exc:
            return self._find_failed(row, "reference", exc)
        if cid is not None:
            return self._by_reference(row, cid)
        if row.last_sent is not None:
            age = (self.clock() - row.last_sent).total_seconds()
            if age < self.settings.settle_seconds:
                return Done(row.row_id, "in_doubt", "settling", "settling", code="IN_DOUBT_RECHECK",
                            details=_details("referenceId", "IN_DOUBT_RECHECK", (
                                f"not found by reference, but a create for it went out "
                                f"unanswered {age:.0f} s ago, less than "
                                f"load.direct_settle_seconds ({self.settings.settle_seconds:.0f}"
                                " s): the next run looks it up again before creating it")))
        email = str(flat.get("email") or "").strip()
        matched: str | None = None
        if email:
            try:
                matched = await self._find("find_email", {"email": email})
            except Throttled:
                raise
            except (RequestRejected, TransientError) as exc:
                return self._find_failed(row, "email", exc)
        policy = self.settings.on_email_match
        if matched is not None and policy != "create":
            return self._email_match(row, matched, policy)
        return await self._create(row, flat, matched)

    def _by_reference(self, row: DirectRow, cid: str) -> Done:
        if row.reason == "resend_in_doubt":
            why = f"found by reference after an unanswered create: contact {cid}"
        elif row.reason == "update":
            why = (f"exists: contact {cid} (by reference); not updated (create: direct creates, "
                   "it does not update)")
        else:
            why = f"exists: contact {cid} (by reference)"
        return Done(row.row_id, "confirmed", "by_reference", why, cid)

    def _email_match(self, row: DirectRow, cid: str, policy: str) -> Done:
        details = _details("email", "EXISTS_BY_EMAIL", f"contact {cid}")
        if policy == "associate":
            return Done(row.row_id, "confirmed", "email_associate",
                        f"associated: contact {cid} (by email; on_email_match: associate; the "
                        "reference is not stored on it in CRM+)", cid, details=details)
        return Done(row.row_id, "skipped_existing", "email_skip",
                    f"email matches contact {cid} (on_email_match: skip): a person decides "
                    "whether it is this donor", cid, details=details)

    def _find_failed(self, row: DirectRow, by: str, exc: Exception) -> Done:
        """A Find without a usable answer proves nothing: no POST, the next run tries again."""
        status = getattr(exc, "status", None)
        code = "FIND_REFUSED" if isinstance(exc, RequestRejected) else "FIND_FAILED"
        return Done(row.row_id, "failed", "find_failed", None, attempts=0, http_status=status,
                    code=code, details=_details(by, code, f"Contact/Find by {by}: {exc}; "
                                                "nothing was created"))

    async def _create(self, row: DirectRow, flat: dict[str, Any], matched: str | None) -> Done:
        body = json.dumps(nested_contact(flat), separators=(",", ":"))
        item = Item(row.row_id, row.key, body)
        self.ledger.mark_sending(self.settings.batch_id, [row.row_id])  # before the POST
        self.stats.requests["create"] += 1
        note = (f" (email matched contact {matched}; on_email_match: create)"
                if matched is not None else "")
        if row.reason == "resend_in_doubt":
            note += " (after an unanswered create, absent by reference)"
        outcome = "email_create" if matched is not None else "created"
        seen = _details("email", "EXISTS_BY_EMAIL", f"contact {matched}") if matched else None
        try:
            reply = await self.sender.request("contact_create", body.encode(), [item])
        except RequestRejected as exc:
            return Done(row.row_id, "rejected", "rejected", None, attempts=item.attempts,
                        http_status=exc.status, code=exc.code or f"HTTP_{exc.status}",
                        details=json.dumps(exc.details) if exc.details else
                        _details("", "REJECTED", str(exc)))
        except EndpointMissing as exc:
            return Done(row.row_id, "failed", "failed", None, attempts=item.attempts,
                        http_status=404, code="ENDPOINT_MISSING",
                        details=_details("", "ENDPOINT_MISSING", str(exc)))
        except (InDoubt, TransientError, Stopped) as exc:
            return self._unanswered(row, item, exc)
        cid = contact_id(reply.data)
        if cid is None:  # created (200), id unknown: never POSTed again, reconcile finds it
            return Done(row.row_id, "accepted", outcome, "created; the answer carried no id"
                        + note, attempts=item.attempts, http_status=reply.status,
                        code="NO_ID_IN_ANSWER", details=seen)
        return Done(row.row_id, "confirmed", outcome, f"created: contact {cid}{note}", cid,
                    attempts=item.attempts, http_status=reply.status, details=seen)

    @staticmethod
    def _unanswered(row: DirectRow, item: Item, exc: Exception) -> Done:
        """No definite answer: in doubt when the POST (or an earlier try) may have arrived;
        `pending` / `failed` when it provably never left (the next run looks it up again)."""
        status = getattr(exc, "status", None)
        if isinstance(exc, InDoubt) or item.unsure:
            code = f"IN_DOUBT_HTTP_{status}" if status else "IN_DOUBT_NETWORK"
            return Done(row.row_id, "in_doubt", "in_doubt", None, attempts=item.attempts,
                        http_status=status, code=code, details=_details(
                            "", code, f"no definite answer, the contact may have been created: "
                            f"{exc}; never POSTed again before a Find by reference"))
        if isinstance(exc, Stopped):
            return Done(row.row_id, "pending", "not_sent", None, attempts=item.attempts,
                        code="NOT_SENT")
        code = f"HTTP_{status}" if status else "NETWORK"
        return Done(row.row_id, "failed", "failed", None, attempts=item.attempts,
                    http_status=status, code=code, details=_details("", code, str(exc)))


def last_sent(ledger: Ledger, keys: Sequence[str]) -> dict[str, datetime]:
    """When a request for each key last went out (the rows' latest `sent_at`)."""
    out: dict[str, datetime] = {}
    keys = list(dict.fromkeys(keys))
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        marks = ",".join("?" for _ in chunk)
        for key, sent in ledger.db.execute(
                f"SELECT key, MAX(sent_at) FROM rows WHERE key IN ({marks})"  # noqa: S608
                " AND sent_at IS NOT NULL GROUP BY key", chunk):
            out[key] = datetime.fromisoformat(sent)
    return out
