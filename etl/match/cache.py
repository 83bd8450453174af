"""The reference cache: the pre-match's own tables in the ledger's SQLite file, and their reads
and writes (the ledger's schema is untouched).

What the cache may claim: a contact it holds existed (with those references and emails) when it
was read. Absence is claimed only where a read proved it: `prematch_state.proven` lists the
signals ("reference", "email") for which the cache holds a COMPLETE read of the organization
(every page read, every record carrying that signal's fields), and `prematch_absent` holds the
values a per-value `Contact/Find` answered 404 for. Everything else is "unknown"."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from etl.base.redact import redact, redact_value
from etl.match.contacts import Contact, now_iso

TABLES = [
    "CREATE TABLE IF NOT EXISTS prematch_state (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " base_url TEXT, organization TEXT, scope TEXT, refreshed_at TEXT, high_water TEXT,"
    " full_at TEXT, last_refresh TEXT, proven TEXT)",
    "CREATE TABLE IF NOT EXISTS prematch_contacts (id INTEGER PRIMARY KEY, modified TEXT,"
    " record TEXT NOT NULL, seen_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS prematch_refs (source TEXT NOT NULL, ref_id TEXT NOT NULL,"
    " contact_id INTEGER NOT NULL, PRIMARY KEY (source, ref_id, contact_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS prematch_emails (email TEXT NOT NULL, contact_id INTEGER NOT NULL,"
    " PRIMARY KEY (email, contact_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS prematch_absent (signal TEXT NOT NULL, source TEXT NOT NULL,"
    " value TEXT NOT NULL, checked_at TEXT NOT NULL, PRIMARY KEY (signal, source, value))"
    " WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS prematch_refs_contact ON prematch_refs(contact_id)",
    "CREATE INDEX IF NOT EXISTS prematch_emails_contact ON prematch_emails(contact_id)",
]


STATE_FIELDS = ("base_url", "organization", "scope", "refreshed_at", "high_water", "full_at",
                "last_refresh", "proven")


@dataclass
class CacheState:
    """prematch_state's one row. `proven`: the signals a complete read proved absent for."""

    base_url: str | None
    organization: str | None
    scope: str | None
    refreshed_at: str | None
    high_water: str | None
    full_at: str | None
    last_refresh: dict[str, Any]
    proven: frozenset[str] = frozenset()


def proven_text(signals: Iterable[str]) -> str:
    return ",".join(sorted(set(signals)))


