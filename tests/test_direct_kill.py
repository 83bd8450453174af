"""kill -9 at random points of a direct-create run (Find, Find, POST per row) against a sandbox
in its own process that does NOT de-duplicate: every reference must become exactly one contact."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from direct_spec import donors, write_spec

from etl.load.ledger import Ledger
from etl.sandbox.state import SandboxState

RUN = [sys.executable, "-c", "import sys; from etl.cli.run import run; "
       "run(sys.argv[1:], prog_name='etl run')"]


def _runs(ledger_path: Path) -> int:
    """How many runs the ledger has opened (read-only; 0 before the file exists)."""
    if not ledger_path.exists():
        return 0
    try:
        db = sqlite3.connect(f"{ledger_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:  # created but not migrated yet
        return 0


def _kill_during_sending(args: list[str], env: dict[str, str], ledger_path: Path,
                         rng: random.Random) -> bool:
    """Start `etl run`, wait until it has opened its ledger run (sending starts right after),
    then kill -9 it 0.2-1.0 s later. False when it ended by itself first."""
    before = _runs(ledger_path)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _runs(ledger_path) == before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.2, 1.0))
    ended = proc.poll() is not None
    proc.kill()
    proc.wait()
    return not ended


@pytest.mark.slow
def test_kill_9_at_random_points_never_creates_a_contact_twice(tmp_path: Path) -> None:
    rng = random.Random(14)
    contacts, kills = 500, 30
    # paced to ~60 requests/s so that 30 kills land all along the run; a 1 s settle window
    spec = write_spec(tmp_path, donors(contacts), per_hour=270_000,
                      load=", concurrency: 2, direct_settle_seconds: 1")
    state, key = tmp_path / "sandbox.sqlite", "kill-key-123456"
    # some POSTs are stored and answered late, or reset after storing: kills land in between
    server = subprocess.Popen([sys.executable, "-m", "etl.sandbox", "--port", "0", "--api-key",
                               key, "--rate-limit", "none", "--state", str(state), "--faults",
                               "slow_after_store=0.05,slow_seconds=0.5,reset_after_store=0.02,"
                               "seed=14"], stdout=subprocess.PIPE, text=True)
    ledger_path = tmp_path / ".ledger" / "contacts.sqlite"
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        env = {**os.environ, "VIRTUOUS_API_TOKEN": key}
        args = [*RUN, str(spec), "--base-url", url, "-q", "--out", str(tmp_path / "r")]
        landed = sum(_kill_during_sending(args, env, ledger_path, rng) for _ in range(kills))
        time.sleep(1.2)  # the settle window of the last kill's POST
        finals = []
        for _ in range(3):  # a reset after storing in the finishing run is in doubt again
            finals.append(subprocess.run(args, env=env, timeout=300, check=False).returncode)
            if finals[-1] == 0:
                break
            time.sleep(1.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()
    sandbox = SandboxState(state)
    try:
        per_ref = Counter((r["source"], r["id"]) for c in sandbox.contacts()
                          for r in c["contactReferences"])
    finally:
        sandbox.close()
    with Ledger(ledger_path, lock=False) as led:
        assert led.integrity() == "ok"
        last = led.runs()[-1]
        crashed = sum("crashed" in (r["exit_reason"] or "") for r in led.runs())
        recovered = led.db.execute("SELECT COUNT(*) FROM rows WHERE error_code='IN_DOUBT'")\
            .fetchone()[0]
        looked_up = led.db.execute("SELECT COUNT(*) FROM rows WHERE reason LIKE"
                                   " 'found by reference after%'").fetchone()[0]
        latest = dict(led.db.execute("SELECT key, status FROM rows WHERE id IN"
                                     " (SELECT MAX(id) FROM rows GROUP BY key)").fetchall())
        ids = dict(led.db.execute("SELECT key, crm_id FROM rows WHERE status='confirmed'"))
    twice = {ref: n for ref, n in per_ref.items() if n > 1}
    assert not twice, f"{len(twice)} references became more than one contact: {list(twice)[:5]}"
    assert {("LegacyCRM", f"D{i}") for i in range(contacts)} == set(per_ref)
    assert finals[-1] == 0 and last["exit_code"] == 0, finals
    assert set(latest.values()) <= {"confirmed", "already_accepted"}
    assert len(ids) == contacts  # every row has its CRM+ id
    assert landed >= kills // 2 and crashed >= landed - 1  # kills landed while sending
    assert recovered > 0 and looked_up > 0  # rows were left mid-POST and looked up again
    print(f"direct kill test: {landed}/{kills} kills during sending, {recovered} rows left "
          f"sending, {looked_up} found by reference after an unanswered create, final runs "
          f"{finals}")
