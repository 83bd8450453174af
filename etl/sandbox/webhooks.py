"""Webhook subscriptions and deliveries (virtuous-api.md, "Webhooks" and "Deliveries").

A subscription is ONE object per receiver: `{"payloadUrl", "secret", "contactCreate": true,
"giftCreate": true, ..., "active": true}`, one boolean per event, camelCase. As in a C# model a
boolean left out is false, so a subscription without `"active": true` delivers nothing.

A delivery is a POST of JSON to the payloadUrl, the event name PascalCase: one record as
`{"event": "GiftCreate", "gift": {...}}`, several from one batch run as
`{"event": "GiftCreate", "models": [{...}, ...]}` (bare records, at most `webhook_bulk_max`).
With a secret it carries `X-Virtuous-Signature: base64(HMAC-SHA256(secret, raw body))` (the real
header name is not documented). Records leave out transactionSource/transactionId and
contactReferences unless `webhook_keys`. Non-2xx answers (4xx too) and connection errors are
retried (bounded attempts, doubling backoff). Deliveries only go to loopback addresses.
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

from etl.sandbox.state import SandboxState
from etl.sandbox.views import delivered

# Every event a subscription may name (DV crm/webhooks/event-types); the batch fires the first
# three, the others are accepted and kept so a client can subscribe to them.
EVENTS = ("contactCreate", "contactUpdate", "giftCreate", "contactDelete", "giftUpdate",
          "giftDelete", "recurringGiftCreate", "recurringGiftUpdate")
FIRED = {"contactCreate": "contact", "contactUpdate": "contact", "giftCreate": "gift"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: Base64 of the HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def pascal(event: str) -> str:
    return event[0].upper() + event[1:]


def check_subscription(body: Any) -> dict[str, list[str]]:
    """ASP.NET modelState errors for a subscription body (empty: valid)."""
    if not isinstance(body, dict):
        return {"subscription": ["The subscription must be an object."]}
    errors: dict[str, list[str]] = {}
    fields = {str(k).lower(): v for k, v in body.items()}
    url = fields.get("payloadurl")
    parts = urlsplit(url) if isinstance(url, str) else None
    if url is None:
        errors["subscription.payloadUrl"] = ["The PayloadUrl field is required."]
    elif parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        errors["subscription.payloadUrl"] = ["PayloadUrl must be an http(s) URL."]
    elif parts.hostname not in LOOPBACK:
        errors["subscription.payloadUrl"] = [
            "The sandbox only delivers to loopback (127.0.0.1) URLs."]
    secret = fields.get("secret")
    if secret is not None and not isinstance(secret, str):
        errors["subscription.secret"] = ["Secret must be a string."]
    for name in (*EVENTS, "active"):
        value = fields.get(name.lower())
        if value is not None and not isinstance(value, bool):
            errors[f"subscription.{name}"] = [f"{pascal(name)} must be true or false."]
    return errors


def subscription(body: dict[str, Any]) -> dict[str, Any]:
    """A checked body as stored: payloadUrl, secret, one boolean per event, active."""
    fields = {str(k).lower(): v for k, v in body.items()}
    return {"payloadUrl": fields["payloadurl"], "secret": fields.get("secret"),
            **{name: fields.get(name.lower()) is True for name in EVENTS},
            "active": fields.get("active") is True}


def public(sub: dict[str, Any]) -> dict[str, Any]:
    """A subscription as the API shows it: never the secret."""
    return {"id": sub["id"], "payloadUrl": sub["payloadUrl"],
            **{name: bool(sub.get(name)) for name in EVENTS}, "active": bool(sub["active"])}


def wanted(state: SandboxState) -> set[str]:
    """The events some active subscription wants (the batch collects only these)."""
    return {name for sub in state.webhooks() if sub.get("active") and "payloadUrl" in sub
            for name in FIRED if sub.get(name)}


def bodies(event: str, records: list[dict[str, Any]], keys: bool,
           bulk_max: int) -> list[dict[str, Any]]:
    """The delivery bodies for one subscription's records of one event."""
    kind = FIRED[event]
    shaped = [delivered(kind, r, keys) for r in records]
    if len(shaped) == 1:
        return [{"event": pascal(event), kind: shaped[0]}]
    return [{"event": pascal(event), "models": shaped[i:i + bulk_max]}
            for i in range(0, len(shaped), bulk_max)]


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
            response = await client.post(sub["payloadUrl"], content=body, headers=headers)
            status, error = response.status_code, None
            if 200 <= status < 300:
                break
        except httpx.HTTPError as exc:
            status, error = None, type(exc).__name__
        if tries < attempts:
            await asyncio.sleep(backoff * 2 ** (tries - 1))
    ok = status is not None and 200 <= status < 300
    return {"subscriptionId": sub["id"], "event": payload["event"], "url": sub["payloadUrl"],
            "records": len(payload.get("models", [None])), "attempts": tries, "status": status,
            "error": error, "ok": ok, "body_sha256": hashlib.sha256(body).hexdigest()}


async def deliver(state: SandboxState, events: list[tuple[str, dict[str, Any]]], *,
                  attempts: int, backoff: float, timeout: float, keys: bool = False,
                  bulk_max: int = 100) -> dict[str, int]:
    """Deliver one run's events: per event kind (in order of first occurrence), per active
    subscription that wants it, one body (or several of `bulk_max`); record each delivery."""
    subs = [s for s in state.webhooks() if s.get("active") and "payloadUrl" in s]
    delivered_n = failed = 0
    if not events or not subs:
        return {"webhooksDelivered": 0, "webhooksFailed": 0}
    order = list(dict.fromkeys(name for name, _ in events))
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        for name in order:
            records = [r for n, r in events if n == name]
            for sub in subs:
                if not sub.get(name):
                    continue
                for payload in bodies(name, records, keys, bulk_max):
                    record = await _deliver_one(client, sub, payload, attempts, backoff)
                    state.add_to("deliveries", record)
                    delivered_n += record["ok"]
                    failed += not record["ok"]
    return {"webhooksDelivered": delivered_n, "webhooksFailed": failed}
