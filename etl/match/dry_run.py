"""The dry run's prediction: the report's `prematch` block, from the cache as it is (read-only,
no network) or after a refresh when asked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from etl.load.client import DEFAULT_BASE_URL, check_base_url
from etl.match.cache import Cache, open_cache
from etl.match.contacts import parse_time
from etl.match.fetch import refresh
from etl.match.matching import matched_rows, skip_expr
from etl.match.reader import MatchRefused
from etl.match.signals import SIGNALS, row_signals
from etl.prepare.result import ValidationResult
from etl.spec.parse import LoadedSpec
from etl.spec.pipeline import Pipeline


def prediction(matched: pl.DataFrame, loaded: LoadedSpec, cache_info: dict[str, Any],
               refresh: dict[str, Any] | None) -> dict[str, Any]:
    """The report's `prematch` block."""
    spec = loaded.spec
    assert spec.match is not None
    policy = spec.match.policy
    contacts = spec.target == "contact_transaction"
    skip = skip_expr(matched, policy)
    counts = matched.select(
        pl.len().alias("rows"), pl.col("_existing").sum().alias("existing"),
        (pl.col("_outcome") == "unknown").sum().alias("unknown"),
        skip.sum().alias("skip"),
        *[(pl.col("_signal") == s).sum().alias(s) for s in SIGNALS],
        (pl.col("_signal") == "id").and_(pl.col("_id_known").is_null()).sum().alias("unknown_id"),
        pl.col("_existing").and_(~skip).sum().alias("existing_sent"),
    ).row(0, named=True)
    rows, existing, unknown = int(counts["rows"]), int(counts["existing"]), int(counts["unknown"])
    new = rows - existing - unknown
    batch = {"contactsCreated": new}
    if contacts:
        batch["contactsUpdated"] = int(counts["existing_sent"])
    else:
        batch["giftsForExistingContacts"] = existing
    if unknown:  # no read proved them absent: they create a contact or merge, nobody knows
        batch["undecided"] = unknown
    block: dict[str, Any] = {
        "status": "ok", "method": spec.match.method, "by": list(spec.match.by),
        "policy": policy, "cache": cache_info, "refresh": refresh,
        "rows": {"checked": rows, "existing": existing, "new": new, "unknown": unknown},
        "by_signal": {s: int(counts[s]) for s in SIGNALS if counts[s]},
        "policy_effect": {"send": rows - int(counts["skip"]), "skip": int(counts["skip"])},
        "nightly_batch": batch,
    }
    if counts["unknown_id"]:
        block["unknown_contact_ids"] = int(counts["unknown_id"])
    if unknown:
        block["warning"] = (
            f"{unknown:,} row(s) 'unknown': no complete read proves their reference or email "
            "absent from CRM+ (cache.proven, refresh.problem); they are sent, never skipped")
    return block


def cache_info(cache: Cache | None, path: Path) -> dict[str, Any]:
    """The report's `cache` entry: where, from which organization, how old, what it proves."""
    state = cache.state() if cache is not None else None
    if state is None or cache is None:
        return {"path": str(path), "contacts": 0, "refreshed_at": None}
    age = None
    if (moment := parse_time(state.refreshed_at)) is not None:
        age = round((datetime.now(UTC) - moment).total_seconds())
    return {"path": str(path), "base_url": state.base_url, "organization": state.organization,
            "scope": state.scope, "contacts": cache.count(), "refreshed_at": state.refreshed_at,
            "age_seconds": age, "high_water": state.high_water,
            "proven": sorted(state.proven)}


@dataclass(kw_only=True)
class MatchOptions:
    """How the dry run pre-matches: from the cache (default, no network) or after a refresh."""

    refresh: bool = False
    full: bool = False
    base_url: str = DEFAULT_BASE_URL
    token: str = ""
    transport: Any = None
    notify: Callable[[str], None] = field(default=lambda message: None)


def predict(loaded: Pipeline, result: ValidationResult,
            options: MatchOptions | None = None) -> dict[str, Any] | None:
    """The dry run's `prematch` block (None without a `match:` section). Network only with
    `options.refresh` (reads: Organization/Current, then Contact/Query or Contact/Find). The
    cache is in the pipeline's ledger file."""
    spec = loaded.spec
    if spec.match is None:
        return None
    options = options or MatchOptions()
    path = loaded.ledger_path
    signals = row_signals(result.payloads, spec.target)
    if options.refresh:
        if not options.token:
            raise MatchRefused("a pre-match refresh needs the API key in the environment "
                               "(VIRTUOUS_API_TOKEN, or --token-env)")
        try:
            check_base_url(options.base_url)
        except ValueError as exc:
            raise MatchRefused(str(exc)) from None
        opened = open_cache(path, readonly=False)
        assert opened is not None
        db, cache = opened
        try:
            refresh_stats = asyncio.run(refresh(
                loaded, cache, signals, options.base_url, options.token, options.transport,
                options.notify, full=options.full, per_hour=spec.load.requests_per_hour))
            return _block(signals, cache, loaded, path, refresh_stats)
        finally:
            db.close()
    opened = open_cache(path, readonly=True)
    if opened is None or opened[1].state() is None:
        if opened is not None:
            opened[0].close()
        return {"status": "no_cache", "method": spec.match.method, "by": list(spec.match.by),
                "policy": spec.match.policy, "cache": {"path": str(path), "contacts": 0},
                "hint": "no pre-match cache yet: `etl validate --refresh-match` (reads CRM+) "
                        "or `etl run` fills it"}
    db, cache = opened
    try:
        return _block(signals, cache, loaded, path, None)
    finally:
        db.close()


def _block(signals: pl.DataFrame, cache: Cache, loaded: LoadedSpec, path: Path,
           refresh: dict[str, Any] | None) -> dict[str, Any]:
    matched = matched_rows(signals, cache, loaded)
    return prediction(matched, loaded, cache_info(cache, path), refresh)
