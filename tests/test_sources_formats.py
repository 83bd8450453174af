"""Reading Excel, compressed (.csv.gz, .zip) and NDJSON sources: cells and values arrive as
text exactly as CSV cells do, rows carry where they came from, and every file-level problem is
a message naming the file (and line) with what to do."""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.util
import io
import json
import zipfile
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter

from etl.base.errors import SourceError
from etl.prepare.runner import validate_pipeline
from etl.read import excel
from etl.read.excel import open_excel
from etl.read.ndjson import open_ndjson
from etl.read.sources import open_csv
from etl.spec.parse import Source, load_spec

TODAY = dt.date(2026, 11, 24)


def frame_of(opener, path: Path, needed=("ID",), **opts) -> tuple[pl.DataFrame, list[str]]:
    with opener(path, Source(path=str(path), **opts), list(needed), path.name) as src:
        return src.frame(), src.warnings


def workbook(path: Path, rows: list[list[object]], *, sheet: str = "Gifts", start: int = 0,
             extra_sheet: bool = False) -> Path:
    """An .xlsx with typed cells: str, int, float, date (as a real Excel date), None."""
    book = xlsxwriter.Workbook(str(path))
    if extra_sheet:
        book.add_worksheet("Notes").write(0, 0, "not data")
    ws = book.add_worksheet(sheet)
    date_fmt = book.add_format({"num_format": "yyyy-mm-dd"})
    for r, row in enumerate(rows, start=start):
        for c, value in enumerate(row):
            if isinstance(value, dt.datetime | dt.date):
                ws.write_datetime(r, c, value, date_fmt)
            elif value is not None:
                ws.write(r, c, value)
    book.close()
    return path


HEADER = ["ID", "Zip", "Donor", "Amount", "Date", "Serial", "Flag"]


def test_excel_cells_arrive_as_the_text_a_person_sees(tmp_path):
    path = workbook(tmp_path / "g.xlsx", [
        HEADER,
        ["G1", "01234", 7001, 25.5, dt.datetime(2020, 1, 2), 43831, True],
        ["G2", "00501", 7002.0, 1000, dt.datetime(2020, 1, 3, 13, 5), "43832", "x"],
    ])
    frame, _ = frame_of(open_excel, path)
    assert frame["Zip"].to_list() == ["01234", "00501"]  # text cells keep their zeros
    assert frame["Donor"].to_list() == ["7001", "7002"]  # integer-valued: never "7001.0"
    assert frame["Amount"].to_list() == ["25.5", "1000"]
    assert frame["Date"].to_list() == ["2020-01-02", "2020-01-03 13:05:00"]  # ISO text
    assert frame["Serial"].to_list() == ["43831", "43832"]  # a plain number stays a number
    assert frame["Flag"].to_list() == ["true", "x"]
    assert frame["_source_file"].to_list() == ["g.xlsx", "g.xlsx"]


def test_excel_record_is_the_sheet_row_number_and_empty_rows_are_skipped(tmp_path):
    path = workbook(tmp_path / "g.xlsx", [
        ["Gift export, December"], [], HEADER, ["G1"], [], ["G3"],
    ])
    frame, notes = frame_of(open_excel, path, header_row=3)
    assert frame["ID"].to_list() == ["G1", "G3"]
    assert frame["_record"].to_list() == [4, 6]  # the rows Excel shows on its left edge
    assert frame["_line"].to_list() == [4, 6]
    assert any("1 empty row" in n for n in notes)


def test_excel_rows_keep_their_numbers_below_leading_empty_rows(tmp_path):
    path = workbook(tmp_path / "g.xlsx", [HEADER, ["G1"], ["G2"]], start=2)  # header on row 3
    with pytest.raises(SourceError, match=r"missing: 'ID'; the header has: '\(column 1\)'"):
        frame_of(open_excel, path)  # row 1 is empty: not silently taken from row 3
    frame, _ = frame_of(open_excel, path, header_row=3)
    assert frame["_record"].to_list() == [4, 5]


def test_an_empty_sheet_says_so(tmp_path):
    path = workbook(tmp_path / "g.xlsx", [])
    with pytest.raises(SourceError, match=r"g\.xlsx: the sheet has 0 row\(s\): no header on row 1"):
        frame_of(open_excel, path)


