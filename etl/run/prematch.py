"""`etl run`'s side of the pre-match: refresh the cache, match the rows about to be sent and keep
back what `match.policy` says (ledger status `skipped_existing`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import polars as pl

from etl.base.errors import CredentialsRefused, TransientError
from etl.match.cache import Cache
from etl.match.dry_run import cache_info, prediction
from etl.match.fetch import refresh as refresh_cache
from etl.match.matching import matched_rows, skip_expr
from etl.match.reader import MatchRefused
from etl.match.signals import row_signals
from etl.report.write import DryRun, write_prematch
from etl.spec.parse import LoadedSpec

if TYPE_CHECKING:
    from etl.load.ledger import Ledger
    from etl.load.plan import Plan
    from etl.run.options import RunOptions

SKIPPED = "skipped_existing"  # the ledger status of a row the policy did not send
OK_STATUSES = (SKIPPED,)  # a run whose other rows are all accepted still exits 0


async def apply_policy(plan: Plan, dry: DryRun, loaded: LoadedSpec, ledger: Ledger, run_id: int,
                       first_id: int, options: RunOptions) -> dict[str, Any] | None:
    """`etl run`: refresh the cache, match the rows about to be sent, and keep back what the
    policy says (ledger status `skipped_existing`, the CRM+ contact id in `crm_id` when the
    ledger has it, and in the reason and details). Rewrites report.json / report.html with the
    fresh prediction. Errors (key refused, another organization, over max_requests, CRM+
    unreachable) close the run with that reason and are raised: nothing was sent."""
    spec = loaded.spec
    if spec.match is None:
        return None
    try:
        cache = Cache(ledger.db)
        sends = set(plan.sends)
        signals = row_signals(dry.result.payloads, spec.target)
        index: dict[str, int] = {}
        for i, k in enumerate(plan.keys):
            if k is not None:
                index.setdefault(k, i)
        signals = signals.with_columns(pl.Series(
            "_pending", [index.get(k, -1) in sends for k in signals["_key"].to_list()],
            dtype=pl.Boolean))
        per_hour = None if options.unlimited else (
            options.requests_per_hour or spec.load.requests_per_hour)
        # Find (the method, or a bulk read's fallback) asks only about rows about to be sent
        lookups = signals.filter("_pending")
        refresh = None
        if sends:  # a re-run with nothing to send reads nothing either (the cache as it is)
            refresh = await refresh_cache(
                loaded, cache, lookups, options.base_url, options.token, options.transport,
                options.notify, full=False, per_hour=per_hour,
                backoff_base=options.backoff_base, backoff_cap=options.backoff_cap)
    except (CredentialsRefused, TransientError, MatchRefused) as exc:
        ledger.finish_run(run_id, exc.exit_code, f"pre-match: {exc}", {})
        raise
    matched = matched_rows(signals, cache, loaded)
    keep = matched.filter(pl.col("_pending") & skip_expr(matched, spec.match.policy))
    skipped = _record_skips(plan, ledger, first_id, index, keep, spec.match.policy)
    block = prediction(matched, loaded, cache_info(cache, ledger.path), refresh)
    block["skipped_in_run"] = skipped
    write_prematch(dry, block)
    options.notify(
        f"pre-match: {block['rows']['existing']:,} of {block['rows']['checked']:,} valid rows "
        "exist in CRM+ (" + ", ".join(f"{k} {v:,}" for k, v in block["by_signal"].items())
        + f"); policy {spec.match.policy}: {skipped:,} not sent")
    return block


def _record_skips(plan: Plan, ledger: Ledger, first_id: int, index: dict[str, int],
                  keep: pl.DataFrame, policy: str) -> int:
    if keep.height == 0:
        return 0
    has_crm_id = any(r[1] == "crm_id" for r in ledger.db.execute("PRAGMA table_info(rows)"))
    updates = []
    drop = set()
    for key, cid, signal in keep.select("_key", "_contact_id", "_signal").iter_rows():
        i = index[key]
        drop.add(i)
        why = "unchanged" if policy == "changed" else "exists"
        reason = f"{why}: contact {cid} (by {signal})"
        details = json.dumps([{"field": "contact.id", "code": f"EXISTS_BY_{signal.upper()}",
                               "message": str(cid)}])
        updates.append((SKIPPED, reason, details, str(cid), first_id + i))
        row = plan.rows[i]
        plan.rows[i] = (*row[:4], SKIPPED, reason, None, details, *row[8:])
    sql = ("UPDATE rows SET status=?, reason=?, error_details=?, crm_id=? WHERE id=?"
           if has_crm_id else "UPDATE rows SET status=?, reason=?, error_details=? WHERE id=?")
    with ledger.tx():
        ledger.db.executemany(sql, updates if has_crm_id else [u[:3] + u[4:] for u in updates])
    plan.sends = [i for i in plan.sends if i not in drop]
    return len(drop)
