"""Sandbox contract: the write endpoints, their validation (422) and the batch rules."""

from __future__ import annotations

import time

import pytest
from sandbox_fixtures import contact, gift, sandbox_fixture, sandbox_server_fixture  # noqa: F401

GIFTS = "/api/v2/Gift/Transactions"


def test_single_writes_are_held_with_an_empty_200(sandbox):
    with sandbox.client() as c:
        r1 = c.post("/api/Contact/Transaction", json=contact("D-1"))
        r2 = c.post("/api/v2/Gift/Transaction", json=gift("G-1", transactionSource="S"))
        r3 = c.post("/api/Gift/Transaction", json=gift("G-2", transactionSource="S"))
    for r in (r1, r2, r3):
        assert r.status_code == 200 and r.content == b""
    assert [c["referenceId"] for c in sandbox.state.held_contacts()] == ["D-1"]
    assert [g["transactionId"] for g in sandbox.state.held_gifts()] == ["G-1", "G-2"]
    assert sandbox.state.contacts() == [] and sandbox.state.gifts() == []


def test_batches_hold_every_item_and_inherit_the_envelope(sandbox):
    with sandbox.client() as c:
        r = c.post("/api/Contact/Batch", json={
            "referenceSource": "LegacyCRM",
            "contacts": [contact("D-1", referenceSource=None), contact("D-2",
                                                                       referenceSource="Other")]})
        assert r.status_code == 200 and r.content == b""
        r = c.post(GIFTS, json={
            "transactionSource": "LegacyCRM", "createImport": True, "importName": "Import 1",
            "batch": "B-7", "batchTotal": 60, "defaultGiftDate": "2024-05-05",
            "defaultGiftType": "Cash",
            "transactions": [gift("G-1", 10, giftDate=None, giftType=None),
                             gift("G-2", "50.00", transactionSource="Own")]})
        assert r.status_code == 200 and r.content == b""
    held = {c["referenceId"]: c for c in sandbox.state.held_contacts()}
    assert held["D-1"]["referenceSource"] == "LegacyCRM"
    assert held["D-2"]["referenceSource"] == "Other"
    g1, g2 = sandbox.state.held_gifts()
    assert (g1["transactionSource"], g1["giftDate"], g1["giftType"], g1["batch"]) == (
        "LegacyCRM", "2024-05-05", "Cash", "B-7")
    assert (g2["transactionSource"], g2["giftDate"], g2["giftType"]) == ("Own", "2024-03-01",
                                                                         "Check")
    entry = sandbox.state.held("gift")[0]
    assert entry["import"]["importName"] == "Import 1"
    assert sandbox.state.times_received("LegacyCRM", "G-1") == 1
    assert sandbox.state.requests(GIFTS)[-1].items == 2


def test_empty_gift_batch_answers_200_for_feature_detection(sandbox):
    with sandbox.client() as c:
        assert c.post(GIFTS, json={"transactions": []}).status_code == 200
        assert c.post("/api/Contact/Batch", json={"contacts": []}).status_code == 200


@pytest.mark.parametrize("body, status, code", [
    (b'{"amount": 1,', 400, "MALFORMED_JSON"),
    (b"[1, 2]", 400, "INVALID_REQUEST"),
    (b"", 400, "INVALID_REQUEST"),
])
def test_malformed_requests_are_400_with_the_envelope(sandbox, body, status, code):
    with sandbox.client() as c:
        for path in ("/api/v2/Gift/Transaction", GIFTS, "/api/Contact/Transaction"):
            r = c.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, path
            assert r.json()["error"]["code"] == code
    assert sandbox.state.held() == []


def test_a_body_not_sent_as_json_is_415(sandbox):
    with sandbox.client() as c:
        r = c.post("/api/Contact/Transaction", data={"referenceId": "x"})
    assert r.status_code == 415


def test_batch_body_without_a_list_is_400(sandbox):
    with sandbox.client() as c:
        assert c.post(GIFTS, json={"transactions": {"a": 1}}).status_code == 400
        assert c.post("/api/Contact/Batch", json={"referenceSource": "S"}).status_code == 400


