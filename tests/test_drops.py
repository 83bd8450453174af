"""Nightly drops and unattended runs: new files only (by content), quarantine, archive, the run
lock (a second run exits 6, a kill -9 leaves a stale lock the next run reports), the gates and
the JSON summary. Against the local sandbox over 127.0.0.1."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from gift_spec import GIFT_MAPPINGS

from etl.base.errors import SourceError
from etl.cli.run import run
from etl.load.ledger import Ledger
from etl.run.submit import RunOptions, RunSummary, run_pipeline
from etl.sandbox.server import SandboxHandle
from etl.spec.parse import load_spec
from etl.spec.pipeline import open_pipeline
from etl.unattended import drops, filemove
from etl.unattended.gates import RunLock, RunLocked

HEADER = "GiftID,DonorID,First,Last,GiftDate,Amount,PayMethod,Currency"
RUN = [sys.executable, "-c", "import sys; from etl.cli.run import run; "
       "run(sys.argv[1:], prog_name='etl run')"]
T0 = 1_700_000_000.0


def gifts(ids: range | list[int], amount: str = "25.00", first: str = "Ann") -> str:
    return HEADER + "\n" + "".join(f"G{i},D{i},{first},Lee,2024-01-05,{amount},Check,USD\n"
                                   for i in ids)


def drop_spec(folder: Path, *, per_hour: int = 1_000_000, batch_size: int = 10,
              attempts: int = 3) -> Path:
    (folder / "drops").mkdir(parents=True, exist_ok=True)
    spec = folder / "drop.yaml"
    spec.write_text(f"""name: drop
target: gift_transaction
source: {{path: drops/gifts_*.csv, encoding: utf-8}}
keys: {{source: Platform, id: {{column: GiftID}}}}
{GIFT_MAPPINGS}
load: {{batch_size: {batch_size}, concurrency: 2, requests_per_hour: {per_hour},
        max_attempts: {attempts}}}
