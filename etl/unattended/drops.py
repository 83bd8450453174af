"""Nightly file drops: which files a run takes, and what happens to them afterwards.

    select_files()   the files the source names, oldest first (mtime, then name), each hashed;
                     with `new_only` those processed before are skipped by content (sha256), so a
                     re-delivery under a new name is recognized and a changed file is not
    quarantine()     files failing file-level checks (SourceError: encoding, missing columns,
                     unreadable) move to a quarantine folder with `<name>.reason.txt` beside them
    settle_files()   after sending: a file whose rows all reached a final status (accepted,
                     already accepted, rejected, conflict, parked in doubt) is recorded in
                     `drop_files` and, with an archive folder, moved there
    intake()         all of the above before a run reads anything (etl run)

Moves go through etl.unattended.filemove.move_file (never overwrites, never loses a file).

The `drop_files` table lives in the ledger file (created here with CREATE TABLE IF NOT EXISTS):
    drop_files  sha256 PRIMARY KEY, path, size, rows, first_run, last_run, processed_at,
                archived_to
"""

from __future__ import annotations

import glob as globlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl.base.errors import SourceError
from etl.base.filecheck import FileChanged, file_digest
from etl.base.safe_write import write_text
from etl.load.ledger import file_counts
from etl.prepare.result import FileInfo
from etl.read.sources import read_file, resolve_files
from etl.spec.parse import LoadedSpec
from etl.spec.pipeline import Pipeline
from etl.unattended.filemove import fsync_dir, move_file

TABLES = [
    "CREATE TABLE IF NOT EXISTS drop_files (sha256 TEXT PRIMARY KEY, path TEXT NOT NULL,"
    " size INTEGER, rows INTEGER, first_run INTEGER, last_run INTEGER, processed_at TEXT,"
    " archived_to TEXT)",
]
# A file is processed when none of its rows is left in another status (pending, sending,
# failed, needs_review: the next run reads the file again and sends only those).
FINAL = frozenset({"accepted", "already_accepted", "confirmed", "rejected", "conflict",
                   "in_doubt", "skipped_existing"})  # the last: etl/match/ kept it back


def stamp(seconds: float | None = None) -> str:
    moment = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="seconds")


@dataclass
class DropFile:
    """One file the source matched, and what this run did with it.

    outcome: new (to read) -> processed | unfinished; or skipped (processed before), waiting
    (younger than --min-age), quarantined."""

    path: Path
    mtime: float
    sha256: str = ""
    size: int = 0
    outcome: str = "new"
    detail: str | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    moved_to: str | None = None
    rows: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "modified": stamp(self.mtime), "sha256": self.sha256,
                "size": self.size, "outcome": self.outcome, "detail": self.detail,
                "rows": self.rows, "statuses": self.statuses, "moved_to": self.moved_to}


@dataclass
class Intake:
    """The files of one run, oldest first."""

    files: list[DropFile]
    new_only: bool

    @property
    def to_read(self) -> list[DropFile]:
        return [f for f in self.files if f.outcome == "new"]

    def paths(self) -> list[Path]:
        return [f.path for f in self.to_read]

    def count(self, outcome: str) -> int:
        return sum(f.outcome == outcome for f in self.files)

    def problems(self) -> list[str]:
        """What a scheduler should alert on (quarantined files, failed moves)."""
        out = []
        if n := self.count("quarantined"):
            out.append(f"{n} file(s) quarantined")
        if n := sum("move failed" in (f.detail or "") for f in self.files):
            out.append(f"{n} file(s) could not be moved")
        return out


# A drop file younger than this is taken to be still arriving (`etl run --min-age`, whose default
# it is for a glob source; a single named file is read whatever its age).
DROP_MIN_AGE = 60.0


def is_drop(loaded: LoadedSpec) -> bool:
    """A glob source is a drop folder: by default a run takes only its new files."""
    return globlib.has_magic(loaded.spec.source.path)


def ensure_tables(db: sqlite3.Connection) -> None:
    for sql in TABLES:
        db.execute(sql)


def processed(db: sqlite3.Connection | None) -> dict[str, tuple[str, int | None]]:
    """sha256 -> (path, last run) of every file processed before."""
    if db is None:
        return {}
    try:
        rows = db.execute("SELECT sha256, path, last_run FROM drop_files").fetchall()
    except sqlite3.OperationalError:  # a ledger from before drops (opened read-only)
        return {}
    return {sha: (path, run) for sha, path, run in rows}


def select_files(loaded: LoadedSpec, db: sqlite3.Connection | None, *, new_only: bool,
                 min_age: float = 0.0, clock: Callable[[], float] = time.time) -> Intake:
    """The source's files, oldest first, with what this run should do with each."""
    try:
        paths = resolve_files(loaded)
    except SourceError:
        if not is_drop(loaded):
            raise
        paths = []  # an empty drop folder: a quiet night
    stats = sorted(((p, p.stat().st_mtime_ns) for p in paths), key=lambda t: (t[1], t[0].name))
    done = processed(db) if new_only else {}
    seen: dict[str, Path] = {}
    files: list[DropFile] = []
    for path, mtime_ns in stats:
        f = DropFile(path, mtime_ns / 1e9)
        files.append(f)
        age = clock() - f.mtime
        if age < min_age:
            f.outcome = "waiting"
            f.detail = f"modified {age:.0f} s ago (--min-age {min_age:g} s): left for the next run"
            continue
        f.sha256, f.size = file_digest(path)
        if f.sha256 in done:
            first, run = done[f.sha256]
            f.outcome = "skipped"
            f.detail = (f"already processed (run {run})" if first == str(path.resolve()) else
                        f"re-delivered: same content as {first}, processed in run {run}")
        elif new_only and f.sha256 in seen:
            f.outcome = "skipped"
            f.detail = f"re-delivered: same content as {seen[f.sha256]} in this drop"
        seen.setdefault(f.sha256, path)
    return Intake(files, new_only)


