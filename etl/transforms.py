"""The transform registry: the name used in YAML -> a small function returning polars expressions.

Each transform takes the current value expression (a pl.Expr, usually String) plus keyword
arguments from the YAML, and returns a `Step`: the new value, and optionally an error expression
that is a String message for rows where the transform failed (null where it succeeded). The
pipeline turns non-null errors into row rejects with rule = the transform's name.

    mappings:
      amount:
        column: Amount
        transforms: [trim, {parse_amount: {decimal: ","}}]

No transform calls Python per row: all of them build vectorized polars expressions.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
import polars.selectors as cs
import pycountry


@dataclass(frozen=True)
class Step:
    """What one transform produces: the value, and a per-row error message (null when fine)."""

    value: pl.Expr
    error: pl.Expr | None = None


TransformFn = Callable[..., Step]

REGISTRY: dict[str, TransformFn] = {}

# Names of keyword arguments that name source columns (checked against the header before reading).
COLUMN_ARGS: dict[str, tuple[str, ...]] = {}


def transform(
    name: str, *, column_args: tuple[str, ...] = ()
) -> Callable[[TransformFn], TransformFn]:
    """Register `fn` under `name`; `column_args` lists its arguments that name source columns."""

    def register(fn: TransformFn) -> TransformFn:
        REGISTRY[name] = fn
        COLUMN_ARGS[name] = column_args
        return fn

    return register


def suggest(name: str, known: list[str]) -> str | None:
    """The closest known name, for 'did you mean' hints."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return close[0] if close else None


def check_args(name: str, args: dict[str, Any]) -> str | None:
    """Return a message when `args` do not fit transform `name`, else None (no data needed)."""
    fn = REGISTRY[name]
    sig = inspect.signature(fn)
    try:
        sig.bind(pl.lit(None), **args)
    except TypeError as exc:
        params = [p for p in list(sig.parameters)[1:]]
        return f"{exc}; {name} takes: {', '.join(params) or 'no arguments'}"
    return None


# --------------------------------------------------------------------------------------------
# Helpers shared by the transforms below.
#
# Performance note: polars' common-subexpression elimination is not reliable for these trees,
# and a sub-expression referenced k times is computed k times (and nests: a transform that
# used its input 4 times, after one that did the same, would compute the first one 16 times).
# So each transform uses `expr` once. When it needs intermediate values several times it binds
# them as fields of a struct (`pl.struct(text=...)`, then `.struct.with_fields(...)` reading
# them with `pl.field`), which evaluates each field once, like a `let`.

# Unicode White_Space plus zero-width space and BOM: what `trim` strips from both ends.
_WS_CHARS = (
    " \t\n\r\v\f\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\ufeff"
)
# The same as a regex class (Rust regex: `\s` is Unicode White_Space).
_WS_RE = r"[\s\x{200B}\x{FEFF}]"

F = pl.field


def _text(expr: pl.Expr) -> pl.Expr:
    """The value as String (a no-op for String columns; numbers and dates become text)."""
    return expr.cast(pl.String)


def _strip(expr: pl.Expr) -> pl.Expr:
    return _text(expr).str.strip_chars(_WS_CHARS)


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return expr.replace("", None)


def _message(when: pl.Expr, *parts: str | pl.Expr) -> pl.Expr:
    """A String error where `when` holds (else null): the parts joined, str parts as text."""
    exprs = [pl.lit(p) if isinstance(p, str) else p for p in parts]
    return pl.when(when).then(pl.concat_str(exprs))


def _result(scope: pl.Expr, *, error: bool = True) -> Step:
    """The Step held by the `value` and `error` fields of a scope struct."""
    value = scope.struct.field("value")
    return Step(value, scope.struct.field("error") if error else None)


def _unless_typed(expr: pl.Expr, selector: cs.Selector, typed: pl.Expr, step: Step) -> Step:
    """`typed` (no error) when `expr` already has a dtype matching `selector`, else `step`.

    The dtype test is resolved when the query is planned, so only one branch ever runs.
    """
    already = pl.dtype_of(expr).matches(selector)
    # All null, yet not a bare literal: the planner only drops the untaken branch when the
    # taken one reads a column.
    no_error = pl.when(typed.is_null() & typed.is_not_null()).then(pl.lit("", pl.String))
    error = step.error if step.error is not None else pl.lit(None, pl.String)
    return Step(
        pl.when(already).then(typed).otherwise(step.value),
        pl.when(already).then(no_error).otherwise(error),
    )


