"""`etl webhooks serve`: a small ASGI receiver (starlette + uvicorn) for CRM+ webhook deliveries.

    POST /webhook   {"event": "GiftCreate", "gift": {...}}          one record
                    {"event": "ContactUpdate", "models": [...]}     many (webhook_parse.py)
    GET  /health

CRM+ retries every non-2xx answer, so only answers a retry can change are 4xx/5xx: a missing or
bad signature (401), a body over `max_body` (413, before it is read in full), a body not received
within `body_timeout` (408), a busy ledger or more than `max_per_minute` stored deliveries (503,
with Retry-After; nothing stored). Everything else is 200 and recorded: malformed or non-object
JSON, JSON nested too deep, unknown events and other pipelines' events as "ignored"; records
without key fields or with ids of the wrong type as "no keys: left for polling" / unusable.

With a secret, `X-Virtuous-Signature` must be the HMAC-SHA256 of the raw body (Base64, or hex as
one Virtuous page says; constant-time compare). A signed record whose keys match this pipeline's
open ledger rows confirms them with its CRM id (etl/confirm/store.py) and is kept for
`etl reconcile`
(`webhook_deliveries`, `webhook_keys`). Without a secret (`insecure=True`) nothing is verified, so
nothing confirms: deliveries are recorded as `unverified` and their keys go to
`webhook_unverified_keys`, which reconciliation never reads. The same body twice changes nothing.
Logs carry event types, counts and CRM ids: never a body, an email, the secret or a signature.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from etl.base.errors import EtlError
from etl.base.serving import ServerThread, bind
from etl.confirm.store import ReconStore, iso, parse_time
from etl.confirm.webhook_guard import ConnectionLimits, Throttled, Window, guarded_protocol
from etl.confirm.webhook_parse import (
    MAX_MODELS,
    Verdict,
    delivery_records,
    event_of,
    parse_body,
    read_record,
    verify_signature,
)
from etl.load.ledger import Ledger

MAX_BODY = 1_000_000
MAX_PER_MINUTE = 600
SIGNATURE = "x-virtuous-signature"
SUBSCRIBE = {"contact": ("contactCreate", "contactUpdate"), "gift": ("giftCreate",)}
HINTS = ("CREATE TABLE IF NOT EXISTS webhook_unverified_keys (delivery_id INTEGER NOT NULL,"
         " key TEXT NOT NULL, kind TEXT NOT NULL, crm_id TEXT, received_at TEXT NOT NULL)")
log = logging.getLogger("etl.webhooks")


@dataclass
class ReceiverConfig:
    """One pipeline's receiver: its ledger, kind ("gift"/"contact"), key source and prefix.
    `secret` None refuses to build unless `insecure` (then deliveries confirm nothing)."""

    ledger_path: Path
    kind: str
    source: str
    prefix: str
    pipeline: str = ""
    secret: bytes | None = None
    insecure: bool = False
    max_body: int = MAX_BODY
    max_models: int = MAX_MODELS
    max_per_minute: int = MAX_PER_MINUTE
    body_timeout: float = 10.0
    busy_timeout: float = 0.5  # waiting for another writer of the ledger, then 503
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic


def _answer(status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status)


class Receiver:
    def __init__(self, cfg: ReceiverConfig) -> None:
        self.cfg = cfg
        self._ledger: Ledger | None = None  # opened in the server's thread
        self.stored = Window(cfg.max_per_minute, cfg.monotonic)
        self.refusals = Window(cfg.max_per_minute, cfg.monotonic)
        self.say = Throttled(clock=cfg.monotonic)

    def store(self) -> ReconStore:
        if self._ledger is None:
            ledger = Ledger(self.cfg.ledger_path, lock=False)
            ledger.db.execute(f"PRAGMA busy_timeout={int(self.cfg.busy_timeout * 1000)}")
            ledger.db.execute(HINTS)
            self._ledger = ledger
        return ReconStore(self._ledger.db)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except sqlite3.OperationalError as exc:  # the ledger is busy: CRM+ retries later
            self.say.warning("busy", "ledger busy (%s): answered 503", type(exc).__name__)
            return _answer(503, error="busy, retry")
        except EtlError as exc:  # e.g. a ledger of a newer schema: keep the delivery coming
            self.say.warning("ledger", "ledger unusable (%s): answered 503", exc)
            return _answer(503, error="ledger unusable, retry")

    async def _handle(self, request: Request) -> Response:
        limit = self.cfg.max_body
        length = request.headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > limit):
            return self._refuse(413, f"body over {limit} bytes", request, "oversize")
        body = bytearray()
        try:
            async with asyncio.timeout(self.cfg.body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        return self._refuse(413, f"body over {limit} bytes", request, "oversize")
        except TimeoutError:
            self.say.warning("slow", "a delivery's body took over %.0f s: answered 408",
                             self.cfg.body_timeout)
            return _answer(408, error="body not received in time")
        raw = bytes(body)
        sha = hashlib.sha256(raw).hexdigest()
        if self.cfg.secret is not None:
            reason = verify_signature(self.cfg.secret, raw, request.headers.get(SIGNATURE))
            if reason:
                return self._refuse(401, reason, request, sha)
        wait = self.stored.retry_after()
        if wait is not None:
            self.say.warning("rate", "over %d deliveries a minute: answered 503, stored nothing",
                             self.cfg.max_per_minute)
            return JSONResponse({"error": "too many deliveries, retry later"}, status_code=503,
                                headers={"Retry-After": str(wait)})
        data, why = parse_body(raw)
        if why is None and not isinstance(data, dict):
            why = "the body is not a JSON object"
        if why is not None:
            return self._ignore(why, sha, None)
        return self._apply(data, sha)

    def _refuse(self, status: int, reason: str, request: Request, sha: str) -> Response:
        host = request.client.host if request.client else "?"
        self.say.warning("refused " + reason, "refused a delivery from %s: %s (HTTP %d)", host,
                         reason, status)
        try:  # bookkeeping only: a busy ledger does not change the answer
            store, now = self.store(), self.cfg.clock()
            with store.tx():
                if store.seen_delivery(sha, at=now, refused=reason):
                    return _answer(status, error=reason)
                if self.refusals.retry_after() is not None:  # a flood: counted in the log only
                    return _answer(status, error=reason)
                store.add_delivery(at=now, event=None, outcome="refused", reason=reason, sha=sha,
                                   signed=None, crm_id=None, keys=[], confirmed=0)
            self.refusals.add()
        except sqlite3.OperationalError:
            self.say.warning("busy refusal", "ledger busy: a refused delivery was not recorded")
        return _answer(status, error=reason)

    def _ignore(self, why: str, sha: str, event: str | None) -> Response:
        log.info("ignored a delivery (%r): %s", event, why)
        store, now = self.store(), self.cfg.clock()
        with store.tx():
            if not store.seen_delivery(sha, at=now):
                store.add_delivery(at=now, event=event, outcome="ignored", reason=why, sha=sha,
                                   signed=self.cfg.secret is not None, crm_id=None, keys=[],
                                   confirmed=0)
                self.stored.add()
        return _answer(200, ok=True, ignored=why)

    def _apply(self, data: dict[str, Any], sha: str) -> Response:
        event, kind = event_of(data)
        if kind != self.cfg.kind:
            why = "unknown event type" if kind is None else f"a {kind} event, not this pipeline's"
            return self._ignore(why, sha, event)
        records, beyond = delivery_records(data, kind, self.cfg.max_models)
        verdicts = [read_record(r, kind, self.cfg.source, self.cfg.prefix) for r in records]
        signed = self.cfg.secret is not None
        store, now = self.store(), self.cfg.clock()
        confirmed = 0
        with store.tx():
            if store.seen_delivery(sha, at=now):
                log.info("delivery %s again: nothing changes", event)
                return _answer(200, ok=True, duplicate=True)
            if signed:
                for record, verdict in zip(records, verdicts, strict=True):
                    confirmed += self._confirm(store, verdict, record, now)
            outcome = ("applied" if confirmed else "unmatched") if signed else "unverified"
            crm = verdicts[0].crm_id if len(verdicts) == 1 else None
            delivery = store.add_delivery(
                at=now, event=event, outcome=outcome, reason=_reason(verdicts, beyond, signed),
                sha=sha, signed=signed, crm_id=crm, keys=[], confirmed=confirmed)
            keys = [(delivery, k, kind, v.crm_id, iso(now)) for v in verdicts if v.crm_id
                    for k in v.keys]
            table = "webhook_keys" if signed else "webhook_unverified_keys"
            store.db.executemany(f"INSERT INTO {table} VALUES (?,?,?,?,?)", keys)  # noqa: S608
            store.db.execute("UPDATE webhook_deliveries SET keys=? WHERE id=?",
                             (len(keys), delivery))
        self.stored.add()
        unusable = sum(v.problem is not None for v in verdicts)
        ids = [v.crm_id for v in verdicts if v.crm_id]
        log.info("delivery %s: %d %s records (%d left for polling, %d beyond the cap), %d rows"
                 " confirmed%s; CRM ids %s", event, len(verdicts), kind, unusable, beyond,
                 confirmed, "" if signed else " (unverified: no secret)",
                 ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else ""))
        for problem, n in Counter(v.problem for v in verdicts if v.problem).items():
            log.info("delivery %s: %d records: %s", event, n, problem)
        return _answer(200, ok=True, confirmed=confirmed, records=len(verdicts),
                       left_for_polling=unusable + beyond, **({} if signed else {
                           "unverified": True}))

    def _confirm(self, store: ReconStore, verdict: Verdict, record: Any, now: datetime) -> int:
        if verdict.problem or not verdict.crm_id:
            return 0
        seen = now
        if self.cfg.kind == "contact":  # proof only for rows sent before the record changed
            stamp = parse_time(record.get("modifiedDateTimeUtc") or record.get(
                "createDateTimeUtc"))
            seen = min(now, stamp) if stamp else now
        done = 0
        for key in verdict.keys:
            ids, _dup = store.found(key, verdict.crm_id, contact=self.cfg.kind == "contact",
                                    seen_at=seen, via="webhook", at=now)
            done += len(ids)
        return done


def _reason(verdicts: list[Verdict], beyond: int, signed: bool) -> str | None:
    problems = Counter(v.problem for v in verdicts if v.problem)
    parts = [] if signed else ["no secret: recorded as a hint, confirms nothing"]
    if len(verdicts) == 1 and problems:
        parts.append(next(iter(problems)))
    else:
        parts += [f"{n} of {len(verdicts)} records: {p}" for p, n in problems.items()]
    if beyond:
        parts.append(f"{beyond} models beyond the cap of {len(verdicts)}: left for polling")
    return "; ".join(parts)[:500] or None


def build_app(cfg: ReceiverConfig) -> Starlette:
    if cfg.secret is None and not cfg.insecure:
        raise ValueError("the webhook receiver needs a secret (or insecure=True: deliveries are"
                         " then recorded as unverified hints and confirm nothing)")
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
    """uvicorn with bounded connections and deadlines (etl/confirm/webhook_guard.py) and no
    access log (no paths, no IPs)."""
    return uvicorn.Server(uvicorn.Config(
        build_app(cfg), log_level="warning", access_log=False, ws="none", lifespan="on",
        http=guarded_protocol(cfg.limits), limit_concurrency=None, server_header=False,
        timeout_keep_alive=max(1, int(cfg.limits.header_timeout)),
        h11_max_incomplete_event_size=16 * 1024, timeout_graceful_shutdown=3))


@dataclass
class ReceiverHandle:
    url: str  # the delivery URL: http://HOST:PORT/webhook
    port: int


@contextmanager
def running_receiver(cfg: ReceiverConfig, *, host: str = "127.0.0.1",
                     port: int = 0) -> Iterator[ReceiverHandle]:
    """The receiver in a background thread (tests, or beside another job); stops on exit."""
    sock = bind(host, port)
    try:
        server = ServerThread(make_server(cfg), sock, "webhook receiver")
    except BaseException:
        sock.close()
        raise
    try:
        server.start()
        bound = sock.getsockname()[1]
        yield ReceiverHandle(f"http://{host}:{bound}/webhook", bound)
    finally:
        server.stop()
