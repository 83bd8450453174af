"""`etl run` and `etl ledger ...`: click skins over `etl.submit` and `etl.ledger`.

Exit codes of `etl run`: 0 every row accepted (now or in an earlier run); 1 some rows rejected,
failed, in doubt or in conflict; 2 spec or usage error; 3 a source file cannot be read;
4 credentials refused (401/403, or the key writes to another organization than the spec names);
5 interrupted (Ctrl-C / SIGTERM: sending stopped, what is known is recorded).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from etl.errors import EtlError, SourceError
from etl.submit import (
    EXIT_CREDENTIALS,
    EXIT_INTERRUPTED,
    EXIT_SOURCE,
    EXIT_USAGE,
    RunOptions,
    RunSummary,
    default_ledger_path,
    run_pipeline,
)

TOKEN_ENV = "VIRTUOUS_API_TOKEN"  # noqa: S105 - a variable name, not a secret


def _fail(exc: EtlError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_SOURCE if isinstance(exc, SourceError) else exc.exit_code)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--base-url", default="https://api.virtuoussoftware.com", show_default=True,
              help="CRM+ host; plain http only to localhost/127.0.0.1.")
@click.option("--token-env", default=TOKEN_ENV, show_default=True,
              help="Environment variable that holds the API key (never put it in the YAML).")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Ledger file (default: load.ledger, else <spec folder>/.ledger/<name>.sqlite).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (default: the spec's output.dir, else reports/<name>).")
@click.option("--in-doubt", type=click.Choice(["park", "resend"]),
              help="Rows a crash left unanswered: park them or send them again "
                   "(default: load.in_doubt, else park for gifts, resend for contacts).")
@click.option("--sandbox", is_flag=True, help="Run against a local sandbox started for the run.")
@click.option("--sandbox-rate", default="5000/hour", show_default=True,
              help="The sandbox's rate limit (e.g. 20/second, none).")
@click.option("--sandbox-run-batch", is_flag=True,
              help="With --sandbox: run the sandbox's nightly batch at the end.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--json-summary", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the run summary as JSON to this file.")
def run(spec: Path, base_url: str, token_env: str, ledger_path: Path | None,
        out_dir: Path | None, in_doubt: str | None, sandbox: bool, sandbox_rate: str,
        sandbox_run_batch: bool, quiet: bool, json_summary: Path | None) -> None:
    """Validate (exactly as `etl validate`), then submit the valid rows to CRM+.

    Rows already accepted by an earlier run are never sent again; a crashed run resumes.

    Example:

        export VIRTUOUS_API_TOKEN=...

        etl run pipelines/legacy_gifts.yaml

        etl run pipelines/legacy_gifts.yaml --sandbox --sandbox-run-batch
    """
    from etl.client import check_base_url

    token = "" if sandbox else os.environ.get(token_env, "")
    if not sandbox and not token:
        click.echo(f"error: set the API key in the environment variable {token_env} "
                   "(or name another with --token-env)", err=True)
        sys.exit(EXIT_USAGE)
    try:
        base_url = check_base_url(base_url)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    progress = None if quiet or not sys.stderr.isatty() else _Progress()

    def say(message: str) -> None:
        if progress is not None:
            progress.bar.console.print(message, markup=False, highlight=False)
        elif not quiet:
            click.echo(message, err=True)

    options = RunOptions(token=token, base_url=base_url, ledger_path=ledger_path,
                         out_dir=out_dir, sandbox=sandbox, in_doubt=in_doubt, notify=say,
                         on_progress=progress.update if progress else None)
    try:
        if sandbox:
            summary = _run_in_sandbox(spec, options, sandbox_rate, sandbox_run_batch, say)
        else:
            summary = run_pipeline(spec, options)[1]
    except EtlError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if progress:
            progress.close()
    if json_summary:
        json_summary.parent.mkdir(parents=True, exist_ok=True)
        json_summary.write_text(json.dumps(summary.to_json(), indent=2), encoding="utf-8")
    if not quiet:
        render_summary(summary)
    if summary.exit_code in (EXIT_CREDENTIALS, EXIT_INTERRUPTED):
        click.echo(f"error: {summary.exit_reason}", err=True)
    sys.exit(summary.exit_code)


def _run_in_sandbox(spec: Path, options: RunOptions, rate: str, run_batch: bool,
                    say: Any) -> RunSummary:
    from etl.sandbox.server import running_sandbox
    from etl.spec import load_spec

    loaded = load_spec(spec)
    with running_sandbox(rate_limit=rate, organization_name=loaded.spec.organization) as sb:
        say(f"sandbox started at {sb.base_url} (rate limit {rate})")
        options.base_url, options.token = sb.base_url, sb.api_key
        summary = run_pipeline(spec, options)[1]
        if run_batch:
            summary.sandbox_batch = sb.run_batch()
            say(f"sandbox nightly batch: {json.dumps(summary.sandbox_batch)}")
    return summary


class _Progress:
    """Rows, requests, budget left and ETA on stderr (only on a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total} rows  {task.fields[info]}"),
                            console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task("validating", total=None, info="")
        self.bar.start()

    def update(self, s: dict[str, Any]) -> None:
        left = s["budget_remaining"]
        info = (f"requests {s['requests']}  accepted {s['accepted']}  "
                f"budget left {'?' if left is None else left}  ETA {s['eta_seconds']:.0f}s")
        self.bar.update(self.task, description="sending", total=s["to_send"],
                        completed=s["rows"], info=info)

    def close(self) -> None:
        self.bar.stop()


