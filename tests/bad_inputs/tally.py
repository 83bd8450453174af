#!/usr/bin/env python3
"""Counts the bad-input corpus by running its test, and prints the table in HARDENING.md.

    .venv/bin/python tests/bad_inputs/tally.py

Every case of tests/test_bad_inputs.py runs through `etl validate` (as the test does) and is
counted by what it is (the file kind, the documented outcome) and by how it ended:
- passed: exactly the documented outcome (exit code, message, rejects, payload values);
- traceback: an exception other than a failed assertion escaped, or "Traceback" was printed;
- wrong outcome: the tool ended on its own terms but not as documented (a wrong exit code,
  wrong rejects, a payload value that differs from the source: a silent corruption).
Nothing here is typed in by hand: the numbers are those of this run.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


class _Tally:
    def __init__(self) -> None:
        self.reports: dict[str, Any] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.failed:
            self.reports.setdefault(report.nodeid.split("[", 1)[-1].rstrip("]"), report)


def _ending(report: Any) -> str:
    if report.passed:
        return "passed"
    text = report.longreprtext
    crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", "")
    if "'Traceback' not in" in text or not crash.startswith("AssertionError"):
        return "traceback"
    return "wrong outcome"


def _kind(case: Any) -> str:
    if case.fifo:
        return "FIFO"
    name = case.spec or case.file
    return {"csv": "CSV", "parquet": "Parquet", "yaml": "YAML spec"}[name.rsplit(".", 1)[-1]]


def main() -> int:
    sys.path.insert(0, str(TESTS))
    import test_bad_inputs

    tally = _Tally()
    code = pytest.main(["-q", "-p", "no:cacheprovider", str(TESTS / "test_bad_inputs.py"),
                        "-k", "test_bad_input"], plugins=[tally])
    endings: collections.Counter[str] = collections.Counter()
    rows: collections.Counter[tuple[str, str]] = collections.Counter()
    for case in test_bad_inputs.CASES:
        report = tally.reports.get(case.id)
        ending = _ending(report) if report is not None else "not run"
        endings[ending] += 1
        rows[(_kind(case), type(case.outcome).__name__)] += 1
    print("\n| file kind | documented outcome | cases |\n|---|---|---:|")
    for (kind, outcome), n in sorted(rows.items()):
        print(f"| {kind} | {outcome} | {n} |")
    print(f"\ncases: {len(test_bad_inputs.CASES)}; passed: {endings['passed']}; "
          f"tracebacks: {endings['traceback']}; wrong outcomes (silent corruptions included): "
          f"{endings['wrong outcome']}; not run: {endings['not run']}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
