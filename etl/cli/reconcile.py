"""`etl reconcile` and `etl webhooks serve`: click skins over etl.confirm.reconcile and the
receiver.

Exit codes of `etl reconcile`: 0 every open row resolved or still within the window; 1 some rows
need review (needs_review.csv), or CRM+ unreachable; 2 spec or usage error; 4 credentials refused.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from etl.base.errors import CredentialsRefused, EtlError, TransientError
from etl.base.redact import secret_from_env
from etl.base.safe_write import check_target, is_stdout, write_json
from etl.cli.common import TOKEN_ENV, fail
from etl.confirm.webhook_parse import MAX_MODELS
from etl.confirm.webhook_receiver import MAX_BODY, MAX_PER_MINUTE
from etl.load.client import DEFAULT_BASE_URL, LOCAL_HOSTS, check_base_url
from etl.spec.pipeline import open_pipeline

SANDBOX_KEY_ENV = "ETL_SANDBOX_API_KEY"
SECRET_ENV = "ETL_WEBHOOK_SECRET"  # noqa: S105 - a variable name, not a secret


SANDBOX_URL = click.option(
    "--sandbox-url", metavar="URL",
    help=f"A running `etl sandbox` (key in {SANDBOX_KEY_ENV}); implies --sandbox.")


def _usage(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _target(base_url: str, token_env: str, sandbox: bool) -> tuple[str, str]:
    """(checked base URL, API key) or exit 2."""
    try:
        base_url = check_base_url(base_url)
    except ValueError as exc:
        _usage(str(exc))
    if sandbox and (urlsplit(base_url).hostname or "") not in LOCAL_HOSTS:
        _usage("--sandbox: name the running sandbox with --sandbox-url http://127.0.0.1:PORT "
               "(the sandbox of `etl run --sandbox` is gone when that run ends: keep one up "
               "with `etl sandbox`, or rehearse every step at once with `etl rehearse`)")
    token = secret_from_env(token_env) or (secret_from_env(SANDBOX_KEY_ENV) if sandbox else "")
    if not token:
        _usage(f"set the API key in the environment variable {token_env} "
               "(or name another with --token-env)")
    return base_url, token


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True,
              help="CRM+ host; plain http only to localhost/127.0.0.1.")
@click.option("--token-env", default=TOKEN_ENV, show_default=True,
              help="Environment variable that holds the API key.")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Ledger file (default: the one `etl run` uses for this spec).")
@click.option("--sandbox", is_flag=True,
              help=f"The spec's sandbox ledger; --base-url is a running `etl sandbox` (key from "
                   f"--token-env or {SANDBOX_KEY_ENV}).")
@SANDBOX_URL
@click.option("--window", "window_hours", type=click.FloatRange(min=0), default=30.0,
              show_default=True, help="Hours after sending before an unseen row needs review.")
@click.option("--min-interval", "min_interval_hours", type=click.FloatRange(min=0), default=1.0,
              show_default=True, help="Poll CRM+ at most once per this many hours.")
@click.option("--force", is_flag=True, help="Poll now even within --min-interval.")
@click.option("--after-batch", is_flag=True,
              help="CRM+'s batch has run: rows in doubt and absent go back to pending now.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of needs_review.csv (default: the spec's report folder).")
@click.option("--json-summary", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the summary as JSON to this file (`-` or /dev/stdout: to stdout).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON document on stdout (as --json-summary -).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def reconcile(spec: Path, base_url: str, token_env: str, ledger_path: Path | None,
              sandbox: bool, sandbox_url: str | None, window_hours: float,
              min_interval_hours: float, force: bool,
              after_batch: bool, out_dir: Path | None, json_summary: Path | None,
              as_json: bool, quiet: bool) -> None:
    """Confirm accepted rows in CRM+ (webhooks first, then polling); list what needs review.

    Example:

        etl reconcile pipelines/legacy_gifts.yaml

        etl reconcile pipelines/legacy_gifts.yaml --after-batch --force
    """
    from etl.confirm.reconcile import ReconcileOptions
    from etl.confirm.reconcile import reconcile as run_reconcile

    if sandbox_url is not None:
        base_url, sandbox = sandbox_url, True
    base_url, token = _target(base_url, token_env, sandbox)
    json_summary = Path("-") if as_json and json_summary is None else json_summary
    if json_summary is not None:
        try:  # refuse a link or a device now, not after the work
            check_target(json_summary)
        except EtlError as exc:
            _usage(str(exc))
    options = ReconcileOptions(
        token=token, base_url=base_url, window_hours=window_hours,
        min_interval_hours=min_interval_hours,
        force=force, after_batch=after_batch,
        notify=(lambda m: None) if quiet else (lambda m: click.echo(m, err=True)))
    try:
        pipeline = open_pipeline(spec, ledger_path=ledger_path, sandbox=sandbox, out_dir=out_dir)
        if sandbox_url is not None and pipeline.ledger_path.exists():
            _record_sandbox_outcomes(pipeline, base_url, token)
        summary = run_reconcile(pipeline, options)
    except EtlError as exc:
        fail(exc)
    if json_summary:
        if not is_stdout(json_summary):
            json_summary.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_json(json_summary, summary.to_json())
        except EtlError as exc:
            fail(exc)
    if not quiet:
        _render(summary, err=is_stdout(json_summary))
    if summary.exit_code == 4:
        click.echo(f"error: {summary.exit_reason}", err=True)
    sys.exit(summary.exit_code)


def _record_sandbox_outcomes(pipeline: Any, base_url: str, token: str) -> None:
    """A running sandbox tells what its import did with each row (sandbox-only knowledge,
    docs/sandbox.md): keep it in the ledger's sandbox_outcomes table."""
    import httpx

    from etl.confirm.reconcile import key_prefix
    from etl.confirm.sandbox_outcomes import fetch_outcomes, record_outcomes

    try:
        outcomes = fetch_outcomes(base_url, token)
    except httpx.HTTPError as exc:
        raise TransientError(f"the sandbox at {base_url} did not answer: {exc}") from None
    record_outcomes(pipeline.ledger_path, outcomes, key_prefix(pipeline))


