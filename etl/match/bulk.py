"""Bulk refresh: page `POST /api/Contact/Query/FullContact?skip=&take=1000` into the cache.

The body is always the documented language (`groups` of `conditions`, etl/load/crm_query.py) and its
parameter names come from `GET /api/Contact/QueryOptions`; nothing is guessed:

    incremental  "Last Modified Date" OnOrAfter (or GreaterThanOrEqual) the day BEFORE the
                 newest modified time cached (date values are day-grained; a whole day of
                 overlap also covers the organization's time zone, which is at most 14 h off)
    full         "Contact Id" IsKnown when offered, else "Last Modified Date" OnOrAfter 01/01/1900

When QueryOptions answers 404/400 or offers neither, no Query is sent (a groupless body is not
the API) and the caller falls back to per-value Contact/Find. A read proves absence for a signal
only when every page was read (no 400, no 5xx, the `total` stable and reached) and every record
carried that signal's fields (`contactReferences`; `contactIndividuals[].contactMethods`). An
incomplete read still adds the contacts it saw, but proves nothing absent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from etl.base.errors import RequestRejected, TransientError
from etl.load.crm_query import (
    CONTACT_MODIFIED,
    Condition,
    QueryOptions,
    day_before,
    parse_query_options,
    query_body,
    query_date,
)
from etl.match.cache import Cache
from etl.match.contacts import Contact, get, now_iso, parse_contact, parse_time
from etl.match.reader import PAGE, MatchRefused, Reader
from etl.spec.parse import LoadedSpec

CONTACT_ID = "Contact Id"
SINCE_OPERATORS = ("OnOrAfter", "GreaterThanOrEqual")
EVER = date(1900, 1, 1)  # "Last Modified Date" OnOrAfter this: every contact (see docs)
QUERY = "POST /api/Contact/Query/FullContact"


def refused(what: str, exc: RequestRejected) -> str:
    """A 400's message and its modelState / details, naming the endpoint."""
    said = "; ".join(f"{d.get('field')}: {d.get('message')}".lstrip(": ")
                     for d in exc.details[:5])
    return f"{what} refused the request ({exc}{'; ' + said if said else ''})"


async def query_options(reader: Reader) -> tuple[QueryOptions | None, str | None]:
    """`GET /api/Contact/QueryOptions`, or None and why it cannot be used."""
    try:
        reply = await reader.call("contact_query_options")
    except RequestRejected as exc:
        return None, refused("GET /api/Contact/QueryOptions", exc)
    if reply is None:
        return None, "GET /api/Contact/QueryOptions answered 404"
    options = parse_query_options(reply.data)
    if not options.parameters:
        return None, "GET /api/Contact/QueryOptions listed no parameters"
    return options, None


def since_condition(options: QueryOptions, day: date) -> Condition | None:
    """'Last Modified Date' on or after `day`, spelled as QueryOptions offers it (or None)."""
    for operator in SINCE_OPERATORS:
        if (name := options.find(CONTACT_MODIFIED, operator)) is not None:
            return Condition(name, operator, query_date(day))
    return None


def all_condition(options: QueryOptions) -> Condition | None:
    """A documented condition every contact meets (or None when none is offered)."""
    if (name := options.find(CONTACT_ID, "IsKnown")) is not None:
        return Condition(name, "IsKnown")
    return since_condition(options, EVER)


@dataclass
class Read:
    """What the paging saw and what it proves."""

    contacts: list[Contact] = field(default_factory=list)
    records: int = 0
    pages: int = 0
    total: int | None = None
    keyed: bool = True  # every record carried contactReferences
    methods: bool = True  # every record carried contactIndividuals[].contactMethods
    problem: str | None = None  # why the read is incomplete
    error: TransientError | None = None  # raised after what was read is stored

    def proven(self) -> set[str]:
        if self.problem is not None:
            return set()
        return {s for s, ok in (("reference", self.keyed), ("email", self.methods)) if ok}


def _total(data: dict[str, Any]) -> int | None:
    try:
        return int(str(get(data, "total")).strip())
    except ValueError:
        return None


