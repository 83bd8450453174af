"""`etl run`: the click skin over `etl.run.submit.run_pipeline` (`etl ledger`: cli/ledger.py).

Exit codes of `etl run`: 0 every row accepted (now or in an earlier run); 1 some rows rejected,
failed, in doubt or in conflict; 2 spec or usage error; 3 a source file cannot be read;
4 credentials refused (401/403, or the key writes to another organization than the spec names);
5 interrupted (Ctrl-C / SIGTERM: sending stopped, what is known is recorded); 6 another run holds
the ledger's lock (nothing done). Unattended runs: docs/operations.md.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx

from etl.base.errors import EtlError, SourceError
from etl.base.redact import secret_from_env
from etl.base.safe_write import check_target, is_stdout, write_json
from etl.cli.common import TOKEN_ENV, fail
from etl.cli.render import LineProgress, Log, Progress, render_summary
from etl.run.submit import (
    EXIT_CREDENTIALS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROWS,
    EXIT_SOURCE,
    EXIT_USAGE,
    RunOptions,
    RunSummary,
    run_pipeline,
)
from etl.spec.pipeline import Pipeline, open_pipeline


@click.command()
@click.argument("specs", metavar="SPEC...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
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
@click.option("--sandbox-url", metavar="URL",
              help="Run against a running `etl sandbox` (key in ETL_SANDBOX_API_KEY), with the "
                   "spec's sandbox ledger; several specs then rehearse together.")
@click.option("--sandbox-run-batch", is_flag=True,
              help="With --sandbox: run the sandbox's nightly batch at the end.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--json-summary", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the run summary as JSON to this file (also when the run fails); "
                   "`-` or /dev/stdout: to stdout (the tables then go to stderr).")
# -- scripting: --json, --progress-every, --log-format (cli/render.py) --
@click.option("--json", "as_json", is_flag=True,
              help="Print the run summary as one JSON document on stdout (as --json-summary -).")
@click.option("--progress-every", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True, metavar="SECONDS",
              help="Not on a terminal: a progress line (rows, requests, budget, ETA) this often.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help="Messages on stderr as text, or one JSON object a line (for log shippers).")
@click.option("--new-only/--all-files", "new_only", default=None,
              help="Read only files not processed before, by content (default: on for a glob "
                   "source, a drop folder) / read every file the source names.")
@click.option("--archive", type=click.Path(file_okay=False, path_type=Path),
              help="Move processed (and re-delivered) files to this folder.")
@click.option("--quarantine", type=click.Path(file_okay=False, path_type=Path),
              help="Move files that cannot be read (encoding, missing columns) to this folder "
                   "with a <name>.reason.txt, and go on with the others (exit 1).")
@click.option("--min-age", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Leave files modified less than SECONDS ago (still being written) for the "
                   "next run (default: 60 for a glob source, a drop folder; else 0).")
@click.option("--max-reject-rate", type=click.FloatRange(0, 1), metavar="R",
              help="Send nothing when more than this share of rows is rejected (exit 1).")
@click.option("--max-failed", type=click.IntRange(min=0), metavar="N",
              help="Stop sending further batches once more than N rows failed or went in "
              "doubt (exit 1).")
@click.option("--recover-ledger", is_flag=True,
              help="Before planning, record every gift of this source that CRM+ already holds "
              "as sent (a lost or replaced ledger); then send only the rest.")
@click.option("--skip-crm-check", is_flag=True,
              help="Send a first time although the ledger shows nothing sent, without asking "
              "CRM+ whether it holds gifts of this source (only if you know it does not).")
def run(specs: tuple[Path, ...], base_url: str, token_env: str, ledger_path: Path | None,
        out_dir: Path | None, in_doubt: str | None, sandbox: bool, sandbox_rate: str,
        sandbox_url: str | None, sandbox_run_batch: bool, quiet: bool,
        json_summary: Path | None, new_only: bool | None,
        archive: Path | None, quarantine: Path | None, min_age: float | None,
        max_reject_rate: float | None, max_failed: int | None, recover_ledger: bool,
        skip_crm_check: bool, as_json: bool, progress_every: float, log_format: str) -> None:
    """Validate (exactly as `etl validate`), then submit the valid rows to CRM+.

    Rows already accepted by an earlier run are never sent again; a crashed run resumes.
    Several specs run one after the other, in order (contacts before the gifts that name them):
    a spec whose rows are rejected (exit 1) does not stop the next; any other failure does.
    Their reports go to --out/<pipeline name>, the JSON summary lists every run, and the exit
    code is the first failure's (else 1 if any run had rows not accepted, else 0).

    Example:

        export VIRTUOUS_API_TOKEN=...

        etl run pipelines/legacy_gifts.yaml

        etl run pipelines/legacy_gifts.yaml --sandbox --sandbox-run-batch

        etl run pipelines/legacy_contacts.yaml pipelines/legacy_gifts.yaml --quiet

        etl run pipelines/nightly_gifts_drop.yaml --quiet --archive /srv/drops/archive
        --quarantine /srv/drops/quarantine --max-reject-rate 0.05 --max-failed 50
        --json-summary /var/log/etl/nightly.json
    """
    from etl.load.client import check_base_url

    if sandbox_url is not None:  # a shared sandbox: its key, its pace, the .sandbox ledger
        from etl.cli.rehearse import sandbox_target

        base_url, token = sandbox_target(sandbox_url)
        sandbox = False
    else:
        token = "" if sandbox else secret_from_env(token_env)
    if not sandbox and not token:
        click.echo(f"error: set the API key in the environment variable {token_env} "
                   "(or name another with --token-env)", err=True)
        sys.exit(EXIT_USAGE)
    try:
        base_url = check_base_url(base_url)
        if json_summary is not None:  # refuse a link or a device now, not after sending
            check_target(json_summary)
    except (ValueError, EtlError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if len(specs) > 1 and ledger_path is not None:
        click.echo("error: --ledger names one feed's ledger; give one spec with it", err=True)
        sys.exit(EXIT_USAGE)
    if len(specs) > 1 and sandbox:
        click.echo("error: --sandbox starts a sandbox for each run, so gifts would not find the "
                   "contacts sent before them: use `etl rehearse SPEC...` or --sandbox-url",
                   err=True)
        sys.exit(EXIT_USAGE)
    if as_json and json_summary is None:
        json_summary = Path("-")
    to_stdout = is_stdout(json_summary)
    log = Log(log_format)
    progress: Progress | LineProgress | None = None
    if not quiet:
        progress = (Progress() if sys.stderr.isatty() and log_format == "text"
                    else LineProgress(log, progress_every))

    def say(message: str) -> None:
        if isinstance(progress, Progress):
            progress.bar.console.print(message, markup=False, highlight=False)
        elif not quiet:
            log.emit("message", message)

    options = RunOptions(token=token, base_url=base_url, in_doubt=in_doubt, notify=say,
                         on_progress=progress.update if progress else None,
                         new_only=new_only, archive=archive, quarantine=quarantine,
                         min_age=min_age, max_reject_rate=max_reject_rate, max_failed=max_failed,
                         recover_ledger=recover_ledger, skip_crm_check=skip_crm_check)
    runs: list[dict[str, Any]] = []
    codes: list[int] = []
    try:
        for spec in specs:
            out = out_dir / spec.stem if out_dir is not None and len(specs) > 1 else out_dir
            data, code = _run_one(spec, options, ledger_path, out, sandbox, sandbox_url,
                                  sandbox_rate, sandbox_run_batch, say, quiet, log, log_format,
                                  to_stdout)
            runs.append(data)
            codes.append(code)
            if code not in (EXIT_OK, EXIT_ROWS):
                break
    except KeyboardInterrupt:
        runs.append({"exit_code": EXIT_INTERRUPTED, "exit_reason": "interrupted",
                     "spec": str(specs[len(runs)] if len(runs) < len(specs) else specs[-1])})
        codes.append(EXIT_INTERRUPTED)
        click.echo("interrupted", err=True)
    finally:
        if progress:
            progress.close()
    try:
        _write_json(json_summary, runs[0] if len(specs) == 1 else {
            "exit_code": _overall(codes), "runs": runs})
    except EtlError as exc:  # the target became a link or a device meanwhile
        fail(exc)
    sys.exit(_overall(codes))


def _overall(codes: list[int]) -> int:
    """The first failure's code; else 1 when a run had rows not accepted; else 0."""
    worse = [c for c in codes if c not in (EXIT_OK, EXIT_ROWS)]
    return worse[0] if worse else (EXIT_ROWS if EXIT_ROWS in codes else EXIT_OK)


