"""Sandbox contract: the nightly batch's matching, merging, needs-update and duplicate rules."""

from __future__ import annotations

import httpx
from click.testing import CliRunner
from sandbox_fixtures import contact, gift, sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.sandbox.cli import sandbox as sandbox_cli

BRUCE = {"referenceSource": "LegacyCRM", "referenceId": "D-1", "contactType": "Household",
         "firstName": "Bruce", "lastName": "Wayne", "email": "bruce@wayne.example",
         "phone": "(555) 010-0100", "postal": "07001", "city": "Gotham"}


def _night(sandbox, contacts=(), gifts=(), source="LegacyCRM"):
    with sandbox.client() as c:
        if contacts:
            r = c.post("/api/Contact/Batch", json={"contacts": list(contacts)})
            assert r.status_code == 200, r.text
        if gifts:
            r = c.post("/api/v2/Gift/Transactions",
                       json={"transactionSource": source, "transactions": list(gifts)})
            assert r.status_code == 200, r.text
    return sandbox.run_batch()


def test_no_match_creates_a_contact_with_its_reference(sandbox):
    summary = _night(sandbox, [BRUCE])
    assert summary["contactsCreated"] == 1 and summary["processed"] == 1
    (bruce,) = sandbox.state.contacts()
    assert isinstance(bruce["id"], int)
    assert bruce["contactReferences"] == [{"source": "LegacyCRM", "id": "D-1"}]
    assert bruce["name"] == "Bruce Wayne" and bruce["contactType"] == "Household"
    assert sandbox.state.held() == []


def _second(sandbox, **incoming):
    _night(sandbox, [BRUCE])
    summary = _night(sandbox, [{"referenceSource": "Other", "referenceId": "X-9", **incoming}])
    contacts = sandbox.state.contacts()
    return summary, contacts


def test_match_by_reference_merges(sandbox):
    _night(sandbox, [BRUCE])
    summary = _night(sandbox, [{**BRUCE, "email": "batman@wayne.example", "city": "",
                                "lastName": "Wayne II"}])
    assert summary["contactsUpdated"] == 1 and summary["contactsCreated"] == 0
    (bruce,) = sandbox.state.contacts()
    assert bruce["email"] == "batman@wayne.example" and bruce["lastName"] == "Wayne II"
    assert bruce["city"] == "Gotham"  # empty incoming fields do not overwrite
    assert bruce["contactReferences"] == [{"source": "LegacyCRM", "id": "D-1"}]
    assert {m["value"] for m in bruce["contactMethods"]} >= {"bruce@wayne.example",
                                                             "batman@wayne.example"}


def test_match_by_email_adds_the_reference(sandbox):
    summary, contacts = _second(sandbox, email="BRUCE@wayne.example", firstName="Bruce")
    assert summary["contactsUpdated"] == 1 and len(contacts) == 1
    assert {"source": "Other", "id": "X-9"} in contacts[0]["contactReferences"]
    assert sandbox.state.contact_by_reference("Other", "X-9")["id"] == contacts[0]["id"]


def test_match_by_phone(sandbox):
    summary, contacts = _second(sandbox, phone="555-010-0100", firstName="B")
    assert summary["contactsUpdated"] == 1 and len(contacts) == 1


def test_match_by_name_and_postal_code(sandbox):
    summary, contacts = _second(sandbox, firstName="bruce", lastName="WAYNE", postal="07001-1234")
    assert summary["contactsUpdated"] == 1 and len(contacts) == 1
    summary = _night(sandbox, [{"referenceSource": "Other", "referenceId": "X-10",
                                "firstName": "Bruce", "lastName": "Wayne", "postal": "90210"}])
    assert summary["contactsCreated"] == 1


def test_contact_without_a_name_needs_update(sandbox):
    summary = _night(sandbox, [{"referenceSource": "S", "referenceId": "N-1",
                                "email": "nobody@example.org"}])
    assert summary["needsUpdate"] == 1 and sandbox.state.contacts() == []
    (item,) = sandbox.state.needs_update()
    assert (item["kind"], item["referenceId"]) == ("contact", "N-1")


def test_gift_attaches_by_contact_id(sandbox):
    _night(sandbox, [BRUCE])
    cid = sandbox.state.contacts()[0]["id"]
    summary = _night(sandbox, gifts=[gift("G-1", contact={"id": str(cid)})])
    assert summary["giftsCreated"] == 1
    assert sandbox.state.gifts_for("LegacyCRM", "G-1")[0]["contactId"] == cid


def test_gift_with_unknown_contact_id_needs_update(sandbox):
    summary = _night(sandbox, gifts=[gift("G-1", contact={"id": 999999})])
    assert summary["needsUpdate"] == 1 and sandbox.state.gifts() == []
    assert sandbox.state.needs_update()[0]["transactionId"] == "G-1"


def test_gift_reference_matches_against_its_transaction_source(sandbox):
    _night(sandbox, [BRUCE])
    cid = sandbox.state.contacts()[0]["id"]
    _night(sandbox, gifts=[gift("G-1", contact={"referenceId": "D-1"})])
    assert sandbox.state.gifts_for("LegacyCRM", "G-1")[0]["contactId"] == cid
    # the same referenceId under another transactionSource does not match, nor create
    summary = _night(sandbox, gifts=[gift("G-2", contact={"referenceId": "D-1"})], source="Web")
    assert summary["needsUpdate"] == 1


def test_gift_contact_in_the_same_night_as_its_contact_transaction(sandbox):
    summary = _night(sandbox, [BRUCE], [gift("G-1", contact={"referenceId": "D-1"})])
    assert (summary["contactsCreated"], summary["giftsCreated"]) == (1, 1)


