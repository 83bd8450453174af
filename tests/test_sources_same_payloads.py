"""The bundled sample gifts as Excel, gzip, zip and NDJSON give the same payloads as the CSV,
byte for byte, and the same rejects (Excel's row numbers are the sheet's: one more, the header
being row 1)."""

from __future__ import annotations

import datetime as dt
import gzip
import zipfile
from pathlib import Path

import polars as pl
import pytest
import yaml

from etl.prepare.runner import validate_pipeline
from etl.spec.parse import load_spec

ROOT = Path(__file__).parent.parent
CSV = ROOT / "sample_data" / "legacy_gifts.csv"
SPEC = ROOT / "pipelines" / "legacy_gifts.yaml"
TODAY = dt.date(2026, 11, 24)


def _as_text() -> pl.DataFrame:
    return pl.read_csv(CSV, infer_schema=False, encoding="utf8")


def _xlsx(out: Path) -> Path:
    _as_text().write_excel(out, worksheet="Gifts", autofit=False)  # xlsxwriter: text cells
    return out


def _gz(out: Path) -> Path:
    out.write_bytes(gzip.compress(CSV.read_bytes(), mtime=0))
    return out


def _zip(out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(CSV, "legacy_gifts.csv")
    return out


def _ndjson(out: Path) -> Path:
    _as_text().write_ndjson(out)
    return out


def run(tmp_path: Path, data: Path, **source: object):
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    spec["source"] = {**spec["source"], "path": str(data), **source}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return validate_pipeline(load_spec(path), today=TODAY)


def _rejects(result, shift: int = 0) -> list[tuple[object, ...]]:
    return sorted(
        (r["_record"] - shift, r["field"], r["rule"], r["value"], r["error"])
        for r in result.failures.to_dicts()
    )


@pytest.fixture(scope="module")
def from_csv(tmp_path_factory):
    return run(tmp_path_factory.mktemp("csv"), CSV)


@pytest.mark.parametrize(
    ("make", "name", "shift"),
    [
        (_xlsx, "legacy_gifts.xlsx", 1),
        (_gz, "legacy_gifts.csv.gz", 0),
        (_zip, "legacy_gifts.zip", 0),
        (_ndjson, "legacy_gifts.ndjson", 0),
    ],
)
def test_same_payloads_as_the_csv_byte_for_byte(tmp_path, from_csv, make, name, shift):
    result = run(tmp_path, make(tmp_path / name))
    assert from_csv.valid > 2000 and from_csv.rejected > 0  # the sample has both
    assert result.payloads["_payload"].to_list() == from_csv.payloads["_payload"].to_list()
    assert result.payloads["_key"].to_list() == from_csv.payloads["_key"].to_list()
    assert _rejects(result, shift) == _rejects(from_csv)
    assert result.read == result.valid + result.rejected == from_csv.read
