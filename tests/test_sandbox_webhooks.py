"""Sandbox contract: webhook subscriptions, deliveries, signatures and retries."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from sandbox_fixtures import (  # noqa: F401
    contact,
    gift,
    sandbox_fixture,
    sandbox_server_fixture,
    webhook_receiver_fixture,
)

from etl.sandbox.webhooks import sign


def _subscribe(c, event, url, secret=None):
    body = {"event": event, "url": url}
    if secret:
        body["secret"] = secret
    r = c.post("/api/Webhook", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_subscribe_list_delete(sandbox):
    with sandbox.client() as c:
        sub = _subscribe(c, "giftCreate", "http://127.0.0.1:9/hook", secret="s3cret")
        assert sub["event"] == "giftCreate" and sub["hasSecret"] is True
        assert "secret" not in sub and "s3cret" not in c.get("/api/Webhook").text
        assert [s["id"] for s in c.get("/api/Webhook").json()] == [sub["id"]]
        assert c.delete(f"/api/Webhook/{sub['id']}").status_code == 200
        assert c.get("/api/Webhook").json() == []
        r = c.delete(f"/api/Webhook/{sub['id']}")
        assert r.status_code == 404 and r.content == b""


@pytest.mark.parametrize("body, field", [
    ({"event": "giftDelete", "url": "http://127.0.0.1/x"}, "event"),
    ({"event": "giftCreate", "url": "ftp://127.0.0.1/x"}, "url"),
    ({"event": "giftCreate", "url": "https://example.org/hook"}, "url"),
    ({"event": "giftCreate", "url": "http://127.0.0.1/x", "secret": 5}, "secret"),
])
def test_subscription_validation(sandbox, body, field):
    with sandbox.client() as c:
        r = c.post("/api/Webhook", json=body)
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]


def test_deliveries_carry_the_records_and_a_base64_hmac(sandbox, webhook_receiver):
    url = webhook_receiver.url
    with sandbox.client() as c:
        _subscribe(c, "contactCreate", url, secret="s3cret")
        _subscribe(c, "contactUpdate", url)
        _subscribe(c, "giftCreate", url, secret="other")
        c.post("/api/Contact/Transaction", json=contact("D-1"))
        c.post("/api/v2/Gift/Transaction",
               json=gift("G-1", transactionSource="LegacyCRM", contact={"referenceId": "D-1"}))
    summary = sandbox.run_batch()
    assert summary["webhooksDelivered"] == 2 and summary["webhooksFailed"] == 0
    created, gift_event = webhook_receiver.received
    body = created.json()
    assert body["event"] == "ContactCreate"
    assert body["contact"]["contactReferences"] == [{"source": "LegacyCRM", "id": "D-1"}]
    assert isinstance(body["contact"]["id"], int)
    expected = base64.b64encode(
        hmac.new(b"s3cret", created.body, hashlib.sha256).digest()).decode()
    assert created.headers["x-virtuous-signature"] == expected == sign("s3cret", created.body)
    g = gift_event.json()
    assert g["event"] == "GiftCreate"
    assert {k: g["gift"][k] for k in ("transactionSource", "transactionId", "contactId",
                                      "amount", "giftDate")} == {
        "transactionSource": "LegacyCRM", "transactionId": "G-1",
        "contactId": body["contact"]["id"], "amount": 25.0, "giftDate": "2024-03-01"}
    assert isinstance(g["gift"]["id"], int)
    assert gift_event.headers["x-virtuous-signature"] == sign("other", gift_event.body)

    # the next night the same contact is updated: contactUpdate, no signature (no secret)
    with sandbox.client() as c:
        c.post("/api/Contact/Transaction", json=contact("D-1", city="Gotham"))
    sandbox.run_batch()
    update = webhook_receiver.received[-1]
    assert update.json()["event"] == "ContactUpdate"
    assert update.json()["contact"]["city"] == "Gotham"
    assert "x-virtuous-signature" not in update.headers


def test_failed_deliveries_are_retried_boundedly(sandbox, webhook_receiver):
    webhook_receiver.answers[:] = [500, 503]  # then 200
    with sandbox.client() as c:
        _subscribe(c, "contactCreate", webhook_receiver.url)
        c.post("/api/Contact/Transaction", json=contact("D-1"))
    assert sandbox.run_batch()["webhooksDelivered"] == 1
    assert len(webhook_receiver.received) == 3
    (delivery,) = sandbox.state.deliveries()
    assert (delivery["attempts"], delivery["status"], delivery["ok"]) == (3, 200, True)

    webhook_receiver.answers[:] = [500] * 10
    with sandbox.client() as c:
        c.post("/api/Contact/Transaction", json=contact("D-2", firstName="Dick", postal="1"))
    summary = sandbox.run_batch()
    assert summary["webhooksFailed"] == 1
    assert len(webhook_receiver.received) == 6  # 3 more attempts, no more
    assert sandbox.state.deliveries()[-1]["status"] == 500


def test_unreachable_receiver_is_recorded_not_fatal(sandbox, webhook_receiver):
    sandbox.config.webhook_attempts = 2
    try:
        with sandbox.client() as c:
            _subscribe(c, "contactCreate", "http://127.0.0.1:9/nothing-listens")
            c.post("/api/Contact/Transaction", json=contact("D-1"))
        summary = sandbox.run_batch()
    finally:
        sandbox.config.webhook_attempts = 3
    assert summary["contactsCreated"] == 1 and summary["webhooksFailed"] == 1
    assert sandbox.state.deliveries()[0]["error"] == "ConnectError"
