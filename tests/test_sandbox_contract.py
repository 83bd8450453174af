"""The sandbox against /work/shared/virtuous-api.md: each documented example, over real HTTP.

Section by section of that document; a test names the section it checks. Where the document
says something is unknown, the test pins the sandbox's pessimistic default (docs/sandbox.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
import pytest
from sandbox_fixtures import (  # noqa: F401
    contact,
    gift,
    sandbox_fixture,
    sandbox_server_fixture,
    webhook_receiver_fixture,
)

# Documented shapes to test the sandbox against: abbreviated and full items.
GIFT_ITEM = {"id", "contactId", "contactIndividualId", "giftType", "giftDate", "amount",
             "segment", "batch", "giftUrl", "culture", "exchangeRate", "giftDesignations"}
CONTACT_ITEM = {"id", "name", "contactType", "contactName", "address", "email", "phone",
                "contactViewUrl"}
FULL_GIFT = {"id", "transactionSource", "transactionId", "contactId", "giftType", "giftDate",
             "amount", "currencyCode", "batch", "createDateTimeUtc", "modifiedDateTimeUtc",
             "giftDesignations", "isPrivate", "isTaxDeductible", "customFields"}
FULL_CONTACT = {"id", "contactType", "name", "address", "contactReferences",
                "contactIndividuals", "createDateTimeUtc", "modifiedDateTimeUtc"}
NEVER_IN_LISTS = {"transactionSource", "transactionId", "contactReferences",
                  "modifiedDateTimeUtc"}
DOC_QUERY = {  # "Query request" example, as the document gives it
    "groups": [{"conditions": [
        {"parameter": "Transaction Source", "operator": "Is", "value": "LegacyCRM"},
        {"parameter": "Batch", "operator": "Is", "value": "legacy_gifts-run3"}]}],
    "SortBy": "Id", "Descending": False}
SEED_CONTACT = {  # Contact Transaction fields (flat)
    "referenceSource": "YourPlatform", "referenceId": "donor-bw-001", "contactType": "Household",
    "name": "Wayne Household", "title": "Mr.", "firstName": "Bruce", "middleName": "T",
    "lastName": "Wayne", "suffix": "Jr.", "birthMonth": "2", "birthDay": 19, "birthYear": 1972,
    "gender": "Male", "emailType": "Home Email", "email": "bruce@wayne.example",
    "phoneType": "Mobile Phone", "phone": "555-0100", "address1": "1007 Mountain Drive",
    "address2": "", "city": "Gotham", "state": "NJ", "postal": "07001", "country": "US",
    "tags": "New Donor;Gala 2024", "originSegmentCode": "INTEGRATION-IMPORT",
    "emailLists": ["Newsletter"], "customFields": {"Legacy Donor Id": "L-1"},
    "eventId": 12, "eventName": "Gala", "invited": True, "rsvp": "true", "attended": False,
}
DOC_GIFT = {  # Gift Transaction fields (v2), with the embedded contact's own names
    "transactionSource": "LegacyCRM", "transactionId": "row-17", "giftDate": "2024-03-01",
    "giftType": "Check", "amount": "125.50", "currencyCode": "USD", "exchangeRate": 1,
    "batch": "legacy_gifts-run3", "notes": "spring appeal", "segment": "SPRING",
    "receiptDate": "2024-03-02", "isPrivate": "false", "isTaxDeductible": True,
    "checkNumber": "1001", "customFields": {"Appeal": "Spring"},
    "designations": [{"code": "GEN", "amountDesignated": 100},
                     {"name": "Building Fund", "amountDesignated": "25.50"}],
    "contact": {"referenceId": "donor-7", "name": "Kyle Household", "type": "Household",
                "title": "Ms.", "firstname": "Selina", "middlename": "C", "lastname": "Kyle",
                "emailType": "Work Email", "email": "selina@example.org",
                "phoneType": "Home Phone", "phone": "555-0199", "tags": "Cat",
                "address": {"address1": "1 Alley", "address2": "Apt 9", "city": "Gotham",
                            "state": "NJ", "postal": "07002", "country": "US"}},
}


def _imported(sb, *, contacts=(), gifts=()):
    with sb.client() as c:
        for body in contacts:
            assert c.post("/api/Contact/Transaction", json=body).status_code == 200
        for body in gifts:
            assert c.post("/api/v2/Gift/Transaction", json=body).status_code == 200
    return sb.run_batch()


# -- Host, auth, environments ------------------------------------------------------------------
def test_organization_current_tells_which_organization_a_key_writes_to(sandbox):
    with sandbox.client() as c:
        body = c.get("/api/Organization/Current").json()
    assert {"organizationName", "organizationTimeZone"} <= set(body)


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic abc", "Bearer"])
def test_401_is_plain_text(sandbox, header):
    headers = {"Authorization": header} if header else {}
    r = httpx.get(sandbox.base_url + "/api/Organization/Current", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "Authorization has been denied for this request."


# -- Rate limit --------------------------------------------------------------------------------
ANY_ENDPOINT = [
    ("GET", "/api/Organization/Current", None),
    ("GET", "/api/Contact/Find?email=a@b.org", None),
    ("POST", "/api/Gift/Query", {"groups": []}),
    ("POST", "/api/Contact/Query/FullContact", {"groups": []}),
    ("GET", "/api/Gift/QueryOptions", None),
    ("POST", "/api/v2/Gift/Transactions", {"transactionSource": "S", "transactions": []}),
    ("POST", "/api/Webhook", {"payloadUrl": "http://127.0.0.1:9/h", "active": True}),
]


@pytest.mark.parametrize("method, path, body", ANY_ENDPOINT)
def test_every_answer_has_the_headers_and_429_has_retry_after(sandbox, method, path, body):
    sandbox.set_rate_limit("1/day")
    with sandbox.client() as c:
        first = c.request(method, path, json=body)
        second = c.request(method, path, json=body)
    assert first.status_code != 429
    assert first.headers["X-RateLimit-Limit"] == "1"
    assert first.headers["X-RateLimit-Remaining"] == "0"
    assert int(first.headers["X-RateLimit-Reset"]) > time.time()
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1
    assert second.headers["X-RateLimit-Remaining"] == "0"


def test_the_budget_is_shared_by_every_key_of_the_organization(sandbox):
    sandbox.set_rate_limit("2/day")
    with sandbox.client() as main, sandbox.client(readonly=True) as other:
        assert main.get("/api/Contact/Types").status_code == 200
        assert other.get("/api/Contact/Types").status_code == 200
        assert main.get("/api/Contact/Types").status_code == 429


# -- Write endpoints (all asynchronous: 200 means "held") --------------------------------------
WRITES = [
    ("/api/Contact/Transaction", SEED_CONTACT),
    ("/api/Contact/Batch", {"referenceSource": "YourPlatform", "contacts": [
        {k: v for k, v in SEED_CONTACT.items() if k != "referenceSource"}]}),
    ("/api/v2/Gift/Transaction", DOC_GIFT),
    ("/api/v2/Gift/Transactions", {
        "transactionSource": "LegacyCRM", "createImport": True, "importName": "run3",
        "batch": "legacy_gifts-run3", "batchTotal": 125.5, "defaultGiftDate": "2024-03-01",
        "defaultGiftType": "Check", "transactions": [
            {k: v for k, v in DOC_GIFT.items() if k not in ("transactionSource", "giftDate")}]}),
    ("/api/Gift/Transaction", DOC_GIFT),  # unversioned, still there
]


@pytest.mark.parametrize("path, body", WRITES)
def test_a_write_is_held_200_empty_no_id(sandbox, path, body):
    with sandbox.client() as c:
        r = c.post(path, json=body)
        assert (r.status_code, r.content) == (200, b"")
        lookup = ("/api/Gift/LegacyCRM/row-17" if "Gift" in path
                  else "/api/Contact/YourPlatform/donor-bw-001")
        held = c.get(lookup)
        assert (held.status_code, held.content) == (404, b"")
        sandbox.run_batch()
        assert c.get(lookup).status_code == 200


def test_max_batch_is_100(sandbox):
    items = [gift(f"G-{i}") for i in range(101)]
    with sandbox.client() as c:
        r = c.post("/api/v2/Gift/Transactions", json={"transactionSource": "S",
                                                      "transactions": items})
        assert r.status_code == 400
        ok = c.post("/api/v2/Gift/Transactions", json={"transactionSource": "S",
                                                       "transactions": items[:100]})
        assert (ok.status_code, ok.content) == (200, b"")  # no per-item results


def test_the_gifts_embedded_contact_uses_its_own_names(sandbox):
    _imported(sandbox, gifts=[DOC_GIFT])
    with sandbox.client() as c:
        found = c.get("/api/Contact/Find", params={"email": "selina@example.org"}).json()
    (person,) = found["contactIndividuals"]
    assert (person["firstName"], person["middleName"], person["lastName"]) == (
        "Selina", "C", "Kyle")
    assert found["address"]["address2"] == "Apt 9" and found["contactType"] == "Household"


@pytest.mark.parametrize("change, field", [
    ({"designations": [{"code": "GEN", "amountDesignated": 100}]}, "designations"),
    ({"amount": "12,50"}, "amount"),
    ({"giftDate": "03/01/2024"}, "giftDate"),
    ({"giftType": "Bitcoin"}, "giftType"),
])
def test_422_carries_error_details(sandbox, change, field):
    with sandbox.client() as c:
        r = c.post("/api/v2/Gift/Transaction", json={**DOC_GIFT, **change})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert [d["field"] for d in error["details"]] == [field]
    assert all({"field", "code", "message"} <= set(d) for d in error["details"])


# -- Lookups and reconciliation ----------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/api/Contact/Find?referenceSource=YourPlatform&referenceId=donor-bw-001",
    "/api/Contact/Find?email=bruce@wayne.example",
    "/api/Contact/YourPlatform/donor-bw-001",
])
def test_find_and_by_reference_answer_the_full_nested_contact(sandbox, path):
    _imported(sandbox, contacts=[SEED_CONTACT])
    with sandbox.client() as c:
        found = c.get(path).json()
        assert c.get(f"/api/Contact/{found['id']}").json() == found
    assert set(found) >= FULL_CONTACT
    assert found["contactReferences"] == [{"source": "YourPlatform", "id": "donor-bw-001"}]
    assert found["address"]["address1"] == "1007 Mountain Drive"
    (person,) = found["contactIndividuals"]
    assert {"firstName", "lastName", "contactMethods"} <= set(person)
    methods = {(m["type"], m["value"], m["isPrimary"]) for m in person["contactMethods"]}
    assert methods == {("Home Email", "bruce@wayne.example", True),
                       ("Mobile Phone", "555-0100", True)}
    assert "email" not in found and "firstName" not in found  # nothing flat


@pytest.mark.parametrize("path", ["/api/Contact/Find?email=none@example.org",
                                  "/api/Contact/Find?referenceSource=X&referenceId=Y",
                                  "/api/Contact/X/Y", "/api/Gift/X/Y"])
def test_lookups_of_nothing_are_empty_404s(sandbox, path):
    with sandbox.client() as c:
        r = c.get(path)
    assert (r.status_code, r.content) == (404, b"")


def test_gift_by_key_is_404_until_imported_then_the_full_gift(sandbox):
    with sandbox.client() as c:
        c.post("/api/v2/Gift/Transaction", json=DOC_GIFT)
        assert c.get("/api/Gift/LegacyCRM/row-17").status_code == 404
        sandbox.run_batch()
        g = c.get("/api/Gift/LegacyCRM/row-17").json()
    assert set(g) >= FULL_GIFT
    assert (g["transactionSource"], g["transactionId"], g["amount"]) == (
        "LegacyCRM", "row-17", 125.5)
    assert [(d["projectCode"], d["amountDesignated"]) for d in g["giftDesignations"]] == [
        ("GEN", 100.0), ("BLD", 25.5)]
    assert all({"id", "projectId", "project", "projectCode", "amountDesignated"} <= set(d)
               for d in g["giftDesignations"])


def test_the_documented_query_example(sandbox):
    other_batch = {**DOC_GIFT, "transactionId": "row-18", "batch": "legacy_gifts-run2"}
    other_source = {**DOC_GIFT, "transactionSource": "Web", "transactionId": "row-19"}
    _imported(sandbox, gifts=[DOC_GIFT, other_batch, other_source])
    with sandbox.client() as c:
        short = c.post("/api/Gift/Query?skip=0&take=1000", json=DOC_QUERY).json()
        full = c.post("/api/Gift/Query/FullGift?skip=0&take=1000", json=DOC_QUERY).json()
    assert short["total"] == full["total"] == 1
    (item,) = short["list"]
    assert set(item) == GIFT_ITEM
    assert not NEVER_IN_LISTS & set(item)
    assert isinstance(item["amount"], str) and "125.50" in item["amount"]
    (record,) = full["list"]
    assert set(record) >= FULL_GIFT and record["transactionId"] == "row-17"
    assert isinstance(record["amount"], float) and record["id"] == item["id"]


def test_contact_query_items_are_abbreviated_and_full_contacts_are_not(sandbox):
    _imported(sandbox, contacts=[SEED_CONTACT])
    body = {"groups": [{"conditions": [
        {"parameter": "Reference Source", "operator": "Is", "value": "YourPlatform"}]}]}
    with sandbox.client() as c:
        (item,) = c.post("/api/Contact/Query", json=body).json()["list"]
        (full,) = c.post("/api/Contact/Query/FullContact", json=body).json()["list"]
    assert set(item) == CONTACT_ITEM and not NEVER_IN_LISTS & set(item)
    assert (item["email"], item["phone"]) == ("bruce@wayne.example", "555-0100")
    assert isinstance(item["address"], str) and "Gotham" in item["address"]
    assert set(full) >= FULL_CONTACT and full["id"] == item["id"]


@pytest.mark.parametrize("body", [
    {"transactionSource": "LegacyCRM"},
    {"transactionSource": "LegacyCRM", "modifiedSince": "2024-01-01T00:00:00Z"},
])
def test_a_groupless_body_is_not_the_api(sandbox, body):
    with sandbox.client() as c:
        r = c.post("/api/Gift/Query", json=body)
    assert r.status_code == 400
    assert r.json() == {"message": "The request is invalid.",
                        "modelState": {"query.groups": ["The Groups field is required."]}}


def test_query_options_shape(sandbox):
    for kind in ("Gift", "Contact"):
        with sandbox.client() as c:
            body = c.get(f"/api/{kind}/QueryOptions").json()
        assert set(body) == {"options", "operatorOptions"}
        for option in body["options"]:
            assert set(option) == {"parameter", "type", "operatorOptions", "valueOptions"}
            assert option["type"] in {"String", "Int", "Decimal", "Date", "List", "Boolean"}
            for op in option["operatorOptions"]:
                assert set(op) == {"operator", "multipleValuesAllowed", "valueRequired"}


@pytest.mark.parametrize("take, status", [(1000, 200), (1001, 400)])
def test_take_is_at_most_1000(sandbox, take, status):
    with sandbox.client() as c:
        assert c.post(f"/api/Gift/Query?take={take}", json={"groups": []}).status_code == status


def test_reference_lists(sandbox):
    with sandbox.client() as c:
        types = c.get("/api/Contact/Types").json()
        non_cash = c.get("/api/Gift/NonCashGiftTypes").json()
        no_gift_types = c.get("/api/Gift/Types")
    assert types and all(set(t) == {"parentType", "type"} for t in types)
    assert set(non_cash) == {"list", "total"} and non_cash["total"] == len(non_cash["list"])
    assert all(set(t) == {"id", "name", "isEnabled"} for t in non_cash["list"])
    assert no_gift_types.status_code == 404  # there is no gift-type list endpoint


# -- Webhooks ----------------------------------------------------------------------------------
def test_one_subscription_object_and_no_list_route(sandbox):
    body = {"payloadUrl": "http://127.0.0.1:9/hook", "secret": "S3CRET", "contactCreate": True,
            "contactUpdate": True, "giftCreate": True, "active": True}
    with sandbox.client() as c:
        r = c.post("/api/Webhook", json=body)
        sub = r.json()
        assert r.status_code == 200 and isinstance(sub["id"], int)
        assert {k: sub[k] for k in body if k != "secret"} == {
            k: v for k, v in body.items() if k != "secret"}
        assert "S3CRET" not in r.text
        assert c.get("/api/Webhook").status_code == 404
        assert c.get(f"/api/Webhook/{sub['id']}").json() == sub
        assert c.put(f"/api/Webhook/{sub['id']}", json=body).status_code == 200
        assert c.put(f"/api/Webhook/{sub['id']}/Active", json=False).json()["active"] is False
        assert c.delete(f"/api/Webhook/{sub['id']}").status_code == 200
        old = c.post("/api/Webhook", json={"event": "giftCreate", "url": "http://127.0.0.1/"})
    assert old.status_code == 400 and "modelState" in old.json()


def test_deliveries_single_and_bulk_signed_and_without_keys(sandbox, webhook_receiver):
    with sandbox.client() as c:
        c.post("/api/Webhook", json={"payloadUrl": webhook_receiver.url, "secret": "S",
                                     "giftCreate": True, "contactCreate": True, "active": True})
    webhook_receiver.answers[:] = [404]  # a 4xx is retried too
    _imported(sandbox, gifts=[DOC_GIFT])
    _imported(sandbox, gifts=[{**DOC_GIFT, "transactionId": f"row-{i}"} for i in (30, 31)])
    bodies = [r.json() for r in webhook_receiver.received]
    assert [b["event"] for b in bodies] == ["ContactCreate", "ContactCreate", "GiftCreate",
                                            "GiftCreate"]
    assert "contact" in bodies[0] and "gift" in bodies[2]  # one record each
    assert [g["amount"] for g in bodies[3]["models"]] == [125.5, 125.5]  # two from one run
    for received in webhook_receiver.received:
        digest = hmac.new(b"S", received.body, hashlib.sha256).digest()
        assert received.headers["x-virtuous-signature"] == base64.b64encode(digest).decode()
    for g in [bodies[2]["gift"], *bodies[3]["models"]]:
        assert not {"transactionSource", "transactionId"} & set(g)
    assert "contactReferences" not in bodies[0]["contact"]


# -- Errors, typing quirks ---------------------------------------------------------------------
def test_500_has_the_aspnet_message_and_stores_nothing(sandbox):
    sandbox.set_faults("http500=1")
    with sandbox.client() as c:
        r = c.post("/api/v2/Gift/Transaction", json=DOC_GIFT)
    assert r.status_code == 500 and r.json() == {"message": "An error has occurred."}
    assert sandbox.state.times_received("LegacyCRM", "row-17") == 0


def test_native_types_and_their_string_forms_are_both_accepted(sandbox):
    native = {**DOC_GIFT, "amount": 125.5, "isPrivate": False}
    strings = {**DOC_GIFT, "transactionId": "row-2", "amount": "125.50", "isPrivate": "false"}
    summary = _imported(sandbox, gifts=[native, strings])
    assert summary["giftsCreated"] == 2


# -- Design for what is not known --------------------------------------------------------------
def test_an_exact_resubmit_becomes_a_second_gift(sandbox):
    _imported(sandbox, gifts=[DOC_GIFT])
    _imported(sandbox, gifts=[DOC_GIFT])
    assert len(sandbox.state.gifts_for("LegacyCRM", "row-17")) == 2
    with sandbox.client() as c:
        page = c.post("/api/Gift/Query/FullGift", json=DOC_QUERY).json()
    assert page["total"] == 2


def test_a_parked_gift_is_404_to_every_documented_read(sandbox):
    sandbox.config.park_ids = ("row-17",)
    _imported(sandbox, gifts=[DOC_GIFT])
    with sandbox.client() as c:
        lookup = c.get("/api/Gift/LegacyCRM/row-17")
        short = c.post("/api/Gift/Query", json=DOC_QUERY).json()
        full = c.post("/api/Gift/Query/FullGift", json=DOC_QUERY).json()
    assert (lookup.status_code, lookup.content) == (404, b"")
    assert short["total"] == full["total"] == 0
