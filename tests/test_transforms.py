"""Transform registry: each transform as a table of input -> (value, error message or None)."""

from __future__ import annotations

import datetime as dt
import inspect
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from etl.transforms import COLUMN_ARGS, REGISTRY, Step, check_args, suggest
from etl.transforms.helpers import WS_CHARS

D = dt.date
AMBIGUOUS = "ambiguous date '01/02/2020': 2020-01-02 (%m/%d/%Y) or 2020-02-01 (%d/%m/%Y)"


def apply(name: str, inputs: list[Any], dtype: Any = pl.String, **kwargs: Any) -> list[tuple]:
    """Run transform `name` over `inputs`; rows of (value, error)."""
    step = REGISTRY[name](pl.col("v"), **kwargs)
    error = step.error if step.error is not None else pl.lit(None, pl.String)
    frame = pl.DataFrame({"v": inputs}, schema={"v": dtype})
    out = frame.select(step.value.alias("v"), error.alias("e"))
    assert out.schema["e"] == pl.String
    return out.rows()


def cases(*rows: tuple) -> list[Any]:
    """(input, value) or (input, value, error) rows as pytest params, id'd by the input."""
    return [
        pytest.param(r[0], r[1], r[2] if len(r) > 2 else None, id=repr(r[0])[:40]) for r in rows
    ]


def check(name: str, raw: Any, value: Any, error: str | None, **kwargs: Any) -> None:
    if name == "parse_amount" and isinstance(value, float):  # amounts are exact Decimals
        value = Decimal(str(value))
    assert apply(name, [raw], **kwargs) == [(value, error)]


# --------------------------------------------------------------------------------------------
# Contract


def test_every_transform_has_help_and_typed_keyword_arguments() -> None:
    for name, fn in REGISTRY.items():
        assert fn.__doc__, name
        params = list(inspect.signature(fn).parameters.values())
        assert params[0].name == "expr"
        for p in params[1:]:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)
            assert p.annotation is not inspect.Parameter.empty, (name, p.name)


def test_registry_names() -> None:
    assert set(REGISTRY) >= {
        "trim", "collapse_whitespace", "upper", "lower", "title", "null_if", "split_name",
        "parse_date", "parse_amount", "normalize_email", "normalize_phone", "postal_code",
        "country_iso", "concat", "coalesce", "default", "truncate", "replace",
    }  # fmt: skip
    assert COLUMN_ARGS["concat"] == ("columns",)
    assert COLUMN_ARGS["coalesce"] == ("columns",)
    assert COLUMN_ARGS["trim"] == ()


def test_check_args() -> None:
    assert check_args("parse_amount", {"decimal": ","}) is None
    assert check_args("parse_amount", {}) is None
    assert check_args("parse_date", {"formats": ["%m/%d/%Y"], "excel_serial": True}) is None
    problem = check_args("parse_amount", {"decimals": ","})
    assert problem is not None
    assert "decimals" in problem and "parse_amount takes: decimal" in problem
    missing = check_args("null_if", {})
    assert missing is not None and "values" in missing
    assert check_args("trim", {"x": 1}) == (
        "got an unexpected keyword argument 'x'; trim takes: no arguments"
    )


