"""The dry-run report stage: report.json, rejects.csv, payloads.jsonl, report.html, summary."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl
import pytest

from etl.base.csvsafe import neutralize_formulas, write_csv
from etl.base.redact import redact, register
from etl.base.safe_write import MARKER, UnsafeOutput, check_target, report_folder, write_json
from etl.prepare.result import FileInfo, ValidationResult
from etl.report.write import failure_counts, summary_table, write_report

XSS = "<script>alert(1)</script>"
ATTR = '" onmouseover="x'
HYPERLINK = '=HYPERLINK("http://x")'

REJECT_META = ["_source_file", "_record", "_field", "_rule", "_value", "_error"]


def make_result(**overrides: object) -> ValidationResult:
    """Two files: gifts_a.csv (4 rows, 2 rejected), gifts_b.csv (3 rows, 1 rejected)."""
    rejects = pl.DataFrame(
        {
            "Donor": [XSS, HYPERLINK, "@SUM(A1:A9)"],
            "Amount": ["-25.00", "+1", "-5"],
            "Note": ["\tfoo", "-cmd", ATTR],
            "_source_file": ["gifts_a.csv", "gifts_a.csv", "gifts_b.csv"],
            "_record": [2, 4, 1],
            "_field": ["amount", "amount | donor", "date"],
            "_rule": ["positive", "parse_amount | required", "parse_date"],
            "_value": ["-25.00", "+1 | ", ATTR],
            "_error": ["must be > 0", "not a number | missing", f"bad date {XSS}"],
        }
    )
    failures = pl.DataFrame(
        {
            "_source_file": ["gifts_a.csv", "gifts_a.csv", "gifts_a.csv", "gifts_b.csv"],
            "_record": [2, 4, 4, 1],
            "field": ["amount", "amount", "donor", "date"],
            "rule": ["positive", "parse_amount", "required", "parse_date"],
            "value": ["-25.00", "+1", None, ATTR],
            "error": ["must be > 0", "not a number", "missing", f"bad date {XSS}"],
        }
    ).vstack(
        pl.DataFrame(
            {
                "_source_file": ["gifts_b.csv"] * 2,
                "_record": [5, 6],
                "field": ["amount", "amount"],
                "rule": ["positive", "positive"],
                "value": ["-1", "-2"],
                "error": ["must be > 0", "must be > 0"],
            }
        )
    )
    payloads = pl.DataFrame(
        {
            "_source_file": ["gifts_a.csv", "gifts_a.csv", "gifts_b.csv", "gifts_b.csv"],
            "_record": [1, 3, 2, 3],
            "_key": [f"gift_transaction:LegacyCRM:G-{i}" for i in range(4)],
            "_payload": [
                json.dumps({"name": XSS, "amount": "10.00"}, separators=(",", ":")),
                json.dumps({"note": 'a, "quoted", b', "amount": "1.00"}, separators=(",", ":")),
                json.dumps({"note": ATTR, "multi": "x\ny"}, separators=(",", ":")),
                json.dumps({"unicode": "Zoë €", "n": [1, 2]}, separators=(",", ":")),
            ],
        }
    )
    args: dict[str, object] = {
        "pipeline": f"gifts {XSS}",
        "spec_path": "pipelines/gifts.yaml",
        "spec_hash": "ab" * 32,
        "tool_version": "0.1.0",
        "target": "sandbox",
        "files": [
            FileInfo("gifts_a.csv", "1" * 64, 1234, rows=4, valid=2, rejected=2),
            FileInfo("gifts_b.csv", "2" * 64, 99, rows=3, valid=2, rejected=1),
        ],
        "rejects": rejects,
        "failures": failures,
        "payloads": payloads,
        "control_totals": {
            "rows": {"read": 7, "valid": 4, "rejected": 3},
            "amounts": {"USD": {"read": "36.00", "valid": "11.00"}, "EUR": {"read": "5.00"}},
        },
        "warnings": [f"column {XSS} ignored"],
    }
    args.update(overrides)
    return ValidationResult(**args)  # type: ignore[arg-type]


@pytest.fixture
def written(tmp_path: Path) -> tuple[ValidationResult, Path]:
    result = make_result()
    write_report(result, tmp_path / "out")
    return result, tmp_path / "out"


def test_writes_all_files_and_returns_paths(tmp_path: Path) -> None:
    paths = write_report(make_result(), tmp_path / "deep" / "out")
    assert paths.out_dir == tmp_path / "deep" / "out"
    for p in (paths.report_json, paths.rejects_csv, paths.payloads_jsonl, paths.report_html):
        assert p.is_file() and p.parent == paths.out_dir
    assert sorted(p.name for p in paths.out_dir.iterdir()) == [
        "payloads.jsonl",
        "rejects.csv",
        "report.html",
        "report.json",
    ]  # no temporary files left behind


def test_report_json_counts_failures_invariant(written: tuple[ValidationResult, Path]) -> None:
    _, out = written
    text = (out / "report.json").read_text(encoding="utf-8")
    report = json.loads(text)
    assert text.startswith('{\n  "pipeline": ')  # 2-space indent
    assert list(report) == [
        "pipeline",
        "target",
        "spec",
        "tool_version",
        "generated_at",
        "counts",
        "files",
        "failures",
        "control_totals",
        "warnings",
        "invariant",
    ]
    assert report["pipeline"] == f"gifts {XSS}"
    assert report["spec"] == {"path": "pipelines/gifts.yaml", "hash": "ab" * 32}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["generated_at"])
    assert report["counts"] == {"read": 7, "rejected": 3, "valid": 4, "reject_rate": 0.428571}
    assert report["files"][0] == {
        "path": "gifts_a.csv",
        "sha256": "1" * 64,
        "size": 1234,
        "rows": 4,
        "rejected": 2,
        "valid": 2,
    }
    assert report["failures"] == [
        {"field": "amount", "rule": "positive", "count": 3},
        {"field": "amount", "rule": "parse_amount", "count": 1},
        {"field": "date", "rule": "parse_date", "count": 1},
        {"field": "donor", "rule": "required", "count": 1},
    ]
    assert report["control_totals"] == make_result().control_totals
    assert report["warnings"] == [f"column {XSS} ignored"]
    inv = report["invariant"]
    assert inv["ok"] is True and inv["overall"] is True
    assert inv["files"] == [
        {"path": "gifts_a.csv", "ok": True},
        {"path": "gifts_b.csv", "ok": True},
    ]
    assert inv["rejects_rows_match"] is True and inv["payload_rows_match"] is True


def test_invariant_false_when_counts_disagree(tmp_path: Path) -> None:
    files = [
        FileInfo("a.csv", "0" * 64, 1, rows=4, valid=2, rejected=2),
        FileInfo("b.csv", "0" * 64, 1, rows=5, valid=2, rejected=1),  # lost a row
    ]
    paths = write_report(make_result(files=files), tmp_path)
    inv = json.loads(paths.report_json.read_text())["invariant"]
    assert inv["ok"] is False and inv["overall"] is False
    assert [f["ok"] for f in inv["files"]] == [True, False]
    assert "✗ mismatch" in paths.report_html.read_text()


def test_rejects_csv_round_trips_with_formulas_neutralized(
    written: tuple[ValidationResult, Path],
) -> None:
    result, out = written
    back = pl.read_csv(out / "rejects.csv", infer_schema=False)
    assert back.columns == result.rejects.columns == ["Donor", "Amount", "Note", *REJECT_META]
    assert back["Donor"].to_list() == [XSS, "'" + HYPERLINK, "'@SUM(A1:A9)"]
    assert back["Amount"].to_list() == ["-25.00", "'+1", "-5"]  # plain numbers stay numbers
    assert back["Note"].to_list() == ["'\tfoo", "'-cmd", ATTR]
    assert back["_value"].to_list() == ["-25.00", "'+1 | ", ATTR]
    assert back["_record"].to_list() == ["2", "4", "1"]
    assert back["_source_file"].to_list() == result.rejects["_source_file"].to_list()


def test_rejects_csv_empty_keeps_header(tmp_path: Path) -> None:
    empty = make_result().rejects.clear()
    paths = write_report(make_result(rejects=empty), tmp_path)
    assert paths.rejects_csv.read_text(encoding="utf-8").splitlines() == [
        "\ufeffDonor,Amount,Note," + ",".join(REJECT_META)
    ]


def test_neutralize_formulas_leaves_numeric_columns_alone() -> None:
    df = pl.DataFrame(
        {
            "n": [-5, 1, -25],
            "f": [-25.0, 1.5, -0.5],
            "s": ["-2.50", "=1+1", None],
            "c": pl.Series(["-x", "ok", "+y"], dtype=pl.Categorical),
        }
    )
    out = neutralize_formulas(df)
    assert out["n"].dtype == pl.Int64 and out["n"].to_list() == [-5, 1, -25]
    assert out["f"].dtype == pl.Float64 and out["f"].to_list() == [-25.0, 1.5, -0.5]
    assert out["s"].to_list() == ["-2.50", "'=1+1", None]
    assert out["c"].to_list() == ["'-x", "ok", "'+y"]
    cells = ["=a", "+a", "-a", "@a", "\ta", "\ra", "-1e5", "-.5", "1-2", "a=b", "", "-0", "-25.00"]
    got = neutralize_formulas(pl.DataFrame({"s": cells}))["s"].to_list()
    assert got == [
        "'=a",
        "'+a",
        "'-a",
        "'@a",
        "'\ta",
        "'\ra",
        "'-1e5",
        "'-.5",
        "1-2",
        "a=b",
        "",
        "-0",
        "-25.00",
    ]


def test_payloads_jsonl_lines_and_limit(tmp_path: Path) -> None:
    result = make_result()
    paths = write_report(result, tmp_path / "all")
    raw = paths.payloads_jsonl.read_text(encoding="utf-8")
    assert raw.endswith("\n")
    lines = raw.splitlines()
    assert lines == result.payloads["_payload"].to_list()  # written as they are, unquoted
    assert [json.loads(line) for line in lines][1] == {"note": 'a, "quoted", b', "amount": "1.00"}

    limited = write_report(result, tmp_path / "two", payload_limit=2).payloads_jsonl
    assert limited.read_text(encoding="utf-8").splitlines() == lines[:2]
    none = write_report(result, tmp_path / "zero", payload_limit=0).payloads_jsonl
    assert none.read_text(encoding="utf-8") == ""
    with pytest.raises(ValueError, match="payload_limit"):
        write_report(result, tmp_path / "bad", payload_limit=-1)


def test_payloads_with_raw_line_breaks_stay_one_per_line(tmp_path: Path) -> None:
    payloads = make_result().payloads.with_columns(
        pl.lit('{\n  "a": 1,\r\n  "b": "c"\n}').alias("_payload")
    )
    paths = write_report(make_result(payloads=payloads), tmp_path)
    lines = paths.payloads_jsonl.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) == {"a": 1, "b": "c"} for line in lines)


def test_report_html_escapes_data(written: tuple[ValidationResult, Path]) -> None:
    _, out = written
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert 'id="summary"' in page and 'id="failure-chart"' in page
    assert XSS not in page and ATTR not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot; onmouseover=&quot;x" in page
    assert "<script" not in page.lower()  # no scripts at all, ours or theirs
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no external assets
    assert "src=" not in page and "<link" not in page
    # summary, chart, samples, payloads, warnings all present
    assert "gifts_a.csv" in page and "36.00" in page and "EUR" in page
    assert "amount · positive" in page and "<svg" in page and "<rect" in page
    assert "must be &gt; 0" in page
    assert "&quot;Zoë €&quot;" in page  # payloads pretty-printed, escaped
    assert "column &lt;script&gt;" in page


def test_report_html_without_failures(tmp_path: Path) -> None:
    result = make_result(
        files=[FileInfo("ok.csv", "0" * 64, 10, rows=4, valid=4, rejected=0)],
        rejects=make_result().rejects.clear(),
        failures=make_result().failures.clear(),
        control_totals={"rows": {"read": 4, "valid": 4, "rejected": 0}, "amounts": {}},
        warnings=[],
    )
    paths = write_report(result, tmp_path)
    page = paths.report_html.read_text()
    assert 'id="failure-chart"' in page and "No failures" in page and "No rejected rows" in page
    assert json.loads(paths.report_json.read_text())["failures"] == []


def test_failure_chart_caps_at_15_bars(tmp_path: Path) -> None:
    failures = pl.DataFrame(
        {
            "_source_file": ["a.csv"] * 20,
            "_record": list(range(20)),
            "field": [f"f{i:02d}" for i in range(20)],
            "rule": ["required"] * 20,
            "value": [""] * 20,
            "error": ["missing"] * 20,
        }
    )
    page = write_report(make_result(failures=failures), tmp_path).report_html.read_text()
    chart = page[page.index('id="failure-chart"') : page.index("</svg>")]
    assert chart.count("<rect") == 15
    assert "Top 15 of 20" in page


def test_failure_counts_empty_frame() -> None:
    assert failure_counts(pl.DataFrame()) == []


def test_summary_table(written: tuple[ValidationResult, Path]) -> None:
    result, _ = written
    text = summary_table(result)
    lines = text.splitlines()
    assert len(lines) < 25
    assert "\x1b" not in text
    assert "gifts_a.csv" in text and "gifts_b.csv" in text
    total = next(line for line in lines if line.strip().startswith("total"))
    assert total.split()[1:] == ["7", "4", "3"]
    assert "42.86%" in text
    assert "amount / positive" in text and "36.00" in text and "USD" in text
    assert "1 warning" in text


def test_summary_table_quotes_control_characters_and_stays_short() -> None:
    files = [FileInfo(f"f{i}.csv", "0" * 64, 1, rows=1, valid=1, rejected=0) for i in range(30)]
    files[0] = FileInfo("evil\x1b[31m.csv", "0" * 64, 1, rows=1, valid=1, rejected=0)
    result = make_result(files=files)
    text = summary_table(result)
    assert "\x1b" not in text and "'evil\\x1b[31m.csv'" in text
    assert len(text.splitlines()) < 25
    assert "25 more files" in text


# -- every CSV through one writer; safe targets; report folders; redaction -----------------------
def test_write_csv_neutralizes_header_cells_too(tmp_path: Path) -> None:
    df = pl.DataFrame({"=cmd|' /C calc'!A0": ["=1+1"], "@SUM(1)": ["x"], "-5": ["-5"],
                       "'=dup": ["taken"], "=dup": ["y"], "ok": ["-25.00"]})
    path = write_csv(df, tmp_path / "x.csv")
    header = path.read_text(encoding="utf-8-sig").splitlines()[0]
    back = pl.read_csv(path, infer_schema=False)
    assert back.columns == ["'=cmd|' /C calc'!A0", "'@SUM(1)", "-5", "'=dup", "''=dup", "ok"]
    assert back.row(0) == ("'=1+1", "x", "-5", "taken", "y", "-25.00")
    assert not header.startswith(("=", "+", "@", "-"))


def test_rejects_csv_header_from_a_hostile_source_header_is_neutralized(tmp_path: Path) -> None:
    hostile = make_result().rejects.rename({"Donor": "=cmd|' /C calc'!A0", "Note": "+Note"})
    paths = write_report(make_result(rejects=hostile), tmp_path)
    back = pl.read_csv(paths.rejects_csv, infer_schema=False)
    assert back.columns[:3] == ["'=cmd|' /C calc'!A0", "Amount", "'+Note"]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_report_refuses_to_replace_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    target = out / "rejects.csv"
    if kind == "symlink":
        target.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    with pytest.raises(UnsafeOutput, match=r"rejects\.csv: is .*refusing"):
        write_report(make_result(), out)
    assert victim.read_text(encoding="utf-8") == "precious"
    if kind == "symlink":
        assert target.is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["rejects.csv"]  # nothing half written


def test_safe_write_replaces_a_regular_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old", encoding="utf-8")
    write_json(target, {"a": 1})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    with pytest.raises(UnsafeOutput, match="symbolic link"):
        check_target(_link(tmp_path / "l", target))


def _link(link: Path, to: Path) -> Path:
    link.symlink_to(to)
    return link


def test_report_folder_needs_to_be_new_or_marked_unless_explicit(tmp_path: Path) -> None:
    new = report_folder(tmp_path / "a" / "b", explicit=False)
    assert (new / MARKER).is_file()
    assert report_folder(new, explicit=False) == new  # marked: writable again
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0", encoding="utf-8")
    with pytest.raises(UnsafeOutput, match=r"output\.dir .*etc: an existing folder .*--out DIR"):
        report_folder(etc, explicit=False)
    assert report_folder(etc, explicit=True) == etc  # the user's own choice
    assert not (etc / MARKER).exists()  # an explicit choice does not unlock it for specs
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(UnsafeOutput, match="is not a folder"):
        report_folder(tmp_path / "file", explicit=True)


def test_a_registered_secret_is_redacted_from_every_report_file(tmp_path: Path) -> None:
    secret = "report-secret-4b7e91"
    register(secret)
    rejects = make_result().rejects.with_columns(pl.lit(f"key {secret}").alias("Note"))
    payloads = make_result().payloads.with_columns(
        pl.lit(json.dumps({"note": secret})).alias("_payload"))
    result = make_result(rejects=rejects, payloads=payloads, warnings=[f"saw {secret}"],
                         pipeline=f"p {secret}")
    paths = write_report(result, tmp_path / "out")
    assert "key ***" in paths.rejects_csv.read_text(encoding="utf-8")
    for path in (tmp_path / "out").iterdir():
        assert secret not in path.read_text(encoding="utf-8"), path
    assert redact(json.dumps({"k": 'a"' + secret})) == json.dumps({"k": 'a"***'})
    register("short")  # too short to be a credential: would garble every output
    assert redact("a short text") == "a short text"


def test_payloads_jsonl_goes_to_disk_batch_by_batch(tmp_path, monkeypatch):
    """Each batch is on disk once written (fsync in the writer's thread, while the next batch
    is validated), so closing the file waits for the last batch only; the file is whole."""
    from etl.report import write as write_module

    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        synced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(write_module.os, "fsync", fsync)
    path = tmp_path / "payloads.jsonl"
    writer = write_module.PayloadWriter(path, None)
    batches = [[f'{{"n":{i}{k}}}' for k in range(3)] for i in range(3)]
    for lines in batches:
        writer.write(pl.DataFrame({"_payload": lines}))
    writer.close()
    expected = "".join(line + "\n" for lines in batches for line in lines)
    assert path.read_text(encoding="utf-8") == expected
    per_batch = [len("".join(line + "\n" for line in lines)) for lines in batches]
    assert synced[:3] == [sum(per_batch[:i + 1]) for i in range(3)]
