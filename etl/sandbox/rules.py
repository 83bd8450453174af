"""Payload validation: what the real API would refuse with 422, field by field.

Each check returns a list of details `{"field", "code", "message"}`; `prefix` makes batch paths
like `transactions[3].amount`. Unknown fields are ignored, as the real API does. Native JSON types
and their string forms are both accepted ("500.00", "true", "1972"), per the typing quirk.
"""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from etl.sandbox.config import Org

Detail = dict[str, str]

EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")
CURRENCY = re.compile(r"^[A-Za-z]{3}$")

CONTACT_STRINGS = (
    "referenceSource", "referenceId", "contactType", "name", "title", "firstName", "middleName",
    "lastName", "suffix", "gender", "emailType", "email", "phoneType", "phone", "address1",
    "address2", "city", "state", "postal", "country", "tags", "originSegmentCode", "eventName",
    "rsvpResponse",
)
GIFT_CONTACT_STRINGS = (
    "referenceId", "name", "type", "title", "firstname", "middlename", "lastname", "suffix",
    "emailType", "email", "phoneType", "phone", "tags",
)
ADDRESS_STRINGS = ("address1", "address2", "city", "state", "postal", "country")
GIFT_STRINGS = (
    "transactionSource", "transactionId", "giftType", "currencyCode", "frequency",
    "recurringGiftTransactionId", "pledgeTransactionId", "batch", "notes", "segment",
    "mediaOutlet", "tribute", "checkNumber", "creditCardType", "nonCashGiftType",
)
GIFT_DATES = ("receiptDate", "pledgeExpectedFullfillmentDate")
BOOLS = ("invited", "rsvp", "attended", "isPrivate", "isTaxDeductible")


def detail(field: str, code: str, message: str) -> Detail:
    return {"field": field, "code": code, "message": message}


