#!/usr/bin/env python3
"""Where the dry run's time goes: wall time per stage of one `etl validate`, in-process.

    python bench/profile_dry_run.py                  # 1M-row gifts and contacts (bench/data)
    python bench/profile_dry_run.py --quick          # 100k rows
    python bench/profile_dry_run.py --files gifts --rows 1000000

It runs the CLI's dry run (`dry_run(..., keep_payloads=False)`, payloads streamed to
payloads.jsonl) once on the generated file of bench_dry_run.py, with a timer around each named
stage below. A stage's "self s" is its wall time minus the timed stages it called, so the
column adds up to the whole run ("other" is what no timer covers: the CLI, Python start-up is
not included). "self CPU s" is the CPU time of the whole process (polars' threads, the
payloads.jsonl writer's thread) over the same spans. Stages timed in another thread (the
file-wide pass, the block parser) overlap the main thread's: there the column adds up to more
than the wall time, and a main-thread stage's wall time includes its waits for them. Batches
are validated one at a time here (`--in-flight 1`; the tool validates two at once, and their
stages would overlap in the timers). cProfile is no help here: nearly all the time is inside
polars' `collect`.
Prints a markdown table; writes bench/results/profile_<kind>_<rows>.json.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_dry_run as bd  # noqa: E402

# (module, function, label): each function is timed wherever it is referenced from etl modules.
STAGES = [
    ("etl.read.textfile", "scan_digest", "read: sha256 + BOM scan"),
    ("etl.read.textfile", "utf8_file", "read: transcode to UTF-8 (legacy encodings)"),
    ("etl.read.csvlayout", "record_layout", "read: record layout (ragged rows)"),
    ("etl.read.sources", "open_source", "read: open (checks, count, layout)"),
    ("etl.read.sourcefile", "SourceFile.batches", "read: parse batches"),
    ("etl.prepare.runner", "_file_wide", "validate: file-wide pass (ids, unique; a thread)"),
    ("etl.prepare.lookups", "Lookups.tables_for", "transform: distinct-value lookups"),
    ("etl.prepare.runner", "_compute", "transform: mappings"),
    ("etl.prepare.validate", "_pandera_failures", "validate: pandera"),
    ("etl.prepare.validate", "_with_values", "validate: attach raw values"),
    ("etl.prepare.validate", "failures", "validate: rules"),
    ("etl.prepare.runner", "_reject_rows", "rejects: rows with reasons"),
    ("etl.prepare.payload", "scan_text", "payload: escapes and control chars"),
    ("etl.prepare.payload", "escape_needs", "payload: escapes and control chars"),
    ("etl.prepare.runner", "_validate_batch", "payload: build JSON + keys"),
    ("etl.prepare.donors", "from_batch", "report: donor keys per batch"),
    ("etl.prepare.donors", "file_block", "report: possible duplicate donors"),
    ("etl.prepare.donors", "FileDonors.add", "report: donor hashes kept"),
    ("etl.prepare.kept", "Kept.add", "report: samples and counts kept"),
    ("etl.report.write", "RejectSpool.write", "write: rejects spooled"),
    ("etl.report.write", "PayloadWriter.write", "write: payloads.jsonl"),
    ("etl.report.write", "write_report", "write: report.json, rejects.csv, HTML"),
    ("etl.prepare.runner", "validate_pipeline", "(validate_pipeline)"),
    ("etl.run.dry_run", "dry_run", "(dry_run)"),
]


class Timers:
    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.children: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.cpu: dict[str, float] = defaultdict(float)
        self.cpu_children: dict[str, float] = defaultdict(float)
        self._local = threading.local()  # each thread's own stack of timed stages

    @property
    def stack(self) -> list[str]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        stack: list[str] = self._local.stack
        return stack

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        timers = self

        def timed_call(call: Callable[[], Any]) -> Any:
            timers.stack.append(label)
            t, c = time.perf_counter(), time.process_time()
            try:
                return call()
            finally:
                spent, cpu = time.perf_counter() - t, time.process_time() - c
                timers.stack.pop()
                timers.total[label] += spent
                timers.cpu[label] += cpu
                timers.calls[label] += 1
                if timers.stack:
                    timers.children[timers.stack[-1]] += spent
                    timers.cpu_children[timers.stack[-1]] += cpu

        if _is_generator(fn):
            @functools.wraps(fn)
            def gen(*args: Any, **kwargs: Any) -> Any:
                it = fn(*args, **kwargs)
                while True:
                    try:
                        item = timed_call(lambda: next(it))
                    except StopIteration:
                        return
                    yield item
            return gen

        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            return timed_call(lambda: fn(*args, **kwargs))
        return plain


def _is_generator(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


def install(timers: Timers) -> None:
    """Wrap every stage function, in its own module and wherever an etl module imported it
    (a function this checkout does not have is left out: the script also profiles older
    commits, with PYTHONPATH=<a worktree of one>)."""
    import etl.cli.app
    import etl.run.dry_run  # noqa: F401

    for module_name, qualname, label in STAGES:
        module = importlib.import_module(module_name)
        if "." in qualname:  # a method
            cls_name, meth = qualname.split(".")
            cls = getattr(module, cls_name)
            if meth not in cls.__dict__:
                continue
            original = cls.__dict__[meth]
            setattr(cls, meth, timers.wrap(label, original))
            continue
        original = getattr(module, qualname, None)
        if original is None:
            continue
        inner = getattr(original, "__wrapped__", None)
        if inner is not None and _is_generator(inner):  # a @contextmanager: time its set-up
            from contextlib import contextmanager  # and tear-down, not the body it wraps

            wrapped = contextmanager(timers.wrap(label, inner))
        else:
            wrapped = timers.wrap(label, original)
        for mod in list(sys.modules.values()):
            if getattr(mod, "__name__", "").startswith("etl") and \
                    getattr(mod, qualname, None) is original:
                setattr(mod, qualname, wrapped)


class InlineExecutor:
    """A stand-in for ThreadPoolExecutor that runs each task at once in the caller's thread
    (`--serial`): no stage overlaps another, so the process's CPU time over a stage's span is
    that stage's own (polars' threads included)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # the caller sees it at .result(), as with a thread
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


