"""Checks made on a path before anything opens it: is it a plain file, and what is it really.

    kind_of()       a non-regular file in words ("a named pipe (FIFO)", "a character device")
    regular_stat()  os.stat of a source file, refusing anything but a regular file: opening a FIFO
                    blocks until a writer comes, /dev/zero never ends
    sniff()         what the first bytes say the file is (gzip, zip, xlsx, xls, Parquet...), so
                    that a compressed file named .csv is refused instead of decompressed behind
                    our back, and an xlsx named .csv is named as one (not "byte 0xda ...")
    file_digest()   sha256 and size, read in chunks
    check_unchanged()  after a read: FileChanged unless stat and sha256 are as before it
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

from etl.base.errors import SourceError

CHUNK = 1 << 22


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def regular_stat(path: Path, display: str | None = None) -> os.stat_result:
    """os.stat of `path` (symlinks followed); a SourceError unless it is a regular file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SourceError("no such file", path=display or path) from None
    except OSError as exc:
        raise SourceError(f"cannot read the file ({exc.strerror})", path=display or path) from None
    if not stat.S_ISREG(info.st_mode):
        raise SourceError(
            f"not a regular file ({kind_of(info.st_mode)}): only plain files are read",
            path=display or path,
        )
    return info


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """True when nothing says the file changed between the two stats. ctime is in the list
    because a writer can put mtime back (touch -d, rsync -t) but cannot set ctime."""
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns
    )


# (magic bytes, kind, what the file is, what to do about it when text was expected)
_MAGIC: tuple[tuple[bytes, str, str, str], ...] = (
    (b"\x1f\x8b", "gzip", "a gzip-compressed file", "name it .csv.gz (or .ndjson.gz) or set "
     "source.compression: gzip: compressed files are never decompressed behind your back"),
    (b"BZh", "bzip2", "a bzip2-compressed file", "decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "xz", "an xz-compressed file", "decompress it first (unxz)"),
    (b"\x28\xb5\x2f\xfd", "zstd", "a zstd-compressed file", "decompress it first (unzstd)"),
    (b"PAR1", "parquet", "a Parquet file", "name it .parquet or set source.format: parquet"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "xls", "an Excel (xls) file",
     "set source.format: excel"),
    (b"%PDF-", "pdf", "a PDF document", "export the data as CSV, not as a PDF"),
    (b"SQLite format 3\x00", "sqlite", "an SQLite database", "export a table as CSV"),
    (b"\x89PNG", "image", "a PNG image", "this is not data"),
    (b"\xff\xd8\xff", "image", "a JPEG image", "this is not data"),
    (b"7z\xbc\xaf\x27\x1c", "7z", "a 7-Zip archive", "unpack it first (7z x)"),
    (b"Rar!\x1a\x07", "rar", "a RAR archive", "unpack it first (unrar)"),
)
_ODS = b"mimetypeapplication/vnd.oasis.opendocument.spreadsheet"


def _zip_names(path: Path) -> list[str]:
    """The member names of a zip (its central directory only; [] when unreadable)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def sniff(path: Path) -> tuple[str, str, str] | None:
    """(kind, what the file is, what to do) when its first bytes are a known binary format's
    magic number (kind: gzip, bzip2, xz, zstd, parquet, xls, xlsx, ods, docx, zip, pdf...);
    None for anything else (text, or an unknown binary: the CSV reader then says)."""
    with path.open("rb") as fh:
        head = fh.read(128)
    if head.startswith(b"PK\x03\x04"):
        names = _zip_names(path)
        if any(n.startswith("word/") for n in names):
            return "docx", "a Word document (docx)", "export the data as CSV"
        # a workbook whose first member is not under xl/ is found by the zip's directory
        if b"xl/" in head or any(n.startswith("xl/") for n in names):
            return "xlsx", "an Excel (xlsx) file", "set source.format: excel"
        if head[30:].startswith(_ODS):
            return "ods", "an OpenDocument spreadsheet (ods)", "set source.format: excel"
        return "zip", "a zip archive", (
            "name it .zip or set source.compression: zip: compressed files are never "
            "unpacked behind your back")
    for magic, kind, what, todo in _MAGIC:
        if head.startswith(magic):
            return kind, what, todo
    return None


_NAMES = {"csv": "CSV text", "ndjson": "NDJSON text", "parquet": "a Parquet file"}


def refuse_binary(path: Path, display: str, fmt: str) -> None:
    """A SourceError naming the real format when the file is not what `fmt` reads: "this is an
    Excel (xlsx) file, not CSV text: set source.format: excel"."""
    found = sniff(path)
    if found is None:
        return
    kind, what, todo = found
    if fmt == kind:
        return
    if fmt == "parquet":
        raise SourceError(f"not a readable Parquet file: this is {what}: {todo}", path=display)
    raise SourceError(f"this is {what}, not {_NAMES.get(fmt, fmt)}: {todo}", path=display)


class FileChanged(SourceError):
    """The file changed while it was read (a drop still being written, or replaced): what was
    read is not what was hashed, so nothing of it may be recorded as processed."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(
            "the file changed while it was read: left for the next run (its size, time stamps "
            "or content differ from when it was hashed)",
            path=path,
        )


def check_unchanged(path: Path, display: str, before: os.stat_result, digest: str) -> None:
    """After a file was read: refuse it when it changed since it was hashed (the hash recorded
    for it must be the hash of what was read: a drop truncated or rewritten meanwhile would
    otherwise count as processed, and the complete file as already seen)."""
    try:
        after = os.stat(path)
    except OSError:
        raise FileChanged(display) from None
    if not same_file(before, after) or file_digest(path)[0] != digest:
        raise FileChanged(display)