@pytest.mark.parametrize("sheet", ["Gifts", 1])
def test_excel_sheet_by_name_or_zero_based_index(tmp_path, sheet):
    path = workbook(tmp_path / "g.xlsx", [HEADER, ["G1"]], extra_sheet=True)
    frame, _ = frame_of(open_excel, path, sheet=sheet)
    assert frame["ID"].to_list() == ["G1"]


def test_excel_first_sheet_by_default_and_a_missing_sheet_lists_the_sheets(tmp_path):
    path = workbook(tmp_path / "g.xlsx", [HEADER, ["G1"]], extra_sheet=True)
    with pytest.raises(SourceError, match="missing: 'ID'"):  # the first sheet is "Notes"
        frame_of(open_excel, path)
    with pytest.raises(SourceError, match=r"g\.xlsx: no sheet 'Gfts'.*'Notes', 'Gifts'"):
        frame_of(open_excel, path, sheet="Gfts")
    with pytest.raises(SourceError, match="no sheet 5"):
        frame_of(open_excel, path, sheet=5)


def test_excel_without_fastexcel_says_what_to_install(tmp_path, monkeypatch):
    path = workbook(tmp_path / "g.xlsx", [HEADER, ["G1"]])
    real = importlib.util.find_spec
    monkeypatch.setattr(excel.importlib.util, "find_spec",
                        lambda name, *a: None if name == "fastexcel" else real(name, *a))
    with pytest.raises(SourceError, match=r"g\.xlsx: .*fastexcel.*pip install 'etl\[excel\]'"):
        frame_of(open_excel, path)


def test_a_csv_declared_excel_is_named_not_decoded(write):
    path = write("g.xlsx", "ID\nG1\n")
    with pytest.raises(SourceError, match="not an Excel workbook"):
        frame_of(open_excel, path)


def test_a_corrupt_workbook_is_a_message(write):
    path = write("g.xlsx", b"PK\x03\x04[Content_Types].xml" + b"\x00" * 100)
    with pytest.raises(SourceError, match=r"g\.xlsx: not a readable Excel workbook"):
        frame_of(open_excel, path)


def test_excel_null_values_apply_as_for_csv(tmp_path):
    path = workbook(tmp_path / "g.xlsx", [HEADER, ["G1", "null"], ["G2", "N/A"], ["G3", "NULL"]])
    frame, _ = frame_of(open_excel, path, null_values_ignore_case=True)
    assert frame["Zip"].to_list() == [None, None, None]


SPEC = """
name: x
target: gift_transaction
source:
  path: {path}
{source}
keys: {{source: T, id: {{column: ID}}}}
mappings:
  amount: {{column: Amount, transforms: [parse_amount]}}
  giftDate:
    column: Date
    transforms: [{{parse_date: {{formats: ["%Y-%m-%d"], excel_serial: true}}}}]
  giftType: {{constant: Check}}
  contact.referenceId: Donor
  contact.address.postal: Zip
"""


def run(write, path: str, source: str = ""):
    spec = write("p.yaml", SPEC.format(path=path, source=source))
    return validate_pipeline(load_spec(spec), today=TODAY)


def test_excel_rows_go_through_the_same_rules_and_rejects_name_the_sheet_row(write, tmp_path):
    workbook(tmp_path / "g.xlsx", [
        HEADER,
        ["G1", "01234", 7001, 25.5, dt.datetime(2020, 1, 2), None],
        ["G2", "01234", 7002, "abc", 43832, None],  # a serial number in the date column
        ["G3", "01234", 7003, 10, "2020-13-45", None],
    ])
    result = run(write, "g.xlsx")
    assert result.read == result.valid + result.rejected == 3
    payloads = [json.loads(p) for p in result.payloads["_payload"]]
    assert payloads[0]["giftDate"] == "2020-01-02"
    assert payloads[0]["contact"]["address"]["postal"] == "01234"
    assert payloads[0]["contact"]["referenceId"] == "7001"
    fails = {(Path(r["_source_file"]).name, r["_record"], r["field"])
             for r in result.failures.to_dicts()}
    assert fails == {("g.xlsx", 3, "amount"), ("g.xlsx", 4, "giftDate")}


# -- compressed ------------------------------------------------------------------------------

