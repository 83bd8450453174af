"""A local sandbox's per-row import outcome, kept in the ledger (`sandbox_outcomes` table).

CRM+ shows what its nightly import did with each transaction (created, merged into a contact,
parked in "needs update") only to the organization's staff, never through the API. The local
sandbox tells it on a control endpoint (`GET /sandbox/outcomes`, docs/sandbox.md), so a
rehearsal can show it next to each row. Sandbox-only: a real run never fills this table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

TABLE = ("CREATE TABLE IF NOT EXISTS sandbox_outcomes (key TEXT PRIMARY KEY, outcome TEXT NOT"
         " NULL, crm_id TEXT, reason TEXT, at TEXT)")
KINDS = {"gift": "gift_transaction", "contact": "contact_transaction"}


def fetch_outcomes(base_url: str, token: str, after: int = 0) -> list[dict[str, Any]]:
    """Every outcome the sandbox recorded after sequence `after`."""
    response = httpx.get(base_url.rstrip("/") + "/sandbox/outcomes", params={"after": after},
                         headers={"Authorization": f"Bearer {token}"}, timeout=60.0,
                         trust_env=False)
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()
    return items


def sandbox_pace(base_url: str, token: str) -> float | None:
    """The sandbox's own budget in requests an hour (None: no limit), so a rehearsal is paced
    by the sandbox and not by the spec's budget for the real API."""
    response = httpx.get(base_url.rstrip("/") + "/sandbox/rate-limit", timeout=30.0,
                         headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    response.raise_for_status()
    per_hour = response.json().get("requestsPerHour")
    return None if per_hour is None else float(per_hour)


def outcome_key(item: dict[str, Any]) -> str | None:
    """The ledger's row key (`target:source:id`) of one sandbox outcome."""
    target = KINDS.get(str(item.get("kind")))
    source = item.get("transactionSource") or item.get("referenceSource")
    ident = item.get("transactionId") or item.get("referenceId")
    if target is None or source is None or ident is None:
        return None
    return f"{target}:{source}:{ident}"


def record_outcomes(ledger_path: Path, items: Iterable[dict[str, Any]], prefix: str) -> int:
    """Store the outcomes whose key starts with `prefix` (this ledger's target and source);
    a later outcome of a key replaces the earlier one. Answers how many were stored."""
    rows = [(key, i["outcome"], i.get("crmId"), i.get("reason"), i.get("at"))
            for i in items if (key := outcome_key(i)) and key.startswith(prefix)]
    with closing(sqlite3.connect(ledger_path)) as db, db:
        db.execute(TABLE)
        db.executemany("INSERT OR REPLACE INTO sandbox_outcomes VALUES (?, ?, ?, ?, ?)", rows)
    return len(rows)


def read_outcomes(ledger_path: Path) -> dict[str, tuple[str, str | None]]:
    """key -> (outcome, crm id); empty when the ledger has no such table."""
    with closing(sqlite3.connect(ledger_path)) as db:
        try:
            found = db.execute("SELECT key, outcome, crm_id FROM sandbox_outcomes").fetchall()
        except sqlite3.OperationalError:
            return {}
    return {k: (o, c) for k, o, c in found}


def final_rows(ledger_path: Path, prefix: str) -> list[dict[str, Any]]:
    """Each key's latest ledger row with its CRM id and, when known, the sandbox's outcome."""
    outcomes = read_outcomes(ledger_path)
    with closing(sqlite3.connect(ledger_path)) as db:
        found = db.execute(
            "SELECT key, status, crm_id FROM rows WHERE id IN (SELECT MAX(id) FROM rows"
            " WHERE key IS NOT NULL GROUP BY key) ORDER BY id").fetchall()
    rows = []
    for key, status, crm_id in found:
        outcome, sandbox_id = outcomes.get(key, (None, None))
        rows.append({"key": key.removeprefix(prefix), "status": status,
                     "crm_id": crm_id or sandbox_id, "sandbox_outcome": outcome})
    return rows
