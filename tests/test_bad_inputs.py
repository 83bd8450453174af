"""The bad-input corpus (tests/bad_inputs/, written by its generate.py), one case per row.

Every case goes through the real CLI (`etl validate SPEC --out DIR`, click's CliRunner with
catch_exceptions=False: an unexpected exception fails the test) and must end in exactly the
documented outcome:

- Ok:        exit 0, every row valid, the listed payload values exactly (no silent corruption);
- Rejects:   exit 1, exactly these (record, field, rule) rejects, the rest valid;
- SpecFail:  exit 2, the message names the YAML file, the line and the key;
- SourceFail: exit 3, the message names the data file, the line (where meaningful) and the
             column or the problem.

For every file that is read, report.json's accounting holds: read == valid + rejected (per file
and overall) and rejects.csv / payloads.jsonl have one line per rejected / valid row. No output
ever contains "Traceback".
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from etl.cli.app import main

CORPUS = Path(__file__).parent / "bad_inputs"

import sys  # noqa: E402

sys.path.insert(0, str(CORPUS))
import generate  # noqa: E402


@dataclass(frozen=True)
class Ok:
    """All rows valid; `values`: transactionId -> {dotted payload path: exact value}."""

    values: dict[str, dict[str, Any]]
    warning: str | None = None
    raw: tuple[str, ...] = ()  # exact text in payloads.jsonl (money: no float on the way)
    quiet: bool = False  # no warning at all in report.json


@dataclass(frozen=True)
class Rejects:
    """Exactly these (record, field, rule) failures; `valid` rows pass."""

    failures: set[tuple[int, str, str]]
    valid: int
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: tuple[str, ...] = ()  # exact text in payloads.jsonl


@dataclass(frozen=True)
class SpecFail:
    """Exit 2; the message starts with `<spec>:<line>:` and contains every part of `says`."""

    line: int | None
    says: tuple[str, ...]


@dataclass(frozen=True)
class SourceFail:
    """Exit 3; the message starts with `<file>:<line>:` (no line: `<file>:`) and says..."""

    file: str
    line: int | None
    says: tuple[str, ...]


Outcome = Ok | Rejects | SpecFail | SourceFail


@dataclass(frozen=True)
class Case:
    id: str
    file: str  # the data file (or, for YAML cases, the spec file)
    outcome: Outcome
    source: dict[str, Any] = field(default_factory=dict)  # spec `source:` options
    mappings: dict[str, Any] = field(default_factory=dict)  # spec mapping overrides
    spec: str | None = None  # a whole spec from the corpus instead of the base spec
    large: bool = False  # written by generate.write_large at test time
    keys: dict[str, Any] = field(default_factory=dict)  # spec `keys:` overrides
    extra: dict[str, Any] = field(default_factory=dict)  # more top-level spec keys (rules:)
    fifo: bool = False  # the data file is a named pipe made at test time (never opened)


MDY = ["%m/%d/%Y"]


def base_spec(case: Case) -> dict[str, Any]:
    mappings: dict[str, Any] = {
        "amount": {"column": "Amount", "transforms": ["parse_amount"]},
        "giftDate": {"column": "Date", "transforms": [{"parse_date": {"formats": MDY}}]},
        "giftType": {"constant": "Check"},
        "contact.referenceId": "DonorID",
        "contact.firstname": "First",
        "contact.address.postal": "Zip",
        "notes": "Notes",
    }
    mappings.update(case.mappings)
    return {
        "name": "bad_input",
        "target": "gift_transaction",
        "source": {"path": case.file, **case.source},
        "keys": {"source": "Test", "id": {"column": "GiftID"}, **case.keys},
        "mappings": mappings,
        **case.extra,
    }


G1 = {"amount": 25.0, "giftDate": "2020-01-02", "contact.firstname": "Ann",
      "contact.address.postal": "01234", "notes": "ok"}
CP1252 = {"encoding": "cp1252"}
AMOUNT_COMMA = {"amount": {"column": "Amount", "transforms": [{"parse_amount": {"decimal": ","}}]}}
TWO_FORMATS = {"giftDate": {"column": "Date", "transforms": [
    {"parse_date": {"formats": ["%m/%d/%Y", "%d/%m/%Y"]}}]}}
EXCEL = {"giftDate": {"column": "Date", "transforms": [
    {"parse_date": {"formats": MDY, "excel_serial": True}}]}}
ISO = {"giftDate": {"column": "Date", "transforms": [{"parse_date": {"formats": ["%Y-%m-%d"]}}]}}
HEADERLESS = {"header": False,
              "columns": ["GiftID", "DonorID", "First", "Zip", "Date", "Amount", "Notes"]}
NOT_UTF8 = "byte 0x92 is not valid UTF-8"
MOJIBAKE = ("UTF-8 text in a file declared", "set source.encoding: utf-8")
TOO_PRECISE = "has more than 2 decimals"
XL_DATES = {"giftDate": {"column": "Date", "transforms": [
    {"parse_date": {"formats": [*MDY, "%Y-%m-%d"], "excel_serial": True}}]}}
PARQUET_DATE = {"giftDate": {"column": "Date", "transforms": ["parse_date"]}}
DUPES = {(1, "transactionId", "duplicate"), (2, "transactionId", "duplicate"),
         (3, "transactionId", "duplicate")}

CASES = [
    # -- encodings -----------------------------------------------------------------------------
    Case("utf8_bom_read_as_utf8", "bom.csv", Ok({"G1": G1})),
    Case("utf8_bom_read_as_utf8_sig", "bom.csv", Ok({"G1": G1}), {"encoding": "utf-8-sig"}),
    Case("cp1252", "cp1252.csv", Ok({"G1": {"contact.firstname": "Müller"},
                                     "G2": {"contact.firstname": "O’Brien"}}), CP1252),
    Case("cp1252_read_as_utf8", "cp1252.csv", SourceFail("cp1252.csv", 2, ("byte 0xfc",
                                                                          "source.encoding"))),
    Case("cp1252_undefined_byte", "cp1252_undefined_byte.csv",
         SourceFail("cp1252_undefined_byte.csv", 3, ("byte 0x81", "cp1252")), CP1252),
    Case("latin1", "latin1.csv", Ok({"G1": {"contact.firstname": "José"},
                                     "G2": {"contact.firstname": "Zoë"}}), {"encoding": "latin-1"}),
    Case("latin1_read_as_utf8", "latin1.csv", SourceFail("latin1.csv", 2, ("byte 0xe9",))),
    Case("utf8_declared_cp1252", "utf8_accents.csv",
         SourceFail("utf8_accents.csv", 2, (*MOJIBAKE, "C3 A9", "'Ã©'")), CP1252),
    Case("utf8_declared_latin1", "utf8_accents.csv",
         SourceFail("utf8_accents.csv", 2, (*MOJIBAKE, "latin-1")), {"encoding": "latin-1"}),
    Case("utf8_polish_declared_cp1252", "utf8_polish.csv",
         SourceFail("utf8_polish.csv", 3, (*MOJIBAKE, "non-ASCII bytes are valid UTF-8")), CP1252),
    Case("utf8_pasted_into_cp1252", "utf8_then_cp1252.csv",
         SourceFail("utf8_then_cp1252.csv", 3, (*MOJIBAKE, "C3 A9")), CP1252),
    Case("cp1252_caps_before_curly_quote", "cp1252_caps_quote.csv",
         Ok({"G1": {"contact.firstname": "JOSÉ’S"}, "G2": {"contact.firstname": "Zoë"}}),
         CP1252),
    Case("utf8_read_as_utf8", "utf8_accents.csv", Ok({"G1": {"contact.firstname": "José"},
                                                       "G2": {"contact.firstname": "Zoë"}})),
    Case("bom_in_the_middle", "bom_mid_file.csv",
         SourceFail("bom_mid_file.csv", 3, ("byte-order mark", "middle of the file"))),
    Case("bom_in_the_middle_utf8_sig", "bom_mid_file.csv",
         SourceFail("bom_mid_file.csv", 3, ("byte-order mark",)), {"encoding": "utf-8-sig"}),
    Case("bom_inside_an_id", "bom_in_value.csv",
         SourceFail("bom_in_value.csv", 3, ("byte-order mark",))),
    Case("bom_in_the_middle_cp1252", "bom_mid_file.csv",
         SourceFail("bom_mid_file.csv", 3, (*MOJIBAKE, "byte-order mark")), CP1252),
    # -- not CSV text at all ------------------------------------------------------------------
    Case("gzip_named_csv", "gzip_named_csv.csv",
         SourceFail("gzip_named_csv.csv", None, ("gzip-compressed", "not CSV text",
                                                 "source.compression: gzip"))),
    Case("xlsx_named_csv", "xlsx_named_csv.csv",
         SourceFail("xlsx_named_csv.csv", None,
                    ("this is an Excel (xlsx) file", "set source.format: excel"))),
    Case("parquet_named_csv", "parquet_named_csv.csv",
         SourceFail("parquet_named_csv.csv", None, ("a Parquet file", "source.format: parquet"))),
    Case("gzip_declared_parquet", "gzip_named_csv.csv",
         SourceFail("gzip_named_csv.csv", None, ("not a readable Parquet file", "gzip")),
         {"format": "parquet"}),
    Case("xls_named_csv", "xls_named_csv.csv",
         SourceFail("xls_named_csv.csv", None, ("this is an Excel (xls) file",
                                                "set source.format: excel"))),
    Case("pdf_named_csv", "pdf_named_csv.csv",  # never "byte 0xe2 is not valid UTF-8"
         SourceFail("pdf_named_csv.csv", None, ("this is a PDF document", "export the data"))),
    Case("xlsx_declared_csv", "excel.xlsx",
         SourceFail("excel.xlsx", None, ("this is an Excel (xlsx) file", "not CSV text",
                                         "set source.format: excel")), {"format": "csv"}),
    Case("fifo_source", "pipe.csv", SourceFail("pipe.csv", None, ("not a regular file", "FIFO")),
         fifo=True),
    # -- line endings, quoting, shape ---------------------------------------------------------
    # a CRLF file under 64 KiB once warned "line endings mix CR with LF/CRLF": never again
    Case("crlf", "crlf.csv", Ok({"G1": G1, "G2": {"notes": "ok", "contact.firstname": "Bob"}},
                                quiet=True)),
    Case("mixed_line_endings", "mixed_endings.csv",
         Ok({"G1": G1, "G2": {"notes": "ok"}, "G3": {"contact.firstname": "Cy"}},
            warning="lone CRs converted")),
    Case("cr_only_line_endings", "cr_only.csv", Ok({"G1": G1, "G2": {"notes": "ok"}},
                                                   warning="CR-only")),
    Case("quoted_embedded_newline", "quoted_newline.csv",
         Ok({"G1": {"notes": "line one\nline two, with comma"},
             "G2": {"contact.firstname": 'Bob "B" Jones'}})),
    Case("quoted_newlines_with_commas_between", "quoted_multiline_comma.csv",
         Ok({"G1": {"notes": "one\ntwo, three\nfour"}, "G2": G1})),
    Case("unterminated_quote", "unterminated_quote.csv",
         SourceFail("unterminated_quote.csv", 3, ("never closed", "'Notes'"))),
    Case("unterminated_quote_in_header", "unterminated_header.csv",
         SourceFail("unterminated_header.csv", 1, ("header is never closed",))),
    Case("ragged_short_row", "ragged_short.csv",
         Rejects({(2, "(record)", "ragged")}, valid=2)),
    Case("ragged_long_row", "ragged_long.csv", Rejects({(2, "(record)", "ragged")}, valid=2)),
    Case("nul_byte", "nul_bytes.csv", Rejects({(2, "contact.firstname", "control_chars")},
                                              valid=1)),
    Case("empty_file", "empty.csv", SourceFail("empty.csv", None, ("empty",))),
    Case("header_only", "header_only.csv", Ok({})),
    Case("blank_lines", "blank_lines.csv", Ok({"G1": G1, "G2": {"contact.firstname": "Bob"}},
                                              warning="blank line")),
    Case("duplicate_header_names", "duplicate_header.csv",
         SourceFail("duplicate_header.csv", 1, ("duplicate column", "'First'"))),
    Case("header_trailing_spaces", "header_spaces.csv", Ok({"G1": G1}, warning="trimmed")),
    Case("wrong_delimiter", "semicolon.csv",
         SourceFail("semicolon.csv", 1, ("missing", "'GiftID'", "delimiter: ';'"))),
    Case("headerless_with_columns", "headerless.csv", Ok({"G1": G1}), HEADERLESS),
    Case("one_megabyte_field", "big_field.csv",
         Ok({"G1": {"notes": ("abc, \n" * (generate.BIG // 6 + 1))[: generate.BIG].strip()},
             "G2": {"notes": "x" * generate.BIG}, "G3": G1}), large=True),
    # -- values --------------------------------------------------------------------------------
    Case("leading_zeros", "leading_zeros.csv",
         Ok({"007": {"contact.referenceId": "00042", "contact.address.postal": "01234"},
             "G2": {"contact.address.postal": "00501"}})),
    Case("number_formats", "numbers.csv",
         Rejects({(1, "amount", "parse_amount"), (3, "amount", "positive"),
                  (4, "amount", "parse_amount"), (5, "amount", "parse_amount"),
                  (7, "(record)", "ragged")}, valid=2,
                 values={"G2": {"amount": 25000.0}, "G6": {"amount": 1234.5}})),
    Case("euro_decimal_comma", "decimal_comma.csv",
         Ok({"G1": {"amount": 40.0}, "G2": {"amount": 1234.5}}), mappings=AMOUNT_COMMA),
    Case("impossible_dates", "dates.csv",
         Rejects({(1, "giftDate", "parse_date"), (2, "giftDate", "parse_date")}, valid=1,
                 values={"G3": {"giftDate": "2020-12-25"}}), mappings={**ISO, **TWO_FORMATS}),
    Case("ambiguous_date_two_formats", "ambiguous_date.csv",
         Rejects({(1, "giftDate", "parse_date")}, valid=1,
                 values={"G2": {"giftDate": "2020-12-25"}}), mappings=TWO_FORMATS),
    Case("excel_serial_date", "excel_serial.csv",
         Ok({"G1": {"giftDate": "2021-01-01"}, "G2": {"giftDate": "2020-12-25"}}),
         mappings=EXCEL),
    Case("excel_serial_not_allowed", "excel_serial.csv",
         Rejects({(1, "giftDate", "parse_date")}, valid=1)),
    Case("duplicate_ids", "duplicate_ids.csv",
         Rejects({(1, "transactionId", "duplicate"), (2, "transactionId", "duplicate")},
                 valid=1)),
    Case("ids_differing_in_case_or_spaces", "case_duplicate_ids.csv", Rejects(DUPES, valid=1)),
    Case("ids_differing_in_case_keep_first", "case_duplicate_ids.csv",
         Rejects(DUPES - {(1, "transactionId", "duplicate")}, valid=2,
                 values={"g1": {"contact.firstname": "Ann"}}), keys={"duplicates": "keep_first"}),
    Case("ids_differing_in_case_keep_last", "case_duplicate_ids.csv",
         Rejects(DUPES - {(3, "transactionId", "duplicate")}, valid=2,
                 values={"G1": {"contact.firstname": "Ann"}}), keys={"duplicates": "keep_last"}),
    Case("dates_before_1900", "old_dates.csv",
         Rejects({(1, "giftDate", "earliest"), (2, "giftDate", "earliest")}, valid=1,
                 values={"G3": {"giftDate": "1900-01-01"}})),
    Case("dates_before_1900_allowed", "old_dates.csv",
         Rejects({(1, "giftDate", "earliest")}, valid=2,
                 values={"G2": {"giftDate": "1899-12-31"}}),
         extra={"rules": {"giftDate": {"earliest": "1800-01-01"}}}),
    Case("amounts_exact_and_too_large", "big_amounts.csv",
         Rejects({(3, "amount", "parse_amount"), (4, "amount", "parse_amount")}, valid=2,
                 raw=('"amount":99999999999999.99,', '"amount":9999999999999999.99,')),
         extra={"rules": {"amount": {"max": 1e20}}}),
    Case("formula_like_text", "formula_cells.csv",
         Rejects({(2, "amount", "positive")}, valid=1,
                 values={"G1": {"contact.firstname": '=HYPERLINK("http://x")'}})),
    # -- Parquet -------------------------------------------------------------------------------
    Case("parquet_unexpected_types", "typed.parquet",
         Ok({"101": {"amount": 25.5, "giftDate": "2020-01-02", "contact.referenceId": "7",
                     "contact.address.postal": "1234"},
             "102": {"giftDate": "2020-01-03", "contact.firstname": None}})),
    Case("parquet_datetime_decimal_categorical", "datetime_decimal.parquet",
         Ok({"G1": {"amount": 25.5, "giftDate": "2020-01-02", "notes": "n"}})),
    Case("parquet_nested_column", "nested.parquet",
         Ok({"G1": {"notes": '{"tags":["a","b"],"quote":"say \\"hi\\""}'},
             "G2": {"notes": '{"tags":[],"quote":null}'}})),
    Case("parquet_nan_amount", "nan_amount.parquet",
         Rejects({(1, "amount", "parse_amount"), (2, "amount", "parse_amount")}, valid=0)),
    Case("parquet_tz_datetime_own_zone", "tz_datetime.parquet",
         Ok({"G1": {"giftDate": "2020-01-01"}, "G2": {"giftDate": "2020-01-01"},
             "G3": {"giftDate": "2020-01-02"}}), mappings=PARQUET_DATE),
    Case("parquet_tz_datetime_spec_zone", "tz_datetime.parquet",
         Ok({"G1": {"giftDate": "2020-01-02"}, "G2": {"giftDate": "2020-01-02"},
             "G3": {"giftDate": "2020-01-02"}}), {"timezone": "Asia/Tokyo"},
         mappings=PARQUET_DATE),
    Case("parquet_naive_datetime_as_written", "naive_datetime.parquet",
         Ok({"101": {"giftDate": "2020-01-01"}, "102": {"giftDate": "2020-01-02"}}),
         mappings=PARQUET_DATE),
    Case("parquet_decimal_not_rounded", "decimal_precision.parquet",
         Rejects({(1, "amount", "parse_amount")}, valid=1, values={"102": {"amount": 25.5}})),
    Case("parquet_float_amount_not_exact", "float_amounts.parquet",
         Rejects({(1, "amount", "parse_amount")}, valid=1, values={"102": {"amount": 25.99}})),
    Case("parquet_corrupt_footer", "corrupt_footer.parquet",
         SourceFail("corrupt_footer.parquet", None, ("not a readable Parquet file",))),
    Case("parquet_truncated", "truncated.parquet",
         SourceFail("truncated.parquet", None, ("not a readable Parquet file",))),
    Case("parquet_that_is_csv", "not_parquet.parquet",
         SourceFail("not_parquet.parquet", None, ("not a readable Parquet file",))),
    Case("parquet_missing_column", "missing_column.parquet",
         SourceFail("missing_column.parquet", 1, ("missing", "'Notes'"))),
    # -- Excel ---------------------------------------------------------------------------------
    Case("excel_typed_cells", "excel.xlsx",
         Rejects({(6, "amount", "parse_amount")}, valid=3, values={
             "G1": {"contact.referenceId": "7001", "contact.address.postal": "01234",
                    "amount": 25.0, "giftDate": "2020-01-02"},
             "G2": {"giftDate": "2020-12-25", "amount": 30.5, "contact.address.postal": "00501"},
             "G3": {"giftDate": "2021-01-01", "amount": 12.0}}),
         mappings=XL_DATES),
    Case("excel_header_on_row_3", "excel_title_rows.xlsx",
         Ok({"G1": {"contact.referenceId": "7001"}, "G2": {"giftDate": "2020-12-25"}}),
         {"header_row": 3}, mappings=XL_DATES),
    Case("excel_no_such_sheet", "excel.xlsx",
         SourceFail("excel.xlsx", None, ("no sheet 'Donations'", "its sheets: 'Gifts'")),
         {"sheet": "Donations"}),
    Case("excel_sheet_option_on_csv", "clean.csv",
         SourceFail("clean.csv", None, ("sheet and header_row apply to Excel",)), {"sheet": 1}),
    # -- compressed and NDJSON -----------------------------------------------------------------
    Case("csv_gz", "gifts.csv.gz", Ok({"G1": G1, "G2": {"contact.firstname": "Bob"}},
                                      quiet=True)),
    Case("csv_gz_cp1252", "cp1252.csv.gz", Ok({"G1": {"contact.firstname": "Müller"}}), CP1252),
    Case("gz_name_over_plain_text", "plain_text.csv.gz",
         SourceFail("plain_text.csv.gz", None, ("says gzip, but this is not compressed",))),
    Case("gzip_bomb", "bomb.csv.gz",
         SourceFail("bomb.csv.gz", None, ("refused", "max_decompressed_mb 1")),
         {"max_decompressed_mb": 1}),
    Case("zip_one_csv", "one_member.zip", Ok({"G1": G1, "G2": {"contact.firstname": "Bob"}})),
    Case("zip_two_members", "two_members.zip",
         SourceFail("two_members.zip", None, ("exactly one file", "'a.csv', 'b.csv'"))),
    Case("ndjson", "gifts.ndjson",
         Ok({"G1": {**G1, "contact.referenceId": "7001", "notes": '{"tags":["a"]}'},
             "G2": {"amount": 30.5, "notes": None, "contact.address.postal": "00501"}})),
    Case("ndjson_bad_line", "bad_line.ndjson",
         SourceFail("bad_line.ndjson", 3, ("not valid JSON", "one JSON object a line"))),
    Case("ndjson_array_line", "array_line.jsonl",
         SourceFail("array_line.jsonl", 2, ("a JSON list, not an object",))),
    # -- null_values ----------------------------------------------------------------------------
    Case("null_values_exact", "null_in_lower_case.csv",
         Ok({"G1": G1, "G2": {"contact.firstname": "null"}, "G3": {"contact.firstname": "Null"}})),
    Case("null_values_ignore_case", "null_in_lower_case.csv",
         Ok({"G1": G1, "G2": {"contact.firstname": None}, "G3": {"contact.firstname": None}}),
         {"null_values_ignore_case": True}),
    # -- YAML ----------------------------------------------------------------------------------
    Case("yaml_ok", "clean.csv", Ok({"G1": {"amount": 25.0}, "G2": {"contact.firstname": "Bob"}}),
         spec="spec_ok.yaml"),
    Case("yaml_syntax_error", "clean.csv", SpecFail(10, ("YAML syntax error",)),
         spec="spec_syntax_error.yaml"),
    Case("yaml_typo_key", "clean.csv",
         SpecFail(5, ("source.encodng", "did you mean 'encoding'")), spec="spec_typo_key.yaml"),
    Case("yaml_wrong_type", "clean.csv", SpecFail(13, ("load.batch_size", "integer")),
         spec="spec_wrong_type.yaml"),
    Case("yaml_unknown_transform", "clean.csv",
         SpecFail(7, ("mappings.amount.transforms[0]", "did you mean 'parse_amount'")),
         spec="spec_unknown_transform.yaml"),
    Case("yaml_missing_column", "clean.csv",
         SourceFail("clean.csv", 1, ("missing", "'Memo'", "'Notes'")),
         spec="spec_missing_column.yaml"),
    Case("yaml_tab_indent", "clean.csv", SpecFail(9, ("tabs",)), spec="spec_tab_indent.yaml"),
    Case("yaml_alias_bomb", "clean.csv", SpecFail(1, ("anchors and aliases",)),
         spec="spec_alias_bomb.yaml"),
    Case("yaml_python_tag", "clean.csv",
         SpecFail(9, ("mappings.giftType", "tag", "not supported")), spec="spec_python_tag.yaml"),
    Case("yaml_unknown_encoding", "clean.csv", SpecFail(5, ("source.encoding", "klingon")),
         spec="spec_unknown_encoding.yaml"),
    Case("yaml_duplicate_key", "clean.csv", SpecFail(13, ("'name' appears twice",)),
         spec="spec_duplicate_key.yaml"),
    Case("yaml_empty", "clean.csv", SpecFail(None, ("empty",)), spec="spec_empty.yaml"),
    Case("yaml_not_a_mapping", "clean.csv", SpecFail(1, ("must be a mapping",)),
         spec="spec_not_a_mapping.yaml"),
    Case("yaml_bad_regex", "clean.csv", SpecFail(14, ("rules.notes.pattern", "compile")),
         spec="spec_bad_regex.yaml"),
    Case("yaml_bad_date_format", "clean.csv",
         SpecFail(8, ("mappings.giftDate.transforms[0]", "%m/%q/%Y")),
         spec="spec_bad_date_format.yaml"),
    Case("yaml_unknown_field", "clean.csv", SpecFail(12, ("mappings.note", "'notes'")),
         spec="spec_unknown_field.yaml"),
    Case("yaml_not_utf8", "clean.csv", SpecFail(None, ("not UTF-8",)),
         spec="spec_not_utf8.yaml"),
    Case("yaml_base64_encoding", "clean.csv",
         SpecFail(5, ("source.encoding", "'base64'", "not a text encoding")),
         spec="spec_base64_encoding.yaml"),
    Case("yaml_rot13_encoding", "clean.csv", SpecFail(5, ("source.encoding", "not a text")),
         spec="spec_rot13_encoding.yaml"),
    Case("yaml_zlib_encoding", "clean.csv", SpecFail(5, ("source.encoding", "not a text")),
         spec="spec_zlib_encoding.yaml"),
    Case("yaml_nested_1000_deep", "clean.csv", SpecFail(13, ("nested more than",)),
         spec="spec_deep_nesting.yaml"),
    Case("yaml_unknown_timezone", "clean.csv", SpecFail(5, ("source.timezone", "Mars/Olympus")),
         spec="spec_bad_timezone.yaml"),
    Case("yaml_earliest_on_a_text_field", "clean.csv",
         SpecFail(14, ("rules.notes.earliest", "date fields")), spec="spec_earliest_on_text.yaml"),
    Case("yaml_source_file_missing", "clean.csv",
         SourceFail("no_such_file.csv", None, ("no file matches",)),
         spec="spec_missing_file.yaml"),
]


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate.write_large(tmp_path_factory.mktemp("large"))


def _get(payload: dict[str, Any], dotted: str) -> Any:
    value: Any = payload
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _check_values(payloads: dict[str, dict[str, Any]], values: dict[str, dict[str, Any]]) -> None:
    for ident, fields in values.items():
        assert ident in payloads, f"{ident} is not among the valid rows {sorted(payloads)}"
        for dotted, expected in fields.items():
            got = _get(payloads[ident], dotted)
            assert got == expected, f"{ident}.{dotted}: {got!r:.200} != {expected!r:.200}"


def _check_raw(out: Path, parts: tuple[str, ...]) -> None:
    text = (out / "payloads.jsonl").read_text(encoding="utf-8")
    for part in parts:
        assert part in text, f"{part!r} not in payloads.jsonl"


def _accounting(out: Path) -> tuple[dict[str, Any], list[dict[str, str]], dict[str, Any]]:
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    counts = report["counts"]
    assert counts["read"] == counts["valid"] + counts["rejected"]
    assert report["invariant"]["ok"] and report["invariant"]["rejects_rows_match"]
    for f in report["files"]:
        assert f["rows"] == f["valid"] + f["rejected"], f
    csv.field_size_limit(1 << 24)  # the 1 MB field
    with (out / "rejects.csv").open(encoding="utf-8", newline="") as fh:
        rejects = list(csv.DictReader(fh))
    assert len(rejects) == counts["rejected"]
    lines = (out / "payloads.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == counts["valid"]
    payloads = {p["transactionId"]: p for p in map(json.loads, lines)}
    return report, rejects, payloads


def _release_readers(fifo: Path, request: pytest.FixtureRequest) -> None:
    """Should the code under test open the FIFO (it must not: opening blocks until a writer
    comes), a writer comes, and the reader sees an empty file: the case then fails on its
    message instead of hanging the suite."""
    done = threading.Event()

    def writer() -> None:
        while not done.wait(0.05):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while no reader
            except OSError:
                continue
            os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    request.addfinalizer(lambda: (done.set(), thread.join()))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, large: dict[str, Path],
                   request: pytest.FixtureRequest) -> None:
    src = large[case.file] if case.large else CORPUS / case.file
    if case.fifo:
        os.mkfifo(tmp_path / case.file)
        _release_readers(tmp_path / case.file, request)
    elif src.exists():
        shutil.copy(src, tmp_path / case.file)
    if case.spec:
        spec = tmp_path / case.spec
        shutil.copy(CORPUS / case.spec, spec)
    else:
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump(base_spec(case), sort_keys=False), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["validate", str(spec), "--out", str(out)],
                                catch_exceptions=False)
    text = result.output + (result.stderr or "")
    assert "Traceback" not in text
    outcome = case.outcome
    if isinstance(outcome, SpecFail | SourceFail):
        expected = 2 if isinstance(outcome, SpecFail) else 3
        assert result.exit_code == expected, text
        assert not (out / "report.json").exists()
        message = result.stderr.strip().removeprefix("error: ")
        named = spec.name if isinstance(outcome, SpecFail) else outcome.file
        where = f"{named}:{outcome.line}: " if outcome.line else f"{named}: "
        assert where in message.splitlines()[0], message
        for part in outcome.says:
            assert part in message, f"{part!r} not in {message!r}"
        return
    report, rejects, payloads = _accounting(out)
    if isinstance(outcome, Ok):
        assert result.exit_code == 0, text
        assert report["counts"]["rejected"] == 0, rejects
        assert report["counts"]["valid"] == len(outcome.values) or not outcome.values
        _check_values(payloads, outcome.values)
        if outcome.warning:
            assert any(outcome.warning in w for w in report["warnings"]), report["warnings"]
        if outcome.quiet:
            assert report["warnings"] == [], report["warnings"]
        _check_raw(out, outcome.raw)
        return
    assert result.exit_code == 1, text
    got = set()
    for row in rejects:
        for f, rule in zip(row["_field"].split(" | "), row["_rule"].split(" | "), strict=True):
            got.add((int(row["_record"]), f, rule))
    assert got == outcome.failures
    assert report["counts"]["valid"] == outcome.valid
    _check_values(payloads, outcome.values)
    _check_raw(out, outcome.raw)


def test_the_corpus_has_40_cases_and_matches_its_generator() -> None:
    assert len(CASES) >= 40
    names = {c.file for c in CASES if not (c.large or c.fifo)} | {c.spec for c in CASES if c.spec}
    made = generate.corpus()
    assert names - {"no_such_file.csv"} <= set(made)
    for name, make in made.items():
        if not name.endswith((".parquet", ".xlsx")):  # these bytes carry the writer's version
            assert (CORPUS / name).read_bytes() == make(), f"{name}: run generate.py"
