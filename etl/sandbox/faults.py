"""Switchable faults, deterministic for a given seed.

    "http500=0.05,http503=0.02,reset=0.01,slow=0.01,slow_seconds=5,burst429=3,seed=42"
    "http500_after_store=0.1"           stored, then answered 500 (the nasty real-world case)
    "slow_after_store=0.1"              stored, then answered only after slow_seconds (a client
                                        with a shorter timeout never learns it was stored)
    "reset_after_store=0.1"             stored, then the connection reset without an answer
    "no_batch_gifts=1"                  POST /api/v2/Gift/Transactions answers 404
    "no_batch_contacts=1"               POST /api/Contact/Batch answers 404
    "string_numbers=1"                  numbers in read responses come back as strings
    "sunset=/api/Gift/Transaction|/api/Contact/Find,deprecation=/api/Contact"  (path prefixes)

Every request that passes authentication and the rate limit draws exactly one number from a
`random.Random(seed)`; the probabilities are consecutive bands of [0, 1). So the sequence of
faults depends only on the seed and the order of requests, not on which faults are switched on.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, fields
from typing import Any

BANDS = ("http500", "http503", "reset", "slow", "http500_after_store", "slow_after_store",
         "reset_after_store")
AFTER_STORE = ("http500_after_store", "slow_after_store", "reset_after_store")
FLAGS = ("no_batch_gifts", "no_batch_contacts", "string_numbers")


@dataclass(frozen=True)
class FaultSettings:
    http500: float = 0.0
    http503: float = 0.0
    reset: float = 0.0
    slow: float = 0.0
    http500_after_store: float = 0.0
    slow_after_store: float = 0.0
    reset_after_store: float = 0.0
    slow_seconds: float = 5.0
    burst429: int = 0
    no_batch_gifts: bool = False
    no_batch_contacts: bool = False
    string_numbers: bool = False
    sunset: tuple[str, ...] = ()
    deprecation: tuple[str, ...] = ()
    sunset_date: str = "Sun, 31 Dec 2028 23:59:59 GMT"
    seed: int = 0


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a flag: {value!r}")


def _paths(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return tuple(p.strip() for p in str(value).split("|") if p.strip())


def parse_faults(spec: str | dict[str, Any] | FaultSettings | None) -> FaultSettings:
    """Read a `--faults` string (or a dict of the same names) into settings."""
    if isinstance(spec, FaultSettings):
        return spec
    items: dict[str, Any] = {}
    if isinstance(spec, dict):
        items = dict(spec)
    elif spec:
        for part in spec.split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"fault {part.strip()!r} is not name=value")
            items[name.strip()] = value.strip()
    known = {f.name for f in fields(FaultSettings)}
    values: dict[str, Any] = {}
    for name, value in items.items():
        if name not in known:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
        try:
            if name in BANDS:
                values[name] = float(value)
                if not 0.0 <= values[name] <= 1.0:
                    raise ValueError("a share between 0 and 1")
            elif name in FLAGS:
                values[name] = _flag(value)
            elif name in ("sunset", "deprecation"):
                values[name] = _paths(value)
            elif name in ("burst429", "seed"):
                values[name] = int(value)
            elif name == "slow_seconds":
                values[name] = float(value)
            else:
                values[name] = str(value)
        except ValueError as exc:
            raise ValueError(f"fault {name}={value!r}: {exc}") from None
    settings = FaultSettings(**values)
    if sum(getattr(settings, b) for b in BANDS) > 1.0:
        raise ValueError(f"the shares of {', '.join(BANDS)} add up to more than 1")
    return settings


class Faults:
    """The live fault plan of one server. Thread-safe; `configure` may be called at runtime."""

    def __init__(self, spec: str | dict[str, Any] | FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(spec)

    def configure(self, spec: str | dict[str, Any] | FaultSettings | None) -> None:
        """Replace every fault (and restart the random sequence from the seed)."""
        settings = parse_faults(spec)
        with self._lock:
            self.settings = settings
            self._rng = random.Random(settings.seed)  # noqa: S311 - not crypto
            self._burst = settings.burst429

    def update(self, **changes: Any) -> None:
        """Change some faults, keeping the others and the random sequence."""
        merged = parse_faults({**_as_dict(self.settings), **changes})
        with self._lock:
            self.settings = merged
            if "burst429" in changes:
                self._burst = merged.burst429
            if "seed" in changes:
                self._rng = random.Random(merged.seed)  # noqa: S311

    def burst(self, n: int) -> None:
        """The next `n` requests get 429 with Retry-After: 1."""
        with self._lock:
            self._burst = n

    def draw(self, *, is_write: bool) -> str | None:
        """The fault for the next request, or None."""
        with self._lock:
            u = self._rng.random()
            if self._burst > 0:
                self._burst -= 1
                return "burst429"
            s = self.settings
            edge = 0.0
            for band in BANDS:
                edge += getattr(s, band)
                if u < edge:
                    if band in AFTER_STORE and not is_write:
                        return None
                    return band
            return None

    def headers_for(self, path: str) -> list[tuple[bytes, bytes]]:
        s = self.settings
        out: list[tuple[bytes, bytes]] = []
        if any(_under(path, p) for p in s.sunset):
            out.append((b"sunset", s.sunset_date.encode()))
        if any(_under(path, p) for p in s.deprecation):
            out.append((b"deprecation", b"true"))
        return out


def _under(path: str, prefix: str) -> bool:
    return prefix == "*" or path.lower().startswith(prefix.lower())


def _as_dict(settings: FaultSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}

