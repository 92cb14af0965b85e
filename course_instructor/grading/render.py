"""Student content made inert before a browser renders it (Formgrader, feedback).

Markdown, HTML, SVG and outputs of a submission are shown in the instructor's
logged-in browser (nbgrader's Formgrader) and in the feedback HTML.  A script
there runs with the instructor's session: it can call the Jupyter and
Formgrader APIs (write files, set grades).  So everything a student controls is
cleaned by a maintained sanitiser (``nh3``, the binding of Rust's ammonia)
before it is rendered, in two places:

* when the grader writes the autograded notebook (:func:`sanitize_notebook`,
  called by :class:`~.preprocessors.SandboxedExecute`);
* again when nbconvert renders a notebook for the Formgrader or the feedback
  (:class:`SanitizeNotebook`, registered as ``HTMLExporter.preprocessors`` in
  ``nbgrader_config.py``), so notebooks graded before this existed are covered.

What happens to each kind of content:

* **markdown cells** (written answers included): the cell is rendered to HTML as
  the Formgrader does; if the sanitiser would change anything in it (a script,
  an event handler, a ``javascript:`` link, an iframe, a remote image, ...), the
  cell's source is shown verbatim as text, in a code block under a note, instead
  of being rendered: the instructor reads exactly what the student wrote, and
  nothing of it is active.  Inert markdown is kept byte for byte.
* **HTML outputs** (``text/html``): sanitised (tables, text formatting and
  ``data:`` images survive; scripts, styles sheets, forms, frames, event
  handlers and links other than http(s)/mailto do not).
* **SVG outputs**: sanitised with an SVG allow-list (shapes, text, gradients,
  clip paths; no scripts, ``foreignObject``, animation, links or external
  references).
* **markdown outputs**: kept when inert, otherwise shown as text.
* **images** (png, jpeg, gif): kept when they are valid base64.
* **other outputs** (JavaScript, widgets, PDF, unknown types): dropped.
* **raw cells**: their format is removed, so no HTML is passed through.

The pages are also served under a Content-Security-Policy (see
:data:`FEEDBACK_CSP` and :mod:`.formgrader_csp`): if anything slipped past the
sanitiser, the browser still refuses inline scripts and requests to other sites.
"""
from __future__ import annotations

import base64
import binascii
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import nh3
from traitlets import Bool

from nbconvert.preprocessors import Preprocessor

from .verify import _text      # an output's text field: a string, or a list of strings joined
from nbformat import from_dict

from course_lib.evidence import MIME as EVIDENCE_MIME

#: The Content-Security-Policy of the feedback HTML files (a <meta> tag: they are opened from disk).
#: No script at all (the feedback needs none; MathJax from a CDN would be a request to another site),
#: styles inline only, images only as data: URLs, nothing fetched, no forms, no base URL.
FEEDBACK_CSP = ("default-src 'none'; script-src 'none'; object-src 'none'; style-src 'unsafe-inline'; "
                "img-src data:; font-src data:; media-src 'none'; frame-src 'none'; connect-src 'none'; "
                "base-uri 'none'; form-action 'none'")

NOTE = ("*[grader] This cell held HTML that could run code or load content from another site; "
        "it is shown as text, exactly as the student wrote it.*")

# ---- HTML ------------------------------------------------------------------------------
HTML_TAGS = set(nh3.ALLOWED_TAGS) - {"area", "map"}
_GLOBAL_ATTRS = {"class", "id", "title", "align", "lang", "dir", "style"}
HTML_ATTRS = {
    "*": _GLOBAL_ATTRS,
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "valign"}, "th": {"colspan", "rowspan", "scope", "valign"},
    "table": {"border", "cellpadding", "cellspacing"}, "col": {"span"}, "colgroup": {"span"}, "ol": {"start", "type"}, "li": {"value"},
    "time": {"datetime"}, "data": {"value"}, "details": {"open"},
}
STYLE_PROPERTIES = {"color", "background-color", "text-align", "vertical-align", "font-weight", "font-style",
                    "font-size", "font-family", "text-decoration", "white-space", "width", "height",
                    "max-width", "min-width", "border", "border-collapse", "border-spacing", "padding",
                    "margin", "display", "fill", "stroke", "stroke-width", "opacity"}
