"""The request budget: evenly spaced request slots, corrected by the API's rate-limit headers.

Requests, not CPU, are what this tool spends. CRM+ gives an organization one budget per hour
(5,000 requests), shared by every integration. A limiter that starts with a full bucket would send
the whole hour in the first seconds and starve the others, so this one hands out *slots*:

- pace: one request every `3600 / (requests_per_hour * (1 - reserve_share))` seconds, with a
  small burst tolerance (GCRA, i.e. a token bucket of `burst` tokens that starts nearly empty);
- correction: every answer's `X-RateLimit-Remaining` / `X-RateLimit-Reset` give the truth for
  the whole organization. What is left above the reserve (`reserve_share` of the limit) is spread
  evenly until the reset; when nothing is left, nobody sends until the reset;
- 429: everybody waits `Retry-After` plus jitter (never a hot loop).

The clock, the wall clock, sleep and the random source are injectable for tests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from etl.base.errors import TransientError
from etl.load.client import coerce_number

T = TypeVar("T")

HOUR = 3600.0


class RequestBudget:
    """Hands out request slots: `await acquire()` before a request, `release()` after it."""

    def __init__(self, *, requests_per_hour: float | None, reserve_share: float = 0.0,
                 burst: int = 1, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        self.reserve_share = reserve_share
        self.interval = (HOUR / (requests_per_hour * (1.0 - reserve_share))
                         if requests_per_hour else 0.0)
        self.tolerance = self.interval * max(0, burst - 1)
        self._clock, self._wall, self._sleep, self._rng = clock, wall, sleep, rng
        self._lock = asyncio.Lock()
        self._tat = clock()  # GCRA: theoretical arrival time of the next request
        self._paused_until = 0.0
        self.limit: int | None = None
        self.remaining: int | None = None  # our estimate of the organization's budget left
        self.reset: float | None = None  # Unix seconds
        self.window = HOUR  # the server's window length, learnt from successive resets
        self.inflight = 0
        self.sent = 0
        self.throttled = 0
        self.waited = 0.0

    def _floor(self) -> float:
        """What the other integrations may still want of this window: the reserve share of the
        limit, for the part of the window still ahead (they spend over the window too)."""
        if not self.limit or self.reset is None:
            return 0.0
        ahead = min(1.0, max(0.0, (self.reset - self._wall()) / self.window))
        return self.reserve_share * self.limit * ahead

    def current_interval(self) -> float:
        """Seconds between slots now: our share, or slower when the organization's budget left
        (above the reserve) must last until the reset."""
        interval = self.interval
        if self.remaining is not None and self.reset is not None:
            left = self.reset - self._wall()
            usable = self.remaining - self._floor()
            if left > 0 and usable > 0:
                interval = max(interval, left / usable)
        return interval

    def _earliest(self, now: float) -> float:
        at = max(now, self._tat - self.tolerance, self._paused_until)
        if self.remaining is not None and self.reset is not None:
            wall_left = self.reset - self._wall()
            if wall_left <= 0:
                self.remaining = None  # a new window: optimistic until the next answer
            elif self.remaining - self._floor() < 1:
                at = max(at, now + wall_left + 0.05 * self._rng())
        return at

    async def acquire(self) -> None:
        """Wait for the next slot (in order: one waiter at a time)."""
        async with self._lock:
            while True:
                now = self._clock()
                at = self._earliest(now)
                if at <= now:
                    break
                self.waited += at - now
                await self._sleep(at - now)
            self._tat = max(self._tat, now) + self.current_interval()
            self.inflight += 1
            self.sent += 1
            if self.remaining is not None:
                self.remaining -= 1

    def release(self) -> None:
        """A request has its answer (or failed)."""
        self.inflight = max(0, self.inflight - 1)

    def observe(self, headers: httpx.Headers) -> None:
        """Correct the estimate from an answer's X-RateLimit-* headers (call before release)."""
        remaining = coerce_number(headers.get("x-ratelimit-remaining"))
        reset = coerce_number(headers.get("x-ratelimit-reset"))
        limit = coerce_number(headers.get("x-ratelimit-limit"))
        if limit is not None:
            self.limit = int(limit)
        if remaining is None or reset is None:
            return
        if reset < 1e9:  # some servers send seconds-until-reset
            reset += self._wall()
        # Other requests of ours still in flight will spend budget the header does not show yet.
        fresh = int(remaining) - max(0, self.inflight - 1)
        if self.reset is not None and self.reset + 0.5 < reset <= self.reset + HOUR:
            self.window = reset - self.reset
        if self.reset is None or self.remaining is None or reset > self.reset + 0.5:
            self.remaining, self.reset = fresh, reset
        else:
            self.remaining = min(self.remaining, fresh)

    def pause(self, retry_after: float | None) -> float:
        """A 429: nobody sends before `Retry-After` plus jitter; returns the pause in seconds."""
        self.throttled += 1
        wait = (retry_after if retry_after is not None else 1.0) + 0.1 + 0.4 * self._rng()
        self._paused_until = max(self._paused_until, self._clock() + wait)
        return wait

    def eta(self, requests: int) -> float:
        """Seconds the budget needs for `requests` more requests at the current pace."""
        return requests * self.current_interval()


def backoff(attempt: int, *, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    return rng() * min(cap, base * (2 ** max(0, attempt - 1)))


class InDoubt(TransientError):
    """A write failed after it may have reached the server (read timeout, reset after the body
    was sent, a 5xx): it may be stored, so it is not retried; its rows are in doubt."""


class Throttled(TransientError):
    """The server kept answering 429 (or 503 + Retry-After) for longer than the wait limit."""


DEFAULT_MAX_WAIT = 900.0  # seconds of Retry-After one request may wait in total


async def budgeted(
    call: Callable[[], Awaitable[T]],
    budget: RequestBudget,
    *,
    max_attempts: int,
    base: float,
    cap: float,
    rng: Callable[[], float],
    retry_unknown: bool = True,
    max_wait: float = DEFAULT_MAX_WAIT,
) -> T:
    """The one retry loop, for reads and writes: one request within the budget, retried when
    that is safe.

    - "come back later" (429, or 503 with Retry-After): the whole budget pauses for Retry-After;
      not an attempt, bounded by `max_wait` seconds in total (then Throttled);
    - a failure before the request could arrive (refused connection, DNS, connect timeout):
      backoff with full jitter, bounded by `max_attempts`;
    - a failure after it may have arrived (read timeout, reset, other 5xx): retried like the
      above when `retry_unknown` (reads; writes that merge by key), else InDoubt at once."""
    attempt = 0
    waited = 0.0
    while True:
        await budget.acquire()
        try:
            return await call()
        except TransientError as exc:
            if exc.may_have_arrived and not retry_unknown:
                raise InDoubt(str(exc), status=exc.status) from None
            if exc.status == 429 or (not exc.may_have_arrived and exc.retry_after is not None):
                waited += budget.pause(exc.retry_after)
                if waited > max_wait:
                    raise Throttled(f"{exc}; rate limited for {waited:.0f} s, more than the "
                                    f"limit of {max_wait:.0f} s", status=exc.status,
                                    may_have_arrived=False) from None
                continue
            attempt += 1
            if attempt >= max_attempts:
                raise
            await asyncio.sleep(backoff(attempt, base=base, cap=cap, rng=rng))
        finally:
            budget.release()
