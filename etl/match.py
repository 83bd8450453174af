"""Pre-match: what already exists in CRM+, predicted in the dry run and applied by `etl run`.

    spec `match:` -> cache (in the ledger file) -> polars joins -> prediction + policy

Two ways to learn which donors exist (docs/prematch.md):

- `method: bulk` pages the organization's contacts (`POST /api/Contact/Query?skip=&take=1000`,
  the `{list, total}` envelope) into a reference cache kept in the pipeline's SQLite ledger file:
  contact id, modified time, its `contactReferences` (source + id) and emails. Later refreshes
  ask only for `modifiedSince` the newest modified time in the cache (inclusive: a contact
  modified in that same instant is read again, never missed).
- `method: find` asks `GET /api/Contact/Find` once per distinct reference (then per distinct
  email of the rows still unknown); a 404 means none. The upper bound of requests is computed
  and shown first, and a lookup above `match.max_requests` is refused before it starts. What is
  found goes into the same cache.

Rows are then matched locally, with polars joins and no Python per row: by reference (the spec's
`keys.source` + the row's referenceId; for gifts `contact.referenceId`, and `contact.id` when the
row already names the contact), then by email (trimmed, lower-cased), in the order of `match.by`.
A row not in the cache whose reference or email appeared on an earlier row of the same run is
predicted "existing" too (`email_in_run`, `reference_in_run`): the nightly batch creates the
contact for the first row and merges the later ones into it.

The dry run never opens the network unless asked (`refresh=True`, `etl validate --refresh-match`):
otherwise it predicts from the cache as it is, read-only, and says how old it is. `etl run`
refreshes the cache first (reads only; the organization is checked before), then applies the
policy to the rows it is about to send: `send` (send everything), `skip` (rows whose contact
exists become `skipped_existing` with the CRM+ contact id), `changed` (matched contacts whose
fields all equal the cached contact's are `skipped_existing` as unchanged; what the ledger already
accepted with the same payload hash is never sent anyway).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from etl.client import (
    DEFAULT_BASE_URL,
    CrmClient,
    EndpointMissing,
    OrganizationMismatch,
    Reply,
    check_base_url,
)
from etl.errors import CredentialsRefused, EtlError, TransientError
from etl.ratelimit import RequestBudget, backoff
from etl.result import ValidationResult
from etl.spec import LoadedSpec, Match
from etl.targets import get_target

if TYPE_CHECKING:
    from etl.dryrun import DryRun
    from etl.ledger import Ledger
    from etl.plan import Plan
    from etl.submit import RunOptions

PAGE = 1000  # Contact/Query's largest page
SKIPPED = "skipped_existing"  # the ledger status of a row the policy did not send
OK_STATUSES = (SKIPPED,)  # a run whose other rows are all accepted still exits 0
SIGNALS = ("id", "reference", "email", "reference_in_run", "email_in_run")

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


class MatchRefused(EtlError):
    """A pre-match that must not start: over `match.max_requests`, or no key for a refresh."""

    exit_code = 2


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _time(value: Any) -> datetime | None:
    """An API timestamp (ISO 8601, `Z` or offset, or naive = UTC) as an aware datetime."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- contact records (read defensively: the sandbox's are flat, real ones are richer) ---------
@dataclass(frozen=True)
class Contact:
    id: int
    modified: str | None
    record: str  # the scalar fields, customFields and emailLists, as JSON (for `changed`)
    refs: tuple[tuple[str, str], ...]
    emails: tuple[str, ...]


def norm_email(value: Any) -> str | None:
    text = str(value).strip().lower() if value is not None else ""
    return text if "@" in text else None


def _methods_emails(methods: Any) -> list[str]:
    out = []
    for m in methods if isinstance(methods, list) else []:
        if isinstance(m, dict) and (e := norm_email(m.get("value"))):
            out.append(e)
    return out


