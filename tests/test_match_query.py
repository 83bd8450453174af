"""What each read proves: the bulk refresh's documented Query/FullContact bodies (groups,
parameter names from QueryOptions, the day of overlap, take <= 1000), the fallbacks when
QueryOptions does not offer what is needed or the Query is refused, pages whose records lack
contactReferences, paging interrupted by a 5xx, and Find's nested contact. CRM+ is `FakeCrm`
(documented shapes only, through httpx.MockTransport)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_match import EXISTING, KEY, SECOND, go, preload, refresh_options, write_spec
from test_match_crm import DEFAULT_OPTIONS, FakeCrm, invalid, options

from etl import match
from etl.base.errors import TransientError
from etl.run.dry_run import dry_run
from etl.spec.pipeline import open_pipeline

QUERY = "/api/Contact/Query/FullContact"


def prematch(spec: Path, crm: FakeCrm | None = None, **extra: Any) -> dict[str, Any]:
    """The dry run's prematch block: refreshed through `crm`, or offline from the cache."""
    chosen = refresh_options(crm, **extra) if crm is not None else None
    block: dict[str, Any] = dry_run(open_pipeline(spec, out_dir=spec.parent / "dry"),
                                    match=chosen).report["prematch"]
    return block


def condition(parameter: str, operator: str, value: str | None) -> dict[str, Any]:
    return {"groups": [{"conditions": [{"parameter": parameter, "operator": operator,
                                        "value": value, "secondaryValue": None,
                                        "values": None}]}],
            "sortBy": "Id", "descending": False}


@pytest.fixture
def crm() -> FakeCrm:
    crm = FakeCrm()
    preload(crm, EXISTING)
    return crm


def test_the_fake_refuses_a_groupless_body_as_asp_net_does(crm: FakeCrm) -> None:
    # the oracle every test below relies on: a flat filter body is not the API
    with httpx.Client(transport=crm.transport(), base_url="http://127.0.0.1:9") as client:
        answer = client.post(QUERY, params={"skip": 0, "take": 1000},
                             json={"referenceSource": "LegacyCRM"})
    assert answer.status_code == 400
    assert answer.json()["modelState"] == {"request.Groups": ["The Groups field is required."]}


@pytest.mark.parametrize(("offered", "expected"), [
    (DEFAULT_OPTIONS, condition("Contact Id", "IsKnown", None)),
    # no Contact Id: every contact modified on or after 1900, spelled and operated as offered
    (options(("last modified date", ["GreaterThanOrEqual"])),
     condition("last modified date", "GreaterThanOrEqual", "01/01/1900")),
])
def test_a_full_refresh_pages_full_contacts_with_a_documented_body(
        crm: FakeCrm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        offered: dict[str, Any], expected: dict[str, Any]) -> None:
    crm.query_options = offered
    block = prematch(write_spec(tmp_path, SECOND), crm)
    assert crm.bodies() == [expected]
    assert [dict(r.url.params) for r in crm.sent(QUERY)] == [{"skip": "0", "take": "1000"}]
    assert block["refresh"]["query"] == expected["groups"][0]["conditions"][0]
    assert block["rows"] == {"checked": 9, "existing": 6, "new": 3, "unknown": 0}
    monkeypatch.setattr(match.bulk, "PAGE", 4)
    crm.requests.clear()
    prematch(write_spec(tmp_path, SECOND), crm, full=True)
    assert [r.url.params["skip"] for r in crm.sent(QUERY)] == ["0", "4"]
    assert crm.bodies() == [expected, expected]


