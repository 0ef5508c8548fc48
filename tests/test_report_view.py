"""`snakemake --report`'s HTML shows the paper's tables as tables: opened in headless Chromium,
the viewer shows Table 3's header and rows, the numbers of reports/tables/table3.csv."""

import subprocess

import pandas as pd
import pytest

import faults
import report_browser
from conftest import tool


def _agree(shown: str, written: str) -> bool:
    """A cell as shown (two decimals, "-" for none) against the CSV's (four decimals, empty)."""
    if written == "":
        return shown == "-"
    try:
        return abs(float(shown) - float(written)) <= 0.005 + 1e-9
    except ValueError:
        return shown == written


# Beside the tiny runs the slow tests share: a report and a browser, about 20 s. Slow because
# it needs Chromium, which the default suite (pip installs only) does not: `pytest -m slow`.
@pytest.mark.slow
def test_the_snakemake_report_shows_table3_as_a_table(tiny_runs, tmp_path):
    workspace = tiny_runs["snakemake"][0]
    before = faults.outputs(workspace)
    report = tmp_path / "report.html"
    done = subprocess.run([tool("snakemake"), "--report", str(report)], cwd=workspace, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert faults.outputs(workspace) == before  # the report reads the workspace, no more

    found = report_browser.shown_table(report, "Tables", "reports/tables/table3.html", tmp_path)
    written = pd.read_csv(workspace / "reports/tables/table3.csv", dtype=str, keep_default_na=False)
    header, *rows = found["rows"]
    assert found["visible"]
    assert header == list(written.columns) and all(len(row) == len(header) for row in rows)
    assert [row[0] for row in rows] == list(written["run"])
    for row, (_, line) in zip(rows, written.iterrows()):
        assert all(_agree(s, w) for s, w in zip(row, line)), f"shown {row}, written {list(line)}"
