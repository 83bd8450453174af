"""What sending a pipeline will cost, before anything is sent: one estimate, shown by the
dry-run report (report.json `requests`, report.html) and at the start of `etl run`.

- writes: one request per batch of `load.batch_size` rows on the target's batch endpoint
  (the direct path, `load.create: direct`, has its own bound: Find by reference, Find by email,
  POST, per row: etl/load/direct_shape.py, counted here the same way);
- pre-match reads (a `match:` section): bulk is QueryOptions plus pages of 1,000 contacts (the
  cache's contact count when known, else the valid rows: a guess), capped at match.max_requests;
  find is one Contact/Find per valid row and signal, capped the same;
- reconcile reads: the bulk estimate, QueryOptions plus pages of 1,000 per run batch, or one
  per-row lookup per row where that is fewer (docs/reconcile.md);
- the time at the spec's budget: requests_per_hour less reserve_share.
The counts are upper bounds where the docs leave room (an empty page, a refused query falling
back to per-row lookups are not counted): say "about".
"""

from __future__ import annotations

import math
from typing import Any

from etl.spec.model import Spec

PAGE = 1000


def duration(hours: float) -> str:
    """A request count's time at the budget, as a person reads it ("about 12 min")."""
    minutes = hours * 60
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"about {minutes:.0f} min"
    return f"about {hours:.1f} h"


def estimate(spec: Spec, rows: int, *, with_email: int | None = None,
             contacts: int | None = None, per_hour: float | None = -1.0) -> dict[str, Any]:
    """The request plan for sending `rows` valid rows with `spec` (`per_hour=None`: no budget,
    -1: the spec's). `with_email`: rows with an email (direct path); `contacts`: the pre-match
    cache's size, when known."""
    load = spec.load
    direct = load.create == "direct"
    if direct:
        emails = rows if with_email is None else with_email
        writes = {"Contact/Find by reference": rows, "Contact/Find by email": emails,
                  "POST /api/Contact": rows}
        batches = rows
    else:
        batches = math.ceil(rows / load.batch_size)
        endpoint = ("POST /api/v2/Gift/Transactions" if spec.target == "gift_transaction"
                    else "POST /api/Contact/Batch")
        writes = {endpoint: batches}
    prematch = 0
    if spec.match is not None and rows:
        if spec.match.method == "bulk":
            prematch = 1 + math.ceil((contacts if contacts is not None else rows) / PAGE)
        else:
            prematch = rows * len(spec.match.by)
        prematch = min(prematch, spec.match.max_requests)
    per_batch = math.ceil(min(load.batch_size, rows) / PAGE) if rows else 0
    bulk = 1 + batches * per_batch if rows else 0
    reconcile = 0 if direct else min(bulk, rows)  # a direct create is confirmed as it goes
    total = sum(writes.values()) + prematch + reconcile
    budget = load.requests_per_hour if per_hour == -1.0 else per_hour
    rate = budget * (1 - load.reserve_share) if budget else None
    return {"rows": rows, "writes": writes, "prematch_reads": prematch,
            "reconcile_reads": reconcile,
            "reconcile_method": "none" if direct else "bulk" if bulk <= rows else "per-row",
            "total": total, "requests_per_hour": round(rate) if rate else None,
            "hours": round(total / rate, 4) if rate else None}


def cost_line(plan: dict[str, Any]) -> str:
    """"2,838 requests, about 43 min at 4,000 requests/hour (writes 2,000, ...)"."""
    rate = plan["requests_per_hour"]
    at = (f"{duration(plan['hours'])} at {rate:,} requests/hour" if rate
          else "no request budget set (--unlimited)")
    writes = ", ".join(f"{k} {v:,}" for k, v in plan["writes"].items())
    parts = [f"writes: {writes}"]
    if plan["prematch_reads"]:
        parts.append(f"pre-match reads {plan['prematch_reads']:,}")
    if plan["reconcile_method"] != "none":
        parts.append(f"reconcile reads {plan['reconcile_reads']:,} ({plan['reconcile_method']})")
    return f"{plan['total']:,} requests, {at} ({'; '.join(parts)})"
