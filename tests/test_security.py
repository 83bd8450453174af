"""Security: the API token never leaks, donor emails stay out of logs, every CSV the tool writes
is spreadsheet-safe, the HTML report escapes the data, and the package has no dangerous calls."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from etl.cli.app import main
from etl.sandbox.server import SandboxHandle, running_sandbox

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "etl"
CANARY = "CANARY-tok-9d1e5b7c"  # a fake token that must never be seen
CANARY_EMAIL = "canary.donor.7f3a@example.org"

SPEC = """name: canary
target: gift_transaction
source: {{path: gifts.csv}}
keys: {{source: LegacyCRM, id: {{column: GiftID}}}}
mappings:
  amount: {{column: Amount, transforms: [parse_amount]}}
  giftDate: {{column: GiftDate, transforms: [{{parse_date: {{formats: ["%Y-%m-%d"]}}}}]}}
  giftType: PayMethod
  currencyCode: {{constant: USD}}
  contact.referenceId: DonorID
  contact.firstname: First
  contact.email: Email
load: {{batch_size: 10, concurrency: 1, requests_per_hour: 1000000, max_attempts: {attempts},
        timeout_seconds: {timeout}}}
"""


def write_job(folder: Path, n: int = 12, *, attempts: int = 3, timeout: float = 10,
              bad: tuple[int, ...] = (3,)) -> Path:
    """n gifts, each donor email the canary; rows in `bad` refused by CRM+ (gift type)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["GiftID,DonorID,First,Email,GiftDate,Amount,PayMethod"]
    for i in range(n):
        kind = "Bitcoin" if i in bad else "Check"
        lines.append(f"G{i},D{i},Ann,{CANARY_EMAIL},2024-01-0{1 + i % 9},{10 + i}.00,{kind}")
    lines.append(f"G{n},D{n},Ann,{CANARY_EMAIL},not-a-date,5.00,Check")  # a dry-run reject
    (folder / "gifts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = folder / "canary.yaml"
    spec.write_text(SPEC.format(attempts=attempts, timeout=timeout), encoding="utf-8")
    return spec


def etl(*args: str, token: str | None = CANARY) -> Result:
    env = {"VIRTUOUS_API_TOKEN": token} if token is not None else {}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def assert_no_canary(folder: Path, *results: Result) -> None:
    """The token is in no output and no file byte; the donor email is in no log (stderr)."""
    for r in results:
        text = r.output + (r.stderr or "")
        assert CANARY not in text, text
        assert "Traceback" not in text, text
        assert CANARY_EMAIL not in (r.stderr or ""), r.stderr
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            assert CANARY not in repr(r.exception)
    for path in folder.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def canary_sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(api_key=CANARY, rate_limit="none") as sb:
        yield sb


@pytest.fixture
def sb(canary_sandbox: SandboxHandle) -> Iterator[SandboxHandle]:
    canary_sandbox.reset()
    yield canary_sandbox
    canary_sandbox.set_faults("")
    canary_sandbox.reset()


def test_full_import_dry_run_and_ledger_keep_the_token_and_emails_out(
        sb: SandboxHandle, tmp_path: Path) -> None:
    spec = write_job(tmp_path / "job")
    dry = etl("validate", str(spec), "--out", str(tmp_path / "dry"))
    assert dry.exit_code == 1
    sb.set_faults("http500=0.2,seed=3")
    run = etl("run", str(spec), "--base-url", sb.base_url, "--out", str(tmp_path / "rep"),
              "--json-summary", str(tmp_path / "summary.json"))
    assert run.exit_code == 1, run.output  # one row refused by CRM+, one by the dry run
    doubt = json.loads((tmp_path / "summary.json").read_text())["counts"].get("in_doubt", 0)
    assert len(sb.state.held_gifts()) + doubt == 11  # a 500 answer leaves its batch in doubt
    again = etl("run", str(spec), "--base-url", sb.base_url, "--out", str(tmp_path / "rep"))
    ledger_file = tmp_path / "job" / ".ledger" / "canary.sqlite"
    runs = etl("ledger", "runs", "--ledger", str(ledger_file))
    show = etl("ledger", "show", "1", "--ledger", str(ledger_file))
    export = etl("ledger", "export", "1", "--ledger", str(ledger_file), "--out",
                 str(tmp_path / "rows.csv"))
    assert runs.exit_code == show.exit_code == export.exit_code == 0
    assert_no_canary(tmp_path, dry, run, again, runs, show, export)


@pytest.mark.parametrize("case", ["bad_url", "refused_key", "http500", "timeout", "bad_spec",
                                  "no_token", "plain_http_remote"])
def test_error_paths_never_show_the_token(case: str, sb: SandboxHandle, tmp_path: Path) -> None:
    spec = write_job(tmp_path / "job", n=4, attempts=2, timeout=0.3)
    url, token = sb.base_url, CANARY
    expected = {1, 3}
    if case == "bad_url":
        import socket

        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}"
    elif case == "refused_key":
        token, expected = CANARY + "-revoked", {4}
    elif case == "http500":
        sb.set_faults("http500=1")
    elif case == "timeout":
        sb.set_faults("slow=1,slow_seconds=1")
    elif case == "bad_spec":
        spec.write_text(spec.read_text().replace("parse_amount", f"parse_{CANARY}"))
        expected = {2}
    elif case == "no_token":
        token, expected = "", {2}
    elif case == "plain_http_remote":
        url, expected = "http://crm.example.org", {2}
    result = etl("run", str(spec), "--base-url", url, "--out", str(tmp_path / "rep"),
                 token=token)
    assert result.exit_code in expected, result.output
    if case == "bad_spec":  # the spec's own text may be echoed; the env token may not
        result.stderr_bytes = result.stderr_bytes.replace(f"parse_{CANARY}".encode(), b"")
        result.output_bytes = result.output_bytes.replace(f"parse_{CANARY}".encode(), b"")
        (tmp_path / "job" / "canary.yaml").unlink()
    if case == "refused_key":
        assert "refused" in result.output
        assert (CANARY + "-revoked") not in result.output
    assert_no_canary(tmp_path, result)


