"""Paced, retried reads for the pre-match (the loader's `RequestBudget`) and the organization
check that comes before any of them."""

from __future__ import annotations

import json
import random
from typing import Any

from etl.base.errors import EtlError
from etl.load.budget import RequestBudget, budgeted
from etl.load.client import CrmClient, EndpointMissing, Reply, check_organization
from etl.spec.parse import LoadedSpec

PAGE = 1000  # the Query endpoints' largest page (take <= 1000)


class MatchRefused(EtlError):
    """A pre-match that must not start: over `match.max_requests`, or no key for a refresh."""

    exit_code = 2


class Reader:
    """Paced, retried reads (Query/FullContact, QueryOptions, Contact/Find,
    Organization/Current); `requests` counts every request sent, retries included."""

    def __init__(self, base_url: str, token: str, loaded: LoadedSpec, *,
                 requests_per_hour: float | None, transport: Any = None,
                 backoff_base: float = 0.5, backoff_cap: float = 30.0) -> None:
        load = loaded.spec.load
        self.budget = RequestBudget(requests_per_hour=requests_per_hour,
                                    reserve_share=load.reserve_share, burst=2)
        self.client = CrmClient(base_url, token, timeout=load.timeout_seconds,
                                transport=transport, observe=self.budget.observe)
        self.base_url = self.client.base_url
        self.max_attempts = load.max_attempts
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.requests = 0
        self.rng = random.Random()  # noqa: S311 - jitter, not secrets

    async def call(self, endpoint: str, body: bytes | dict[str, Any] | None = None,
                   params: dict[str, str | int] | None = None) -> Reply | None:
        """The 2xx Reply, None for a 404; other errors raise (after bounded retries)."""
        content = json.dumps(body).encode() if isinstance(body, dict) else body

        async def send() -> Reply | None:
            self.requests += 1
            try:
                return await self.client.send(endpoint, content, params=params)
            except EndpointMissing:
                return None

        return await budgeted(send, self.budget, max_attempts=self.max_attempts,
                              base=self.backoff_base, cap=self.backoff_cap, rng=self.rng.random)

    async def organization(self, expected: str | None) -> str:
        """The key's organization; OrganizationMismatch when the spec names another."""
        return check_organization(await self.call("organization"), expected,
                                  "pre-match against it")
