"""Polling CRM+ for what its nightly batch made of the open rows, within the request budget.

Bulk first: `POST /api/Gift/Query` / `POST /api/Contact/Query`, `take` 1,000 records a request,
filtered by transactionSource / referenceSource and `modifiedSince` (the oldest time an open row
could have been created after). Per-row lookups (`GET /api/Gift/{source}/{id}`,
`GET /api/Contact/{source}/{id}`) only where they are cheaper: when fewer rows are open than
bulk pages are left (estimated from the previous poll's total before the first page). Every
request takes a RequestBudget slot; 429 pauses everybody, 5xx and timeouts back off and retry.

A poll *covers* (`checked`) the keys whose presence or absence it proved; an interrupted bulk
poll proves nothing absent. Per-row lookups cannot see two gifts with one transactionId: only
the bulk pages can.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from etl.client import CrmClient, EndpointMissing, Reply, coerce_number
from etl.errors import TransientError
from etl.ratelimit import RequestBudget, budgeted
from etl.recon_store import iso


@dataclass
class PollResult:
    mode: str = "none"  # bulk | lookup | bulk+lookup
    found: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # key -> records
    via: dict[str, str] = field(default_factory=dict)  # key -> "bulk" | "lookup"
    checked: set[str] = field(default_factory=set)
    requests: int = 0
    total: int | None = None
    since: datetime | None = None
    complete: bool = True
    error: str | None = None


def text_id(value: Any) -> str | None:
    """An id as text: 50001, 50001.0 and "50001" -> "50001"; None/bool/empty -> None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def records_of(data: Any) -> tuple[list[dict[str, Any]], int | None]:
    """`{"list": [...], "total": n}` (any capitalization) or a bare list."""
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)], None
    if not isinstance(data, dict):
        return [], None
    items: Any = next((data[k] for k in ("list", "List", "items", "results") if k in data), [])
    total = coerce_number(next((data[k] for k in ("total", "Total") if k in data), None))
    records = [r for r in items if isinstance(r, dict)] if isinstance(items, list) else []
    return records, int(total) if total is not None else None


class Poller:
    """Polls one pipeline's records: kind "gift" or "contact", keys `prefix + id`."""

    def __init__(self, client: CrmClient, budget: RequestBudget, *, kind: str, source: str,
                 prefix: str, max_attempts: int = 5, page_size: int = 1000,
                 backoff_base: float = 0.5, backoff_cap: float = 30.0,
                 rng: Callable[[], float] = random.random) -> None:
        self.client, self.budget, self.kind, self.source = client, budget, kind, source
        self.prefix, self.max_attempts, self.page_size = prefix, max_attempts, page_size
        self.backoff_base, self.backoff_cap, self.rng = backoff_base, backoff_cap, rng
        self.requests = 0

    def keys_of(self, record: dict[str, Any]) -> list[str]:
        """The ledger keys a CRM+ record carries (only this pipeline's source)."""
        want = self.source.casefold()
        if self.kind == "gift":
            ident = text_id(record.get("transactionId"))
            src = str(record.get("transactionSource") or "").casefold()
            return [self.prefix + ident] if ident and src == want else []
        out = []
        for ref in record.get("contactReferences") or []:
            if not isinstance(ref, dict):
                continue
            src = str(ref.get("source") or ref.get("referenceSource") or "").casefold()
            ident = text_id(ref.get("id") if "id" in ref else ref.get("referenceId"))
            if ident and src == want:
                out.append(self.prefix + ident)
        return out

    async def call(self, endpoint: str, body: bytes | None = None,
                   **kwargs: Any) -> Reply | None:
        """One request within the budget, retried when transient; None on 404."""

        async def send() -> Reply | None:
            self.requests += 1
            try:
                return await self.client.send(endpoint, body, **kwargs)
            except EndpointMissing:
                return None

        return await budgeted(send, self.budget, max_attempts=self.max_attempts,
                              base=self.backoff_base, cap=self.backoff_cap, rng=self.rng)

    async def poll(self, keys: set[str], since: datetime | None,
                   pages_hint: int | None) -> PollResult:
        result = PollResult(since=since)
        if not keys:
            return result
        started = self.requests
        try:
            if pages_hint is not None and len(keys) < pages_hint:
                result.mode = "lookup"
                await self._lookups(keys, result)
            else:
                await self._bulk(keys, since, result)
        except TransientError as exc:
            result.complete, result.error = False, self.client.redact(str(exc))
        finally:
            result.requests = self.requests - started
        return result

    async def _bulk(self, keys: set[str], since: datetime | None, result: PollResult) -> None:
        result.mode = "bulk"
        endpoint = "gift_query" if self.kind == "gift" else "contact_query"
        filters: dict[str, str] = {
            ("transactionSource" if self.kind == "gift" else "referenceSource"): self.source}
        if since is not None:
            filters["modifiedSince"] = iso(since)
        body = json.dumps(filters).encode()
        skip = 0
        while True:
            reply = await self.call(endpoint, body, params={"skip": skip, "take": self.page_size})
            if reply is None:  # no Query endpoint here: one lookup per row
                result.mode = "lookup" if skip == 0 else "bulk+lookup"
                await self._lookups(keys - result.found.keys(), result)
                return
            records, total = records_of(reply.data)
            result.total = total
            for record in records:
                for key in self.keys_of(record):
                    if key in keys:
                        result.found.setdefault(key, []).append(record)
                        result.via[key] = "bulk"
            skip += self.page_size
            if not records or (total is not None and skip >= total) or (
                    total is None and len(records) < self.page_size):
                break
            missing = keys - result.found.keys()
            if total is not None and len(missing) < math.ceil((total - skip) / self.page_size):
                result.mode = "bulk+lookup"
                await self._lookups(missing, result)
                return
        result.checked |= keys

    async def _lookups(self, keys: set[str], result: PollResult) -> None:
        endpoint = "gift_by_key" if self.kind == "gift" else "contact_by_reference"
        for key in sorted(keys):
            reply = await self.call(endpoint, path_args={"source": self.source,
                                                         "id": key[len(self.prefix):]})
            if reply is not None and isinstance(reply.data, dict):
                result.found.setdefault(key, []).append(reply.data)
                result.via[key] = "lookup"
            result.checked.add(key)
        result.checked |= result.found.keys()
