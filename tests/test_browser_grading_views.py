"""The instructor's view of a hostile submission: the Formgrader and the feedback, in a real browser.

A tiny course (notebook 1 only) is graded with ``make grade``'s command for two
students: ``honest`` (every exercise solved) and ``mallory`` (every exercise
solved too, plus scripts everywhere a student can put them: a markdown cell of
her own with ``<script>``, ``<img onerror>``, ``<svg onload>``, ``javascript:``
links, ``<iframe srcdoc>``, ``<details ontoggle>`` and ``<input onfocus>``; an
HTML output with a script and an ``onerror`` image; an SVG output with
``onload``).  Every payload, if it ran, would set a flag on the page
(``window.__pwned``), write a file through the Jupyter contents API and set
her grades to 99 through the Formgrader API.

Then a JupyterLab server with nbgrader's Formgrader and the course's
Content-Security-Policy extension (as ``make formgrader`` enables them) serves
the course; Debian's Chromium logs in with the token and opens mallory's
submission in the Formgrader, and her feedback page (from the server and from
disk).  The test asserts that no payload ran (no flag, no request but the
page's own GETs, no file written, grades in the gradebook unchanged), that the
Formgrader's own JavaScript still works under the policy (it fills in the
scores), and that the outputs are there (a print, a matplotlib plot, the
sanitised HTML and SVG).  A control page without any protection shows that the
payloads are live.

Needs ``/usr/bin/chromium`` and bubblewrap; grading takes about a minute or two.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from browser_helpers import CHROMIUM, LabServer, launch_chromium, unavailable, wait_until
from grading_fixtures import (ASSIGNMENT, NB1, RELEASED, SOLUTIONS, autograde, load, meta, read_grades,
                              solved_source, student_notebook, write_nb)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "build" / "screenshots"
NB1_STEM = Path(NB1).stem
MATHJAX = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/"      # nbconvert's default mathjax_url
MARKERS = {"print": "printed-ok-marker", "html": "html-ok-marker", "markdown": "markdown-ok-marker"}


def js(tag: str) -> str:
    """A payload: flag the page, write a file via the contents API, set this submission's grades to 99.

    Single quotes only (it goes into HTML attributes and Python strings), no ``<`` or ``&``.
    """
    return ("(function(t){var w=window;try{w=window.top;w.__pwned}catch(e){w=window}"
            "w.__pwned=(w.__pwned||[]).concat([t]);"
            "var m=document.cookie.match(/_xsrf=([^;]+)/);var h={'Content-Type':'application/json'};"
            "if(m){h['X-XSRFToken']=decodeURIComponent(m[1])}"
            "fetch('/api/contents/pwned-'+t+'.txt',{method:'PUT',headers:h,"
            "body:JSON.stringify({type:'file',format:'text',content:t})});"
            "var s=w.submission_id;if(s){fetch('/formgrader/api/grades?submission_id='+s)"
            ".then(function(r){return r.json()}).then(function(gs){gs.forEach(function(g){"
            "fetch('/formgrader/api/grade/'+g.id,{method:'PUT',headers:h,"
            "body:JSON.stringify({manual_score:99,extra_credit:99})})})})}"
            f"}})('{tag}')")


MARKDOWN_PAYLOAD = "\n\n".join([
    f"# My notes\n\n{MARKERS['markdown']}: the padding function pads on the right.",
    f"<script>{js('md-script')}</script>",
    f"<img src=\"x\" onerror=\"{js('md-img')}\">",
    f"<svg width=\"10\" height=\"10\" onload=\"{js('md-svg')}\"><circle r=\"4\"/></svg>",
    f"<a id=\"jslink\" href=\"javascript:{js('md-link')}\">click me</a>",
    "[markdown link](javascript:window.__pwned=['md-mdlink'])",
    f"<iframe srcdoc=\"<script>{js('md-iframe')}</script>\"></iframe>",
    f"<details open ontoggle=\"{js('md-details')}\"><summary>s</summary>d</details>",
    f"<input autofocus onfocus=\"{js('md-input')}\">",
])

OUTPUT_PAYLOAD = f'''

from IPython.display import HTML, SVG, display
display(HTML("""<b>{MARKERS['html']}</b><img src="x" onerror="{js('out-html-img')}"><script>{js('out-html-script')}</script>"""))
display(SVG("""<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" onload="{js('out-svg')}"><circle cx="20" cy="20" r="15" fill="red"/><script>{js('out-svg-script')}</script></svg>"""))
print("{MARKERS['print']}")
import matplotlib.pyplot as plt
plt.figure(figsize=(2, 2))
plt.plot([1, 3, 2])
plt.show()
'''



def mallory_notebook() -> dict:
    nb = student_notebook(NB1)                      # every exercise solved
    cells = nb["cells"]
    ex1 = next(i for i, c in enumerate(cells) if meta(c).get("grade_id") == "ex1-pad-solution")
    solution = {meta(c).get("grade_id"): solved_source(c) for c in load(SOLUTIONS / NB1)["cells"]}
    cells[ex1]["source"] = solution["ex1-pad-solution"] + OUTPUT_PAYLOAD
    cells.insert(ex1 + 1, {"cell_type": "markdown", "id": "mallory-notes", "metadata": {},
                           "source": MARKDOWN_PAYLOAD})
    return nb


# ---- the graded course, the server, the browser --------------------------------------------
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} not found")
    if shutil.which("bwrap") is None:
        unavailable("bubblewrap (bwrap) is not installed: `make grade` needs it")
    course = tmp_path_factory.mktemp("render-course")
    for folder, src in (("solutions", SOLUTIONS), ("notebooks", RELEASED)):
        (course / folder / ASSIGNMENT).mkdir(parents=True)
        shutil.copy2(src / NB1, course / folder / ASSIGNMENT / NB1)
    shutil.copy2(REPO / "nbgrader_config.py", course)
    write_nb(course / "submitted" / "honest" / ASSIGNMENT / NB1, student_notebook(NB1))
    write_nb(course / "submitted" / "mallory" / ASSIGNMENT / NB1, mallory_notebook())
    t0 = time.time()
    proc = autograde(course, "--jobs", "2", "--timeout", "60", timeout=20 * 60)
    seconds = time.time() - t0
    print(f"\n[grading the tiny course: {seconds:.0f} s]\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {"course": course, "rows": read_grades(course / "grades.csv"), "seconds": seconds}


class FormgraderServer(LabServer):
    """JupyterLab with nbgrader's Formgrader and the course's CSP extension, as `make formgrader` enables them."""

    def __init__(self, root_dir: Path, workdir: Path, csp: bool = True):
        extensions = {"nbgrader.server_extensions.formgrader": True, "course_instructor.grading.formgrader_csp": csp}
        super().__init__(root_dir, workdir, extra_args=tuple(
            f"--ServerApp.jpserver_extensions={name}={enabled}" for name, enabled in extensions.items()))

    def _env(self) -> dict:
        env = super()._env()
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")   # nbgrader runs alembic
        return env


@pytest.fixture(scope="module")
def server(graded, tmp_path_factory):
    srv = FormgraderServer(graded["course"], tmp_path_factory.mktemp("formgrader-state"))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright Python package is not installed (it is in requirements.txt)")
    pw = sync_playwright().start()
    try:
        b = launch_chromium(pw)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


class Recorder:
    """Every request a page makes (method, url) and its console messages."""

    def __init__(self, page):
        self.requests: list[tuple[str, str]] = []
        self.console: list[str] = []
        page.on("request", lambda r: self.requests.append((r.method, r.url)))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    def suspicious(self) -> list[tuple[str, str]]:
        """Requests no page of ours makes: writes, the contents API, other sites (MathJax's CDN aside:
        nbconvert's templates ask for it, and the policy blocks it; see :meth:`blocked_mathjax`)."""
        return [(m, u) for m, u in self.requests
                if m != "GET" or "pwned" in u or "/api/contents" in u
                or not (re.match(r"^(http://127\.0\.0\.1:\d+/|file://|data:|about:)", u)
                        or u.startswith(MATHJAX))]

    def blocked_mathjax(self) -> bool:
        """The template's MathJax was refused by the Content-Security-Policy (so never fetched)."""
        return not any(u.startswith(MATHJAX) for _, u in self.requests) or any(
            "Content Security Policy" in c and MATHJAX in c for c in self.console)

    def clear(self) -> None:
        self.requests.clear()
        self.console.clear()


def log_in(page, server) -> None:
    """The token in the URL once: the server sets its login cookie."""
    page.goto(f"{server.base}/formgrader?token={server.token}")
    page.wait_for_load_state("networkidle")


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    if request.session.testsfailed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(SCREENSHOTS / f"failed_{request.node.name}.png"), full_page=True)
        except Exception:  # noqa: BLE001
            pass
    context.close()


def grades_of(course: Path, student: str) -> list[tuple]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'build' / 'gradebook.db'}", "rlhf-ppo") as gb:
        nb = gb.find_submission_notebook(NB1_STEM, ASSIGNMENT, student)
        return sorted((g.name, g.auto_score, g.manual_score, g.extra_credit) for g in nb.grades)


def submission_id(course: Path, student: str) -> str:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'build' / 'gradebook.db'}", "rlhf-ppo") as gb:
        return gb.find_submission_notebook(NB1_STEM, ASSIGNMENT, student).id


def pwned_flags(page) -> list:
    return page.evaluate("() => window.__pwned || []")


def no_pwned_files(course: Path) -> list[str]:
    return sorted(str(p.relative_to(course)) for p in course.rglob("pwned-*"))


# ---- the tests ------------------------------------------------------------------------------
def test_payloads_are_live_without_protection(browser, page):
    """Control: the same payloads, rendered as nbgrader did before, run in this browser."""
    from course_instructor.grading import render

    html = render.markdown_to_html(MARKDOWN_PAYLOAD)
    page.set_content(f"<html><body>{html}</body></html>")
    page.wait_for_timeout(1500)
    flags = pwned_flags(page)
    assert {"md-script", "md-img", "md-svg", "md-iframe"} <= set(flags), flags


def test_graded_as_usual(graded):
    rows = graded["rows"]
    assert rows["honest"]["status"] == "graded" and rows["mallory"]["status"] == "graded"
    assert rows["mallory"]["total_score"] == rows["honest"]["total_score"]   # her exercises are solved
    assert "active-content" in rows["mallory"]["flags"] and "active-content" not in rows["honest"]["flags"]
    nb = load(graded["course"] / "autograded" / "mallory" / ASSIGNMENT / NB1)
    notes = next(c for c in nb["cells"] if c.get("id") == "mallory-notes")
    assert MARKDOWN_PAYLOAD in "".join(notes["source"])        # kept verbatim, as text
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)     # the plot: outputs are kept


def test_formgrader_view_is_inert_and_shows_outputs(graded, server, page):
    course = graded["course"]
    before = grades_of(course, "mallory")
    log_in(page, server)
    rec = Recorder(page)
    sid = submission_id(course, "mallory")
    t0 = time.time()
    response = page.goto(f"{server.base}/formgrader/submissions/{sid}/")
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0], csp
    content = page.locator("#notebook").first     # nbgrader's panel (nbconvert's own is inside it)
    content.wait_for()
    # nbgrader's own JavaScript works under the policy: it loads the grades and shows the scores ...
    scores = page.locator("input.score")
    wait_until(lambda: scores.count() > 0 and all(scores.nth(i).get_attribute("placeholder") not in (None, "")
                                                  for i in range(scores.count())),
               30, "the Formgrader to show the autograded scores")
    # ... and its inline event handlers run (allowed by hash): the eye icon shows the student's name
    page.locator("span.name-hidden.glyphicon").first.click()
    page.locator("a.name-shown").first.wait_for(state="visible", timeout=10_000)
    page.wait_for_timeout(2000)                                   # time for any payload to fire
    # the student's links are gone; hovering and focusing what remains triggers nothing
    assert page.locator("#notebook a[href^='javascript' i]").count() == 0
    assert page.locator("#notebook iframe, #notebook script, #notebook svg").count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "formgrader_hostile_submission.png"), full_page=True)

    assert pwned_flags(page) == []
    assert rec.suspicious() == [], rec.suspicious()
    assert rec.blocked_mathjax(), rec.console
    assert no_pwned_files(course) == []
    assert grades_of(course, "mallory") == before
    # the outputs are visible: the print, the sanitised HTML, the plot, the SVG (as an image), the notes as text
    text = content.inner_text()
    for marker in MARKERS.values():
        assert marker in text, marker
    assert "<script>" in text                                      # the payload, shown as text
    plot = page.locator("#notebook img[src^='data:image/png']")
    assert plot.count() >= 1
    assert plot.first.evaluate("img => img.complete && img.naturalWidth > 0")
    svg = page.locator("#notebook img[src^='data:image/svg+xml']")
    assert svg.count() == 1 and svg.first.evaluate("img => img.complete && img.naturalWidth > 0")
    print(f"\n[formgrader page checked in {time.time() - t0:.1f} s; {len(rec.requests)} requests]")


@pytest.mark.parametrize("where", ["server", "file"])
def test_feedback_page_is_inert(graded, server, page, where):
    course = graded["course"]
    before = grades_of(course, "mallory")
    feedback = course / "feedback" / "mallory" / ASSIGNMENT / f"{NB1_STEM}.html"
    assert feedback.is_file()
    assert 'http-equiv="Content-Security-Policy"' in feedback.read_text(encoding="utf-8")[:3000]
    if where == "server":          # opened from JupyterLab's server, in the logged-in session
        log_in(page, server)
    rec = Recorder(page)
    if where == "server":
        # as JupyterLab's "Open in New Browser Tab" does (the server refuses /files/ without a referer)
        page.goto(f"{server.base}/files/feedback/mallory/{ASSIGNMENT}/{NB1_STEM}.html",
                  referer=f"{server.base}/lab")
    else:
        page.goto(feedback.as_uri())
    page.wait_for_timeout(2000)
    assert pwned_flags(page) == []
    assert rec.suspicious() == [], rec.suspicious()
    assert rec.blocked_mathjax(), rec.console
    assert no_pwned_files(course) == []
    assert grades_of(course, "mallory") == before
    text = page.locator("body").inner_text()
    for marker in MARKERS.values():
        assert marker in text, marker
    plot = page.locator("img[src^='data:image/png']")
    assert plot.count() >= 1 and plot.first.evaluate("img => img.complete && img.naturalWidth > 0")


# ---- the Content-Security-Policy alone ----------------------------------------------------------
@pytest.fixture
def unsanitised_course(graded, tmp_path_factory):
    """A copy of the graded course with the sanitiser out of the way: the render-time preprocessor
    switched off in its nbgrader_config.py and mallory's raw payloads put back into her autograded
    notebook (a markdown cell and an HTML output), as an autograded notebook from before this
    protection would hold them.  Only the Formgrader's Content-Security-Policy is left."""
    course = tmp_path_factory.mktemp("csp-only") / "course"
    shutil.copytree(graded["course"], course, symlinks=True)
    cfg = course / "nbgrader_config.py"
    text = cfg.read_text(encoding="utf-8")
    off = text.replace('c.HTMLExporter.preprocessors = ["course_instructor.grading.render.SanitizeNotebook"]',
                       "c.HTMLExporter.preprocessors = []")
    off = off.replace("c.HTMLExporter.sanitize_html = True", "c.HTMLExporter.sanitize_html = False")
    assert off.count("c.HTMLExporter.preprocessors = []") == 1 and "sanitize_html = False" in off
    cfg.write_text(off, encoding="utf-8")
    path = course / "autograded" / "mallory" / ASSIGNMENT / NB1
    nb = load(path)
    notes = next(c for c in nb["cells"] if c.get("id") == "mallory-notes")
    notes["source"] = MARKDOWN_PAYLOAD
    ex1 = next(c for c in nb["cells"] if meta(c).get("grade_id") == "ex1-pad-solution")
    ex1["outputs"].append({"output_type": "display_data", "metadata": {}, "data": {
        "text/html": f"<img src=\"x\" onerror=\"{js('raw-out-img')}\"><script>{js('raw-out-script')}</script>"}})
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return course


def open_submission(page, server, course: Path):
    log_in(page, server)
    rec = Recorder(page)
    response = page.goto(f"{server.base}/formgrader/submissions/{submission_id(course, 'mallory')}/")
    page.locator("#notebook").first.wait_for()
    page.wait_for_timeout(2500)
    return rec, response


@pytest.mark.parametrize("csp", [False, True], ids=["control-without-csp", "with-csp"])
def test_csp_alone_stops_what_the_sanitiser_would_miss(unsanitised_course, tmp_path_factory, browser, page, csp):
    course = unsanitised_course
    before = grades_of(course, "mallory")
    srv = FormgraderServer(course, tmp_path_factory.mktemp("csp-only-state"), csp=csp)
    try:
        srv.start()
        rec, response = open_submission(page, srv, course)
        assert page.locator("#notebook script, #notebook img[onerror]").count() > 0   # the payloads are there
        flags = pwned_flags(page)
        if not csp:           # the control: the payloads are live in this page, and reach the APIs
            assert {"md-script", "md-img"} <= set(flags), flags
            wait_until(lambda: no_pwned_files(course), 10, "the control's payloads to write their files")
            wait_until(lambda: grades_of(course, "mallory") != before, 10, "the control's payloads to set grades")
            return
        assert "script-src 'self'" in response.headers.get("content-security-policy", "")
        assert flags == []
        assert rec.suspicious() == [], rec.suspicious()
        assert any("Content Security Policy" in c for c in rec.console), rec.console
        assert no_pwned_files(course) == []
        assert grades_of(course, "mallory") == before
    finally:
        srv.stop()
