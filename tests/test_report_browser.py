"""report.html of a dirty sample, rendered by headless Chromium: the summary and the failure
chart show, and a `<script>` donor name is shown as text and runs nothing.

Chromium is Debian's `chromium` package. When it is missing and the test runs as root with apt,
the setup installs it (`apt-get install -y chromium`); otherwise the test is skipped, saying why.
The screenshot is kept as tests/artifacts/report.png (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli.app import main

ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
PAYLOAD = ('<script>document.title="PWNED";'
           'document.body.appendChild(document.createElement("canary-el"))</script>')


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    found = _chromium()
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                           capture_output=True, timeout=600, check=False)
        found = _chromium()
    if found is None:
        pytest.skip("headless Chromium is not installed and cannot be installed here "
                    "(apt-get install -y chromium needs root and a package mirror)")
    return found


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=45, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish within 45 s")


def test_report_renders_in_chromium_and_the_data_runs_nothing(chromium: str,
                                                              tmp_path: Path) -> None:
    cell = '"' + PAYLOAD.replace('"', '""') + '"'
    (tmp_path / "gifts.csv").write_text(
        "GiftID,Donor,First,GiftDate,Amount\n"
        f"G1,D1,Ann,2024-01-05,{cell}\n"
        f"G2,D2,{cell},2024-13-01,10.00\n"
        "G3,D3,Ann,2024-01-07,1e3\n"
        f"G4,D4,{cell},2024-01-08,25.00\n", encoding="utf-8")
    (tmp_path / "gifts.yaml").write_text("""name: dirty_sample
target: gift_transaction
source: {path: gifts.csv}
keys: {source: Test, id: {column: GiftID}}
mappings:
  amount: {column: Amount, transforms: [parse_amount]}
  giftDate: {column: GiftDate, transforms: [{parse_date: {formats: ["%Y-%m-%d"]}}]}
  giftType: {constant: Check}
  contact.referenceId: Donor
  contact.firstname: First
""", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "gifts.yaml"), "--out",
                                       str(out)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    page = out / "report.html"
    url = page.resolve().as_uri()

    dom = _browser(chromium, tmp_path / "profile1", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'id="summary"' in html and 'id="failure-chart"' in html
    assert "<title>Dry run: dirty_sample</title>" in html  # the script did not set the title
    assert "PWNED</title>" not in html and "<canary-el" not in html.lower()
    # shown as text: in the rejected rows (the amount) and in the sample payload (the name)
    assert html.count("&lt;script&gt;document.title=") >= 2
    assert html.count("<script") == 0

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    png = _browser(chromium, tmp_path / "profile2", f"--screenshot={shot}",
                   "--window-size=1200,1600", url)
    assert png.returncode == 0, png.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_is_one_to_approve_from(chromium: str, tmp_path: Path) -> None:
    """What a person approves from, as Chromium shows it: amounts read / valid / rejected per
    currency with thousands separators, rejects grouped by rule with the donor's key columns
    and a hint, a link to rejects.csv, payload samples collapsed, the request plan."""
    (tmp_path / "gifts.csv").write_text(
        "GiftID,Donor,GiftDate,Amount,Currency\n"
        "G1,D1,2024-01-05,1234567.50,USD\n"
        'G2,D2,2024-01-06,"7.073,96",EUR\n'
        "G3,D3,2024-01-07,2500.00, CC\n"
        "G4,D4,05/01/2024,12.00,USD\n"
        "G5,D5,2024-01-08,10.00,EUR\n", encoding="utf-8")
    (tmp_path / "gifts.yaml").write_text("""name: approve
target: gift_transaction
source: {path: gifts.csv}
keys: {source: Test, id: {column: GiftID}}
mappings:
  amount: {column: Amount, transforms: [parse_amount]}
  giftDate: {column: GiftDate, transforms: [{parse_date: {formats: ["%Y-%m-%d"]}}]}
  giftType: {constant: Check}
  currencyCode: Currency
  contact.referenceId: Donor
rules:
  currencyCode: {one_of: [USD, EUR, CAD]}
load: {batch_size: 2, requests_per_hour: 5000, reserve_share: 0.2}
""", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "gifts.yaml"), "--out",
                                       str(out)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    dom = _browser(chromium, tmp_path / "profile", "--dump-dom",
                   (out / "report.html").resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # control totals: USD read 1,234,579.50, valid 1,234,567.50, rejected 12.00
    assert "1,234,579.50" in html and "1,234,567.50" in html and "12.00" in html
    assert "<th class=\"n\">rejected</th>" in html
    # rejects by rule, with the donor's columns and the hints
    for rule in ("parse_amount", "parse_date", "one_of"):
        assert f"<h3>{rule}: 1 failure(s)</h3>" in html
    assert "<th>GiftID</th><th>Donor</th>" in html
    assert "7.073,96 needs decimal: ','" in html
    assert "&#x27; CC&#x27; needs trim" in html or "' CC' needs trim" in html
    assert "05/01/2024 is in none of the formats tried (%Y-%m-%d)" in html
    assert '<a href="rejects.csv">rejects.csv</a>' in html
    assert "<details><summary>2 payload sample(s)</summary>" in html
    # the plan: 2 valid rows -> 1 batch write (batch_size 2) + QueryOptions + 1 page = 3 requests
    assert 'id="plan"' in html and "3 requests, under a minute at 4,000 requests/hour" in html
    assert html.count("<script") == 0