def _string_list(value: Sequence[str] | str, what: str) -> list[str]:
    """A YAML list of strings (a lone string counts as a list of one)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings, not {value!r}")
    return list(value)


# --------------------------------------------------------------------------------------------
# Whitespace and case.


@transform("trim")
def trim(expr: pl.Expr) -> Step:
    """Strip leading/trailing whitespace (incl. non-breaking spaces); blank becomes null."""
    return Step(_blank_to_null(_strip(expr)))


@transform("collapse_whitespace")
def collapse_whitespace(expr: pl.Expr) -> Step:
    """Trim, and collapse internal runs of whitespace to one space; blank becomes null."""
    collapsed = _text(expr).str.replace_all(_WS_RE + "+", " ").str.strip_chars(" ")
    return Step(_blank_to_null(collapsed))


@transform("upper")
def upper(expr: pl.Expr) -> Step:
    """Upper-case."""
    return Step(_text(expr).str.to_uppercase())


@transform("lower")
def lower(expr: pl.Expr) -> Step:
    """Lower-case."""
    return Step(_text(expr).str.to_lowercase())


# Name particles kept lower-case when they are neither the first nor the last word:
# "maria de la cruz" -> "Maria de la Cruz", but "de la cruz" -> "De la Cruz" and "ana de" ->
# "Ana De". "le"/"do" are left out: they are common Vietnamese family names.
# fmt: off
_PARTICLES = (
    "da", "das", "de", "del", "della", "den", "der", "di", "dos", "du", "la", "van", "von",
)
# fmt: on
_PARTICLE_FIXES = {f" {p.title()} ": f" {p} " for p in _PARTICLES}
# After title-casing a string padded with one space each side: Mc + letter at a word start, and
# the generational suffixes II/III/IV as whole words.
_NAME_FIXES = {
    **{f"{b}Mc{c}": f"{b}Mc{c.upper()}" for b in " -" for c in string.ascii_lowercase},
    **{f" {n.title()}{e}": f" {n}{e}" for n in ("II", "III", "IV") for e in " ,."},
}


@transform("title")
def title(expr: pl.Expr) -> Step:
    """Title-case names: O'Brien, McDonald, Mary-Jane, Maria de la Cruz, John Smith III.

    A value already written with an inner capital ("DeLuca", "MacArthur", "LaToya") is kept.
    """
    titled = F("text").str.to_titlecase()  # already handles O'Brien and Mary-Jane
    padded = pl.concat_str([pl.lit(" "), titled, pl.lit(" ")])
    fixed = padded.str.replace_many(_NAME_FIXES).str.strip_prefix(" ").str.strip_suffix(" ")
    # A particle match consumes the space after it, so a second pass catches "de la".
    fixed = fixed.str.replace_many(_PARTICLE_FIXES).str.replace_many(_PARTICLE_FIXES)
    cased = F("text").str.contains(r"\p{Ll}\p{Lu}\p{Ll}")  # lower, upper, lower: deliberate
    scope = pl.struct(text=_text(expr)).struct.with_fields(
        value=pl.when(cased).then(F("text")).otherwise(fixed)
    )
    return _result(scope, error=False)


# --------------------------------------------------------------------------------------------
# Nulls, defaults, combining columns.


@transform("null_if")
def null_if(expr: pl.Expr, *, values: list[str]) -> Step:
    """Null where the value equals one of `values` exactly (e.g. ["N/A", "none", "-"])."""
    return Step(_text(expr).replace(_string_list(values, "values"), None))


@transform("default")
def default(expr: pl.Expr, *, value: str | int | float) -> Step:
    """Replace null with `value`."""
    return Step(expr.fill_null(pl.lit(value)))


@transform("concat", column_args=("columns",))
def concat(expr: pl.Expr, *, columns: list[str], sep: str = " ") -> Step:
    """The value followed by the named columns, joined by `sep`; null/empty parts are skipped."""
    parts = [expr, *(pl.col(c) for c in _string_list(columns, "columns"))]
    joined = pl.concat_str(
        [_blank_to_null(_text(p)) for p in parts], separator=sep, ignore_nulls=True
    )
    return Step(_blank_to_null(joined))


@transform("coalesce", column_args=("columns",))
def coalesce(expr: pl.Expr, *, columns: list[str]) -> Step:
    """The first non-null of the value and the named columns (use it before parse_* steps)."""
    return Step(pl.coalesce(expr, *(pl.col(c) for c in _string_list(columns, "columns"))))


@transform("truncate")
def truncate(expr: pl.Expr, *, length: int) -> Step:
    """Cut text longer than `length` characters (no error)."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be a whole number >= 0, not {length!r}")
    return Step(_text(expr).str.slice(0, length))


