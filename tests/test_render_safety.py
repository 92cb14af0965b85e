"""Student content is inert where the instructor or the student sees it (course_instructor/grading/render.py).

Unit tests of the sanitiser on each class of payload (markdown cells, written
answers, HTML, SVG and markdown outputs, raw cells, attachments), of the
rendering path nbgrader uses (nbconvert's HTMLExporter with the Formgrader's and
the feedback's templates and this course's nbgrader_config.py), of the feedback
pages' Content-Security-Policy and of the Formgrader's.  The browser test is
tests/test_browser_grading_views.py.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import xml.dom.minidom
from html.parser import HTMLParser
from pathlib import Path

import pytest

from course_instructor.grading import formgrader_csp, render

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions" / "rlhf_ppo"
RELEASED = REPO / "notebooks" / "rlhf_ppo"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()

#: Each payload would run a script (or fetch from elsewhere) if rendered as it is.
MARKDOWN_PAYLOADS = {
    "script": "Intro text.\n\n<script>fetch('/api/contents/pwned.txt', {method: 'PUT'})</script>\n",
    "img-onerror": "An image: <img src=x onerror=\"window.pwned = 1\">",
    "svg-onload": "<svg onload=\"window.pwned = 1\"><circle r=\"4\"/></svg>",
    "javascript-link": "[click me](javascript:window.pwned=1)",
    "javascript-link-html": "<a href=\"JaVaScRiPt:window.pwned=1\">x</a>",
    "javascript-link-entities": "<a href=\"jav&#x61;script&colon;window.pwned=1\">x</a>",
    "iframe-srcdoc": "<iframe srcdoc=\"<script>parent.pwned=1</script>\"></iframe>",
    "remote-image": "![tracker](http://attacker.example/pixel.png)",
    "style-exfil": "<style>body { background: url(http://attacker.example/x) }</style>",
    "form": "<form action=\"/formgrader/api/grade/1\" method=\"post\"><button>save</button></form>",
    "object": "<object data=\"http://attacker.example/x.swf\"></object>",
    "meta-refresh": "<meta http-equiv=\"refresh\" content=\"0;url=javascript:window.pwned=1\">",
    "base": "<base href=\"http://attacker.example/\">",
    "details-ontoggle": "<details open ontoggle=\"window.pwned=1\"><summary>s</summary></details>",
    "math-escape": "$x$ </span><script>window.pwned=1</script>",
    "fence-breakout": "```\n</code></pre><script>window.pwned=1</script>\n```\n<img src=x onerror=\"window.pwned=1\">",
}

BENIGN_MARKDOWN = [
    "# Heading\n\nSome *emphasis*, **bold**, `code < 3`, and $\\pi_\\theta(a|s) < 1$.",
    "> a quote with a [link](https://example.org) and a <b>bold</b> word\n\n1. one\n2. two",
    "| a | b |\n|---|---|\n| 1 | <sub>2</sub> |\n",
    "```python\nprint('<script>alert(1)</script>')\n```",
    "YOUR ANSWER HERE",
    "",
]


class _Elements(HTMLParser):
    """Every element and attribute of an HTML text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    handle_startendtag = handle_starttag


ACTIVE_TAGS = {"script", "iframe", "object", "embed", "form", "meta", "base", "link", "style", "frame",
               "frameset", "foreignobject", "animate", "set", "image"}


