"""`etl sandbox` / `python -m etl.sandbox`: a real subprocess, as crash tests will use it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click
import httpx
from click.testing import CliRunner

from etl.sandbox.cli import sandbox as sandbox_cli

URL_LINE = re.compile(r"^sandbox listening on (http://127\.0\.0\.1:(\d+))$")


@contextmanager
def sandbox_process(*args: str) -> Iterator[tuple[str, list[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_SANDBOX_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl.sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killer = threading.Timer(20, proc.kill)
    killer.start()
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(5)]
        match = URL_LINE.match(lines[0])
        assert match, lines
        yield match.group(1), lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        killer.cancel()
    assert proc.returncode == 0


def test_subprocess_prints_its_url_and_serves():
    key = "my-secret-key-123456"
    with sandbox_process("--api-key", key, "--rate-limit", "10/minute") as (url, lines):
        output = "\n".join(lines)
        assert key not in output and "my-s..." in output
        r = httpx.get(url + "/api/Organization/Current",
                      headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "10"
        r = httpx.post(url + "/api/v2/Gift/Transaction", headers={"Authorization": f"Bearer {key}"},
                       json={"transactionSource": "S", "transactionId": "G-1", "amount": 5,
                             "giftDate": "2024-01-01", "contact": {"name": "X"}})
        assert r.status_code == 200
        result = CliRunner().invoke(sandbox_cli, ["run-batch", "--url", url, "--api-key", key])
        assert result.exit_code == 0 and '"giftsCreated": 1' in result.output


def test_generated_keys_are_printed_so_they_can_be_used():
    with sandbox_process() as (url, lines):
        key = lines[1].split()[-1]
        assert len(key) > 20
        r = httpx.get(url + "/api/Contact/Types", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200


def test_state_file_survives_the_process(tmp_path):
    db = str(tmp_path / "sb.db")
    key = "another-secret-key-1"
    auth = {"Authorization": f"Bearer {key}"}
    body = {"referenceSource": "S", "referenceId": "D-1", "firstName": "A", "lastName": "B"}
    with sandbox_process("--api-key", key, "--state", db) as (url, _):
        assert httpx.post(url + "/api/Contact/Transaction", json=body,
                          headers=auth).status_code == 200
    with sandbox_process("--api-key", key, "--state", db) as (url, _):
        httpx.post(url + "/sandbox/run-batch", headers=auth)
        assert httpx.get(url + "/api/Contact/S/D-1", headers=auth).status_code == 200


def test_bad_options_are_usage_errors():
    runner = CliRunner()
    for args in (["--faults", "http500=7"], ["--rate-limit", "often"],
                 ["--batch-mode", "sometimes"], ["--park-share", "2"],
                 ["--query-without-groups", "maybe"], ["--gift-types", " , "],
                 ["--timezone", "Mars/Olympus"]):
        result = runner.invoke(sandbox_cli, args)
        assert result.exit_code == 2, (args, result.output)


def test_the_group_can_be_attached_to_the_main_cli():
    assert isinstance(sandbox_cli, click.Group) and sandbox_cli.name == "sandbox"
    assert sandbox_cli.invoke_without_command
    assert "run-batch" in sandbox_cli.commands

    @click.group()
    def main() -> None:
        pass

    main.add_command(sandbox_cli)
    result = CliRunner().invoke(main, ["sandbox", "--help"])
    assert result.exit_code == 0 and "--rate-limit" in result.output


def test_switches_for_what_the_docs_leave_open():
    key = "switch-secret-key-123"
    auth = {"Authorization": f"Bearer {key}"}
    args = ("--api-key", key, "--rate-limit", "none", "--query-without-groups", "ignore",
            "--gift-types", "Cash, Electronic Funds Transfer", "--park-ids", "G-2",
            "--dedupe-transactions", "--hide-query-parameter", "Batch", "--webhook-keys")
    with sandbox_process(*args) as (url, lines):
        assert "dedupe on; groupless query ignore; webhook keys on" in "\n".join(lines)
        for tid, kind in (("G-1", "Electronic Funds Transfer"), ("G-1", "Cash"), ("G-2", "Cash")):
            r = httpx.post(url + "/api/v2/Gift/Transaction", headers=auth, json={
                "transactionSource": "S", "transactionId": tid, "amount": 5,
                "giftDate": "2024-01-01", "giftType": kind, "contact": {"name": "X"}})
            assert r.status_code == 200, r.text
        bad = httpx.post(url + "/api/v2/Gift/Transaction", headers=auth, json={
            "transactionSource": "S", "transactionId": "G-3", "amount": 5,
            "giftDate": "2024-01-01", "giftType": "Check"})
        assert bad.status_code == 422
        summary = httpx.post(url + "/sandbox/run-batch", headers=auth).json()
        assert (summary["giftsCreated"], summary["duplicatesSkipped"], summary["parked"]) == (
            1, 1, 1)
        page = httpx.post(url + "/api/Gift/Query", headers=auth, json={"flat": 1}).json()
        assert page["total"] == 1
        options = httpx.get(url + "/api/Gift/QueryOptions", headers=auth).json()["options"]
        assert "Batch" not in {o["parameter"] for o in options}
