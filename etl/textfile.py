"""Bytes on disk -> a UTF-8 text file polars can read, strictly.

Files in a legacy encoding are transcoded in streaming chunks: a byte the encoding cannot decode
is a file-level error naming the line, never a silent replacement character. Old-Mac CR-only
line ends, and lone CRs mixed into LF/CRLF files (outside quoted fields), become LF.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from etl.errors import SourceError
from etl.spec import Source

CHUNK = 1 << 22
UTF8 = {"utf-8", "utf8", "utf_8", "ascii", "us-ascii", "utf-8-sig", "utf_8_sig"}


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def line_of(path: Path, offset: int) -> int:
    """1-based line number of byte `offset`."""
    line = 1
    with path.open("rb") as fh:
        remaining = offset
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                break
            line += chunk.count(b"\n") or chunk.count(b"\r") * (b"\n" not in chunk)
            remaining -= len(chunk)
    return line


def _transcode(
    path: Path, encoding: str, out: Path, cr_only: bool, quote: str | None = None
) -> None:
    """Decode `path` strictly in chunks and write it as UTF-8 (with `cr_only`, line ends that
    are a lone CR, not followed by LF, become LF: old-Mac files and files mixing CR with LF;
    with `quote` too, only the lone CRs outside quoted fields, which are line ends)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    carry = ""  # a CR at the end of a chunk: is it followed by LF?
    inside = False  # within a quoted field at the end of the previous chunk
    with path.open("rb") as src, out.open("w", encoding="utf-8", newline="") as dst:
        while True:
            chunk = src.read(CHUNK)
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                bad = chunk[exc.start : exc.start + 1]
                raise SourceError(
                    f"byte 0x{bad.hex() or '??'} cannot be decoded as {encoding} "
                    f"(is the file in another encoding? set source.encoding)",
                    path=path,
                    line=line_of(path, offset + exc.start),
                ) from None
            if cr_only:
                text, carry = carry + text, ""
                if text.endswith("\r") and not final:
                    text, carry = text[:-1], "\r"
                if quote is None:
                    text = _LONE_CR.sub("\n", text)
                else:
                    text, inside = _lone_crs_outside_quotes(text, quote, inside)
            dst.write(text.removeprefix("\ufeff") if offset == 0 else text)
            if final:
                break
            offset += len(chunk)


_LONE_CR = re.compile("\r(?!\n)")


def _lone_crs_outside_quotes(text: str, quote: str, inside: bool) -> tuple[str, bool]:
    """Lone CRs outside quoted fields -> LF; returns the text and whether a quote is open."""
    if "\r" not in text:
        return text, (text.count(quote) % 2 == 1) != inside
    parts, pos = [], 0
    for m in re.finditer(re.escape(quote) + "|\r(?!\n)", text):
        if m.group() == quote:
            inside = not inside
        elif not inside:
            parts += [text[pos : m.start()], "\n"]
            pos = m.end()
    parts.append(text[pos:])
    return "".join(parts), inside


def first_bad_utf8(path: Path) -> tuple[int, str] | None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                return offset + exc.start, chunk[exc.start : exc.start + 1].hex()
            if not chunk:
                return None
            offset += len(chunk)


@contextmanager
def utf8_file(path: Path, source: Source) -> Iterator[tuple[Path, list[str]]]:
    """Yield a UTF-8 version of `path` (the file itself when it already is one)."""
    notes: list[str] = []
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    cr_only = b"\r" in head and b"\n" not in head
    if cr_only:
        notes.append("old-Mac CR-only line endings converted to LF")
    mixed = False
    if not cr_only and re.search(rb"\r(?!\n)", head[:-1]):
        # a lone CR outside a quoted field is a line end (inside one it is data)
        quote = source.quote_char or ""
        text = head[:-1].decode("latin-1")  # byte positions; quote and CR are ASCII
        mixed = not quote or _lone_crs_outside_quotes(text, quote, False)[0] != text
        if mixed:
            notes.append("line endings mix CR with LF/CRLF: lone CRs converted to LF")
    needs_copy = cr_only or mixed or source.encoding.lower() not in UTF8
    if not needs_copy:
        yield path, notes
        return
    with TemporaryDirectory(prefix="etl-") as tmp:
        out = Path(tmp) / "utf8.csv"
        enc = source.encoding if source.encoding.lower() not in UTF8 else "utf-8-sig"
        _transcode(path, enc, out, cr_only or mixed, source.quote_char if mixed else None)
        yield out, notes