def active_parts(html: str) -> list[str]:
    """What in ``html`` could run a script or fetch something when a browser renders it."""
    found = []
    for tag, attrs in _Elements(html).elements:
        if tag in ACTIVE_TAGS:
            found.append(f"<{tag}>")
        for k, v in attrs.items():
            if k.startswith("on") or k == "srcdoc":
                found.append(f"{tag}[{k}]")
            if k in ("href", "src", "xlink:href", "action", "data") and re.match(
                    r"(?i)\s*(javascript|vbscript|data:text|https?:|//)", v) and not (
                    k == "href" and tag == "a" and re.match(r"(?i)\s*https?:", v)):
                found.append(f"{tag}[{k}={v[:30]}]")
            if "url(" in v.replace(" ", "").lower() and "url(#" not in v.replace(" ", "").lower():
                found.append(f"{tag}[{k} url()]")
    return found


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def text_of(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


# ---- markdown cells ------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MARKDOWN_PAYLOADS))
def test_markdown_payload_is_shown_as_text(name):
    payload = MARKDOWN_PAYLOADS[name]
    assert active_parts(render.markdown_to_html(payload)) or name in ("javascript-link",), \
        f"the payload {name} is not active to begin with: the test proves nothing"
    assert not render.markdown_is_inert(payload)
    shown = render.inert_markdown(payload)
    assert payload in shown, "the student's text is kept verbatim (readable for the grader)"
    assert render.NOTE in shown
    html = render.markdown_to_html(shown)
    assert active_parts(html) == [], html
    assert render.markdown_is_inert(shown)


def test_markdown_links_with_javascript_are_not_active_after_rendering():
    # nbconvert's renderer keeps a javascript: link in markdown syntax as it is: it must not survive
    html = render.markdown_to_html(render.inert_markdown(MARKDOWN_PAYLOADS["javascript-link"]))
    assert not any(attrs.get("href", "").lower().startswith("javascript")
                   for tag, attrs in _Elements(html).elements if tag == "a")


@pytest.mark.parametrize("text", BENIGN_MARKDOWN)
def test_benign_markdown_is_kept_byte_for_byte(text):
    assert render.inert_markdown(text) == text


def test_the_course_notebooks_markdown_is_left_alone():
    """No false alarm on any markdown cell the course itself ships (sources and student copies)."""
    cells = [(p.name, i, text_of(c)) for folder in (SOLUTIONS, RELEASED) for p in sorted(folder.glob("*.ipynb"))
             for i, c in enumerate(load(p)["cells"]) if c["cell_type"] == "markdown"]
    assert len(cells) > 50
    flagged = [(name, i) for name, i, src in cells if not render.markdown_is_inert(src)]
    assert flagged == []


def test_written_answer_keeps_its_text_and_loses_its_script():
    """Notebook 2's written answer ``written1-kl``: the model answer with a payload appended."""
    nb = load(SOLUTIONS / "2_ppo_happy.ipynb")
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "written1-kl")
    answer = text_of(cell)
    honest = json.loads(json.dumps(nb))
    assert render.sanitize_notebook(honest) == []           # an honest answer: untouched
    assert honest == nb
    cell["source"] = answer + "\n\n<img src=x onerror=\"fetch('/formgrader/api/grade/1', {method: 'PUT'})\">\n"
    changed = render.sanitize_notebook(nb)
    assert changed == ["written1-kl: markdown"]
    shown = text_of(cell)
    assert answer in shown                                   # every word of it, for the grader to read
    assert active_parts(render.markdown_to_html(shown)) == []
    assert cell["metadata"]["nbgrader"]["grade_id"] == "written1-kl"   # still graded by hand


def test_attachments_and_raw_cells():
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "![a](attachment:a.png) ![b](attachment:b.html)",
         "attachments": {"a.png": {"image/png": PNG}, "b.html": {"text/html": "PHNjcmlwdD4="},
                         "c.png": {"image/png": "\"><script>"}}},
        {"cell_type": "raw", "metadata": {"raw_mimetype": "text/html", "format": "text/html"},
         "source": "<script>window.pwned=1</script>"},
    ], "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {}}}}
    changed = render.sanitize_notebook(nb)
    assert nb["cells"][0]["attachments"] == {"a.png": {"image/png": PNG}}
    assert nb["cells"][1]["metadata"] == {}                  # no format: nbconvert renders nothing of it
    assert "widgets" not in nb["metadata"]
    assert changed


# ---- outputs ---------------------------------------------------------------------------------
def display(data: dict, metadata: dict | None = None) -> dict:
    return {"output_type": "display_data", "data": data, "metadata": metadata or {}}


