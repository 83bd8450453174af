"""`Pipeline` (etl/spec/pipeline.py): the spec loaded once per command, with its ledger and its
report folder; and the run's check that the spec did not change while the sources were read."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gift_spec import GIFT_MAPPINGS

from etl.base.errors import SpecError
from etl.base.safe_write import UnsafeOutput
from etl.run import submit
from etl.run.submit import RunOptions, run_pipeline
from etl.spec.pipeline import open_pipeline

HEADER = "GiftID,DonorID,First,Last,GiftDate,Amount,PayMethod,Currency"


def gift_spec(folder: Path, extra: str = "") -> Path:
    (folder / "gifts.csv").write_text(
        HEADER + "\n" + "G1,D1,Ann,Lee,2024-01-05,25.00,Check,USD\n", encoding="utf-8")
    spec = folder / "gifts.yaml"
    spec.write_text(f"name: gifts\ntarget: gift_transaction\nsource: {{path: gifts.csv}}\n"
                    f"keys: {{source: Legacy, id: {{column: GiftID}}}}\n{GIFT_MAPPINGS}\n{extra}",
                    encoding="utf-8")
    return spec


def test_ledger_path_is_the_default_the_sandbox_one_or_the_one_given(tmp_path: Path) -> None:
    spec = gift_spec(tmp_path)
    assert open_pipeline(spec).ledger_path == tmp_path / ".ledger" / "gifts.sqlite"
    assert open_pipeline(spec, sandbox=True).ledger_path == (
        tmp_path / ".ledger" / "gifts.sandbox.sqlite")
    chosen = tmp_path / "elsewhere.sqlite"
    assert open_pipeline(spec, ledger_path=chosen, sandbox=True).ledger_path == chosen
    configured = gift_spec(tmp_path, "load: {ledger: state/led.sqlite}\n")
    assert open_pipeline(configured, sandbox=True).ledger_path == (
        tmp_path / "state" / "led.sandbox.sqlite")


def test_report_folder_is_out_else_output_dir_else_reports_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = gift_spec(tmp_path)
    assert open_pipeline(spec, out_dir=tmp_path / "o").report_dir() == tmp_path / "o"
    assert open_pipeline(spec).report_dir() == Path("reports") / "gifts"
    spec = gift_spec(tmp_path, "output: {dir: rep}\n")
    assert open_pipeline(spec).report_dir() == tmp_path / "rep"
    # only --out may name a folder the tool did not create
    (tmp_path / "mine").mkdir()
    spec = gift_spec(tmp_path, "output: {dir: mine}\n")
    with pytest.raises(UnsafeOutput):
        open_pipeline(spec).report_dir()


def test_spec_changed_compares_the_files_bytes_with_what_was_loaded(tmp_path: Path) -> None:
    spec = gift_spec(tmp_path)
    pipeline = open_pipeline(spec)
    assert not pipeline.spec_changed()
    spec.write_text(spec.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    assert pipeline.spec_changed()
    spec.unlink()
    assert pipeline.spec_changed()


def test_a_spec_edited_while_the_run_reads_stops_the_run_before_sending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = gift_spec(tmp_path)
    requests: list[httpx.Request] = []
    real_dry_run = submit.dry_run

    def dry_run_then_edit(*args: object, **kwargs: object) -> object:
        dry = real_dry_run(*args, **kwargs)  # type: ignore[arg-type]
        spec.write_text(spec.read_text(encoding="utf-8").replace("Legacy", "Other"),
                        encoding="utf-8")
        return dry

    monkeypatch.setattr(submit, "dry_run", dry_run_then_edit)
    options = RunOptions(token="t" * 24, base_url="https://crm.example", handle_signals=False,
                         transport=httpx.MockTransport(
                             lambda request: requests.append(request) or httpx.Response(500)))
    with pytest.raises(SpecError, match="the spec changed while the run was reading it"):
        run_pipeline(open_pipeline(spec, out_dir=tmp_path / "rep"), options)
    assert requests == []


def test_etl_validate_loads_the_spec_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--new-only reads the drop state and then validates: one load of the spec for both."""
    from click.testing import CliRunner

    from etl.cli.app import main
    from etl.spec import parse, pipeline

    spec = gift_spec(tmp_path)
    loads: list[Path] = []
    real = parse.load_spec

    def counting(path: str | Path) -> object:
        loads.append(Path(path))
        return real(path)

    monkeypatch.setattr(parse, "load_spec", counting)
    monkeypatch.setattr(pipeline, "load_spec", counting)
    result = CliRunner().invoke(main, ["validate", str(spec), "--out", str(tmp_path / "rep"),
                                       "--new-only", "--quiet"])
    assert result.exit_code == 0, result.output
    assert loads == [spec]