""", encoding="utf-8")
    return spec


def put(folder: Path, name: str, content: str | bytes, mtime: float) -> Path:
    path = folder / "drops" / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.utime(path, (mtime, mtime))
    return path


def go(spec: Path, sb: SandboxHandle, said: list[str] | None = None,
       **options: Any) -> RunSummary:
    opts = RunOptions(token=sb.api_key, base_url=sb.base_url, backoff_base=0.01,
                      handle_signals=False,
                      notify=(said if said is not None else []).append, **options)
    return run_pipeline(open_pipeline(spec, out_dir=spec.parent / "reports"), opts)[1]


def posts(sb: SandboxHandle) -> int:
    return len([r for r in sb.state.requests() if r.method == "POST"])


def outcomes(summary: RunSummary) -> list[tuple[str, str]]:
    return [(Path(f["path"]).name, f["outcome"]) for f in summary.files]


def test_drop_folder_new_files_only_quarantine_and_archive(sandbox: SandboxHandle,
                                                           tmp_path: Path) -> None:
    spec = drop_spec(tmp_path)
    put(tmp_path, "gifts_a.csv", gifts(range(1, 4)), T0 + 10)
    put(tmp_path, "gifts_b.csv", gifts(range(4, 6)), T0)  # older: read first
    first = go(spec, sandbox)
    assert first.exit_code == 0, first.exit_reason
    assert outcomes(first) == [("gifts_b.csv", "processed"), ("gifts_a.csv", "processed")]
    assert first.files[0]["statuses"] == {"accepted": 2}
    # night 2: a re-delivery under a new name, a changed file under the same name, two broken
    put(tmp_path, "gifts_c.csv", gifts(range(1, 4)), T0 + 20)
    put(tmp_path, "gifts_b.csv", gifts(range(4, 7)), T0 + 30)
    cp1252 = b"G8,D8,Jos\xe9,Lee,2024-01-05,5,Check,USD\n"  # in a UTF-8 feed
    put(tmp_path, "gifts_d.csv", gifts([7]).encode() + cp1252, T0 + 40)
    put(tmp_path, "gifts_e.csv", gifts([9]).replace(",Amount", ",Sum"), T0 + 50)
    archive, quarantine, out = tmp_path / "archive", tmp_path / "quarantine", tmp_path / "s.json"
    result = CliRunner().invoke(run, [
        str(spec), "--base-url", sandbox.base_url, "--out", str(tmp_path / "r"), "--archive",
        str(archive), "--quarantine", str(quarantine), "--json-summary", str(out)],
        env={"VIRTUOUS_API_TOKEN": sandbox.api_key}, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    data = json.loads(out.read_text())
    assert data["exit_code"] == 1 and "2 file(s) quarantined" in data["exit_reason"]
    got = {Path(f["path"]).name: f for f in data["files"]}
    assert [Path(f["path"]).name for f in data["files"]] == [
        "gifts_a.csv", "gifts_c.csv", "gifts_b.csv", "gifts_d.csv", "gifts_e.csv"]
    assert got["gifts_a.csv"]["outcome"] == "skipped"
    assert got["gifts_c.csv"]["outcome"] == "skipped"
    assert "re-delivered: same content as" in got["gifts_c.csv"]["detail"]
    assert "gifts_a.csv" in got["gifts_c.csv"]["detail"]
    assert got["gifts_b.csv"]["outcome"] == "processed"
    assert got["gifts_b.csv"]["statuses"] == {"accepted": 1, "already_accepted": 2}
    assert got["gifts_d.csv"]["outcome"] == got["gifts_e.csv"]["outcome"] == "quarantined"
    reason_d = (quarantine / "gifts_d.csv.reason.txt").read_text()
    assert "gifts_d.csv:3" in reason_d and "0xe9" in reason_d
    assert "'Amount'" in (quarantine / "gifts_e.csv.reason.txt").read_text()
    assert sorted(p.name for p in archive.iterdir()) == ["gifts_a.csv", "gifts_b.csv",
                                                         "gifts_c.csv"]
    assert list((tmp_path / "drops").iterdir()) == []
    assert (archive / "gifts_b.csv").read_text() == gifts(range(4, 7))
    assert [sandbox.state.times_received("Platform", f"G{i}") for i in range(1, 10)] == [
        1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert data["control_totals"]["rows"] == {"read": 3, "rejected": 0, "valid": 3, "sent": 1,
                                              "accepted": 3}
    assert data["control_totals"]["currencies"]["USD"]["amount"] == {
        "read": "75.00", "valid": "75.00", "sent": "25.00", "accepted": "75.00"}
    assert data["gates"]["held"] is None and data["finished_at"]
    # night 3: a changed file archived under a taken name keeps both; nothing else is new
    put(tmp_path, "gifts_b.csv", gifts(range(4, 8)), T0 + 60)
    third = go(spec, sandbox, archive=archive)
    assert (third.exit_code, outcomes(third)) == (0, [("gifts_b.csv", "processed")])
    assert (archive / "gifts_b~1.csv").read_text() == gifts(range(4, 8))
    fourth = go(spec, sandbox, archive=archive)
    assert (fourth.exit_code, fourth.exit_reason, fourth.files) == (0, "no new files", [])
    with Ledger(fourth.ledger, lock=False) as led:
        assert led.run(fourth.run_id)["exit_reason"] == "no new files"


def test_unfinished_file_is_read_again_and_validate_preview(sandbox: SandboxHandle,
                                                           tmp_path: Path) -> None:
    spec = drop_spec(tmp_path)
    # (the file with rejected rows is read first: pandera failures of a later file of a glob
    # get the wrong row numbers in etl/prepare/validate.py today, see the report)
    put(tmp_path, "gifts_a.csv", gifts(range(10)), T0 + 1)
    put(tmp_path, "gifts_b.csv", gifts(range(10, 13), amount="abc"), T0)
    held = go(spec, sandbox, max_reject_rate=0.1)
    assert held.exit_code == 1 and "over --max-reject-rate 10.0%: nothing sent" in held.exit_reason
    assert held.counts == {"pending": 10, "rejected": 3} and posts(sandbox) == 0
    assert outcomes(held) == [("gifts_b.csv", "processed"), ("gifts_a.csv", "unfinished")]
    preview = drops.preview(load_spec(spec), Path(held.ledger))
    assert [f.path.name for f in preview.to_read] == ["gifts_a.csv"]
    ok = go(spec, sandbox, max_reject_rate=0.5)
    assert (ok.exit_code, ok.counts) == (0, {"accepted": 10})
    assert outcomes(ok) == [("gifts_b.csv", "skipped"), ("gifts_a.csv", "processed")]
    assert drops.preview(load_spec(spec), Path(ok.ledger)).to_read == []
    put(tmp_path, "gifts_c.csv", gifts([20]), T0 + 2)
    next_run = open_pipeline(spec, ledger_path=Path(ok.ledger))
    assert drops.preview_paths(next_run) == [tmp_path / "drops" / "gifts_c.csv"]
    every = go(spec, sandbox, new_only=False)  # --all-files: read again, nothing sent twice
    assert every.counts == {"already_accepted": 10, "rejected": 3, "accepted": 1}


def test_max_failed_stops_sending_further_batches(tmp_path: Path) -> None:
    spec = drop_spec(tmp_path, batch_size=5, attempts=1)
    put(tmp_path, "gifts_a.csv", gifts(range(60)), T0)
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"name": "Test Org"})
        seen.append(request.url.path)
        return httpx.Response(500, text="boom")

    summary = run_pipeline(open_pipeline(spec, out_dir=tmp_path / "r"), RunOptions(
        token="k" * 20, base_url="http://127.0.0.1:9", transport=httpx.MockTransport(answer),
        handle_signals=False, max_failed=4,
        skip_crm_check=True))[1]  # this fake CRM+ has no Query: the gate is what is tested
    assert summary.exit_code == 1 and "more than --max-failed 4" in summary.exit_reason
    assert summary.gates["stopped"] and summary.counts["pending"] >= 45
    assert len(seen) <= 3  # the batch that went over, plus what was already in flight
    assert outcomes(summary) == [("gifts_a.csv", "unfinished")]


def test_a_second_run_exits_6_while_the_first_holds_the_lock(sandbox: SandboxHandle,
                                                              tmp_path: Path) -> None:
    spec = drop_spec(tmp_path)
    put(tmp_path, "gifts_a.csv", gifts(range(20)), T0)
    release, holding = threading.Event(), threading.Event()
    results: list[RunSummary] = []

    def hold(_: dict[str, Any]) -> None:
        holding.set()
        release.wait(30)

    first = threading.Thread(target=lambda: results.append(go(spec, sandbox, on_progress=hold)))
    first.start()
    try:
        assert holding.wait(20)
        started = time.monotonic()
        second = subprocess.run([*RUN, str(spec), "--base-url", sandbox.base_url, "-q",
                                 "--json-summary", str(tmp_path / "second.json")],
                                env={**os.environ, "VIRTUOUS_API_TOKEN": sandbox.api_key},
                                capture_output=True, text=True, timeout=60, check=False)
        took = time.monotonic() - started
    finally:
        release.set()
        first.join(30)
    assert second.returncode == 6, second.stderr
    assert f"another `etl run` (pid {os.getpid()}" in second.stderr
    assert json.loads((tmp_path / "second.json").read_text())["exit_code"] == 6
    assert took < 10
    print(f"second run refused in {took:.2f} s (python start included)")
    assert results[0].exit_code == 0 and results[0].counts == {"accepted": 20}


def test_a_lock_left_by_kill_9_is_stale_and_the_next_run_proceeds(sandbox: SandboxHandle,
                                                                   tmp_path: Path) -> None:
    spec = drop_spec(tmp_path, per_hour=36_000, batch_size=5)  # 10 requests/s: slow enough
    put(tmp_path, "gifts_a.csv", gifts(range(200)), T0)
    lock = tmp_path / ".ledger" / "drop.sqlite.lock"
    proc = subprocess.Popen([*RUN, str(spec), "--base-url", sandbox.base_url, "-q", "--out",
                             str(tmp_path / "r")],
                            env={**os.environ, "VIRTUOUS_API_TOKEN": sandbox.api_key})
    try:
        deadline = time.monotonic() + 30
        while posts(sandbox) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert f"pid={proc.pid} " in lock.read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    said: list[str] = []
    summary = go(spec, sandbox, said, unlimited=True)
    assert f"a previous run (pid {proc.pid}) died; its lock was released" in said[0]
    assert summary.stale_lock_pid == proc.pid
    assert set(summary.counts) <= {"accepted", "already_accepted", "in_doubt"}
    assert sum(summary.counts.values()) == 200
    assert all(sandbox.state.times_received("Platform", f"G{i}") <= 1 for i in range(200))
    assert lock.read_text() == ""  # a clean end leaves no pid behind
    with pytest.raises(RunLocked), RunLock(Path(summary.ledger)), RunLock(Path(summary.ledger)):
        pass  # while one is held, a second cannot be taken (same process, same file)


def test_move_file_never_overwrites_and_copies_across_filesystems(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in").mkdir()
    dest = tmp_path / "out"
    first = tmp_path / "in" / "a.csv"
    first.write_text("one")
    assert filemove.move_file(first, dest) == dest / "a.csv"
    second = tmp_path / "in" / "a.csv"
    second.write_text("two")

    real_link, real_rename = os.link, os.rename

    def across(real: Any) -> Any:  # "in" and "out" on two filesystems
        def call(src: Any, dst: Any) -> None:
            if Path(src).parent != Path(dst).parent:
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            real(src, dst)
        return call

    monkeypatch.setattr(os, "link", across(real_link))
    monkeypatch.setattr(os, "rename", across(real_rename))
    assert filemove.move_file(second, dest) == dest / "a~1.csv"
    assert (dest / "a.csv").read_text() == "one" and (dest / "a~1.csv").read_text() == "two"
    assert not second.exists() and sorted(p.name for p in dest.iterdir()) == ["a.csv",
                                                                              "a~1.csv"]


def _truncate_on_read(monkeypatch: pytest.MonkeyPatch, path: Path, keep: str,
                      times: int = 1) -> list[int]:
    """Make the next `times` reads of `path` see it cut to `keep` after it was hashed (the hook
    sits between the hash and the read: etl.read.sources calls utf8_file after hashing)."""
    from etl.read import sources

    real, calls = sources.utf8_file, []

    def cut(p: Path, source: Any) -> Any:
        if p == path and len(calls) < times:
            calls.append(1)
            p.write_text(keep, encoding="utf-8")
        return real(p, source)

    monkeypatch.setattr(sources, "utf8_file", cut)
    return calls


def test_a_drop_cut_short_while_it_is_read_is_not_processed(
        sandbox: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 A: a drop truncated during the run was recorded with the full file's hash, so
    the complete re-delivery was 'already processed' and its missing rows never sent."""
    spec = drop_spec(tmp_path)
    full = gifts(range(1, 7))
    path = put(tmp_path, "gifts_a.csv", full, T0)
    calls = _truncate_on_read(monkeypatch, path, gifts(range(1, 4)))
    with pytest.raises(SourceError, match="changed while it was read: left for the next run"):
        go(spec, sandbox)
    assert calls and posts(sandbox) == 0
    put(tmp_path, "gifts_a.csv", full, T0)  # the complete file, delivered again
    again = go(spec, sandbox)
    assert (again.exit_code, outcomes(again)) == (0, [("gifts_a.csv", "processed")])
    assert [sandbox.state.times_received("Platform", f"G{i}") for i in range(1, 7)] == [1] * 6