def render_summary(summary: RunSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"run {summary.run_id} of {summary.pipeline}, organization: "
                  f"{summary.organization or '(not contacted)'}", highlight=False)
    counts = Table(title="rows by status")
    counts.add_column("status")
    counts.add_column("rows", justify="right")
    for status, n in sorted(summary.counts.items()):
        counts.add_row(status, str(n))
    console.print(counts)
    totals = Table(title="control totals: valid -> sent -> accepted")
    for name in ("stage", "currency", "rows", "amount"):
        totals.add_column(name, justify="right" if name in ("rows", "amount") else "left")
    for t in summary.totals:
        totals.add_row(t["stage"], t["currency"] or "-", str(t["rows"]), t["amount"])
    console.print(totals)
    console.print(f"requests {summary.requests} (HTTP {summary.http}), 429s {summary.throttled}, "
                  f"retries {summary.retries}, rows/batch request {summary.rows_per_batch_request}"
                  + (", batch endpoint missing: sent one by one" if summary.fallback_to_single
                     else ""), highlight=False)
    if summary.in_doubt_found:
        console.print(f"{summary.in_doubt_found} rows were in doubt after an earlier crash "
                      f"(at most {summary.in_doubt_bound} can be)")
    for notice, n in summary.notices.items():
        console.print(f"API notice: {notice} ({n} answers): plan to migrate")
    console.print(f"ledger: {summary.ledger}\nreport: {summary.report_dir}\n{summary.exit_reason}",
                  highlight=False)


# -- etl ledger ----------------------------------------------------------------------------------
def _open(spec: Path | None, ledger_path: Path | None, sandbox: bool) -> Any:
    from etl.ledger import Ledger
    from etl.spec import load_spec

    if ledger_path is None and spec is None:
        raise click.UsageError("name the ledger: --spec SPEC or --ledger PATH")
    try:
        path = ledger_path or default_ledger_path(load_spec(spec), sandbox=sandbox)  # type: ignore[arg-type]
        if not path.exists():
            raise click.ClickException(f"no ledger at {path} (nothing was run yet)")
        return Ledger(path, lock=False)
    except EtlError as exc:
        _fail(exc)


_where = [
    click.option("--spec", type=click.Path(dir_okay=False, path_type=Path),
                 help="The pipeline spec (its default ledger)."),
    click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path),
                 help="The ledger file."),
    click.option("--sandbox", is_flag=True, help="The spec's sandbox ledger."),
]


def _with_where(f: Any) -> Any:
    for option in reversed(_where):
        f = option(f)
    return f


@click.group()
def ledger() -> None:
    """Read the run ledger: runs, one run's counts, per-row results.

    Example:

        etl ledger runs --spec pipelines/legacy_gifts.yaml
    """


@ledger.command("runs")
@_with_where
def ledger_runs(spec: Path | None, ledger_path: Path | None, sandbox: bool) -> None:
    """List the runs recorded in a ledger.

    Example:

        etl ledger runs --spec pipelines/legacy_gifts.yaml
    """
    with _open(spec, ledger_path, sandbox) as led:
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
    from etl.ledger import LedgerError

    with _open(spec, ledger_path, sandbox) as led:
        try:
            info = led.run(run_id)
        except LedgerError as exc:
            _fail(exc)
        info["counts"] = led.counts(info["id"])
        info["summary"] = json.loads(info["summary"]) if info["summary"] else None
        click.echo(json.dumps(info, indent=2))


@ledger.command("export")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@_with_where
def ledger_export(run_id: int, fmt: str, out: Path, spec: Path | None, ledger_path: Path | None,
                  sandbox: bool) -> None:
    """Write every source row of a run with its result (CSV is spreadsheet-safe).

    Example:

        etl ledger export 3 --spec pipelines/legacy_gifts.yaml --format csv --out rows.csv
    """
    with _open(spec, ledger_path, sandbox) as led:
        try:
            click.echo(str(led.export(run_id, out, fmt)))
        except EtlError as exc:
            _fail(exc)
