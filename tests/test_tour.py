"""faultline tour and the report page (issue 14): the quick tour writes every section,
`faultline report` rebuilds the same page from the saved results, a real browser opens
it without a console error and with every image decoded, and the page escapes what it
shows.  docs/mutants.md is generated from kern/mutants.py and must stay current.

docs/report.png is the page `faultline tour` writes, as the browser test sees it:
`chromium --headless --no-sandbox --hide-scrollbars --window-size=1200,1800
--screenshot=docs/report.png faultline-report/index.html`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cli_support import run, run_at
from faultline.report.mutant_doc import mutants_markdown
from faultline.report.page import SECTIONS, ReportData, render_page

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM = shutil.which("chromium")
MISSING = "Not in these results"


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`faultline tour --quick` on an 80-column terminal: its report directory and output."""
    out = tmp_path_factory.mktemp("tour") / "report"
    result = run_at(80, "tour", "--quick", "--out", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    return out, result.stdout


def _section(page: str, name: str) -> str:
    m = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert m is not None, f"no section {name}"
    return m.group(1)


# ---------------------------------------------------------------- the tour

@pytest.mark.slow
def test_quick_tour_writes_every_section(tour: tuple[Path, str]) -> None:
    out, _ = tour
    page = (out / "index.html").read_text()
    for name in SECTIONS:
        assert MISSING not in _section(page, name), name
    assert "rename-sbusied on cow-rename" in _section(page, "counterexample")
    assert "KASSERT in vm_page_assert_xbusied" in _section(page, "counterexample")
    assert "ran out of budget (20 executions)" in _section(page, "exploration")
    assert "every trace" in _section(page, "exploration")
    # 3 plots and 2 flame graphs, embedded; nothing is loaded from anywhere else.
    assert page.count('<img src="data:image/') == 5
    assert not re.search(r'(src|href)="(https?:)?//', page)
    for href in re.findall(r'href="(?!#|data:)([^"]*)"', page):
        assert (out / href).is_file(), href


@pytest.mark.slow
def test_quick_tour_tells_the_story_in_80_columns(tour: tuple[Path, str]) -> None:
    _, stdout = tour
    for act in ("1/4", "2/4", "3/4", "4/4"):
        assert act in stdout
    assert "exhaustive" in stdout and "out of budget" in stdout
    assert "VIOLATION (panic)" in stdout
    assert "13 of 18 seeded bugs caught" in stdout
    assert max(len(line) for line in stdout.splitlines()) <= 80


@pytest.mark.slow
def test_report_rebuilds_the_tour_page_from_saved_results(tour: tuple[Path, str],
                                                          tmp_path: Path) -> None:
    out, _ = tour
    again = tmp_path / "again"
    result = run("report", str(out / "results"), str(out / "replay"), str(out / "sim"),
                 "--out", str(again))
    assert result.exit_code == 0, result.output + result.stderr
    assert (again / "index.html").read_text() == (out / "index.html").read_text()


@pytest.mark.slow
def test_the_report_opens_in_a_browser(tour: tuple[Path, str], tmp_path: Path) -> None:
    """Headless Chromium: no console message, every image decoded, a screenshot."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    out, _ = tour
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    verdict, log = _open(tmp_path, copy / "index.html")
    assert verdict == {"images": 5, "bad": [], "errors": []}
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", out / "index.html", "--window-size=1200,1500")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# drawImage decodes an image at once, and throws for a broken one; decode() would
# resolve after --dump-dom has already dumped (virtual time does not wait for decoders).
_IMAGE_CHECK = """<script>
const errors = [];
window.addEventListener("error", e => errors.push(String(e.message || e.target.src)), true);
window.addEventListener("load", () => {
  const bad = [];
  const ctx = document.createElement("canvas").getContext("2d");
  for (const img of document.images) {
    try { ctx.drawImage(img, 0, 0); } catch (e) { bad.push(img.alt); continue; }
    if (!img.complete || !img.naturalWidth) bad.push(img.alt);
  }
  const out = document.createElement("pre");
  out.id = "fl-check";
  out.textContent = JSON.stringify({images: document.images.length, bad, errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.slow
def test_the_browser_check_sees_a_broken_image(tmp_path: Path) -> None:
    """The check above, on a page with a missing and a corrupt image and a console line."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img src="missing.png" alt="missing">'
                    '<img src="data:image/png;base64,iVBORw0KGgo=" alt="corrupt">'
                    '<script>console.log("hello")</script></body></html>')
    verdict, log = _open(tmp_path, page)
    assert verdict["bad"] == ["missing", "corrupt"] and len(verdict["errors"]) == 2
    assert any(":CONSOLE" in line and "hello" in line for line in log.splitlines())


def _open(tmp: Path, page: Path) -> tuple[dict[str, object], str]:
    """Chromium's verdict on `page` (rewritten with _IMAGE_CHECK: the report itself has no
    script), and its log."""
    page.write_text(page.read_text().replace("</body>", f"{_IMAGE_CHECK}</body>"))
    dom, log = _chromium(tmp, "--dump-dom", page)
    m = re.search(r'<pre id="fl-check">(.*?)</pre>', dom)
    assert m is not None, log[-2000:]
    return json.loads(m.group(1).replace("&quot;", '"')), log


def _chromium(tmp: Path, action: str, page: Path, *extra: str) -> tuple[str, str]:
    """Run headless Chromium on `page` (its own profile, no sandbox: a file we wrote)."""
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=10000", *extra, action, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


# ---------------------------------------------------------------- the page, fast

CHECK = {"verdict": "pass", "policy": "sbusy", "strategy": "dpor", "max_executions": 5,
         "results": [{"scenario": "<script>alert(1)</script>", "policy": "sbusy",
                      "strategy": "dpor", "verdict": "pass", "executions": 5, "steps": 70,
                      "expected": "pass", "exhaustive": False, "preemption_bound": 1,
                      "sleep_blocked": 0, "bound_reason": "a & b < c", "coverage": {}}]}


def test_the_page_escapes_what_it_shows(tmp_path: Path) -> None:
    page = render_page(ReportData(root=tmp_path, checks=[CHECK]))
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b &lt; c" in page
    assert "ran out of budget (5 executions)" in page


def test_report_from_a_check_result_alone_says_what_is_missing(tmp_path: Path) -> None:
    saved = tmp_path / "check.json"
    saved.write_text(json.dumps({**CHECK, "results": [
        {**CHECK["results"][0], "scenario": "rw-race-shadow"}]}))
    result = run("report", str(saved), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output + result.stderr
    page = (tmp_path / "out" / "index.html").read_text()
    assert MISSING not in _section(page, "verdicts")
    for name in ("counterexample", "mutants", "contention", "lock-profile", "flame-graph"):
        assert MISSING in _section(page, name), name
    assert (tmp_path / "out" / "results" / "check.json").is_file()


def test_report_refuses_a_file_that_is_no_result(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    result = run("report", str(other), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "not a faultline result" in result.stderr
    assert not (tmp_path / "out" / "index.html").exists()


def test_docs_mutants_is_generated_from_the_variants() -> None:
    assert (DOCS / "mutants.md").read_text() == mutants_markdown(), \
        "docs/mutants.md is stale: python -m faultline.report.mutant_doc > docs/mutants.md"
