"""Sandbox contract: authentication, permissions and the organization-wide rate limit."""

from __future__ import annotations

import time

import httpx
import pytest
from sandbox_fixtures import gift, sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.sandbox.ratelimit import FixedWindowLimiter, parse_rate
from etl.sandbox.server import running_sandbox

DENIED = "Authorization has been denied for this request."


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": "Basic abc"},
    {"Authorization": "Bearer"},
])
def test_missing_or_wrong_key_is_401_plain_text(sandbox, headers):
    for method, path in (("GET", "/api/Organization/Current"),
                         ("POST", "/api/v2/Gift/Transaction"), ("GET", "/api/No/Such/Thing")):
        r = httpx.request(method, sandbox.base_url + path, headers=headers, json={})
        assert r.status_code == 401
        assert r.text == DENIED
        assert r.headers["content-type"].startswith("text/plain")
    assert [x.key for x in sandbox.state.requests()] == [None, None, None]
    assert sandbox.state.held_gifts() == []


def test_key_scheme_is_case_insensitive(sandbox):
    r = httpx.get(sandbox.base_url + "/api/Organization/Current",
                  headers={"Authorization": "bearer " + sandbox.api_key})
    assert r.status_code == 200


def test_readonly_key_reads_but_gets_403_on_writes(sandbox):
    with sandbox.client(readonly=True) as c:
        assert c.get("/api/Organization/Current").status_code == 200
        for path in ("/api/Contact/Query", "/api/Gift/Query", "/api/Contact/Query/FullContact",
                     "/api/Gift/Query/FullGift"):
            assert c.post(path, json={"groups": []}).status_code == 200, path
        for path, body in (("/api/v2/Gift/Transaction", gift("G-1", transactionSource="S")),
                           ("/api/v2/Gift/Transactions", {"transactions": []}),
                           ("/api/Contact/Transaction", {}), ("/api/Contact/Batch", {}),
                           ("/api/Webhook", {"payloadUrl": "http://127.0.0.1/",
                                             "giftCreate": True, "active": True})):
            r = c.post(path, json=body)
            assert r.status_code == 403, path
            assert r.json()["error"]["code"] == "FORBIDDEN"
        assert c.delete("/api/Webhook/1").status_code == 403
        assert c.put("/api/Webhook/1/Active", json=False).status_code == 403
    assert sandbox.state.held_gifts() == []
    assert {r.key for r in sandbox.state.requests()} == {"readonly"}


def test_request_log_never_holds_the_key(sandbox):
    with sandbox.client() as c:
        c.get("/api/Organization/Current")
    record = sandbox.state.requests()[-1]
    assert record.key == "main"
    assert sandbox.api_key not in repr(sandbox.state.requests())


def test_parse_rate():
    assert parse_rate("5000/hour") == (5000, 3600.0)
    assert parse_rate("20/second") == (20, 1.0)
    assert parse_rate("100/minute") == (100, 60.0)
    assert parse_rate("10/5s") == (10, 5.0)
    assert parse_rate("none") is None
    for bad in ("lots", "0/hour", "5/fortnight", "5"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_fixed_window_resets_at_the_boundary():
    clock = FakeClock(1000.2)
    limiter = FixedWindowLimiter("2/second", clock)
    first, second, third = limiter.take(), limiter.take(), limiter.take()
    assert first and second and third
    assert (first.remaining, second.remaining) == (1, 0)
    assert not third.allowed and third.retry_after == 1 and third.reset == 1001
    clock.now = 1000.99
    assert not limiter.take().allowed
    clock.now = 1001.0
    assert limiter.take().allowed


def test_headers_on_every_answer_and_429_with_retry_after():
    clock = FakeClock(3600 * 1000 + 10.5)
    with running_sandbox(rate_limit="3/minute", clock=clock) as sb, sb.client() as c:
        r = c.get("/api/Organization/Current")
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert r.headers["X-RateLimit-Remaining"] == "2"
        assert r.headers["X-RateLimit-Reset"] == str(3600 * 1000 + 60)
        # unauthenticated requests do not spend the budget but still see it
        anon = httpx.get(sb.base_url + "/api/Organization/Current")
        assert anon.status_code == 401 and anon.headers["X-RateLimit-Remaining"] == "2"
        assert c.get("/api/Contact/Find?email=x@y.org").headers["X-RateLimit-Remaining"] == "1"
        # any key of the organization draws on the same budget
        with sb.client(readonly=True) as ro:
            assert ro.get("/api/Contact/Types").headers["X-RateLimit-Remaining"] == "0"
        r = c.post("/api/v2/Gift/Transaction", json=gift("G-1", transactionSource="S"))
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "50"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        assert r.json()["error"]["code"] == "RATE_LIMITED"
        assert sb.state.held_gifts() == []
        clock.now += 50
        assert c.get("/api/Organization/Current").status_code == 200


def test_real_time_budget_of_three_per_second():
    with running_sandbox(rate_limit="3/second") as sb, sb.client() as c:
        while time.time() % 1 > 0.5:  # start early in a window
            time.sleep(0.05)
        statuses = [c.get("/api/Contact/Types").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        last = c.get("/api/Contact/Types")
        assert last.headers["Retry-After"] == "1"
        time.sleep(max(0.0, int(last.headers["X-RateLimit-Reset"]) - time.time()) + 0.01)
        assert c.get("/api/Contact/Types").status_code == 200


def test_rate_limit_can_change_at_runtime(sandbox):
    with sandbox.client() as c:
        assert "X-RateLimit-Limit" not in c.get("/api/Contact/Types").headers  # "none"
        sandbox.set_rate_limit("1/hour")
        assert c.get("/api/Contact/Types").status_code == 200
        assert c.get("/api/Contact/Types").status_code == 429
