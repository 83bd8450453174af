"""Pre-match (etl/match/) end to end: the dry run's prediction of new vs existing contacts
equals what the nightly batch then does; the skip and changed policies; the incremental cache
refresh; the per-row Find path's cost and cap. CRM+ is `FakeCrm` (tests/test_match_crm.py), an
organization answering only in the documented shapes through `httpx.MockTransport`."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_match_crm import FakeCrm

from etl import match
from etl.base.errors import SpecErrors
from etl.load.client import OrganizationMismatch
from etl.match import MatchOptions, MatchRefused
from etl.match.contacts import parse_time
from etl.run.dry_run import dry_run
from etl.run.submit import RunOptions, RunSummary, run_pipeline
from etl.spec.parse import load_spec
from etl.spec.pipeline import open_pipeline

BASE = "http://127.0.0.1:9"  # never connected: every request goes to the MockTransport
KEY = "test-key-not-a-secret"

Row = tuple[str, str, str, str]  # DonorID, First, Last, Email

# Already in CRM+ before the import (held as transactions, then the nightly batch).
EXISTING: list[Row] = [(f"D{i}", f"Ann{i}", "Lee", f"d{i}@example.org") for i in range(6)]

# The file to import: 3 by reference (D2 with a new email), 2 by email (one in other case and
# padding), 3 new donors, and one row whose email is a new donor's from an earlier row.
SECOND: list[Row] = [
    ("D0", "Ann0", "Lee", "d0@example.org"),
    ("D1", "Ann1", "Lee", "d1@example.org"),
    ("D2", "Ann2", "Lee", "ann2.new@example.org"),
    ("X1", "Bob", "Ray", " D3@Example.ORG"),
    ("X2", "Cy", "Ray", "d4@example.org"),
    ("N1", "Dee", "Fox", "n1@example.org"),
    ("N2", "Eve", "Fox", "n2@example.org"),
    ("N3", "Fay", "Fox", "n3@example.org"),
    ("N4", "Gil", "Fox", "n1@example.org"),
]


def preload(crm: FakeCrm, rows: list[Row]) -> dict[str, int]:
    """Contacts that exist in CRM+: held as Contact Transactions, then the nightly batch."""
    crm.held += [("LegacyCRM", {"referenceId": r, "firstName": f, "lastName": last,
                                "email": e, "emailType": "Home Email"}) for r, f, last, e in rows]
    return crm.run_batch()


def write_spec(folder: Path, rows: list[Row], *, match_section: str = "{}") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["DonorID,First,Last,Email"] + [",".join(r) for r in rows]
    (folder / "contacts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = folder / "contacts.yaml"
    spec.write_text(f"""name: contacts
target: contact_transaction
organization: Sandbox Organization
source: {{path: contacts.csv}}
keys: {{source: LegacyCRM, id: {{column: DonorID}}}}
mappings:
  firstName: First
  lastName: Last
  email: {{column: Email, transforms: [trim]}}
  emailType: {{constant: Home Email}}
  contactType: {{constant: Household}}
