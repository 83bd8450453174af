"""`etl rehearse`: contacts then gifts against ONE sandbox, its import, reconcile, one report;
`--sandbox-url` on a running sandbox; pacing by the sandbox's limit; the sandbox's outcomes."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli.app import main
from etl.sandbox.server import running_sandbox

CONTACTS = """name: r_contacts
target: contact_transaction
source: {path: contacts.csv}
keys: {source: LegacyCRM, id: {column: DonorID}}
mappings:
  contactType: {constant: Household}
  firstName: First
  lastName: Last
  email: {column: Email, transforms: [normalize_email]}
"""
# The gifts name their donor by reference only: in a sandbox that never saw the contacts,
# every one of them would end in "needs update".
GIFTS = """name: r_gifts
target: gift_transaction
source: {path: gifts.csv}
keys: {source: LegacyCRM, id: {column: GiftID}}
mappings:
  amount: {column: Amount, transforms: [parse_amount]}
  giftDate: {column: GiftDate, transforms: [{parse_date: {formats: ["%Y-%m-%d"]}}]}
  giftType: {constant: Check}
  contact.referenceId: DonorID
designations:
  - code: {constant: GEN}
"""


def _specs(root: Path, donors: int = 6, gifts_each: int = 2) -> tuple[Path, Path]:
    contacts = ["DonorID,First,Last,Email"] + [
        f"D{i},Ann{i},Lee{i},ann{i}@example.org" for i in range(donors)]
    gifts = ["GiftID,DonorID,Amount,GiftDate"] + [
        f"G{i}-{j},D{i},{10 + j}.50,2024-01-{j + 1:02d}"
        for i in range(donors) for j in range(gifts_each)]
    (root / "contacts.csv").write_text("\n".join(contacts) + "\n")
    (root / "gifts.csv").write_text("\n".join(gifts) + "\n")
    (root / "contacts.yaml").write_text(CONTACTS)
    (root / "gifts.yaml").write_text(GIFTS)
    return root / "contacts.yaml", root / "gifts.yaml"


def _invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def _by_name(report: dict) -> dict[str, dict]:
    return {p["name"]: p for p in report["pipelines"]}


def test_contacts_then_gifts_end_with_every_gift_on_its_contact(tmp_path):
    contacts, gifts = _specs(tmp_path)
    out = tmp_path / "out"
    result = _invoke("rehearse", str(contacts), str(gifts), "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "rehearsal.json").read_text())
    pipes = _by_name(report)
    assert list(pipes) == ["r_contacts", "r_gifts"]  # in the order given
    assert pipes["r_contacts"]["sandbox_outcomes"] == {"created": 6}
    assert pipes["r_gifts"]["sandbox_outcomes"] == {"created": 12}  # none in needs update
    assert pipes["r_gifts"]["states"] == {"confirmed": 12}
    assert all(r["crm_id"] for p in pipes.values() for r in p["rows"])
    assert report["batch"]["giftsCreated"] == 12 and report["batch"]["needsUpdate"] == 0
    assert "r_gifts" in result.output and "created 12" in result.output
    page = (out / "rehearsal.html").read_text()
    assert "<h2>r_gifts</h2>" in page and "G5-1" in page and '"r_gifts/report.html"' in page


def test_a_running_sandbox_holds_each_gift_on_the_contact_sent_before(tmp_path):
    contacts, gifts = _specs(tmp_path, donors=3, gifts_each=2)
    with running_sandbox(rate_limit="none") as sb:
        env = {"ETL_SANDBOX_API_KEY": sb.api_key}
        result = _invoke("rehearse", str(contacts), str(gifts), "--sandbox-url", sb.base_url,
                         "--out", str(tmp_path / "out"), "--json", env=env)
        assert result.exit_code == 0, result.output
        pipes = _by_name(json.loads(result.output))
        contact_ids = {r["key"]: r["crm_id"] for r in pipes["r_contacts"]["rows"]}
        for donor in range(3):
            for j in range(2):
                (gift,) = sb.state.gifts_for("LegacyCRM", f"G{donor}-{j}")
                assert str(gift["contactId"]) == contact_ids[f"D{donor}"]
    # --sandbox-url uses the spec's own .sandbox ledger, which now holds the outcomes
    ledger = tmp_path / ".ledger" / "r_gifts.sandbox.sqlite"
    with closing(sqlite3.connect(ledger)) as db:
        outcomes = db.execute("SELECT outcome, COUNT(*) FROM sandbox_outcomes GROUP BY 1")
        assert dict(outcomes.fetchall()) == {"created": 6}


def test_the_sandbox_outcome_shows_needs_update_where_the_import_parked_a_gift(tmp_path):
    _, gifts = _specs(tmp_path, donors=2, gifts_each=1)
    result = _invoke("rehearse", str(gifts), "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 1  # a gift left in needs update is not a clean rehearsal
    (pipe,) = json.loads(result.output)["pipelines"]
    assert pipe["sandbox_outcomes"] == {"needs_update": 2}
    assert {r["status"] for r in pipe["rows"]} == {"accepted"}  # sent, not (yet) in CRM+


def test_the_rehearsal_is_paced_by_the_sandbox_not_by_the_spec(tmp_path):
    contacts, _ = _specs(tmp_path, donors=3)
    with running_sandbox(rate_limit="7200/hour") as sb:
        result = _invoke("rehearse", str(contacts), "--sandbox-url", sb.base_url, "--json",
                         "--out", str(tmp_path / "out"),
                         env={"ETL_SANDBOX_API_KEY": sb.api_key})
    assert json.loads(result.output)["requests_per_hour"] == 7200
    fast = _invoke("rehearse", str(contacts), "--out", str(tmp_path / "out2"), "--json")
    assert json.loads(fast.output)["requests_per_hour"] is None  # --sandbox-rate none: unpaced


@pytest.mark.parametrize("url", ["https://api.virtuoussoftware.com", "http://10.1.2.3:8000"])
def test_sandbox_url_must_be_local(tmp_path, url):
    contacts, _ = _specs(tmp_path)
    result = _invoke("rehearse", str(contacts), "--sandbox-url", url,
                     env={"ETL_SANDBOX_API_KEY": "k"})
    assert result.exit_code == 2
    assert "local sandbox" in result.output or "plain http" in result.output


def test_sandbox_url_needs_the_key_in_the_environment(tmp_path):
    contacts, _ = _specs(tmp_path)
    result = _invoke("rehearse", str(contacts), "--sandbox-url", "http://127.0.0.1:9",
                     env={"ETL_SANDBOX_API_KEY": ""})
    assert result.exit_code == 2 and "ETL_SANDBOX_API_KEY" in result.output


def test_run_reconcile_ledger_webhooks_share_one_running_sandbox(tmp_path):
    contacts, gifts = _specs(tmp_path, donors=2, gifts_each=1)
    with running_sandbox(rate_limit="none") as sb:
        env = {"ETL_SANDBOX_API_KEY": sb.api_key, "VIRTUOUS_API_TOKEN": ""}
        url = ("--sandbox-url", sb.base_url)
        for spec in (contacts, gifts):
            ran = _invoke("run", str(spec), *url, "-q", env=env)
            assert ran.exit_code == 0, ran.output
        sb.run_batch()
        done = _invoke("reconcile", str(gifts), *url, "--force", "--after-batch", env=env)
        assert done.exit_code == 0, done.output
        ledger = tmp_path / ".ledger" / "r_gifts.sandbox.sqlite"
        with closing(sqlite3.connect(ledger)) as db:  # reconcile kept the import's outcomes
            assert db.execute("SELECT key, outcome FROM sandbox_outcomes").fetchall() == [
                ("gift_transaction:LegacyCRM:G0-0", "created"),
                ("gift_transaction:LegacyCRM:G1-0", "created")]
        status = _invoke("webhooks", "status", "--spec", str(gifts), *url, env=env)
        assert status.exit_code == 0, status.output
        (gift,) = sb.state.gifts_for("LegacyCRM", "G1-0")
        assert gift["contactId"] == sb.state.directory.by_reference("LegacyCRM", "D1")["id"]
    runs = _invoke("ledger", "runs", "--spec", str(gifts), *url)
    assert runs.exit_code == 0 and "exit 0" in runs.output and "\"accepted\": 2" in runs.output
    shown = json.loads(_invoke("ledger", "show", "--spec", str(gifts), "--sandbox").output)
    assert shown["sandbox_outcomes"] == {"created": 2}


def test_the_sandbox_tells_created_merged_and_needs_update_per_item():
    with running_sandbox(rate_limit="none") as sb, sb.client() as http:
        ann = {"referenceSource": "S", "referenceId": "D1", "firstName": "Ann", "lastName": "Lee",
               "emailType": "Home Email", "email": "ann@example.org"}
        for body in (ann, {**ann, "referenceId": "D2"}, {"referenceSource": "S",
                                                         "referenceId": "D3"}):
            assert http.post("/api/Contact/Transaction", json=body).status_code == 200
        sb.run_batch()
        seen = http.get("/sandbox/outcomes").json()
        assert [(o["referenceId"], o["outcome"]) for o in seen] == [
            ("D1", "created"), ("D2", "merged"), ("D3", "needs_update")]
        assert seen[0]["crmId"] == seen[1]["crmId"] and seen[2]["crmId"] is None
        assert http.get("/sandbox/outcomes", params={"after": seen[1]["seq"]}).json() == seen[2:]
        assert http.get("/sandbox/outcomes", params={"after": "x"}).status_code == 400


def test_ledger_without_sandbox_points_at_the_sandbox_ledger(tmp_path):
    contacts, _ = _specs(tmp_path, donors=1)
    with running_sandbox(rate_limit="none") as sb:
        ran = _invoke("run", str(contacts), "--sandbox-url", sb.base_url, "-q",
                      env={"ETL_SANDBOX_API_KEY": sb.api_key})
    assert ran.exit_code == 0, ran.output
    result = _invoke("ledger", "runs", "--spec", str(contacts))
    assert result.exit_code == 1
    sandbox_ledger = tmp_path / ".ledger" / "r_contacts.sandbox.sqlite"
    assert f"a sandbox ledger exists at {sandbox_ledger}: add --sandbox" in result.output
    assert "no ledger at " in result.output


def test_reconcile_sandbox_without_a_url_says_how_to_name_one(tmp_path):
    contacts, _ = _specs(tmp_path, donors=1)
    result = _invoke("reconcile", str(contacts), "--sandbox",
                     env={"ETL_SANDBOX_API_KEY": "k"})
    assert result.exit_code == 2 and "--sandbox-url" in result.output


def test_run_in_its_own_sandbox_is_paced_by_the_sandbox_rate(tmp_path, monkeypatch):
    from etl.run import submit

    seen = []
    real = submit.run_pipeline

    def spy(pipeline, options):
        seen.append((options.requests_per_hour, options.unlimited))
        return real(pipeline, options)

    monkeypatch.setattr("etl.cli.run.run_pipeline", spy)
    contacts, _ = _specs(tmp_path, donors=1)
    for rate, expected in (("none", (None, True)), ("20/second", (72000.0, False))):
        result = _invoke("run", str(contacts), "--sandbox", "--sandbox-rate", rate, "-q")
        assert result.exit_code == 0, result.output
        assert seen.pop() == expected


def test_an_unreadable_sandbox_rate_is_a_usage_error(tmp_path):
    contacts, _ = _specs(tmp_path, donors=1)
    result = _invoke("rehearse", str(contacts), "--sandbox-rate", "fast")
    assert result.exit_code == 2 and "--sandbox-rate" in result.output


def test_a_spec_error_names_the_file_and_sends_nothing(tmp_path):
    contacts, gifts = _specs(tmp_path, donors=1)
    gifts.write_text("name: broken\n")
    result = _invoke("rehearse", str(contacts), str(gifts), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "gifts.yaml" in result.output
    assert not (tmp_path / "out" / "rehearsal.json").exists()


def test_the_same_spec_twice_is_refused(tmp_path):
    contacts, _ = _specs(tmp_path, donors=1)
    result = _invoke("rehearse", str(contacts), str(contacts))
    assert result.exit_code == 2 and "a second spec named 'r_contacts'" in result.output


def test_run_takes_several_specs_in_order_against_one_running_sandbox(tmp_path):
    contacts, gifts = _specs(tmp_path, donors=4, gifts_each=2)
    with running_sandbox(rate_limit="none") as sb:
        env = {"ETL_SANDBOX_API_KEY": sb.api_key}
        result = _invoke("run", str(contacts), str(gifts), "--sandbox-url", sb.base_url,
                         "--out", str(tmp_path / "out"), "--json", env=env)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)  # the JSON alone on stdout; messages on stderr
        assert [r["pipeline"] for r in summary["runs"]] == ["r_contacts", "r_gifts"]
        assert summary["exit_code"] == 0 and summary["runs"][1]["counts"] == {"accepted": 8}
        assert (tmp_path / "out" / "contacts" / "report.json").exists()  # one folder a spec
        assert (tmp_path / "out" / "gifts" / "report.json").exists()
        sb.run_batch()  # the gifts find the contacts sent before them in the same sandbox
        assert all(len(sb.state.gifts_for("LegacyCRM", f"G{i}-{j}")) == 1
                   for i in range(4) for j in range(2))
        assert not sb.state.parked()


def test_run_stops_at_the_first_spec_that_fails_for_another_reason_than_rows(tmp_path):
    contacts, gifts = _specs(tmp_path)
    contacts.write_text(CONTACTS.replace("normalize_email", "normalize_emial"))
    with running_sandbox(rate_limit="none") as sb:
        env = {"ETL_SANDBOX_API_KEY": sb.api_key}
        result = _invoke("run", str(contacts), str(gifts), "--sandbox-url", sb.base_url,
                         "--json", env=env)
        assert result.exit_code == 2
        summary = json.loads(result.stdout)
        assert len(summary["runs"]) == 1 and "normalize_emial" in summary["runs"][0]["exit_reason"]
        assert not sb.state.held_gifts()  # the gifts never ran: their contacts were not sent


def test_several_specs_refuse_a_throwaway_sandbox_and_one_ledger(tmp_path):
    contacts, gifts = _specs(tmp_path)
    result = _invoke("run", str(contacts), str(gifts), "--sandbox")
    assert result.exit_code == 2 and "etl rehearse" in result.output
    result = _invoke("run", str(contacts), str(gifts), "--ledger", str(tmp_path / "l.sqlite"),
                     env={"VIRTUOUS_API_TOKEN": "t" * 24})
    assert result.exit_code == 2 and "one spec" in result.output
