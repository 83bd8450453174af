"""Webhook subscription routes (MCP endpoints.py): there is no list route.

    POST   /api/Webhook                 one subscription -> it, with its id (never the secret)
    GET    /api/Webhook/{id}            it, or 404
    PUT    /api/Webhook/{id}            replace it (a secret left out is gone: PUT replaces)
    PUT    /api/Webhook/{id}/Active     body `true`/`false` or {"active": bool}
    DELETE /api/Webhook/{id}            200, or 404
    GET    /api/Webhook                 404: not a route of the API
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from etl.sandbox.respond import InvalidModel, json_object, not_found, read_json
from etl.sandbox.webhooks import check_subscription, public, subscription


def _state(request: Request) -> Any:
    return request.app.state.sandbox.state


def _checked(request: Request) -> dict[str, Any]:
    body = json_object(request)
    errors = check_subscription(body)
    if errors:
        raise InvalidModel(errors)
    return subscription(body)


async def webhook_create(request: Request) -> Response:
    return JSONResponse(public(_state(request).save_webhook(_checked(request))))


async def webhook_get(request: Request) -> Response:
    sub = _state(request).webhook(request.path_params["webhookId"])
    return JSONResponse(public(sub)) if sub else not_found()


async def webhook_put(request: Request) -> Response:
    state, sub_id = _state(request), request.path_params["webhookId"]
    if state.webhook(sub_id) is None:
        return not_found()
    return JSONResponse(public(state.save_webhook({"id": sub_id, **_checked(request)})))


async def webhook_active(request: Request) -> Response:
    state, sub_id = _state(request), request.path_params["webhookId"]
    sub = state.webhook(sub_id)
    if sub is None:
        return not_found()
    body = read_json(request)
    if isinstance(body, dict):
        body = {str(k).lower(): v for k, v in body.items()}.get("active")
    if not isinstance(body, bool):
        raise InvalidModel({"active": ["Send true or false (or {\"active\": true})."]})
    return JSONResponse(public(state.save_webhook({**sub, "active": body})))


async def webhook_delete(request: Request) -> Response:
    found = _state(request).delete_webhook(request.path_params["webhookId"])
    return Response(b"", 200) if found else not_found()


async def no_list_route(request: Request) -> Response:
    return not_found()


ROUTES = [
    Route("/api/Webhook", no_list_route, methods=["GET"]),
    Route("/api/Webhook", webhook_create, methods=["POST"]),
    Route("/api/Webhook/{webhookId:int}", webhook_get, methods=["GET"]),
    Route("/api/Webhook/{webhookId:int}", webhook_put, methods=["PUT"]),
    Route("/api/Webhook/{webhookId:int}", webhook_delete, methods=["DELETE"]),
    Route("/api/Webhook/{webhookId:int}/Active", webhook_active, methods=["PUT"]),
]
