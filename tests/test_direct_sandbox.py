"""The sandbox's `POST /api/Contact` against seed 000 ("Direct creation") and virtuous-api.md
(Find answers the full contact): synchronous, no de-duplication, 200 with the record."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from sandbox_fixtures import sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.sandbox.server import SandboxHandle, running_sandbox
from etl.sandbox.state import SandboxState

SEED_BODY = {  # seed 000's curl example, as printed
    "contactType": "Household",
    "name": "Wayne, Bruce",
    "contactIndividuals": [{
        "firstName": "Bruce", "lastName": "Wayne", "isPrimary": True,
        "contactMethods": [
            {"type": "Home Email", "value": "bruce@wayne.example", "isPrimary": True,
             "isOptedIn": True},
            {"type": "Mobile Phone", "value": "555-0100", "isPrimary": True}]}],
    "address": {"address1": "1007 Mountain Drive", "city": "Gotham", "state": "NJ",
                "postal": "07001", "country": "US", "isPrimary": True},
    "contactReferences": [{"source": "YourPlatform", "id": "donor-bw-001"}],
}
FIND_REF = {"referenceSource": "YourPlatform", "referenceId": "donor-bw-001"}


def test_the_seeds_example_is_created_at_once_and_answered_with_its_id(
        sandbox: SandboxHandle) -> None:
    with sandbox.client() as c:
        answer = c.post("/api/Contact", json=SEED_BODY)
        assert answer.status_code == 200  # "200 OK (not 201)"
        record = answer.json()
        assert isinstance(record["id"], int)
        assert record["contactReferences"] == [{"source": "YourPlatform", "id": "donor-bw-001"}]
        person = record["contactIndividuals"][0]
        assert (person["firstName"], person["lastName"]) == ("Bruce", "Wayne")
        assert {(m["type"], m["value"]) for m in person["contactMethods"]} == {
            ("Home Email", "bruce@wayne.example"), ("Mobile Phone", "555-0100")}
        assert record["address"]["city"] == "Gotham" and record["name"] == "Wayne, Bruce"
        # synchronous: no holding state, and every documented lookup finds it now
        assert sandbox.state.held() == []
        for params in (FIND_REF, {"email": "BRUCE@wayne.example"}):
            found = c.get("/api/Contact/Find", params=params)
            assert found.status_code == 200 and found.json()["id"] == record["id"]
        by_ref = c.get("/api/Contact/YourPlatform/donor-bw-001")
        assert by_ref.status_code == 200 and by_ref.json()["id"] == record["id"]


def test_a_second_post_with_the_same_reference_is_a_second_contact(
        sandbox: SandboxHandle) -> None:
    with sandbox.client() as c:
        first = c.post("/api/Contact", json=SEED_BODY).json()["id"]
        second = c.post("/api/Contact", json=SEED_BODY).json()["id"]
        assert first != second  # "does not perform deduplication"
        assert c.get("/api/Contact/Find", params=FIND_REF).json()["id"] == first
    with_ref = [x for x in sandbox.state.contacts()
                if {"source": "YourPlatform", "id": "donor-bw-001"} in x["contactReferences"]]
    assert sorted(x["id"] for x in with_ref) == [first, second]


@pytest.mark.parametrize("change, field, code", [
    (lambda b: b.update(contactType="Cat"), "contactType", "INVALID_VALUE"),
    (lambda b: b["contactIndividuals"][0]["contactMethods"][0].update(value="bruce@"),
     "contactIndividuals[0].contactMethods[0].value", "INVALID_FORMAT"),
    (lambda b: b["contactIndividuals"][0]["contactMethods"][1].update(type="Pager"),
     "contactIndividuals[0].contactMethods[1].type", "INVALID_VALUE"),
    (lambda b: (b.pop("name"), b["contactIndividuals"][0].pop("lastName")), "name", "REQUIRED"),
    (lambda b: b.update(contactReferences=[{"source": "YourPlatform"}]),
     "contactReferences[0].id", "REQUIRED"),
    (lambda b: b.update(address="1007 Mountain Drive"), "address", "INVALID_TYPE"),
    (lambda b: b["contactIndividuals"][0].update(birthMonth=13),
     "contactIndividuals[0].birthMonth", "OUT_OF_RANGE"),
])
def test_an_invalid_contact_is_refused_with_details_and_not_created(
        sandbox: SandboxHandle, change: object, field: str, code: str) -> None:
    body = copy.deepcopy(SEED_BODY)
    change(body)  # type: ignore[operator]
    with sandbox.client() as c:
        answer = c.post("/api/Contact", json=body)
    assert answer.status_code == 422
    details = answer.json()["error"]["details"]
    assert {"field": field, "code": code} in [{"field": d["field"], "code": d["code"]}
                                              for d in details]
    assert sandbox.state.contacts() == []


def test_the_readonly_key_may_not_create(sandbox: SandboxHandle) -> None:
    with sandbox.client(readonly=True) as c:
        assert c.post("/api/Contact", json=SEED_BODY).status_code == 403
    assert sandbox.state.contacts() == []


def test_a_500_after_store_leaves_a_contact_that_find_sees(sandbox: SandboxHandle) -> None:
    sandbox.set_faults("http500_after_store=1")
    with sandbox.client() as c:
        assert c.post("/api/Contact", json=SEED_BODY).status_code == 500
        sandbox.set_faults(None)
        assert c.get("/api/Contact/Find", params=FIND_REF).status_code == 200
    assert len(sandbox.state.contacts()) == 1


def test_a_created_contact_survives_a_restart_with_its_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with running_sandbox(rate_limit="none", state_path=path) as sb, sb.client() as c:
        created = c.post("/api/Contact", json=SEED_BODY).json()["id"]
    state = SandboxState(path)
    try:
        assert state.contact_by_reference("YourPlatform", "donor-bw-001")["id"] == created
        assert state.directory.next_id == created + 1  # ids carry on, never reused
    finally:
        state.close()
