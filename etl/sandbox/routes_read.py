"""Reads, reference lists, webhook subscriptions and the sandbox's own control endpoints."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from etl.sandbox.contacts import norm_email
from etl.sandbox.respond import ApiError, json_object, not_found, read_json, record_json
from etl.sandbox.webhooks import check_subscription, public

MAX_TAKE = 1000


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
    return _one(request, found)


def _one(request: Request, found: dict[str, Any] | None) -> Response:
    return record_json(request, found) if found else not_found()


async def contact_by_reference(request: Request) -> Response:
    p = request.path_params
    return _one(request, _rt(request).state.contact_by_reference(p["referenceSource"],
                                                                 p["referenceId"]))


async def contact_by_id(request: Request) -> Response:
    return _one(request, _rt(request).state.contact(request.path_params["contactId"]))


async def gift_by_key(request: Request) -> Response:
    p = request.path_params
    return _one(request, _rt(request).state.gift_by_key(p["transactionSource"],
                                                        p["transactionId"]))


async def gift_by_id(request: Request) -> Response:
    return _one(request, _rt(request).state.gift(request.path_params["giftId"]))


def _paging(request: Request) -> tuple[int, int]:
    try:
        skip = int(request.query_params.get("skip", "0"))
        take = int(request.query_params.get("take", "100"))
    except ValueError:
        raise ApiError(400, "INVALID_REQUEST", "skip and take must be integers") from None
    if skip < 0 or take < 1 or take > MAX_TAKE:
        raise ApiError(400, "INVALID_REQUEST", f"skip must be >= 0 and take 1..{MAX_TAKE}")
    return skip, take


def _since(filters: dict[str, Any]) -> str | None:
    value = filters.get("modifiedSince")
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise ApiError(400, "INVALID_REQUEST", "modifiedSince must be an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _page(request: Request, records: Iterable[dict[str, Any]], filtered: bool,
          size: int) -> Response:
    skip, take = _paging(request)
    if filtered:
        matching = list(records)
        page, total = matching[skip:skip + take], len(matching)
    else:
        page, total = list(islice(records, skip, skip + take)), size
    return record_json(request, {"list": [dict(r) for r in page], "total": total})


def _filters(request: Request) -> dict[str, Any]:
    body = read_json(request, required=False)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "the query body must be a JSON object")
    return body


async def contact_query(request: Request) -> Response:
    filters, state = _filters(request), _rt(request).state
    since, source = _since(filters), filters.get("referenceSource")

    def keep(contacts: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for c in contacts:
            if since and c["modifiedDateTimeUtc"] < since:
                continue
            if source and all(r["source"] != source for r in c["contactReferences"]):
                continue
            yield c

    with state.lock:
        everything = state.directory.by_id.values()
        return _page(request, keep(everything), bool(since or source), len(everything))


async def gift_query(request: Request) -> Response:
    filters, state = _filters(request), _rt(request).state
    since = _since(filters)
    source, contact_id = filters.get("transactionSource"), filters.get("contactId")

    def keep(gifts: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for g in gifts:
            if since and g["modifiedDateTimeUtc"] < since:
                continue
            if source and g["transactionSource"] != source:
                continue
            if contact_id is not None and str(g["contactId"]) != str(contact_id):
                continue
            yield g

    with state.lock:
        everything = state.gift_values()
        filtered = bool(since or source or contact_id is not None)
        return _page(request, keep(everything), filtered, len(everything))


def _listing(attr: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return record_json(request, list(getattr(_rt(request).org, attr)))
    return endpoint


async def project_by_code(request: Request) -> Response:
    code = request.path_params["code"]
    found = next((p for p in _rt(request).org.projects if p["code"] == code), None)
    return _one(request, found)


async def webhook_create(request: Request) -> Response:
    body = json_object(request)
    details = check_subscription(body)
    if details:
        raise ApiError(422, "VALIDATION_FAILED", "the subscription failed validation", details)
    sub = _rt(request).state.save_webhook(
        {"event": body["event"], "url": body["url"], "secret": body.get("secret")})
    return JSONResponse(public(sub))


async def webhook_list(request: Request) -> Response:
    return JSONResponse([public(s) for s in _rt(request).state.webhooks()])


async def webhook_delete(request: Request) -> Response:
    found = _rt(request).state.delete_webhook(request.path_params["webhookId"])
    return Response(b"", 200) if found else not_found()


async def run_batch(request: Request) -> Response:
    return JSONResponse(await _rt(request).run_batch())


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


ROUTES = [
    Route("/api/Organization/Current", organization, methods=["GET"]),
    Route("/api/Contact/Find", contact_find, methods=["GET"]),
    Route("/api/Contact/Types", _listing("contact_types"), methods=["GET"]),
    Route("/api/Contact/CustomFields", _listing("contact_custom_fields"), methods=["GET"]),
    Route("/api/ContactMethod/Types", _listing("method_types"), methods=["GET"]),
    Route("/api/Gift/NonCashGiftTypes", _listing("non_cash_gift_types"), methods=["GET"]),
    Route("/api/Gift/CustomFields", _listing("gift_custom_fields"), methods=["GET"]),
    Route("/api/Project/Code/{code}", project_by_code, methods=["GET"]),
    Route("/api/Contact/Query", contact_query, methods=["POST"]),
    Route("/api/Gift/Query", gift_query, methods=["POST"]),
    Route("/api/Contact/{contactId:int}", contact_by_id, methods=["GET"]),
    Route("/api/Gift/{giftId:int}", gift_by_id, methods=["GET"]),
    Route("/api/Contact/{referenceSource}/{referenceId:path}", contact_by_reference,
          methods=["GET"]),
    Route("/api/Gift/{transactionSource}/{transactionId:path}", gift_by_key, methods=["GET"]),
    Route("/api/Webhook", webhook_list, methods=["GET"]),
    Route("/api/Webhook", webhook_create, methods=["POST"]),
    Route("/api/Webhook/{webhookId:int}", webhook_delete, methods=["DELETE"]),
    Route("/sandbox/run-batch", run_batch, methods=["POST"]),
    Route("/sandbox/health", health, methods=["GET"]),
]
