"""SQLite persistence for the sandbox state: one table per collection, a JSON document per row.

The in-memory state is the truth while the server runs; this file is a write-through journal
that lets a restarted sandbox (`--state sandbox.db`) pick up where the last one stopped, and lets
a test or benchmark open the file afterwards to see exactly what arrived.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TABLES = (
    "requests", "held", "contacts", "gifts", "needs_update", "duplicates", "rejected", "outcomes",
    "webhooks", "deliveries", "received",
)


class Store:
    """Tables `(k TEXT PRIMARY KEY, doc TEXT)`. Not thread-safe by itself: the state locks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        for table in TABLES:
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (k TEXT PRIMARY KEY, doc TEXT NOT NULL)"
            )
        self._open = False

    def _begin(self) -> None:
        if not self._open:
            self.conn.execute("BEGIN")
            self._open = True

    def put(self, table: str, key: Any, doc: Any) -> None:
        self.put_many(table, [(key, doc)])

    def put_many(self, table: str, rows: Iterable[tuple[Any, Any]]) -> None:
        assert table in TABLES
        self._begin()
        self.conn.executemany(
            f"INSERT OR REPLACE INTO {table} (k, doc) VALUES (?, ?)",  # noqa: S608 - fixed names
            [(str(k), json.dumps(d, separators=(",", ":"))) for k, d in rows],
        )

    def delete_many(self, table: str, keys: Iterable[Any]) -> None:
        assert table in TABLES
        self._begin()
        self.conn.executemany(
            f"DELETE FROM {table} WHERE k = ?", [(str(k),) for k in keys]  # noqa: S608
        )

    def clear(self) -> None:
        self._begin()
        for table in TABLES:
            self.conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names

    def commit(self) -> None:
        if self._open:
            self.conn.execute("COMMIT")
            self._open = False

    def load(self, table: str) -> list[tuple[str, Any]]:
        assert table in TABLES
        rows = self.conn.execute(f"SELECT k, doc FROM {table}").fetchall()  # noqa: S608
        return [(k, json.loads(doc)) for k, doc in rows]

    def close(self) -> None:
        self.commit()
        self.conn.close()
