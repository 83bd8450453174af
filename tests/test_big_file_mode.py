"""A big file is validated with flat memory: the record layout a chunk of lines at a time, the
file-wide checks (repeated ids, `unique`, possible duplicate donors) partitioned on disk, the
rejects spooled to rejects.csv batch by batch. Forced on the bundled samples with tiny batches,
chunks and partitions, the dry run writes exactly the files it writes in one piece."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from etl.prepare import kept, lookups, runner
from etl.read import csvlayout
from etl.run.dry_run import dry_run
from etl.spec.pipeline import open_pipeline

ROOT = Path(__file__).resolve().parent.parent


def _dry_run(spec: Path, out: Path, keep: bool = False) -> dict[str, bytes | dict]:
    shutil.rmtree(out, ignore_errors=True)
    done = dry_run(open_pipeline(spec, out_dir=out), keep_payloads=keep)
    report = json.loads(done.paths.report_json.read_text())
    report.pop("generated_at")
    return {
        "report": report,
        "rejects.csv": done.paths.rejects_csv.read_bytes(),
        "payloads.jsonl": done.paths.payloads_jsonl.read_bytes(),
        "summary": done.summary.encode(),
        "html": _without_time(done.paths.report_html.read_text()).encode(),
    }


def _without_time(html: str) -> str:
    return "\n".join(line for line in html.splitlines() if "generated" not in line.lower())


@pytest.mark.parametrize("name", ["legacy_gifts", "legacy_contacts"])
def test_big_file_mode_writes_the_same_report(tmp_path, monkeypatch, name):
    spec = ROOT / "pipelines" / f"{name}.yaml"
    whole = _dry_run(spec, tmp_path / "whole")
    in_memory = _dry_run(spec, tmp_path / "memory", keep=True)  # rejects kept, not spooled
    for part in ("report", "rejects.csv", "payloads.jsonl", "summary", "html"):
        assert in_memory[part] == whole[part], part
    monkeypatch.setattr(runner, "BATCH_ROWS", 97)
    monkeypatch.setattr(runner, "SPILL_ROWS", 0)  # every file is "big"
    monkeypatch.setattr(runner, "SPILL_PART_ROWS", 400)
    monkeypatch.setattr(csvlayout, "BLOCK", 1310)
    monkeypatch.setattr(csvlayout, "STEP", 37)  # parsed in blocks of 37 records
    big = _dry_run(spec, tmp_path / "big")
    assert big["report"]["counts"] == whole["report"]["counts"]
    assert big["report"]["counts"]["rejected"] > 30  # the samples are dirty: rejects spooled
    for part in ("report", "rejects.csv", "payloads.jsonl", "summary", "html"):
        assert big[part] == whole[part], part


def test_rejects_go_to_disk_and_the_result_keeps_a_bounded_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "BATCH_ROWS", 50)
    spec = ROOT / "pipelines" / "legacy_gifts.yaml"
    done = dry_run(open_pipeline(spec, out_dir=tmp_path / "r"), keep_payloads=False)
    result = done.result
    assert result.rejects_sampled and result.rejects.height == kept.SAMPLE_REJECTS
    assert result.rejected > kept.SAMPLE_REJECTS
    lines = done.paths.rejects_csv.read_text(encoding="utf-8-sig").count("\n")
    assert lines >= result.rejected + 1  # header + every rejected row (quoted newlines: more)
    per_rule = result.failures.group_by("field", "rule").len()["len"]
    assert per_rule.max() <= kept.SAMPLE_FAILURES
    assert result.failure_counts is not None
    assert int(result.failure_counts["count"].sum()) >= result.rejected
    assert done.report["invariant"]["ok"] and done.report["invariant"]["rejects_rows_match"]


def test_big_file_mode_with_ragged_rows_quoted_newlines_and_duplicate_donors(
    tmp_path, monkeypatch
):
    rows = ["DonorID,FirstName,LastName,Email,Zip,Note"]
    for i in range(600):
        email = f"d{i % 250}@example.org"  # 250 emails over 600 donors: possible duplicates
        note = '"two\nlines"' if i % 37 == 0 else "n"
        ident = f"D{i % 590}"  # ten ids twice
        rows.append(f"{ident},Ann{i % 7},Lee{i % 11},{email},{10000 + i % 13},{note}")
        if i % 53 == 0:
            rows.append(f"X{i},Bo,Ray,x{i}@example.org,10001")  # a field short
        if i % 71 == 0:
            rows.append("")  # a blank line
    (tmp_path / "donors.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = tmp_path / "donors.yaml"
    spec.write_text(
        "name: donors\ntarget: contact_transaction\nsource: {path: donors.csv}\n"
        "keys: {source: S, id: {column: DonorID}, duplicates: keep_first}\n"
        "mappings:\n  firstName: FirstName\n  lastName: LastName\n"
        "  email: {column: Email, transforms: [normalize_email]}\n"
        "  postal: {column: Zip, transforms: [postal_code]}\n", encoding="utf-8")
    whole = _dry_run(spec, tmp_path / "whole")
    monkeypatch.setattr(runner, "BATCH_ROWS", 61)
    monkeypatch.setattr(runner, "SPILL_ROWS", 0)
    monkeypatch.setattr(runner, "SPILL_PART_ROWS", 90)
    monkeypatch.setattr(csvlayout, "BLOCK", 170)
    monkeypatch.setattr(csvlayout, "STEP", 23)
    big = _dry_run(spec, tmp_path / "big")
    report = whole["report"]
    assert isinstance(report, dict)
    rules = {f["rule"] for f in report["failures"]}
    assert {"duplicate", "ragged"} <= rules and report["possible_duplicates"]["groups"] > 100
    for part in ("report", "rejects.csv", "payloads.jsonl", "summary", "html"):
        assert big[part] == whole[part], part


@pytest.mark.parametrize("name", ["legacy_gifts", "legacy_contacts"])
@pytest.mark.parametrize("keep", [50, 50_000])
def test_lookup_tables_kept_across_batches_give_the_same_payloads(tmp_path, monkeypatch, name,
                                                                  keep):
    """Repeated values are transformed once per file (tables kept from batch to batch, up to
    LOOKUP_MAX values): the same payloads and rejects as transforming every row."""
    spec = ROOT / "pipelines" / f"{name}.yaml"
    monkeypatch.setattr(lookups, "DEDUPE_MIN_ROWS", 10**9)  # no lookups at all
    direct = _dry_run(spec, tmp_path / "direct")
    monkeypatch.setattr(lookups, "DEDUPE_MIN_ROWS", 0)
    monkeypatch.setattr(lookups, "DEDUPE_RATIO", 2.0)  # every one-column mapping looked up
    monkeypatch.setattr(runner, "BATCH_ROWS", 250)
    monkeypatch.setattr(lookups, "LOOKUP_MAX", keep)  # 50: tables overflow and are dropped
    looked_up = _dry_run(spec, tmp_path / "lookups")
    for part in ("report", "rejects.csv", "payloads.jsonl", "summary", "html"):
        assert looked_up[part] == direct[part], part


def test_a_file_without_rejects_gets_the_same_rejects_csv_spooled_or_not(tmp_path):
    """rejects.csv of a clean file is its header alone, whether the rows went through the
    spool (the CLI's dry run) or were kept in memory."""
    (tmp_path / "ok.csv").write_text("DonorID,FirstName,LastName\nD1,Ann,Lee\nD2,Bo,Ray\n",
                                     encoding="utf-8")
    spec = tmp_path / "ok.yaml"
    spec.write_text(
        "name: ok\ntarget: contact_transaction\nsource: {path: ok.csv}\n"
        "keys: {source: S, id: {column: DonorID}}\n"
        "mappings: {firstName: FirstName, lastName: LastName}\n", encoding="utf-8")
    spooled = _dry_run(spec, tmp_path / "spooled")
    whole = _dry_run(spec, tmp_path / "whole", keep=True)
    assert spooled["rejects.csv"] == whole["rejects.csv"]
    assert b"DonorID" in spooled["rejects.csv"]


def test_a_run_is_never_planned_from_a_dry_runs_samples(tmp_path):
    """The streamed dry run keeps samples of payloads and rejects; a run must see every row
    (the ledger records each), so planning from such a result is refused."""
    from etl.load.plan import plan_rows

    pipeline = open_pipeline(ROOT / "pipelines" / "legacy_gifts.yaml", out_dir=tmp_path / "s")
    sampled = dry_run(pipeline, keep_payloads=False).result
    with pytest.raises(ValueError, match="planned from every row"):
        plan_rows(sampled, pipeline, {}, "skip")


@pytest.mark.parametrize("in_flight", [1, 3])
def test_batches_validated_at_once_write_what_one_at_a_time_writes(
    tmp_path, monkeypatch, in_flight
):
    # Batches are validated IN_FLIGHT at a time, sharing the file's lookup tables, and taken
    # in file order: any number at once writes the same files.
    spec = ROOT / "pipelines" / "legacy_gifts.yaml"
    monkeypatch.setattr(runner, "BATCH_ROWS", 97)
    monkeypatch.setattr(lookups, "DEDUPE_MIN_ROWS", 10)  # lookup tables shared by the batches
    for keep in (False, True):  # sunk batch by batch (the dry run) or all kept (a run)
        monkeypatch.setattr(runner, "IN_FLIGHT", 2)
        two = _dry_run(spec, tmp_path / f"two{keep}", keep)
        monkeypatch.setattr(runner, "IN_FLIGHT", in_flight)
        other = _dry_run(spec, tmp_path / f"other{keep}", keep)
        assert two["report"]["counts"]["rejected"] > 30
        for part in ("report", "rejects.csv", "payloads.jsonl", "summary", "html"):
            assert other[part] == two[part], part


def test_a_batch_that_fails_stops_the_dry_run_and_leaves_no_payloads(tmp_path, monkeypatch):
    spec = ROOT / "pipelines" / "legacy_gifts.yaml"
    monkeypatch.setattr(runner, "BATCH_ROWS", 97)
    failures = runner.failures  # called once a batch
    calls = []

    def failing(frame, *args):
        calls.append(frame.height)
        if len(calls) == 5:
            raise RuntimeError("batch 5 broke")
        return failures(frame, *args)

    monkeypatch.setattr(runner, "failures", failing)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="batch 5 broke"):
        dry_run(open_pipeline(spec, out_dir=out), keep_payloads=False)
    assert not list(out.glob("*payloads.jsonl*"))
    assert len(calls) <= 5 + runner.IN_FLIGHT  # the batches after it are not all validated


