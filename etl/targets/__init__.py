"""The CRM+ payload kinds the tool can build. Each target module declares:

- FIELDS: wire field path -> kind ("str", "int", "number", "money", "date", "bool", "tags",
  "str_list"); dotted paths are nested objects in the wire JSON (the gift's `contact.address.city`);
- KEY_FIELDS: the wire names of the source constant and the row id (referenceSource/referenceId or
  transactionSource/transactionId);
- REQUIRED: fields every payload must carry (the built-in rules); the cross-field rules live in
  `etl.prepare.rules`.

This package holds data only; spec validation and payload building read it. Public names:
`Target`, `TARGET_NAMES`, `get_target`.

May import: etl.base only (it sits under etl.spec: the spec is checked against it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A CRM+ payload kind."""

    name: str
    fields: dict[str, str]
    source_field: str
    id_field: str
    batch_endpoint: str
    single_endpoint: str
    batch_items_key: str
    batch_source_key: str

    def kind(self, path: str) -> str | None:
        """The kind of a wire field path, or None when the target has no such field."""
        if path in self.fields:
            return self.fields[path]
        if path.startswith("customFields.") and len(path) > len("customFields."):
            return "str"
        return None


def get_target(name: str) -> Target:
    """The target named in a spec (`contact_transaction` or `gift_transaction`)."""
    from etl.targets.contact import CONTACT
    from etl.targets.gift import GIFT

    return {"contact_transaction": CONTACT, "gift_transaction": GIFT}[name]


TARGET_NAMES = ("contact_transaction", "gift_transaction")
