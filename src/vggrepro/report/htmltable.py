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
    "td{font-variant-numeric:tabular-nums}"
)


def page(title: str, caption: str, df: pd.DataFrame, notes: list[str]) -> str:
    """The page: title, caption, the table (or a line saying the grid has no row), notes."""
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}{_right(df)}</style></head>",
        "<body>",
        f"<h2>{escape(title)}</h2>",
        f"<p>{escape(caption)}</p>",
        *(_table(df) if len(df) else ["<p>(no row in this grid)</p>"]),
        *(f"<p><em>{escape(note)}</em></p>" for note in notes),
        "</body>",
        "</html>",
    ]
    return "\n".join(lines) + "\n"


def _right(df: pd.DataFrame) -> str:
    """The numeric columns set flush right, by their position."""
    return "".join(f"td:nth-child({i + 1}){{text-align:right}}" for i, n in enumerate(numeric_columns(df)) if n)


def _table(df: pd.DataFrame) -> list[str]:
    """pandas writes the table, its cells escaped, as results.md prints them."""
    return [df.astype(object).map(cell).to_html(index=False, border=0, justify="left", escape=True)]
