"""`etl run` on the direct path through the real CLI, against the local sandbox over loopback:
a Find miss is created and confirmed with its id, a Find hit by reference creates nothing, the
email-match policies, and a POST answered 500 (in doubt, not retried, looked up next run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from direct_spec import donors, write_spec
from sandbox_fixtures import sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.cli.run import run
from etl.load.ledger import Ledger
from etl.sandbox.server import SandboxHandle


def etl_run(spec: Path, sb: SandboxHandle) -> tuple[Any, dict[str, Any]]:
    out = spec.parent / f"summary{len(list(spec.parent.glob('summary*')))}.json"
    result = CliRunner().invoke(
        run, [str(spec), "--base-url", sb.base_url, "--out", str(spec.parent / "r"),
              "--json-summary", str(out)], env={"VIRTUOUS_API_TOKEN": sb.api_key},
        catch_exceptions=False)
    return result, json.loads(out.read_text())


def ledger_rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run's rows by DonorID."""
    with Ledger(summary["ledger"], lock=False) as led:
        cur = led.db.execute("SELECT key, status, reason, crm_id, confirmed_via, error_details"
                             " FROM rows WHERE run_id=?", (summary["run_id"],))
        names = [d[0] for d in cur.description]
        return {r[0].rsplit(":", 1)[1]: dict(zip(names, r, strict=True)) for r in cur}


def posts(sb: SandboxHandle) -> int:
    return len(sb.state.requests(path="/api/Contact", method="POST"))


def contacts_with_ref(sb: SandboxHandle, ident: str) -> list[dict[str, Any]]:
    ref = {"source": "LegacyCRM", "id": ident}
    return [c for c in sb.state.contacts() if ref in c["contactReferences"]]


def existing(sb: SandboxHandle, source: str, ident: str, email: str) -> int:
    """A contact CRM+ already holds (created directly), its id."""
    body = {"contactType": "Household", "name": "Lee, Ann", "contactIndividuals": [
        {"firstName": "Ann", "lastName": "Lee", "isPrimary": True, "contactMethods": [
            {"type": "Home Email", "value": email, "isPrimary": True}]}],
        "contactReferences": [{"source": source, "id": ident}]}
    with sb.client() as c:
        return int(c.post("/api/Contact", json=body).json()["id"])


def test_a_find_miss_is_created_and_confirmed_with_its_id(sandbox: SandboxHandle,
                                                           tmp_path: Path) -> None:
    spec = write_spec(tmp_path, donors(4, email={3: ""}))
    result, summary = etl_run(spec, sandbox)
    assert result.exit_code == 0, result.output + result.stderr
    assert "direct create: up to 11 requests for 4 rows" in result.stderr
    assert "requests/hour" in result.stderr and "direct create: 4 created" in result.stderr
    rows = ledger_rows(summary)
    for ident, row in rows.items():
        (made,) = contacts_with_ref(sandbox, ident)
        assert (row["status"], row["crm_id"], row["confirmed_via"]) == (
            "confirmed", str(made["id"]), "direct")
    assert posts(sandbox) == 4
    assert len(sandbox.state.requests(path="/api/Contact/Find")) == 7
    assert summary["direct"]["outcomes"] == {"created": 4}
    again, second = etl_run(spec, sandbox)
    assert again.exit_code == 0 and second["counts"] == {"already_accepted": 4}
    assert posts(sandbox) == 4


def test_a_find_hit_by_reference_creates_nothing(sandbox: SandboxHandle, tmp_path: Path) -> None:
    known = existing(sandbox, "LegacyCRM", "D0", "someone-else@example.org")
    result, summary = etl_run(write_spec(tmp_path, donors(2)), sandbox)
    assert result.exit_code == 0, result.stderr
    row = ledger_rows(summary)["D0"]
    assert (row["status"], row["crm_id"]) == ("confirmed", str(known))
    assert row["reason"] == f"exists: contact {known} (by reference)"
    assert posts(sandbox) == 2  # the one above, and D1's
    assert len(contacts_with_ref(sandbox, "D0")) == 1


@pytest.mark.parametrize("policy, status, outcome, posted", [
    ("skip", "skipped_existing", "email_skip", False),
    ("associate", "confirmed", "email_associate", False),
    ("create", "confirmed", "email_create", True)])
def test_an_email_match_follows_the_policy(sandbox: SandboxHandle, tmp_path: Path, policy: str,
                                          status: str, outcome: str, posted: bool) -> None:
    other = existing(sandbox, "OtherCRM", "X-9", "d1@example.org")  # another reference
    spec = write_spec(tmp_path, donors(3), load=f", on_email_match: {policy}")
    result, summary = etl_run(spec, sandbox)
    assert result.exit_code == 0, result.stderr
    row = ledger_rows(summary)["D1"]
    assert row["status"] == status
    assert json.loads(row["error_details"])[0]["code"] == "EXISTS_BY_EMAIL"
    assert summary["direct"]["outcomes"][outcome] == 1
    assert summary["direct"]["on_email_match"] == policy
    if posted:  # a different donor: a new contact beside the one sharing the email
        assert row["crm_id"] != str(other) and len(contacts_with_ref(sandbox, "D1")) == 1
    else:
        assert row["crm_id"] == str(other) and contacts_with_ref(sandbox, "D1") == []
    assert posts(sandbox) == 1 + 2 + posted


def test_the_default_policy_is_skip(sandbox: SandboxHandle, tmp_path: Path) -> None:
    existing(sandbox, "OtherCRM", "X-9", "d0@example.org")
    result, summary = etl_run(write_spec(tmp_path, donors(1)), sandbox)
    assert summary["counts"] == {"skipped_existing": 1}
    assert "1 email match skipped" in result.stderr and "on_email_match: skip" in result.stderr


def test_a_post_answered_500_is_in_doubt_and_looked_up_first_next_run(
        sandbox: SandboxHandle, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, donors(3))
    sandbox.set_faults("http500_after_store=1")  # stored, then answered 500
    result, summary = etl_run(spec, sandbox)
    assert result.exit_code == 1
    assert summary["counts"] == {"in_doubt": 3} and posts(sandbox) == 3  # never retried
    assert "looks each up by reference first" in summary["exit_reason"]
    sandbox.set_faults(None)
    again, second = etl_run(spec, sandbox)
    assert again.exit_code == 0, again.stderr
    assert second["counts"] == {"confirmed": 3} and posts(sandbox) == 3  # no second POST
    for ident, row in ledger_rows(second).items():
        (made,) = contacts_with_ref(sandbox, ident)
        assert row["crm_id"] == str(made["id"])
        assert row["reason"].startswith("found by reference after an unanswered create")
