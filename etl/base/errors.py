"""Every error the tool raises on purpose.

    EtlError                      base; `str(e)` is the message a user reads
    ├── SpecError                 the pipeline YAML is wrong (file:line: key.path: what, hint)
    ├── SourceError               a data file cannot be read (file:line: what)
    │   └── ColumnsMissing        the spec names columns the file lacks
    ├── TransientError            worth retrying: 429, 5xx, timeouts, resets
    │                             (`may_have_arrived`: a write may have been stored: in doubt)
    └── TerminalError             not worth retrying
        ├── RequestRejected       400/409/422: the rows are rejected with the API's details
        └── CredentialsRefused    401/403: stop the run now

Bad *rows* are never exceptions: they are data (rejects with reasons). This module imports
nothing of etl, so every stage can import it.
"""

from __future__ import annotations

from pathlib import Path


class EtlError(Exception):
    """Base of the tool's errors. `exit_code` is what the CLI exits with."""

    exit_code = 2


class SpecError(EtlError):
    """The pipeline spec is invalid; names the file, line, key path and what would be valid."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.key = key
        self.message = message
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line else "") + ": "
        key = f"{self.key}: " if self.key else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{key}{self.message}{hint}"


class SpecErrors(SpecError):
    """Several spec problems at once, one per line."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        Exception.__init__(self, "\n".join(e.render() for e in errors))
        self.path = errors[0].path if errors else None
        self.line = errors[0].line if errors else None
        self.key = None
        self.message = str(self)
        self.hint = None

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


class SourceError(EtlError):
    """A source file cannot be read at all (encoding, corrupt file, unreadable header)."""

    def __init__(self, message: str, *, path: str | Path, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = self.path + (f":{line}" if line else "")
        super().__init__(f"{where}: {message}")


class ColumnsMissing(SourceError):
    """The spec refers to columns that the file's header does not have."""

    def __init__(self, path: str | Path, missing: list[str], header: list[str]) -> None:
        self.missing = missing
        self.header = header
        super().__init__(
            f"columns named in the spec are missing: {', '.join(map(repr, missing))}; "
            f"the header has: {', '.join(map(repr, header))}",
            path=path,
            line=1,
        )


class TransientError(EtlError):
    """A failure that may succeed when retried (429, 5xx, timeout, connection reset).

    `may_have_arrived` is False only when the failure provably happened before the server
    processed the request (refused connection, DNS, 429, 408, 503 with Retry-After): a write
    that failed otherwise may have been stored, and is in doubt rather than retried."""

    exit_code = 1

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None,
        may_have_arrived: bool = True,
    ):
        self.status = status
        self.retry_after = retry_after
        self.may_have_arrived = may_have_arrived
        super().__init__(message)


class TerminalError(EtlError):
    """A failure that retrying cannot fix."""

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RequestRejected(TerminalError):
    """400/409/422: the API refused the payload; `details` are its per-field reasons."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        self.code = code
        self.details = details or []
        super().__init__(message, status=status)


class CredentialsRefused(TerminalError):
    """401/403: the key is wrong or lacks permission; every later request would fail too."""

    exit_code = 4