@pytest.mark.parametrize("html", [
    "<script>window.pwned=1</script><b>after</b>",
    "<img src=x onerror=\"window.pwned=1\">",
    "<svg><script>window.pwned=1</script></svg>",
    "<iframe srcdoc=\"<script>parent.pwned=1</script>\"></iframe>",
    "<a href=\"javascript:window.pwned=1\">x</a>",
    "<div style=\"background-image: url(http://attacker.example/x)\">x</div>",
    "<img src=\"http://attacker.example/pixel.png\">",
    "<img src=\"/api/contents/secret\">",
    "<object data=\"x\"></object><embed src=\"x\"><link rel=stylesheet href=\"http://attacker.example/x.css\">",
    "<form><input name=x></form><math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
])
def test_html_output_payloads_are_removed(html):
    out, changed = render.sanitize_output(display({"text/html": html, "text/plain": "t"}))
    assert changed
    assert active_parts(out["data"]["text/html"]) == []
    assert out["data"]["text/plain"] == "t"


def test_html_tables_survive():
    pd = pytest.importorskip("pandas")
    table = pd.DataFrame({"reward": [0.5, 1.25], "text": ["fine", "<b>x</b>"]})._repr_html_()
    out, changed = render.sanitize_output(display({"text/html": table, "text/plain": "t"}))
    assert not changed                                       # a style sheet dropped is not a finding
    clean = out["data"]["text/html"]
    assert "<table" in clean and "<td>1.25</td>" in clean and "&lt;b&gt;x&lt;/b&gt;" in clean
    assert "<style" not in clean


SVG_PAYLOAD = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="20" '
               'height="20" onload="window.pwned=1"><script>window.pwned=2</script>'
               '<foreignObject><iframe srcdoc="x"></iframe></foreignObject>'
               '<rect width="5" height="5" fill="url(http://attacker.example/x)"/>'
               '<a xlink:href="javascript:window.pwned=3"><text>link</text></a>'
               '<image href="http://attacker.example/x.png"/>'
               '<animate attributeName="href" to="javascript:window.pwned=4"/>'
               '<set attributeName="onmouseover" to="window.pwned=5"/>'
               '<circle cx="10" cy="10" r="4" fill="red"/></svg>')


def test_svg_output_payloads_are_removed():
    out, changed = render.sanitize_output(display({"image/svg+xml": SVG_PAYLOAD, "text/plain": "t"}))
    assert changed
    svg = out["data"]["image/svg+xml"]
    assert active_parts(svg) == [], svg
    assert '<circle cx="10" cy="10" r="4" fill="red">' in svg
    xml.dom.minidom.parseString(svg)                         # still an image a browser can read


def test_matplotlib_svg_survives_as_an_image():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 3, 2])
    ax.set_title("reward per step")
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    out, changed = render.sanitize_output(display({"image/svg+xml": buf.getvalue(), "text/plain": "t"}))
    assert not changed
    svg = out["data"]["image/svg+xml"]
    doc = xml.dom.minidom.parseString(svg)
    assert len(doc.getElementsByTagName("path")) > 10 and len(doc.getElementsByTagName("use")) > 0


