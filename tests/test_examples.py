"""The worked examples (examples/) and the built wheel's contents (pyproject.toml, setup.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from etl.samples import SAMPLE_PIPELINES, sample_root, sample_spec
from etl.sandbox.server import running_sandbox

ROOT = Path(__file__).resolve().parents[1]
ROWS = 30


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_samples_resolve_from_a_checkout() -> None:
    assert sample_root() == ROOT
    for name in SAMPLE_PIPELINES:
        assert sample_spec(name).is_file()
    with pytest.raises(ValueError, match="known"):
        sample_spec("nope")


@pytest.mark.slow
def test_dagster_example_imports_each_organization_with_its_own_key(
        tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("dagster", reason="the example's orchestrator: pip install dagster")
    import dagster

    (tmp_path / "pipelines").mkdir()
    (tmp_path / "sample_data").mkdir()
    shutil.copy(ROOT / "pipelines" / "legacy_contacts.yaml", tmp_path / "pipelines")
    lines = (ROOT / "sample_data" / "legacy_contacts.csv").read_bytes().splitlines(keepends=True)
    (tmp_path / "sample_data" / "legacy_contacts.csv").write_bytes(b"".join(lines[: ROWS + 1]))
    (tmp_path / "dagster").mkdir()
    example = _load(ROOT / "examples" / "dagster_orgs" / "definitions.py", "dagster_orgs_defs")
    assert sorted(a.key.path[-1] for a in example.defs.resolve_all_asset_specs()) == [
        "crm_import_grace_community", "crm_import_hope_foundation"]  # the shipped config loads
    shipped = example.load_organizations()
    assert len({o.requests_per_hour for o in shipped}) == 2  # a budget per organization
    assert len({o.state_dir for o in shipped}) == 2  # and a ledger folder per organization
    assert all(s.is_file() for o in shipped for s in o.specs)
    with running_sandbox(rate_limit="none", api_key="a" * 32) as one, \
            running_sandbox(rate_limit="none", api_key="b" * 32) as two, \
            dagster.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        config = tmp_path / "orgs.yaml"
        config.write_text(
            "state_dir: state\norganizations:\n"
            f"  - {{name: one, token_env: ONE_KEY, requests_per_hour: 360000, "
            f"base_url: '{one.base_url}', specs: [pipelines/legacy_contacts.yaml]}}\n"
            f"  - {{name: two, token_env: TWO_KEY, requests_per_hour: 360000, "
            f"base_url: '{two.base_url}', specs: [pipelines/legacy_contacts.yaml]}}\n",
            encoding="utf-8")
        monkeypatch.setenv("ONE_KEY", one.api_key)
        monkeypatch.setenv("TWO_KEY", two.api_key)
        orgs = example.load_organizations(config)
        assets = [example.organization_asset(org) for org in orgs]
        result = dagster.materialize(assets, instance=instance)
        assert result.success
        first = {org.name: result.output_for_node(f"crm_import_{org.name}") for org in orgs}
        for sb in (one, two):  # each organization's sandbox got the rows, once
            assert len(sb.state.held_contacts()) == first["one"]["legacy_contacts"][
                "counts"]["accepted"] > 0
        assert (tmp_path / "state" / "one" / "ledgers" / "legacy_contacts.sqlite").is_file()
        assert (tmp_path / "state" / "two" / "ledgers" / "legacy_contacts.sqlite").is_file()
        again = dagster.materialize(assets, instance=instance)
        assert again.output_for_node("crm_import_two")["legacy_contacts"]["requests"] == 0
        monkeypatch.delenv("TWO_KEY")
        missing = dagster.materialize(assets, instance=instance,
                                      raise_on_error=False)
        assert not missing.success  # the org without its key fails, named, alone


@pytest.mark.slow
def test_the_wheel_carries_types_seed_and_samples(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("virtuous_etl-0.2.0-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"etl/py.typed", "etl/api.py", "etl/sandbox/org_seed.json",
                "etl/samples/__init__.py", "etl/samples/sample_data/legacy_contacts.csv",
                "etl/samples/sample_data/legacy_gifts.csv"}
    expected |= {f"etl/samples/pipelines/{name}.yaml" for name in SAMPLE_PIPELINES}
    expected |= {f"etl/samples/sample_data/drops/{p.name}"
                 for p in (ROOT / "sample_data" / "drops").glob("*.csv")}
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if "/.ledger" in n or n.startswith("tests/")]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: virtuous-etl" in text and "Classifier: Typing :: Typed" in text
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "etl = etl.cli.app:main" in zipfile.ZipFile(wheel).read(entry).decode()
    installed = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(installed), str(wheel)], check=True, timeout=120, capture_output=True)
    probe = (
        "import sys, etl, etl.samples\n"
        f"assert etl.__file__.startswith({str(installed)!r}), etl.__file__\n"
        "root = etl.samples.sample_root()\n"
        f"assert str(root).startswith({str(installed)!r}), root\n"
        "spec = etl.samples.sample_spec('legacy_gifts')\n"
        "print(etl.validate(spec, out='out').report['counts']['read'])\n")
    ran = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(installed)},
                         check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split()[-1] == "3000"  # the installed samples read from site-packages
    # `etl demo` from the installed wheel, outside the checkout: the whole rehearsal runs
    demo = subprocess.run([sys.executable, "-m", "etl", "demo", "--out", str(tmp_path / "demo")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(installed)}, check=False)
    assert demo.returncode in (0, 1), demo.stderr[-2000:]  # the samples are dirty on purpose
    assert "Traceback" not in demo.stderr
    assert sorted(p.name for p in (tmp_path / "demo").iterdir() if p.is_dir()) == sorted(
        SAMPLE_PIPELINES)
