"""The CRM+ HTTP client: every endpoint path in one table, auth, status -> error class, headers.

    send(endpoint, body) -> Reply          2xx
                         -> TransientError      429 (retry_after), 408, 5xx, timeout, reset;
                                                `may_have_arrived` False only for a refused
                                                connection, DNS, 429, 408, 503 + Retry-After
                         -> CredentialsRefused  401 / 403: stop the run
                         -> EndpointMissing     404 (a batch endpoint this organization lacks)
                         -> RequestRejected     400 / 409 / 422 and other 4xx, with details

The status decides; the body is parsed defensively afterwards (empty, plain text, `{message}`,
the `{"error": {code, message, details[]}}` envelope, ASP.NET's `{message, modelState}`;
unknown fields ignored). The API key lives
only in the Authorization header: every text that leaves this module goes through `redact`.
The network is behind an injectable `httpx` transport, so tests pass `httpx.MockTransport`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from etl.base.errors import CredentialsRefused, RequestRejected, TerminalError, TransientError
from etl.base.redact import redact, register

DEFAULT_BASE_URL = "https://api.virtuoussoftware.com"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# The seed's Pattern 1: one table of every path the tool calls. Nothing else builds a path.
ENDPOINTS: dict[str, tuple[str, str]] = {
    "organization": ("GET", "/api/Organization/Current"),
    "contact_transaction": ("POST", "/api/Contact/Transaction"),
    "contact_batch": ("POST", "/api/Contact/Batch"),
    "gift_transaction": ("POST", "/api/v2/Gift/Transaction"),
    "gift_batch": ("POST", "/api/v2/Gift/Transactions"),
    "contact_find": ("GET", "/api/Contact/Find"),
    "contact_create": ("POST", "/api/Contact"),
    # Query: only the Full* routes return records that name transactionSource/transactionId or
    # contactReferences. The plain /api/Gift/Query and /api/Contact/Query answer abbreviated
    # items without the keys: they prove nothing, so the tool never calls them.
    "gift_query_full": ("POST", "/api/Gift/Query/FullGift"),
    "contact_query_full": ("POST", "/api/Contact/Query/FullContact"),
    "gift_query_options": ("GET", "/api/Gift/QueryOptions"),
    "contact_query_options": ("GET", "/api/Contact/QueryOptions"),
    "contact_by_reference": ("GET", "/api/Contact/{source}/{id}"),
    "gift_by_key": ("GET", "/api/Gift/{source}/{id}"),
    # Webhooks: one subscription object per receiver; there is no list route.
    "webhook_create": ("POST", "/api/Webhook"),
    "webhook_get": ("GET", "/api/Webhook/{id}"),
    "webhook_update": ("PUT", "/api/Webhook/{id}"),
    "webhook_delete": ("DELETE", "/api/Webhook/{id}"),
    "webhook_active": ("PUT", "/api/Webhook/{id}/Active"),
}
WRITE_ENDPOINTS = frozenset({"contact_transaction", "contact_batch", "gift_transaction",
                             "gift_batch", "contact_create"})
# `transactions[3].amount`, also as ASP.NET's modelState names it: `request.Transactions[3].Amount`
_ITEM = re.compile(r"^(?:[A-Za-z_]\w*\.)?(?:transactions|contacts)\[(\d+)\]\.?(.*)$",
                   re.IGNORECASE)
# Statuses that say the request was not processed: 429 (rate limited) and 408 (the server did
# not receive the whole request). A 503 only with Retry-After (the server says "come back").
NOT_PROCESSED = frozenset({429, 408})


class EndpointMissing(TerminalError):
    """404 on a write endpoint: this organization (or API version) does not offer it."""


class OrganizationMismatch(CredentialsRefused):
    """The key belongs to another organization than the spec names."""


def check_organization(reply: Reply | None, expected: str | None, refusing: str) -> str:
    """The organization named by a `GET /api/Organization/Current` reply. When the spec names
    one (`organization:`) and the key's differs (ignoring case and surrounding spaces), raise
    OrganizationMismatch, saying what is refused."""
    data = reply.data if reply is not None and isinstance(reply.data, dict) else {}
    name = str(data.get("organizationName") or data.get("name") or "(unnamed)")
    if expected is not None and name.strip().casefold() != expected.strip().casefold():
        raise OrganizationMismatch(
            f"the API key belongs to organization {name!r}, but the spec names {expected!r}; "
            f"refusing to {refusing} (use the key of the intended organization)")
    return name


@dataclass(frozen=True)
class ErrorBody:
    """What an error answer said, however it was shaped."""

    code: str | None = None
    message: str = ""
    details: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Reply:
    """A 2xx answer: status, parsed JSON (or None) and the rate-limit headers."""

    status: int
    data: Any
    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash; https, or plain http to localhost only.

    Refused: userinfo, a query string, a fragment (where a key pasted into the URL would be
    sent or printed), and a bad port. Messages name the scheme and host only, never the rest."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:  # a port out of range or not a number; urlsplit's text repeats the URL
        raise ValueError("--base-url: the port must be a number from 1 to 65535") from None
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("--base-url is not an http(s) URL (like https://api.virtuoussoftware.com)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("--base-url must not carry credentials; the key goes in the environment")
    if parts.query or parts.fragment or url.strip().rstrip("/").endswith(("?", "#")):
        raise ValueError(f"--base-url {shown}: must not have a query string or fragment (?... "
                         "or #...); the key goes in the environment, never in the URL")
    if port == 0:
        raise ValueError(f"--base-url {shown}: the port must be a number from 1 to 65535")
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        raise ValueError(f"--base-url {shown}: plain http is only allowed to "
                         "localhost/127.0.0.1")
    return url.strip().rstrip("/")


def coerce_number(value: Any) -> float | None:
    """500, 500.0 and "500.00" -> 500.0; anything else -> None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def coerce_bool(value: Any) -> bool | None:
    """true / "true" / "True" / 1 -> True; false / "false" / 0 -> False; else None."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    number = coerce_number(headers.get(name))
    return int(number) if number is not None else None


def retry_after(headers: httpx.Headers) -> float | None:
    """`Retry-After` in seconds (delta form; an HTTP date is read as 'soon')."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    number = coerce_number(raw)
    return max(0.0, number) if number is not None else 1.0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if value is not None else ""