def test_markdown_output_other_mimes_and_metadata():
    out, changed = render.sanitize_output(display({"text/markdown": "<script>window.pwned=1</script>"}))
    assert changed and out["data"] == {"text/plain": "<script>window.pwned=1</script>"}
    out, changed = render.sanitize_output(display({"text/markdown": "**fine**"}))
    assert not changed and out["data"] == {"text/markdown": "**fine**"}
    out, changed = render.sanitize_output(display(
        {"application/javascript": "window.pwned=1", "application/vnd.jupyter.widget-view+json": {"model_id": "x"},
         "image/png": PNG, "image/jpeg": "\"><script>window.pwned=1</script>", "text/plain": "fig"},
        {"isolated": True, "image/png": {"width": 100, "height": "\" onload=\"x"}}))
    assert changed
    assert out["data"] == {"image/png": PNG, "text/plain": "fig"}
    assert out["metadata"] == {"image/png": {"width": 100}}
    assert render.sanitize_output(display({"application/javascript": "x"})) == (None, True)
    # a widget (tqdm's bar, the lab's own) is dropped without a finding: its text/plain stays
    widget = display({"application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "text/plain": "HBox()"})
    assert render.sanitize_output(widget) == (display({"text/plain": "HBox()"}), False)


def test_evidence_streams_and_errors_are_untouched():
    from course_lib.evidence import MIME

    ev = display({MIME: {"key": "k", "value": [1, 2]}, "text/plain": "k"})
    assert render.sanitize_output(ev) == ({**ev}, False)
    stream = {"output_type": "stream", "name": "stdout", "text": "<script>x</script>"}
    assert render.sanitize_output(stream) == (stream, False)   # every renderer escapes stream text


# ---- the rendering path: nbconvert with nbgrader's templates and this course's config ----------
def _course_config():
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()


def hostile_notebook() -> dict:
    nb = load(RELEASED / "1_reward_and_data.ipynb")
    nb["cells"].append({"cell_type": "markdown", "id": "hostile-md", "metadata": {},
                        "source": "\n\n".join(MARKDOWN_PAYLOADS.values())})
    nb["cells"].append({"cell_type": "code", "id": "hostile-out", "metadata": {}, "execution_count": 1,
                        "source": "display(HTML(...))", "outputs": [
                            display({"text/html": "<img src=x onerror=\"window.pwned=1\"><b>html-ok</b>"}),
                            display({"image/svg+xml": SVG_PAYLOAD}),
                            {"output_type": "stream", "name": "stdout", "text": "printed-ok\n"}]})
    return nb


def hostile_node():
    import nbformat

    return nbformat.reads(json.dumps(hostile_notebook()), as_version=4)


def test_course_config_renders_inert_html_with_outputs():
    """The course's nbgrader_config.py: HTMLExporter sanitises; outputs are no longer cleared."""
    from nbconvert.exporters import HTMLExporter

    cfg = _course_config()
    assert "ClearOutputPreprocessor" not in cfg or not cfg.ClearOutputPreprocessor.get("enabled")
    assert cfg.HTMLExporter.preprocessors == ["course_instructor.grading.render.SanitizeNotebook"]
    html, _ = HTMLExporter(config=cfg).from_notebook_node(hostile_node())
    body = html.split("<body", 1)[1]
    assert "printed-ok" in body and "html-ok" in body
    assert [a for a in active_parts(body) if "pwned" in a or "attacker" in a] == []


@pytest.mark.parametrize("template", ["formgrade", "feedback"])
def test_nbgrader_templates_render_inert(template):
    """nbgrader's own templates render markdown without nbconvert's sanitiser: the preprocessor covers them."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    cfg = _course_config()
    cfg.HTMLExporter.template_name = template
    cfg.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    cfg.HTMLExporter.extra_template_paths = [os.path.join(handlers.static_path, "node_modules", "bootstrap",
                                                          "dist", "css")]     # as nbgrader's GenerateFeedback
    resources = {"assignment_id": "rlhf_ppo", "notebook_id": "1_reward_and_data", "submission_id": "s1",
                 "index": 0, "total": 1, "base_url": "", "student": "mallory", "last_name": None,
                 "first_name": None, "notebook_path": "autograded/x.ipynb"}
    nb = hostile_node()
    if template == "feedback":
        nb.metadata["nbgrader"] = {}
        for cell in nb.cells:                     # what nbgrader's GetGrades puts there from the gradebook
            if "nbgrader" in cell.metadata:
                cell.metadata.nbgrader.update(score=0, comment="")
        resources.update({"nbgrader": {"notebook": "1_reward_and_data", "score": 0, "max_score": 10,
                                       "late_penalty": 0}})
    html, _ = HTMLExporter(config=cfg).from_notebook_node(nb, resources=resources)
    page = html.encode("utf-8")
    content = page[formgrader_csp.NOTEBOOK_MARKER.search(page).start():].decode("utf-8")
    assert "printed-ok" in content and "html-ok" in content
    assert [a for a in active_parts(content) if "pwned" in a or "attacker" in a or "srcdoc" in a] == []
    assert "onerror" not in "".join(a for t, attrs in _Elements(content).elements for a in attrs)


def test_without_the_preprocessor_the_formgrader_template_would_run_the_payload():
    """Guard of the test above: nbgrader's formgrade template is unsafe on its own."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    exporter = HTMLExporter(template_name="formgrade", extra_template_basedirs=[handlers.template_path])
    html, _ = exporter.from_notebook_node(hostile_node(), resources={
        "assignment_id": "a", "notebook_id": "n", "submission_id": "s", "index": 0, "total": 1, "base_url": "",
        "student": "s", "notebook_path": "p"})
    assert [a for a in active_parts(html.split('<div id="notebook"', 1)[-1]) if "onerror" in a or "script" in a]


# ---- Content-Security-Policy -----------------------------------------------------------------
def test_feedback_pages_get_a_csp_meta_once(tmp_path):
    page = tmp_path / "alice" / "rlhf_ppo" / "1.html"
    page.parent.mkdir(parents=True)
    page.write_text("<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\" />\n<script>x</script></head>"
                    "<body>b</body></html>", encoding="utf-8")
    assert render.protect_feedback(tmp_path) == 1
    assert render.protect_feedback(tmp_path) == 0
    text = page.read_text(encoding="utf-8")
    head = text.split("<head>", 1)[1]
    assert head.lstrip().startswith('<meta http-equiv="Content-Security-Policy"')   # before any script
    assert text.count("Content-Security-Policy") == 1
    assert "script-src 'none'" in render.FEEDBACK_CSP and "connect-src 'none'" in render.FEEDBACK_CSP
    assert "img-src data:" in render.FEEDBACK_CSP


def test_formgrader_policy_allows_the_template_scripts_only():
    head_script = b"\nvar submission_id = \"abc\";\n"
    page = (b"<html><head><script src=\"/formgrader/static/js/formgrade.js\"></script><script type=\"text/javascript\">"
            + head_script + b"</script></head><body><nav><span onclick=\"toggle_name(true);\"></span></nav>"
            b"<div id=\"notebook\"><script>window.pwned=1</script><img src=x onerror=\"window.pwned=1\">"
            b"</div></body></html>")
    csp = formgrader_csp.policy(page)
    # as served: nbconvert re-serialises the page (attributes sorted); the notebook's start is still found
    served = page.replace(b'<div id="notebook">', b'<div class="border-box-sizing" id="notebook" tabindex="-1">')
    assert formgrader_csp.policy(served) == csp
    # no notebook found on a submission page: no inline script at all (fail closed)
    assert formgrader_csp._hash(head_script) not in formgrader_csp.policy(page.replace(b'id="notebook"', b""))
    # other Formgrader pages render no student content: all their inline scripts are nbgrader's
    assert formgrader_csp._hash(b"window.pwned=1") in formgrader_csp.policy(page, submission=False)
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    scripts = directives["script-src"].split()
    assert formgrader_csp._hash(head_script) in scripts
    assert formgrader_csp._hash(b"window.pwned=1") not in scripts
    assert formgrader_csp._hash(b"toggle_name(true);") in scripts
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts and "*" not in scripts
    assert directives["connect-src"] == "'self'" and directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'self'"


def test_formgrader_transform_applies_to_formgrader_html_only():
    from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

    formgrader_csp.FormgraderCSP.prefix = "/formgrader/"

    def run(path, ctype):
        headers = HTTPHeaders({"Content-Type": ctype, "Content-Security-Policy": "frame-ancestors 'self'"})
        t = formgrader_csp.FormgraderCSP(HTTPServerRequest(start_line=RequestStartLine("GET", path, "HTTP/1.1"),
                                                           headers=HTTPHeaders({"Host": "127.0.0.1"})))
        return t.transform_first_chunk(200, headers, b"<html></html>", True)[1]["Content-Security-Policy"]

    assert "script-src 'self'" in run("/formgrader/submissions/abc/", "text/html; charset=UTF-8")
    assert "script-src 'self'" in run("/formgrader/manage_submissions/rlhf_ppo", "text/html")
    assert run("/formgrader/static/js/formgrade.js", "application/javascript") == "frame-ancestors 'self'"
    assert run("/lab", "text/html") == "frame-ancestors 'self'"


def test_release_clears_outputs_on_its_command_line():
    import importlib

    release = importlib.import_module("course_instructor.grading.release")
    assert "--ClearOutputPreprocessor.enabled=True" in Path(release.__file__).read_text(encoding="utf-8")
    assert "c.ClearOutputPreprocessor.enabled = True" not in (REPO / "nbgrader_config.py").read_text()
