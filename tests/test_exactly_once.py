"""Exactly once against a CRM that does NOT de-duplicate (the sandbox's default): gift batches
answered after the client's timeout, reset after they were stored, gifts parked in Update
Needed; each followed by the import, `etl reconcile --after-batch` and `etl run` again, with the
Query endpoints refusing a body without `groups` and, separately, ignoring it. At the end no
gift was received twice, and every gift that never became a CRM+ gift is named in the ledger as
in doubt or needing review, never silently pending or accepted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from etl.confirm.reconcile import ReconcileOptions, ReconcileSummary, reconcile, resolve
from etl.load.ledger import Ledger
from etl.run.submit import RunOptions, RunSummary, run_pipeline
from etl.sandbox.server import SandboxHandle, running_sandbox
from etl.spec.pipeline import open_pipeline

SOURCE = "LegacyCRM"
N = 200


def write_gifts(folder: Path, n: int, *, timeout: float = 0.5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["GiftID,DonorID,First,Last,GiftDate,Amount"]
    lines += [f"G{i},D{i % 9},Ann,Lee{i % 9},2024-01-{1 + i % 28:02d},{10 + i}.25"
              for i in range(n)]
    (folder / "gifts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = folder / "gifts.yaml"
    spec.write_text(f"""name: gifts
target: gift_transaction
source: {{path: gifts.csv}}
keys: {{source: {SOURCE}, id: {{column: GiftID}}}}
mappings:
  amount: {{column: Amount, transforms: [parse_amount]}}
  giftDate: {{column: GiftDate, transforms: [{{parse_date: {{formats: ["%Y-%m-%d"]}}}}]}}
  giftType: {{constant: Check}}
  currencyCode: {{constant: USD}}
  contact.referenceId: DonorID
  contact.firstname: First
  contact.lastname: Last
load: {{batch_size: 10, concurrency: 2, requests_per_hour: 1000000, timeout_seconds: {timeout},
        max_attempts: 3}}