def serialize() -> None:
    """Every thread pool of the read and prepare stages runs its tasks inline."""
    for name in ("etl.read.csvlayout", "etl.read.sourcefile", "etl.prepare.runner"):
        importlib.import_module(name).ThreadPoolExecutor = InlineExecutor  # type: ignore[attr-defined]


def profile(kind: str, rows: int, in_flight: int, serial: bool = False) -> dict[str, Any]:
    from etl.prepare import runner

    runner.IN_FLIGHT = 1 if serial else in_flight  # 1: two batches' stages do not overlap
    if serial:
        serialize()
    ds = bd.ensure_data(kind, rows, regen=False)
    spec = bd.write_spec(ds)
    assert spec is not None
    out = bd.DATA / f"profile_{kind}_{rows}"
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    timers = Timers()
    install(timers)
    from etl.run.dry_run import dry_run
    from etl.spec.pipeline import open_pipeline

    t = time.perf_counter()
    pipeline = open_pipeline(spec, out_dir=out)
    result = dry_run(pipeline, keep_payloads=False).result
    wall = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    stages = []
    for label in dict.fromkeys(label for _, _, label in STAGES):  # a label may name two
        if label in timers.calls:
            own = timers.total[label] - timers.children[label]
            stages.append({"stage": label, "calls": timers.calls[label],
                           "total_s": timers.total[label], "self_s": own,
                           "self_cpu_s": timers.cpu[label] - timers.cpu_children[label]})
    covered = sum(s["self_s"] for s in stages)
    stages.append({"stage": "other (spec, CLI glue)", "calls": 1, "total_s": wall - covered,
                   "self_s": wall - covered, "self_cpu_s": None})
    return {"kind": kind, "rows": rows, "in_flight": runner.IN_FLIGHT, "serial": serial,
            "wall_s": wall, "cpu_s": sum(s["self_cpu_s"] or 0 for s in stages),
            "valid": result.valid,
            "rejected": result.rejected, "stages": stages}


SERIAL = "; every stage in turn, in one thread: each one's CPU is its own"


def table(report: dict[str, Any]) -> str:
    lines = [f"### {report['kind']}, {report['rows']:,} rows: {report['wall_s']:.2f} s in-process "
             f"({report['valid']:,} valid, {report['rejected']:,} rejected; "
             f"{report['in_flight']} batch(es) at once{SERIAL if report.get('serial') else ''})",
             "",
             "| stage | calls | self s | self CPU s | incl. s |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for s in sorted(report["stages"], key=lambda s: -s["self_s"]):
        cpu = "" if s.get("self_cpu_s") is None else f"{s['self_cpu_s']:.2f}"
        lines.append(f"| {s['stage']} | {s['calls']} | {s['self_s']:.2f} | {cpu} "
                     f"| {s['total_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="100,000 rows (unless --rows)")
    ap.add_argument("--files", nargs="+", choices=["contacts", "gifts"],
                    default=["contacts", "gifts"])
    ap.add_argument("--in-flight", type=int, default=1,
                    help="batches validated at once (the tool's default is 2; with 1, the "
                         "default here, a stage's time is its own, not two batches' overlap)")
    ap.add_argument("--serial", action="store_true",
                    help="run every stage in turn in one thread (the file-wide pass, the block "
                         "parser and the layout's workers too): each stage's CPU is its own, "
                         "and their sum is the work a run must spread over the cores")
    a = ap.parse_args(argv)
    rows = a.rows or (100_000 if a.quick else 1_000_000)
    if len(a.files) > 1:  # one fresh process per file: timers and caches start clean
        import subprocess

        rc = 0
        for kind in a.files:
            rc |= subprocess.run([sys.executable, __file__, "--rows", str(rows), "--files",
                                  kind, "--in-flight", str(a.in_flight),
                                  *(["--serial"] if a.serial else [])]).returncode
        return rc
    report = profile(a.files[0], rows, a.in_flight, a.serial)
    tag = "_serial" if a.serial else ""
    path = BENCH / "results" / f"profile_{a.files[0]}_{rows}{tag}.json"
    bd.write_results(path, report)
    print(table(report))
    print(f"\nResults: {path.relative_to(BENCH.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