def test_suggest() -> None:
    assert suggest("parse_amout", list(REGISTRY)) == "parse_amount"
    assert suggest("titel", list(REGISTRY)) == "title"
    assert suggest("zzzzzz", list(REGISTRY)) is None


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("split_name", {"part": "middle"}),
        ("parse_amount", {"decimal": ";"}),
        ("parse_date", {"formats": []}),
        ("parse_date", {"formats": ["%m/%q/%Y"]}),
        ("parse_date", {"formats": [1]}),
        ("truncate", {"length": -1}),
        ("replace", {"pattern": "("}),
    ],
)
def test_bad_argument_values_raise_value_error(name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        REGISTRY[name](pl.col("v"), **kwargs)


NULL_ARGS: dict[str, dict[str, Any]] = {
    "null_if": {"values": ["x"]},
    "split_name": {"part": "first"},
    "concat": {"columns": ["w"]},
    "coalesce": {"columns": ["w"]},
    "default": {"value": "d"},
    "truncate": {"length": 3},
    "replace": {"pattern": "a"},
}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_no_python_per_row(name: str) -> None:
    step = REGISTRY[name](pl.col("v"), **NULL_ARGS.get(name, {}))
    plan = pl.LazyFrame({"v": ["x"], "w": ["y"]}).select(
        step.value.alias("v"), (step.error if step.error is not None else pl.lit(None)).alias("e")
    )
    assert "python" not in plan.explain().lower()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_nulls_pass_through_without_error(name: str) -> None:
    step = REGISTRY[name](pl.col("v"), **NULL_ARGS.get(name, {}))
    assert isinstance(step, Step)
    error = step.error if step.error is not None else pl.lit(None, pl.String)
    frame = pl.DataFrame(
        {"v": [None, None], "w": [None, None]}, schema={"v": pl.String, "w": pl.String}
    )
    rows = frame.select(step.value.alias("v"), error.alias("e")).rows()
    expected_value = "d" if name == "default" else None
    assert rows == [(expected_value, None)] * 2


# --------------------------------------------------------------------------------------------
# Whitespace and case


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("  Alice ", "Alice"),
        ("\u00a0Bob\u00a0", "Bob"),
        ("\t a  b \n", "a  b"),
        ("\u200b\ufeffx\u202f", "x"),
        ("", None),
        ("   ", None),
        ("\u00a0", None),
    ),
)
def test_trim(raw: str, value: str | None, error: None) -> None:
    check("trim", raw, value, error)


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("  a   b\t\tc ", "a b c"),
        ("a\u00a0\u00a0b", "a b"),
        ("a\nb", "a b"),
        ("   ", None),
        ("x", "x"),
    ),
)
def test_collapse_whitespace(raw: str, value: str | None, error: None) -> None:
    check("collapse_whitespace", raw, value, error)


def test_collapse_whitespace_replaces_only_the_runs_that_change() -> None:
    """WS_RUNS leaves single spaces alone; over generated text with every kind of whitespace
    run, the result is what replacing every run of WS_RE with a space gives."""
    import random

    from etl.transforms.helpers import WS_CHARS, WS_RE, collapse_ws

    rng = random.Random(3)
    pieces = ["a", "Bc", "1", "é", " ", " ", "  ", "\t", "\n", "\u00a0", "\u200b", "\ufeff",
              " \u200b ", "\u3000", "\r\n", "\x1f"]
    cells = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 9))) for _ in range(5000)]
    frame = pl.DataFrame({"v": [*cells, *WS_CHARS, None]})
    got = frame.select(collapse_ws(pl.col("v")).alias("got"),
                       pl.col("v").str.replace_all(WS_RE + "+", " ").alias("want"))
    assert got.filter(pl.col("got").ne_missing(pl.col("want"))).height == 0


def test_upper_lower() -> None:
    assert apply("upper", ["abc É", None]) == [("ABC É", None), (None, None)]
    assert apply("lower", ["ABC É", None]) == [("abc é", None), (None, None)]
    assert apply("upper", [12], dtype=pl.Int64) == [("12", None)]


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("o'brien", "O'Brien"),
        ("O'BRIEN", "O'Brien"),
        ("o\u2019brien", "O\u2019Brien"),
        ("MCDONALD", "McDonald"),
        ("mcdonald", "McDonald"),
        ("ronald mcdonald", "Ronald McDonald"),
        ("smith-mcneil", "Smith-McNeil"),
        ("macdonald", "Macdonald"),  # only "Mc" is handled: Mac is ambiguous (Macy, Mack)
        ("mary-jane", "Mary-Jane"),
        ("mary-jane smith", "Mary-Jane Smith"),
        # surname particles (issue 14): kept as written as the first word of a cased value
        ("de la Cruz", "de la Cruz"),
        ("van Beethoven", "van Beethoven"),
        ("van der Berg", "van der Berg"),
        ("De Luca", "De Luca"),
        ("De La Cruz", "De la Cruz"),
        ("de la cruz", "De la Cruz"),  # no case to keep: capitalised as the first word
        ("DE LA CRUZ", "De la Cruz"),
        ("del smith", "Del Smith"),
        ("Maria De La Cruz", "Maria de la Cruz"),
        ("Jean le Rond", "Jean le Rond"),  # le, bin, ibn: lower only where written lower
        ("Nguyen Le Anh", "Nguyen Le Anh"),
        ("NGUYEN LE ANH", "Nguyen Le Anh"),
        ("mohammed bin salman", "Mohammed Bin Salman"),
        ("Mohammed bin Salman", "Mohammed bin Salman"),
        ("Li Bin", "Li Bin"),
        ("de McDonald", "de McDonald"),
        ("van o'brien-mcneil", "Van O'Brien-McNeil"),
        ("maria de la cruz", "Maria de la Cruz"),
        ("ludwig van beethoven", "Ludwig van Beethoven"),
        ("JOHANN VON NEUMANN", "Johann von Neumann"),
        ("ana de", "Ana De"),  # ... and as the last word
        ("john smith iii", "John Smith III"),
        ("JOHN SMITH II", "John Smith II"),
        ("john smith iv", "John Smith IV"),
        ("john smith iii, esq", "John Smith III, Esq"),
        ("ivy iverson", "Ivy Iverson"),
        ("élodie", "Élodie"),
        ("DeLuca", "DeLuca"),  # an inner capital means it was cased on purpose: kept
        ("MacArthur", "MacArthur"),
        ("LaToya van Dyke", "LaToya van Dyke"),
        ("McDONALD", "McDonald"),  # ... but not when the rest is shouting
        ("JOHN McDONALD", "John McDonald"),
        ("John smith", "John Smith"),
        ("", ""),
    ),
)
def test_title(raw: str, value: str | None, error: None) -> None:
    check("title", raw, value, error)


