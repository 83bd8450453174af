"""The CRM+ client: endpoint table, base URL rule, defensive body parsing, status -> error class."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from etl.base.errors import CredentialsRefused, RequestRejected, TransientError
from etl.load.client import (
    ENDPOINTS,
    CrmClient,
    EndpointMissing,
    check_base_url,
    coerce_bool,
    coerce_number,
    item_details,
    parse_error_body,
    retry_after,
)
from etl.targets import get_target

TOKEN = "CANARY-TOKEN-5f2b"


def _call(handler: Callable[[httpx.Request], httpx.Response], endpoint: str = "gift_batch",
          body: bytes | None = b"{}") -> Any:
    async def go() -> Any:
        async with CrmClient("https://api.example.org", TOKEN,
                             transport=httpx.MockTransport(handler)) as client:
            return await client.send(endpoint, body), client

    return asyncio.run(go())


def test_every_target_endpoint_is_in_the_one_table() -> None:
    for name in ("contact_transaction", "gift_transaction"):
        target = get_target(name)
        assert target.batch_endpoint in ENDPOINTS
        assert target.single_endpoint in ENDPOINTS
    assert ENDPOINTS["gift_batch"] == ("POST", "/api/v2/Gift/Transactions")
    assert ENDPOINTS["contact_batch"] == ("POST", "/api/Contact/Batch")


@pytest.mark.parametrize("url, ok", [
    ("https://api.virtuoussoftware.com/", True),
    ("http://127.0.0.1:8765", True),
    ("http://localhost:1234", True),
    ("http://api.virtuoussoftware.com", False),
    ("ftp://127.0.0.1", False),
    ("not a url", False),
    ("https://user:secret@api.virtuoussoftware.com", False),
])
def test_base_url_is_https_or_local_http(url: str, ok: bool) -> None:
    if ok:
        assert not check_base_url(url).endswith("/")
    else:
        with pytest.raises(ValueError, match="base-url"):
            check_base_url(url)


@pytest.mark.parametrize("body, code, message, details", [
    (b"", None, "", []),
    (b"Authorization has been denied for this request.", None,
     "Authorization has been denied for this request.", []),
    (b'{"message": "An error has occurred."}', None, "An error has occurred.", []),
    (b'{"Message": "old style"}', None, "old style", []),
    (b'{"error": {"code": "VALIDATION_FAILED", "message": "bad", "extra": 1, "details": '
     b'[{"field": "amount", "code": "REQUIRED", "message": "amount is required", "x": 2}]}}',
     "VALIDATION_FAILED", "bad",
     [{"field": "amount", "code": "REQUIRED", "message": "amount is required"}]),
    (b'{"error": {"code": 42, "details": ["plain"]}}', "42", "",
     [{"field": "", "code": "", "message": "plain"}]),
    (b"[1, 2]", None, "[1, 2]", []),
    (b'"just a string"', None, "just a string", []),
    (b"\xff\xfe not utf-8", None, "\ufffd\ufffd not utf-8", []),
])
def test_error_bodies_are_parsed_defensively(body: bytes, code: str | None, message: str,
                                             details: list[dict[str, str]]) -> None:
    parsed = parse_error_body(body)
    assert (parsed.code, parsed.message, parsed.details) == (code, message, details)


@pytest.mark.parametrize("value, number", [("500.00", 500.0), (500, 500.0), (" 7 ", 7.0),
                                           ("x", None), (True, None), (None, None)])
def test_numbers_are_coerced(value: Any, number: float | None) -> None:
    assert coerce_number(value) == number


@pytest.mark.parametrize("value, flag", [("true", True), ("True", True), (False, False),
                                         ("0", False), ("maybe", None)])
def test_booleans_are_coerced(value: Any, flag: bool | None) -> None:
    assert coerce_bool(value) is flag


def test_retry_after_reads_seconds_and_tolerates_dates() -> None:
    assert retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert retry_after(httpx.Headers({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})) == 1.0
    assert retry_after(httpx.Headers()) is None


def test_item_details_group_by_index_with_relative_fields() -> None:
    details = [{"field": "transactions[3].amount", "code": "REQUIRED", "message": "m"},
               {"field": "transactions[3].contact.email", "code": "F", "message": "m"},
               {"field": "contacts[0]", "code": "X", "message": "m"},
               {"field": "batchTotal", "code": "Y", "message": "m"}]
    grouped = item_details(details)
    assert sorted(grouped) == [0, 3]
    assert [d["field"] for d in grouped[3]] == ["amount", "contact.email"]


def test_a_2xx_reply_carries_rate_headers_and_the_key_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"X-RateLimit-Limit": "5000",
                                            "X-RateLimit-Remaining": "4999",
                                            "X-RateLimit-Reset": "1900000000",
                                            "Sunset": "Sun, 31 Dec 2028 23:59:59 GMT"})

    reply, client = _call(handler)
    assert (reply.status, reply.data, reply.limit, reply.remaining) == (200, None, 5000, 4999)
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert seen[0].url.path == "/api/v2/Gift/Transactions"
    assert seen[0].headers["content-type"] == "application/json"
    assert client.notices == {"sunset /api/v2/Gift/Transactions": 1}


@pytest.mark.parametrize("status, body, error, match", [
    (429, b'{"error": {"code": "RATE_LIMITED", "message": "slow down"}}', TransientError, "429"),
    (500, b'{"message": "An error has occurred."}', TransientError, "An error has occurred"),
    (503, b"Service Unavailable", TransientError, "503"),
    (520, b"", TransientError, "520"),
    (401, b"Authorization has been denied for this request.", CredentialsRefused, "refused"),
    (403, b'{"error": {"code": "FORBIDDEN", "message": "no"}}', CredentialsRefused, "403"),
    (404, b"", EndpointMissing, "not found"),
    (400, b"bad request", RequestRejected, "bad request"),
    (409, b'{"message": "duplicate"}', RequestRejected, "duplicate"),
    (422, b'{"error": {"code": "VALIDATION_FAILED", "message": "see details", "details": '
          b'[{"field": "transactions[0].amount", "code": "REQUIRED", "message": "m"}]}}',
     RequestRejected, "VALIDATION_FAILED"),
])
def test_statuses_map_to_error_classes(status: int, body: bytes, error: type[Exception],
                                       match: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Retry-After": "2"})

    with pytest.raises(error, match=match) as info:
        _call(handler)
    exc = info.value
    if isinstance(exc, TransientError) and status == 429:
        assert exc.retry_after == 2.0
    if isinstance(exc, RequestRejected) and status == 422:
        assert exc.details[0]["field"] == "transactions[0].amount"
    if isinstance(exc, CredentialsRefused):
        assert exc.exit_code == 4


@pytest.mark.parametrize("fault", [httpx.ReadTimeout("slow"), httpx.ConnectError("reset"),
                                   httpx.RemoteProtocolError("peer closed")])
def test_network_faults_are_transient(fault: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise fault

    with pytest.raises(TransientError):
        _call(handler)


def test_the_key_never_appears_in_an_error_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"]
        return httpx.Response(400, json={"error": {"code": "BAD", "message": f"got {echoed}",
                                                   "details": [{"field": "x", "code": "c",
                                                                "message": echoed}]}})

    with pytest.raises(RequestRejected) as info:
        _call(handler)
    assert TOKEN not in str(info.value)
    assert TOKEN not in json.dumps(info.value.details)


def test_organization_reads_the_current_organization() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/Organization/Current"
        return httpx.Response(200, json={"organizationName": "Hope Org", "unknown": 1})

    async def go() -> dict[str, Any]:
        async with CrmClient("https://x.example", TOKEN,
                             transport=httpx.MockTransport(handler)) as client:
            return await client.organization()

    assert asyncio.run(go())["organizationName"] == "Hope Org"
