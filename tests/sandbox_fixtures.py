"""Pytest fixtures for the local CRM+ sandbox (etl.sandbox).

    sandbox           a running sandbox (handle), reset to a fresh state for each test
    sandbox_server    the session's one sandbox server behind `sandbox` (rate limit "none")
    webhook_receiver  a tiny HTTP server on 127.0.0.1 that records what it receives

Test modules import them with `from sandbox_fixtures import ...  # noqa: F401` until
tests/conftest.py imports them for everyone.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from etl.sandbox.server import SandboxHandle, running_sandbox


@pytest.fixture(name="sandbox_server", scope="session")
def sandbox_server_fixture() -> Iterator[SandboxHandle]:
    with running_sandbox(rate_limit="none") as handle:
        yield handle


@pytest.fixture(name="sandbox")
def sandbox_fixture(sandbox_server: SandboxHandle) -> Iterator[SandboxHandle]:
    sandbox_server.reset()
    yield sandbox_server
    sandbox_server.reset()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST; answers with the statuses queued in `answers` (then 200)."""

    url: str
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.answers.pop(0) if self.answers else 200


@pytest.fixture(name="webhook_receiver")
def webhook_receiver_fixture() -> Iterator[WebhookReceiver]:
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(receiver.next_status())
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def gift(transaction_id: str, amount: Any = 25, **fields: Any) -> dict[str, Any]:
    """A valid v2 gift transaction (no transactionSource: batches inherit it)."""
    base: dict[str, Any] = {
        "transactionId": transaction_id, "amount": amount, "giftDate": "2024-03-01",
        "giftType": "Check",
        "contact": {"referenceId": "D-" + transaction_id, "firstname": "Ada", "lastname":
                    "Lovelace", "email": f"{transaction_id.lower()}@example.org",
                    "address": {"postal": "07001"}},
    }
    base.update(fields)
    return base


def contact(reference_id: str, **fields: Any) -> dict[str, Any]:
    """A valid flat Contact Transaction."""
    base: dict[str, Any] = {
        "referenceSource": "LegacyCRM", "referenceId": reference_id, "contactType": "Household",
        "firstName": "Bruce", "lastName": "Wayne", "emailType": "Home Email",
        "email": f"{reference_id.lower()}@wayne.example", "postal": "07001",
    }
    base.update(fields)
    return base
