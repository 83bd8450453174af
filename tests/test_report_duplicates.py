"""Possible duplicate donors in the dry run (issue 14, seed 000): different ids with the same
email or the same name and postal code are listed for review, in report.json, report.html and
the summary line, and never merged (every valid row is still sent)."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import pytest

from etl.prepare import donors, runner
from etl.prepare.runner import validate_pipeline
from etl.read.sourcefile import SourceFile
from etl.report.write import build_report, summary_table, write_report
from etl.spec.parse import load_spec

TODAY = dt.date(2026, 11, 24)
CONTACTS = """
    name: t
    target: contact_transaction
    source: {path: c.csv}
    keys: {source: S, id: {column: id}, duplicates: keep_first}
    mappings:
      firstName: {column: first, transforms: [trim, title]}
      lastName: {column: last, transforms: [trim, title]}
      email: {column: email, transforms: [normalize_email]}
      postal: {column: zip, transforms: [postal_code]}
"""
ROWS = """id,first,last,email,zip
D1,Ann,Lee,ann@example.org,07001
D2,ANN,LEE,Ann@Example.ORG ,07001-1234
D3,Bo,Ray,bo@example.org,10001
D4,bo,ray,other@example.org,10001
D5,Cy,Doe,cy@example.org,20001
D5,Cy,Doe,cy@example.org,20001
D6,Dee,Fox,,30001
D7,Eve,Gil,eve@example.org,
D8,Eve,Gil,eve@,
"""


def _contacts(write, rows: str = ROWS, spec: str = CONTACTS):
    write("c.csv", rows)
    return validate_pipeline(load_spec(write("c.yaml", spec)), today=TODAY)


def test_same_email_or_same_name_and_postal_under_other_ids_are_listed(write):
    result = _contacts(write)
    block = result.possible_duplicates
    assert block["groups"] == 3
    assert block["by"] == {"email": {"groups": 1, "donors": 2},
                           "name_postal": {"groups": 2, "donors": 4}}
    got = [(g["by"], g["value"], [(d["id"], d["record"]) for d in g["donors"]])
           for g in block["sample"]]
    assert got == [
        ("email", "ann@example.org", [("D1", 1), ("D2", 2)]),
        # zip+4 and the 5-digit zip are one postal code; case never tells two names apart
        ("name_postal", "Ann Lee, 07001", [("D1", 1), ("D2", 2)]),
        ("name_postal", "Bo Ray, 10001", [("D3", 3), ("D4", 4)]),
    ]
    # the same id twice is the duplicate-id rule's business, not a second donor; a rejected
    # row (D8's bad email) is not sent, so it cannot be merged with anything
    assert result.valid == 7 and result.payloads.height == 7  # nothing merged, nothing dropped


def test_gifts_use_the_embedded_contact_and_one_donor_giving_twice_is_no_duplicate(write):
    write("g.csv", "id,amount,date,donor,first,last,email,zip\n"
                   "G1,5,2024-01-01,D1,Ann,Lee,ann@example.org,07001\n"
                   "G2,5,2024-01-02,D1,Ann,Lee,ann@example.org,07001\n"
                   "G3,5,2024-01-03,D2,Ann,Lee,ANN@example.org,07001\n")
    spec = write("g.yaml", """
        name: t
        target: gift_transaction
        source: {path: g.csv}
        keys: {source: S, id: {column: id}}
        mappings:
          amount: {column: amount, transforms: [parse_amount]}
          giftDate: date
          giftType: {constant: Cash}
          contact.referenceId: donor
          contact.firstname: first
          contact.lastname: last
          contact.email: {column: email, transforms: [normalize_email]}
          contact.address.postal: zip
    """)
    block = validate_pipeline(load_spec(spec), today=TODAY).possible_duplicates
    assert block["by"] == {"email": {"groups": 1, "donors": 2},
                           "name_postal": {"groups": 1, "donors": 2}}
    assert [[d["id"] for d in g["donors"]] for g in block["sample"]] == [["D1", "D2"]] * 2


def test_found_across_batches_and_the_sample_is_bounded(write, monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "BATCH_ROWS", 7)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the values are parked
    reads = []
    batches = SourceFile.batches

    def counted(self, *args, **kwargs):
        reads.append(self.display)
        return batches(self, *args, **kwargs)

    monkeypatch.setattr(SourceFile, "batches", counted)
    monkeypatch.setattr(donors, "SAMPLE_GROUPS", 4)
    monkeypatch.setattr(donors, "SAMPLE_DONORS", 2)
    lines = ["id,first,last,email,zip"]
    for g in range(6):  # six emails, each under three ids far apart in the file
        lines += [f"D{g}-{k},P{g},Q{k},s{g}@example.org,{k}000{g}" for k in range(3)]
    rows = [lines[0], *sorted(lines[1:], key=lambda r: r.split(",")[0][-1])]
    block = _contacts(write, "\n".join(rows) + "\n").possible_duplicates
    assert block["groups"] == 6 and block["by"]["email"] == {"groups": 6, "donors": 18}
    assert len(block["sample"]) == 4 and block["sample_limit"] == 4
    first = block["sample"][0]
    assert first["value"] == "s0@example.org"
    assert [(d["id"], d["record"]) for d in first["donors"]] == [("D0-0", 1), ("D0-1", 7)]
    assert first["more_donors"] == 1
    # The sample's values come from what the batches parked, not from reading the file a
    # third time (the batches and the file-wide pass read it), and nothing is left behind.
    assert len(reads) == 2
    assert not list(tmp_path.glob("etl-*"))  # no temporary folder of any kind


def test_report_json_html_and_summary_show_them_escaped(write, tmp_path: Path):
    rows = ("id,first,last,email,zip\n"
            "D1,<script>alert(1)</script>,Lee,,07001\nD2,<script>alert(1)</script>,Lee,,07001\n")
    result = _contacts(write, rows)
    paths = write_report(result, tmp_path / "out")
    report = json.loads(paths.report_json.read_text(encoding="utf-8"))
    assert report["possible_duplicates"]["by"]["name_postal"] == {"groups": 1, "donors": 2}
    assert "never merges" in report["possible_duplicates"]["note"]
    page = paths.report_html.read_text(encoding="utf-8")
    assert '<section id="duplicates">' in page
    assert "&lt;Script&gt;Alert(1)&lt;/Script&gt; Lee, 07001" in page  # (title-cased)
    assert "<script>" not in page.lower()
    summary = summary_table(result)
    assert ("  possible duplicate donors: 1 group(s) (email 0, name + postal 1), not merged: "
            "see report.html") in summary.splitlines()


def test_no_duplicates_says_so_and_keeps_the_summary_short(write):
    result = _contacts(write, "id,first,last,email,zip\nD1,Ann,Lee,a@example.org,07001\n")
    assert result.possible_duplicates["groups"] == 0
    assert "possible duplicate" not in summary_table(result)
    report = build_report(result)
    assert report["possible_duplicates"]["sample"] == []


@pytest.mark.parametrize("mappings", ["firstName: first\n  lastName: last",
                                      "email: email\n  firstName: first\n  lastName: last"])
def test_without_a_full_signal_only_what_is_mapped_is_checked(write, mappings: str):
    spec = ("name: t\ntarget: contact_transaction\nsource: {path: c.csv}\n"
            "keys: {source: S, id: {column: id}}\nmappings:\n  " + mappings + "\n")
    block = _contacts(write, ROWS.replace("D5,Cy,Doe,cy@example.org,20001\n", ""),
                      spec).possible_duplicates
    expected = 1 if "email" in mappings else 0  # names without a postal code are not a signal
    assert block["groups"] == expected