# --------------------------------------------------------------------------------------------
# Nulls, defaults, combining columns


def test_null_if() -> None:
    rows = apply("null_if", ["N/A", "n/a", "none", " N/A", "x", "", None], values=["N/A", "none"])
    assert [v for v, _ in rows] == [None, "n/a", None, " N/A", "x", "", None]
    assert all(e is None for _, e in rows)
    assert apply("null_if", ["", "a"], values=[""]) == [(None, None), ("a", None)]
    assert apply("null_if", ["-"], values="-") == [(None, None)]  # a lone string is a list of one


def test_default() -> None:
    assert apply("default", [None, "x", ""], value="Unknown") == [
        ("Unknown", None),
        ("x", None),
        ("", None),
    ]


def test_default_accepts_numbers() -> None:
    assert apply("default", [None, 2.5], dtype=pl.Float64, value=0) == [(0.0, None), (2.5, None)]


def test_concat_and_coalesce() -> None:
    frame = pl.DataFrame(
        {
            "a": ["Ann", None, None, "Bo", ""],
            "b": ["Lee", "Kim", None, None, "Ng"],
            "c": ["Jr", None, None, "Jr", None],
        }
    )
    step = REGISTRY["concat"](pl.col("a"), columns=["b", "c"])
    assert step.error is None
    assert frame.select(step.value).to_series().to_list() == [
        "Ann Lee Jr", "Kim", None, "Bo Jr", "Ng"
    ]  # fmt: skip
    step = REGISTRY["concat"](pl.col("a"), columns=["b"], sep=", ")
    assert frame.select(step.value).to_series().to_list() == ["Ann, Lee", "Kim", None, "Bo", "Ng"]
    step = REGISTRY["coalesce"](pl.col("a"), columns=["b", "c"])
    assert step.error is None
    assert frame.select(step.value).to_series().to_list() == ["Ann", "Kim", None, "Bo", ""]


def test_truncate_and_replace() -> None:
    assert apply("truncate", ["abcdef", "ab", "ééé", None], length=2) == [
        ("ab", None),
        ("ab", None),
        ("éé", None),
        (None, None),
    ]
    assert apply("replace", ["a-b-c", "abc"], pattern="-", with_="") == [
        ("abc", None),
        ("abc", None),
    ]
    assert apply("replace", ["ID 12"], pattern=r"^ID (\d+)$", with_="#$1") == [("#12", None)]
    assert apply("replace", ["a.b"], pattern=".", with_="!", literal=True) == [("a!b", None)]


# --------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    ("raw", "first", "last"),
    [
        ("Smith, John", "John", "Smith"),
        ("Smith,John", "John", "Smith"),
        ("  Smith ,  John Q ", "John Q", "Smith"),
        ("John Smith", "John", "Smith"),
        ("John  Q.  Smith", "John Q.", "Smith"),
        ("Mary Ann van Dyke", "Mary Ann van", "Dyke"),
        ("John Smith Jr.", "John", "Smith Jr."),
        ("John Smith, Jr.", "John", "Smith Jr."),
        ("Smith, John, III", "John", "Smith III"),
        ("Cher", None, "Cher"),
        ("Smith,", None, "Smith"),
        (", John", "John", None),
        ("", None, None),
        ("   ", None, None),
    ],
)
def test_split_name(raw: str, first: str | None, last: str | None) -> None:
    assert apply("split_name", [raw], part="first") == [(first, None)]
    assert apply("split_name", [raw], part="last") == [(last, None)]


