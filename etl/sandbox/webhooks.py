"""Webhook subscriptions and deliveries.

A delivery is a POST of the event's JSON to the subscription's url, with
`X-Virtuous-Signature: base64(HMAC-SHA256(secret, raw body))` when the subscription has a secret.
Non-2xx answers and connection errors are retried (bounded attempts, short doubling backoff).
Deliveries only go to loopback addresses: the sandbox never calls out of the machine.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from etl.sandbox.rules import Detail, detail
from etl.sandbox.state import SandboxState

EVENTS = ("contactCreate", "contactUpdate", "giftCreate")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: Base64 of the HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def check_subscription(body: Any) -> list[Detail]:
    if not isinstance(body, dict):
        return [detail("body", "INVALID_TYPE", "a subscription must be an object")]
    out: list[Detail] = []
    if body.get("event") not in EVENTS:
        out.append(detail("event", "INVALID_VALUE", f"event must be one of {', '.join(EVENTS)}"))
    url = body.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        out.append(detail("url", "INVALID_FORMAT", "url must be an http(s) URL"))
    elif parts.hostname not in LOOPBACK:
        out.append(detail("url", "INVALID_VALUE",
                          "the sandbox only delivers to loopback (127.0.0.1) URLs"))
    secret = body.get("secret")
    if secret is not None and not isinstance(secret, str):
        out.append(detail("secret", "INVALID_TYPE", "secret must be a string"))
    return out


def public(sub: dict[str, Any]) -> dict[str, Any]:
    """A subscription as the API shows it: never the secret."""
    return {"id": sub["id"], "event": sub["event"], "url": sub["url"],
            "hasSecret": bool(sub.get("secret"))}


async def _deliver_one(client: httpx.AsyncClient, sub: dict[str, Any], payload: dict[str, Any],
                       attempts: int, backoff: float) -> dict[str, Any]:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = {"content-type": "application/json"}
    if sub.get("secret"):
        headers["x-virtuous-signature"] = sign(sub["secret"], body)
    status: int | None = None
    error: str | None = None
    tries = 0
    for tries in range(1, max(1, attempts) + 1):
        try:
            response = await client.post(sub["url"], content=body, headers=headers)
            status, error = response.status_code, None
            if 200 <= status < 300:
                break
        except httpx.HTTPError as exc:
            status, error = None, type(exc).__name__
        if tries < attempts:
            await asyncio.sleep(backoff * 2 ** (tries - 1))
    ok = status is not None and 200 <= status < 300
    return {"subscriptionId": sub["id"], "event": payload["event"], "url": sub["url"],
            "attempts": tries, "status": status, "error": error, "ok": ok,
            "body_sha256": hashlib.sha256(body).hexdigest()}


async def deliver(state: SandboxState, events: list[tuple[str, dict[str, Any]]], *,
                  attempts: int, backoff: float, timeout: float) -> dict[str, int]:
    """Deliver every event to every subscription of its kind, in order; record each delivery."""
    subs = state.webhooks()
    delivered = failed = 0
    if not events or not subs:
        return {"webhooksDelivered": 0, "webhooksFailed": 0}
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        for name, payload in events:
            for sub in subs:
                if sub["event"] != name:
                    continue
                record = await _deliver_one(client, sub, payload, attempts, backoff)
                state.add_to("deliveries", record)
                delivered += record["ok"]
                failed += not record["ok"]
    return {"webhooksDelivered": delivered, "webhooksFailed": failed}
