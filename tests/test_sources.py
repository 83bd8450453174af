"""Reading CSV/Parquet: encodings, BOM, line endings, quoting, ragged rows, file-level errors."""

from __future__ import annotations

import polars as pl
import pytest

from etl.base.errors import ColumnsMissing, SourceError
from etl.read import csvlayout
from etl.read.sources import open_csv, read_csv, read_parquet
from etl.spec.parse import Source


def read(path, **opts):
    raw = read_csv(path, Source(path=str(path), **opts), ["name"], path.name)
    return raw


def test_cp1252_accents_survive(write):
    path = write("c.csv", "name,city\r\nJosé,Zürich\r\nO’Brien,Peña\r\n".encode("cp1252"))
    raw = read(path, encoding="cp1252")
    assert raw.frame["name"].to_list() == ["José", "O’Brien"]
    assert raw.frame["city"].to_list() == ["Zürich", "Peña"]


def test_latin1(write):
    path = write("c.csv", "name\nZoë\n".encode("latin-1"))
    assert read(path, encoding="latin-1").frame["name"].to_list() == ["Zoë"]


def test_utf8_bom_never_in_first_column_name(write):
    path = write("c.csv", b"\xef\xbb\xbfname,x\r\nAnn,1\r\n")
    raw = read(path)
    assert raw.header == ["name", "x"]
    assert raw.frame["name"].to_list() == ["Ann"]


def test_crlf_and_quoted_embedded_newlines(write):
    path = write("c.csv", b'name,addr\r\n"Ann","1 Main\r\nApt 2"\r\n"Bob ""B""",x\r\n')
    raw = read(path)
    assert raw.frame["addr"].to_list() == ["1 Main\r\nApt 2", "x"]
    assert raw.frame["name"].to_list() == ["Ann", 'Bob "B"']
    assert raw.frame["_record"].to_list() == [1, 2]
    assert raw.frame["_line"].to_list() == [2, 4]
    assert raw.frame["_shape_error"].null_count() == 2


def test_cr_only_line_endings_are_converted(write):
    path = write("c.csv", b"name,x\rAnn,1\rBob,2\r")
    raw = read(path)
    assert raw.frame["name"].to_list() == ["Ann", "Bob"]
    assert any("CR-only" in w for w in raw.warnings)


def test_ragged_rows_are_flagged_not_padded_or_dropped(write):
    path = write("c.csv", "name,a,b\nAnn,1,2\nBob,1\nCy,1,2,3\nDee,,\n")
    raw = read(path)
    assert raw.frame.height == 4
    assert raw.frame["_shape_error"].to_list() == [
        None,
        "record has 2 fields, the header has 3",
        "record has 4 fields, the header has 3",
        None,
    ]


def test_postal_codes_stay_strings(write):
    path = write("c.csv", "name,zip\nAnn,01234\n")
    assert read(path).frame["zip"].to_list() == ["01234"]


def test_null_markers(write):
    path = write("c.csv", "name,x\nN/A,NULL\nAnn,\n")
    raw = read(path)
    assert raw.frame["name"].to_list() == [None, "Ann"]
    assert raw.frame["x"].to_list() == [None, None]


def test_blank_lines_are_skipped_and_said(write):
    path = write("c.csv", "name\nAnn\n\nBob\n")
    raw = read(path)
    assert raw.frame["name"].to_list() == ["Ann", "Bob"]
    assert raw.warnings == ["1 blank line(s) skipped"]


def test_semicolon_delimiter(write):
    path = write("c.csv", "name;x\nAnn;1,5\n")
    assert read(path, delimiter=";").frame["x"].to_list() == ["1,5"]


def test_headerless_file_with_declared_columns(write):
    path = write("c.csv", "Ann,1\nBob,2\n")
    raw = read_csv(path, Source(path="c.csv", header=False, columns=["name", "n"]), ["name"], "c")
    assert raw.frame["name"].to_list() == ["Ann", "Bob"]


@pytest.mark.parametrize(
    ("content", "opts", "message"),
    [
        (
            b"name\nAnn\nB\x81b\n",
            {"encoding": "cp1252"},
            r"c\.csv:3: byte 0x81 cannot be decoded as cp1252",
        ),
        (
            b"name\nAnn\nB\xe9b\n",
            {},
            r"c\.csv:3: byte 0xe9 is not valid UTF-8 \(set source\.encoding",
        ),
        (b"", {}, r"c\.csv: the file is empty"),
        (b"name,name\nA,B\n", {}, r"c\.csv:1: duplicate column names in the header: 'name'"),
        (b'name\n"Ann\nBob\n', {}, r"c\.csv:2: .*unterminated quote, column 'name'"),
    ],
)
def test_file_level_errors_name_file_and_line(write, content, opts, message):
    path = write("c.csv", content)
    with pytest.raises(SourceError, match=message):
        read(path, **opts)


