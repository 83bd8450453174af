"""The CLI: exit codes, help texts, no tracebacks for foreseeable problems."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from etl.cli.app import main

DATA = Path(__file__).parent / "data"

# A contact pipeline over d.csv with columns id, f (first name), l (last name).
NAMES_SPEC = """
    name: ok
    target: contact_transaction
    source: {path: d.csv}
    keys: {source: S, id: {column: id}}
    mappings: {firstName: f, lastName: l}
"""


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def commands(group=main, prefix=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name), cmd
        if hasattr(cmd, "commands"):
            yield from commands(cmd, (*prefix, name))


def test_every_command_has_help_with_an_example():
    for path, cmd in commands():
        assert cmd.help, f"{' '.join(path)} has no help"
        result = invoke(*path, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output, f"{' '.join(path)} help has no Example"


def test_validate_writes_the_report_and_exits_1_on_rejects(tmp_path):
    out = tmp_path / "rep"
    result = invoke("validate", str(DATA / "gifts_small.yaml"), "--out", str(out))
    assert result.exit_code == 1
    assert "reject rate" in result.output
    for name in ("report.json", "rejects.csv", "payloads.jsonl", "report.html"):
        assert (out / name).is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["read"] == 7


def test_max_reject_rate_tolerates_some(tmp_path):
    args = ["validate", str(DATA / "contacts_small.yaml"), "--out", str(tmp_path), "-q"]
    assert invoke(*args, "--max-reject-rate", "0.5").exit_code == 0
    assert invoke(*args, "--max-reject-rate", "0.1").exit_code == 1


def test_clean_file_exits_0(write, tmp_path):
    write("d.csv", "id,f,l\n1,A,B\n")
    spec = write("p.yaml", NAMES_SPEC)
    result = invoke("validate", str(spec), "--out", str(tmp_path / "r"), "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["counts"]["valid"] == 1


def test_spec_error_exits_2_with_the_line(write, tmp_path):
    spec = write("p.yaml", "name: x\ntarget: gift\n")
    result = CliRunner().invoke(main, ["validate", str(spec), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{spec}:2: target:" in result.output
    assert "Traceback" not in result.output


def test_source_error_exits_3(write, tmp_path):
    write("d.csv", b"id,f,l\n1,\xe9,B\n")
    spec = write("p.yaml", NAMES_SPEC)
    result = CliRunner().invoke(main, ["validate", str(spec), "--out", str(tmp_path / "r")])
    assert result.exit_code == 3
    assert "d.csv:2: byte 0xe9 is not valid UTF-8" in result.output


def test_missing_column_exits_3_and_shows_header(write, tmp_path):
    write("d.csv", "id,first,l\n1,A,B\n")
    spec = write("p.yaml", NAMES_SPEC)
    result = CliRunner().invoke(main, ["validate", str(spec), "--out", str(tmp_path / "r")])
    assert result.exit_code == 3
    assert "missing: 'f'; the header has: 'id', 'first', 'l'" in result.output


def test_schema_is_json():
    result = invoke("schema")
    assert json.loads(result.output)["title"] == "etl pipeline spec"


@pytest.mark.parametrize("target", ["contact_transaction", "gift_transaction"])
def test_fields_lists_the_wire_names(target):
    out = invoke("fields", target).output
    assert ("contact.firstname" in out) == (target == "gift_transaction")


def test_python_dash_m_works():
    proc = subprocess.run(
        [sys.executable, "-m", "etl", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("etl, version")


def test_committed_schema_file_is_current():
    committed = json.loads((Path(__file__).parent.parent / "pipeline.schema.json").read_text())
    assert committed == json.loads(invoke("schema").output), (
        "run: etl schema > pipeline.schema.json"
    )


def test_demo_runs_every_sample_pipeline_against_the_sandbox(tmp_path):
    result = invoke("demo", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "sandbox nightly batch" in result.output
    for name in ("legacy_contacts", "legacy_gifts", "nightly_gifts_drop"):
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["counts"]["read"] == report["counts"]["valid"] + report["counts"]["rejected"]
        assert (tmp_path / name / "ledger.sandbox.sqlite").is_file()
    # one sandbox for all three (a rehearsal): the gifts land on the contacts sent before them,
    # so a gift is left in "needs update" only where its donor was rejected by validation
    rehearsal = json.loads((tmp_path / "rehearsal.json").read_text())
    pipes = {p["name"]: p for p in rehearsal["pipelines"]}
    assert list(pipes) == ["legacy_contacts", "legacy_gifts", "nightly_gifts_drop"]
    contacts_rejected = {r["key"] for r in pipes["legacy_contacts"]["rows"]
                         if r["status"] == "rejected"}
    gifts = pipes["legacy_gifts"]
    assert gifts["sandbox_outcomes"]["created"] == gifts["states"]["confirmed"] > 2000
    confirmed = [r for r in gifts["rows"] if r["status"] == "confirmed"]
    assert confirmed and all(r["crm_id"] for r in confirmed)
    assert gifts["sandbox_outcomes"].get("needs_update", 0) <= len(contacts_rejected)


@pytest.mark.parametrize("limit", [None, "2"])
def test_validate_streams_the_same_payloads_as_the_library(tmp_path, limit):
    golden = (DATA / "golden" / "contacts_small.payloads.jsonl").read_text().splitlines()
    args = ["validate", str(DATA / "contacts_small.yaml"), "--out", str(tmp_path), "-q"]
    invoke(*args, *(["--payloads", limit] if limit else []))
    written = (tmp_path / "payloads.jsonl").read_text().splitlines()
    assert written == (golden[: int(limit)] if limit else golden)
    assert not list(tmp_path.glob(".payloads*"))


def test_an_unwritable_report_folder_is_a_message_not_a_traceback(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(
        main, ["validate", str(DATA / "contacts_small.yaml"), "--out", str(blocker / "r")]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "error: " in result.output and "a-file" in result.output


def test_a_spec_cannot_put_its_reports_into_a_folder_the_tool_did_not_create(write, tmp_path):
    write("d.csv", "id,f,l\n1,A,B\n")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "report.json").write_text("precious", encoding="utf-8")
    spec = write("p.yaml", NAMES_SPEC + f"    output: {{dir: {json.dumps(str(etc))}}}\n")
    for command in (["validate", str(spec)], ["run", str(spec), "--sandbox"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert "output.dir" in result.output and "--out DIR" in result.output
        assert "Traceback" not in result.output
    assert [p.name for p in etc.iterdir()] == ["report.json"]
    assert (etc / "report.json").read_text(encoding="utf-8") == "precious"
    # the user's own --out is an explicit choice
    assert invoke("validate", str(spec), "--out", str(etc), "-q").exit_code == 0
    assert (etc / "report.json").read_text(encoding="utf-8") != "precious"
    # a new folder is created, marked, and may be written again
    write("p.yaml", NAMES_SPEC + "    output: {dir: reports/new}\n")
    assert invoke("validate", str(spec), "-q").exit_code == 0
    assert (tmp_path / "reports" / "new" / ".etl-report").is_file()
    assert invoke("validate", str(spec), "-q").exit_code == 0


def test_json_summary_and_ledger_export_never_write_through_a_link(write, tmp_path):
    write("d.csv", "id,f,l\n1,A,B\n")
    spec = write("p.yaml", NAMES_SPEC)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    ledger = tmp_path / "l.sqlite"
    base = ["run", str(spec), "--sandbox", "--ledger", str(ledger), "--out", str(tmp_path / "r")]
    refused = CliRunner().invoke(main, [*base, "--json-summary", str(link)])
    assert refused.exit_code == 2, refused.output
    assert "symbolic link" in refused.output and not ledger.exists()  # refused before the run
    assert invoke(*base, "-q").exit_code == 0
    export = CliRunner().invoke(main, ["ledger", "export", "1", "--ledger", str(ledger),
                                       "--out", str(link)])
    assert export.exit_code == 2, export.output
    assert "symbolic link" in export.output and "Traceback" not in export.output
    assert link.is_symlink() and victim.read_text(encoding="utf-8") == "precious"
