"""`snakemake --report`'s HTML shows the paper's tables as tables: opened in headless Chromium,
the viewer shows each of Tables 3 to 6 with its header and rows, the numbers of
reports/tables/table<N>.csv."""

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
def test_the_snakemake_report_shows_tables_3_to_6_as_tables(tiny_runs, tmp_path):
    workspace = tiny_runs["snakemake"][0]
    before = faults.outputs(workspace)
    report = tmp_path / "report.html"
    done = subprocess.run([tool("snakemake"), "--report", str(report)], cwd=workspace, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert faults.outputs(workspace) == before  # the report reads the workspace, no more

    for n in (3, 4, 5, 6):
        (tmp_path / f"t{n}").mkdir()
        found = report_browser.shown_table(report, "Tables", f"reports/tables/table{n}.html", tmp_path / f"t{n}")
        written = pd.read_csv(workspace / f"reports/tables/table{n}.csv", dtype=str, keep_default_na=False)
        assert len(written), f"table {n} of the tiny grid has no row: nothing to see"
        header, *rows = found["rows"]
        assert found["visible"], n
        assert header == list(written.columns) and all(len(row) == len(header) for row in rows), (n, header)
        assert [row[0] for row in rows] == list(written.iloc[:, 0]), n
        for row, (_, line) in zip(rows, written.iterrows()):
            assert all(_agree(s, w) for s, w in zip(row, line)), f"table {n}: shown {row}, written {list(line)}"