def _run_one(spec: Path, options: RunOptions, ledger_path: Path | None, out_dir: Path | None,
             sandbox: bool, sandbox_url: str | None, sandbox_rate: str, sandbox_run_batch: bool,
             say: Any, quiet: bool, log: Log, log_format: str,
             to_stdout: bool) -> tuple[dict[str, Any], int]:
    """One spec's run: (its JSON summary, its exit code). Errors are printed, not raised."""
    try:
        pipeline = open_pipeline(spec, ledger_path=ledger_path,
                                 sandbox=sandbox or sandbox_url is not None, out_dir=out_dir)
        if sandbox_url is not None:
            _pace_by_sandbox(options)
            summary = run_pipeline(pipeline, options)[1]
        elif sandbox:
            summary = _run_in_sandbox(pipeline, options, sandbox_rate, sandbox_run_batch, say)
        else:
            summary = run_pipeline(pipeline, options)[1]
    except EtlError as exc:
        code = EXIT_SOURCE if isinstance(exc, SourceError) else exc.exit_code
        click.echo(f"error: {exc}", err=True)
        return {"exit_code": code, "exit_reason": str(exc), "spec": str(spec)}, code
    if not quiet and log_format == "json":
        log.emit("finished", summary.exit_reason, level="info" if summary.exit_code == 0
                 else "error", exit_code=summary.exit_code, run_id=summary.run_id,
                 counts=summary.counts)
    elif not quiet:
        render_summary(summary, stderr=to_stdout)
    if summary.exit_code in (EXIT_CREDENTIALS, EXIT_INTERRUPTED):
        click.echo(f"error: {summary.exit_reason}", err=True)
    elif quiet and summary.exit_code != 0:  # quiet is for cron: a failure still says why
        click.echo(f"etl run: {summary.exit_reason}", err=True)
    return summary.to_json(), summary.exit_code


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    """The JSON summary, written whole or not at all (a scheduler may read it at any time)."""
    if path is None:
        return
    data = {**data, "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if not is_stdout(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)  # redacted, atomic, never through a link or a device


def _pace_by_sandbox(options: RunOptions) -> None:
    """A sandbox run is paced by the sandbox's limit, not by the spec's budget for the real
    API (`--sandbox-rate none`: not paced at all)."""
    from etl.confirm.sandbox_outcomes import sandbox_pace

    try:
        per_hour = sandbox_pace(options.base_url, options.token)
    except httpx.HTTPError as exc:
        raise EtlError(f"the sandbox at {options.base_url} did not answer: {exc}") from None
    options.requests_per_hour, options.unlimited = per_hour, per_hour is None


def _run_in_sandbox(pipeline: Pipeline, options: RunOptions, rate: str, run_batch: bool,
                    say: Any) -> RunSummary:
    from etl.sandbox.server import running_sandbox

    with running_sandbox(rate_limit=rate, organization_name=pipeline.spec.organization) as sb:
        say(f"sandbox started at {sb.base_url} (rate limit {rate})")
        options.base_url, options.token = sb.base_url, sb.api_key
        _pace_by_sandbox(options)
        summary = run_pipeline(pipeline, options)[1]
        if run_batch:
            summary.sandbox_batch = sb.run_batch()
            say(f"sandbox nightly batch: {json.dumps(summary.sandbox_batch)}")
    return summary
