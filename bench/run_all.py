#!/usr/bin/env python3
"""Run every benchmark in bench/ (the bench_*.py files), one after the other.

    python bench/run_all.py                 # full size (1M rows)
    python bench/run_all.py --quick         # 100k rows
    python bench/run_all.py --only dry_run  # only bench_dry_run.py
    python bench/run_all.py --list

Every other argument is passed through to each script, so each bench_*.py accepts at least
--quick. A failing script does not stop the others; the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def scripts(only: list[str] | None) -> list[Path]:
    found = sorted(BENCH.glob("bench_*.py"))
    if only:
        found = [p for p in found if p.stem.removeprefix("bench_") in only or p.stem in only]
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", help="names like dry_run (bench_dry_run.py)")
    ap.add_argument("--list", action="store_true", help="list the scripts and exit")
    a, rest = ap.parse_known_args(argv)
    todo = scripts(a.only)
    if a.list or not todo:
        for p in todo:
            print(p.name)
        if not todo:
            print("no bench_*.py script matched", file=sys.stderr)
            return 2
        return 0
    failed = []
    for p in todo:
        print(f"== {p.name} {' '.join(rest)}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call([sys.executable, str(p), *rest])
        print(f"== {p.name}: exit {rc} after {time.perf_counter() - t:.0f} s\n", flush=True)
        if rc != 0:
            failed.append(p.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
