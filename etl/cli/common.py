"""What every command module shares: the API key's default variable and the EtlError exit."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from etl.base.errors import EtlError, SourceError
from etl.base.exitcodes import EXIT_SOURCE

TOKEN_ENV = "VIRTUOUS_API_TOKEN"  # noqa: S105 - a variable name, not a secret


def fail(exc: EtlError) -> None:
    """Print the error (it names the file, line and field) and exit with its documented code."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_SOURCE if isinstance(exc, SourceError) else exc.exit_code)


# A reader that stops early (`etl transforms | head -1`) closes the pipe. Like cat or grep
# killed by SIGPIPE the command stops quietly, exit 141 (128 + SIGPIPE), so `set -o pipefail`
# sees the same as with coreutils. The Python docs' recipe: point stdout at devnull so the
# interpreter's last flush does not fail again.
EXIT_PIPE = 141


def quiet_broken_pipe() -> None:
    """stdout's reader went away: send what is left to devnull and say nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(devnull, sys.__stdout__.fileno())  # type: ignore[union-attr]
    os.close(devnull)