def parse_contact(rec: Any) -> Contact | None:
    """One contact record of a Query/Find answer; None when it has no usable id."""
    if not isinstance(rec, dict):
        return None
    try:
        ident = int(str(rec.get("id")).strip())
    except ValueError:
        return None
    modified = _time(rec.get("modifiedDateTimeUtc") or rec.get("modifiedDateTime"))
    refs = []
    for r in rec.get("contactReferences") or []:
        if isinstance(r, dict):
            source = r.get("source", r.get("referenceSource"))
            ref_id = r.get("id", r.get("referenceId"))
            if source is not None and ref_id is not None:
                refs.append((str(source), str(ref_id)))
    emails = [e for e in [norm_email(rec.get("email"))] if e]
    emails += _methods_emails(rec.get("contactMethods"))
    for person in rec.get("contactIndividuals") or []:
        if isinstance(person, dict):
            emails += [e for e in [norm_email(person.get("email"))] if e]
            emails += _methods_emails(person.get("contactMethods"))
    slim = {k: v for k, v in rec.items()
            if (v is None or isinstance(v, str | int | float | bool))
            or k in ("customFields", "emailLists")}
    return Contact(ident, _iso(modified) if modified else None,
                   json.dumps(slim, ensure_ascii=False, separators=(",", ":"), default=str),
                   tuple(dict.fromkeys(refs)), tuple(dict.fromkeys(emails)))