def present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def parse_amount(value: Any) -> Decimal | None:
    """A native number or a numeric string -> Decimal; anything else -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value)) if math.isfinite(value) else None
    if isinstance(value, str) and NUMBER.match(value):
        try:
            return Decimal(value.strip())
        except InvalidOperation:  # pragma: no cover - the pattern already excludes these
            return None
    return None


def _strings(obj: dict[str, Any], names: tuple[str, ...], p: str, out: list[Detail]) -> None:
    for name in names:
        if isinstance(obj.get(name), dict | list):
            out.append(detail(p + name, "INVALID_TYPE", f"{name} must be a string"))


def _bools(obj: dict[str, Any], p: str, out: list[Detail]) -> None:
    for name in BOOLS:
        v = obj.get(name)
        if v is not None and not isinstance(v, bool) and str(v).lower() not in ("true", "false"):
            out.append(detail(p + name, "INVALID_TYPE", f"{name} must be true or false"))


def _int_range(obj: dict[str, Any], name: str, lo: int, hi: int, p: str, out: list[Detail]) -> None:
    v = obj.get(name)
    if not present(v):
        return
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and v.isdigit())):
        out.append(detail(p + name, "INVALID_TYPE", f"{name} must be an integer"))
    elif not lo <= int(v) <= hi:
        out.append(detail(p + name, "OUT_OF_RANGE", f"{name} must be between {lo} and {hi}"))


def _date(obj: dict[str, Any], name: str, p: str, out: list[Detail]) -> None:
    v = obj.get(name)
    if not present(v):
        return
    ok = isinstance(v, str) and DATE.match(v) is not None
    if ok:
        try:
            date.fromisoformat(str(v))
        except ValueError:
            ok = False
    if not ok:
        out.append(detail(p + name, "INVALID_FORMAT", f"{name} must be a date as YYYY-MM-DD"))


def _member(value: Any, allowed: tuple[str, ...], field: str, what: str, out: list[Detail]) -> None:
    if present(value) and value not in allowed:
        out.append(detail(field, "INVALID_VALUE",
                          f"{value!r} is not a {what} of this organization "
                          f"(one of: {', '.join(allowed)})"))


def _email(value: Any, field: str, out: list[Detail]) -> None:
    if present(value) and not (isinstance(value, str) and EMAIL.match(value.strip())):
        out.append(detail(field, "INVALID_FORMAT", f"{value!r} is not a valid email address"))


def _methods(obj: dict[str, Any], org: Org, p: str, out: list[Detail]) -> None:
    _member(obj.get("emailType"), org.method_types, p + "emailType", "contact method type", out)
    _member(obj.get("phoneType"), org.method_types, p + "phoneType", "contact method type", out)
    _email(obj.get("email"), p + "email", out)


def _required(obj: dict[str, Any], name: str, p: str, out: list[Detail]) -> None:
    if not present(obj.get(name)):
        out.append(detail(p + name, "REQUIRED", f"{name} is required"))
    elif isinstance(obj.get(name), dict | list | bool):
        out.append(detail(p + name, "INVALID_TYPE", f"{name} must be a string"))


def check_contact(obj: Any, org: Org, p: str = "") -> list[Detail]:
    """A flat Contact Transaction (after the batch's referenceSource was filled in)."""
    if not isinstance(obj, dict):
        return [detail(p.rstrip(".") or "body", "INVALID_TYPE", "a contact must be an object")]
    out: list[Detail] = []
    _required(obj, "referenceSource", p, out)
    _required(obj, "referenceId", p, out)
    _strings(obj, CONTACT_STRINGS, p, out)
    _member(obj.get("contactType"), org.contact_types, p + "contactType", "contact type", out)
    _methods(obj, org, p, out)
    _bools(obj, p, out)
    _int_range(obj, "birthMonth", 1, 12, p, out)
    _int_range(obj, "birthDay", 1, 31, p, out)
    _int_range(obj, "birthYear", 1850, 2100, p, out)
    _int_range(obj, "eventId", 0, 2**63 - 1, p, out)
    lists = obj.get("emailLists")
    if lists is not None and not (
            isinstance(lists, list) and all(isinstance(x, str) for x in lists)):
        out.append(detail(p + "emailLists", "INVALID_TYPE", "emailLists must be a list of strings"))
    for name in ("customFields",):
        if obj.get(name) is not None and not isinstance(obj.get(name), dict):
            out.append(detail(p + name, "INVALID_TYPE", f"{name} must be an object"))
    return out


def check_gift_contact(obj: Any, org: Org, p: str) -> list[Detail]:
    """The gift's embedded `contact` (lower-case names, nested address)."""
    if obj is None:
        return []
    if not isinstance(obj, dict):
        return [detail(p.rstrip("."), "INVALID_TYPE", "contact must be an object")]
    out: list[Detail] = []
    _strings(obj, GIFT_CONTACT_STRINGS, p, out)
    cid = obj.get("id")
    if present(cid) and (isinstance(cid, bool) or not str(cid).strip().isdigit()):
        out.append(detail(p + "id", "INVALID_TYPE", "id must be an integer Virtuous contact id"))
    _member(obj.get("type"), org.contact_types, p + "type", "contact type", out)
    _methods(obj, org, p, out)
    address = obj.get("address")
    if address is not None:
        if isinstance(address, dict):
            _strings(address, ADDRESS_STRINGS, p + "address.", out)
        else:
            out.append(detail(p + "address", "INVALID_TYPE", "address must be an object"))
    return out


def _designations(obj: dict[str, Any], amount: Decimal | None, p: str, out: list[Detail]) -> None:
    items = obj.get("designations")
    if items is None:
        return
    if not isinstance(items, list):
        out.append(detail(p + "designations", "INVALID_TYPE", "designations must be a list"))
        return
    total, ok = Decimal(0), True
    for i, d in enumerate(items):
        q = f"{p}designations[{i}]"
        if not isinstance(d, dict):
            out.append(detail(q, "INVALID_TYPE", "a designation must be an object"))
            ok = False
            continue
        if not any(present(d.get(k)) for k in ("id", "name", "code")):
            out.append(detail(q, "REQUIRED", "a designation needs an id, name or code"))
        value = parse_amount(d.get("amountDesignated"))
        if value is None or value <= 0:
            out.append(detail(q + ".amountDesignated", "INVALID_VALUE",
                              "amountDesignated must be a positive number"))
            ok = False
        else:
            total += value
    if ok and items and amount is not None and total.quantize(Decimal("0.01")) != amount.quantize(
        Decimal("0.01")
    ):
        out.append(detail(p + "designations", "SUM_MISMATCH",
                          f"designations add up to {total}, the amount is {amount}"))


def check_gift(obj: Any, org: Org, p: str = "") -> list[Detail]:
    """A v2 Gift Transaction (after the batch envelope's defaults were filled in)."""
    if not isinstance(obj, dict):
        return [detail(p.rstrip(".") or "body", "INVALID_TYPE", "a transaction must be an object")]
    out: list[Detail] = []
    _required(obj, "transactionSource", p, out)
    _required(obj, "transactionId", p, out)
    _strings(obj, GIFT_STRINGS, p, out)
    amount = parse_amount(obj.get("amount"))
    if not present(obj.get("amount")):
        out.append(detail(p + "amount", "REQUIRED", "amount is required"))
    elif amount is None:
        out.append(detail(p + "amount", "INVALID_TYPE", "amount must be a number (dollars)"))
    elif amount <= 0:
        out.append(detail(p + "amount", "OUT_OF_RANGE", "amount must be greater than 0"))
        amount = None
    if not present(obj.get("giftDate")):
        out.append(detail(p + "giftDate", "REQUIRED", "giftDate is required"))
    _date(obj, "giftDate", p, out)
    for name in GIFT_DATES:
        _date(obj, name, p, out)
    _member(obj.get("giftType"), org.gift_types, p + "giftType", "gift type", out)
    _member(obj.get("nonCashGiftType"), org.non_cash_gift_types, p + "nonCashGiftType",
            "non-cash gift type", out)
    currency = obj.get("currencyCode")
    if present(currency) and not (isinstance(currency, str) and CURRENCY.match(currency)):
        out.append(detail(p + "currencyCode", "INVALID_FORMAT", "currencyCode must be ISO 4217"))
    rate = obj.get("exchangeRate")
    if present(rate) and ((r := parse_amount(rate)) is None or r <= 0):
        out.append(detail(p + "exchangeRate", "INVALID_VALUE", "exchangeRate must be positive"))
    _bools(obj, p, out)
    _designations(obj, amount, p, out)
    out.extend(check_gift_contact(obj.get("contact"), org, p + "contact."))
    out.extend(check_gift_contact(obj.get("passthroughContact"), org, p + "passthroughContact."))
    for name in ("customFields", "tributeDedication"):
        if obj.get(name) is not None and not isinstance(obj.get(name), dict):
            out.append(detail(p + name, "INVALID_TYPE", f"{name} must be an object"))
    return out