@transform("replace")
def replace(expr: pl.Expr, *, pattern: str, with_: str = "", literal: bool = False) -> Step:
    """Replace matches of regex `pattern` (plain text if `literal: true`) by `with_` ($1: group)."""
    try:  # compile it now, so a bad pattern is a spec error rather than a failed run
        pl.select(pl.lit("").str.contains(pattern, literal=literal))
    except pl.exceptions.ComputeError as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return Step(_text(expr).str.replace_all(pattern, with_, literal=literal))


# --------------------------------------------------------------------------------------------
# Names.

_NAME_SUFFIX = r"(?i),?\s+((?:jr|sr|ii|iii|iv)\.?)$"


@transform("split_name")
def split_name(expr: pl.Expr, *, part: Literal["first", "last"]) -> Step:
    """One part of a full name: "Last, First" or "First [Middle] Last"; Jr/Sr/II-IV stay on last."""
    if part not in ("first", "last"):
        raise ValueError(f"part must be 'first' or 'last', not {part!r}")
    full = _text(expr).str.replace_all(_WS_RE + "+", " ").str.strip_chars(" ")
    scope = pl.struct(full=full).struct.with_fields(
        suffix=F("full").str.extract(_NAME_SUFFIX, 1), base=F("full").str.replace(_NAME_SUFFIX, "")
    )
    comma = F("base").str.contains(",", literal=True)
    if part == "first":
        value = (
            pl.when(comma)
            .then(F("base").str.extract(r"^[^,]*,(.*)$", 1))
            .otherwise(F("base").str.extract(r"^(.*\S)\s+\S+$", 1))
        )
    else:
        last = (
            pl.when(comma)
            .then(F("base").str.extract(r"^([^,]*),", 1))
            .otherwise(F("base").str.extract(r"(\S+)$", 1))
        )
        last = _blank_to_null(last.str.strip_chars(" "))
        value = pl.concat_str([last, F("suffix")], separator=" ", ignore_nulls=True)
    scope = scope.struct.with_fields(value=_blank_to_null(value.str.strip_chars(" ,")))
    return _result(scope, error=False)


# --------------------------------------------------------------------------------------------
# Dates.

# Directives chrono (polars' strptime) understands; anything else is a typo in the spec.
_STRPTIME_DIRECTIVE = re.compile(
    r"%(?:[-_0]?[YCymbBhdeaAwuUWGgVjDxFvHkIlPpMSRTXrZzstn%]|\.?[369]?f|:{1,3}z|#z)"
)
_EXCEL_EPOCH_OFFSET = 25569  # days from 1899-12-30 (Excel's day 0) to 1970-01-01
_EXCEL_MAX = 2958465  # 9999-12-31


def _check_format(fmt: str) -> None:
    if "%" in _STRPTIME_DIRECTIVE.sub("", fmt):
        raise ValueError(f"unknown directive in date format {fmt!r}")


