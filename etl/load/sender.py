"""The async sender: batches -> requests, within the budget, with retries and bad-row isolation.

Per batch: `recorder.sending(batch)` (committed before the request), then the batch endpoint;
on 404 the single endpoints for the rest of the run; on 400/409/422 the bad rows are found from
the API's item details (`transactions[3].amount`) or by splitting the batch in halves, within a
bound of extra requests; then `recorder.settle(batch, outcomes)` (one transaction). 401/403 stop
every worker: rows not yet answered go back to `pending`. This module knows nothing of the
ledger: the recorder is whatever the caller hands in.

A request without a definite answer is never re-sent blindly (docs/loader.md, the retry table):
when it may have reached CRM+ (read timeout, reset after sending, a 5xx other than 503 +
Retry-After) its rows are `in_doubt`, as after a crash; only a failure that provably happened
before the request left (refused connection, DNS, connect timeout) is retried, and 429 waits
Retry-After without counting as an attempt. `SendSettings.retry_unknown` (contacts under the
`resend` policy: the Transaction merges by reference) retries the unknown ones too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from etl.base.errors import CredentialsRefused, RequestRejected, TransientError
from etl.load.budget import DEFAULT_MAX_WAIT, InDoubt, RequestBudget, Throttled, budgeted
from etl.load.client import WRITE_ENDPOINTS, CrmClient, EndpointMissing, Reply, item_details
from etl.targets import Target


@dataclass
class Item:
    """One row to send: its ledger row id, idempotency key, wire JSON and amount in cents."""

    row_id: int
    key: str
    payload: str
    cents: int | None = None
    attempts: int = 0
    unsure: bool = False  # a request carrying it failed without a definite answer


@dataclass
class Batch:
    """Rows that travel together; `envelope` holds the batch body's extra fields."""

    id: str
    items: list[Item]
    envelope: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What happened to one row."""

    row_id: int
    status: str  # accepted | rejected | failed | in_doubt | pending | needs_review
    attempts: int
    http_status: int | None = None
    code: str | None = None
    details: str | None = None  # JSON list of {field, code, message}, or a message


class Recorder(Protocol):
    def sending(self, batch: Batch) -> None: ...
    def settle(self, batch: Batch, outcomes: Sequence[Outcome]) -> None: ...


@dataclass(frozen=True, kw_only=True)
class SendSettings:
    concurrency: int = 2
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    use_batch: bool = True
    retry_unknown: bool = False  # True only where a re-sent write merges (contacts: `resend`)
    max_wait: float = DEFAULT_MAX_WAIT  # seconds of 429 / Retry-After one request may wait


@dataclass
class SendStats:
    requests: int = 0
    batch_requests: int = 0
    rows_in_batches: int = 0
    split_requests: int = 0
    retries: int = 0
    http: dict[int, int] = field(default_factory=dict)
    fallback: bool = False
    accepted_rows: int = 0
    rows_done: int = 0
    batches_done: int = 0


class Stopped(Exception):
    """The sender was stopped (interrupted, or credentials refused) before this request."""


def batch_body(target: Target, source: str, items: Sequence[Item],
               envelope: dict[str, object]) -> bytes:
    """`{"<source key>": ..., <envelope>, "<items key>": [payload, ...]}` by concatenation."""
    head = json.dumps({target.batch_source_key: source, **envelope}, separators=(",", ":"))
    rows = ",".join(i.payload for i in items)
    return f'{head[:-1]},"{target.batch_items_key}":[{rows}]}}'.encode()


def money(cents: int) -> str:
    """Cents as a decimal string with two places: -1050 -> "-10.50"."""
    return f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def batch_total(items: Sequence[Item]) -> str:
    """The sum of the items' amounts as a JSON number with two decimals."""
    return money(sum(i.cents or 0 for i in items))


