"""`etl reconcile` end to end against the sandbox over 127.0.0.1: the loader submits, the
sandbox's nightly batch runs, webhooks (received by `etl webhooks serve` in-process) or polling
(bulk pages, per-row lookups) confirm the rows; the window sends the rest to needs_review; rows in
doubt are resolved (found -> confirmed; absent after the batch -> pending -> sent once)."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from etl.base.exitcodes import EXIT_CREDENTIALS
from etl.cli.reconcile import reconcile as reconcile_cli
from etl.confirm.reconcile import ReconcileOptions, ReconcileSummary, reconcile, resolve
from etl.confirm.webhook_receiver import running_receiver
from etl.confirm.webhook_register import receiver_config, subscribe
from etl.load.ledger import Ledger
from etl.run.submit import RunOptions, RunSummary, run_pipeline
from etl.sandbox.server import SandboxHandle
from etl.spec.pipeline import open_pipeline

SECRET = "whsec-test-5e1f"


def write_gifts(folder: Path, ids: list[str], *, nameless: tuple[str, ...] = ()) -> Path:
    """Gifts G.. of donors D..; the `nameless` ones have a new donor and no name: CRM+ cannot
    match or create their contact, so its batch puts them in "needs update"."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["GiftID,DonorID,First,Last,GiftDate,Amount,Currency"]
    for n, gift in enumerate(ids):
        donor, first, last = (f"X{n}", "", "") if gift in nameless else (f"D{n % 7}", "Ann", "Lee")
        lines.append(f"{gift},{donor},{first},{last},2024-01-{1 + n % 28:02d},{10 + n}.50,"
                     f"{'CAD' if n % 5 == 0 else 'USD'}")
    (folder / "gifts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = folder / "gifts.yaml"
    spec.write_text("""name: gifts
target: gift_transaction
source: {path: gifts.csv}
keys: {source: LegacyCRM, id: {column: GiftID}}
mappings:
  amount: {column: Amount, transforms: [parse_amount]}
  giftDate: {column: GiftDate, transforms: [{parse_date: {formats: ["%Y-%m-%d"]}}]}
  giftType: {constant: Check}
  currencyCode: Currency
  contact.referenceId: DonorID
  contact.firstname: First
  contact.lastname: Last
load: {batch_size: 50, requests_per_hour: 1000000}
""", encoding="utf-8")
    return spec


def write_contacts(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"C{i},Ann{i},Lee,c{i}@example.org\n" for i in range(n))
    (folder / "contacts.csv").write_text("DonorID,First,Last,Email\n" + rows, encoding="utf-8")
    spec = folder / "contacts.yaml"
    spec.write_text("""name: contacts
target: contact_transaction
source: {path: contacts.csv}
keys: {source: LegacyCRM, id: {column: DonorID}}
mappings: {firstName: First, lastName: Last, email: Email, emailType: {constant: Home Email}}
load: {requests_per_hour: 1000000}
""", encoding="utf-8")
    return spec


def gids(n: int) -> list[str]:
    return [f"G{i}" for i in range(n)]


def run(spec: Path, sb: SandboxHandle) -> RunSummary:
    return run_pipeline(open_pipeline(spec, out_dir=spec.parent / "reports"),
                        RunOptions(token=sb.api_key, base_url=sb.base_url, backoff_base=0.01))[1]


def recon(spec: Path, sb: SandboxHandle, **options: Any) -> ReconcileSummary:
    return reconcile(open_pipeline(spec, out_dir=spec.parent / "reports"),
                     ReconcileOptions(token=sb.api_key, base_url=sb.base_url, backoff_base=0.01,
                                            **options))


def rows(ledger: str) -> dict[str, dict[str, Any]]:
    """The latest ledger row of each key that is not a mere `already_accepted`: {id: row}."""
    with Ledger(ledger, lock=False) as led:
        cur = led.db.execute("SELECT key, status, crm_id, confirmed_via, error_code, record,"
                             " source_file FROM rows WHERE status != 'already_accepted'"
                             " ORDER BY id")
        return {k.rsplit(":", 1)[1]: {"status": s, "crm_id": c, "via": v, "code": e,
                                      "record": r, "file": f}
                for k, s, c, v, e, r, f in cur.fetchall()}


def test_webhooks_confirm_every_row_with_the_crm_id(sandbox: SandboxHandle,
                                                    tmp_path: Path) -> None:
    """Deliveries that carry their keys (a CRM+ whose deliveries do: the sandbox's
    `webhook_keys`) confirm every row; without keys they confirm nothing (test below)."""
    sandbox.config.webhook_keys = True
    gifts, contacts = write_gifts(tmp_path, gids(30)), write_contacts(tmp_path, 12)
    g_cfg = receiver_config(open_pipeline(gifts), secret=SECRET)
    c_cfg = receiver_config(open_pipeline(contacts), secret=SECRET)
    with running_receiver(g_cfg) as g_hook, running_receiver(c_cfg) as c_hook:
        for cfg, url in ((g_cfg, g_hook.url), (c_cfg, c_hook.url)):
            made = asyncio.run(subscribe(sandbox.base_url, sandbox.api_key, cfg.ledger_path,
                                         url, cfg.kind, SECRET))
            assert made.action == "created"
        again = asyncio.run(subscribe(sandbox.base_url, sandbox.api_key, g_cfg.ledger_path,
                                      g_hook.url, "gift", SECRET))
        assert again.action == "unchanged" and len(sandbox.state.webhooks()) == 2
        g_run, c_run = run(gifts, sandbox), run(contacts, sandbox)
        batch = sandbox.run_batch()
    assert batch["giftsCreated"] == 30 and batch["webhooksFailed"] == 0
    got = rows(g_run.ledger)
    for gift in gids(30):
        crm = sandbox.state.gift_by_key("LegacyCRM", gift)
        assert crm is not None
        assert got[gift] | {"record": 0, "file": ""} == {
            "status": "confirmed", "crm_id": str(crm["id"]), "via": "webhook", "code": None,
            "record": 0, "file": ""}
    for i, row in rows(c_run.ledger).items():
        contact = sandbox.state.contact_by_reference("LegacyCRM", i)
        assert contact is not None and (row["status"], row["crm_id"]) == (
            "confirmed", str(contact["id"]))
    before = len(sandbox.state.requests())
    summary = recon(gifts, sandbox)
    assert (summary.exit_code, summary.open_before, summary.requests) == (0, 0, 0)
    assert len(sandbox.state.requests()) == before  # nothing open: no request at all


def test_deliveries_without_keys_are_left_for_polling(sandbox: SandboxHandle,
                                                      tmp_path: Path) -> None:
    """The pessimistic default: deliveries do not carry transactionSource/transactionId."""
    gifts = write_gifts(tmp_path, gids(12))
    cfg = receiver_config(open_pipeline(gifts), secret=SECRET)
    with running_receiver(cfg) as hook:
        asyncio.run(subscribe(sandbox.base_url, sandbox.api_key, cfg.ledger_path, hook.url,
                              "gift", SECRET))
        first = run(gifts, sandbox)
        assert sandbox.run_batch()["webhooksFailed"] == 0
    assert {r["status"] for r in rows(first.ledger).values()} == {"accepted"}
    summary = recon(gifts, sandbox)  # polling confirms them
    assert summary.confirmed == {"bulk": 12} and summary.exit_code == 0


def test_polling_bulk_then_per_row_where_cheaper(sandbox: SandboxHandle, tmp_path: Path) -> None:
    spec = write_gifts(tmp_path, gids(45))
    first = run(spec, sandbox)
    sandbox.run_batch()
    summary = recon(spec, sandbox, page_size=10)
    assert (summary.exit_code, summary.confirmed, summary.poll["mode"]) == (0, {"bulk": 45},
                                                                            "bulk")
    assert summary.requests == 1 + 5  # QueryOptions, then 45 gifts of one batch, 10 a page
    query = sandbox.state.requests(path="/api/Gift/Query/FullGift")
    # the first `etl run` asked once (take 1) whether CRM+ held gifts of this source already
    assert len(query) == 1 + 5 and all(r.status == 200 for r in query)
    totals = {(t["stage"], t["currency"]): (t["rows"], t["amount"]) for t in summary.totals}
    assert totals[("open", "CAD")] == totals[("confirmed", "CAD")] == (9, "274.50")
    assert totals[("open", "USD")] == totals[("confirmed", "USD")]
    # three more gifts in run 2, one settled by a person: 2 open rows < 3 pages of 1 -> lookups
    write_gifts(tmp_path, gids(48))
    run(spec, sandbox)
    again = recon(spec, sandbox, page_size=10)
    assert again.polled is False and "min-interval" in again.poll["reason"]
    assert again.waiting == 3 and again.exit_code == 0  # within the window
    sandbox.run_batch()
    resolve(open_pipeline(spec), absent=[], found=["G47"])
    forced = recon(spec, sandbox, page_size=1, force=True)
    assert (forced.poll["mode"], forced.requests, forced.confirmed) == ("lookup", 3,
                                                                        {"lookup": 2})
    assert [r.path for r in sandbox.state.requests(method="GET")][-2:] == [
        "/api/Gift/LegacyCRM/G45", "/api/Gift/LegacyCRM/G46"]
    got = rows(first.ledger)
    assert all(got[g]["status"] == "confirmed" and got[g]["crm_id"] for g in gids(47))


def test_needs_update_gifts_become_needs_review_after_the_window(sandbox: SandboxHandle,
                                                                  tmp_path: Path) -> None:
    ids = [*gids(8), "=G99"]
    spec = write_gifts(tmp_path, ids, nameless=("G3", "=G99"))
    first = run(spec, sandbox)
    assert sandbox.run_batch()["needsUpdate"] == 2
    now = datetime.now(UTC)
    early = recon(spec, sandbox)
    assert (early.exit_code, early.confirmed, early.waiting) == (0, {"bulk": 7}, 2)
    later = recon(spec, sandbox, clock=lambda: now + timedelta(hours=31))
    assert later.exit_code == 1 and later.needs_review == 2 and later.open_reviews == 2
    report = Path(later.review_csv or "")
    assert report == tmp_path / "reports" / "needs_review.csv"
    with report.open(newline="", encoding="utf-8-sig") as f:
        listed = list(csv.DictReader(f))
    assert [(r["record"], r["id"], r["status_before"]) for r in listed] == [
        ("4", "G3", "accepted"), ("9", "'=G99", "accepted")]
    assert listed[0]["source_file"].endswith("gifts.csv") and "not in CRM+" in listed[0]["reason"]
    assert rows(first.ledger)["G3"]["code"] == "NOT_IN_CRM"
    # needs_review rows are never re-sent by a later run
    assert run(spec, sandbox).counts == {"already_accepted": 9}


def _crash(ledger: str, keys: list[str]) -> None:
    """As if `etl run` died while these rows were being sent."""
    with Ledger(ledger, lock=False) as led, led.tx():
        led.db.execute("UPDATE runs SET ended_at=NULL WHERE id=1")
        led.db.executemany("UPDATE rows SET status='sending' WHERE key=?",
                           [(f"gift_transaction:LegacyCRM:{k}",) for k in keys])


def test_in_doubt_found_confirmed_absent_needs_review_then_resolved_and_sent_once(
        sandbox: SandboxHandle, tmp_path: Path) -> None:
    spec = write_gifts(tmp_path, gids(10))
    first = run(spec, sandbox)
    _crash(first.ledger, ["G1", "G2"])
    held = sandbox.state.take_held()  # G2's request never reached CRM+
    sandbox.state.hold("gift", [e["payload"] for e in held
                                if e["payload"]["transactionId"] != "G2"], held[0]["import"])
    parked = run(spec, sandbox)  # the crash's rows are parked, not re-sent
    assert parked.counts == {"already_accepted": 8, "in_doubt": 2}
    sandbox.run_batch()
    summary = recon(spec, sandbox, after_batch=True)
    got = rows(first.ledger)
    assert got["G1"]["status"] == "confirmed" and got["G2"]["status"] == "in_doubt"
    assert summary.to_pending == 0  # a read that does not find a gift proves nothing
    assert run(spec, sandbox).counts == {"already_accepted": 9, "in_doubt": 1}
    later = datetime.now(UTC) + timedelta(hours=31)
    after = recon(spec, sandbox, clock=lambda: later)
    assert after.exit_code == 1 and rows(first.ledger)["G2"]["code"] == "IN_DOUBT_NOT_FOUND"
    resolve(open_pipeline(spec), absent=["G2"], found=[])  # a person looked in CRM+: not there
    resent = run(spec, sandbox)
    assert resent.counts == {"accepted": 1, "already_accepted": 9}
    sandbox.run_batch()
    final = recon(spec, sandbox, force=True, clock=lambda: later)
    assert final.confirmed == {"bulk": 1} and final.exit_code == 0
    assert all(len(sandbox.state.gifts_for("LegacyCRM", g)) == 1 for g in gids(10))


def test_two_gifts_with_one_transaction_id_are_a_duplicate_in_crm(sandbox: SandboxHandle,
                                                                  tmp_path: Path) -> None:
    spec = write_gifts(tmp_path, gids(5))
    first = run(spec, sandbox)
    sandbox.run_batch()
    original = sandbox.state.gift_by_key("LegacyCRM", "G4")
    assert original is not None
    sandbox.state.save_gift({**original, "id": 99999})  # what the real API might do
    summary = recon(spec, sandbox)
    assert summary.duplicates == 1 and summary.exit_code == 1
    got = rows(first.ledger)["G4"]
    assert (got["status"], got["code"]) == ("needs_review", "DUPLICATE_IN_CRM")


def test_cli_exit_codes_and_json_summary(sandbox: SandboxHandle, tmp_path: Path) -> None:
    spec = write_gifts(tmp_path, gids(3))
    runner = CliRunner()
    missing = runner.invoke(reconcile_cli, [str(spec), "--base-url", sandbox.base_url],
                            env={"VIRTUOUS_API_TOKEN": sandbox.api_key})
    assert missing.exit_code == 2 and "no ledger" in missing.stderr
    run(spec, sandbox)
    sandbox.run_batch()
    refused = runner.invoke(reconcile_cli, [str(spec), "--base-url", sandbox.base_url],
                            env={"VIRTUOUS_API_TOKEN": "WRONG-KEY-canary"})
    assert refused.exit_code == 4 and "WRONG-KEY-canary" not in refused.output + refused.stderr
    out = tmp_path / "summary.json"
    ok = runner.invoke(reconcile_cli, [str(spec), "--base-url", sandbox.base_url,
                                       "--json-summary", str(out), "--force"],
                       env={"VIRTUOUS_API_TOKEN": sandbox.api_key})
    assert ok.exit_code == 0, ok.output + ok.stderr
    assert json.loads(out.read_text())["confirmed"] == {"bulk": 3}
    assert runner.invoke(reconcile_cli, [str(spec), "--window", "-1"]).exit_code == 2


def test_a_schema_1_ledger_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    from etl.load.ledger import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for sql in MIGRATIONS[0][1]:
        db.execute(sql)
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("INSERT INTO runs (pipeline, started_at) VALUES ('gifts', '2024-01-01')")
    db.execute("INSERT INTO rows (run_id, key, status) VALUES (1, 'k', 'accepted')")
    db.execute("CREATE TABLE IF NOT EXISTS someone_elses (x)")  # another module's table
    db.commit()
    db.close()
    with Ledger(path) as led:
        assert led.db.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)]
        assert led.db.execute("SELECT status, crm_id FROM rows").fetchall() == [
            ("accepted", None)]
        assert led.db.execute("SELECT COUNT(*) FROM someone_elses").fetchone() == (0,)


def test_a_key_of_another_organization_proves_nothing_absent(sandbox: SandboxHandle,
                                                             tmp_path: Path) -> None:
    """Another organization's key would find none of the rows: reconcile refuses it before
    polling, so rows in doubt are not sent back to pending (and sent twice)."""
    spec = write_gifts(tmp_path, gids(4))
    first = run(spec, sandbox)
    _crash(first.ledger, ["G1"])
    run(spec, sandbox)  # G1 parked in doubt
    sandbox.run_batch()
    text = spec.read_text(encoding="utf-8")
    spec.write_text(text + "organization: Other Org\n", encoding="utf-8")
    refused = recon(spec, sandbox, after_batch=True)
    assert refused.exit_code == EXIT_CREDENTIALS and "Other Org" in refused.exit_reason
    assert not refused.polled and rows(first.ledger)["G1"]["status"] == "in_doubt"
    spec.write_text(text + "organization: Sandbox Organization\n", encoding="utf-8")
    assert recon(spec, sandbox, after_batch=True).exit_code == 0
    assert rows(first.ledger)["G1"]["status"] == "confirmed"