load: {{requests_per_hour: 1000000}}
match: {match_section}
""", encoding="utf-8")
    return spec


def refresh_options(crm: FakeCrm, **extra: Any) -> MatchOptions:
    return MatchOptions(refresh=True, base_url=BASE, token=KEY, transport=crm.transport(),
                        **extra)


def go(spec: Path, crm: FakeCrm, **extra: Any) -> RunSummary:
    options = RunOptions(token=KEY, base_url=BASE, transport=crm.transport(), backoff_base=0.01,
                         handle_signals=False, **extra)
    return run_pipeline(open_pipeline(spec, out_dir=spec.parent / "run"), options)[1]


def finds(crm: FakeCrm) -> int:
    return len(crm.sent("/api/Contact/Find"))


@pytest.fixture
def crm() -> FakeCrm:
    return FakeCrm()


def test_the_prediction_equals_what_the_nightly_batch_does(crm: FakeCrm,
                                                           tmp_path: Path) -> None:
    assert preload(crm, EXISTING)["contactsCreated"] == 6
    spec = write_spec(tmp_path, SECOND)
    dry = dry_run(open_pipeline(spec, out_dir=tmp_path / "dry"), match=refresh_options(crm))
    block = dry.report["prematch"]
    assert block["rows"] == {"checked": 9, "existing": 6, "new": 3, "unknown": 0}
    assert block["by_signal"] == {"reference": 3, "email": 2, "email_in_run": 1}
    assert block["refresh"]["mode"] == "full" and block["cache"]["contacts"] == 6
    # the complete read of full records proves both signals: "new" is a proof, not a guess
    assert block["cache"]["proven"] == ["email", "reference"] and "warning" not in block
    assert block["refresh"]["complete"] is True
    predicted = block["nightly_batch"]
    # the same in report.json, the terminal summary and report.html
    assert json.loads((tmp_path / "dry" / "report.json").read_text())["prematch"] == block
    assert "6 existing (reference 3, email 2, email_in_run 1), 3 new" in dry.summary
    assert 'id="prematch"' in (tmp_path / "dry" / "report.html").read_text()

    summary = go(spec, crm)  # policy send: every row goes, the batch merges or creates
    assert (summary.exit_code, summary.counts) == (0, {"accepted": 9})
    batch = crm.run_batch()
    assert predicted == {"contactsCreated": 3, "contactsUpdated": 6}
    assert {k: batch[k] for k in predicted} == predicted


def test_the_dry_run_without_refresh_is_offline_and_reads_the_cache(crm: FakeCrm,
                                                                    tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SECOND)
    block = dry_run(open_pipeline(spec, out_dir=tmp_path / "dry")).report["prematch"]
    assert block["status"] == "no_cache" and "--refresh-match" in block["hint"]
    assert not (tmp_path / ".ledger").exists()  # read-only: no ledger file created
    preload(crm, EXISTING)
    before = len(crm.requests)
    dry_run(open_pipeline(spec, out_dir=tmp_path / "dry"), match=refresh_options(crm))
    reads = len(crm.requests)
    again = dry_run(open_pipeline(spec, out_dir=tmp_path / "dry"))
    assert len(crm.requests) == reads  # no request at all
    block = again.report["prematch"]
    assert block["status"] == "ok" and block["refresh"] is None
    assert block["rows"]["existing"] == 6 and block["cache"]["age_seconds"] is not None
    # Organization/Current + QueryOptions + one Query/FullContact page
    assert [r.url.path for r in crm.requests[before:]] == [
        "/api/Organization/Current", "/api/Contact/QueryOptions",
        "/api/Contact/Query/FullContact"]


def test_policy_skip_sends_only_new_rows_and_records_the_crm_id(crm: FakeCrm,
                                                                tmp_path: Path) -> None:
    preload(crm, EXISTING)
    spec = write_spec(tmp_path, SECOND, match_section="{policy: skip}")
    block = dry_run(open_pipeline(spec, out_dir=tmp_path / "dry"),
                    match=refresh_options(crm)).report["prematch"]
    assert block["policy_effect"] == {"send": 4, "skip": 5}
    notes: list[str] = []
    summary = go(spec, crm, notify=notes.append)
    assert summary.exit_code == 0, summary.exit_reason
    assert summary.counts == {"accepted": 4, "skipped_existing": 5}
    held = sorted(c["referenceId"] for _, c in crm.held)
    assert held == ["N1", "N2", "N3", "N4"]
    assert any("policy skip: 5 not sent" in n for n in notes)
    db = sqlite3.connect(summary.ledger)
    columns = {r[1] for r in db.execute("PRAGMA table_info(rows)")}
    got = db.execute("SELECT key, reason, error_details FROM rows WHERE status=?"
                     " ORDER BY id", ("skipped_existing",)).fetchall()
    crm_ids = ({k: c for k, c in db.execute("SELECT key, crm_id FROM rows"
                                            " WHERE crm_id IS NOT NULL")}
               if "crm_id" in columns else None)
    db.close()
    expected = {"D0": "D0", "D1": "D1", "D2": "D2", "X1": "D3", "X2": "D4"}
    for key, reason, details in got:
        contact = crm.by_reference("LegacyCRM", expected[key.rsplit(":", 1)[1]])
        assert contact is not None
        ident = str(contact["id"])
        assert f"contact {ident} " in reason
        assert json.loads(details)[0]["message"] == ident
        if crm_ids is not None:
            assert crm_ids[key] == ident
    batch = crm.run_batch()
    assert {k: batch[k] for k in block["nightly_batch"]} == block["nightly_batch"] == {
        "contactsCreated": 3, "contactsUpdated": 1}
    again = go(spec, crm)  # the skipped rows stay skipped; the sent ones are accepted
    assert again.counts == {"already_accepted": 4, "skipped_existing": 5}


def test_policy_changed_sends_only_contacts_that_differ(crm: FakeCrm,
                                                        tmp_path: Path) -> None:
    preload(crm, EXISTING)
    rows = [("D0", "Ann0", "Lee", "d0@example.org"),        # identical: kept back
            ("D1", "Ann1", "Leigh", "d1@example.org"),      # new last name: sent
            ("D2", "Ann2", "Lee", "D2@EXAMPLE.org"),        # same email, other case: kept back
            ("D3", "Ann3", "Lee", "second@example.org"),    # a new email: sent
            ("N1", "Dee", "Fox", "n1@example.org")]         # new: sent
    spec = write_spec(tmp_path, rows, match_section="{policy: changed}")
    summary = go(spec, crm)
    assert summary.counts == {"accepted": 3, "skipped_existing": 2}, summary.exit_reason
    assert sorted(c["referenceId"] for _, c in crm.held) == ["D1", "D3", "N1"]


def test_incremental_refresh_reads_from_the_day_before_the_newest_cached(
        crm: FakeCrm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(match.bulk, "PAGE", 4)  # several pages with a few contacts
    preload(crm, [(f"P{i}", f"Pat{i}", "Doe", f"p{i}@example.org") for i in range(10)])  # 05-02
    crm.clock += timedelta(days=2)
    preload(crm, [("P10", "Pat10", "Doe", "p10@example.org")])  # a later batch: 05-05
    spec = write_spec(tmp_path, SECOND)
    first = dry_run(open_pipeline(spec, out_dir=tmp_path / "dry"), match=refresh_options(crm))
    stats = first.report["prematch"]["refresh"]
    assert (stats["mode"], stats["fetched"], stats["requests"]) == ("full", 11, 1 + 1 + 3)
    assert [r.url.params["take"] for r in crm.sent("/api/Contact/Query/FullContact")] == ["4"] * 3
    watermark = first.report["prematch"]["cache"]["high_water"]
    p10 = crm.by_reference("LegacyCRM", "P10")
    assert p10 is not None and parse_time(watermark) == parse_time(p10["modifiedDateTimeUtc"])
    # two contacts change, one is created (05-08); the other nine are untouched
    crm.clock += timedelta(days=2)
    preload(crm, [("P1", "Pat1", "Doe", "p1.new@example.org"),
                  ("P2", "Patricia2", "Doe", "p2@example.org"),
                  ("P11", "Pat11", "Doe", "p11@example.org")])
    crm.requests.clear()
    second = dry_run(open_pipeline(spec, out_dir=tmp_path / "dry"), match=refresh_options(crm))
    stats = second.report["prematch"]["refresh"]
    # day-grained dates: from the day BEFORE the watermark's day (05-05 -> 05/04/2024), spelled
    # and operated as QueryOptions offers it
    assert stats["mode"] == "incremental" and stats["since"] == "05/04/2024"
    assert crm.bodies() == [{"groups": [{"conditions": [
        {"parameter": "Last Modified Date", "operator": "OnOrAfter", "value": "05/04/2024",
         "secondaryValue": None, "values": None}]}], "sortBy": "Id", "descending": False}]
    # the overlap re-reads P10 (05-05); P1, P2 and P11 are what changed
    assert (stats["fetched"], stats["changed"], stats["requests"]) == (4, 3, 1 + 1 + 1)
    assert second.report["prematch"]["cache"]["contacts"] == 12
    assert second.report["prematch"]["cache"]["proven"] == ["email", "reference"]
    # the new email of P1 is in the cache: a row with it matches P1 by email
    db = sqlite3.connect(tmp_path / ".ledger" / "contacts.sqlite")
    p1 = crm.by_reference("LegacyCRM", "P1")
    assert p1 is not None
    assert db.execute("SELECT contact_id FROM prematch_emails WHERE email=?",
                      ("p1.new@example.org",)).fetchone() == (p1["id"],)
    db.close()


def test_find_shows_its_cost_and_the_cap_refuses_before_any_lookup(crm: FakeCrm,
                                                                   tmp_path: Path) -> None:
    preload(crm, EXISTING)
    spec = write_spec(tmp_path, SECOND, match_section="{method: find, max_requests: 10}")
    notes: list[str] = []
    with pytest.raises(MatchRefused, match=r"up to 17 requests, over match\.max_requests"):
        dry_run(open_pipeline(spec, out_dir=tmp_path / "dry"),
                match=refresh_options(crm, notify=notes.append))
    # 9 distinct references + 8 distinct emails, shown before the refusal; no Find was sent
    assert any("up to 17 Contact/Find requests (reference 9, email 8)" in n for n in notes)
    assert finds(crm) == 0

    spec = write_spec(tmp_path, SECOND, match_section="{method: find, max_requests: 17}")
    block = dry_run(open_pipeline(spec, out_dir=tmp_path / "dry"),
                    match=refresh_options(crm)).report["prematch"]
    assert block["by_signal"] == {"reference": 3, "email": 2, "email_in_run": 1}
    # emails are asked only for rows the reference did not find: 9 + 5 (N1's once)
    assert finds(crm) == block["refresh"]["requests"] - 1 == 14
    summary = go(spec, crm)  # the run asks only about the rows it is about to send
    assert summary.counts == {"accepted": 9}
    batch = crm.run_batch()
    assert {k: batch[k] for k in block["nightly_batch"]} == block["nightly_batch"]


def test_the_run_refuses_another_organization_before_any_read(crm: FakeCrm,
                                                              tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SECOND)
    text = spec.read_text().replace("Sandbox Organization", "Other Org")
    spec.write_text(text)
    with pytest.raises(OrganizationMismatch, match="Other Org"):
        go(spec, crm)
    db = sqlite3.connect(tmp_path / ".ledger" / "contacts.sqlite")
    assert db.execute("SELECT exit_code, exit_reason FROM runs").fetchone()[0] == 4
    assert db.execute("SELECT DISTINCT status FROM rows").fetchall() == [("pending",)]
    db.close()
    assert [r.url.path for r in crm.requests] == ["/api/Organization/Current"]
    assert crm.held == []


def test_gift_donors_are_predicted_as_the_batch_resolves_them(crm: FakeCrm,
                                                              tmp_path: Path) -> None:
    preload(crm, EXISTING)
    lines = ["GiftID,DonorID,First,Last,Email,Amount,Date"]
    # (contact.referenceId, contact.email): D0 by reference; Q1 and Z3 by email; Z1 and Z2 new;
    # Z1 again by the reference of an earlier new donor, Z9 by an earlier new donor's email
    donors = [("D0", "d0@example.org"), ("Q1", "d1@example.org"), ("Z1", "z1@example.org"),
              ("Z1", "z1@example.org"), ("Z2", "z2@example.org"), ("Z9", "z2@example.org"),
              ("Z3", "d5@example.org")]
    for i, (donor, email) in enumerate(donors):
        lines.append(f"G{i},{donor},Ann,Lee,{email},10.00,2024-01-02")
    (tmp_path / "gifts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tmp_path / "gifts.yaml"
    spec.write_text("""name: gifts