def test_a_batch_transforms_only_the_values_no_batch_before_had(monkeypatch):
    """Lookup tables grow by the values a batch brings; a column whose values were all seen
    is not transformed again, and every row still gets its value."""
    import polars as pl

    from etl.prepare import mapping
    from etl.spec.parse import load_spec
    from etl.targets import get_target

    spec = load_spec(ROOT / "pipelines" / "legacy_gifts.yaml").spec
    plans = [p for p in mapping.plan(spec, get_target(spec.target))
             if p.sources() in ({"PayMethod"}, {"DonorLast"})]
    monkeypatch.setattr(lookups, "DEDUPE_MIN_ROWS", 0)
    monkeypatch.setattr(lookups, "DEDUPE_RATIO", 2.0)
    transformed: list[tuple[str, int]] = []  # (column, values) of each transform
    staged = mapping.with_stages

    def spy(lf, group):
        values = lf.collect()
        transformed.append((values.columns[0], values.height))
        return staged(values.lazy(), group)

    monkeypatch.setattr(mapping, "with_stages", spy)
    tables = lookups.Lookups()
    batches = [
        ({"PayMethod": ["CC", "CHK", "CC"], "DonorLast": ["lee", "ray", "lee"]},
         [("DonorLast", 2), ("PayMethod", 2)]),
        ({"PayMethod": ["CHK", "CC", "CC"], "DonorLast": ["ray", "o'brien", "lee"]},
         [("DonorLast", 1)]),  # one new name, no new code
        ({"PayMethod": ["CC", "CC", "CHK"], "DonorLast": ["lee", "lee", "ray"]}, []),
    ]
    for rows, expected in batches:
        transformed.clear()
        got = {t.columns[0]: t for t in tables.tables_for(pl.DataFrame(rows), plans)}
        assert sorted(transformed) == expected
        names = dict(zip(got["DonorLast"]["DonorLast"],
                         got["DonorLast"][mapping.OUT + "contact.lastname"], strict=True))
        assert [names[n] for n in rows["DonorLast"]] == [n.title() for n in rows["DonorLast"]]
        codes = dict(zip(got["PayMethod"]["PayMethod"],
                         got["PayMethod"][mapping.OUT + "giftType"], strict=True))
        assert codes == {"CC": "Credit", "CHK": "Check"}
