#!/usr/bin/env python3
"""Benchmark: the dry run (`etl validate SPEC --out DIR --quiet`) beside the floor.

    python bench/bench_dry_run.py                     # 1M-row contacts and gifts files
    python bench/bench_dry_run.py --quick             # 100k rows
    python bench/bench_dry_run.py --rows 1000000 10000000
    python bench/bench_dry_run.py --no-tool           # the floor only
    python bench/bench_dry_run.py --tool-cmd "{etl} validate {spec} --out {out} --quiet"

The floor is what any Python tool must pay to read the same file: a fresh interpreter that
imports polars and runs `polars.read_csv(path, infer_schema=False, encoding=...)` (the cp1252
contacts file with encoding="utf8-lossy", polars reading only UTF-8). Its in-process read time
is reported too ("read s").

Every measurement is one fresh child: a tiny `python -c` wrapper starts the command, times it
(wall clock around the whole process, interpreter start-up included) and prints the peak RSS of
that command from its own `getrusage(RUSAGE_CHILDREN).ru_maxrss`, so each measurement gets its
own peak. Each is repeated (--repeat, default 3): the table shows the median wall time and the
largest peak.

Generated data (bench/generate.py, seed 7) is cached in bench/data/ (git-ignored) and reused
while the generator and the parameters are unchanged. The specs are copies of
pipelines/legacy_contacts.yaml and pipelines/legacy_gifts.yaml with `source.path` set to the
generated file, written to bench/data/. Results: bench/results/dry_run.json (overwritten by
each run) and a markdown table on stdout. `etl validate` exits 1 when rows are rejected, which
dirty data always has: exit codes 0 and 1 both count as a completed dry run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
RESULTS = BENCH / "results" / "dry_run.json"
sys.path.insert(0, str(BENCH))

import generate  # noqa: E402  (bench/generate.py, next to this file)

SEED = 7
DIRT = 0.05
TOOL_OK = (0, 1)  # 1 = some rows rejected: still a complete dry run

# The wrapper that runs one measurement: argv = [json command, log file]. It prints one JSON line.
WRAPPER = r"""
import json, resource, subprocess, sys, time
cmd, log = json.loads(sys.argv[1]), sys.argv[2]
with open(log, "wb") as fh:
    t = time.perf_counter()
    try:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL).returncode
    except OSError as exc:
        fh.write(f"cannot start {cmd[0]}: {exc}".encode())
        rc = 127
    wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall_s": wall, "peak_kb": ru.ru_maxrss,
                  "cpu_s": ru.ru_utime + ru.ru_stime}))
"""

# The floor: read the file with polars, nothing else; prints its in-process read time.
FLOOR = r"""
import sys, time
t0 = time.perf_counter()
import polars as pl
t1 = time.perf_counter()
df = pl.read_csv(sys.argv[1], infer_schema=False, encoding=sys.argv[2])
t2 = time.perf_counter()
print(f"FLOOR rows={df.height} cols={df.width} import_s={t1 - t0:.4f} read_s={t2 - t1:.4f}")
"""


@dataclass
class Dataset:
    name: str  # contacts | gifts
    spec: Path  # the pipeline spec it belongs to
    path: Path
    rows: int
    encoding: str  # the file's encoding
    floor_encoding: str  # what polars.read_csv is given



def write_results(path: Path, report: dict[str, Any]) -> None:
    """The results JSON, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)

def _generator_digest() -> str:
    return hashlib.sha256((BENCH / "generate.py").read_bytes()).hexdigest()[:16]


