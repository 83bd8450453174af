"""`etl webhooks serve`: a small ASGI receiver (starlette + uvicorn) for CRM+ webhook deliveries.

    POST /webhook   {"event": "ContactCreate" | "ContactUpdate", "contact": {...}}
                    {"event": "GiftCreate", "gift": {...}}
    GET  /health

Per delivery, with bounded work: a body over `max_body` (1 MB) -> 413 before it is read in full;
with a secret, `X-Virtuous-Signature` must be the HMAC-SHA256 of the raw body (Base64, or hex as
one Virtuous page says; constant-time compare) -> else 401 and a logged reason; the event type is
matched case-insensitively (unknown ones: 200, ignored); the contact's `contactReferences`
(at most 100) or the gift's transactionSource + transactionId are matched to this pipeline's
ledger keys, open rows become `confirmed` with the CRM id (etl/recon_store.py), and the delivery
is recorded in the ledger (`webhook_deliveries`, `webhook_keys`) so `etl reconcile` can use it
later. The same body twice changes nothing (it is counted). Logs carry event types, counts and
CRM ids: never a body, an email, the secret or a signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from etl.ledger import Ledger
from etl.recon_poll import text_id
from etl.recon_store import ReconStore
from etl.serving import ServerThread, bind

MAX_BODY = 1_000_000
MAX_REFS = 100
SIGNATURE = "x-virtuous-signature"
EVENTS = {"contactcreate": "contact", "contactupdate": "contact", "giftcreate": "gift"}
SUBSCRIBE = {"contact": ("contactCreate", "contactUpdate"), "gift": ("giftCreate",)}
log = logging.getLogger("etl.webhooks")


def verify_signature(secret: bytes, body: bytes, header: str | None) -> str | None:
    """None when `header` signs `body`; else why not (never the values themselves)."""
    value = (header or "").strip()
    if not value:
        return "unsigned delivery"
    if len(value) > 200:
        return "malformed signature"
    if value[:7].lower() == "sha256=":
        value = value[7:]
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    candidates: list[bytes] = []
    with suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(value, validate=True))
    if len(value) == 64:
        with suppress(ValueError):
            candidates.append(bytes.fromhex(value))
    ok = False
    for candidate in candidates:  # every candidate compared: no early exit
        ok |= hmac.compare_digest(candidate, expected)
    return None if ok else "signature mismatch"


@dataclass
class ReceiverConfig:
    """One pipeline's receiver: its ledger, kind ("gift"/"contact"), key source and prefix."""

    ledger_path: Path
    kind: str
    source: str
    prefix: str
    pipeline: str = ""
    secret: bytes | None = None
    max_body: int = MAX_BODY
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


