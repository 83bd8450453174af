"""The nightly batch: resolve every held transaction into contacts and gifts.

Contact transactions first (oldest first), then gift transactions, so a gift can name a contact
whose transaction arrived in the same night.

Contacts match on reference (referenceSource + referenceId against each contact's
contactReferences), then email, then phone, then name + postal code. A match merges (non-empty
incoming fields overwrite, the reference is added); no match creates a contact when there is a
name (firstName + lastName, or name), else the transaction goes to "Match Needed".

Gifts: without `dedupe_transactions` (the default: nothing says CRM+ de-duplicates) every copy
of a transactionSource + transactionId becomes one more gift; with it, a key already imported is
skipped as a duplicate. A gift the config parks (`park_share`, `park_ids`) goes to "Update
Needed" even when its contact matches. The contact is `contact.id`, else `contact.referenceId`
looked up with the gift's transactionSource as the referenceSource, else the gift's contact
block matched by email, then name + postal code; no match creates a contact from the block when
it has a name, else the gift goes to "Match Needed". Gifts never modify an existing contact.
Parked items stay unreadable until staff import them (`import_parked`) or delete them.
"""

from __future__ import annotations

import copy
import hashlib
from decimal import Decimal
from typing import Any

from etl.sandbox.config import Org, SandboxConfig
from etl.sandbox.contacts import can_create, flat_from_gift_contact
from etl.sandbox.rules import parse_amount, present
from etl.sandbox.state import SandboxState, contact_key, gift_key, utcnow
from etl.sandbox.views import APP, custom_fields

Event = tuple[str, dict[str, Any]]  # (subscription flag, e.g. "giftCreate"; the record)
MATCH_NEEDED, UPDATE_NEEDED = "Match Needed", "Update Needed"


