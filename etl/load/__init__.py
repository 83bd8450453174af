"""Load: send the valid rows to CRM+ exactly once, and remember what was sent.

- `plan`: every row against the ledger (new, changed, already accepted, in doubt); batches
- `client`: `CrmClient` and `ENDPOINTS`, the one table of paths the tool calls
- `crm_query`: Query bodies and paging for reads
- `budget`: `RequestBudget` (request slots) and `budgeted`, the one retry loop for reads and
  writes (a write whose outcome is unknown is in doubt, not retried)
- `sender`: `Sender`, batches with fallback to single requests; `money`
- `ledger`: the SQLite ledger (runs, files, rows; migrations only add)
- `ledger_guard`: a lost ledger: refuse a first send CRM+ contradicts, rebuild from CRM+
- `direct`, `direct_shape`: `load.create: direct`: Find by reference, by email, then
  `POST /api/Contact` (nested) only when both miss; an unanswered POST is looked up first

May import: etl.report, etl.prepare, etl.read, etl.spec, etl.transforms, etl.targets, etl.base.
"""
