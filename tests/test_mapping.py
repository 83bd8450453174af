"""Mapping gaps found with realistic exports (issue 14): conditional mappings that read columns,
designations without a fund code or without an amount, empty nested Parquet values."""

from __future__ import annotations

import datetime as dt
import json
import textwrap

import polars as pl
import pytest

from etl.base.errors import SpecErrors
from etl.prepare.runner import validate_pipeline
from etl.spec.parse import load_spec

TODAY = dt.date(2026, 11, 24)


def _gifts(write, csv: str, mappings: str, designations: str = "") -> object:
    write("g.csv", csv)
    spec = textwrap.dedent("""
        name: t
        target: gift_transaction
        source: {path: g.csv}
        keys: {source: S, id: {column: id}}
        mappings:
          amount: {column: amount, transforms: [parse_amount]}
          giftDate: {column: date, transforms: [{parse_date: {formats: ["%Y-%m-%d"]}}]}
          giftType: {constant: Check}
          contact.referenceId: donor
    """) + textwrap.indent(textwrap.dedent(mappings), "  ") + textwrap.dedent(designations)
    return validate_pipeline(load_spec(write("g.yaml", spec)), today=TODAY)


def _sent(result) -> list[dict]:
    return [json.loads(p) for p in result.payloads["_payload"]]


# -- conditional mappings whose branches read columns -------------------------------------------

FULL_NAME = """\
id,amount,date,donor,Type,Full Name
G1,10.00,2024-01-02,D1,Organization,  Wayne Enterprises
G2,20.00,2024-01-02,D2,Individual,bruce wayne
G3,30.00,2024-01-02,D3,,Selina Kyle
"""

SPLIT = """
contact.type:
  when: [{column: Type, equals: Organization, then: Organization}]
  else: Household
contact.name:
  when:
    - {column: Type, equals: Organization, then: {column: Full Name, transforms: [trim]}}
contact.firstname:
  when: [{column: Type, equals: Organization, then: null}]
  else: {column: Full Name, transforms: [trim, {split_name: {part: first}}, title]}
contact.lastname:
  when: [{column: Type, equals: Organization, then: null}]
  else: {column: Full Name, transforms: [trim, {split_name: {part: last}}, title]}
"""


def test_one_full_name_column_splits_people_and_names_organizations(write):
    result = _gifts(write, FULL_NAME, SPLIT)
    assert result.rejected == 0, result.failures.rows()
    org, person, untyped = (p["contact"] for p in _sent(result))
    assert org == {"referenceId": "D1", "name": "Wayne Enterprises", "type": "Organization"}
    assert person == {"referenceId": "D2", "type": "Household", "firstname": "Bruce",
                      "lastname": "Wayne"}
    assert untyped["firstname"] == "Selina" and "name" not in untyped


def test_a_branch_can_be_a_template_and_an_error_counts_only_where_the_branch_is_taken(write):
    csv = ("id,amount,date,donor,Kind,First,Last,Alt\n"
           "G1,10.00,2024-01-02,D1,P,Ann,Lee,01/02/2020\n"
           "G2,10.00,2024-01-02,D2,X,Bo,Ray,not a date\n"
           "G3,10.00,2024-01-02,D3,P,Cy,Doe,not a date\n")
    mappings = """
    contact.name:
      when: [{column: Kind, equals: P, then: {template: "{First} {Last}"}}]
    receiptDate:
      when:
        - column: Kind
          equals: X
          then: {column: Alt, transforms: [{parse_date: {formats: ["%m/%d/%Y"]}}]}
      else: {constant: "2024-01-05"}
    """
    result = _gifts(write, csv, mappings)
    # G2 takes the parse_date branch and fails it; G3 has the same bad text but takes `else`
    assert result.failures.select("_record", "field", "rule").rows() == [
        (2, "receiptDate", "parse_date")]
    first, third = _sent(result)
    assert first["contact"]["name"] == "Ann Lee" and first["receiptDate"] == "2024-01-05"
    assert third["contact"]["name"] == "Cy Doe"


def test_a_constant_then_is_still_a_constant_not_a_column(write):
    csv = "id,amount,date,donor,Type,Organization\nG1,1.00,2024-01-02,D1,O,not this\n"
    result = _gifts(write, csv, """
    contact.type: {when: [{column: Type, equals: O, then: Organization}]}
    """)
    assert _sent(result)[0]["contact"]["type"] == "Organization"


def test_a_branch_with_an_unknown_transform_is_a_spec_error_with_its_line(write):
    write("g.csv", FULL_NAME)
    spec = write("g.yaml", """
        name: t
        target: contact_transaction
        source: {path: g.csv}
        keys: {source: S, id: {column: id}}
        mappings:
          name:
            when:
              - {column: Type, equals: Organization, then: {column: Full Name, transforms: [trimm]}}
            else: {column: Full Name, transforms: [{split_name: {part: middle}}]}
    """)
    with pytest.raises(SpecErrors) as caught:
        load_spec(spec)
    text = str(caught.value)
    assert "g.yaml:8: mappings.name.when[0].then.transforms[0]" in text
    assert "did you mean 'trim'" in text
    assert "g.yaml:9: mappings.name.else.transforms[0]" in text and "part must be" in text


