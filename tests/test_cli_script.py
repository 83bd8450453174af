"""Scripting the CLI: `-` is stdout, quiet on a broken pipe, --json, progress lines and JSON logs
when not on a terminal, an end-of-run line that says what happened. Through the real command
(a subprocess wherever a pipe or a non-terminal matters)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from etl.cli.render import duration

# Six contacts, one without a last name (rejected by validation); one row a request, paced
# fast, so that a run takes a few seconds and shows progress.
SPEC = """\
name: ok
target: contact_transaction
source: {path: d.csv}
keys: {source: S, id: {column: id}}
mappings: {firstName: f, lastName: l}
rules: {lastName: {required: true}}
load: {batch_size: 1, requests_per_hour: 7200}
"""
ROWS = "id,f,l\n1,A,B\n2,C,D\n3,E,\n4,G,H\n5,I,J\n6,K,L\n"
ETA = re.compile(r"ETA (\?|\d+s|\d+m|\d+h\d\dm)\b")


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "d.csv").write_text(ROWS, encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def etl(*args: str, cwd: Path, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUOUS_API_TOKEN"}
    return subprocess.run([sys.executable, "-m", "etl", *args], cwd=cwd, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False)


def sandbox_run(spec: Path, *extra: str) -> subprocess.CompletedProcess:
    return etl("run", str(spec), "--sandbox", "--sandbox-rate", "none", *extra, cwd=spec.parent)


def paced_run(spec: Path, *extra: str) -> subprocess.CompletedProcess:
    """Paced (the 5 batches at 10 a second): an unpaced run may end within 0.2 s, before any
    progress line is due."""
    return etl("run", str(spec), "--sandbox", "--sandbox-rate", "10/second", *extra,
               cwd=spec.parent)


def test_json_summary_dash_goes_to_stdout_and_creates_no_file(spec):
    proc = sandbox_run(spec, "--json-summary", "-")
    assert proc.returncode == 1, proc.stderr  # one row rejected by validation
    summary = json.loads(proc.stdout)  # stdout holds the JSON document and nothing else
    # a superset of what --json-summary FILE always held
    for key in ("run_id", "pipeline", "ledger", "organization", "exit_code", "exit_reason",
                "counts", "totals", "requests", "control_totals", "finished_at"):
        assert key in summary
    assert summary["counts"] == {"accepted": 5, "rejected": 1}
    assert not (spec.parent / "-").exists()
    assert "rows by status" in proc.stderr  # the human tables moved to stderr


def test_json_summary_dev_stdout_is_stdout_and_the_link_stays(spec):
    before = os.lstat("/dev/stdout")
    proc = sandbox_run(spec, "--json-summary", "/dev/stdout", "-q")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["run_id"] == 1
    after = os.lstat("/dev/stdout")  # never replaced by a regular file (the tests may run as root)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


def test_run_json_flag_prints_one_document(spec):
    proc = sandbox_run(spec, "--json")
    assert json.loads(proc.stdout)["exit_reason"].startswith("finished: 1 rejected")


def test_ledger_export_dash_writes_csv_to_stdout(spec):
    assert sandbox_run(spec, "-q").returncode == 1
    proc = etl("ledger", "export", "1", "--spec", str(spec), "--sandbox", "--out", "-",
               cwd=spec.parent)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("id,run_id,source_file,record,key")
    assert len(lines) == 7  # header + six source rows
    assert not (spec.parent / "-").exists()


def test_ledger_export_parquet_to_stdout_is_bytes(spec):
    assert sandbox_run(spec, "-q").returncode == 1
    proc = subprocess.run([sys.executable, "-m", "etl", "ledger", "export", "1", "--spec",
                           str(spec), "--sandbox", "--format", "parquet", "--out", "-"],
                          cwd=spec.parent, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout[:4] == b"PAR1" and proc.stdout[-4:] == b"PAR1"
    assert not (spec.parent / "-").exists()


def test_ledger_runs_json(spec):
    assert sandbox_run(spec, "-q").returncode == 1
    proc = etl("ledger", "runs", "--spec", str(spec), "--sandbox", "--json", cwd=spec.parent)
    runs = json.loads(proc.stdout)
    assert [r["id"] for r in runs] == [1]
    assert runs[0]["counts"] == {"accepted": 5, "rejected": 1}


@pytest.mark.parametrize("command", [["transforms"], ["schema"],
                                     ["fields", "gift_transaction"]])
def test_a_reader_that_leaves_early_is_no_error(tmp_path, command):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes (`| head -1` that finished)
    try:
        proc = etl(*command, cwd=tmp_path, stdout=write)
    finally:
        os.close(write)
    assert proc.returncode == 141  # as a command killed by SIGPIPE; quiet
    assert proc.stderr == ""


def test_pipe_into_head_is_quiet(tmp_path):
    shell = f"{sys.executable} -m etl transforms | head -1; echo rc=${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.stderr == ""
    assert len(proc.stdout.splitlines()) == 2
    assert re.search(r"rc=(0|141)$", proc.stdout.strip())


def test_progress_lines_when_not_on_a_terminal(spec):
    proc = paced_run(spec, "--progress-every", "0.2")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("sending:")]
    assert lines, proc.stderr
    assert all(ETA.search(line) and "requests" in line and "budget left" in line
               for line in lines)
    assert "━" not in proc.stdout and "┃" not in proc.stdout  # plain tables off a terminal
    assert "| accepted" in proc.stdout or "accepted |" in proc.stdout


def test_log_format_json_is_one_object_a_line(spec):
    proc = paced_run(spec, "--log-format", "json", "--progress-every", "0.2")
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert records and all({"ts", "level", "event", "message"} <= set(r) for r in records)
    events = {r["event"] for r in records}
    assert {"message", "progress", "finished"} <= events
    progress = next(r for r in records if r["event"] == "progress")
    assert {"rows", "requests", "budget_remaining", "eta_seconds"} <= set(progress)
    assert records[-1]["exit_code"] == 1


def test_end_of_run_line_tells_validation_rejects_from_crm(spec):
    proc = sandbox_run(spec)
    assert proc.stdout.strip().splitlines()[-1] == (
        "finished: 1 rejected by validation; 5 of 5 sent were accepted")
    assert "not accepted" not in proc.stdout


def test_end_of_run_line_when_everything_was_accepted(spec):
    (spec.parent / "d.csv").write_text("id,f,l\n1,A,B\n2,C,D\n", encoding="utf-8")
    proc = sandbox_run(spec)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "finished: 2 of 2 sent were accepted"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (45, "45s"), (2552, "43m"),
                                               (3900, "1h05m"), (7200, "2h00m"), (None, "?")])
def test_eta_reads_like_a_person_would_say_it(seconds, text):
    assert duration(seconds) == text


def test_validate_shows_progress_on_a_big_file_when_piped(spec):
    big = spec.parent / "big.csv"
    with big.open("w", encoding="utf-8") as fh:
        fh.write("id,f,l\n" + "".join(f"{i},F,{'L' if i % 10 else ''}\n" for i in range(210_000)))
    big_spec = spec.parent / "big.yaml"
    big_spec.write_text(SPEC.replace("d.csv", "big.csv"), encoding="utf-8")
    proc = etl("validate", str(big_spec), "--progress-every", "0.1", "--json",
               "--max-reject-rate", "1", cwd=spec.parent)
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("validating big.csv:")]
    assert lines, proc.stderr  # one batch of rows at a time: 100,000 rows
    last = re.fullmatch(r"validating big\.csv: ([\d,]+) rows read, ([\d,]+) rejected", lines[-1])
    assert last and int(last[1].replace(",", "")) > 99_000 and "," in last[2]
    assert json.loads(proc.stdout)["counts"]["rejected"] == 21_000  # stdout: the JSON alone


def test_transforms_and_fields_json(tmp_path):
    listed = json.loads(etl("transforms", "--json", cwd=tmp_path).stdout)
    by_name = {t["name"]: t for t in listed}
    assert by_name["collapse_whitespace"]["arguments"] == []
    assert by_name["collapse_whitespace"]["doc"].startswith("Trim, and collapse")
    assert by_name["coalesce"]["arguments"] == ["columns: 'list[str]'"]
    kinds = json.loads(etl("fields", "gift_transaction", "--json", cwd=tmp_path).stdout)
    assert kinds["transactionSource"] == "keys.source" and "designations" in kinds


def test_webhooks_status_json(spec):
    assert sandbox_run(spec, "-q").returncode == 1
    proc = etl("webhooks", "status", "--spec", str(spec), "--sandbox", "--json", cwd=spec.parent)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["subscriptions"] == [] and info["deliveries"] == [] and info["problems"] == 0


def test_reconcile_json_is_stdout_and_the_text_goes_to_stderr(tmp_path):
    from test_reconcile import gids, write_gifts

    from etl.sandbox.server import running_sandbox

    spec = write_gifts(tmp_path, gids(3))
    with running_sandbox(rate_limit="none") as sb:
        env = {**os.environ, "VIRTUOUS_API_TOKEN": sb.api_key}
        common = {"cwd": tmp_path, "capture_output": True, "text": True, "env": env,
                  "timeout": 120, "check": False}
        sent = subprocess.run([sys.executable, "-m", "etl", "run", str(spec), "--base-url",
                               sb.base_url, "-q"], **common)
        assert sent.returncode == 0, sent.stderr
        sb.run_batch()
        proc = subprocess.run([sys.executable, "-m", "etl", "reconcile", str(spec),
                               "--base-url", sb.base_url, "--force", "--json"], **common)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["confirmed"] == {"bulk": 3}
    assert "rows were open" in proc.stderr


def test_a_log_reader_that_leaves_does_not_stop_the_run(spec):
    read, write = os.pipe()
    os.close(read)  # stderr's reader is gone: `etl run ... 2>&1 | head -1` that finished
    try:
        proc = subprocess.run([sys.executable, "-m", "etl", "run", str(spec), "--sandbox",
                               "--sandbox-rate", "none", "--progress-every", "0.1",
                               "--json-summary", "s.json"], cwd=spec.parent, stderr=write,
                              stdout=subprocess.DEVNULL, timeout=120, check=False)
    finally:
        os.close(write)
    assert proc.returncode == 1  # the validation reject; every valid row was still sent
    assert json.loads((spec.parent / "s.json").read_text())["counts"] == {"accepted": 5,
                                                                           "rejected": 1}


def test_a_key_twice_in_one_file_is_not_called_a_crm_refusal(spec):
    (spec.parent / "d.csv").write_text("id,f,l\n1,A,B\n1,A,C\n2,C,D\n", encoding="utf-8")
    proc = sandbox_run(spec)
    last = proc.stdout.strip().splitlines()[-1]
    # both rows of key 1 are rejected before sending; nothing was refused by CRM+
    assert last == "finished: 2 rejected by validation; 1 of 1 sent were accepted", proc.stdout
