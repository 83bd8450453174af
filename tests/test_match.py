"""Pre-match (etl/match/) against the local sandbox over loopback: the dry run's prediction of
new vs existing contacts equals what the sandbox's nightly batch then does; the skip and changed
policies; the incremental cache refresh; the per-row Find path's cost and cap."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from etl import match
from etl.client import OrganizationMismatch
from etl.dryrun import dry_run
from etl.errors import SpecErrors
from etl.match import MatchOptions, MatchRefused
from etl.sandbox.server import SandboxHandle
from etl.spec import load_spec
from etl.submit import RunOptions, RunSummary, run_pipeline

Row = tuple[str, str, str, str]  # DonorID, First, Last, Email

# Already in CRM+ before the import (loaded straight into the sandbox, then its nightly batch).
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


def preload(sb: SandboxHandle, rows: list[Row]) -> dict[str, Any]:
    """Contacts that exist in CRM+: held through Contact/Batch, then the nightly batch."""
    contacts = [{"referenceId": r, "firstName": f, "lastName": last, "email": e,
                 "emailType": "Home Email", "contactType": "Household"} for r, f, last, e in rows]
    with sb.client() as c:
        answer = c.post("/api/Contact/Batch",
                        json={"referenceSource": "LegacyCRM", "contacts": contacts})
        assert answer.status_code == 200, answer.text
    return sb.run_batch()


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


def refresh_options(sb: SandboxHandle, **extra: Any) -> MatchOptions:
    return MatchOptions(refresh=True, base_url=sb.base_url, token=sb.api_key, **extra)


def go(spec: Path, sb: SandboxHandle, **extra: Any) -> RunSummary:
    options = RunOptions(token=sb.api_key, base_url=sb.base_url, out_dir=spec.parent / "run",
                         backoff_base=0.01, handle_signals=False, **extra)
    return run_pipeline(spec, options)[1]


def finds(sb: SandboxHandle) -> int:
    return len(sb.state.requests(path="/api/Contact/Find"))


def test_the_prediction_equals_what_the_nightly_batch_does(sandbox: SandboxHandle,
                                                           tmp_path: Path) -> None:
    assert preload(sandbox, EXISTING)["contactsCreated"] == 6
    spec = write_spec(tmp_path, SECOND)
    dry = dry_run(spec, out_dir=tmp_path / "dry", match=refresh_options(sandbox))
    block = dry.report["prematch"]
    assert block["rows"] == {"checked": 9, "existing": 6, "new": 3}
    assert block["by_signal"] == {"reference": 3, "email": 2, "email_in_run": 1}
    assert block["refresh"]["mode"] == "full" and block["cache"]["contacts"] == 6
    predicted = block["nightly_batch"]
    # the same in report.json, the terminal summary and report.html
    assert json.loads((tmp_path / "dry" / "report.json").read_text())["prematch"] == block
    assert "6 existing (reference 3, email 2, email_in_run 1), 3 new" in dry.summary
    assert 'id="prematch"' in (tmp_path / "dry" / "report.html").read_text()

    summary = go(spec, sandbox)  # policy send: every row goes, the batch merges or creates
    assert (summary.exit_code, summary.counts) == (0, {"accepted": 9})
    batch = sandbox.run_batch()
    assert predicted == {"contactsCreated": 3, "contactsUpdated": 6}
    assert {k: batch[k] for k in predicted} == predicted


def test_the_dry_run_without_refresh_is_offline_and_reads_the_cache(sandbox: SandboxHandle,
                                                                    tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SECOND)
    block = dry_run(spec, out_dir=tmp_path / "dry").report["prematch"]
    assert block["status"] == "no_cache" and "--refresh-match" in block["hint"]
    assert not (tmp_path / ".ledger").exists()  # read-only: no ledger file created
    preload(sandbox, EXISTING)
    before = len(sandbox.state.requests())
    dry_run(spec, out_dir=tmp_path / "dry", match=refresh_options(sandbox))
    reads = len(sandbox.state.requests())
    again = dry_run(spec, out_dir=tmp_path / "dry")
    assert len(sandbox.state.requests()) == reads  # no request at all
    block = again.report["prematch"]
    assert block["status"] == "ok" and block["refresh"] is None
    assert block["rows"]["existing"] == 6 and block["cache"]["age_seconds"] is not None
    assert reads - before == 2  # Organization/Current + one Contact/Query page


def test_policy_skip_sends_only_new_rows_and_records_the_crm_id(sandbox: SandboxHandle,
                                                                tmp_path: Path) -> None:
    preload(sandbox, EXISTING)
    spec = write_spec(tmp_path, SECOND, match_section="{policy: skip}")
    block = dry_run(spec, out_dir=tmp_path / "dry",
                    match=refresh_options(sandbox)).report["prematch"]
    assert block["policy_effect"] == {"send": 4, "skip": 5}
    notes: list[str] = []
    summary = go(spec, sandbox, notify=notes.append)
    assert summary.exit_code == 0, summary.exit_reason
    assert summary.counts == {"accepted": 4, "skipped_existing": 5}
    held = sorted(c["referenceId"] for c in sandbox.state.held_contacts())
    assert held == ["N1", "N2", "N3", "N4"]
    assert any("policy skip: 5 not sent" in n for n in notes)
    db = sqlite3.connect(summary.ledger)
    columns = {r[1] for r in db.execute("PRAGMA table_info(rows)")}
    got = db.execute("SELECT key, reason, error_details FROM rows WHERE status=?"
                     " ORDER BY id", ("skipped_existing",)).fetchall()
    crm = ({k: c for k, c in db.execute("SELECT key, crm_id FROM rows WHERE crm_id IS NOT NULL")}
           if "crm_id" in columns else None)
    db.close()
    expected = {"D0": "D0", "D1": "D1", "D2": "D2", "X1": "D3", "X2": "D4"}
    for key, reason, details in got:
        ident = str(sandbox.state.contact_by_reference(
            "LegacyCRM", expected[key.rsplit(":", 1)[1]])["id"])
        assert f"contact {ident} " in reason
        assert json.loads(details)[0]["message"] == ident
        if crm is not None:
            assert crm[key] == ident
    batch = sandbox.run_batch()
    assert {k: batch[k] for k in block["nightly_batch"]} == block["nightly_batch"] == {
        "contactsCreated": 3, "contactsUpdated": 1}
    again = go(spec, sandbox)  # the skipped rows stay skipped; the sent ones are accepted
    assert again.counts == {"already_accepted": 4, "skipped_existing": 5}


def test_policy_changed_sends_only_contacts_that_differ(sandbox: SandboxHandle,
                                                        tmp_path: Path) -> None:
    preload(sandbox, EXISTING)
    rows = [("D0", "Ann0", "Lee", "d0@example.org"),        # identical: kept back
            ("D1", "Ann1", "Leigh", "d1@example.org"),      # new last name: sent
            ("D2", "Ann2", "Lee", "D2@EXAMPLE.org"),        # same email, other case: kept back
            ("D3", "Ann3", "Lee", "second@example.org"),    # a new email: sent
            ("N1", "Dee", "Fox", "n1@example.org")]         # new: sent
    spec = write_spec(tmp_path, rows, match_section="{policy: changed}")
    summary = go(spec, sandbox)
    assert summary.counts == {"accepted": 3, "skipped_existing": 2}, summary.exit_reason
    assert sorted(c["referenceId"] for c in sandbox.state.held_contacts()) == ["D1", "D3", "N1"]


def test_incremental_refresh_reads_only_modified_contacts(sandbox: SandboxHandle,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(match.fetch, "PAGE", 4)  # several pages with a few contacts
    preload(sandbox, [(f"P{i}", f"Pat{i}", "Doe", f"p{i}@example.org") for i in range(10)])
    preload(sandbox, [("P10", "Pat10", "Doe", "p10@example.org")])  # a later nightly batch
    spec = write_spec(tmp_path, SECOND)
    first = dry_run(spec, out_dir=tmp_path / "dry", match=refresh_options(sandbox))
    stats = first.report["prematch"]["refresh"]
    assert (stats["mode"], stats["fetched"], stats["requests"]) == ("full", 11, 1 + 3)
    watermark = first.report["prematch"]["cache"]["high_water"]
    assert watermark == sandbox.state.contact_by_reference("LegacyCRM", "P10")[
        "modifiedDateTimeUtc"]
    # two contacts change, one is created; the other nine are untouched
    preload(sandbox, [("P1", "Pat1", "Doe", "p1.new@example.org"),
                      ("P2", "Patricia2", "Doe", "p2@example.org"),
                      ("P11", "Pat11", "Doe", "p11@example.org")])
    second = dry_run(spec, out_dir=tmp_path / "dry", match=refresh_options(sandbox))
    stats = second.report["prematch"]["refresh"]
    assert stats["mode"] == "incremental" and stats["since"] == watermark
    # modifiedSince is inclusive: the contact modified at the watermark itself is read again
    assert (stats["fetched"], stats["changed"], stats["requests"]) == (4, 3, 1 + 1)
    assert second.report["prematch"]["cache"]["contacts"] == 12
    # the new email of P1 is in the cache: a row with it matches P1 by email
    db = sqlite3.connect(tmp_path / ".ledger" / "contacts.sqlite")
    p1 = sandbox.state.contact_by_reference("LegacyCRM", "P1")["id"]
    assert db.execute("SELECT contact_id FROM prematch_emails WHERE email=?",
                      ("p1.new@example.org",)).fetchone() == (p1,)
    db.close()


def test_find_shows_its_cost_and_the_cap_refuses_before_any_lookup(sandbox: SandboxHandle,
                                                                   tmp_path: Path) -> None:
    preload(sandbox, EXISTING)
    spec = write_spec(tmp_path, SECOND, match_section="{method: find, max_requests: 10}")
    notes: list[str] = []
    with pytest.raises(MatchRefused, match=r"up to 17 requests, over match\.max_requests"):
        dry_run(spec, out_dir=tmp_path / "dry",
                match=refresh_options(sandbox, notify=notes.append))
    # 9 distinct references + 8 distinct emails, shown before the refusal; no Find was sent
    assert any("up to 17 Contact/Find requests (reference 9, email 8)" in n for n in notes)
    assert finds(sandbox) == 0

    spec = write_spec(tmp_path, SECOND, match_section="{method: find, max_requests: 17}")
    block = dry_run(spec, out_dir=tmp_path / "dry",
                    match=refresh_options(sandbox)).report["prematch"]
    assert block["by_signal"] == {"reference": 3, "email": 2, "email_in_run": 1}
    # emails are asked only for rows the reference did not find: 9 + 5 (N1's once)
    assert finds(sandbox) == block["refresh"]["requests"] - 1 == 14
    summary = go(spec, sandbox)  # the run asks only about the rows it is about to send
    assert summary.counts == {"accepted": 9}
    batch = sandbox.run_batch()
    assert {k: batch[k] for k in block["nightly_batch"]} == block["nightly_batch"]


def test_the_run_refuses_another_organization_before_any_read(sandbox: SandboxHandle,
                                                              tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SECOND)
    text = spec.read_text().replace("Sandbox Organization", "Other Org")
    spec.write_text(text)
    with pytest.raises(OrganizationMismatch, match="Other Org"):
        go(spec, sandbox)
    db = sqlite3.connect(tmp_path / ".ledger" / "contacts.sqlite")
    assert db.execute("SELECT exit_code, exit_reason FROM runs").fetchone()[0] == 4
    assert db.execute("SELECT DISTINCT status FROM rows").fetchall() == [("pending",)]
    db.close()
    assert sandbox.state.requests(path="/api/Contact/Query") == []
    assert sandbox.state.held_contacts() == []


def test_gift_donors_are_predicted_as_the_batch_resolves_them(sandbox: SandboxHandle,
                                                              tmp_path: Path) -> None:
    preload(sandbox, EXISTING)
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
    block = dry_run(spec, out_dir=tmp_path / "dry",
                    match=refresh_options(sandbox)).report["prematch"]
    assert block["by_signal"] == {"reference": 1, "email": 2, "reference_in_run": 1,
                                  "email_in_run": 1}
    assert block["nightly_batch"] == {"contactsCreated": 2, "giftsForExistingContacts": 5}
    assert go(spec, sandbox).counts == {"accepted": 7}
    batch = sandbox.run_batch()
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
    rich = {"id": "1201", "modifiedDateTime": "2024-05-01T10:00:00",
            "contactReferences": [{"referenceSource": "X", "referenceId": 7}],
            "contactIndividuals": [{"contactMethods": [{"type": "Home Email",
                                                        "value": " A@B.org "},
                                                       {"type": "Mobile", "value": "555"}]}]}
    c = match.parse_contact(rich)
    assert c is not None
    assert (c.id, c.modified, c.refs, c.emails) == (
        1201, "2024-05-01T10:00:00.000000Z", (("X", "7"),), ("a@b.org",))
    assert match.parse_contact({"name": "no id"}) is None
    assert match.parse_contact("garbage") is None
