"""Wiring the webhook receiver to a pipeline, and its ONE CRM+ subscription (`/api/Webhook`).

    receiver_config(pipeline)                   the receiver of a pipeline (ledger, kind, keys)
    subscribe(base_url, token, ledger, url, kind, secret) -> Registration
    check_subscriptions(base_url, token, ledger, secret)  -> [(stored row, Check)]
    webhook_status(ledger)                      what the ledger holds: subscriptions, deliveries

CRM+ has no list route (`GET /api/Webhook` does not exist), so the id `POST /api/Webhook` answers
is kept in the ledger (`webhook_subscriptions`), and a later registration checks that id with
`GET /api/Webhook/{id}`: same payloadUrl, our events on and active -> nothing to do; inactive ->
`PUT /api/Webhook/{id}/Active?active=true`; another payloadUrl, an event off or (when CRM+ shows
it) another secret -> `PUT /api/Webhook/{id}` with the full subscription; 404 -> a new `POST`.
The secret is sent, and compared with what `GET` shows, but never stored, logged or returned.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from etl.base.errors import EtlError
from etl.confirm.reconcile import key_prefix
from etl.confirm.store import iso
from etl.confirm.webhook_parse import crm_id
from etl.confirm.webhook_receiver import SUBSCRIBE, ReceiverConfig
from etl.load.client import CrmClient, EndpointMissing, coerce_bool
from etl.load.ledger import Ledger
from etl.spec.pipeline import Pipeline

TABLE = ("CREATE TABLE IF NOT EXISTS webhook_subscriptions (id TEXT PRIMARY KEY,"
         " payload_url TEXT NOT NULL, events TEXT NOT NULL, created_at TEXT NOT NULL,"
         " last_checked_at TEXT, last_check TEXT, active INTEGER, current INTEGER NOT NULL)")
TOGGLES = ("contactCreate", "contactUpdate", "giftCreate", "giftUpdate", "giftDelete",
           "projectCreate", "projectUpdate", "projectDelete", "formSubmission",
           "contactNoteCreate", "contactNoteUpdate", "contactNoteDelete", "eventCreate",
           "eventUpdate", "eventDelete")  # DV crm/webhooks/event-types


def receiver_config(loaded: Pipeline, *, secret: str | None = None, insecure: bool = False,
                    **limits: Any) -> ReceiverConfig:
    """The receiver of one pipeline: its ledger (as `etl run` finds it), kind and key source.
    `limits`: max_body, max_models, max_per_minute (ReceiverConfig fields)."""
    spec = loaded.spec
    path = loaded.ledger_path
    with Ledger(path, lock=False) as ledger:  # another feed's ledger is refused at start
        ledger.claim(target=spec.target, source=spec.keys.source, pipeline=spec.name)
    return ReceiverConfig(
        ledger_path=path,
        kind="gift" if spec.target == "gift_transaction" else "contact",
        source=spec.keys.source, prefix=key_prefix(loaded), pipeline=spec.name,
        secret=secret.encode("utf-8") if secret else None, insecure=insecure,
        **{k: v for k, v in limits.items() if v is not None})


def subscription_body(url: str, secret: str, kind: str) -> dict[str, Any]:
    """The documented subscription object: payloadUrl, secret, one boolean per event, active."""
    return {"payloadUrl": url, "secret": secret, **dict.fromkeys(SUBSCRIBE[kind], True),
            "active": True}


@dataclass(frozen=True)
class Check:
    """What `GET /api/Webhook/{id}` showed (never the secret: only whether it matches ours)."""

    found: bool
    payload_url: str | None = None
    active: bool | None = None
    events: tuple[str, ...] = ()
    secret_matches: bool | None = None  # None: CRM+ did not show a secret

    def differences(self, url: str, kind: str) -> list[str]:
        out = [] if self.payload_url == url else ["payloadUrl"]
        out += [f"{e} off" for e in SUBSCRIBE[kind] if e not in self.events]
        return out + (["secret"] if self.secret_matches is False else [])

    def line(self) -> str:
        if not self.found:
            return "CRM+ answers 404: the subscription is gone"
        secret = {True: "matches", False: "DIFFERS", None: "not shown"}[self.secret_matches]
        active = {True: "yes", False: "NO", None: "not shown"}[self.active]
        return (f"CRM+ shows payloadUrl {self.payload_url}, active {active}, events "
                f"{', '.join(self.events) or 'none'}, secret {secret}")


@dataclass(frozen=True)
class Registration:
    id: str
    payload_url: str
    events: tuple[str, ...]
    action: str  # created | recreated | unchanged | reactivated | updated
    detail: str = ""

    def line(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return (f"webhook subscription {self.id} {self.action}{extra}: {self.payload_url}, "
                f"events {', '.join(self.events)}")


async def fetch(client: CrmClient, sub_id: str, secret: str | None) -> Check:
    """`GET /api/Webhook/{id}`, reduced to what may be shown."""
    try:
        reply = await client.send("webhook_get", path_args={"id": sub_id})
    except EndpointMissing:
        return Check(found=False)
    data = reply.data if isinstance(reply.data, dict) else {}
    shown = data.get("secret")
    matches = (hmac.compare_digest(shown.encode(), secret.encode())
               if isinstance(shown, str) and secret is not None else None)
    url = data.get("payloadUrl")
    return Check(found=True, payload_url=url if isinstance(url, str) else None,
                 active=coerce_bool(data.get("active")),
                 events=tuple(t for t in TOGGLES if coerce_bool(data.get(t))),
                 secret_matches=matches)


def _open(ledger_path: Path) -> Ledger:
    ledger = Ledger(ledger_path, lock=False)
    ledger.db.execute(TABLE)
    return ledger


def stored(ledger: Ledger, *, current_only: bool = True) -> list[dict[str, Any]]:
    cur = ledger.db.execute("SELECT * FROM webhook_subscriptions WHERE current=1 OR ?"
                            " ORDER BY created_at, id", (int(not current_only),))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


async def subscribe(base_url: str, token: str, ledger_path: Path, url: str, kind: str,
                    secret: str, *, transport: httpx.AsyncBaseTransport | None = None,
                    now: datetime | None = None) -> Registration:
    """Make sure ONE active CRM+ subscription sends `kind`'s events to `url` (module docstring)."""
    if not secret:
        raise EtlError("registering a webhook needs a secret: CRM+ signs deliveries with it")
    at = iso(now or datetime.now(UTC))
    events = SUBSCRIBE[kind]
    body = json.dumps(subscription_body(url, secret, kind)).encode()
    with _open(ledger_path) as ledger:
        known = stored(ledger)
        async with CrmClient(base_url, token, transport=transport) as client:
            for row in known:
                check = await fetch(client, row["id"], secret)
                if not check.found:
                    _record(ledger, row["id"], at, "gone (404)", active=None, current=False)
                    continue
                diffs = check.differences(url, kind)
                if diffs:
                    await client.send("webhook_update", body, path_args={"id": row["id"]})
                    action, detail = "updated", ", ".join(diffs)
                elif check.active is not True:
                    await client.send("webhook_active", path_args={"id": row["id"]},
                                      params={"active": "true"})
                    action, detail = "reactivated", ""
                else:
                    action, detail = "unchanged", ""
                with ledger.tx():
                    ledger.db.execute("UPDATE webhook_subscriptions SET payload_url=?, events=?"
                                      " WHERE id=?", (url, ",".join(events), row["id"]))
                _record(ledger, row["id"], at, action, active=True, current=True)
                return Registration(row["id"], url, events, action, detail)
            reply = await client.send("webhook_create", body)
        data = reply.data if isinstance(reply.data, dict) else {}
        sub_id = crm_id(data.get("id"))
        if sub_id is None:
            raise EtlError("POST /api/Webhook answered no usable subscription id: the "
                           "subscription may exist; find it in CRM+ (Settings > Webhooks) before"
                           " registering again (CRM+ has no route that lists subscriptions)")
        with ledger.tx():
            ledger.db.execute("INSERT OR REPLACE INTO webhook_subscriptions VALUES"
                              " (?,?,?,?,?,?,?,1)", (sub_id, url, ",".join(events), at, at,
                                                     "created", 1))
        return Registration(sub_id, url, events, "recreated" if known else "created",
                            "the stored one is gone" if known else "")


