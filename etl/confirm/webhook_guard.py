"""Keeping the webhook receiver answering under idle, slow or many connections, and floods.

uvicorn's h11 server keeps a connection that never sends a request open forever (its keep-alive
timer starts only after a first answer), and `limit_concurrency` answers 503 to every request
once that many connections are open: 65 idle sockets were enough to refuse every delivery. So:

- `guarded_protocol(limits)`: an h11 protocol whose connections get `header_timeout` seconds from
  connect (or from their last answer) to send a complete request head, and `request_timeout`
  seconds from then to be answered; slower ones are closed. At most `per_client` connections per
  client address and `max_connections` in all: a new connection over a cap closes the longest-idle
  connection (no request in progress) to make room, or is closed itself when every one is busy.
- `Window`: at most N events per minute (rows the receiver stores), with the Retry-After to send.
- `Throttled`: a warning logged at most once per `every` seconds per topic, with a count.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("etl.webhooks")


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 100
    per_client: int = 20
    header_timeout: float = 5.0  # connect (or last answer) -> a complete request head
    request_timeout: float = 30.0  # request head -> answer sent (the body read has its own bound)


class Throttled:
    """Log a warning about a topic at most once per `every` seconds, saying how many were held."""

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.clock = every, clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, topic: str, message: str, *args: Any) -> None:
        now = self.clock()
        if now - self._last.get(topic, -math.inf) < self.every:
            self._held[topic] = self._held.get(topic, 0) + 1
            return
        held = self._held.pop(topic, 0)
        self._last[topic] = now
        log.warning(message + (f" (and {held} more like it)" if held else ""), *args)


class Window:
    """At most `limit` events in any 60 seconds."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.clock = limit, clock
        self._times: deque[float] = deque()

    def retry_after(self) -> int | None:
        """None when one more event fits now; else the seconds until one does."""
        now = self.clock()
        while self._times and now - self._times[0] >= 60:
            self._times.popleft()
        if len(self._times) < self.limit:
            return None
        return max(1, math.ceil(60 - (now - self._times[0])))

    def add(self) -> None:
        self._times.append(self.clock())


_drops = Throttled()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and caps described in the module docstring."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.dropped = False
        self.idle_since = self.loop.time()
        self._deadline: asyncio.TimerHandle | None = None
        self._cycle_seen: Any = None
        self._arm(self.limits.header_timeout)
        self._enforce_caps()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._cycle_seen:
            self._cycle_seen = self.cycle  # a request head arrived: answer within the bound
            self._arm(self.limits.request_timeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request (handle_events)
        if self.is_idle() and not self.transport.is_closing():
            self.idle_since = self.loop.time()
            self._arm(self.limits.header_timeout)

    def is_idle(self) -> bool:
        """No request in progress: never sent one, or its answer is complete."""
        return self.cycle is None or self.cycle.response_complete

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            assert self._deadline is not None
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        what = "no complete request in time" if self.is_idle() else "request not answered in time"
        self.drop(what)

    def drop(self, why: str) -> None:
        if self.dropped:
            return
        self.dropped = True
        self._disarm()
        host = self.client[0] if self.client else "?"
        _drops.warning(why, "closed a connection from %s: %s", host, why)
        self.transport.close()

    def _peers(self) -> list[GuardedH11Protocol]:
        return [c for c in self.connections
                if isinstance(c, GuardedH11Protocol) and c is not self and not c.dropped]

    def _enforce_caps(self) -> None:
        host = self.client[0] if self.client else None
        same = [c for c in self._peers() if (c.client[0] if c.client else None) == host]
        if len(same) + 1 > self.limits.per_client and not _evict(same):
            self.drop(f"more than {self.limits.per_client} connections from one client, all busy")
            return
        peers = self._peers()
        if len(peers) + 1 > self.limits.max_connections and not _evict(peers):
            self.drop(f"more than {self.limits.max_connections} connections, all busy")


def _evict(candidates: list[GuardedH11Protocol]) -> bool:
    idle = [c for c in candidates if c.is_idle()]
    if not idle:
        return False
    min(idle, key=lambda c: c.idle_since).drop("idle, closed to make room for a new connection")
    return True


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class (uvicorn's `http=`) bound to these limits."""
    return type("GuardedH11", (GuardedH11Protocol,), {"limits": limits})