@transform("parse_date")
def parse_date(
    expr: pl.Expr, *, formats: Sequence[str] = ("%Y-%m-%d",), excel_serial: bool = False
) -> Step:
    """Parse text to a date with the one of the strptime `formats` that fits.

    A value that two formats read as different dates is rejected as ambiguous; datetime formats
    keep the date part; `excel_serial: true` also reads whole numbers 1..2958465 as Excel dates.
    """
    fmts = _string_list(formats, "formats")
    if not fmts:
        raise ValueError("formats must list at least one strptime format")
    for fmt in fmts:
        _check_format(fmt)
    labels = {f"d{i}": fmt for i, fmt in enumerate(fmts)}
    parsed = {
        name: F("text").str.strptime(pl.Date, fmt, strict=False, exact=True)
        for name, fmt in labels.items()
    }
    if excel_serial:
        labels["excel"] = "excel serial"
        parsed["excel"] = F("text").str.extract(r"^([0-9]{1,7})(?:\.0+)?$", 1).cast(pl.Int32)
    scope = pl.struct(text=_strip(expr)).struct.with_fields(**parsed)

    checked = {  # chrono reads "12/31/99" with %Y as the year 99: demand four digits
        name: pl.when(F(name).dt.year() >= 1000).then(F(name))
        for name, fmt in labels.items()
        if "%Y" in fmt
    }
    if excel_serial:
        serial = F("excel")
        checked["excel"] = pl.when(serial.is_between(1, _EXCEL_MAX)).then(
            (serial - _EXCEL_EPOCH_OFFSET).cast(pl.Date)
        )
    if checked:
        scope = scope.struct.with_fields(**checked)

    clashes = [
        _message(
            F(a).is_not_null() & F(b).is_not_null() & (F(a) != F(b)),
            *("ambiguous date '", F("text"), "': ", F(a).cast(pl.String), f" ({labels[a]}) or "),
            *(F(b).cast(pl.String), f" ({labels[b]})"),
        )
        for a, b in itertools.combinations(labels, 2)
    ]
    scope = scope.struct.with_fields(
        first=pl.coalesce([F(name) for name in labels]),
        clash=pl.coalesce(clashes) if clashes else pl.lit(None, pl.String),
    )
    wanted = ", ".join(fmts) + (" or an excel serial" if excel_serial else "")
    scope = scope.struct.with_fields(
        value=pl.when(F("clash").is_null()).then(F("first")),
        error=pl.coalesce(
            F("clash"),
            _message(
                F("text").is_not_null() & F("first").is_null(),
                *(f"not a date in formats {wanted}: '", F("text"), "'"),
            ),
        ),
    )
    return _unless_typed(expr, cs.date() | cs.datetime(), expr.cast(pl.Date), _result(scope))


# --------------------------------------------------------------------------------------------
# Money.

_CURRENCY = r"(?:[$€£]|(?i:" + "|".join(sorted(c.alpha_3 for c in pycountry.currencies)) + "))"
_GROUP_SPACE = r"[ \x{A0}\x{202F}\x{2009}]"
_NUMBER = {
    # Decimal point: "," groups thousands, always in threes.
    ".": r"(?:(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)",
    # Decimal comma: "." or a (non-breaking / narrow) space groups thousands, in threes.
    ",": (
        r"(?:(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]{1,3}(?:" + _GROUP_SPACE + r"[0-9]{3})+|[0-9]+)"
        r"(?:,[0-9]+)?|,[0-9]+)"
    ),
}


def _amount_shape(number: str) -> str:
    """A regex for a whole amount: one sign ("-" or accounting parentheses), at most one
    currency symbol or code before or after the number (inside or outside the parentheses)."""
    cur = _CURRENCY
    forms = [
        rf"-?\s*{number}(?:\s*{cur})?",  # 25, -25, 25 USD
        rf"-?\s*{cur}\s*{number}",  # $25, -$25
        rf"{cur}\s*-\s*{number}",  # $-25
        rf"\(\s*{number}\s*\)(?:\s*{cur})?",  # (25), (25) USD
        rf"\(\s*{cur}\s*{number}\s*\)",  # ($25)
        rf"\(\s*{number}\s*{cur}\s*\)",  # (25 USD)
        rf"{cur}\s*\(\s*{number}\s*\)",  # $(25)
    ]
    return "^(?:" + "|".join(forms) + ")$"


_AMOUNT_SHAPE = {decimal: _amount_shape(number) for decimal, number in _NUMBER.items()}


@transform("parse_amount")
def parse_amount(expr: pl.Expr, *, decimal: Literal[".", ","] = ".") -> Step:
    """Parse money text to a number: "$1,234.50", "(25.00)" = -25, "USD 12", "1.234,50 €".

    Thousands separators must form groups of three; with `decimal: ","` the comma is the decimal
    mark and "." or a space groups thousands. Never rounds; letters, "1e3" and blanks are errors.
    """
    if decimal not in _NUMBER:
        raise ValueError(f"decimal must be '.' or ',', not {decimal!r}")
    # The shape test decides validity; the number is then read leniently (digits and the
    # decimal mark only), which is right for every value that has the shape.
    if decimal == ".":
        digits = F("text").str.replace_all(r"[^0-9.]", "")
    else:
        digits = F("text").str.replace_all(r"[^0-9,]", "").str.replace(",", ".", literal=True)
    scope = pl.struct(text=_strip(expr)).struct.with_fields(
        valid=F("text").str.contains(_AMOUNT_SHAPE[decimal]),
        negative=F("text").str.contains(r"^[^0-9.,]*[-(]"),
        amount=digits.cast(pl.Float64, strict=False),
    )
    scope = scope.struct.with_fields(
        value=pl.when(F("valid")).then(
            pl.when(F("negative")).then(-F("amount")).otherwise(F("amount"))
        ),
        error=_message(~F("valid"), f"not an amount (decimal mark '{decimal}'): '", F("text"), "'"),
    )
    return _unless_typed(expr, cs.numeric(), expr.cast(pl.Float64), _result(scope))