def _render(s: Any, err: bool = False) -> None:
    echo = functools.partial(click.echo, err=err)  # stderr when stdout carries the JSON
    echo(f"reconcile {s.pipeline}: {s.open_before} rows were open (accepted or in doubt)")
    via = ", ".join(f"{k} {v}" for k, v in s.confirmed.items())
    echo(f"  confirmed {sum(s.confirmed.values())}{f' ({via})' if via else ''}, needs review "
               f"{s.needs_review} (duplicates {s.duplicates}), back to pending {s.to_pending}, "
               f"still waiting {s.waiting}")
    echo(f"  poll: {'yes' if s.polled else 'no'} ({s.poll.get('reason')}"
               + (f"; {s.poll.get('mode')}, {s.requests} requests" if s.polled else "") + ")")
    for t in s.totals:
        echo(f"  {t['stage']:<13} {t['currency'] or '-':<4} {t['rows']:>8} {t['amount']:>14}")
    echo(f"  ledger: {s.ledger}\n  needs review: {s.open_reviews} rows in {s.review_csv}"
               f"\n{s.exit_reason}")


@click.group()
def webhooks() -> None:
    """Receive CRM+ webhook deliveries into a pipeline's ledger; show its subscription.

    Example:

        export ETL_WEBHOOK_SECRET=...

        etl webhooks serve --spec pipelines/legacy_gifts.yaml --port 8787

        etl webhooks status --spec pipelines/legacy_gifts.yaml --check
    """


def _secret(secret_env: str, insecure: bool) -> str | None:
    """The shared secret, or None with --insecure-no-secret; else exit 2."""
    secret = secret_from_env(secret_env)  # registered with the redactor
    if secret:
        if insecure:
            click.echo("note: a secret is set, so --insecure-no-secret has no effect", err=True)
        return secret
    if not insecure:
        _usage(f"set the webhook secret in the environment variable {secret_env} (or name another"
               " with --secret-env); --insecure-no-secret runs without one, and then deliveries"
               " are only recorded as unverified hints and never confirm a row")
    return None


