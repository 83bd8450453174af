#!/usr/bin/env python3
"""Benchmark: the dry run (`etl validate SPEC --out DIR --quiet`) beside two floors.

    python bench/bench_dry_run.py                     # 1M-row contacts and gifts files
    python bench/bench_dry_run.py --quick             # 100k rows
    python bench/bench_dry_run.py --rows 10000000 --files gifts --repeat 1
    python bench/bench_dry_run.py --no-tool           # the floors only
    python bench/bench_dry_run.py --second-tool 0     # without frictionless
    python bench/bench_dry_run.py --tool-cmd "{etl} validate {spec} --out {out} --quiet"

The read floor is what any Python tool must pay to read the same file: a fresh interpreter
that imports polars and runs `polars.read_csv(path, infer_schema=False, encoding=...)` (the
cp1252 contacts file with encoding="utf8-lossy", polars reading only UTF-8).

The I/O floor is what any tool that reads this file and writes these payloads must pay: a fresh
interpreter reads it with polars (the cp1252 file decoded strictly by Python first, as a correct
tool must), builds the payload's fields as one nested struct per row with light casts, and
writes them with `write_ndjson` (IO_FLOOR below). The "× I/O floor" column is the dry run's
median over the I/O floor's median.

frictionless (bench/second_tool.py, in bench/.venv-frictionless) validates the same file with
an equivalent Table Schema in the first `--second-tool` rounds (default 1; only files of at
most 1M rows): it only validates, so its ratio reads "how much slower at less work".

Every measurement is one fresh child: a tiny `python -c` wrapper starts the command, times it
(wall clock around the whole process, interpreter start-up included) and prints the peak RSS of
that command from its own `getrusage(RUSAGE_CHILDREN).ru_maxrss`, so each measurement gets its
own peak. The commands run in rounds (read floor, I/O floor, dry run, frictionless; --repeat
rounds, default 3), with `os.sync()` before each, so that neither a change of load nor the
write-back of the previous command's output falls on one of them: the table shows the median
wall time and the largest peak.

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

# The I/O floor: what any tool that reads this file and writes these payloads must pay. A fresh
# interpreter reads the file with polars (a legacy encoding decoded strictly first, as a correct
# tool must), builds the payload's fields as one nested struct per row with light casts, and
# writes them with `write_ndjson`. No checks, no rejects, no report. argv: kind, path, encoding,
# out file.
IO_FLOOR = r"""
import io, sys, time
t0 = time.perf_counter()
import polars as pl
t1 = time.perf_counter()
kind, path, encoding, out = sys.argv[1:5]
if encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig"):
    df = pl.read_csv(path, infer_schema=False)
else:
    with open(path, encoding=encoding, newline="") as fh:
        df = pl.read_csv(io.BytesIO(fh.read().encode()), infer_schema=False)
c = pl.col
money = lambda name: c(name).str.replace_all(r"[$,\s]", "").cast(pl.Float64, strict=False)
if kind == "gifts":
    fields = [
        pl.lit("LegacyCRM").alias("transactionSource"), c("GiftID").alias("transactionId"),
        money("Amount").alias("amount"),
        c("GiftDate").str.to_date("%m/%d/%Y", strict=False).alias("giftDate"),
        c("PayMethod").alias("giftType"), c("Currency").str.to_uppercase().alias("currencyCode"),
        c("Segment").alias("segment"), c("CheckNo").alias("checkNumber"), c("Memo").alias("notes"),
        (c("Anonymous") == "Y").alias("isPrivate"),
        pl.struct(c("DonorID").alias("referenceId"), c("DonorFirst").alias("firstname"),
                  c("DonorLast").alias("lastname"),
                  c("DonorEmail").str.to_lowercase().alias("email")).alias("contact"),
        # concat_arr, not concat_list: polars 2.1's concat_list of structs costs 1.8 s per 1M
        # rows, concat_arr 0.09 s, and both write the same JSON array.
        pl.concat_arr(
            pl.struct(c("Fund").alias("code"), money("Amount").alias("amountDesignated")),
            pl.struct(c("Fund2").alias("code"), money("Fund2Amount").alias("amountDesignated")),
        ).alias("designations"),
    ]
else:
    fields = [
        pl.lit("LegacyCRM").alias("referenceSource"), c("DonorID").alias("referenceId"),
        c("DonorType").alias("contactType"), c("OrgName").alias("name"), c("Title").alias("title"),
        c("FirstName").alias("firstName"), c("LastName").alias("lastName"),
        c("Email").str.to_lowercase().alias("email"),
        pl.when(c("Email").is_not_null()).then(pl.lit("Home Email")).alias("emailType"),
        c("Phone").alias("phone"),
        pl.when(c("Phone").is_not_null()).then(pl.lit("Home Phone")).alias("phoneType"),
        c("Address1").alias("address1"), c("Address2").alias("address2"), c("City").alias("city"),
        c("State").str.to_uppercase().alias("state"), c("Zip").str.zfill(5).alias("postal"),
        c("Country").alias("country"),
        c("Tags").str.replace_all("|", ";", literal=True).alias("tags"),
        pl.lit("LEGACY-MIGRATION").alias("originSegmentCode"),
    ]