CSV = b"ID,Zip\nG1,01234\nG2,00501\n"


def test_csv_gz_is_read_and_the_identity_is_the_compressed_file(write):
    packed = gzip.compress(CSV, mtime=0)
    path = write("g.csv.gz", packed)
    with open_csv(path, Source(path=str(path)), ["ID"], "g.csv.gz") as src:
        frame = src.frame()
        assert src.size == len(packed)
    assert frame["Zip"].to_list() == ["01234", "00501"]
    assert frame["_line"].to_list() == [2, 3]


def test_the_encoding_applies_to_the_decompressed_text(write):
    path = write("g.csv.gz", gzip.compress("ID,Name\nG1,José\n".encode("cp1252")))
    frame, _ = frame_of(open_csv, path, encoding="cp1252")
    assert frame["Name"].to_list() == ["José"]
    with pytest.raises(SourceError, match=r"^g\.csv\.gz:2: byte 0xe9"):
        frame_of(open_csv, path)


def test_compression_from_the_spec_for_any_name(write):
    path = write("export.dat", gzip.compress(CSV))
    frame, _ = frame_of(open_csv, path, compression="gzip")
    assert frame["ID"].to_list() == ["G1", "G2"]


def test_a_name_that_says_gzip_over_plain_text_is_refused(write):
    path = write("g.csv.gz", CSV)
    with pytest.raises(SourceError, match="says gzip, but this is not compressed"):
        frame_of(open_csv, path)


def test_a_gzip_bomb_is_refused_with_the_limits_named(write):
    path = write("g.csv.gz", gzip.compress(b"ID\n" + b"0" * (3 << 20)))
    with pytest.raises(SourceError, match=r"g\.csv\.gz: refused: .*max_decompressed_mb 2"):
        frame_of(open_csv, path, max_decompressed_mb=2)


def test_a_high_ratio_is_refused_beyond_16_mib(write):
    path = write("g.csv.gz", gzip.compress(b"ID\n" + b"0" * (20 << 20)))
    assert path.stat().st_size * 100 < 20 << 20  # zeros compress ~1000:1
    with pytest.raises(SourceError, match="max_compression_ratio 100"):
        frame_of(open_csv, path, max_compression_ratio=100)
    frame, _ = frame_of(open_csv, path, max_compression_ratio=5000)  # raised: it reads
    assert frame.height == 1


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def test_a_zip_holding_one_csv_is_read(write):
    path = write("g.zip", _zip({"gifts.csv": CSV}))
    frame, _ = frame_of(open_csv, path)
    assert frame["Zip"].to_list() == ["01234", "00501"]


def test_a_zip_with_several_members_is_refused_naming_them(write):
    path = write("g.zip", _zip({"a.csv": CSV, "b.csv": CSV}))
    with pytest.raises(SourceError, match=r"exactly one file; this one holds 2: 'a\.csv', 'b"):
        frame_of(open_csv, path)


def test_an_xlsx_inside_a_zip_is_named(write, tmp_path):
    book = workbook(tmp_path / "in.xlsx", [HEADER])
    path = write("g.zip", _zip({"in.xlsx": book.read_bytes()}))
    with pytest.raises(SourceError, match=r"^g\.zip: this is an Excel \(xlsx\) file"):
        frame_of(open_csv, path)


# -- NDJSON ----------------------------------------------------------------------------------


def test_ndjson_values_arrive_as_text(write):
    path = write("g.ndjson", (
        '{"ID": "G1", "Zip": "01234", "N": 7001, "Ok": true, "Tags": ["a", "b"], "X": null}\n'
        "\n"
        '{"ID": "G2", "Zip": "00501", "N": 7002, "Ok": false, "Tags": [], "Extra": {"k": 1}}\r\n'
    ))
    frame, _ = frame_of(open_ndjson, path)
    assert frame["Zip"].to_list() == ["01234", "00501"]
    assert frame["N"].to_list() == ["7001", "7002"]
    assert frame["Ok"].to_list() == ["true", "false"]
    assert frame["Tags"].to_list() == ['["a","b"]', "[]"]  # nested values as JSON text
    assert frame["Extra"].to_list() == [None, '{"k":1}']  # keys in order first seen
    assert frame["X"].to_list() == [None, None]
    assert frame["_record"].to_list() == [1, 2]
    assert frame["_line"].to_list() == [1, 3]  # the blank line is skipped, lines still hold


