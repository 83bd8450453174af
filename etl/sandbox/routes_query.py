"""The Query endpoints and their QueryOptions.

    POST /api/Gift/Query               {"list": [abbreviated gifts], "total": n}
    POST /api/Gift/Query/FullGift      {"list": [full gifts], "total": n}
    POST /api/Contact/Query            {"list": [abbreviated contacts], "total": n}
    POST /api/Contact/Query/FullContact {"list": [full contacts], "total": n}
    GET  /api/Gift/QueryOptions, GET /api/Contact/QueryOptions

All four queries take `?skip=&take=` (take 1..1000, default 100) and the body of query.py.
Only imported records are queried: held and parked transactions are not records yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from etl.sandbox.query import (
    CONTACT_PARAMETERS,
    GIFT_PARAMETERS,
    compile_query,
    offered,
    query_options,
)
from etl.sandbox.respond import ApiError, InvalidModel, read_json, record_json
from etl.sandbox.views import contact_item, full_contact, full_gift, gift_item

MAX_TAKE = 1000
Render = Callable[[dict[str, Any]], dict[str, Any]]


def _rt(request: Request) -> Any:
    return request.app.state.sandbox


def _paging(request: Request) -> tuple[int, int]:
    errors: dict[str, list[str]] = {}
    values = {}
    for name, default, low, high in (("skip", 0, 0, None), ("take", 100, 1, MAX_TAKE)):
        raw = request.query_params.get(name, str(default))
        try:
            values[name] = int(raw)
        except ValueError:
            errors[name] = [f"The value '{raw}' is not valid for {name}."]
            continue
        if values[name] < low or (high is not None and values[name] > high):
            errors[name] = [f"{name} must be between {low} and {high or 'any'}."]
    if errors:
        raise InvalidModel(errors)
    return values["skip"], values["take"]


def _query(kind: str, render: Render) -> Any:
    parameters = GIFT_PARAMETERS if kind == "gift" else CONTACT_PARAMETERS

    async def endpoint(request: Request) -> Response:
        rt = _rt(request)
        skip, take = _paging(request)
        try:
            body = read_json(request, required=False)
        except ApiError as exc:
            if exc.status != 400:
                raise
            raise InvalidModel({"query": [exc.message]}) from None
        params = offered(parameters, rt.config.query_options_hide)
        query = compile_query(body, params, rt.org.timezone,
                              without_groups=rt.config.query_without_groups)
        state = rt.state
        with state.lock:
            records = state.gift_values() if kind == "gift" else state.directory.by_id.values()
            found = query.run(records, rt.org.timezone)
            page = [render(r) for r in found[skip:skip + take]]
        return record_json(request, {"list": page, "total": len(found)})

    return endpoint


def _options(kind: str) -> Any:
    parameters = GIFT_PARAMETERS if kind == "gift" else CONTACT_PARAMETERS

    async def endpoint(request: Request) -> Response:
        rt = _rt(request)
        return record_json(request, query_options(
            offered(parameters, rt.config.query_options_hide), rt.org))

    return endpoint


ROUTES = [
    Route("/api/Gift/Query", _query("gift", gift_item), methods=["POST"]),
    Route("/api/Gift/Query/FullGift", _query("gift", full_gift), methods=["POST"]),
    Route("/api/Contact/Query", _query("contact", contact_item), methods=["POST"]),
    Route("/api/Contact/Query/FullContact", _query("contact", full_contact), methods=["POST"]),
    Route("/api/Gift/QueryOptions", _options("gift"), methods=["GET"]),
    Route("/api/Contact/QueryOptions", _options("contact"), methods=["GET"]),
]
