"""The reference cache: the pre-match's own tables in the ledger's SQLite file, and their reads
and writes (the ledger's schema is untouched)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from etl.match.contacts import Contact, _now

TABLES = [
    "CREATE TABLE IF NOT EXISTS prematch_state (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " base_url TEXT, organization TEXT, scope TEXT, refreshed_at TEXT, high_water TEXT,"
    " full_at TEXT, last_refresh TEXT)",
    "CREATE TABLE IF NOT EXISTS prematch_contacts (id INTEGER PRIMARY KEY, modified TEXT,"
    " record TEXT NOT NULL, seen_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS prematch_refs (source TEXT NOT NULL, ref_id TEXT NOT NULL,"
    " contact_id INTEGER NOT NULL, PRIMARY KEY (source, ref_id, contact_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS prematch_emails (email TEXT NOT NULL, contact_id INTEGER NOT NULL,"
    " PRIMARY KEY (email, contact_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS prematch_refs_contact ON prematch_refs(contact_id)",
    "CREATE INDEX IF NOT EXISTS prematch_emails_contact ON prematch_emails(contact_id)",
]


@dataclass
class CacheState:
    base_url: str | None
    organization: str | None
    scope: str | None
    refreshed_at: str | None
    high_water: str | None
    full_at: str | None
    last_refresh: dict[str, Any]


class Cache:
    """The reference cache, in the ledger's SQLite file (own tables, CREATE TABLE IF NOT EXISTS)."""

    def __init__(self, db: sqlite3.Connection, *, readonly: bool = False) -> None:
        self.db = db
        if not readonly:
            for sql in TABLES:
                db.execute(sql)

    def _has_tables(self) -> bool:
        row = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND"
                              " name='prematch_state'").fetchone()
        return row is not None

    def state(self) -> CacheState | None:
        if not self._has_tables():
            return None
        row = self.db.execute("SELECT base_url, organization, scope, refreshed_at, high_water,"
                              " full_at, last_refresh FROM prematch_state WHERE id=1").fetchone()
        if row is None:
            return None
        return CacheState(row[0], row[1], row[2], row[3], row[4], row[5],
                          json.loads(row[6]) if row[6] else {})

    def count(self) -> int:
        if not self._has_tables():
            return 0
        return int(self.db.execute("SELECT COUNT(*) FROM prematch_contacts").fetchone()[0])

    def store(self, contacts: Iterable[Contact], *, replace: bool = False,
              extra_refs: Iterable[tuple[str, str, int]] = (),
              extra_emails: Iterable[tuple[str, int]] = (), state: dict[str, Any]) -> int:
        """Upsert contacts (their refs and emails replaced) in one transaction; `replace` first
        empties the cache (a full refresh). Returns how many contacts changed (new or with
        another modified time)."""
        contacts = list(contacts)
        stamp = _now()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if replace:
                for table in ("prematch_contacts", "prematch_refs", "prematch_emails"):
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
                           [(c.id, c.modified, c.record, stamp) for c in contacts])
            db.executemany("INSERT OR IGNORE INTO prematch_refs VALUES (?, ?, ?)",
                           [(s, r, c.id) for c in contacts for s, r in c.refs])
            db.executemany("INSERT OR IGNORE INTO prematch_refs VALUES (?, ?, ?)", extra_refs)
            db.executemany("INSERT OR IGNORE INTO prematch_emails VALUES (?, ?)",
                           [(e, c.id) for c in contacts for e in c.emails])
            db.executemany("INSERT OR IGNORE INTO prematch_emails VALUES (?, ?)", extra_emails)
            old = self.state()
            merged = {**(old.__dict__ if old else {}), **state}
            merged["last_refresh"] = json.dumps(merged.get("last_refresh") or {})
            merged.pop("id", None)
            db.execute("INSERT OR REPLACE INTO prematch_state (id, base_url, organization, scope,"
                       " refreshed_at, high_water, full_at, last_refresh) VALUES (1, :base_url,"
                       " :organization, :scope, :refreshed_at, :high_water, :full_at,"
                       " :last_refresh)", {k: merged.get(k) for k in (
                           "base_url", "organization", "scope", "refreshed_at", "high_water",
                           "full_at", "last_refresh")})
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
