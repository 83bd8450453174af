"""The dry run end to end: accounting, exact reject reasons, payload shapes (golden files)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from etl.prepare.runner import validate_pipeline
from etl.spec.parse import load_spec

DATA = Path(__file__).parent / "data"
TODAY = dt.date(2026, 11, 24)


def run(name: str):
    return validate_pipeline(load_spec(DATA / f"{name}.yaml"), today=TODAY)


@pytest.mark.parametrize("name", ["gifts_small", "contacts_small"])
def test_payloads_match_golden_files(name):
    result = run(name)
    golden = (DATA / "golden" / f"{name}.payloads.jsonl").read_text().splitlines()
    assert result.payloads["_payload"].to_list() == golden
    for line in golden:
        json.loads(line)


@pytest.mark.parametrize("name", ["gifts_small", "contacts_small"])
def test_every_row_is_valid_or_rejected(name):
    result = run(name)
    for f in result.files:
        assert f.rows == f.valid + f.rejected
    assert result.payloads.height == result.valid
    assert result.rejects.height == result.rejected
    rejected = set(result.rejects["_record"].to_list())
    sent = set(result.payloads["_record"].to_list())
    assert not rejected & sent
    assert rejected | sent == set(range(1, result.read + 1))


def reasons(result) -> dict[int, list[tuple[str, str]]]:
    out: dict[int, list[tuple[str, str]]] = {}
    for rec, field, rule in result.failures.select("_record", "field", "rule").iter_rows():
        out.setdefault(rec, []).append((field, rule))
    return out


def test_gift_reject_reasons_are_exact():
    result = run("gifts_small")
    got = reasons(result)
    assert got[1] == [("transactionId", "duplicate")]
    assert got[4] == [("transactionId", "duplicate")]
    assert sorted(got[2]) == [("contact.email", "email"), ("giftDate", "parse_date")]
    assert ("giftType", "value_map") in got[3]
    assert ("amount", "positive") in got[3]
    assert ("contact", "contact_required") in got[3]
    assert got[6] == [("designations", "designation_positive")]
    assert sorted(got[7]) == sorted(
        [
            ("(record)", "ragged"),
            # more than 2 decimals: parse_amount refuses it (never rounded), so the amount is
            # null and the designations are not also summed against it
            ("amount", "parse_amount"),
            ("giftDate", "not_future"),
        ]
    )
    errors = dict(zip(result.failures["rule"], result.failures["error"], strict=True))
    assert errors["parse_date"] == "not a date in formats %m/%d/%Y: '02/30/2022'"
    assert errors["value_map"] == "unmapped value '??' (mapped: CC, CHK, CASH, EFT)"
    assert errors["ragged"] == "record has 10 fields, the header has 12"
    assert errors["not_future"] == "is in the future (after 2026-11-24)"


def test_rejects_keep_original_columns_and_reasons():
    result = run("gifts_small")
    rejects = result.rejects
    assert rejects.columns[:3] == ["GiftID", "DonorID", "First"]
    assert rejects.columns[-6:] == [
        "_source_file",
        "_record",
        "_field",
        "_rule",
        "_value",
        "_error",
    ]
    row = rejects.filter(pl.col("_record") == 2).row(0, named=True)
    assert row["GiftDate"] == "02/30/2022"
    assert row["_value"] == "02/30/2022 | bob@"
    assert row["_source_file"].endswith("gifts_small.csv")


def test_control_totals_by_currency():
    totals = run("gifts_small").control_totals
    assert totals["rows"] == {"read": 7, "valid": 1, "rejected": 6}
    assert totals["amounts"]["USD"]["valid"] == "100.00"
    assert totals["amounts"]["CAD"] == {"read": "-25.00", "valid": "0.00"}


def test_duplicate_policy_keep_first_keeps_the_first():
    result = run("contacts_small")
    ids = [json.loads(p)["referenceId"] for p in result.payloads["_payload"]]
    assert ids.count("D4") == 1
    first_d4 = json.loads(result.payloads["_payload"][2])
    assert first_d4["firstName"] == "Zoë"


def _spec(write, extra: str, csv: str, target="contact_transaction"):
    write("d.csv", csv)
    return load_spec(
        write(
            "p.yaml",
            f"""
        name: t
        target: {target}
        source: {{path: d.csv}}
        keys: {{source: S, id: {{column: id}}}}
        {extra}
    """,
        )
    )


def test_declared_rules_are_checked_by_pandera(write):
    loaded = _spec(
        write,
        """
        mappings:
          firstName: first
          lastName: last
          state: {column: state, transforms: [upper]}
          birthYear: year
        rules:
          state: {one_of: [NY, NJ], required: true}
          birthYear: {min: 1900, max: 2026}
          lastName: {pattern: "[A-Za-z' -]+", unique: true}
    """,
        "id,first,last,state,year\n1,A,Lee,ny,1950\n2,B,Lee,CA,1850\n3,C,R2D2,,x\n",
    )
    result = validate_pipeline(loaded, today=TODAY)
    got = reasons(result)
    assert sorted(got[1]) == [("lastName", "unique")]
    assert sorted(got[2]) == [("birthYear", "min"), ("lastName", "unique"), ("state", "one_of")]
    assert sorted(got[3]) == [
        ("birthYear", "integer"),
        ("lastName", "pattern"),
        ("state", "required"),
    ]
    assert result.valid == 0


def test_template_and_hash_keys_are_stable(write):
    loaded = _spec(
        write,
        """
        mappings: {name: {template: "{first} & {last}"}}
    """.replace("keys", "keys"),
        "id,first,last\n1,Ann,\n2,Ann,Lee\n",
    )
    names = [json.loads(p)["name"] for p in validate_pipeline(loaded).payloads["_payload"]]
    assert names == ["Ann &", "Ann & Lee"]
    write("d.csv", "a,b\nx,y\nx,y\nx,z\n")
    hashed = load_spec(
        write(
            "h.yaml",
            """
        name: h
        target: contact_transaction
        source: {path: d.csv}
        keys: {source: S, id: {hash: [a, b]}, duplicates: keep_first}
        mappings: {name: a}
    """,
        )
    )
    first = validate_pipeline(hashed)
    again = validate_pipeline(hashed)
    assert first.payloads["_key"].to_list() == again.payloads["_key"].to_list()
    assert first.payloads.height == 2
    assert first.payloads["_key"][0].startswith("contact_transaction:S:")


def test_empty_values_are_omitted_and_header_only_file_is_fine(write):
    loaded = _spec(write, "mappings: {firstName: f, lastName: l, email: e}", "id,f,l,e\n")
    result = validate_pipeline(loaded)
    assert (result.read, result.valid, result.rejected) == (0, 0, 0)
    loaded = _spec(write, "mappings: {firstName: f, lastName: l, email: e}", "id,f,l,e\n1,A,B,  \n")
    assert json.loads(validate_pipeline(loaded).payloads["_payload"][0]) == {
        "referenceSource": "S",
        "referenceId": "1",
        "firstName": "A",
        "lastName": "B",
    }


def test_glob_reads_every_file_with_per_file_accounting(write):
    write("drop/a.csv", "id,f,l\n1,A,B\n2,,\n")
    write("drop/b.csv", "id,f,l\n1,C,D\n")
    loaded = load_spec(
        write(
            "p.yaml",
            """
        name: g
        target: contact_transaction
        source: {path: "drop/*.csv"}
        keys: {source: S, id: {column: id}}
        mappings: {firstName: f, lastName: l}
    """,
        )
    )
    result = validate_pipeline(loaded)
    assert [(Path(f.path).name, f.rows, f.valid, f.rejected) for f in result.files] == [
        ("a.csv", 2, 1, 1),
        ("b.csv", 1, 1, 0),
    ]


def test_strings_are_escaped_and_control_characters_rejected(write):
    loaded = _spec(
        write,
        "mappings: {firstName: f, lastName: l, address2: a}",
        'id,f,l,a\n1,"Ann ""Q""",Back\\slash,"Line 1\nLine 2\tx"\n2,A,B\x00C,\n',
    )
    result = validate_pipeline(loaded)
    payload = json.loads(result.payloads["_payload"][0])
    assert payload["firstName"] == 'Ann "Q"'
    assert payload["lastName"] == "Back\\slash"
    assert payload["address2"] == "Line 1\nLine 2\tx"
    assert reasons(result)[2] == [("lastName", "control_chars")]


