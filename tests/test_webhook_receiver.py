"""The webhook receiver (`etl webhooks serve`) over 127.0.0.1: signatures (Base64 and hex,
refused and recorded otherwise), idempotency, size limit, both delivery forms, records without
keys or with ids of the wrong type, malformed and deep JSON, a busy ledger, no-secret mode,
floods, logging. Connection limits and the per-minute cap: tests/test_webhook_limits.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl.confirm.reconcile import ReconcileOptions, reconcile
from etl.confirm.webhook_receiver import (
    ReceiverConfig,
    ReceiverHandle,
    running_receiver,
    verify_signature,
)
from etl.load.ledger import Ledger
from etl.spec.pipeline import open_pipeline

SECRET = b"s3cret-hook-key-9"
PREFIX = "gift_transaction:LegacyCRM:"


def b64(body: bytes, secret: bytes = SECRET) -> str:
    return base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()


def gift_event(tid: str, gift_id: int, event: str = "GiftCreate", **extra: Any) -> bytes:
    gift = {"id": gift_id, "transactionSource": "LegacyCRM", "transactionId": tid,
            "contactId": 1001, "amount": 25.0, **extra}
    return json.dumps({"event": event, "gift": gift}).encode()


def gift(tid: str, gift_id: Any, source: str = "LegacyCRM", **extra: Any) -> dict[str, Any]:
    return {"id": gift_id, "transactionSource": source, "transactionId": tid, **extra}


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


def stored_keys(path: Path, table: str = "webhook_keys") -> list[tuple[str, str | None]]:
    with Ledger(path, lock=False) as led:
        return [(k[len(PREFIX):], c) for k, c in led.db.execute(
            f"SELECT key, crm_id FROM {table} ORDER BY rowid")]


def signed(handle: ReceiverHandle, payload: Any) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return post(handle.url, body, b64(body))


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
        answer = signed(handle, payload)
        assert answer.status_code == 200 and answer.json()["ignored"]
    assert [d[:2] for d in deliveries(path)] == [
        ("ignored", "unknown event type"), ("ignored", "a contact event, not this pipeline's")]


@pytest.mark.parametrize(("body", "reason"), [
    (b"[1, 2]", "the body is not a JSON object"),
    (b'"GiftCreate"', "the body is not a JSON object"),
    (b'{"event": "GiftCreate", "gift": {', "malformed JSON"),
    (b"\xff\xfe{}", "malformed JSON"),
    (b"[" * 200_000 + b"]" * 200_000, "JSON nested deeper than 32 levels"),
    (b'{"event": "GiftCreate", "gift": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
     "JSON nested deeper than 32 levels"),
])
def test_malformed_or_deep_json_is_2xx_and_recorded_as_ignored(
        tmp_path: Path, body: bytes, reason: str) -> None:
    """CRM+ retries every non-2xx answer: a body no retry can fix is acknowledged, not 400/500."""
    path = tmp_path / "gifts.sqlite"
    make_ledger(path, ["G1"])
    cfg = ReceiverConfig(ledger_path=path, kind="gift", source="LegacyCRM", prefix=PREFIX,
                         secret=SECRET, max_body=2_000_000)
    with running_receiver(cfg) as handle:
        answer = signed(handle, body)
        assert (answer.status_code, answer.json()) == (200, {"ok": True, "ignored": reason})
    assert deliveries(path) == [("ignored", reason, 1, 0)]
    assert status(path)["G1"][0] == "accepted"


def test_both_delivery_forms_and_event_names_in_any_case(
        hook: tuple[ReceiverHandle, Path]) -> None:
    handle, path = hook
    many = {"event": "GIFTCREATE", "models": [
        gift("G1", 50001),                                 # a bare record
        {"gift": gift("G2", "50002")},                     # a wrapped one, id as digits
        {"id": 50009, "amount": 5, "contact": {"id": 3}},  # no keys
        {"gift": gift("G3", 50003, source="OtherCRM")},    # another source
        "not a record",
    ]}
    answer = signed(handle, many)
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "confirmed": 2, "records": 5, "left_for_polling": 3}
    got = status(path)
    assert got["G1"][:2] == ("confirmed", "50001") and got["G2"][:2] == ("confirmed", "50002")
    assert got["G3"][0] == "accepted"
    assert deliveries(path) == [("applied", "1 of 5 records: no keys: left for polling; 1 of 5"
                                 " records: another transactionSource; 1 of 5 records: not a"
                                 " record", 1, 2)]
    assert stored_keys(path) == [("G1", "50001"), ("G2", "50002")]
    one = signed(handle, {"event": "giftCreate", "gift": gift("G3", 50003)})
    assert one.json()["confirmed"] == 1 and status(path)["G3"][:2] == ("confirmed", "50003")


def test_models_beyond_the_cap_are_left_for_polling(tmp_path: Path) -> None:
    path = tmp_path / "gifts.sqlite"
    make_ledger(path, ["G1", "G2", "G3"])
    cfg = ReceiverConfig(ledger_path=path, kind="gift", source="LegacyCRM", prefix=PREFIX,
                         secret=SECRET, max_models=2)
    with running_receiver(cfg) as handle:
        answer = signed(handle, {"event": "GiftCreate", "models": [
            gift(f"G{i}", 50000 + i) for i in (1, 2, 3)]})
    assert answer.json()["left_for_polling"] == 1
    assert [s[0] for s in status(path).values()] == ["confirmed", "confirmed", "accepted"]
    assert deliveries(path) == [("applied", "1 models beyond the cap of 2: left for polling", 1,
                                 2)]


def test_records_without_key_fields_confirm_nothing(hook: tuple[ReceiverHandle, Path],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Whether a delivered gift carries transactionSource/transactionId is not published."""
    handle, path = hook
    with caplog.at_level(logging.INFO, logger="etl.webhooks"):
        for record in ({"id": 50001, "amount": 25.0},
                       {"id": 50001, "transactionId": "G1"},
                       {"id": 50001, "transactionSource": "LegacyCRM", "transactionId": ""}):
            answer = signed(handle, {"event": "GiftCreate", "gift": record})
            assert answer.status_code == 200 and answer.json()["confirmed"] == 0
    assert status(path)["G1"][0] == "accepted"
    assert deliveries(path) == [("unmatched", "no keys: left for polling", 1, 0)] * 3
    assert stored_keys(path) == []
    assert "no keys: left for polling" in caplog.text


