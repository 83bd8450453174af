"""Declarative batch import of donor data into Virtuous CRM+.

One package per stage; each imports only from those below it (docs/architecture.md, enforced by
import-linter in `python3 dev.py lint`):

    cli/         click skins: parse, open the Pipeline once, one library call, render
    run/         the orchestrators: dry_run, run_pipeline, prematch
    unattended/  drop folders, file moves, run lock, gates    | independent of each other
    confirm/     reconcile: webhooks, polling                 |
    match/       pre-match against what CRM+ already holds
    load/        plan, budget (the one retry loop), sender, client, ledger
    report/      report.json, rejects.csv, payloads.jsonl, report.html
    prepare/     mapping, rules, validation, payload JSON
    read/        files -> string frames
    spec/        YAML -> frozen objects; Pipeline
    transforms/, targets/   the vocabulary the YAML names
    base/        errors, exit codes, redaction, safe writes (imports nothing of etl)
    sandbox/     the local CRM+ server; only the CLI imports it
"""

__version__ = "0.1.0"
