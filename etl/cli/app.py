"""The `etl` command: a thin click skin over the library. Each command parses its options, calls
one library function, and renders the result; `EtlError`s become a message and an exit code.

Exit codes: 0 all good; 1 rows rejected (over --max-reject-rate) or failed; 2 spec or usage
error; 3 a source file cannot be read; 4 credentials refused (or the wrong organization);
5 interrupted (Ctrl-C / SIGTERM); 6 another run holds the ledger's lock; 141 stdout's reader
went away (`etl transforms | head -1`): stopped quietly, as a command killed by SIGPIPE.

`-` (or /dev/stdout) for an output path means standard output; `--json` prints one JSON document
to stdout (the human text then goes to stderr).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, ClassVar

import click

from etl import __version__
from etl.base.errors import EtlError
from etl.base.exitcodes import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from etl.base.exitcodes import EXIT_ROWS as EXIT_REJECTS
from etl.base.redact import redacting_output, secret_from_env
from etl.cli.common import EXIT_PIPE, fail, quiet_broken_pipe


class LazyGroup(click.Group):
    """Commands that live in other modules are imported only when used: `etl validate` must
    not pay for the HTTP client, the ledger and the sandbox server."""

    lazy: ClassVar[dict[str, str]] = {
        "run": "etl.cli.run:run",
        "ledger": "etl.cli.ledger:ledger",
        "sandbox": "etl.sandbox.cli:sandbox",
        "reconcile": "etl.cli.reconcile:reconcile",
        "webhooks": "etl.cli.reconcile:webhooks",
        "rehearse": "etl.cli.rehearse:rehearse_command",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # One edge for the terminal: everything printed (click, rich, logging, usage errors)
        # passes through the redactor, so a registered secret never reaches it.
        try:
            with redacting_output():
                return super().main(*args, **kwargs)
        finally:
            try:  # the last of stdout, inside the try: a reader that left is no error
                sys.stdout.flush()
            except BrokenPipeError:
                quiet_broken_pipe()
                sys.exit(EXIT_PIPE)

    def invoke(self, ctx: click.Context) -> object:
        # Every command, one place: an unwritable --out or ledger path, a missing folder or a full
        # disk is a message and exit 2, never a traceback.
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            quiet_broken_pipe()
            ctx.exit(EXIT_PIPE)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="etl")
def main() -> None:
    """Import donor data (CSV/Parquet) into Virtuous CRM+, described once in a YAML spec.

    Example:

        etl validate pipelines/legacy_gifts.yaml --out reports/gifts
    """


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder (default: the spec's output.dir, else reports/<name>).",
)
@click.option(
    "--max-reject-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Exit 0 while the share of rejected rows stays at or under this.",
)
@click.option(
    "--payloads",
    "payload_limit",
    type=click.IntRange(min=0),
    help="Write only the first N payloads (default: all, or output.payload_sample).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report.json summary on stdout instead of the table.")
@click.option("--progress-every", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True, metavar="SECONDS",
              help="Not on a terminal: a line of rows read/rejected this often (big files).")
@click.option(
    "--refresh-match",
    is_flag=True,
    help="With a `match:` section: read CRM+ first (reads only) to refresh the "
    "pre-match cache. Without it the dry run opens no connection.",
)
@click.option(
    "--full-refresh",
    is_flag=True,
    help="With --refresh-match and method bulk: re-read every contact.",
)
@click.option(
    "--base-url",
    default="https://api.virtuoussoftware.com",
    show_default=True,
    help="CRM+ host for --refresh-match; plain http only to localhost/127.0.0.1.",
)
@click.option(
    "--token-env",
    default="VIRTUOUS_API_TOKEN",
    show_default=True,
    help="Environment variable that holds the API key (--refresh-match).",
)
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The run's ledger, for the pre-match cache and --new-only (default: the spec's).",
)
@click.option(
    "--new-only",
    is_flag=True,
    help="Only the files the next `etl run` would read (a drop folder: those not processed "
    "before, by content). The ledger is only read.",
)
@click.option(
    "--sandbox-ledger",
    is_flag=True,
    help="Use the cache of the spec's sandbox ledger (`etl run --sandbox`).",
)
def validate(
    spec: Path,
    out_dir: Path | None,
    max_reject_rate: float,
    payload_limit: int | None,
    quiet: bool,
    as_json: bool,
    refresh_match: bool,
    full_refresh: bool,
    base_url: str,
    token_env: str,
    ledger_path: Path | None,
    sandbox_ledger: bool,
    new_only: bool,
    progress_every: float,
) -> None:
    """Dry run: read, transform and validate; write a report; send nothing.

    Example:

        etl validate pipelines/legacy_contacts.yaml --out reports/contacts
    """
    from etl.cli.render import ValidateProgress
    from etl.run.dry_run import dry_run
    from etl.spec.pipeline import open_pipeline

    match = None
    if refresh_match or full_refresh or ledger_path or sandbox_ledger:
        from etl.match import MatchOptions

        match = MatchOptions(
            refresh=refresh_match,
            full=full_refresh,
            base_url=base_url,
            token=secret_from_env(token_env) if refresh_match else "",
            notify=lambda message: click.echo(message, err=True),
        )
    try:
        pipeline = open_pipeline(spec, ledger_path=ledger_path, sandbox=sandbox_ledger,
                                 out_dir=out_dir)
        files = None
        if new_only:
            from etl.unattended.drops import preview_paths

            files = preview_paths(pipeline)
        if files == []:
            if not quiet:
                click.echo("no new files: the next `etl run` would read nothing")
            sys.exit(EXIT_OK)
        progress = None if quiet else ValidateProgress(progress_every)
        try:
            outcome = dry_run(pipeline, payload_limit=payload_limit, match=match, files=files,
                              keep_payloads=False, on_rows=progress)
        finally:
            if progress is not None:
                progress.close()
    except EtlError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(outcome.report, indent=2))
    elif not quiet:
        click.echo(outcome.summary)
        click.echo(f"report: {outcome.paths.report_html}")
    rate = outcome.result.reject_rate()
    sys.exit(EXIT_OK if rate <= max_reject_rate else EXIT_REJECTS)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the pipeline spec format (for editor autocompletion).

    Example:

        etl schema > pipeline.schema.json
    """
    from etl.spec.parse import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
