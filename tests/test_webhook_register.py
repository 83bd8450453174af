"""Subscribing the receiver in CRM+: ONE `POST /api/Webhook` with the documented body, its id kept
in the ledger, later checked by id (`GET /api/Webhook/{id}`; there is no list route), repaired
when inactive, changed or gone. Requests go to an httpx.MockTransport that asserts each one."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl.base.errors import EtlError
from etl.confirm.webhook_register import (
    Registration,
    check_subscriptions,
    subscribe,
    webhook_status,
)
from etl.load.ledger import Ledger

BASE = "http://127.0.0.1:9"
URL = "https://hooks.example.org/webhook"
SECRET = "whsec-correct-horse-battery-staple-42"
GIFT_BODY = {"payloadUrl": URL, "secret": SECRET, "giftCreate": True, "active": True}
CONTACT_BODY = {"payloadUrl": URL, "secret": SECRET, "contactCreate": True,
                "contactUpdate": True, "active": True}


@dataclass
class FakeCrm:
    """CRM+'s documented webhook routes; `GET /api/Webhook` (a list) does not exist."""

    subs: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    shows_secret: bool = True
    create_answer: dict[str, Any] | None = None
    made: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        body = json.loads(request.content) if request.content else None
        query = str(request.url.query, "ascii")
        self.calls.append((method, path + (f"?{query}" if query else ""), body))
        assert request.headers["authorization"] == "Bearer key-1"
        assert (method, path) != ("GET", "/api/Webhook"), "there is no list route"
        parts = path.split("/")
        if (method, path) == ("POST", "/api/Webhook"):
            self.made += 1
            sub_id = 500 + self.made
            self.subs[sub_id] = dict(body)
            return httpx.Response(200, json=self.create_answer if self.create_answer is not None
                                  else {"id": sub_id, **body})
        if len(parts) >= 4 and parts[3].isdigit() and int(parts[3]) in self.subs:
            sub = self.subs[int(parts[3])]
            if method == "GET" and len(parts) == 4:
                shown = {k: v for k, v in sub.items() if k != "secret" or self.shows_secret}
                return httpx.Response(200, json={"id": int(parts[3]), **shown})
            if method == "PUT" and len(parts) == 4:
                sub.clear()
                sub.update(body)
                return httpx.Response(200, json={"id": int(parts[3]), **body})
            if method == "PUT" and parts[4:] == ["Active"]:
                sub["active"] = request.url.params["active"] == "true"
                return httpx.Response(200, json=None)
        return httpx.Response(404)


def register(crm: FakeCrm, ledger: Path, kind: str = "gift", url: str = URL,
             secret: str = SECRET) -> Registration:
    return asyncio.run(subscribe(BASE, "key-1", ledger, url, kind, secret,
                                 transport=httpx.MockTransport(crm)))


def stored_rows(ledger: Path) -> list[tuple[Any, ...]]:
    with Ledger(ledger, lock=False) as led:
        return led.db.execute("SELECT id, payload_url, events, active, current, last_check FROM"
                              " webhook_subscriptions ORDER BY created_at, id").fetchall()


def ledger_text(ledger: Path) -> str:
    with Ledger(ledger, lock=False) as led:
        return "\n".join(led.db.iterdump())


@pytest.mark.parametrize(("kind", "body", "events"), [
    ("gift", GIFT_BODY, "giftCreate"), ("contact", CONTACT_BODY, "contactCreate,contactUpdate")])
def test_first_registration_is_one_documented_post_and_keeps_the_id(
        tmp_path: Path, kind: str, body: dict[str, Any], events: str) -> None:
    crm, ledger = FakeCrm(), tmp_path / "l.sqlite"
    made = register(crm, ledger, kind)
    assert crm.calls == [("POST", "/api/Webhook", body)]
    assert (made.id, made.action) == ("501", "created")
    assert stored_rows(ledger) == [("501", URL, events, 1, 1, "created")]
    assert SECRET not in ledger_text(ledger) and SECRET not in made.line()
    assert SECRET not in json.dumps(webhook_status(ledger))


def test_a_later_registration_checks_the_stored_id_and_does_nothing(tmp_path: Path) -> None:
    crm, ledger = FakeCrm(), tmp_path / "l.sqlite"
    register(crm, ledger)
    crm.calls.clear()
    again = register(crm, ledger)
    assert crm.calls == [("GET", "/api/Webhook/501", None)]
    assert again.action == "unchanged" and len(crm.subs) == 1
    assert stored_rows(ledger) == [("501", URL, "giftCreate", 1, 1, "unchanged")]


