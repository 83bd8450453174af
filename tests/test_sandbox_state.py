"""Sandbox state: the request log, the helpers, SQLite persistence, thread safety."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading

from sandbox_fixtures import contact, gift, sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.sandbox.server import running_sandbox

GIFTS = "/api/v2/Gift/Transactions"


def test_request_log_records_what_arrived(sandbox):
    body = {"transactionSource": "S", "transactions": [gift("G-1"), gift("G-2")]}
    raw = json.dumps(body).encode()
    with sandbox.client() as c:
        c.post(GIFTS, content=raw, headers={"content-type": "application/json"})
        c.get("/api/Contact/Find?email=a@b.org")
    with sandbox.client(readonly=True) as c:
        c.post(GIFTS, json=body)
    first, second, third = sandbox.state.requests()
    assert (first.method, first.path, first.key, first.status, first.items) == (
        "POST", GIFTS, "main", 200, 2)
    assert first.body_sha256 == hashlib.sha256(raw).hexdigest()
    assert (second.path, second.status, second.items) == ("/api/Contact/Find", 404, 0)
    assert (third.key, third.status) == ("readonly", 403)
    assert first.time < second.time and first.seq < second.seq
    assert len(sandbox.state.requests(GIFTS)) == 2
    assert len(sandbox.state.requests(method="GET")) == 1


def test_counts_and_clear(sandbox):
    with sandbox.client() as c:
        c.post("/api/Contact/Transaction", json=contact("D-1"))
        c.post(GIFTS, json={"transactionSource": "S", "transactions": [gift("G-1")]})
    assert sandbox.state.counts() == {**sandbox.state.counts(), "requests": 2, "held_gifts": 1,
                                      "held_contacts": 1, "contacts": 0, "gifts": 0}
    sandbox.state.clear()
    assert sandbox.state.counts()["requests"] == 0 and sandbox.state.held() == []


def test_state_survives_a_restart_with_a_sqlite_file(tmp_path):
    db = tmp_path / "sandbox.db"
    with running_sandbox(state_path=db, api_key="k" * 20) as sb, sb.client() as c:
        sub = c.post("/api/Webhook", json={"payloadUrl": "http://127.0.0.1:9/h",
                                           "giftCreate": True, "active": True}).json()
        c.post("/api/Contact/Transaction", json=contact("D-1"))
        c.post(GIFTS, json={"transactionSource": "S", "transactions": [gift("G-1")]})
        sb.config.webhook_attempts = 1
        sb.run_batch()
        c.post(GIFTS, json={"transactionSource": "S", "transactions": [gift("G-1"),
                                                                        gift("G-2")]})
        before = sb.state.counts()
    with running_sandbox(state_path=db, api_key="k" * 20) as sb, sb.client() as c:
        assert sb.state.counts() == before
        assert sb.state.times_received("S", "G-1") == 2
        assert [g["transactionId"] for g in sb.state.held_gifts()] == ["G-1", "G-2"]
        assert c.get("/api/Contact/LegacyCRM/D-1").status_code == 200
        assert c.get("/api/Gift/S/G-1").status_code == 200
        assert c.get(f"/api/Webhook/{sub['id']}").json() == sub
        summary = sb.run_batch()
        assert (summary["duplicatesSkipped"], summary["giftsCreated"]) == (0, 2)
        assert len(sb.state.gifts_for("S", "G-1")) == 2  # no de-duplication, across restarts
        # new ids continue after the old ones
        ids = [g["id"] for g in sb.state.gifts()]
        assert len(set(ids)) == 3
        contact_ids = {x["id"] for x in sb.state.contacts()}
        c.post("/api/Contact/Transaction", json=contact("D-2", firstName="Alfred", email="a@x.org"))
        sb.run_batch()
        assert len({x["id"] for x in sb.state.contacts()} - contact_ids) == 1
    with sqlite3.connect(db) as conn:  # plain SQLite, JSON documents
        rows = conn.execute("SELECT doc FROM gifts").fetchall()
    conn.close()
    assert sorted(json.loads(r[0])["transactionId"] for r in rows) == ["G-1", "G-1", "G-2"]


def test_reads_from_another_thread_while_writing(sandbox):
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                sandbox.state.held_gifts()
                sandbox.state.counts()
                sandbox.state.requests()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with sandbox.client() as c:
            for b in range(10):
                items = [gift(f"G-{b}-{i}") for i in range(100)]
                c.post(GIFTS, json={"transactionSource": "S", "transactions": items})
        sandbox.run_batch()
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(sandbox.state.gifts()) == 1000