# --------------------------------------------------------------------------------------------
# Dates

US_EU_ISO = ["%m/%d/%Y", "%d/%m/%Y", "%Y-%m-%d"]


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("01/02/2020", None, AMBIGUOUS),
        ("05/05/2020", D(2020, 5, 5)),  # same date either way: fine
        ("13/01/2021", D(2021, 1, 13)),  # only %d/%m/%Y fits
        ("12/31/2021", D(2021, 12, 31)),  # only %m/%d/%Y fits
        ("2021-01-13", D(2021, 1, 13)),
        (" 2021-01-13 ", D(2021, 1, 13)),
        (
            "02/30/2022",
            None,
            "not a date in formats %m/%d/%Y, %d/%m/%Y, %Y-%m-%d: '02/30/2022'",
        ),
        (
            "2021-13-01",
            None,
            "not a date in formats %m/%d/%Y, %d/%m/%Y, %Y-%m-%d: '2021-13-01'",
        ),
        ("12/31/99", None, "not a date in formats %m/%d/%Y, %d/%m/%Y, %Y-%m-%d: '12/31/99'"),
        ("", None, "not a date in formats %m/%d/%Y, %d/%m/%Y, %Y-%m-%d: ''"),
        ("soon", None, "not a date in formats %m/%d/%Y, %d/%m/%Y, %Y-%m-%d: 'soon'"),
    ),
)
def test_parse_date(raw: str, value: dt.date | None, error: str | None) -> None:
    check("parse_date", raw, value, error, formats=US_EU_ISO)


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("02/30/2022", None, "not a date in formats %m/%d/%Y, %Y-%m-%d: '02/30/2022'"),
        ("2021-13-01", None, "not a date in formats %m/%d/%Y, %Y-%m-%d: '2021-13-01'"),
        ("01/02/2020", D(2020, 1, 2)),
        ("1/2/2020", D(2020, 1, 2)),
        ("2020-02-29", D(2020, 2, 29)),
        ("2021-02-29", None, "not a date in formats %m/%d/%Y, %Y-%m-%d: '2021-02-29'"),
    ),
)
def test_parse_date_us_and_iso(raw: str, value: dt.date | None, error: str | None) -> None:
    check("parse_date", raw, value, error, formats=["%m/%d/%Y", "%Y-%m-%d"])


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("2021-01-13T10:11:12Z", D(2021, 1, 13)),
        ("2021-01-13 23:59:59", D(2021, 1, 13)),
        ("2021-01-13", None, "not a date in formats %Y-%m-%dT%H:%M:%SZ, %Y-%m-%d %H:%M:%S: "
         "'2021-01-13'"),
    ),
)  # fmt: skip
def test_parse_date_datetime_formats(raw: str, value: dt.date | None, error: str | None) -> None:
    check("parse_date", raw, value, error, formats=["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S"])


def test_parse_date_default_is_iso() -> None:
    assert apply("parse_date", ["2020-03-04", "03/04/2020"]) == [
        (D(2020, 3, 4), None),
        (None, "not a date in formats %Y-%m-%d: '03/04/2020'"),
    ]
    assert apply("parse_date", ["03/04/2020"], formats="%m/%d/%Y") == [(D(2020, 3, 4), None)]


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("45000", D(2023, 3, 15)),
        ("45000.0", D(2023, 3, 15)),
        ("1", D(1899, 12, 31)),
        ("2958465", D(9999, 12, 31)),
        ("2021-01-13", D(2021, 1, 13)),
        ("0", None, "not a date in formats %Y-%m-%d or an excel serial: '0'"),
        ("2958466", None, "not a date in formats %Y-%m-%d or an excel serial: '2958466'"),
        ("45000.5", None, "not a date in formats %Y-%m-%d or an excel serial: '45000.5'"),
    ),
)
def test_parse_date_excel_serial(raw: str, value: dt.date | None, error: str | None) -> None:
    check("parse_date", raw, value, error, formats=["%Y-%m-%d"], excel_serial=True)


def test_parse_date_excel_serial_off_by_default() -> None:
    assert apply("parse_date", ["45000"]) == [(None, "not a date in formats %Y-%m-%d: '45000'")]