def test_reconcile_keeps_the_token_out_when_it_exists(sb: SandboxHandle, tmp_path: Path) -> None:
    import click

    if "reconcile" not in main.list_commands(click.Context(main)):
        pytest.skip("etl reconcile is not a command yet")
    spec = write_job(tmp_path / "job", n=4)
    run = etl("run", str(spec), "--base-url", sb.base_url, "--out", str(tmp_path / "rep"))
    args = ["reconcile", str(spec), "--base-url", sb.base_url, "--force", "--out",
            str(tmp_path / "recon")]
    recon = etl(*args)
    bad = etl(*args, token=CANARY + "-revoked")
    unreachable = etl(*args[:2], "--base-url", "http://127.0.0.1:9", "--force", "--out",
                      str(tmp_path / "recon2"))
    assert "Traceback" not in recon.output + bad.output + unreachable.output
    assert_no_canary(tmp_path, run, recon, bad, unreachable)


# -- a server that echoes the token -------------------------------------------------------------
def _echoing_app() -> object:
    """A CRM+ stand-in that quotes the caller's key back: in the organization name, and in the
    code, message and item details of a 422 for every write."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def key(request: Request) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    async def organization(request: Request) -> JSONResponse:
        return JSONResponse({"id": 7, "organizationName": f"Acme {key(request)} Inc"})

    async def refuse(request: Request) -> JSONResponse:
        k = key(request)
        details = [{"field": f"transactions[{i}].giftType", "code": f"BAD_{k}",
                    "message": f"giftType rejected for key {k}"} for i in range(10)]
        return JSONResponse({"error": {"code": f"VALIDATION_{k}", "message": f"key {k} said no",
                                       "details": details}}, status_code=422)

    async def options(request: Request) -> JSONResponse:  # the loader's first-send check
        return JSONResponse({"options": [{"parameter": "Transaction Source",
                                          "operatorOptions": [{"operator": "Is"}]}]})

    async def no_gifts(request: Request) -> JSONResponse:
        return JSONResponse({"list": [], "total": 0})

    return Starlette(routes=[Route("/api/Organization/Current", organization),
                             Route("/api/Gift/QueryOptions", options),
                             Route("/api/Gift/Query/FullGift", no_gifts, methods=["POST"]),
                             Route("/api/v2/Gift/Transactions", refuse, methods=["POST"]),
                             Route("/api/v2/Gift/Transaction", refuse, methods=["POST"])])


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    from etl.base.serving import ServerThread, bind
    from etl.sandbox.server import make_server

    sock = bind("127.0.0.1", 0)
    server = ServerThread(make_server(_echoing_app()), sock, "echoing server")
    server.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.stop()


def test_a_token_echoed_by_the_server_is_in_no_file_ledger_cell_summary_or_output(
        echo_url: str, tmp_path: Path) -> None:
    spec = write_job(tmp_path / "job", n=4)
    summary_file = tmp_path / "summary.json"
    run = etl("run", str(spec), "--base-url", echo_url, "--out", str(tmp_path / "rep"),
              "--json-summary", str(summary_file))
    assert run.exit_code == 1, run.output
    assert "organization: Acme *** Inc" in run.output  # the echo happened, and was redacted
    ledger_file = tmp_path / "job" / ".ledger" / "canary.sqlite"
    runs = etl("ledger", "runs", "--ledger", str(ledger_file))
    show = etl("ledger", "show", "1", "--ledger", str(ledger_file))
    export = etl("ledger", "export", "1", "--ledger", str(ledger_file), "--out",
                 str(tmp_path / "rows.csv"))
    parquet = etl("ledger", "export", "1", "--ledger", str(ledger_file), "--format", "parquet",
                  "--out", str(tmp_path / "rows.parquet"))
    assert runs.exit_code == show.exit_code == export.exit_code == parquet.exit_code == 0
    with sqlite3.connect(ledger_file) as db:
        cells = [str(v) for table in ("runs", "rows")
                 for row in db.execute(f"SELECT * FROM {table}") for v in row]
    db.close()
    assert any("VALIDATION_***" in c or "BAD_***" in c for c in cells)  # stored, redacted
    assert not [c for c in cells if CANARY in c]
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    assert summary["organization"] == "Acme *** Inc"
    assert CANARY not in pl.read_parquet(tmp_path / "rows.parquet").write_csv()
    assert_no_canary(tmp_path, run, runs, show, export, parquet)


def test_printed_text_is_redacted_even_in_an_unexpected_traceback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.base.redact import redacting_output, register

    register(CANARY)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", out)
    with pytest.raises(RuntimeError), redacting_output():
        print(f"key {CANARY}")
        raise RuntimeError(CANARY)
    sys.stderr.write(f"Traceback ...: RuntimeError: {CANARY}\n")  # what Python prints next
    assert out.getvalue() == "key ***\nTraceback ...: RuntimeError: ***\n"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/?api_key=" + CANARY,
    "http://127.0.0.1:{port}/#" + CANARY,
    "http://" + CANARY + "@127.0.0.1:{port}",
    "http://user:" + CANARY + "@127.0.0.1:{port}",
    "http://127.0.0.1:99999",
    "http://127.0.0.1:0",
])
@pytest.mark.parametrize("command", ["run", "reconcile", "validate"])
def test_a_base_url_with_credentials_query_or_bad_port_is_refused_without_echo(
        url: str, command: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: nothing may be sent anyway
        s.bind(("127.0.0.1", 0))
        url = url.format(port=s.getsockname()[1])
    spec = write_job(tmp_path / "job", n=2)
    extra = ["--refresh-match"] if command == "validate" else []
    if command == "validate":  # --refresh-match needs a match: section
        spec.write_text(spec.read_text() + "match: {}\n")
    result = etl(command, str(spec), "--base-url", url, "--out", str(tmp_path / "rep"), *extra)
    assert result.exit_code == 2, result.output
    assert "base-url" in result.output
    assert_no_canary(tmp_path, result)


# -- spreadsheet-safe CSV -----------------------------------------------------------------------
HOSTILE = ["=1+1", "+SUM(A1)", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "=HYPERLINK(\"http://x\")"]
RISKY = re.compile(r"^[=+\-@\t\r]")
PLAIN = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _cells(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))


def test_rejects_csv_neutralizes_formulas_and_keeps_numbers(tmp_path: Path) -> None:
    lines = ["GiftID,DonorID,First,Email,GiftDate,Amount,PayMethod"]
    for i, bad in enumerate(HOSTILE):
        cell = '"' + bad.replace('"', '""') + '"'
        lines.append(f"G{i},{cell},{cell},x@example.org,2024-01-01,-25.00,Check")
    lines.append("G99,D1,Ann,x@example.org,2024-01-01,-5,Check")
    (tmp_path / "gifts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tmp_path / "canary.yaml"
    spec.write_text(SPEC.format(attempts=2, timeout=1), encoding="utf-8")
    result = etl("validate", str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    rows = _cells(tmp_path / "out" / "rejects.csv")
    assert len(rows) == len(HOSTILE) + 1  # every row: amount must be positive
    for row in rows:
        assert row["Amount"] in ("-25.00", "-5"), row  # plain numbers stay numbers
        for column, value in row.items():
            assert not RISKY.match(value) or PLAIN.fullmatch(value), (column, value)
    firsts = [r["First"] for r in rows[: len(HOSTILE)]]
    assert firsts == ["'" + h for h in HOSTILE]


def test_a_hostile_source_header_is_neutralized_in_rejects_csv(tmp_path: Path) -> None:
    hostile = ["=cmd|' /C calc'!A0", "@SUM(1)", "+1+1", "-2+3"]
    header = ",".join('"' + h.replace('"', '""') + '"' for h in hostile)
    (tmp_path / "gifts.csv").write_text(
        f"GiftID,DonorID,First,Email,GiftDate,Amount,PayMethod,{header}\n"
        "G1,D1,Ann,x@example.org,2024-01-01,-25.00,Check,a,b,c,d\n", encoding="utf-8")
    spec = tmp_path / "canary.yaml"
    spec.write_text(SPEC.format(attempts=2, timeout=1), encoding="utf-8")
    result = etl("validate", str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    with (tmp_path / "out" / "rejects.csv").open(encoding="utf-8", newline="") as fh:
        names = next(csv.reader(fh))
    assert ["'" + h for h in hostile] == [n for n in names if n.lstrip("'") in hostile]
    assert not [n for n in names if RISKY.match(n)]


def test_ledger_export_csv_is_spreadsheet_safe(sb: SandboxHandle, tmp_path: Path) -> None:
    spec = write_job(tmp_path, n=3, bad=())
    assert etl("run", str(spec), "--base-url", sb.base_url, "--out",
               str(tmp_path / "r")).exit_code == 1
    out = tmp_path / "rows.csv"
    ledger_file = tmp_path / ".ledger" / "canary.sqlite"
    # what an API or a file name could put into the ledger's text columns
    with sqlite3.connect(ledger_file) as db:
        db.execute("UPDATE rows SET error_code=?, reason=? WHERE record=1",
                   ("=cmd|' /C calc'!A0", "@SUM(1)"))
        db.execute("UPDATE rows SET error_code=?, source_file=? WHERE record=2",
                   ("+1+1", "-2+3.csv"))
    db.close()
    exported = etl("ledger", "export", "1", "--ledger", str(ledger_file), "--out", str(out))
    assert exported.exit_code == 0, exported.output
    raw = out.read_text(encoding="utf-8")
    assert "=cmd" in raw  # the hostile value is there, defused
    for row in _cells(out):
        for column, value in row.items():
            assert not RISKY.match(value) or PLAIN.fullmatch(value), (column, value)
    frame = pl.read_csv(out, infer_schema_length=None)
    numeric = [c for c, t in frame.schema.items() if t.is_numeric()]
    assert "record" in numeric  # numeric columns stay numeric


# -- the HTML report escapes the data ------------------------------------------------------------
HTML_HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


def test_report_html_escapes_hostile_values(tmp_path: Path) -> None:
    folder = tmp_path / "<b>x"
    folder.mkdir()
    name = "g<i>'\".csv"
    cell = '"' + HTML_HOSTILE.replace('"', '""') + '"'
    (folder / name).write_text(
        "GiftID,DonorID,First,Email,GiftDate,Amount,PayMethod\n"
        f"G1,{cell},{cell},x@example.org,2024-01-01,-1,{cell}\n"
        f"G2,D2,{cell},x@example.org,2024-01-01,5.00,Check\n", encoding="utf-8")
    spec = folder / "canary.yaml"
    spec.write_text(SPEC.format(attempts=2, timeout=1).replace("gifts.csv", json.dumps(name)),
                    encoding="utf-8")
    result = etl("validate", str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "onerror=" not in page.replace("onerror=alert", "")  # only as escaped text
    assert "&lt;script&gt;" in page and "<i>" not in page and "<b>x" not in page
    # the escaped text survived (it is shown, not dropped)
    assert "document.title=&quot;pwned&quot;" in page or "document.title=\\&quot;" in page


# -- static checks ------------------------------------------------------------------------------
FORBIDDEN = {
    "yaml.load( without SafeLoader": re.compile(r"yaml\.load\((?![^)]*SafeLoader)"),
    "eval(": re.compile(r"(?<![\w.])eval\("),
    "exec(": re.compile(r"(?<![\w.])exec\("),
    "verify=False": re.compile(r"verify\s*=\s*False"),
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "pickle": re.compile(r"\bpickle\.loads?\("),
}


def test_the_package_has_no_dangerous_calls() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            for what, pattern in FORBIDDEN.items():
                if pattern.search(code):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


def test_ruff_bandit_rules_are_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    # S101 (assert) is ignored project-wide in pyproject.toml; every other bandit rule applies
    args = ["check", "--select", "S", "--ignore", "S101", "--no-cache", str(PACKAGE)]
    proc = subprocess.run([ruff, *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr



# -- the webhook receiver under a flood ----------------------------------------------------------
def test_webhook_receiver_survives_a_flood_of_bad_deliveries(tmp_path: Path) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    try:
        from test_webhook_receiver import PREFIX, SECRET, b64, gift_event, make_ledger

        from etl.confirm.webhook_receiver import ReceiverConfig, running_receiver
    except ImportError:
        pytest.skip("the webhook receiver is not there yet")
    path = tmp_path / "gifts.sqlite"
    make_ledger(path, ["G1"])
    cfg = ReceiverConfig(ledger_path=path, kind="gift", source="LegacyCRM", prefix=PREFIX,
                         secret=SECRET, max_body=64 * 1024)
    bad_sig = gift_event("G1", 1)
    huge = b"x" * (256 * 1024)
    with running_receiver(cfg) as handle:
        assert handle.url.startswith("http://127.0.0.1:")

        def burst(n: int) -> list[int]:
            codes = []
            with httpx.Client(timeout=10) as client:
                for i in range(n):
                    if i % 10 == 0:  # oversized
                        r = client.post(handle.url, content=huge,
                                        headers={"X-Virtuous-Signature": b64(huge)})
                    else:  # forged or missing signatures
                        sig = {"X-Virtuous-Signature": "AAAA" * 11} if i % 2 else {}
                        r = client.post(handle.url, content=bad_sig, headers=sig)
                    codes.append(r.status_code)
            return codes

        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            codes = [c for part in pool.map(burst, [500] * 4) for c in part]
        elapsed = time.monotonic() - start
        assert len(codes) == 2000 and set(codes) <= {401, 413}, set(codes)
        assert codes.count(413) == 200
        assert elapsed < 45, f"2,000 bad deliveries took {elapsed:.1f} s"
        good = gift_event("G1", 77)
        answer = httpx.post(handle.url, content=good, headers={"X-Virtuous-Signature": b64(good)},
                            timeout=10)
        assert answer.status_code == 200, answer.text
