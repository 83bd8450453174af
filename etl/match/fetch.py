"""Per-value `GET /api/Contact/Find` and the refresh as the dry run and the run both do it:
the organization first, then `match.method` (bulk paging, etl/match/bulk.py, or per-value
Find), and after a bulk read that proved nothing absent for a signal, Find for the rows the
cache does not know (within what is left of `match.max_requests`).

Find answers the full nested contact or 404 (docs.virtuous.org find-a-contact). The key is in
the URL, so a 200 confirms that reference (or email) even when the record omits its
`contactReferences`, and a 404 proves that value absent (kept in `prematch_absent`). A 400 for
one value leaves that value unknown; a 5xx after the retries, or a refused key, stops the
refresh after what was learnt is stored.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from etl.base.errors import RequestRejected
from etl.match.bulk import refresh_bulk, refused
from etl.match.cache import Cache
from etl.match.contacts import Contact, now_iso, parse_contact
from etl.match.reader import PAGE, MatchRefused, Reader
from etl.match.signals import signal_column
from etl.spec.parse import LoadedSpec

FIND = "GET /api/Contact/Find"


def lookup_plan(signals: pl.DataFrame, by: Sequence[str]) -> dict[str, int]:
    """Upper bound of Contact/Find requests: distinct values per signal (rows naming a
    contact.id need none)."""
    todo = signals.filter(pl.col("_cid").is_null())
    return {s: todo.select(pl.col(signal_column(s)).drop_nulls().n_unique()).item() for s in by}


def unmatched(signals: pl.DataFrame, cache: Cache, source: str,
              by: Sequence[str]) -> pl.DataFrame:
    """The rows the cache finds by none of `by` (nor by a gift's contact.id)."""
    refs, emails, _ = cache.frames(source)
    todo = signals.filter(pl.col("_cid").is_null())
    if "reference" in by:
        todo = todo.join(refs.select("_ref"), on="_ref", how="anti", maintain_order="left")
    if "email" in by:
        todo = todo.join(emails.select("_email"), on="_email", how="anti",
                         maintain_order="left")
    return todo


async def refresh_find(reader: Reader, cache: Cache, loaded: LoadedSpec, organization: str,
                       signals: pl.DataFrame, *, notify: Callable[[str], None] = lambda m: None,
                       by: Sequence[str] | None = None, fallback_cap: int | None = None,
                       ) -> dict[str, Any]:
    """One Contact/Find per distinct value, signal by signal, for rows still unknown. As
    `match.method: find` it refuses to start above `match.max_requests`; as a bulk read's
    fallback (`fallback_cap`: the requests left) it asks only about rows the cache does not
    know, and does nothing (rows stay unknown) above the cap."""
    spec = loaded.spec
    assert spec.match is not None
    by = list(by or spec.match.by)
    source = spec.keys.source
    if fallback_cap is not None:
        signals = unmatched(signals, cache, source, spec.match.by)
    bound = lookup_plan(signals, by)
    cost = sum(bound.values())
    per_hour = spec.load.requests_per_hour * (1 - spec.load.reserve_share)
    notify(f"pre-match: up to {cost:,} Contact/Find requests ("
           + ", ".join(f"{s} {n:,}" for s, n in bound.items())
           + f"), about {cost / per_hour * 60:.0f} min of this pipeline's budget")
    stats: dict[str, Any] = {"mode": "find", "by": by, "bound": cost, "found": 0, "absent": 0,
                             "unknown": 0, "problems": []}
    cap = spec.match.max_requests if fallback_cap is None else fallback_cap
    if cost > cap and fallback_cap is None:
        raise MatchRefused(
            f"pre-match: the per-row lookup would cost up to {cost:,} requests, over "
            f"match.max_requests ({spec.match.max_requests:,}); use method: bulk "
            f"(about {math.ceil(max(cost, 1) / PAGE)}+ requests per 1,000 contacts) or raise "
            "the cap")
    if cost > cap:
        stats["skipped"] = (f"{cost:,} Contact/Find requests would exceed what is left of "
                            f"match.max_requests ({cap:,}): rows the cache does not know stay "
                            "'unknown'")
        notify(f"pre-match: {stats['skipped']}")
        return stats
    started, before = time.monotonic(), reader.requests
    found: dict[int, Contact] = {}
    refs: list[tuple[str, str, int]] = []
    emails: list[tuple[str, int]] = []
    absent: list[tuple[str, str, str]] = []
    sem = asyncio.Semaphore(spec.load.concurrency)

    async def find(signal: str, value: str) -> tuple[str, Contact | None, str | None]:
        params: dict[str, str | int] = (
            {"referenceSource": source, "referenceId": value} if signal == "reference"
            else {"email": value})
        async with sem:
            try:
                reply = await reader.call("contact_find", params=params)
            except RequestRejected as exc:
                return value, None, refused(FIND, exc)
        if reply is None:
            return value, None, None  # 404: none has this value
        contact = parse_contact(reply.data)
        return value, contact, None if contact else f"{FIND}: a 200 without a usable id"

    todo = signals.filter(pl.col("_cid").is_null())
    failure: BaseException | None = None
    for signal in by:
        column = signal_column(signal)
        values = todo.select(pl.col(column).drop_nulls().unique(maintain_order=True))[column]
        results = await asyncio.gather(*(find(signal, v) for v in values.to_list()),
                                       return_exceptions=True)
        hits: list[str] = []
        for result in results:
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            value, contact, problem = result
            if contact is not None:
                found[contact.id] = contact
                hits.append(value)
                if signal == "reference":
                    refs.append((source, value, contact.id))
                else:
                    emails.append((value, contact.id))
            elif problem is None:
                absent.append((signal, source if signal == "reference" else "", value))
            else:
                stats["unknown"] += 1
                if len(stats["problems"]) < 5:
                    stats["problems"].append(problem)
        todo = todo.filter(~pl.col(column).is_in(hits) | pl.col(column).is_null())
        if failure is not None:
            break
    stats.update({"requests": reader.requests - before, "found": len(found),
                  "absent": len(absent), "seconds": round(time.monotonic() - started, 3)})
    if stats["unknown"]:
        notify(f"pre-match: {stats['unknown']:,} Contact/Find lookup(s) refused, those values "
               f"stay 'unknown' (first: {stats['problems'][0]})")
    state: dict[str, Any] = {}
    replace = False
    if fallback_cap is None:
        old = cache.state()
        replace = old is not None and (old.base_url != reader.base_url
                                       or old.organization != organization)
        # Find proves single values, never the whole organization: no signal is `proven`
        state = {"base_url": reader.base_url, "organization": organization, "scope": "find",
                 "refreshed_at": now_iso(), "last_refresh": stats, "proven": set(),
                 "full_at": None}
    cache.store(found.values(), replace=replace, extra_refs=refs, extra_emails=emails,
                absent=absent, state=state)
    if failure is not None:
        raise failure
    return stats


async def refresh(loaded: LoadedSpec, cache: Cache, signals: pl.DataFrame, base_url: str,
                  token: str, transport: Any, notify: Callable[[str], None], *, full: bool,
                  per_hour: float | None, backoff_base: float = 0.5,
                  backoff_cap: float = 30.0) -> dict[str, Any]:
    """One refresh: the organization first, then `match.method`; after a bulk read that
    proved some signal of `match.by` nothing, Find for the rows of `signals` the cache does not
    know. The stats count every request."""
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
            missing = [s for s in spec.match.by if s not in stats["proven"]]
            if missing and signals.height:
                left = max(spec.match.max_requests - reader.requests, 0)
                stats["fallback"] = await refresh_find(
                    reader, cache, loaded, organization, signals, notify=notify, by=missing,
                    fallback_cap=left)
    stats["requests"] = reader.requests
    return stats
