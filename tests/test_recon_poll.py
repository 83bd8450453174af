"""Reconciliation reads against a fake CRM+ that answers in the DOCUMENTED shapes
(../shared/virtuous-api.md): what a bulk page proves, and when the per-row lookups take over."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from etl.confirm.poll import KeyGroup, Poller, PollResult
from etl.load.budget import RequestBudget
from etl.load.client import CrmClient

SOURCE = "LegacyCRM"
PREFIX = f"gift_transaction:{SOURCE}:"
OPTIONS = {"options": [
    {"parameter": "Transaction Source", "type": "String",
     "operatorOptions": [{"operator": "Is"}, {"operator": "IsNot"}]},
    {"parameter": "Batch", "type": "String", "operatorOptions": [{"operator": "Is"}]},
    {"parameter": "Last Modified Date", "type": "Date",
     "operatorOptions": [{"operator": "OnOrAfter"}, {"operator": "Before"}]},
], "operatorOptions": []}


def full_gift(i: int, *, batch: str = "gifts-run1", source: str = SOURCE) -> dict[str, Any]:
    return {"id": 50000 + i, "transactionSource": source, "transactionId": f"G{i}",
            "contactId": 7, "giftType": "Cash", "giftDate": "2024-01-02", "amount": 10.0,
            "batch": batch, "modifiedDateTimeUtc": "2024-01-03T00:00:00Z"}


class FakeCrm:
    """Documented routes only. `gifts` are the imported gifts; `break_page` alters one page."""

    def __init__(self, gifts: list[dict[str, Any]], *, options: Any = OPTIONS,
                 full_status: int = 200,
                 alter: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.gifts, self.options, self.full_status, self.alter = gifts, options, full_status, alter
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/Gift/QueryOptions":
            return httpx.Response(200, json=self.options) if self.options is not None else \
                httpx.Response(404)
        if path == "/api/Gift/Query/FullGift":
            if self.full_status != 200:
                return httpx.Response(self.full_status, json={
                    "message": "The request is invalid.",
                    "modelState": {"query.groups": ["The groups field is required."]}})
            body = json.loads(request.content)
            conds = body["groups"][0]["conditions"]
            field = {"Transaction Source": "transactionSource", "Batch": "batch"}
            sel = [g for g in self.gifts
                   if all(str(g[field[c["parameter"]]]) == c["value"] for c in conds)]
            skip, take = int(request.url.params["skip"]), int(request.url.params["take"])
            page = [dict(g) for g in sel[skip:skip + take]]
            if self.alter is not None:
                self.alter(page)
            return httpx.Response(200, json={"list": page, "total": len(sel)})
        if path.startswith(f"/api/Gift/{SOURCE}/"):
            ident = path.rsplit("/", 1)[1]
            hit = [g for g in self.gifts if g["transactionId"] == ident]
            return httpx.Response(200, json=hit[0]) if hit else httpx.Response(404)
        return httpx.Response(404)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.content]


def poll(fake: FakeCrm, groups: list[KeyGroup], *, kind: str = "gift",
         since: datetime | None = None) -> PollResult:
    async def go() -> PollResult:
        budget = RequestBudget(requests_per_hour=None)
        async with CrmClient("https://crm.example", "k",
                             transport=httpx.MockTransport(fake)) as client:
            poller = Poller(client, budget, kind=kind, source=SOURCE,
                            prefix=PREFIX if kind == "gift" else f"contact_transaction:{SOURCE}:",
                            max_attempts=2, backoff_base=0.0)
            return await poller.poll(groups, since, None)

    return asyncio.run(go())


def keys(ids: range) -> set[str]:
    return {f"{PREFIX}G{i}" for i in ids}


def test_10000_accepted_gifts_are_confirmed_in_at_most_15_requests() -> None:
    fake = FakeCrm([full_gift(i) for i in range(10_000)])
    result = poll(fake, [KeyGroup(keys(range(10_000)), "gifts-run1", 10_000)])
    assert result.requests <= 15
    assert result.found.keys() == keys(range(10_000)) and result.mode == "bulk"
    body = fake.bodies()[0]
    assert body["groups"] == [{"conditions": [
        {"parameter": "Transaction Source", "operator": "Is", "value": SOURCE,
         "secondaryValue": None, "values": None},
        {"parameter": "Batch", "operator": "Is", "value": "gifts-run1",
         "secondaryValue": None, "values": None}]}]
    assert all(r.url.params["take"] == "1000" for r in fake.requests[1:])


def test_a_complete_filtered_bulk_read_checks_the_keys_it_did_not_find() -> None:
    fake = FakeCrm([full_gift(i) for i in range(8)])
    result = poll(fake, [KeyGroup(keys(range(10)), "gifts-run1", 10)])
    assert result.found.keys() == keys(range(8))
    assert result.checked == keys(range(10))  # G8, G9 looked for and not there
    assert "/api/Gift/LegacyCRM/G8" not in fake.paths()  # no lookup wasted


@pytest.mark.parametrize(("why", "alter"), [
    ("record without transactionSource/transactionId",
     lambda page: page[3].pop("transactionId")),
    ("another transactionSource", lambda page: page[0].update(transactionSource="Other")),
    ("another batch", lambda page: page[5].update(batch="someone-else")),
])
def test_a_page_that_does_not_name_its_keys_or_ignored_the_filter_proves_nothing(
        why: str, alter: Callable[[list[dict[str, Any]]], None]) -> None:
    fake = FakeCrm([full_gift(i) for i in range(6)], alter=alter)
    result = poll(fake, [KeyGroup(keys(range(10)), "gifts-run1", 10)])
    assert any(why in f for f in result.fallbacks)
    lookups = [p for p in fake.paths() if p.startswith("/api/Gift/LegacyCRM/")]
    assert len(lookups) == 10  # every key settled by the documented per-row read
    assert result.found.keys() == keys(range(6))
    assert all(result.via[k] == "lookup" for k in result.found)


def test_a_refused_query_falls_back_to_per_row_lookups() -> None:
    fake = FakeCrm([full_gift(i) for i in range(3)], full_status=400)
    result = poll(fake, [KeyGroup(keys(range(4)), "gifts-run1", 4)])
    assert result.found.keys() == keys(range(3)) and result.mode == "lookup"
    assert result.checked == keys(range(4)) and result.complete
    assert any("HTTP 400" in f for f in result.fallbacks)


def test_without_a_batch_parameter_the_source_alone_is_queried() -> None:
    options = {"options": [OPTIONS["options"][0]]}
    fake = FakeCrm([full_gift(i) for i in range(5)], options=options)
    result = poll(fake, [KeyGroup(keys(range(5)), "gifts-run1", 5)])
    assert [c["parameter"] for c in fake.bodies()[0]["groups"][0]["conditions"]] == [
        "Transaction Source"]
    assert result.found.keys() == keys(range(5))


@pytest.mark.parametrize("options", [None, {"options": []}, {"unexpected": True}])
def test_without_query_options_for_the_source_only_lookups_are_used(options: Any) -> None:
    fake = FakeCrm([full_gift(i) for i in range(3)], options=options)
    result = poll(fake, [KeyGroup(keys(range(3)), "gifts-run1", 3)])
    assert "/api/Gift/Query/FullGift" not in fake.paths()
    assert result.found.keys() == keys(range(3)) and result.mode == "lookup"


def test_an_interrupted_paging_falls_back_for_the_keys_not_yet_found() -> None:
    fake = FakeCrm([full_gift(i) for i in range(2500)])
    real = fake.__call__
    seen = {"pages": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("FullGift"):
            seen["pages"] += 1
            if seen["pages"] >= 2:
                fake.requests.append(request)
                return httpx.Response(500)
        return real(request)

    async def go() -> PollResult:
        async with CrmClient("https://crm.example", "k",
                             transport=httpx.MockTransport(flaky)) as client:
            poller = Poller(client, RequestBudget(requests_per_hour=None), kind="gift",
                            source=SOURCE, prefix=PREFIX, max_attempts=2, backoff_base=0.0)
            return await poller.poll([KeyGroup(keys(range(1005)), "gifts-run1", 2500)],
                                     None, None)

    result = asyncio.run(go())
    assert result.found.keys() == keys(range(1005))
    assert {result.via[k] for k in keys(range(1000))} == {"bulk"}
    assert {result.via[k] for k in keys(range(1000, 1005))} == {"lookup"}


def test_contacts_are_read_from_full_records_with_a_day_of_overlap() -> None:
    seen: list[httpx.Request] = []
    contact = {"id": 9, "contactType": "Household", "name": "Ada",
               "contactReferences": [{"source": SOURCE, "id": "D1"}],
               "contactIndividuals": [{"firstName": "Ada", "lastName": "L", "contactMethods": []}],
               "modifiedDateTimeUtc": "2024-03-05T10:00:00Z"}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/Contact/QueryOptions":
            return httpx.Response(200, json=OPTIONS)
        if request.url.path == "/api/Contact/Query/FullContact":
            return httpx.Response(200, json={"list": [contact], "total": 1})
        return httpx.Response(404)

    async def go() -> PollResult:
        async with CrmClient("https://crm.example", "k",
                             transport=httpx.MockTransport(handler)) as client:
            poller = Poller(client, RequestBudget(requests_per_hour=None), kind="contact",
                            source=SOURCE, prefix=f"contact_transaction:{SOURCE}:")
            return await poller.poll([KeyGroup({f"contact_transaction:{SOURCE}:D1"})],
                                     datetime(2024, 3, 5, 0, 30, tzinfo=UTC), None)

    result = asyncio.run(go())
    cond = json.loads(seen[1].content)["groups"][0]["conditions"][0]
    assert (cond["parameter"], cond["operator"], cond["value"]) == (
        "Last Modified Date", "OnOrAfter", "03/04/2024")
    assert result.found.keys() == {f"contact_transaction:{SOURCE}:D1"}
    assert result.via[f"contact_transaction:{SOURCE}:D1"] == "bulk"


def test_contacts_without_references_prove_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/Contact/QueryOptions":
            return httpx.Response(200, json=OPTIONS)
        if request.url.path == "/api/Contact/Query/FullContact":  # abbreviated items
            return httpx.Response(200, json={"list": [{"id": 9, "name": "Ada"}], "total": 1})
        return httpx.Response(404)

    async def go() -> PollResult:
        async with CrmClient("https://crm.example", "k",
                             transport=httpx.MockTransport(handler)) as client:
            poller = Poller(client, RequestBudget(requests_per_hour=None), kind="contact",
                            source=SOURCE, prefix="c:")
            return await poller.poll([KeyGroup({"c:D1"})], datetime(2024, 3, 5, tzinfo=UTC),
                                     None)

    result = asyncio.run(go())
    assert any("contactReferences" in f for f in result.fallbacks)
    assert result.via == {} and result.checked == {"c:D1"}  # looked up per row: 404
