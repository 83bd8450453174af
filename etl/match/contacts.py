"""Contact records as CRM+ answers them (Query, Find), read defensively: the sandbox's are flat,
real ones are richer. Plus the timestamps the cache keeps (ISO 8601, UTC)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _time(value: Any) -> datetime | None:
    """An API timestamp (ISO 8601, `Z` or offset, or naive = UTC) as an aware datetime."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Contact:
    id: int
    modified: str | None
    record: str  # the scalar fields, customFields and emailLists, as JSON (for `changed`)
    refs: tuple[tuple[str, str], ...]
    emails: tuple[str, ...]


def norm_email(value: Any) -> str | None:
    """An email as the cache keys it (trimmed, lower-cased); None when it has no `@`."""
    text = str(value).strip().lower() if value is not None else ""
    return text if "@" in text else None


def _methods_emails(methods: Any) -> list[str]:
    out = []
    for m in methods if isinstance(methods, list) else []:
        if isinstance(m, dict) and (e := norm_email(m.get("value"))):
            out.append(e)
    return out


def parse_contact(rec: Any) -> Contact | None:
    """One contact record of a Query/Find answer; None when it has no usable id."""
    if not isinstance(rec, dict):
        return None
    try:
        ident = int(str(rec.get("id")).strip())
    except ValueError:
        return None
    modified = _time(rec.get("modifiedDateTimeUtc") or rec.get("modifiedDateTime"))
    refs = []
    for r in rec.get("contactReferences") or []:
        if isinstance(r, dict):
            source = r.get("source", r.get("referenceSource"))
            ref_id = r.get("id", r.get("referenceId"))
            if source is not None and ref_id is not None:
                refs.append((str(source), str(ref_id)))
    emails = [e for e in [norm_email(rec.get("email"))] if e]
    emails += _methods_emails(rec.get("contactMethods"))
    for person in rec.get("contactIndividuals") or []:
        if isinstance(person, dict):
            emails += [e for e in [norm_email(person.get("email"))] if e]
            emails += _methods_emails(person.get("contactMethods"))
    slim = {k: v for k, v in rec.items()
            if (v is None or isinstance(v, str | int | float | bool))
            or k in ("customFields", "emailLists")}
    return Contact(ident, _iso(modified) if modified else None,
                   json.dumps(slim, ensure_ascii=False, separators=(",", ":"), default=str),
                   tuple(dict.fromkeys(refs)), tuple(dict.fromkeys(emails)))