def test_a_drop_changing_during_the_quarantine_read_waits_rather_than_quarantined(
        sandbox: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = drop_spec(tmp_path)
    path = put(tmp_path, "gifts_a.csv", gifts(range(1, 7)), T0)
    _truncate_on_read(monkeypatch, path, gifts(range(1, 4)))
    said: list[str] = []
    summary = go(spec, sandbox, said, quarantine=tmp_path / "q")
    assert outcomes(summary) == [("gifts_a.csv", "waiting")]
    assert not (tmp_path / "q").exists() and path.exists() and posts(sandbox) == 0
    assert any("changed while it was read" in s for s in said)


def test_min_age_defaults_to_a_minute_for_a_drop_folder(sandbox: SandboxHandle,
                                                        tmp_path: Path) -> None:
    spec = drop_spec(tmp_path)
    put(tmp_path, "gifts_a.csv", gifts(range(1, 3)), time.time() - 5)  # still arriving
    args = [str(spec), "--base-url", sandbox.base_url, "--out", str(tmp_path / "r"),
            "--json-summary", str(tmp_path / "s.json")]
    env = {"VIRTUOUS_API_TOKEN": sandbox.api_key}
    result = CliRunner().invoke(run, args, env=env, catch_exceptions=False)
    data = json.loads((tmp_path / "s.json").read_text())
    assert [f["outcome"] for f in data["files"]] == ["waiting"], result.output
    assert f"--min-age {drops.DROP_MIN_AGE:g} s" in data["files"][0]["detail"]
    assert posts(sandbox) == 0
    result = CliRunner().invoke(run, [*args, "--min-age", "0"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [sandbox.state.times_received("Platform", f"G{i}") for i in (1, 2)] == [1, 1]