def parse_error_body(content: bytes, content_type: str = "") -> ErrorBody:
    """Read an error answer of any shape; never raises."""
    text = content.decode("utf-8", "replace").strip()
    if not text:
        return ErrorBody()
    try:
        data = json.loads(text)
    except ValueError:
        return ErrorBody(message=text[:500])
    if isinstance(data, str):
        return ErrorBody(message=data[:500])
    if not isinstance(data, dict):
        return ErrorBody(message=text[:500])
    inner = data.get("error")
    if isinstance(inner, dict):
        details = []
        for d in inner.get("details") or []:
            if isinstance(d, dict):
                details.append({k: _text(d.get(k)) for k in ("field", "code", "message")})
            elif d is not None:
                details.append({"field": "", "code": "", "message": _text(d)})
        code = inner.get("code")
        return ErrorBody(code=_text(code) if code is not None else None,
                         message=_text(inner.get("message")), details=details)
    message = data.get("message") or data.get("Message") or data.get("error") or ""
    state = data.get("modelState") or data.get("ModelState")
    if isinstance(state, dict):  # ASP.NET Web API: {"message", "modelState": {path: [msgs]}}
        details = []
        for path, said in list(state.items())[:1000]:
            for one in (said if isinstance(said, list) else [said])[:20]:
                details.append({"field": str(path), "code": "", "message": _text(one)[:500]})
        return ErrorBody(message=_text(message)[:500], details=details)
    return ErrorBody(message=_text(message)[:500])


def item_details(details: list[dict[str, str]]) -> dict[int, list[dict[str, str]]]:
    """Batch details naming items (`transactions[3].amount`) grouped by item index, with the
    field made relative to the item (`amount`)."""
    out: dict[int, list[dict[str, str]]] = {}
    for d in details:
        m = _ITEM.match(d.get("field", ""))
        if m:
            out.setdefault(int(m.group(1)), []).append({**d, "field": m.group(2)})
    return out


