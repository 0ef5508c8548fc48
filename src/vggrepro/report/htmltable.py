"""A table of the report as a small HTML page: `snakemake --report` shows an HTML result in
its viewer, where a CSV is only a download. The cells read as in reports/results.md
(vggrepro.report.tables.cell); no date or path, so a rerun writes the same bytes."""

from __future__ import annotations

from html import escape

import pandas as pd

from vggrepro.report.tables import cell, numeric_columns

STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}"
    "table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
    "th{background:#f3f3f3}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
)


def page(title: str, caption: str, df: pd.DataFrame, notes: list[str]) -> str:
    """The page: title, caption, the table (or a line saying the grid has no row), notes."""
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head>",
        "<body>",
        f"<h2>{escape(title)}</h2>",
        f"<p>{escape(caption)}</p>",
        *(_table(df) if len(df) else ["<p>(no row in this grid)</p>"]),
        *(f"<p><em>{escape(note)}</em></p>" for note in notes),
        "</body>",
        "</html>",
    ]
    return "\n".join(lines) + "\n"


def _table(df: pd.DataFrame) -> list[str]:
    numeric = numeric_columns(df)
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    rows = [
        "<tr>" + "".join(_td(v, n) for v, n in zip(row, numeric)) + "</tr>"
        for row in df.astype(object).itertuples(index=False)
    ]
    return ["<table>", f"<thead><tr>{head}</tr></thead>", "<tbody>", *rows, "</tbody>", "</table>"]


def _td(value, numeric: bool) -> str:
    return f'<td class="num">{escape(cell(value))}</td>' if numeric else f"<td>{escape(cell(value))}</td>"