class Cache:
    """The reference cache, in the ledger's SQLite file (own tables, CREATE TABLE IF NOT EXISTS)."""

    def __init__(self, db: sqlite3.Connection, *, readonly: bool = False) -> None:
        self.db = db
        if not readonly:
            for sql in TABLES:
                db.execute(sql)
            if "proven" not in self._columns():  # a cache written before `proven` existed
                db.execute("ALTER TABLE prematch_state ADD COLUMN proven TEXT")

    def _columns(self) -> set[str]:
        return {r[1] for r in self.db.execute("PRAGMA table_info(prematch_state)")}

    def _has_tables(self) -> bool:
        row = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND"
                              " name='prematch_state'").fetchone()
        return row is not None

    def state(self) -> CacheState | None:
        if not self._has_tables():
            return None
        # an old cache has no `proven` column: it proves no absence (read as NULL)
        proven = "proven" if "proven" in self._columns() else "NULL"
        sql = ("SELECT base_url, organization, scope, refreshed_at, high_water, full_at,"  # noqa: S608
               f" last_refresh, {proven} FROM prematch_state WHERE id=1")
        row = self.db.execute(sql).fetchone()
        if row is None:
            return None
        return CacheState(row[0], row[1], row[2], row[3], row[4], row[5],
                          json.loads(row[6]) if row[6] else {},
                          frozenset(s for s in (row[7] or "").split(",") if s))

    def count(self) -> int:
        if not self._has_tables():
            return 0
        return int(self.db.execute("SELECT COUNT(*) FROM prematch_contacts").fetchone()[0])

    def store(self, contacts: Iterable[Contact], *, replace: bool = False,
              extra_refs: Iterable[tuple[str, str, int]] = (),
              extra_emails: Iterable[tuple[str, int]] = (),
              absent: Iterable[tuple[str, str, str]] = (), state: dict[str, Any]) -> int:
        """Upsert contacts (their refs and emails replaced) in one transaction; `replace` first
        empties the cache (a full refresh, another organization). `absent` are (signal, source,
        value) a Find answered 404 for; a value found now is no longer absent. `state` is merged
        into prematch_state (`proven` as a set of signals). Returns how many contacts changed
        (new or with another modified time)."""
        contacts = list(contacts)
        extra_refs, extra_emails = list(extra_refs), list(extra_emails)
        stamp = now_iso()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if replace:
                for table in ("prematch_contacts", "prematch_refs", "prematch_emails",
                              "prematch_absent"):
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            known = {} if replace else self._modified([c.id for c in contacts])
            changed = sum(1 for c in contacts if c.id not in known or known[c.id] != c.modified)
            ids = [(c.id,) for c in contacts]
            db.executemany("DELETE FROM prematch_refs WHERE contact_id=?", ids)
            db.executemany("DELETE FROM prematch_emails WHERE contact_id=?", ids)
            db.executemany("INSERT INTO prematch_contacts (id, modified, record, seen_at)"
                           " VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                           " modified=excluded.modified, record=excluded.record,"
                           " seen_at=excluded.seen_at",
                           [(c.id, c.modified, redact(c.record), stamp) for c in contacts])
            db.executemany("INSERT OR IGNORE INTO prematch_refs VALUES (?, ?, ?)",
                           [(s, r, c.id) for c in contacts for s, r in c.refs])
            db.executemany("INSERT OR IGNORE INTO prematch_refs VALUES (?, ?, ?)", extra_refs)
            db.executemany("INSERT OR IGNORE INTO prematch_emails VALUES (?, ?)",
                           [(e, c.id) for c in contacts for e in c.emails])
            db.executemany("INSERT OR IGNORE INTO prematch_emails VALUES (?, ?)", extra_emails)
            db.executemany("INSERT OR REPLACE INTO prematch_absent VALUES (?, ?, ?, ?)",
                           [(*a, stamp) for a in absent])
            found = ([("reference", s, r) for c in contacts for s, r in c.refs]
                     + [("reference", s, r) for s, r, _ in extra_refs]
                     + [("email", "", e) for c in contacts for e in c.emails]
                     + [("email", "", e) for e, _ in extra_emails])
            db.executemany("DELETE FROM prematch_absent WHERE signal=? AND source=? AND value=?",
                           found)
            old = self.state()
            merged = {**(old.__dict__ if old else {}), **state}
            merged["last_refresh"] = json.dumps(merged.get("last_refresh") or {})
            merged["proven"] = proven_text(merged.get("proven") or ())
            db.execute("INSERT OR REPLACE INTO prematch_state (id, base_url, organization, scope,"
                       " refreshed_at, high_water, full_at, last_refresh, proven) VALUES (1,"
                       " :base_url, :organization, :scope, :refreshed_at, :high_water, :full_at,"
                       " :last_refresh, :proven)",
                       {k: redact_value(merged.get(k)) for k in STATE_FIELDS})
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return changed

    def _modified(self, ids: list[int]) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" for _ in chunk)
            out.update(self.db.execute(f"SELECT id, modified FROM prematch_contacts"  # noqa: S608
                                       f" WHERE id IN ({marks})", chunk).fetchall())
        return out

    def absent(self, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Values a Find proved absent: (_ref, _absent_reference) of `source`, (_email,
        _absent_email), each flag True."""
        refs = pl.DataFrame(schema={"_ref": pl.String})
        emails = pl.DataFrame(schema={"_email": pl.String})
        if self._has_tables() and self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE name='prematch_absent'").fetchone():
            refs = pl.DataFrame(self.db.execute(
                "SELECT value FROM prematch_absent WHERE signal='reference' AND source=?",
                (source,)).fetchall(), schema={"_ref": pl.String}, orient="row")
            emails = pl.DataFrame(self.db.execute(
                "SELECT value FROM prematch_absent WHERE signal='email'").fetchall(),
                schema={"_email": pl.String}, orient="row")
        return (refs.with_columns(pl.lit(True).alias("_absent_reference")),
                emails.with_columns(pl.lit(True).alias("_absent_email")))

    def frames(self, source: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """(refs of `source`: _ref -> _by_reference, emails: _email -> _by_email, ids: _cid):
        one contact per value (the lowest id when CRM+ holds duplicates)."""
        if not self._has_tables():
            return (pl.DataFrame(schema={"_ref": pl.String, "_by_reference": pl.Int64}),
                    pl.DataFrame(schema={"_email": pl.String, "_by_email": pl.Int64}),
                    pl.DataFrame(schema={"_cid": pl.Int64}))
        refs = pl.DataFrame(self.db.execute(
            "SELECT ref_id, MIN(contact_id) FROM prematch_refs WHERE source=? GROUP BY ref_id",
            (source,)).fetchall(), schema={"_ref": pl.String, "_by_reference": pl.Int64},
            orient="row")
        emails = pl.DataFrame(self.db.execute(
            "SELECT email, MIN(contact_id) FROM prematch_emails GROUP BY email").fetchall(),
            schema={"_email": pl.String, "_by_email": pl.Int64}, orient="row")
        ids = pl.DataFrame(self.db.execute("SELECT id FROM prematch_contacts").fetchall(),
                           schema={"_cid": pl.Int64}, orient="row")
        return refs, emails, ids

    def _where_in(self, select: str, column: str, ids: list[int]) -> list[tuple[Any, ...]]:
        """`select ... WHERE column IN (ids)`, 500 ids a statement (SQLite's variable limit)."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" for _ in chunk)
            rows += self.db.execute(f"{select} WHERE {column} IN ({marks})", chunk).fetchall()
        return rows

    def records(self, ids: list[int]) -> pl.DataFrame:
        rows = self._where_in("SELECT id, record FROM prematch_contacts", "id", ids)
        return pl.DataFrame(rows, schema={"_contact_id": pl.Int64, "_crm_record": pl.String},
                            orient="row")

    def emails_of(self, ids: list[int]) -> pl.DataFrame:
        rows = self._where_in("SELECT email, contact_id FROM prematch_emails", "contact_id", ids)
        return pl.DataFrame(rows, schema={"_email": pl.String, "_contact_id": pl.Int64},
                            orient="row")


def open_cache(path: Path, *, readonly: bool) -> tuple[sqlite3.Connection, Cache] | None:
    """The ledger file's cache; read-only opens never create the file (None when missing)."""
    if readonly:
        if not path.exists():
            return None
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30,
                             isolation_level=None)
        return db, Cache(db, readonly=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db, Cache(db)
