"""Local matching with polars joins, no Python per row: each row's cached contact and the signal
that found it, whether that is proof of a new donor or no proof at all, whether a matched
contact's fields changed, and which rows the policy keeps back.

`_outcome` per row: "existing" (a cached contact names the row's reference or email, or an
earlier row of the run carries it), "new" (for every signal of `match.by` the row carries, the
cache proves the value absent: a complete read of that signal, or a Find that answered 404), or
"unknown" (no such proof: an incomplete or missing read)."""

from __future__ import annotations

from typing import Any

import polars as pl

from etl.match.cache import Cache
from etl.match.signals import signal_column
from etl.spec.parse import LoadedSpec
from etl.targets import get_target


def match_rows(signals: pl.DataFrame, cache: Cache, loaded: LoadedSpec) -> pl.DataFrame:
    """Adds _contact_id (the cached contact), _signal (see SIGNALS, null = not found),
    _existing and _outcome (existing / new / unknown)."""
    spec = loaded.spec
    assert spec.match is not None
    by, policy = list(spec.match.by), spec.match.policy
    contacts = spec.target == "contact_transaction"
    refs, emails, ids = cache.frames(spec.keys.source)
    absent_refs, absent_emails = cache.absent(spec.keys.source)
    state = cache.state()
    proven = state.proven if state is not None else frozenset()
    frame = (signals.with_row_index("_i")
             .join(refs, on="_ref", how="left", maintain_order="left")
             .join(emails, on="_email", how="left", maintain_order="left")
             .join(absent_refs, on="_ref", how="left", maintain_order="left")
             .join(absent_emails, on="_email", how="left", maintain_order="left")
             .join(ids.with_columns(pl.lit(True).alias("_id_known")), on="_cid", how="left",
                   maintain_order="left"))
    order = [("id", pl.col("_cid"))] + [(s, pl.col(f"_by_{s}")) for s in by]
    contact_id = pl.coalesce([e for _, e in order])
    signal: Any = pl.lit(None, pl.String)
    for name, expr in reversed(order):
        signal = pl.when(expr.is_not_null()).then(pl.lit(name)).otherwise(signal)
    frame = frame.with_columns(contact_id.alias("_contact_id"), signal.alias("_signal"))
    # A value seen on an earlier row that reaches the nightly batch and indexes its contact:
    # every sent contact row (merged or created), but only rows that create a contact for gifts
    # (gifts never modify an existing contact), and never a row the skip policy keeps back.
    everything = contacts and policy != "skip"
    scope = pl.lit(True) if everything else pl.col("_contact_id").is_null()
    for s in by:
        column = pl.when(scope).then(pl.col(signal_column(s)))
        earlier = column.is_not_null() & (pl.int_range(pl.len()).over(column) > 0)
        frame = frame.with_columns(
            pl.when(pl.col("_signal").is_null() & earlier).then(pl.lit(f"{s}_in_run"))
            .otherwise(pl.col("_signal")).alias("_signal"))
    # absence is proven per signal: a complete read of it, or a 404 for this very value
    absent = [pl.col(signal_column(s)).is_null() | pl.lit(s in proven)
              | pl.col(f"_absent_{s}").fill_null(False) for s in by]
    existing = pl.col("_signal").is_not_null()
    outcome = (pl.when(existing).then(pl.lit("existing"))
               .when(pl.all_horizontal(absent)).then(pl.lit("new"))
               .otherwise(pl.lit("unknown")))
    return (frame.with_columns(existing.alias("_existing"), outcome.alias("_outcome"))
            .drop("_absent_reference", "_absent_email").sort("_i"))


def _path(field_name: str) -> str | None:
    parts = field_name.split(".")
    if any("'" in part or "]" in part for part in parts):
        return None
    return "$" + "".join(f"['{part}']" for part in parts)


def changed_rows(matched: pl.DataFrame, cache: Cache, loaded: LoadedSpec) -> pl.DataFrame:
    """Adds _changed for contact rows matched in the cache: any mapped field whose value differs
    from the cached contact's (an email counts as known when the contact has it at all).
    Fields a record lacks count as changed, so real CRM+ records (nested) are sent."""
    spec = loaded.spec
    target = get_target(spec.target)
    ids = matched.select(pl.col("_contact_id").drop_nulls().unique())["_contact_id"].to_list()
    frame = matched.join(cache.records(ids), on="_contact_id", how="left", maintain_order="left")
    known = cache.emails_of(ids).with_columns(pl.lit(True).alias("_email_known"))
    frame = frame.join(known, on=["_email", "_contact_id"], how="left", maintain_order="left")
    conds = []
    for name in spec.mappings:
        if name in (target.source_field, target.id_field):
            continue
        path = _path(name)
        if path is None:  # a name JSONPath cannot spell: count it as changed (send)
            conds.append(pl.lit(True))
            continue
        new = pl.col("_payload").str.json_path_match(path)
        if name == "email":
            conds.append(new.is_not_null() & pl.col("_email_known").is_null())
        else:
            old = pl.col("_crm_record").str.json_path_match(path)
            conds.append(new.is_not_null() & (old.is_null() | (new != old)))
    changed = pl.any_horizontal(conds) if conds else pl.lit(False)
    return frame.with_columns(
        pl.when(pl.col("_contact_id").is_null()).then(pl.lit(True))
        .otherwise(changed.fill_null(True)).alias("_changed"))


def skip_expr(frame: pl.DataFrame, policy: str) -> pl.Expr:
    """Rows the policy keeps back: contacts found in the cache (skip), and unchanged (changed).
    Only a cached contact is a reason: an unknown or in-run row is always sent."""
    found = pl.col("_contact_id").is_not_null()
    if policy == "skip":
        return found
    if policy == "changed" and "_changed" in frame.columns:
        return found & ~pl.col("_changed")
    return pl.lit(False)


def matched_rows(signals: pl.DataFrame, cache: Cache, loaded: LoadedSpec) -> pl.DataFrame:
    """match_rows, plus _changed when the policy is `changed` (contacts)."""
    matched = match_rows(signals, cache, loaded)
    spec = loaded.spec
    assert spec.match is not None
    if spec.match.policy == "changed" and spec.target == "contact_transaction":
        matched = changed_rows(matched, cache, loaded)
    return matched
