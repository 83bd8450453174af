"""A second tool for the dry-run benchmark: frictionless validating the same file.

    python, why_not = second_tool.ensure_venv()        # bench/.venv-frictionless, built once
    cmd = second_tool.command("gifts", csv_path, python, out_dir)

The command runs frictionless (Python API, in its own venv) on the generated file with a Table
Schema and a checklist, bench/second_tool/legacy_{gifts,contacts}.{schema,checklist}.json, with
no error limit (the CLI stops at 1,000 errors by default), writes frictionless' report to
OUT_DIR/report.json (what `frictionless validate --json` prints) and prints one line:
`SECOND rows=<n> errors=<n> invalid_rows=<n>` (rows: the data rows frictionless says it read,
so a short read shows), then a `SECOND-TIMING` line on stderr. Exit 0 when frictionless read the
whole table (valid or not), 2 when it reported a file, header or table error instead, 1 when
the driver itself failed (a traceback).

What frictionless expresses of pipelines/legacy_{gifts,contacts}.yaml and the built-in rules:
- required: GiftID, DonorID (contact_required), GiftDate, Amount, PayMethod; contacts DonorID;
- unique: GiftID, DonorID (frictionless flags the 2nd and later copies, our reject_all rejects
  every copy: it finds fewer rows);
- GiftDate a date in %m/%d/%Y, from 1900-01-01 (rule `earliest`), not after today (the driver
  sets `maximum` to today's date: a static file cannot say "today");
- Amount and Fund2Amount numbers (bareNumber false strips "$", groupChar ","), Amount > 0
  (exclusiveMinimum) and <= 1,000,000; PayMethod and contacts DonorType as enums of the
  value_map keys; Currency enum USD/CAD, blank allowed (our default USD); Anonymous boolean Y/N;
- email syntax (format email, i.e. the `validators` package, not our regex) on DonorEmail and
  Email; State max 3 and Title max 20 characters; null_values ("" N/A NULL; for contacts every
  letter case of N/A and NULL, as null_values_ignore_case: frictionless has no such switch);
- designation_positive (Fund2Amount > 0 and below Amount, so Fund's remainder is positive) and
  name_required (FirstName and LastName, or OrgName) as `row-constraint` checklist formulas;
  designations_sum holds by construction (Fund gets the remainder).
- frictionless adds its own structure checks (blank rows, missing/extra cells, header labels).

What it cannot express, so its number is validation-only work and a lower bound on ours:
- transforms before the checks: no trim/upper/collapse_whitespace/title/normalize_email/
  normalize_phone/postal_code/country_iso; frictionless checks the raw cell ("usd" would fail
  the Currency enum, " x@y.org" fails format email where we trim first);
- parse_amount's strictness: one field has one groupChar/decimalChar, and groupChar "," is
  removed anywhere, so "7.073,96" reads as 7.07396 and "50,00" as 5000 (we reject both: decimal
  mark "."), "1e3" and "1000.004" pass (we reject exponents and more than 2 decimals), and
  "(25.00)" reads as 25 (we read -25 and reject it as not positive);
- value maps (CC -> Credit ...), defaults, constants, `when` fields, tags splitting: no output
  values at all; the control_chars rule (a pattern on every text field would do it; not added);
- everything after validation: no payloads, no rejects.csv, no report.html, no control totals,
  no duplicate-donor grouping, no request plan. It writes only its report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCHEMAS = BENCH / "second_tool"
VENV = BENCH / ".venv-frictionless"
REQUIREMENT = "frictionless>=5.18"
ENCODING = {"gifts": "utf-8-sig", "contacts": "cp1252"}  # as bench_dry_run.ensure_data writes

# argv: schema, checklist, csv, encoding, out dir. Prints the SECOND line; exits 0 or 2.
DRIVER = r"""
import datetime as dt, json, sys, time
from pathlib import Path
from frictionless import Checklist, Resource, system
system.trusted = True  # absolute paths (the CLI's --trusted)
schema_path, checklist_path, csv_path, encoding, out = sys.argv[1:6]
t0 = time.perf_counter()
schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
for field in schema["fields"]:  # rule not_future: "today" cannot be written in the file
    if field["name"] == "GiftDate":
        field["constraints"]["maximum"] = dt.date.today().strftime("%m/%d/%Y")
resource = Resource.from_descriptor({  # v2: exclusiveMinimum is a Data Package v2 constraint
    "$schema": "https://datapackage.org/profiles/2.0/dataresource.json", "name": "legacy",
    "type": "table", "path": csv_path, "format": "csv", "encoding": encoding,
    "dialect": {"delimiter": ","}, "schema": schema})
report = resource.validate(Checklist.from_descriptor(checklist_path), limit_errors=0)
t1 = time.perf_counter()
Path(out).mkdir(parents=True, exist_ok=True)
Path(out, "report.json").write_text(report.to_json(), encoding="utf-8")
t2 = time.perf_counter()
task = report.tasks[0]
errors = task.errors + report.errors
rows = {e.row_number for e in errors if getattr(e, "row_number", None) is not None}
other = [e for e in errors if getattr(e, "row_number", None) is None]
print(f"SECOND rows={task.stats.get('rows', 0)} errors={len(errors)} invalid_rows={len(rows)}")
print(f"SECOND-TIMING validate_s={t1 - t0:.2f} report_s={t2 - t1:.2f} other_errors={len(other)}"
      f" warnings={len(task.warnings)}", file=sys.stderr)
for e in other[:5]:
    print(f"  {e.type}: {e.message}", file=sys.stderr)
sys.exit(2 if other else 0)
"""


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> tuple[Path | None, str]:
    """The interpreter of bench/.venv-frictionless (built on first use), or None and the reason."""
    python = venv_python()
    stamp = VENV / ".requirement"
    if python.exists() and stamp.exists() and stamp.read_text() == REQUIREMENT:
        return python, ""
    print("building bench/.venv-frictionless for the second tool ...", file=sys.stderr,
          flush=True)
    try:
        venv.create(VENV, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        REQUIREMENT], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not build bench/.venv-frictionless: {exc}"
    stamp.write_text(REQUIREMENT)
    return python, ""


def command(kind: str, csv_path: Path, python: Path, out_dir: Path) -> list[str]:
    """The command that validates `csv_path` (kind "gifts" or "contacts") with frictionless."""
    if kind not in ENCODING:
        raise ValueError(f"kind must be one of {sorted(ENCODING)}, not {kind!r}")
    stem = SCHEMAS / f"legacy_{kind}"
    return [str(python), "-c", DRIVER, f"{stem}.schema.json", f"{stem}.checklist.json",
            str(csv_path), ENCODING[kind], str(out_dir)]