def test_a_branch_cannot_nest_another_when(write):
    write("g.csv", FULL_NAME)
    spec = write("g.yaml", """
        name: t
        target: contact_transaction
        source: {path: g.csv}
        keys: {source: S, id: {column: id}}
        mappings:
          name:
            when:
              - column: Type
                equals: O
                then: {when: [{column: Type, equals: O, then: x}]}
    """)
    with pytest.raises(SpecErrors, match="cannot have its own `when`"):
        load_spec(spec)


def test_a_branch_mapping_keeps_the_hot_path_vectorized(write):
    """The branch chain is polars when/then over expressions: no Python per row (a
    map_elements anywhere in the plan would show in the query plan)."""
    from etl.prepare import mapping
    from etl.targets import get_target

    _gifts(write, FULL_NAME, SPLIT)
    spec = load_spec(write("g.csv", FULL_NAME).parent / "g.yaml").spec
    plans = [p for p in mapping.plan(spec, get_target(spec.target)) if "contact." in p.field]
    frame = pl.read_csv(write("g.csv", FULL_NAME), infer_schema=False).lazy()
    plan = mapping.with_stages(frame, plans).select([p.value.alias(p.field) for p in plans])
    assert "python" not in plan.explain().lower()


# -- designations: an amount needs a project, a project from the data needs an amount ----------

DESIGNATE = """
designations:
  - code: {column: Fund}
  - code: {column: Fund2}
    amount: {column: Fund2Amount, transforms: [parse_amount]}
"""
FUNDS = "id,amount,date,donor,Fund,Fund2,Fund2Amount\n"


def _designated(write, rows: str, designations: str = DESIGNATE):
    return _gifts(write, FUNDS + rows, "", designations)


def test_an_amount_without_a_fund_code_rejects_the_row_naming_the_field(write):
    result = _designated(write, "G1,25.00,2024-01-02,D1,GEN,,10.00\n"
                                "G2,25.00,2024-01-02,D2,GEN,BLDG,10.00\n")
    fails = result.failures.select("_record", "field", "rule", "value", "error").rows()
    assert fails == [(1, "designations.1.amountDesignated", "designation_project", "10.00",
                      "Fund2Amount is 10.00 but the designation code (Fund2) is empty: an "
                      "amount needs a project")]
    assert result.rejects["_record"].to_list() == [1]
    (sent,) = _sent(result)
    assert sent["designations"] == [{"code": "GEN", "amountDesignated": 15.00},
                                    {"code": "BLDG", "amountDesignated": 10.00}]


def test_a_zero_or_empty_amount_without_a_code_is_no_designation(write):
    result = _designated(write, "G1,25.00,2024-01-02,D1,GEN,,0.00\nG2,25.00,2024-01-02,D2,GEN,,\n")
    assert result.rejected == 0
    assert [p["designations"] for p in _sent(result)] == [
        [{"code": "GEN", "amountDesignated": 25.00}]] * 2


def test_a_code_whose_amount_does_not_parse_or_is_empty_is_rejected(write):
    result = _designated(write, "G1,25.00,2024-01-02,D1,GEN,BLDG,ten\n"
                                "G2,25.00,2024-01-02,D2,GEN,BLDG,\n")
    fails = result.failures.select("_record", "field", "rule", "error").rows()
    assert [f[:3] for f in fails] == [
        (1, "designations.1.amountDesignated", "parse_amount"),
        (2, "designations.1.amountDesignated", "designation_amount")]
    assert fails[1][3] == (
        "the designation code (Fund2) is 'BLDG' but its amount (Fund2Amount) is empty")
    assert result.valid == 0


def test_the_rest_of_the_amount_without_a_code_is_rejected_when_others_are_designated(write):
    result = _designated(write, "G1,25.00,2024-01-02,D1,,BLDG,10.00\n"
                                "G2,25.00,2024-01-02,D2,,,\n"
                                "G3,25.00,2024-01-02,D3,,BLDG,25.00\n")
    fails = result.failures.select("_record", "field", "rule", "error").rows()
    assert fails == [(1, "designations.0.amountDesignated", "designation_project",
                      "the rest of the amount, 15.00, is designated to nothing: the designation "
                      "code (Fund) is empty")]
    undesignated, whole = _sent(result)
    assert "designations" not in undesignated
    assert whole["designations"] == [{"code": "BLDG", "amountDesignated": 25.00}]


def test_a_constant_code_with_an_empty_amount_is_left_out(write):
    result = _designated(write, "G1,25.00,2024-01-02,D1,GEN,,\n", """
designations:
  - code: {column: Fund}
  - code: {constant: B}
    amount: {column: Fund2Amount, transforms: [parse_amount]}
""")
    assert _sent(result)[0]["designations"] == [{"code": "GEN", "amountDesignated": 25.00}]


# -- nested Parquet values: null and empty are no value ------------------------------------------


