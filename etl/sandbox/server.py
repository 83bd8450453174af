"""Serving the sandbox: in the foreground (`etl sandbox`) or in a background thread (tests).

    with running_sandbox(rate_limit="20/second", faults="http500=0.1,seed=7") as sb:
        httpx.post(sb.base_url + "/api/v2/Gift/Transaction", json=gift, headers=sb.headers())
        sb.run_batch()
        assert len(sb.state.gifts_for("LegacyCRM", "G-1")) == 1  # imported exactly once

Only ever binds 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from etl.base import serving
from etl.sandbox.app import Sandbox, build_app
from etl.sandbox.config import SWITCHES, SandboxConfig
from etl.sandbox.faults import Faults
from etl.sandbox.state import SandboxState

HOST = "127.0.0.1"


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (port 0: an ephemeral port; read it back)."""
    return serving.bind(HOST, port, backlog=2048, inheritable=True)


def make_server(app: Any) -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, ws="none", lifespan="off", http="h11",
        interface="asgi3", server_header=False, timeout_graceful_shutdown=3,
    )
    return uvicorn.Server(config)


@dataclass
class SandboxHandle:
    """A running sandbox: where it is, its keys, and its live state and switches."""

    base_url: str
    port: int
    api_key: str
    readonly_key: str
    runtime: Sandbox

    @property
    def state(self) -> SandboxState:
        return self.runtime.state

    @property
    def config(self) -> SandboxConfig:
        return self.runtime.config

    @property
    def faults(self) -> Faults:
        return self.runtime.faults

    def headers(self, *, readonly: bool = False) -> dict[str, str]:
        key = self.readonly_key if readonly else self.api_key
        return {"Authorization": f"Bearer {key}"}

    def client(self, *, readonly: bool = False, **options: Any) -> httpx.Client:
        """An httpx client with the base URL and the key set (close it, or use `with`)."""
        options.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.base_url, headers=self.headers(readonly=readonly),
                            trust_env=False, **options)

    def run_batch(self, timeout: float | None = 120.0) -> dict[str, Any]:
        """Run the nightly batch now (over HTTP, on the server's thread); returns the summary."""
        response = httpx.post(self.base_url + "/sandbox/run-batch", headers=self.headers(),
                              timeout=timeout, trust_env=False)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def _control(self, path: str, body: dict[str, Any], ok: tuple[int, ...]) -> dict[str, Any]:
        response = httpx.post(self.base_url + path, json=body, headers=self.headers(),
                              timeout=120.0, trust_env=False)
        if response.status_code not in ok:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def import_parked(self, contact_id: int | None = None, **selector: Any) -> dict[str, Any]:
        """Staff import parked items (Match / Update Needed), e.g.
        `sb.import_parked(transactionSource="S", transactionId="G-1")`; they become records.
        Answers the outcomes; raises when an item cannot be imported (e.g. no contact)."""
        body = {**selector, **({"contactId": contact_id} if contact_id is not None else {})}
        return self._control("/sandbox/imports/import", body, (200,))

    def delete_parked(self, **selector: Any) -> int:
        """Staff delete parked items: they never become records. Answers how many."""
        return int(self._control("/sandbox/imports/delete", selector, (200,))["deleted"])

    def set_faults(self, spec: str | dict[str, Any] | None) -> None:
        """Replace every fault, e.g. `"http500=0.2,seed=3"`; None switches them all off."""
        self.runtime.faults.configure(spec)

    def set_rate_limit(self, spec: str) -> None:
        """A new budget (`"5/second"`, `"none"`); the current window starts afresh."""
        self.runtime.limiter.configure(spec)

    def reset(self) -> None:
        """Back to a fresh start: empty state, and the faults, budget and batch switches the
        sandbox was started with (lets one server serve many tests)."""
        initial = self.runtime.initial
        self.state.clear()
        self.set_faults(initial.faults)
        self.set_rate_limit(initial.rate_limit)
        for name in SWITCHES:
            setattr(self.config, name, getattr(initial, name))


@contextmanager
def running_sandbox(port: int = 0, **config: Any) -> Iterator[SandboxHandle]:
    """Start the sandbox on 127.0.0.1 in a background thread; stop it cleanly on exit.

    `config` is `SandboxConfig`'s fields: api_key, readonly_key, rate_limit ("5000/hour",
    "20/second", "none"), faults ("http500=0.05,seed=42" or a dict), state_path, batch_mode
    ("reject_all" | "accept_valid"), max_batch, organization_name, organization_timezone,
    org_seed, webhook_attempts, webhook_backoff, webhook_timeout, clock, and the switches for
    what the docs leave open: dedupe_transactions, query_without_groups ("refuse" | "ignore"),
    query_options_hide, webhook_keys, webhook_bulk_max, gift_types, park_share, park_ids,
    park_seed (docs/sandbox.md).
    """
    cfg = SandboxConfig(**config)
    app, runtime = build_app(cfg)
    sock = bind(port)
    bound = sock.getsockname()[1]
    server = serving.ServerThread(make_server(app), sock, "sandbox")
    try:
        server.start()
        assert cfg.api_key and cfg.readonly_key
        yield SandboxHandle(f"http://{HOST}:{bound}", bound, cfg.api_key, cfg.readonly_key,
                            runtime)
    finally:
        server.stop()
        runtime.state.close()


def serve(cfg: SandboxConfig, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve in the foreground until interrupted (Ctrl+C / SIGTERM).

    `on_ready(base_url)` runs once the socket listens (connections queue until uvicorn accepts).
    """
    app, runtime = build_app(cfg)
    sock = bind(port)
    on_ready(f"http://{HOST}:{sock.getsockname()[1]}")
    try:
        serving.serve_foreground(make_server(app), sock)
    finally:
        runtime.state.close()
