"""The sandbox's configuration and the organization it pretends to be (from `org_seed.json`)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

BatchMode = Literal["reject_all", "accept_valid"]
BATCH_MODES: tuple[str, ...] = ("reject_all", "accept_valid")
SEED_PATH = Path(__file__).with_name("org_seed.json")


@dataclass(frozen=True)
class Org:
    """The sandbox's organization: the reference lists that writes are validated against."""

    id: int
    name: str
    timezone: str
    contact_types: tuple[str, ...]
    method_types: tuple[str, ...]
    gift_types: tuple[str, ...]
    non_cash_gift_types: tuple[str, ...]
    contact_custom_fields: tuple[dict[str, Any], ...] = ()
    gift_custom_fields: tuple[dict[str, Any], ...] = ()
    projects: tuple[dict[str, Any], ...] = ()

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, name: str | None = None, timezone: str | None = None
    ) -> Org:
        data = json.loads(Path(path or SEED_PATH).read_text(encoding="utf-8"))
        return cls(
            id=int(data["id"]),
            name=name or data["organizationName"],
            timezone=timezone or data["organizationTimeZone"],
            contact_types=tuple(data["contactTypes"]),
            method_types=tuple(data["contactMethodTypes"]),
            gift_types=tuple(data["giftTypes"]),
            non_cash_gift_types=tuple(data["nonCashGiftTypes"]),
            contact_custom_fields=tuple(data.get("contactCustomFields", ())),
            gift_custom_fields=tuple(data.get("giftCustomFields", ())),
            projects=tuple(data.get("projects", ())),
        )


@dataclass
class SandboxConfig:
    """Everything `running_sandbox(**config)` and `etl sandbox` accept.

    Mutable on purpose: the app reads it on every request, so a test can flip `batch_mode` or
    `max_batch` on a running server (`handle.config.batch_mode = "accept_valid"`).
    Faults and the rate limit have their own setters on the handle.
    """

    api_key: str | None = None
    readonly_key: str | None = None
    rate_limit: str = "5000/hour"
    faults: str | dict[str, Any] | None = None
    state_path: str | Path | None = None
    batch_mode: BatchMode = "reject_all"
    max_batch: int = 100
    organization_name: str | None = None
    organization_timezone: str | None = None
    org_seed: str | Path | None = None
    webhook_attempts: int = 3
    webhook_backoff: float = 0.05
    webhook_timeout: float = 5.0
    clock: Callable[[], float] = time.time
    generated_keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode must be one of {', '.join(BATCH_MODES)}")
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not self.api_key:
            self.api_key = secrets.token_urlsafe(24)
            self.generated_keys.add("api_key")
        if not self.readonly_key:
            self.readonly_key = secrets.token_urlsafe(24)
            self.generated_keys.add("readonly_key")
        if self.api_key == self.readonly_key:
            raise ValueError("the read-only key must differ from the API key")

    def org(self) -> Org:
        return Org.load(
            self.org_seed, name=self.organization_name, timezone=self.organization_timezone
        )


def mask(key: str) -> str:
    """A key as it may be printed: never more than its first 4 characters."""
    return key[:4] + "..." if len(key) >= 12 else "****"
