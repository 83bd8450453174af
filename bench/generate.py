#!/usr/bin/env python3
"""Deterministic generator of realistic, dirty legacy donor exports.

    python bench/generate.py contacts --rows N --out PATH [--seed 7] [--encoding cp1252]
                                      [--dirt 0.05]
    python bench/generate.py gifts --rows N --contacts M --out PATH [--seed 7]
                                   [--encoding utf-8-sig] [--dirt 0.05]
    python bench/generate.py drops --files K --rows N --out-dir DIR [--start 2026-11-18]
    python bench/generate.py samples        # regenerates exactly the files under sample_data/

Importable: `generate_contacts`, `generate_gifts`, `generate_drop` return polars DataFrames
(strings only, empty cells as null); `write_contacts`, `write_gifts`, `write_drops` write files.

How it stays fast and deterministic without numpy: every random draw is a pure function of
(seed, stream name, row index), computed as a vectorized polars expression (an integer hash,
"lowbias32", on UInt64 arithmetic that never overflows). So row i of a file is the same whatever
the chunk size, the same seed gives byte-identical files, and the gifts file can recompute the
names of the contact it references (contact j) without reading the contacts file. Large files
are generated and written in chunks (default 1M rows), so memory stays flat at 10M rows.

Every generated frame carries an internal `_dirt` column (the kind of dirt injected into that
row, "" for a clean row) that is not written; `samples` uses it for the counts in the README.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "sample_data"

CONTACT_COLUMNS = [
    "DonorID", "Title", "FirstName", "LastName", "OrgName", "IsOrg", "DonorType", "Email",
    "Phone", "Address1", "Address2", "City", "State", "Zip", "Country", "Tags", "Birthdate",
    "Created",
]
GIFT_COLUMNS = [
    "GiftID", "DonorID", "DonorFirst", "DonorLast", "DonorEmail", "GiftDate", "Amount",
    "PayMethod", "Currency", "Fund", "Fund2", "Fund2Amount", "Segment", "CheckNo", "Memo",
    "Anonymous",
]
DROP_COLUMNS = [
    "transaction_id", "donor_ref", "first_name", "last_name", "email", "amount", "currency",
    "created_at", "method", "fund",
]

ENCODINGS = ("cp1252", "utf-8", "utf-8-sig")
DEFAULT_CHUNK = 1_000_000

# ---------------------------------------------------------------------------------------------
# Counter-based random numbers as polars expressions
# ---------------------------------------------------------------------------------------------

_M32 = 1 << 32
IDX = pl.col("_i")  # UInt64 row index (global: the same row gets the same values in any chunk)


def _mix32(x: pl.Expr) -> pl.Expr:
    """lowbias32 (Wellons): a bijective 32-bit integer hash; x is UInt64 holding < 2**32."""
    x = x.xor(x // 65536)
    x = (x * 0x7FEB352D) % _M32
    x = x.xor(x // 32768)
    x = (x * 0x846CA68B) % _M32
    return x.xor(x // 65536)


class Rng:
    """Named random streams; every draw is a pure function of (seed, domain, name, index).

    A draw is mix32(mix32(index + k_domain) xor k_name). The inner hash is the same for all the
    streams of a row, so frames made by `frame()` carry it as the column `_h`: draws on the
    frame's own rows (idx=None) hash once more, draws on another index (idx=...) twice."""

    def __init__(self, seed: int, domain: str) -> None:
        self.seed = seed
        self.domain = domain
        self.k0 = self._key("")

    def _key(self, name: str) -> int:
        h = hashlib.blake2b(f"{self.seed}/{self.domain}/{name}".encode(), digest_size=4).digest()
        return int.from_bytes(h, "little")

    def h(self, idx: pl.Expr) -> pl.Expr:
        return _mix32((idx.cast(pl.UInt64) + self.k0) % _M32)

    def frame(self, index: pl.Series) -> pl.DataFrame:
        """A frame of the rows `index` (column `_i`) with their row hash (`_h`)."""
        df = pl.DataFrame({"_i": index.cast(pl.UInt64)})
        return df.with_columns(_h=self.h(IDX))

    def u32(self, name: str, idx: pl.Expr | None = None) -> pl.Expr:
        base = pl.col("_h") if idx is None else self.h(idx)
        return _mix32(base.xor(pl.lit(self._key(name), dtype=pl.UInt64)))

    def unif(self, name: str, idx: pl.Expr | None = None) -> pl.Expr:
        return self.u32(name, idx).cast(pl.Float64) / float(_M32)

    def below(self, name: str, n: int, idx: pl.Expr | None = None) -> pl.Expr:
        """Uniform Int64 in [0, n)."""
        assert 0 < n < (1 << 31)
        return ((self.u32(name, idx) * n) // _M32).cast(pl.Int64)

    def chance(self, name: str, p: float, idx: pl.Expr | None = None) -> pl.Expr:
        return self.u32(name, idx) < int(p * _M32)

    def pick(
        self,
        name: str,
        items: Sequence[str],
        weights: Sequence[int] | None = None,
        idx: pl.Expr | None = None,
    ) -> pl.Expr:
        pool = _expand(items, weights)
        return pl.lit(pl.Series(pool, dtype=pl.String)).gather(self.below(name, len(pool), idx))


def _expand(items: Sequence[str], weights: Sequence[int] | None) -> list[str]:
    if weights is None:
        return list(items)
    assert len(items) == len(weights)
    return [item for item, w in zip(items, weights, strict=True) for _ in range(w)]


def _gather(items: Sequence[str], index: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(list(items), dtype=pl.String)).gather(index)


def _s(x: pl.Expr) -> pl.Expr:
    return x.cast(pl.String)


def _z(x: pl.Expr, width: int) -> pl.Expr:
    return x.cast(pl.String).str.zfill(width)


def _cat(*parts: pl.Expr | str) -> pl.Expr:
    return pl.concat_str([p if isinstance(p, pl.Expr) else pl.lit(p) for p in parts])


def _date_str(start: date, days: pl.Expr, fmt: str) -> pl.Expr:
    return (pl.lit(start) + pl.duration(days=days)).dt.strftime(fmt)


def _other_index(rng: Rng, name: str, spread: int) -> pl.Expr:
    """Index of another, nearby row (for duplicate ids): i - k, or i + k near the start."""
    i = IDX.cast(pl.Int64)
    k = 1 + rng.below(name, spread)
    return pl.when(i >= k).then(i - k).otherwise(i + k)


def _pick_dirt(rng: Rng, dirt: float, kinds: dict[str, int]) -> pl.Expr:
    kind = rng.pick("dirt.kind", list(kinds), list(kinds.values()))
    return pl.when(rng.chance("dirt", dirt)).then(kind).otherwise(pl.lit("")).alias("_dirt")


def _slug(x: pl.Expr) -> pl.Expr:
    """Lower-case e-mail local part: drop apostrophes, spaces, periods and hyphens."""
    return x.str.to_lowercase().str.replace_all(r"['’ .\-]", "")


# ---------------------------------------------------------------------------------------------
# Pools
# ---------------------------------------------------------------------------------------------

MALE_FIRST = [
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas",
    "Charles", "Christopher", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul",
    "Andrew", "Joshua", "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Edward",
    "Jason", "Jeffrey", "Ryan", "Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen",
    "Larry", "Justin", "Scott", "Brandon", "Benjamin", "Samuel", "Gregory", "Frank", "Alexander",
    "Raymond", "Patrick", "Jack", "Dennis", "Jerry", "Tyler", "Aaron", "Henry", "Nathan", "Peter",
    "Walter", "Bob", "Bill", "Mike", "Tom",
]
FEMALE_FIRST = [
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah",
    "Karen", "Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley", "Kimberly", "Emily",
    "Donna", "Michelle", "Carol", "Amanda", "Dorothy", "Melissa", "Deborah", "Stephanie",
    "Rebecca", "Sharon", "Laura", "Cynthia", "Kathleen", "Amy", "Angela", "Shirley", "Anna",
    "Brenda", "Pamela", "Emma", "Nicole", "Helen", "Samantha", "Katherine", "Christine", "Debra",
    "Rachel", "Carolyn", "Janet", "Catherine", "Maria", "Heather", "Diane", "Ruth", "Julie",
    "Olivia", "Joyce", "Virginia", "Grace", "Hannah", "Ann", "Mary-Beth",
]
LAST = (
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Thomas Taylor Moore Jackson "
    "Martin Lee Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott "
    "Hill Green Adams Baker Nelson Carter Mitchell Roberts Turner Phillips Campbell Parker Evans "
    "Edwards Collins Stewart Morris Murphy Cook Rogers Morgan Peterson Cooper Reed Bailey Bell "
    "Kelly Howard Ward Cox Richardson Wood Watson Brooks Bennett Gray James Hughes Price Sanders "
    "Myers Long Ross Foster Powell Jenkins Perry Russell Sullivan Fisher Henderson Coleman "
    "Patterson Jordan Reynolds Hamilton Graham Wallace West Cole Hayes Gibson Ellis Stevens "
    "Murray Ford Marshall Owens McDonald O'Brien O'Neil MacArthur DeLuca Van Buren St. John "
    "Nguyen Kim Patel Chen Singh Garcia Rodriguez Martinez Hernandez Lopez Gonzalez Perez "
    "Sanchez Ramirez Torres Rivera Schmidt Schneider Kowalski Novak Rossi Russo Cohen Levy"
).replace("Van Buren", "Van_Buren").replace("St. John", "St._John").split()
LAST = [x.replace("_", " ") for x in LAST]

# (as written in the export, ascii form used to build e-mail addresses); all cp1252-encodable
ACCENT_FIRST = [
    ("José", "jose"), ("Zoë", "zoe"), ("Renée", "renee"), ("François", "francois"),
    ("Chloë", "chloe"), ("Søren", "soren"), ("Inés", "ines"), ("André", "andre"),
    ("Noël", "noel"), ("Björn", "bjorn"), ("Mónica", "monica"), ("Raúl", "raul"),
    ("Jürgen", "jurgen"), ("Hélène", "helene"), ("Günter", "gunter"),
]
ACCENT_LAST = [
    ("Müller", "muller"), ("Peña", "pena"), ("O’Brien", "obrien"), ("García", "garcia"),
    ("Núñez", "nunez"), ("Böhm", "bohm"), ("D’Angelo", "dangelo"), ("Ångström", "angstrom"),
    ("Gómez", "gomez"), ("Côté", "cote"), ("Šimek", "simek"), ("Jiménez", "jimenez"),
    ("Ibáñez", "ibanez"), ("Lefèvre", "lefevre"), ("Strauß", "strauss"), ("O’Neil", "oneil"),
    ("D’Souza", "dsouza"),
]
# the classic troublemakers come up more often
ACCENT_FIRST += [("José", "jose"), ("Zoë", "zoe"), ("Renée", "renee")] * 2
ACCENT_LAST += [("Müller", "muller"), ("Peña", "pena"), ("O’Brien", "obrien")] * 2

TITLES_M = (["Mr.", "Dr.", "Rev.", ""], [50, 5, 3, 42])
TITLES_F = (["Mrs.", "Ms.", "Miss", "Dr.", "Rev.", ""], [28, 18, 3, 5, 1, 45])

CHURCH_ADJ = [
    "Grace", "Hope", "Faith", "Calvary", "Cornerstone", "New Life", "Trinity", "Redeemer",
    "Living Water", "Harvest",
]
SAINTS = ["Mary", "Joseph", "Patrick", "Anne", "Michael", "Luke", "Francis", "Paul"]
BIZ = ["Hardware", "Plumbing", "Construction", "Insurance", "Dental", "Motors", "Realty"]

STREETS = [
    "Maple", "Oak", "Main", "Washington", "Park", "Elm", "Cedar", "Lake", "Hill", "Church",
    "Highland", "Pine", "Walnut", "Spring", "Chestnut", "Franklin", "Lincoln", "Jefferson",
    "Center", "Ridge", "Mill", "Union", "School", "River", "Sunset", "Forest", "Madison",
    "Jackson", "Meadow", "Valley", "Prospect", "Liberty", "Orchard", "Cherry", "Willow", "Broad",
    "High", "Water",
]
STREET_SFX = (
    ["St", "St.", "Street", "Ave", "Avenue", "Rd", "Road", "Dr", "Drive", "Ln", "Lane", "Blvd",
     "Ct", "Way", "Pl", "Terrace"],
    [14, 4, 8, 10, 5, 8, 4, 8, 3, 5, 2, 3, 3, 3, 2, 1],
)

# US locations; the first block has leading-zero zip codes (NJ, MA, CT, RI, NH, ME, VT)
US_ZERO = [
    ("Newark", "NJ", "071"), ("Jersey City", "NJ", "073"), ("Paterson", "NJ", "075"),
    ("Trenton", "NJ", "086"), ("Princeton", "NJ", "085"), ("Montclair", "NJ", "070"),
    ("Boston", "MA", "021"), ("Cambridge", "MA", "021"), ("Worcester", "MA", "016"),
    ("Springfield", "MA", "011"), ("Hartford", "CT", "061"), ("New Haven", "CT", "065"),
    ("Stamford", "CT", "069"), ("Providence", "RI", "029"), ("Manchester", "NH", "031"),
    ("Portland", "ME", "041"), ("Burlington", "VT", "054"),
]
US_OTHER = [
    ("New York", "NY", "100"), ("Brooklyn", "NY", "112"), ("Philadelphia", "PA", "191"),
    ("Pittsburgh", "PA", "152"), ("Chicago", "IL", "606"), ("Dallas", "TX", "752"),
    ("Houston", "TX", "770"), ("Austin", "TX", "787"), ("Los Angeles", "CA", "900"),
    ("San Diego", "CA", "921"), ("Springfield", "IL", "627"), ("Miami", "FL", "331"),
    ("Orlando", "FL", "328"), ("Atlanta", "GA", "303"), ("Columbus", "OH", "432"),
    ("Nashville", "TN", "372"), ("Charlotte", "NC", "282"), ("Seattle", "WA", "981"),
    ("Denver", "CO", "802"), ("Phoenix", "AZ", "850"), ("Minneapolis", "MN", "554"),
    ("Grand Rapids", "MI", "495"), ("Colorado Springs", "CO", "809"), ("Portland", "OR", "972"),
    ("Richmond", "VA", "232"),
]
US_LOC = US_ZERO + US_OTHER
CA_LOC = [
    ("Toronto", "ON", "M5V"), ("Ottawa", "ON", "K1P"), ("Vancouver", "BC", "V6B"),
    ("Montréal", "QC", "H2X"), ("Calgary", "AB", "T2P"), ("Halifax", "NS", "B3H"),
]
UK_LOC = [
    ("London", "SW1A 1AA"), ("London", "EC1A 1BB"), ("Manchester", "M1 1AE"),
    ("Edinburgh", "EH1 1YZ"), ("Birmingham", "B1 1HQ"),
]
CA_LETTERS = list("ABCEGHJKLMNPRSTVXY")
AREA_CODES = [
    "201", "973", "908", "732", "609", "617", "508", "413", "860", "203", "401", "603", "207",
    "802", "212", "718", "215", "412", "312", "214", "713", "512", "213", "619", "217", "305",
    "407", "404", "614", "615", "704", "206", "303", "602", "612", "616", "719", "503", "804",
]

TAGS = [
    "Major Donor", "Volunteer", "Board Member", "Monthly Donor", "Newsletter", "Event Attendee",
    "Lapsed", "Prayer Partner", "Legacy Society", "Staff",
]
TAG_COMBOS = (
    [
        "", *TAGS, "Major Donor|Board Member", "Volunteer|Newsletter", "Monthly Donor|Newsletter",
        "Major Donor|Legacy Society", "Event Attendee|Volunteer", "Lapsed|Newsletter",
        "Prayer Partner|Monthly Donor", "Major Donor|Volunteer", "Board Member|Volunteer|Staff",
        "Newsletter|Event Attendee|Monthly Donor",
    ],
    [52] + [3] * len(TAGS) + [2] * 7 + [1] * 3,
)
NULL_MARKERS = ["N/A", "NULL", "n/a", "null"]

CONTACT_DIRT = {  # relative weights of each kind among dirty rows (--dirt = share of dirty rows)
    "dup_id": 20,            # the DonorID of another (nearby) row
    "missing_name": 20,      # non-org row with both FirstName and LastName empty
    "accents": 10,           # José, Zoë, Müller, Peña, O’Brien (0x92 in cp1252)
    "whitespace": 8,         # leading/trailing spaces, double inner spaces
    "mixed_case": 7,         # JOHN SMITH, john mcdonald, o'brien
    "bad_email": 8,          # john.smith@, john@@example.org, n/a, "john smith@example.org"
    "zip_lost_zero": 5,      # 7001 instead of 07001
    "null_marker": 6,        # N/A, NULL, n/a, null in an optional field
    "formula": 6,            # a cell starting with =, +, @
    "embedded_comma": 4,     # "Smith, Jr." (quoted)
    "bad_type": 3,           # DonorType XXX
    "embedded_newline": 3,   # Address2 with a line break inside quotes
}
_INDIVIDUAL_DIRT = ["missing_name", "accents", "mixed_case", "embedded_comma"]

# ---------------------------------------------------------------------------------------------
# Contacts
# ---------------------------------------------------------------------------------------------


def donor_id(index: pl.Expr) -> pl.Expr:
    return _cat("D", _z(index + 1, 6))


def _contacts_lazy(index: pl.Series, seed: int, dirt: float) -> pl.LazyFrame:
    """All contact columns (+ internal ones) for the given 0-based contact indices."""
    r = Rng(seed, "contacts")
    d = pl.col("_dirt")
    c = pl.col
    lf = r.frame(index).lazy()
    lf = lf.with_columns(_pick_dirt(r, dirt, CONTACT_DIRT))
    # -- stage 1: independent base draws --------------------------------------------------
    acc_f = r.below("acc.first", len(ACCENT_FIRST))
    acc_l = r.below("acc.last", len(ACCENT_LAST))
    acc_which = r.below("acc.which", 3)  # 0 first, 1 last, 2 both
    region = r.unif("region")
    lf = lf.with_columns(
        _org=r.chance("org", 0.08) & ~d.is_in(_INDIVIDUAL_DIRT),
        _male=r.chance("male", 0.5),
        _orgpat=r.below("org.pattern", 8),
        _orgperson=r.chance("org.person", 0.15),
        _region=pl.when(d == "zip_lost_zero").then(pl.lit("US"))
        .when(region < 0.97).then(pl.lit("US"))
        .when(region < 0.993).then(pl.lit("CA"))
        .otherwise(pl.lit("UK")),
        _us=pl.when(d == "zip_lost_zero").then(r.below("loc.zero", len(US_ZERO)))
        .otherwise(r.below("loc.us", len(US_LOC))),
        _ca=r.below("loc.ca", len(CA_LOC)),
        _uk=r.below("loc.uk", len(UK_LOC)),
        _last0=r.pick("last", LAST),
        _male_first=r.pick("first.m", MALE_FIRST),
        _female_first=r.pick("first.f", FEMALE_FIRST),
        _acc_first=_gather([a for a, _ in ACCENT_FIRST], acc_f),
        _acc_first_ascii=_gather([b for _, b in ACCENT_FIRST], acc_f),
        _acc_last=_gather([a for a, _ in ACCENT_LAST], acc_l),
        _acc_last_ascii=_gather([b for _, b in ACCENT_LAST], acc_l),
        _acc_which=acc_which,
        _sub=r.below("dirt.sub", 6),  # which variant of the row's dirt kind
        _fsub=r.below("dirt.formula", 5),  # which formula-like cell
        _nsub=r.below("dirt.null", 6),  # which field gets a null marker
    )
    # -- stage 2: clean names ---------------------------------------------------------------
    use_acc_first = (d == "accents") & (c("_acc_which") != 1)
    use_acc_last = (d == "accents") & (c("_acc_which") != 0)
    first = pl.when(c("_male")).then(c("_male_first")).otherwise(c("_female_first"))
    lf = lf.with_columns(
        _first=pl.when(use_acc_first).then(c("_acc_first")).otherwise(first),
        _first_ascii=pl.when(use_acc_first).then(c("_acc_first_ascii")).otherwise(first),
        _last=pl.when(use_acc_last).then(c("_acc_last")).otherwise(c("_last0")),
        _last_ascii=pl.when(use_acc_last).then(c("_acc_last_ascii")).otherwise(c("_last0")),
    )
    # -- stage 3: clean values of every column ------------------------------------------------
    last, org = c("_last"), c("_org")
    city_us = _gather([x[0] for x in US_LOC], c("_us"))
    city_ca = _gather([x[0] for x in CA_LOC], c("_ca"))
    city_uk = _gather([x[0] for x in UK_LOC], c("_uk"))
    pat = c("_orgpat")
    org_name = (
        pl.when(pat == 0).then(_cat(last, " Family Foundation"))
        .when(pat == 1).then(_cat("The ", last, " Foundation"))
        .when(pat == 2).then(_cat(r.pick("org.adj", CHURCH_ADJ), " Community Church"))
        .when(pat == 3).then(_cat("First Baptist Church of ", city_us))
        .when(pat == 4).then(_cat("St. ", r.pick("org.saint", SAINTS), " Parish"))
        .when(pat == 5).then(_cat(last, " & Sons ", r.pick("org.biz", BIZ)))
        .when(pat == 6).then(_cat(city_us, " Rotary Club"))
        .otherwise(_cat(last, " Holdings, LLC"))
    )
    org_type = (
        pl.when(pat <= 1).then(pl.lit("FDN")).when(pat <= 4).then(pl.lit("CHU"))
        .otherwise(pl.lit("ORG"))
    )
    keep_person = ~org | c("_orgperson")
    title = pl.when(org).then(pl.lit("")).when(c("_male")).then(
        r.pick("title.m", *TITLES_M)
    ).otherwise(r.pick("title.f", *TITLES_F))
    # e-mail
    fa, la = _slug(c("_first_ascii")), _slug(c("_last_ascii"))
    num = _s(1 + r.below("email.num", 9999))
    local = (
        pl.when(r.chance("email.suffix", 0.7).not_()).then(
            _cat(fa, ".", la)
        ).otherwise(
            pl.when(r.below("email.pat", 4) == 0).then(_cat(fa, ".", la, num))
            .when(r.below("email.pat", 4) == 1).then(_cat(fa.str.slice(0, 1), la, num))
            .when(r.below("email.pat", 4) == 2).then(_cat(fa, "_", la, num))
            .otherwise(_cat(fa, la, num))
        )
    )
    domain = r.pick("email.domain", ["example.org", "example.com", "example.net"], [5, 4, 2])
    org_local = _cat(r.pick("email.orgword", ["info", "office", "giving", "admin"]), _s(IDX + 1))
    email = (
        pl.when(org).then(
            pl.when(r.chance("email.org", 0.7)).then(_cat(org_local, "@", domain))
            .otherwise(pl.lit(""))
        ).when(r.chance("email.has", 0.88)).then(_cat(local, "@", domain))
        .otherwise(pl.lit(""))
    )
    # phone
    area = r.pick("phone.area", AREA_CODES)
    exch = _s(200 + r.below("phone.exch", 800))
    line = _z(r.below("phone.line", 10000), 4)
    fmt = r.below("phone.fmt", 5)
    phone = (
        pl.when(r.chance("phone.has", 0.82).not_()).then(pl.lit(""))
        .when(fmt == 0).then(_cat("(", area, ") ", exch, "-", line))
        .when(fmt == 1).then(_cat(area, ".", exch, ".", line))
        .when(fmt == 2).then(_cat(area, exch, line))
        .when(fmt == 3).then(_cat("+1 ", area, " ", exch, " ", line))
        .otherwise(_cat(area, "-", exch, "-", line))
    )
    # address
    a_kind = r.unif("addr.kind")
    street = _cat(
        _s(1 + r.below("addr.num", 9999)), " ", r.pick("addr.street", STREETS), " ",
        r.pick("addr.sfx", *STREET_SFX),
    )
    address1 = (
        pl.when(a_kind < 0.04).then(pl.lit(""))
        .when(a_kind < 0.06).then(_cat("PO Box ", _s(1 + r.below("addr.box", 2999))))
        .when(a_kind < 0.07).then(_cat("P.O. Box ", _s(1 + r.below("addr.box", 2999))))
        .otherwise(street)
    )
    a2 = r.below("addr2.kind", 100)
    a2n = _s(1 + r.below("addr2.num", 400))
    address2 = (
        pl.when(a2 < 6).then(_cat("Apt ", a2n))
        .when(a2 < 8).then(_cat("Apt ", _s(1 + r.below("addr2.fl", 9)), r.pick("addr2.l", "ABCD")))
        .when(a2 < 11).then(_cat("Suite ", a2n))
        .when(a2 < 13).then(_cat("Unit ", a2n))
        .when(a2 < 14).then(_cat("# ", a2n))
        .otherwise(pl.lit(""))
    )
    reg = c("_region")
    zip_us = _cat(
        _gather([x[2] for x in US_LOC], c("_us")), _z(r.below("zip.us", 100), 2),
        pl.when(r.chance("zip.plus4", 0.05)).then(_cat("-", _z(r.below("zip.4", 10000), 4)))
        .otherwise(pl.lit("")),
    )
    zip_ca = _cat(
        _gather([x[2] for x in CA_LOC], c("_ca")), " ", _s(r.below("zip.ca1", 10)),
        r.pick("zip.ca2", CA_LETTERS), _s(r.below("zip.ca3", 10)),
    )
    country = (
        pl.when(reg == "US").then(
            r.pick("country.us", ["USA", "United States", "US", "U.S.", ""], [40, 20, 12, 6, 22])
        ).when(reg == "CA").then(r.pick("country.ca", ["Canada", "CA"], [65, 35]))
        .otherwise(pl.lit("United Kingdom"))
    )
    birth = _cat(
        _z(1 + r.below("birth.m", 12), 2), "/", _z(1 + r.below("birth.d", 28), 2), "/",
        _s(1930 + r.below("birth.y", 76)),
    )
    created_span = (date(2026, 10, 31) - date(2005, 1, 1)).days + 1
    lf = lf.with_columns(
        DonorID=donor_id(IDX.cast(pl.Int64)),
        Title=title,
        FirstName=pl.when(keep_person).then(c("_first")).otherwise(pl.lit("")),
        LastName=pl.when(keep_person).then(last).otherwise(pl.lit("")),
        OrgName=pl.when(org).then(org_name).otherwise(pl.lit("")),
        IsOrg=pl.when(org).then(pl.lit("Y")).otherwise(pl.lit("N")),
        DonorType=pl.when(org).then(org_type).otherwise(pl.lit("IND")),
        Email=email,
        Phone=pl.when(org & r.chance("phone.org", 0.3)).then(pl.lit("")).otherwise(phone),
        Address1=address1,
        Address2=address2,
        City=pl.when(reg == "US").then(city_us).when(reg == "CA").then(city_ca)
        .otherwise(city_uk),
        State=pl.when(reg == "US").then(_gather([x[1] for x in US_LOC], c("_us")))
        .when(reg == "CA").then(_gather([x[1] for x in CA_LOC], c("_ca")))
        .otherwise(pl.lit("")),
        Zip=pl.when(reg == "US").then(zip_us).when(reg == "CA").then(zip_ca)
        .otherwise(_gather([x[1] for x in UK_LOC], c("_uk"))),
        Country=country,
        Tags=r.pick("tags", *TAG_COMBOS),
        Birthdate=pl.when(~org & r.chance("birth.has", 0.35)).then(birth).otherwise(pl.lit("")),
        Created=_date_str(date(2005, 1, 1), r.below("created", created_span), "%Y-%m-%d"),
    )
    # keep clean copies for the gift platform drops (donors type their own names there)
    lf = lf.with_columns(_first_clean=c("FirstName"), _last_clean=c("LastName"),
                         _email_clean=c("Email"))
    # -- stage 4: dirt ------------------------------------------------------------------------
    sub = c("_sub")
    other_first = r.pick("dirt.other_first", FEMALE_FIRST)
    ws = d == "whitespace"
    mc = d == "mixed_case"
    fo = d == "formula"
    nm = d == "null_marker"
    marker = r.pick("dirt.marker", NULL_MARKERS)
    fn, ln = c("FirstName"), c("LastName")
    lfa, lla = _slug(c("_first_ascii")), _slug(c("_last_ascii"))
    bad_email = (
        pl.when(sub == 0).then(_cat(lfa, ".", lla, "@"))
        .when(sub == 1).then(_cat(lfa, "@@example.org"))
        .when(sub == 2).then(pl.lit("n/a"))
        .when(sub == 3).then(_cat(lfa, " ", lla, "@example.org"))
        .when(sub == 4).then(_cat(lfa, ".", lla, ".example.org"))
        .otherwise(_cat(lfa, ".", lla, "@example"))
    )
    lf = lf.with_columns(
        DonorID=pl.when(d == "dup_id").then(donor_id(_other_index(r, "dirt.dup", 500)))
        .otherwise(c("DonorID")),
        Title=pl.when(nm & (c("_nsub") == 0)).then(marker).otherwise(c("Title")),
        FirstName=pl.when(d == "missing_name").then(pl.lit(""))
        .when(mc & (sub <= 2)).then(fn.str.to_uppercase())
        .when(mc).then(fn.str.to_lowercase())
        .when(ws & sub.is_in([0, 1, 5])).then(_cat("  ", fn))
        .otherwise(fn),
        LastName=pl.when(d == "missing_name").then(pl.lit(""))
        .when(mc & (sub <= 1)).then(ln.str.to_uppercase())
        .when(mc).then(ln.str.to_lowercase())
        .when(ws & sub.is_in([0, 1, 5])).then(_cat(ln, " "))
        .when(fo & (c("_fsub") == 1)).then(pl.lit("=1+2"))
        .when(d == "embedded_comma").then(
            _cat(ln, r.pick("dirt.suffix", [", Jr.", ", Sr.", ", III", ", MD"], [5, 2, 2, 1]))
        ).otherwise(ln),
        Email=pl.when(d == "bad_email").then(bad_email)
        .when(nm & (c("_nsub") == 1)).then(marker)
        .when(ws & (sub == 4) & (c("Email") != "")).then(_cat(" ", c("Email")))
        .otherwise(c("Email")),
        Phone=pl.when(nm & (c("_nsub") == 2)).then(marker).otherwise(c("Phone")),
        Address1=pl.when(ws & (sub == 2)).then(c("Address1").str.replace(" ", "  "))
        .otherwise(c("Address1")),
        Address2=pl.when(d == "embedded_newline").then(
            _cat(pl.when(c("Address2") == "").then(pl.lit("Apt 2")).otherwise(c("Address2")),
                 "\nc/o ", other_first, " ", c("_last"))
        ).when(nm & (c("_nsub") == 3)).then(marker)
        .when(fo & (c("_fsub") == 2)).then(pl.lit("+SUM(1,2)"))
        .otherwise(c("Address2")),
        City=pl.when(ws & (sub == 3)).then(_cat(c("City"), "  "))
        .when(fo & (c("_fsub") == 3)).then(pl.lit("@calc"))
        .otherwise(c("City")),
        Zip=pl.when(d == "zip_lost_zero").then(c("Zip").str.slice(0, 5).str.strip_chars_start("0"))
        .otherwise(c("Zip")),
        Country=pl.when(nm & (c("_nsub") == 4)).then(marker).otherwise(c("Country")),
        Tags=pl.when(fo & (c("_fsub") == 0))
        .then(pl.lit('=HYPERLINK("http://example.com/x","Click")'))
        .when(fo & (c("_fsub") == 4)).then(pl.lit("@SUM(A1:A9)"))
        .otherwise(c("Tags")),
        Birthdate=pl.when(nm & (c("_nsub") == 5)).then(marker).otherwise(c("Birthdate")),
        DonorType=pl.when(d == "bad_type").then(pl.lit("XXX")).otherwise(c("DonorType")),
    )
    return lf


def generate_contacts(
    rows: int, seed: int = 7, dirt: float = 0.05, start: int = 0, *, internal: bool = False
) -> pl.DataFrame:
    """Contacts rows [start, start + rows) as strings (empty cells null).

    internal=True keeps `_dirt` (the dirt kind of each row)."""
    lf = _contacts_lazy(pl.int_range(start, start + rows, dtype=pl.UInt64, eager=True), seed, dirt)
    cols = CONTACT_COLUMNS + (["_dirt"] if internal else [])
    return _finish(lf.select(cols).collect())


# ---------------------------------------------------------------------------------------------
# Gifts
# ---------------------------------------------------------------------------------------------

GIFT_DIRT = {
    "dup_gift_id": 10,          # GiftID of another (nearby) row
    "missing_donor": 10,        # empty DonorID
    "refund_parens": 8,         # (25.00) / -25.00
    "zero_amount": 6,           # 0, 0.00, $0.00
    "nonnumeric_amount": 6,     # abc, N/A, TBD
    "decimal_comma": 6,         # 25,00 and 1.234,50
    "sci_amount": 4,            # 1e3
    "three_decimals": 5,        # 12.345
    "impossible_date": 8,       # 02/30/2022, 13/01/2021
    "future_date": 6,           # after 2026-11-01, e.g. 03/01/2027
    "blank_date": 5,
    "date_variant": 4,          # 3/5/2024 or 2024-03-05 instead of MM/DD/YYYY
    "unmapped_paymethod": 8,    # ??, PAYPAL, VENMO
    "bad_split": 6,             # Fund2Amount greater than Amount
    "whitespace": 8,            # " 25.00 ", "  John", "GEN "
}
FUNDS = (["GEN", "BLDG", "SCHOL", "MISSIONS", "YOUTH", "BENEV", "RELIEF"],
         [50, 12, 10, 15, 5, 5, 3])
PAY = (["CC", "CHK", "EFT", "ACH", "CASH", "STK"], [45, 25, 10, 10, 7, 3])
COMMON_AMOUNTS = [5, 10, 15, 20, 25, 25, 30, 40, 50, 50, 75, 100, 100, 150, 200, 250, 300, 500,
                  1000, 2500, 5000]
SEGMENTS = [f"{c}-{ch}" for c, ch in [
    ("EOY", "MAIL"), ("EOY", "EMAIL"), ("SPRING", "MAIL"), ("SPRING", "EMAIL"), ("GALA", "EVENT"),
    ("GT", "ONLINE"), ("GT", "EMAIL"), ("SUMMER", "MAIL"), ("EASTER", "MAIL"), ("WEB", "ONLINE"),
]]
MEMOS = [
    "In memory of John Smith", "In honor of Mom, Dad, and Aunt Sue", "Thank you for all you do!",
    'For the "Building" fund', "Pledge payment 3 of 12", "Matching gift, Acme Corp",
    "Annual gift", "Per phone call w/ Pastor", "Tribute: Grandma Rose", "Year-end gift; receipt",
]
IMPOSSIBLE_DATES = ["02/30/2022", "02/29/2023", "04/31/2024", "13/01/2021", "00/15/2020",
                    "06/31/2025", "11/31/2019", "02/31/2026"]


def gift_id(index: pl.Expr) -> pl.Expr:
    return _cat("G", _z(index + 1, 7))


def _money(cents: pl.Expr, style: pl.Expr | int) -> pl.Expr:
    """Amount strings: 0 '25.00', 1 '25' (if whole), 2 '$1,234.50', 3 '$50' (if whole), 4 '100.5'.

    cents must be < 100,000,000 (one thousands separator at most)."""
    dollars = cents // 100
    cc = cents % 100
    two = _cat(_s(dollars), ".", _z(cc, 2))
    thousands = pl.when(dollars >= 1000).then(
        _cat(_s(dollars // 1000), ",", _z(dollars % 1000, 3))
    ).otherwise(_s(dollars))
    style = pl.lit(style) if isinstance(style, int) else style
    return (
        pl.when((style == 1) & (cc == 0)).then(_s(dollars))
        .when(style == 2).then(_cat("$", thousands, ".", _z(cc, 2)))
        .when((style == 3) & (cc == 0)).then(_cat("$", thousands))
        .when(style == 3).then(_cat("$", thousands, ".", _z(cc, 2)))
        .when((style == 4) & (cc % 10 == 0)).then(_cat(_s(dollars), ".", _s(cc // 10)))
        .otherwise(two)
    )


def _amount_cents(r: Rng, prefix: str) -> pl.Expr:
    kind = r.unif(f"{prefix}.kind")
    common = _gather([str(a * 100) for a in COMMON_AMOUNTS],
                     r.below(f"{prefix}.common", len(COMMON_AMOUNTS))).cast(pl.Int64)
    rnd = 500 + (r.unif(f"{prefix}.rnd") ** 3 * 1_000_000).cast(pl.Int64)
    big = (10_000 + r.below(f"{prefix}.big", 240_000)) * 100
    return pl.when(kind < 0.65).then(common).when(kind < 0.997).then(rnd).otherwise(big)


def _gifts_lazy(
    index: pl.Series, seed: int, dirt: float, contacts: int, contacts_seed: int,
    contacts_dirt: float,
) -> pl.LazyFrame:
    r = Rng(seed, "gifts")
    c = pl.col
    d = c("_dirt")
    n = len(index)
    # donors: 40% of gifts come from the most loyal 10% of donors
    loyal = r.chance("donor.loyal", 0.4)
    donor = pl.when(loyal).then((r.unif("donor.l") * max(1, contacts // 10)).cast(pl.Int64)) \
        .otherwise((r.unif("donor.u") * contacts).cast(pl.Int64))
    base = r.frame(index).with_columns(_donor=donor.cast(pl.UInt64))
    people = _contacts_lazy(base["_donor"], contacts_seed, contacts_dirt).select(
        _cid=c("DonorID"), _cfirst=c("FirstName"), _clast=c("LastName"), _cemail=c("Email"),
        _corg=c("OrgName"), _cisorg=c("IsOrg"),
    ).collect()
    assert people.height == n
    lf = base.hstack(people).lazy().with_columns(_pick_dirt(r, dirt, GIFT_DIRT))
    date_span = (date(2026, 10, 31) - date(2019, 1, 1)).days + 1
    pay = r.pick("pay", *PAY)
    fund_names = FUNDS[0]
    fidx = r.pick("fund", [str(k) for k in range(len(fund_names))], FUNDS[1]).cast(pl.Int64)
    lf = lf.with_columns(
        _days=r.below("date", date_span),
        _cents=_amount_cents(r, "amount"),
        _style=r.pick("amount.style", ["0", "1", "2", "3", "4"], [35, 20, 25, 10, 10])
        .cast(pl.Int64),
        _fund=fidx,
        _split=r.chance("split", 0.05),
        _sub=r.below("dirt.sub", 6),
        _pay=pay,
    )
    gdate = pl.lit(date(2019, 1, 1)) + pl.duration(days=c("_days"))
    cents = c("_cents")
    splittable = c("_split") & (cents >= 1000)
    fund2 = _gather(fund_names, (c("_fund") + 1 + r.below("fund2", len(fund_names) - 1))
                    % len(fund_names))
    fund2_cents = cents * _gather(["25", "50", "40", "20", "75"], r.below("split.pct", 5)) \
        .cast(pl.Int64) // 100
    consistent = r.unif("donor.consistent")
    is_org = c("_cisorg") == "Y"
    first = pl.when(is_org).then(pl.lit("")).otherwise(c("_cfirst"))
    last = pl.when(is_org).then(c("_corg")).otherwise(c("_clast"))
    lf = lf.with_columns(
        GiftID=gift_id(IDX.cast(pl.Int64)),
        DonorID=c("_cid"),
        DonorFirst=pl.when(consistent < 0.97).then(first).otherwise(first.str.to_uppercase()),
        DonorLast=pl.when(consistent < 0.97).then(last).otherwise(last.str.to_uppercase()),
        DonorEmail=pl.when(consistent < 0.90).then(c("_cemail"))
        .when(consistent < 0.95).then(pl.lit(""))
        .when(is_org).then(c("_cemail"))
        .otherwise(_cat(_slug(first), ".", _slug(last), _s(r.below("email.new", 100)),
                        "@example.net")),
        GiftDate=gdate.dt.strftime("%m/%d/%Y"),
        Amount=_money(cents, c("_style")),
        PayMethod=c("_pay"),
        Currency=r.pick("currency", ["USD", "CAD", ""], [94, 3, 3]),
        Fund=_gather(fund_names, c("_fund")),
        Fund2=pl.when(splittable).then(fund2).otherwise(pl.lit("")),
        Fund2Amount=pl.when(splittable).then(_money(fund2_cents, 0)).otherwise(pl.lit("")),
        Segment=pl.when(r.chance("segment", 0.85)).then(
            _cat(_s(gdate.dt.year()), "-", r.pick("segment.name", SEGMENTS))
        ).otherwise(pl.lit("")),
        CheckNo=pl.when((c("_pay") == "CHK") & r.chance("checkno", 0.92))
        .then(_s(1001 + r.below("checkno.n", 8999))).otherwise(pl.lit("")),
        Memo=pl.when(r.chance("memo", 0.12)).then(r.pick("memo.text", MEMOS))
        .otherwise(pl.lit("")),
        Anonymous=r.pick("anonymous", ["N", "Y"], [97, 3]),
    )
    # -- dirt ---------------------------------------------------------------------------------
    sub = c("_sub")
    dollars, cc = cents // 100, cents % 100
    two = _money(cents, 0)
    ws = d == "whitespace"
    future_span = (date(2028, 12, 31) - date(2026, 11, 2)).days + 1
    future = _date_str(date(2026, 11, 2), r.below("dirt.future", future_span), "%m/%d/%Y")
    amount = (
        pl.when(d == "refund_parens").then(
            pl.when(sub <= 3).then(_cat("(", two, ")")).otherwise(_cat("-", two)))
        .when(d == "zero_amount").then(r.pick("dirt.zero", ["0", "0.00", "$0.00"], [3, 2, 1]))
        .when(d == "nonnumeric_amount").then(r.pick("dirt.nan", ["abc", "N/A", "TBD", "see memo"]))
        .when(d == "decimal_comma").then(
            pl.when(dollars >= 1000).then(
                _cat(_s(dollars // 1000), ".", _z(dollars % 1000, 3), ",", _z(cc, 2))
            ).otherwise(_cat(_s(dollars), ",", _z(cc, 2))))
        .when(d == "sci_amount").then(r.pick("dirt.sci", ["1e3", "2.5e2", "1E2", "5e1"]))
        .when(d == "three_decimals").then(_cat(two, _s(1 + r.below("dirt.3dec", 9))))
        .when(ws & (sub <= 1)).then(_cat(" ", two, " "))
        .otherwise(c("Amount"))
    )
    md = _cat(_s(gdate.dt.month()), "/", _s(gdate.dt.day()), "/", _s(gdate.dt.year()))
    lf = lf.with_columns(
        GiftID=pl.when(d == "dup_gift_id").then(gift_id(_other_index(r, "dirt.dup", 2000)))
        .otherwise(c("GiftID")),
        DonorID=pl.when(d == "missing_donor").then(pl.lit("")).otherwise(c("DonorID")),
        DonorFirst=pl.when(ws & (sub == 2)).then(_cat("  ", c("DonorFirst")))
        .otherwise(c("DonorFirst")),
        Amount=amount,
        GiftDate=pl.when(d == "impossible_date").then(
            pl.when(sub <= 3).then(r.pick("dirt.impossible", IMPOSSIBLE_DATES))
            .otherwise(_cat("13/", _z(1 + r.below("dirt.d13", 28), 2), "/",
                            _s(2019 + r.below("dirt.y13", 7)))))
        .when(d == "future_date").then(future)
        .when(d == "blank_date").then(pl.lit(""))
        .when(d == "date_variant").then(
            pl.when(sub <= 2).then(md).otherwise(gdate.dt.strftime("%Y-%m-%d")))
        .otherwise(c("GiftDate")),
        PayMethod=pl.when(d == "unmapped_paymethod")
        .then(r.pick("dirt.pay", ["??", "PAYPAL", "VENMO", "WIRE", "DAF"], [3, 3, 2, 1, 1]))
        .when(ws & (sub == 3)).then(_cat(" ", c("PayMethod")))
        .otherwise(c("PayMethod")),
        Fund=pl.when(ws & (sub >= 4)).then(_cat(c("Fund"), " ")).otherwise(c("Fund")),
        Fund2=pl.when(d == "bad_split").then(pl.when(c("Fund2") == "").then(fund2)
                                              .otherwise(c("Fund2")))
        .otherwise(c("Fund2")),
        Fund2Amount=pl.when(d == "bad_split").then(
            _money(cents + 500 + r.below("dirt.split", 10_000), 0))
        .otherwise(c("Fund2Amount")),
    )
    return lf


def generate_gifts(
    rows: int,
    contacts: int,
    seed: int = 7,
    dirt: float = 0.05,
    start: int = 0,
    *,
    contacts_seed: int | None = None,
    contacts_dirt: float | None = None,
    internal: bool = False,
) -> pl.DataFrame:
    """Gift rows [start, start + rows) referencing contacts D000001..D{contacts}.

    contacts_seed/contacts_dirt must be those the contacts file was generated with (they default
    to seed/dirt) so that the donor names and e-mails match the referenced contacts."""
    lf = _gifts_lazy(
        pl.int_range(start, start + rows, dtype=pl.UInt64, eager=True), seed, dirt, contacts,
        seed if contacts_seed is None else contacts_seed,
        dirt if contacts_dirt is None else contacts_dirt,
    )
    cols = GIFT_COLUMNS + (["_dirt"] if internal else [])
    return _finish(lf.select(cols).collect())


# ---------------------------------------------------------------------------------------------
# Nightly drops from a giving platform
# ---------------------------------------------------------------------------------------------

DROP_DIRT = {"bad_email": 40, "negative_amount": 30, "dup_transaction_id": 30}
DROP_FUNDS = (["General Fund", "Building Fund", "Missions", "Scholarship Fund", "Youth Ministry"],
              [55, 12, 15, 10, 8])
_ALNUM = list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _txn_id(r: Rng, index: pl.Expr) -> pl.Expr:
    return _cat("ch_", *[_gather(_ALNUM, r.below(f"txn.{k}", len(_ALNUM), index))
                         for k in range(14)])


def generate_drop(
    day: date,
    rows: int,
    contacts: int = 1000,
    seed: int = 7,
    dirt: float = 0.05,
    *,
    contacts_seed: int | None = None,
    contacts_dirt: float | None = None,
    internal: bool = False,
) -> pl.DataFrame:
    """One nightly file of the giving platform: the transactions of `day` (UTC), by time."""
    r = Rng(seed, f"drop/{day.isoformat()}")
    c = pl.col
    d = c("_dirt")
    cseed = seed if contacts_seed is None else contacts_seed
    cdirt = dirt if contacts_dirt is None else contacts_dirt
    base = r.frame(pl.int_range(0, rows, dtype=pl.UInt64, eager=True)).with_columns(
        _known=r.chance("known", 0.75),
        _donor=(r.unif("donor") * contacts).cast(pl.UInt64),
        # new donors: people far outside the contacts range, clean
        _new=(r.below("new", 1 << 30) + 50_000_000).cast(pl.UInt64),
    )
    known = _contacts_lazy(base["_donor"], cseed, cdirt).select(
        _kid=c("DonorID"), _kf=c("_first_clean"), _kl=c("_last_clean"), _ke=c("_email_clean"),
        _korg=c("IsOrg"), _korgname=c("OrgName"),
    ).collect()
    new = _contacts_lazy(base["_new"], cseed, 0.0).select(
        _nf=c("_first"), _nl=c("_last"),
        _ne=_cat(_slug(c("_first_ascii")), ".", _slug(c("_last_ascii")), "@example.com"),
    ).collect()
    k = c("_known")
    org = c("_korg") == "Y"
    secs = ((IDX.cast(pl.Float64) + r.unif("time")) * (86400.0 / max(rows, 1))).cast(pl.Int64)
    lf = base.hstack(known).hstack(new).lazy().with_columns(
        _pick_dirt(r, dirt, DROP_DIRT), _cents=_amount_cents(r, "amount"),
        _other=_other_index(r, "dirt.dup", 20),
    ).with_columns(
        # (a column, not a nested expression: hashing a hash expression makes a huge plan)
        _txn_i=pl.when(d == "dup_transaction_id").then(c("_other")).otherwise(IDX.cast(pl.Int64)),
    ).with_columns(
        transaction_id=_txn_id(r, c("_txn_i")),
        # known donors carry their CRM DonorID, new ones the platform's own id
        donor_ref=pl.when(k).then(c("_kid"))
        .otherwise(_cat("GP", _z(r.below("new.ref", 10_000_000), 7))),
        first_name=pl.when(~k).then(c("_nf")).when(org).then(pl.lit("")).otherwise(c("_kf")),
        last_name=pl.when(~k).then(c("_nl")).when(org).then(c("_korgname"))
        .otherwise(c("_kl")),
        email=pl.when(~k).then(c("_ne")).otherwise(c("_ke")),
        amount=pl.when(d == "negative_amount").then(_cat("-", _money(c("_cents"), 0)))
        .otherwise(_money(c("_cents"), 0)),
        currency=r.pick("currency", ["USD", "CAD"], [97, 3]),
        created_at=(pl.lit(day).cast(pl.Datetime("us")) + pl.duration(seconds=secs))
        .dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        method=r.pick("method", ["card", "ach", "paypal"], [70, 20, 10]),
        fund=r.pick("fund", *DROP_FUNDS),
        _bad_first=_slug(pl.when(~k).then(c("_nf")).when(org).then(pl.lit("info"))
                         .otherwise(c("_kf"))),
        _bad_last=_slug(pl.when(~k).then(c("_nl")).otherwise(c("_kl"))),
        _bad_kind=r.below("dirt.email", 3),
    ).with_columns(
        # bad e-mail variants built from the row's own name
        email=pl.when(d != "bad_email").then(c("email"))
        .when(c("_bad_kind") == 0).then(_cat(c("_bad_first"), ".", c("_bad_last"), "@example"))
        .when(c("_bad_kind") == 1).then(_cat(c("_bad_first"), "@@example.org"))
        .otherwise(_cat(c("_bad_first"), " ", c("_bad_last"), "@example.org")),
    )
    cols = DROP_COLUMNS + (["_dirt"] if internal else [])
    return _finish(lf.select(cols).collect())


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _finish(df: pl.DataFrame) -> pl.DataFrame:
    """Empty strings become null, so that they are written as empty fields (not "")."""
    return df.with_columns(
        pl.when(pl.col(x) == "").then(None).otherwise(pl.col(x)).alias(x)
        for x in df.columns if x != "_dirt"
    )


def _write_chunks(
    path: Path,
    chunks: Iterator[pl.DataFrame],
    columns: list[str],
    encoding: str,
    line_terminator: str,
    on_chunk: Callable[[pl.DataFrame], None] | None = None,
) -> int:
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    rows = 0
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        if encoding == "utf-8-sig":
            fh.write(b"\xef\xbb\xbf")
        for k, df in enumerate(chunks):
            if on_chunk is not None:
                on_chunk(df)
            text = df.select(columns).write_csv(
                None, include_header=(k == 0), line_terminator=line_terminator
            )
            fh.write(text.encode(codec))  # strict: every pool value is encodable in cp1252
            rows += df.height
    tmp.replace(path)
    return rows


def _chunked(total: int, chunk: int) -> Iterator[tuple[int, int]]:
    for s in range(0, total, chunk):
        yield s, min(chunk, total - s)


def write_contacts(
    path: str | Path, rows: int, seed: int = 7, dirt: float = 0.05, encoding: str = "cp1252",
    chunk: int = DEFAULT_CHUNK, on_chunk: Callable[[pl.DataFrame], None] | None = None,
) -> int:
    chunks = (generate_contacts(n, seed, dirt, s, internal=True) for s, n in _chunked(rows, chunk))
    return _write_chunks(Path(path), chunks, CONTACT_COLUMNS, encoding, "\r\n", on_chunk)


def write_gifts(
    path: str | Path, rows: int, contacts: int, seed: int = 7, dirt: float = 0.05,
    encoding: str = "utf-8-sig", chunk: int = DEFAULT_CHUNK, *,
    contacts_seed: int | None = None, contacts_dirt: float | None = None,
    on_chunk: Callable[[pl.DataFrame], None] | None = None,
) -> int:
    chunks = (
        generate_gifts(n, contacts, seed, dirt, s, contacts_seed=contacts_seed,
                       contacts_dirt=contacts_dirt, internal=True)
        for s, n in _chunked(rows, chunk)
    )
    return _write_chunks(Path(path), chunks, GIFT_COLUMNS, encoding, "\r\n", on_chunk)


def write_drops(
    out_dir: str | Path, files: int, rows: int, start: date = date(2026, 11, 18),
    contacts: int = 1000, seed: int = 7, dirt: float = 0.05, *,
    contacts_seed: int | None = None, contacts_dirt: float | None = None,
    on_chunk: Callable[[pl.DataFrame], None] | None = None,
) -> list[Path]:
    out = []
    for k in range(files):
        day = start + timedelta(days=k)
        path = Path(out_dir) / f"gifts_{day.isoformat()}.csv"
        df = generate_drop(day, rows, contacts, seed, dirt, contacts_seed=contacts_seed,
                           contacts_dirt=contacts_dirt, internal=True)
        _write_chunks(path, iter([df]), DROP_COLUMNS, "utf-8", "\n", on_chunk)
        out.append(path)
    return out


# ---------------------------------------------------------------------------------------------
# Samples (sample_data/) and their README
# ---------------------------------------------------------------------------------------------

# The samples' seed was picked (from the first 300) so that every dirt kind shows up in these
# small files at the default 5% dirt: formula cells, one or two embedded newlines, and each
# drop file with a bad e-mail, a negative amount and a duplicated transaction_id.
SAMPLE_SEED = 145
SAMPLE_CONTACTS = 1000
SAMPLE_GIFTS = 3000
SAMPLE_DROP_ROWS = 100
SAMPLE_DROP_FILES = 3
SAMPLE_DROP_START = date(2026, 11, 18)


def _read_back(path: Path, encoding: str) -> list[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as fh:
        return list(csv.DictReader(fh))


def _dups(values: list[str]) -> tuple[int, int]:
    """(distinct values that occur more than once, rows carrying them), blanks ignored."""
    cnt = Counter(v for v in values if v)
    multi = {v: n for v, n in cnt.items() if n > 1}
    return len(multi), sum(multi.values())


def _fmt_counts(counter: Counter[str], labels: dict[str, str]) -> str:
    lines = []
    for kind in labels:
        lines.append(f"| `{kind}` | {counter.get(kind, 0)} | {labels[kind]} |")
    return "\n".join(["| dirt kind | rows | what |", "| --- | ---: | --- |", *lines])


_CONTACT_LABELS = {
    "dup_id": "DonorID of another row (same id on two different people)",
    "missing_name": "individual (IsOrg N) with FirstName and LastName both empty",
    "accents": "cp1252 accents: José, Zoë, Müller, Peña, O’Brien (’ is byte 0x92)",
    "whitespace": "leading/trailing spaces, double inner spaces (name, address, city, e-mail)",
    "mixed_case": "JOHN SMITH, john mcdonald, o'brien",
    "bad_email": "`john.smith@`, `john@@example.org`, `n/a`, `john smith@example.org`, ...",
    "zip_lost_zero": "leading zero lost: `7001` instead of `07001` (NJ/MA/CT/...)",
    "null_marker": "`N/A`, `NULL`, `n/a`, `null` in an optional field",
    "formula": "a cell starting with `=`, `+` or `@` (`=HYPERLINK(...)`, `=1+2`, `@calc`, ...)",
    "embedded_comma": "quoted comma in LastName: `\"Smith, Jr.\"`",
    "bad_type": "unmapped DonorType `XXX`",
    "embedded_newline": "Address2 with a line break inside quotes",
}
_GIFT_LABELS = {
    "dup_gift_id": "GiftID of another row",
    "missing_donor": "empty DonorID",
    "refund_parens": "refund as `(25.00)` (or `-25.00`)",
    "zero_amount": "`0`, `0.00`, `$0.00`",
    "nonnumeric_amount": "`abc`, `N/A`, `TBD`, `see memo`",
    "decimal_comma": "`25,00`, `1.234,50` (decimal comma in a dot file)",
    "sci_amount": "`1e3`, `2.5e2`, `1E2`",
    "three_decimals": "more than 2 decimals: `12.345`",
    "impossible_date": "`02/30/2022`, `13/01/2021`, `00/15/2020`",
    "future_date": "after 2026-11-01, e.g. `03/01/2027`",
    "blank_date": "empty GiftDate",
    "date_variant": "`3/5/2024` or `2024-03-05` instead of MM/DD/YYYY",
    "unmapped_paymethod": "`??`, `PAYPAL`, `VENMO`, `WIRE`, `DAF`",
    "bad_split": "Fund2Amount greater than Amount (designations do not sum)",
    "whitespace": "`\" 25.00 \"`, `\"  John\"`, `\"GEN \"`, `\" CC\"`",
}
_DROP_LABELS = {
    "bad_email": "`jane@example`, `jane@@example.org`, `jane doe@example.org`",
    "negative_amount": "`-25.00`",
    "dup_transaction_id": "transaction_id of another row of the same file",
}


def _contact_facts(path: Path) -> dict[str, int]:
    rows = _read_back(path, "cp1252")
    raw = path.read_bytes()
    fields = [v for row in rows for v in row.values()]
    ids = [r["DonorID"] for r in rows]
    return {
        "rows": len(rows),
        "bytes": len(raw),
        "crlf_lines": raw.count(b"\r\n"),
        "dup_ids": _dups(ids)[0],
        "dup_id_rows": _dups(ids)[1],
        "orgs": sum(r["IsOrg"] == "Y" for r in rows),
        "nameless_individuals": sum(
            r["IsOrg"] == "N" and not r["FirstName"].strip() and not r["LastName"].strip()
            for r in rows
        ),
        "non_ascii_rows": sum(any(ord(ch) > 127 for v in r.values() for ch in v) for r in rows),
        "curly_apostrophe_0x92": raw.count(b"\x92"),
        "leading_zero_zips": sum(r["Zip"].startswith("0") for r in rows),
        "four_digit_zips": sum(len(r["Zip"]) == 4 and r["Zip"].isdigit() for r in rows),
        "null_markers": sum(v in NULL_MARKERS for v in fields),
        "formula_cells": sum(
            v[:1] in ("=", "@") or (v[:1] == "+" and not v.startswith("+1 ")) for v in fields
        ),
        "plus_phones": sum(r["Phone"].startswith("+1 ") for r in rows),
        "cells_with_comma": sum("," in v for v in fields),
        "cells_with_newline": sum("\n" in v for v in fields),
        "padded_cells": sum(v != v.strip() or "  " in v for v in fields),
        "canada": sum(r["Country"] in ("Canada", "CA") for r in rows),
        "uk": sum(r["Country"] == "United Kingdom" for r in rows),
        "blank_country": sum(not r["Country"] for r in rows),
        "xxx_type": sum(r["DonorType"] == "XXX" for r in rows),
    }


def _gift_facts(path: Path, contact_ids: set[str]) -> dict[str, int]:
    raw = path.read_bytes()
    rows = _read_back(path, "utf-8-sig")
    ids = [r["GiftID"] for r in rows]
    return {
        "rows": len(rows),
        "bytes": len(raw),
        "bom": int(raw.startswith(b"\xef\xbb\xbf")),
        "crlf_lines": raw.count(b"\r\n"),
        "dup_gift_ids": _dups(ids)[0],
        "missing_donor": sum(not r["DonorID"] for r in rows),
        "unknown_donor": sum(bool(r["DonorID"]) and r["DonorID"] not in contact_ids
                             for r in rows),
        "splits": sum(bool(r["Fund2"]) for r in rows),
        "checks": sum(r["PayMethod"].strip() == "CHK" for r in rows),
        "check_numbers": sum(bool(r["CheckNo"]) for r in rows),
        "blank_currency": sum(not r["Currency"] for r in rows),
        "cad": sum(r["Currency"] == "CAD" for r in rows),
        "memos": sum(bool(r["Memo"]) for r in rows),
        "memos_with_comma_or_quote": sum(("," in r["Memo"]) or ('"' in r["Memo"]) for r in rows),
        "dollar_amounts": sum(r["Amount"].startswith("$") for r in rows),
        "anonymous": sum(r["Anonymous"] == "Y" for r in rows),
    }


def _drop_facts(path: Path) -> dict[str, int]:
    raw = path.read_bytes()
    rows = _read_back(path, "utf-8")
    return {
        "rows": len(rows),
        "bytes": len(raw),
        "crlf": raw.count(b"\r\n"),
        "known_donors": sum(r["donor_ref"].startswith("D") for r in rows),
        "dup_txn": _dups([r["transaction_id"] for r in rows])[0],
        "negative": sum(r["amount"].startswith("-") for r in rows),
    }


def _kv(facts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in facts.items())


def make_samples(out: Path = SAMPLE_DIR, verbose: bool = True) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    dirt: dict[str, Counter[str]] = {"contacts": Counter(), "gifts": Counter(), "drops": Counter()}

    def count(kind: str) -> Callable[[pl.DataFrame], None]:
        def _count(df: pl.DataFrame) -> None:
            dirt[kind].update(v for v in df["_dirt"].to_list() if v)
        return _count

    contacts_path = out / "legacy_contacts.csv"
    gifts_path = out / "legacy_gifts.csv"
    write_contacts(contacts_path, SAMPLE_CONTACTS, SAMPLE_SEED, on_chunk=count("contacts"))
    write_gifts(gifts_path, SAMPLE_GIFTS, SAMPLE_CONTACTS, SAMPLE_SEED, on_chunk=count("gifts"))
    drops = write_drops(out / "drops", SAMPLE_DROP_FILES, SAMPLE_DROP_ROWS, SAMPLE_DROP_START,
                        SAMPLE_CONTACTS, SAMPLE_SEED, on_chunk=count("drops"))
    cf = _contact_facts(contacts_path)
    contact_ids = {r["DonorID"] for r in _read_back(contacts_path, "cp1252")}
    gf = _gift_facts(gifts_path, contact_ids)
    dfs = {p.name: _drop_facts(p) for p in drops}
    readme = _readme(cf, gf, dfs, dirt)
    (out / "README.md").write_text(readme, encoding="utf-8", newline="\n")
    if verbose:
        print(f"{contacts_path.relative_to(ROOT)}: {_kv(cf)}")
        print(f"  dirt: {dict(sorted(dirt['contacts'].items()))}")
        print(f"{gifts_path.relative_to(ROOT)}: {_kv(gf)}")
        print(f"  dirt: {dict(sorted(dirt['gifts'].items()))}")
        for name, f in dfs.items():
            print(f"sample_data/drops/{name}: {_kv(f)}")
        print(f"  dirt (all drops): {dict(sorted(dirt['drops'].items()))}")
    return {"contacts": cf, "gifts": gf, "drops": dfs, "dirt": dirt}


def _readme(
    cf: dict[str, int], gf: dict[str, int], dfs: dict[str, dict[str, int]],
    dirt: dict[str, Counter[str]],
) -> str:
    drop_rows = "\n".join(
        f"| `drops/{name}` | {f['rows']} | {f['known_donors']} | {f['negative']} | {f['dup_txn']} |"
        for name, f in dfs.items()
    )
    return f"""# sample_data

Small, synthetic, deliberately dirty donor exports for the demo, the tests and the docs.
**Generated, do not edit by hand:** `python bench/generate.py samples` rewrites every file here
(this README included) byte for byte; the counts below are measured by that command (the
generator tags each dirty row with its kind; the file facts are re-read from the written files).
All people, addresses, phone numbers and e-mails (only `example.org/.com/.net`) are made up.
Seed {SAMPLE_SEED}, dirt share 0.05 (about 5% of rows carry one kind of dirt).

## `legacy_contacts.csv`: legacy CRM contact export

{cf['rows']} contacts, {cf['bytes']:,} bytes. **cp1252** (Windows-1252, not UTF-8), **CRLF**
line ends, comma-delimited, `"` quotes only where needed, header row:

    {",".join(CONTACT_COLUMNS)}

- `DonorID` `D000001`..: unique except the `dup_id` rows ({cf['dup_ids']} ids occur twice).
- `IsOrg` `Y`/`N` ({cf['orgs']} organizations, their OrgName like "Grace Community Church",
  "Smith Family Foundation", "Jones Holdings, LLC"; First/Last usually empty).
  `DonorType` `IND` / `ORG` / `FDN` / `CHU`, and {cf['xxx_type']} unmapped `XXX`.
- `Email` mostly `first.last@example.org`-style; `Phone` as `(201) 734-0134`, `201.734.0134`,
  `2017340134`, `+1 201 734 0134` ({cf['plus_phones']} start with `+1 `, a legitimate `+`),
  `201-734-0134`, or blank.
- `Zip`: 5-digit, some ZIP+4; {cf['leading_zero_zips']} start with `0` (NJ/MA/CT/RI/NH/ME/VT),
  {cf['four_digit_zips']} lost that zero (`7001`). {cf['canada']} Canadian rows (`Canada`/`CA`,
  postal code `M5V 1A2`, province in State, note `CA` also being California's State code),
  {cf['uk']} `United Kingdom`, {cf['blank_country']} blank Country; US rows say `USA`,
  `United States`, `US`, `U.S.` or nothing.
- `Tags` pipe-separated (`Major Donor|Volunteer`), `Birthdate` MM/DD/YYYY or blank, `Created`
  YYYY-MM-DD.

Measured: {cf['non_ascii_rows']} rows with non-ASCII characters ({cf['curly_apostrophe_0x92']}
bytes 0x92, the curly apostrophe of O’Brien), {cf['null_markers']} null-marker cells,
{cf['formula_cells']} formula-like cells (`=`/`+`/`@` start, `+1 ` phones not counted),
{cf['cells_with_comma']} cells with a comma, {cf['cells_with_newline']} with an embedded line
break, {cf['padded_cells']} with leading/trailing or double spaces,
{cf['nameless_individuals']} individuals without any name.

{_fmt_counts(dirt['contacts'], _CONTACT_LABELS)}

Read it with `encoding="cp1252"` (Python) — polars reads only UTF-8, and
`encoding="utf8-lossy"` turns every accent into U+FFFD.

## `legacy_gifts.csv`: legacy CRM gift export

{gf['rows']} gifts, {gf['bytes']:,} bytes. **UTF-8 with BOM** (Excel style), **CRLF**, comma,
header row:

    {",".join(GIFT_COLUMNS)}

- `GiftID` `G0000001`..; `DonorID` references `legacy_contacts.csv` (DonorFirst/DonorLast/
  DonorEmail copied from that contact most of the time; organizations have the OrgName in
  DonorLast). Every non-empty DonorID is one of the contacts file ({gf['unknown_donor']}
  unknown); a gift of a contact whose id is duplicated carries that duplicated id.
- `GiftDate` MM/DD/YYYY, 2019-01-01..2026-10-31 when clean. `Amount` as `25`, `25.00`,
  `100.5`, `$50`, `$1,234.50` ({gf['dollar_amounts']} with `$`). `PayMethod` `CC`, `CHK`
  ({gf['checks']}, {gf['check_numbers']} with a CheckNo), `EFT`, `ACH`, `CASH`, `STK`.
  `Currency` `USD`, {gf['cad']} `CAD`, {gf['blank_currency']} blank (= USD).
  `Fund` `GEN`, `BLDG`, `SCHOL`, `MISSIONS`, `YOUTH`, `BENEV`, `RELIEF`.
- {gf['splits']} split gifts: `Fund2` a second fund and `Fund2Amount` the part of Amount
  designated to it (the rest goes to Fund). `Segment` like `2024-EOY-MAIL`. `Memo`
  ({gf['memos']}, {gf['memos_with_comma_or_quote']} with commas or quotes). `Anonymous` Y/N
  ({gf['anonymous']} Y).

Measured: {gf['dup_gift_ids']} GiftIDs occur twice, {gf['missing_donor']} gifts without DonorID.

{_fmt_counts(dirt['gifts'], _GIFT_LABELS)}

## `drops/gifts_YYYY-MM-DD.csv`: nightly drops of the online giving platform

UTF-8 without BOM, **LF** line ends, comma, header row:

    {",".join(DROP_COLUMNS)}

`transaction_id` like `ch_3Fq9...`, `donor_ref` the CRM DonorID (`D000123`) for donors the
platform got from the CRM, its own id (`GP0012345`) for new donors, `amount` plain `25.00`,
`currency` `USD`/`CAD`, `created_at` ISO 8601 UTC (`2026-11-18T14:03:12Z`, the file's day, in
time order), `method` `card`/`ach`/`paypal`, `fund` the platform's names (`General Fund`,
`Building Fund`, `Missions`, `Scholarship Fund`, `Youth Ministry`), not the CRM fund codes.

| file | rows | donor_ref a CRM DonorID | negative amounts | duplicated transaction_ids |
| --- | ---: | ---: | ---: | ---: |
{drop_rows}

{_fmt_counts(dirt['drops'], _DROP_LABELS)}

## Bigger files

    python bench/generate.py contacts --rows 1000000 --out bench/data/contacts_1m.csv
    python bench/generate.py gifts --rows 1000000 --contacts 1000000 --out bench/data/gifts_1m.csv
    python bench/generate.py drops --files 7 --rows 5000 --out-dir bench/data/drops

Same seed, same bytes; `--seed`, `--dirt`, `--encoding` change them.
"""


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _parse_date(text: str) -> date:
    return date.fromisoformat(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser, encoding: str | None) -> None:
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--dirt", type=float, default=0.05, help="share of dirty rows (0..1)")
        if encoding:
            p.add_argument("--encoding", choices=ENCODINGS, default=encoding)
            p.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK)

    pc = sp.add_parser("contacts", help="legacy CRM contacts export")
    pc.add_argument("--rows", type=int, required=True)
    pc.add_argument("--out", type=Path, required=True)
    common(pc, "cp1252")
    pg = sp.add_parser("gifts", help="legacy CRM gifts export")
    pg.add_argument("--rows", type=int, required=True)
    pg.add_argument("--contacts", type=int, required=True, help="number of contacts referenced")
    pg.add_argument("--out", type=Path, required=True)
    pg.add_argument("--contacts-seed", type=int, default=None,
                    help="seed of the contacts file (default --seed)")
    pg.add_argument("--contacts-dirt", type=float, default=None,
                    help="dirt of the contacts file (default --dirt)")
    common(pg, "utf-8-sig")
    pd = sp.add_parser("drops", help="nightly giving-platform drop files")
    pd.add_argument("--files", type=int, required=True)
    pd.add_argument("--rows", type=int, required=True)
    pd.add_argument("--out-dir", type=Path, required=True)
    pd.add_argument("--start", type=_parse_date, default=SAMPLE_DROP_START)
    pd.add_argument("--contacts", type=int, default=SAMPLE_CONTACTS)
    pd.add_argument("--contacts-seed", type=int, default=None)
    pd.add_argument("--contacts-dirt", type=float, default=None)
    common(pd, None)
    sp.add_parser("samples", help="regenerate sample_data/ (files and README)")
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    if a.cmd == "contacts":
        n = write_contacts(a.out, a.rows, a.seed, a.dirt, a.encoding, a.chunk_rows)
        what = f"{a.out}: {n:,} contacts"
    elif a.cmd == "gifts":
        n = write_gifts(a.out, a.rows, a.contacts, a.seed, a.dirt, a.encoding, a.chunk_rows,
                        contacts_seed=a.contacts_seed, contacts_dirt=a.contacts_dirt)
        what = f"{a.out}: {n:,} gifts"
    elif a.cmd == "drops":
        paths = write_drops(a.out_dir, a.files, a.rows, a.start, a.contacts, a.seed, a.dirt,
                            contacts_seed=a.contacts_seed, contacts_dirt=a.contacts_dirt)
        what = f"{a.out_dir}: {len(paths)} files of {a.rows:,} rows"
    else:
        make_samples()
        what = "sample_data/"
    print(f"wrote {what} in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