def test_batch_over_the_size_limit_is_400(sandbox):
    with sandbox.client() as c:
        items = [gift(f"G-{i}") for i in range(101)]
        r = c.post(GIFTS, json={"transactionSource": "S", "transactions": items})
        assert r.status_code == 400 and r.json()["error"]["code"] == "BATCH_TOO_LARGE"
        assert c.post(GIFTS, json={"transactionSource": "S",
                                   "transactions": items[:100]}).status_code == 200
        sandbox.config.max_batch = 10
        r = c.post("/api/Contact/Batch", json={"contacts": [contact(f"D-{i}")
                                                            for i in range(11)]})
        assert r.status_code == 400
    assert len(sandbox.state.held_gifts()) == 100


def _fields(response):
    assert response.status_code == 422
    body = response.json()["error"]
    assert body["code"] == "VALIDATION_FAILED" and body["message"]
    for d in body["details"]:
        assert set(d) == {"field", "code", "message"}
    return {d["field"]: d["code"] for d in body["details"]}


@pytest.mark.parametrize("changes, field", [
    ({"amount": 0}, "amount"),
    ({"amount": -5}, "amount"),
    ({"amount": "ten"}, "amount"),
    ({"amount": True}, "amount"),
    ({"amount": None}, "amount"),
    ({"giftDate": "03/01/2024"}, "giftDate"),
    ({"giftDate": "2024-02-30"}, "giftDate"),
    ({"transactionId": ""}, "transactionId"),
    ({"transactionSource": None}, "transactionSource"),
    ({"giftType": "Barter"}, "giftType"),
    ({"nonCashGiftType": "Goats"}, "nonCashGiftType"),
    ({"currencyCode": "DOLLARS"}, "currencyCode"),
    ({"isPrivate": "maybe"}, "isPrivate"),
    ({"designations": [{"code": "GEN", "amountDesignated": 10}]}, "designations"),
    ({"designations": [{"amountDesignated": 25}]}, "designations[0]"),
    ({"contact": {"email": "not-an-email"}}, "contact.email"),
    ({"contact": {"type": "Tribe"}}, "contact.type"),
    ({"contact": {"emailType": "Pager"}}, "contact.emailType"),
    ({"contact": {"id": "abc"}}, "contact.id"),
    ({"contact": {"address": "1 Main St"}}, "contact.address"),
])
def test_gift_validation_names_the_field(sandbox, changes, field):
    with sandbox.client() as c:
        body = gift("G-1", **{"transactionSource": "S", **changes})
        assert field in _fields(c.post("/api/v2/Gift/Transaction", json=body))
    assert sandbox.state.held() == []
    assert sandbox.state.times_received("S", "G-1") == 0


@pytest.mark.parametrize("changes, field", [
    ({"contactType": "Tribe"}, "contactType"),
    ({"emailType": "Fax"}, "emailType"),
    ({"phoneType": "Pager", "phone": "555"}, "phoneType"),
    ({"email": "bruce@"}, "email"),
    ({"email": "two words@x.org"}, "email"),
    ({"referenceId": None}, "referenceId"),
    ({"tags": ["a", "b"]}, "tags"),
    ({"birthMonth": 13}, "birthMonth"),
    ({"emailLists": "Newsletter"}, "emailLists"),
    ({"customFields": ["x"]}, "customFields"),
])
def test_contact_validation_names_the_field(sandbox, changes, field):
    with sandbox.client() as c:
        assert field in _fields(c.post("/api/Contact/Transaction", json=contact("D-1", **changes)))
    assert sandbox.state.held() == []


def test_accepted_typing_quirks_and_unknown_fields(sandbox):
    body = gift("G-1", "500.00", transactionSource="S", isPrivate="true", someNewField={"x": 1},
                designations=[{"code": "GEN", "amountDesignated": "300.00"},
                              {"name": "Building Fund", "amountDesignated": 200}])
    with sandbox.client() as c:
        assert c.post("/api/v2/Gift/Transaction", json=body).status_code == 200
        assert c.post("/api/Contact/Transaction",
                      json=contact("D-1", birthYear="1972", rsvp=True, x=[1])).status_code == 200
    assert len(sandbox.state.held()) == 2


def test_reject_all_refuses_the_whole_batch_with_item_paths(sandbox):
    items = [gift("G-0"), gift("G-1"), gift("G-2", amount=0), gift("G-3", giftDate="2024-1-1"),
             gift("G-4", contact={"email": "bad"})]
    with sandbox.client() as c:
        fields = _fields(c.post(GIFTS, json={"transactionSource": "S", "transactions": items}))
        assert fields == {"transactions[2].amount": "OUT_OF_RANGE",
                          "transactions[3].giftDate": "INVALID_FORMAT",
                          "transactions[4].contact.email": "INVALID_FORMAT"}
        fields = _fields(c.post("/api/Contact/Batch", json={
            "referenceSource": "S", "contacts": [contact("D-1"), contact("D-2", email="x")]}))
        assert fields == {"contacts[1].email": "INVALID_FORMAT"}
    assert sandbox.state.held() == []
    assert sandbox.state.times_received("S", "G-0") == 0


