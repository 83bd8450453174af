"""The query language's operators over typed values (DV query-contacts-by-filters, VTS query.ts).

A parameter reads a record as a LIST of values (a contact has many references and emails; a
gift's batch is a list of zero or one). A positive operator holds when any value satisfies it;
its negation (IsNot, NotIn, IsNoneOf) holds when the record has values and none satisfies the
positive one, as SQL leaves NULLs out of `<>` and `NOT IN`. Strings compare case-insensitively
(SQL Server's default collation). Dates are days: `MM/DD/YYYY`, `YYYY-MM-DD`, or the relative
"Today" / "Yesterday", in the organization's time zone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

Value = Any
Test = Callable[[list[Value]], bool]


class BadValue(ValueError):
    """A condition's value cannot be read for its parameter's type (the message says why)."""


@dataclass(frozen=True)
class Operator:
    name: str
    arity: str  # "none", "one", "two" (Between), "many" (In, IsAnyOf...)
    multiple: bool = False

    @property
    def value_required(self) -> bool:
        return self.arity != "none"


OPERATORS = {op.name: op for op in (
    Operator("Is", "one"), Operator("IsNot", "one"), Operator("IsKnown", "none"),
    Operator("IsNotKnown", "none"), Operator("LessThan", "one"),
    Operator("LessThanOrEqual", "one"), Operator("GreaterThan", "one"),
    Operator("GreaterThanOrEqual", "one"), Operator("Contains", "one"),
    Operator("StartsWith", "one"), Operator("EndsWith", "one"), Operator("IsTrue", "none"),
    Operator("IsFalse", "none"), Operator("In", "many", True), Operator("NotIn", "many", True),
    Operator("Between", "two"), Operator("Before", "one"), Operator("After", "one"),
    Operator("OnOrBefore", "one"), Operator("OnOrAfter", "one"),
    Operator("IsAnyOf", "many", True), Operator("IsNoneOf", "many", True),
)}
NEGATIONS = {"IsNot": "Is", "NotIn": "In", "IsNoneOf": "IsAnyOf", "IsNotKnown": "IsKnown"}
BY_TYPE: dict[str, tuple[str, ...]] = {
    "String": ("Is", "IsNot", "IsKnown", "IsNotKnown", "Contains", "StartsWith", "EndsWith",
               "In", "NotIn", "IsAnyOf", "IsNoneOf"),
    "List": ("Is", "IsNot", "IsKnown", "IsNotKnown", "In", "NotIn", "IsAnyOf", "IsNoneOf"),
    "Int": ("Is", "IsNot", "IsKnown", "IsNotKnown", "LessThan", "LessThanOrEqual", "GreaterThan",
            "GreaterThanOrEqual", "Between", "In", "NotIn", "IsAnyOf", "IsNoneOf"),
    "Decimal": ("Is", "IsNot", "IsKnown", "IsNotKnown", "LessThan", "LessThanOrEqual",
                "GreaterThan", "GreaterThanOrEqual", "Between"),
    "Date": ("Is", "IsNot", "IsKnown", "IsNotKnown", "Before", "After", "OnOrBefore",
             "OnOrAfter", "Between"),
    "Boolean": ("IsTrue", "IsFalse", "IsKnown", "IsNotKnown"),
}
DATE_RELATIVE = ("Today", "Yesterday")


def parse_day(text: Any, tz: str) -> date:
    """`MM/DD/YYYY`, `YYYY-MM-DD`, "Today" or "Yesterday" (in `tz`) -> a date."""
    raw = str(text).strip()
    today = datetime.now(ZoneInfo(tz)).date()
    relative = {"today": today, "yesterday": today - timedelta(days=1)}
    if raw.lower() in relative:
        return relative[raw.lower()]
    for fmt in ("%m/%d/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    raise BadValue(f"{raw!r} is not a date (MM/DD/YYYY or YYYY-MM-DD)")


def day_of(value: Any, tz: str) -> date | None:
    """A stored date or UTC timestamp as a day in the organization's time zone."""
    text = str(value or "").strip()
    if not text:
        return None
    if "T" not in text:
        return date.fromisoformat(text[:10])
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(tz)).date()


def parse_value(kind: str, raw: Any, tz: str) -> Value:
    """A condition's value for a parameter of type `kind`."""
    if raw is None or isinstance(raw, dict | list):
        raise BadValue("a value is required")
    if kind == "Date":
        return parse_day(raw, tz)
    if kind in ("Int", "Decimal"):
        try:
            number = Decimal(str(raw).strip())
        except InvalidOperation:
            raise BadValue(f"{raw!r} is not a number") from None
        if kind == "Int" and number != number.to_integral_value():
            raise BadValue(f"{raw!r} is not a whole number")
        return number
    return str(raw).strip().casefold()


def _positive(name: str, args: list[Value]) -> Callable[[Value], bool]:
    first = args[0] if args else None
    tests: dict[str, Callable[[Value], bool]] = {
        "Is": lambda v: v == first,
        "LessThan": lambda v: v < first, "Before": lambda v: v < first,
        "LessThanOrEqual": lambda v: v <= first, "OnOrBefore": lambda v: v <= first,
        "GreaterThan": lambda v: v > first, "After": lambda v: v > first,
        "GreaterThanOrEqual": lambda v: v >= first, "OnOrAfter": lambda v: v >= first,
        "Contains": lambda v: first in v, "StartsWith": lambda v: v.startswith(first),
        "EndsWith": lambda v: v.endswith(first),
        "Between": lambda v: min(args) <= v <= max(args),
        "In": lambda v: v in args, "IsAnyOf": lambda v: v in args,
        "IsTrue": lambda v: v is True, "IsFalse": lambda v: v is False,
        "IsKnown": lambda v: True,
    }
    return tests[name]


def compile_test(name: str, args: list[Value]) -> Test:
    """The test of one condition over a record's values."""
    if name in NEGATIONS:
        positive = _positive(NEGATIONS[name], args)
        if name == "IsNotKnown":
            return lambda values: not values
        return lambda values: bool(values) and not any(positive(v) for v in values)
    test = _positive(name, args)
    return lambda values: any(test(v) for v in values)