target: gift_transaction
source: {path: gifts.csv}
keys: {source: LegacyCRM, id: {column: GiftID}}
mappings:
  amount: Amount
  giftDate: {column: Date, transforms: [{parse_date: {formats: ["%Y-%m-%d"]}}]}
  giftType: {constant: Check}
  contact.referenceId: DonorID
  contact.firstname: First
  contact.lastname: Last
  contact.email: Email
load: {requests_per_hour: 1000000}
match: {policy: changed}
""", encoding="utf-8")
    block = dry_run(open_pipeline(spec, out_dir=tmp_path / "dry"),
                    match=refresh_options(crm)).report["prematch"]
    assert block["by_signal"] == {"reference": 1, "email": 2, "reference_in_run": 1,
                                  "email_in_run": 1}
    assert block["nightly_batch"] == {"contactsCreated": 2, "giftsForExistingContacts": 5}
    assert go(spec, crm).counts == {"accepted": 7}
    batch = crm.run_batch()
    assert (batch["contactsCreated"], batch["giftsCreated"]) == (2, 7)


def test_the_match_section_is_checked(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SECOND, match_section="{polcy: skip}")
    with pytest.raises(SpecErrors, match="did you mean 'policy'"):
        load_spec(spec)
    spec = write_spec(tmp_path, SECOND, match_section="{by: [email, email]}")
    with pytest.raises(SpecErrors, match="list each signal once"):
        load_spec(spec)
    loaded = load_spec(write_spec(tmp_path, SECOND, match_section="{}"))
    assert loaded.spec.match is not None
    assert (loaded.spec.match.method, loaded.spec.match.by, loaded.spec.match.policy,
            loaded.spec.match.max_requests) == ("bulk", ["reference", "email"], "send", 2000)
    gifts = tmp_path / "g.yaml"
    gifts.write_text("""name: g
