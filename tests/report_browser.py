"""What `snakemake --report`'s HTML shows a reader, read back through headless Chromium.

The report is a JavaScript app with no address per view: a script added to a copy of it clicks
what a reader clicks (a category in the menu, then a result's eye button) and writes the rows
of the table the viewer then shows into the page, which `--dump-dom` returns.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")  # Debian's package, and its name elsewhere

PROBE = """<script>
const wait = ms => new Promise(r => setTimeout(r, ms));
function link(text) {
  const a = [...document.querySelectorAll("a")].find(a => a.textContent.trim() === text);
  if (!a) throw new Error("no link " + text);
  return a;
}
async function shown() {
  await wait(300);
  link(CATEGORY).click();
  await wait(300);
  const row = [...document.querySelectorAll("tr")].find(tr => tr.textContent.includes(ITEM));
  if (!row) throw new Error("no result " + ITEM + " under " + CATEGORY);
  row.querySelector("a").click();  // its eye button
  for (let i = 0; i < 50; i++) {
    await wait(100);
    const frame = document.querySelector("iframe");
    const table = frame && frame.contentDocument && frame.contentDocument.querySelector("table");
    if (table) {
      const box = frame.getBoundingClientRect();
      return {visible: box.width > 0 && box.height > 0,
              rows: [...table.rows].map(tr => [...tr.cells].map(c => c.innerText.trim()))};
    }
  }
  throw new Error("the viewer shows no table for " + ITEM);
}
shown().catch(err => ({error: String(err)})).then(found => {
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""


def browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        raise AssertionError("this test reads the report through a headless Chromium and finds none on PATH: "
                             "install Debian's (`apt-get install -y chromium`)")
    return found


def shown_table(report: Path, category: str, item: str, scratch: Path) -> dict:
    """{"visible": bool, "rows": [[cell, ...], ...]}: the table the report's viewer shows for
    `item` (a result's path) of `category`, header row first."""
    page = report.read_text()
    probe = PROBE.replace("CATEGORY", json.dumps(category)).replace("ITEM", json.dumps(item))
    at = page.rindex("</body>")
    probed = scratch / "probed-report.html"
    probed.write_text(page[:at] + probe + page[at:])
    done = subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={scratch / 'profile'}",
         # The viewer loads an HTML result into an iframe from a data: URI, an origin the
         # report's own script may read only with these two off.
         "--disable-web-security", "--disable-site-isolation-trials",
         "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, flags=re.S)
    assert match, f"the probe wrote nothing (the report's script failed?):\n{done.stderr[-3000:]}"
    found = json.loads(html.unescape(match[1]))
    assert "error" not in found, found["error"]
    return found