class Sender:
    """Sends batches with `settings.concurrency` workers; see the module docstring."""

    def __init__(self, client: CrmClient, budget: RequestBudget, target: Target, source: str,
                 recorder: Recorder, settings: SendSettings,
                 on_progress: Callable[[Sender], None] | None = None,
                 rng: Callable[[], float] = random.random) -> None:
        self.client, self.budget, self.target, self.source = client, budget, target, source
        self.recorder, self.settings, self.on_progress, self.rng = (
            recorder, settings, on_progress, rng)
        self.stats = SendStats()
        self.use_batch = settings.use_batch
        self.stop = asyncio.Event()
        self.refused: CredentialsRefused | None = None
        self.throttled: Throttled | None = None
        self._probe = asyncio.Lock()  # one batch request until the batch endpoint is known
        self._batch_known = False

    async def run(self, batches: Sequence[Batch]) -> None:
        """Send every batch (until stopped); raises CredentialsRefused after settling."""
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        for b in batches:
            queue.put_nowait(b)
        if self.on_progress is not None:
            self.on_progress(self)
        workers = [asyncio.create_task(self._worker(queue))
                   for _ in range(max(1, min(self.settings.concurrency, len(batches))))]
        await asyncio.gather(*workers)
        if self.refused is not None:
            raise self.refused
        if self.throttled is not None:
            raise self.throttled

    async def _worker(self, queue: asyncio.Queue[Batch]) -> None:
        while not self.stop.is_set() and not queue.empty():
            await self._process(queue.get_nowait())

    async def _process(self, batch: Batch) -> None:
        self.recorder.sending(batch)
        done: dict[int, Outcome] = {}
        with contextlib.suppress(Stopped):
            await self._send_group(batch, batch.items, done, [self._split_bound(batch.items)])
        outcomes = [done.get(i.row_id) or _unsent(i) for i in batch.items]
        self.recorder.settle(batch, outcomes)
        self.stats.accepted_rows += sum(o.status == "accepted" for o in outcomes)
        self.stats.rows_done += len(outcomes)
        self.stats.batches_done += 1
        if self.on_progress is not None:
            self.on_progress(self)

    @staticmethod
    def _split_bound(items: Sequence[Item]) -> int:
        return 4 * math.ceil(math.log2(len(items) + 1)) + 2

    async def _send_group(self, batch: Batch, items: list[Item], done: dict[int, Outcome],
                          budget: list[int]) -> None:
        if not self.use_batch or len(items) == 0:
            for item in items:
                await self._send_single(item, done)
            return
        envelope = dict(batch.envelope)
        if "batchTotal" in envelope:
            envelope["batchTotal"] = float(batch_total(items))
        body = batch_body(self.target, self.source, items, envelope)
        try:
            status = await self._post_batch(body, items)
        except EndpointMissing:
            self.use_batch, self.stats.fallback = False, True
            for item in items:
                await self._send_single(item, done)
            return
        except RequestRejected as exc:
            await self._isolate(batch, items, exc, done, budget)
            return
        except TransientError as exc:
            for item in items:
                done[item.row_id] = _unanswered(item, exc)
            return
        self.stats.batch_requests += 1
        self.stats.rows_in_batches += len(items)
        for item in items:
            done[item.row_id] = Outcome(item.row_id, "accepted", item.attempts, status)

    async def _post_batch(self, body: bytes, items: list[Item]) -> int:
        if self._batch_known:
            return await self._post(self.target.batch_endpoint, body, items)
        async with self._probe:  # the others wait for the first answer: 404 is found once
            if not self.use_batch:
                raise EndpointMissing("batch endpoint missing", status=404)
            try:
                status = await self._post(self.target.batch_endpoint, body, items)
            except RequestRejected:
                self._batch_known = True
                raise
            self._batch_known = True
            return status

    async def _isolate(self, batch: Batch, items: list[Item], exc: RequestRejected,
                       done: dict[int, Outcome], budget: list[int]) -> None:
        """A refused batch: reject the rows the details name, else split; bounded."""
        if len(items) == 1:
            named = item_details(exc.details).get(0, exc.details)
            done[items[0].row_id] = _rejected(items[0], exc, named)
            return
        by_index = {i: d for i, d in item_details(exc.details).items() if i < len(items)}
        if by_index:
            for i, details in by_index.items():
                done[items[i].row_id] = _rejected(items[i], exc, details)
            rest = [it for i, it in enumerate(items) if i not in by_index]
            groups = [rest] if rest else []
        else:
            half = len(items) // 2
            groups = [items[:half], items[half:]]
        for group in groups:
            if budget[0] <= 0:
                for item in group:
                    done[item.row_id] = Outcome(
                        item.row_id, "needs_review", item.attempts, exc.status, exc.code or
                        "BATCH_REFUSED", _details_json(exc.details, str(exc)))
                continue
            budget[0] -= 1
            self.stats.split_requests += 1
            await self._send_group(batch, group, done, budget)

    async def _send_single(self, item: Item, done: dict[int, Outcome]) -> None:
        endpoint = self.target.single_endpoint
        try:
            status = await self._post(endpoint, item.payload.encode(), [item])
        except RequestRejected as exc:
            done[item.row_id] = _rejected(item, exc, exc.details)
        except EndpointMissing as exc:
            done[item.row_id] = Outcome(item.row_id, "failed", item.attempts, 404,
                                        "ENDPOINT_MISSING", str(exc))
        except TransientError as exc:
            done[item.row_id] = _unanswered(item, exc)
        else:
            done[item.row_id] = Outcome(item.row_id, "accepted", item.attempts, status)

    async def _post(self, endpoint: str, body: bytes, items: Sequence[Item]) -> int:
        return (await self.request(endpoint, body, items)).status

    async def request(self, endpoint: str, body: bytes | None = None,
                      items: Sequence[Item] = (), *,
                      params: dict[str, str | int] | None = None) -> Reply:
        """One call within the budget through the shared retry loop (budget.budgeted): the
        2xx Reply or the final error. A write whose outcome is unknown raises InDoubt, not
        retried, unless `retry_unknown` (contacts merge by reference); CredentialsRefused
        also stops every worker; Throttled stops every worker (the organization's budget is
        spent elsewhere)."""
        calls = 0
        write = endpoint in WRITE_ENDPOINTS

        async def once() -> Reply:
            nonlocal calls
            if self.stop.is_set():
                raise Stopped
            calls += 1
            if calls > 1:
                self.stats.retries += 1
            for item in items:
                item.attempts += 1
            self.stats.requests += 1
            try:
                reply = await self.client.send(endpoint, body, params=params)
            except TransientError as exc:
                self._count(exc.status or 0)
                for item in items:
                    item.unsure = item.unsure or exc.may_have_arrived
                raise
            except (CredentialsRefused, RequestRejected, EndpointMissing) as exc:
                self._count(exc.status or 0)
                raise
            self._count(reply.status)
            return reply

        s = self.settings
        try:
            return await budgeted(once, self.budget, max_attempts=s.max_attempts,
                                  base=s.backoff_base, cap=s.backoff_cap, rng=self.rng,
                                  retry_unknown=s.retry_unknown or not write,
                                  max_wait=s.max_wait)
        except CredentialsRefused as exc:
            self.refused = self.refused or exc
            self.stop.set()
            if not items:
                raise
            raise Stopped from None
        except Throttled as exc:
            self.throttled = self.throttled or exc
            self.stop.set()
            if not items:
                raise
            raise Stopped from None

    def _count(self, status: int) -> None:
        self.stats.http[status] = self.stats.http.get(status, 0) + 1


