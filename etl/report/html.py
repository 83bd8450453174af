"""report.html: one self-contained page (inline CSS and SVG, no scripts, no external assets).

Every value that comes from the data (pipeline and file names, field values, errors, payloads,
warnings) goes through `esc` = `html.escape(..., quote=True)`, in SVG text and attributes too.
Only the first rows of the rejects and payloads are turned into Python objects.
"""

from __future__ import annotations

import html
import json
from typing import Any

from etl.prepare.result import ValidationResult
from etl.report.approve import amount_rows, plan_lines, rejects_by_rule
from etl.report.cost import cost_line

SAMPLE_REJECTS = 50
SAMPLE_PAYLOADS = 10
CHART_BARS = 15
CELL_CHARS = 200
NUM = ' class="n"'  # numeric table cell
REJECT_COLUMNS = ("_source_file", "_record", "_field", "_rule", "_value", "_error")

CSS = """
:root { --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; --line: #d0d7de;
  --muted: #57606a; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: #1f2328;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 0 0 12px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
  margin: 16px 0; }
.meta, .note { color: var(--muted); margin: 0; } .note { margin-top: 8px; font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  margin-bottom: 16px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card b { display: block; font-size: 24px; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.card.ok { background: var(--ok-bg); border-color: var(--ok); }
.card.ok b { color: var(--ok); }
.card.bad { background: var(--bad-bg); border-color: var(--bad); }
.card.bad b { color: var(--bad); }
table { border-collapse: collapse; width: 100%; margin-bottom: 12px; font-size: 13px; }
table.narrow { width: auto; min-width: 40%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; overflow-wrap: anywhere; }
th { background: var(--bg); font-weight: 600; } td.n, th.n { text-align: right;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12px; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 10px;
  overflow-x: auto; margin: 0 0 10px; }
.ok-t { color: var(--ok); font-weight: 600; } .bad-t { color: var(--bad); font-weight: 600; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  fill: #1f2328; }
ul.warn li { color: #9a6700; }
h3 { font-size: 14px; margin: 12px 0 6px; } summary { cursor: pointer; margin: 6px 0; }
"""


