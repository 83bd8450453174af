"""The direct path (etl/load/direct.py, etl/run/direct.py) against a fake CRM+ behind
`httpx.MockTransport`: the nested body, what is retried and what is in doubt, the settle window,
the cap, and the ledger rows it leaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from direct_spec import write_spec

from etl.base.errors import SpecError
from etl.load.direct_shape import nested_contact, unsupported_fields
from etl.load.ledger import Ledger
from etl.run.direct import DirectRefused
from etl.run.dry_run import dry_run
from etl.run.submit import RunOptions, RunSummary, run_pipeline
from etl.spec.pipeline import open_pipeline


class FakeCrm:
    """Find by reference / email and a POST /api/Contact that creates unconditionally.
    `post_answers` queues what the next POSTs do: ok, 500_lost (refused before storing),
    500_stored, timeout_stored, connect_error (never left the machine)."""

    def __init__(self) -> None:
        self.contacts: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.post_answers: list[str] = []
        self.find_status: int | None = None  # answer every Find with this status

    def with_ref(self, source: str, ident: str) -> list[dict[str, Any]]:
        ref = {"source": source, "id": ident}
        return [c for c in self.contacts if ref in c["contactReferences"]]

    def add(self, body: dict[str, Any]) -> dict[str, Any]:
        record = {**body, "id": 7001 + len(self.contacts)}
        self.contacts.append(record)
        return record

    def _find(self, params: dict[str, str]) -> httpx.Response:
        if self.find_status is not None:
            return httpx.Response(self.find_status, text="")
        if "email" in params:
            hits = [c for c in self.contacts if any(
                m["value"].lower() == params["email"].lower()
                for p in c.get("contactIndividuals", []) for m in p["contactMethods"])]
        else:
            hits = self.with_ref(params["referenceSource"], params["referenceId"])
        return httpx.Response(200, json=hits[0]) if hits else httpx.Response(404)

    def handler(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, dict(request.url.params)
        if request.method == "POST":  # which row's create this is
            params = {"ref": json.loads(request.content)["contactReferences"][0]["id"]}
        self.calls.append((request.method, path, params))
        if path == "/api/Organization/Current":
            return httpx.Response(200, json={"organizationName": "Test Org"})
        if path == "/api/Contact/Find":
            return self._find(params)
        assert (request.method, path) == ("POST", "/api/Contact"), path
        mode = self.post_answers.pop(0) if self.post_answers else "ok"
        if mode == "connect_error":
            raise httpx.ConnectError("connection refused", request=request)
        if mode == "422_echo":  # a server that repeats the key back
            token = request.headers["authorization"].split()[-1]
            return httpx.Response(422, json={"error": {
                "code": "VALIDATION_FAILED", "message": f"bad {token}",
                "details": [{"field": "name", "code": "BAD", "message": token}]}})
        if mode == "500_lost":
            return httpx.Response(500, json={"message": "An error has occurred."})
        record = self.add(json.loads(request.content))
        if mode == "500_stored":
            return httpx.Response(500, json={"message": "An error has occurred."})
        if mode == "timeout_stored":
            raise httpx.ReadTimeout("no answer in time", request=request)
        return httpx.Response(200, json=record)

    def posts(self) -> int:
        return sum(1 for m, p, _ in self.calls if (m, p) == ("POST", "/api/Contact"))


ROWS = [("D1", "Ann", "Lee", "ann@example.org"), ("D2", "Bob", "Ray", "bob@example.org"),
        ("D3", "Cy", "Moe", "")]


def go(spec: Path, crm: FakeCrm, said: list[str] | None = None) -> RunSummary:
    opts = RunOptions(token="tok-123456", base_url="http://127.0.0.1:9", backoff_base=0.001,
                      transport=httpx.MockTransport(crm.handler),
                      notify=(said if said is not None else []).append)
    return run_pipeline(open_pipeline(spec, out_dir=spec.parent / "reports"), opts)[1]


def rows_of(summary: RunSummary) -> list[dict[str, Any]]:
    with Ledger(summary.ledger, lock=False) as led:
        cur = led.db.execute("SELECT key, status, reason, crm_id, confirmed_via, attempts,"
                             " error_code FROM rows WHERE run_id=? ORDER BY id",
                             (summary.run_id,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


# -- the nested body ---------------------------------------------------------------------------
def test_the_nested_body_has_the_shape_seed_000_shows() -> None:
    flat = {"referenceSource": "YourPlatform", "referenceId": "donor-bw-001",
            "contactType": "Household", "firstName": "Bruce", "lastName": "Wayne",
            "emailType": "Home Email", "email": "bruce@wayne.example",
            "phoneType": "Mobile Phone", "phone": "555-0100", "address1": "1007 Mountain Drive",
            "city": "Gotham", "state": "NJ", "postal": "07001", "country": "US"}
    assert nested_contact(flat) == {
        "contactType": "Household", "name": "Wayne, Bruce",
        "contactIndividuals": [{
            "firstName": "Bruce", "lastName": "Wayne", "isPrimary": True,
            "contactMethods": [
                {"type": "Home Email", "value": "bruce@wayne.example", "isPrimary": True},
                {"type": "Mobile Phone", "value": "555-0100", "isPrimary": True}]}],
        "address": {"address1": "1007 Mountain Drive", "city": "Gotham", "state": "NJ",
                    "postal": "07001", "country": "US", "isPrimary": True},
        "contactReferences": [{"source": "YourPlatform", "id": "donor-bw-001"}]}


def test_an_organization_keeps_its_name_and_methods_get_default_types() -> None:
    org = nested_contact({"referenceSource": "S", "referenceId": "1", "name": "Wayne Ent.",
                          "contactType": "Organization", "title": "", "phone": " 555 "})
    assert org["name"] == "Wayne Ent." and "address" not in org
    assert org["contactIndividuals"] == [{"isPrimary": True, "contactMethods": [
        {"type": "Home Phone", "value": "555", "isPrimary": True}]}]
    bare = nested_contact({"referenceSource": "S", "referenceId": "2", "name": "X"})
    assert "contactIndividuals" not in bare
    assert unsupported_fields(["firstName", "tags", "customFields"]) == ["tags", "customFields"]


def test_the_dry_run_refuses_what_direct_create_cannot_carry(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, ROWS, mappings="  tags: {constant: Gala}\n")
    with pytest.raises(SpecError, match=r"load.create: .*no documented place for tags"):
        dry_run(open_pipeline(spec, out_dir=tmp_path / "r"))


def test_direct_create_is_for_contacts_only(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, ROWS)
    text = spec.read_text().replace("target: contact_transaction", "target: gift_transaction")
    text = text.replace("  firstName: First\n  lastName: Last\n  email: Email\n"
                        "  emailType: {constant: Home Email}\n  contactType: {constant: Household}",
                        "  amount: {constant: 5}\n  giftDate: {constant: \"2024-01-01\"}")
    spec.write_text(text)
    with pytest.raises(SpecError, match="contact_transaction only"):
        dry_run(open_pipeline(spec, out_dir=tmp_path / "r"))


# -- a run -------------------------------------------------------------------------------------
def test_a_miss_is_created_and_its_id_recorded_at_once(tmp_path: Path) -> None:
    crm, said = FakeCrm(), []
    summary = go(write_spec(tmp_path, ROWS), crm, said)
    assert (summary.exit_code, summary.counts) == (0, {"confirmed": 3})
    got = rows_of(summary)
    for row in got:  # the id the POST answered for this row's reference
        (made,) = crm.with_ref("LegacyCRM", row["key"].rsplit(":", 1)[1])
        assert row["crm_id"] == str(made["id"])
    assert {r["confirmed_via"] for r in got} == {"direct"}
    # per row: Find by reference, Find by email (when it has one), then the POST
    calls = [q for _, _, q in crm.calls[1:]]
    for ident, email in (("D1", "ann@example.org"), ("D2", "bob@example.org"), ("D3", None)):
        by_ref = calls.index({"referenceSource": "LegacyCRM", "referenceId": ident})
        post = calls.index({"ref": ident})
        by_email = calls.index({"email": email}) if email else by_ref
        assert by_ref <= by_email < post
    assert len(calls) == 8
    # the cost was said before the first request
    cost = next(i for i, m in enumerate(said) if m.startswith("direct create: up to 8 requests"))
    assert cost < next(i for i, m in enumerate(said) if m.startswith("writing to organization"))
    assert summary.direct is not None and summary.direct["outcomes"] == {"created": 3}
    again = go(write_spec(tmp_path, ROWS), crm)
    assert again.counts == {"already_accepted": 3} and crm.posts() == 3


def test_a_500_on_the_post_is_in_doubt_and_never_posted_again_blindly(tmp_path: Path) -> None:
    crm = FakeCrm()
    crm.post_answers = ["500_lost"]
    first = go(write_spec(tmp_path, ROWS[:1]), crm)
    assert first.counts == {"in_doubt": 1} and crm.posts() == 1  # not retried
    assert first.exit_code == 1 and "looks each up by reference first" in first.exit_reason
    assert rows_of(first)[0]["error_code"] == "IN_DOUBT_HTTP_500"
    # the next run looks it up first; absent, but its POST went out a moment ago: no POST yet
    settling = go(write_spec(tmp_path, ROWS[:1]), crm)
    assert settling.counts == {"in_doubt": 1} and crm.posts() == 1
    assert rows_of(settling)[0]["error_code"] == "IN_DOUBT_RECHECK"
    # once the settle window has passed, absence by reference is proof: created, once
    done = go(write_spec(tmp_path, ROWS[:1], load=", direct_settle_seconds: 0"), crm)
    assert done.counts == {"confirmed": 1} and crm.posts() == 2
    assert len(crm.with_ref("LegacyCRM", "D1")) == 1
    assert rows_of(done)[0]["reason"] == ("created: contact 7001 (after an unanswered create, "
                                          "absent by reference)")


@pytest.mark.parametrize("answer", ["timeout_stored", "500_stored"])
def test_an_unanswered_post_that_was_stored_is_found_by_reference(tmp_path: Path,
                                                                  answer: str) -> None:
    crm = FakeCrm()
    crm.post_answers = [answer]
    spec = write_spec(tmp_path, ROWS[:1], load=", direct_settle_seconds: 0")
    assert go(spec, crm).counts == {"in_doubt": 1}
    summary = go(spec, crm)
    assert summary.counts == {"confirmed": 1} and crm.posts() == 1
    row = rows_of(summary)[0]
    assert row["crm_id"] == "7001" and row["reason"].startswith("found by reference after")


def test_a_refused_post_is_rejected_with_details_and_the_key_never_stored(
        tmp_path: Path) -> None:
    crm = FakeCrm()
    crm.post_answers = ["422_echo"]
    summary = go(write_spec(tmp_path, ROWS[:1]), crm)
    assert summary.counts == {"rejected": 1} and crm.posts() == 1
    row = rows_of(summary)[0]
    assert row["error_code"] == "VALIDATION_FAILED"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"tok-123456" not in path.read_bytes(), path


def test_a_refused_connection_is_retried_because_nothing_left(tmp_path: Path) -> None:
    crm = FakeCrm()
    crm.post_answers = ["connect_error"]
    summary = go(write_spec(tmp_path, ROWS[:1]), crm)
    assert summary.counts == {"confirmed": 1} and len(crm.contacts) == 1
    assert rows_of(summary)[0]["attempts"] == 2


def test_a_find_without_an_answer_creates_nothing(tmp_path: Path) -> None:
    crm = FakeCrm()
    crm.find_status = 500  # reads are retried (max_attempts 3), then the row fails
    summary = go(write_spec(tmp_path, ROWS[:2]), crm)
    assert summary.counts == {"failed": 2} and crm.posts() == 0
    assert {r["error_code"] for r in rows_of(summary)} == {"FIND_FAILED"}
    crm.find_status = None
    assert go(write_spec(tmp_path, ROWS[:2]), crm).counts == {"confirmed": 2}


def test_max_failed_stops_looking_up_further_rows(tmp_path: Path) -> None:
    crm = FakeCrm()
    crm.post_answers = ["500_lost"] * 3
    spec = write_spec(tmp_path, ROWS, load=", concurrency: 1")
    opts = RunOptions(token="tok-123456", base_url="http://127.0.0.1:9", backoff_base=0.001,
                      transport=httpx.MockTransport(crm.handler), max_failed=0)
    summary = run_pipeline(open_pipeline(spec, out_dir=tmp_path / "r"), opts)[1]
    assert summary.counts == {"in_doubt": 1, "pending": 2} and crm.posts() == 1
    assert summary.exit_code == 1 and "--max-failed 0" in summary.exit_reason


def test_401_on_find_stops_the_run_and_leaves_the_rows_pending(tmp_path: Path) -> None:
    crm = FakeCrm()
    crm.find_status = 401
    summary = go(write_spec(tmp_path, ROWS), crm)
    assert summary.exit_code == 4 and summary.counts == {"pending": 3} and crm.posts() == 0


def test_rows_sharing_an_email_meet_the_first_ones_contact(tmp_path: Path) -> None:
    rows = [("D1", "Ann", "Lee", "home@example.org"), ("D2", "Al", "Lee", "home@example.org"),
            ("D3", "Cy", "Moe", "cy@example.org")]
    crm = FakeCrm()
    summary = go(write_spec(tmp_path, rows, load=", concurrency: 3"), crm)
    got = {r["key"].rsplit(":", 1)[1]: r for r in rows_of(summary)}
    assert got["D1"]["status"] == "confirmed" and got["D3"]["status"] == "confirmed"
    assert got["D2"]["status"] == "skipped_existing"
    assert got["D2"]["crm_id"] == got["D1"]["crm_id"] and crm.posts() == 2


def test_more_rows_than_the_cap_are_refused_before_any_request(tmp_path: Path) -> None:
    crm = FakeCrm()
    spec = write_spec(tmp_path, ROWS, load=", direct_max_rows: 2")
    with pytest.raises(DirectRefused, match=r"over load\.direct_max_rows .*Transaction path"):
        go(spec, crm)
    assert crm.calls == []
    with Ledger(tmp_path / ".ledger" / "contacts.sqlite", lock=False) as led:
        run = led.run()
    assert run["exit_code"] == 2 and "direct_max_rows" in run["exit_reason"]


def test_a_row_left_sending_by_a_crash_is_looked_up_before_any_post(tmp_path: Path) -> None:
    crm = FakeCrm()
    spec = write_spec(tmp_path, ROWS[:2])
    first = go(spec, crm)
    assert first.counts == {"confirmed": 2}
    # as kill -9 during the POSTs leaves it: D1 stored by CRM+, D2 never arrived
    crm.contacts = crm.with_ref("LegacyCRM", "D1")
    with Ledger(first.ledger, lock=False) as led, led.tx():
        led.db.execute("UPDATE runs SET ended_at=NULL WHERE id=?", (first.run_id,))
        led.db.execute("UPDATE rows SET status='sending', crm_id=NULL WHERE run_id=?",
                       (first.run_id,))
    summary = go(spec, crm)
    assert summary.in_doubt_found == 2 and crm.posts() == 2  # nothing POSTed again
    got = {r["key"].rsplit(":", 1)[1]: r for r in rows_of(summary)}
    assert got["D1"]["status"] == "confirmed"
    assert got["D1"]["crm_id"] == str(crm.contacts[0]["id"])
    assert got["D2"]["status"] == "in_doubt"  # absent, but within the settle window
