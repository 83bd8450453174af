"""One process-wide redactor: secrets are registered when they are read, and removed from every
text at the edges where text leaves the process.

    token = secret_from_env("VIRTUOUS_API_TOKEN")   # reads and registers
    redact("HTTP 422: key CANARY... refused")        # -> "HTTP 422: key *** refused"

The edges: the CLI's stdout/stderr (`redacting_output`, installed once around every command),
the files the tool writes (etl/base/safe_write.py and etl/base/csvsafe.py call `redact` /
`redact_frame`),
and the ledger's text columns (the ledger calls `redact` on what it stores). A server may echo
the token back in an error, an organization name or anything else: whatever its origin, text
that reaches one of these edges loses the secret.

Secrets shorter than MIN_LENGTH are not registered: replacing every "abc" in every output would
garble it, and no credential worth hiding is that short.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import polars as pl

MASK = "***"
MIN_LENGTH = 6

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first, so a longer form is replaced before a part


def register(secret: str | None) -> None:
    """Remember `secret` (and its JSON-escaped and URL-encoded forms) for every later redact."""
    global _secrets
    if not secret or len(secret) < MIN_LENGTH:
        return
    forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}
    with _lock:
        _secrets = tuple(sorted(set(_secrets) | forms, key=len, reverse=True))


def secret_from_env(name: str) -> str:
    """The value of environment variable `name` ("" when unset), registered as a secret."""
    value = os.environ.get(name, "")
    register(value)
    return value


def registered() -> bool:
    """Is any secret registered (else redaction is a no-op)?"""
    return bool(_secrets)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any) -> Any:
    """A string redacted; any other value (None, numbers) as it is."""
    return redact(value) if isinstance(value, str) else value


def redact_expr(expr: pl.Expr) -> pl.Expr:
    """A String expression with every registered secret masked (as `redact_frame`)."""
    for secret in _secrets:
        expr = expr.str.replace_all(secret, MASK, literal=True)
    return expr


def redact_frame(df: pl.DataFrame) -> pl.DataFrame:
    """`df` with every secret removed from its text cells and column names (vectorized)."""
    secrets = _secrets
    if not secrets:
        return df
    renames = {c: redact(c) for c in df.columns if redact(c) != c}
    if renames:
        df = df.rename(renames)
    exprs = []
    for name, dtype in df.schema.items():
        if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
            expr = pl.col(name).cast(pl.String)
            for secret in secrets:
                expr = expr.str.replace_all(secret, MASK, literal=True)
            exprs.append(expr.alias(name))
    return df.with_columns(exprs) if exprs else df


class RedactingStream(io.TextIOBase):
    """A text stream that redacts what is written and passes it on to `inner`.

    It has no `buffer`, and refuses bytes, so click.echo writes text through it instead of
    going around it to the binary buffer."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError("RedactingStream writes text only")
        self.inner.write(redact(text))
        return len(text)

    def flush(self) -> None:
        # Also called when the wrapper is garbage collected, maybe after `inner` was closed.
        if not getattr(self.inner, "closed", False):
            self.inner.flush()

    def isatty(self) -> bool:
        return bool(self.inner.isatty())

    def fileno(self) -> int:
        return int(self.inner.fileno())

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.inner, "encoding", None) or "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.inner, "errors", None)


@contextmanager
def redacting_output() -> Iterator[None]:
    """sys.stdout and sys.stderr redacted for the duration (click, rich and logging included)."""
    saved = sys.stdout, sys.stderr
    if isinstance(sys.stdout, RedactingStream):  # nested: already in place
        yield
        return
    sys.stdout, sys.stderr = RedactingStream(saved[0]), RedactingStream(saved[1])
    try:
        yield
    except Exception:
        # Unexpected: Python prints the traceback to sys.stderr after this block. The
        # redacting streams stay in place so that text goes through them too.
        sys.stdout.flush()
        raise
    except BaseException:  # sys.exit, Ctrl-C: the normal ways out of a command
        _restore(saved)
        raise
    _restore(saved)


def _restore(saved: tuple[Any, Any]) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    sys.stdout, sys.stderr = saved