def esc(value: object) -> str:
    """HTML-escape anything for text and (double- or single-quoted) attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def _short(value: object, limit: int = CELL_CHARS) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _or_dash(value: object) -> str:
    return "—" if value is None else str(value)


def _table(head: list[tuple[str, bool]], rows: list[list[str]], cls: str = "") -> str:
    """`head`: (label, numeric); `rows`: already escaped cells."""
    ths = "".join(f"<th{NUM if n else ''}>{esc(label)}</th>" for label, n in head)
    trs = "".join(
        "<tr>"
        + "".join(f"<td{NUM if head[i][1] else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{ths}</tr></thead><tbody>{trs}</tbody></table>"


def _card(label: str, value: str, kind: str = "") -> str:
    return f'<div class="card {kind}"><span>{esc(label)}</span><b>{esc(value)}</b></div>'


def _check(ok: bool) -> str:
    return '<span class="ok-t">✓ ok</span>' if ok else '<span class="bad-t">✗ mismatch</span>'


def _summary(result: ValidationResult, report: dict[str, Any]) -> str:
    counts, inv = report["counts"], report["invariant"]
    rate = result.reject_rate()
    cards = "".join(
        [
            _card("rows read", f"{result.read:,}"),
            _card("valid", f"{result.valid:,}", "ok"),
            _card("rejected", f"{result.rejected:,}", "bad" if counts["rejected"] else "ok"),
            _card("reject rate", f"{rate:.2%}", "bad" if rate else "ok"),
            _card("read = valid + rejected", *(("yes", "ok") if inv["ok"] else ("NO", "bad"))),
        ]
    )
    file_rows = [
        [
            f"<code>{esc(f.path)}</code>",
            f'<code title="{esc(f.sha256)}">{esc(f.sha256[:12])}</code>',
            f"{f.size:,}",
            f"{f.rows:,}",
            f"{f.valid:,}",
            f"{f.rejected:,}",
            _check(f.rows == f.valid + f.rejected),
        ]
        for f in result.files
    ]
    head = [
        ("file", False),
        ("sha256", False),
        ("bytes", True),
        ("rows", True),
        ("valid", True),
        ("rejected", True),
        ("check", False),
    ]
    parts = [
        f'<section id="summary"><h2>Summary</h2><div class="cards">{cards}</div>',
        _table(head, file_rows),
    ]
    amounts = result.control_totals.get("amounts") or {}
    if isinstance(amounts, dict) and amounts:
        rows = [[esc(c) for c in row] for row in amount_rows(amounts)]
        head = [("currency", False), ("read", True), ("valid", True), ("rejected", True)]
        parts += ["<h2>Control totals by currency</h2>", _table(head, rows, "narrow")]
    if result.warnings:
        parts.append(f'<p class="bad-t">{len(result.warnings)} warning(s): see Warnings below.</p>')
    return "".join(parts) + "</section>"


def _chart(failures: list[dict[str, Any]]) -> str:
    """Horizontal bars of the top failures as inline SVG, with labels and counts."""
    top = failures[:CHART_BARS]
    label_w, bar_w, count_w, row_h = 300, 460, 80, 26
    width = label_w + bar_w + count_w
    svg = (
        '<svg id="failure-chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        'aria-label="Failures by field and rule" width="100%" '
    )
    if not top:
        return (
            svg + f'viewBox="0 0 {width} 30"><text x="0" y="20" fill="#1a7f37">'
            "No failures: every row is valid.</text></svg>"
        )
    most = max(int(f["count"]) for f in top) or 1
    items = []
    for i, f in enumerate(top):
        y = i * row_h + 4
        full = f"{_or_dash(f['field'])} · {_or_dash(f['rule'])}"
        label = esc(_short(full, 44))
        w = max(2.0, int(f["count"]) / most * bar_w)
        items.append(
            f"<g><title>{esc(full)}: {int(f['count']):,}</title>"
            f'<text x="{label_w - 10}" y="{y + 14}" text-anchor="end">{label}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h - 8}" rx="3" '
            f'fill="#cf222e" fill-opacity="0.85"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{int(f["count"]):,}</text></g>'
        )
    height = len(top) * row_h + 4
    return svg + f'viewBox="0 0 {width} {height}">' + "".join(items) + "</svg>"


def _rejects(result: ValidationResult, report: dict[str, Any]) -> str:
    if result.rejected == 0:
        return '<p class="ok-t">No rejected rows.</p>'
    keys = report.get("key_columns") or []
    link = ('<p><a href="rejects.csv">rejects.csv</a>: every rejected row, to fix and feed '
            "back through the same spec.</p>")
    parts = [link]
    for group in rejects_by_rule(result, keys):
        head = [(k, False) for k in group["samples"][0]["keys"]] if group["samples"] else []
        head += [("record", True), ("field", False), ("value", False), ("hint", False)]
        rows = [[esc(_short(v)) for v in s["keys"].values()]
                + [esc(_or_dash(s["record"])), esc(_or_dash(s["field"])),
                   f"<code>{esc(_short(repr(s['value']) if s['value'] else '—'))}</code>",
                   esc(s["hint"])] for s in group["samples"]]
        parts.append(f"<h3>{esc(_or_dash(group['rule']))}: {group['count']:,} failure(s)</h3>"
                     + _table(head, rows))
    cols = [c for c in REJECT_COLUMNS if c in result.rejects.columns]
    sample = result.rejects.head(SAMPLE_REJECTS).select(cols).rows()
    rows = [[esc(_short(v)) for v in row] for row in sample]
    note = f"First {len(rows):,} of {result.rejected:,}; all of them are in rejects.csv."
    parts.append(f"<details><summary>Rejected rows as written ({len(rows):,})</summary>"
                 + _table([(c, c == "_record") for c in cols], rows)
                 + f'<p class="note">{esc(note)}</p></details>')
    return "".join(parts)


def _plan(plan: dict[str, Any] | None) -> str:
    """The requests the run will need and the time at the spec's budget."""
    if not plan:
        return ""
    rows = [[esc(what), esc(n)] for what, n in plan_lines(plan)]
    return ('<section id="plan"><h2>Request plan</h2>'
            f"<p><b>{esc(cost_line(plan).split(' (')[0])}</b></p>"
            + _table([("requests", False), ("count", True)], rows, "narrow")
            + '<p class="note">Upper bounds where the API leaves room; a refused bulk read '
            "falls back to per-row lookups, which are not counted.</p></section>")


def _payloads(result: ValidationResult) -> str:
    if "_payload" not in result.payloads.columns or result.payloads.height == 0:
        return '<p class="note">No payloads.</p>'
    out = []
    for text in result.payloads["_payload"].head(SAMPLE_PAYLOADS).to_list():
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (TypeError, ValueError):
            pretty = "" if text is None else str(text)
        out.append(f"<pre>{esc(pretty)}</pre>")
    note = f"First {len(out)} of {result.valid:,} payloads."
    return (f"<details><summary>{len(out)} payload sample(s)</summary>" + "".join(out)
            + f'<p class="note">{esc(note)}</p></details>')


