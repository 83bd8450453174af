"""The result ledger: one SQLite file per pipeline that accounts for every source row of every run.

    runs    one per `etl run`: spec hash, tool version, organization, start/end, counts, exit
    files   each source file seen: path, sha256, size, rows, first/last run
    rows    one per source row per run (rejected rows too): idempotency key, payload hash,
            source file + record, status, attempts, HTTP status, error code/details, batch id

Row statuses: rejected, pending, sending, accepted, already_accepted, failed, in_doubt,
conflict, needs_review (and confirmed, set by a reconciliation).

Schema 2 (etl reconcile, etl/confirm/store.py): rows gain crm_id, confirmed_at, confirmed_via,
review_from (the status a reconciliation moved to needs_review from) and checked_at (the last time
a complete poll proved the row absent from CRM+); tables webhook_deliveries, webhook_keys,
reconcile_polls and reconciles. Other modules may add their own tables to the same file with
CREATE TABLE IF NOT EXISTS: migrations only ever add.

Durability: WAL with synchronous=FULL; a batch's rows are marked `sending` in one committed
transaction before its request and settled in one transaction after it, so after kill -9 the
file is intact and the only rows whose fate is unknown are those left `sending`
(at most concurrency x batch size). A lock file keeps two runs off one ledger.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from etl.base.csvsafe import write_csv
from etl.base.errors import EtlError
from etl.base.redact import redact_frame, redact_value
from etl.base.safe_write import atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 3
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, target TEXT,"
        " spec_path TEXT, spec_hash TEXT, tool_version TEXT, base_url TEXT, organization TEXT,"
        " in_doubt_policy TEXT, started_at TEXT NOT NULL, ended_at TEXT, exit_code INTEGER,"
        " exit_reason TEXT, counts TEXT, summary TEXT)",
        "CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL,"
        " size INTEGER, rows INTEGER, first_run INTEGER, last_run INTEGER, UNIQUE(path, sha256))",
        "CREATE TABLE rows (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),"
        " source_file TEXT, record INTEGER, key TEXT, payload_hash TEXT, status TEXT NOT NULL,"
        " reason TEXT, attempts INTEGER NOT NULL DEFAULT 0, http_status INTEGER,"
        " error_code TEXT, error_details TEXT, batch_id TEXT, amount_cents INTEGER,"
        " currency TEXT, created_at TEXT, sent_at TEXT, done_at TEXT)",
        "CREATE INDEX rows_run_status ON rows(run_id, status)",
        "CREATE INDEX rows_key ON rows(key, id) WHERE key IS NOT NULL",
    ]),
    (2, [
        "ALTER TABLE rows ADD COLUMN crm_id TEXT",
        "ALTER TABLE rows ADD COLUMN confirmed_at TEXT",
        "ALTER TABLE rows ADD COLUMN confirmed_via TEXT",
        "ALTER TABLE rows ADD COLUMN review_from TEXT",
        "ALTER TABLE rows ADD COLUMN checked_at TEXT",
        "CREATE INDEX IF NOT EXISTS rows_status ON rows(status)",
        "CREATE TABLE IF NOT EXISTS webhook_deliveries (id INTEGER PRIMARY KEY,"
        " received_at TEXT NOT NULL, last_at TEXT, event TEXT, outcome TEXT NOT NULL,"
        " reason TEXT, body_sha256 TEXT, signed INTEGER, crm_id TEXT, keys INTEGER,"
        " rows_confirmed INTEGER NOT NULL DEFAULT 0, times INTEGER NOT NULL DEFAULT 1)",
        "CREATE INDEX IF NOT EXISTS webhook_deliveries_sha ON webhook_deliveries(body_sha256)",
        "CREATE TABLE IF NOT EXISTS webhook_keys (delivery_id INTEGER NOT NULL, key TEXT NOT NULL,"
        " kind TEXT NOT NULL, crm_id TEXT, received_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS webhook_keys_key ON webhook_keys(key)",
        "CREATE TABLE IF NOT EXISTS reconcile_polls (id INTEGER PRIMARY KEY, at TEXT NOT NULL,"
        " kind TEXT, mode TEXT, since TEXT, requests INTEGER, total INTEGER, found INTEGER,"
        " complete INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS reconciles (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL,"
        " ended_at TEXT, settings TEXT, polled INTEGER, exit_code INTEGER, summary TEXT)",
    ]),
    (3, [
        # whose rows these are: one target + key source per ledger (Ledger.claim)
        "CREATE TABLE IF NOT EXISTS ledger_owner (target TEXT NOT NULL, source TEXT NOT NULL,"
        " pipeline TEXT, claimed_at TEXT NOT NULL)",
        # rows a run found unchanged (already accepted): counted, not stored again
        "CREATE TABLE IF NOT EXISTS run_counts (run_id INTEGER NOT NULL, source_file TEXT,"
        " status TEXT NOT NULL, currency TEXT, rows INTEGER NOT NULL, cents INTEGER NOT NULL,"
        " UNIQUE (run_id, source_file, status, currency))",
    ]),
]
COLUMNS = ["id", "run_id", "source_file", "record", "key", "payload_hash", "status", "reason",
           "attempts", "http_status", "error_code", "error_details", "batch_id", "amount_cents",
           "currency", "created_at", "sent_at", "done_at", "crm_id", "confirmed_at"]
INSERT_COLUMNS = ["id", "run_id", "source_file", "record", "key", "payload_hash", "status",
                  "reason", "error_code", "error_details", "amount_cents", "currency",
                  "created_at"]
OK_STATUSES = ("accepted", "already_accepted", "confirmed")
COUNTED_STATUSES = ("already_accepted",)  # per run as counts (run_counts), not as rows


class LedgerError(EtlError):
    """The ledger cannot be used (locked by another run, newer schema, unknown run)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class KeyState:
    """What earlier runs left for one idempotency key."""

    accepted_hash: str | None
    accepted_run: int | None
    doubt_hash: str | None  # in doubt (sent, never answered) since the last acceptance


