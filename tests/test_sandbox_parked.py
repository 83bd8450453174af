"""Sandbox contract: gifts parked in Update Needed / Match Needed, staff import, gift types."""

from __future__ import annotations

import pytest
from sandbox_fixtures import gift, sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.sandbox.server import running_sandbox

BATCH = "/api/v2/Gift/Transactions"


def _send(sb, *items, source="S"):
    with sb.client() as c:
        r = c.post(BATCH, json={"transactionSource": source, "transactions": list(items)})
        assert r.status_code == 200, r.text


def _visible(sb, tid, source="S"):
    """Which documented reads show the gift: the lookup, Query/FullGift, Query."""
    body = {"groups": [{"conditions": [
        {"parameter": "Transaction Source", "operator": "Is", "value": source},
        {"parameter": "Transaction Id", "operator": "Is", "value": tid}]}]}
    with sb.client() as c:
        lookup = c.get(f"/api/Gift/{source}/{tid}")
        full = c.post("/api/Gift/Query/FullGift", json=body).json()["total"]
        short = c.post("/api/Gift/Query", json=body).json()["total"]
    if lookup.status_code == 404:
        assert lookup.content == b""
    return lookup.status_code == 200, full, short


def test_a_named_gift_is_parked_even_when_its_contact_matches(sandbox):
    _send(sandbox, gift("G-0"))
    sandbox.run_batch()  # G-0's contact now exists
    sandbox.config.park_ids = ("G-1",)
    summary = (_send(sandbox, gift("G-1", contact={"referenceId": "D-G-0"}), gift("G-2")),
               sandbox.run_batch())[1]
    assert (summary["giftsCreated"], summary["parked"], summary["needsUpdate"]) == (1, 1, 1)
    (item,) = sandbox.state.parked("Update Needed")
    assert (item["kind"], item["transactionSource"], item["transactionId"]) == ("gift", "S", "G-1")
    for _night in range(2):  # it stays parked, night after night
        assert _visible(sandbox, "G-1") == (False, 0, 0)
        sandbox.run_batch()
    assert _visible(sandbox, "G-2") == (True, 1, 1)


def test_staff_import_makes_a_parked_gift_a_record(sandbox):
    sandbox.config.park_ids = ("G-1",)
    _send(sandbox, gift("G-1", amount=7))
    sandbox.run_batch()
    result = sandbox.import_parked(transactionSource="S", transactionId="G-1")
    assert result["giftsCreated"] == 1 and list(result["outcomes"].values()) == ["imported"]
    assert _visible(sandbox, "G-1") == (True, 1, 1)
    assert sandbox.state.parked() == []
    assert sandbox.state.gifts_for("S", "G-1")[0]["amount"] == 7.0


def test_staff_delete_means_it_never_becomes_a_record(sandbox):
    sandbox.config.park_ids = ("G-1", "G-2")
    _send(sandbox, gift("G-1"), gift("G-2"))
    sandbox.run_batch()
    with sandbox.client() as c:
        listed = c.get("/sandbox/imports").json()
    assert [(i["queue"], i["transactionId"]) for i in listed] == [
        ("Update Needed", "G-1"), ("Update Needed", "G-2")]
    assert all("payload" not in i for i in listed)
    assert sandbox.delete_parked(transactionSource="S", transactionId="G-1") == 1
    assert [p["transactionId"] for p in sandbox.state.parked()] == ["G-2"]
    sandbox.run_batch()
    assert _visible(sandbox, "G-1") == (False, 0, 0)
    assert sandbox.delete_parked(queue="Update Needed") == 1
    with pytest.raises(RuntimeError, match="404"):
        sandbox.delete_parked(transactionSource="S", transactionId="G-1")


def test_match_needed_gift_is_404_until_staff_attach_a_contact(sandbox):
    _send(sandbox, gift("G-1", contact={"email": "nobody@example.org"}))
    sandbox.run_batch()
    (item,) = sandbox.state.parked("Match Needed")
    assert item["transactionId"] == "G-1"
    assert _visible(sandbox, "G-1") == (False, 0, 0)
    with pytest.raises(RuntimeError, match="409"):
        sandbox.import_parked(seq=item["seq"])  # still no contact to attach it to
    _send(sandbox, gift("G-2"))
    sandbox.run_batch()
    contact_id = sandbox.state.gifts_for("S", "G-2")[0]["contactId"]
    sandbox.import_parked(contact_id=contact_id, seq=item["seq"])
    assert sandbox.state.gifts_for("S", "G-1")[0]["contactId"] == contact_id
    assert _visible(sandbox, "G-1") == (True, 1, 1)


def _parked_ids(sb, share, seed, n=200):
    sb.reset()
    sb.config.park_share, sb.config.park_seed = share, seed
    for start in range(0, n, 100):
        _send(sb, *(gift(f"G-{i}") for i in range(start, min(n, start + 100))))
    sb.run_batch()
    return {p["transactionId"] for p in sb.state.parked("Update Needed")}


def test_park_share_is_deterministic_by_seed(sandbox):
    first = _parked_ids(sandbox, 0.2, 1)
    assert first == _parked_ids(sandbox, 0.2, 1)
    assert first != _parked_ids(sandbox, 0.2, 2)
    assert 20 <= len(first) <= 60
    assert len(sandbox.state.gifts()) == 200 - len(_parked_ids(sandbox, 0.2, 2))


def test_gift_types_are_per_organization():
    types = ("Cash", "Check", "Electronic Funds Transfer")
    with running_sandbox(rate_limit="none", gift_types=types) as sb, sb.client() as c:
        ok = c.post("/api/v2/Gift/Transaction",
                    json=gift("G-1", transactionSource="S", giftType="Electronic Funds Transfer"))
        assert ok.status_code == 200
        r = c.post("/api/v2/Gift/Transaction",
                   json=gift("G-2", transactionSource="S", giftType="EFT"))
        assert r.status_code == 422
        (d,) = r.json()["error"]["details"]
        assert d["field"] == "giftType" and "Electronic Funds Transfer" in d["message"]
        batch = c.post(BATCH, json={"transactionSource": "S", "defaultGiftType": "Credit",
                                    "transactions": [gift("G-3", giftType=None)]})
        assert batch.status_code == 422


def test_config_refuses_bad_switches():
    for bad in ({"park_share": 1.5}, {"query_without_groups": "maybe"}, {"gift_types": ()},
                {"organization_timezone": "Mars/Olympus"}):
        with pytest.raises(ValueError), running_sandbox(**bad):
            pass  # pragma: no cover - never reached