payloads = df.select(fields)
payloads.write_ndjson(out)
t2 = time.perf_counter()
print(f"FLOOR rows={payloads.height} cols={df.width} import_s={t1 - t0:.4f} "
      f"read_s={t2 - t1:.4f}")
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


def summarize(runs: list[dict[str, Any]], log: Path, ok: tuple[int, ...]) -> dict[str, Any]:
    """Median wall, largest peak of a command's runs; or why it failed."""
    bad = [r for r in runs if r["rc"] not in ok]
    if bad:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        return {"ok": False, "rc": bad[0]["rc"], "runs": runs, "log": str(log),
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


def repeat(cmd: list[str], n: int, log_stem: Path, ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """`cmd` n times in a row (stops at the first failure)."""
    runs = []
    for k in range(n):
        log = log_stem.with_name(f"{log_stem.name}.{k}.log")
        os.sync()  # see rounds()
        runs.append(measure(cmd, log))
        if runs[-1]["rc"] not in ok:
            return summarize(runs, log, ok)
    return summarize(runs, log, ok)


@dataclass
class Command:
    argv: list[str]
    ok: tuple[int, ...] = (0,)
    times: int | None = None  # how many rounds it takes part in (None: all of them)
    before: Any = None  # called before each run (clears an output folder)


def rounds(cmds: dict[str, Command], n: int, log_dir: Path, tag: str) -> dict[str, Any]:
    """Run the commands in turn, n rounds: floor, I/O floor, dry run, floor, ... so that a
    change of machine load falls on all of them alike rather than on one."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cmds}
    logs: dict[str, Path] = {}
    failed: set[str] = set()
    for k in range(n):
        for name, cmd in cmds.items():
            if name in failed or (cmd.times is not None and k >= cmd.times):
                continue
            print(f"  {tag}: {name} run {k + 1}", file=sys.stderr, flush=True)
            if cmd.before is not None:
                cmd.before()
            # Flush what the previous command wrote (the I/O floor writes ~400 MB): otherwise
            # the kernel writes it back during the next measurement and bills it there.
            os.sync()
            logs[name] = log_dir / f"{name}_{tag}.{k}.log"
            runs[name].append(measure(cmd.argv, logs[name]))
            if runs[name][-1]["rc"] not in cmd.ok:
                failed.add(name)
    return {name: summarize(runs[name], logs[name], cmds[name].ok) for name in cmds}


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


def _median(entry: dict[str, Any], name: str) -> float | None:
    m = entry.get(name)
    return m["median_s"] if m and m.get("ok") else None


def _cell(entry: dict[str, Any], name: str) -> tuple[str, str]:
    """(median wall, peak MB) of one measurement, or why there is none."""
    m = entry.get(name)
    if m is None:
        return entry.get(f"{name}_note", "skipped"), ""
    if not m["ok"]:
        return f"failed (exit {m['rc']})", ""
    return _fmt(m["median_s"]), f"{m['peak_mb']:.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| file | rows | size MB | read floor s | I/O floor s | dry run s | × read floor "
            "| × I/O floor | dry run peak MB | read floor peak MB | I/O floor peak MB |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        floor, floor_peak = _cell(r, "floor")
        io, io_peak = _cell(r, "io_floor")
        dry, peak = _cell(r, "tool")
        lines.append(
            f"| {r['file']} | {r['rows']:,} | {r['size_mb']:.1f} | {floor} | {io} | {dry} "
            f"| {_fmt(r.get('ratio'), 1)} | {_fmt(r.get('io_ratio'), 1)} | {peak} "
            f"| {floor_peak} | {io_peak} |"
        )
    return "\n".join(lines)


def second_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| file | rows | dry run s | frictionless s | frictionless ÷ dry run "
             "| frictionless peak MB | frictionless found |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        wall, peak = _cell(r, "second")
        found = r.get("second_counts", "")
        lines.append(f"| {r['file']} | {r['rows']:,} | {_cell(r, 'tool')[0]} | {wall} "
                     f"| {_fmt(r.get('second_ratio'), 1)} | {peak} | {found} |")
    return "\n".join(lines)


def _second_tool(kind: str, ds: Dataset, out: Path) -> tuple[Command | None, str]:
    """frictionless (bench/second_tool.py) on the same file, or why not."""
    try:
        import second_tool  # bench/second_tool.py
    except ImportError as exc:
        return None, f"bench/second_tool.py: {exc}"
    python, why = second_tool.ensure_venv()
    if python is None:
        return None, why
    return Command(second_tool.command(kind, ds.path, python, out)), ""


def _counts(log: Path, prefix: str) -> str:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(prefix):
            return " ".join(line.split()[1:])
    return ""


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
    ap.add_argument("--no-tool", action="store_true", help="measure the floors only")
    ap.add_argument("--second-tool", type=int, default=1, metavar="N",
                    help="runs of frictionless on files of at most 1M rows (0: none; default 1)")
    ap.add_argument("--regen", action="store_true", help="regenerate the data files")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    sizes = a.rows or ([100_000] if a.quick else [1_000_000])
    logs = DATA / "logs"

    startup = repeat([sys.executable, "-c", "import polars"], a.repeat, logs / "startup")
    rows_out: list[dict[str, Any]] = []
    failed = False
    for n in sizes:
        for kind in a.files:
            ds = ensure_data(kind, n, a.regen)
            size_mb = ds.path.stat().st_size / 1e6
            io_out = DATA / f"io_floor_{kind}_{n}.jsonl"
            cmds = {
                "floor": Command([sys.executable, "-c", FLOOR, str(ds.path), ds.floor_encoding]),
                "io_floor": Command([sys.executable, "-c", IO_FLOOR, kind, str(ds.path),
                                     ds.encoding, str(io_out)]),
            }
            entry: dict[str, Any] = {
                "file": ds.path.name, "kind": kind, "rows": n, "size_mb": size_mb,
                "encoding": ds.encoding, "floor_encoding": ds.floor_encoding,
            }
            spec = None if a.no_tool else write_spec(ds)
            out = DATA / f"out_{kind}_{n}"
            if a.no_tool:
                entry["tool_note"] = "skipped"
            elif spec is None:
                entry["tool_note"] = f"no {ds.spec.relative_to(ROOT)}"
            else:
                cmd = tool_command(a.tool_cmd, spec, out, ds)
                entry["tool_cmd"] = cmd
                cmds["tool"] = Command(cmd, TOOL_OK,
                                       before=lambda o=out: shutil.rmtree(o, ignore_errors=True))
            if a.second_tool and n <= 1_000_000 and not a.no_tool:
                second, why = _second_tool(kind, ds, DATA / f"second_{kind}_{n}")
                if second is not None:
                    second.times = a.second_tool
                    cmds["second"] = second
                else:
                    entry["second_note"] = why
            print(f"{ds.path.name}: {', '.join(cmds)} x{a.repeat} ...", file=sys.stderr,
                  flush=True)
            measured = rounds(cmds, a.repeat, logs, f"{kind}_{n}")
            shutil.rmtree(out, ignore_errors=True)
            io_out.unlink(missing_ok=True)
            entry.update(measured)
            for name, m in measured.items():
                if not m["ok"]:
                    failed = True
                    print(f"{name} failed (exit {m['rc']}), log {m['log']}:\n{m['error']}",
                          file=sys.stderr)
            dry = _median(entry, "tool")
            if dry is not None:
                if _median(entry, "floor"):
                    entry["ratio"] = dry / entry["floor"]["median_s"]
                if _median(entry, "io_floor"):
                    entry["io_ratio"] = dry / entry["io_floor"]["median_s"]
                if _median(entry, "second"):
                    entry["second_ratio"] = entry["second"]["median_s"] / dry
                    entry["second_counts"] = _counts(logs / f"second_{kind}_{n}.0.log",
                                                     "SECOND ")
            rows_out.append(entry)

    report = {
        "benchmark": "dry_run",
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "polars": _polars_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "repeat": a.repeat,
        "seed": SEED,
        "dirt": DIRT,
        "startup_s": startup.get("median_s"),
        "startup_peak_mb": startup.get("peak_mb"),
        "results": rows_out,
    }
    write_results(a.results, report)

    print(f"\n## Dry run vs floors ({a.repeat} rounds: median wall, max peak RSS)\n")
    print(table(rows_out))
    if any("second" in r or "second_note" in r for r in rows_out):
        print("\n## Beside frictionless (same files, same rounds)\n")
        print(second_table(rows_out))
    print(f"\npython + `import polars` alone: {_fmt(startup.get('median_s'))} s, "
          f"{_fmt(startup.get('peak_mb'), 0)} MB. Load average at the end: "
          f"{os.getloadavg()[0]:.2f}. Results: {a.results}")
    return 1 if failed else 0


def _polars_version() -> str:
    import polars

    return polars.__version__


if __name__ == "__main__":
    sys.exit(main())
