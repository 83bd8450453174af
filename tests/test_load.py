"""The sender and the request budget, against httpx.MockTransport (no server)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from etl.base.errors import CredentialsRefused
from etl.load.budget import RequestBudget, backoff
from etl.load.client import CrmClient
from etl.load.sender import Batch, Item, Outcome, Sender, SendSettings, batch_body, batch_total
from etl.targets import get_target

GIFT = get_target("gift_transaction")
CONTACT = get_target("contact_transaction")


class FakeTime:
    """A clock whose sleep advances it instantly."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_900_000_000.0) -> None:
        self.t, self.offset = start, wall - start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + self.offset

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class Log:
    """A recorder that keeps the order of events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.outcomes: dict[int, Outcome] = {}

    def sending(self, batch: Batch) -> None:
        self.events.append(("sending", batch.id))

    def settle(self, batch: Batch, outcomes: Sequence[Outcome]) -> None:
        self.events.append(("settle", batch.id))
        self.outcomes.update({o.row_id: o for o in outcomes})


def gifts(n: int, bad: Sequence[int] = (), start: int = 0) -> list[Item]:
    return [Item(start + i, f"gift_transaction:S:G{start + i}",
                 json.dumps({"transactionId": f"G{start + i}", "amount": 10.5,
                             **({"bad": True} if start + i in bad else {})},
                            separators=(",", ":")), 1050)
            for i in range(n)]


def batches(items: list[Item], size: int) -> list[Batch]:
    return [Batch(f"b{i // size}", items[i:i + size], {"batchTotal": 0})
            for i in range(0, len(items), size)]


def server(*, details: bool = True, batch: bool = True,
           script: list[int | str] | None = None, log: list[httpx.Request] | None = None,
           events: Log | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """A fake CRM+: refuses a batch with any `"bad"` item (422, with or without item details);
    `script` forces the next statuses; `batch=False` answers 404 on the batch endpoint."""
    forced = list(script or [])

    def handler(request: httpx.Request) -> httpx.Response:
        if log is not None:
            log.append(request)
        if events is not None:
            events.events.append(("request", request.url.path))
        if forced:
            status = forced.pop(0)
            if status == "connect":
                raise httpx.ConnectError("refused", request=request)
            if status == "timeout":
                raise httpx.ReadTimeout("no answer", request=request)
            if status == "503+ra":
                return httpx.Response(503, headers={"Retry-After": "0"})
            if status != 200:
                return httpx.Response(int(status), headers={"Retry-After": "0"}
                                      if status == 429 else {})
        body = json.loads(request.content)
        if request.url.path.endswith("Transactions"):
            if not batch:
                return httpx.Response(404)
            items = body["transactions"]
            bad = [i for i, t in enumerate(items) if t.get("bad")]
            if bad:
                found = [{"field": f"transactions[{i}].amount", "code": "INVALID",
                          "message": "bad amount"} for i in bad] if details else []
                return httpx.Response(422, json={"error": {
                    "code": "VALIDATION_FAILED", "message": "see details", "details": found}})
            return httpx.Response(200)
        if body.get("bad"):
            return httpx.Response(422, json={"error": {"code": "VALIDATION_FAILED",
                                                       "message": "bad", "details": [
                                                           {"field": "amount", "code": "INVALID",
                                                            "message": "bad amount"}]}})
        return httpx.Response(200)

    return handler


def send(handler: Callable[[httpx.Request], httpx.Response], work: list[Batch],
         log: Log | None = None, **settings: Any) -> tuple[Sender, Log]:
    log = log or Log()
    settings = {"concurrency": 1, "max_attempts": 3, "backoff_base": 0.0, **settings}

    async def go() -> Sender:
        fake = FakeTime()
        budget = RequestBudget(requests_per_hour=None, clock=fake.clock, wall=fake.wall,
                               sleep=fake.sleep)
        client = CrmClient("https://crm.example", "k", transport=httpx.MockTransport(handler),
                           observe=budget.observe)
        sender = Sender(client, budget, GIFT, "S", log, SendSettings(**settings))
        async with client:
            await sender.run(work)
        return sender

    return asyncio.run(go()), log


def statuses(log: Log) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in log.outcomes.values():
        out[o.status] = out.get(o.status, 0) + 1
    return out


def test_batch_body_is_the_envelope_around_the_encoded_payloads() -> None:
    items = gifts(3)
    body = batch_body(GIFT, "LegacyCRM", items, {"createImport": True, "batchTotal": 31.5})
    data = json.loads(body)
    assert data["transactionSource"] == "LegacyCRM"
    assert data["createImport"] is True and data["batchTotal"] == 31.5
    assert data["transactions"] == [json.loads(i.payload) for i in items]
    assert json.loads(batch_body(CONTACT, "Src", items[:1], {}))["contacts"][0]["amount"] == 10.5
    assert batch_total(gifts(3)) == "31.50"


def test_rows_are_marked_sending_before_the_request_and_settled_after() -> None:
    log = Log()
    sender, _ = send(server(events=log), batches(gifts(5), 5), log)
    assert [e[0] for e in log.events] == ["sending", "request", "settle"]
    assert statuses(log) == {"accepted": 5}
    assert sender.stats.rows_in_batches / sender.stats.batch_requests == 5


def test_batch_404_falls_back_to_single_endpoints_once_per_run() -> None:
    requests: list[httpx.Request] = []
    sender, log = send(server(batch=False, log=requests), batches(gifts(6), 3))
    paths = [r.url.path for r in requests]
    assert paths.count("/api/v2/Gift/Transactions") == 1
    assert paths.count("/api/v2/Gift/Transaction") == 6
    assert sender.stats.fallback and statuses(log) == {"accepted": 6}


def test_item_details_reject_only_the_named_rows_without_splitting() -> None:
    requests: list[httpx.Request] = []
    _, log = send(server(log=requests), batches(gifts(100, bad=[3, 70]), 100))
    assert len(requests) == 2  # the refused batch, then the 98 good rows once
    assert statuses(log) == {"accepted": 98, "rejected": 2}
    assert json.loads(log.outcomes[3].details or "")[0]["field"] == "amount"
    assert log.outcomes[3].http_status == 422
    assert json.loads(requests[1].content)["batchTotal"] == 98 * 10.5


def test_without_details_the_bad_row_is_found_by_bisection_within_the_bound() -> None:
    requests: list[httpx.Request] = []
    sender, log = send(server(details=False, log=requests), batches(gifts(100, bad=[41]), 100))
    assert statuses(log) == {"accepted": 99, "rejected": 1}
    assert log.outcomes[41].status == "rejected"
    assert len(requests) - 1 <= Sender._split_bound(gifts(100))
    assert sender.stats.split_requests == len(requests) - 1


def test_when_the_split_bound_is_spent_the_rest_needs_review() -> None:
    bad = list(range(0, 100, 3))  # 34 bad rows: too many to isolate cheaply
    sender, log = send(server(details=False), batches(gifts(100, bad=bad), 100))
    counts = statuses(log)
    assert counts.get("needs_review", 0) > 0
    assert sender.stats.split_requests <= Sender._split_bound(gifts(100))
    assert all(log.outcomes[i].status in ("rejected", "needs_review") for i in bad)


@pytest.mark.parametrize(("script", "expect", "requests"), [
    # the request provably never left, or the server said "not processed": retried
    (["connect", "connect", 200], "accepted", 3),
    (["503+ra", 200], "accepted", 2),
    ([429] * 12 + [200], "accepted", 13),  # a 429 burst is not a failed attempt
    (["connect"] * 3, "failed", 3),  # never stored: `failed`, the next run sends it
    # the write may have been stored: never retried blindly, in doubt
    ([500], "in_doubt", 1),
    ([503], "in_doubt", 1),  # a 503 without Retry-After says nothing
    ([502], "in_doubt", 1),
    (["timeout"], "in_doubt", 1),
    (["connect", "timeout"], "in_doubt", 2),
])
def test_unknown_outcomes_are_in_doubt_and_only_unsent_requests_are_retried(
        script: list[int | str], expect: str, requests: int) -> None:
    log_requests: list[httpx.Request] = []
    _, log = send(server(script=list(script), log=log_requests), batches(gifts(2), 2))
    assert statuses(log) == {expect: 2}
    assert len(log_requests) == requests
    assert log.outcomes[0].attempts == requests
    if expect == "in_doubt":
        assert log.outcomes[0].code.startswith("IN_DOUBT_")


def test_contacts_under_resend_retry_unknown_outcomes() -> None:
    _, log = send(server(script=[500, "timeout"]), batches(gifts(2), 2), retry_unknown=True)
    assert statuses(log) == {"accepted": 2}
    assert log.outcomes[0].attempts == 3
    _, log = send(server(script=[500, 502, 504]), batches(gifts(2), 2), retry_unknown=True)
    assert statuses(log) == {"in_doubt": 2}  # tried and may be stored: resent by policy later


def test_429_beyond_the_wait_limit_stops_the_run_with_rows_unsent() -> None:
    from etl.load.budget import Throttled
    log = Log()
    with pytest.raises(Throttled, match="rate limited"):
        send(server(script=[429] * 50), batches(gifts(4), 2), log, max_wait=5.0)
    assert statuses(log) == {"pending": 2}  # the first batch: never stored, sent next run
    assert [e for e in log.events if e[0] == "sending"] == [("sending", "b0")]


def test_429_pauses_everyone_for_retry_after() -> None:
    sender, log = send(server(script=[429, 200]), batches(gifts(2), 2))
    assert statuses(log) == {"accepted": 2}
    assert sender.budget.throttled == 1


def test_401_stops_the_run_and_leaves_unsent_rows_pending() -> None:
    requests: list[httpx.Request] = []
    work = batches(gifts(6), 2)

    with pytest.raises(CredentialsRefused):
        send(server(script=[200, 401], log=requests), work)
    assert len(requests) == 2  # nothing after the 401


def test_401_outcomes_are_pending_and_later_batches_untouched() -> None:
    log = Log()
    with pytest.raises(CredentialsRefused):
        send(server(script=[200, 401]), batches(gifts(6), 2), log)
    assert statuses(log) == {"accepted": 2, "pending": 2}
    assert [e for e in log.events if e[0] == "sending"] == [("sending", "b0"), ("sending", "b1")]


# -- the budget ----------------------------------------------------------------------------------
def _acquire_times(budget: RequestBudget, fake: FakeTime, n: int) -> list[float]:
    times = []

    async def go() -> None:
        for _ in range(n):
            await budget.acquire()
            times.append(fake.t)
            budget.release()

    asyncio.run(go())
    return times


def test_the_budget_spreads_requests_evenly_instead_of_bursting() -> None:
    fake = FakeTime()
    budget = RequestBudget(requests_per_hour=3600, clock=fake.clock, wall=fake.wall,
                           sleep=fake.sleep)
    times = _acquire_times(budget, fake, 10)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([1.0] * 9)


def test_the_reserve_share_slows_the_pace_and_burst_is_small() -> None:
    fake = FakeTime()
    budget = RequestBudget(requests_per_hour=5000, reserve_share=0.2, burst=2,
                           clock=fake.clock, wall=fake.wall, sleep=fake.sleep)
    times = _acquire_times(budget, fake, 11)
    assert budget.interval == pytest.approx(3600 / 4000)
    assert times[1] - times[0] == 0  # a burst of two at most
    assert times[-1] - times[0] == pytest.approx(9 * 0.9)


def test_an_empty_organization_budget_waits_for_the_reset() -> None:
    fake = FakeTime()
    budget = RequestBudget(requests_per_hour=None, clock=fake.clock, wall=fake.wall,
                           sleep=fake.sleep, rng=lambda: 0.0)
    budget.observe(httpx.Headers({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0",
                                  "X-RateLimit-Reset": str(int(fake.wall()) + 30)}))
    times = _acquire_times(budget, fake, 2)
    assert times[0] - 1_000 == pytest.approx(30, abs=0.1)


def test_what_is_left_is_spread_until_the_reset() -> None:
    fake = FakeTime()
    budget = RequestBudget(requests_per_hour=36_000, clock=fake.clock, wall=fake.wall,
                           sleep=fake.sleep)
    budget.observe(httpx.Headers({"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "10",
                                  "X-RateLimit-Reset": str(int(fake.wall()) + 100)}))
    assert budget.current_interval() == pytest.approx(10.0)


def test_the_reserve_is_left_to_other_integrations() -> None:
    fake = FakeTime()
    budget = RequestBudget(requests_per_hour=None, reserve_share=0.2, clock=fake.clock,
                           wall=fake.wall, sleep=fake.sleep, rng=lambda: 0.0)
    reset = int(fake.wall()) + 60
    for start in (reset - 60, reset):  # two windows seen: the window is 60 s long
        budget.observe(httpx.Headers({"X-RateLimit-Limit": "100",
                                      "X-RateLimit-Remaining": "20",
                                      "X-RateLimit-Reset": str(start)}))
    assert budget.window == 60
    # 20 left, a whole window ahead: the others' 20% (20 requests) is theirs: wait for the reset
    times = _acquire_times(budget, fake, 1)
    assert times[0] - 1_000 == pytest.approx(60, abs=0.1)


def test_the_reserve_shrinks_as_the_window_runs_out() -> None:
    fake = FakeTime()
    budget = RequestBudget(requests_per_hour=None, reserve_share=0.2, clock=fake.clock,
                           wall=fake.wall, sleep=fake.sleep, rng=lambda: 0.0)
    budget.window = 60.0
    budget.observe(httpx.Headers({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "20",
                                  "X-RateLimit-Reset": str(int(fake.wall()) + 15)}))
    # a quarter of the window left: the others may still want 5 of the 20, so 15 are spread
    # over the 15 seconds; as the window runs out, so does their claim
    assert budget.current_interval() == pytest.approx(1.0)
    times = _acquire_times(budget, fake, 25)
    assert times[1] - times[0] == pytest.approx(1.0, abs=0.05)
    assert sum(t < 1_015 for t in times) <= 20


def test_429_pause_adds_jitter_and_blocks_every_slot() -> None:
    fake = FakeTime()
    budget = RequestBudget(requests_per_hour=None, clock=fake.clock, wall=fake.wall,
                           sleep=fake.sleep, rng=lambda: 1.0)
    assert budget.pause(2.0) == pytest.approx(2.5)
    assert _acquire_times(budget, fake, 1)[0] - 1_000 == pytest.approx(2.5)


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    assert backoff(1, base=0.5, cap=30, rng=lambda: 1.0) == 0.5
    assert backoff(4, base=0.5, cap=30, rng=lambda: 1.0) == 4.0
    assert backoff(20, base=0.5, cap=30, rng=lambda: 1.0) == 30
    assert backoff(3, base=0.5, cap=30, rng=lambda: 0.0) == 0.0


def test_an_aspnet_model_state_400_names_the_bad_rows_without_splitting() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        items = json.loads(request.content)["transactions"]
        if any(t["transactionId"] == "G2" for t in items):
            at = next(i for i, t in enumerate(items) if t["transactionId"] == "G2")
            return httpx.Response(400, json={
                "message": "The request is invalid.",
                "modelState": {f"request.Transactions[{at}].Amount": ["Amount is invalid."]}})
        return httpx.Response(200)

    sender, log = send(handler, batches(gifts(5), 5))
    assert statuses(log) == {"accepted": 4, "rejected": 1}
    assert json.loads(log.outcomes[2].details or "[]") == [
        {"field": "Amount", "code": "", "message": "Amount is invalid."}]
    assert len(requests) == 2 and sender.stats.split_requests == 1  # the rest, once