# -- the cache ----------------------------------------------------------------------------------
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

    def records(self, ids: list[int]) -> pl.DataFrame:
        rows: list[tuple[int, str]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" for _ in chunk)
            rows += self.db.execute(f"SELECT id, record FROM prematch_contacts"  # noqa: S608
                                    f" WHERE id IN ({marks})", chunk).fetchall()
        return pl.DataFrame(rows, schema={"_contact_id": pl.Int64, "_crm_record": pl.String},
                            orient="row")

    def emails_of(self, ids: list[int]) -> pl.DataFrame:
        rows: list[tuple[str, int]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" for _ in chunk)
            rows += self.db.execute(f"SELECT email, contact_id FROM prematch_emails"  # noqa: S608
                                    f" WHERE contact_id IN ({marks})", chunk).fetchall()
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


# -- reading CRM+ -------------------------------------------------------------------------------
class Reader:
    """Paced, retried reads (Contact/Query, Contact/Find, Organization/Current)."""

    def __init__(self, base_url: str, token: str, loaded: LoadedSpec, *,
                 requests_per_hour: float | None, transport: Any = None,
                 backoff_base: float = 0.5, backoff_cap: float = 30.0) -> None:
        load = loaded.spec.load
        self.budget = RequestBudget(requests_per_hour=requests_per_hour,
                                    reserve_share=load.reserve_share, burst=2)
        self.client = CrmClient(base_url, token, timeout=load.timeout_seconds,
                                transport=transport, observe=self.budget.observe)
        self.base_url = self.client.base_url
        self.max_attempts = load.max_attempts
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.requests = 0
        self.rng = random.Random()  # noqa: S311 - jitter, not secrets

    async def call(self, endpoint: str, body: dict[str, Any] | None = None,
                   params: dict[str, str | int] | None = None) -> Reply | None:
        """The 2xx Reply, None for a 404; other errors raise (after bounded retries)."""
        content = json.dumps(body).encode() if body is not None else None
        attempt = 0
        while True:
            attempt += 1
            await self.budget.acquire()
            self.requests += 1
            try:
                return await self.client.send(endpoint, content, params=params)
            except EndpointMissing:
                return None
            except TransientError as exc:
                if exc.status == 429:
                    self.budget.pause(exc.retry_after)
                if attempt >= self.max_attempts:
                    raise
                if exc.status != 429:
                    await asyncio.sleep(backoff(attempt, base=self.backoff_base,
                                                cap=self.backoff_cap, rng=self.rng.random))
            finally:
                self.budget.release()

    async def organization(self, expected: str | None) -> str:
        reply = await self.call("organization")
        data = reply.data if reply is not None and isinstance(reply.data, dict) else {}
        name = str(data.get("organizationName") or data.get("name") or "(unnamed)")
        if expected is not None and name.strip().casefold() != expected.strip().casefold():
            raise OrganizationMismatch(
                f"the API key reads organization {name!r}, but the spec names {expected!r}; "
                "refusing to pre-match against it")
        return name


def _scope(spec_match: Match, source: str) -> str:
    return f"source:{source}" if list(spec_match.by) == ["reference"] else "all"


async def refresh_bulk(reader: Reader, cache: Cache, loaded: LoadedSpec, organization: str, *,
                       full: bool = False, notify: Callable[[str], None] = lambda m: None,
                       ) -> dict[str, Any]:
    """Page Contact/Query into the cache: everything (first time, another host or scope, or
    `full`), else only contacts modified since the newest modified time already cached."""
    spec = loaded.spec
    assert spec.match is not None
    scope = _scope(spec.match, spec.keys.source)
    old = cache.state()
    incremental = (not full and old is not None and old.base_url == reader.base_url
                   and old.scope == scope and old.high_water is not None
                   and old.full_at is not None)
    filters: dict[str, Any] = {}
    if scope != "all":
        filters["referenceSource"] = spec.keys.source
    if incremental:
        assert old is not None
        filters["modifiedSince"] = old.high_water
    started = time.monotonic()
    fetched: list[Contact] = []
    skip, total, requests = 0, None, 0
    while total is None or skip < total:
        reply = await reader.call("contact_query", filters, {"skip": skip, "take": PAGE})
        requests += 1
        data = reply.data if reply is not None and isinstance(reply.data, dict) else {}
        listed = data.get("list")
        page: list[Any] = listed if isinstance(listed, list) else []
        if total is None:
            try:
                total = int(str(data.get("total", len(page))))
            except ValueError:
                total = len(page)
            pages = math.ceil(total / PAGE)
            if pages > spec.match.max_requests:
                raise MatchRefused(
                    f"pre-match: reading {total:,} contacts needs {pages:,} Contact/Query "
                    f"requests, over match.max_requests ({spec.match.max_requests:,}); raise it "
                    "or narrow match.by to [reference]")
            notify(f"pre-match: reading {total:,} {'modified ' if incremental else ''}contacts "
                   f"in {max(pages, 1):,} Contact/Query request(s)")
        fetched += [c for c in (parse_contact(r) for r in page) if c is not None]
        if not page:
            break
        skip += len(page)
    waters = [w for w in [old.high_water if incremental and old else None]
              + [c.modified for c in fetched] if w]
    stamp = _now()
    stats = {"mode": "incremental" if incremental else "full", "requests": requests,
             "fetched": len(fetched), "since": filters.get("modifiedSince"),
             "seconds": round(time.monotonic() - started, 3)}
    state: dict[str, Any] = {"base_url": reader.base_url, "organization": organization,
                             "scope": scope, "refreshed_at": stamp,
                             "high_water": max(waters) if waters else None,
                             "last_refresh": stats}
    if not incremental:
        state["full_at"] = stamp
    stats["changed"] = cache.store(fetched, replace=not incremental, state=state)
    return stats


def lookup_plan(signals: pl.DataFrame, by: Sequence[str]) -> dict[str, int]:
    """Upper bound of Contact/Find requests: distinct values per signal (rows naming a
    contact.id need none)."""
    todo = signals.filter(pl.col("_cid").is_null())
    return {s: todo.select(pl.col(_col(s)).drop_nulls().n_unique()).item() for s in by}


def _col(signal: str) -> str:
    return "_ref" if signal == "reference" else "_email"


async def refresh_find(reader: Reader, cache: Cache, loaded: LoadedSpec, organization: str,
                       signals: pl.DataFrame, *, notify: Callable[[str], None] = lambda m: None,
                       ) -> dict[str, Any]:
    """One Contact/Find per distinct value, signal by signal, for rows still unknown."""
    spec = loaded.spec
    assert spec.match is not None
    by = list(spec.match.by)
    bound = lookup_plan(signals, by)
    cost = sum(bound.values())
    per_hour = spec.load.requests_per_hour * (1 - spec.load.reserve_share)
    notify(f"pre-match: up to {cost:,} Contact/Find requests ("
           + ", ".join(f"{s} {n:,}" for s, n in bound.items())
           + f"), about {cost / per_hour * 60:.0f} min of this pipeline's budget")
    if cost > spec.match.max_requests:
        raise MatchRefused(
            f"pre-match: the per-row lookup would cost up to {cost:,} requests, over "
            f"match.max_requests ({spec.match.max_requests:,}); use method: bulk "
            f"(about {math.ceil(max(cost, 1) / PAGE)}+ requests per 1,000 contacts) or raise "
            "the cap")
    started = time.monotonic()
    todo = signals.filter(pl.col("_cid").is_null())
    found: dict[int, Contact] = {}
    refs: list[tuple[str, str, int]] = []
    emails: list[tuple[str, int]] = []
    sem = asyncio.Semaphore(spec.load.concurrency)
    source = spec.keys.source

    async def find(signal: str, value: str) -> tuple[str, Contact | None]:
        params: dict[str, str | int] = (
            {"referenceSource": source, "referenceId": value} if signal == "reference"
            else {"email": value})
        async with sem:
            reply = await reader.call("contact_find", params=params)
        return value, parse_contact(reply.data) if reply is not None else None

    for signal in by:
        column = _col(signal)
        values = todo.select(pl.col(column).drop_nulls().unique(maintain_order=True))[column]
        results = await asyncio.gather(*(find(signal, v) for v in values.to_list()))
        hits = {v: c for v, c in results if c is not None}
        for value, contact in hits.items():
            found[contact.id] = contact
            if signal == "reference":
                refs.append((source, value, contact.id))
            else:
                emails.append((value, contact.id))
        todo = todo.filter(~pl.col(column).is_in(list(hits)) | pl.col(column).is_null())
    stats = {"mode": "find", "requests": reader.requests, "bound": cost,
             "found": len(found), "seconds": round(time.monotonic() - started, 3)}
    old = cache.state()
    scope = "find" if old is None or old.base_url != reader.base_url else old.scope
    cache.store(found.values(), replace=old is not None and old.base_url != reader.base_url,
                extra_refs=refs, extra_emails=emails,
                state={"base_url": reader.base_url, "organization": organization,
                       "scope": scope, "refreshed_at": _now(), "last_refresh": stats})
    return stats


# -- matching (polars) --------------------------------------------------------------------------
def row_signals(payloads: pl.DataFrame, target: str) -> pl.DataFrame:
    """Per valid row: _key, _ref, _email (trimmed, lower-cased) and _cid (a gift's contact.id)."""
    gift = target == "gift_transaction"
    p = pl.col("_payload")
    prefix = "$.contact." if gift else "$."
    email = p.str.json_path_match(prefix + "email").str.strip_chars().str.to_lowercase()
    cid = (p.str.json_path_match("$.contact.id").str.strip_chars().cast(pl.Int64, strict=False)
           if gift else pl.lit(None, pl.Int64))
    return payloads.select(
        "_source_file", "_record", "_key", "_payload",
        p.str.json_path_match(prefix + "referenceId").alias("_ref"),
        pl.when(email.str.contains("@")).then(email).otherwise(None).alias("_email"),
        cid.alias("_cid"))


def match_rows(signals: pl.DataFrame, cache: Cache, loaded: LoadedSpec) -> pl.DataFrame:
    """Adds _contact_id (the cached contact), _signal (see SIGNALS, null = new), _existing."""
    spec = loaded.spec
    assert spec.match is not None
    by, policy = list(spec.match.by), spec.match.policy
    contacts = spec.target == "contact_transaction"
    refs, emails, ids = cache.frames(spec.keys.source)
    frame = (signals.with_row_index("_i")
             .join(refs, on="_ref", how="left", maintain_order="left")
             .join(emails, on="_email", how="left", maintain_order="left")
             .join(ids.with_columns(pl.lit(True).alias("_id_known")), on="_cid", how="left",
                   maintain_order="left"))
    order = [("id", pl.col("_cid"))] + [(s, pl.col(f"_by_{s}")) for s in by]
    contact_id = pl.coalesce([e for _, e in order])
    signal: Any = pl.lit(None, pl.String)
    for name, expr in reversed(order):
        signal = pl.when(expr.is_not_null()).then(pl.lit(name)).otherwise(signal)
    frame = frame.with_columns(contact_id.alias("_contact_id"), signal.alias("_signal"))
    # A value seen on an earlier row that reaches the nightly batch and indexes its contact:
    # every sent contact row (merged or created), but only rows that create a contact for gifts
    # (gifts never modify an existing contact), and never a row the skip policy keeps back.
    everything = contacts and policy != "skip"
    scope = pl.lit(True) if everything else pl.col("_contact_id").is_null()
    for s in by:
        column = pl.when(scope).then(pl.col(_col(s)))
        earlier = column.is_not_null() & (pl.int_range(pl.len()).over(column) > 0)
        frame = frame.with_columns(
            pl.when(pl.col("_signal").is_null() & earlier).then(pl.lit(f"{s}_in_run"))
            .otherwise(pl.col("_signal")).alias("_signal"))
    return frame.with_columns(pl.col("_signal").is_not_null().alias("_existing")).sort("_i")


def _path(field_name: str) -> str | None:
    parts = field_name.split(".")
    if any("'" in part or "]" in part for part in parts):
        return None
    return "$" + "".join(f"['{part}']" for part in parts)


def changed_rows(matched: pl.DataFrame, cache: Cache, loaded: LoadedSpec) -> pl.DataFrame:
    """Adds _changed for contact rows matched in the cache: any mapped field whose value differs
    from the cached contact's (an email counts as known when the contact has it at all).
    Fields a record lacks count as changed, so real CRM+ records (nested) are sent."""
    spec = loaded.spec
    target = get_target(spec.target)
    ids = matched.select(pl.col("_contact_id").drop_nulls().unique())["_contact_id"].to_list()
    frame = matched.join(cache.records(ids), on="_contact_id", how="left", maintain_order="left")
    known = cache.emails_of(ids).with_columns(pl.lit(True).alias("_email_known"))
    frame = frame.join(known, on=["_email", "_contact_id"], how="left", maintain_order="left")
    conds = []
    for name in spec.mappings:
        if name in (target.source_field, target.id_field):
            continue
        path = _path(name)
        if path is None:  # a name JSONPath cannot spell: count it as changed (send)
            conds.append(pl.lit(True))
            continue
        new = pl.col("_payload").str.json_path_match(path)
        if name == "email":
            conds.append(new.is_not_null() & pl.col("_email_known").is_null())
        else:
            old = pl.col("_crm_record").str.json_path_match(path)
            conds.append(new.is_not_null() & (old.is_null() | (new != old)))
    changed = pl.any_horizontal(conds) if conds else pl.lit(False)
    return frame.with_columns(
        pl.when(pl.col("_contact_id").is_null()).then(pl.lit(True))
        .otherwise(changed.fill_null(True)).alias("_changed"))


def _skips(frame: pl.DataFrame, policy: str) -> pl.Expr:
    """Rows the policy keeps back: contacts found in the cache (skip), and unchanged (changed)."""
    found = pl.col("_contact_id").is_not_null()
    if policy == "skip":
        return found
    if policy == "changed" and "_changed" in frame.columns:
        return found & ~pl.col("_changed")
    return pl.lit(False)


def prediction(matched: pl.DataFrame, loaded: LoadedSpec, cache_info: dict[str, Any],
               refresh: dict[str, Any] | None) -> dict[str, Any]:
    """The report's `prematch` block."""
    spec = loaded.spec
    assert spec.match is not None
    policy = spec.match.policy
    contacts = spec.target == "contact_transaction"
    skip = _skips(matched, policy)
    counts = matched.select(
        pl.len().alias("rows"), pl.col("_existing").sum().alias("existing"),
        skip.sum().alias("skip"),
        *[(pl.col("_signal") == s).sum().alias(s) for s in SIGNALS],
        (pl.col("_signal") == "id").and_(pl.col("_id_known").is_null()).sum().alias("unknown_id"),
        pl.col("_existing").and_(~skip).sum().alias("existing_sent"),
    ).row(0, named=True)
    rows, existing = int(counts["rows"]), int(counts["existing"])
    batch = {"contactsCreated": rows - existing}
    if contacts:
        batch["contactsUpdated"] = int(counts["existing_sent"])
    else:
        batch["giftsForExistingContacts"] = existing
    block: dict[str, Any] = {
        "status": "ok", "method": spec.match.method, "by": list(spec.match.by),
        "policy": policy, "cache": cache_info, "refresh": refresh,
        "rows": {"checked": rows, "existing": existing, "new": rows - existing},
        "by_signal": {s: int(counts[s]) for s in SIGNALS if counts[s]},
        "policy_effect": {"send": rows - int(counts["skip"]), "skip": int(counts["skip"])},
        "nightly_batch": batch,
    }
    if counts["unknown_id"]:
        block["unknown_contact_ids"] = int(counts["unknown_id"])
    return block


def _cache_info(cache: Cache | None, path: Path) -> dict[str, Any]:
    state = cache.state() if cache is not None else None
    if state is None or cache is None:
        return {"path": str(path), "contacts": 0, "refreshed_at": None}
    age = None
    if (moment := _time(state.refreshed_at)) is not None:
        age = round((datetime.now(UTC) - moment).total_seconds())
    return {"path": str(path), "base_url": state.base_url, "organization": state.organization,
            "scope": state.scope, "contacts": cache.count(), "refreshed_at": state.refreshed_at,
            "age_seconds": age, "high_water": state.high_water}


# -- the dry run ----------------------------------------------------------------------------------
@dataclass(kw_only=True)
class MatchOptions:
    """How the dry run pre-matches: from the cache (default, no network) or after a refresh."""

    refresh: bool = False
    full: bool = False
    base_url: str = DEFAULT_BASE_URL
    token: str = ""
    ledger_path: Path | None = None
    sandbox: bool = False  # the spec's sandbox ledger (`.sandbox.sqlite`)
    transport: Any = None
    notify: Callable[[str], None] = field(default=lambda message: None)


def ledger_file(loaded: LoadedSpec, options: MatchOptions) -> Path:
    from etl.submit import default_ledger_path  # late: submit imports the dry run

    return options.ledger_path or default_ledger_path(loaded, sandbox=options.sandbox)


def predict(loaded: LoadedSpec, result: ValidationResult,
            options: MatchOptions | None = None) -> dict[str, Any] | None:
    """The dry run's `prematch` block (None without a `match:` section). Network only with
    `options.refresh` (reads: Organization/Current, then Contact/Query or Contact/Find)."""
    spec = loaded.spec
    if spec.match is None:
        return None
    options = options or MatchOptions()
    path = ledger_file(loaded, options)
    signals = row_signals(result.payloads, spec.target)
    refresh = None
    if options.refresh:
        if not options.token:
            raise MatchRefused("a pre-match refresh needs the API key in the environment "
                               "(VIRTUOUS_API_TOKEN, or --token-env)")
        try:
            check_base_url(options.base_url)
        except ValueError as exc:
            raise MatchRefused(str(exc)) from None
        opened = open_cache(path, readonly=False)
        assert opened is not None
        db, cache = opened
        try:
            refresh = asyncio.run(_refresh(loaded, cache, signals, options.base_url,
                                           options.token, options.transport, options.notify,
                                           full=options.full,
                                           per_hour=spec.load.requests_per_hour))
            return _block(signals, cache, loaded, path, refresh)
        finally:
            db.close()
    opened = open_cache(path, readonly=True)
    if opened is None or opened[1].state() is None:
        if opened is not None:
            opened[0].close()
        return {"status": "no_cache", "method": spec.match.method, "by": list(spec.match.by),
                "policy": spec.match.policy, "cache": {"path": str(path), "contacts": 0},
                "hint": "no pre-match cache yet: `etl validate --refresh-match` (reads CRM+) "
                        "or `etl run` fills it"}
    db, cache = opened
    try:
        return _block(signals, cache, loaded, path, None)
    finally:
        db.close()


def _block(signals: pl.DataFrame, cache: Cache, loaded: LoadedSpec, path: Path,
           refresh: dict[str, Any] | None) -> dict[str, Any]:
    matched = _matched(signals, cache, loaded)
    return prediction(matched, loaded, _cache_info(cache, path), refresh)


def _matched(signals: pl.DataFrame, cache: Cache, loaded: LoadedSpec) -> pl.DataFrame:
    matched = match_rows(signals, cache, loaded)
    spec = loaded.spec
    assert spec.match is not None
    if spec.match.policy == "changed" and spec.target == "contact_transaction":
        matched = changed_rows(matched, cache, loaded)
    return matched


async def _refresh(loaded: LoadedSpec, cache: Cache, signals: pl.DataFrame, base_url: str,
                   token: str, transport: Any, notify: Callable[[str], None], *, full: bool,
                   per_hour: float | None, backoff_base: float = 0.5,
                   backoff_cap: float = 30.0) -> dict[str, Any]:
    spec = loaded.spec
    assert spec.match is not None
    reader = Reader(base_url, token, loaded, requests_per_hour=per_hour, transport=transport,
                    backoff_base=backoff_base, backoff_cap=backoff_cap)
    async with reader.client:
        organization = await reader.organization(spec.organization)
        if spec.match.method == "find":
            stats = await refresh_find(reader, cache, loaded, organization, signals,
                                       notify=notify)
        else:
            stats = await refresh_bulk(reader, cache, loaded, organization, full=full,
                                       notify=notify)
    stats["requests"] = reader.requests
    return stats


# -- the run ------------------------------------------------------------------------------------
async def apply_policy(plan: Plan, dry: DryRun, loaded: LoadedSpec, ledger: Ledger, run_id: int,
                       first_id: int, options: RunOptions) -> dict[str, Any] | None:
    """`etl run`: refresh the cache, match the rows about to be sent, and keep back what the
    policy says (ledger status `skipped_existing`, the CRM+ contact id in `crm_id` when the
    ledger has it, and in the reason and details). Rewrites report.json / report.html with the
    fresh prediction. Errors (key refused, another organization, over max_requests, CRM+
    unreachable) close the run with that reason and are raised: nothing was sent."""
    spec = loaded.spec
    if spec.match is None:
        return None
    from etl.report import write_prematch

    try:
        cache = Cache(ledger.db)
        sends = set(plan.sends)
        signals = row_signals(dry.result.payloads, spec.target)
        index: dict[str, int] = {}
        for i, k in enumerate(plan.keys):
            if k is not None:
                index.setdefault(k, i)
        signals = signals.with_columns(pl.Series(
            "_pending", [index.get(k, -1) in sends for k in signals["_key"].to_list()],
            dtype=pl.Boolean))
        per_hour = None if options.unlimited else (
            options.requests_per_hour or spec.load.requests_per_hour)
        lookups = signals.filter("_pending") if spec.match.method == "find" else signals
        refresh = None
        if sends:  # a re-run with nothing to send reads nothing either (the cache as it is)
            refresh = await _refresh(loaded, cache, lookups, options.base_url, options.token,
                                     options.transport, options.notify, full=False,
                                     per_hour=per_hour, backoff_base=options.backoff_base,
                                     backoff_cap=options.backoff_cap)
    except (CredentialsRefused, TransientError, MatchRefused) as exc:
        ledger.finish_run(run_id, exc.exit_code, f"pre-match: {exc}", {})
        raise
    matched = _matched(signals, cache, loaded)
    keep = matched.filter(pl.col("_pending") & _skips(matched, spec.match.policy))
    skipped = _record_skips(plan, ledger, first_id, index, keep, spec.match.policy)
    block = prediction(matched, loaded, _cache_info(cache, ledger.path), refresh)
    block["skipped_in_run"] = skipped
    write_prematch(dry, block)
    options.notify(
        f"pre-match: {block['rows']['existing']:,} of {block['rows']['checked']:,} valid rows "
        "exist in CRM+ (" + ", ".join(f"{k} {v:,}" for k, v in block["by_signal"].items())
        + f"); policy {spec.match.policy}: {skipped:,} not sent")
    return block


def _record_skips(plan: Plan, ledger: Ledger, first_id: int, index: dict[str, int],
                  keep: pl.DataFrame, policy: str) -> int:
    if keep.height == 0:
        return 0
    has_crm_id = any(r[1] == "crm_id" for r in ledger.db.execute("PRAGMA table_info(rows)"))
    updates = []
    drop = set()
    for key, cid, signal in keep.select("_key", "_contact_id", "_signal").iter_rows():
        i = index[key]
        drop.add(i)
        why = "unchanged" if policy == "changed" else "exists"
        reason = f"{why}: contact {cid} (by {signal})"
        details = json.dumps([{"field": "contact.id", "code": f"EXISTS_BY_{signal.upper()}",
                               "message": str(cid)}])
        updates.append((SKIPPED, reason, details, str(cid), first_id + i))
        row = plan.rows[i]
        plan.rows[i] = (*row[:4], SKIPPED, reason, None, details, *row[8:])
    sql = ("UPDATE rows SET status=?, reason=?, error_details=?, crm_id=? WHERE id=?"
           if has_crm_id else "UPDATE rows SET status=?, reason=?, error_details=? WHERE id=?")
    with ledger.tx():
        ledger.db.executemany(sql, updates if has_crm_id else [u[:3] + u[4:] for u in updates])
    plan.sends = [i for i in plan.sends if i not in drop]
    return len(drop)