def test_contact_records_without_references_confirm_nothing(tmp_path: Path) -> None:
    path, prefix = contact_ledger(tmp_path)
    cfg = ReceiverConfig(ledger_path=path, kind="contact", source="LegacyCRM", prefix=prefix,
                         secret=SECRET)
    with running_receiver(cfg) as handle:
        for contact in ({"id": 1007, "name": "Ada"}, {"id": 1007, "contactReferences": None},
                        {"id": 1007, "contactReferences": "LegacyCRM:C1"}):
            assert signed(handle, {"event": "ContactUpdate", "contact": contact}).json()[
                "confirmed"] == 0
    assert deliveries(path) == [("unmatched", "no keys: left for polling", 1, 0)] * 3
    with Ledger(path, lock=False) as led:
        assert led.db.execute("SELECT status FROM rows").fetchall() == [("accepted",)]


BAD_IDS = [b"[50001]", b"true", b"50001.5", b"50001.0", b"NaN", b"-Infinity", b"1e400",
           b"1" + b"0" * 400, b'"1' + b"0" * 400 + b'"', b'"1234567890123456789"', b'"5e3"',
           b'" 50001"', b"0", b"-5", b"null", b'{"id": 50001}', '"５０００１"'.encode()]


@pytest.mark.parametrize("bad", BAD_IDS, ids=[b[:12].decode(errors="replace") for b in BAD_IDS])
def test_ids_of_the_wrong_type_are_not_stored_and_confirm_nothing(
        hook: tuple[ReceiverHandle, Path], bad: bytes) -> None:
    handle, path = hook
    body = (b'{"event": "GiftCreate", "gift": {"id": ' + bad +
            b', "transactionSource": "LegacyCRM", "transactionId": "G1"}}')
    answer = signed(handle, body)
    assert (answer.status_code, answer.json()["confirmed"]) == (200, 0)
    assert status(path)["G1"] == ("accepted", None, None)
    assert stored_keys(path) == []
    outcome, reason, _times, _n = deliveries(path)[0]
    assert outcome == "unmatched" and reason.startswith("no usable CRM id")


