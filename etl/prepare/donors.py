"""Possible duplicate donors within a file: different donor ids with the same email, or the
same first name, last name and postal code. Suggestions for a person to review (as the CRM+
docs advise for anything broader than an exact Find), never merged and never a reject.

The batches of a file are validated one at a time, so the check runs in two steps:
- each batch hands over, for its valid rows, hashes (key, donor id) and the row number (25
  bytes a row and signal, whatever the text), and the donor fields' values, which a file of
  more than one batch parks on disk (Arrow IPC in a temporary folder) as they come;
- at the end of the file, a polars group_by finds the keys held by more than one donor id,
  and only the rows of a bounded sample of those groups are read back from the parked
  values, to show them. The source file is never read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from etl.base.frames import is_repeated
from etl.base.spill import Spill
from etl.prepare import mapping
from etl.spec.parse import Spec
from etl.targets import get_target

SAMPLE_GROUPS = 20  # groups shown in the report
SAMPLE_DONORS = 5  # donors shown per group
KINDS = ("email", "name_postal")
# kind: the index in KINDS; each kind hashes with its own seed, so h_key alone tells keys apart
HASHES = {"kind": pl.UInt8, "h_key": pl.UInt64, "h_id": pl.UInt64, "_row": pl.Int64}


@dataclass(frozen=True)
class DonorFields:
    """The target fields that identify a donor: the id, and the matching signals."""

    id: str
    email: str | None
    first: str | None
    last: str | None
    postal: str | None

    def fields(self) -> list[str]:
        return [f for f in (self.id, self.email, self.first, self.last, self.postal) if f]


def donor_fields(spec: Spec) -> DonorFields | None:
    """Which mapped fields say who the donor is (None: no donor id, or no signal mapped)."""
    mapped = set(spec.mappings)
    if spec.target == "contact_transaction":
        ident, names = get_target(spec.target).id_field, ("email", "firstName", "lastName",
                                                          "postal")
    else:
        ident = next((f for f in ("contact.referenceId", "contact.id") if f in mapped), "")
        names = ("contact.email", "contact.firstname", "contact.lastname",
                 "contact.address.postal")
        if not ident:
            return None
    email, first, last, postal = (n if n in mapped else None for n in names)
    if email is None and None in (first, last, postal):
        return None
    return DonorFields(ident, email, first, last, postal)


def _text(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String).str.to_lowercase()


def _keys(donor: DonorFields) -> dict[str, pl.Expr]:
    """Each signal as one normalized text (null where the row lacks a part of it)."""
    keys: dict[str, pl.Expr] = {}
    if donor.email:
        keys["email"] = _text(donor.email)
    if donor.first and donor.last and donor.postal:
        # "07001-1234" and "07001" are one US postal code; spaces never tell two apart.
        postal = pl.col(donor.postal).cast(pl.String).str.replace_all(" ", "", literal=True)
        postal = postal.str.replace(r"^(\d{5})-\d{4}$", "$1")
        parts = [pl.col(donor.first), pl.col(donor.last), postal]
        keys["name_postal"] = pl.concat_str(
            [p.cast(pl.String) for p in parts], separator=mapping.SEP).str.to_lowercase()
    return keys


@dataclass(frozen=True)
class BatchDonors:
    """What one batch hands over: its donors' hashes, and its valid rows' donor fields
    (`_row`, `_record`, the fields), from which the sample's values are taken."""

    hashes: pl.DataFrame
    values: pl.DataFrame | None


def from_batch(out: pl.DataFrame, keep: pl.Series, donor: DonorFields | None) -> BatchDonors:
    """The donor hashes of a batch's valid rows and those rows' donor fields."""
    hashes = batch_hashes(out, keep, donor)
    if donor is None or not hashes.height:
        return BatchDonors(hashes, None)
    values = out.filter(keep & pl.col(donor.id).is_not_null()).select(
        "_row", "_record", *donor.fields())
    return BatchDonors(hashes, values)


def batch_hashes(out: pl.DataFrame, keep: pl.Series, donor: DonorFields | None) -> pl.DataFrame:
    """One batch's valid rows as (kind, key hash, donor id hash, row), a row per signal."""
    if donor is None:
        return pl.DataFrame(schema=HASHES)
    # Select the few columns before filtering: `out` holds every mapped field. Mapped text is
    # already stripped (and ids as keys are), so case is all that is left to fold.
    ident = pl.col(donor.id).cast(pl.String).str.to_lowercase()
    frame = out.select("_row", ident.hash().alias("h_id"), ident.is_null().alias("_no_id"),
                       *[e.alias(k) for k, e in _keys(donor).items()]).filter(
        keep & ~pl.col("_no_id"))
    parts = [
        frame.filter(pl.col(kind).is_not_null() & (pl.col(kind) != "")).select(
            pl.lit(i, pl.UInt8).alias("kind"), pl.col(kind).hash(seed=i).alias("h_key"),
            "h_id", "_row")
        for i, kind in enumerate(KINDS) if kind in frame.columns
    ]
    return pl.concat(parts) if parts else pl.DataFrame(schema=HASHES)


