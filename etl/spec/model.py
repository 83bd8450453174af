"""The pipeline spec's data model: frozen pydantic objects, `extra="forbid"` everywhere, so a
typo'd key is an error, never ignored. Loading, line numbers and error messages:
`etl.spec.parse`."""

from __future__ import annotations

import codecs
import datetime as dt
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from etl import transforms


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Source(_Model):
    """Where the rows come from: one file or a glob; CSV options apply to CSV only."""

    path: str = Field(description="File path or glob, relative to the spec file's folder")
    format: Literal["csv", "parquet", "excel", "ndjson"] | None = Field(
        None, description="Default: from the extension (.parquet .pq, .xlsx .xlsm .xls, "
        ".ndjson .jsonl, looked for inside .gz/.zip; anything else is csv)")
    compression: Literal["gzip", "zip", "none"] | None = Field(
        None, description="Default: from the extension (.gz gzip, .zip zip). Files are "
        "decompressed only when the name or this says so")
    max_decompressed_mb: int = Field(
        2048, ge=1, description="Refuse a compressed file that expands beyond this (MiB)")
    max_compression_ratio: int = Field(
        200, ge=1, description="Refuse a compressed file that expands more than this many "
        "times its size (beyond 16 MiB): a gzip bomb, not an export")
    sheet: str | int | None = Field(
        None, description="Excel: the sheet's name, or its 0-based index (default: the first)")
    header_row: int = Field(
        1, ge=1, description="Excel: the spreadsheet row number (1-based, as Excel shows it) "
        "of the header; rows above it are skipped")
    encoding: str = Field("utf-8", description="utf-8, utf-8-sig, cp1252, latin-1, ...")
    delimiter: str = Field(",", min_length=1, max_length=1)
    quote_char: str | None = Field('"', description="null for no quoting")
    null_values: list[str] = Field(default_factory=lambda: ["", "N/A", "NULL"])
    null_values_ignore_case: bool = Field(
        False, description="Match null_values ignoring case (NULL, null and Null alike)")
    header: bool = Field(True, description="Does the first record name the columns?")
    columns: list[str] | None = Field(None, description="Column names when header is false")
    timezone: str | None = Field(
        None, description="Parquet datetimes with a time zone are dated in their own zone; "
        "name one (e.g. America/New_York) to date them there instead")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            info = codecs.lookup(v)
        except LookupError:
            raise ValueError(
                f"unknown encoding {v!r} (try utf-8, utf-8-sig, cp1252, latin-1)"
            ) from None
        # base64, rot13, zlib_codec, hex...: codecs, but bytes-to-bytes or text-to-text ones
        if not getattr(info, "_is_text_encoding", True):
            raise ValueError(
                f"{v!r} is a codec but not a text encoding (try utf-8, utf-8-sig, cp1252, latin-1)"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                zoneinfo.ZoneInfo(v)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r} (e.g. America/New_York, UTC)") from None
        return v

    @field_validator("quote_char")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        if v is not None and len(v) != 1:
            raise ValueError("quote_char must be one character (or null)")
        return v

    @model_validator(mode="after")
    def _columns_when_headerless(self) -> Source:
        if not self.header and not self.columns:
            raise ValueError("header: false needs `columns:` (the column names, in order)")
        if self.format not in (None, "excel") and (self.sheet is not None or self.header_row != 1):
            raise ValueError("sheet and header_row apply to Excel sources (format: excel)")
        if self.format in ("excel", "parquet") and self.compression not in (None, "none"):
            raise ValueError(f"compression applies to csv and ndjson sources, not {self.format}")
        return self


IdFrom = Annotated[str, Field(min_length=1)]


