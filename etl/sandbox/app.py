"""The sandbox as an ASGI app: a Starlette router behind the gateway (auth, limit, faults)."""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from etl.sandbox.config import Org, SandboxConfig
from etl.sandbox.faults import Faults
from etl.sandbox.gateway import Gateway
from etl.sandbox.ratelimit import FixedWindowLimiter
from etl.sandbox.resolve import import_parked, run_batch
from etl.sandbox.respond import ApiError, InvalidModel, api_error_handler, invalid_model_handler
from etl.sandbox.routes_control import ROUTES as CONTROL_ROUTES
from etl.sandbox.routes_direct import ROUTES as DIRECT_ROUTES
from etl.sandbox.routes_query import ROUTES as QUERY_ROUTES
from etl.sandbox.routes_read import ROUTES as READ_ROUTES
from etl.sandbox.routes_webhook import ROUTES as WEBHOOK_ROUTES
from etl.sandbox.routes_write import ROUTES as WRITE_ROUTES
from etl.sandbox.state import SandboxState
from etl.sandbox.webhooks import deliver, wanted


class Sandbox:
    """One sandbox organization: its config, reference lists, state, budget and faults."""

    def __init__(self, config: SandboxConfig, state: SandboxState | None = None) -> None:
        self.config = config
        self.initial = dataclasses.replace(config)
        self._org = config.org()
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

    @property
    def org(self) -> Org:
        """The organization, with the gift types the config names now (a test may flip them)."""
        types = self.config.gift_types
        return dataclasses.replace(self._org, gift_types=types) if types else self._org

    async def _deliver(self, events: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
        c = self.config
        return await deliver(self.state, events, attempts=c.webhook_attempts,
                             backoff=c.webhook_backoff, timeout=c.webhook_timeout,
                             keys=c.webhook_keys, bulk_max=c.webhook_bulk_max)

    async def run_batch(self) -> dict[str, Any]:
        """Resolve every held transaction, then deliver the webhooks; answers a summary."""
        summary, events = run_batch(self.state, wanted(self.state), self.config, self.org)
        return {**summary, **await self._deliver(events)}

    async def import_parked(self, seqs: list[int], contact_id: int | None) -> dict[str, Any]:
        """Staff import parked items (Match / Update Needed), then deliver the webhooks."""
        summary, events = import_parked(self.state, wanted(self.state), self.config, self.org,
                                        seqs, contact_id)
        return {**summary, **await self._deliver(events)}


def build_app(config: SandboxConfig | None = None, **options: Any) -> tuple[ASGIApp, Sandbox]:
    """The ASGI app to serve, and the runtime behind it (state, limiter, faults)."""
    runtime = Sandbox(config or SandboxConfig(**options))
    router = Starlette(
        routes=[*WRITE_ROUTES, *DIRECT_ROUTES, *QUERY_ROUTES, *READ_ROUTES, *WEBHOOK_ROUTES,
                *CONTROL_ROUTES],
        exception_handlers={ApiError: api_error_handler, InvalidModel: invalid_model_handler})
    router.router.redirect_slashes = False  # the API answers 404, it does not redirect
    router.state.sandbox = runtime
    return Gateway(runtime, router), runtime
