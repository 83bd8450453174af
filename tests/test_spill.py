"""etl.base.spill: rows parked in memory or on disk, read back whole, by partition or lazily."""

from __future__ import annotations

import tempfile

import polars as pl
import pytest

from etl.base.spill import Spill


@pytest.mark.parametrize(("parts", "on_disk"), [(1, False), (1, True), (3, None)])
def test_rows_come_back_whatever_where_they_were_parked(tmp_path, monkeypatch, parts, on_disk):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spill = Spill(parts, on_disk=on_disk)
    batches = [pl.DataFrame({"k": [f"k{i % 4}" for i in range(j, j + 5)], "n": range(j, j + 5)})
               for j in (0, 5, 10)]
    for batch in batches:
        spill.add(batch, pl.col("k"))
    everything = pl.concat(batches)
    scanned = spill.scan()
    assert scanned is not None
    assert scanned.sort("n").collect().equals(everything)
    assert pl.concat(list(spill.parts())).sort("n").equals(everything)
    keys = [set(part["k"]) for part in spill.parts()]  # all rows of a key in one partition
    assert sum(len(k) for k in keys) == len(set().union(*keys)) == 4
    assert bool(list(tmp_path.glob("etl-spill-*"))) == (parts > 1 or bool(on_disk))
    spill.close()
    assert not list(tmp_path.glob("etl-spill-*"))


def test_nothing_parked_scans_as_none_and_partitions_need_a_key():
    assert Spill(1, on_disk=True).scan() is None
    with pytest.raises(ValueError, match="need a key"):
        Spill(2).add(pl.DataFrame({"k": ["a"]}))
