"""The README's main job: every sample pipeline, run in full against a local CRM+ sandbox.

Contacts first, then the legacy gifts, then the nightly drop; then the sandbox's nightly batch
resolves what was held, as CRM+ would overnight. A fresh sandbox and fresh demo ledgers each time,
so the demo can be run again and again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.run.submit import RunOptions, RunSummary, run_pipeline
from etl.spec.pipeline import open_pipeline

PIPELINES = ("legacy_contacts", "legacy_gifts", "nightly_gifts_drop")


@dataclass
class Demo:
    """What the demo did: one run summary per pipeline and the nightly batch's outcome."""

    summaries: list[RunSummary]
    batch: dict[str, Any]
    sandbox_url: str


def run_demo(root: Path, out_dir: Path, say: Callable[[str], None]) -> Demo:
    """Run the sample pipelines under `root/pipelines` against a sandbox; reports to `out_dir`."""
    from etl.sandbox.server import running_sandbox

    summaries = []
    # Time is compressed: the real API allows 5,000 requests an hour, the demo 20 a second.
    with running_sandbox(rate_limit="20/second", organization_name="Sample Org") as sb:
        say(f"local CRM+ sandbox at {sb.base_url} (rate limit compressed to 20 requests/s)")
        for name in PIPELINES:
            ledger = out_dir / name / "ledger.sqlite"
            for stale in ledger.parent.glob("ledger.sqlite*"):
                stale.unlink()
            say(f"\n== {name} ==")
            options = RunOptions(token=sb.api_key, base_url=sb.base_url, notify=say,
                                 requests_per_hour=20 * 3600)
            pipeline = open_pipeline(root / "pipelines" / f"{name}.yaml", ledger_path=ledger,
                                     sandbox=True, out_dir=out_dir / name)
            summaries.append(run_pipeline(pipeline, options)[1])
        batch = sb.run_batch()
        url = sb.base_url
    return Demo(summaries, batch, url)
