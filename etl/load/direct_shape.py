"""The direct path's request body and its price: seed 000's nested `POST /api/Contact` shape,
built from the row's flat Contact Transaction payload, and what a run of it costs in requests.

    nested_contact(flat) -> {"contactType", "name", "contactIndividuals": [{"firstName",
        "lastName", "isPrimary", "contactMethods": [{"type", "value", "isPrimary"}]}],
        "address": {...}, "contactReferences": [{"source", "id"}]}

Only the fields the seed's example (and the full contact record it mirrors) has a place for are
carried. A spec that maps others (tags, customFields, emailLists, originSegmentCode, events) is
refused in direct mode rather than silently losing them: nothing documents where they go.
Building is per-row Python (a `json.loads` and a dict per row): this path spends 2-3 requests
a row, so its speed is the request budget's, thousands of times below the hot path's.
"""

from __future__ import annotations

from typing import Any

import polars as pl

# flat Contact Transaction field -> where the nested body carries it
INDIVIDUAL = {"title": "prefix", "firstName": "firstName", "middleName": "middleName",
              "lastName": "lastName", "suffix": "suffix", "gender": "gender",
              "birthMonth": "birthMonth", "birthDay": "birthDay", "birthYear": "birthYear"}
ADDRESS = ("address1", "address2", "city", "state", "postal", "country")
METHODS = ("email", "emailType", "phone", "phoneType")
TOP = ("contactType", "name")
SUPPORTED = frozenset((*INDIVIDUAL, *ADDRESS, *METHODS, *TOP))
# The default method types the Transaction path gets from CRM+'s import (docs/sandbox.md)
DEFAULT_TYPES = {"email": "Home Email", "phone": "Home Phone"}


def unsupported_fields(mapped: list[str]) -> list[str]:
    """Mapped target fields the nested body has no documented place for."""
    return [f for f in mapped if f not in SUPPORTED]


def _given(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def nested_contact(flat: dict[str, Any]) -> dict[str, Any]:
    """The nested `POST /api/Contact` body for one flat Contact Transaction payload.

    `name` falls back to "Last, First" as the seed's example shows it. Contact methods carry
    no `isOptedIn`: opting a donor in is a consent decision the source data did not make."""
    body: dict[str, Any] = {}
    if _given(flat.get("contactType")):
        body["contactType"] = flat["contactType"]
    first, last = flat.get("firstName"), flat.get("lastName")
    if _given(flat.get("name")):
        body["name"] = flat["name"]
    elif _given(first) and _given(last):
        body["name"] = f"{last}, {first}"
    methods = []
    for kind in ("email", "phone"):
        if _given(flat.get(kind)):
            kind_type = flat.get(kind + "Type")
            methods.append({"type": kind_type if _given(kind_type) else DEFAULT_TYPES[kind],
                            "value": str(flat[kind]).strip(), "isPrimary": True})
    person = {dst: flat[src] for src, dst in INDIVIDUAL.items() if _given(flat.get(src))}
    if person or methods:
        body["contactIndividuals"] = [{**person, "isPrimary": True, "contactMethods": methods}]
    address = {k: flat[k] for k in ADDRESS if _given(flat.get(k))}
    if address:
        body["address"] = {**address, "isPrimary": True}
    body["contactReferences"] = [{"source": flat.get("referenceSource"),
                                  "id": flat.get("referenceId")}]
    return body


def request_bound(payloads: list[str]) -> tuple[int, int]:
    """(rows, rows with an email) of the payloads about to go the direct way: each row costs a
    Find by reference, a Find by email when it has one, and at most one POST."""
    if not payloads:
        return 0, 0
    email = pl.Series("p", payloads, dtype=pl.String).str.json_path_match("$.email")
    with_email = int((email.is_not_null() & (email.str.strip_chars() != "")).sum())
    return len(payloads), with_email
