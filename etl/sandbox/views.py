"""Records as the API answers them (the shapes of virtuous-api.md, "Documented shapes").

The sandbox keeps a contact flat inside (the Contact Transaction's names, so the batch can match
and merge), and a gift as its full record. What leaves the server goes through these functions:

    full_contact(c)   Find, by reference, by id, /Query/FullContact, webhook deliveries
    contact_item(c)   /api/Contact/Query (abbreviated: no contactReferences, no timestamps)
    full_gift(g)      GET /api/Gift/{source}/{id}, /Query/FullGift, webhook deliveries
    gift_item(g)      /api/Gift/Query (abbreviated: amount a formatted string, no keys)
    delivered(kind, record, keys)   what a webhook carries (without keys unless `keys`)
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

APP = "https://app.virtuoussoftware.com"
ADDRESS_FIELDS = ("address1", "address2", "city", "state", "postal", "country")
# The full gift's fields, in the order VTS `Gift` lists them; the batch fills these only.
GIFT_FIELDS = (
    "id", "transactionSource", "transactionId", "contactId", "giftType", "giftDate", "amount",
    "currencyCode", "exchangeRate", "batch", "createDateTimeUtc", "modifiedDateTimeUtc",
    "segment", "mediaOutlet", "notes", "tribute", "receiptDate", "contactIndividualId",
    "giftDesignations", "giftPremiums", "giftUrl", "isPrivate", "isTaxDeductible",
    "customFields",
)
KEYS = {"gift": ("transactionSource", "transactionId"), "contact": ("contactReferences",)}


def custom_fields(value: Any) -> list[dict[str, Any]]:
    """`{"name": "value"}` as sent -> `[{"name", "value"}]` as read (VTS CustomField)."""
    if not isinstance(value, dict):
        return []
    return [{"name": str(k), "value": v} for k, v in value.items()]


def money_text(amount: Any) -> str:
    """An amount as the abbreviated lists show it: formatted, not a number ("$1,234.50")."""
    try:
        value = Decimal(str(amount))
    except ArithmeticError:
        return str(amount)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def _is_email(method: dict[str, Any]) -> bool:
    return "email" in str(method.get("type", "")).lower() or "@" in str(method.get("value", ""))


def _methods(c: dict[str, Any]) -> list[dict[str, Any]]:
    out, seen_kind = [], set()
    for i, m in enumerate(c.get("contactMethods", ())):
        kind = "email" if _is_email(m) else "phone"
        out.append({"id": c["id"] * 100 + i + 1, "type": m["type"], "value": m["value"],
                    "isOptedIn": kind == "email", "isPrimary": kind not in seen_kind,
                    "canBePrimary": True})
        seen_kind.add(kind)
    return out


def _address(c: dict[str, Any]) -> dict[str, Any] | None:
    if not any(c.get(k) for k in ADDRESS_FIELDS):
        return None
    return {"id": c["id"], **{k: c.get(k) for k in ADDRESS_FIELDS}, "isPrimary": True,
            "canBePrimary": True}


def _individual(c: dict[str, Any]) -> dict[str, Any]:
    return {"id": c["id"] * 10 + 1, "contactId": c["id"], "prefix": c.get("title"),
            "firstName": c.get("firstName"), "middleName": c.get("middleName"),
            "lastName": c.get("lastName"), "suffix": c.get("suffix"),
            "gender": c.get("gender"), "birthMonth": c.get("birthMonth"),
            "birthDay": c.get("birthDay"), "birthYear": c.get("birthYear"),
            "isPrimary": True, "isSecondary": False, "isDeceased": False,
            "createDateTimeUtc": c["createDateTimeUtc"],
            "modifiedDateTimeUtc": c["modifiedDateTimeUtc"],
            "contactMethods": _methods(c), "customFields": []}


def full_contact(c: dict[str, Any]) -> dict[str, Any]:
    """The full contact: one individual with its contact methods, a nested address, references."""
    has_person = any(c.get(k) for k in ("firstName", "lastName")) or c.get("contactMethods")
    tags = c.get("tags")
    return {
        "id": c["id"], "contactType": c.get("contactType"), "isPrivate": False,
        "name": c.get("name"), "informalName": None, "description": None, "website": None,
        "address": _address(c),
        "contactIndividuals": [_individual(c)] if has_person else [],
        "contactGiftsUrl": f"{APP}/Generosity/Contact/{c['id']}/Gifts",
        "contactReferences": [dict(r) for r in c.get("contactReferences", ())],
        "originSegment": c.get("originSegmentCode"),
        "createDateTimeUtc": c["createDateTimeUtc"],
        "modifiedDateTimeUtc": c["modifiedDateTimeUtc"],
        "tags": [t.strip() for t in str(tags).split(";") if t.strip()] if tags else [],
        "customFields": custom_fields(c.get("customFields")),
    }


def _primary(c: dict[str, Any], email: bool) -> str | None:
    return next((m["value"] for m in c.get("contactMethods", ()) if _is_email(m) == email), None)


def contact_item(c: dict[str, Any]) -> dict[str, Any]:
    """The abbreviated contact of /api/Contact/Query (VTS ContactListItem)."""
    person = " ".join(str(c[k]) for k in ("firstName", "lastName") if c.get(k))
    parts = [c.get("address1"), c.get("city"), " ".join(
        str(p) for p in (c.get("state"), c.get("postal")) if p)]
    line = ", ".join(str(p) for p in parts if p) or None
    return {"id": c["id"], "name": c.get("name"), "contactType": c.get("contactType"),
            "contactName": person or c.get("name"), "address": line,
            "email": _primary(c, True), "phone": _primary(c, False),
            "contactViewUrl": f"{APP}/Generosity/Contact/View/{c['id']}"}


def full_gift(g: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(g)


def gift_item(g: dict[str, Any]) -> dict[str, Any]:
    """The abbreviated gift of /api/Gift/Query (VTS GiftSummaryWithDesignations)."""
    return {"id": g["id"], "contactId": g["contactId"],
            "contactIndividualId": g.get("contactIndividualId"), "giftType": g.get("giftType"),
            "giftDate": g.get("giftDate"), "amount": money_text(g["amount"]),
            "segment": g.get("segment"), "batch": g.get("batch"), "giftUrl": g.get("giftUrl"),
            "culture": "en-US", "exchangeRate": g.get("exchangeRate"),
            "giftDesignations": copy.deepcopy(g.get("giftDesignations") or [])}


def delivered(kind: str, record: dict[str, Any], keys: bool) -> dict[str, Any]:
    """A record as a webhook carries it: without its keys unless `keys` (not published)."""
    body = full_contact(record) if kind == "contact" else full_gift(record)
    if not keys:
        for name in KEYS[kind]:
            body.pop(name, None)
    return body
