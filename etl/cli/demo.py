"""The README's main job: `etl rehearse` on every sample pipeline, against one local sandbox.

Contacts first, then the legacy gifts, then the nightly drop, all in ONE sandbox; then its
nightly batch imports what was held, as CRM+ would overnight, and each pipeline is reconciled.
A fresh sandbox and fresh demo ledgers each time, so the demo can be run again and again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.cli.rehearse import open_rehearsal, render, write_report
from etl.run.rehearse import Rehearsal, rehearse
from etl.run.submit import RunSummary

PIPELINES = ("legacy_contacts", "legacy_gifts", "nightly_gifts_drop")


@dataclass
class Demo:
    """What the demo did: one run summary per pipeline, the nightly batch, the rehearsal."""

    summaries: list[RunSummary]
    batch: dict[str, Any]
    sandbox_url: str
    rehearsal: Rehearsal


def run_demo(root: Path, out_dir: Path, say: Callable[[str], None]) -> Demo:
    """Rehearse the sample pipelines under `root/pipelines`; reports to `out_dir/<name>/` and
    the combined one to `out_dir/rehearsal.json`."""
    from etl.sandbox.server import running_sandbox

    specs = [root / "pipelines" / f"{name}.yaml" for name in PIPELINES]
    # Time is compressed: the real API allows 5,000 requests an hour, the demo 20 a second;
    # the rehearsal reads that limit from the sandbox.
    with running_sandbox(rate_limit="20/second", organization_name="Sample Org") as sb:
        say(f"local CRM+ sandbox at {sb.base_url} (rate limit compressed to 20 requests/s)")
        result = rehearse(open_rehearsal(specs, out_dir, shared=False), sb.base_url,
                          sb.api_key, notify=say)
        url = sb.base_url
    out_dir.mkdir(parents=True, exist_ok=True)
    write_report(out_dir, result.to_json())
    render(result, out_dir, say)
    return Demo([p.run for p in result.pipelines], result.batch or {}, url, result)
