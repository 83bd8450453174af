"""`etl sandbox`: serve the local CRM+ sandbox; `etl sandbox run-batch`: run its nightly batch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click
import httpx

from etl.base.errors import CredentialsRefused, TransientError
from etl.sandbox.config import BATCH_MODES, GROUPS_MODES, SandboxConfig, mask
from etl.sandbox.faults import parse_faults
from etl.sandbox.ratelimit import parse_rate
from etl.sandbox.server import serve

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class _Failed(click.ClickException):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check(value: str, parse: object, param: str) -> None:
    try:
        parse(value)  # type: ignore[operator]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


@click.group("sandbox", invoke_without_command=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port on 127.0.0.1 (0: any free port; the URL line tells which).")
@click.option("--rate-limit", default="5000/hour", show_default=True,
              help="Organization budget: 5000/hour, 20/second, 10/5s, none.")
@click.option("--api-key", envvar="ETL_SANDBOX_API_KEY", default=None,
              help="Key with write permission [env ETL_SANDBOX_API_KEY]; generated if absent.")
@click.option("--readonly-key", envvar="ETL_SANDBOX_READONLY_KEY", default=None,
              help="A second key that gets 403 on writes; generated if absent.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="SQLite file to keep the state in (default: memory only).")
@click.option("--faults", default="", help="e.g. 'http500=0.05,reset=0.01,seed=42'.")
@click.option("--batch-mode", type=click.Choice(BATCH_MODES), default="reject_all",
              show_default=True, help="What a batch with a bad item does.")
@click.option("--max-batch", type=click.IntRange(min=1), default=100, show_default=True,
              help="Most items one batch request may carry (more: 400).")
@click.option("--org-name", default=None, help="organizationName of the sandbox organization.")
@click.option("--timezone", default=None, help="organizationTimeZone of the organization.")
@click.option("--dedupe-transactions/--no-dedupe-transactions", default=False, show_default=True,
              help="Whether the batch skips a transactionId it already imported (off: every "
                   "copy becomes a gift, as nothing says CRM+ de-duplicates).")
@click.option("--query-without-groups", type=click.Choice(GROUPS_MODES), default="refuse",
              show_default=True,
              help="A Query body without `groups`: refused (400) or ignored (whole organization).")
@click.option("--hide-query-parameter", "hidden", multiple=True, metavar="NAME",
              help="A Query parameter this organization does not offer (repeatable).")
@click.option("--webhook-keys/--no-webhook-keys", default=False, show_default=True,
              help="Whether deliveries carry transactionSource/transactionId/contactReferences.")
@click.option("--gift-types", default=None, metavar="A,B,C",
              help="The organization's gift types, e.g. 'Cash,Check,Electronic Funds Transfer'.")
@click.option("--park-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of gifts the batch parks in Update Needed (deterministic by seed).")
@click.option("--park-ids", default="", metavar="ID,ID",
              help="transactionIds the batch always parks in Update Needed.")
@click.option("--park-seed", type=int, default=0, show_default=True,
              help="Which gifts --park-share picks.")
@click.pass_context
def sandbox(ctx: click.Context, port: int, rate_limit: str, api_key: str | None,
            readonly_key: str | None, state_path: Path | None, faults: str, batch_mode: str,
            max_batch: int, org_name: str | None, timezone: str | None,
            dedupe_transactions: bool, query_without_groups: str, hidden: tuple[str, ...],
            webhook_keys: bool, gift_types: str | None, park_share: float, park_ids: str,
            park_seed: int) -> None:
    """A local Virtuous CRM+ sandbox on 127.0.0.1 that behaves like the documented API.

    Rehearse an import against it instead of a customer's live organization.

    Example:

        etl sandbox --port 8765 --rate-limit 20/second --api-key KEY --faults http500=0.05

        etl sandbox --park-share 0.2 --gift-types 'Cash,Check,Electronic Funds Transfer'
    """
    if ctx.invoked_subcommand is not None:
        return
    _check(rate_limit, parse_rate, "--rate-limit")
    _check(faults, parse_faults, "--faults")
    try:
        cfg = SandboxConfig(api_key=api_key, readonly_key=readonly_key, rate_limit=rate_limit,
                            faults=faults, state_path=state_path, batch_mode=batch_mode,  # type: ignore[arg-type]
                            max_batch=max_batch, organization_name=org_name,
                            organization_timezone=timezone,
                            dedupe_transactions=dedupe_transactions,
                            query_without_groups=query_without_groups,  # type: ignore[arg-type]
                            query_options_hide=hidden, webhook_keys=webhook_keys,
                            gift_types=_names(gift_types) if gift_types is not None else None,
                            park_share=park_share, park_ids=_names(park_ids),
                            park_seed=park_seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def ready(url: str) -> None:
        assert cfg.api_key and cfg.readonly_key
        shown = {name: (key if name in cfg.generated_keys else mask(key))
                 for name, key in (("api_key", cfg.api_key), ("readonly_key", cfg.readonly_key))}
        click.echo(f"sandbox listening on {url}")
        click.echo(f"api key:        {shown['api_key']}")
        click.echo(f"read-only key:  {shown['readonly_key']}")
        click.echo(f"organization:   {cfg.org().name}; rate limit {rate_limit}; "
                   f"state {state_path or 'in memory'}; batch mode {batch_mode}"
                   + (f"; faults {faults}" if faults else ""))
        click.echo(f"open questions: dedupe {'on' if dedupe_transactions else 'off'}; "
                   f"groupless query {query_without_groups}; webhook keys "
                   f"{'on' if webhook_keys else 'off'}; park share {park_share}")
        click.echo(f"nightly batch:  etl sandbox run-batch --url {url} --api-key KEY")
        sys.stdout.flush()

    serve(cfg, port, ready)


@sandbox.command("run-batch")
@click.option("--url", required=True, help="The sandbox's base URL, e.g. http://127.0.0.1:8765")
@click.option("--api-key", envvar="ETL_SANDBOX_API_KEY", required=True,
              help="A key of the sandbox [env ETL_SANDBOX_API_KEY].")
@click.option("--timeout", type=float, default=600.0, show_default=True)
def run_batch(url: str, api_key: str, timeout: float) -> None:
    """Run the sandbox's nightly batch now and print its summary as JSON.

    Example:

        etl sandbox run-batch --url http://127.0.0.1:8765 --api-key KEY
    """
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise click.BadParameter("the sandbox only runs on 127.0.0.1", param_hint="--url")
    try:
        response = httpx.post(url.rstrip("/") + "/sandbox/run-batch", timeout=timeout,
                              headers={"Authorization": f"Bearer {api_key}"}, trust_env=False)
    except httpx.HTTPError as exc:
        message = f"cannot reach the sandbox at {url}: {exc}"
        raise _Failed(message, TransientError.exit_code) from None
    if response.status_code in (401, 403):
        raise _Failed("the sandbox refused the key", CredentialsRefused.exit_code)
    if response.status_code != 200:
        raise click.ClickException(f"run-batch answered {response.status_code}")
    click.echo(json.dumps(response.json(), indent=2))