def _registration_failed(exc: Exception) -> None:
    if isinstance(exc, CredentialsRefused):
        click.echo(f"error: {exc}", err=True)
        sys.exit(4)
    hint = ""
    if isinstance(exc, TransientError) and exc.may_have_arrived:
        hint = ("; the subscription may have been created or changed: check CRM+ (Settings >"
                " Webhooks) before registering again")
    click.echo(f"error: registering the webhook failed: {exc}{hint}", err=True)
    sys.exit(1)


@webhooks.command("serve")
@click.option("--spec", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The pipeline whose ledger the deliveries confirm.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (put a TLS proxy or tunnel in front for CRM+).")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sandbox", is_flag=True, help="The spec's sandbox ledger.")
@click.option("--secret-env", default=SECRET_ENV, show_default=True,
              help="Environment variable holding the shared secret (required).")
@click.option("--insecure-no-secret", "insecure", is_flag=True,
              help="Run without a secret: deliveries are recorded as unverified hints and never"
                   " confirm a row (for trying the receiver out only).")
@click.option("--max-body", type=click.IntRange(min=1), default=MAX_BODY, show_default=True)
@click.option("--max-models", type=click.IntRange(min=1), default=MAX_MODELS, show_default=True,
              help="Records read per delivery; the rest are left for polling.")
@click.option("--max-per-minute", type=click.IntRange(min=1), default=MAX_PER_MINUTE,
              show_default=True, help="Deliveries stored per minute; beyond: 503 + Retry-After.")
@click.option("--register", is_flag=True, help="Subscribe this receiver in CRM+ first (or check"
              " the stored subscription and repair it).")
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True)
@click.option("--token-env", default=TOKEN_ENV, show_default=True)
@click.option("--public-url", help="The URL CRM+ calls (default: http://HOST:PORT/webhook).")
@SANDBOX_URL
def serve(spec: Path, port: int, host: str, ledger_path: Path | None, sandbox: bool,
          secret_env: str, insecure: bool, max_body: int, max_models: int, max_per_minute: int,
          register: bool, base_url: str, token_env: str, public_url: str | None,
          sandbox_url: str | None) -> None:
    """Run the webhook receiver in the foreground until Ctrl-C.

    Example:

        export ETL_WEBHOOK_SECRET=...

        etl webhooks serve --spec pipelines/legacy_gifts.yaml --port 8787 --register \\
            --public-url https://hooks.example.org/webhook
    """
    from etl.base.serving import bind, serve_foreground
    from etl.confirm.webhook_receiver import make_server
    from etl.confirm.webhook_register import receiver_config, subscribe

    if sandbox_url is not None:
        base_url, sandbox = sandbox_url, True
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("etl.webhooks").setLevel(logging.INFO)  # no request URLs, no bodies
    secret = _secret(secret_env, insecure)
    if register and secret is None:
        _usage("--register needs a secret: CRM+ signs its deliveries with it")
    try:
        pipeline = open_pipeline(spec, ledger_path=ledger_path, sandbox=sandbox)
        cfg = receiver_config(pipeline, secret=secret, insecure=secret is None,
                              max_body=max_body, max_models=max_models,
                              max_per_minute=max_per_minute)
    except EtlError as exc:
        fail(exc)
    if secret is None:
        click.echo("warning: no secret (--insecure-no-secret): deliveries are NOT verified; they"
                   " are recorded as unverified hints and confirm nothing", err=True)
    try:
        sock = bind(host, port)
    except OSError as exc:
        _usage(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    local = f"http://{host}:{sock.getsockname()[1]}/webhook"
    url = public_url or local
    click.echo(f"webhook receiver listening on {local}"
               + (f" (CRM+ calls {url})" if url != local else "")
               + f" (ledger {cfg.ledger_path})", err=True)
    if register:
        assert secret is not None
        api, token = _target(base_url, token_env, sandbox_url is not None)
        try:
            made = asyncio.run(subscribe(api, token, cfg.ledger_path, url, cfg.kind, secret))
        except EtlError as exc:
            sock.close()
            _registration_failed(exc)
        click.echo(made.line(), err=True)
    serve_foreground(make_server(cfg), sock)


@webhooks.command("status")
@click.option("--spec", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The pipeline whose ledger holds the subscription and deliveries.")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sandbox", is_flag=True, help="The spec's sandbox ledger.")
@click.option("--check", is_flag=True,
              help="Also ask CRM+ (GET /api/Webhook/{id}) whether the subscription is as stored.")
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True)
@click.option("--token-env", default=TOKEN_ENV, show_default=True)
@click.option("--secret-env", default=SECRET_ENV, show_default=True,
              help="With --check: compare CRM+'s secret with this one (never shown).")