def preview(loaded: LoadedSpec, ledger_path: Path) -> Intake:
    """What the next run would take (for `etl validate --new-only`): the ledger is read-only."""
    db = None
    if ledger_path.exists():
        db = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    try:
        return select_files(loaded, db, new_only=True)
    finally:
        if db is not None:
            db.close()


def intake(loaded: LoadedSpec, db: sqlite3.Connection, *, new_only: bool | None,
           quarantine_dir: Path | None, min_age: float | None,
           notify: Callable[[str], None]) -> Intake:
    """A run's files: selected (new_only None: only new ones when the source is a glob; min_age
    None: DROP_MIN_AGE for a glob, else 0), said, and with a quarantine folder, the unreadable
    ones moved there."""
    ensure_tables(db)
    if min_age is None:
        min_age = DROP_MIN_AGE if is_drop(loaded) else 0.0
    found = select_files(loaded, db, new_only=is_drop(loaded) if new_only is None else new_only,
                         min_age=min_age)
    for f in found.files:
        if f.outcome != "new":
            notify(f"{f.outcome}: {f.path.name}: {f.detail}")
    if quarantine_dir is not None:
        quarantine(found, loaded, quarantine_dir, notify)
    return found


def preview_paths(pipeline: Pipeline) -> list[Path]:
    """`etl validate --new-only`: the files the next `etl run` would read, oldest first."""
    return preview(pipeline, pipeline.ledger_path).paths()


def quarantine(intake: Intake, loaded: LoadedSpec, folder: Path,
               notify: Callable[[str], None]) -> None:
    """Read each new file once; one that fails file-level checks moves to `folder` with a reason
    file, and the run goes on with the others. One that changed while it was read is not bad,
    only not finished: it waits for the next run."""
    for f in intake.to_read:
        try:
            read_file(f.path, loaded)
        except FileChanged as exc:
            f.outcome, f.detail = "waiting", exc.message
            notify(f"waiting: {f.path.name}: {exc.message}")
        except SourceError as exc:
            f.outcome, f.detail = "quarantined", str(exc)
            try:
                moved = move_file(f.path, folder)
            except OSError as err:
                f.detail += f"; move failed: {err}"
                notify(f"could not quarantine {f.path}: {err}")
                continue
            f.moved_to = str(moved)
            _write_reason(moved, f, exc, loaded)
            notify(f"quarantined {f.path.name} -> {moved}: {exc}")


def _write_reason(moved: Path, f: DropFile, exc: SourceError, loaded: LoadedSpec) -> None:
    where = exc.path + (f":{exc.line}" if exc.line else "")
    text = (f"file: {f.path}\nsha256: {f.sha256}\nsize: {f.size}\nmodified: {stamp(f.mtime)}\n"
            f"pipeline: {loaded.spec.name} ({loaded.path})\nquarantined: {stamp()} "
            f"by pid {os.getpid()}\nwhere: {where}\nwhat failed: {exc.message}\n"
            f"error: {type(exc).__name__}\n\nFix the file and drop it again (a fixed file has "
            "new content, so the next run takes it).\n")
    reason = moved.with_name(moved.name + ".reason.txt")
    write_text(reason, text)  # atomic, redacted, never through a link
    fsync_dir(reason.parent)


def settle_files(intake: Intake, db: sqlite3.Connection, run_id: int, infos: Sequence[FileInfo],
                 archive: Path | None, notify: Callable[[str], None]) -> None:
    """After sending: record finished files, move them (and skipped ones) to the archive."""
    ensure_tables(db)
    for f, info in zip(intake.to_read, infos, strict=True):
        f.rows = info.rows
        f.statuses = file_counts(db, run_id, info.path)
        open_rows = {s: n for s, n in f.statuses.items() if s not in FINAL}
        if open_rows:
            f.outcome = "unfinished"
            f.detail = ("rows not final: " + ", ".join(f"{n} {s}" for s, n in open_rows.items())
                        + "; the next run reads the file again and sends only those")
            continue
        f.outcome = "processed"
        db.execute("INSERT INTO drop_files (sha256, path, size, rows, first_run, last_run,"
                   " processed_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE"
                   " SET last_run=excluded.last_run, processed_at=excluded.processed_at",
                   (info.sha256, str(f.path.resolve()), info.size, info.rows, run_id, run_id,
                    stamp()))
    if archive is None:
        return
    for f in intake.files:
        if f.outcome not in ("processed", "skipped"):
            continue
        try:
            moved = move_file(f.path, archive, sha256=f.sha256)
        except OSError as err:
            f.detail = (f.detail + "; " if f.detail else "") + f"move failed: {err}"
            notify(f"could not archive {f.path}: {err}")
            continue
        f.moved_to = str(moved)
        if f.outcome == "processed":
            db.execute("UPDATE drop_files SET archived_to=? WHERE sha256=?", (str(moved), f.sha256))
