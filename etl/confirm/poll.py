"""Polling CRM+ for what its import made of the open rows, within the request budget, with the
documented reads only (docs/reconcile.md, "what proves what").

Bulk: `POST /api/Gift/Query/FullGift` / `POST /api/Contact/Query/FullContact`, 1,000 full
records a page, with a `groups`/`conditions` body (etl/load/crm_query.py) whose parameter names come
from `GET .../QueryOptions`:
- gifts: "Transaction Source" Is <source> AND "Batch" Is <the tool's batch name>, one query per
  batch (the run names its batches), or the source alone where a batch cannot be used;
- contacts: "Last Modified Date" OnOrAfter the day before the oldest open row was sent (dates
  are day-grained), references read from each record's contactReferences.

A bulk read proves nothing when QueryOptions does not offer a needed parameter, the query is
refused (400) or missing (404), paging is interrupted, or ANY record on a page lacks the key
fields (transactionSource + transactionId, or contactReferences) or shows the filter was not
applied (another source or batch, a contact modified before the asked day). In each case the
keys not yet found fall back to the per-row lookups (`GET /api/Gift/{source}/{id}`,
`GET /api/Contact/{source}/{id}`), the documented way to confirm one row: their URL names the
key, so a 200 confirms it. Per-row lookups are also used where they are cheaper.

A poll *covers* (`checked`) the keys it looked for and did not find. For a gift that is NOT proof
of absence: a gift held in Update Needed / Match Needed answers 404 to every read.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from etl.base.errors import RequestRejected, TransientError
from etl.confirm.store import parse_time
from etl.load.budget import RequestBudget, budgeted
from etl.load.client import CrmClient, EndpointMissing, Reply
from etl.load.crm_query import (
    CONTACT_MODIFIED,
    GIFT_BATCH,
    GIFT_SOURCE,
    Condition,
    QueryOptions,
    day_before,
    has_contact_key,
    has_gift_key,
    parse_query_options,
    query_body,
    query_date,
    records_of,
)

SINCE_OPERATORS = ("OnOrAfter", "GreaterThanOrEqual", "After")
ONE_DAY = timedelta(days=1)


@dataclass
class KeyGroup:
    """Open keys that one bulk query can select: a gift batch (`batch` set) or the whole source;
    `sent` is how many rows went out in it (the bulk cost estimate)."""

    keys: set[str]
    batch: str | None = None
    sent: int = 0


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
    fallbacks: list[str] = field(default_factory=list)  # why a bulk read proved nothing

    def add_mode(self, mode: str) -> None:
        if self.mode in ("none", mode):
            self.mode = mode
        else:
            self.mode = "bulk+lookup"


def text_id(value: Any) -> str | None:
    """An id as text: 50001, 50001.0 and "50001" -> "50001"; None/bool/empty -> None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


