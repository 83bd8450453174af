"""The sandbox's own control endpoints (not CRM+ API; any valid key, no budget, no faults).

    POST /sandbox/run-batch            the nightly batch now; answers its summary
    GET  /sandbox/health
    GET  /sandbox/rate-limit           the budget it enforces: {"spec", "requestsPerHour"|null}
    GET  /sandbox/outcomes?after=SEQ   per item the batch (or staff) imported: created, merged,
                                       needs_update, duplicate, imported, with its CRM id
    GET  /sandbox/imports              what waits in Match Needed / Update Needed
    POST /sandbox/imports/import       staff import parked items (then they are records)
    POST /sandbox/imports/delete       staff delete parked items (they never become records)

The two POSTs under /sandbox/imports take a selector: `{"transactionSource", "transactionId"}`,
`{"referenceSource", "referenceId"}`, `{"seq": n}` or `{"queue": "Update Needed"}` (every item
of that queue), plus, for import, an optional `"contactId"` to attach a gift that matched none.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from etl.sandbox.ratelimit import parse_rate
from etl.sandbox.respond import ApiError, json_object

SELECTORS = (("transactionSource", "transactionId"), ("referenceSource", "referenceId"))


def _rt(request: Request) -> Any:
    return request.app.state.sandbox


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "payload"}


def _selected(request: Request, body: dict[str, Any]) -> list[int]:
    items = _rt(request).state.needs_update()
    if "seq" in body:
        chosen = [d for d in items if d["seq"] == body["seq"]]
    elif "queue" in body:
        chosen = [d for d in items if d.get("queue") == body["queue"]]
    else:
        pair = next((p for p in SELECTORS if all(k in body for k in p)), None)
        if pair is None:
            raise ApiError(400, "INVALID_REQUEST", "select with seq, queue, transactionSource + "
                           "transactionId, or referenceSource + referenceId")
        chosen = [d for d in items if all(str(d.get(k)) == str(body[k]) for k in pair)]
    if not chosen:
        raise ApiError(404, "NOT_FOUND", "no parked item matches")
    return [d["seq"] for d in chosen]


async def run_batch(request: Request) -> Response:
    return JSONResponse(await _rt(request).run_batch())


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def rate_limit(request: Request) -> Response:
    spec = _rt(request).limiter.spec
    parsed = parse_rate(spec)
    per_hour = None if parsed is None else parsed[0] * 3600.0 / parsed[1]
    return JSONResponse({"spec": spec, "requestsPerHour": per_hour})


async def outcomes(request: Request) -> Response:
    after = request.query_params.get("after", "0")
    if not after.isdigit():
        raise ApiError(400, "INVALID_REQUEST", "after must be a sequence number")
    return JSONResponse(_rt(request).state.outcomes(int(after)))


async def imports(request: Request) -> Response:
    return JSONResponse([_summary(d) for d in _rt(request).state.needs_update()])


async def imports_import(request: Request) -> Response:
    body = json_object(request)
    contact_id = body.get("contactId")
    if contact_id is not None and (isinstance(contact_id, bool) or not str(contact_id).isdigit()):
        raise ApiError(400, "INVALID_REQUEST", "contactId must be an integer")
    seqs = _selected(request, body)
    result = await _rt(request).import_parked(seqs, int(contact_id) if contact_id else None)
    status = 200 if all(o in ("imported", "duplicate") for o in result["outcomes"].values()) \
        else 409
    return JSONResponse(result, status)


async def imports_delete(request: Request) -> Response:
    seqs = _selected(request, json_object(request))
    _rt(request).state.remove_from("needs_update", seqs)
    return JSONResponse({"deleted": len(seqs)})


ROUTES = [
    Route("/sandbox/run-batch", run_batch, methods=["POST"]),
    Route("/sandbox/health", health, methods=["GET"]),
    Route("/sandbox/rate-limit", rate_limit, methods=["GET"]),
    Route("/sandbox/outcomes", outcomes, methods=["GET"]),
    Route("/sandbox/imports", imports, methods=["GET"]),
    Route("/sandbox/imports/import", imports_import, methods=["POST"]),
    Route("/sandbox/imports/delete", imports_delete, methods=["POST"]),
]
