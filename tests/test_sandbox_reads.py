"""Sandbox contract: lookups, bulk queries and the organization's reference lists."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sandbox_fixtures import contact, gift, sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.sandbox.server import running_sandbox


def test_organization_current(sandbox):
    with sandbox.client() as c:
        assert c.get("/api/Organization/Current").json() == {
            "id": 4242, "organizationName": "Sandbox Organization",
            "organizationTimeZone": "America/Chicago"}


def test_organization_name_is_configurable():
    with running_sandbox(organization_name="Gotham Sandbox",
                         organization_timezone="America/New_York") as sb, sb.client() as c:
        body = c.get("/api/Organization/Current").json()
    assert body["organizationName"] == "Gotham Sandbox"
    assert body["organizationTimeZone"] == "America/New_York"


def test_reference_lists(sandbox):
    with sandbox.client() as c:
        types = c.get("/api/Contact/Types").json()
        assert [t["type"] for t in types] == [
            "Household", "Organization", "Foundation", "Church", "School"]
        assert all(set(t) == {"parentType", "type"} for t in types)
        assert c.get("/api/ContactMethod/Types").json() == [
            "Home Email", "Work Email", "Other Email", "Mobile Phone", "Home Phone", "Work Phone"]
        non_cash = c.get("/api/Gift/NonCashGiftTypes").json()
        assert non_cash["total"] == len(non_cash["list"]) == 6
        assert {"id": 3, "name": "Vehicle", "isEnabled": True} in non_cash["list"]
        assert {f["name"] for f in c.get("/api/Contact/CustomFields").json()} >= {
            "Legacy Donor Id"}
        assert c.get("/api/Gift/CustomFields").status_code == 200
        assert c.get("/api/Project/Code/GEN").json()["name"] == "General Fund"
        r = c.get("/api/Project/Code/NOPE")
        assert r.status_code == 404 and r.content == b""


def test_lookups_are_404_while_held_and_200_once_imported(sandbox):
    with sandbox.client() as c:
        c.post("/api/Contact/Transaction", json=contact("D-1", email="bruce@wayne.example"))
        c.post("/api/v2/Gift/Transaction",
               json=gift("G/1 x", transactionSource="LegacyCRM",
                         contact={"referenceId": "D-1"}))
        for path in ("/api/Contact/LegacyCRM/D-1", "/api/Contact/Find?email=bruce@wayne.example",
                     "/api/Contact/Find?referenceSource=LegacyCRM&referenceId=D-1",
                     "/api/Gift/LegacyCRM/G/1%20x"):
            r = c.get(path)
            assert r.status_code == 404 and r.content == b"", path
        summary = sandbox.run_batch()
        assert summary["contactsCreated"] == 1 and summary["giftsCreated"] == 1
        found = c.get("/api/Contact/LegacyCRM/D-1").json()
        assert found["contactReferences"] == [{"source": "LegacyCRM", "id": "D-1"}]
        assert c.get("/api/Contact/Find?email=BRUCE@wayne.example").json()["id"] == found["id"]
        assert c.get("/api/Contact/Find?referenceSource=LegacyCRM&referenceId=D-1").json()[
            "id"] == found["id"]
        by_id = c.get(f"/api/Contact/{found['id']}").json()
        assert by_id["contactIndividuals"][0]["lastName"] == "Wayne"
        g = c.get("/api/Gift/LegacyCRM/G/1%20x").json()
        assert (g["transactionId"], g["amount"], g["contactId"]) == ("G/1 x", 25.0, found["id"])
        assert c.get(f"/api/Gift/{g['id']}").json()["transactionId"] == "G/1 x"
        assert c.get("/api/Contact/Find").status_code == 400


def _load(sandbox, n_gifts):
    with sandbox.client() as c:
        items = [gift(f"G-{i}", contact={"email": f"d{i % 7}@example.org", "firstname": "A",
                                          "lastname": f"B{i % 7}"}) for i in range(n_gifts)]
        for start in range(0, n_gifts, 100):
            c.post("/api/v2/Gift/Transactions",
                   json={"transactionSource": "S", "transactions": items[start:start + 100]})
    sandbox.run_batch()


ALL = {"groups": []}


def _where(*conditions, **options):
    return {"groups": [{"conditions": list(conditions)}], **options}


def _is(parameter, value, operator="Is"):
    return {"parameter": parameter, "operator": operator, "value": value}


def test_queries_page_in_id_order(sandbox):
    _load(sandbox, 250)
    with sandbox.client() as c:
        first = c.post("/api/Gift/Query?skip=0&take=100", json=ALL).json()
        assert first["total"] == 250 and len(first["list"]) == 100
        ids = [g["id"] for g in first["list"]]
        assert ids == sorted(ids)
        last = c.post("/api/Gift/Query?skip=200&take=100", json=ALL).json()
        assert len(last["list"]) == 50
        everything = c.post("/api/Gift/Query/FullGift?skip=0&take=1000", json=ALL).json()["list"]
        assert [g["transactionId"] for g in everything] == [f"G-{i}" for i in range(250)]
        contacts = c.post("/api/Contact/Query?take=5", json=ALL).json()
        assert contacts["total"] == 7 and len(contacts["list"]) == 5
        by_contact = c.post("/api/Gift/Query?take=1000",
                            json=_where(_is("Contact Id", contacts["list"][0]["id"]))).json()
        assert by_contact["total"] == 36
        assert {g["contactId"] for g in by_contact["list"]} == {contacts["list"][0]["id"]}


@pytest.mark.parametrize("query", ["take=1001", "take=0", "skip=-1", "take=many"])
@pytest.mark.parametrize("path", ["/api/Contact/Query", "/api/Gift/Query",
                                  "/api/Contact/Query/FullContact", "/api/Gift/Query/FullGift"])
def test_query_paging_limits_are_400(sandbox, query, path):
    with sandbox.client() as c:
        r = c.post(f"{path}?{query}", json=ALL)
    assert r.status_code == 400
    assert r.json()["message"] == "The request is invalid."
    assert set(r.json()["modelState"]) == {query.split("=")[0]}


def test_query_by_last_modified_date_is_by_day(sandbox):
    _load(sandbox, 10)
    today = datetime.now(ZoneInfo("America/Chicago")).date()
    us = f"{today:%m/%d/%Y}"
    with sandbox.client() as c:
        def total(path, *conditions):
            return c.post(path, json=_where(*conditions)).json()["total"]

        assert total("/api/Gift/Query", _is("Last Modified Date", us)) == 10
        assert total("/api/Gift/Query", _is("Last Modified Date", today.isoformat(),
                                            "OnOrAfter")) == 10
        assert total("/api/Gift/Query", _is("Last Modified Date", "Today", "After")) == 0
        assert total("/api/Gift/Query", _is("Last Modified Date", "Yesterday", "After")) == 10
        assert total("/api/Contact/Query", _is("Last Modified Date", us, "Before")) == 0
        assert total("/api/Contact/Query", _is("Create Date", "01/01/2000", "After")) == 7
        r = c.post("/api/Gift/Query",
                   json=_where(_is("Last Modified Date", "2024-03-01T10:00:00Z", "After")))
        assert r.status_code == 400
        assert list(r.json()["modelState"]) == ["query.groups[0].conditions[0].value"]
        assert c.post("/api/Gift/Query", json=[1]).status_code == 400


def test_string_numbers_in_reads(sandbox):
    _load(sandbox, 3)
    sandbox.set_faults("string_numbers=1")
    with sandbox.client() as c:
        page = c.post("/api/Gift/Query/FullGift", json=ALL).json()
        assert page["total"] == 3  # the envelope keeps its number
        g = page["list"][0]
        assert g["amount"] == "25.00" and isinstance(g["id"], str)
        assert isinstance(g["contactId"], str)
        single = c.get("/api/Gift/S/G-0").json()
        assert single["amount"] == "25.00"
        assert c.get("/api/Organization/Current").json()["id"] == "4242"
