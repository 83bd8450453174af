"""`etl ledger ...`: read, export, back up and settle the ledger (click skins over
`etl.load.ledger` and `etl.confirm.reconcile.resolve`)."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import click

from etl.base.errors import EtlError
from etl.base.exitcodes import EXIT_ROWS
from etl.base.safe_write import is_stdout
from etl.cli.common import fail
from etl.spec.pipeline import open_pipeline


def _open(spec: Path | None, ledger_path: Path | None, sandbox: bool) -> Any:
    from etl.load.ledger import Ledger

    if ledger_path is None and spec is None:
        raise click.UsageError("name the ledger: --spec SPEC or --ledger PATH")
    try:
        path = ledger_path or open_pipeline(spec, sandbox=sandbox).ledger_path  # type: ignore[arg-type]
        if not path.exists():
            other = None if ledger_path or sandbox else open_pipeline(
                spec, sandbox=True).ledger_path  # type: ignore[arg-type]
            if other is not None and other.exists():
                raise click.ClickException(f"no ledger at {path}; a sandbox ledger exists at "
                                           f"{other}: add --sandbox")
            raise click.ClickException(f"no ledger at {path} (nothing was run yet)")
        return Ledger(path, readonly=True)
    except EtlError as exc:
        fail(exc)


_where = [
    click.option("--spec", type=click.Path(dir_okay=False, path_type=Path),
                 help="The pipeline spec (its default ledger)."),
    click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path),
                 help="The ledger file."),
    click.option("--sandbox", is_flag=True, help="The spec's sandbox ledger."),
    click.option("--sandbox-url", metavar="URL",
                 help="Same as --sandbox (the ledger is local; accepted so one flag works on "
                      "every command)."),
]


def _with_where(f: Any) -> Any:
    @functools.wraps(f)
    def command(*args: Any, sandbox_url: str | None = None, **kwargs: Any) -> Any:
        kwargs["sandbox"] = kwargs.get("sandbox") or sandbox_url is not None
        return f(*args, **kwargs)

    for option in reversed(_where):
        command = option(command)
    return command


@click.group()
def ledger() -> None:
    """Read the run ledger: runs, one run's counts, per-row results.

    Example:

        etl ledger runs --spec pipelines/legacy_gifts.yaml
    """


@ledger.command("runs")
@_with_where
@click.option("--json", "as_json", is_flag=True, help="Print the runs as one JSON list.")
def ledger_runs(spec: Path | None, ledger_path: Path | None, sandbox: bool,
                as_json: bool) -> None:
    """List the runs recorded in a ledger.

    Example:

        etl ledger runs --spec pipelines/legacy_gifts.yaml
    """
    with _open(spec, ledger_path, sandbox) as led:
        if as_json:
            runs = [{**r, **{k: json.loads(r[k]) for k in ("counts", "summary")
                             if isinstance(r.get(k), str) and r[k]}} for r in led.runs()]
            click.echo(json.dumps(runs, indent=2, default=str))
            return
        for r in led.runs():
            click.echo(f"{r['id']:>5}  {r['started_at']}  {r['ended_at'] or '(unfinished)':<29}  "
                       f"exit {r['exit_code']}  {r['organization'] or '-'}  {r['counts'] or '{}'}")


@ledger.command("show")
@click.argument("run_id", metavar="RUN", required=False, type=int)
@_with_where
def ledger_show(run_id: int | None, spec: Path | None, ledger_path: Path | None,
                sandbox: bool) -> None:
    """Show one run (default: the latest) as JSON: settings, counts, totals.

    Example:

        etl ledger show 3 --spec pipelines/legacy_gifts.yaml
    """
    from collections import Counter

    from etl.confirm.sandbox_outcomes import read_outcomes
    from etl.load.ledger import LedgerError

    with _open(spec, ledger_path, sandbox) as led:
        try:
            info = led.run(run_id)
        except LedgerError as exc:
            fail(exc)
        info["counts"] = led.counts(info["id"])
        info["summary"] = json.loads(info["summary"]) if info["summary"] else None
        outcomes = read_outcomes(led.path)
        if outcomes:  # a sandbox's import of this ledger's rows (sandbox only, docs/sandbox.md)
            info["sandbox_outcomes"] = dict(Counter(o for o, _ in outcomes.values()))
        click.echo(json.dumps(info, indent=2))


@ledger.command("export")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write; `-` (or /dev/stdout): to stdout.")
@_with_where
def ledger_export(run_id: int, fmt: str, out: Path, spec: Path | None, ledger_path: Path | None,
                  sandbox: bool) -> None:
    """Write every source row of a run with its result (CSV is spreadsheet-safe).

    Example:

        etl ledger export 3 --spec pipelines/legacy_gifts.yaml --format csv --out rows.csv
    """
    with _open(spec, ledger_path, sandbox) as led:
        try:
            written = led.export(run_id, out, fmt)
            if not is_stdout(out):
                click.echo(str(written))
        except EtlError as exc:
            fail(exc)


def _ids(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@ledger.command("resolve")
@click.option("--spec", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The pipeline spec.")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The ledger file (default: the spec's).")
@click.option("--sandbox", is_flag=True, help="The spec's sandbox ledger.")
@click.option("--absent", multiple=True, metavar="IDS",
              help="Ids (transactionId / referenceId, comma-separated) you checked are NOT in "
              "CRM+: the next run sends each once.")
@click.option("--found", multiple=True, metavar="IDS",
              help="Ids you found in CRM+: confirmed.")
@click.option("--crm-id", help="With one --found id: its CRM+ gift or contact id.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def ledger_resolve(spec: Path, ledger_path: Path | None, sandbox: bool, absent: tuple[str, ...],
                   found: tuple[str, ...], crm_id: str | None, as_json: bool) -> None:
    """Settle rows that need review, after looking them up in CRM+ (needs_review.csv says
    where: the import, batch and transactionId).

    Example:

        etl ledger resolve --spec pipelines/legacy_gifts.yaml --absent G-17,G-18 --found G-19
    """
    from etl.confirm.reconcile import resolve

    gone, seen = _ids(absent), _ids(found)
    if not gone and not seen:
        raise click.UsageError("give --absent IDS and/or --found IDS")
    if crm_id and len(seen) != 1:
        raise click.UsageError("--crm-id goes with exactly one --found id")
    try:
        pipeline = open_pipeline(spec, ledger_path=ledger_path, sandbox=sandbox)
        summary = resolve(pipeline, absent=gone, found=seen, crm_id=crm_id)
    except EtlError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
        return
    for decision, outcomes in summary.outcomes.items():
        for ident, what in outcomes.items():
            click.echo(f"{decision:<7} {ident}: {what}")
    if any(w.startswith(("nothing", "refused")) for o in summary.outcomes.values()
           for w in o.values()):
        sys.exit(EXIT_ROWS)


@ledger.command("backup")
@click.option("--to", "target", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The backup file to write (replaced atomically).")
@_with_where
def ledger_backup(target: Path, spec: Path | None, ledger_path: Path | None,
                  sandbox: bool) -> None:
    """Copy the ledger consistently, even while a run writes to it (SQLite's online backup).

    The ledger is the only memory of what was sent: back it up after every run.

    Example:

        etl ledger backup --spec pipelines/legacy_gifts.yaml --to /backup/legacy_gifts.sqlite
    """
    from etl.load.ledger import Ledger

    with _open(spec, ledger_path, sandbox) as led:
        path = led.path
    try:
        with Ledger(path, lock=False) as live:
            click.echo(str(live.backup(target)))
    except EtlError as exc:
        fail(exc)

