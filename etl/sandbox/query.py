"""The Query endpoints' body: `{"groups": [{"conditions": [...]}], "sortBy", "descending"}`.

Conditions within a group are AND, groups are OR; no group (an empty list) means everything.
Property names are matched in any case, as ASP.NET's model binder does; parameter and operator
names must be spelled as QueryOptions lists them. Anything the sandbox cannot run is a 400 in
ASP.NET's shape, `{"message": "The request is invalid.", "modelState": {path: [messages]}}`.
A body without `groups` (flat filters) is refused, or with `query_without_groups="ignore"`
ignored: the query then answers the whole organization.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from etl.sandbox.config import Org
from etl.sandbox.contacts import norm_email
from etl.sandbox.query_ops import (
    BY_TYPE,
    DATE_RELATIVE,
    OPERATORS,
    BadValue,
    Test,
    compile_test,
    day_of,
    parse_value,
)
from etl.sandbox.respond import InvalidModel

Record = dict[str, Any]
Getter = Callable[[Record, str], list[Any]]


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    get: Getter
    values: Callable[[Org], tuple[str, ...]] | None = None


def _text(*names: str) -> Getter:
    def get(r: Record, tz: str) -> list[Any]:
        return [str(r[n]).strip().casefold() for n in names if str(r.get(n) or "").strip()]
    return get


def _number(name: str) -> Getter:
    def get(r: Record, tz: str) -> list[Any]:
        return [Decimal(str(r[name]))] if r.get(name) is not None else []
    return get


def _day(name: str) -> Getter:
    def get(r: Record, tz: str) -> list[Any]:
        day = day_of(r.get(name), tz)
        return [day] if day else []
    return get


def _flag(name: str) -> Getter:
    def get(r: Record, tz: str) -> list[Any]:
        value = r.get(name)
        return [] if value is None else [value is True or str(value).lower() == "true"]
    return get


def _emails(r: Record, tz: str) -> list[Any]:
    found = (norm_email(m["value"]) for m in r.get("contactMethods", ()))
    return [e for e in found if e and "@" in e]


def _refs(part: str) -> Getter:
    def get(r: Record, tz: str) -> list[Any]:
        return [str(ref[part]).casefold() for ref in r.get("contactReferences", ())]
    return get


GIFT_PARAMETERS = (
    Parameter("Gift Date", "Date", _day("giftDate")),
    Parameter("Receipt Date", "Date", _day("receiptDate")),
    Parameter("Amount", "Decimal", _number("amount")),
    Parameter("Gift Type", "List", _text("giftType"), lambda org: org.gift_types),
    Parameter("Batch", "String", _text("batch")),
    Parameter("Transaction Id", "String", _text("transactionId")),
    Parameter("Transaction Source", "String", _text("transactionSource")),
    Parameter("Contact Id", "Int", _number("contactId")),
    Parameter("Currency Code", "String", _text("currencyCode")),
    Parameter("Last Modified Date", "Date", _day("modifiedDateTimeUtc")),
    Parameter("Create Date", "Date", _day("createDateTimeUtc")),
    Parameter("Is Private", "Boolean", _flag("isPrivate")),
    Parameter("Is Tax Deductible", "Boolean", _flag("isTaxDeductible")),
)
CONTACT_PARAMETERS = (
    Parameter("Last Modified Date", "Date", _day("modifiedDateTimeUtc")),
    Parameter("Create Date", "Date", _day("createDateTimeUtc")),
    Parameter("Contact Id", "Int", _number("id")),
    Parameter("Contact Type", "List", _text("contactType"), lambda org: org.contact_types),
    Parameter("Email", "String", _emails),
    Parameter("Reference Source", "String", _refs("source")),
    Parameter("Reference Id", "String", _refs("id")),
)


def offered(parameters: tuple[Parameter, ...], hidden: Iterable[str]) -> dict[str, Parameter]:
    hide = set(hidden)
    return {p.name: p for p in parameters if p.name not in hide}


def query_options(parameters: dict[str, Parameter], org: Org) -> dict[str, Any]:
    """`GET /api/{Gift|Contact}/QueryOptions`: exactly what `compile_query` runs."""
    def op(name: str) -> dict[str, Any]:
        o = OPERATORS[name]
        return {"operator": o.name, "multipleValuesAllowed": o.multiple,
                "valueRequired": o.value_required}

    options = []
    for p in parameters.values():
        values = list(p.values(org)) if p.values else (
            list(DATE_RELATIVE) if p.type == "Date" else [])
        options.append({"parameter": p.name, "type": p.type,
                        "operatorOptions": [op(n) for n in BY_TYPE[p.type]],
                        "valueOptions": values})
    return {"options": options, "operatorOptions": [op(n) for n in OPERATORS]}


def _lower_keys(obj: Any) -> Any:
    return {str(k).lower(): v for k, v in obj.items()} if isinstance(obj, dict) else obj


@dataclass
class Query:
    groups: list[list[tuple[Getter, Test]]] | None  # None: every record
    sort: Getter | None  # None: by id
    descending: bool

    def run(self, records: Iterable[Record], tz: str) -> list[Record]:
        def keep(r: Record) -> bool:
            assert self.groups is not None
            return any(all(test(get(r, tz)) for get, test in g) for g in self.groups)

        chosen = list(records) if self.groups is None else [r for r in records if keep(r)]
        if self.sort is None:
            chosen.sort(key=lambda r: r["id"], reverse=self.descending)
            return chosen
        sort = self.sort

        def key(r: Record) -> tuple[bool, Any]:
            values = sort(r, tz)
            return (bool(values) == self.descending, values[0] if values else 0)
        chosen.sort(key=lambda r: r["id"])
        chosen.sort(key=key, reverse=self.descending)  # stable: ties stay in id order
        return chosen


def _condition(raw: Any, path: str, params: dict[str, Parameter], tz: str,
               errors: dict[str, list[str]]) -> tuple[Getter, Test] | None:
    cond = _lower_keys(raw)
    if not isinstance(cond, dict):
        errors[path] = ["A condition must be an object."]
        return None
    param = params.get(str(cond.get("parameter")))
    if param is None:
        errors[path + ".parameter"] = [
            f"Unknown parameter {cond.get('parameter')!r}; see QueryOptions for the parameters "
            f"offered: {', '.join(params)}."]
        return None
    name = str(cond.get("operator"))
    if name not in OPERATORS or name not in BY_TYPE[param.type]:
        errors[path + ".operator"] = [
            f"Operator {cond.get('operator')!r} is not valid for {param.name!r} ({param.type}); "
            f"valid: {', '.join(BY_TYPE[param.type])}."]
        return None
    arity = OPERATORS[name].arity
    try:
        if arity == "none":
            args: list[Any] = []
        elif arity == "one":
            args = [parse_value(param.type, cond.get("value"), tz)]
        elif arity == "two":
            listed = cond.get("values")
            pair: list[Any] = listed if isinstance(listed, list) else [
                cond.get("value"), cond.get("secondaryvalue")]
            if len(pair) != 2:
                raise BadValue("Between takes value and secondaryValue")
            args = [parse_value(param.type, v, tz) for v in pair]
        else:
            many = cond.get("values")
            if not isinstance(many, list):
                many = [v for v in str(cond.get("value") or "").split(",") if v.strip()]
            if not many:
                raise BadValue(f"{name} takes a non-empty values list")
            args = [parse_value(param.type, v, tz) for v in many]
    except BadValue as exc:
        errors[path + ".value"] = [str(exc)]
        return None
    return param.get, compile_test(name, args)


def compile_query(body: Any, params: dict[str, Parameter], tz: str, *,
                  without_groups: str = "refuse") -> Query:
    """Read a Query body; raises InvalidModel with every problem found."""
    top = _lower_keys(body) if body is not None else None
    if top is not None and not isinstance(top, dict):
        raise InvalidModel({"query": ["The query must be a JSON object."]})
    sort: Getter | None = None
    descending = False
    errors: dict[str, list[str]] = {}
    if top:
        wanted = str(top.get("sortby") or "Id")
        names = {n.replace(" ", "").casefold(): p for n, p in params.items()}
        if wanted.replace(" ", "").casefold() != "id":
            found = names.get(wanted.replace(" ", "").casefold())
            if found is None:
                errors["query.sortBy"] = [f"Cannot sort by {wanted!r}."]
            else:
                sort = found.get
        descending = top.get("descending") is True or str(top.get("descending")).lower() == "true"
    if top is None or "groups" not in top:
        if without_groups == "ignore" and not errors:
            return Query(None, sort, descending)
        raise InvalidModel({"query.groups" if top is not None else "query":
                            ["The Groups field is required." if top is not None
                             else "The query field is required."], **errors})
    groups: list[list[tuple[Getter, Test]]] = []
    raw_groups = top["groups"]
    if not isinstance(raw_groups, list):
        raise InvalidModel({"query.groups": ["Groups must be a list."], **errors})
    for gi, raw_group in enumerate(raw_groups):
        group = _lower_keys(raw_group)
        conditions = group.get("conditions") if isinstance(group, dict) else None
        if not isinstance(conditions, list):
            errors[f"query.groups[{gi}].conditions"] = ["Conditions must be a list."]
            continue
        compiled = [_condition(c, f"query.groups[{gi}].conditions[{ci}]", params, tz, errors)
                    for ci, c in enumerate(conditions)]
        groups.append([c for c in compiled if c is not None])
    if errors:
        raise InvalidModel(errors)
    return Query(groups if raw_groups else None, sort, descending)