def _prematch(block: dict[str, Any] | None) -> str:
    """The `match:` prediction: existing vs new rows per signal, policy, nightly batch."""
    if block is None:
        return ""
    head = "<section id=\"prematch\"><h2>Pre-match: what already exists in CRM+</h2>"
    if block.get("status") != "ok":
        hint = esc(block.get("hint") or block.get("status"))
        return head + f'<p class="note">{hint}</p></section>'
    rows, effect = block["rows"], block["policy_effect"]
    cards = "".join([
        _card("rows checked", f"{rows['checked']:,}"),
        _card("existing", f"{rows['existing']:,}"),
        _card("new", f"{rows['new']:,}", "ok"),
        _card(f"policy {block['policy']}: send", f"{effect['send']:,}"),
        _card("skip", f"{effect['skip']:,}"),
    ])
    signals = [[esc(k), f"{v:,}"] for k, v in (block.get("by_signal") or {}).items()]
    batch = [[esc(k), f"{v:,}"] for k, v in (block.get("nightly_batch") or {}).items()]
    cache = block.get("cache") or {}
    note = (f"method {block.get('method')}, signals {', '.join(block.get('by') or [])}; cache "
            f"of {cache.get('contacts', 0):,} contacts from {cache.get('base_url') or '-'} "
            f"({cache.get('organization') or '-'}), refreshed {cache.get('refreshed_at') or '-'}")
    return (head + f'<div class="cards">{cards}</div>'
            + _table([("existing by signal", False), ("rows", True)], signals, "narrow")
            + _table([("predicted nightly batch", False), ("count", True)], batch, "narrow")
            + f'<p class="note">{esc(note)}</p></section>')


def _duplicates(block: dict[str, Any] | None) -> str:
    """Possible duplicate donors: counts by signal and the sample groups, for review."""
    if block is None:
        return ""
    head = '<section id="duplicates"><h2>Possible duplicate donors</h2>'
    if not block.get("groups"):
        return head + ('<p class="note">No two donor ids share an email, or a name and postal '
                       "code.</p></section>")
    by = block["by"]
    cards = "".join([
        _card("groups", f"{block['groups']:,}"),
        _card("same email", f"{by['email']['groups']:,}"),
        _card("same name + postal", f"{by['name_postal']['groups']:,}"),
    ])
    labels = {"email": "same email", "name_postal": "same name + postal"}
    rows = []
    for group in block.get("sample") or []:
        donors = "<br>".join(
            f"<code>{esc(d.get('id'))}</code> · record {esc(d.get('record'))} · "
            f"<code>{esc(d.get('file'))}</code>" for d in group["donors"])
        if group.get("more_donors"):
            donors += f"<br>… {group['more_donors']:,} more"
        rows.append([esc(labels.get(group["by"], group["by"])), esc(_short(group["value"])),
                     donors])
    shown = len(block.get("sample") or [])
    note = (f"First {shown} of {block['groups']:,} groups; all counts are in report.json. "
            f"{block.get('note', '')}")
    return (head + f'<div class="cards">{cards}</div>'
            + _table([("signal", False), ("value", False), ("donors (id · record · file)", False)],
                     rows)
            + f'<p class="note">{esc(note)}</p></section>')


def render_html(result: ValidationResult, report: dict[str, Any]) -> str:
    """The whole page. `report` is the report.json content (counts, failures, timestamps)."""
    failures = report["failures"]
    more = (
        f'<p class="note">Top {CHART_BARS} of {len(failures)} field/rule pairs; '
        "all of them are in report.json.</p>"
        if len(failures) > CHART_BARS
        else ""
    )
    warnings = (
        '<ul class="warn">' + "".join(f"<li>{esc(w)}</li>" for w in result.warnings) + "</ul>"
        if result.warnings
        else '<p class="note">No warnings.</p>'
    )
    meta = (
        f"target <b>{esc(result.target)}</b> · spec <code>{esc(result.spec_path)}</code> "
        f'(<code title="{esc(result.spec_hash)}">{esc(result.spec_hash[:12])}</code>) · '
        f"tool {esc(result.tool_version)} · generated {esc(report['generated_at'])}"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Dry run: {esc(result.pipeline)}</title><style>{CSS}</style></head><body><main>"
        f'<header><h1>Dry run: {esc(result.pipeline)}</h1><p class="meta">{meta}</p></header>'
        + _summary(result, report)
        + _plan(report.get("requests"))
        + _prematch(report.get("prematch"))
        + _duplicates(report.get("possible_duplicates"))
        + f"<section><h2>Failures by field and rule</h2>{_chart(failures)}{more}</section>"
        + f"<section><h2>Rejects by rule</h2>{_rejects(result, report)}</section>"
        + f"<section><h2>Sample payloads</h2>{_payloads(result)}</section>"
        + f"<section><h2>Warnings</h2>{warnings}</section>"
        + "</main></body></html>\n"
    )
