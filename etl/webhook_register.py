"""Wiring the webhook receiver to a pipeline, and subscribing it in CRM+ (`POST /api/Webhook`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from etl.client import CrmClient
from etl.reconcile import key_prefix
from etl.spec import load_spec
from etl.submit import default_ledger_path
from etl.webhook_receiver import SUBSCRIBE, ReceiverConfig


def receiver_config(spec_path: Path, *, ledger_path: Path | None = None, sandbox: bool = False,
                    secret: str | None = None, max_body: int | None = None) -> ReceiverConfig:
    """The receiver of one pipeline: its ledger (as `etl run` finds it), kind and key source."""
    loaded = load_spec(spec_path)
    spec = loaded.spec
    cfg = ReceiverConfig(
        ledger_path=ledger_path or default_ledger_path(loaded, sandbox=sandbox),
        kind="gift" if spec.target == "gift_transaction" else "contact",
        source=spec.keys.source, prefix=key_prefix(loaded), pipeline=spec.name,
        secret=secret.encode("utf-8") if secret else None)
    if max_body is not None:
        cfg.max_body = max_body
    return cfg


async def register_webhooks(base_url: str, token: str, url: str, kind: str,
                            secret: str | None = None,
                            transport: httpx.AsyncBaseTransport | None = None
                            ) -> list[dict[str, Any]]:
    """Subscribe `url` to the events of `kind` ("gift": giftCreate; "contact": contactCreate
    and contactUpdate), skipping subscriptions that already exist. Returns what was created
    (as CRM+ shows it: never the secret)."""
    created: list[dict[str, Any]] = []
    async with CrmClient(base_url, token, transport=transport) as client:
        listing = await client.send("webhook_list")
        have = {(str(s.get("event", "")).casefold(), s.get("url"))
                for s in (listing.data if isinstance(listing.data, list) else [])
                if isinstance(s, dict)}
        for event in SUBSCRIBE[kind]:
            if (event.casefold(), url) in have:
                continue
            body: dict[str, str] = {"event": event, "url": url}
            if secret:
                body["secret"] = secret
            reply = await client.send("webhook_create", json.dumps(body).encode())
            shown = reply.data if isinstance(reply.data, dict) else {"event": event, "url": url}
            created.append({k: v for k, v in shown.items() if k != "secret"})
    return created