class Ledger:
    """An open ledger file. Use as a context manager; not thread-safe (one event loop)."""

    def __init__(self, path: str | Path, *, lock: bool = True, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock_file = None
        if readonly:
            self.db = self._open_readonly()
            return
        try:
            if self.path.exists() and not self.path.is_file():
                raise LedgerError(f"{self.path}: not a regular file; name a ledger file")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = self._take_lock() if lock else None
            self.db = sqlite3.connect(self.path, isolation_level=None)
        except OSError as exc:
            self.close()
            raise LedgerError(f"{self.path}: cannot open the ledger ({exc.strerror or exc}); "
                              "check the folder exists and is writable") from None
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self._check_tables()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise damaged(self.path, exc) from None
        except BaseException:
            self.close()
            raise

    def _open_readonly(self) -> sqlite3.Connection:
        """For reading commands: no lock, no migration, works in a read-only folder."""
        if not self.path.is_file():
            raise LedgerError(f"{self.path}: no ledger file here")
        uri = self.path.resolve().as_uri()
        last: sqlite3.DatabaseError = sqlite3.DatabaseError("cannot be opened")
        for mode in ("?mode=ro", "?immutable=1"):  # immutable: the folder forbids -shm files
            db: sqlite3.Connection | None = None
            try:
                db = self.db = sqlite3.connect(uri + mode, uri=True, isolation_level=None)
                self._check_tables()
                return db
            except sqlite3.OperationalError as exc:  # e.g. no -shm allowed: try immutable
                last, retry = exc, True
            except sqlite3.DatabaseError as exc:  # not a database, tables missing
                last, retry = exc, False
            if db is not None:
                db.close()
            if not retry:
                break
        raise damaged(self.path, last)

    def _check_tables(self) -> None:
        have = {name for (name,) in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"runs", "files", "rows"} - have
        if missing:
            raise sqlite3.DatabaseError(f"tables missing: {', '.join(sorted(missing))}")

    def _take_lock(self) -> Any:
        if fcntl is None:  # pragma: no cover
            return None
        handle = open(str(self.path) + ".lock", "a+")  # noqa: SIM115 - held while open
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise LedgerError(f"{self.path}: another `etl run` is using this ledger") from None
        return handle

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        version = row[0] or 0
        if version > SCHEMA_VERSION:
            raise LedgerError(f"{self.path}: ledger schema {version} is newer than this tool "
                              f"({SCHEMA_VERSION}); upgrade etl")
        for number, statements in MIGRATIONS:
            if number > version:
                with self.tx():  # re-read inside the lock: another process may have migrated
                    now_at = self.db.execute("SELECT MAX(version) FROM schema_version")\
                        .fetchone()[0] or 0
                    if now_at >= number:
                        continue
                    for sql in statements:
                        self.db.execute(sql)
                    self.db.execute("DELETE FROM schema_version")  # one row: the version
                    self.db.execute("INSERT INTO schema_version VALUES (?)", (number,))

    def tx(self) -> _Tx:
        """`with ledger.tx():` one committed transaction."""
        return _Tx(self.db)

    def close(self) -> None:
        if getattr(self, "db", None) is not None:
            self.db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def claim(self, *, target: str, source: str, pipeline: str) -> None:
        """Bind the ledger to one pipeline's rows (target + key source), or refuse: two feeds
        sharing a ledger would reconcile, park and re-send each other's rows. A ledger made
        before owners were recorded is claimed when every key in it has this prefix."""
        mine = (target, source.casefold())
        with self.tx():
            row = self.db.execute("SELECT target, source, pipeline FROM ledger_owner").fetchone()
            if row is None:
                prefix = f"{target}:{source}:"
                other = self.db.execute(
                    "SELECT key FROM rows WHERE key IS NOT NULL AND lower(substr(key, 1, ?))"
                    " != lower(?) LIMIT 1", (len(prefix), prefix)).fetchone()
                if other is None:
                    self.db.execute("INSERT INTO ledger_owner VALUES (?, ?, ?, ?)",
                                    (target, source, pipeline, now()))
                    return
                kind, _, rest = str(other[0]).partition(":")
                row = (kind, rest.partition(":")[0], "another pipeline")
        if (row[0], str(row[1]).casefold()) != mine:
            raise LedgerError(
                f"{self.path}: this ledger holds the rows of {row[2]!r} ({row[0]}, source "
                f"{row[1]!r}), not of {pipeline!r} ({target}, source {source!r}); give each "
                "spec its own ledger (load.ledger), or none to use the default one")

    # -- a run ------------------------------------------------------------------------------
    def recover(self) -> int:
        """After a crash: rows left `sending` become `in_doubt`, unfinished runs are closed.
        Returns how many rows were in doubt."""
        with self.tx():
            n = self.db.execute("UPDATE rows SET status='in_doubt', done_at=?,"
                                " error_code='IN_DOUBT' WHERE status='sending'", (now(),)).rowcount
            for (run_id,) in self.db.execute("SELECT id FROM runs WHERE ended_at IS NULL")\
                    .fetchall():
                self._close_run(run_id, None, "crashed (found unfinished by a later run)", {})
        return n

    def start_run(self, **fields: Any) -> int:
        """Open a run; `fields` are runs columns (pipeline, target, spec_hash, ...)."""
        fields = {**{k: redact_value(v) for k, v in fields.items()}, "started_at": now()}
        names = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        with self.tx():
            cur = self.db.execute(f"INSERT INTO runs ({names}) VALUES ({marks})",  # noqa: S608
                                  tuple(fields.values()))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def set_run(self, run_id: int, **fields: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.tx():
            self.db.execute(f"UPDATE runs SET {sets} WHERE id=?",  # noqa: S608
                            (*map(redact_value, fields.values()), run_id))

    def finish_run(self, run_id: int, exit_code: int, reason: str,
                   summary: dict[str, Any]) -> None:
        with self.tx():
            self._close_run(run_id, exit_code, reason, summary)

    def _close_run(self, run_id: int, exit_code: int | None, reason: str,
                   summary: dict[str, Any]) -> None:
        counts = self._counts(run_id)
        self.db.execute("UPDATE runs SET ended_at=?, exit_code=?, exit_reason=?, counts=?,"
                        " summary=? WHERE id=?", (now(), exit_code, redact_value(reason),
                                                  json.dumps(counts),
                                                  redact_value(json.dumps(summary)), run_id))

    def add_files(self, run_id: int, files: Iterable[tuple[str, str, int, int]]) -> None:
        """Record (path, sha256, size, rows) of each source file read by the run."""
        with self.tx():
            self.db.executemany(
                "INSERT INTO files (path, sha256, size, rows, first_run, last_run)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path, sha256)"
                " DO UPDATE SET last_run=excluded.last_run",
                [(*f, run_id, run_id) for f in files])

    def prior_state(self) -> dict[str, KeyState]:
        """Per key: the payload hash last accepted, and whether it is in doubt since.

        A row a reconciliation sent to needs_review (review_from set) was held by CRM+: it counts
        as accepted, so it is never sent again on its own (a person resolves it in CRM+)."""
        acc: dict[str, tuple[str, int]] = {}
        doubt: dict[str, str] = {}
        cur = self.db.execute(
            "SELECT key, status, payload_hash, run_id FROM rows WHERE key IS NOT NULL AND"
            " (status IN ('accepted','confirmed','in_doubt','sending') OR"
            " (status='needs_review' AND review_from IS NOT NULL)) ORDER BY id")
        for key, status, digest, run_id in cur:
            if status not in ("in_doubt", "sending"):
                acc[key] = (digest, run_id)
                doubt.pop(key, None)
            else:
                doubt[key] = digest
        keys = acc.keys() | doubt.keys()
        return {k: KeyState(acc[k][0] if k in acc else None, acc[k][1] if k in acc else None,
                            doubt.get(k)) for k in keys}

    def sent_in_doubt(self, run_id: int) -> int:
        """Rows of a run that went out and got no definite answer."""
        return int(self.db.execute("SELECT COUNT(*) FROM rows WHERE run_id=? AND"
                                   " status='in_doubt' AND sent_at IS NOT NULL",
                                   (run_id,)).fetchone()[0])

    def has_sent(self) -> bool:
        """Whether any row of this ledger ever went out or is known to CRM+."""
        return self.db.execute(
            "SELECT 1 FROM rows WHERE sent_at IS NOT NULL OR status IN ('accepted',"
            "'already_accepted','confirmed','in_doubt','needs_review') LIMIT 1").fetchone() \
            is not None

    def add_recovered(self, run_id: int, prefix: str, found: dict[str, str]) -> None:
        """Gifts found in CRM+ by their key (ledger recovery): confirmed rows without a payload
        hash, so a later run sends none of them again."""
        stamp = now()
        with self.tx():
            self.db.executemany(
                "INSERT INTO rows (run_id, key, status, reason, created_at, sent_at, crm_id,"
                " confirmed_at, confirmed_via) VALUES (?, ?, 'confirmed', 'recovered', ?, ?, ?,"
                " ?, 'recovery')",
                [(run_id, prefix + ident, stamp, stamp, crm or None, stamp)
                 for ident, crm in found.items()])

    def backup(self, target: str | Path) -> Path:
        """A consistent copy while runs may write (SQLite's online backup), written to a temp
        file and moved into place; never over something that is not a regular file."""
        out = Path(target)
        try:
            with atomic(out) as tmp:
                copy = sqlite3.connect(tmp)
                try:
                    self.db.backup(copy)
                finally:
                    copy.close()
        except (OSError, sqlite3.DatabaseError) as exc:
            raise LedgerError(f"{out}: cannot write the backup ({exc})") from None
        return out

    def add_rows(self, rows: Sequence[Sequence[Any]]) -> int:
        """Insert rows (INSERT_COLUMNS minus id and created_at); returns the first id given:
        row i has id first + i. Rows `already_accepted` are counted per run (run_counts), not
        stored again, so a nightly re-read of the same file does not grow the ledger."""
        status_at = INSERT_COLUMNS.index("status") - 1
        counted: dict[tuple[int, str, str, str | None], list[int]] = {}
        with self.tx():
            first = (self.db.execute("SELECT COALESCE(MAX(id), 0) FROM rows").fetchone()[0]) + 1
            stamp = now()
            kept = []
            for i, r in enumerate(rows):
                if r[status_at] in COUNTED_STATUSES:
                    cell = counted.setdefault((r[0], r[1], r[status_at], r[-1]), [0, 0])
                    cell[0] += 1
                    cell[1] += r[-2] or 0
                else:
                    kept.append((first + i, *r, stamp))
            self.db.executemany(
                f"INSERT INTO rows ({', '.join(INSERT_COLUMNS)})"  # noqa: S608
                f" VALUES ({', '.join('?' for _ in INSERT_COLUMNS)})", kept)
            self.db.executemany(
                "INSERT INTO run_counts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " rows = rows + excluded.rows, cents = cents + excluded.cents",
                [(*k, n, c) for k, (n, c) in counted.items()])
        return first

    def mark_sending(self, batch_id: str, row_ids: Sequence[int]) -> None:
        """Before a batch's request: its rows are `sending` (committed)."""
        stamp = now()
        with self.tx():
            self.db.executemany("UPDATE rows SET status='sending', batch_id=?, sent_at=?"
                                " WHERE id=?", ((batch_id, stamp, r) for r in row_ids))

    def settle(self, outcomes: Iterable[tuple[int, str, int, int | None, str | None,
                                              str | None]]) -> None:
        """After a batch: (row id, status, attempts, http status, code, details), one commit."""
        stamp = now()
        with self.tx():
            self.db.executemany(
                "UPDATE rows SET status=?, attempts=attempts+?, http_status=?, error_code=?,"
                " error_details=?, done_at=? WHERE id=?",
                ((s, a, h, redact_value(c), redact_value(d), stamp, r)
                 for r, s, a, h, c, d in outcomes))

    # -- reading -----------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM runs ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def run(self, run_id: int | None = None) -> dict[str, Any]:
        """One run (None: the latest)."""
        runs = self.runs()
        found = [r for r in runs if r["id"] == run_id] if run_id is not None else runs[-1:]
        if not found:
            raise LedgerError(f"{self.path}: no run {run_id}"
                              if run_id is not None else f"{self.path}: no runs yet")
        return found[0]

    def _counts(self, run_id: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for status, n in self.db.execute(
                "SELECT status, COUNT(*) FROM rows WHERE run_id=? GROUP BY status UNION ALL"
                " SELECT status, SUM(rows) FROM run_counts WHERE run_id=? GROUP BY status",
                (run_id, run_id)):
            out[status] = out.get(status, 0) + n
        return dict(sorted(out.items()))

    def counts(self, run_id: int) -> dict[str, int]:
        """Rows of a run by status (the stored rows and the counted ones)."""
        return self._counts(run_id)



    def totals(self, run_id: int) -> list[tuple[str, str, int, int]]:
        """(stage, currency, rows, cents) for valid, sent and accepted rows of a run."""
        sql = ("SELECT ?, COALESCE(currency, ''), COUNT(*), COALESCE(SUM(amount_cents), 0)"
               " FROM rows WHERE run_id=? AND {} GROUP BY 2")
        stages = {"valid": "reason != 'invalid'", "sent": "attempts > 0",
                  "accepted": "status IN ('accepted','already_accepted','confirmed')"}
        counted = self.db.execute("SELECT COALESCE(currency, ''), SUM(rows), SUM(cents) FROM"
                                  " run_counts WHERE run_id=? GROUP BY 1", (run_id,)).fetchall()
        out: list[tuple[str, str, int, int]] = []
        for stage, where in stages.items():
            cells = {c: [n, cents] for _, c, n, cents in
                     self.db.execute(sql.format(where), (stage, run_id)).fetchall()}
            if stage != "sent":  # counted rows are valid and accepted, never sent again
                for cur, n, cents in counted:
                    cell = cells.setdefault(cur, [0, 0])
                    cell[0] += n
                    cell[1] += cents
            out += [(stage, c, n, cents) for c, (n, cents) in sorted(cells.items())]
        return out

    def frame(self, run_id: int) -> pl.DataFrame:
        """Every row of a run, in source order."""
        cur = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM rows WHERE run_id=?"  # noqa: S608
                              " ORDER BY id", (run_id,))
        schema = {c: (pl.Int64 if c in ("id", "run_id", "record", "attempts", "http_status",
                                         "amount_cents") else pl.String) for c in COLUMNS}
        return pl.DataFrame(cur.fetchall(), schema=schema, orient="row")

    def export(self, run_id: int, out: str | Path, fmt: str = "csv") -> Path:
        """Write a run's rows to CSV (spreadsheet-safe) or Parquet."""
        self.run(run_id)
        frame = self.frame(run_id).sort("source_file", "record", maintain_order=True)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            return write_csv(frame, out)
        if fmt == "parquet":
            with atomic(out) as tmp:
                redact_frame(frame).write_parquet(tmp)
            return out
        raise LedgerError(f"unknown export format {fmt!r} (csv or parquet)")

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])


def file_counts(db: sqlite3.Connection, run_id: int, source_file: str) -> dict[str, int]:
    """One source file's rows of a run by status: the stored rows and the counted ones."""
    out: dict[str, int] = {}
    for status, n in db.execute(
            "SELECT status, COUNT(*) FROM rows WHERE run_id=? AND source_file=? GROUP BY status"
            " UNION ALL SELECT status, SUM(rows) FROM run_counts WHERE run_id=? AND"
            " source_file=? GROUP BY status", (run_id, source_file, run_id, source_file)):
        out[status] = out.get(status, 0) + n
    return dict(sorted(out.items()))


def damaged(path: Path, exc: BaseException) -> LedgerError:
    """The message for a ledger SQLite cannot use: what it is, and what to do."""
    text = str(exc)
    if "full" in text:
        return LedgerError(f"{path}: the disk is full ({text}); free space and run again: rows "
                           "that were being sent stay in doubt, none is lost")
    return LedgerError(f"{path}: not a usable ledger ({text}); restore it from a backup, or move "
                       "it aside to start a new one (the first run then checks CRM+ for gifts "
                       "already sent)")


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not exc_type:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # SQLite already rolled back after SQLITE_FULL
            self.db.execute("ROLLBACK")
