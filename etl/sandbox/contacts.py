"""The organization's contacts and the indexes the nightly batch matches against.

A contact is stored flat (the Contact Transaction's field names) plus `id`, `contactReferences`
[{"source", "id"}], `contactMethods` [{"type", "value"}] and timestamps. Every signal the batch
matches on is indexed, so resolving one transaction never scans the contacts.
"""

from __future__ import annotations

import re
from typing import Any

FLAT_FIELDS = (
    "contactType", "name", "title", "firstName", "middleName", "lastName", "suffix",
    "birthMonth", "birthDay", "birthYear", "gender", "emailType", "email", "phoneType", "phone",
    "address1", "address2", "city", "state", "postal", "country", "tags", "originSegmentCode",
    "emailLists", "customFields",
)
ZIP9 = re.compile(r"^(\d{5})-?\d{4}$")


def norm_email(value: Any) -> str | None:
    text = str(value).strip().lower() if value is not None else ""
    return text or None


def norm_phone(value: Any) -> str | None:
    digits = "".join(ch for ch in str(value or "") if ch.isdigit())
    return digits if len(digits) >= 7 else None


def norm_postal(value: Any) -> str | None:
    text = str(value or "").replace(" ", "").upper()
    m = ZIP9.match(text)
    return (m.group(1) if m else text) or None


def name_key(first: Any, last: Any, name: Any) -> str | None:
    """First + last name when both are given, else the household/organization name."""
    if str(first or "").strip() and str(last or "").strip():
        text = f"{first} {last}"
    else:
        text = str(name or "")
    return " ".join(text.casefold().split()) or None


def can_create(first: Any, last: Any, name: Any) -> bool:
    """Virtuous needs firstName + lastName, or name, to create a contact."""
    both = bool(str(first or "").strip() and str(last or "").strip())
    return both or bool(str(name or "").strip())


def flat_from_gift_contact(block: dict[str, Any]) -> dict[str, Any]:
    """A gift's embedded contact (lower-case names, nested address) as a flat contact."""
    raw = block.get("address")
    address: dict[str, Any] = raw if isinstance(raw, dict) else {}
    flat = {
        "contactType": block.get("type"), "name": block.get("name"), "title": block.get("title"),
        "firstName": block.get("firstname"), "middleName": block.get("middlename"),
        "lastName": block.get("lastname"), "suffix": block.get("suffix"),
        "emailType": block.get("emailType"), "email": block.get("email"),
        "phoneType": block.get("phoneType"), "phone": block.get("phone"), "tags": block.get("tags"),
    }
    for key in ("address1", "address2", "city", "state", "postal", "country"):
        flat[key] = address.get(key)
    return flat


class ContactDirectory:
    """Contacts by id, with reference / email / phone / name+postal indexes."""

    def __init__(self, first_id: int = 1001) -> None:
        self.by_id: dict[int, dict[str, Any]] = {}
        self.by_ref: dict[tuple[str, str], int] = {}
        self.by_email: dict[str, int] = {}
        self.by_phone: dict[str, int] = {}
        self.by_name_postal: dict[tuple[str, str], int] = {}
        self.next_id = first_id

    def load(self, contact: dict[str, Any]) -> None:
        self.by_id[contact["id"]] = contact
        self.next_id = max(self.next_id, contact["id"] + 1)
        self._index(contact)

    def _index(self, c: dict[str, Any]) -> None:
        cid = c["id"]
        for ref in c.get("contactReferences", ()):
            self.by_ref.setdefault((str(ref["source"]), str(ref["id"])), cid)
        for method in c.get("contactMethods", ()):
            if (e := norm_email(method["value"])) and "@" in e:
                self.by_email.setdefault(e, cid)
            elif p := norm_phone(method["value"]):
                self.by_phone.setdefault(p, cid)
        nk, postal = name_key(c.get("firstName"), c.get("lastName"), c.get("name")), norm_postal(
            c.get("postal"))
        if nk and postal:
            self.by_name_postal.setdefault((nk, postal), cid)

    def by_reference(self, source: Any, ref_id: Any) -> dict[str, Any] | None:
        cid = self.by_ref.get((str(source), str(ref_id)))
        return self.by_id.get(cid) if cid is not None else None

    def match(self, flat: dict[str, Any], reference: tuple[str, str] | None,
              *, use_phone: bool = True) -> tuple[dict[str, Any] | None, str | None]:
        """The contact a transaction matches and the signal that matched, in the batch's order:
        reference, email, phone, name + postal code."""
        if reference and (c := self.by_reference(*reference)):
            return c, "reference"
        if (e := norm_email(flat.get("email"))) and e in self.by_email:
            return self.by_id[self.by_email[e]], "email"
        if use_phone and (p := norm_phone(flat.get("phone"))) and p in self.by_phone:
            return self.by_id[self.by_phone[p]], "phone"
        nk = name_key(flat.get("firstName"), flat.get("lastName"), flat.get("name"))
        postal = norm_postal(flat.get("postal"))
        if nk and postal and (nk, postal) in self.by_name_postal:
            return self.by_id[self.by_name_postal[(nk, postal)]], "name+postal"
        return None, None

    def create(self, flat: dict[str, Any], reference: tuple[str, str] | None,
               now: str, *, references: tuple[tuple[str, str], ...] = (),
               methods: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        """A new contact, whatever exists (no de-duplication here: callers match first).
        `references` and `methods` ({"type", "value"}) come from a nested POST /api/Contact."""
        contact: dict[str, Any] = {"id": self.next_id, "contactType": "Household"}
        self.next_id += 1
        contact.update({"contactReferences": [], "contactMethods": [],
                        "createDateTimeUtc": now, "modifiedDateTimeUtc": now})
        self._apply(contact, flat, reference)
        for source, ident in references:
            ref = {"source": source, "id": ident}
            if ref not in contact["contactReferences"]:
                contact["contactReferences"].append(ref)
        for method in methods:
            if all(m["value"] != method["value"] for m in contact["contactMethods"]):
                contact["contactMethods"].append({"type": method["type"],
                                                  "value": method["value"]})
        if not contact.get("name"):
            contact["name"] = " ".join(
                str(contact[k]) for k in ("firstName", "lastName") if contact.get(k))
        self.by_id[contact["id"]] = contact
        self._index(contact)
        return contact

    def merge(self, contact: dict[str, Any], flat: dict[str, Any],
              reference: tuple[str, str] | None, now: str) -> dict[str, Any]:
        """Non-empty incoming fields overwrite; the reference is added to contactReferences."""
        self._apply(contact, flat, reference)
        contact["modifiedDateTimeUtc"] = now
        self._index(contact)
        return contact

    @staticmethod
    def _apply(contact: dict[str, Any], flat: dict[str, Any],
               reference: tuple[str, str] | None) -> None:
        for key in FLAT_FIELDS:
            value = flat.get(key)
            if value is None or value == "" or value == [] or value == {}:
                continue
            if key == "customFields" and isinstance(contact.get(key), dict):
                value = {**contact[key], **value}
            contact[key] = value
        if reference:
            ref = {"source": reference[0], "id": reference[1]}
            if ref not in contact["contactReferences"]:
                contact["contactReferences"].append(ref)
        for kind in ("email", "phone"):
            value = flat.get(kind)
            if value is None or str(value).strip() == "":
                continue
            method = {"type": flat.get(kind + "Type") or ("Home Email" if kind == "email"
                                                          else "Home Phone"),
                      "value": str(value).strip()}
            if all(m["value"] != method["value"] for m in contact["contactMethods"]):
                contact["contactMethods"].append(method)