class Receiver:
    def __init__(self, cfg: ReceiverConfig) -> None:
        self.cfg = cfg
        self._ledger: Ledger | None = None  # opened in the server's thread

    def store(self) -> ReconStore:
        if self._ledger is None:
            self._ledger = Ledger(self.cfg.ledger_path, lock=False)
        return ReconStore(self._ledger.db)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def _record(self, outcome: str, reason: str | None, sha: str | None, *, event: str | None
                = None, signed: bool | None = None) -> None:
        store, now = self.store(), self.cfg.clock()
        with store.tx():
            refused = reason if outcome == "refused" else None
            if sha is None or not store.seen_delivery(sha, at=now, refused=refused):
                store.add_delivery(at=now, event=event, outcome=outcome, reason=reason, sha=sha,
                                   signed=signed, crm_id=None, keys=[], confirmed=0)

    def _refuse(self, status: int, reason: str, request: Request, sha: str | None) -> Response:
        host = request.client.host if request.client else "?"
        log.warning("refused a delivery from %s: %s (HTTP %d)", host, reason, status)
        self._record("refused", reason, sha)
        return JSONResponse({"error": reason}, status_code=status)

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except sqlite3.OperationalError as exc:  # the ledger is busy: CRM+ retries later
            log.warning("ledger busy (%s): answered 503", type(exc).__name__)
            return JSONResponse({"error": "busy, retry"}, status_code=503)

    async def _handle(self, request: Request) -> Response:
        limit = self.cfg.max_body
        length = request.headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > limit):
            return self._refuse(413, f"body over {limit} bytes", request, "oversize")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return self._refuse(413, f"body over {limit} bytes", request, "oversize")
        raw = bytes(body)
        sha = hashlib.sha256(raw).hexdigest()
        if self.cfg.secret is not None:
            reason = verify_signature(self.cfg.secret, raw, request.headers.get(SIGNATURE))
            if reason:
                return self._refuse(401, reason, request, sha)
        try:
            data = json.loads(raw)
        except ValueError:
            return self._refuse(400, "malformed JSON", request, sha)
        if not isinstance(data, dict):
            return self._refuse(400, "the body is not a JSON object", request, sha)
        return self._apply(data, sha)

    def _apply(self, data: dict[str, Any], sha: str) -> Response:
        signed = self.cfg.secret is not None
        event = str(data.get("event") or data.get("eventType") or "")[:60]
        kind = EVENTS.get(event.casefold())
        if kind != self.cfg.kind:
            why = "unknown event type" if kind is None else f"a {kind} event, not this pipeline's"
            log.info("ignored a delivery (%r): %s", event, why)
            self._record("ignored", why, sha, event=event, signed=signed)
            return JSONResponse({"ok": True, "ignored": why})
        record = data.get(kind)
        record = record if isinstance(record, dict) else {}
        crm_id = text_id(record.get("id"))
        keys = self._keys(record)
        store, now = self.store(), self.cfg.clock()
        confirmed = 0
        with store.tx():
            if store.seen_delivery(sha, at=now):
                log.info("delivery %s again: nothing changes", event)
                return JSONResponse({"ok": True, "duplicate": True})
            if crm_id:
                for key in keys:
                    ids, _dup = store.found(key, crm_id, contact=kind == "contact", seen_at=now,
                                            via="webhook", at=now)
                    confirmed += len(ids)
            outcome = "applied" if confirmed else "unmatched"
            store.add_delivery(at=now, event=event, outcome=outcome,
                               reason=None if crm_id else "no record id", sha=sha, signed=signed,
                               crm_id=crm_id, keys=[(k, kind) for k in keys], confirmed=confirmed)
        log.info("delivery %s: %s id %s, %d keys of this pipeline, %d rows confirmed", event,
                 kind, crm_id, len(keys), confirmed)
        return JSONResponse({"ok": True, "confirmed": confirmed})

    def _keys(self, record: dict[str, Any]) -> list[str]:
        want = self.cfg.source.casefold()
        if self.cfg.kind == "gift":
            ident = text_id(record.get("transactionId"))
            src = str(record.get("transactionSource") or "").casefold()
            return [self.cfg.prefix + ident] if ident and src == want else []
        refs = record.get("contactReferences")
        keys: list[str] = []
        for ref in (refs if isinstance(refs, list) else [])[:MAX_REFS]:
            if isinstance(ref, dict) and str(ref.get("source") or "").casefold() == want:
                ident = text_id(ref.get("id"))
                if ident and self.cfg.prefix + ident not in keys:
                    keys.append(self.cfg.prefix + ident)
        return keys


def build_app(cfg: ReceiverConfig) -> Starlette:
    receiver = Receiver(cfg)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            receiver.close()

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "pipeline": cfg.pipeline})

    return Starlette(routes=[Route("/webhook", receiver.handle, methods=["POST"]),
                             Route("/health", health, methods=["GET"])], lifespan=lifespan)


def make_server(cfg: ReceiverConfig) -> uvicorn.Server:
    """uvicorn with bounded concurrency (floods get 503) and no access log (no paths, no IPs)."""
    return uvicorn.Server(uvicorn.Config(
        build_app(cfg), log_level="warning", access_log=False, ws="none", lifespan="on",
        http="h11", limit_concurrency=64, server_header=False, timeout_graceful_shutdown=3))


@dataclass
class ReceiverHandle:
    url: str  # the delivery URL: http://HOST:PORT/webhook
    port: int


@contextmanager
def running_receiver(cfg: ReceiverConfig, *, host: str = "127.0.0.1",
                     port: int = 0) -> Iterator[ReceiverHandle]:
    """The receiver in a background thread (tests, or beside another job); stops on exit."""
    sock = bind(host, port)
    server = ServerThread(make_server(cfg), sock, "webhook receiver")
    try:
        server.start()
        bound = sock.getsockname()[1]
        yield ReceiverHandle(f"http://{host}:{bound}/webhook", bound)
    finally:
        server.stop()