def test_parse_date_excel_serial_clash_with_a_format_is_ambiguous() -> None:
    rows = apply("parse_date", ["20200101"], formats=["%Y%m%d"], excel_serial=True)
    assert rows == [(D(2020, 1, 1), None)]  # beyond the serial range: no clash
    rows = apply("parse_date", ["1000"], formats=["%Y"], excel_serial=True)
    assert rows[0][0] is None
    assert rows[0][1] is not None and rows[0][1].startswith("ambiguous date '1000': ")


def test_parse_date_typed_input_passes_through() -> None:
    assert apply("parse_date", [D(2020, 1, 2), None], dtype=pl.Date) == [
        (D(2020, 1, 2), None),
        (None, None),
    ]
    stamp = dt.datetime(2020, 1, 2, 23, 30)
    assert apply("parse_date", [stamp], dtype=pl.Datetime, formats=["%m/%d/%Y"]) == [
        (D(2020, 1, 2), None)
    ]
    assert apply("parse_date", [45000], dtype=pl.Int64, excel_serial=True) == [
        (D(2023, 3, 15), None)
    ]


# --------------------------------------------------------------------------------------------
# Money


TOO_PRECISE = "has more than 2 decimals (amounts are never rounded): '{}'"
TOO_LARGE = "too large (more than 16 digits before the decimal mark): '{}'"


def not_amount(raw: str, decimal: str = ".") -> str:
    return f"not an amount (decimal mark '{decimal}'): '{raw}'"


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("12", 12.0),
        ("12.00", 12.0),
        ("  12.50  ", 12.5),
        ("0.5", 0.5),
        (".5", 0.5),
        ("$1,234.50", 1234.5),
        ("1,234,567.89", 1234567.89),
        ("1234567.89", 1234567.89),
        ("(25.00)", -25.0),
        ("($25.00)", -25.0),
        ("$(25.00)", -25.0),
        ("(25.00 USD)", -25.0),
        ("(25.00) USD", -25.0),
        ("-25", -25.0),
        ("- 25", -25.0),
        ("-$25.00", -25.0),
        ("$-25.00", -25.0),
        ("$ 40", 40.0),
        ("40$", 40.0),
        ("£40.00", 40.0),
        ("€40.00", 40.0),
        ("USD 12.00", 12.0),
        ("usd 12.00", 12.0),
        ("12.00 EUR", 12.0),
        ("GBP12", 12.0),
        ("\u00a012.00\u00a0", 12.0),
        ("12.345", None, TOO_PRECISE.format("12.345")),  # never rounded
        ("25.9999999999", None, TOO_PRECISE.format("25.9999999999")),
        ("25.000", 25.0),  # trailing zeros are no extra precision
        ("99999999999999.99", Decimal("99999999999999.99")),  # exact: no float on the way
        ("9999999999999999.99", Decimal("9999999999999999.99")),
        ("12345678901234567.00", None, TOO_LARGE.format("12345678901234567.00")),
        ("0", 0.0),
        ("25,00", None, not_amount("25,00")),  # a comma grouping of two digits: never guess
        ("1,23", None, not_amount("1,23")),
        ("1,234,56", None, not_amount("1,234,56")),
        ("1234,567", None, not_amount("1234,567")),
        ("1 234.50", None, not_amount("1 234.50")),
        ("1.234,50", None, not_amount("1.234,50")),
        ("€40,00", None, not_amount("€40,00")),
        ("1e3", None, not_amount("1e3")),
        ("1E3", None, not_amount("1E3")),
        ("12.34.56", None, not_amount("12.34.56")),
        ("abc", None, not_amount("abc")),
        ("12 dollars", None, not_amount("12 dollars")),
        ("XYZ 12", None, not_amount("XYZ 12")),
        ("", None, not_amount("")),
        ("   ", None, not_amount("")),
        ("$", None, not_amount("$")),
        ("USD", None, not_amount("USD")),
        ("-", None, not_amount("-")),
        ("()", None, not_amount("()")),
        ("--25", None, not_amount("--25")),
        ("-(25)", None, not_amount("-(25)")),
        ("(25", None, not_amount("(25")),
        ("25-", None, not_amount("25-")),
        ("$25 USD", None, not_amount("$25 USD")),
        ("$$25", None, not_amount("$$25")),
        ("2$5", None, not_amount("2$5")),
        ("+25", None, not_amount("+25")),
        ("12.", None, not_amount("12.")),
        ("NaN", None, not_amount("NaN")),
        ("inf", None, not_amount("inf")),
        ("١٢", None, not_amount("١٢")),  # Arabic-Indic digits
    ),
)
def test_parse_amount(raw: str, value: float | None, error: str | None) -> None:
    check("parse_amount", raw, value, error)


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("1 234,50", 1234.5),
        ("1.234,50", 1234.5),
        ("1.234.567,89", 1234567.89),
        ("1\u00a0234,50", 1234.5),
        ("1\u202f234,50", 1234.5),
        ("€40,00", 40.0),
        ("40,00 €", 40.0),
        ("EUR 40,5", 40.5),
        ("(40,00 €)", -40.0),
        ("-1.234,5", -1234.5),
        ("40", 40.0),
        (",5", 0.5),
        ("12,345", None, TOO_PRECISE.format("12,345")),
        ("1.234", 1234.0),
        ("1,234.50", None, not_amount("1,234.50", ",")),
        ("25.5", None, not_amount("25.5", ",")),
        ("1.23", None, not_amount("1.23", ",")),
        ("1 23,00", None, not_amount("1 23,00", ",")),
        ("1.234 567,00", None, not_amount("1.234 567,00", ",")),
        ("1,2,3", None, not_amount("1,2,3", ",")),
    ),
)
def test_parse_amount_decimal_comma(raw: str, value: float | None, error: str | None) -> None:
    check("parse_amount", raw, value, error, decimal=",")


