"""Spec errors name the file, the line, the key path and what would be valid."""

from __future__ import annotations

import json

import pytest

from etl.base.errors import SpecError
from etl.spec.parse import json_schema, load_spec

GOOD = """
name: gifts
target: gift_transaction
source:
  path: gifts.csv
  encoding: cp1252
keys:
  source: LegacyCRM
  id: {column: GiftID}
mappings:
  amount: {column: Amount, transforms: [parse_amount]}
  giftType:
    column: PayMethod
    value_map: {CC: Credit}
    unmapped: default
    default: Other
  contact.referenceId: DonorID
"""


def test_good_spec_loads(write):
    loaded = load_spec(write("p.yaml", GOOD))
    spec = loaded.spec
    assert spec.target == "gift_transaction"
    assert spec.mappings["contact.referenceId"].column == "DonorID"  # shorthand
    assert spec.columns() == ["GiftID", "Amount", "PayMethod", "DonorID"]
    assert spec.load.batch_size == 100
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "transforms: [parse_amount]",
            "transforms: [parse_amout]",
            r"p\.yaml:10: mappings\.amount\.transforms\[0\]: unknown transform 'parse_amout' "
            r"\(did you mean 'parse_amount'\?\)",
        ),
        (
            "  encoding: cp1252",
            "  encodng: cp1252",
            r"p\.yaml:5: source\.encodng: unknown key 'encodng' \(did you mean 'encoding'\?\)",
        ),
        (
            "  encoding: cp1252",
            "  encoding: klingon",
            r"p\.yaml:5: source\.encoding: unknown encoding 'klingon'",
        ),
        (
            "target: gift_transaction",
            "target: gift",
            r"p\.yaml:2: target: Input should be 'contact_transaction' or 'gift_transaction'",
        ),
        (
            "  contact.referenceId: DonorID",
            "  contact.refId: DonorID",
            r"p\.yaml:16: mappings\.contact\.refId: gift_transaction has no field 'contact\.refId' "
            r"\(did you mean 'contact\.referenceId'\?\)",
        ),
        (
            "    unmapped: default\n    default: Other\n",
            "    unmapped: default\n",
            r"p\.yaml:11: mappings\.giftType: unmapped: default needs a `default:` value",
        ),
        (
            "  id: {column: GiftID}",
            "  id: {column: GiftID, hash: [A]}",
            r"p\.yaml:8: keys\.id: give exactly one of column, template or hash",
        ),
        (
            "source:\n",
            "source:\n  batch_size: ten\n",
            r"p\.yaml:4: source\.batch_size: unknown key",
        ),
        (
            "name: gifts",
            "name: gifts\nload: {batch_size: 0}",
            r"p\.yaml:2: load\.batch_size: Input should be greater than or equal to 1",
        ),
        (
            "transforms: [parse_amount]",
            "transforms: [{parse_amount: {decimals: ','}}]",
            r"mappings\.amount\.transforms\[0\]: parse_amount: .*decimals",
        ),
    ],
)
def test_spec_errors_name_file_line_and_key(write, old, new, message):
    assert old in GOOD
    path = write("p.yaml", GOOD.replace(old, new))
    with pytest.raises(SpecError, match=message):
        load_spec(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n\tsource: 1\n", r"p\.yaml:2: YAML syntax error: .*tabs"),
        ("name: &a x\nother: *a\n", r"p\.yaml:1: anchors and aliases"),
        ("name: [1,\n", r"p\.yaml:2: YAML syntax error"),
        ("", r"p\.yaml: the spec is empty"),
        ("- a\n- b\n", r"p\.yaml:1: the spec must be a mapping"),
        ("name: x\nname: y\n", r"p\.yaml:2: name: key 'name' appears twice"),
    ],
)
def test_yaml_problems(write, text, message):
    with pytest.raises(SpecError, match=message):
        load_spec(write("p.yaml", text))


def test_several_errors_reported_at_once(write):
    path = write(
        "p.yaml",
        GOOD.replace("parse_amount]", "parse_amout]").replace(
            "contact.referenceId", "contact.refId"
        ),
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(str(path)) for line in lines)


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_json_schema_describes_the_format():
    schema = json_schema()
    json.dumps(schema)
    assert schema["title"] == "etl pipeline spec"
    assert {"name", "target", "source", "keys", "mappings", "rules", "load"} <= set(
        schema["properties"]
    )
    assert schema["properties"]["target"]["enum"] == ["contact_transaction", "gift_transaction"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{parse_date: {formats: ['%q']}}", r"transforms\[0\]: parse_date: "),
        ("{split_name: {part: middle}}", r"transforms\[0\]: split_name: "),
        ("{replace: {pattern: '(['}}", r"transforms\[0\]: replace: "),
    ],
)
def test_bad_transform_argument_values_are_spec_errors(write, step, message):
    path = write("p.yaml", GOOD.replace("transforms: [parse_amount]", f"transforms: [{step}]"))
    with pytest.raises(SpecError, match=r"p\.yaml:10: mappings\.amount\." + message):
        load_spec(path)


def test_rules_need_a_mapping_but_may_check_the_key(write):
    ok = GOOD + "rules:\n  transactionId: {pattern: 'G[0-9]+'}\n  amount: {max: 10}\n"
    assert load_spec(write("p.yaml", ok)).spec.rules["transactionId"].pattern == "G[0-9]+"
    bad = GOOD + "rules:\n  notes: {max_length: 10}\n"
    with pytest.raises(
        SpecError, match=r"p\.yaml:18: rules\.notes: notes has rules but no mapping"
    ):
        load_spec(write("p.yaml", bad))