@pytest.mark.parametrize(("text", "line", "says"), [
    ('{"ID": "G1"}\n{"ID": "G2",\n', 2, "not valid JSON"),
    ('{"ID": "G1"}\n\n["G2"]\n', 3, "a JSON list, not an object"),
])
def test_a_bad_ndjson_line_is_named(write, text, line, says):
    path = write("g.jsonl", text)
    with pytest.raises(SourceError, match=rf"^g\.jsonl:{line}: line is {says}"):
        frame_of(open_ndjson, path)


def test_ndjson_gz(write):
    path = write("g.ndjson.gz", gzip.compress(b'{"ID": "G1"}\n'))
    frame, _ = frame_of(open_ndjson, path)
    assert frame["ID"].to_list() == ["G1"]


# -- null_values -----------------------------------------------------------------------------


def test_null_values_are_exact_unless_told_to_ignore_case(write):
    path = write("g.csv", "ID,Phone\nG1,null\nG2,NULL\nG3,Null\nG4,555\n")
    exact, _ = frame_of(open_csv, path)
    assert exact["Phone"].to_list() == ["null", None, "Null", "555"]
    loose, _ = frame_of(open_csv, path, null_values_ignore_case=True)
    assert loose["Phone"].to_list() == [None, None, None, "555"]


@pytest.mark.parametrize("values", [["", "N/A", "NULL"], ["Unknown", "-"], ["nié"], ["x" * 13]])
def test_null_values_ignoring_case_match_exactly_what_lower_casing_would(values):
    """The listed spellings (or, for a value that is not ASCII or has too many, the cells
    lower-cased) make null exactly the cells that lower-case to a null value: the Kelvin sign
    is a "k", a dotted capital I is no "i"."""
    from etl.read.nulls import case_spellings, null_exprs
    from etl.spec.model import Source

    cells = ["", "n/a", "N/a", "NULL", "nuLL", "null ", "NUL", "unknown", "UNKNOWN",
             "UN\u212aNOWN", "unknowN", "-", "--", "NIÉ", "nié", "N\u0130É", "x" * 13,
             "X" * 13, "n\u2215a", None, "555"]
    source = Source.model_validate(
        {"path": "x.csv", "null_values": values, "null_values_ignore_case": True})
    frame = pl.DataFrame({"v": cells})
    got = frame.select(null_exprs(["v"], source))["v"].to_list()
    wanted = {v.lower() for v in values}
    assert got == [None if c is None or c.lower() in wanted else c for c in cells]
    assert (case_spellings(values) is None) == (values in (["nié"], ["x" * 13]))
    # a "k" has three spellings (k, K, the Kelvin sign): counted as such, not as two
    assert case_spellings(["k" * 8]) is None  # 3**8 = 6,561 spellings: lower-cased instead
    assert len(case_spellings(["k" * 7]) or []) == 3**7


def test_bundled_contacts_spec_sends_no_null_phone():
    root = Path(__file__).parent.parent
    result = validate_pipeline(load_spec(root / "pipelines" / "legacy_contacts.yaml"), today=TODAY)
    assert result.valid > 0
    assert not any('"null"' in p for p in result.payloads["_payload"].to_list())


# -- line endings ----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "cut"), [(100, False), ((1 << 16) - 10, False),
                                         (200_000, False), (200_000, True)])
def test_a_crlf_file_never_warns_of_mixed_endings(write, size, cut):
    """The first 64 KiB block is checked for lone CRs; a CRLF ending a file that fits in the
    block, or cut by the block's end (its CR the block's last byte), is no lone CR."""
    head = b"ID,Note\r\n"
    if cut:  # a first record whose CR is byte 65535, the last of the block
        head += b"G0," + b"y" * ((1 << 16) - 1 - len(head) - 3) + b"\r\n"
        assert head[(1 << 16) - 1 : (1 << 16) + 1] == b"\r\n"
    line = b"G1,x\r\n"
    data = head + line * max(1, (size - len(head)) // len(line))
    path = write("g.csv", data)
    frame, notes = frame_of(open_csv, path)
    assert not any("mix" in n for n in notes), notes
    assert frame["ID"].str.starts_with("G").all()
