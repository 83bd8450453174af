"""Safe unattended runs: the run lock, the gates, and the control totals of a run.

    RunLock          `<ledger>.lock` (the ledger's flock file) held for the whole run, with the
                     holder's pid in it: a second run exits at once (RunLocked, exit 6); a lock
                     file whose pid died (kill -9) is stale: the kernel released the flock, the
                     next run says so and proceeds
    reject_gate()    --max-reject-rate: over it, nothing is sent
    control_totals() rows and amounts by currency through read -> valid -> sent -> accepted
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from etl.base.errors import EtlError
from etl.base.exitcodes import EXIT_LOCKED
from etl.prepare.result import ValidationResult
from etl.unattended.drops import stamp

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]


class RunLocked(EtlError):
    """Another run holds the ledger's lock."""

    exit_code = EXIT_LOCKED


def _read_holder(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunLock:
    """`with RunLock(ledger_path) as lock:` the whole run. The same file (and flock) as
    `Ledger(path, lock=True)`, so the ledger must then be opened with `lock=False`."""

    def __init__(self, ledger_path: Path) -> None:
        self.ledger_path = Path(ledger_path)
        self.path = Path(str(ledger_path) + ".lock")
        self.stale_pid: int | None = None
        self._handle: IO[str] | None = None

    @property
    def stale_message(self) -> str | None:
        if self.stale_pid is None:
            return None
        again = " (that pid is now another process)" if pid_alive(self.stale_pid) else ""
        return (f"a previous run (pid {self.stale_pid}) died; its lock was released{again}. "
                "Rows it left in flight are settled as in doubt")

    def __enter__(self) -> RunLock:
        if fcntl is None:  # pragma: no cover
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # held for the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = _read_holder(handle.read())
            handle.close()
            who = (f"pid {holder['pid']}, started {holder.get('started', '?')}"
                   if "pid" in holder else "pid unknown")
            raise RunLocked(f"{self.ledger_path}: another `etl run` ({who}) holds the lock "
                            f"{self.path}; not starting (exit {EXIT_LOCKED})") from None
        handle.seek(0)
        holder = _read_holder(handle.read())
        if holder.get("pid", "").isdigit() and int(holder["pid"]) != os.getpid():
            self.stale_pid = int(holder["pid"])
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid={os.getpid()} started={stamp()}\n")
        handle.flush()
        os.fsync(handle.fileno())
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is None:
            return
        try:  # a clean end leaves an empty file: a pid left in it means the run died
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.flush()
        finally:
            self._handle.close()
            self._handle = None


def reject_gate(result: ValidationResult, max_rate: float | None) -> str | None:
    """The reason not to send anything, when the reject rate is over `max_rate`."""
    rate = result.reject_rate()
    if max_rate is None or rate <= max_rate:
        return None
    return (f"reject rate {rate:.1%} ({result.rejected} of {result.read} rows) is over "
            f"--max-reject-rate {max_rate:.1%}: nothing sent")


def control_totals(result: ValidationResult, totals: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows and amounts by currency, stage by stage: read -> valid -> sent -> accepted (now or
    earlier). `totals` are the ledger's (stage, currency, rows, amount) of the run."""
    rows: dict[str, int] = {"read": result.read, "rejected": result.rejected,
                            "valid": result.valid, "sent": 0, "accepted": 0}
    currencies: dict[str, dict[str, dict[str, Any]]] = {}
    amounts: dict[str, dict[str, str]] = result.control_totals.get("amounts", {})  # type: ignore[assignment]
    for currency, by_stage in amounts.items():
        currencies.setdefault(currency, {"rows": {}, "amount": {}})["amount"]["read"] = (
            by_stage["read"])
    for t in totals:
        entry = currencies.setdefault(t["currency"] or "-", {"rows": {}, "amount": {}})
        entry["rows"][t["stage"]] = t["rows"]
        entry["amount"][t["stage"]] = t["amount"]
        if t["stage"] in ("sent", "accepted"):
            rows[t["stage"]] += t["rows"]
    ledger_valid = sum(t["rows"] for t in totals if t["stage"] == "valid")
    checks = {"read = valid + rejected": result.read == result.valid + result.rejected,
              "ledger valid = valid": ledger_valid == result.valid}
    return {"rows": rows, "currencies": currencies, "checks": checks}
