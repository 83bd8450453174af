"""Per-record lookups and the organization's reference lists.

Lookups answer the full record (views.py) or 404 with an empty body. A gift or contact that is
still held, or parked in Match Needed / Update Needed, is not a record yet: 404.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from etl.sandbox.contacts import norm_email
from etl.sandbox.respond import ApiError, not_found, record_json
from etl.sandbox.views import full_contact, full_gift


def _rt(request: Request) -> Any:
    return request.app.state.sandbox


async def organization(request: Request) -> Response:
    org = _rt(request).org
    return record_json(request, {"id": org.id, "organizationName": org.name,
                                 "organizationTimeZone": org.timezone})


async def contact_find(request: Request) -> Response:
    q, state = request.query_params, _rt(request).state
    with state.lock:
        if q.get("referenceSource") and q.get("referenceId"):
            found = state.contact_by_reference(q["referenceSource"], q["referenceId"])
        elif email := norm_email(q.get("email")):
            cid = state.directory.by_email.get(email)
            found = state.contact(cid) if cid is not None else None
        else:
            raise ApiError(400, "INVALID_REQUEST",
                           "give email, or referenceSource and referenceId")
    return _contact(request, found)


def _one(request: Request, found: dict[str, Any] | None) -> Response:
    return record_json(request, found) if found else not_found()


def _contact(request: Request, found: dict[str, Any] | None) -> Response:
    return _one(request, full_contact(found) if found else None)


def _gift(request: Request, found: dict[str, Any] | None) -> Response:
    return _one(request, full_gift(found) if found else None)


async def contact_by_reference(request: Request) -> Response:
    p = request.path_params
    return _contact(request, _rt(request).state.contact_by_reference(p["referenceSource"],
                                                                     p["referenceId"]))


async def contact_by_id(request: Request) -> Response:
    return _contact(request, _rt(request).state.contact(request.path_params["contactId"]))


async def gift_by_key(request: Request) -> Response:
    p = request.path_params
    return _gift(request, _rt(request).state.gift_by_key(p["transactionSource"],
                                                         p["transactionId"]))


async def gift_by_id(request: Request) -> Response:
    return _gift(request, _rt(request).state.gift(request.path_params["giftId"]))


def _listing(attr: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return record_json(request, list(getattr(_rt(request).org, attr)))
    return endpoint


async def contact_types(request: Request) -> Response:
    """`[{parentType, type}]` (VTS); the sandbox's types have no parents but themselves."""
    return record_json(request, [{"parentType": t, "type": t}
                                 for t in _rt(request).org.contact_types])


async def non_cash_gift_types(request: Request) -> Response:
    """`{list: [{id, name, isEnabled}], total}` (VTS)."""
    names = _rt(request).org.non_cash_gift_types
    return record_json(request, {"list": [{"id": i, "name": n, "isEnabled": True}
                                          for i, n in enumerate(names, 1)], "total": len(names)})


async def project_by_code(request: Request) -> Response:
    code = request.path_params["code"]
    found = next((p for p in _rt(request).org.projects if p["code"] == code), None)
    return _one(request, found)


ROUTES = [
    Route("/api/Organization/Current", organization, methods=["GET"]),
    Route("/api/Contact/Find", contact_find, methods=["GET"]),
    Route("/api/Contact/Types", contact_types, methods=["GET"]),
    Route("/api/Contact/CustomFields", _listing("contact_custom_fields"), methods=["GET"]),
    Route("/api/ContactMethod/Types", _listing("method_types"), methods=["GET"]),
    Route("/api/Gift/NonCashGiftTypes", non_cash_gift_types, methods=["GET"]),
    Route("/api/Gift/CustomFields", _listing("gift_custom_fields"), methods=["GET"]),
    Route("/api/Project/Code/{code}", project_by_code, methods=["GET"]),
    Route("/api/Contact/{contactId:int}", contact_by_id, methods=["GET"]),
    Route("/api/Gift/{giftId:int}", gift_by_id, methods=["GET"]),
    Route("/api/Contact/{referenceSource}/{referenceId:path}", contact_by_reference,
          methods=["GET"]),
    Route("/api/Gift/{transactionSource}/{transactionId:path}", gift_by_key, methods=["GET"]),
]