@pytest.mark.parametrize("name", ["gifts_small", "contacts_small"])
def test_distinct_value_lookup_gives_the_same_result(monkeypatch, name):
    from etl.prepare import lookups

    plain = run(name)
    monkeypatch.setattr(lookups, "DEDUPE_MIN_ROWS", 0)
    monkeypatch.setattr(lookups, "DEDUPE_RATIO", 1.01)
    looked_up = run(name)
    assert looked_up.payloads.equals(plain.payloads)
    assert looked_up.failures.equals(plain.failures)
    assert looked_up.rejects.equals(plain.rejects)


def test_rule_failures_in_a_later_file_point_at_that_files_rows(write):
    write("drop/a.csv", "id,f,l,st\n1,A,B,NY\n2,C,D,NY\n")
    write("drop/b.csv", "id,f,l,st\n3,E,F,XX\n4,G,H,NY\n")
    loaded = load_spec(write("p.yaml", """
        name: g
        target: contact_transaction
        source: {path: "drop/*.csv"}
        keys: {source: S, id: {column: id}}
        mappings: {firstName: f, lastName: l, state: st}
        rules: {state: {one_of: [NY]}}
    """))
    result = validate_pipeline(loaded)
    assert [(Path(f.path).name, f.valid, f.rejected) for f in result.files] == [
        ("a.csv", 2, 0), ("b.csv", 1, 1)]
    row = result.failures.row(0, named=True)
    assert (Path(row["_source_file"]).name, row["_record"], row["rule"]) == ("b.csv", 1, "one_of")