def test_gift_matches_by_email_then_name_and_postal(sandbox):
    _night(sandbox, [BRUCE])
    cid = sandbox.state.contacts()[0]["id"]
    _night(sandbox, gifts=[
        gift("G-1", contact={"email": "Bruce@Wayne.example"}),
        gift("G-2", contact={"firstname": "Bruce", "lastname": "Wayne",
                             "address": {"postal": "07001"}}),
    ])
    assert [g["contactId"] for g in sandbox.state.gifts()] == [cid, cid]
    assert len(sandbox.state.contacts()) == 1


def test_gift_creates_its_contact_when_it_can(sandbox):
    summary = _night(sandbox, gifts=[
        gift("G-1", contact={"referenceId": "D-7", "firstname": "Selina", "lastname": "Kyle",
                             "email": "selina@example.org", "type": "Household",
                             "address": {"address1": "1 Alley", "postal": "07002"}}),
        gift("G-2", contact={"name": "Wayne Foundation", "type": "Foundation"}),
        gift("G-3", contact={"email": "selina@example.org"}),
        gift("G-4", contact={"email": "nobody@example.org"}),
        gift("G-5", contact=None),
    ])
    assert summary == {**summary, "contactsCreated": 2, "giftsCreated": 3, "needsUpdate": 2}
    selina = sandbox.state.contact_by_reference("LegacyCRM", "D-7")
    assert selina["address1"] == "1 Alley" and selina["email"] == "selina@example.org"
    assert sandbox.state.gifts_for("LegacyCRM", "G-3")[0]["contactId"] == selina["id"]
    assert {n["transactionId"] for n in sandbox.state.needs_update()} == {"G-4", "G-5"}


def test_by_default_every_copy_of_a_transaction_id_becomes_a_gift(sandbox):
    """Nothing says CRM+ de-duplicates: the sandbox's default does not."""
    summary = _night(sandbox, gifts=[gift("G-1"), gift("G-1")])  # twice in one night
    assert (summary["giftsCreated"], summary["duplicatesSkipped"]) == (2, 0)
    _night(sandbox, gifts=[gift("G-1", amount=99)])  # and again the next night
    copies = sandbox.state.gifts_for("LegacyCRM", "G-1")
    assert [g["amount"] for g in copies] == [25.0, 25.0, 99.0]
    assert len({g["id"] for g in copies}) == 3
    assert sandbox.state.times_received("LegacyCRM", "G-1") == 3
    assert sandbox.state.duplicates() == []
    with sandbox.client() as c:  # the lookup answers one of them (the first)
        assert c.get("/api/Gift/LegacyCRM/G-1").json()["id"] == copies[0]["id"]


def test_with_dedupe_a_transaction_id_is_imported_only_once(sandbox):
    sandbox.config.dedupe_transactions = True
    _night(sandbox, gifts=[gift("G-1"), gift("G-1")])  # twice in one night
    _night(sandbox, gifts=[gift("G-1", amount=99)])  # and again the next night
    assert len(sandbox.state.gifts_for("LegacyCRM", "G-1")) == 1
    assert sandbox.state.gifts_for("LegacyCRM", "G-1")[0]["amount"] == 25.0
    assert sandbox.state.times_received("LegacyCRM", "G-1") == 3
    assert len(sandbox.state.duplicates()) == 2
    # the same transactionId under another source is another gift
    _night(sandbox, gifts=[gift("G-1")], source="Web")
    assert len(sandbox.state.gifts()) == 2


def test_reset_switches_dedupe_back_off(sandbox):
    sandbox.config.dedupe_transactions = True
    sandbox.reset()
    assert sandbox.config.dedupe_transactions is False


def test_imported_gift_record(sandbox):
    _night(sandbox, gifts=[gift("G-1", "100.50", currencyCode="USD", notes="hi", isPrivate=True,
                                customFields={"Appeal": "Spring"},
                                designations=[{"code": "GEN", "amountDesignated": "100.50"}])])
    (g,) = sandbox.state.gifts()
    assert g["amount"] == 100.5
    (d,) = g["giftDesignations"]
    assert (d["projectId"], d["project"], d["projectCode"], d["amountDesignated"]) == (
        101, "General Fund", "GEN", 100.5)
    assert (g["currencyCode"], g["notes"], g["giftType"]) == ("USD", "hi", "Check")
    assert g["isPrivate"] is True and g["isTaxDeductible"] is True
    assert g["customFields"] == [{"name": "Appeal", "value": "Spring"}]
    assert "contact" not in g and "designations" not in g and g["contactId"] > 0


def test_run_batch_needs_a_key(sandbox):
    r = httpx.post(sandbox.base_url + "/sandbox/run-batch")
    assert r.status_code == 401


def test_run_batch_command(sandbox):
    with sandbox.client() as c:
        c.post("/api/Contact/Transaction", json=contact("D-1"))
    runner = CliRunner()
    result = runner.invoke(sandbox_cli, ["run-batch", "--url", sandbox.base_url,
                                         "--api-key", sandbox.api_key])
    assert result.exit_code == 0, result.output
    assert '"contactsCreated": 1' in result.output
    result = runner.invoke(sandbox_cli, ["run-batch", "--url", sandbox.base_url,
                                         "--api-key", "wrong"])
    assert result.exit_code == 4
    result = runner.invoke(sandbox_cli, ["run-batch", "--url", "https://api.virtuoussoftware.com",
                                         "--api-key", "k"])
    assert result.exit_code == 2
