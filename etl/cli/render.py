"""What `etl run` prints: progress (a bar on a terminal, a line every N seconds when piped, or
JSON lines with --log-format json) and the final summary."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # `etl validate` imports this module: not the loader's HTTP client
    from etl.run.submit import RunSummary


def duration(seconds: float | None) -> str:
    """A time a person reads: "45s", "42m", "1h05m" ("?" when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def progress_fields(s: dict[str, Any]) -> dict[str, Any]:
    return {"rows": s["rows"], "to_send": s["to_send"], "accepted": s["accepted"],
            "requests": s["requests"], "budget_remaining": s["budget_remaining"],
            "eta_seconds": round(s["eta_seconds"]) if s["eta_seconds"] is not None else None}


def progress_text(s: dict[str, Any]) -> str:
    left = s["budget_remaining"]
    return (f"requests {s['requests']:,}  accepted {s['accepted']:,}  budget left "
            f"{'?' if left is None else f'{left:,}'}  ETA {duration(s['eta_seconds'])}")


class Log:
    """Messages on stderr: plain lines, or one JSON object a line (--log-format json) with a
    timestamp, level, event and fields, for log shippers."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None) -> None:
        self.fmt, self.stream = fmt, stream
        self.gone = False

    def emit(self, event: str, message: str, level: str = "info", **fields: Any) -> None:
        if self.gone:
            return
        out = self.stream or sys.stderr
        if self.fmt == "json":
            record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                      "level": level, "event": event, "message": message, **fields}
            line = json.dumps(record, default=str) + "\n"
        else:
            line = message + "\n"
        try:
            out.write(line)
            out.flush()
        except (BrokenPipeError, ValueError):
            # The log's reader went away: a message must never stop a run that is sending
            # (the ledger records everything); stay silent from now on.
            self.gone = True


class LineProgress:
    """Not on a terminal: one progress line at most every `every` seconds (a log keeps it)."""

    def __init__(self, log: Log, every: float = 10.0) -> None:
        self.log, self.every = log, every
        self.last = time.monotonic()

    def update(self, s: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        self.log.emit("progress", f"sending: {s['rows']:,}/{s['to_send']:,} rows  "
                      + progress_text(s), **progress_fields(s))

    def close(self) -> None:
        pass


class ValidateProgress:
    """`etl validate` on a big file: rows read and rejected, batch by batch; a live line on a
    terminal, else a line at most every `every` seconds."""

    def __init__(self, every: float = 10.0) -> None:
        self.every, self.last = every, time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, file: str, rows: int, rejected: int) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < self.every:
            return
        self.last = now
        line = f"validating {file}: {rows:,} rows read, {rejected:,} rejected"
        sys.stderr.write(f"\r\x1b[2K{line}" if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


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
        info = progress_text(s)
        self.bar.update(self.task, description="sending", total=s["to_send"],
                        completed=s["rows"], info=info)

    def close(self) -> None:
        self.bar.stop()


def _table(console: Any, title: str) -> Any:
    """A rich table; off a terminal (a log, a pipe) plain ASCII lines, no box-drawing glyphs."""
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.HEAVY_HEAD if console.is_terminal else box.ASCII)


def render_summary(summary: RunSummary, *, stderr: bool = False) -> None:
    """The end of a run, on stdout (stderr when stdout carries JSON). Off a terminal rich
    prints plain tables: no colour, no control codes."""
    from rich.console import Console

    console = Console(stderr=stderr)
    console.print(f"run {summary.run_id} of {summary.pipeline}, organization: "
                  f"{summary.organization or '(not contacted)'}", highlight=False)
    _render_files(console, summary)
    if summary.counts:
        counts = _table(console, "rows by status")
        counts.add_column("status")
        counts.add_column("rows", justify="right")
        for status, n in sorted(summary.counts.items()):
            counts.add_row(status, f"{n:,}")
        console.print(counts)
    if summary.totals or summary.control_totals:
        _render_totals(console, summary)
    if summary.requests or summary.counts:
        console.print(f"requests {summary.requests:,} (HTTP {summary.http}), 429s "
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

    totals = _table(console, "control totals: read -> valid -> sent -> accepted")
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
            totals.add_row(t["stage"], t["currency"] or "-", f"{t['rows']:,}", t["amount"])
        console.print(totals)
    if ct:
        rows = ct["rows"]
        console.print(f"rows: read {rows['read']:,} = valid {rows['valid']:,} + rejected "
                      f"{rows['rejected']:,}; sent {rows['sent']:,}; accepted {rows['accepted']:,}"
                      + ("" if all(ct["checks"].values()) else
                         f"; CONTROL TOTALS DO NOT BALANCE: {ct['checks']}"), highlight=False)


def _render_files(console: Any, summary: RunSummary) -> None:
    """Per-file outcomes of a drop folder, oldest first."""

    if not summary.files:
        return
    files = _table(console, "files (oldest first)")
    for name in ("file", "outcome", "rows", "detail"):
        files.add_column(name, overflow="fold")
    for f in summary.files:
        detail = "; ".join(x for x in (f["detail"], f["moved_to"] and f"moved to {f['moved_to']}")
                           if x)
        files.add_row(Path(f["path"]).name, f["outcome"],
                      "-" if f["rows"] is None else str(f["rows"]), detail)
    console.print(files)