def test_missing_columns_show_the_header(write):
    path = write("c.csv", "Name ,x\nAnn,1\n")
    with pytest.raises(ColumnsMissing, match=r"missing: 'name'; the header has: 'Name', 'x'"):
        read(path)


def test_parquet_any_types_become_strings(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame(
        {
            "name": ["Ann", None],
            "amount": [12.5, 3.0],
            "zip": [7001, 2134],
            "tags": [["a", "b"], []],
        }
    ).write_parquet(path)
    raw = read_parquet(path, ["name", "amount", "zip", "tags"], "p.parquet")
    assert raw.frame["amount"].to_list() == ["12.5", "3.0"]
    assert raw.frame["zip"].to_list() == ["7001", "2134"]
    assert raw.frame["tags"].to_list() == ['["a","b"]', "[]"]
    assert raw.frame["_record"].to_list() == [1, 2]


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(SourceError, match=r"p\.parquet: not a readable Parquet file"):
        read_parquet(path, ["name"], "p.parquet")


# -- hardening, round two (issue 11) --------------------------------------------------------------
MOJIBAKE = r"UTF-8 text in a file declared {}.*set source\.encoding: utf-8"


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "iso8859-15", "mac_roman"])
def test_utf8_under_a_single_byte_declaration_stops_the_file(write, encoding):
    path = write("c.csv", "name\nAnn\nJosé\n".encode())
    with pytest.raises(SourceError, match=r"c\.csv:3: " + MOJIBAKE.format(encoding)):
        read(path, encoding=encoding)


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("name\nAnn\nPaweł\n", 3, "non-ASCII bytes are valid UTF-8"),  # ł = C5 82, no sure sign
        ("name\nŁukasz\n", 2, "non-ASCII bytes are valid UTF-8"),  # Ł = C5 81: 0x81 undefined
        ("name\nO’Brien\n", 2, "E2 80 99"),  # ’ -> â€™
        ("name\nAnn\n\ufeffname\nBob\n", 3, "byte-order mark"),
    ],
)
def test_utf8_signs_name_the_line(write, text, line, says):
    path = write("c.csv", text.encode())
    with pytest.raises(SourceError, match=rf"c\.csv:{line}: .*{says}"):
        read(path, encoding="cp1252")


def test_a_utf8_sequence_split_between_chunks_is_still_found(write, monkeypatch):
    from etl.read import textfile

    monkeypatch.setattr(textfile, "CHUNK", 7)
    path = write("c.csv", "name\nAnn\nZoë Müller\n".encode("cp1252") + "\nJosé\n".encode())
    with pytest.raises(SourceError, match=r"c\.csv:5: " + MOJIBAKE.format("cp1252")):
        read(path, encoding="cp1252")


def test_real_cp1252_text_is_not_mistaken_for_utf8(write):
    names = ["JOSÉ’S", "« café\xa0»", "ÉCOLE\xa0»", "Zoë", "São Paulo", "Müller", "Øre–Å", "ß"]
    path = write("c.csv", ("name\n" + "\n".join(names) + "\n").encode("cp1252"))
    assert read(path, encoding="cp1252").frame["name"].to_list() == names


def test_a_bom_after_the_start_stops_a_utf8_file(write, monkeypatch):
    from etl.read import textfile

    path = write("c.csv", b"\xef\xbb\xbfname\nAnn\n\xef\xbb\xbfname\nBob\n")
    for encoding in ("utf-8", "utf-8-sig"):
        with pytest.raises(SourceError, match=r"c\.csv:3: a UTF-8 byte-order mark"):
            read(path, encoding=encoding)
    monkeypatch.setattr(textfile, "CHUNK", 4)  # the BOM split between two chunks
    with pytest.raises(SourceError, match=r"c\.csv:3: a UTF-8 byte-order mark"):
        read(path)
    path = write("d.csv", b"\xef\xbb\xbfname\nAnn\n")  # its own BOM, at byte 0: fine
    assert read(path).frame["name"].to_list() == ["Ann"]


