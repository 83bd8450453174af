"""Reading one CRM+ webhook delivery without trusting its shape (the payload is not published).

    verify_signature(secret, body, header) -> None, or why the header does not sign the body
    parse_body(raw)            -> (object, None) or (None, why): bounded depth, no NaN, no huge ints
    delivery_records(data, kind, cap) -> the records of a delivery (one, or `models`), and the rest
    read_record(record, kind, source, prefix) -> Verdict: the CRM id and this pipeline's keys

Delivery forms (MH `src/server.js`): one record, `{"event": "GiftCreate", "gift": {...}}` /
`{"event": "ContactUpdate", "contact": {...}}`, or many, `{"event": ..., "models": [...]}` where
each item is a bare record or `{"gift": {...}}` / `{"contact": {...}}`.

A record confirms nothing unless it carries the documented key fields (gift: transactionSource +
transactionId; contact: contactReferences) and a CRM id of the documented type: an integer, or a
string of at most 18 digits. Booleans, floats, NaN, lists and 400-digit numbers are not ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 32  # a delivery is a record a few levels deep; deeper is not a CRM+ payload
MAX_MODELS = 1000  # records read per delivery; the rest are left for polling
MAX_REFS = 100  # contactReferences read per contact
MAX_ID_DIGITS = 18
MAX_KEY_CHARS = 200
NO_KEYS = "no keys: left for polling"
EVENTS = {"contactcreate": "contact", "contactupdate": "contact", "giftcreate": "gift"}


class Unusable:
    """Stands in for a JSON number we refuse to convert (NaN, Infinity, a 30+ digit integer)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unusable number>"


UNUSABLE = Unusable()


def _int(text: str) -> int | Unusable:
    return int(text) if len(text) <= 30 else UNUSABLE


def verify_signature(secret: bytes, body: bytes, header: str | None) -> str | None:
    """None when `header` signs `body`; else why not (never the values themselves)."""
    value = (header or "").strip()
    if not value:
        return "unsigned delivery"
    if len(value) > 200:
        return "malformed signature"
    if value[:7].lower() == "sha256=":
        value = value[7:]
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    candidates: list[bytes] = []
    with suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(value, validate=True))
    if len(value) == 64:
        with suppress(ValueError):
            candidates.append(bytes.fromhex(value))
    ok = False
    for candidate in candidates:  # every candidate compared: no early exit
        ok |= hmac.compare_digest(candidate, expected)
    return None if ok else "signature mismatch"


def parse_body(raw: bytes) -> tuple[Any, str | None]:
    """The JSON of a delivery, or (None, why not). Never raises for any byte string."""
    try:
        data = json.loads(raw, parse_int=_int, parse_constant=lambda _name: UNUSABLE)
    except RecursionError:  # the C parser's own bound (~1000 levels): far beyond ours
        return None, f"JSON nested deeper than {MAX_DEPTH} levels"
    except ValueError:  # also UnicodeDecodeError
        return None, "malformed JSON"
    if depth_over(data, MAX_DEPTH):
        return None, f"JSON nested deeper than {MAX_DEPTH} levels"
    return data, None


def depth_over(data: Any, limit: int) -> bool:
    """True when `data` nests lists/objects deeper than `limit` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(
            node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


def event_of(data: dict[str, Any]) -> tuple[str, str | None]:
    """(the event name as sent, at most 60 chars; the record kind it names, or None)."""
    value = data.get("event", data.get("eventType"))
    event = value[:60] if isinstance(value, str) else ""
    return event, EVENTS.get(event.casefold())


def crm_id(value: Any) -> str | None:
    """A CRM+ id as text ("50001"), or None when `value` is not of the documented id type."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 < value < 10 ** MAX_ID_DIGITS else None
    if (isinstance(value, str) and 0 < len(value) <= MAX_ID_DIGITS and value.isascii()
            and value.isdigit() and int(value) > 0):
        return str(int(value))
    return None


def key_id(value: Any) -> str | None:
    """A source id as the ledger keys it (text or an integer), or None (floats, lists, ...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if abs(value) < 10 ** MAX_ID_DIGITS else None
    if isinstance(value, str):
        text = value.strip()
        if 0 < len(text) <= MAX_KEY_CHARS and text.isprintable():
            return text
    return None


def _field(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in record:
            return record[name]
    return None


def delivery_records(data: dict[str, Any], kind: str, cap: int = MAX_MODELS
                     ) -> tuple[list[Any], int]:
    """The delivery's records (items that are not objects are kept, as None), and how many
    models lay beyond `cap`."""
    models = data.get("models")
    if models is None:
        return [data.get(kind)], 0
    if not isinstance(models, list):
        return [None], 0
    out: list[Any] = []
    for item in models[:cap]:
        inner = item.get(kind) if isinstance(item, dict) else None
        # {"gift": {...}} wraps a record; a bare record has its own id (a gift's "contact" is
        # part of the gift, not a wrapper)
        out.append(inner if isinstance(inner, dict) and "id" not in item else item)
    return out, max(0, len(models) - cap)


@dataclass
class Verdict:
    """What one delivered record proves: its CRM id and this pipeline's keys, or why nothing."""

    crm_id: str | None = None
    keys: list[str] = field(default_factory=list)
    problem: str | None = None  # None: the record confirms its keys


def read_record(record: Any, kind: str, source: str, prefix: str) -> Verdict:
    """Judge one delivered record of `kind` against this pipeline's key source and prefix."""
    if not isinstance(record, dict):
        return Verdict(problem="not a record")
    keys, problem = (_gift_keys if kind == "gift" else _contact_keys)(record, source, prefix)
    if problem:
        return Verdict(problem=problem)
    ident = crm_id(record.get("id"))
    if ident is None:
        return Verdict(keys=keys, problem="no usable CRM id (an integer or up to 18 digits)")
    return Verdict(crm_id=ident, keys=keys)


def _gift_keys(record: dict[str, Any], source: str, prefix: str) -> tuple[list[str], str | None]:
    src, tid = record.get("transactionSource"), record.get("transactionId")
    if src in (None, "") or tid in (None, ""):
        return [], NO_KEYS
    ident = key_id(tid)
    if not isinstance(src, str) or ident is None:
        return [], "unusable transactionSource/transactionId: left for polling"
    if src.strip().casefold() != source.casefold():
        return [], "another transactionSource"
    return [prefix + ident], None


def _contact_keys(record: dict[str, Any], source: str,
                  prefix: str) -> tuple[list[str], str | None]:
    refs = record.get("contactReferences")
    if not isinstance(refs, list) or not refs:
        return [], NO_KEYS
    keys: list[str] = []
    want = source.casefold()
    for ref in refs[:MAX_REFS]:
        if not isinstance(ref, dict):
            continue
        src = _field(ref, "source", "referenceSource")
        ident = key_id(_field(ref, "id", "referenceId"))
        if (isinstance(src, str) and src.strip().casefold() == want and ident is not None
                and prefix + ident not in keys):
            keys.append(prefix + ident)
    return keys, None if keys else "no reference of this pipeline's source"
