#!/usr/bin/env python3
"""Benchmark: the tool's dry run beside a pandas + pandera baseline and the polars read floor.

    python bench/bench_compare.py                   # 1M-row legacy gifts file
    python bench/bench_compare.py --rows 10000000   # 10M rows
    python bench/bench_compare.py --quick           # 100k rows

On the same generated file (bench/generate.py via bench_dry_run.ensure_data, cached in
bench/data/), each measured in a fresh subprocess (wall clock incl. interpreter start-up, peak RSS
of that child), median of --repeat runs (default 3):

- tool:     `dry_run(open_pipeline(spec, out_dir=...))` (etl.run.dry_run) on a copy of
            pipelines/legacy_gifts.yaml
            (report.json, rejects.csv, payloads.jsonl, report.html);
- pandas:   bench/baseline_pandas.py, the same mappings and rules written the obvious way with
            pandas + pandera (pandas backend), writing rejects.csv and payloads.jsonl;
- floor:    `polars.read_csv(path, infer_schema=False)`, nothing else.

The baseline runs in its own virtualenv, bench/.venv-pandas (created on first use with
`pip install -e '.[bench]'`; git-ignored), so the tool runs as users install it: pandera imports
pandas whenever pandas is importable, which would add ~0.25 s to the tool's start-up that no
user pays. When that venv cannot be built the baseline row says why. Prints a markdown table;
writes bench/results/compare.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import venv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_dry_run as bd  # noqa: E402

RESULTS = BENCH / "results" / "compare.json"
BASELINE_VENV = BENCH / ".venv-pandas"
TOOL = r"""
import sys
from pathlib import Path
from etl.run.dry_run import dry_run
from etl.spec.pipeline import open_pipeline
d = dry_run(open_pipeline(Path(sys.argv[1]), out_dir=Path(sys.argv[2])))
print(f"TOOL rows={d.result.read} valid={d.result.valid} rejected={d.result.rejected}")
"""


def _counts(log_stem: Path, prefix: str) -> dict[str, int]:
    for log in sorted(log_stem.parent.glob(log_stem.name + ".*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                pairs = (kv.split("=") for kv in line.split()[1:])
                return {k: int(v) for k, v in pairs if v.isdigit()}
    return {}


def baseline_python() -> tuple[Path | None, str]:
    """The interpreter of bench/.venv-pandas (built on first use), or None and the reason."""
    python = BASELINE_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = BASELINE_VENV / ".pyproject"
    wanted = (BENCH.parent / "pyproject.toml").read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python, ""
    print("building bench/.venv-pandas for the pandas baseline ...", file=sys.stderr, flush=True)
    try:
        venv.create(BASELINE_VENV, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-e", f"{BENCH.parent}[bench]"], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not build bench/.venv-pandas: {exc}"
    stamp.write_text(wanted)
    return python, ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=None)
    ap.add_argument("--quick", action="store_true", help="100,000 rows (unless --rows)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--regen", action="store_true")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    sizes = a.rows or ([100_000] if a.quick else [1_000_000])
    if importlib.util.find_spec("pandas"):
        print("warning: pandas is importable here, so pandera imports it and the tool starts "
              "slower than a user's install does", file=sys.stderr)
    baseline, why_not = baseline_python()
    logs = bd.DATA / "logs"
    entries: list[dict[str, Any]] = []
    failed = False
    for n in sizes:
        ds = bd.ensure_data("gifts", n, a.regen)
        spec = bd.write_spec(ds)
        assert spec is not None, "pipelines/legacy_gifts.yaml is missing"
        out = bd.DATA / f"compare_out_{n}"
        commands = {
            "etl dry run": ([sys.executable, "-c", TOOL, str(spec), str(out / "tool")],
                            "TOOL "),
            "pandas + pandera": ([str(baseline), str(BENCH / "baseline_pandas.py"),
                                  str(ds.path), str(out / "pandas")], "BASELINE "),
            "polars.read_csv floor": ([sys.executable, "-c", bd.FLOOR, str(ds.path), "utf8"],
                                      "FLOOR "),
        }
        for label, (cmd, prefix) in commands.items():
            entry: dict[str, Any] = {"rows": n, "file": ds.path.name, "what": label,
                                     "size_mb": ds.path.stat().st_size / 1e6}
            if label.startswith("pandas") and baseline is None:
                entry["note"] = why_not
                entries.append(entry)
                continue
            print(f"{ds.path.name}: {label} x{a.repeat} ...", file=sys.stderr, flush=True)
            stem = logs / f"compare_{label.split()[0].replace('.', '_')}_{n}"
            shutil.rmtree(out, ignore_errors=True)
            entry["result"] = bd.repeat(cmd, a.repeat, stem)
            entry["counts"] = _counts(stem, prefix)
            if not entry["result"]["ok"]:
                failed = True
                print(f"{label} failed: {entry['result']['error']}", file=sys.stderr)
            entries.append(entry)
        shutil.rmtree(out, ignore_errors=True)
    report = {
        "benchmark": "compare",
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "polars": bd._polars_version(),
                    "pandas": _baseline_version(baseline, "pandas"),
                    "pandera": _version("pandera")},
        "repeat": a.repeat,
        "results": entries,
    }
    bd.write_results(a.results, report)
    print(f"\n## Dry run vs pandas baseline vs floor ({a.repeat} runs: median wall, max peak)\n")
    print(table(entries))
    print(f"\nResults: {a.results}")
    return 1 if failed else 0


def table(entries: list[dict[str, Any]]) -> str:
    lines = ["| rows | what | wall s (median) | min s | max s | peak MB | x floor | valid "
             "| rejected |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    floors = {e["rows"]: e["result"]["median_s"] for e in entries
              if e["what"].startswith("polars") and e.get("result", {}).get("ok")}
    for e in entries:
        r = e.get("result")
        if r is None or not r["ok"]:
            note = e.get("note") or f"failed (exit {r['rc'] if r else '?'})"
            lines.append(f"| {e['rows']:,} | {e['what']} | {note} | | | | | | |")
            continue
        c = e.get("counts", {})
        ratio = r["median_s"] / floors[e["rows"]] if e["rows"] in floors else None
        lines.append(
            f"| {e['rows']:,} | {e['what']} | {r['median_s']:.2f} | {r['min_s']:.2f} "
            f"| {r['max_s']:.2f} | {r['peak_mb']:.0f} | {bd._fmt(ratio, 1)} "
            f"| {c.get('valid', '')} | {c.get('rejected', '')} |")
    return "\n".join(lines)


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed
        return None


def _baseline_version(python: Path | None, module: str) -> str | None:
    """A package's version in the baseline's virtualenv."""
    if python is None:
        return None
    code = f"from importlib.metadata import version; print(version({module!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


if __name__ == "__main__":
    sys.exit(main())
