"""The request plan before sending (issue 13): writes per batch, pre-match and reconcile
reads, the time at the spec's budget; in report.json and the dry-run summary."""

from __future__ import annotations

import json

from sandbox_fixtures import sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.report.cost import cost_line, estimate
from etl.run.dry_run import dry_run
from etl.spec.parse import load_spec
from etl.spec.pipeline import open_pipeline

SPEC = """
    name: g
    target: contact_transaction
    source: {{path: c.csv}}
    keys: {{source: S, id: {{column: id}}}}
    mappings: {{firstName: first, lastName: last}}
    load: {{batch_size: {batch}, requests_per_hour: 5000, reserve_share: 0.2}}
    {extra}
"""


def _spec(write, batch: int = 100, extra: str = ""):
    write("c.csv", "id,first,last\n" + "".join(f"C{i},A,B\n" for i in range(250)))
    return load_spec(write("c.yaml", SPEC.format(batch=batch, extra=extra)))


def test_writes_are_batches_and_reconcile_is_bulk_pages_per_batch(write) -> None:
    spec = _spec(write).spec
    plan = estimate(spec, 250_000)
    assert plan["writes"] == {"POST /api/Contact/Batch": 2_500}
    assert plan["reconcile_reads"] == 1 + 2_500 and plan["reconcile_method"] == "bulk"
    assert plan["total"] == 5_001 and plan["requests_per_hour"] == 4_000
    assert cost_line(plan).startswith("5,001 requests, about 75 min at 4,000 requests/hour")


def test_small_runs_reconcile_per_row_and_show_minutes(write) -> None:
    plan = estimate(_spec(write, batch=1).spec, 3)
    assert plan["reconcile_method"] == "per-row" and plan["reconcile_reads"] == 3
    assert cost_line(plan).startswith("6 requests, under a minute at 4,000 requests/hour")
    assert "no request budget" in cost_line(estimate(_spec(write).spec, 3, per_hour=None))


def test_prematch_reads_are_counted_and_capped(write) -> None:
    spec = _spec(write, extra="match: {method: find, max_requests: 400}").spec
    assert estimate(spec, 250)["prematch_reads"] == 400  # 250 rows x 2 signals, capped
    bulk = _spec(write, extra="match: {method: bulk}").spec
    assert estimate(bulk, 250, contacts=12_345)["prematch_reads"] == 1 + 13


def test_the_dry_run_report_carries_the_plan(write, tmp_path) -> None:
    dry = dry_run(open_pipeline(_spec(write).path, out_dir=tmp_path / "out"))
    saved = json.loads(dry.paths.report_json.read_text())
    assert saved["requests"]["writes"] == {"POST /api/Contact/Batch": 3}
    assert saved["requests"]["total"] == 3 + 1 + 3
    assert "requests: 7 requests, under a minute at 4,000 requests/hour" in dry.summary


def test_etl_run_says_the_plan_before_it_sends(tmp_path, sandbox) -> None:
    """The first thing `etl run` says about sending is the plan, and the writes it counts are
    the batch writes the run then makes."""
    from etl.run.submit import RunOptions, run_pipeline

    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "c.csv").write_text("id,first,last\n" + "".join(
        f"C{i},Ann,Lee\n" for i in range(7)), encoding="utf-8")
    (folder / "c.yaml").write_text(SPEC.format(batch=3, extra="").replace("    ", ""),
                                   encoding="utf-8")
    said: list[str] = []
    opts = RunOptions(token=sandbox.api_key, base_url=sandbox.base_url, backoff_base=0.01,
                      notify=said.append)
    run_pipeline(open_pipeline(folder / "c.yaml", out_dir=folder / "reports"), opts)
    plans = [m for m in said if m.startswith("plan: ")]
    assert plans == [said[0]], said
    assert plans[0].startswith("plan: 7 requests, under a minute at 4,000 requests/hour")
    assert "POST /api/Contact/Batch 3" in plans[0]
    batch_writes = [r for r in sandbox.state.requests()
                    if r.method == "POST" and r.path.endswith("/Contact/Batch")]
    assert len(batch_writes) == 3