async def page_all(reader: Reader, body: bytes, max_pages: int, incremental: bool,
                   notify: Callable[[str], None]) -> Read:
    """Every page of the query, stopping (incomplete) at the first refusal or failure."""
    read = Read()
    skip = 0
    while True:
        if read.pages >= max_pages:
            read.problem = f"stopped after {read.pages:,} pages (match.max_requests)"
            break
        try:
            reply = await reader.call("contact_query_full", body, {"skip": skip, "take": PAGE})
        except RequestRejected as exc:
            read.problem = refused(QUERY, exc)
            break
        except TransientError as exc:
            read.problem, read.error = f"{QUERY}: paging interrupted at skip={skip}: {exc}", exc
            break
        read.pages += 1
        if reply is None:
            read.problem = f"{QUERY} answered 404"
            break
        data = reply.data
        listed = get(data, "list") if isinstance(data, dict) else data
        if not isinstance(listed, list):
            read.problem = f"{QUERY} answered no `list` at skip={skip}"
            break
        total = _total(data) if isinstance(data, dict) else None
        if read.pages == 1:
            read.total = total
            if total is not None:
                pages = math.ceil(total / PAGE)
                if pages > max_pages:
                    raise MatchRefused(
                        f"pre-match: reading {total:,} contacts needs {pages:,} Query/FullContact "
                        f"requests, over match.max_requests ({max_pages:,}); raise it or use "
                        "method: find")
            notify(f"pre-match: reading {'?' if total is None else f'{total:,}'} "
                   f"{'modified ' if incremental else ''}contacts in "
                   f"{max(math.ceil((total or 0) / PAGE), 1):,} Query/FullContact request(s)")
        elif total is not None and total != read.total and read.problem is None:
            read.problem = (f"the total changed while paging ({read.total} -> {total}): contacts "
                            "were added or removed, so skip/take may have missed some")
        for rec in listed:
            contact = parse_contact(rec)
            if contact is None:
                read.problem = read.problem or f"a record without a usable id at skip={skip}"
                continue
            read.contacts.append(contact)
            read.keyed &= contact.keyed
            read.methods &= contact.methods_known
        read.records += len(listed)
        skip += len(listed)
        if len(listed) < PAGE or (read.total is not None and skip >= read.total):
            break
    if read.problem is None and read.total is not None and read.records < read.total:
        read.problem = f"read {read.records:,} of the {read.total:,} contacts the total announced"
    return read


async def refresh_bulk(reader: Reader, cache: Cache, loaded: LoadedSpec, organization: str, *,
                       full: bool = False, notify: Callable[[str], None] = lambda m: None,
                       ) -> dict[str, Any]:
    """Page Query/FullContact into the cache: everything (first time, another host or
    organization, an incomplete cache, or `full`), else what was modified since the day before
    the newest modified time cached. Stats say what the read proves (`proven`)."""
    spec = loaded.spec
    assert spec.match is not None
    started = time.monotonic()
    old = cache.state()
    foreign = old is None or old.base_url != reader.base_url or old.organization != organization
    incremental = (not full and not foreign and old is not None and bool(old.proven)
                   and old.full_at is not None and parse_time(old.high_water) is not None)
    stats: dict[str, Any] = {"mode": "none", "fetched": 0, "since": None, "query": None,
                             "complete": False, "proven": [], "problem": None, "notes": []}
    options, problem = await query_options(reader)
    condition = None
    if options is not None:
        if incremental:
            assert old is not None
            moment = parse_time(old.high_water)
            assert moment is not None
            condition = since_condition(options, day_before(moment))
            if condition is None:
                stats["notes"].append(f"QueryOptions offers no {CONTACT_MODIFIED!r} with "
                                      f"{' or '.join(SINCE_OPERATORS)}: a full refresh instead")
                incremental = False
        if not incremental:
            condition = all_condition(options)
            if condition is None:
                problem = (f"QueryOptions offers neither {CONTACT_ID!r} IsKnown nor "
                           f"{CONTACT_MODIFIED!r} OnOrAfter: no documented query selects "
                           "every contact")
    read = Read(problem=problem)
    if condition is not None:
        stats["mode"] = "incremental" if incremental else "full"
        stats["query"] = condition.to_json()
        stats["since"] = condition.value if incremental else None
        read = await page_all(reader, query_body([condition]), spec.match.max_requests,
                              incremental, notify)
    proven = read.proven()
    if incremental and old is not None:
        proven &= old.proven
    # `paged`: every page read; `complete`: that, and every record carried its key fields
    paged = read.problem is None and condition is not None
    waters = [w for w in [old.high_water if incremental and old else None]
              + [c.modified for c in read.contacts] if w]
    stamp = now_iso()
    stats.update({"fetched": len(read.contacts), "paged": paged,
                  "complete": paged and proven >= {"reference", "email"},
                  "proven": sorted(proven), "problem": read.problem,
                  "seconds": round(time.monotonic() - started, 3)})
    if read.problem:
        notify(f"pre-match: {read.problem}; the cache proves no contact absent"
               + (" (rows it does not find are 'unknown')" if read.error is None else ""))
    state: dict[str, Any] = {
        "base_url": reader.base_url, "organization": organization, "scope": "all",
        "refreshed_at": stamp, "high_water": max(waters) if waters else None,
        "last_refresh": stats, "proven": proven if paged else set(),
        "full_at": (stamp if not incremental else old.full_at if old else None)
        if paged else None}
    # a complete full read replaces the cache; an incomplete one only adds what it saw, except
    # over another host's or organization's contacts, which are never kept
    replace = (paged and not incremental) or foreign
    stats["changed"] = cache.store(read.contacts, replace=replace, state=state)
    if read.error is not None:
        raise read.error
    return stats