class Redactor:
    """Removes the secrets from any text before it is printed, logged or stored. They are also
    registered process-wide (etl/base/redact.py), so every edge of the process redacts them."""

    def __init__(self, *secrets: str) -> None:
        self._secrets = [s for s in secrets if s]
        for secret in self._secrets:
            register(secret)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text)


class CrmClient:
    """Async CRM+ client. `observe(reply_headers)` sees every answer (rate-limit correction)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 observe: Callable[[httpx.Headers], None] | None = None) -> None:
        self.base_url = check_base_url(base_url)
        self.redact = Redactor(token)
        self.observe = observe
        self.notices: Counter[str] = Counter()  # "sunset /api/..." / "deprecation /api/..."
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=timeout, trust_env=False,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                     "User-Agent": "etl-virtuous-import"})

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> CrmClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(self, endpoint: str, body: bytes | None = None, *,
                   params: dict[str, str | int] | None = None,
                   path_args: dict[str, str] | None = None) -> Reply:
        """Call `endpoint` (a name in ENDPOINTS) with a JSON body; 2xx -> Reply, else raises.
        `path_args` fill the path's {placeholders} (percent-encoded); `params` the query."""
        method, path = ENDPOINTS[endpoint]
        if path_args:
            path = path.format(**{k: quote(str(v), safe="") for k, v in path_args.items()})
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = await self._http.request(method, path, content=body, headers=headers,
                                                params=params)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # never left this machine
            raise TransientError(f"{path}: could not connect ({type(exc).__name__})",
                                 may_have_arrived=False) from None
        except httpx.TimeoutException as exc:  # read/write timeout: the body may have arrived
            raise TransientError(f"{path}: no answer in time ({type(exc).__name__})") from None
        except (httpx.ConnectError, httpx.ProxyError, httpx.UnsupportedProtocol) as exc:
            raise TransientError(self.redact(f"{path}: could not connect: {exc!r}"),
                                 may_have_arrived=False) from None
        except httpx.TransportError as exc:  # reset, protocol error: after the body was sent
            raise TransientError(self.redact(f"{path}: connection failed: {exc!r}")) from None
        return self._reply(path, response)

    async def organization(self) -> dict[str, Any]:
        """`GET /api/Organization/Current`: which organization this key writes to."""
        reply = await self.send("organization")
        return reply.data if isinstance(reply.data, dict) else {}

    def _reply(self, path: str, response: httpx.Response) -> Reply:
        h = response.headers
        for name in ("sunset", "deprecation"):
            if name in h:
                self.notices[f"{name} {path}"] += 1
        if self.observe is not None:
            self.observe(h)
        status = response.status_code
        if 200 <= status < 300:
            try:
                data = response.json() if response.content.strip() else None
            except ValueError:
                data = None
            reset = coerce_number(h.get("x-ratelimit-reset"))
            return Reply(status, data, _int_header(h, "x-ratelimit-limit"),
                         _int_header(h, "x-ratelimit-remaining"), reset)
        err = parse_error_body(response.content, h.get("content-type", ""))
        said = self.redact(err.message or response.reason_phrase or "")
        where = f"{path}: HTTP {status}" + (f" {err.code}" if err.code else "")
        if status == 429 or status == 408 or status >= 500:
            wait = retry_after(h)
            unprocessed = status in NOT_PROCESSED or (status == 503 and wait is not None)
            raise TransientError(f"{where}: {said}".rstrip(": "), status=status,
                                 retry_after=wait, may_have_arrived=not unprocessed)
        if status in (401, 403):
            what = "the API key was refused" if status == 401 else "the key may not do this"
            raise CredentialsRefused(f"{where}: {what} ({said or 'no detail'}); check the key "
                                     "and its permission group in CRM+ settings", status=status)
        if status == 404:
            raise EndpointMissing(f"{where}: not found", status=404)
        details = [{k: self.redact(v) for k, v in d.items()} for d in err.details]
        raise RequestRejected(f"{where}: {said}".rstrip(": "), status=status, code=err.code,
                              details=details)
