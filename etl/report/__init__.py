"""Report: what a dry run (and a run) found, as files a person reads.

- `write`: `write_report` (report.json, rejects.csv, payloads.jsonl, report.html),
  `build_report`, `summary_table`, `write_prematch`, `PayloadWriter`, `DryRun`
- `html`: `render_html`, one self-contained page (escaped, no scripts from outside)

May import: etl.prepare, etl.read, etl.spec, etl.transforms, etl.targets, etl.base.
"""