def test_accept_valid_holds_the_good_items_and_answers_a_bare_200(sandbox):
    sandbox.config.batch_mode = "accept_valid"
    items = [gift("G-0"), gift("G-1", amount="x"), gift("G-2")]
    with sandbox.client() as c:
        r = c.post(GIFTS, json={"transactionSource": "S", "transactions": items})
    assert r.status_code == 200 and r.content == b""
    assert [g["transactionId"] for g in sandbox.state.held_gifts()] == ["G-0", "G-2"]
    (dropped,) = sandbox.state.rejected()
    assert dropped["index"] == 1
    assert dropped["details"][0]["field"] == "transactions[1].amount"


def test_envelope_defaults_are_validated(sandbox):
    with sandbox.client() as c:
        fields = _fields(c.post(GIFTS, json={"transactionSource": "S", "defaultGiftDate": "soon",
                                             "defaultGiftType": "Barter", "batchTotal": "lots",
                                             "transactions": [gift("G-1")]}))
    assert set(fields) == {"defaultGiftDate", "defaultGiftType", "batchTotal"}


def test_resubmissions_are_held_and_counted(sandbox):
    with sandbox.client() as c:
        for _ in range(3):
            c.post("/api/v2/Gift/Transaction", json=gift("G-1", transactionSource="S"))
    assert sandbox.state.times_received("S", "G-1") == 3
    assert sandbox.state.is_held_gift("S", "G-1")


def test_a_batch_of_100_gifts_is_answered_in_milliseconds(sandbox):
    with sandbox.client() as c:
        batches = [[gift(f"G-{b}-{i}") for i in range(100)] for b in range(20)]
        c.post(GIFTS, json={"transactionSource": "S", "transactions": batches[0]})  # warm up
        started = time.perf_counter()
        for items in batches[1:]:
            assert c.post(GIFTS, json={"transactionSource": "S",
                                       "transactions": items}).status_code == 200
        per_batch = (time.perf_counter() - started) / 19
    assert per_batch < 0.05  # typically 2-3 ms, client included
    assert len(sandbox.state.held_gifts()) == 2000


SEED_CONTACT = {  # the Contact Transaction example of seeds/000_51f2ea5dd9035382.txt, verbatim
    "referenceSource": "YourPlatform", "referenceId": "donor-bw-001", "contactType": "Household",
    "firstName": "Bruce", "lastName": "Wayne", "emailType": "Home Email",
    "email": "bruce@wayne.example", "phoneType": "Mobile Phone", "phone": "555-0100",
    "address1": "1007 Mountain Drive", "city": "Gotham", "state": "NJ", "postal": "07001",
    "country": "US", "originSegmentCode": "INTEGRATION-IMPORT", "tags": "New Donor",
}


def test_the_documented_example_goes_all_the_way(sandbox):
    with sandbox.client() as c:
        r = c.post("/api/Contact/Transaction", json=SEED_CONTACT)
        assert r.status_code == 200 and r.content == b""
        assert c.get("/api/Contact/YourPlatform/donor-bw-001").status_code == 404
        sandbox.run_batch()
        found = c.get("/api/Contact/YourPlatform/donor-bw-001").json()
    assert found["contactReferences"] == [{"source": "YourPlatform", "id": "donor-bw-001"}]
    assert found["tags"] == ["New Donor"]
    assert found["address"]["address1"] == "1007 Mountain Drive"
    (person,) = found["contactIndividuals"]
    assert (person["firstName"], person["lastName"]) == ("Bruce", "Wayne")
    assert {(m["type"], m["value"]) for m in person["contactMethods"]} == {
        ("Home Email", "bruce@wayne.example"), ("Mobile Phone", "555-0100")}


def test_unknown_paths_and_methods(sandbox):
    sandbox.set_rate_limit("100/hour")
    with sandbox.client() as c:
        r = c.get("/api/NoSuchThing")
        assert r.status_code == 404 and r.headers["X-RateLimit-Limit"] == "100"
        assert c.get("/api/v2/Gift/Transactions").status_code == 405
        assert c.get("/api/Contact/Transaction").status_code == 405