def parks(config: SandboxConfig, source: str, ident: str) -> bool:
    """Whether the batch parks this gift in Update Needed (by name, or by a seeded share)."""
    if ident in config.park_ids:
        return True
    if config.park_share <= 0:
        return False
    digest = hashlib.sha256(f"{config.park_seed}\x1f{source}\x1f{ident}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < config.park_share


class Batch:
    """One run of the nightly batch over a state. `events` is filled only for `wanted` events."""

    def __init__(self, state: SandboxState, wanted: set[str], config: SandboxConfig,
                 org: Org) -> None:
        self.state = state
        self.wanted = wanted
        self.config = config
        self.org = org
        self.now = utcnow()
        self.events: list[Event] = []
        self.summary = {"processed": 0, "contactsCreated": 0, "contactsUpdated": 0,
                        "giftsCreated": 0, "duplicatesSkipped": 0, "needsUpdate": 0,
                        "parked": 0}

    def _event(self, name: str, record: dict[str, Any]) -> None:
        if name in self.wanted:
            self.events.append((name, copy.deepcopy(record)))

    @staticmethod
    def _key(entry: dict[str, Any]) -> dict[str, Any]:
        payload = entry["payload"]
        if entry["kind"] == "gift":
            source, ident = gift_key(payload)
            return {"transactionSource": source, "transactionId": ident}
        reference = contact_key(payload)
        source, ident = reference if reference else (None, None)
        return {"referenceSource": source, "referenceId": ident}

    def _outcome(self, entry: dict[str, Any], outcome: str, crm_id: Any = None,
                 reason: str | None = None) -> None:
        """Record the per-item outcome (GET /sandbox/outcomes; docs/sandbox.md)."""
        self.state.add_to("outcomes", {
            "kind": entry["kind"], **self._key(entry), "outcome": outcome,
            "crmId": None if crm_id is None else str(crm_id), "reason": reason,
            "at": self.now})

    def _needs_update(self, entry: dict[str, Any], reason: str,
                      queue: str = MATCH_NEEDED) -> None:
        payload = entry["payload"]
        key = self._key(entry)
        self._outcome(entry, "needs_update", reason=reason)
        self.state.add_to("needs_update", {
            "queue": queue, "kind": entry["kind"], **key, "reason": reason,
            "receivedAt": entry["receivedAt"], "import": entry.get("import") or {},
            "payload": payload})
        self.summary["needsUpdate"] += 1
        self.summary["parked"] += queue == UPDATE_NEEDED

    def _created(self, contact: dict[str, Any]) -> None:
        self.state.save_contact(contact)
        self.summary["contactsCreated"] += 1
        self._event("contactCreate", contact)

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
            self._outcome(entry, "merged", found["id"])
            self.summary["contactsUpdated"] += 1
            self._event("contactUpdate", found)
        elif can_create(payload.get("firstName"), payload.get("lastName"), payload.get("name")):
            created = directory.create(payload, reference, self.now)
            self._created(created)
            self._outcome(entry, "created", created["id"])
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

    def _duplicate(self, entry: dict[str, Any]) -> bool:
        """With `dedupe_transactions`: a key already imported is skipped (and recorded)."""
        source, ident = gift_key(entry["payload"])
        existing = self.state.gift_by_key(source, ident) if self.config.dedupe_transactions \
            else None
        if existing is None:
            return False
        self.state.add_to("duplicates", {
            "kind": "gift", "transactionSource": source, "transactionId": ident,
            "existingGiftId": existing["id"], "receivedAt": entry["receivedAt"]})
        self.summary["duplicatesSkipped"] += 1
        self._outcome(entry, "duplicate", existing["id"])
        return True

    def gift(self, entry: dict[str, Any]) -> None:
        if self._duplicate(entry):
            return
        if parks(self.config, *gift_key(entry["payload"])):
            self._needs_update(entry, "parked for review by the organization's staff",
                               UPDATE_NEEDED)
            return
        contact, reason = self._gift_contact(entry)
        if contact is None:
            self._needs_update(entry, reason)
            return
        gift = self.create_gift(entry, contact["id"])
        self._outcome(entry, "created", gift["id"])

    def create_gift(self, entry: dict[str, Any], contact_id: int) -> dict[str, Any]:
        gift = make_gift(self.state.next_gift_id, entry["payload"], contact_id, self.now,
                         self.org)
        self.state.save_gift(gift)
        self.summary["giftsCreated"] += 1
        self._event("giftCreate", gift)
        return gift

    def staff_import(self, entry: dict[str, Any], contact_id: int | None) -> str:
        """Staff import one parked item: "imported", "duplicate", or why it cannot be."""
        if entry["kind"] == "contact":
            payload = entry["payload"]
            created = self.state.directory.create(payload, contact_key(payload), self.now)
            self._created(created)
            self._outcome(entry, "imported", created["id"])
            return "imported"
        if self._duplicate(entry):
            return "duplicate"
        if contact_id is not None:
            if contact_id not in self.state.directory.by_id:
                return f"contactId {contact_id} is not a contact"
        else:
            found, reason = self._gift_contact(entry)
            if found is None:
                return reason + "; give contactId"
            contact_id = found["id"]
        gift = self.create_gift(entry, contact_id)
        self._outcome(entry, "imported", gift["id"])
        return "imported"


def _money(value: Any) -> float:
    amount = parse_amount(value)
    return float(amount.quantize(Decimal("0.01"))) if amount is not None else 0.0


def _flag(value: Any, default: bool) -> bool:
    return default if value is None else value is True or str(value).lower() == "true"


def _designations(payload: dict[str, Any], gift_id: int, org: Org) -> list[dict[str, Any]]:
    """`designations` as sent -> `giftDesignations` as read, with the project looked up."""
    out = []
    for i, d in enumerate(payload.get("designations") or ()):
        project = next((p for p in org.projects if any(
            present(d.get(k)) and str(d.get(k)) == str(p[k]) for k in ("id", "name", "code"))),
            {})
        out.append({"id": gift_id * 10 + i + 1, "projectId": project.get("id", d.get("id")),
                    "project": project.get("name", d.get("name")),
                    "projectCode": project.get("code", d.get("code")),
                    "amountDesignated": _money(d.get("amountDesignated"))})
    return out


def make_gift(gift_id: int, payload: dict[str, Any], contact_id: int, now: str,
              org: Org) -> dict[str, Any]:
    """The imported gift as the full record (VTS `Gift`): documented fields only."""
    return {
        "id": gift_id, "transactionSource": str(payload["transactionSource"]),
        "transactionId": str(payload["transactionId"]), "contactId": contact_id,
        "giftType": payload.get("giftType"), "giftDate": payload["giftDate"],
        "amount": _money(payload["amount"]), "currencyCode": payload.get("currencyCode") or "USD",
        "exchangeRate": float(parse_amount(payload["exchangeRate"]) or 1)
        if present(payload.get("exchangeRate")) else None,
        "batch": payload.get("batch"), "createDateTimeUtc": now, "modifiedDateTimeUtc": now,
        "segment": payload.get("segment"), "mediaOutlet": payload.get("mediaOutlet"),
        "notes": payload.get("notes"), "tribute": payload.get("tribute"),
        "receiptDate": payload.get("receiptDate"), "contactIndividualId": contact_id * 10 + 1,
        "giftDesignations": _designations(payload, gift_id, org), "giftPremiums": [],
        "giftUrl": f"{APP}/Generosity/Gift/{gift_id}",
        "isPrivate": _flag(payload.get("isPrivate"), False),
        "isTaxDeductible": _flag(payload.get("isTaxDeductible"), True),
        "customFields": custom_fields(payload.get("customFields")),
    }


def run_batch(state: SandboxState, wanted: set[str], config: SandboxConfig,
              org: Org) -> tuple[dict[str, int], list[Event]]:
    batch = Batch(state, wanted, config, org)
    summary = batch.run()
    return summary, batch.events


def import_parked(state: SandboxState, wanted: set[str], config: SandboxConfig, org: Org,
                  seqs: list[int], contact_id: int | None) -> tuple[dict[str, Any], list[Event]]:
    """Staff import the parked items `seqs`: those imported leave needs_update."""
    batch = Batch(state, wanted, config, org)
    outcomes: dict[str, str] = {}
    with state.transaction():
        by_seq = {d["seq"]: d for d in state.needs_update()}
        for seq in seqs:
            item = by_seq[seq]
            entry = {"kind": item["kind"], "payload": item["payload"],
                     "receivedAt": item["receivedAt"], "import": item.get("import") or {}}
            outcomes[str(seq)] = batch.staff_import(entry, contact_id)
        state.remove_from("needs_update", [s for s in seqs
                                           if outcomes[str(s)] in ("imported", "duplicate")])
    return {**batch.summary, "outcomes": outcomes}, batch.events
