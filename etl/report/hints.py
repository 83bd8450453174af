"""One-line hints for a rejected value, from its rule and value, for the person approving the
report ("' CC' needs trim", "7.073,96 needs decimal: ','"). A small table: the first rule
whose test matches gives the hint; no match, no hint."""

from __future__ import annotations

import re
from collections.abc import Callable

_COMMA_DECIMAL = re.compile(r"^[-+]?[\d.\s\u00a0']*\d,\d{1,2}$")
_FORMATS = re.compile(r"formats? (.+?): '")


def _trim(rule: str, value: str, error: str) -> str | None:
    return f"{value!r} needs trim" if value and value != value.strip() else None


def _decimal(rule: str, value: str, error: str) -> str | None:
    if "amount" in rule and _COMMA_DECIMAL.match(value.strip()):
        return f"{value} needs decimal: ','"
    return None


def _date(rule: str, value: str, error: str) -> str | None:
    if "date" not in rule:
        return None
    tried = _FORMATS.search(error)
    return (f"{value} is in none of the formats tried ({tried.group(1)}): add its format"
            if tried else None)


def _empty(rule: str, value: str, error: str) -> str | None:
    return "empty: give a value, or drop the row" if not value.strip() and rule in (
        "required", "not_null", "nullable") else None


HINTS: tuple[Callable[[str, str, str], str | None], ...] = (_trim, _decimal, _date, _empty)


def hint(rule: str | None, value: str | None, error: str | None) -> str:
    """The first hint of the table for one failure ('' when none fits)."""
    for test in HINTS:
        found = test(rule or "", value or "", error or "")
        if found:
            return found
    return ""
