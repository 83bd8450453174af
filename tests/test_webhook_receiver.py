"""The webhook receiver (`etl webhooks serve`) over 127.0.0.1: signatures (Base64 and hex,
refused and recorded otherwise), idempotency, size limit, unknown events, floods, logging."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl.ledger import Ledger
from etl.reconcile import ReconcileOptions, reconcile
from etl.webhook_receiver import (
    ReceiverConfig,
    ReceiverHandle,
    running_receiver,
    verify_signature,
)

SECRET = b"s3cret-hook-key-9"
PREFIX = "gift_transaction:LegacyCRM:"


def b64(body: bytes, secret: bytes = SECRET) -> str:
    return base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()


def gift_event(tid: str, gift_id: int, event: str = "GiftCreate", **extra: Any) -> bytes:
    gift = {"id": gift_id, "transactionSource": "LegacyCRM", "transactionId": tid,
            "contactId": 1001, "amount": 25.0, **extra}
    return json.dumps({"event": event, "gift": gift}).encode()


def make_ledger(path: Path, accepted: list[str], pending: tuple[str, ...] = ()) -> None:
    with Ledger(path) as led:
        run = led.start_run(pipeline="gifts", target="gift_transaction")
        keys = [*accepted, *pending]
        first = led.add_rows([(run, "gifts.csv", i + 1, PREFIX + k, "h", "pending", "new", None,
                               None, 2500, "USD") for i, k in enumerate(keys)])
        ids = list(range(first, first + len(keys)))
        led.mark_sending("b1", ids[:len(accepted)])
        led.settle((i, "accepted", 1, 200, None, None) for i in ids[:len(accepted)])
        led.finish_run(run, 0, "finished", {})


def status(path: Path) -> dict[str, tuple[str, str | None, str | None]]:
    with Ledger(path, lock=False) as led:
        return {k[len(PREFIX):]: (s, c, t) for k, s, c, t in led.db.execute(
            "SELECT key, status, crm_id, confirmed_at FROM rows ORDER BY id")}


def deliveries(path: Path) -> list[tuple[Any, ...]]:
    with Ledger(path, lock=False) as led:
        return led.db.execute("SELECT outcome, reason, times, rows_confirmed FROM"
                              " webhook_deliveries ORDER BY id").fetchall()


@pytest.fixture
def hook(tmp_path: Path) -> Iterator[tuple[ReceiverHandle, Path]]:
    path = tmp_path / "gifts.sqlite"
    make_ledger(path, ["G1", "G2", "G3"], pending=["G4"])
    cfg = ReceiverConfig(ledger_path=path, kind="gift", source="LegacyCRM", prefix=PREFIX,
                         pipeline="gifts", secret=SECRET, max_body=10_000)
    with running_receiver(cfg) as handle:
        yield handle, path


def post(url: str, body: bytes, signature: str | None = None, **headers: str) -> httpx.Response:
    if signature is not None:
        headers["X-Virtuous-Signature"] = signature
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers},
                      timeout=10, trust_env=False)


def test_verify_signature_base64_and_hex_constant_time() -> None:
    body = b'{"event":"GiftCreate"}'
    digest = hmac.new(SECRET, body, hashlib.sha256)
    assert verify_signature(SECRET, body, b64(body)) is None
    assert verify_signature(SECRET, body, digest.hexdigest()) is None
    assert verify_signature(SECRET, body, "sha256=" + digest.hexdigest().upper()) is None
    assert verify_signature(SECRET, body, None) == "unsigned delivery"
    assert verify_signature(SECRET, body, b64(body, b"other")) == "signature mismatch"
    assert verify_signature(SECRET, body + b" ", b64(body)) == "signature mismatch"
    assert verify_signature(SECRET, body, "%%%not base64") == "signature mismatch"
    assert verify_signature(SECRET, body, "A" * 500) == "malformed signature"


def test_signed_delivery_confirms_once_and_a_repeat_changes_nothing(
        hook: tuple[ReceiverHandle, Path]) -> None:
    handle, path = hook
    body = gift_event("G1", 50001)
    first = post(handle.url, body, b64(body))
    assert first.status_code == 200 and first.json()["confirmed"] == 1
    before = status(path)
    assert before["G1"][:2] == ("confirmed", "50001") and before["G2"][0] == "accepted"
    again = post(handle.url, body, b64(body))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert status(path) == before
    assert deliveries(path) == [("applied", None, 2, 1)]
    hexed = gift_event("G2", 50002, event="giftcreate")  # case-insensitive, hex signature
    sig = hmac.new(SECRET, hexed, hashlib.sha256).hexdigest()
    assert post(handle.url, hexed, sig).json()["confirmed"] == 1
    assert status(path)["G2"][:2] == ("confirmed", "50002")


def test_bad_or_missing_signature_is_refused_and_recorded(
        hook: tuple[ReceiverHandle, Path], caplog: pytest.LogCaptureFixture) -> None:
    handle, path = hook
    body = gift_event("G1", 50001)
    with caplog.at_level(logging.INFO, logger="etl.webhooks"):
        bad = post(handle.url, body, b64(body, b"wrong-secret"))
        unsigned = post(handle.url, body)
    assert (bad.status_code, unsigned.status_code) == (401, 401)
    assert status(path)["G1"][0] == "accepted"
    assert deliveries(path) == [("refused", "signature mismatch", 1, 0),
                                ("refused", "unsigned delivery", 1, 0)]
    assert "signature mismatch" in caplog.text and SECRET.decode() not in caplog.text
    assert b64(body) not in caplog.text


def test_oversized_bodies_get_413(hook: tuple[ReceiverHandle, Path]) -> None:
    handle, path = hook
    big = gift_event("G1", 50001, notes="x" * 20_000)
    assert post(handle.url, big, b64(big)).status_code == 413

    def chunks() -> Iterator[bytes]:  # no content-length: counted while reading
        yield from (big[i:i + 4096] for i in range(0, len(big), 4096))

    streamed = httpx.post(handle.url, content=chunks(), headers={"X-Virtuous-Signature":
                                                                b64(big)}, trust_env=False)
    assert streamed.status_code == 413
    assert status(path)["G1"][0] == "accepted"
    assert deliveries(path) == [("refused", "body over 10000 bytes", 2, 0)]


def test_unknown_events_and_other_kinds_are_ignored_with_2xx(
        hook: tuple[ReceiverHandle, Path]) -> None:
    handle, path = hook
    for payload in ({"event": "PledgeCreate", "pledge": {"id": 1}},
                    {"event": "ContactCreate", "contact": {"id": 1001, "contactReferences": []}}):
        body = json.dumps(payload).encode()
        answer = post(handle.url, body, b64(body))
        assert answer.status_code == 200 and answer.json()["ignored"]
    assert [d[0] for d in deliveries(path)] == ["ignored", "ignored"]
    body = b"[1, 2]"
    assert post(handle.url, body, b64(body)).status_code == 400


def test_a_flood_is_answered_and_coalesced(hook: tuple[ReceiverHandle, Path]) -> None:
    handle, path = hook
    body = gift_event("G3", 50003)
    with httpx.Client(trust_env=False, timeout=10) as client:
        codes = {client.post(handle.url, content=body, headers={
            "X-Virtuous-Signature": b64(body, b"forged")}).status_code for _ in range(200)}
        good = client.post(handle.url, content=body, headers={"X-Virtuous-Signature": b64(body)})
    assert codes == {401} and good.json()["confirmed"] == 1
    assert deliveries(path) == [("refused", "signature mismatch", 200, 0), ("applied", None, 1, 1)]


def test_contact_events_never_log_emails(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "contacts.sqlite"
    prefix = "contact_transaction:LegacyCRM:"
    with Ledger(path) as led:
        run = led.start_run(pipeline="contacts", target="contact_transaction")
        first = led.add_rows([(run, "c.csv", 1, prefix + "C1", "h", "pending", "new", None, None,
                               None, None)])
        led.mark_sending("b1", [first])
        led.settle([(first, "accepted", 1, 200, None, None)])
    cfg = ReceiverConfig(ledger_path=path, kind="contact", source="legacycrm", prefix=prefix)
    body = json.dumps({"event": "contactUpdate", "contact": {
        "id": 1007, "email": "donor.secret@example.org", "contactReferences": [
            {"source": "LegacyCRM", "id": "C1"}, {"source": "Other", "id": "Z"}]}}).encode()
    with caplog.at_level(logging.DEBUG), running_receiver(cfg) as handle:
        assert post(handle.url, body).json()["confirmed"] == 1  # no secret: not verified
    assert "donor.secret" not in caplog.text and "1007" in caplog.text
    with Ledger(path, lock=False) as led:
        assert led.db.execute("SELECT status, crm_id FROM rows").fetchall() == [
            ("confirmed", "1007")]


def test_deliveries_recorded_early_are_used_by_reconcile(hook: tuple[ReceiverHandle, Path],
                                                         tmp_path: Path) -> None:
    """A delivery for a row not yet accepted is kept; reconcile applies it later, no request."""
    handle, path = hook
    body = gift_event("G4", 50004)
    assert post(handle.url, body, b64(body)).json()["confirmed"] == 0
    assert deliveries(path)[-1][0] == "unmatched"
    with Ledger(path, lock=False) as led, led.tx():
        led.db.execute("UPDATE rows SET status='accepted', sent_at=? WHERE key=?",
                       ((datetime.now(UTC) - timedelta(minutes=1)).isoformat(), PREFIX + "G4"))
    spec = tmp_path / "gifts.yaml"
    (tmp_path / "gifts.csv").write_text("GiftID,Amount\n", encoding="utf-8")
    spec.write_text("name: gifts\ntarget: gift_transaction\nsource: {path: gifts.csv}\n"
                    "keys: {source: LegacyCRM, id: {column: GiftID}}\n"
                    "mappings: {amount: Amount}\n", encoding="utf-8")
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    summary = reconcile(spec, ReconcileOptions(token="t", base_url="http://127.0.0.1:9",
                                               ledger_path=path, out_dir=tmp_path / "r",
                                               transport=transport, backoff_base=0.001,
                                               requests_per_hour=1e6))
    assert summary.confirmed == {"webhook": 1}
    assert status(path)["G4"][:2] == ("confirmed", "50004")
    # G1..G3 are still open: the poll failed (500s), so nothing was proven absent
    assert summary.poll["complete"] is False and summary.exit_code == 1
    assert summary.waiting == 3 and summary.needs_review == 0
