"""`.csv.gz`, `.ndjson.gz` and a `.zip` holding exactly one file: decompressed, streamed, into a
private temporary file, and only when the name or `source.compression` says so.

The decompressed size is bounded (`source.max_decompressed_mb`, and beyond 16 MiB
`source.max_compression_ratio` times the compressed size), so a gzip bomb is refused with a
message instead of filling the disk. Encodings and every text check then apply to the
decompressed text.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import IO

from etl.base.errors import SourceError
from etl.base.filecheck import sniff
from etl.spec.parse import Source

CHUNK = 1 << 20
RATIO_FLOOR = 16 << 20  # below this much output the ratio is not looked at (tiny files)


def compression_of(path: Path, source: Source) -> str | None:
    """gzip, zip or None: what the spec says, else what the name ends with."""
    if source.compression is not None:
        return None if source.compression == "none" else source.compression
    suffix = path.suffix.lower()
    return {".gz": "gzip", ".gzip": "gzip", ".zip": "zip"}.get(suffix)


def inner_name(path: Path) -> str:
    """The name without the compression suffix: gifts.csv.gz -> gifts.csv."""
    return path.stem if path.suffix.lower() in (".gz", ".gzip", ".zip") else path.name


def _copy_bounded(
    src: io.BufferedIOBase | IO[bytes], out: Path, packed: int, source: Source, display: str
) -> None:
    cap = source.max_decompressed_mb << 20
    ratio = source.max_compression_ratio
    written = 0
    with out.open("wb") as dst:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > cap or (written > RATIO_FLOOR and written > ratio * max(packed, 1)):
                raise SourceError(
                    f"refused: the file expands to more than {written >> 20} MiB "
                    f"(limits: source.max_decompressed_mb {source.max_decompressed_mb}, "
                    f"source.max_compression_ratio {ratio}): a compression bomb, or raise "
                    "the limits if this export really is that large",
                    path=display,
                )
            dst.write(chunk)


@contextmanager
def decompressed(path: Path, kind: str, source: Source, display: str) -> Iterator[Path]:
    """Yield the decompressed content of `path` as a temporary file."""
    found = sniff(path)
    if found is None or found[0] != kind:
        what = found[1] if found else "not compressed"
        raise SourceError(f"the name or source.compression says {kind}, but this is {what}",
                          path=display)
    packed = path.stat().st_size
    with TemporaryDirectory(prefix="etl-") as tmp:
        out = Path(tmp) / "data"
        try:
            if kind == "gzip":
                with gzip.open(path, "rb") as src:
                    _copy_bounded(src, out, packed, source, display)
            else:
                with zipfile.ZipFile(path) as archive:
                    members = [i for i in archive.infolist() if not i.is_dir()]
                    if len(members) != 1:
                        names = ", ".join(repr(m.filename) for m in members) or "none"
                        raise SourceError(
                            f"a zip source must hold exactly one file; this one holds "
                            f"{len(members)}: {names}", path=display)
                    with archive.open(members[0]) as src:
                        _copy_bounded(src, out, packed, source, display)
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            raise SourceError(f"cannot decompress the file ({exc})", path=display) from None
        yield out


@contextmanager
def renamed_errors(display: str) -> Iterator[None]:
    """SourceErrors raised about the temporary file name the source file instead."""
    try:
        yield
    except SourceError as exc:
        if exc.path == display:
            raise
        raise SourceError(exc.message, path=display, line=exc.line) from None

