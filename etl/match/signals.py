"""What each valid row offers to match on (its reference, email and a gift's contact.id), read
from the payloads with polars, and the names of the signals that find a contact."""

from __future__ import annotations

import polars as pl

SIGNALS = ("id", "reference", "email", "reference_in_run", "email_in_run")


def signal_column(signal: str) -> str:
    """The signals frame's column holding `signal`'s value ("reference" -> _ref)."""
    return "_ref" if signal == "reference" else "_email"


def row_signals(payloads: pl.DataFrame, target: str) -> pl.DataFrame:
    """Per valid row: _key, _ref, _email (trimmed, lower-cased) and _cid (a gift's contact.id)."""
    gift = target == "gift_transaction"
    p = pl.col("_payload")
    prefix = "$.contact." if gift else "$."
    email = p.str.json_path_match(prefix + "email").str.strip_chars().str.to_lowercase()
    cid = (p.str.json_path_match("$.contact.id").str.strip_chars().cast(pl.Int64, strict=False)
           if gift else pl.lit(None, pl.Int64))
    return payloads.select(
        "_source_file", "_record", "_key", "_payload",
        p.str.json_path_match(prefix + "referenceId").alias("_ref"),
        pl.when(email.str.contains("@")).then(email).otherwise(None).alias("_email"),
        cid.alias("_cid"))
