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


def _subscribe(c, url, *events, secret=None, active=True):
    body = {"payloadUrl": url, "active": active, **{e: True for e in events}}
    if secret:
        body["secret"] = secret
    r = c.post("/api/Webhook", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_subscribe_get_update_delete_and_no_list_route(sandbox):
    with sandbox.client() as c:
        sub = _subscribe(c, "http://127.0.0.1:9/hook", "giftCreate", "contactCreate",
                         secret="s3cret")
        assert sub["giftCreate"] is True and sub["contactUpdate"] is False
        assert sub["active"] is True and isinstance(sub["id"], int)
        assert "secret" not in sub and "s3cret" not in str(sub)
        assert c.get(f"/api/Webhook/{sub['id']}").json() == sub
        r = c.get("/api/Webhook")
        assert r.status_code == 404  # no list route
        changed = c.put(f"/api/Webhook/{sub['id']}",
                        json={"payloadUrl": "http://127.0.0.1:9/other", "giftCreate": True,
                              "active": True}).json()
        assert (changed["id"], changed["payloadUrl"], changed["contactCreate"]) == (
            sub["id"], "http://127.0.0.1:9/other", False)
        assert c.put(f"/api/Webhook/{sub['id']}/Active", json=False).json()["active"] is False
        assert c.put(f"/api/Webhook/{sub['id']}/Active",
                     json={"active": True}).json()["active"] is True
        assert c.delete(f"/api/Webhook/{sub['id']}").status_code == 200
        for r in (c.delete(f"/api/Webhook/{sub['id']}"), c.get(f"/api/Webhook/{sub['id']}"),
                  c.put(f"/api/Webhook/{sub['id']}/Active", json=True)):
            assert r.status_code == 404 and r.content == b""


@pytest.mark.parametrize("body, field", [
    ({"event": "giftCreate", "url": "http://127.0.0.1/x"}, "subscription.payloadUrl"),
    ({"payloadUrl": "ftp://127.0.0.1/x", "giftCreate": True}, "subscription.payloadUrl"),
    ({"payloadUrl": "https://example.org/hook", "giftCreate": True}, "subscription.payloadUrl"),
    ({"payloadUrl": "http://127.0.0.1/x", "secret": 5}, "subscription.secret"),
    ({"payloadUrl": "http://127.0.0.1/x", "giftCreate": "yes"}, "subscription.giftCreate"),
])
def test_subscription_validation_is_a_model_state_400(sandbox, body, field):
    with sandbox.client() as c:
        r = c.post("/api/Webhook", json=body)
    assert r.status_code == 400
    assert r.json()["message"] == "The request is invalid."
    assert list(r.json()["modelState"]) == [field]
    assert sandbox.state.webhooks() == []


def test_deliveries_carry_the_records_and_a_base64_hmac(sandbox, webhook_receiver):
    url = webhook_receiver.url
    with sandbox.client() as c:
        _subscribe(c, url, "contactCreate", secret="s3cret")
        _subscribe(c, url, "contactUpdate")
        _subscribe(c, url, "giftCreate", secret="other")
        c.post("/api/Contact/Transaction", json=contact("D-1"))
        c.post("/api/v2/Gift/Transaction",
               json=gift("G-1", transactionSource="LegacyCRM", contact={"referenceId": "D-1"}))
    summary = sandbox.run_batch()
    assert summary["webhooksDelivered"] == 2 and summary["webhooksFailed"] == 0
    created, gift_event = webhook_receiver.received
    body = created.json()
    assert body["event"] == "ContactCreate"
    assert "contactReferences" not in body["contact"]  # not published: left out
    assert body["contact"]["contactIndividuals"][0]["lastName"] == "Wayne"
    assert isinstance(body["contact"]["id"], int)
    expected = base64.b64encode(
        hmac.new(b"s3cret", created.body, hashlib.sha256).digest()).decode()
    assert created.headers["x-virtuous-signature"] == expected == sign("s3cret", created.body)
    g = gift_event.json()
    assert g["event"] == "GiftCreate"
    assert {k: g["gift"][k] for k in ("contactId", "amount", "giftDate")} == {
        "contactId": body["contact"]["id"], "amount": 25.0, "giftDate": "2024-03-01"}
    assert "transactionSource" not in g["gift"] and "transactionId" not in g["gift"]
    assert isinstance(g["gift"]["id"], int)
    assert gift_event.headers["x-virtuous-signature"] == sign("other", gift_event.body)

    # the next night the same contact is updated: contactUpdate, no signature (no secret)
    with sandbox.client() as c:
        c.post("/api/Contact/Transaction", json=contact("D-1", city="Gotham"))
    sandbox.run_batch()
    update = webhook_receiver.received[-1]
    assert update.json()["event"] == "ContactUpdate"
    assert update.json()["contact"]["address"]["city"] == "Gotham"
    assert "x-virtuous-signature" not in update.headers


def test_webhook_keys_switch_puts_the_keys_in_deliveries(sandbox, webhook_receiver):
    sandbox.config.webhook_keys = True
    with sandbox.client() as c:
        _subscribe(c, webhook_receiver.url, "giftCreate", "contactCreate")
        c.post("/api/v2/Gift/Transaction", json=gift("G-1", transactionSource="S"))
    sandbox.run_batch()
    contact_body, gift_body = (r.json() for r in webhook_receiver.received)
    assert contact_body["contact"]["contactReferences"] == [{"source": "S", "id": "D-G-1"}]
    assert (gift_body["gift"]["transactionSource"], gift_body["gift"]["transactionId"]) == (
        "S", "G-1")


def test_several_records_of_one_run_come_as_models(sandbox, webhook_receiver):
    sandbox.config.webhook_bulk_max = 2
    with sandbox.client() as c:
        _subscribe(c, webhook_receiver.url, "giftCreate")
        c.post("/api/v2/Gift/Transactions", json={
            "transactionSource": "S", "transactions": [gift(f"G-{i}", amount=i + 1)
                                                       for i in range(3)]})
    assert sandbox.run_batch()["webhooksDelivered"] == 2
    first, second = (r.json() for r in webhook_receiver.received)
    assert first["event"] == second["event"] == "GiftCreate"
    assert [m["amount"] for m in first["models"]] == [1.0, 2.0]
    assert [m["amount"] for m in second["models"]] == [3.0]  # one left: still the models form
    assert all("gift" not in m and "transactionId" not in m for m in first["models"])


def test_inactive_or_silent_subscriptions_get_nothing(sandbox, webhook_receiver):
    with sandbox.client() as c:
        _subscribe(c, webhook_receiver.url, "giftCreate", active=False)
        c.post("/api/Webhook", json={"payloadUrl": webhook_receiver.url, "giftCreate": True})
        c.post("/api/v2/Gift/Transaction", json=gift("G-1", transactionSource="S"))
    assert sandbox.run_batch()["giftsCreated"] == 1
    assert webhook_receiver.received == []  # "active" left out is false, as in a C# model


def test_failed_deliveries_are_retried_boundedly(sandbox, webhook_receiver):
    webhook_receiver.answers[:] = [500, 410]  # then 200: a 4xx is retried too
    with sandbox.client() as c:
        _subscribe(c, webhook_receiver.url, "contactCreate")
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
            _subscribe(c, "http://127.0.0.1:9/nothing-listens", "contactCreate")
            c.post("/api/Contact/Transaction", json=contact("D-1"))
        summary = sandbox.run_batch()
    finally:
        sandbox.config.webhook_attempts = 3
    assert summary["contactsCreated"] == 1 and summary["webhooksFailed"] == 1
    assert sandbox.state.deliveries()[0]["error"] == "ConnectError"
