"""CSV files a person opens in Excel (issue 14): UTF-8 with a byte-order mark by default, so
accented names survive; `output.csv_bom: false` turns it off; the tool reads its own rejects."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from etl.base.csvsafe import write_csv
from etl.prepare.runner import validate_pipeline
from etl.report.write import write_report
from etl.spec.parse import load_spec

BOM = b"\xef\xbb\xbf"
TODAY = dt.date(2026, 11, 24)
SPEC = """
    name: t
    target: contact_transaction
    source: {{path: {path}}}
    keys: {{source: S, id: {{column: id}}}}
    mappings:
      firstName: first
      lastName: last
      email: {{column: email, transforms: [normalize_email]}}
    {output}
"""
DATA = "id,first,last,email\nC1,Zoë,Núñez,zoe@\nC2,Ann,Lee,ann@example.org\n"


def _dry_run(write, tmp_path: Path, output: str = "") -> Path:
    write("c.csv", DATA)
    loaded = load_spec(write("c.yaml", SPEC.format(path="c.csv", output=output)))
    result = validate_pipeline(loaded, today=TODAY)
    return write_report(result, tmp_path / "out").rejects_csv


def test_rejects_csv_starts_with_a_bom_so_excel_reads_utf8(write, tmp_path: Path) -> None:
    raw = _dry_run(write, tmp_path).read_bytes()
    assert raw.startswith(BOM + b"id,first,last,email,")
    # What Excel does with a BOM: decode as UTF-8; the accented name is intact.
    text = raw.decode("utf-8-sig")
    assert "Zoë,Núñez" in text and "\ufeff" not in text


def test_output_csv_bom_false_writes_plain_utf8(write, tmp_path: Path) -> None:
    raw = _dry_run(write, tmp_path, "output: {csv_bom: false}").read_bytes()
    assert raw.startswith(b"id,first,last,email,")
    assert "Zoë,Núñez" in raw.decode("utf-8")


def test_a_bom_csv_reads_back_through_the_tool(write, tmp_path: Path) -> None:
    """Fix the rejects in a spreadsheet, feed them back: the BOM is not part of `id`. (The
    rejects' own `_record` / `_source_file` columns clash with the reader's: the source columns
    are what a person feeds back.)"""
    rejects = _dry_run(write, tmp_path)
    fixed = pl.read_csv(rejects, infer_schema=False).select("id", "first", "last", "email")
    again_csv = write_csv(fixed, tmp_path / "fixed.csv")
    assert again_csv.read_bytes().startswith(BOM)
    loaded = load_spec(write("again.yaml", SPEC.format(path=str(again_csv), output="")))
    again = validate_pipeline(loaded, today=TODAY)
    assert again.read == 1
    assert again.failures.select("field", "rule", "value").rows() == [("email", "email", "zoe@")]
    assert again.rejects.columns[0] == "id"
    with rejects.open(encoding="utf-8-sig", newline="") as fh:
        assert next(csv.DictReader(fh))["first"] == "Zoë"


@pytest.mark.parametrize("bom", [True, False])
def test_write_csv_bom_switch_keeps_formula_defence(tmp_path: Path, bom: bool) -> None:
    path = write_csv(pl.DataFrame({"name": ["=1+1", "Élodie"]}), tmp_path / "x.csv", bom=bom)
    raw = path.read_bytes()
    assert raw.startswith(BOM) is bom
    assert pl.read_csv(path)["name"].to_list() == ["'=1+1", "Élodie"]
