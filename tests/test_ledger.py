"""The SQLite ledger: schema and migrations, the sending/settle cycle, crash recovery, exports."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import polars as pl
import pytest

from etl.load.ledger import SCHEMA_VERSION, Ledger, LedgerError


def _rows(n: int, status: str = "pending", key: str = "k") -> list[tuple[object, ...]]:
    # (run_id, source_file, record, key, payload_hash, status, reason, code, details, cents, cur)
    return [(1, "gifts.csv", i + 1, f"{key}{i}", f"h{i}", status, "new", None, None, 100 * i,
             "USD") for i in range(n)]


def _open_run(path: Path) -> Ledger:
    ledger = Ledger(path)
    assert ledger.start_run(pipeline="p", target="gift_transaction") == 1
    return ledger


def test_schema_version_and_pragmas(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert ledger.db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == \
            SCHEMA_VERSION
        assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ledger.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Ledger(tmp_path / "l.sqlite") as again:  # reopening migrates nothing twice
        assert again.db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES (99)")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(path)


def test_one_run_at_a_time(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite"), pytest.raises(LedgerError, match="another"):
        Ledger(tmp_path / "l.sqlite")
    Ledger(tmp_path / "l.sqlite").close()  # the lock is released on close


def test_sending_then_settle_and_counts(tmp_path: Path) -> None:
    with _open_run(tmp_path / "l.sqlite") as ledger:
        first = ledger.add_rows(_rows(4))
        ids = list(range(first, first + 4))
        ledger.mark_sending("b1", ids)
        assert ledger.counts(1) == {"sending": 4}
        ledger.settle([(ids[0], "accepted", 1, 200, None, None),
                       (ids[1], "rejected", 2, 422, "VALIDATION_FAILED", '[{"field":"amount"}]'),
                       (ids[2], "failed", 5, 503, "HTTP_503", "[]"),
                       (ids[3], "pending", 0, None, "NOT_SENT", None)])
        assert ledger.counts(1) == {"accepted": 1, "failed": 1, "pending": 1, "rejected": 1}
        frame = ledger.frame(1)
        assert frame["batch_id"].to_list() == ["b1"] * 4
        assert frame["attempts"].to_list() == [1, 2, 5, 0]
        totals = {(s, c): (n, cents) for s, c, n, cents in ledger.totals(1)}
        assert totals[("accepted", "USD")] == (1, 0)
        assert totals[("sent", "USD")] == (3, 300)


def test_recover_turns_sending_into_in_doubt_and_closes_the_crashed_run(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = _open_run(path)
    first = ledger.add_rows(_rows(3))
    ledger.settle([(first, "accepted", 1, 200, None, None)])
    ledger.mark_sending("b2", [first + 1, first + 2])
    ledger.close()  # as if killed: the run never finished
    with Ledger(path) as again:
        assert again.recover() == 2
        assert again.counts(1) == {"accepted": 1, "in_doubt": 2}
        assert "crashed" in again.run(1)["exit_reason"]
        state = again.prior_state()
        assert state["k0"].accepted_hash == "h0" and state["k0"].doubt_hash is None
        assert state["k1"].doubt_hash == "h1" and state["k1"].accepted_hash is None


def test_a_later_acceptance_resolves_a_doubt(tmp_path: Path) -> None:
    with _open_run(tmp_path / "l.sqlite") as ledger:
        first = ledger.add_rows(_rows(1, "in_doubt"))
        second = ledger.add_rows(_rows(1))
        ledger.settle([(second, "accepted", 1, 200, None, None)])
        assert first != second
        state = ledger.prior_state()["k0"]
        assert state.accepted_hash == "h0" and state.doubt_hash is None


def test_files_keep_first_and_last_run(tmp_path: Path) -> None:
    with _open_run(tmp_path / "l.sqlite") as ledger:
        ledger.add_files(1, [("a.csv", "abc", 10, 2)])
        run2 = ledger.start_run(pipeline="p")
        ledger.add_files(run2, [("a.csv", "abc", 10, 2)])
        assert ledger.db.execute("SELECT first_run, last_run FROM files").fetchall() == [(1, 2)]


def test_export_csv_is_spreadsheet_safe_and_parquet_round_trips(tmp_path: Path) -> None:
    with _open_run(tmp_path / "l.sqlite") as ledger:
        ledger.add_rows([(1, "=HYPERLINK(1)", 1, "@evil", "h", "rejected", "invalid", "-x",
                          None, None, None)])
        csv = ledger.export(1, tmp_path / "out" / "rows.csv", "csv")
        text = csv.read_text()
        assert "'=HYPERLINK(1)" in text and "'@evil" in text
        back = pl.read_parquet(ledger.export(1, tmp_path / "rows.parquet", "parquet"))
        assert back["source_file"].to_list() == ["=HYPERLINK(1)"]
        with pytest.raises(LedgerError, match="no run 7"):
            ledger.export(7, tmp_path / "x.csv")
        with pytest.raises(LedgerError, match="format"):
            ledger.export(1, tmp_path / "x.txt", "txt")


def test_100k_rows_through_the_ledger_fast_and_intact(tmp_path: Path) -> None:
    started = time.perf_counter()
    with _open_run(tmp_path / "l.sqlite") as ledger:
        first = ledger.add_rows(_rows(100_000))
        for b in range(1000):
            ids = range(first + b * 100, first + b * 100 + 100)
            ledger.mark_sending(f"b{b}", ids)
            ledger.settle((i, "accepted", 1, 200, None, None) for i in ids)
        ledger.finish_run(1, 0, "finished", {})
        assert ledger.counts(1) == {"accepted": 100_000}
        assert ledger.integrity() == "ok"
    elapsed = time.perf_counter() - started
    # ~70-100k rows/s on a quiet disk (bench/bench_load.py); loose here: CI disks are shared.
    assert 100_000 / elapsed >= 3_000, f"{100_000 / elapsed:.0f} rows/s"
