#!/usr/bin/env python3
"""Writes the bad-input corpus that tests/test_bad_inputs.py runs through `etl validate`.

    python tests/bad_inputs/generate.py            # (re)write the small files in this folder
    python tests/bad_inputs/generate.py --check    # exit 1 if a committed file differs
    python tests/bad_inputs/generate.py --large DIR   # the large cases (not committed)

Every file is a pure function of this script (no randomness), so the committed corpus can be
checked against it. The data files share one layout, `GiftID,DonorID,First,Zip,Date,Amount,Notes`,
read by the base spec in the test (`spec_*.yaml` files here are whole specs for the YAML cases
and read `clean.csv`). Large files (a 1 MB field) are written by `write_large` at test time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import sys
import zipfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
HEADER = b"GiftID,DonorID,First,Zip,Date,Amount,Notes"


def _csv(*rows: bytes, header: bytes = HEADER, eol: bytes = b"\n") -> bytes:
    return eol.join((header, *rows)) + eol


def _row(gift: str, first: bytes = b"Ann", *, zip_: bytes = b"01234", date: bytes = b"01/02/2020",
         amount: bytes = b"25.00", notes: bytes = b"ok", donor: bytes = b"D1") -> bytes:
    return b",".join((gift.encode(), donor, first, zip_, date, amount, notes))


def _parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def _typed() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "GiftID": [101, 102],
            "DonorID": [7, 8],
            "First": ["Ann", None],
            "Zip": [1234, 2345],
            "Date": [dt.date(2020, 1, 2), dt.date(2020, 1, 3)],
            "Amount": [25.5, 26.0],
            "Notes": ["a", "b"],
        }
    )


SPEC = """name: bad_input_yaml
target: gift_transaction
source:
  path: clean.csv
keys: {source: Test, id: {column: GiftID}}
mappings:
  amount: {column: Amount, transforms: [parse_amount]}
  giftDate: {column: Date, transforms: [{parse_date: {formats: ["%m/%d/%Y"]}}]}
  giftType: {constant: Check}
  contact.referenceId: DonorID
  contact.firstname: First
  notes: Notes
"""


def _spec(old: str, new: str) -> bytes:
    assert SPEC.count(old) == 1, old
    return SPEC.replace(old, new).encode()


def _xlsx() -> bytes:
    """A minimal zip laid out like an .xlsx workbook (fixed time stamps: deterministic)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in (("[Content_Types].xml", "<Types/>"), ("xl/workbook.xml", "<w/>")):
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), text)
    return buf.getvalue()


def _workbook(rows: list[list[object]], sheet: str = "Gifts", start: int = 0) -> bytes:
    """A real .xlsx (xlsxwriter) with typed cells; a fixed creation time: deterministic."""
    import xlsxwriter  # a dev dependency: it writes, fastexcel only reads

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    book.set_properties({"created": dt.datetime(2020, 1, 1)})
    ws = book.add_worksheet(sheet)
    date_fmt = book.add_format({"num_format": "yyyy-mm-dd"})
    for r, row in enumerate(rows, start=start):
        for c, value in enumerate(row):
            if isinstance(value, dt.date):
                ws.write_datetime(r, c, dt.datetime.combine(value, dt.time()), date_fmt)
            elif value is not None:
                ws.write(r, c, value)
    book.close()
    return buf.getvalue()


XL_HEADER = HEADER.decode().split(",")
XL_ROWS: list[list[object]] = [
    XL_HEADER,
    ["G1", 7001, "Ann", "01234", "01/02/2020", 25, "ok"],  # DonorID a number cell
    ["G2", "D2", "Bob", "00501", dt.date(2020, 12, 25), 30.5, "ok"],  # a real date cell
    [],  # an empty row: skipped, the row numbers after it still hold
    ["G3", "D3", "Cy", "02134", 44197, "12.00", "ok"],  # an Excel serial number
    ["G4", "D4", "Dee", "02134", "01/02/2020", "abc", "ok"],  # rejected at sheet row 6
]


