"""Contact-detail transforms: email, phone, postal code, country."""

from __future__ import annotations

import re
import unicodedata

import polars as pl
import pycountry

from etl.transforms.helpers import WS_CHARS, F, blank_to_null, error_message, step_result, strip_ws
from etl.transforms.registry import Step, transform

# --------------------------------------------------------------------------------------------
# Contact details.


@transform("normalize_email")
def normalize_email(expr: pl.Expr) -> Step:
    """Trim, lower-case and drop a leading "mailto:" (syntax is checked by validation)."""
    email = strip_ws(expr).str.to_lowercase().str.strip_prefix("mailto:").str.strip_chars(WS_CHARS)
    return Step(blank_to_null(email))


_PHONE_SEP = r"[\s().\-/]*"
# A US number: optional +1/1, ten digits with any separators, optional "x12"/"ext. 12"/
# "extension 12". Its groups are the ten digits and the extension's.
# A float column's "5555550100.0" is accepted too.
US_PHONE = (
    rf"^{_PHONE_SEP}(?:\+?1{_PHONE_SEP})?"
    + "".join(f"([0-9]){_PHONE_SEP}" for _ in range(10))
    + r"(?:\.0)?(?:[,;]?\s*(?i:x|ext\.?|extension)\s*([0-9]+))?$"
)
_NANP = ("US", "CA")  # North American Numbering Plan: the same 10-digit format


@transform("normalize_phone")
def normalize_phone(expr: pl.Expr, *, country: str = "US") -> Step:
    """US numbers as 555-555-0100 (+1/1 prefix dropped, "ext 12" kept as " x12"); else as given."""
    scope = pl.struct(text=blank_to_null(strip_ws(expr)))
    if country.upper() not in _NANP:
        return step_result(scope.struct.with_fields(value=F("text")), error=False)
    # `US_PHONE` only tells whether a value is a US number: matching without its capture groups
    # costs a fifteenth of a replace with them. The groups are found from the digits instead.
    # In a value that matches, letters and [,;] come only in the extension, so its main part
    # is what comes before the first of them, and the extension's digits end the value. The
    # ten digits are the main part's: eleven have the +1 prefix (a leading 1, preferred) or a
    # float's ".0" (a trailing 0), twelve both.
    main = F("text").str.replace(r"(?s)[,;xXeE].*$", "").str.replace_all(r"[^0-9]", "")
    scope = scope.struct.with_fields(
        us=F("text").str.contains(US_PHONE),
        digits=main,
        ext=pl.when(F("text").str.contains("[xXeE]"))
        .then(F("text").str.extract(r"([0-9]+)$", 1)),
    )
    n = F("digits").str.len_bytes()
    skip = ((n == 12) | ((n == 11) & F("digits").str.starts_with("1"))).cast(pl.Int64)
    ten = F("digits").str.slice(skip, 10)
    formatted = pl.concat_str([
        ten.str.slice(0, 3), pl.lit("-"), ten.str.slice(3, 3), pl.lit("-"), ten.str.slice(6, 4),
        pl.concat_str([pl.lit(" x"), F("ext")]).fill_null(""),
    ])
    scope = scope.struct.with_fields(
        value=pl.when(F("us")).then(formatted).otherwise(F("text")))
    return step_result(scope, error=False)


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
    text = blank_to_null(strip_ws(expr)).str.to_uppercase()
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
    return step_result(scope, error=False)


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
    scope = pl.struct(text=blank_to_null(strip_ws(expr)))
    scope = scope.struct.with_fields(
        value=_country_key_expr(F("text")).replace_strict(
            _COUNTRIES, default=None, return_dtype=pl.String
        )
    )
    scope = scope.struct.with_fields(
        error=error_message(
            F("text").is_not_null() & F("value").is_null(), "unknown country '", F("text"), "'"
        )
    )
    return step_result(scope)