class KeyId(_Model):
    """How the row's id (referenceId / transactionId) is made: exactly one of the three."""

    column: str | None = None
    template: str | None = Field(None, description='e.g. "{DonorID}-{GiftDate}"')
    hash: list[IdFrom] | None = Field(None, description="sha256 of these columns, stable")

    @model_validator(mode="after")
    def _exactly_one(self) -> KeyId:
        given = [k for k in ("column", "template", "hash") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of column, template or hash")
        return self


class Keys(_Model):
    """The idempotency key: a constant source name plus a per-row id."""

    source: str = Field(min_length=1, description="referenceSource / transactionSource")
    id: KeyId
    duplicates: Literal["keep_first", "keep_last", "reject_all"] = "reject_all"


Scalar = str | int | float | bool


class Case(_Model):
    """One branch of a conditional mapping: when `column` matches, the value is `then`: a
    constant, or a mapping of its own (`{column: ..., transforms: [...]}`, `{template: ...}`)."""

    column: str
    equals: Scalar | None = None
    in_: list[str | int | float] | None = Field(None, alias="in")
    is_null: bool | None = None
    then: Scalar | Mapping | None = Field(
        description="A constant (null: no value), or a column, template or transform chain as "
        "a mapping: {column: Full Name, transforms: [trim]}")

    def columns(self) -> list[str]:
        """The tested column and what `then` reads."""
        return [self.column] + (self.then.columns() if isinstance(self.then, Mapping) else [])


TransformRef = str | dict[str, Any]


class Mapping(_Model):
    """How one target field is filled: from a column, a constant, a template or conditions."""

    column: str | None = None
    constant: str | int | float | bool | None = None
    template: str | None = None
    when: list[Case] | None = None
    else_: Scalar | Mapping | None = Field(
        None, alias="else", description="The value when no case matches: a constant or a mapping")
    transforms: list[TransformRef] = Field(default_factory=list)
    value_map: dict[str, str] | None = None
    unmapped: Literal["reject", "keep", "default", "null"] = "reject"
    default: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"column": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> Mapping:
        given = [
            k for k in ("column", "constant", "template", "when") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of column, constant, template or when (got {given or 'none'})"
            )
        if self.unmapped == "default" and self.default is None:
            raise ValueError("unmapped: default needs a `default:` value")
        if self.value_map is None and self.unmapped != "reject":
            raise ValueError("`unmapped` only applies with a value_map")
        if self.when is None and self.else_ is not None:
            raise ValueError("`else` only applies with `when`")
        for branch in [c.then for c in self.when or []] + [self.else_]:
            if isinstance(branch, Mapping) and branch.when is not None:
                raise ValueError("a `then` or `else` mapping cannot have its own `when`: "
                                 "list the combined conditions as cases of one `when`")
        return self

    def branches(self) -> list[Mapping]:
        """The `then` / `else` values that are mappings of their own (not constants)."""
        found = [c.then for c in self.when or []] + [self.else_]
        return [b for b in found if isinstance(b, Mapping)]

    def steps(self) -> list[tuple[str, dict[str, Any]]]:
        """The transform chain as (name, args) pairs."""
        out: list[tuple[str, dict[str, Any]]] = []
        for ref in self.transforms:
            if isinstance(ref, str):
                out.append((ref, {}))
            else:
                ((name, args),) = ref.items()
                out.append((name, dict(args or {})))
        return out

    def all_steps(self) -> list[tuple[tuple[str | int, ...], str, dict[str, Any]]]:
        """Every transform step of the mapping and of its `then` / `else` mappings, each with
        its place under the mapping (for error locations): (("transforms", 0), name, args)."""
        Place = tuple[str | int, ...]
        found: list[tuple[Place, str, dict[str, Any]]] = [
            (("transforms", i), name, args) for i, (name, args) in enumerate(self.steps())
        ]
        places: list[tuple[Place, Scalar | Mapping | None]] = [
            (("when", k, "then"), c.then) for k, c in enumerate(self.when or [])
        ] + [(("else",), self.else_)]
        for place, branch in places:
            if isinstance(branch, Mapping):
                found += [(place + sub, name, args) for sub, name, args in branch.all_steps()]
        return found

    def columns(self) -> list[str]:
        """Every source column this mapping reads."""
        cols: list[str] = []
        if self.column:
            cols.append(self.column)
        if self.template:
            cols += template_columns(self.template)
        for case in self.when or []:
            cols += case.columns()
        if isinstance(self.else_, Mapping):
            cols += self.else_.columns()
        for name, args in self.steps():
            for arg in transforms.COLUMN_ARGS.get(name, ()):
                value = args.get(arg)
                cols += [value] if isinstance(value, str) else list(value or [])
        return cols


Case.model_rebuild()


class Designation(_Model):
    """One designation of a gift: a project by code, name or id, and the amount to it."""

    code: Mapping | None = None
    name: Mapping | None = None
    id: Mapping | None = None
    amount: Mapping | None = Field(
        None, description="Omit on one designation: it gets the gift amount minus the others"
    )

    @model_validator(mode="after")
    def _one_project(self) -> Designation:
        if sum(x is not None for x in (self.code, self.name, self.id)) != 1:
            raise ValueError("give exactly one of code, name or id")
        return self


class FieldRules(_Model):
    """Declared checks on one target field (run by pandera, every failure collected)."""

    required: bool = False
    pattern: str | None = None
    one_of: list[str | int | float] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = Field(None, gt=0)
    unique: bool = False
    earliest: dt.date | None = Field(
        None, description="Date fields: the earliest date accepted (default 1900-01-01)")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
        return v


class Load(_Model):
    """Submission settings (used by `etl run`)."""

    batch_size: int = Field(100, ge=1, le=1000)
    requests_per_hour: int = Field(5000, ge=1)
    reserve_share: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of the hourly budget left to other integrations"
    )
    concurrency: int = Field(2, ge=1, le=32)
    timeout_seconds: float = Field(30.0, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    in_doubt: Literal["park", "resend"] | None = Field(
        None, description="Rows whose write may have reached CRM+ without an answer (a crash, "
        "a read timeout, a reset, a 5xx): park them for reconciliation and never re-send "
        "blindly (default for gifts), or resend (default for contacts: the Transaction merges "
        "by reference)"
    )
    max_wait_seconds: float = Field(
        900.0, gt=0, description="How long one request may wait on 429 / Retry-After in "
        "total before the run stops (429s are not failed attempts)"
    )
    ledger: str | None = Field(None, description="SQLite ledger path (default: beside the spec)")
    # The seed's direct path (etl/load/direct.py, docs/loader.md "Direct create")
    create: Literal["transaction", "direct"] = Field(
        "transaction", description="Contacts only. transaction: the Contact Batch/Transaction, "
        "matched and created by CRM+'s import (batch migrations); direct: per row Find by "
        "reference, then by email, then POST /api/Contact only when both miss, so the CRM+ id "
        "is known at once (2-3 requests a row: small drops)")
    on_email_match: Literal["associate", "skip", "create"] = Field(
        "skip", description="create: direct, when Find by email (not by reference) answers a "
        "contact: skip: record skipped_existing with its id for a person to decide (the "
        "default: a shared email is often a spouse); associate: treat it as this donor "
        "(confirmed with its id, nothing created, the reference is not stored on it); "
        "create: a different donor, POST a new contact")
    direct_settle_seconds: float = Field(
        600.0, ge=0, description="create: direct: a row whose POST went unanswered (a crash, a "
        "timeout, a 5xx) is created again only when Find by reference still finds nothing "
        "this long after that POST went out (a request may still be processed after the "
        "client gave up)")
    direct_max_rows: int = Field(
        1000, ge=1, description="create: direct refuses a run with more rows to create than "
        "this (2-3 requests a row: batch migrations belong on the Transaction path)")


class Output(_Model):
    """Where reports go."""

    dir: str | None = Field(None, description="Default: reports/<pipeline name>")
    payload_sample: int | None = Field(None, ge=0, description="Write only the first N payloads")
    csv_bom: bool = Field(
        True, description="Start rejects.csv with a UTF-8 byte-order mark, so that Excel "
        "opens accented names correctly; false for programs that do not expect one")


Signal = Literal["reference", "email"]
DEFAULT_SIGNALS: tuple[Signal, ...] = ("reference", "email")


class Match(_Model):
    """Pre-match (etl/match/, docs/prematch.md): what already exists in CRM+, predicted in the
    dry run from a local cache and applied by `etl run` as a policy."""

    method: Literal["bulk", "find"] = Field(
        "bulk", description="bulk: page Contact/Query/FullContact into a local cache (1,000 "
        "contacts a request); find: one Contact/Find per distinct reference / email")
    by: list[Signal] = Field(
        default_factory=lambda: list(DEFAULT_SIGNALS), min_length=1,
        description="Match signals, in order")
    policy: Literal["skip", "send", "changed"] = Field(
        "send", description="skip: do not send rows whose contact exists (contacts only); "
        "send: send them anyway (transactions merge); changed: send only rows that differ")
    max_requests: int = Field(
        2000, ge=1, description="Refuse a pre-match lookup that would cost more requests")

    @field_validator("by")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("list each signal once")
        return v


class Spec(_Model):
    """A pipeline: one feed described once."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    target: Literal["contact_transaction", "gift_transaction"]
    organization: str | None = Field(None, description="Refuse to write to any other organization")
    source: Source
    keys: Keys
    mappings: dict[str, Mapping] = Field(default_factory=dict)
    designations: list[Designation] = Field(default_factory=list)
    rules: dict[str, FieldRules] = Field(default_factory=dict)
    load: Load = Field(default_factory=Load)
    output: Output = Field(default_factory=Output)
    match: Match | None = Field(None, description="Pre-match against what CRM+ already holds")
    version: Literal[1] = 1

    def columns(self) -> list[str]:
        """Every source column the spec reads, in first-use order."""
        cols: list[str] = []
        ident = self.keys.id
        cols += [ident.column] if ident.column else []
        cols += template_columns(ident.template) if ident.template else []
        cols += ident.hash or []
        for m in self.mappings.values():
            cols += m.columns()
        for d in self.designations:
            for part in (d.code, d.name, d.id, d.amount):
                cols += part.columns() if part else []
        return list(dict.fromkeys(cols))


class LoadedSpec(BaseModel):
    """A validated spec plus where it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: Spec
    path: Path
    sha256: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent


_TEMPLATE_FIELD = re.compile(r"\{([^{}]+)\}")


def template_columns(template: str) -> list[str]:
    """Column names used in a `"{first} {last}"` template."""
    return _TEMPLATE_FIELD.findall(template)
