"""Row planning for `etl run`: every source row classified against what earlier runs did with its
idempotency key (send, already accepted, conflict, in doubt, rejected), and the batches to send.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from etl.load.ledger import KeyState
from etl.load.sender import Batch, Item
from etl.prepare.mapping import key_expr
from etl.prepare.result import ValidationResult
from etl.spec.parse import LoadedSpec


@dataclass
class Plan:
    """Every source row of the run in source order, with what to do with it.

    `rows` are ledger rows (source_file, record, key, payload_hash, status, reason, error_code,
    error_details, amount_cents, currency); `sends` the indices of rows to send."""

    rows: list[tuple[Any, ...]]
    keys: list[str]
    payloads: list[str]
    cents: list[int | None]
    sends: list[int]

    def sends_by_file(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i in self.sends:
            out.setdefault(self.rows[i][0], []).append(i)
        return out


def _valid_frame(result: ValidationResult, gift: bool) -> pl.DataFrame:
    frame = result.payloads
    if gift:
        # exact: the payload's amount text as a Decimal, never through a float
        amount = pl.col("_payload").str.json_path_match("$.amount").cast(pl.Decimal(20, 2))
        money = [(amount * 100).cast(pl.Int64).alias("_cents"),
                 pl.col("_payload").str.json_path_match("$.currencyCode").alias("_currency")]
    else:
        money = [pl.lit(None, pl.Int64).alias("_cents"), pl.lit(None, pl.String).alias("_currency")]
    return frame.with_columns(*money)


def _rejected_frame(result: ValidationResult, loaded: LoadedSpec) -> pl.DataFrame:
    spec = loaded.spec
    rejects = result.rejects.select(pl.exclude("_field", "_rule", "_value", "_error"))
    try:  # the id of a rejected row, when its columns allow (joins the ledger to the source)
        ident = rejects.select(key_expr(spec.keys.id).cast(pl.String).alias("_id"))["_id"]
    except pl.exceptions.PolarsError:  # a row too broken for an id keeps a null key
        ident = pl.Series("_id", [None] * rejects.height, dtype=pl.String)
    fails = result.failures.group_by("_source_file", "_record", maintain_order=True).agg(
        pl.col("rule").str.join(" | ").alias("_code"),
        pl.struct(pl.col("field"), pl.col("rule").alias("code"), pl.col("error").alias("message"))
        .struct.json_encode().str.join(",").alias("_details"))
    keyed = rejects.select("_source_file", "_record").with_columns(
        (pl.lit(f"{spec.target}:{spec.keys.source}:") + ident).alias("_key"))
    return keyed.join(fails, on=["_source_file", "_record"], how="left").with_columns(
        ("[" + pl.col("_details") + "]").alias("_details"), pl.lit(True).alias("_invalid"))


def plan_rows(result: ValidationResult, loaded: LoadedSpec, prior: dict[str, KeyState],
              policy: str) -> Plan:
    """Classify every source row against what earlier runs did with its key."""
    if result.payloads_sampled or result.rejects_sampled:  # a dry run's sample, not every row
        raise ValueError("a run is planned from every row: validate without payload or reject "
                         "sinks (dry_run(..., keep_payloads=True))")
    gift = loaded.spec.target == "gift_transaction"
    both = pl.concat([_valid_frame(result, gift), _rejected_frame(result, loaded)],
                     how="diagonal_relaxed")
    order = {f.path: i for i, f in enumerate(result.files)}
    both = both.with_columns(pl.col("_source_file").replace_strict(
        order, default=len(order), return_dtype=pl.Int64).alias("_fi")).sort("_fi", "_record")
    plan = Plan([], [], [], [], [])
    seen: set[str] = set()
    cols = [both[c].to_list() for c in ("_source_file", "_record", "_key", "_payload", "_cents",
                                         "_currency", "_invalid", "_code", "_details")]
    for i, (file, rec, key, payload, cents, cur, invalid, code, details) in enumerate(zip(
            *cols, strict=True)):
        plan.keys.append(key)
        plan.payloads.append(payload)
        plan.cents.append(cents)
        if invalid:
            plan.rows.append((file, rec, key, None, "rejected", "invalid", code, details, None,
                              None))
            continue
        digest = hashlib.sha256(payload.encode()).hexdigest()
        status, reason, code, details = "pending", "new", None, None
        state = prior.get(key)
        if key in seen:
            status, code = "rejected", "DUPLICATE_KEY_IN_RUN"
        elif state is not None and state.doubt_hash is not None:
            if policy == "park":
                status, reason, code = "in_doubt", "parked", "IN_DOUBT"
            else:
                reason = "resend_in_doubt"
        elif state is not None and state.accepted_run is not None:
            if state.accepted_hash is None:  # found in CRM+ by `etl run --recover-ledger`
                status, reason = "already_accepted", f"in CRM+ (ledger recovery, run " \
                    f"{state.accepted_run})"
            elif state.accepted_hash == digest:
                status, reason = "already_accepted", f"accepted in run {state.accepted_run}"
            elif gift:
                status, reason, code = "conflict", "changed", "CHANGED_AFTER_ACCEPT"
                details = (f"accepted in run {state.accepted_run} with another payload; "
                           "gifts are never re-sent: reverse or correct it in CRM+")
            else:
                reason = "update"
        seen.add(key)
        if status == "pending":
            plan.sends.append(i)
        plan.rows.append((file, rec, key, digest, status, reason, code, details, cents, cur))
    return plan


def batch_name(pipeline: str, run_id: int) -> str:
    """The `batch` a run's gifts carry in CRM+: reconciliation selects them by it."""
    return f"{pipeline}-run{run_id}"


def import_name(pipeline: str, source_file: str, run_id: int) -> str:
    """The `importName` a run's gifts from one file arrive under in CRM+'s import tool."""
    return f"{pipeline}: {Path(source_file).name} (run {run_id})"


def batches(plan: Plan, loaded: LoadedSpec, run_id: int, first_id: int) -> list[Batch]:
    spec = loaded.spec
    size = spec.load.batch_size
    out: list[Batch] = []
    for file, rows in plan.sends_by_file().items():
        envelope: dict[str, object] = {}
        if spec.target == "gift_transaction":
            envelope = {"createImport": True, "batch": batch_name(spec.name, run_id),
                        "importName": import_name(spec.name, file, run_id),
                        "batchTotal": 0}
        for start in range(0, len(rows), size):
            items = [Item(first_id + i, plan.keys[i], plan.payloads[i], plan.cents[i])
                     for i in rows[start:start + size]]
            out.append(Batch(f"r{run_id}-b{len(out) + 1:06d}", items, envelope))
    return out
