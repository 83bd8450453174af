"""A lost or replaced ledger (`etl run`'s side of etl/load/ledger_guard.py): before the first
send, refuse when CRM+ already holds (or may hold) this source's gifts; `--recover-ledger`
rebuilds what was sent from CRM+. Reads go through the sender's budget and its one retry loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etl import __version__
from etl.base.exitcodes import EXIT_OK
from etl.load.budget import RequestBudget
from etl.load.client import CrmClient, EndpointMissing, Reply, check_organization
from etl.load.ledger import Ledger
from etl.load.ledger_guard import LedgerUnknown, Read, holds_gifts, recover_gifts
from etl.load.sender import Batch, Sender, SendSettings
from etl.run.options import RunOptions
from etl.spec.parse import LoadedSpec
from etl.targets import get_target


def reader(sender: Sender) -> Read:
    """Reads through the sender's budget and retry loop; None for a 404."""

    async def read(endpoint: str, body: bytes | None = None, *,
                   params: dict[str, str | int] | None = None) -> Reply | None:
        try:
            return await sender.request(endpoint, body, params=params)
        except EndpointMissing:
            return None

    return read


async def first_send_check(read: Read, loaded: LoadedSpec, ledger_path: Path) -> None:
    """The ledger shows nothing sent: refuse when CRM+ holds (or may hold) this source's gifts."""
    source = loaded.spec.keys.source
    verdict = await holds_gifts(read, source)
    if verdict == "none":
        return
    said = ("already holds gifts with transactionSource " if verdict == "some" else
            "cannot say (no documented query answered) whether it holds gifts with "
            "transactionSource ")
    raise LedgerUnknown(
        f"refusing to send: the ledger {ledger_path} shows nothing sent, but CRM+ {said}"
        f"{source!r}. A lost or replaced ledger would send every gift again. Restore the "
        "ledger from its backup (etl ledger backup), or rebuild it from CRM+ with "
        "`etl run --recover-ledger`, or, if you know CRM+ holds none of these gifts, "
        "`--skip-crm-check`")


async def recover(loaded: LoadedSpec, ledger: Ledger, options: RunOptions) -> None:
    """`--recover-ledger`: every gift of the source found in CRM+ becomes a confirmed row of a
    recovery run, so planning counts it as sent."""
    spec = loaded.spec
    budget = RequestBudget(requests_per_hour=None if options.unlimited else (
        options.requests_per_hour or spec.load.requests_per_hour),
        reserve_share=spec.load.reserve_share, burst=2)
    client = CrmClient(options.base_url, options.token, timeout=spec.load.timeout_seconds,
                       transport=options.transport, observe=budget.observe)
    sender = Sender(client, budget, get_target(spec.target), spec.keys.source, _NoRecorder(),
                    SendSettings(max_attempts=spec.load.max_attempts,
                                 backoff_base=options.backoff_base,
                                 backoff_cap=options.backoff_cap))
    async with client:
        check_organization(await sender.request("organization"), spec.organization,
                           "recover the ledger from it")
        found = await recover_gifts(reader(sender), spec.keys.source,
                                    max_pages=options.recover_max_pages)
    run_id = ledger.start_run(
        pipeline=spec.name, target=spec.target, spec_path=str(loaded.path),
        spec_hash=loaded.sha256, tool_version=__version__, base_url=options.base_url)
    ledger.add_recovered(run_id, f"{spec.target}:{spec.keys.source}:", found)
    ledger.finish_run(run_id, EXIT_OK, f"ledger recovery: {len(found):,} gifts of "
                      f"{spec.keys.source!r} found in CRM+", {"recovered": len(found)})
    options.notify(f"ledger recovery: {len(found):,} gifts already in CRM+ recorded as sent")


class _NoRecorder:
    def sending(self, batch: Batch) -> None:
        raise AssertionError("a recovery sends nothing")

    def settle(self, batch: Batch, outcomes: Any) -> None:
        raise AssertionError("a recovery sends nothing")