def _zip(names: list[str]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in names:
            z.writestr(name, "x")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda data: __import__("gzip").compress(data),
         "a gzip-compressed file, not CSV text: name it .csv.gz"),
        (lambda data: __import__("bz2").compress(data), "a bzip2-compressed file"),
        (lambda data: __import__("lzma").compress(data), "an xz-compressed file"),
        (lambda data: _zip(["[Content_Types].xml", "xl/workbook.xml"]),
         r"an Excel \(xlsx\) file, not CSV text: set source.format: excel"),
        (lambda data: _zip(["c.csv"]), "a zip archive"),
        # a workbook whose first member is not under xl/: found in the central directory
        (lambda data: _zip(["_rels/.rels", "docProps/app.xml", "xl/workbook.xml"]),
         r"an Excel \(xlsx\) file"),
        (lambda data: _zip(["[Content_Types].xml", "word/document.xml"]),
         r"a Word document \(docx\), not CSV text: export the data as CSV"),
        (lambda data: b"%PDF-1.7\n" + data, "a PDF document"),
        (lambda data: b"SQLite format 3\x00" + data, "an SQLite database"),
        (lambda data: b"PAR1" + data, "a Parquet file.*source.format: parquet"),
    ],
)
def test_a_binary_file_named_csv_is_refused_never_decompressed(write, make, says):
    path = write("c.csv", make(b"name\n" + b"Ann\n" * 1000))
    with pytest.raises(SourceError, match=r"c\.csv: this is " + says):
        read(path)


def test_only_regular_files_are_sources(tmp_path):
    import os

    (tmp_path / "d.csv").mkdir()
    os.mkfifo(tmp_path / "f.csv")  # opening it would block: it must never be opened
    for name, kind in (("d.csv", "a directory"), ("f.csv", "a named pipe")):
        with pytest.raises(SourceError, match=rf"{name}: not a regular file \({kind}"):
            read(tmp_path / name)


