"""Dagster: one asset per organization and pipeline, run in parallel, each org within its own
API budget. Load with `dagster dev -f examples/dagster_orgs/definitions.py` (docs/api.md).

Why Dagster: one `pip install dagster` (about 50 s, no database or scheduler service to run for
a first try), assets map one-to-one to "this organization's contacts are imported", and
`materialize()` runs them in-process for a test. Airflow needs a metadata database and a
scheduler before the first task runs.

Each organization gets its own key (read from the environment variable its entry names), its
own `requests_per_hour`, and its own ledger and report folder under state_dir/<org>/: two
organizations importing the same spec never share a ledger, so neither skips the other's rows.
Within one organization the specs run in the order listed (gifts after their contacts); the
organizations are independent assets, so the multiprocess executor runs them side by side.
"""

# No `from __future__ import annotations`: Dagster reads the `context` annotation at runtime.
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetExecutionContext, AssetsDefinition, Definitions, Failure, asset

import etl

HERE = Path(__file__).resolve().parent
FAILED = 2  # exit codes from 2 up: the spec, a file, the key, the ledger; 1 is rejected rows


@dataclass(frozen=True)
class Organization:
    name: str
    token_env: str
    requests_per_hour: float
    specs: tuple[Path, ...]
    state_dir: Path
    base_url: str = "https://api.virtuoussoftware.com"


def load_organizations(path: Path = HERE / "organizations.yaml") -> list[Organization]:
    """The organizations file: paths relative to it; names become asset names."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    state_dir = (path.parent / data.get("state_dir", ".etl-orgs")).resolve()
    orgs = []
    for entry in data["organizations"]:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", entry["name"]):
            raise ValueError(f"{path}: organization name {entry['name']!r}: use a-z, 0-9, _")
        orgs.append(Organization(
            name=entry["name"], token_env=entry["token_env"],
            requests_per_hour=float(entry["requests_per_hour"]),
            specs=tuple((path.parent / s).resolve() for s in entry["specs"]),
            state_dir=state_dir / entry["name"],
            base_url=entry.get("base_url", Organization.base_url)))
    return orgs


def import_organization(org: Organization, log: Any = None) -> dict[str, Any]:
    """Run the organization's specs in order with its key and budget; the metadata Dagster
    shows. Rejected rows (exit 1) are reported, not fatal: they are in rejects.csv to fix."""
    token = os.environ.get(org.token_env, "")
    if not token:
        raise Failure(f"{org.name}: set the API key in {org.token_env}")
    results: dict[str, Any] = {}
    for spec in org.specs:
        summary = etl.run(spec, token=token, base_url=org.base_url,
                          requests_per_hour=org.requests_per_hour,
                          ledger=org.state_dir / "ledgers" / f"{spec.stem}.sqlite",
                          out=org.state_dir / "reports" / spec.stem,
                          notify=log.info if log else None, handle_signals=False)
        results[spec.stem] = {"exit_code": summary.exit_code, "reason": summary.exit_reason,
                              "counts": summary.counts, "requests": summary.requests,
                              "report_dir": summary.report_dir}
        if summary.exit_code >= FAILED:  # later specs depend on this one: stop here
            raise Failure(f"{org.name}/{spec.stem}: {summary.exit_reason}", metadata=results)
    return results


def organization_asset(org: Organization) -> AssetsDefinition:
    @asset(name=f"crm_import_{org.name}", group_name="crm_imports",
           description=f"{org.name}: {', '.join(s.stem for s in org.specs)} into CRM+")
    def crm_import(context: AssetExecutionContext) -> dict[str, Any]:
        results = import_organization(org, context.log)
        context.add_output_metadata({spec: str(r["counts"]) for spec, r in results.items()})
        return results

    return crm_import


def build_definitions(orgs: list[Organization]) -> Definitions:
    return Definitions(assets=[organization_asset(org) for org in orgs])


defs = build_definitions(load_organizations())
