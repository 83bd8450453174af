"""Unattended runs: nightly drop folders, safe file moves, the run lock and the gates.

- `drops`: which files of a drop folder to read (new only, old enough), quarantine, archive;
  `preview_paths(pipeline)` for `etl validate --new-only`
- `filemove`: moving a file with fsync, never over another
- `gates`: `RunLock`, `reject_gate` (--max-reject-rate), `control_totals`

May import: etl.match, etl.load, etl.report, etl.prepare, etl.read, etl.spec, etl.transforms,
etl.targets, etl.base (not etl.confirm: the two are independent).
"""
