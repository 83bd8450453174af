"""Gift Transaction v2 (`POST /api/v2/Gift/Transaction`, batch `POST /api/v2/Gift/Transactions`).

The embedded `contact` uses other names than the Contact Transaction (lower-case `firstname`,
`type` instead of contactType) and a nested `address`: that is the real wire shape.
"""

from __future__ import annotations

from etl.targets import Target

_CONTACT = {
    "contact.id": "int",
    "contact.referenceId": "str",
    "contact.name": "str",
    "contact.type": "str",
    "contact.title": "str",
    "contact.firstname": "str",
    "contact.middlename": "str",
    "contact.lastname": "str",
    "contact.suffix": "str",
    "contact.emailType": "str",
    "contact.email": "str",
    "contact.phoneType": "str",
    "contact.phone": "str",
    "contact.tags": "tags",
    "contact.address.address1": "str",
    "contact.address.address2": "str",
    "contact.address.city": "str",
    "contact.address.state": "str",
    "contact.address.postal": "str",
    "contact.address.country": "str",
}

FIELDS: dict[str, str] = {
    "transactionSource": "str",
    "transactionId": "str",
    "giftDate": "date",
    "giftType": "str",
    "amount": "money",
    "currencyCode": "str",
    "exchangeRate": "number",
    "frequency": "str",
    "recurringGiftTransactionId": "str",
    "pledgeTransactionId": "str",
    "batch": "str",
    "notes": "str",
    "segment": "str",
    "mediaOutlet": "str",
    "receiptDate": "date",
    "tribute": "str",
    "isPrivate": "bool",
    "isTaxDeductible": "bool",
    "checkNumber": "str",
    "creditCardType": "str",
    "nonCashGiftType": "str",
    **_CONTACT,
}

GIFT = Target(
    name="gift_transaction",
    fields=FIELDS,
    source_field="transactionSource",
    id_field="transactionId",
    batch_endpoint="gift_batch",
    single_endpoint="gift_transaction",
    batch_items_key="transactions",
    batch_source_key="transactionSource",
)
