"""Rows parked on disk, partitioned by the hash of a key: a check over a whole file (repeated
ids, `unique` rules, possible duplicate donors) then holds one partition at a time, not every
row of the file.

    spill = Spill(parts=16)
    for batch in batches:
        spill.add(batch, pl.col("key"))       # each row goes to partition hash(key) % 16
    for part in spill.parts():               # all rows of a key are in one partition
        ...
    spill.close()

Partitions are Arrow IPC files in a temporary folder (TMPDIR), removed by `close` (and by the
context manager). With `parts=1` nothing goes to disk unless `on_disk=True` (rows parked whole,
read back by `scan`): the rows are only kept in memory, which is what a small file wants.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import polars as pl


class Spill:
    def __init__(self, parts: int, *, on_disk: bool | None = None) -> None:
        self.parts_count = max(1, parts)
        self.on_disk = self.parts_count > 1 if on_disk is None else on_disk
        self._memory: list[pl.DataFrame] = []
        self._dir: Path | None = None
        self._files: list[list[Path]] = [[] for _ in range(self.parts_count)]
        self._schema: pl.Schema | None = None
        self.rows = 0

    def add(self, frame: pl.DataFrame, key: pl.Expr | None = None) -> None:
        """Park `frame`'s rows, each in the partition of its `key`'s hash (null keys too; one
        partition needs no key)."""
        if self._schema is None:
            self._schema = frame.schema
        self.rows += frame.height
        if not self.on_disk:
            self._memory.append(frame)
            return
        if not frame.height:
            return
        if key is None and self.parts_count > 1:
            raise ValueError("rows spread over partitions need a key")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="etl-spill-"))
        if key is None or self.parts_count == 1:
            path = self._dir / f"0.{len(self._files[0])}.arrow"
            frame.write_ipc(path)
            self._files[0].append(path)
            return
        tagged = frame.with_columns((key.hash() % self.parts_count).alias("__part"))
        for (part,), rows in tagged.partition_by("__part", as_dict=True, include_key=False).items():
            files = self._files[int(part)]
            path = self._dir / f"{part}.{len(files)}.arrow"
            rows.write_ipc(path)
            files.append(path)

    def parts(self) -> Iterator[pl.DataFrame]:
        """Each partition's rows, in the order they were added (none when nothing was)."""
        if self._schema is None:
            return
        if not self.on_disk:
            yield pl.concat(self._memory)
            return
        empty = pl.DataFrame(schema=self._schema)
        for files in self._files:
            yield pl.concat([pl.read_ipc(f) for f in files]) if files else empty

    def scan(self) -> pl.LazyFrame | None:
        """Every row parked, lazily, partition after partition (None: nothing was added).
        Rows on disk are only read as far as the query needs them."""
        if self._schema is None:
            return None
        if not self.on_disk:
            return pl.concat(self._memory).lazy()
        files = [pl.scan_ipc(f) for part in self._files for f in part]
        return pl.concat(files) if files else pl.DataFrame(schema=self._schema).lazy()

    def close(self) -> None:
        self._memory = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Spill:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
