"""Run: the orchestrators that wire the stages (as dlt's `pipeline/` does).

- `dry_run`: `dry_run(pipeline, ...)`: read -> prepare -> report, plus the pre-match prediction
- `submit`: `run_pipeline(pipeline, RunOptions)`: lock, intake, dry run, plan, pre-match, send
- `prematch`: `apply_policy`, the run's side of the pre-match (`skipped_existing`)
- `lost_ledger`: the first-send check against CRM+ and `--recover-ledger`
- `direct`: the direct path's spec check, request bound and cap, rows and summary
- `options`: `RunOptions` (what goes in), `RunSummary` (what comes out)

May import: every package below it (unattended, confirm, match, load, report, prepare, read,
spec, transforms, targets, base); never etl.cli or etl.sandbox.
"""