def test_a_null_parquet_list_or_struct_is_left_out_of_the_payload(tmp_path, write):
    pl.DataFrame(
        {"id": ["C1", "C2", "C3"], "first": ["Ann", "Bo", "Cy"], "last": ["Lee", "Ray", "Doe"],
         "lists": [["News"], None, []],
         "extra": [{"k": "v"}, None, {"k": None}]},
        schema_overrides={"lists": pl.List(pl.String)},
    ).write_parquet(tmp_path / "c.parquet")
    spec = write("c.yaml", """
        name: t
        target: contact_transaction
        source: {path: c.parquet}
        keys: {source: S, id: {column: id}}
        mappings:
          firstName: first
          lastName: last
          tags: lists
          address2: extra
    """)
    result = validate_pipeline(load_spec(spec), today=TODAY)
    first, second, third = _sent(result)
    assert first["tags"] == '["News"]' and first["address2"] == '{"k":"v"}'
    assert "tags" not in second and "address2" not in second  # never the text "null"
    assert third["tags"] == "[]"  # an empty list is a value (tests/test_sources.py pins it)
    assert "null" not in result.payloads["_payload"][1]


def test_branches_of_different_types_meet_as_text_and_are_typed_once(write):
    """A parsed amount in one branch and a constant true in the other have no common type:
    without casting, polars stops the run; with it, `true` is rejected as not an amount."""
    csv = "id,amount,date,donor,k\nG1,12.50,2024-01-02,D1,a\nG2,12.50,2024-01-02,D2,b\n"
    result = _gifts(write, csv, """
    isPrivate:
      when: [{column: k, equals: a, then: {column: k, value_map: {a: "yes"}}}]
      else: false
    exchangeRate:
      when: [{column: k, equals: a, then: {column: amount, transforms: [parse_amount]}}]
      else: true
    """)
    assert result.failures.select("_record", "field", "rule").rows() == [
        (2, "exchangeRate", "number")]
    (sent,) = _sent(result)
    assert sent["isPrivate"] is True and sent["exchangeRate"] == 12.5


def test_payload_text_is_exact_whichever_members_are_empty():
    """Every member but the source brings its own comma: the text stays compact and valid JSON
    when the members around a nested object, the object's own members or the designations are
    empty."""
    from etl.prepare.payload import payload_expr
    from etl.targets import get_target

    fields = ["transactionSource", "transactionId", "amount", "contact.firstname",
              "contact.lastname", "notes", "designations.0.code",
              "designations.0.amountDesignated", "designations.1.code",
              "designations.1.amountDesignated"]
    money = pl.Decimal(38, 2)
    frame = pl.DataFrame(
        {
            "transactionSource": ["S"] * 4,
            "transactionId": ["1", "2", "3", "4"],
            "amount": ["10.50", None, "3", "4"],
            "contact.firstname": ["Ann", None, None, "Bo"],
            "contact.lastname": [None, None, "Lee", "Ek"],
            "notes": [None, 'say "hi"', None, None],
            "designations.0.code": ["F1", None, "F1", "F1"],
            "designations.0.amountDesignated": ["10.50", None, None, "1"],
            "designations.1.code": [None, None, "F2", "F2"],
            "designations.1.amountDesignated": [None, None, "3", "3"],
        },
    ).with_columns(pl.col("amount", "^designations.*amountDesignated$").cast(money))
    text = frame.select(payload_expr(get_target("gift_transaction"), fields)).to_series()
    assert text.to_list() == [
        '{"transactionSource":"S","transactionId":"1","amount":10.50,"contact":{"firstname":'
        '"Ann"},"designations":[{"code":"F1","amountDesignated":10.50}]}',
        '{"transactionSource":"S","transactionId":"2","notes":"say \\"hi\\""}',
        '{"transactionSource":"S","transactionId":"3","amount":3.00,"contact":{"lastname":'
        '"Lee"},"designations":[{"code":"F2","amountDesignated":3.00}]}',
        '{"transactionSource":"S","transactionId":"4","amount":4.00,"contact":{"firstname":'
        '"Bo","lastname":"Ek"},"designations":[{"code":"F1","amountDesignated":1.00},'
        '{"code":"F2","amountDesignated":3.00}]}',
    ]
    for row in text:
        json.loads(row)
    with pytest.raises(ValueError, match="first field"):
        payload_expr(get_target("gift_transaction"), fields[1:])


def test_one_text_scan_tells_escapes_and_control_characters_apart():
    from etl.prepare.payload import scan_text

    frame = pl.DataFrame({
        "clean": ["a", None], "quote": ['say "x"', "b"], "newline": ["a\nb", None],
        "bell": ["a\x07", "b"], "both": ['\\', "\x1f"], "count": [1, 2],
    })
    scan = scan_text(frame, list(frame.columns))
    assert scan.needs == {
        "clean": (False, False), "quote": (True, False), "newline": (False, True),
        "bell": (False, False), "both": (True, False),
    }
    assert scan.control == ["bell", "both"]  # tab, newline and CR are escaped, not rejected