@pytest.mark.parametrize("bad_tid", [b"[\"G1\"]", b"true", b"1.5", b"NaN", b'{"G": 1}'])
def test_transaction_ids_of_the_wrong_type_name_no_key(hook: tuple[ReceiverHandle, Path],
                                                       bad_tid: bytes) -> None:
    handle, path = hook
    body = (b'{"event": "GiftCreate", "gift": {"id": 50001, "transactionSource": "LegacyCRM",'
            b' "transactionId": ' + bad_tid + b"}}")
    assert signed(handle, body).json()["confirmed"] == 0
    assert stored_keys(path) == [] and status(path)["G1"][0] == "accepted"


def test_a_busy_ledger_is_answered_503_quickly_and_the_retry_applies(
        hook: tuple[ReceiverHandle, Path]) -> None:
    handle, path = hook
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the ledger
        start = time.monotonic()
        busy = signed(handle, {"event": "GiftCreate", "gift": gift("G1", 50001)})
        elapsed = time.monotonic() - start
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert busy.status_code == 503 and elapsed < 2.5, elapsed  # CRM+ times out slow answers
    retry = signed(handle, {"event": "GiftCreate", "gift": gift("G1", 50001)})
    assert retry.json()["confirmed"] == 1 and deliveries(path) == [("applied", None, 1, 1)]


def test_a_flood_is_answered_and_coalesced(hook: tuple[ReceiverHandle, Path]) -> None:
    handle, path = hook
    body = gift_event("G3", 50003)
    with httpx.Client(trust_env=False, timeout=10) as client:
        codes = {client.post(handle.url, content=body, headers={
            "X-Virtuous-Signature": b64(body, b"forged")}).status_code for _ in range(200)}
        good = client.post(handle.url, content=body, headers={"X-Virtuous-Signature": b64(body)})
    assert codes == {401} and good.json()["confirmed"] == 1
    assert deliveries(path) == [("refused", "signature mismatch", 200, 0), ("applied", None, 1, 1)]


