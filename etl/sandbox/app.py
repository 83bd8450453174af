"""The sandbox as an ASGI app: a Starlette router behind the gateway (auth, limit, faults)."""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from etl.sandbox.config import SandboxConfig
from etl.sandbox.faults import Faults
from etl.sandbox.gateway import Gateway
from etl.sandbox.ratelimit import FixedWindowLimiter
from etl.sandbox.resolve import run_batch
from etl.sandbox.respond import ApiError, api_error_handler
from etl.sandbox.routes_read import ROUTES as READ_ROUTES
from etl.sandbox.routes_write import ROUTES as WRITE_ROUTES
from etl.sandbox.state import SandboxState
from etl.sandbox.webhooks import deliver


class Sandbox:
    """One sandbox organization: its config, reference lists, state, budget and faults."""

    def __init__(self, config: SandboxConfig, state: SandboxState | None = None) -> None:
        self.config = config
        self.initial = dataclasses.replace(config)
        self.org = config.org()
        self.state = state or SandboxState(config.state_path)
        self.limiter = FixedWindowLimiter(config.rate_limit, config.clock)
        self.faults = Faults(config.faults)
        assert config.api_key and config.readonly_key
        self._keys = [(config.api_key.encode(), "main"), (config.readonly_key.encode(), "readonly")]

    def authenticate(self, header: bytes | None) -> str | None:
        """The key's label ("main", "readonly") for `Authorization: Bearer <key>`, else None."""
        if not header:
            return None
        scheme, _, token = header.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return None
        token = token.strip()
        label = None
        for key, name in self._keys:  # compare with every key, in constant time
            if hmac.compare_digest(token, key):
                label = name
        return label

    async def run_batch(self) -> dict[str, Any]:
        """Resolve every held transaction, then deliver the webhooks; answers a summary."""
        wanted = {w["event"] for w in self.state.webhooks()}
        summary, events = run_batch(self.state, wanted)
        stats = await deliver(self.state, events, attempts=self.config.webhook_attempts,
                              backoff=self.config.webhook_backoff,
                              timeout=self.config.webhook_timeout)
        return {**summary, **stats}


def build_app(config: SandboxConfig | None = None, **options: Any) -> tuple[ASGIApp, Sandbox]:
    """The ASGI app to serve, and the runtime behind it (state, limiter, faults)."""
    runtime = Sandbox(config or SandboxConfig(**options))
    router = Starlette(routes=[*WRITE_ROUTES, *READ_ROUTES],
                       exception_handlers={ApiError: api_error_handler})
    router.state.sandbox = runtime
    return Gateway(runtime, router), runtime
