"""Confirm: after CRM+ answered "held", find out what it created (`etl reconcile`).

- `reconcile`: `reconcile(pipeline, ReconcileOptions)`, `resolve(pipeline, ...)`
- `poll`: the polling fallback (bulk Query pages or per-row lookups, within the budget)
- `store`: reconciliation's view of the ledger tables
- `webhook_receiver`, `webhook_parse`, `webhook_guard`: the receiver (`etl webhooks serve`)
- `webhook_register`: `receiver_config(pipeline)`, the one CRM+ subscription

May import: etl.match, etl.load, etl.report, etl.prepare, etl.read, etl.spec, etl.transforms,
etl.targets, etl.base (not etl.unattended: the two are independent).
"""
