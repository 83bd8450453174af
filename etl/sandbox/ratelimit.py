"""The organization-wide request budget: a fixed window, reset at the window boundary.

    "5000/hour", "1500/hour", "20/second", "100/minute", "10/5s" (N per 5 seconds), "none"

Windows are aligned to the Unix epoch (an hourly budget resets on the hour), which is what the
real API's `X-RateLimit-Reset` (Unix seconds) suggests.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

UNITS = {"second": 1.0, "sec": 1.0, "s": 1.0, "minute": 60.0, "min": 60.0, "m": 60.0,
         "hour": 3600.0, "h": 3600.0, "day": 86400.0, "d": 86400.0}
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


def parse_rate(spec: str) -> tuple[int, float] | None:
    """`"5000/hour"` -> (5000, 3600.0); `"none"` -> None. Raises ValueError when unreadable."""
    text = spec.strip().lower()
    if text in {"none", "off", "unlimited", ""}:
        return None
    m = _SPEC.match(text)
    unit = m and (UNITS.get(m.group(3)) or UNITS.get(m.group(3).rstrip("s")))
    if not m or unit is None:
        raise ValueError(
            f"rate limit {spec!r} is not N/unit (e.g. 5000/hour, 20/second, 10/5s, none)"
        )
    count = int(m.group(1))
    factor = float(m.group(2)) if m.group(2) else 1.0
    if count < 1 or factor <= 0:
        raise ValueError(f"rate limit {spec!r} must allow at least 1 request per window")
    return count, unit * factor


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # Unix seconds of the window's end
    retry_after: int  # whole seconds, >= 1 (only meaningful when not allowed)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]


class FixedWindowLimiter:
    """One budget for the whole organization, shared by all its keys. Thread-safe."""

    def __init__(self, spec: str, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = -1.0
        self._used = 0
        self.configure(spec)

    def configure(self, spec: str) -> None:
        parsed = parse_rate(spec)
        with self._lock:
            self.spec = spec
            self._rate = parsed
            self._window_start = -1.0
            self._used = 0

    def _roll(self, now: float) -> tuple[int, float]:
        assert self._rate is not None
        limit, window = self._rate
        start = math.floor(now / window) * window
        if start != self._window_start:
            self._window_start, self._used = start, 0
        return limit, start + window

    def take(self) -> Decision | None:
        """Spend one request of the budget; None when there is no limit."""
        return self._decide(spend=True)

    def peek(self) -> Decision | None:
        """The current budget without spending (for unauthenticated answers)."""
        return self._decide(spend=False)

    def _decide(self, *, spend: bool) -> Decision | None:
        with self._lock:
            if self._rate is None:
                return None
            now = self._clock()
            limit, end = self._roll(now)
            allowed = self._used < limit
            if spend and allowed:
                self._used += 1
            remaining = max(0, limit - self._used)
            retry_after = max(1, math.ceil(end - now))
            return Decision(allowed, limit, remaining, math.ceil(end), retry_after)