# --------------------------------------------------------------------------------------------
# Contact details.


@transform("normalize_email")
def normalize_email(expr: pl.Expr) -> Step:
    """Trim, lower-case and drop a leading "mailto:" (syntax is checked by validation)."""
    email = _strip(expr).str.to_lowercase().str.strip_prefix("mailto:").str.strip_chars(_WS_CHARS)
    return Step(_blank_to_null(email))


_PHONE_SEP = r"[\s().\-/]*"
# Optional +1/1, ten digits with any separators, optional "x12"/"ext. 12"/"extension 12".
# A float column's "5555550100.0" is accepted too.
_US_PHONE = (
    rf"^{_PHONE_SEP}(?:\+?1{_PHONE_SEP})?"
    + "".join(f"([0-9]){_PHONE_SEP}" for _ in range(10))
    + r"(?:\.0)?(?:[,;]?\s*(?i:x|ext\.?|extension)\s*([0-9]+))?$"
)
_US_PHONE_FORMAT = "${1}${2}${3}-${4}${5}${6}-${7}${8}${9}${10} x${11}"
_NANP = ("US", "CA")  # North American Numbering Plan: the same 10-digit format


@transform("normalize_phone")
def normalize_phone(expr: pl.Expr, *, country: str = "US") -> Step:
    """US numbers as 555-555-0100 (+1/1 prefix dropped, "ext 12" kept as " x12"); else as given."""
    scope = pl.struct(text=_blank_to_null(_strip(expr)))
    if country.upper() not in _NANP:
        return _result(scope.struct.with_fields(value=F("text")), error=False)
    formatted = F("text").str.replace(_US_PHONE, _US_PHONE_FORMAT).str.strip_suffix(" x")
    scope = scope.struct.with_fields(
        value=pl.when(F("text").str.contains(_US_PHONE)).then(formatted).otherwise(F("text"))
    )
    return _result(scope, error=False)


_US_ZIP = r"^[0-9]{1,5}$"  # lost leading zeros: pad to 5
_US_ZIP_9 = r"^[0-9]{6,9}$"  # ZIP+4 without its dash (maybe lost zeros too): pad to 9, add dash
_US_ZIP_PLUS_4 = r"^[0-9]{1,5}-[0-9]{4}$"  # pad the first part


@transform("postal_code")
def postal_code(expr: pl.Expr, *, country: str = "US") -> Step:
    """Normalize a postal code: US ZIPs regain lost leading zeros; others are trimmed upper-case.

    US, after removing spaces and a float's ".0": 1-5 digits are left-padded to 5 ("7001" ->
    "07001"); 6-9 digits are left-padded to 9 and written ZIP+4 ("123456789" -> "12345-6789");
    "12345-6789" is kept (its first part padded). CA: "K1A0B1" -> "K1A 0B1"; GB: "SW1A1AA" ->
    "SW1A 1AA". Anything else: upper-cased and trimmed, no error. Blank becomes null.
    """
    text = _blank_to_null(_strip(expr)).str.to_uppercase()
    code = country.upper()
    if code == "CA":
        return Step(text.str.replace(r"^([A-Z][0-9][A-Z])\s*([0-9][A-Z][0-9])$", "$1 $2"))
    if code == "GB":
        return Step(text.str.replace(r"^([A-Z][A-Z0-9]{1,3})\s*([0-9][A-Z]{2})$", "$1 $2"))
    if code != "US":
        return Step(text)
    scope = pl.struct(text=text).struct.with_fields(
        zip=F("text").str.replace(r"^([0-9]+)\.0+$", "$1").str.replace_all(r"\s", "")
    )
    zip_9 = F("zip").str.zfill(9).str.replace(r"^([0-9]{5})([0-9]{4})$", "$1-$2")
    scope = scope.struct.with_fields(
        value=pl.when(F("zip").str.contains(_US_ZIP))
        .then(F("zip").str.zfill(5))
        .when(F("zip").str.contains(_US_ZIP_9))
        .then(zip_9)
        .when(F("zip").str.contains(_US_ZIP_PLUS_4))
        .then(F("zip").str.zfill(10))
        .otherwise(F("text"))
    )
    return _result(scope, error=False)


