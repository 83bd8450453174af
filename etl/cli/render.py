"""What `etl run` prints: the progress bar (on a terminal) and the final summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etl.run.submit import RunSummary


class Progress:
    """Rows, requests, budget left and ETA on stderr (only on a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(TextColumn("{task.description}"), BarColumn(),
                       TextColumn("{task.completed}/{task.total} rows  {task.fields[info]}"),
                       console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task("validating", total=None, info="")
        self.bar.start()

    def update(self, s: dict[str, Any]) -> None:
        left = s["budget_remaining"]
        info = (f"requests {s['requests']}  accepted {s['accepted']}  "
                f"budget left {'?' if left is None else left}  ETA {s['eta_seconds']:.0f}s")
        self.bar.update(self.task, description="sending", total=s["to_send"],
                        completed=s["rows"], info=info)

    def close(self) -> None:
        self.bar.stop()


def render_summary(summary: RunSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"run {summary.run_id} of {summary.pipeline}, organization: "
                  f"{summary.organization or '(not contacted)'}", highlight=False)
    _render_files(console, summary)
    if summary.counts:
        counts = Table(title="rows by status")
        counts.add_column("status")
        counts.add_column("rows", justify="right")
        for status, n in sorted(summary.counts.items()):
            counts.add_row(status, str(n))
        console.print(counts)
    if summary.totals or summary.control_totals:
        _render_totals(console, summary)
    if summary.requests or summary.counts:
        console.print(f"requests {summary.requests} (HTTP {summary.http}), 429s "
                      f"{summary.throttled}, retries {summary.retries}, rows/batch request "
                      f"{summary.rows_per_batch_request}"
                      + (", batch endpoint missing: sent one by one"
                         if summary.fallback_to_single else ""), highlight=False)
    if summary.in_doubt_found:
        console.print(f"{summary.in_doubt_found} rows were in doubt after an earlier crash "
                      f"(at most {summary.in_doubt_bound} can be)")
    for notice, n in summary.notices.items():
        console.print(f"API notice: {notice} ({n} answers): plan to migrate")
    gates = summary.gates
    if gates.get("held") or gates.get("stopped"):
        console.print(f"gate: {gates.get('held') or gates.get('stopped')}", highlight=False)
    if summary.stale_lock_pid:
        console.print(f"a previous run (pid {summary.stale_lock_pid}) died; its lock was "
                      "released", highlight=False)
    console.print(f"ledger: {summary.ledger}\nreport: {summary.report_dir or '-'}\n"
                  f"{summary.exit_reason}", highlight=False)


def _render_totals(console: Any, summary: RunSummary) -> None:
    """Control totals by currency: read -> valid -> sent -> accepted (now or earlier)."""
    from rich.table import Table

    totals = Table(title="control totals: read -> valid -> sent -> accepted")
    for name in ("stage", "currency", "rows", "amount"):
        totals.add_column(name, justify="right" if name in ("rows", "amount") else "left")
    ct = summary.control_totals
    # Contacts carry no amounts: then the row line below says everything.
    currencies = ct.get("currencies") or {}
    if any(c != "-" for c in currencies) or any(t["currency"] for t in summary.totals):
        for currency, entry in (ct.get("currencies") or {}).items():
            if "read" in entry["amount"]:
                totals.add_row("read", currency, "-", entry["amount"]["read"])
        for t in summary.totals:
            totals.add_row(t["stage"], t["currency"] or "-", str(t["rows"]), t["amount"])
        console.print(totals)
    if ct:
        rows = ct["rows"]
        console.print(f"rows: read {rows['read']} = valid {rows['valid']} + rejected "
                      f"{rows['rejected']}; sent {rows['sent']}; accepted {rows['accepted']}"
                      + ("" if all(ct["checks"].values()) else
                         f"; CONTROL TOTALS DO NOT BALANCE: {ct['checks']}"), highlight=False)


def _render_files(console: Any, summary: RunSummary) -> None:
    """Per-file outcomes of a drop folder, oldest first."""
    from rich.table import Table

    if not summary.files:
        return
    files = Table(title="files (oldest first)")
    for name in ("file", "outcome", "rows", "detail"):
        files.add_column(name, overflow="fold")
    for f in summary.files:
        detail = "; ".join(x for x in (f["detail"], f["moved_to"] and f"moved to {f['moved_to']}")
                           if x)
        files.add_row(Path(f["path"]).name, f["outcome"],
                      "-" if f["rows"] is None else str(f["rows"]), detail)
    console.print(files)
