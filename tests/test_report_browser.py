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