@click.argument("target", type=click.Choice(["contact_transaction", "gift_transaction"]))
@click.option("--json", "as_json", is_flag=True, help="Print {field: kind} as JSON.")
def fields(target: str, as_json: bool) -> None:
    """List the payload fields a target accepts, with their kinds.

    Example:

        etl fields gift_transaction
    """
    from etl.targets import get_target

    t = get_target(target)
    if as_json:
        kinds = {t.source_field: "keys.source", t.id_field: "keys.id",
                 **{n: k for n, k in t.fields.items() if n not in (t.source_field, t.id_field)},
                 "customFields.<Name>": "str"}
        if target == "gift_transaction":
            kinds["designations"] = "section: list of {code|name|id, amount}"
        click.echo(json.dumps(kinds, indent=2, default=str))
        return
    click.echo(f"{t.source_field}  (from keys.source)\n{t.id_field}  (from keys.id)")
    for name, kind in t.fields.items():
        if name not in (t.source_field, t.id_field):
            click.echo(f"{name}  {kind}")
    click.echo("customFields.<Name>  str")
    if target == "gift_transaction":
        click.echo("designations  (section: list of {code|name|id, amount})")


@main.command("transforms")
@click.option("--json", "as_json", is_flag=True,
              help="Print [{name, arguments, doc}] as JSON.")
def list_transforms(as_json: bool) -> None:
    """List the transforms a mapping can chain, with their arguments.

    Example:

        etl transforms
    """
    import inspect

    from etl.transforms import REGISTRY

    listed = []
    for name in sorted(REGISTRY):
        fn = REGISTRY[name]
        params = list(inspect.signature(fn).parameters.values())[1:]
        doc = (fn.__doc__ or "").strip().splitlines()
        listed.append({"name": name, "arguments": [str(p) for p in params],
                       "doc": doc[0] if doc else ""})
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    for t in listed:
        click.echo(f"{t['name']}({', '.join(t['arguments'])})\n    {t['doc']}")


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports/demo"),
    show_default=True,
    help="Reports and demo ledgers.",
)
def demo(out_dir: Path) -> None:
    """The main job on the bundled sample data, against a local CRM+ sandbox.

    Validates and submits the sample contacts, legacy gifts and a nightly drop (dirty on purpose:
    rejected rows are expected), then runs the sandbox's nightly batch and shows what CRM+
    would have created.

    Example:

        etl demo --out reports/demo
    """
    from etl.cli.demo import run_demo
    from etl.cli.render import render_summary
    from etl.samples import sample_root

    try:
        root = sample_root()  # the installed copy in a wheel, else the checkout's folders
        outcome = run_demo(root, out_dir, lambda message: click.echo(message))
    except EtlError as exc:
        fail(exc)
    for summary in outcome.summaries:
        click.echo(f"\n-- {summary.pipeline} --")
        render_summary(summary)
    batch = outcome.batch
    click.echo(
        "\nsandbox nightly batch (what CRM+ does overnight): "
        + ", ".join(f"{k} {v}" for k, v in batch.items() if not isinstance(v, dict | list))
    )
    codes = {s.exit_code for s in outcome.summaries}
    if codes - {EXIT_OK, EXIT_REJECTS}:
        sys.exit(max(codes))
    click.echo(
        "\nThe samples are dirty on purpose: see rejects.csv and report.html in "
        f"{out_dir}/<pipeline>/ for every rejected row and why."
    )


if __name__ == "__main__":
    main()