def test_dev_zero_as_a_source_ends_at_once(write):
    """It used to be hashed forever. A child process, so that a regression times out."""
    import subprocess
    import sys

    spec = write("s.yaml", """
        name: z
        target: contact_transaction
        source: {path: /dev/zero}
        keys: {source: S, id: {column: id}}
        mappings: {firstName: f}
    """)
    proc = subprocess.run([sys.executable, "-m", "etl", "validate", str(spec), "--out",
                           str(spec.parent / "out")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "/dev/zero: not a regular file (a character device)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_parquet_tz_datetimes_keep_their_wall_clock_date(tmp_path):
    import datetime as dt

    path = tmp_path / "p.parquet"
    stamps = pl.Series("when", [dt.datetime(2020, 1, 1, 23, 30), dt.datetime(2020, 1, 1, 1, 0)])
    pl.DataFrame({"name": ["Ann", "Bob"], "when": stamps.dt.replace_time_zone(
        "America/Los_Angeles")}).write_parquet(path)
    raw = read_parquet(path, ["name", "when"], "p.parquet")
    assert raw.frame["when"].dt.date().to_list() == [dt.date(2020, 1, 1)] * 2
    source = Source(path=str(path), timezone="Europe/Berlin")
    raw = read_parquet(path, ["name", "when"], "p.parquet", source)
    assert raw.frame["when"].dt.date().to_list() == [dt.date(2020, 1, 2), dt.date(2020, 1, 1)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 16, 40])
def test_record_layout_is_the_same_whatever_the_block_of_lines(write, monkeypatch, chunk):
    """The layout pass reads the file a block of lines at a time (its memory stays flat): a
    record spanning a chunk boundary, blank lines and ragged records come out the same."""
    from etl.read import csvlayout, sources

    text = (
        'name,addr,n\n"Ann","1 Main\nApt 2\n\nBack",1\n\nBob,x\nCy,"a,b",3,extra\n'
        '"D""e","q\n",4\n\n\nEd,y,5\n"F","multi\nline\nthree",6\nGus,z,7\n'
    )
    path = write("c.csv", text.encode())
    whole = read(path).frame.select("_record", "_line", "_shape_error", "name", "addr")
    monkeypatch.setattr(csvlayout, "BLOCK", chunk)
    assert read(path).frame.select("_record", "_line", "_shape_error", "name", "addr").equals(
        whole)
    # Parsed in blocks of a few records from their byte offsets (LF, CRLF or both: a file
    # with both line ends is read as one stream), batch by batch: the same rows.
    for eol in ("\n", "\r\n", "mixed"):
        data = text.replace("\n", "\r\n") if eol == "\r\n" else text
        if eol == "mixed":
            data = data.replace("Bob,x\n", "Bob,x\r\n")
        mixed = write(f"c{len(eol)}.csv", data.encode())
        expected = read(mixed).frame.select("_record", "_line", "_shape_error", "name")
        monkeypatch.setattr(csvlayout, "STEP", 2)
        src_opts = Source(path=str(mixed))
        with sources.open_csv(mixed, src_opts, ["name"], mixed.name) as src:
            # a block of lines with both line ends has no byte offsets (small blocks may not)
            assert src.blocks is not None or (eol == "mixed" and chunk > 16)
            got = pl.concat(list(src.batches(3)))
        assert got.select("_record", "_line", "_shape_error", "name").equals(expected)
        monkeypatch.setattr(csvlayout, "STEP", 10_000)
    assert whole["_line"].to_list() == [2, 7, 8, 9, 13, 14, 17]
    assert whole["_shape_error"].to_list()[1:3] == [
        "record has 2 fields, the header has 3", "record has 4 fields, the header has 3"]


def test_batches_hold_whole_batches_of_records_the_header_aside(write, monkeypatch):
    """The header is a scanned row, not a record: 30 records in batches of 10 are 3 batches of
    10, not 10, 10, 9 and 1 (a batch of one row costs a whole batch's fixed work)."""
    from etl.read import sources

    monkeypatch.setattr(csvlayout, "STEP", 4)
    path = write("c.csv", "name\n" + "".join(f"N{i}\n" for i in range(30)))
    with sources.open_csv(path, Source(path=str(path)), ["name"], path.name) as src:
        assert src.blocks is not None
        batches = list(src.batches(10))
    assert [b.height for b in batches] == [10, 10, 10]
    assert pl.concat(batches)["_record"].to_list() == list(range(1, 31))
    assert pl.concat(batches)["name"].to_list() == [f"N{i}" for i in range(30)]


def test_a_layout_polars_disagrees_with_is_left_out_and_the_file_read_again(write, monkeypatch):
    """Irregular quoting can make the layout pass find another number of records than polars:
    the first full read notices, the file is read again without the layout (no line numbers,
    no field counts), and the report says so. Nothing is lost or numbered wrong."""
    from etl.prepare.runner import validate_pipeline
    from etl.read import csvlayout, sources
    from etl.spec.parse import load_spec

    real = csvlayout.record_layout

    def short(path, sep, quote, width):  # one record fewer than polars reads
        records = csvlayout.Records(width)
        whole = real(path, sep, quote, width)
        records._jumps, records._odd, records._blank = (
            whole._jumps, whole._odd, whole._blank)
        records.count = whole.count - 1
        return records

    monkeypatch.setattr(sources, "record_layout", short)
    write("c.csv", "id,f,l\n1,A,B\n2,C,D\n2,E,F\n")
    loaded = load_spec(write("p.yaml", """
        name: g
        target: contact_transaction
        source: {path: c.csv}
        keys: {source: S, id: {column: id}, duplicates: keep_first}
        mappings: {firstName: f, lastName: l}
    """))
    result = validate_pipeline(loaded)
    assert (result.read, result.valid, result.rejected) == (3, 2, 1)
    assert result.failures["_record"].to_list() == [3]
    assert any("quoting is irregular" in w for w in result.warnings)


def test_a_file_with_both_line_ends_is_read_as_one_stream(write):
    """Byte offsets come from line lengths; a block with LF and CRLF lines has none, so the
    file is read by polars' streaming reader instead: the same rows."""
    path = write("m.csv", b"name,n\r\nAnn,1\nBob,2\r\nCy,3\n")
    with open_csv(path, Source(path=str(path)), ["name"], path.name) as src:
        assert src.blocks is None
        assert pl.concat(list(src.batches(2)))["name"].to_list() == ["Ann", "Bob", "Cy"]
    path = write("c.csv", b"name,n\r\nAnn,1\r\nBob,2\r\n")
    with open_csv(path, Source(path=str(path)), ["name"], path.name) as src:
        assert src.blocks is not None
        assert pl.concat(list(src.batches(1)))["_line"].to_list() == [2, 3]


@pytest.mark.parametrize("end", [b"\n", b"\r\n"])
def test_block_offsets_are_where_records_start(write, monkeypatch, end):
    """The layout's byte offsets (every STEP-th record) come from line lengths and the block's
    line ends: they are the records' real starts, with either line end, a quoted newline, a
    blank line and no line end after the last record."""
    monkeypatch.setattr(csvlayout, "STEP", 2)  # the file is one block: offsets inside it
    lines = [b"name,n", b"Ann,1", b'"Bo', b'b",2', b"", b"Cy,3", b"Di,4", b"Ed,5"]
    data = end.join(lines)
    path = write("o.csv", data)
    line_starts = [sum(len(line) + len(end) for line in lines[:i]) for i in range(len(lines))]
    starts = [at for i, at in enumerate(line_starts) if i != 3]  # line 3 goes on from line 2
    layout = csvlayout.record_layout(path, ",", '"', 2)
    assert layout.block_offsets() == [*starts[::2], len(data)]


def test_a_lone_cr_in_a_quoted_field_reads_the_file_as_one_stream(write):
    path = write("r.csv", b'name,n\nAnn,"1\r2"\nBob,3\n')
    with open_csv(path, Source(path=str(path)), ["name"], path.name) as src:
        assert src.blocks is None
        assert pl.concat(list(src.batches(2)))["n"].to_list() == ["1\r2", "3"]