# -- hardening, round two (issue 11) --------------------------------------------------------------
@pytest.mark.parametrize("codec", ["base64", "rot13", "zlib_codec", "hex", "bz2_codec"])
def test_a_codec_that_is_no_text_encoding_is_a_spec_error(write, codec):
    path = write("p.yaml", GOOD.replace("encoding: cp1252", f"encoding: {codec}"))
    with pytest.raises(SpecError, match=rf"p\.yaml:5: source\.encoding: '{codec}' is a codec "
                                        "but not a text encoding"):
        load_spec(path)


@pytest.mark.parametrize(
    "deep",
    [
        "description: " + "[" * 1000 + "]" * 1000,  # flow style
        "description:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 1000)) + "  " * 1000
        + "x: 1",  # block style
        "description: " + "{a: " * 1000 + "1" + "}" * 1000,
    ],
)
def test_yaml_nested_1000_levels_is_a_spec_error_not_a_recursion_error(write, deep):
    path = write("p.yaml", GOOD + deep + "\n")
    with pytest.raises(SpecError, match=r"p\.yaml:\d+: lists and mappings nested more than 40"):
        load_spec(path)


def test_a_spec_must_be_a_regular_file_of_sane_size(tmp_path):
    import os

    (tmp_path / "d.yaml").mkdir()
    os.mkfifo(tmp_path / "f.yaml")  # opening it would block: it must never be opened
    for name, kind in (("d.yaml", "a directory"), ("f.yaml", "a named pipe")):
        with pytest.raises(SpecError, match=rf"{name}: not a regular file \({kind}"):
            load_spec(tmp_path / name)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(SpecError, match=r"big\.yaml: the spec is 1,048,579 bytes: too large"):
        load_spec(big)


def test_etl_validate_dev_zero_is_a_spec_error(tmp_path):
    """It used to read /dev/zero forever (then a traceback). A child process, so that a
    regression times out instead of hanging."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "etl", "validate", "/dev/zero", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "/dev/zero: not a regular file (a character device)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_earliest_is_a_date_rule_for_date_fields_only(write):
    import datetime as dt

    path = write("p.yaml", GOOD + "  giftDate: Date\nrules:\n  giftDate: {earliest: 1800-01-01}\n")
    assert load_spec(path).spec.rules["giftDate"].earliest == dt.date(1800, 1, 1)
    path = write("p.yaml", GOOD + "rules:\n  giftType: {earliest: 1800-01-01}\n")
    with pytest.raises(SpecError, match=r"p\.yaml:\d+: rules\.giftType\.earliest: earliest "
                                        "applies to date fields"):
        load_spec(path)


def test_source_timezone_must_be_a_known_zone(write):
    path = write("p.yaml", GOOD.replace("encoding: cp1252", "timezone: Mars/Olympus"))
    with pytest.raises(SpecError, match=r"p\.yaml:5: source\.timezone: unknown time zone"):
        load_spec(path)
    path = write("p.yaml", GOOD.replace("encoding: cp1252", "timezone: America/New_York"))
    assert load_spec(path).spec.source.timezone == "America/New_York"


def test_errors_in_different_sections_come_out_in_one_run(write):
    """A typo'd key in `source:` (pydantic) used to hide an unknown transform in `mappings:`
    (a semantic check that ran only once pydantic passed): two typos took two runs."""
    text = (
        GOOD.replace("  encoding: cp1252", "  encodng: cp1252")
        .replace("parse_amount]", "parse_amout]")
        .replace("  id: {column: GiftID}", "  id: {column: GiftID}\n  duplicats: keep_first")
        + "  notes: Memo\n  contact.refId: DonorID\n"
        + "rules:\n  notes: {requird: true}\n  amount: {min: 0}\n"
    )
    path = write("p.yaml", text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    lines = str(info.value).splitlines()
    expected = [
        (":5: source.encodng: unknown key", "did you mean 'encoding'"),
        (":9: keys.duplicats: unknown key", "did you mean 'duplicates'"),
        (":21: rules.notes.requird: unknown key", "did you mean 'required'"),
        (":11: mappings.amount.transforms[0]: unknown transform 'parse_amout'", "parse_amount"),
        (":19: mappings.contact.refId: gift_transaction has no field", "contact.referenceId"),
    ]
    for where, hint in expected:
        hit = [line for line in lines if where in line]
        assert hit and hint in hit[0], (where, lines)
    assert len(lines) == len(expected), lines
    assert all(line.startswith(str(path)) for line in lines)


def test_a_valid_mapping_beside_a_broken_section_gets_no_false_error(write):
    """The checks beside pydantic's errors see only what validated: a rule for a mapping
    that failed validation is not also called "a rule without a mapping"."""
    text = GOOD.replace("  encoding: cp1252", "  encodng: cp1252").replace(
        "  amount: {column: Amount, transforms: [parse_amount]}",
        "  amount: {column: Amount, constant: 1}",
    ) + "rules:\n  amount: {min: 0}\n"
    with pytest.raises(SpecError) as info:
        load_spec(write("p.yaml", text))
    lines = str(info.value).splitlines()
    assert len(lines) == 2, lines
    assert "source.encodng" in lines[0] and "mappings.amount" in lines[1]


def test_yaml_problems_and_spec_errors_come_out_together(write):
    """A duplicate key and an unsupported tag (found while reading the YAML) no longer stop
    the run before the spec's own checks: all three problems in one run, each with its line."""
    text = (
        GOOD.replace("  encoding: cp1252", "  encodng: cp1252")
        + "name: again\n"
        + "description: !!binary aGVsbG8=\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(write("p.yaml", text))
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    assert any(":17: name: key 'name' appears twice" in line for line in lines), lines
    assert any(":18: description: YAML tag" in line for line in lines), lines
    assert any(":5: source.encodng: unknown key" in line for line in lines), lines
