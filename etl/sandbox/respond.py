"""Response helpers shared by the routes and the gateway: error envelopes, JSON, typing quirks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from etl.sandbox.rules import Detail

AUTH_DENIED = "Authorization has been denied for this request."
JSON_TYPES = ("application/json", "text/json")


@dataclass
class RequestContext:
    """What the gateway learned about a request, handed to the routes in `scope["sandbox"]`."""

    key: str | None
    body: bytes
    items: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ApiError(Exception):
    """Raised by a route; answered with the documented error envelope."""

    def __init__(self, status: int, code: str, message: str,
                 details: list[Detail] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


class InvalidModel(Exception):
    """A body ASP.NET's model binder would refuse: 400 `{"message", "modelState"}`."""

    def __init__(self, model_state: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in model_state.items()))
        self.model_state = model_state


INVALID_MODEL = "The request is invalid."


def model_state(errors: dict[str, list[str]]) -> dict[str, Any]:
    """ASP.NET Web API's answer to an invalid model (virtuous-api.md, Errors)."""
    return {"message": INVALID_MODEL, "modelState": errors}


async def invalid_model_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidModel)
    return Response(dumps(model_state(exc.model_state)), 400, media_type="application/json")


def envelope(code: str, message: str, details: list[Detail] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return Response(dumps(envelope(exc.code, exc.message, exc.details)), exc.status,
                    media_type="application/json")


def context(request: Request) -> RequestContext:
    ctx = request.scope.get("sandbox")
    if not isinstance(ctx, RequestContext):  # called without the gateway (unit use)
        ctx = request.scope["sandbox"] = RequestContext(key=None, body=b"")
    return ctx


def read_json(request: Request, *, required: bool = True) -> Any:
    """The request body as JSON: 415 when not declared JSON, 400 when malformed."""
    body = context(request).body
    if not body.strip():
        if required:
            raise ApiError(400, "INVALID_REQUEST", "the request body is empty")
        return None
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in JSON_TYPES:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       "send the body as JSON with Content-Type: application/json")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "MALFORMED_JSON", f"the body is not valid JSON: {exc}") from None


def json_object(request: Request) -> dict[str, Any]:
    body = read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "the body must be a JSON object")
    return body


def stored() -> Response:
    """A write accepted into the holding state: 200, empty body, no record id."""
    return Response(b"", 200)


def not_found() -> Response:
    """A lookup that found nothing: 404 with an empty body."""
    return Response(b"", 404)


def _stringify(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}" if round(value, 2) == value else repr(value)
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    return value


def record_json(request: Request, data: Any, status: int = 200) -> Response:
    """A read answer; with the `string_numbers` fault every number in the records is a string."""
    runtime = request.app.state.sandbox
    if runtime.faults.settings.string_numbers:
        if isinstance(data, dict) and "list" in data:
            data = {**data, "list": _stringify(data["list"])}
        else:
            data = _stringify(data)
    return JSONResponse(data, status)