def test_an_inactive_subscription_is_reactivated(tmp_path: Path) -> None:
    crm, ledger = FakeCrm(), tmp_path / "l.sqlite"
    register(crm, ledger)
    crm.subs[501]["active"] = False
    crm.calls.clear()
    made = register(crm, ledger)
    assert crm.calls == [("GET", "/api/Webhook/501", None),
                         ("PUT", "/api/Webhook/501/Active?active=true", None)]
    assert made.action == "reactivated" and crm.subs[501]["active"] is True


def test_a_subscription_gone_from_crm_is_created_again(tmp_path: Path) -> None:
    crm, ledger = FakeCrm(), tmp_path / "l.sqlite"
    register(crm, ledger)
    del crm.subs[501]  # deleted in CRM+ by someone
    crm.calls.clear()
    made = register(crm, ledger)
    assert crm.calls == [("GET", "/api/Webhook/501", None), ("POST", "/api/Webhook", GIFT_BODY)]
    assert (made.id, made.action) == ("502", "recreated")
    assert stored_rows(ledger) == [("501", URL, "giftCreate", None, 0, "gone (404)"),
                                   ("502", URL, "giftCreate", 1, 1, "created")]
    crm.calls.clear()
    assert register(crm, ledger).action == "unchanged"  # the new id is the one checked
    assert crm.calls == [("GET", "/api/Webhook/502", None)]


@pytest.mark.parametrize("change", ["url", "secret", "event off"])
def test_a_changed_subscription_is_replaced_with_a_full_put(tmp_path: Path, change: str) -> None:
    crm, ledger = FakeCrm(), tmp_path / "l.sqlite"
    register(crm, ledger)
    url, secret = URL, SECRET
    if change == "url":
        url = "https://hooks2.example.org/webhook"
    elif change == "secret":
        secret = "whsec-rotated-0000000000000000000000"
    else:
        crm.subs[501]["giftCreate"] = False
    crm.calls.clear()
    made = register(crm, ledger, url=url, secret=secret)
    full = {"payloadUrl": url, "secret": secret, "giftCreate": True, "active": True}
    assert crm.calls == [("GET", "/api/Webhook/501", None), ("PUT", "/api/Webhook/501", full)]
    assert made.action == "updated" and crm.subs[501] == full
    assert stored_rows(ledger)[0][:2] == ("501", url)
    assert secret not in ledger_text(ledger) and secret not in made.line()


def test_a_secret_crm_does_not_show_cannot_be_compared_so_nothing_is_sent(
        tmp_path: Path) -> None:
    crm, ledger = FakeCrm(shows_secret=False), tmp_path / "l.sqlite"
    register(crm, ledger)
    crm.calls.clear()
    assert register(crm, ledger, secret="whsec-other").action == "unchanged"
    assert crm.calls == [("GET", "/api/Webhook/501", None)]


def test_an_answer_without_a_usable_id_stores_nothing_and_says_why(tmp_path: Path) -> None:
    crm, ledger = FakeCrm(create_answer={"id": True}), tmp_path / "l.sqlite"
    with pytest.raises(EtlError, match=r"no usable subscription id.*no route that lists"):
        register(crm, ledger)
    assert stored_rows(ledger) == [] and len(crm.calls) == 1


def test_a_registration_needs_a_secret(tmp_path: Path) -> None:
    with pytest.raises(EtlError, match="needs a secret"):
        register(FakeCrm(), tmp_path / "l.sqlite", secret="")


def test_check_records_what_crm_shows(tmp_path: Path) -> None:
    crm, ledger = FakeCrm(), tmp_path / "l.sqlite"
    register(crm, ledger)
    crm.subs[501]["active"] = False
    checks = asyncio.run(check_subscriptions(BASE, "key-1", ledger, SECRET,
                                             transport=httpx.MockTransport(crm)))
    (row, seen), = checks
    assert (row["id"], seen.found, seen.active, seen.events, seen.secret_matches) == (
        "501", True, False, ("giftCreate",), True)
    assert SECRET not in seen.line() and "active NO" in seen.line()
    assert stored_rows(ledger)[0][3:] == (0, 1, "inactive")
    del crm.subs[501]
    asyncio.run(check_subscriptions(BASE, "key-1", ledger, SECRET,
                                    transport=httpx.MockTransport(crm)))
    assert stored_rows(ledger)[0][4:] == (0, "gone (404)")