@SANDBOX_URL
@click.option("--json", "as_json", is_flag=True,
              help="Print subscriptions, checks and deliveries as one JSON document.")
def status(spec: Path, ledger_path: Path | None, sandbox: bool, check: bool, base_url: str,
           token_env: str, secret_env: str, sandbox_url: str | None, as_json: bool) -> None:
    """Show the stored webhook subscription and the deliveries received.

    Exit codes: 0 shown (and, with --check, CRM+ shows it active as stored); 1 it is missing,
    gone, inactive or different; 2 usage or spec error; 4 credentials refused.

    Example:

        etl webhooks status --spec pipelines/legacy_gifts.yaml --check
    """
    from etl.confirm.webhook_register import check_subscriptions, receiver_config, webhook_status

    if sandbox_url is not None:
        base_url, sandbox = sandbox_url, True
    try:
        pipeline = open_pipeline(spec, ledger_path=ledger_path, sandbox=sandbox)
        cfg = receiver_config(pipeline, insecure=True)
    except EtlError as exc:
        fail(exc)
    if not cfg.ledger_path.exists():
        message = f"no ledger yet at {cfg.ledger_path}: nothing subscribed or received"
        click.echo(json.dumps({"ledger": str(cfg.ledger_path), "subscriptions": [],
                               "deliveries": [], "note": message}) if as_json else message)
        sys.exit(1 if check else 0)
    problems = 0
    if check:
        api, token = _target(base_url, token_env, sandbox_url is not None)
        try:
            checks = asyncio.run(check_subscriptions(api, token, cfg.ledger_path,
                                                     secret_from_env(secret_env) or None))
        except EtlError as exc:
            _registration_failed(exc)
        problems = 0 if checks else 1
        for row, seen in checks:
            ok = seen.found and seen.active and not seen.differences(row["payload_url"], cfg.kind)
            problems += not ok
    info = webhook_status(cfg.ledger_path)
    if as_json:
        problems += check and not info["subscriptions"]
        checks_out = ([{"id": row["id"], "result": seen.line()} for row, seen in checks]
                      if check else [])
        click.echo(json.dumps({**info, "checks": checks_out, "problems": problems}, indent=2,
                              default=str))
        sys.exit(1 if problems else 0)
    click.echo(f"ledger: {info['ledger']}")
    for sub in info["subscriptions"]:
        state = "current" if sub["current"] else "not current"
        active = {1: "active", 0: "inactive", None: "active unknown"}[sub["active"]]
        click.echo(f"subscription {sub['id']} ({state}, {active}): {sub['payload_url']}, events "
                   f"{sub['events']}; created {sub['created_at']}; last checked "
                   f"{sub['last_checked_at'] or 'never'} ({sub['last_check'] or '-'})")
    if not info["subscriptions"]:
        click.echo("no subscription stored (etl webhooks serve --register creates one)")
        problems += check
    if check:
        for row, seen in checks:
            click.echo(f"  check {row['id']}: {seen.line()}")
    for d in info["deliveries"]:
        signed = {1: "signed", 0: "unsigned", None: "-"}[d["signed"]]
        click.echo(f"deliveries {d['outcome']} ({signed}): {d['deliveries']} bodies, "
                   f"{d['received']} received, {d['rows_confirmed']} rows confirmed, last "
                   f"{d['last_at']}")
    if not info["deliveries"]:
        click.echo("no deliveries received yet")
    sys.exit(1 if problems else 0)
