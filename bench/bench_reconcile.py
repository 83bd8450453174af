#!/usr/bin/env python3
"""Benchmark: what confirming accepted gifts costs in requests, the scarce resource.

    python bench/bench_reconcile.py            # 10,000 gifts
    python bench/bench_reconcile.py --quick    # 2,000 gifts

Against the local sandbox (in-process, 127.0.0.1, no rate limit, de-duplication off): `etl run`
sends the gifts, the sandbox's import runs, then `etl reconcile --after-batch` confirms them
- bulk: QueryOptions offers "Transaction Source" and "Batch": one FullGift query per run batch,
  1,000 records a page (goal: about 15 requests for 10,000 gifts);
- bulk, groupless bodies ignored: the sandbox answers a body without `groups` with the whole
  organization (the tool always sends groups, so nothing changes);
- no bulk path: the organization's QueryOptions lack "Transaction Source", so every open row
  costs one per-row lookup (`GET /api/Gift/{source}/{id}`).
Prints a markdown table; writes bench/results/reconcile_cost.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "reconcile_cost.json"
sys.path.insert(0, str(ROOT))

from etl.confirm.reconcile import ReconcileOptions, reconcile  # noqa: E402
from etl.run.submit import RunOptions, run_pipeline  # noqa: E402
from etl.sandbox.server import running_sandbox  # noqa: E402
from etl.spec.pipeline import open_pipeline  # noqa: E402

SPEC = """name: gifts
target: gift_transaction
source: {path: gifts.csv}
keys: {source: LegacyCRM, id: {column: GiftID}}
mappings:
  amount: {column: Amount, transforms: [parse_amount]}
  giftDate: {column: GiftDate, transforms: [{parse_date: {formats: ["%Y-%m-%d"]}}]}
  giftType: {constant: Check}
  currencyCode: {constant: USD}
  contact.referenceId: DonorID
  contact.firstname: First
  contact.lastname: Last
load: {batch_size: 100, concurrency: 2, requests_per_hour: 100000000}
"""

CASES = {
    "bulk (FullGift by source + batch)": {},
    "bulk, groupless bodies ignored": {"query_without_groups": "ignore"},
    "no bulk path (per-row lookups)": {"query_options_hide": ("Transaction Source",)},
}


def write(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rows = "".join(f"G{i},D{i % 500},Ann,Lee{i % 500},2024-01-{1 + i % 28:02d},{10 + i % 90}.50\n"
                   for i in range(n))
    (folder / "gifts.csv").write_text("GiftID,DonorID,First,Last,GiftDate,Amount\n" + rows,
                                      encoding="utf-8")
    (folder / "gifts.yaml").write_text(SPEC, encoding="utf-8")
    return folder / "gifts.yaml"


def case(folder: Path, n: int, config: dict[str, Any]) -> dict[str, Any]:
    spec = write(folder, n)
    with running_sandbox(rate_limit="none", **config) as sb:
        # Without the bulk path the first-send check cannot ask CRM+ either: the operator, who
        # knows this organization is empty, says so (--skip-crm-check)
        pipeline = open_pipeline(spec, out_dir=folder / "r")
        run = run_pipeline(pipeline, RunOptions(token=sb.api_key, base_url=sb.base_url,
                                                handle_signals=False,
                                                skip_crm_check="query_options_hide" in config))[1]
        assert run.counts == {"accepted": n}, (run.counts, run.exit_reason)
        sb.run_batch()
        before = len(sb.state.requests())
        started = time.monotonic()
        summary = reconcile(pipeline, ReconcileOptions(token=sb.api_key, base_url=sb.base_url,
                                                       after_batch=True))
        elapsed = time.monotonic() - started
        served = len(sb.state.requests()) - before
    confirmed = sum(summary.confirmed.values())
    assert confirmed == n, summary.confirmed
    return {"gifts": n, "confirmed": confirmed, "mode": summary.poll.get("mode"),
            "requests": summary.requests, "requests_served": served,
            "requests_per_1000_rows": round(1000 * summary.requests / n, 2),
            "seconds": round(elapsed, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 gifts instead of 10,000")
    ap.add_argument("--gifts", type=int)
    a = ap.parse_args(argv)
    n = a.gifts or (2_000 if a.quick else 10_000)
    out: dict[str, Any] = {"when": datetime.now().isoformat(timespec="seconds"),
                           "machine": platform.platform(), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, config) in enumerate(CASES.items()):
            out["cases"][name] = case(Path(tmp) / f"c{i}", n, config)
    print(f"| case ({n:,} accepted gifts) | mode | requests | per 1,000 rows | seconds |")
    print("|---|---|---|---|---|")
    for name, r in out["cases"].items():
        print(f"| {name} | {r['mode']} | {r['requests']:,} | {r['requests_per_1000_rows']} | "
              f"{r['seconds']} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