def test_parse_amount_numbers_are_read_exactly_as_their_text() -> None:
    """Parquet int/float/decimal columns: the value's own text, checked as text would be (a
    float that is not exactly 2 decimals, or too large, is an error, never rounded)."""
    assert apply("parse_amount", [12.5, None, 1e20, 0.1 + 0.2], dtype=pl.Float64) == [
        (Decimal("12.50"), None),
        (None, None),
        (None, not_amount("1e+20")),
        (None, TOO_PRECISE.format("0.30000000000000004")),
    ]
    assert apply("parse_amount", [7, None], dtype=pl.Int64, decimal=",") == [
        (Decimal("7.00"), None),
        (None, None),
    ]
    assert apply("parse_amount", [12.5], dtype=pl.Float64, decimal=",") == [
        (Decimal("12.50"), None)
    ]
    decimals = [Decimal("25.9999999999"), Decimal("25.5000000000")]
    assert apply("parse_amount", decimals, dtype=pl.Decimal(38, 10)) == [
        (None, TOO_PRECISE.format("25.9999999999")),
        (Decimal("25.50"), None),
    ]
    exact = [Decimal("99999999999999.99")]
    assert apply("parse_amount", exact, dtype=pl.Decimal(38, 2)) == [(exact[0], None)]


# --------------------------------------------------------------------------------------------
# Contact details


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("mailto:jane@example.com", "jane@example.com"),
        ("MAILTO:Jane@Example.com", "jane@example.com"),
        ("not an email", "not an email"),
        ("   ", None),
    ),
)
def test_normalize_email(raw: str, value: str | None, error: None) -> None:
    check("normalize_email", raw, value, error)


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("5555550100", "555-555-0100"),
        ("(555) 555-0100", "555-555-0100"),
        ("555.555.0100", "555-555-0100"),
        ("555 555 0100", "555-555-0100"),
        ("1-555-555-0100", "555-555-0100"),
        ("15555550100", "555-555-0100"),
        ("+1 (555) 555-0100", "555-555-0100"),
        ("+15555550100", "555-555-0100"),
        ("555-555-0100 x123", "555-555-0100 x123"),
        ("555-555-0100x123", "555-555-0100 x123"),
        ("555-555-0100 ext 123", "555-555-0100 x123"),
        ("555-555-0100 Ext. 45", "555-555-0100 x45"),
        ("555-555-0100, extension 7", "555-555-0100 x7"),
        ("5555550100.0", "555-555-0100"),
        (" 555-555-0100 ", "555-555-0100"),
        ("+44 20 7946 0958", "+44 20 7946 0958"),
        ("+5555550100", "+5555550100"),  # "+" without 1 is another country
        ("25555550100", "25555550100"),  # 11 digits not starting with 1
        ("555-0100", "555-0100"),
        ("555-555-0100 or 555-555-0101", "555-555-0100 or 555-555-0101"),
        ("call me", "call me"),
        ("", None),
        ("   ", None),
    ),
)
def test_normalize_phone(raw: str, value: str | None, error: None) -> None:
    check("normalize_phone", raw, value, error)


