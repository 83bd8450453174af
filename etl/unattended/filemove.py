"""Moving a file without ever losing it (archive and quarantine of drop files).

    move_file()  same-filesystem link + unlink (an atomic move that cannot overwrite), else
                 copy to a temporary name + fsync + size check + link into place, then delete;
                 a name taken in the target folder gets a `~N` suffix (never overwritten)
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
from pathlib import Path

from etl.base.filecheck import file_digest


def move_file(src: Path, folder: Path, *, sha256: str | None = None) -> Path:
    """Move `src` into `folder`, never overwriting: a taken name gets a `~N` suffix. When the
    taken name already holds the same bytes (`sha256`: an earlier move cut short, or the same
    file delivered twice), `src` is a duplicate and is only deleted. Returns the new path."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        dst = folder / (src.name if n == 0 else f"{src.stem}~{n}{src.suffix}")
        if dst.exists() or dst.is_symlink():
            if sha256 and dst.is_file() and file_digest(dst)[0] == sha256:
                src.unlink()
                fsync_dir(src.parent)
                return dst
            continue
        try:
            _place(src, dst)
        except FileExistsError:
            continue  # taken between the check and the move: try the next name
        return dst
    raise AssertionError("unreachable")  # pragma: no cover


def _place(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same filesystem: atomic, and fails rather than overwrite
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            _copy_across(src, dst)
        else:  # a filesystem without hard links: a rename (the name was free just before)
            if dst.exists():
                raise FileExistsError(str(dst)) from None
            try:
                os.rename(src, dst)
            except OSError as again:
                if again.errno != errno.EXDEV:
                    raise
                _copy_across(src, dst)
            else:
                fsync_dir(dst.parent)
                fsync_dir(src.parent)
                return
    fsync_dir(dst.parent)
    src.unlink()
    fsync_dir(src.parent)


def _copy_across(src: Path, dst: Path) -> None:
    """Another filesystem: copy to a temporary name, fsync, check the size, then give it its
    name (without overwriting). The caller deletes `src` only after this returns."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    try:
        with src.open("rb") as r, tmp.open("xb") as w:
            shutil.copyfileobj(r, w, 1 << 22)
            w.flush()
            os.fsync(w.fileno())
        shutil.copystat(src, tmp)
        if tmp.stat().st_size != src.stat().st_size:
            raise OSError(f"copy of {src} to {dst} is incomplete")
        try:
            os.link(tmp, dst)
        except FileExistsError:
            raise
        except OSError:
            if dst.exists():
                raise FileExistsError(str(dst)) from None
            os.rename(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new name in `folder` durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)