target: gift_transaction
source: {path: g.csv}
keys: {source: S, id: {column: A}}
mappings: {amount: A}
match: {policy: skip}
""", encoding="utf-8")
    with pytest.raises(SpecErrors, match="policy skip applies to contact_transaction only"):
        load_spec(gifts)


def test_contact_records_are_read_defensively() -> None:
    # any capitalization, numbers as strings, the older reference names, a naive timestamp
    rich = {"Id": "1201", "ModifiedDateTime": "2024-05-01T10:00:00",
            "ContactReferences": [{"referenceSource": "X", "referenceId": 7}],
            "ContactIndividuals": [{"IsPrimary": "true", "FirstName": "Ann",
                                    "ContactMethods": [{"Type": "Home Email",
                                                        "Value": " A@B.org "},
                                                       {"Type": "Mobile", "Value": "555"}]}]}
    c = match.parse_contact(rich)
    assert c is not None
    assert (c.id, c.modified, c.refs, c.emails, c.keyed, c.methods_known) == (
        1201, "2024-05-01T10:00:00.000000Z", (("X", "7"),), ("a@b.org",), True, True)
    assert json.loads(c.record)["firstName"] == "Ann"  # flat, as the payload names it
    # the lighter ContactLookup: no contactReferences, an individual without contactMethods
    light = match.parse_contact({"id": 5, "contactIndividuals": [{"firstName": "B"}]})
    assert light is not None and (light.refs, light.keyed, light.methods_known) == (
        (), False, False)
    assert match.parse_contact({"name": "no id"}) is None
    assert match.parse_contact("garbage") is None