def reduce(hashes: pl.DataFrame) -> pl.DataFrame:
    """One row per (key, donor id): its first row (rows are in file order)."""
    return hashes.unique(subset=["h_key", "h_id"], keep="first", maintain_order=True)


def groups(hashes: pl.DataFrame) -> pl.DataFrame:
    """Keys held by more than one donor id: kind, h_key, donors (count), rows (first row of
    each donor, in file order), first. A hash pass finds the repeated keys first, so only
    their rows are grouped."""
    repeated = hashes.filter(is_repeated(pl.col("h_key")))
    return (
        reduce(repeated)
        .group_by("kind", "h_key")
        .agg(pl.len().alias("donors"), pl.col("_row").sort().alias("rows"))
        .filter(pl.col("donors") > 1)
        .with_columns(pl.col("rows").list.first().alias("first"))
        .sort("first", "kind")
    )


class FileDonors:
    """A file's donor hashes, batch by batch: parked on disk partitioned by key hash when the
    file is big (`etl.base.spill`), so that only one partition is grouped at a time; and its
    valid rows' donor fields, parked on disk as they come unless the file is one batch
    (memory stays flat: the sample's few rows are read back at the end)."""

    def __init__(self, rows: int, spill_rows: int, part_rows: int, batch_rows: int) -> None:
        self.spill = Spill(1 if rows <= spill_rows else -(-rows // part_rows))
        # The file's only batch keeps its fields in memory (its text is alive anyway).
        self.fields = Spill(1, on_disk=rows > batch_rows)

    def add(self, batch: BatchDonors) -> None:
        if batch.hashes.height:  # on disk, one row per key and donor of the batch
            hashes = batch.hashes if self.spill.parts_count == 1 else reduce(batch.hashes)
            self.spill.add(hashes, pl.col("h_key"))
        if batch.values is not None and batch.values.height:
            self.fields.add(batch.values)

    def values_of(self, rows: set[int]) -> pl.DataFrame | None:
        """The parked donor fields of `rows` (None: none were parked)."""
        parked = self.fields.scan()
        if parked is None:
            return None
        wanted = pl.Series(sorted(rows), dtype=pl.Int64).implode()
        return parked.filter(pl.col("_row").is_in(wanted)).collect()

    def groups(self) -> pl.DataFrame:
        found = [groups(part) for part in self.spill.parts()]
        if not found:
            return pl.DataFrame(schema={"kind": pl.UInt8, "donors": pl.UInt32})
        return pl.concat(found).sort("first", "kind")

    def close(self) -> None:
        self.spill.close()
        self.fields.close()


def file_block(collected: FileDonors, display: str, spec: Spec) -> dict[str, Any]:
    """The possible duplicates of one file: counts by signal and a bounded sample."""
    donor = donor_fields(spec)
    found = collected.groups() if donor is not None else pl.DataFrame(
        schema={"kind": pl.UInt8, "donors": pl.UInt32})
    counts = {k: {"groups": 0, "donors": 0} for k in KINDS}
    for kind, n, donors in found.group_by("kind").agg(pl.len(), pl.col("donors").sum()).rows():
        counts[KINDS[kind]] = {"groups": n, "donors": int(donors)}
    block: dict[str, Any] = {"groups": found.height, "by": counts, "sample": []}
    if donor is None or not found.height:
        return block
    sample = found.head(SAMPLE_GROUPS).with_columns(pl.col("rows").list.head(SAMPLE_DONORS))
    rows = {r for group in sample["rows"].to_list() for r in group}
    parked = collected.values_of(rows)
    values = {r["_row"]: r for r in parked.iter_rows(named=True)} if parked is not None else {}
    for kind, _, n, members, _ in sample.iter_rows():
        first = values.get(members[0], {})
        if KINDS[kind] == "email":
            shown = first.get(donor.email or "")
        else:
            name = f"{first.get(donor.first or '') or ''} {first.get(donor.last or '') or ''}"
            shown = f"{name.strip()}, {first.get(donor.postal or '') or ''}"
        block["sample"].append({
            "by": KINDS[kind],
            "value": shown,
            "donors": [{"id": values.get(r, {}).get(donor.id), "file": display,
                        "record": values.get(r, {}).get("_record")} for r in members],
            "more_donors": n - len(members),
        })
    return block


def combine(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's block (report.json `possible_duplicates`) from its files' blocks."""
    counts = {k: {"groups": 0, "donors": 0} for k in KINDS}
    for b in blocks:
        for k in KINDS:
            for part in ("groups", "donors"):
                counts[k][part] += b["by"][k][part]
    sample = [s for b in blocks for s in b["sample"]][:SAMPLE_GROUPS]
    total = sum(b["groups"] for b in blocks)
    return {
        "groups": total,
        "by": counts,
        "sample": sample,
        "sample_limit": SAMPLE_GROUPS,
        "note": "different donor ids with the same email, or the same first name, last name "
                "and postal code, in one file: review them before the run (CRM+ may merge "
                "them into one contact); the tool never merges them",
    }
