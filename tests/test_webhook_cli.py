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
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from test_webhook_receiver import b64, gift, make_ledger, write_gift_spec
from test_webhook_register import SECRET, URL, FakeCrm

from etl.cli import main
from etl.serving import ServerThread, bind
from etl.webhook_register import subscribe

PREFIX = "gift_transaction:LegacyCRM:"


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
    try:
        assert proc.stderr is not None
        line = ""
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
    async def get(request: Request) -> Response:
        answer = crm(httpx.Request("GET", str(request.url),
                                   headers={"authorization": request.headers["authorization"]}))
        return JSONResponse(answer.json() if answer.content else None,
                            status_code=answer.status_code)

    return Starlette(routes=[Route("/api/Webhook/{id}", get, methods=["GET"])])


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

    sock = bind("127.0.0.1", 0)
    server = ServerThread(uvicorn.Server(uvicorn.Config(fake_crm_server(crm), log_level="error",
                                                        lifespan="off")), sock, "fake CRM+")
    server.start()
    try:
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("VIRTUOUS_API_TOKEN", "key-1")
        monkeypatch.setenv("ETL_WEBHOOK_SECRET", SECRET)
        code, out = invoke("webhooks", "status", "--spec", str(spec), "--check",
                           "--base-url", base)
    finally:
        server.stop()
    assert code == 1, out
    assert "check 501: CRM+ shows payloadUrl" in out and "active NO" in out
    assert "secret matches" in out and SECRET not in out
    assert crm.calls == [("GET", "/api/Webhook/501", None)]
