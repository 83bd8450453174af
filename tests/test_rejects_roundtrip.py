"""Fix the cells of rejects.csv and feed the file back (issue 13): the tool's `_` columns and
formula guards are left out on reading, the BOM is skipped, the rows keep their keys."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner
from sandbox_fixtures import sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.cli.app import main as cli
from etl.prepare.runner import validate_pipeline
from etl.report.write import write_report
from etl.spec.parse import load_spec

TODAY = dt.date(2026, 11, 24)
SPEC = """
    name: t
    target: contact_transaction
    source: {{path: {path}}}
    keys: {{source: S, id: {{column: id}}}}
    mappings:
      firstName: first
      lastName: last
      phone: phone
      email: {{column: email, transforms: [normalize_email]}}
"""
DIRTY = ("id,first,last,phone,email\n"
         "C1,Zoë,Núñez,+1 718 824 6926,zoe@\n"
         "C2,Ann,Lee,,ann@example.org\n"
         "C3,=Bob,-Day,@home,bob@@x\n"
         "C4,'Kim,O'Hara,-5,kim@\n")
FIXES = {"C1": "zoe@example.org", "C3": "bob@example.org", "C4": "kim@example.org"}


def _payloads(write, spec_name: str, path: str, out: Path) -> tuple[dict[str, str], Path]:
    loaded = load_spec(write(spec_name, SPEC.format(path=path)))
    result = validate_pipeline(loaded, today=TODAY)
    paths = write_report(result, out)
    docs = [json.loads(p) for p in result.payloads["_payload"].to_list()]
    return {d["referenceId"]: d for d in docs}, paths.rejects_csv


def test_fixed_rejects_give_the_payloads_of_the_fixed_original_rows(write, tmp_path) -> None:
    write("dirty.csv", DIRTY)
    first, rejects = _payloads(write, "a.yaml", "dirty.csv", tmp_path / "r1")
    assert set(first) == {"C2"}
    raw = rejects.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the file a spreadsheet user edits
    assert "'+1 718 824 6926" in raw.decode("utf-8-sig")  # guarded as written

    # The user fixes the email cells in a spreadsheet: everything else stays as written.
    with rejects.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    head = rows[0]
    for row in rows[1:]:
        row[head.index("email")] = FIXES[row[head.index("id")]]
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)

    again, still = _payloads(write, "b.yaml", str(fixed), tmp_path / "r2")
    # What the fixed original rows give, read from a plain file.
    lines = DIRTY.splitlines()
    plain = [lines[0]] + [",".join([*ln.split(",")[:4], FIXES[ln.split(",")[0]]])
                          for ln in lines[1:] if ln.split(",")[0] in FIXES]
    write("orig.csv", "\n".join(plain) + "\n")
    expected, _ = _payloads(write, "c.yaml", "orig.csv", tmp_path / "r3")

    assert set(again) == {"C1", "C3", "C4"}  # the original referenceIds
    assert again == expected
    assert again["C1"]["phone"] == "+1 718 824 6926"
    assert again["C3"]["firstName"] == "=Bob" and again["C3"]["phone"] == "@home"
    assert again["C4"]["firstName"] == "'Kim"  # a quote the tool did not add is data: kept
    assert again["C4"]["phone"] == "-5"
    assert still.read_bytes().decode("utf-8-sig").count("\n") == 1  # no rejects left


def test_the_cli_validates_a_rejects_file_fed_back(write, tmp_path, monkeypatch) -> None:
    """Unfixed rejects through `etl validate`: no "_record has more than one occurrence"
    (exit 3); the same rows are rejected again for the same reasons."""
    write("dirty.csv", DIRTY)
    _, rejects = _payloads(write, "a.yaml", "dirty.csv", tmp_path / "r1")
    spec = write("b.yaml", SPEC.format(path=str(rejects)))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["validate", str(spec)])
    assert res.exit_code != 3, res.output
    assert "more than one occurrence" not in res.output
    assert "3" in res.output and "rejected" in res.output


def test_a_plain_file_keeps_its_quotes(write, tmp_path) -> None:
    """Only a file with the tool's marker columns (`_source_file`, `_record`, `_error`) is
    read as a rejects file: a source's own `'+1` is data."""
    write("s.csv", "id,first,last,phone,email\nC1,A,B,'+1,a@example.org\n")
    docs, _ = _payloads(write, "a.yaml", "s.csv", tmp_path / "r")
    assert docs["C1"]["phone"] == "'+1"


def test_a_half_rejects_file_is_named_not_a_polars_error(write, tmp_path, monkeypatch) -> None:
    """A rejects.csv whose `_error` column was deleted is no rejects file any more: the
    message names the clashing column, not "has more than one occurrence"."""
    write("s.csv", "id,first,last,phone,email,_source_file,_record\nC1,A,B,1,a@x.org,f,1\n")
    spec = write("a.yaml", SPEC.format(path="s.csv"))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["validate", str(spec)])
    assert res.exit_code == 3, res.output
    assert "'_source_file', '_record'" in res.output and "rename" in res.output
    assert "more than one occurrence" not in res.output


GIFTS = ("GiftID,DonorID,First,Last,GiftDate,Amount,PayMethod,Currency\n"
         "G1,D1,Ann,Lee,2024-01-02,10.00,Check,USD\n"
         'G2,D2,Bo,Li,2024-01-03,"7.073,96",Check,EUR\n'
         "G3,D3,=Cy,Ma,05/01/2024,12.50,Check,USD\n")
GIFT_FIXES = {"G2": ("Amount", "7073.96"), "G3": ("GiftDate", "2024-01-05")}


def test_etl_run_sends_the_fixed_rejects_with_their_transaction_ids(tmp_path, sandbox) -> None:
    """Run a dirty gift file, fix its rejects.csv, run it: CRM+ receives, under the original
    transactionIds, exactly the payloads the fixed original rows give."""
    from gift_spec import GIFT_MAPPINGS

    from etl.run.submit import RunOptions, run_pipeline
    from etl.spec.pipeline import open_pipeline

    def spec(name: str, path: str) -> Path:
        out = tmp_path / name
        out.write_text(f"name: gifts\ntarget: gift_transaction\nsource: {{path: {path}}}\n"
                       f"keys: {{source: LegacyCRM, id: {{column: GiftID}}}}\n{GIFT_MAPPINGS}\n"
                       "load: {requests_per_hour: 1000000}\n", encoding="utf-8")
        return out

    def go(path: Path) -> None:
        opts = RunOptions(token=sandbox.api_key, base_url=sandbox.base_url, backoff_base=0.01,
                          skip_crm_check=True)
        run_pipeline(open_pipeline(path, out_dir=tmp_path / f"rep-{path.stem}"), opts)

    (tmp_path / "gifts.csv").write_text(GIFTS, encoding="utf-8")
    go(spec("a.yaml", "gifts.csv"))
    assert {h["transactionId"] for h in sandbox.state.held_gifts()} == {"G1"}
    rejects = tmp_path / "rep-a" / "rejects.csv"
    with rejects.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    for row in rows[1:]:
        column, value = GIFT_FIXES[row[0]]
        row[rows[0].index(column)] = value
    with (tmp_path / "fixed.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)
    go(spec("b.yaml", "fixed.csv"))

    lines = GIFTS.splitlines()
    for gift, (column, value) in GIFT_FIXES.items():
        i = next(n for n, ln in enumerate(lines) if ln.startswith(gift + ","))
        cells = next(csv.reader([lines[i]]))
        cells[lines[0].split(",").index(column)] = value
        lines[i] = ",".join(cells)
    (tmp_path / "orig.csv").write_text("\n".join(lines[:1] + lines[2:]) + "\n", encoding="utf-8")
    result = validate_pipeline(load_spec(spec("c.yaml", "orig.csv")), today=TODAY)
    expected = {d["transactionId"]: d for d in map(json.loads, result.payloads["_payload"])}
    got = {h["transactionId"]: {k: v for k, v in h.items() if k != "batch"}
           for h in sandbox.state.held_gifts() if h["transactionId"] != "G1"}
    assert got == expected and set(got) == {"G2", "G3"}
    assert got["G3"]["contact"]["firstname"] == "=Cy"  # the guard did not go out