def _unsent(item: Item) -> Outcome:
    """A row the run stopped before answering: `pending` if surely not stored, else in doubt."""
    if item.unsure:
        return Outcome(item.row_id, "in_doubt", item.attempts, None, "STOPPED_AFTER_ERROR",
                       _details_json([], "the run stopped while this row was being retried "
                                     "after a request that may have reached CRM+"))
    return Outcome(item.row_id, "pending", item.attempts, None, "NOT_SENT")


def _details_json(details: list[dict[str, str]], message: str) -> str:
    return json.dumps(details if details else [{"field": "", "code": "", "message": message}])


def _rejected(item: Item, exc: RequestRejected, details: list[dict[str, str]]) -> Outcome:
    return Outcome(item.row_id, "rejected", item.attempts, exc.status, exc.code or
                   f"HTTP_{exc.status}", _details_json(details, str(exc)))


def _unanswered(item: Item, exc: TransientError) -> Outcome:
    """No definite answer: in doubt when the request (or an earlier try) may have reached CRM+,
    else `failed` (provably never stored: the next run sends it)."""
    code = f"HTTP_{exc.status}" if exc.status else "NETWORK"
    if isinstance(exc, InDoubt) or item.unsure:
        return Outcome(item.row_id, "in_doubt", item.attempts, exc.status, f"IN_DOUBT_{code}",
                       _details_json([], f"no definite answer, the request may have been "
                                     f"stored: {exc}"))
    return Outcome(item.row_id, "failed", item.attempts, exc.status, code,
                   _details_json([], str(exc)))