class ProvesNothing(Exception):
    """A bulk read whose answer cannot prove presence or absence; the message says why."""


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
        """One read within the budget, retried when transient; None on 404."""

        async def send() -> Reply | None:
            self.requests += 1
            try:
                return await self.client.send(endpoint, body, **kwargs)
            except EndpointMissing:
                return None

        return await budgeted(send, self.budget, max_attempts=self.max_attempts,
                              base=self.backoff_base, cap=self.backoff_cap, rng=self.rng)

    async def query_options(self) -> QueryOptions:
        """What this organization's Query offers (empty when QueryOptions is refused/absent)."""
        try:
            reply = await self.call(f"{self.kind}_query_options")
        except RequestRejected:
            return QueryOptions()
        return parse_query_options(reply.data if reply is not None else None)

    async def poll(self, groups: list[KeyGroup], since: datetime | None,
                   pages_hint: int | None) -> PollResult:
        """Look for every key of `groups`: bulk where it is possible and cheaper, else per row."""
        result = PollResult(since=since)
        keys = set().union(*(g.keys for g in groups)) if groups else set()
        if not keys:
            return result
        started = self.requests
        try:
            options = await self.query_options()
            for group in groups:
                await self._group(group, options, since, pages_hint, result)
        except TransientError as exc:
            result.complete, result.error = False, self.client.redact(str(exc))
        finally:
            result.requests = self.requests - started
        return result

    def _conditions(self, group: KeyGroup, options: QueryOptions,
                    since: datetime | None) -> list[Condition]:
        """The documented conditions that select `group`; raises ProvesNothing when the
        organization's QueryOptions do not offer them."""
        if self.kind == "gift":
            src = options.find(GIFT_SOURCE, "Is")
            if src is None:
                raise ProvesNothing(f"QueryOptions offers no {GIFT_SOURCE!r} with 'Is'")
            out = [Condition(src, "Is", self.source)]
            batch = options.find(GIFT_BATCH, "Is") if group.batch else None
            if batch is not None and group.batch:
                out.append(Condition(batch, "Is", group.batch))
            else:
                group.batch = None  # the source alone: the cost estimate is the last total
            return out
        if since is None:
            raise ProvesNothing("no send time to select contacts by")
        for operator in SINCE_OPERATORS:
            name = options.find(CONTACT_MODIFIED, operator)
            if name is not None:
                return [Condition(name, operator, query_date(day_before(since)))]
        raise ProvesNothing(f"QueryOptions offers no {CONTACT_MODIFIED!r} date condition")

    async def _group(self, group: KeyGroup, options: QueryOptions, since: datetime | None,
                     pages_hint: int | None, result: PollResult) -> None:
        try:
            conditions = self._conditions(group, options, since)
        except ProvesNothing as why:
            result.fallbacks.append(str(why))
            await self._lookups(group.keys, result)
            return
        pages = math.ceil(group.sent / self.page_size) if group.batch else pages_hint
        if pages is not None and len(group.keys) < pages:
            await self._lookups(group.keys, result)  # cheaper than the pages
            return
        try:
            await self._bulk(group, conditions, since, result)
        except (ProvesNothing, RequestRejected, TransientError) as why:
            result.fallbacks.append(self.client.redact(str(why)))
            await self._lookups(group.keys - result.found.keys(), result)

    def _check_page(self, records: list[dict[str, Any]], group: KeyGroup,
                    since: datetime | None) -> None:
        """Raise ProvesNothing unless every record names its key and matches the filter."""
        for record in records:
            if self.kind == "gift":
                if not has_gift_key(record):
                    raise ProvesNothing("a record without transactionSource/transactionId")
                if str(record.get("transactionSource")).strip().casefold() != \
                        self.source.casefold():
                    raise ProvesNothing("a record of another transactionSource: the filter "
                                        "was not applied")
                if group.batch is not None and str(record.get("batch") or "").strip() \
                        .casefold() != group.batch.casefold():
                    raise ProvesNothing("a record of another batch (or none): the filter was "
                                        "not applied")
            else:
                if not has_contact_key(record):
                    raise ProvesNothing("a record without contactReferences")
                modified = parse_time(record.get("modifiedDateTimeUtc"))
                # a day of slack beyond the asked day: CRM+ compares in its own time zone
                if since is not None and modified is not None and \
                        modified.astimezone(UTC).date() < day_before(since) - ONE_DAY:
                    raise ProvesNothing("a contact modified before the asked day: the filter "
                                        "was not applied")

    async def _bulk(self, group: KeyGroup, conditions: list[Condition],
                    since: datetime | None, result: PollResult) -> None:
        endpoint = f"{self.kind}_query_full"
        body = query_body(conditions)
        skip, found_here = 0, set()
        while True:
            reply = await self.call(endpoint, body, params={"skip": skip, "take": self.page_size})
            if reply is None:
                raise ProvesNothing(f"{endpoint}: not found (404)")
            records, total = records_of(reply.data)
            self._check_page(records, group, since)
            result.add_mode("bulk")
            result.total = total if result.total is None else result.total + (total or 0)
            for record in records:
                for key in self.keys_of(record):
                    if key in group.keys:
                        result.found.setdefault(key, []).append(record)
                        result.via[key] = "bulk"
                        found_here.add(key)
            skip += self.page_size
            if not records or (total is not None and skip >= total) or (
                    total is None and len(records) < self.page_size):
                break
            missing = group.keys - found_here
            if total is not None and len(missing) < math.ceil((total - skip) / self.page_size):
                await self._lookups(missing, result)
                return
        result.checked |= group.keys

    async def _lookups(self, keys: set[str], result: PollResult) -> None:
        if not keys:
            return
        result.add_mode("lookup")
        endpoint = "gift_by_key" if self.kind == "gift" else "contact_by_reference"
        for key in sorted(keys):
            reply = await self.call(endpoint, path_args={"source": self.source,
                                                         "id": key[len(self.prefix):]})
            if reply is not None and isinstance(reply.data, dict):
                result.found.setdefault(key, []).append(reply.data)
                result.via[key] = "lookup"
            result.checked.add(key)
