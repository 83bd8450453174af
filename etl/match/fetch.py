"""Reading CRM+ into the cache: paced, retried requests (the loader's `RequestBudget`), the
organization check, bulk paging of Contact/Query and per-value Contact/Find, each refused before
it starts when it would cost more than `match.max_requests`."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from etl.client import CrmClient, EndpointMissing, Reply, check_organization
from etl.errors import EtlError
from etl.match.cache import Cache
from etl.match.contacts import Contact, _now, parse_contact
from etl.match.signals import _col
from etl.ratelimit import RequestBudget, budgeted
from etl.spec import LoadedSpec, Match

PAGE = 1000  # Contact/Query's largest page


class MatchRefused(EtlError):
    """A pre-match that must not start: over `match.max_requests`, or no key for a refresh."""

    exit_code = 2


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

        async def send() -> Reply | None:
            self.requests += 1
            try:
                return await self.client.send(endpoint, content, params=params)
            except EndpointMissing:
                return None

        return await budgeted(send, self.budget, max_attempts=self.max_attempts,
                              base=self.backoff_base, cap=self.backoff_cap, rng=self.rng.random)

    async def organization(self, expected: str | None) -> str:
        return check_organization(await self.call("organization"), expected,
                                  "pre-match against it")


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


async def _refresh(loaded: LoadedSpec, cache: Cache, signals: pl.DataFrame, base_url: str,
                   token: str, transport: Any, notify: Callable[[str], None], *, full: bool,
                   per_hour: float | None, backoff_base: float = 0.5,
                   backoff_cap: float = 30.0) -> dict[str, Any]:
    """One refresh as the dry run and the run both do it: the organization first, then
    `match.method` (bulk paging or per-value find); the stats count every request."""
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