""", encoding="utf-8")
    return spec


@pytest.fixture(params=["refuse", "ignore"])
def crm(request: pytest.FixtureRequest) -> Iterator[SandboxHandle]:
    """A CRM+ that does not de-duplicate, parks a fifth of the gifts in Update Needed, and whose
    Query endpoints refuse (or ignore) a body without `groups`."""
    with running_sandbox(rate_limit="none", dedupe_transactions=False, park_share=0.2,
                         park_seed=4, query_without_groups=request.param) as sb:
        yield sb


def run(spec: Path, sb: SandboxHandle) -> RunSummary:
    return run_pipeline(open_pipeline(spec, out_dir=spec.parent / "r"),
                        RunOptions(token=sb.api_key, base_url=sb.base_url, backoff_base=0.01,
                                         handle_signals=False))[1]


def recon(spec: Path, sb: SandboxHandle, **options: Any) -> ReconcileSummary:
    return reconcile(open_pipeline(spec, out_dir=spec.parent / "r"),
                     ReconcileOptions(token=sb.api_key, base_url=sb.base_url, backoff_base=0.01,
                                            force=True, **options))


def latest(spec: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """transactionId -> (status, error code, error details) of its latest ledger row."""
    with Ledger(spec.parent / ".ledger" / "gifts.sqlite", lock=False) as led:
        cur = led.db.execute("SELECT key, status, error_code, error_details FROM rows WHERE id IN"
                             " (SELECT MAX(id) FROM rows GROUP BY key)")
        return {k.rsplit(":", 1)[1]: (s, c, d) for k, s, c, d in cur.fetchall()}


def imported(sb: SandboxHandle) -> dict[str, int]:
    return {f"G{i}": len(sb.state.gifts_for(SOURCE, f"G{i}")) for i in range(N)}


def check_exactly_once(spec: Path, sb: SandboxHandle) -> dict[str, int]:
    """No gift twice; every gift that never reached CRM+ is in doubt or needs review, and none
    that did is pending or failed (it would be sent again)."""
    gifts = imported(sb)
    assert max(gifts.values()) <= 1, "a gift was imported twice"
    received = {f"G{i}": sb.state.times_received(SOURCE, f"G{i}") for i in range(N)}
    assert max(received.values()) <= 1, "a gift was received twice"
    states = latest(spec)
    assert len(states) == N
    for ident, (status, _code, _details) in states.items():
        if received[ident] == 0:
            assert status in ("in_doubt", "needs_review"), (ident, status)
        else:
            assert status in ("accepted", "already_accepted", "confirmed", "in_doubt",
                              "needs_review"), (ident, status)
    counts: dict[str, int] = {}
    for status, _, _ in states.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_batches_answered_after_the_timeout_are_in_doubt_never_resent(
        crm: SandboxHandle, tmp_path: Path) -> None:
    spec = write_gifts(tmp_path, N)
    crm.set_faults("slow_after_store=0.25,slow_seconds=2,seed=7")
    first = run(spec, crm)
    doubt = first.counts.get("in_doubt", 0)
    assert doubt >= 20 and first.exit_code == 1 and first.in_doubt_new == doubt
    assert "in doubt" in first.exit_reason and "etl reconcile" in first.exit_reason
    assert sum(crm.state.times_received(SOURCE, f"G{i}") for i in range(N)) == N  # all stored
    crm.set_faults(None)

    again = run(spec, crm)  # before reconcile: the in-doubt rows are parked, nothing resent
    assert again.counts.get("in_doubt", 0) == doubt and again.counts.get("accepted", 0) == 0
    assert again.in_doubt_new == 0 and f"{doubt} parked from earlier runs" in again.exit_reason
    crm.run_batch()  # the import: a fifth of the gifts wait in Update Needed
    parked = {p["transactionId"] for p in crm.state.parked() if p.get("kind") == "gift"}
    assert parked
    summary = recon(spec, crm, after_batch=True)
    assert summary.poll["mode"] == "bulk" and summary.requests <= 6
    run(spec, crm)
    counts = check_exactly_once(spec, crm)
    states = latest(spec)
    left = {i for i, (s, _, _) in states.items() if s == "in_doubt"}
    assert left <= parked  # every in-doubt gift CRM+ made readable was confirmed
    share = len(left) / doubt
    print(f"timeout faults: {doubt} rows in doubt, {len(left)} left for a person "
          f"({share:.0%}, all parked in Update Needed); final {counts}")

    later = datetime.now(UTC) + timedelta(hours=31)  # the window has passed
    recon(spec, crm, clock=lambda: later)
    for ident in left:
        status, code, details = latest(spec)[ident]
        assert (status, code) == ("needs_review", "IN_DOUBT_NOT_FOUND")
        assert "batch 'gifts-run1'" in details and f"transactionId '{ident}'" in details
        assert "import 'gifts: gifts.csv (run 1)'" in details
    run(spec, crm)
    check_exactly_once(spec, crm)  # needs_review is never re-sent on its own

    # Staff import the parked gifts: the next reconcile confirms them.
    for ident in sorted(left):
        crm.import_parked(transactionSource=SOURCE, transactionId=ident)
    recon(spec, crm, clock=lambda: later)
    assert {latest(spec)[i][0] for i in left} == {"confirmed"}
    assert max(imported(crm).values()) == 1


def test_a_reset_after_store_is_in_doubt_and_a_person_settles_what_never_arrived(
        crm: SandboxHandle, tmp_path: Path) -> None:
    spec = write_gifts(tmp_path, N, timeout=5.0)
    crm.set_faults("reset_after_store=0.2,reset=0.1,seed=3")
    first = run(spec, crm)
    crm.set_faults(None)
    doubt = {i for i, (s, _, _) in latest(spec).items() if s == "in_doubt"}
    assert doubt
    never = {i for i in doubt if crm.state.times_received(SOURCE, i) == 0}
    assert never  # a reset before the server stored it: in doubt all the same
    assert first.counts.get("failed", 0) == 0
    crm.run_batch()
    recon(spec, crm, after_batch=True)
    run(spec, crm)
    check_exactly_once(spec, crm)
    later = datetime.now(UTC) + timedelta(hours=31)
    recon(spec, crm, clock=lambda: later)
    review = {i for i, (s, _, _) in latest(spec).items() if s == "needs_review"}
    assert never <= review  # never arrived: named for a person, never silently re-sent
    print(f"reset faults: {len(doubt)} rows in doubt, {len(never)} never arrived, "
          f"{len(review)} left for a person")

    # The person looks in CRM+ and finds them absent: the next run sends each once.
    outcome = resolve(open_pipeline(spec), absent=sorted(never), found=[])
    assert set(outcome.outcomes["absent"].values()) == {"pending: the next run sends it"}
    resent = run(spec, crm)
    assert resent.counts.get("accepted", 0) == len(never)
    crm.run_batch()
    recon(spec, crm, after_batch=True)
    assert {crm.state.times_received(SOURCE, i) for i in never} == {1}  # each sent once now
    assert max(imported(crm).values()) == 1
    check_exactly_once(spec, crm)