URL_SCHEMES = {"http", "https", "mailto", "data", "attachment"}

_IMG_SRC = re.compile(r"(?i)^(data:image/(png|jpeg|gif|webp|svg\+xml)[;,]|attachment:)")
_HREF = re.compile(r"(?i)^(https?:|mailto:|#)")
_FOREIGN_URL = re.compile(r"(?i)url\s*\(\s*(?![\"']?\s*#)")    # url(...) to anything but a fragment
_SVG_HREF = re.compile(r"^#[\w.:-]*$")
_URL_ATTRS = {"href", "xlink:href", "src"}


def _html_attribute(tag: str, attr: str, value: str) -> str | None:
    value = value.strip() if attr in _URL_ATTRS else value
    if _FOREIGN_URL.search(value):
        return None
    if tag == "img" and attr == "src":
        return value if _IMG_SRC.match(value) else None
    if attr == "href":
        return value if _HREF.match(value) else None
    return value


def clean_html(text: str) -> str:
    """``text`` (HTML) with everything active or fetching removed."""
    return nh3.clean(text, tags=HTML_TAGS, attributes=HTML_ATTRS, url_schemes=URL_SCHEMES, link_rel=None,
                     attribute_filter=_html_attribute, filter_style_properties=STYLE_PROPERTIES,
                     strip_comments=True)


# ---- SVG -------------------------------------------------------------------------------
SVG_TAGS = {"svg", "g", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "text", "tspan",
            "defs", "use", "clipPath", "linearGradient", "radialGradient", "stop", "title", "desc", "symbol",
            "marker", "pattern"}
SVG_ATTRS = {"*": {
    "id", "class", "style", "transform", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "dx", "dy",
    "d", "points", "width", "height", "viewBox", "preserveAspectRatio", "version", "xmlns", "xmlns:xlink",
    "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-linecap", "stroke-linejoin",
    "stroke-dasharray", "stroke-dashoffset", "stroke-opacity", "stroke-miterlimit", "opacity", "clip-path",
    "clip-rule", "clipPathUnits", "font-family", "font-size", "font-weight", "font-style", "text-anchor",
    "dominant-baseline", "alignment-baseline", "offset", "stop-color", "stop-opacity", "gradientUnits",
    "gradientTransform", "markerWidth", "markerHeight", "refX", "refY", "orient", "markerUnits",
    "patternUnits", "patternTransform", "href", "xlink:href"}}
SVG_STYLE_PROPERTIES = STYLE_PROPERTIES | {
    "fill-opacity", "fill-rule", "stroke-linecap", "stroke-linejoin", "stroke-dasharray", "stroke-dashoffset",
    "stroke-opacity", "stroke-miterlimit", "clip-path", "clip-rule", "text-anchor", "dominant-baseline",
    "stop-color", "stop-opacity", "font", "font-stretch", "letter-spacing"}


def _svg_attribute(tag: str, attr: str, value: str) -> str | None:
    if attr in ("href", "xlink:href"):
        return value if _SVG_HREF.match(value.strip()) else None     # references inside the image only
    if _FOREIGN_URL.search(value):
        return None
    return value


def clean_svg(text: str) -> str:
    """``text`` (an SVG image) with scripts, handlers, links and external references removed."""
    out = nh3.clean(text, tags=SVG_TAGS, attributes=SVG_ATTRS, url_schemes=set(), link_rel=None,
                    attribute_filter=_svg_attribute, filter_style_properties=SVG_STYLE_PROPERTIES,
                    strip_comments=True)
    # back to what an XML parser reads (renderers show SVG as an <img>): SVG 2's href instead of
    # xlink:href (the sanitiser drops the xmlns:xlink declaration), the SVG namespace, no HTML entities
    out = out.replace(" xlink:href=", " href=").replace("&nbsp;", "&#160;")
    return re.sub(r"^(\s*<svg)(?![^>]*\sxmlns=)", r'\1 xmlns="http://www.w3.org/2000/svg"', out, count=1)