@pytest.mark.parametrize("name", ["gifts_small", "contacts_small"])
def test_small_batches_give_the_same_result(monkeypatch, name):
    from etl.prepare import runner

    whole = run(name)
    monkeypatch.setattr(runner, "BATCH_ROWS", 2)
    batched = run(name)
    assert batched.payloads.equals(whole.payloads)
    assert batched.failures.equals(whole.failures)
    assert batched.rejects.equals(whole.rejects)
    assert batched.files == whole.files


def test_duplicates_and_unique_rules_see_the_whole_file_across_batches(monkeypatch, write):
    from etl.prepare import runner

    monkeypatch.setattr(runner, "BATCH_ROWS", 2)
    loaded = _spec(write, """
        mappings: {firstName: f, lastName: l, email: {column: e, transforms: [normalize_email]}}
        rules: {email: {unique: true}}
    """, "id,f,l,e\n1,A,B,a@x.org\n2,C,D,b@x.org\n3,E,F,c@x.org\n4,G,H, A@X.org\n1,I,J,d@x.org\n")
    got = reasons(validate_pipeline(loaded, today=TODAY))
    assert {k: sorted(v) for k, v in got.items()} == {
        1: sorted([("referenceId", "duplicate"), ("email", "unique")]),
        4: [("email", "unique")],
        5: [("referenceId", "duplicate")],
    }


def test_duplicates_in_a_later_file_name_that_files_records(monkeypatch, write):
    """Ids repeat per file; the message's record number counts data records of that file
    (blank lines are not records), across batches."""
    from etl.prepare import runner

    monkeypatch.setattr(runner, "BATCH_ROWS", 2)
    write("drop/a.csv", "id,f,l\n7,A,B\n8,C,D\n9,E,F\n")
    write("drop/b.csv", "id,f,l\n5,A,B\n\n7,C,D\n6,E,F\n7,G,H\n")
    loaded = load_spec(write("p.yaml", """
        name: g
        target: contact_transaction
        source: {path: "drop/*.csv"}
        keys: {source: S, id: {column: id}, duplicates: keep_first}
        mappings: {firstName: f, lastName: l}
    """))
    result = validate_pipeline(loaded)
    assert [(Path(f.path).name, f.valid, f.rejected) for f in result.files] == [
        ("a.csv", 3, 0), ("b.csv", 3, 1)]
    row = result.failures.row(0, named=True)
    where = (Path(row["_source_file"]).name, row["_record"], row["rule"])
    assert where == ("b.csv", 4, "duplicate")
    assert "appears 2 times in the file (first on record 2;" in row["error"]


def test_a_payload_sink_gets_every_payload_and_the_result_keeps_a_sample(monkeypatch):
    from etl.prepare import kept, runner

    monkeypatch.setattr(runner, "BATCH_ROWS", 1)
    monkeypatch.setattr(kept, "SAMPLE_ROWS", 2)
    whole = run("contacts_small")
    received: list[pl.DataFrame] = []
    sampled = validate_pipeline(load_spec(DATA / "contacts_small.yaml"), today=TODAY,
                                payload_sink=received.append)
    assert pl.concat(received).equals(whole.payloads)
    assert sampled.payloads_sampled and sampled.payloads.equals(whole.payloads.head(2))
    assert sampled.valid == whole.valid == 3


# -- hardening, round two (issue 11) --------------------------------------------------------------
GIFT_SPEC = """
    name: g
    target: gift_transaction
    source: {{path: {path}}}
    keys: {{source: S, id: {{column: id}}{keys}}}
    mappings:
      amount: {{column: amount, transforms: [parse_amount]}}
      giftDate: {{column: date, transforms: [{{parse_date: {{formats: ["%Y-%m-%d"]}}}}]}}
      giftType: {{constant: Check}}
      contact.referenceId: donor
    {extra}
"""