# --------------------------------------------------------------------------------------------
# Countries.

_COUNTRY_EXTRAS = {
    "US": ["usa", "u.s.", "u.s.a.", "united states of america", "america", "us of a"],
    "GB": [
        "uk",
        "u.k.",
        "england",
        "scotland",
        "wales",
        "northern ireland",
        "great britain",
        "britain",
    ],
    "KR": ["south korea", "korea south", "korea, south", "republic of korea"],
    "KP": ["north korea", "korea north", "korea, north"],
    "RU": ["russia"],
    "NL": ["holland"],
    "CZ": ["czech republic"],
    "MK": ["macedonia", "republic of macedonia"],
    "CI": ["ivory coast"],
    "MM": ["burma"],
    "SZ": ["swaziland"],
    "CV": ["cape verde"],
    "TL": ["east timor"],
    "TR": ["turkey"],
    "VA": ["vatican", "vatican city", "holy see"],
    "PS": ["palestine", "palestinian territories"],
    "CD": ["dr congo", "drc", "democratic republic of the congo", "congo-kinshasa"],
    "CG": ["republic of the congo", "congo-brazzaville"],
    "AE": ["uae", "emirates"],
    "VI": ["us virgin islands"],
    "IE": ["republic of ireland", "eire"],
    "DE": ["deutschland"],
    "ES": ["espana"],
    "BR": ["brasil"],
    "KN": ["st kitts and nevis", "st kitts", "saint kitts"],
    "LC": ["st lucia"],
    "VC": ["st vincent and the grenadines", "st vincent", "saint vincent"],
    "TT": ["trinidad"],
    "BN": ["brunei"],
    "LA": ["laos"],
    "SY": ["syria"],
    "VN": ["vietnam"],
}


def _country_key(name: str) -> str:
    """Python twin of `_country_key_expr`, used to build the lookup."""
    text = unicodedata.normalize("NFKD", name.strip().lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    text = re.sub("[’‘`´]", "'", text).replace(".", "").replace("&", " and ")
    return " ".join(text.split()).removeprefix("the ")


def _country_key_expr(expr: pl.Expr) -> pl.Expr:
    """Lower-case, without accents, dots or a leading "the", "&" as "and", spaces collapsed."""
    return (
        expr.str.to_lowercase()
        .str.normalize("NFKD")
        .str.replace_all(r"\p{Mn}", "")
        .str.replace_all("[’‘`´]", "'")
        .str.replace_all(".", "", literal=True)
        .str.replace_all("&", " and ", literal=True)
        .str.replace_all(r"\s+", " ")
        .str.strip_chars(" ")
        .str.strip_prefix("the ")
    )


def _country_lookup() -> dict[str, str]:
    """Normalized name/code -> alpha-2, from pycountry plus common extras."""
    lookup: dict[str, str] = {}
    prefixes: dict[str, set[str]] = {}
    for c in pycountry.countries:
        names = [c.alpha_2, c.alpha_3, c.name]
        names += [getattr(c, a) for a in ("common_name", "official_name") if hasattr(c, a)]
        for name in names:
            lookup.setdefault(_country_key(name), c.alpha_2)
        if "," in c.name:  # "Moldova, Republic of" -> "moldova", unless ambiguous ("Korea, ...")
            prefixes.setdefault(_country_key(c.name.split(",")[0]), set()).add(c.alpha_2)
    for alpha_2, names in _COUNTRY_EXTRAS.items():
        for name in names:
            lookup.setdefault(_country_key(name), alpha_2)
    for key, codes in prefixes.items():
        if len(codes) == 1 and key not in lookup:
            lookup[key] = codes.pop()
    return lookup


_COUNTRIES = _country_lookup()


@transform("country_iso")
def country_iso(expr: pl.Expr) -> Step:
    """Country name or code to ISO 3166-1 alpha-2 ("United States", "USA", "u.s.a." -> "US")."""
    scope = pl.struct(text=_blank_to_null(_strip(expr)))
    scope = scope.struct.with_fields(
        value=_country_key_expr(F("text")).replace_strict(
            _COUNTRIES, default=None, return_dtype=pl.String
        )
    )
    scope = scope.struct.with_fields(
        error=_message(
            F("text").is_not_null() & F("value").is_null(), "unknown country '", F("text"), "'"
        )
    )
    return _result(scope)
