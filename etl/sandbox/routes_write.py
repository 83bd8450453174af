"""The four write endpoints. Each accepted payload is held for the nightly batch; 200, no id."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from etl.sandbox.respond import ApiError, context, json_object, stored
from etl.sandbox.rules import (
    Detail,
    check_contact,
    check_gift,
    detail,
    parse_amount,
    present,
)

INVALID = "the payload failed validation; see details"


def _runtime(request: Request) -> Any:
    return request.app.state.sandbox


def _refuse(details: list[Detail]) -> ApiError:
    return ApiError(422, "VALIDATION_FAILED", INVALID, details)


def _single(request: Request, kind: str, check: Any) -> Response:
    """One transaction: refused with 422 details, or held."""
    rt = _runtime(request)
    body = json_object(request)
    context(request).items = 1
    details = check(body, rt.org)
    if details:
        raise _refuse(details)
    rt.state.hold(kind, [body], {})
    return stored()


async def contact_transaction(request: Request) -> Response:
    return _single(request, "contact", check_contact)


async def gift_transaction(request: Request) -> Response:
    return _single(request, "gift", check_gift)


def _items(request: Request, body: dict[str, Any], name: str) -> list[Any]:
    items = body.get(name)
    if not isinstance(items, list):
        raise ApiError(400, "INVALID_REQUEST", f"{name} must be a list")
    context(request).items = len(items)
    limit = _runtime(request).config.max_batch
    if len(items) > limit:
        raise ApiError(400, "BATCH_TOO_LARGE",
                       f"a batch may carry at most {limit} {name}; this one has {len(items)}")
    return items


def _inherit(item: Any, defaults: dict[str, Any]) -> Any:
    """An item with the envelope's values for the fields it lacks."""
    if not isinstance(item, dict):
        return item
    missing = {k: v for k, v in defaults.items() if present(v) and not present(item.get(k))}
    return {**item, **missing} if missing else item


def _hold_batch(request: Request, kind: str, name: str, items: list[Any],
                checked: list[list[Detail]], meta: dict[str, Any]) -> Response:
    rt = _runtime(request)
    bad = [d for ds in checked for d in ds]
    if bad and rt.config.batch_mode == "reject_all":
        raise _refuse(bad)
    good = [item for item, ds in zip(items, checked, strict=True) if not ds]
    for index, (item, ds) in enumerate(zip(items, checked, strict=True)):
        if ds:  # accept_valid: dropped without telling the client, as the real API may do
            rt.state.add_to("rejected", {"kind": kind, "index": index, "path": request.url.path,
                                         "details": ds, "payload": item})
    if good:
        rt.state.hold(kind, good, meta)
    return stored()


async def contact_batch(request: Request) -> Response:
    rt = _runtime(request)
    body = json_object(request)
    items = _items(request, body, "contacts")
    source = body.get("referenceSource")
    if source is not None and not isinstance(source, str):
        raise _refuse([detail("referenceSource", "INVALID_TYPE", "must be a string")])
    items = [_inherit(item, {"referenceSource": source}) for item in items]
    checked = [check_contact(item, rt.org, f"contacts[{i}].") for i, item in enumerate(items)]
    return _hold_batch(request, "contact", "contacts", items, checked, {})


def _check_envelope(body: dict[str, Any], rt: Any) -> list[Detail]:
    out: list[Detail] = []
    for name in ("transactionSource", "importName", "batch"):
        if body.get(name) is not None and not isinstance(body.get(name), str | int):
            out.append(detail(name, "INVALID_TYPE", f"{name} must be a string"))
    envelope_gift = {"giftDate": body.get("defaultGiftDate"),
                     "giftType": body.get("defaultGiftType")}
    for d in check_gift({**envelope_gift, "transactionSource": "x", "transactionId": "x",
                         "amount": 1}, rt.org):
        if d["field"] in envelope_gift and d["code"] != "REQUIRED":
            out.append({**d, "field": "default" + d["field"][0].upper() + d["field"][1:]})
    total = body.get("batchTotal")
    if total is not None and parse_amount(total) is None:
        out.append(detail("batchTotal", "INVALID_TYPE", "batchTotal must be a number"))
    flag = body.get("createImport")
    if flag is not None and not isinstance(flag, bool) and str(flag).lower() not in (
            "true", "false"):
        out.append(detail("createImport", "INVALID_TYPE", "createImport must be true or false"))
    return out


async def gift_batch(request: Request) -> Response:
    rt = _runtime(request)
    body = json_object(request)
    items = _items(request, body, "transactions")
    envelope_details = _check_envelope(body, rt)
    if envelope_details:
        raise _refuse(envelope_details)
    defaults = {"transactionSource": body.get("transactionSource"), "batch": body.get("batch"),
                "giftDate": body.get("defaultGiftDate"), "giftType": body.get("defaultGiftType")}
    items = [_inherit(item, defaults) for item in items]
    checked = [check_gift(item, rt.org, f"transactions[{i}].") for i, item in enumerate(items)]
    names = ("importName", "createImport", "batch", "batchTotal")
    meta: dict[str, Any] = {k: body[k] for k in names if k in body}
    return _hold_batch(request, "gift", "transactions", items, checked, meta)


ROUTES = [
    Route("/api/Contact/Transaction", contact_transaction, methods=["POST"]),
    Route("/api/Contact/Batch", contact_batch, methods=["POST"]),
    Route("/api/v2/Gift/Transaction", gift_transaction, methods=["POST"]),
    Route("/api/Gift/Transaction", gift_transaction, methods=["POST"]),
    Route("/api/v2/Gift/Transactions", gift_batch, methods=["POST"]),
]