def gift_spec(write, path: str, keys: str = "", extra: str = ""):
    return load_spec(write("g.yaml", GIFT_SPEC.format(path=path, keys=keys, extra=extra)))


@pytest.mark.parametrize(
    ("policy", "rejected"),
    [("reject_all", [1, 3, 5]), ("keep_first", [3, 5]), ("keep_last", [1, 3])],
)
def test_ids_differing_only_in_case_or_spaces_are_duplicates_across_batches(
        monkeypatch, write, policy, rejected):
    from etl.prepare import runner

    monkeypatch.setattr(runner, "BATCH_ROWS", 2)  # the three ids fall in three batches
    rows = ["g1", "x2", "G1", "x4", '" G1 "', "x6"]
    write("a.csv", "id,amount,date,donor\n" + "".join(
        f"{r},5.00,2024-01-0{i},D\n" for i, r in enumerate(rows, 1)))
    result = validate_pipeline(gift_spec(write, "a.csv", f", duplicates: {policy}"), today=TODAY)
    fails = result.failures.filter(pl.col("rule") == "duplicate")
    assert fails["_record"].to_list() == rejected
    first = fails.row(0, named=True)
    other = 3 if first["_record"] == 1 else 1
    assert f"(record {other}) may be the same id" in first["error"]
    assert "differ only in letter case or surrounding spaces" in first["error"]
    assert f"duplicates: {policy}" in first["error"]
    assert result.valid == 6 - len(rejected)


def test_money_is_exact_end_to_end(write):
    """No float on the money path: the payload, the designations and the control totals."""
    write("a.csv", "id,amount,date,donor,f2\n"
                   "G1,99999999999999.99,2024-01-01,D,\n"
                   "G2,9999999999999999.99,2024-01-01,D,\n"
                   "G3,0.30,2024-01-01,D,0.10\n"
                   "G4,12345678901234567,2024-01-01,D,\n")
    extra = """designations:
      - code: {constant: GEN}
      - code: {constant: B}
        amount: {column: f2, transforms: [parse_amount]}"""
    result = validate_pipeline(gift_spec(write, "a.csv", extra=extra), today=TODAY)
    payloads = result.payloads["_payload"].to_list()
    assert '"amount":99999999999999.99,' in payloads[0]
    assert '"amount":9999999999999999.99,' in payloads[1]
    assert '"amountDesignated":0.20},{"code":"B","amountDesignated":0.10}' in payloads[2]
    assert result.failures.select("_record", "rule").rows() == [(4, "parse_amount")]
    assert "too large" in result.failures["error"][0]
    assert result.control_totals["amounts"]["(unspecified)"]["valid"] == "10100000000000000.28"


def test_designations_must_sum_exactly(write):
    write("a.csv", "id,amount,date,donor,f1,f2,f3\n"
                   "G1,100.00,2024-01-01,D,33.33,33.33,33.34\n"
                   "G2,100.00,2024-01-01,D,33.33,33.33,33.33\n")
    extra = "designations:\n" + "".join(
        f"      - code: {{constant: C{i}}}\n        amount: {{column: f{i}, transforms: "
        "[parse_amount]}\n" for i in (1, 2, 3))
    result = validate_pipeline(gift_spec(write, "a.csv", extra=extra), today=TODAY)
    assert result.failures.select("_record", "rule").rows() == [(2, "designations_sum")]
    assert "sum to 99.99, not the amount 100.00" in result.failures["error"][0]


def test_dates_before_1900_are_rejected_also_when_typed(tmp_path, write):
    frame = pl.DataFrame({"id": ["G1", "G2", "G3"], "amount": ["5"] * 3, "donor": ["D"] * 3,
                          "date": [dt.date(1000, 1, 1), dt.date(1899, 12, 31),
                                   dt.date(1900, 1, 1)]})
    frame.write_parquet(tmp_path / "a.parquet")
    spec = gift_spec(write, "a.parquet").spec
    loaded = load_spec(write("h.yaml", spec.model_dump_json(by_alias=True, exclude_none=True)))
    result = validate_pipeline(loaded, today=TODAY)
    assert result.failures.select("_record", "rule").rows() == [(1, "earliest"), (2, "earliest")]
    assert result.failures["error"][0] == (
        "is before 1900-01-01 (set rules.giftDate.earliest to accept older dates)")
