"""Reconciliation's side of the ledger (schema 2): open rows, confirmations, reviews, webhook
deliveries and polls. Used by `etl reconcile` (etl/confirm/reconcile.py) and the webhook receiver.

A row is *open* while CRM+ has not shown it: `accepted` (held, 200) or `in_doubt` (sent, never
answered). It leaves that state once:

    confirmed      a CRM+ record carries its key (crm_id, confirmed_at, confirmed_via)
    needs_review   still unseen after the window, or a duplicate in CRM+ (review_from = old status)
    pending        a contact in doubt, proven absent after the CRM's batch ran (the next run
                   sends it: contacts merge by reference), or a key a person resolved as absent
                   (`etl ledger resolve --absent`). A gift is never proven absent by a read: a
                   gift held in Update Needed answers 404 to every read.

Contacts need a record seen after the row was sent (a contact that existed before does not prove
that this transaction merged); gifts are unique per transactionSource + transactionId, so the
gift's existence is the proof. Every method runs inside the caller's `with store.tx():`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from etl.base.redact import redact

OPEN = ("accepted", "in_doubt")
SKEW = timedelta(minutes=10)  # clock difference allowed between CRM+ and this machine
DUPLICATE = "DUPLICATE_IN_CRM"
REVIEW_COLUMNS = ["source_file", "record", "kind", "source", "id", "status_before", "reason",
                  "amount", "currency", "sent_at", "crm_id", "run_id", "row_id"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (`Z`, an offset, or none: UTC) -> aware datetime; else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class OpenRow:
    id: int
    run_id: int
    key: str
    status: str
    sent_at: datetime | None
    checked_at: datetime | None
    source_file: str | None
    record: int | None
    cents: int | None
    currency: str | None


class ReconStore:
    """Statements over an open ledger connection (`Ledger.db`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @contextmanager
    def tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- rows ------------------------------------------------------------------------------------
    def open_rows(self) -> list[OpenRow]:
        cur = self.db.execute(
            "SELECT id, run_id, key, status, COALESCE(sent_at, done_at, created_at), checked_at,"
            " source_file, record, amount_cents, currency FROM rows"
            " WHERE status IN ('accepted','in_doubt') AND key IS NOT NULL ORDER BY id")
        return [OpenRow(r[0], r[1], r[2], r[3], parse_time(r[4]), parse_time(r[5]), *r[6:])
                for r in cur.fetchall()]

    def review_rows(self) -> list[OpenRow]:
        """Rows a reconciliation left in needs_review (not duplicates): every poll looks for
        them again, so a gift staff import from Update Needed later is confirmed."""
        cur = self.db.execute(
            "SELECT id, run_id, key, status, COALESCE(sent_at, done_at, created_at), checked_at,"
            " source_file, record, amount_cents, currency FROM rows WHERE status='needs_review'"
            " AND review_from IS NOT NULL AND COALESCE(error_code, '') != ? AND key IS NOT NULL"
            " ORDER BY id", (DUPLICATE,))
        return [OpenRow(r[0], r[1], r[2], r[3], parse_time(r[4]), parse_time(r[5]), *r[6:])
                for r in cur.fetchall()]

    def found(self, key: str, crm_id: str, *, contact: bool, seen_at: datetime | None,
              via: str, at: datetime) -> tuple[list[int], list[int]]:
        """A CRM+ record carries `key`: confirm the open rows it proves (and rows a person has
        not yet resolved). A gift key confirmed earlier with another gift id is a duplicate in
        CRM+: every row of the key goes to needs_review. Returns (confirmed, duplicate) row ids.
        Applying the same record twice changes nothing."""
        cur = self.db.execute(
            "SELECT id, status, crm_id, error_code, COALESCE(sent_at, done_at, created_at)"
            " FROM rows WHERE key=? AND (status IN ('accepted','in_doubt','confirmed') OR"
            " (status='needs_review' AND review_from IS NOT NULL))", (key,))
        rows = cur.fetchall()
        if not contact and any(s == "confirmed" and c not in (None, crm_id)
                               for _, s, c, _, _ in rows):
            ids = [r[0] for r in rows if r[3] != DUPLICATE]
            others = sorted({c for _, s, c, _, _ in rows if s == "confirmed" and c} | {crm_id})
            self.duplicate(ids, others, at)
            return [], ids
        confirm: list[int] = []
        for row_id, status, _crm, code, sent in rows:
            if status == "confirmed" or code == DUPLICATE:
                continue
            sent_at = parse_time(sent)
            if contact and seen_at and sent_at and sent_at > seen_at + SKEW:
                continue  # the record predates this transaction: not proof it merged
            confirm.append(row_id)
        self.db.executemany(
            "UPDATE rows SET status='confirmed', crm_id=?, confirmed_at=?, confirmed_via=?,"
            " error_code=NULL, error_details=NULL WHERE id=?",
            [(crm_id, iso(at), via, i) for i in confirm])
        return confirm, []

    def sent_where(self, keys: Iterable[str]) -> dict[str, tuple[int, str | None]]:
        """Per key: (run id, source file) of the latest row that went out (was `sending`)."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS recon_keys (key TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM recon_keys")
        self.db.executemany("INSERT OR IGNORE INTO recon_keys VALUES (?)", [(k,) for k in keys])
        cur = self.db.execute(
            "SELECT r.key, r.run_id, r.source_file FROM rows r JOIN recon_keys k ON k.key = r.key"
            " WHERE r.sent_at IS NOT NULL ORDER BY r.id")
        return {key: (run, file) for key, run, file in cur.fetchall()}

    def sent_counts(self) -> dict[int, int]:
        """Rows that went out, per run (what one batch query of that run would page through)."""
        return dict(self.db.execute("SELECT run_id, COUNT(*) FROM rows WHERE sent_at IS NOT NULL"
                                    " GROUP BY run_id").fetchall())

    def single_endpoint_runs(self) -> set[int]:
        """Runs that fell back to the single endpoints (their gifts carry no batch name)."""
        out = set()
        for run_id, summary in self.db.execute("SELECT id, summary FROM runs"):
            try:
                if json.loads(summary or "{}").get("fallback_to_single"):
                    out.add(run_id)
            except (ValueError, AttributeError):
                out.add(run_id)  # unreadable: do not assume a batch name
        return out

    def resolve(self, idents: Iterable[str], prefix: str, decision: str, at: datetime,
                crm_id: str | None = None) -> dict[str, str]:
        """A person's decision on keys they checked in CRM+: `absent` (the open or
        needs-review rows go back to pending, the next run sends the key once) or `found`
        (confirmed, via "person"). Returns id -> what happened."""
        out: dict[str, str] = {}
        for ident in idents:
            key = prefix + ident
            rows = self.db.execute(
                "SELECT id, status FROM rows WHERE key=? AND (status IN ('accepted','in_doubt',"
                "'confirmed') OR (status='needs_review' AND review_from IS NOT NULL))",
                (key,)).fetchall()
            if not rows:
                out[ident] = "nothing open for this id"
                continue
            ids = [r for r, _ in rows]
            if decision == "found":
                self.db.executemany(
                    "UPDATE rows SET status='confirmed', crm_id=COALESCE(?, crm_id),"
                    " confirmed_at=?, confirmed_via='person', error_code=NULL, error_details=NULL"
                    " WHERE id=?", [(crm_id, iso(at), i) for i in ids])
                out[ident] = "confirmed"
            elif any(status == "confirmed" for _, status in rows):
                out[ident] = "refused: CRM+ showed this id (confirmed); it is not absent"
            else:
                self.db.executemany(
                    "UPDATE rows SET status='pending', error_code='RESOLVED_ABSENT',"
                    " error_details='a person found it absent from CRM+: the next run sends it',"
                    " checked_at=? WHERE id=?", [(iso(at), i) for i in ids])
                out[ident] = "pending: the next run sends it"
        return out

    def confirmed_count(self, row_ids: list[int]) -> int:
        """How many of these rows are confirmed now."""
        return sum(1 for i in row_ids if self.db.execute(
            "SELECT 1 FROM rows WHERE id=? AND status='confirmed'", (i,)).fetchone())

    def duplicate(self, row_ids: Iterable[int], crm_ids: Iterable[str], at: datetime) -> None:
        message = f"duplicate in CRM: gifts {', '.join(crm_ids)} carry this transactionId"
        self.review([(i, DUPLICATE, message) for i in row_ids], at)

    def review(self, items: Iterable[tuple[int, str, str]], at: datetime) -> None:
        """(row id, code, message) -> needs_review, remembering the status it came from."""
        self.db.executemany(
            "UPDATE rows SET review_from=CASE WHEN status='needs_review' THEN review_from"
            " ELSE status END, status='needs_review', error_code=?, error_details=?,"
            " checked_at=? WHERE id=?", [(c, m, iso(at), i) for i, c, m in items])

    def to_pending(self, row_ids: Iterable[int], at: datetime) -> None:
        self.db.executemany(
            "UPDATE rows SET status='pending', error_code='ABSENT_AFTER_BATCH', error_details="
            "'in doubt, and not in CRM+ after its batch ran: the next run sends it', checked_at=?"
            " WHERE id=? AND status='in_doubt'", [(iso(at), i) for i in row_ids])

    def checked(self, row_ids: Iterable[int], at: datetime) -> None:
        self.db.executemany("UPDATE rows SET checked_at=? WHERE id=?",
                            [(iso(at), i) for i in row_ids])

    def review_frame(self) -> pl.DataFrame:
        """Every row a reconciliation left in needs_review, for a person to work from."""
        cur = self.db.execute(
            "SELECT source_file, record, key, review_from, error_details, amount_cents, currency,"
            " sent_at, crm_id, run_id, id FROM rows WHERE status='needs_review' AND"
            " review_from IS NOT NULL ORDER BY source_file, record, id")
        out = []
        for f, rec, key, before, why, cents, cur_, sent, crm, run, rid in cur.fetchall():
            kind, source, ident = split_key(key)
            amount = None if cents is None else f"{cents / 100:.2f}"
            out.append((f, rec, kind, source, ident, before, why, amount, cur_, sent, crm, run,
                        rid))
        schema = {c: (pl.Int64 if c in ("record", "run_id", "row_id") else pl.String)
                  for c in REVIEW_COLUMNS}
        return pl.DataFrame(out, schema=schema, orient="row")

    def status_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM rows GROUP BY status"
                                    " ORDER BY status").fetchall())

    def open_review_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM rows WHERE status='needs_review' AND"
                                   " review_from IS NOT NULL").fetchone()[0])

    # -- webhook deliveries ----------------------------------------------------------------------
    def seen_delivery(self, sha: str, *, at: datetime, refused: str | None = None) -> bool:
        """Count a delivery already recorded (same body; refused: for the same reason); True
        when it was."""
        sql = "UPDATE webhook_deliveries SET times=times+1, last_at=? WHERE body_sha256=? AND "
        if refused is None:
            cur = self.db.execute(sql + "outcome != 'refused'", (iso(at), sha))
        else:
            cur = self.db.execute(sql + "outcome = 'refused' AND reason = ?",
                                  (iso(at), sha, refused))
        return cur.rowcount > 0

    def add_delivery(self, *, at: datetime, event: str | None, outcome: str, reason: str | None,
                     sha: str | None, signed: bool | None, crm_id: str | None,
                     keys: list[tuple[str, str]], confirmed: int) -> int:
        """Record one delivery and the ledger keys it names ((key, kind) pairs)."""
        cur = self.db.execute(
            "INSERT INTO webhook_deliveries (received_at, last_at, event, outcome, reason,"
            " body_sha256, signed, crm_id, keys, rows_confirmed) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (iso(at), iso(at), event, outcome, reason, sha,
             None if signed is None else int(signed), crm_id, len(keys), confirmed))
        delivery = cur.lastrowid
        self.db.executemany("INSERT INTO webhook_keys VALUES (?,?,?,?,?)",
                            [(delivery, k, kind, crm_id, iso(at)) for k, kind in keys])
        assert delivery is not None
        return delivery

    def stored_events(self) -> list[tuple[str, str, str | None, datetime | None]]:
        """(key, kind, crm id, received at) of deliveries naming a key that is still open."""
        # only signed deliveries prove anything (an old receiver without a secret stored
        # unsigned ones here too)
        cur = self.db.execute(
            "SELECT k.key, k.kind, k.crm_id, k.received_at FROM webhook_keys k"
            " JOIN webhook_deliveries d ON d.id = k.delivery_id WHERE d.signed = 1 AND k.key IN"
            " (SELECT key FROM rows WHERE status IN ('accepted','in_doubt')) ORDER BY k.rowid")
        return [(k, kind, c, parse_time(t)) for k, kind, c, t in cur.fetchall()]

    def deliveries(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM webhook_deliveries ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    # -- polls and reconciliations ---------------------------------------------------------------
    def last_poll(self) -> tuple[datetime, int | None] | None:
        row = self.db.execute("SELECT at, total FROM reconcile_polls WHERE complete=1"
                              " ORDER BY id DESC LIMIT 1").fetchone()
        moment = parse_time(row[0]) if row else None
        return (moment, row[1]) if row and moment else None

    def add_poll(self, *, at: datetime, kind: str, mode: str, since: datetime | None,
                 requests: int, total: int | None, found: int, complete: bool) -> None:
        self.db.execute("INSERT INTO reconcile_polls (at, kind, mode, since, requests, total,"
                        " found, complete) VALUES (?,?,?,?,?,?,?,?)",
                        (iso(at), kind, mode, iso(since) if since else None, requests, total,
                         found, int(complete)))

    def start(self, at: datetime, settings: str) -> int:
        cur = self.db.execute("INSERT INTO reconciles (started_at, settings) VALUES (?, ?)",
                              (iso(at), settings))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish(self, rec_id: int, at: datetime, polled: bool, exit_code: int,
               summary: str) -> None:
        self.db.execute("UPDATE reconciles SET ended_at=?, polled=?, exit_code=?, summary=?"
                        " WHERE id=?", (iso(at), int(polled), exit_code, redact(summary),
                                        rec_id))


def split_key(key: str) -> tuple[str, str, str]:
    """`gift_transaction:LegacyCRM:G-1` -> ("gift", "LegacyCRM", "G-1") (ids may hold ':')."""
    target, _, rest = key.partition(":")
    source, _, ident = rest.partition(":")
    return ("gift" if target == "gift_transaction" else "contact"), source, ident
