"""`etl rehearse SPEC...`: a whole migration against one local sandbox (etl/run/rehearse.py).

Exit codes: 0 every run and reconcile clean and nothing left in the sandbox's "needs update";
1 rows rejected, failed or left for review; 2 spec or usage error; 3 a source file cannot be
read; 4 credentials refused; 5 interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx

from etl.base.errors import EtlError
from etl.base.exitcodes import EXIT_INTERRUPTED, EXIT_USAGE
from etl.base.redact import secret_from_env
from etl.base.safe_write import write_json, write_text
from etl.cli.common import fail
from etl.run.rehearse import Rehearsal, rehearse
from etl.spec.pipeline import Pipeline, open_pipeline

SANDBOX_KEY_ENV = "ETL_SANDBOX_API_KEY"
REPORT = "rehearsal.json"


def sandbox_target(url: str) -> tuple[str, str]:
    """(base URL, key) of a running `etl sandbox`, or exit 2: local only, key from the env."""
    from urllib.parse import urlsplit

    from etl.load.client import LOCAL_HOSTS, check_base_url

    try:
        url = check_base_url(url)
    except ValueError as exc:
        _usage(str(exc))
    if (urlsplit(url).hostname or "") not in LOCAL_HOSTS:
        _usage(f"--sandbox-url must be a local sandbox (http://127.0.0.1:PORT), not {url}")
    token = secret_from_env(SANDBOX_KEY_ENV)
    if not token:
        _usage(f"--sandbox-url: set the sandbox's API key in {SANDBOX_KEY_ENV} "
               "(`etl sandbox` prints it when it starts)")
    return url, token


def _usage(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@contextmanager
def _sandbox(url: str | None, rate: str, say: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    if url is not None:
        yield sandbox_target(url)
        return
    from etl.sandbox.ratelimit import parse_rate
    from etl.sandbox.server import running_sandbox

    try:
        parse_rate(rate)
    except ValueError as exc:
        _usage(f"--sandbox-rate: {exc}")
    with running_sandbox(rate_limit=rate) as sb:
        say(f"sandbox started at {sb.base_url} (rate limit {rate}); it stops at the end")
        yield sb.base_url, sb.api_key


def open_rehearsal(specs: Sequence[Path], out_dir: Path, shared: bool) -> list[Pipeline]:
    """Each spec's Pipeline: with a shared sandbox (--sandbox-url) the spec's `.sandbox` ledger
    (it continues that sandbox); with a throwaway one, a fresh ledger under out_dir/<name>."""
    pipelines: list[Pipeline] = []
    for spec in specs:
        pipeline = open_pipeline(spec, sandbox=True)
        if any(p.spec.name == pipeline.spec.name for p in pipelines):
            raise EtlError(f"{spec}: a second spec named {pipeline.spec.name!r} in one "
                           "rehearsal (each pipeline has its own report folder and ledger)")
        folder = out_dir / pipeline.spec.name
        if not shared:
            ledger = folder / "ledger.sandbox.sqlite"
            for stale in folder.glob("ledger.sandbox.sqlite*"):
                stale.unlink()
            pipeline = open_pipeline(spec, ledger_path=ledger, sandbox=True, out_dir=folder)
        else:
            pipeline = open_pipeline(spec, sandbox=True, out_dir=folder)
        pipelines.append(pipeline)
    return pipelines


def write_report(out_dir: Path, data: dict[str, Any]) -> None:
    """rehearsal.json (every row) and rehearsal.html (the same, to read)."""
    from etl.cli.rehearse_html import rehearsal_html

    write_json(out_dir / REPORT, data)
    write_text(out_dir / "rehearsal.html", rehearsal_html(data))


def render(result: Rehearsal, out_dir: Path, echo: Callable[[str], None]) -> None:
    """The short human table: per pipeline, rows by final state and by sandbox outcome."""
    echo(f"\nrehearsal ({result.elapsed_seconds:.1f}s, sandbox {result.sandbox_url})")
    for p in result.pipelines:
        def line(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()) if v) or "-"

        echo(f"\n{p.name} (exit {p.run.exit_code})")
        echo(f"  run            {line(p.run.counts)}")
        echo(f"  final state    {line(p.states)}")
        echo(f"  sandbox import {line(p.sandbox_outcomes)}")
    echo(f"\nrows with their CRM ids: {out_dir / REPORT} and {out_dir / 'rehearsal.html'}; "
         f"each pipeline's report: {out_dir}/<pipeline>/report.html")


@click.command()
@click.argument("specs", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sandbox-url", metavar="URL",
              help=f"A running `etl sandbox` to rehearse on (key in {SANDBOX_KEY_ENV}); "
                   "default: start a throwaway one for this rehearsal.")
@click.option("--sandbox-rate", default="none", show_default=True,
              help="The started sandbox's rate limit (e.g. 5000/hour, 20/second, none).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/rehearsal"), show_default=True,
              help=f"Folder of {REPORT} and of each pipeline's report (<out>/<name>/).")
@click.option("--json", "as_json", is_flag=True, help="Print the combined report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (and --json).")
def rehearse_command(specs: tuple[Path, ...], sandbox_url: str | None, sandbox_rate: str,
                     out_dir: Path, as_json: bool, quiet: bool) -> None:
    """Rehearse a migration: run SPECS in order against ONE local sandbox, run its import,
    reconcile each, and write one combined report (rows by final state, with CRM ids).

    Example:

        etl rehearse pipelines/legacy_contacts.yaml pipelines/legacy_gifts.yaml
    """
    def say(message: str) -> None:
        if not quiet and not as_json:
            click.echo(message, err=True)

    try:
        with _sandbox(sandbox_url, sandbox_rate, say) as (base_url, token):
            pipelines = open_rehearsal(specs, out_dir, shared=sandbox_url is not None)
            result = rehearse(pipelines, base_url, token, notify=say)
    except EtlError as exc:
        fail(exc)
    except httpx.HTTPError as exc:
        click.echo(f"error: the sandbox at {sandbox_url} did not answer: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    try:
        write_report(out_dir, data)
    except EtlError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif not quiet:
        render(result, out_dir, click.echo)
    sys.exit(result.exit_code)