def test_incremental_uses_what_query_options_offers_or_reads_everything(
        crm: FakeCrm, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SECOND)
    crm.query_options = options(("Contact Id", ["IsKnown"]),
                                ("Last Modified Date", ["GreaterThanOrEqual", "LessThan"]))
    prematch(spec, crm)  # full; the contacts were modified on 05-02
    crm.requests.clear()
    block = prematch(spec, crm)
    assert crm.bodies() == [condition("Last Modified Date", "GreaterThanOrEqual", "05/01/2024")]
    assert block["refresh"]["mode"] == "incremental"
    # the organization stops offering the date parameter: no guess, a full read instead
    crm.query_options = options(("Contact Id", ["IsKnown"]))
    crm.requests.clear()
    block = prematch(spec, crm)
    assert crm.bodies() == [condition("Contact Id", "IsKnown", None)]
    assert block["refresh"]["mode"] == "full" and "a full refresh instead" in " ".join(
        block["refresh"]["notes"])
    assert block["rows"]["unknown"] == 0


@pytest.mark.parametrize(("answer", "said"), [
    (404, "GET /api/Contact/QueryOptions answered 404"),
    (400, "GET /api/Contact/QueryOptions refused the request (/api/Contact/QueryOptions: "
          "HTTP 400: The request is invalid.; request: No query options for this key.)"),
    (options(("Contact Name", ["Is"])), "QueryOptions offers neither 'Contact Id' IsKnown nor"),
])
def test_without_a_documented_query_no_query_is_sent_and_find_fills_in(
        crm: FakeCrm, tmp_path: Path, answer: dict[str, Any] | int, said: str) -> None:
    crm.query_options = answer
    notes: list[str] = []
    block = prematch(write_spec(tmp_path, SECOND), crm, notify=notes.append)
    assert crm.sent(QUERY) == []  # neither a guessed name nor a groupless body
    stats = block["refresh"]
    assert stats["mode"] == "none" and stats["proven"] == [] and said in stats["problem"]
    assert any(said in n for n in notes)
    # Find for the rows the cache does not know: 9 references, then 5 emails of the rest
    assert stats["fallback"]["bound"] == 9 + 8 and len(crm.sent("/api/Contact/Find")) == 14
    assert block["rows"] == {"checked": 9, "existing": 6, "new": 3, "unknown": 0}
    assert block["cache"]["proven"] == []  # single values proven, never the organization


def test_a_refused_query_is_reported_and_proves_nothing(crm: FakeCrm, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SECOND, match_section="{max_requests: 3}")
    prematch(spec, crm)  # complete: Organization, QueryOptions, 1 page
    crm.hooks.append(lambda r: invalid("request.Groups[0].Conditions[0].Value",
                                       "The value is not valid.")
                     if r.url.path == QUERY else None)
    notes: list[str] = []
    block = prematch(spec, crm, full=True, notify=notes.append)
    problem = block["refresh"]["problem"]
    assert problem == ("POST /api/Contact/Query/FullContact refused the request "
                       "(/api/Contact/Query/FullContact: HTTP 400: The request is invalid.; "
                       "request.Groups[0].Conditions[0].Value: The value is not valid.)")
    assert any(problem in n for n in notes)
    assert all(b.get("groups") for b in crm.bodies())  # what we sent was documented
    # no requests left for Find (max_requests 3): what the cache does not know is unknown
    assert "skipped" in block["refresh"]["fallback"]
    assert block["rows"] == {"checked": 9, "existing": 6, "new": 0, "unknown": 3}
    assert block["nightly_batch"] == {"contactsCreated": 0, "contactsUpdated": 6,
                                      "undecided": 3}
    assert "3 row(s) 'unknown'" in block["warning"]
    assert block["cache"]["proven"] == [] and block["cache"]["contacts"] == 6


def lighter_after_first_page(crm: FakeCrm) -> None:
    """Pages after the first answer records without contactReferences (ContactLookup)."""
    def hook(request: httpx.Request) -> httpx.Response | None:
        if request.url.path != QUERY or request.url.params["skip"] == "0":
            return None
        data = crm.query(request).json()
        for record in data["list"]:
            record.pop("contactReferences")
        return httpx.Response(200, json=data)
    crm.hooks.append(hook)


