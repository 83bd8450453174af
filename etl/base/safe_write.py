"""Every file the tool writes goes through here: whole or not at all, never through a link or a
device, secrets redacted, and reports only into a folder that is the tool's.

    write_text(path, text)        a temp file in the same folder, then os.replace
    write_json(path, data)        the same, JSON
    with atomic(path) as tmp: ... for writers that want a path (polars)
    report_folder(path, explicit) the folder a report may go to (see below)

Standard output: `-` and `/dev/stdout` (is_stdout) mean "write to sys.stdout": the text (or the
finished temporary file) is copied there; no file named `-` is created and the /dev/stdout link
is never replaced.

Targets: a path that exists and is not a regular file (a symlink, /dev/stdout, a FIFO, a
directory) is refused with UnsafeOutput (exit 2), never replaced or written through.

Report folders: a spec someone mails you names its own `output.dir`, which could be `/etc`.
The tool writes reports only into a folder that is new (it creates it and drops the marker
MARKER) or already carries that marker, unless the folder was chosen explicitly (`--out`).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from etl.base.errors import EtlError
from etl.base.redact import redact

MARKER = ".etl-report"
MARKER_TEXT = (
    "This folder holds reports written by the etl tool. Its marker (this file) lets a pipeline "
    "spec's output.dir write here again; delete it to stop that.\n"
)


class UnsafeOutput(EtlError):
    """The tool refused to write a file or into a folder (exit 2)."""


STDOUT_NAMES = ("-", "/dev/stdout")


def is_stdout(path: str | Path | None) -> bool:
    """`-` or `/dev/stdout`: the output goes to sys.stdout, never to a file of that name."""
    return path is not None and str(path) in STDOUT_NAMES


def check_target(path: Path) -> None:
    """Raise UnsafeOutput when `path` exists and is not a regular file (links refused too);
    standard output (`-`, `/dev/stdout`) is always fine."""
    if is_stdout(path):
        return
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        what = ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode)
                else "not a regular file (a device, FIFO or socket)")
        raise UnsafeOutput(f"{path}: is {what}; refusing to write over it (name a new file)")


@contextmanager
def atomic(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary path next to `path`; when the block succeeds, flush it to disk and
    rename it over `path` (refused if `path` is not a regular file). Nothing is left on error."""
    if is_stdout(path):
        yield from _via_stdout()
        return
    path = Path(path)
    check_target(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: a name planted in advance (a link to elsewhere) makes this fail, not follow it.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    os.close(fd)
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _via_stdout() -> Iterator[Path]:
    """A temporary file for a writer that wants a path; its content then goes to stdout (text
    through sys.stdout, so the redactor sees it; bytes such as Parquet to the binary stream)."""
    fd, name = tempfile.mkstemp(prefix=".etl-stdout.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        data = tmp.read_bytes()
        try:
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
        except UnicodeDecodeError:
            sys.stdout.flush()
            binary = sys.__stdout__.buffer if sys.__stdout__ is not None else None
            if binary is None:
                raise UnsafeOutput("no binary standard output to write to; name a file") from None
            binary.write(data)
            binary.flush()
    finally:
        tmp.unlink(missing_ok=True)


def replace(src: Path, path: Path) -> None:
    """os.replace(src, path), refused when `path` exists and is not a regular file."""
    check_target(path)
    os.replace(src, path)


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (secrets redacted) to `path` atomically, as UTF-8 (`-`: to stdout)."""
    if is_stdout(path):
        sys.stdout.write(redact(text))
        sys.stdout.flush()
        return Path(path)
    path = Path(path)
    with atomic(path) as tmp:
        tmp.write_text(redact(text), encoding="utf-8")
    return path


def write_json(path: str | Path, data: Any, *, indent: int = 2) -> Path:
    """Write `data` as JSON (secrets redacted, a final newline) to `path` atomically."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str)
    return write_text(path, text + "\n")


def report_folder(path: Path, *, explicit: bool, origin: str = "output.dir") -> Path:
    """`path`, ready for report files: created with a marker if new; an existing folder must
    carry the marker unless `explicit` (the user's own `--out`). `origin` names where the
    path came from, for the message."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UnsafeOutput(f"{origin} {path}: is not a folder; name a new folder for the "
                               "reports (--out DIR)")
        if explicit or _marked(path):
            return path
        raise UnsafeOutput(
            f"{origin} {path}: an existing folder the tool did not create (no {MARKER} marker "
            "file in it); refusing to write reports there. Pass --out DIR to choose the report "
            "folder yourself, or name a new folder (the tool creates and marks it)")
    path.mkdir(parents=True, exist_ok=True)
    write_text(path / MARKER, MARKER_TEXT)
    return path


def _marked(folder: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(folder / MARKER).st_mode)
    except FileNotFoundError:
        return False
