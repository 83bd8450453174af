"""`etl webhooks serve` and `etl webhooks status`: a secret is required, the command really
serves (a subprocess on 127.0.0.1, stopped by the test), status shows the stored subscription,
the deliveries and, with --check, what CRM+ (a local fake on 127.0.0.1) shows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_webhook_receiver import b64, gift, make_ledger, write_gift_spec
from test_webhook_register import SECRET, URL, FakeCrm

from etl.base.serving import ServerThread, bind
from etl.cli.app import main
from etl.confirm.webhook_register import subscribe


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETL_WEBHOOK_SECRET", raising=False)
    spec = write_gift_spec(tmp_path)
    code, out = invoke("webhooks", "serve", "--spec", str(spec), "--port", "0")
    assert code == 2 and "ETL_WEBHOOK_SECRET" in out and "--insecure-no-secret" in out
    code, out = invoke("webhooks", "serve", "--spec", str(spec), "--port", "0",
                       "--insecure-no-secret", "--register")
    assert code == 2 and "--register needs a secret" in out
    assert not (tmp_path / ".ledger").exists()  # nothing started, nothing written


def test_serve_runs_until_stopped_and_confirms_a_signed_delivery(tmp_path: Path) -> None:
    spec = write_gift_spec(tmp_path)
    ledger = tmp_path / ".ledger" / "gifts.sqlite"
    make_ledger(ledger, ["G1"])
    env = {**os.environ, "ETL_WEBHOOK_SECRET": "s3cret-hook-key-9"}
    proc = subprocess.Popen([sys.executable, "-m", "etl", "webhooks", "serve", "--spec",
                             str(spec), "--port", "0"], env=env, stderr=subprocess.PIPE,
                            text=True)
    line = ""
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while "listening on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        url = line.split("listening on ")[1].split()[0]
        body = json.dumps({"event": "GiftCreate", "gift": gift("G1", 50001)}).encode()
        answer = httpx.post(url, content=body, headers={"X-Virtuous-Signature": b64(body)},
                            timeout=10, trust_env=False)
        assert answer.status_code == 200 and answer.json()["confirmed"] == 1
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=15)[1]
    assert proc.returncode == 0 and "s3cret" not in line + rest and "Traceback" not in rest


def fake_crm_server(crm: FakeCrm) -> Starlette:
    """FakeCrm's webhook routes over real HTTP (for the commands, which take no transport)."""

    async def route(request: Request) -> Response:
        answer = crm(httpx.Request(request.method, str(request.url), content=await request.body(),
                                   headers={"authorization": request.headers["authorization"]}))
        return Response(answer.content, status_code=answer.status_code,
                        media_type="application/json")

    return Starlette(routes=[Route("/api/Webhook", route, methods=["POST"]),
                             Route("/api/Webhook/{rest:path}", route, methods=["GET", "PUT"])])


@contextmanager
def running_fake_crm(crm: FakeCrm) -> Iterator[str]:
    sock = bind("127.0.0.1", 0)
    server = ServerThread(uvicorn.Server(uvicorn.Config(fake_crm_server(crm), log_level="error",
                                                        lifespan="off")), sock, "fake CRM+")
    server.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.stop()


def serve_until(args: list[str], env: dict[str, str], marker: str) -> tuple[str, str]:
    """Start `etl webhooks serve ARGS`, read stderr up to the line with `marker`, stop it;
    (that line, the rest of stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "etl", "webhooks", "serve", *args],
                            env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)
    seen = ""
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while marker not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += proc.stderr.readline()
        health = seen.split("listening on ")[1].split()[0].replace("/webhook", "/health")
        while time.monotonic() < deadline:  # serving: SIGTERM now stops it gracefully
            with suppress(httpx.TransportError):
                if httpx.get(health, timeout=1, trust_env=False).status_code == 200:
                    break
            time.sleep(0.05)
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=15)[1]
    assert marker in seen, seen + rest
    assert proc.returncode == 0 and "Traceback" not in seen + rest
    return seen, rest


def test_serve_register_subscribes_once_then_checks_by_id(tmp_path: Path) -> None:
    spec = write_gift_spec(tmp_path)
    crm = FakeCrm()
    env = {"ETL_WEBHOOK_SECRET": SECRET, "VIRTUOUS_API_TOKEN": "key-1"}
    with running_fake_crm(crm) as base:
        args = ["--spec", str(spec), "--port", "0", "--register", "--base-url", base,
                "--public-url", URL]
        first, rest = serve_until(args, env, "webhook subscription 501 created")
        again, rest2 = serve_until(args, env, "webhook subscription 501 unchanged")
    assert [c[:2] for c in crm.calls] == [("POST", "/api/Webhook"), ("GET", "/api/Webhook/501")]
    assert crm.calls[0][2] == {"payloadUrl": URL, "secret": SECRET, "giftCreate": True,
                               "active": True}
    assert SECRET not in first + rest + again + rest2


def test_status_shows_the_subscription_deliveries_and_the_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_gift_spec(tmp_path)
    ledger = tmp_path / ".ledger" / "gifts.sqlite"
    make_ledger(ledger, ["G1"])
    code, out = invoke("webhooks", "status", "--spec", str(spec))
    assert code == 0 and "no subscription stored" in out and "no deliveries" in out
    crm = FakeCrm()
    asyncio.run(subscribe("http://127.0.0.1:9", "key-1", ledger, URL, "gift", SECRET,
                          transport=httpx.MockTransport(crm)))
    code, out = invoke("webhooks", "status", "--spec", str(spec))
    assert code == 0 and f"subscription 501 (current, active): {URL}, events giftCreate" in out
    crm.subs[501]["active"] = False
    crm.calls.clear()
    monkeypatch.setenv("VIRTUOUS_API_TOKEN", "key-1")
    monkeypatch.setenv("ETL_WEBHOOK_SECRET", SECRET)
    with running_fake_crm(crm) as base:
        code, out = invoke("webhooks", "status", "--spec", str(spec), "--check",
                           "--base-url", base)
    assert code == 1, out
    assert "check 501: CRM+ shows payloadUrl" in out and "active NO" in out
    assert "secret matches" in out and SECRET not in out
    assert crm.calls == [("GET", "/api/Webhook/501", None)]
