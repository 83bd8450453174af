"""Contact records as CRM+ answers them, read defensively, plus the cache's timestamps.

Full records (`POST /api/Contact/Query/FullContact`, `GET /api/Contact/Find`) nest what the
pre-match needs (docs.virtuous.org find-a-contact; virtuous-ts `Contact`):

    {"id": 1201, "contactType": "Household", "name": "...", "modifiedDateTimeUtc": "...",
     "address": {"address1", "city", "state", "postal", "country"},
     "contactReferences": [{"source": "LegacyCRM", "id": "D7"}],
     "contactIndividuals": [{"firstName", "lastName", "isPrimary",
                             "contactMethods": [{"type": "Home Email", "value", "isPrimary"}]}]}

Keys are matched in any capitalization, numbers may come as strings. A record says what it
proves: `keyed` (it carries a `contactReferences` list, so its references are all known) and
`methods_known` (every individual carries a `contactMethods` list, so its emails are all known).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from etl.load.client import coerce_bool
from etl.load.crm_query import CONTACT_KEY_FIELD, has_contact_key


def now_iso() -> str:
    """This machine's time, ISO 8601 UTC (when the cache saw something; never a watermark)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def parse_time(value: Any) -> datetime | None:
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
    record: str  # flat, in the Contact Transaction's field names, as JSON (for `changed`)
    refs: tuple[tuple[str, str], ...]
    emails: tuple[str, ...]
    keyed: bool = False  # carried contactReferences: its references are all known
    methods_known: bool = False  # every individual carried contactMethods: emails all known


def get(rec: dict[str, Any], name: str) -> Any:
    """`rec[name]` in any capitalization (`contactReferences`, `ContactReferences`, ...)."""
    if name in rec:
        return rec[name]
    folded = name.casefold()
    return next((v for k, v in rec.items() if isinstance(k, str) and k.casefold() == folded),
                None)


def norm_email(value: Any) -> str | None:
    """An email as the cache keys it (trimmed, lower-cased); None when it has no `@`."""
    text = str(value).strip().lower() if value is not None else ""
    return text if "@" in text else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _primary(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((i for i in items if coerce_bool(get(i, "isPrimary"))), items[0] if items else None)


def _methods(person: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The individual's contact methods whose type names `kind` ("email", "phone")."""
    return [m for m in _dicts(get(person, "contactMethods"))
            if kind in str(get(m, "type") or "").casefold()]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _camel(rec: dict[str, Any]) -> dict[str, Any]:
    return {(k[:1].lower() + k[1:] if isinstance(k, str) else k): v for k, v in rec.items()}


def _flat(rec: dict[str, Any], people: list[dict[str, Any]]) -> dict[str, Any]:
    """The record in the Contact Transaction's flat names: what `policy: changed` compares."""
    rec, people = _camel(rec), [_camel(p) for p in people]
    flat = {k: v for k, v in rec.items() if _scalar(v) or k in ("customFields", "emailLists")}
    person = _primary(people)
    if person is not None:
        flat.update({k: v for k, v in person.items()
                     if _scalar(v) and k not in ("id", "isPrimary") and k not in flat})
        for kind, value_key, type_key in (("email", "email", "emailType"),
                                          ("phone", "phone", "phoneType")):
            method = _primary(_methods(person, kind))
            if method is not None and flat.get(value_key) in (None, ""):
                flat[value_key] = get(method, "value")
                flat[type_key] = get(method, "type")
    address = get(rec, "address")
    if isinstance(address, dict):
        flat.update({k: v for k, v in _camel(address).items()
                     if _scalar(v) and k not in ("id", "isPrimary")})
    return flat


def parse_contact(rec: Any) -> Contact | None:
    """One full contact record (Query/FullContact, Find); None when it has no usable id."""
    if not isinstance(rec, dict):
        return None
    try:
        ident = int(str(get(rec, "id")).strip())
    except ValueError:
        return None
    modified = parse_time(get(rec, "modifiedDateTimeUtc") or get(rec, "modifiedDateTime"))
    references = get(rec, CONTACT_KEY_FIELD)
    refs = []
    for r in _dicts(references):
        source = get(r, "source") or get(r, "referenceSource")
        ref_id = get(r, "id") if get(r, "id") is not None else get(r, "referenceId")
        if source not in (None, "") and ref_id not in (None, ""):
            refs.append((str(source).strip(), str(ref_id).strip()))
    people = _dicts(get(rec, "contactIndividuals"))
    emails = [e for e in [norm_email(get(rec, "email"))] if e]
    for person in people:
        emails += [e for e in [norm_email(get(person, "email"))] if e]
        # any method whose value is an address: type names are per organization
        emails += [e for m in _dicts(get(person, "contactMethods"))
                   if (e := norm_email(get(m, "value")))]
    methods_known = isinstance(get(rec, "contactIndividuals"), list) and all(
        isinstance(get(p, "contactMethods"), list) for p in people)
    flat = _flat(rec, people)
    return Contact(ident, _iso(modified) if modified else None,
                   json.dumps(flat, ensure_ascii=False, separators=(",", ":"), default=str),
                   tuple(dict.fromkeys(refs)), tuple(dict.fromkeys(emails)),
                   keyed=has_contact_key({CONTACT_KEY_FIELD: references}),
                   methods_known=methods_known)