def ensure_data(kind: str, rows: int, regen: bool) -> Dataset:
    """Generate (or reuse) bench/data/legacy_<kind>_<rows>.csv."""
    DATA.mkdir(parents=True, exist_ok=True)
    if kind == "contacts":
        encoding, floor_enc = "cp1252", "utf8-lossy"
    else:
        encoding, floor_enc = "utf-8-sig", "utf8"
    path = DATA / f"legacy_{kind}_{rows}.csv"
    meta_path = path.with_suffix(".meta.json")
    meta = {"kind": kind, "rows": rows, "seed": SEED, "dirt": DIRT, "encoding": encoding,
            "generator": _generator_digest()}
    fresh = (
        not regen and path.exists() and meta_path.exists()
        and json.loads(meta_path.read_text()) == meta
    )
    if not fresh:
        t = time.perf_counter()
        print(f"generating {path.relative_to(ROOT)} ...", file=sys.stderr, flush=True)
        if kind == "contacts":
            generate.write_contacts(path, rows, SEED, DIRT, encoding)
        else:
            generate.write_gifts(path, rows, rows, SEED, DIRT, encoding)
        meta_path.write_text(json.dumps(meta))
        print(f"  {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    spec = ROOT / "pipelines" / f"legacy_{kind}.yaml"
    return Dataset(kind, spec, path, rows, encoding, floor_enc)


def write_spec(ds: Dataset) -> Path | None:
    """A copy of the pipeline spec reading the generated file; None if the spec is missing."""
    if not ds.spec.exists():
        return None
    spec: dict[str, Any] = yaml.safe_load(ds.spec.read_text(encoding="utf-8"))
    spec.setdefault("source", {})["path"] = str(ds.path.resolve())
    out = DATA / f"{ds.spec.stem}_{ds.rows}.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def measure(cmd: list[str], log: Path) -> dict[str, Any]:
    """One fresh child: run `cmd` under the wrapper, return rc, wall_s, peak_kb, cpu_s."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, json.dumps(cmd), str(log)],
        capture_output=True, text=True, check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    floor_line = [ln for ln in log.read_text(errors="replace").splitlines()
                  if ln.startswith("FLOOR ")]
    if floor_line:
        fields = dict(kv.split("=") for kv in floor_line[-1].split()[1:])
        result["read_s"] = float(fields["read_s"])
        result["import_s"] = float(fields["import_s"])
        result["rows_read"] = int(fields["rows"])
    return result


def repeat(cmd: list[str], n: int, log_stem: Path, ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
    runs = []
    for k in range(n):
        log = log_stem.with_name(f"{log_stem.name}.{k}.log")
        r = measure(cmd, log)
        runs.append(r)
        if r["rc"] not in ok:
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            return {"ok": False, "rc": r["rc"], "runs": runs, "log": str(log),
                    "error": "\n".join(tail)}
    walls = [r["wall_s"] for r in runs]
    out: dict[str, Any] = {
        "ok": True,
        "rc": runs[-1]["rc"],
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "peak_mb": max(r["peak_kb"] for r in runs) / 1024,
        "runs": runs,
    }
    if "read_s" in runs[0]:
        out["read_median_s"] = statistics.median(r["read_s"] for r in runs)
    return out


def tool_command(template: str | None, spec: Path, out: Path, ds: Dataset) -> list[str]:
    etl = Path(sys.executable).parent / "etl"
    if not etl.exists():
        etl = ROOT / ".venv" / "bin" / "etl"
    if template is None:
        return [str(etl), "validate", str(spec), "--out", str(out), "--quiet"]
    return [part.format(etl=etl, spec=spec, out=out, file=ds.path, python=sys.executable)
            for part in shlex.split(template)]


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| file | rows | size MB | floor s | floor read s | dry run s | ratio | peak MB "
            "| floor peak MB |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        fl, tl = r["floor"], r.get("tool")
        if tl is None:
            dry, peak = r.get("tool_note", "skipped"), ""
        elif not tl["ok"]:
            dry, peak = f"failed (exit {tl['rc']})", ""
        else:
            dry, peak = _fmt(tl["median_s"]), f"{tl['peak_mb']:.0f}"
        lines.append(
            f"| {r['file']} | {r['rows']:,} | {r['size_mb']:.1f} | {_fmt(fl['median_s'])} "
            f"| {_fmt(fl.get('read_median_s'))} | {dry} | {_fmt(r.get('ratio'), 1)} | {peak} "
            f"| {fl['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=None,
                    help="rows per file, one or more sizes (default 1000000)")
    ap.add_argument("--quick", action="store_true", help="100,000 rows (unless --rows)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--files", nargs="+", choices=["contacts", "gifts"],
                    default=["contacts", "gifts"])
    ap.add_argument("--tool-cmd", default=None,
                    help="command template instead of `etl validate {spec} --out {out} --quiet`;"
                         " fields {etl} {spec} {out} {file} {python}")
    ap.add_argument("--no-tool", action="store_true", help="measure the floor only")
    ap.add_argument("--regen", action="store_true", help="regenerate the data files")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    sizes = a.rows or ([100_000] if a.quick else [1_000_000])

    startup = repeat([sys.executable, "-c", "import polars"], a.repeat,
                     DATA / "logs" / "startup")
    rows_out: list[dict[str, Any]] = []
    failed = False
    for n in sizes:
        for kind in a.files:
            ds = ensure_data(kind, n, a.regen)
            size_mb = ds.path.stat().st_size / 1e6
            print(f"{ds.path.name}: floor x{a.repeat} ...", file=sys.stderr, flush=True)
            floor = repeat([sys.executable, "-c", FLOOR, str(ds.path), ds.floor_encoding],
                           a.repeat, DATA / "logs" / f"floor_{kind}_{n}")
            if not floor["ok"]:
                failed = True
                print(floor["error"], file=sys.stderr)
            entry: dict[str, Any] = {
                "file": ds.path.name, "kind": kind, "rows": n, "size_mb": size_mb,
                "encoding": ds.encoding, "floor_encoding": ds.floor_encoding, "floor": floor,
                "tool": None,
            }
            spec = None if a.no_tool else write_spec(ds)
            if a.no_tool:
                entry["tool_note"] = "skipped"
            elif spec is None:
                entry["tool_note"] = f"no {ds.spec.relative_to(ROOT)}"
            else:
                out = DATA / f"out_{kind}_{n}"
                cmd = tool_command(a.tool_cmd, spec, out, ds)
                entry["tool_cmd"] = cmd
                print(f"{ds.path.name}: dry run x{a.repeat} ...", file=sys.stderr, flush=True)
                shutil.rmtree(out, ignore_errors=True)
                tool = repeat(cmd, a.repeat, DATA / "logs" / f"dry_run_{kind}_{n}", TOOL_OK)
                shutil.rmtree(out, ignore_errors=True)
                entry["tool"] = tool
                if not tool["ok"]:
                    failed = True
                    print(f"dry run failed (exit {tool['rc']}), log {tool['log']}:\n"
                          f"{tool['error']}", file=sys.stderr)
                elif floor["ok"]:
                    entry["ratio"] = tool["median_s"] / floor["median_s"]
            rows_out.append(entry)

    report = {
        "benchmark": "dry_run",
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "polars": _polars_version(),
        },
        "repeat": a.repeat,
        "seed": SEED,
        "dirt": DIRT,
        "startup_s": startup.get("median_s"),
        "startup_peak_mb": startup.get("peak_mb"),
        "results": rows_out,
    }
    write_results(a.results, report)

    print(f"\n## Dry run vs floor ({a.repeat} runs each: median wall, max peak RSS)\n")
    print(table(rows_out))
    print(f"\npython + `import polars` alone: {_fmt(startup.get('median_s'))} s, "
          f"{_fmt(startup.get('peak_mb'), 0)} MB. Results: {a.results}")
    return 1 if failed else 0


def _polars_version() -> str:
    import polars

    return polars.__version__


if __name__ == "__main__":
    sys.exit(main())