def _record(ledger: Ledger, sub_id: str, at: str, check: str, *, active: bool | None,
            current: bool) -> None:
    with ledger.tx():
        ledger.db.execute("UPDATE webhook_subscriptions SET last_checked_at=?, last_check=?,"
                          " active=?, current=? WHERE id=?",
                          (at, check, None if active is None else int(active), int(current),
                           sub_id))


async def check_subscriptions(base_url: str, token: str, ledger_path: Path,
                              secret: str | None, *,
                              transport: httpx.AsyncBaseTransport | None = None,
                              now: datetime | None = None
                              ) -> list[tuple[dict[str, Any], Check]]:
    """GET every current stored subscription; record when and what was seen."""
    at = iso(now or datetime.now(UTC))
    out: list[tuple[dict[str, Any], Check]] = []
    with _open(ledger_path) as ledger:
        async with CrmClient(base_url, token, transport=transport) as client:
            for row in stored(ledger):
                check = await fetch(client, row["id"], secret)
                diffs = check.differences(row["payload_url"], _kind(row["events"]))
                if not check.found:
                    verdict = "gone (404)"
                elif diffs:
                    verdict = "differs: " + ", ".join(diffs)
                else:
                    verdict = "ok" if check.active else "inactive"
                _record(ledger, row["id"], at, verdict, active=check.active,
                        current=check.found)
                out.append((row, check))
    return out


def _kind(events: str) -> str:
    return "gift" if "giftCreate" in events.split(",") else "contact"


def webhook_status(ledger_path: Path) -> dict[str, Any]:
    """The stored subscriptions and a summary of the deliveries recorded in the ledger."""
    with _open(ledger_path) as ledger:
        subs = stored(ledger, current_only=False)
        cur = ledger.db.execute(
            "SELECT outcome, signed, COUNT(*), SUM(times), MAX(COALESCE(last_at, received_at)),"
            " SUM(rows_confirmed) FROM webhook_deliveries GROUP BY 1, 2 ORDER BY 1, 2")
        deliveries = [{"outcome": o, "signed": s, "deliveries": n, "received": t, "last_at": a,
                       "rows_confirmed": c} for o, s, n, t, a, c in cur.fetchall()]
    return {"ledger": str(ledger_path), "subscriptions": subs, "deliveries": deliveries}