# ---- comparing HTML ------------------------------------------------------------------------
class _Tokens(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tokens: list[tuple] = []

    def handle_starttag(self, tag, attrs):
        norm = []
        for k, v in attrs:
            v = v or ""
            if k.startswith("xmlns:"):
                continue            # namespace declarations (the sanitiser drops them; see clean_svg)
            if k == "xlink:href":
                k = "href"
            if k == "style":
                v = ";".join(p.replace(" ", "") for p in v.split(";") if p.strip())
            norm.append((k, v))
        self.tokens.append(("<", tag, tuple(sorted(norm))))

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        pass                        # `<a/>` and `<a></a>`; removed elements show as missing start tags

    def handle_data(self, data):
        if data.strip():
            self.tokens.append(("t", " ".join(data.split())))

    # comments, declarations and processing instructions are inert (and the sanitiser drops them)


def _canonical(text: str) -> list[tuple]:
    parser = _Tokens()
    parser.feed(text)
    parser.close()
    out = []
    for tok in parser.tokens:
        if tok[0] == "t" and out and out[-1][0] == "t":     # adjacent text (split by a removed comment)
            out[-1] = ("t", out[-1][1] + " " + tok[1])
            continue
        out.append(tok)
    return out


def same_html(a: str, b: str) -> bool:
    """The two HTML texts have the same elements, attributes and text (whitespace and quoting aside)."""
    return _canonical(a) == _canonical(b)


# ---- markdown --------------------------------------------------------------------------
def markdown_to_html(source: str) -> str:
    """What the Formgrader and the feedback show for a markdown cell (nbconvert's filter)."""
    from nbconvert.filters.markdown import markdown2html

    return markdown2html(source)


def markdown_is_inert(source: str) -> bool:
    """Rendering ``source`` gives nothing the sanitiser would remove."""
    try:
        rendered = markdown_to_html(source)
    except Exception:       # noqa: BLE001  (a renderer crash on hostile input: not inert)
        return False
    return same_html(rendered, clean_html(rendered))


def as_text(source: str) -> str:
    """``source`` verbatim in a fenced code block (longer fence than any run of backticks in it), under a note."""
    longest = max((len(m) for m in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{NOTE}\n\n{fence}text\n{source}\n{fence}\n"


def inert_markdown(source: str) -> str:
    """``source`` itself when inert, otherwise the same text shown as text (see :func:`as_text`)."""
    if markdown_is_inert(source):
        return source
    shown = as_text(source)
    if markdown_is_inert(shown):
        return shown
    return f"{NOTE}\n\n(the cell could not be shown safely; open the submitted notebook as a file)\n"


# ---- notebooks -------------------------------------------------------------------------
_KEEP_AS_IS = {"text/plain", "text/latex", "application/json", EVIDENCE_MIME}
_IMAGES = {"image/png", "image/jpeg", "image/gif"}
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")


def _valid_base64(value) -> bool:
    text = _text(value)
    if text is None or not _BASE64.match(text):
        return False
    try:
        base64.b64decode("".join(text.split()), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def _clean_metadata(meta) -> dict:
    """Only sizes of images survive (``isolated`` and the rest are dropped)."""
    out = {}
    if isinstance(meta, dict):
        for mime, value in meta.items():
            if mime in _IMAGES | {"image/svg+xml"} and isinstance(value, dict):
                sizes = {k: v for k, v in value.items() if k in ("width", "height") and type(v) in (int, float)}
                if sizes:
                    out[mime] = sizes
    return out


_STYLE_SHEET = re.compile(r"(?is)<style\b[^>]*>.*?</style\s*>")   # pandas' tables and matplotlib's SVG have one
_SVG_PREAMBLE = re.compile(r"(?is)<\?xml.*?\?>|<!DOCTYPE[^>]*>|<metadata\b.*?</metadata\s*>")
SCRIPT_MIME = ("application/javascript", "text/javascript", "application/x-javascript", "application/ecmascript",
               "text/ecmascript")


def sanitize_output(out) -> tuple[dict | None, bool]:
    """(the inert version of an output or None to drop it, whether anything active was removed).

    Dropping a style sheet, an unknown output type or unknown metadata is not counted as active.
    """
    if not isinstance(out, dict) or out.get("output_type") not in ("display_data", "execute_result"):
        return out, False           # streams and errors are escaped by every renderer
    data = out.get("data") if isinstance(out.get("data"), dict) else {}
    clean, changed = {}, False
    for mime, value in data.items():
        text = _text(value)
        if mime in _KEEP_AS_IS:
            clean[mime] = value
        elif mime == "text/html" and text is not None:
            clean[mime] = clean_html(text)
            changed |= not same_html(_STYLE_SHEET.sub("", text), clean[mime])
        elif mime == "image/svg+xml" and text is not None:
            clean[mime] = clean_svg(text)
            changed |= not same_html(_SVG_PREAMBLE.sub("", _STYLE_SHEET.sub("", text)), clean[mime])
        elif mime == "text/markdown" and text is not None:
            if markdown_is_inert(text):
                clean[mime] = text
            else:
                clean.setdefault("text/plain", text)
                changed = True
        elif mime in _IMAGES and _valid_base64(value):
            clean[mime] = value
        else:                       # JavaScript, widgets, PDF, unknown or malformed: dropped
            changed |= mime in SCRIPT_MIME or mime in _IMAGES     # widgets (tqdm, the lab's) are not findings
    meta = _clean_metadata(out.get("metadata"))
    if not clean:
        return None, True
    new = {"output_type": out["output_type"], "data": clean, "metadata": meta}
    if out["output_type"] == "execute_result":
        count = out.get("execution_count")
        new["execution_count"] = count if isinstance(count, int) else None
    return new, changed


def sanitize_notebook(nb) -> list[str]:
    """Make every student-controlled part of ``nb`` inert, in place; returns what was changed (cell: what)."""
    changed = []
    for i, cell in enumerate(nb.get("cells", []) if isinstance(nb, dict) else []):
        if not isinstance(cell, dict):
            continue
        where = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {i}"
        kind = cell.get("cell_type")
        if kind == "markdown":
            source = _text(cell.get("source")) or ""
            shown = inert_markdown(source)
            if shown != source:
                cell["source"] = shown
                changed.append(f"{where}: markdown")
            attachments = cell.get("attachments")
            if isinstance(attachments, dict):
                kept = {name: {m: v for m, v in files.items() if m in _IMAGES and _valid_base64(v)}
                        for name, files in attachments.items() if isinstance(files, dict)}
                kept = {name: files for name, files in kept.items() if files}
                if kept != attachments:
                    cell["attachments"] = kept
                    changed.append(f"{where}: attachments")
        elif kind == "raw":
            meta = cell.get("metadata", {})
            for key in ("raw_mimetype", "format"):
                if key in meta:
                    del meta[key]
                    changed.append(f"{where}: raw {key}")
        elif kind == "code":
            outs = []
            for out in cell.get("outputs", []) or []:
                new, was_changed = sanitize_output(out)
                if was_changed:
                    changed.append(f"{where}: output")
                if new is not None:
                    outs.append(new)
            cell["outputs"] = outs
    meta = nb.get("metadata", {}) if isinstance(nb, dict) else {}
    if isinstance(meta, dict) and "widgets" in meta:
        del meta["widgets"]
        changed.append("notebook: widget state")
    return changed


class SanitizeNotebook(Preprocessor):
    """nbconvert preprocessor: :func:`sanitize_notebook` before the HTML is rendered (Formgrader, feedback)."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):
        found = sanitize_notebook(nb)
        if found:
            self.log.info("made inert before rendering: %s", "; ".join(found[:20]))
        return from_dict(nb), resources         # new outputs are plain dicts: NotebookNodes again


# ---- feedback files ----------------------------------------------------------------------
_HEAD = re.compile(rb"<head(\s[^>]*)?>", re.IGNORECASE)
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{html.escape(FEEDBACK_CSP)}">'.encode()


def protect_feedback_file(path: Path) -> bool:
    """Put :data:`FEEDBACK_CSP` first in the ``<head>`` of an HTML file (once); True if written."""
    data = path.read_bytes()
    if CSP_META in data[:4096]:
        return False
    m = _HEAD.search(data)
    if m is None:
        return False
    path.write_bytes(data[:m.end()] + b"\n" + CSP_META + data[m.end():])
    return True


def protect_feedback(folder: Path) -> int:
    """:func:`protect_feedback_file` on every ``*.html`` under ``folder``; returns how many were written."""
    n = 0
    for path in sorted(Path(folder).rglob("*.html")) if Path(folder).is_dir() else []:
        if path.is_file() and not path.is_symlink():
            n += protect_feedback_file(path)
    return n
