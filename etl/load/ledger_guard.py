"""The ledger is the only memory of what was sent. When it is lost (deleted, replaced by an empty
one, a copy of the spec in another folder with a ledger of its own), the next run would send
every gift again. So before the FIRST send of a gift pipeline whose ledger shows nothing sent,
CRM+ is asked, with one documented FullGift query (take 1), whether gifts of this
transactionSource already exist; and `etl run --recover-ledger` rebuilds the ledger's knowledge
from CRM+ (every gift found by its key counts as accepted) before anything is sent.

    holds_gifts(reader, source)            -> "none" | "some" | "unknown"
    recover_gifts(reader, source, pages)   -> {transactionId: crm id} of this source

"unknown" (QueryOptions lacks "Transaction Source", the query is refused, a record without its
key fields or of another source: the filter was not applied) is treated like "some": refuse.
Contacts are not checked: a Contact Transaction sent again merges by reference.

What no documented read can see: transactions CRM+ still HOLDS (sent, not yet imported) and
gifts waiting in Update Needed / Match Needed. A ledger lost between a run and CRM+'s import is
therefore not caught by the check; only its backup (`etl ledger backup`) protects that window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from etl.base.errors import EtlError, RequestRejected
from etl.base.exitcodes import EXIT_LEDGER_UNKNOWN
from etl.load.client import Reply
from etl.load.crm_query import (
    GIFT_SOURCE,
    Condition,
    has_gift_key,
    parse_query_options,
    query_body,
    records_of,
)

Read = Callable[..., Awaitable[Reply | None]]  # (endpoint, body, params=...) -> Reply, None: 404
PAGE = 1000


class LedgerUnknown(EtlError):
    """CRM+ holds (or may hold) gifts of this source that the ledger does not know."""

    exit_code = EXIT_LEDGER_UNKNOWN


def _id(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return text.strip() or None


async def _source_body(read: Read, source: str) -> bytes | None:
    try:
        reply = await read("gift_query_options")
    except RequestRejected:
        return None
    name = parse_query_options(reply.data if reply else None).find(GIFT_SOURCE, "Is")
    return query_body([Condition(name, "Is", source)]) if name else None


def _page_keys(records: list[dict[str, Any]], source: str) -> dict[str, str] | None:
    """transactionId -> crm id of a page, or None when the page proves nothing."""
    out: dict[str, str] = {}
    for record in records:
        if not has_gift_key(record) or \
                str(record["transactionSource"]).strip().casefold() != source.casefold():
            return None
        ident = _id(record["transactionId"])
        if ident is not None:
            out[ident] = _id(record.get("id")) or ""
    return out


async def holds_gifts(read: Read, source: str) -> str:
    """Does CRM+ hold gifts of `source`? One QueryOptions and one FullGift (take 1) request."""
    body = await _source_body(read, source)
    if body is None:
        return "unknown"
    try:
        reply = await read("gift_query_full", body, params={"skip": 0, "take": 1})
    except RequestRejected:
        return "unknown"
    if reply is None:
        return "unknown"
    records, total = records_of(reply.data)
    if records:
        return "some" if _page_keys(records, source) is not None else "unknown"
    return "none" if total in (0, None) else "unknown"


async def recover_gifts(read: Read, source: str, *, max_pages: int) -> dict[str, str]:
    """Every gift of `source` in CRM+ (transactionId -> crm id), paging FullGift; raises
    LedgerUnknown when CRM+ cannot be asked or a page proves nothing."""
    body = await _source_body(read, source)
    if body is None:
        raise LedgerUnknown(f"cannot recover the ledger: CRM+'s QueryOptions offers no "
                            f"{GIFT_SOURCE!r} condition to find the gifts of {source!r}")
    found: dict[str, str] = {}
    for page in range(max_pages):
        try:
            reply = await read("gift_query_full", body, params={"skip": page * PAGE,
                                                                "take": PAGE})
        except RequestRejected as exc:
            raise LedgerUnknown(f"cannot recover the ledger: the gift query was refused "
                                f"({exc})") from None
        if reply is None:
            raise LedgerUnknown("cannot recover the ledger: CRM+ has no FullGift query here")
        records, total = records_of(reply.data)
        keys = _page_keys(records, source)
        if keys is None:
            raise LedgerUnknown("cannot recover the ledger: CRM+ answered records without "
                                "their transactionSource/transactionId, or of another source")
        found.update(keys)
        if len(records) < PAGE or (total is not None and (page + 1) * PAGE >= total):
            return found
    raise LedgerUnknown(f"cannot recover the ledger: more than {max_pages * PAGE:,} gifts of "
                        f"{source!r}; raise --recover-max-pages")
