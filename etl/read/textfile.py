"""Bytes on disk -> a UTF-8 text file polars can read, strictly.

Files in a legacy encoding are transcoded in streaming chunks: a byte the encoding cannot decode
is a file-level error naming the line, never a silent replacement character. Old-Mac CR-only
line ends, and lone CRs mixed into LF/CRLF files (outside quoted fields), become LF.

Two more file-level errors, found in the passes that read every byte anyway:
- a UTF-8 file (or part of one) declared in a single-byte encoding (cp1252, latin-1...), which
  would be sent as mojibake (José -> JosÃ©): see `Utf8Sniffer` for exactly what counts;
- a UTF-8 byte-order mark after the start of the file (two exports pasted together), which
  would end up as an invisible U+FEFF inside a value (`scan_digest`).
"""

from __future__ import annotations

import codecs
import hashlib
import importlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from etl.base.errors import SourceError
from etl.base.filecheck import refuse_binary
from etl.spec.parse import Source

CHUNK = 1 << 22
UTF8 = {"utf-8", "utf8", "utf_8", "ascii", "us-ascii", "utf-8-sig", "utf_8_sig"}


BOM = b"\xef\xbb\xbf"


def scan_digest(path: Path, encoding: str) -> tuple[str, int, int | None]:
    """sha256 and size in one read, and for a file read as UTF-8 the offset of the first
    byte-order mark after the start (None when there is none)."""
    look = encoding.lower() in UTF8
    h = hashlib.sha256()
    size, tail, found = 0, b"", None
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            if look and found is None:
                buf = tail + chunk
                at = buf.find(BOM, 0 if size else 1)  # a BOM at byte 0 is the file's own
                if at >= 0:
                    found = size - len(tail) + at
                tail = buf[-2:]
            size += len(chunk)
    return h.hexdigest(), size, found


def text_checks(path: Path, source: Source, display: str, fmt: str = "csv") -> tuple[str, int]:
    """Refuse a binary file, an empty one, a stray byte-order mark; sha256 and size."""
    refuse_binary(path, display, fmt)
    digest, size, bom = scan_digest(path, source.encoding)
    if size == 0:
        raise SourceError("the file is empty (not even a header)", path=display)
    if bom is not None:
        raise stray_bom(path, display, bom)
    return digest, size


def stray_bom(path: Path, display: str, offset: int) -> SourceError:
    return SourceError(
        "a UTF-8 byte-order mark (bytes EF BB BF) in the middle of the file: two exports "
        "pasted together? It would end up as an invisible character inside a value; remove it "
        "(and the second header, if there is one)",
        path=display,
        line=line_of(path, offset),
    )


def single_byte(encoding: str) -> bool:
    """Is `encoding` one byte per character (cp1252, latin-1, iso8859-x, mac_roman...)?"""
    name = codecs.lookup(encoding).name.replace("-", "_")
    try:
        module = importlib.import_module(f"encodings.{name}")
    except ImportError:
        return False
    return hasattr(module, "decoding_table") or name == "iso8859_1"


# Byte classes for the UTF-8 sniffer: L = lead byte C2/C3 (UTF-8 of U+0080..U+00FF: accented
# Latin letters, NBSP, ©, °), E = lead byte E2 (’ “ ” – — … € •), D = a continuation byte
# that may follow E2 in those (80 81 82 84), C = any other continuation byte.
_CLASSES = bytearray(b"." * 256)
_CLASSES[0x80:0xC0] = b"C" * 0x40
for _b in (0x80, 0x81, 0x82, 0x84):
    _CLASSES[_b] = ord("D")
_CLASSES[0xC2] = _CLASSES[0xC3] = ord("L")
_CLASSES[0xE2] = ord("E")
_CLASS_TABLE = bytes(_CLASSES)
_HIGH_TABLE = b"." * 0x80 + b"H" * 0x80
_SIGNS = (b"LC", b"LD", b"EDC", b"EDD")
_LEADS = (b"\xc2", b"\xc3", b"\xe2", b"\xef")