def test_normalize_phone_finds_the_digits_the_pattern_groups_would() -> None:
    """The ten digits and the extension come from the digits, not from US_PHONE's capture
    groups (a fifteenth of the cost): over many generated numbers, valid and not (prefixes,
    separators, a float's ".0", extensions, junk), the result is what a replace with the
    groups gives."""
    import random

    from etl.transforms.contact import US_PHONE

    groups = "${1}${2}${3}-${4}${5}${6}-${7}${8}${9}${10} x${11}"
    rng = random.Random(7)
    seps = ["", "", "", " ", "-", ".", "(", ")", "/", "\u00a0", "  ", ") ", "\t"]

    def number() -> str:
        parts = [rng.choice(["", "", "+1", "1", "+1 ", "1-", "(1) ", "+", "11", " "])]
        for _ in range(rng.choice([9, 10, 10, 10, 10, 11])):
            parts.append(rng.choice("0123456789" if rng.random() > 0.2 else "1110"))
            parts.append(rng.choice(seps))
        parts.append(rng.choice(["", "", ".0", ".00", "0", ".0 "]))
        parts.append(rng.choice(["", "", "", " x12", " ext. 5", ",ext 7", "; extension 99",
                                 "X3", " EXT12", "ex 1", " x", "x0", " e12", ";x 4", ",,x1",
                                 "  EXTENSION  8", " x\n12", " ext\r\n7", "x\n\n78"]))
        parts.append(rng.choice(["", "", "", " ", "a", "#"]))
        return "".join(parts)

    cells = [number() for _ in range(20_000)] + ["15555550100.0", "1555555010.0",
                                                  "(1) 555-555-010.0", "555.555.0100.0 x12",
                                                  "555-555-0100 x\n12"]
    frame = pl.DataFrame({"v": cells})
    text = pl.col("v").str.strip_chars(WS_CHARS).replace("", None)
    replaced = text.str.replace(US_PHONE, groups)
    expected = pl.when(replaced != text).then(replaced.str.strip_suffix(" x")).otherwise(text)
    got = frame.select(REGISTRY["normalize_phone"](pl.col("v")).value.alias("got"),
                       expected.alias("want"), pl.col("v").str.contains(US_PHONE).alias("us"))
    assert got.filter(pl.col("got").ne_missing(pl.col("want"))).height == 0
    assert 0.1 < got["us"].mean() < 0.9  # both kinds were tried


def test_normalize_phone_other_country_is_kept() -> None:
    assert apply("normalize_phone", [" 020 7946 0958 ", ""], country="GB") == [
        ("020 7946 0958", None),
        (None, None),
    ]
    assert apply("normalize_phone", ["613 555 0100"], country="ca") == [("613-555-0100", None)]


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("7001", "07001"),
        ("501", "00501"),
        ("07001", "07001"),
        ("90210", "90210"),
        (" 90210 ", "90210"),
        ("7001.0", "07001"),
        ("123456789", "12345-6789"),
        ("12345-6789", "12345-6789"),
        ("12345 - 6789", "12345-6789"),
        ("7001-1234", "07001-1234"),
        ("70011234", "07001-1234"),  # ZIP+4 that lost its leading zero
        ("123456789.0", "12345-6789"),
        ("1234567", "00123-4567"),
        ("K1A 0B1", "K1A 0B1"),
        ("k1a 0b1", "K1A 0B1"),
        ("sw1a 1aa", "SW1A 1AA"),
        ("1234567890", "1234567890"),
        ("", None),
    ),
)
def test_postal_code_us(raw: str, value: str | None, error: None) -> None:
    check("postal_code", raw, value, error)


def test_postal_code_numeric_input() -> None:
    assert apply("postal_code", [7001, None], dtype=pl.Int64) == [("07001", None), (None, None)]
    assert apply("postal_code", [7001.0], dtype=pl.Float64) == [("07001", None)]


@pytest.mark.parametrize(
    ("country", "raw", "value"),
    [
        ("CA", "k1a0b1", "K1A 0B1"),
        ("CA", " k1a 0b1 ", "K1A 0B1"),
        ("GB", "sw1a1aa", "SW1A 1AA"),
        ("GB", "m1 1ae", "M1 1AE"),
        ("DE", " 10115 ", "10115"),
        ("DE", "7001", "7001"),  # padding is US-only
        ("FR", "", None),
    ],
)
def test_postal_code_other_countries(country: str, raw: str, value: str | None) -> None:
    assert apply("postal_code", [raw], country=country) == [(value, None)]