def contact_ledger(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "contacts.sqlite"
    prefix = "contact_transaction:LegacyCRM:"
    with Ledger(path) as led:
        run = led.start_run(pipeline="contacts", target="contact_transaction")
        first = led.add_rows([(run, "c.csv", 1, prefix + "C1", "h", "pending", "new", None, None,
                               None, None)])
        led.mark_sending("b1", [first])
        led.settle([(first, "accepted", 1, 200, None, None)])
    return path, prefix


def test_contact_events_never_log_emails(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    path, prefix = contact_ledger(tmp_path)
    cfg = ReceiverConfig(ledger_path=path, kind="contact", source="legacycrm", prefix=prefix,
                         secret=SECRET)
    body = json.dumps({"event": "contactUpdate", "models": [{"contact": {
        "id": 1007, "email": "donor.secret@example.org", "contactReferences": [
            {"source": "LegacyCRM", "id": "C1"}, {"source": "Other", "id": "Z"}]}}]}).encode()
    with caplog.at_level(logging.DEBUG), running_receiver(cfg) as handle:
        assert post(handle.url, body, b64(body)).json()["confirmed"] == 1
    assert "donor.secret" not in caplog.text and "CRM ids 1007" in caplog.text
    with Ledger(path, lock=False) as led:
        assert led.db.execute("SELECT status, crm_id FROM rows").fetchall() == [
            ("confirmed", "1007")]


def test_a_contact_record_changed_before_the_row_was_sent_confirms_nothing(
        tmp_path: Path) -> None:
    """A ContactUpdate about an edit made before our transaction was sent is not proof of it."""
    path, prefix = contact_ledger(tmp_path)
    cfg = ReceiverConfig(ledger_path=path, kind="contact", source="LegacyCRM", prefix=prefix,
                         secret=SECRET)
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    record = {"id": 1007, "modifiedDateTimeUtc": old,
              "contactReferences": [{"source": "LegacyCRM", "id": "C1"}]}
    with running_receiver(cfg) as handle:
        assert signed(handle, {"event": "ContactUpdate", "contact": record}).json()[
            "confirmed"] == 0
        record["modifiedDateTimeUtc"] = datetime.now(UTC).isoformat()
        assert signed(handle, {"event": "ContactUpdate", "contact": record}).json()[
            "confirmed"] == 1


def test_without_a_secret_nothing_confirms_and_reconcile_ignores_it(tmp_path: Path) -> None:
    """--insecure-no-secret: a forged POST is recorded as an unverified hint, never a proof."""
    path = tmp_path / "gifts.sqlite"
    make_ledger(path, ["G1"])
    cfg = ReceiverConfig(ledger_path=path, kind="gift", source="LegacyCRM", prefix=PREFIX)
    with pytest.raises(ValueError, match="needs a secret"), running_receiver(cfg):
        pass
    cfg.insecure = True
    forged = json.dumps({"event": "GiftCreate", "gift": gift("G1", 66666)}).encode()
    with running_receiver(cfg) as handle:
        answer = post(handle.url, forged, b64(forged))  # a signature proves nothing without one
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "confirmed": 0, "records": 1, "left_for_polling": 0,
                             "unverified": True}
    assert status(path)["G1"] == ("accepted", None, None)
    assert stored_keys(path) == []
    assert stored_keys(path, "webhook_unverified_keys") == [("G1", "66666")]
    assert deliveries(path) == [("unverified", "no secret: recorded as a hint, confirms nothing",
                                 1, 0)]
    pipeline = open_pipeline(write_gift_spec(tmp_path), ledger_path=path, out_dir=tmp_path / "r")
    summary = reconcile(pipeline, ReconcileOptions(
        token="t", base_url="http://127.0.0.1:9",
        transport=httpx.MockTransport(lambda request: httpx.Response(500)),
        backoff_base=0.001, requests_per_hour=1e6))
    assert summary.confirmed == {} and status(path)["G1"][0] == "accepted"


def write_gift_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "gifts.yaml"
    (tmp_path / "gifts.csv").write_text("GiftID,Amount\n", encoding="utf-8")
    spec.write_text("name: gifts\ntarget: gift_transaction\nsource: {path: gifts.csv}\n"
                    "keys: {source: LegacyCRM, id: {column: GiftID}}\n"
                    "mappings: {amount: Amount}\n", encoding="utf-8")
    return spec


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
    spec = write_gift_spec(tmp_path)
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    pipeline = open_pipeline(spec, ledger_path=path, out_dir=tmp_path / "r")
    summary = reconcile(pipeline, ReconcileOptions(token="t", base_url="http://127.0.0.1:9",
                                                   transport=transport, backoff_base=0.001,
                                               requests_per_hour=1e6))
    assert summary.confirmed == {"webhook": 1}
    assert status(path)["G4"][:2] == ("confirmed", "50004")
    # G1..G3 are still open: the poll failed (500s), so nothing was proven absent
    assert summary.poll["complete"] is False and summary.exit_code == 1
    assert summary.waiting == 3 and summary.needs_review == 0
