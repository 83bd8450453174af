"""The nightly batch: resolve every held transaction into contacts and gifts.

Contact transactions first (oldest first), then gift transactions, so a gift can name a contact
whose transaction arrived in the same night.

Contacts match on reference (referenceSource + referenceId against each contact's
contactReferences), then email, then phone, then name + postal code. A match merges (non-empty
incoming fields overwrite, the reference is added); no match creates a contact when there is a
name (firstName + lastName, or name), else the transaction goes to "needs update".

Gifts: a transactionSource + transactionId already imported is skipped as a duplicate. The
contact is `contact.id`, else `contact.referenceId` looked up with the gift's transactionSource as
the referenceSource, else the gift's contact block matched by email, then name + postal code;
no match creates a contact from the block when it has a name, else the gift needs update.
Gifts never modify an existing contact.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from etl.sandbox.contacts import can_create, flat_from_gift_contact
from etl.sandbox.rules import parse_amount, present
from etl.sandbox.state import SandboxState, contact_key, gift_key, utcnow

Event = tuple[str, dict[str, Any]]


class Batch:
    """One run of the nightly batch over a state. `events` is filled only for `wanted` events."""

    def __init__(self, state: SandboxState, wanted: set[str]) -> None:
        self.state = state
        self.wanted = wanted
        self.now = utcnow()
        self.events: list[Event] = []
        self.summary = {"processed": 0, "contactsCreated": 0, "contactsUpdated": 0,
                        "giftsCreated": 0, "duplicatesSkipped": 0, "needsUpdate": 0}

    def _event(self, name: str, body_key: str, record: dict[str, Any]) -> None:
        if name in self.wanted:
            event = name[0].upper() + name[1:]
            self.events.append((name, {"event": event, body_key: copy.deepcopy(record)}))

    def _needs_update(self, entry: dict[str, Any], reason: str) -> None:
        payload = entry["payload"]
        if entry["kind"] == "gift":
            source, ident = gift_key(payload)
            key = {"transactionSource": source, "transactionId": ident}
        else:
            source, ident = contact_key(payload)
            key = {"referenceSource": source, "referenceId": ident}
        self.state.add_to("needs_update", {"kind": entry["kind"], **key, "reason": reason,
                                           "receivedAt": entry["receivedAt"], "payload": payload})
        self.summary["needsUpdate"] += 1

    def _created(self, contact: dict[str, Any]) -> None:
        self.state.save_contact(contact)
        self.summary["contactsCreated"] += 1
        self._event("contactCreate", "contact", contact)

    def run(self) -> dict[str, int]:
        with self.state.transaction():
            entries = self.state.take_held()
            self.summary["processed"] = len(entries)
            for entry in entries:
                if entry["kind"] == "contact":
                    self.contact(entry)
            for entry in entries:
                if entry["kind"] == "gift":
                    self.gift(entry)
        return self.summary

    def contact(self, entry: dict[str, Any]) -> None:
        payload = entry["payload"]
        directory = self.state.directory
        reference = contact_key(payload)
        found, _signal = directory.match(payload, reference)
        if found is not None:
            directory.merge(found, payload, reference, self.now)
            self.state.save_contact(found)
            self.summary["contactsUpdated"] += 1
            self._event("contactUpdate", "contact", found)
        elif can_create(payload.get("firstName"), payload.get("lastName"), payload.get("name")):
            self._created(directory.create(payload, reference, self.now))
        else:
            self._needs_update(entry, "no matching contact, and no firstName + lastName or name "
                                      "to create one")

    def _gift_contact(self, entry: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        payload = entry["payload"]
        block = payload.get("contact") if isinstance(payload.get("contact"), dict) else {}
        directory = self.state.directory
        if present(block.get("id")):
            found = directory.by_id.get(int(str(block["id"]).strip()))
            return found, "" if found else f"contact.id {block['id']} is not a contact"
        source = str(payload["transactionSource"])
        ref_id = block.get("referenceId")
        if present(ref_id) and (found := directory.by_reference(source, ref_id)):
            return found, ""
        flat = flat_from_gift_contact(block)
        found, _signal = directory.match(flat, None, use_phone=False)
        if found is not None:
            return found, ""
        if can_create(flat.get("firstName"), flat.get("lastName"), flat.get("name")):
            reference = (source, str(ref_id)) if present(ref_id) else None
            created = directory.create(flat, reference, self.now)
            self._created(created)
            return created, ""
        return None, "no matching contact, and the gift's contact block cannot create one"

    def gift(self, entry: dict[str, Any]) -> None:
        payload = entry["payload"]
        source, ident = gift_key(payload)
        existing = self.state.gift_by_key(source, ident)
        if existing is not None:
            self.state.add_to("duplicates", {
                "kind": "gift", "transactionSource": source, "transactionId": ident,
                "existingGiftId": existing["id"], "receivedAt": entry["receivedAt"]})
            self.summary["duplicatesSkipped"] += 1
            return
        contact, reason = self._gift_contact(entry)
        if contact is None:
            self._needs_update(entry, reason)
            return
        gift = make_gift(self.state.next_gift_id, payload, entry.get("import") or {}, contact["id"],
                         self.now)
        self.state.save_gift(gift)
        self.summary["giftsCreated"] += 1
        self._event("giftCreate", "gift", gift)


def _money(value: Any) -> float:
    amount = parse_amount(value)
    return float(amount.quantize(Decimal("0.01"))) if amount is not None else 0.0


def make_gift(gift_id: int, payload: dict[str, Any], meta: dict[str, Any], contact_id: int,
              now: str) -> dict[str, Any]:
    """The imported gift record: the payload's fields, with ids and native amounts."""
    gift: dict[str, Any] = {"id": gift_id, "transactionSource": str(payload["transactionSource"]),
                            "transactionId": str(payload["transactionId"]), "contactId": contact_id,
                            "amount": _money(payload["amount"]), "giftDate": payload["giftDate"]}
    for key, value in payload.items():
        if key not in gift and key not in ("contact", "passthroughContact"):
            gift[key] = value
    if isinstance(gift.get("designations"), list):
        gift["designations"] = [
            {**d, "amountDesignated": _money(d.get("amountDesignated"))}
            for d in gift["designations"]]
    if meta.get("importName"):
        gift.setdefault("importName", meta["importName"])
    gift["createDateTimeUtc"] = gift["modifiedDateTimeUtc"] = now
    return gift


def run_batch(state: SandboxState, wanted: set[str]) -> tuple[dict[str, int], list[Event]]:
    batch = Batch(state, wanted)
    summary = batch.run()
    return summary, batch.events