# --------------------------------------------------------------------------------------------
# Countries


@pytest.mark.parametrize(
    ("raw", "value", "error"),
    cases(
        ("United States", "US"),
        ("USA", "US"),
        ("u.s.a.", "US"),
        ("U.S.", "US"),
        ("us", "US"),
        ("  united   states of america ", "US"),
        ("America", "US"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("England", "GB"),
        ("Great Britain", "GB"),
        ("Scotland", "GB"),
        ("GBR", "GB"),
        ("Canada", "CA"),
        ("CAN", "CA"),
        ("ca", "CA"),
        ("Germany", "DE"),
        ("Deutschland", "DE"),
        ("South Korea", "KR"),
        ("Korea, Republic of", "KR"),
        ("North Korea", "KP"),
        ("Russia", "RU"),
        ("Russian Federation", "RU"),
        ("Holland", "NL"),
        ("The Netherlands", "NL"),
        ("Côte d'Ivoire", "CI"),
        ("Cote d\u2019Ivoire", "CI"),
        ("Ivory Coast", "CI"),
        ("Türkiye", "TR"),
        ("Turkey", "TR"),
        ("Viet Nam", "VN"),
        ("Vietnam", "VN"),
        ("Bosnia & Herzegovina", "BA"),
        ("Moldova", "MD"),
        ("Bolivia", "BO"),
        ("Iran", "IR"),
        ("Narnia", None, "unknown country 'Narnia'"),
        ("Korea", None, "unknown country 'Korea'"),  # North or South: never guess
        (" Atlantis ", None, "unknown country 'Atlantis'"),
        ("", None),
        ("  ", None),
    ),
)
def test_country_iso(raw: str, value: str | None, error: str | None) -> None:
    check("country_iso", raw, value, error)


# --------------------------------------------------------------------------------------------
# Chaining (as the mapping planner does) and volume


def test_chained_steps_stay_vectorized_and_correct() -> None:
    value = pl.col("v")
    errors = []
    for name, kwargs in [("trim", {}), ("null_if", {"values": ["N/A"]}), ("parse_amount", {})]:
        step = REGISTRY[name](value, **kwargs)
        if step.error is not None:
            errors.append(step.error)
        value = step.value
    final = REGISTRY["parse_amount"](value)  # the planner re-parses typed values: a no-op
    frame = pl.DataFrame({"v": [" $1,234.50 ", "N/A", " 25,00 ", None] * 50_000})
    out = frame.select(final.value.alias("v"), pl.coalesce(errors).alias("e"))
    assert out.head(4).rows() == [
        (1234.5, None),
        (None, None),
        (None, "not an amount (decimal mark '.'): '25,00'"),
        (None, None),
    ]
    assert out.height == 200_000


@pytest.mark.parametrize("dtype", [pl.String, pl.Decimal(38, 2)])
def test_scoped_step_computed_once_from_a_column(dtype: pl.DataType) -> None:
    """A step with a scope hands it over with `pick`: the mapping stage computes the scope
    once as a column and rebuilds the value and error from it; the same answers either way,
    and a column that is already typed never fills the scope."""
    from etl.prepare.mapping import Stages, with_stages

    frame = pl.DataFrame({"v": ["$1,234.50", "12", None]})
    if dtype != pl.String:
        frame = pl.DataFrame({"v": [1234.5, 12.0, None]}).cast({"v": dtype})
    stages = Stages("amount")
    value, error = stages.apply(lambda v: REGISTRY["parse_amount"](v), pl.col("v"), True)
    assert len(stages.items) == 1  # the scope, bound once
    direct = REGISTRY["parse_amount"](pl.col("v"))
    assert direct.error is not None
    staged = with_stages(frame.lazy(), [_plan(value, error, stages)]).collect()
    assert staged.select(value, error).rows() == frame.select(direct.value, direct.error).rows()
    scope = staged[stages.items[0][0]]
    assert scope.null_count() == (frame.height if dtype != pl.String else 0)


def _plan(value: pl.Expr, error: pl.Expr | None, stages: Any) -> Any:
    from etl.prepare.mapping import FieldPlan

    return FieldPlan("amount", value, error if error is not None else pl.lit(None), value,
                     tuple(stages.items))
