"""`etl run`'s side of the direct path (`load.create: direct`, etl/load/direct.py): the spec
check the dry run makes, the request bound shown before anything is sent, the cap, and the
rows of the plan handed to the `DirectLoader`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from etl.base.errors import EtlError, SpecError
from etl.load.direct import DirectLoader, DirectRow, DirectSettings, DirectStats, last_sent
from etl.load.direct_shape import request_bound, unsupported_fields
from etl.report.cost import duration, estimate
from etl.spec.parse import LoadedSpec

if TYPE_CHECKING:
    from etl.load.ledger import Ledger
    from etl.load.plan import Plan
    from etl.load.sender import Sender

OUTCOMES = {"created": "created", "by_reference": "found by reference",
            "email_associate": "email match associated", "email_skip": "email match skipped",
            "email_create": "email match created anew", "settling": "in doubt, settling",
            "in_doubt": "in doubt", "failed": "failed", "find_failed": "Find failed",
            "rejected": "rejected", "not_sent": "not sent"}


class DirectRefused(EtlError):
    """A direct-create run that must not start: more rows than `load.direct_max_rows`."""

    exit_code = 2


def is_direct(loaded: LoadedSpec) -> bool:
    return loaded.spec.load.create == "direct"


def check_spec(loaded: LoadedSpec) -> None:
    """`create: direct` is for contacts, and only with fields the nested body can carry."""
    spec = loaded.spec
    if not is_direct(loaded):
        return
    if spec.target != "contact_transaction":
        raise SpecError("direct applies to contact_transaction only (a gift has no "
                        "direct-create path here)", path=loaded.path, key="load.create",
                        hint="remove it, or use create: transaction")
    bad = unsupported_fields(list(spec.mappings))
    if bad:
        raise SpecError(
            f"direct sends seed 000's nested POST /api/Contact, which has no documented "
            f"place for {', '.join(bad)}; they would be lost", path=loaded.path,
            key="load.create", hint="remove these mappings, or use create: transaction")


def direct_rows(plan: Plan, ledger: Ledger, first_id: int) -> list[DirectRow]:
    """The plan's rows to send as DirectRows; a key in doubt carries when it last went out."""
    doubt = [plan.keys[i] for i in plan.sends if plan.rows[i][5] == "resend_in_doubt"]
    sent = last_sent(ledger, doubt) if doubt else {}
    return [DirectRow(first_id + i, plan.keys[i], plan.payloads[i], str(plan.rows[i][5]),
                      sent.get(plan.keys[i])) for i in plan.sends]


def announce(rows: list[DirectRow], loaded: LoadedSpec, per_hour: float | None,
             notify: Callable[[str], None]) -> int:
    """Say what the run will cost before it spends anything; refuse over the cap. Returns the
    request bound."""
    load = loaded.spec.load
    count, with_email = request_bound([r.payload for r in rows])
    plan = estimate(loaded.spec, count, with_email=with_email, per_hour=per_hour)
    bound = sum(plan["writes"].values())  # Find, Find, POST per row
    if plan["requests_per_hour"]:
        at = f"{duration(plan['hours'])} at {plan['requests_per_hour']:,} requests/hour"
    else:
        at = "no request budget set (--unlimited)"
    notify(f"direct create: up to {bound:,} requests for {count:,} rows (Find by reference "
           f"{count:,}, Find by email {with_email:,}, POST at most {count:,}), {at}")
    if count > load.direct_max_rows:
        raise DirectRefused(
            f"direct create: {count:,} rows to look up and create is over "
            f"load.direct_max_rows ({load.direct_max_rows:,}); batch migrations belong on the "
            "Transaction path (load.create: transaction, 100 rows a request), or raise the cap")
    return bound


def make_loader(rows: list[DirectRow], loaded: LoadedSpec, ledger: Ledger, sender: Sender,
                *, run_id: int, max_failed: int | None,
                on_progress: Callable[[dict[str, Any]], None] | None) -> DirectLoader:
    """The loader that looks up and creates the rows (etl/load/direct.py) through the run's
    sender; `loader.stats` holds what it did even when it stops early."""
    load = loaded.spec.load
    settings = DirectSettings(on_email_match=load.on_email_match,
                              settle_seconds=load.direct_settle_seconds,
                              concurrency=load.concurrency, batch_id=f"r{run_id}-direct",
                              max_failed=max_failed)

    def progress(stats: DirectStats) -> None:
        if on_progress is not None:
            on_progress({"rows": stats.rows_done, "to_send": len(rows),
                         "accepted": stats.outcomes["created"] + stats.outcomes["by_reference"],
                         "requests": sender.budget.sent,
                         "budget_remaining": sender.budget.remaining,
                         "eta_seconds": sender.budget.eta(2 * (len(rows) - stats.rows_done))})

    return DirectLoader(sender, ledger, settings, on_progress=progress)


def summary_block(stats: DirectStats | None, bound: int, loaded: LoadedSpec) -> dict[str, Any]:
    """The run summary's `direct` block: outcomes per row, requests per kind, the policy."""
    outcomes = dict(sorted(stats.outcomes.items())) if stats else {}
    return {"on_email_match": loaded.spec.load.on_email_match, "request_bound": bound,
            "outcomes": outcomes, "requests": dict(sorted(stats.requests.items()))
            if stats else {}}


def summary_line(block: dict[str, Any]) -> str:
    """One line for the person at the terminal: what each row became."""
    parts = [f"{n:,} {OUTCOMES.get(k, k)}" for k, n in block["outcomes"].items()]
    spent = sum(block["requests"].values())
    return (f"direct create: {', '.join(parts) or 'nothing done'}; {spent:,} requests "
            f"(on_email_match: {block['on_email_match']})")


def doubt_advice(spec_path: object) -> str:
    """What the end-of-run reason says about rows in doubt on the direct path."""
    return (f"the next `etl run {spec_path}` looks each up by reference first and creates it "
            "only when still absent load.direct_settle_seconds after its POST")