class Utf8Sniffer:
    """Is a file declared in a single-byte encoding in fact UTF-8 (mojibake in the making)?

    Two signs, both cheap (bytes.find / translate, no per-byte Python):
    - a sure sign anywhere: the UTF-8 bytes of U+0080..U+00FF (C2/C3 + a continuation byte,
      e.g. é = C3 A9 -> "Ã©"), of the common punctuation E2 80..84 xx (’ “ ” – … € ->
      "â€™"), or a UTF-8 BOM. In real cp1252/latin-1 text these are "Ã" or "Â" followed by a
      symbol, or "â" followed by two symbols: vanishingly rare;
    - the whole file being valid UTF-8 with at least one multi-byte sequence (other scripts,
      e.g. Polish ł = C5 82). Real cp1252 text with accents is almost never valid UTF-8: é is the
      single byte E9, which UTF-8 reads only before two continuation bytes.
    """

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self.valid = True  # every byte so far is valid UTF-8
        self.first: int | None = None  # offset of the first non-ASCII byte
        self.tail = b""

    def feed(self, chunk: bytes, offset: int, final: bool) -> tuple[int, bytes] | None:
        """Offset and bytes of a sure sign in `chunk` (which starts at `offset`), else None."""
        if self.valid:
            try:
                self.decoder.decode(chunk, final=final)
            except UnicodeDecodeError:
                self.valid = False
        if chunk.isascii():
            self.tail = b""
            return None
        if self.first is None:
            self.first = offset + chunk.translate(_HIGH_TABLE).find(b"H")
        buf, start = self.tail + chunk, offset - len(self.tail)
        self.tail = buf[-2:]
        if not any(lead in buf for lead in _LEADS):
            return None
        hits = [buf.find(BOM)]
        if any(lead in buf for lead in _LEADS[:3]):
            classes = buf.translate(_CLASS_TABLE)
            hits += [classes.find(sign) for sign in _SIGNS]
        at = min((h for h in hits if h >= 0), default=-1)
        if at < 0:
            return None
        width = 3 if buf[at] in (0xE2, 0xEF) else 2
        return start + at, buf[at : at + width]


def utf8_in_single_byte(path: Path, encoding: str, offset: int, seq: bytes | None) -> SourceError:
    """The error for UTF-8 text in a file declared `encoding` (`seq`: the bytes found)."""
    if seq == BOM:
        what = "a UTF-8 byte-order mark (EF BB BF)"
    elif seq:
        what = (f"bytes {seq.hex(' ').upper()}: UTF-8 for {seq.decode('utf-8')!r}, which "
                f"{encoding} would read as {seq.decode(encoding, errors='replace')!r}")
    else:
        what = "its non-ASCII bytes are valid UTF-8"
    return SourceError(
        f"UTF-8 text in a file declared {encoding} ({what}): the file, or this part of it, is "
        f"UTF-8, and reading it as {encoding} would send mojibake (set source.encoding: utf-8)",
        path=path,
        line=line_of(path, offset),
    )


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
    sniffer = Utf8Sniffer() if single_byte(encoding) else None
    offset = 0
    carry = ""  # a CR at the end of a chunk: is it followed by LF?
    inside = False  # within a quoted field at the end of the previous chunk
    with path.open("rb") as src, out.open("w", encoding="utf-8", newline="") as dst:
        while True:
            chunk = src.read(CHUNK)
            final = not chunk
            sign = sniffer.feed(chunk, offset, final) if sniffer else None
            if sign is not None:
                raise utf8_in_single_byte(path, encoding, *sign)
            if final and sniffer and sniffer.valid and sniffer.first is not None:
                raise utf8_in_single_byte(path, encoding, sniffer.first, None)
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                if sniffer and sniffer.valid and sniffer.first is not None:
                    # UTF-8 so far (Ł = C5 81: 0x81 is no cp1252 byte): say so, not "bad byte"
                    raise utf8_in_single_byte(path, encoding, sniffer.first, None) from None
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
    # A block cut mid-file may end on the CR of a CRLF whose LF is in the next block: drop
    # that last byte then. A file that fits in the block is whole: a CRLF at its end is no
    # lone CR (dropping the last byte there made every small Windows file look "mixed").
    probe = head[:-1] if len(head) == 1 << 16 else head
    if not cr_only and re.search(rb"\r(?!\n)", probe):
        # a lone CR outside a quoted field is a line end (inside one it is data)
        quote = source.quote_char or ""
        text = probe.decode("latin-1")  # byte positions; quote and CR are ASCII
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
