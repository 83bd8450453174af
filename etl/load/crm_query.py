"""The documented CRM+ Query language: request bodies, QueryOptions, and what a page proves.

    POST /api/Gift/Query/FullGift?skip=&take=      (take <= 1000)
    {"groups": [{"conditions": [{"parameter": "Transaction Source", "operator": "Is",
                                 "value": "LegacyCRM", "secondaryValue": null, "values": null}]}],
     "sortBy": "Id", "descending": false}

The body shape follows docs.virtuous.org (query-contacts-by-filters) and animalaidunlimited/
virtuous-ts `build-gift-query.ts`. The tool sends ONE group, and reads the conditions in it as
AND-ed (the public clients combine "Transaction Source" and "Transaction Id" that way); how
several groups combine is not published, so nothing here relies on it. Parameter names are the CRM's
display names ("Transaction Source", "Batch", "Last Modified Date"), spelled per organization and
listed by `GET /api/Gift/QueryOptions` / `GET /api/Contact/QueryOptions`:
`{"options": [{"parameter", "type", "operatorOptions": [{"operator", ...}]}]}`. A name the
organization's options do not list is never guessed: `QueryOptions.find` answers None and the
caller falls back to the per-row lookups.

Dates in conditions are day-grained (`MM/DD/YYYY`, as virtuous-ts sends them): a date condition
never proves anything finer than a day, so callers subtract a day of overlap (`day_before`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from etl.load.client import coerce_number

# Parameter names as the public sources spell them (virtuous-ts, nucleus-engine, the docs).
GIFT_SOURCE = "Transaction Source"
GIFT_ID = "Transaction Id"
GIFT_BATCH = "Batch"
CONTACT_MODIFIED = "Last Modified Date"
GIFT_KEY_FIELDS = ("transactionSource", "transactionId")
CONTACT_KEY_FIELD = "contactReferences"


@dataclass(frozen=True)
class Condition:
    """One condition: `parameter operator value` (Between: value..secondary; IsAnyOf: values)."""

    parameter: str
    operator: str
    value: str | None = None
    secondary: str | None = None
    values: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "operator": self.operator, "value": self.value,
                "secondaryValue": self.secondary,
                "values": list(self.values) if self.values is not None else None}


def query_body(conditions: Sequence[Condition], *, sort_by: str = "Id",
               descending: bool = False) -> bytes:
    """One group of AND-ed conditions, sorted (a stable order keeps skip/take paging sound)."""
    return json.dumps({"groups": [{"conditions": [c.to_json() for c in conditions]}],
                       "sortBy": sort_by, "descending": descending},
                      separators=(",", ":")).encode()


def query_date(moment: date | datetime) -> str:
    """A condition date as the public clients send it: MM/DD/YYYY."""
    day = moment.date() if isinstance(moment, datetime) else moment
    return day.strftime("%m/%d/%Y")


def day_before(moment: datetime) -> date:
    """The day before `moment`'s day: date conditions are day-grained, so a 'since' condition
    keeps a full day of overlap."""
    return (moment - timedelta(days=1)).date()


def _norm(name: str) -> str:
    return "".join(name.split()).casefold()


@dataclass(frozen=True)
class QueryOptions:
    """What `GET /api/{Gift|Contact}/QueryOptions` offers: parameter -> its operators (an
    empty set when the answer lists none for it, meaning: not known to be refused)."""

    parameters: dict[str, frozenset[str]] = field(default_factory=dict)

    def find(self, wanted: str, operator: str) -> str | None:
        """The organization's spelling of `wanted` (ignoring case and spaces) when it offers
        `operator` for it; None when it does not list the parameter or refuses the operator."""
        for name, operators in self.parameters.items():
            if _norm(name) == _norm(wanted):
                if operators and _norm(operator) not in {_norm(o) for o in operators}:
                    return None
                return name
        return None


def parse_query_options(data: Any) -> QueryOptions:
    """Read a QueryOptions answer defensively (unknown fields ignored, any capitalization)."""
    if not isinstance(data, dict):
        return QueryOptions()
    options = next((data[k] for k in ("options", "Options") if k in data), None)
    out: dict[str, frozenset[str]] = {}
    for opt in options if isinstance(options, list) else []:
        if not isinstance(opt, dict):
            continue
        name = opt.get("parameter") or opt.get("Parameter")
        if not isinstance(name, str) or not name.strip():
            continue
        ops = opt.get("operatorOptions") or opt.get("OperatorOptions") or []
        names = {str(o.get("operator") or o.get("Operator")) for o in ops
                 if isinstance(o, dict) and (o.get("operator") or o.get("Operator"))}
        out[name.strip()] = frozenset(names)
    return QueryOptions(out)


def has_gift_key(record: dict[str, Any]) -> bool:
    """A gift record names its own key: both transactionSource and transactionId are present."""
    return all(record.get(k) not in (None, "") for k in GIFT_KEY_FIELDS)


def has_contact_key(record: dict[str, Any]) -> bool:
    """A contact record names its keys: it carries a contactReferences list (possibly empty)."""
    return isinstance(record.get(CONTACT_KEY_FIELD), list)


def records_of(data: Any) -> tuple[list[dict[str, Any]], int | None]:
    """`{"list": [...], "total": n}` (any capitalization) or a bare list."""
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)], None
    if not isinstance(data, dict):
        return [], None
    items: Any = next((data[k] for k in ("list", "List", "items", "results") if k in data), [])
    total = coerce_number(next((data[k] for k in ("total", "Total") if k in data), None))
    records = [r for r in items if isinstance(r, dict)] if isinstance(items, list) else []
    return records, int(total) if total is not None else None
