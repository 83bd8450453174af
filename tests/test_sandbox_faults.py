"""Sandbox contract: every switchable fault, and their determinism."""

from __future__ import annotations

import time

import httpx
import pytest
from sandbox_fixtures import gift, sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.sandbox.faults import Faults, parse_faults
from etl.sandbox.server import running_sandbox

ONE = "/api/v2/Gift/Transaction"
BATCH = "/api/v2/Gift/Transactions"


def _post_gift(c, tid="G-1"):
    return c.post(ONE, json=gift(tid, transactionSource="S"))


def _wait_for_log(sandbox, count, timeout=2.0):
    deadline = time.monotonic() + timeout
    while len(sandbox.state.requests()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return sandbox.state.requests()


def test_parse_faults():
    s = parse_faults("http500=0.05, reset=0.01,slow=0.01,slow_seconds=5,burst429=3,seed=42,"
                     "no_batch_gifts=1,string_numbers=true,sunset=/api/Gift|/api/Contact/Find")
    assert (s.http500, s.reset, s.slow_seconds, s.burst429, s.seed) == (0.05, 0.01, 5.0, 3, 42)
    assert s.no_batch_gifts and s.string_numbers and s.sunset == ("/api/Gift", "/api/Contact/Find")
    assert parse_faults(None) == parse_faults("") == parse_faults({})
    for bad in ("http500", "http500=2", "teleport=1", "http500=0.6,http503=0.6", "seed=x",
                "string_numbers=perhaps"):
        with pytest.raises(ValueError):
            parse_faults(bad)


@pytest.mark.parametrize("fault, status", [("http500", 500), ("http503", 503)])
def test_server_errors_store_nothing(sandbox, fault, status):
    sandbox.set_faults({fault: 1})
    with sandbox.client() as c:
        r = _post_gift(c)
        assert r.status_code == status
        assert "X-RateLimit-Limit" not in r.headers  # limit "none" in this fixture
        assert c.post(BATCH, json={"transactionSource": "S",
                                   "transactions": [gift("G-2")]}).status_code == status
        assert c.get("/api/Contact/Types").status_code == status
    assert sandbox.state.held() == [] and sandbox.state.times_received("S", "G-1") == 0
    assert [r.fault for r in sandbox.state.requests()] == [fault] * 3


def test_http500_after_store_stores_then_fails(sandbox):
    sandbox.set_faults("http500_after_store=1")
    with sandbox.client() as c:
        r = _post_gift(c)
        assert r.status_code == 500 and r.json() == {"message": "An error has occurred."}
        assert c.get("/api/Contact/Types").status_code == 200  # reads are not affected
        assert c.post(ONE, json={"amount": 0}).status_code == 422  # refused: nothing stored
    assert sandbox.state.times_received("S", "G-1") == 1
    assert sandbox.state.is_held_gift("S", "G-1")


def test_reset_drops_the_connection_without_an_answer(sandbox):
    sandbox.set_faults("reset=1")
    with sandbox.client() as c:
        with pytest.raises(httpx.TransportError):
            _post_gift(c)
        with pytest.raises(httpx.TransportError):
            c.get("/api/Contact/Types")
        sandbox.set_faults(None)
        assert _post_gift(c, "G-2").status_code == 200  # the client recovers
    assert sandbox.state.times_received("S", "G-1") == 0
    assert [r.status for r in sandbox.state.requests()] == [0, 0, 200]


def test_slow_answers_past_the_client_timeout_store_nothing(sandbox):
    sandbox.set_faults("slow=1,slow_seconds=3")
    started = time.monotonic()
    with sandbox.client(timeout=0.3) as c, pytest.raises(httpx.ReadTimeout):
        _post_gift(c)
    records = _wait_for_log(sandbox, 1)
    assert time.monotonic() - started < 2
    assert records[0].status == 499 and records[0].fault == "slow"
    assert sandbox.state.held() == []


def test_slow_answers_within_the_client_timeout_are_served(sandbox):
    sandbox.set_faults("slow=1,slow_seconds=0.3")
    started = time.monotonic()
    with sandbox.client(timeout=5) as c:
        assert _post_gift(c).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert sandbox.state.times_received("S", "G-1") == 1


def test_burst_of_429(sandbox):
    sandbox.set_faults("burst429=2")
    with sandbox.client() as c:
        answers = [_post_gift(c, f"G-{i}") for i in range(3)]
        assert [r.status_code for r in answers] == [429, 429, 200]
        assert answers[0].headers["Retry-After"] == "1"
        sandbox.faults.burst(1)
        assert c.get("/api/Contact/Types").status_code == 429
        assert c.get("/api/Contact/Types").status_code == 200
    assert [g["transactionId"] for g in sandbox.state.held_gifts()] == ["G-2"]


def test_sunset_and_deprecation_headers_on_chosen_paths(sandbox):
    sandbox.set_faults("sunset=/api/Gift/Transaction|/api/Contact/Find,deprecation=/api/Contact")
    with sandbox.client() as c:
        r = c.post("/api/Gift/Transaction", json=gift("G-1", transactionSource="S"))
        assert r.headers["Sunset"] == "Sun, 31 Dec 2028 23:59:59 GMT"
        assert "Deprecation" not in r.headers
        r = c.get("/api/Contact/Find?email=a@b.org")
        assert r.status_code == 404 and r.headers["Deprecation"] == "true" and "Sunset" in r.headers
        r = _post_gift(c, "G-2")
        assert "Sunset" not in r.headers and "Deprecation" not in r.headers


def test_no_batch_gifts_answers_404_and_the_single_endpoint_still_works(sandbox):
    sandbox.set_faults("no_batch_gifts=1")
    with sandbox.client() as c:
        r = c.post(BATCH, json={"transactions": []})
        assert r.status_code == 404 and r.content == b""
        assert c.post(BATCH, json={"transactionSource": "S",
                                   "transactions": [gift("G-1")]}).status_code == 404
        assert _post_gift(c, "G-2").status_code == 200
        assert c.post("/api/Contact/Batch", json={"contacts": []}).status_code == 200
    assert [g["transactionId"] for g in sandbox.state.held_gifts()] == ["G-2"]


def _statuses(sandbox, spec, n=40):
    sandbox.set_faults(spec)
    with sandbox.client() as c:
        return [c.get("/api/Contact/Types").status_code for _ in range(n)]


def test_faults_are_deterministic_for_a_seed(sandbox):
    first = _statuses(sandbox, "http500=0.3,http503=0.2,seed=42")
    again = _statuses(sandbox, "http500=0.3,http503=0.2,seed=42")
    other = _statuses(sandbox, "http500=0.3,http503=0.2,seed=7")
    assert first == again and first != other
    assert {500, 503, 200} == set(first)
    faults = Faults("http500=0.5,seed=1")
    draws = [faults.draw(is_write=True) for _ in range(20)]
    faults.configure("http500=0.5,seed=1")
    assert [faults.draw(is_write=True) for _ in range(20)] == draws


def test_faults_from_the_start_config_and_runtime_update():
    with running_sandbox(faults="http503=1", rate_limit="none") as sb, sb.client() as c:
        assert c.get("/api/Contact/Types").status_code == 503
        sb.faults.update(http503=0)
        assert c.get("/api/Contact/Types").status_code == 200
        sb.set_faults("http500=1")
        assert c.get("/api/Contact/Types").status_code == 500
        sb.reset()  # back to the start config
        assert c.get("/api/Contact/Types").status_code == 503


def test_unauthenticated_requests_draw_no_fault(sandbox):
    sandbox.set_faults("http500=1")
    r = httpx.get(sandbox.base_url + "/api/Contact/Types")
    assert r.status_code == 401


def _send(c, path, tid):
    if path == ONE:
        return c.post(ONE, json=gift(tid, transactionSource="S"))
    return c.post(BATCH, json={"transactionSource": "S", "transactions": [gift(tid)]})


@pytest.mark.parametrize("path", [ONE, BATCH])
def test_slow_after_store_stores_then_answers_too_late(sandbox, path):
    sandbox.set_faults("slow_after_store=1,slow_seconds=3")
    started = time.monotonic()
    with sandbox.client(timeout=0.3) as c, pytest.raises(httpx.ReadTimeout):
        _send(c, path, "G-1")
    (record,) = _wait_for_log(sandbox, 1)
    assert time.monotonic() - started < 2
    assert (record.status, record.fault) == (499, "slow_after_store")
    # the client never heard, but the write is stored and counted: its outcome is unknown
    assert sandbox.state.times_received("S", "G-1") == 1
    assert sandbox.state.is_held_gift("S", "G-1")
    sandbox.run_batch()
    assert len(sandbox.state.gifts_for("S", "G-1")) == 1


def test_slow_after_store_answers_a_patient_client(sandbox):
    sandbox.set_faults("slow_after_store=1,slow_seconds=0.3")
    started = time.monotonic()
    with sandbox.client(timeout=5) as c:
        assert _send(c, BATCH, "G-1").status_code == 200
        assert c.get("/api/Contact/Types").status_code == 200  # reads are not affected
    assert time.monotonic() - started >= 0.3
    assert sandbox.state.times_received("S", "G-1") == 1


@pytest.mark.parametrize("path", [ONE, BATCH])
def test_reset_after_store_stores_then_drops_the_connection(sandbox, path):
    sandbox.set_faults("reset_after_store=1")
    with sandbox.client() as c:
        with pytest.raises(httpx.TransportError):
            _send(c, path, "G-1")
        assert c.post(ONE, json={"amount": 0}).status_code == 422  # refused: nothing stored
        assert c.get("/api/Contact/Types").status_code == 200
    assert sandbox.state.times_received("S", "G-1") == 1
    records = _wait_for_log(sandbox, 3)
    assert (records[0].status, records[0].fault) == (0, "reset_after_store")


def test_after_store_faults_parse_and_share_the_bands():
    s = parse_faults("slow_after_store=0.2,reset_after_store=0.3,http500_after_store=0.1")
    assert (s.slow_after_store, s.reset_after_store) == (0.2, 0.3)
    with pytest.raises(ValueError):
        parse_faults("slow_after_store=0.6,reset_after_store=0.6")
    faults = Faults("reset_after_store=1")
    assert faults.draw(is_write=False) is None and faults.draw(is_write=True) == \
        "reset_after_store"
