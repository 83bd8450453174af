"""The sandbox's configuration and the organization it pretends to be (from `org_seed.json`)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BatchMode = Literal["reject_all", "accept_valid"]
BATCH_MODES: tuple[str, ...] = ("reject_all", "accept_valid")
GroupsMode = Literal["refuse", "ignore"]
GROUPS_MODES: tuple[str, ...] = ("refuse", "ignore")
# Fields a test may flip on a running server; `SandboxHandle.reset()` puts them back.
SWITCHES = (
    "batch_mode", "max_batch", "dedupe_transactions", "query_without_groups",
    "query_options_hide", "webhook_keys", "webhook_bulk_max", "gift_types", "park_share",
    "park_ids", "park_seed", "webhook_attempts", "webhook_backoff", "webhook_timeout",
)
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
    # What the docs leave open, each on its pessimistic side by default (docs/sandbox.md):
    dedupe_transactions: bool = False  # False: every copy of a transactionId becomes a gift
    query_without_groups: GroupsMode = "refuse"  # "ignore": the whole organization, unfiltered
    query_options_hide: tuple[str, ...] = ()  # Query parameters this organization lacks
    webhook_keys: bool = False  # True: deliveries carry transactionSource/Id, contactReferences
    webhook_bulk_max: int = 100  # most records in one `models` delivery
    gift_types: tuple[str, ...] | None = None  # None: the org seed's giftTypes
    park_share: float = 0.0  # share of gifts the batch parks in "Update Needed"
    park_ids: tuple[str, ...] = ()  # transactionIds the batch always parks
    park_seed: int = 0  # which gifts `park_share` picks (deterministic)
    clock: Callable[[], float] = time.time
    generated_keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode must be one of {', '.join(BATCH_MODES)}")
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.organization_timezone:
            try:
                ZoneInfo(self.organization_timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {self.organization_timezone!r} "
                                 "(an IANA name such as America/Chicago)") from None
        if self.query_without_groups not in GROUPS_MODES:
            raise ValueError(f"query_without_groups must be one of {', '.join(GROUPS_MODES)}")
        if not 0.0 <= self.park_share <= 1.0:
            raise ValueError("park_share must be between 0 and 1")
        if self.webhook_bulk_max < 1:
            raise ValueError("webhook_bulk_max must be at least 1")
        self.query_options_hide = tuple(self.query_options_hide)
        self.park_ids = tuple(str(i) for i in self.park_ids)
        if self.gift_types is not None:
            self.gift_types = tuple(t for t in self.gift_types if t)
            if not self.gift_types:
                raise ValueError("gift_types must name at least one gift type")
        if not self.api_key:
            self.api_key = secrets.token_urlsafe(24)
            self.generated_keys.add("api_key")
        if not self.readonly_key:
            self.readonly_key = secrets.token_urlsafe(24)
            self.generated_keys.add("readonly_key")
        if self.api_key == self.readonly_key:
            raise ValueError("the read-only key must differ from the API key")

    def org(self) -> Org:
        org = Org.load(
            self.org_seed, name=self.organization_name, timezone=self.organization_timezone
        )
        return replace(org, gift_types=self.gift_types) if self.gift_types else org


def mask(key: str) -> str:
    """A key as it may be printed: never more than its first 4 characters."""
    return key[:4] + "..." if len(key) >= 12 else "****"
