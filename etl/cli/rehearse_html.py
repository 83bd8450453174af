"""`rehearsal.html`: the combined rehearsal report as one self-contained page (no scripts)."""

from __future__ import annotations

from html import escape
from typing import Any

MAX_ROWS = 200  # rows listed per pipeline and state; rehearsal.json has them all

STYLE = ("body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}"
         "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
         "padding:.25em .6em;text-align:left}th{background:#f3f3f3}"
         ".n{text-align:right;font-variant-numeric:tabular-nums}")


def _counts(title: str, counts: dict[str, int]) -> str:
    cells = "".join(f"<tr><td>{escape(k)}</td><td class=n>{v:,}</td></tr>"
                    for k, v in sorted(counts.items()))
    return f"<table><tr><th>{escape(title)}</th><th>rows</th></tr>{cells}</table>"


def _rows(rows: list[dict[str, Any]]) -> str:
    shown = rows[:MAX_ROWS]
    cells = "".join(
        f"<tr><td>{escape(str(r['key']))}</td><td>{escape(str(r['status']))}</td>"
        f"<td>{escape(str(r['crm_id'] or ''))}</td>"
        f"<td>{escape(str(r['sandbox_outcome'] or ''))}</td></tr>" for r in shown)
    more = (f"<p>{len(rows) - len(shown):,} more rows in rehearsal.json.</p>"
            if len(rows) > len(shown) else "")
    return (f"<details><summary>{len(rows):,} rows with their CRM ids</summary><table><tr>"
            "<th>key</th><th>final state</th><th>CRM id</th><th>sandbox import</th></tr>"
            f"{cells}</table>{more}</details>")


def rehearsal_html(data: dict[str, Any]) -> str:
    """The page for `Rehearsal.to_json()`."""
    parts = [f"<h1>Rehearsal</h1><p>Sandbox {escape(str(data['sandbox_url']))}, exit "
             f"{data['exit_code']}, {data['elapsed_seconds']:.1f} s.</p>"]
    for p in data["pipelines"]:
        report = p["run"].get("report_dir")
        link = (f' (<a href="{escape(p["name"])}/report.html">report</a>, '
                f'<a href="{escape(p["name"])}/rejects.csv">rejects.csv</a>)' if report else "")
        parts.append(f"<h2>{escape(p['name'])}</h2><p>run exit {p['run']['exit_code']}: "
                     f"{escape(str(p['run']['exit_reason']))}{link}</p>")
        parts.append(_counts("run", p["run"]["counts"]) + _counts("final state", p["states"])
                     + _counts("sandbox import", p["sandbox_outcomes"]) + _rows(p["rows"]))
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>Rehearsal</title>"
            f"<style>{STYLE}</style><body>{''.join(parts)}</body></html>\n")
