"""The layer in front of the routes: authentication, rate limit, faults, headers, request log.

Order per request: read the body -> 401 without a valid key (spends no budget) -> 429 when the
organization's budget is spent -> the drawn fault (429 burst, reset, slow, 500/503) -> 403 for a
write with the read-only key -> the route -> an after-store fault on a stored write (500, a late
answer, or a reset). Every answer carries the X-RateLimit-* headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from etl.sandbox.faults import AFTER_STORE
from etl.sandbox.ratelimit import Decision
from etl.sandbox.respond import AUTH_DENIED, RequestContext, dumps, envelope

MAX_BODY = 32 * 1024 * 1024
READ_POSTS = {"/api/Contact/Query", "/api/Gift/Query", "/api/Contact/Query/FullContact",
              "/api/Gift/Query/FullGift"}
BATCH_404 = {"no_batch_gifts": "/api/v2/Gift/Transactions",
             "no_batch_contacts": "/api/Contact/Batch"}
Headers = list[tuple[bytes, bytes]]


async def _read_body(receive: Receive) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes, headers: Headers,
                  media_type: str = "application/json") -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    if body:
        all_headers.append((b"content-type", media_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def _abort(send: Send) -> None:
    """Drop the connection without an answer (a TCP reset where the server lets us)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:  # pragma: no cover - only under a server that hides its transport
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    for _ in range(3):  # let the server notice the disconnect before the app returns
        await asyncio.sleep(0)


async def _client_gone_within(receive: Receive, seconds: float) -> bool:
    """Wait `seconds`; True as soon as the client disconnects (e.g. its timeout fired)."""
    try:
        message = await asyncio.wait_for(receive(), timeout=seconds)
    except TimeoutError:
        return False
    return message.get("type") == "http.disconnect"


class Gateway:
    def __init__(self, runtime: Any, inner: ASGIApp) -> None:
        self.rt = runtime
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        headers = dict(scope["headers"])
        ctx = RequestContext(key=self.rt.authenticate(headers.get(b"authorization")), body=body)
        scope["sandbox"] = ctx
        if path == "/sandbox/health":
            await self.inner(scope, self._replay(body, receive), send)
            return
        seen = {"logged": False}

        def log(status: int) -> None:
            seen["logged"] = True
            self.rt.state.log_request(
                method=method, path=path, key=ctx.key, status=status,
                body_sha256=hashlib.sha256(body).hexdigest(), items=ctx.items,
                fault=ctx.extra.get("fault"))

        async def logging_send(message: Message) -> None:
            # Log before the answer leaves, so a client that got its answer sees the record.
            if message["type"] == "http.response.start" and not seen["logged"]:
                log(int(message["status"]))
            await send(message)

        status = await self._handle(scope, receive, logging_send, send, ctx, method, path)
        if not seen["logged"]:
            log(status)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, raw_send: Send,
                      ctx: RequestContext, method: str, path: str) -> int:
        """Answer the request; returns the status (0: reset, 499: client gone) for the log."""
        rt = self.rt
        if ctx.key is None:
            await _answer(send, 401, AUTH_DENIED.encode(), _rate(rt.limiter.peek()),
                          "text/plain; charset=utf-8")
            return 401
        if path.startswith("/sandbox/"):
            return await self._route(scope, receive, send, raw_send, ctx,
                                     _rate(rt.limiter.peek()), None)
        decision = rt.limiter.take()
        base = _rate(decision) + rt.faults.headers_for(path)
        if decision is not None and not decision.allowed:
            await self._too_many(send, base, decision.retry_after)
            return 429
        is_write = method in ("POST", "PUT", "PATCH", "DELETE") and path not in READ_POSTS
        fault = ctx.extra["fault"] = rt.faults.draw(is_write=is_write)
        if fault == "burst429":
            await self._too_many(send, base, 1)
            return 429
        if fault == "reset":
            await _abort(raw_send)
            return 0
        if fault == "slow" and await _client_gone_within(receive, rt.faults.settings.slow_seconds):
            return 499
        if fault == "http500":
            await _answer(send, 500, dumps({"message": "An error has occurred."}), base)
            return 500
        if fault == "http503":
            await _answer(send, 503, b"Service Unavailable", base, "text/plain; charset=utf-8")
            return 503
        if is_write and ctx.key == "readonly":
            await _answer(send, 403, dumps(envelope(
                "FORBIDDEN", "this key's permission group may not write")), base)
            return 403
        settings = rt.faults.settings
        if any(getattr(settings, flag) and path == p for flag, p in BATCH_404.items()):
            ctx.extra["fault"] = "no_batch"
            await _answer(send, 404, b"", base)
            return 404
        after_store = fault if fault in AFTER_STORE else None
        return await self._route(scope, receive, send, raw_send, ctx, base, after_store)

    async def _too_many(self, send: Send, headers: Headers, retry_after: int) -> None:
        await _answer(send, 429, dumps(envelope("RATE_LIMITED", "API rate limit exceeded")),
                      [*headers, (b"retry-after", str(retry_after).encode())])

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _route(self, scope: Scope, receive: Receive, send: Send, raw_send: Send,
                     ctx: RequestContext, extra: Headers, after_store: str | None) -> int:
        """Run the routes and add headers. With an `after_store` fault, a stored write (200)
        is answered 500, only after `slow_seconds`, or not at all (the connection reset)."""
        seen = {"status": 0, "swallow": False}
        delay = self.rt.faults.settings.slow_seconds

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                if after_store and message["status"] == 200:
                    if after_store == "http500_after_store":
                        seen["status"], seen["swallow"] = 500, True
                        await _answer(send, 500, dumps({"message": "An error has occurred."}),
                                      extra)
                        return
                    if after_store == "reset_after_store":
                        seen["status"], seen["swallow"] = 0, True
                        await _abort(raw_send)
                        return
                    if await _client_gone_within(receive, delay):
                        seen["status"], seen["swallow"] = 499, True
                        return
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif seen["swallow"]:
                return
            await send(message)

        await self.inner(scope, self._replay(ctx.body, receive), wrapped)
        return int(seen["status"])


def _rate(decision: Decision | None) -> Headers:
    return decision.headers() if decision is not None else []
