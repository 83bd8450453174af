"""A damaged ledger, a read-only ledger, a full disk: a message naming the file and exit 2,
never a traceback, and after space comes back no row's state is lost or misreported."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from gift_spec import GIFT_MAPPINGS

from etl.cli.app import main
from etl.load.ledger import Ledger, LedgerError
from etl.run.submit import RunOptions, run_pipeline
from etl.spec.pipeline import Pipeline, open_pipeline

HEADER = "GiftID,DonorID,First,Last,GiftDate,Amount,PayMethod,Currency"


def gift_spec(folder: Path, n: int = 30, batch_size: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"G{i},D{i},Ann,Lee,2024-01-05,25.00,Check,USD\n" for i in range(n))
    (folder / "gifts.csv").write_text(HEADER + "\n" + rows, encoding="utf-8")
    spec = folder / "gifts.yaml"
    spec.write_text(f"""name: gifts
target: gift_transaction
source: {{path: gifts.csv}}
keys: {{source: Legacy, id: {{column: GiftID}}}}
{GIFT_MAPPINGS}
load: {{batch_size: {batch_size}, concurrency: 1, requests_per_hour: 1000000}}
""", encoding="utf-8")
    return spec


OPTIONS = {"options": [{"parameter": "Transaction Source", "type": "String",
                        "operatorOptions": [{"operator": "Is"}]}]}


class Crm:
    """Holds every gift it receives (documented shapes; a CRM that imports at once and does not
    de-duplicate) and counts every transactionId."""

    def __init__(self) -> None:
        self.received: dict[str, int] = {}
        self.gifts: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/api/v2/Gift/Transactions":
            body = json.loads(request.content)
            for t in body["transactions"]:
                self.received[t["transactionId"]] = self.received.get(t["transactionId"], 0) + 1
                self.gifts.append({"id": 50000 + len(self.gifts), "transactionId":
                                   t["transactionId"], "transactionSource":
                                   body["transactionSource"], "batch": body.get("batch")})
        if path == "/api/Organization/Current":
            return httpx.Response(200, json={"organizationName": "Org"})
        if path == "/api/Gift/QueryOptions":
            return httpx.Response(200, json=OPTIONS)
        if path == "/api/Gift/Query/FullGift":
            cond = json.loads(request.content)["groups"][0]["conditions"][0]
            sel = [g for g in self.gifts if g["transactionSource"] == cond["value"]]
            skip, take = int(request.url.params["skip"]), int(request.url.params["take"])
            return httpx.Response(200, json={"list": sel[skip:skip + take], "total": len(sel)})
        return httpx.Response(200)


def job(spec: Path, folder: Path, crm: Crm) -> tuple[Pipeline, RunOptions]:
    """The pipeline (reports under `folder`/rep) and its run options."""
    return open_pipeline(spec, out_dir=folder / "rep"), options(folder, crm)


def options(folder: Path, crm: Crm) -> RunOptions:
    return RunOptions(token="t" * 24, base_url="https://crm.example", handle_signals=False,
                      transport=httpx.MockTransport(crm))


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner(env={"VIRTUOUS_API_TOKEN": "t" * 24}).invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def damage(kind: str, path: Path, tmp: Path) -> None:
    if kind == "not sqlite":
        path.write_text("GiftID,Amount\nG1,10\n" * 50, encoding="utf-8")
    elif kind == "truncated":
        run_pipeline(*job(gift_spec(tmp), tmp, Crm()))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            extra.unlink(missing_ok=True)
    elif kind == "tables missing":
        with Ledger(path):
            pass
        db = sqlite3.connect(path)
        db.execute("DROP TABLE rows")
        db.commit()
        db.close()


@pytest.mark.parametrize("kind", ["not sqlite", "truncated", "tables missing"])
def test_a_damaged_ledger_is_named_with_what_to_do_and_exit_2(tmp_path: Path, kind: str) -> None:
    spec = gift_spec(tmp_path)
    path = tmp_path / ".ledger" / "gifts.sqlite"
    path.parent.mkdir()
    damage(kind, path, tmp_path)
    for args in (["ledger", "runs", "--spec", str(spec)], ["ledger", "show", "--spec", str(spec)],
                 ["run", str(spec), "--base-url", "http://127.0.0.1:9"],
                 ["reconcile", str(spec), "--base-url", "http://127.0.0.1:9"]):
        code, out = cli(*args)
        assert code == 2, (args, out)
        assert str(path) in out and ("not a usable ledger" in out or "no ledger" in out), out
        assert "Traceback" not in out


def test_a_ledger_whose_folder_cannot_take_new_files_can_still_be_read(tmp_path: Path) -> None:
    spec = gift_spec(tmp_path)
    run_pipeline(*job(spec, tmp_path, Crm()))
    path = tmp_path / ".ledger" / "gifts.sqlite"
    with Ledger(path):
        pass  # a clean close checkpoints the WAL and removes -wal/-shm
    # What a read-only folder does to SQLite: its -shm/-wal files cannot be created. (Tests
    # run as root, for whom chmod does not forbid anything: a folder in the way does.)
    for name in ("gifts.sqlite-shm", "gifts.sqlite-wal"):
        (path.parent / name).unlink(missing_ok=True)
        (path.parent / name).mkdir()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    code, out = cli("ledger", "runs", "--spec", str(spec))
    assert code == 0 and "exit 0" in out, out
    code, out = cli("ledger", "show", "--spec", str(spec))
    assert code == 0 and json.loads(out)["counts"] == {"accepted": 30}, out
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # read, never written


def test_a_full_disk_mid_run_loses_no_row_and_sends_none_twice(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    spec = gift_spec(tmp_path, n=200, batch_size=10)
    crm = Crm()
    real_sending = Ledger.mark_sending
    calls = {"n": 0}

    def fill_up(self: Ledger, batch_id: str, row_ids: list[int]) -> None:
        calls["n"] += 1
        if calls["n"] == 4:  # SQLite's own SQLITE_FULL from here on: the disk is full
            pages = self.db.execute("PRAGMA page_count").fetchone()[0]
            self.db.execute(f"PRAGMA max_page_count = {pages}")
        real_sending(self, batch_id, row_ids)

    monkeypatch.setattr(Ledger, "mark_sending", fill_up)
    with pytest.raises(LedgerError, match=r"disk is full.*none is lost"):
        run_pipeline(*job(spec, tmp_path, crm))
    monkeypatch.setattr(Ledger, "mark_sending", real_sending)

    summary = run_pipeline(*job(spec, tmp_path, crm))[1]  # space is back
    assert max(crm.received.values()) == 1  # nothing was sent twice
    with Ledger(tmp_path / ".ledger" / "gifts.sqlite") as led:
        latest = dict(led.db.execute(
            "SELECT key, status FROM rows WHERE id IN (SELECT MAX(id) FROM rows GROUP BY key)"))
        assert led.integrity() == "ok"
    assert len(latest) == 200  # every source row is accounted for
    sent = {f"gift_transaction:Legacy:{k}" for k in crm.received}
    for key, status in latest.items():
        # a gift CRM+ received is accepted or in doubt (never pending); one it did not is sent
        assert status in (("already_accepted", "accepted", "in_doubt") if key in sent
                          else ("accepted",)), (key, status)
    assert summary.counts.get("in_doubt", 0) <= 10  # at most the batch in flight


def test_two_pipelines_cannot_share_one_ledger(tmp_path: Path) -> None:
    """Feed B's reconcile must never move feed A's rows: a ledger belongs to one target+source."""
    a = gift_spec(tmp_path / "a")
    b_dir = tmp_path / "b"
    b = gift_spec(b_dir)
    shared = tmp_path / "shared.sqlite"
    for spec in (a, b):
        text = spec.read_text(encoding="utf-8").replace(
            "load: {", f"load: {{ledger: {shared}, ")
        spec.write_text(text, encoding="utf-8")
    b.write_text(b.read_text(encoding="utf-8").replace("source: Legacy", "source: Platform"),
                 encoding="utf-8")
    crm = Crm()
    assert run_pipeline(*job(a, tmp_path / "a", crm))[1].exit_code == 0
    with pytest.raises(LedgerError, match=r"holds the rows of 'gifts'.*source 'Legacy'"):
        run_pipeline(*job(b, b_dir, crm))
    code, out = cli("reconcile", str(b), "--base-url", "http://127.0.0.1:9")
    assert code == 2 and "give each spec its own ledger" in out
    code, out = cli("ledger", "resolve", "--spec", str(b), "--absent", "G1")
    assert code == 2 and "give each spec its own ledger" in out
    with Ledger(shared) as led:  # feed A's rows are as A left them
        assert dict(led.db.execute("SELECT status, COUNT(*) FROM rows GROUP BY 1")) == {
            "accepted": 30}


def test_a_lost_ledger_refuses_to_send_again_until_recovered(tmp_path: Path) -> None:
    spec = gift_spec(tmp_path, n=30)
    crm = Crm()
    assert run_pipeline(*job(spec, tmp_path, crm))[1].exit_code == 0
    ledger = tmp_path / ".ledger" / "gifts.sqlite"
    for extra in ledger.parent.iterdir():
        extra.unlink()  # the ledger is lost
    summary = run_pipeline(*job(spec, tmp_path, crm))[1]
    assert summary.exit_code == 7 and "already holds gifts" in summary.exit_reason
    assert "--recover-ledger" in summary.exit_reason
    assert max(crm.received.values()) == 1  # nothing sent twice

    (tmp_path / "gifts.csv").write_text(  # the next file: 30 known gifts and 5 new ones
        HEADER + "\n" + "".join(f"G{i},D{i},Ann,Lee,2024-01-05,25.00,Check,USD\n"
                                for i in range(35)), encoding="utf-8")
    opts = options(tmp_path, crm)
    opts.recover_ledger = True
    summary = run_pipeline(open_pipeline(spec, out_dir=tmp_path / "rep"), opts)[1]
    assert summary.exit_code == 0, summary.exit_reason
    assert summary.counts == {"already_accepted": 30, "accepted": 5}
    assert crm.received == {f"G{i}": 1 for i in range(35)}  # each exactly once


def test_a_ledger_backup_restores_what_was_sent(tmp_path: Path) -> None:
    spec = gift_spec(tmp_path, n=20)
    crm = Crm()
    run_pipeline(*job(spec, tmp_path, crm))
    code, out = cli("ledger", "backup", "--spec", str(spec), "--to", str(tmp_path / "b.sqlite"))
    assert code == 0, out
    ledger = tmp_path / ".ledger" / "gifts.sqlite"
    for extra in ledger.parent.iterdir():
        extra.unlink()
    (tmp_path / "b.sqlite").rename(ledger)  # restored
    again = run_pipeline(*job(spec, tmp_path, crm))[1]
    assert again.counts == {"already_accepted": 20} and max(crm.received.values()) == 1
    (tmp_path / "dir").mkdir()
    code, out = cli("ledger", "backup", "--spec", str(spec), "--to", str(tmp_path / "dir"))
    assert code == 2 and "is a directory" in out  # click refuses it before the ledger does


def test_a_rerun_does_not_grow_the_ledger(tmp_path: Path) -> None:
    """172 nightly runs of a 20k-row file held 3.18M rows: unchanged rows are counted now."""
    spec = gift_spec(tmp_path, n=200, batch_size=50)
    crm = Crm()
    run_pipeline(*job(spec, tmp_path, crm))
    with Ledger(tmp_path / ".ledger" / "gifts.sqlite") as led:
        stored = led.db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    for _ in range(5):
        again = run_pipeline(*job(spec, tmp_path, crm))[1]
        assert again.counts == {"already_accepted": 200}
        totals = {t["stage"]: (t["rows"], t["amount"]) for t in again.totals}
        assert totals["valid"] == totals["accepted"] == (200, "5000.00")
    with Ledger(tmp_path / ".ledger" / "gifts.sqlite") as led:
        assert led.db.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == stored == 200
        assert led.counts(led.runs()[-1]["id"]) == {"already_accepted": 200}
