"""The gift mappings the end-to-end tests share (a file with GiftID, DonorID, First, Last,
GiftDate, Amount, PayMethod, Currency columns): one text, inserted into each test's spec."""

GIFT_MAPPINGS = """mappings:
  amount: {column: Amount, transforms: [parse_amount]}
  giftDate: {column: GiftDate, transforms: [{parse_date: {formats: ["%Y-%m-%d"]}}]}
  giftType: PayMethod
  currencyCode: Currency
  contact.referenceId: DonorID
  contact.firstname: First
  contact.lastname: Last"""