def _zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _ndjson(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


ND_G1 = ('{"GiftID": "G1", "DonorID": 7001, "First": "Ann", "Zip": "01234", '
         '"Date": "01/02/2020", "Amount": "25.00", "Notes": {"tags": ["a"]}}')
ND_G2 = ('{"GiftID": "G2", "DonorID": "D2", "First": "Bob", "Zip": "00501", '
         '"Date": "01/03/2020", "Amount": 30.5, "Notes": null}')


def _deep_spec(levels: int) -> bytes:
    return SPEC.encode() + b"description: " + b"[" * levels + b"]" * levels + b"\n"


def corpus() -> dict[str, Callable[[], bytes]]:
    """File name -> its bytes (as a thunk)."""
    ok = _row("G1")
    parquet = _parquet(_typed())
    return {
        # -- CSV: encodings ------------------------------------------------------------------
        "clean.csv": lambda: _csv(ok, _row("G2", b"Bob")),
        "bom.csv": lambda: b"\xef\xbb\xbf" + _csv(ok),
        "cp1252.csv": lambda: _csv(_row("G1", "Müller".encode("cp1252")),
                                   _row("G2", "O’Brien".encode("cp1252"))),
        "cp1252_undefined_byte.csv": lambda: _csv(ok, _row("G2", b"B\x81b")),
        "latin1.csv": lambda: _csv(_row("G1", "José".encode("latin-1")),
                                   _row("G2", "Zoë".encode("latin-1"))),
        "utf8_accents.csv": lambda: _csv(_row("G1", "José".encode()), _row("G2", "Zoë".encode())),
        "utf8_polish.csv": lambda: _csv(ok, _row("G2", "Paweł".encode())),
        "cp1252_caps_quote.csv": lambda: _csv(_row("G1", "JOSÉ’S".encode("cp1252")),
                                              _row("G2", "Zoë".encode("cp1252"))),
        "utf8_then_cp1252.csv": lambda: _csv(_row("G1", "Zoë".encode("cp1252")),
                                             _row("G2", "José".encode())),
        "bom_mid_file.csv": lambda: _csv(ok) + b"\xef\xbb\xbf" + _csv(_row("G2")),
        "bom_in_value.csv": lambda: _csv(ok, _row("\ufeffG2")),
        # -- files that are no CSV text -------------------------------------------------------
        "gzip_named_csv.csv": lambda: gzip.compress(_csv(ok, _row("G2")), mtime=0),
        "xlsx_named_csv.csv": _xlsx,
        "parquet_named_csv.csv": lambda: b"PAR1" + b"\x00" * 24 + b"PAR1",
        "xls_named_csv.csv": lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 56,
        "pdf_named_csv.csv": lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        # -- Excel, compressed, NDJSON ---------------------------------------------------------
        "excel.xlsx": lambda: _workbook(XL_ROWS),
        "excel_title_rows.xlsx": lambda: _workbook([["Gifts, December export"], [],
                                                    *XL_ROWS[:3]]),
        "gifts.csv.gz": lambda: gzip.compress(_csv(ok, _row("G2", b"Bob")), mtime=0),
        "cp1252.csv.gz": lambda: gzip.compress(_csv(_row("G1", "Müller".encode("cp1252"))),
                                               mtime=0),
        "plain_text.csv.gz": lambda: _csv(ok),
        "bomb.csv.gz": lambda: gzip.compress(_csv(_row("G1", notes=b"0" * (3 << 20))), mtime=0),
        "one_member.zip": lambda: _zip_of({"gifts.csv": _csv(ok, _row("G2", b"Bob"))}),
        "two_members.zip": lambda: _zip_of({"a.csv": _csv(ok), "b.csv": _csv(ok)}),
        "gifts.ndjson": lambda: _ndjson(ND_G1, "", ND_G2),
        "bad_line.ndjson": lambda: _ndjson(ND_G1, ND_G2, ND_G2.replace("G2", "G3")[:-1]),
        "array_line.jsonl": lambda: _ndjson(ND_G1, '["G2", "D2"]'),
        "null_in_lower_case.csv": lambda: _csv(ok, _row("G2", b"null"), _row("G3", b"Null")),
        # -- CSV: line endings and quoting -----------------------------------------------------
        "crlf.csv": lambda: _csv(ok, _row("G2", b"Bob"), eol=b"\r\n"),
        "mixed_endings.csv": lambda: HEADER + b"\r\n" + ok + b"\n" + _row("G2", b"Bob") + b"\r"
        + _row("G3", b"Cy") + b"\r\n",
        "cr_only.csv": lambda: _csv(ok, _row("G2", b"Bob"), eol=b"\r"),
        "quoted_newline.csv": lambda: _csv(_row("G1", notes=b'"line one\nline two, with comma"'),
                                           _row("G2", b'"Bob ""B"" Jones"')),
        "quoted_multiline_comma.csv": lambda: _csv(_row("G1", notes=b'"one\ntwo, three\nfour"'),
                                                   _row("G2")),
        "unterminated_quote.csv": lambda: _csv(ok, _row("G2", notes=b'"never closed'),
                                               _row("G3")),
        "unterminated_header.csv": lambda: _csv(ok, header=b'GiftID,"DonorID,First'),
        "ragged_short.csv": lambda: _csv(ok, b"G2,D1,Ann,01234,01/02/2020,25.00", _row("G3")),
        "ragged_long.csv": lambda: _csv(ok, _row("G2") + b",extra", _row("G3")),
        "nul_bytes.csv": lambda: _csv(ok, _row("G2", b"A\x00nn")),
        "empty.csv": lambda: b"",
        "header_only.csv": lambda: HEADER + b"\n",
        "blank_lines.csv": lambda: _csv(ok, b"", _row("G2", b"Bob"), b""),
        "duplicate_header.csv": lambda: _csv(ok + b",x", header=HEADER + b",First"),
        "header_spaces.csv": lambda: _csv(ok, header=b"GiftID ,DonorID,First  ,Zip,Date,Amount,"
                                                      b"Notes "),
        "semicolon.csv": lambda: _csv(ok.replace(b",", b";"), header=HEADER.replace(b",", b";")),
        "headerless.csv": lambda: ok + b"\n",
        # -- CSV: values ---------------------------------------------------------------------
        "leading_zeros.csv": lambda: _csv(_row("007", donor=b"00042", zip_=b"01234"),
                                          _row("G2", zip_=b"00501")),
        "numbers.csv": lambda: _csv(
            _row("G1", amount=b"1e3"), _row("G2", amount=b'"25,000"'),
            _row("G3", amount=b"(12.00)"), _row("G4", amount='"€40,00"'.encode()),
            _row("G5", amount=b"0.001"), _row("G6", amount=b'"$1,234.50"'),
            _row("G7", amount=b"25,00"),
        ),
        "decimal_comma.csv": lambda: _csv(_row("G1", amount='"€40,00"'.encode()),
                                          _row("G2", amount=b'"1.234,50"')),
        "dates.csv": lambda: _csv(_row("G1", date=b"02/30/2022"), _row("G2", date=b"2021-13-01"),
                                  _row("G3", date=b"12/25/2020")),
        "ambiguous_date.csv": lambda: _csv(_row("G1", date=b"01/02/2020"),
                                           _row("G2", date=b"12/25/2020")),
        "excel_serial.csv": lambda: _csv(_row("G1", date=b"44197"), _row("G2", date=b"12/25/2020")),
        "duplicate_ids.csv": lambda: _csv(ok, _row("G1", b"Bob"), _row("G3")),
        "case_duplicate_ids.csv": lambda: _csv(_row("g1"), _row("G1", b"Bob"), _row(" G1 "),
                                               _row("G4")),
        "old_dates.csv": lambda: _csv(_row("G1", date=b"01/02/1000"),
                                      _row("G2", date=b"12/31/1899"),
                                      _row("G3", date=b"01/01/1900")),
        "big_amounts.csv": lambda: _csv(_row("G1", amount=b"99999999999999.99"),
                                        _row("G2", amount=b"9999999999999999.99"),
                                        _row("G3", amount=b"12345678901234567"),
                                        _row("G4", amount=b"25.9999999999")),
        "formula_cells.csv": lambda: _csv(_row("G1", b"=HYPERLINK(\"http://x\")"),
                                          _row("G2", amount=b"-5")),
        # -- Parquet -------------------------------------------------------------------------
        "typed.parquet": lambda: parquet,
        "datetime_decimal.parquet": lambda: _parquet(pl.DataFrame({
            "GiftID": ["G1"], "DonorID": ["D1"], "First": ["Ann"], "Zip": ["01234"],
            "Date": [dt.datetime(2020, 1, 2, 13, 30)],
            "Amount": pl.Series([Decimal("25.50")], dtype=pl.Decimal(10, 2)),
            "Notes": pl.Series(["n"], dtype=pl.Categorical),
        })),
        "nested.parquet": lambda: _parquet(pl.DataFrame({
            "GiftID": ["G1", "G2"], "DonorID": ["D1", "D2"], "First": ["Ann", "Bob"],
            "Zip": ["01234", "02345"], "Date": ["01/02/2020", "01/03/2020"],
            "Amount": ["25.00", "26.00"],
            "Notes": [{"tags": ["a", "b"], "quote": 'say "hi"'}, {"tags": [], "quote": None}],
        })),
        "nan_amount.parquet": lambda: _parquet(_typed().with_columns(
            pl.Series("Amount", [float("nan"), float("inf")]))),
        "tz_datetime.parquet": lambda: _parquet(pl.DataFrame({
            "GiftID": ["G1", "G2", "G3"], "DonorID": ["D1", "D2", "D3"],
            "First": ["Ann", "Bob", "Cy"], "Zip": ["01234", "02345", "03456"],
            "Date": pl.Series([dt.datetime(2020, 1, 1, 23, 30)] * 2
                              + [dt.datetime(2020, 1, 2, 0, 30)]
                              ).dt.replace_time_zone("America/Los_Angeles"),
            "Amount": ["25.00", "26.00", "27.00"], "Notes": ["a", "b", "c"],
        })),
        "naive_datetime.parquet": lambda: _parquet(_typed().with_columns(
            pl.Series("Date", [dt.datetime(2020, 1, 1, 23, 30), dt.datetime(2020, 1, 2, 0, 30)]))),
        "decimal_precision.parquet": lambda: _parquet(_typed().with_columns(pl.Series(
            "Amount", [Decimal("25.9999999999"), Decimal("25.5000000000")],
            dtype=pl.Decimal(38, 10)))),
        "float_amounts.parquet": lambda: _parquet(_typed().with_columns(
            pl.Series("Amount", [0.1 + 0.2, 25.99]))),
        "corrupt_footer.parquet": lambda: parquet[:-8] + b"XXXXXXXX",
        "truncated.parquet": lambda: parquet[: len(parquet) // 2],
        "not_parquet.parquet": lambda: _csv(ok),
        "missing_column.parquet": lambda: _parquet(_typed().drop("Notes")),
        # -- YAML ----------------------------------------------------------------------------
        "spec_ok.yaml": lambda: SPEC.encode(),
        "spec_syntax_error.yaml": lambda: _spec("{constant: Check}", "{constant: Check"),
        "spec_typo_key.yaml": lambda: _spec("  path: clean.csv", "  path: clean.csv\n"
                                            "  encodng: cp1252"),
        "spec_wrong_type.yaml": lambda: SPEC.encode() + b"load: {batch_size: many}\n",
        "spec_unknown_transform.yaml": lambda: _spec("[parse_amount]", "[parse_amout]"),
        "spec_missing_column.yaml": lambda: _spec("notes: Notes", "notes: Memo"),
        "spec_tab_indent.yaml": lambda: _spec("  giftType:", "\tgiftType:"),
        "spec_alias_bomb.yaml": lambda: (
            b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
            + b"".join(f"{c}: &{c} [{',' .join(['*' + p] * 9)}]\n".encode()
                       for p, c in zip("abcdefgh", "bcdefghi", strict=True))
            + SPEC.encode()),
        "spec_python_tag.yaml": lambda: _spec(
            "{constant: Check}", '!!python/object/apply:os.system ["echo pwned"]'),
        "spec_unknown_encoding.yaml": lambda: _spec("  path: clean.csv", "  path: clean.csv\n"
                                                    "  encoding: klingon"),
        "spec_duplicate_key.yaml": lambda: SPEC.encode() + b"name: again\n",
        "spec_empty.yaml": lambda: b"# nothing but a comment\n",
        "spec_not_a_mapping.yaml": lambda: b"- name\n- target\n",
        "spec_bad_regex.yaml": lambda: SPEC.encode() + b'rules:\n  notes: {pattern: "[a-"}\n',
        "spec_bad_date_format.yaml": lambda: _spec("%m/%d/%Y", "%m/%q/%Y"),
        "spec_unknown_field.yaml": lambda: _spec("notes: Notes", "note: Notes"),
        "spec_not_utf8.yaml": lambda: _spec("name: bad_input_yaml", "name: bad_input_yaml\n"
                                            "description: Caf\xe9").decode().encode("latin-1"),
        "spec_missing_file.yaml": lambda: _spec("path: clean.csv", "path: no_such_file.csv"),
        "spec_base64_encoding.yaml": lambda: _spec("  path: clean.csv", "  path: clean.csv\n"
                                                   "  encoding: base64"),
        "spec_rot13_encoding.yaml": lambda: _spec("  path: clean.csv", "  path: clean.csv\n"
                                                  "  encoding: rot13"),
        "spec_zlib_encoding.yaml": lambda: _spec("  path: clean.csv", "  path: clean.csv\n"
                                                 "  encoding: zlib_codec"),
        "spec_deep_nesting.yaml": lambda: _deep_spec(1000),
        "spec_bad_timezone.yaml": lambda: _spec("  path: clean.csv", "  path: clean.csv\n"
                                                "  timezone: Mars/Olympus"),
        "spec_earliest_on_text.yaml": lambda: SPEC.encode() + b"rules:\n  notes: {earliest: "
                                                              b"1900-01-01}\n",
    }


BIG = 1_000_000


def write_large(folder: Path) -> dict[str, Path]:
    """The large cases: a 1 MB quoted field with commas and newlines, and a 1 MB unquoted one."""
    folder.mkdir(parents=True, exist_ok=True)
    quoted = (b"abc, \n" * (BIG // 6 + 1))[:BIG]
    plain = b"x" * BIG
    path = folder / "big_field.csv"
    path.write_bytes(_csv(_row("G1", notes=b'"' + quoted + b'"'), _row("G2", notes=plain),
                          _row("G3")))
    return {"big_field.csv": path}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    ap.add_argument("--large", type=Path, help="write the large cases into this folder")
    a = ap.parse_args(argv)
    if a.large:
        for name, path in write_large(a.large).items():
            print(f"{name}: {path} ({path.stat().st_size:,} bytes)")
        return 0
    stale = []
    for name, make in corpus().items():
        data, path = make(), HERE / name
        if a.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.write_bytes(data)
    if stale:
        print("differs from generate.py: " + ", ".join(stale), file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
