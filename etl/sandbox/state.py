"""What the sandbox knows: requests received, transactions held, records imported.

Thread-safe (the server's thread writes, a test's thread reads). Everything is in memory and,
with a `path`, journaled to SQLite (see store.py). The read helpers return copies of the
top-level records; treat nested values as read-only.

    state.requests(path="/api/v2/Gift/Transactions")   # RequestRecord list, oldest first
    state.held_gifts(); state.held_contacts()           # payloads waiting for the nightly batch
    state.gifts_for("LegacyCRM", "G-1")                 # imported gifts with that key (0..n)
    state.times_received("LegacyCRM", "G-1")            # stored writes that carried it
    state.parked()                                      # Match Needed / Update Needed items
    state.contacts(); state.needs_update(); state.duplicates(); state.deliveries()
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl.sandbox.contacts import ContactDirectory
from etl.sandbox.store import Store

Key = tuple[str, str]
FIRST_GIFT_ID = 50001


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RequestRecord:
    """One request as received. `key` is a label ("main", "readonly") or None, never the key."""

    seq: int
    time: str
    method: str
    path: str
    key: str | None
    status: int  # 0: connection reset without an answer; 499: client gone before the answer
    body_sha256: str
    items: int
    fault: str | None = None


def gift_key(payload: dict[str, Any]) -> Key:
    return str(payload.get("transactionSource")), str(payload.get("transactionId"))


def contact_key(payload: dict[str, Any]) -> Key:
    return str(payload.get("referenceSource")), str(payload.get("referenceId"))


class SandboxState:
    def __init__(self, path: str | Path | None = None) -> None:
        self.lock = threading.RLock()
        self._depth = 0
        self._store = Store(path) if path else None
        self._reset_memory()
        if self._store:
            self._load(self._store)

    def _reset_memory(self) -> None:
        self.directory = ContactDirectory()
        self._requests: list[RequestRecord] = []
        self._held: dict[int, dict[str, Any]] = {}
        self._held_gifts: dict[Key, list[int]] = {}
        self._received: Counter[tuple[str, str, str]] = Counter()
        self._gifts: dict[int, dict[str, Any]] = {}
        self._gift_index: dict[Key, list[int]] = {}
        self.next_gift_id = FIRST_GIFT_ID
        self._lists: dict[str, list[dict[str, Any]]] = {
            "needs_update": [], "duplicates": [], "rejected": [], "deliveries": [],
            "outcomes": []}
        self._webhooks: dict[int, dict[str, Any]] = {}
        self._seq = 0

    def _load(self, store: Store) -> None:
        for _, doc in sorted(store.load("requests"), key=lambda r: r[1]["seq"]):
            self._requests.append(RequestRecord(**doc))
        for _, doc in sorted(store.load("held"), key=lambda r: r[1]["seq"]):
            self._index_held(doc)
        for k, n in store.load("received"):
            kind, source, ident = k.split("\x1f")
            self._received[(kind, source, ident)] = n
        for _, doc in sorted(store.load("contacts"), key=lambda r: r[1]["id"]):
            self.directory.load(doc)
        for _, doc in sorted(store.load("gifts"), key=lambda r: r[1]["id"]):
            self._put_gift(doc)
        for name, items in self._lists.items():
            items.extend(d for _, d in sorted(store.load(name), key=lambda r: r[1]["seq"]))
        for _, doc in store.load("webhooks"):
            self._webhooks[doc["id"]] = doc
        seqs = [r.seq for r in self._requests] + list(self._held)
        seqs += [d["seq"] for items in self._lists.values() for d in items]
        self._seq = max(seqs + list(self._webhooks), default=0)

    # -- writing (the server's side) -------------------------------------------------------
    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the lock; commit the journal once, when the outermost transaction ends."""
        with self.lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._store and not self._depth:
                    self._store.commit()

    def log_request(self, **fields: Any) -> RequestRecord:
        with self.transaction():
            record = RequestRecord(seq=self.next_seq(), time=utcnow(), **fields)
            self._requests.append(record)
            if self._store:
                self._store.put("requests", record.seq, asdict(record))
            return record

    def _index_held(self, entry: dict[str, Any]) -> None:
        self._held[entry["seq"]] = entry
        if entry["kind"] == "gift":
            self._held_gifts.setdefault(gift_key(entry["payload"]), []).append(entry["seq"])

    def hold(self, kind: str, payloads: list[dict[str, Any]], meta: dict[str, Any]) -> None:
        """Accept transactions into the holding state ("Imports" in the CRM)."""
        with self.transaction():
            now, rows, counted = utcnow(), [], []
            for payload in payloads:
                entry = {"seq": self.next_seq(), "kind": kind, "payload": payload,
                         "receivedAt": now, "import": meta}
                self._index_held(entry)
                rows.append((entry["seq"], entry))
                key = gift_key(payload) if kind == "gift" else contact_key(payload)
                rk = (kind, *key)
                self._received[rk] += 1
                counted.append(("\x1f".join(rk), self._received[rk]))
            if self._store:
                self._store.put_many("held", rows)
                self._store.put_many("received", counted)

    def take_held(self) -> list[dict[str, Any]]:
        """Remove and return every held transaction, oldest first (for the nightly batch)."""
        with self.transaction():
            entries = [self._held[s] for s in sorted(self._held)]
            self._held.clear()
            self._held_gifts.clear()
            if self._store:
                self._store.delete_many("held", [e["seq"] for e in entries])
            return entries

    def add_to(self, name: str, doc: dict[str, Any]) -> None:
        """Append to needs_update / duplicates / rejected / deliveries / outcomes."""
        with self.transaction():
            doc = {"seq": self.next_seq(), **doc}
            self._lists[name].append(doc)
            if self._store:
                self._store.put(name, doc["seq"], doc)

    def _put_gift(self, gift: dict[str, Any]) -> None:
        self._gifts[gift["id"]] = gift
        ids = self._gift_index.setdefault(gift_key(gift), [])
        if gift["id"] not in ids:
            ids.append(gift["id"])
        self.next_gift_id = max(self.next_gift_id, gift["id"] + 1)

    def save_gift(self, gift: dict[str, Any]) -> None:
        with self.transaction():
            self._put_gift(gift)
            if self._store:
                self._store.put("gifts", gift["id"], gift)

    def create_contact(self, flat: dict[str, Any], references: tuple[Key, ...],
                       methods: tuple[dict[str, Any], ...]) -> dict[str, Any]:
        """`POST /api/Contact`: a new contact now, journaled before the answer; no matching."""
        with self.transaction():
            contact = self.directory.create(flat, None, utcnow(), references=references,
                                            methods=methods)
            self.save_contact(contact)
            return dict(contact)

    def save_contact(self, contact: dict[str, Any]) -> None:
        """Journal a contact the directory created or merged."""
        if self._store:
            with self.transaction():
                self._store.put("contacts", contact["id"], contact)

    def remove_from(self, name: str, seqs: list[int]) -> None:
        """Take items out of needs_update (a parked gift staff imported or deleted)."""
        with self.transaction():
            gone = set(seqs)
            self._lists[name][:] = [d for d in self._lists[name] if d["seq"] not in gone]
            if self._store:
                self._store.delete_many(name, seqs)

    def save_webhook(self, sub: dict[str, Any]) -> dict[str, Any]:
        """Store a subscription; a new one (without `id`) gets one."""
        with self.transaction():
            sub = {"id": self.next_seq(), **sub} if "id" not in sub else dict(sub)
            self._webhooks[sub["id"]] = sub
            if self._store:
                self._store.put("webhooks", sub["id"], sub)
            return sub

    def delete_webhook(self, sub_id: int) -> bool:
        with self.transaction():
            found = self._webhooks.pop(sub_id, None) is not None
            if found and self._store:
                self._store.delete_many("webhooks", [sub_id])
            return found

    def clear(self) -> None:
        """Forget everything (requests, held, imported, webhooks)."""
        with self.transaction():
            self._reset_memory()
            if self._store:
                self._store.clear()

    def close(self) -> None:
        with self.lock:
            if self._store:
                self._store.close()
                self._store = None

    # -- reading (tests, benchmarks, read endpoints) ---------------------------------------
    def requests(self, path: str | None = None, method: str | None = None) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self._requests
                    if (path is None or r.path == path) and (method is None or r.method == method)]

    def held(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self._held.values() if kind is None or e["kind"] == kind]

    def held_gifts(self) -> list[dict[str, Any]]:
        return [dict(e["payload"]) for e in self.held("gift")]

    def held_contacts(self) -> list[dict[str, Any]]:
        return [dict(e["payload"]) for e in self.held("contact")]

    def is_held_gift(self, transaction_source: str, transaction_id: str) -> bool:
        with self.lock:
            return bool(self._held_gifts.get((str(transaction_source), str(transaction_id))))

    def times_received(self, transaction_source: str, transaction_id: str) -> int:
        """How many accepted writes carried this gift (transactionSource + transactionId)."""
        with self.lock:
            return self._received[("gift", str(transaction_source), str(transaction_id))]

    def contact_times_received(self, reference_source: str, reference_id: str) -> int:
        with self.lock:
            return self._received[("contact", str(reference_source), str(reference_id))]

    def gifts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(g) for g in self._gifts.values()]

    def gift_values(self) -> Any:
        """The live view of imported gifts in id order; hold `lock` while iterating."""
        return self._gifts.values()

    def gift(self, gift_id: int) -> dict[str, Any] | None:
        with self.lock:
            g = self._gifts.get(gift_id)
            return dict(g) if g else None

    def gift_by_key(self, transaction_source: str, transaction_id: str) -> dict[str, Any] | None:
        """The first imported gift with this key (the lowest id), or None."""
        found = self.gifts_for(transaction_source, transaction_id)
        return found[0] if found else None

    def gifts_for(self, transaction_source: str, transaction_id: str) -> list[dict[str, Any]]:
        """Every imported gift with this key, in id order. Without `dedupe_transactions` each
        copy the batch imported is one more gift: assert `len(...) == 1` for "exactly once"."""
        with self.lock:
            ids = self._gift_index.get((str(transaction_source), str(transaction_id)), [])
            return [dict(self._gifts[i]) for i in ids]

    def contacts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(c) for c in self.directory.by_id.values()]

    def contact(self, contact_id: int) -> dict[str, Any] | None:
        with self.lock:
            c = self.directory.by_id.get(contact_id)
            return dict(c) if c else None

    def contact_by_reference(self, source: str, reference_id: str) -> dict[str, Any] | None:
        with self.lock:
            c = self.directory.by_reference(source, reference_id)
            return dict(c) if c else None

    def _list(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(d) for d in self._lists[name]]

    def needs_update(self) -> list[dict[str, Any]]:
        """Transactions the batch could not import ("Match Needed") or parked for review
        ("Update Needed"); each has `queue`, `kind`, its key, `reason` and `payload`."""
        return self._list("needs_update")

    def parked(self, queue: str | None = None) -> list[dict[str, Any]]:
        return [d for d in self.needs_update() if queue is None or d.get("queue") == queue]

    def duplicates(self) -> list[dict[str, Any]]:
        return self._list("duplicates")

    def outcomes(self, after: int = 0) -> list[dict[str, Any]]:
        """What the batch (or staff) did with each imported item, after sequence `after`:
        `kind`, its key, `outcome` (created, merged, needs_update, duplicate, imported) and
        `crmId`. Sandbox-only knowledge: CRM+ shows it to staff, not through its API."""
        return [d for d in self._list("outcomes") if d["seq"] > after]

    def rejected(self) -> list[dict[str, Any]]:
        """Items a batch in `accept_valid` mode dropped silently (the client was not told)."""
        return self._list("rejected")

    def deliveries(self) -> list[dict[str, Any]]:
        return self._list("deliveries")

    def webhooks(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(w) for w in self._webhooks.values()]

    def webhook(self, sub_id: int) -> dict[str, Any] | None:
        with self.lock:
            sub = self._webhooks.get(sub_id)
            return dict(sub) if sub else None

    def counts(self) -> dict[str, int]:
        with self.lock:
            held_gifts = sum(1 for e in self._held.values() if e["kind"] == "gift")
            return {"requests": len(self._requests), "held_gifts": held_gifts,
                    "held_contacts": len(self._held) - held_gifts,
                    "contacts": len(self.directory.by_id), "gifts": len(self._gifts),
                    **{name: len(items) for name, items in self._lists.items()}}
