"""The public Python API (etl/api.py, docs/api.md): each call against a local sandbox."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import etl
from etl.sandbox.server import running_sandbox

ROOT = Path(__file__).resolve().parents[1]
ROWS = 40


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    """The bundled contacts pipeline over the first ROWS rows of its sample file."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "sample_data").mkdir()
    shutil.copy(ROOT / "pipelines" / "legacy_contacts.yaml", tmp_path / "pipelines")
    lines = (ROOT / "sample_data" / "legacy_contacts.csv").read_bytes().splitlines(keepends=True)
    (tmp_path / "sample_data" / "legacy_contacts.csv").write_bytes(b"".join(lines[: ROWS + 1]))
    return tmp_path / "pipelines" / "legacy_contacts.yaml"


def test_validate_writes_the_report_and_sends_nothing(spec: Path, tmp_path: Path) -> None:
    report = etl.validate(str(spec), out=tmp_path / "out")
    assert isinstance(report, etl.Report)
    assert report.report["counts"]["read"] == ROWS
    assert (tmp_path / "out" / "report.json").is_file()
    assert (tmp_path / "out" / "rejects.csv").is_file()
    assert not (spec.parent / ".ledger").exists()  # a dry run opens no ledger


def test_run_then_reconcile_against_the_sandbox(spec: Path, tmp_path: Path) -> None:
    with running_sandbox(rate_limit="none") as sb:
        summary = etl.run(spec, token=sb.api_key, base_url=sb.base_url, sandbox=True,
                          out=tmp_path / "out", requests_per_hour=3600 * 100)
        assert isinstance(summary, etl.RunSummary)
        valid = etl.validate(spec, out=tmp_path / "dry").report["counts"]["valid"]
        assert summary.counts.get("accepted") == valid > 0
        assert summary.exit_code == 0
        assert Path(summary.ledger).name == "legacy_contacts.sandbox.sqlite"
        again = etl.run(spec, token=sb.api_key, base_url=sb.base_url, sandbox=True,
                        out=tmp_path / "out")
        assert again.requests == 0  # nothing accepted is ever sent twice
        sb.run_batch()
        recon = etl.reconcile(spec, token=sb.api_key, base_url=sb.base_url, sandbox=True,
                              out=tmp_path / "out", force=True, after_batch=True)
    assert isinstance(recon, etl.ReconcileSummary)
    assert recon.open_before == valid
    assert sum(recon.confirmed.values()) == valid
    assert sb.api_key not in Path(summary.ledger).read_bytes().decode("latin-1")


def test_errors_are_etl_errors_with_exit_codes(spec: Path, monkeypatch) -> None:
    monkeypatch.delenv(etl.api.TOKEN_ENV, raising=False)
    with pytest.raises(etl.ApiUsageError, match="VIRTUOUS_API_TOKEN"):
        etl.run(spec)
    with pytest.raises(etl.ApiUsageError, match="max_rejects"):
        etl.run(spec, token="k" * 20, max_rejects=3)
    with pytest.raises(etl.EtlError) as missing:
        etl.validate(spec.parent / "nope.yaml")
    assert missing.value.exit_code == 2
    with pytest.raises(etl.EtlError, match="no ledger"):
        etl.reconcile(spec, token="k" * 20, base_url="http://127.0.0.1:9")


def test_etl_run_is_the_function_and_the_package() -> None:
    import etl.run.submit  # the orchestrators' package still imports as before

    assert callable(etl.run)
    assert etl.run.submit.run_pipeline is not None
    assert etl.__version__ == "0.2.0"
