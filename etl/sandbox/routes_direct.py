"""`POST /api/Contact`, the direct create of seed 000: synchronous, NO de-duplication.

The body is the nested contact (`contactType`, `name`, `contactIndividuals[{firstName, lastName,
isPrimary, contactMethods[{type, value, isPrimary}]}]`, `address{...}`, `contactReferences[{source,
id}]`). A valid body becomes a contact at once, even when one with the same email or reference
exists (a second POST is a second contact), and the answer is 200 (not 201) with the full record
and its new id. Find, by reference and by email, sees it immediately. Refused with 422 and
details: an unknown contactType or method type, a malformed email, wrong types, and a contact
with neither a name nor an individual with firstName and lastName (there is no holding state
to park it in).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from etl.sandbox.respond import ApiError, context, json_object, record_json
from etl.sandbox.rules import ADDRESS_STRINGS, EMAIL, Detail, detail, present
from etl.sandbox.views import full_contact

PERSON = ("prefix", "firstName", "middleName", "lastName", "suffix", "gender")
BIRTH = {"birthMonth": (1, 12), "birthDay": (1, 31), "birthYear": (1850, 2100)}
INVALID = "the contact failed validation; see details"


def _text(obj: dict[str, Any], names: tuple[str, ...], p: str, out: list[Detail]) -> None:
    for name in names:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            out.append(detail(p + name, "INVALID_TYPE", f"{name} must be a string"))


def _birth(ind: dict[str, Any], p: str, out: list[Detail]) -> None:
    for name, (lo, hi) in BIRTH.items():
        v = ind.get(name)
        if not present(v):
            continue
        text = str(v).strip()
        if isinstance(v, bool) or not text.isdigit():
            out.append(detail(p + name, "INVALID_TYPE", f"{name} must be an integer"))
        elif not lo <= int(text) <= hi:
            out.append(detail(p + name, "OUT_OF_RANGE", f"{name} must be between {lo} and {hi}"))


def _list(body: dict[str, Any], name: str, p: str, out: list[Detail]) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        out.append(detail(p + name, "INVALID_TYPE", f"{name} must be a list"))
        return []
    return value


def _method(m: Any, types: tuple[str, ...], p: str, out: list[Detail]) -> None:
    if not isinstance(m, dict):
        out.append(detail(p.rstrip("."), "INVALID_TYPE", "a contact method must be an object"))
        return
    kind, value = m.get("type"), m.get("value")
    if not present(kind):
        out.append(detail(p + "type", "REQUIRED", "type is required"))
    elif kind not in types:
        out.append(detail(p + "type", "INVALID_VALUE", f"{kind!r} is not a contact method type "
                          f"of this organization (one of: {', '.join(types)})"))
    if not present(value) or not isinstance(value, str):
        out.append(detail(p + "value", "REQUIRED", "value is required (a string)"))
    elif ("email" in str(kind).lower() or "@" in value) and not EMAIL.match(value.strip()):
        out.append(detail(p + "value", "INVALID_FORMAT",
                          f"{value!r} is not a valid email address"))


def check_nested(body: dict[str, Any], org: Any) -> list[Detail]:
    """What the real API would refuse with 422 in a nested contact."""
    out: list[Detail] = []
    _text(body, ("contactType", "name"), "", out)
    kind = body.get("contactType")
    if present(kind) and kind not in org.contact_types:
        out.append(detail("contactType", "INVALID_VALUE", f"{kind!r} is not a contact type of "
                          f"this organization (one of: {', '.join(org.contact_types)})"))
    named = present(body.get("name"))
    for i, ind in enumerate(_list(body, "contactIndividuals", "", out)):
        p = f"contactIndividuals[{i}]."
        if not isinstance(ind, dict):
            out.append(detail(p.rstrip("."), "INVALID_TYPE", "an individual must be an object"))
            continue
        _text(ind, PERSON, p, out)
        _birth(ind, p, out)
        named = named or (present(ind.get("firstName")) and present(ind.get("lastName")))
        for j, m in enumerate(_list(ind, "contactMethods", p, out)):
            _method(m, org.method_types, f"{p}contactMethods[{j}].", out)
    address = body.get("address")
    if address is not None and not isinstance(address, dict):
        out.append(detail("address", "INVALID_TYPE", "address must be an object"))
    elif isinstance(address, dict):
        _text(address, ADDRESS_STRINGS, "address.", out)
    for i, ref in enumerate(_list(body, "contactReferences", "", out)):
        p = f"contactReferences[{i}]."
        if not isinstance(ref, dict):
            out.append(detail(p.rstrip("."), "INVALID_TYPE", "a reference must be an object"))
            continue
        for name in ("source", "id"):
            if not present(ref.get(name)) or isinstance(ref.get(name), dict | list | bool):
                out.append(detail(p + name, "REQUIRED", f"{name} is required (a string)"))
    if not named:
        out.append(detail("name", "REQUIRED", "a contact needs a name, or an individual with "
                          "firstName and lastName"))
    return out


def flatten(body: dict[str, Any]) -> tuple[dict[str, Any], tuple[tuple[str, str], ...],
                                           tuple[dict[str, Any], ...]]:
    """A valid nested body as the sandbox stores contacts: flat fields (the primary
    individual's names, the address), its references and every individual's methods."""
    people = [i for i in body.get("contactIndividuals") or [] if isinstance(i, dict)]
    primary = next((i for i in people if i.get("isPrimary") is True), people[0] if people else {})
    flat: dict[str, Any] = {"contactType": body.get("contactType"), "name": body.get("name"),
                            "title": primary.get("prefix")}
    for name in ("firstName", "middleName", "lastName", "suffix", "gender", *BIRTH):
        flat[name] = primary.get(name)
    raw = body.get("address")
    address: dict[str, Any] = raw if isinstance(raw, dict) else {}
    for name in ADDRESS_STRINGS:
        flat[name] = address.get(name)
    methods = tuple({"type": m["type"], "value": m["value"].strip()}
                    for person in people for m in person.get("contactMethods") or [])
    refs = tuple((str(r["source"]), str(r["id"])) for r in body.get("contactReferences") or [])
    return flat, refs, methods


async def contact_create(request: Request) -> Response:
    rt = request.app.state.sandbox
    body = json_object(request)
    context(request).items = 1
    details = check_nested(body, rt.org)
    if details:
        raise ApiError(422, "VALIDATION_FAILED", INVALID, details)
    flat, refs, methods = flatten(body)
    contact = rt.state.create_contact(flat, refs, methods)
    return record_json(request, full_contact(contact))


ROUTES = [Route("/api/Contact", contact_create, methods=["POST"])]
