"""What every command module shares: the API key's default variable and the EtlError exit."""

from __future__ import annotations

import sys

import click

from etl.base.errors import EtlError, SourceError
from etl.base.exitcodes import EXIT_SOURCE

TOKEN_ENV = "VIRTUOUS_API_TOKEN"  # noqa: S105 - a variable name, not a secret


def fail(exc: EtlError) -> None:
    """Print the error (it names the file, line and field) and exit with its documented code."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_SOURCE if isinstance(exc, SourceError) else exc.exit_code)
