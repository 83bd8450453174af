"""Contact Transaction (`POST /api/Contact/Transaction`, batch `POST /api/Contact/Batch`): flat."""

from __future__ import annotations

from etl.targets import Target

FIELDS: dict[str, str] = {
    "referenceSource": "str",
    "referenceId": "str",
    "contactType": "str",
    "name": "str",
    "title": "str",
    "firstName": "str",
    "middleName": "str",
    "lastName": "str",
    "suffix": "str",
    "birthMonth": "int",
    "birthDay": "int",
    "birthYear": "int",
    "gender": "str",
    "emailType": "str",
    "email": "str",
    "phoneType": "str",
    "phone": "str",
    "address1": "str",
    "address2": "str",
    "city": "str",
    "state": "str",
    "postal": "str",
    "country": "str",
    "tags": "tags",
    "originSegmentCode": "str",
    "emailLists": "str_list",
    "eventId": "int",
    "eventName": "str",
    "invited": "bool",
    "rsvp": "bool",
    "rsvpResponse": "bool",
    "attended": "bool",
}

CONTACT = Target(
    name="contact_transaction",
    fields=FIELDS,
    source_field="referenceSource",
    id_field="referenceId",
    batch_endpoint="contact_batch",
    single_endpoint="contact_transaction",
    batch_items_key="contacts",
    batch_source_key="referenceSource",
)