def test_records_without_contact_references_prove_no_reference_absent(
        crm: FakeCrm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(match.bulk, "PAGE", 4)
    lighter_after_first_page(crm)  # D4 and D5 come without their references
    rows = [*SECOND, ("D4", "Ann4", "Lee", "ann4.other@example.org")]
    spec = write_spec(tmp_path, rows, match_section="{policy: skip, max_requests: 4}")
    block = prematch(spec, crm)
    assert block["refresh"]["proven"] == ["email"] and block["cache"]["proven"] == ["email"]
    assert (block["refresh"]["paged"], block["refresh"]["complete"]) == (True, False)
    # emails still count (X2 by D4's email); D4's own reference is not proven absent, so the
    # row is unknown, not new, and so are N1..N3 (their references were not proven absent)
    assert block["by_signal"] == {"reference": 3, "email": 2, "email_in_run": 1}
    assert block["rows"] == {"checked": 10, "existing": 6, "new": 0, "unknown": 4}
    # the run skips only rows a cached contact names; every unknown row is sent
    summary = go(spec, crm)
    assert summary.counts == {"accepted": 5, "skipped_existing": 5}, summary.exit_reason
    assert sorted(c["referenceId"] for _, c in crm.held) == ["D4", "N1", "N2", "N3", "N4"]
    # with requests to spare, Find settles them: D4 exists by reference, N1..N3 are new
    crm.held.clear()
    spec = write_spec(tmp_path, rows, match_section="{policy: skip}")
    block = prematch(spec, crm)
    assert block["rows"] == {"checked": 10, "existing": 7, "new": 3, "unknown": 0}
    assert block["refresh"]["fallback"]["by"] == ["reference"]


def test_paging_interrupted_by_a_5xx_is_not_cached_as_complete(
        crm: FakeCrm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(match.bulk, "PAGE", 4)
    spec = write_spec(tmp_path, SECOND)
    spec.write_text(spec.read_text().replace("load: {", "load: {max_attempts: 2, "))
    assert prematch(spec, crm)["cache"]["proven"] == ["email", "reference"]
    crm.hooks.append(lambda r: httpx.Response(500, text="oops")
                     if r.url.path == QUERY and r.url.params["skip"] == "4" else None)
    with pytest.raises(TransientError, match="FullContact: HTTP 500"):
        prematch(spec, crm, full=True)
    assert [r.url.params["skip"] for r in crm.sent(QUERY)][-3:] == ["0", "4", "4"]
    db = sqlite3.connect(tmp_path / ".ledger" / "contacts.sqlite")
    state = db.execute("SELECT proven, full_at, last_refresh FROM prematch_state").fetchone()
    assert db.execute("SELECT COUNT(*) FROM prematch_contacts").fetchone() == (6,)  # kept
    db.close()
    assert state[:2] == ("", None)
    assert "paging interrupted at skip=4" in json.loads(state[2])["problem"]
    # later, offline: the cache still finds who it saw, but never says "new" from that read
    block = prematch(spec)
    assert block["rows"] == {"checked": 9, "existing": 6, "new": 0, "unknown": 3}
    crm.hooks.clear()
    assert prematch(spec, crm)["refresh"]["mode"] == "full"  # not incremental on a partial


def test_find_reads_the_nested_contact_and_a_404_proves_one_value(
        crm: FakeCrm, tmp_path: Path) -> None:
    # the answer in PascalCase with the id as a string: read all the same
    def pascal(request: httpx.Request) -> httpx.Response | None:
        if request.url.path != "/api/Contact/Find":
            return None
        found = (crm.by_reference("LegacyCRM", request.url.params["referenceId"])
                 if "referenceId" in request.url.params
                 else crm.by_email(request.url.params["email"]))
        if found is None:
            return httpx.Response(404)
        people = [{"FirstName": p["firstName"], "ContactMethods": [
            {"Type": m["type"], "Value": m["value"], "IsPrimary": m["isPrimary"]}
            for m in p["contactMethods"]]} for p in found["contactIndividuals"]]
        return httpx.Response(200, json={"Id": str(found["id"]), "ContactIndividuals": people})
    crm.hooks.append(pascal)
    spec = write_spec(tmp_path, SECOND, match_section="{method: find}")
    block = prematch(spec, crm)
    assert block["rows"] == {"checked": 9, "existing": 6, "new": 3, "unknown": 0}
    asked = [dict(r.url.params) for r in crm.sent("/api/Contact/Find")]
    assert asked[0] == {"referenceSource": "LegacyCRM", "referenceId": "D0"}
    assert {"email": "d3@example.org"} in asked  # X1's email, trimmed and lower-cased
    db = sqlite3.connect(tmp_path / ".ledger" / "contacts.sqlite")
    d3 = crm.by_reference("LegacyCRM", "D3")
    assert d3 is not None
    # the email came from contactIndividuals[].ContactMethods[]; the 404s are kept as proofs
    assert db.execute("SELECT contact_id FROM prematch_emails WHERE email='d3@example.org'"
                      ).fetchone() == (d3["id"],)
    assert db.execute("SELECT COUNT(*) FROM prematch_absent WHERE signal='reference'"
                      ).fetchone() == (6,)  # X1, X2, N1..N4
    db.close()
    # offline, a row nobody looked up is unknown; the ones a 404 answered stay new
    spec = write_spec(tmp_path, [*SECOND, ("N9", "Hal", "Fox", "n9@example.org")],
                      match_section="{method: find}")
    assert prematch(spec)["rows"] == {"checked": 10, "existing": 6, "new": 3, "unknown": 1}
    assert KEY not in json.dumps(block)


def test_a_cache_written_before_proofs_were_kept_proves_nothing(
        crm: FakeCrm, tmp_path: Path) -> None:
    # the earlier layout (no `proven` column), filled from the abbreviated Contact/Query
    spec = write_spec(tmp_path, SECOND)
    (tmp_path / ".ledger").mkdir()
    db = sqlite3.connect(tmp_path / ".ledger" / "contacts.sqlite")
    db.executescript("""
        CREATE TABLE prematch_state (id INTEGER PRIMARY KEY CHECK (id = 1), base_url TEXT,
            organization TEXT, scope TEXT, refreshed_at TEXT, high_water TEXT, full_at TEXT,
            last_refresh TEXT);
        CREATE TABLE prematch_contacts (id INTEGER PRIMARY KEY, modified TEXT,
            record TEXT NOT NULL, seen_at TEXT NOT NULL);
        CREATE TABLE prematch_refs (source TEXT NOT NULL, ref_id TEXT NOT NULL,
            contact_id INTEGER NOT NULL, PRIMARY KEY (source, ref_id, contact_id));
        CREATE TABLE prematch_emails (email TEXT NOT NULL, contact_id INTEGER NOT NULL,
            PRIMARY KEY (email, contact_id));
        INSERT INTO prematch_state VALUES (1, 'http://127.0.0.1:9', 'Sandbox Organization',
            'all', '2024-05-01T00:00:00+00:00', '2024-05-01T00:00:00.000000Z',
            '2024-05-01T00:00:00+00:00', '{}');
        INSERT INTO prematch_contacts VALUES (1001, NULL, '{}', '2024-05-01');
        INSERT INTO prematch_refs VALUES ('LegacyCRM', 'D0', 1001);
    """)
    db.close()
    block = prematch(spec)  # offline: D0 is found (N4 by N1's email); nothing is proven new
    assert block["rows"] == {"checked": 9, "existing": 2, "new": 0, "unknown": 7}
    block = prematch(spec, crm)  # the next refresh reads everything, then proves
    assert block["refresh"]["mode"] == "full"
    assert block["cache"]["proven"] == ["email", "reference"]
    assert block["rows"] == {"checked": 9, "existing": 6, "new": 3, "unknown": 0}
