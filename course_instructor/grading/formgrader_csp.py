"""A Jupyter server extension: nbgrader's Formgrader pages under a strict Content-Security-Policy.

The Formgrader renders student submissions inside the instructor's logged-in
JupyterLab origin.  Their content is sanitised (:mod:`.render`); this is the
second wall.  Every HTML page under ``<base_url>/formgrader/`` gets a policy
that lets the page run only

* scripts served by this server (``'self'``: nbgrader's own JavaScript), and
* the inline ``<script>`` blocks of nbgrader's page template, identified by
  their hashes, computed for each response: on a submission page only those
  *before* the rendered notebook (the first element with ``id="notebook"``;
  none if it is not found), on the other Formgrader pages (which render no
  student content) all of them; and nbgrader's few inline event handlers
  (``toggle_name(...)``, ``toggleAllNames()``), by hash;

so a script or event handler inside a student's cell never runs, and nothing is
loaded from another site (MathJax from its CDN included: formulas show as TeX).
JupyterLab's own pages are not touched.

``make formgrader`` enables it (``jupyter server extension enable --sys-prefix
course_instructor.grading.formgrader_csp``); in a test:
``--ServerApp.jpserver_extensions={"course_instructor.grading.formgrader_csp": True, ...}``.
"""
from __future__ import annotations

import base64
import hashlib
import re

from tornado.web import OutputTransform

#: nbgrader 0.9's inline event handlers in its Formgrader templates (allowed by hash).
NBGRADER_HANDLERS = ("toggle_name(true);", "toggle_name(false);", "toggleAllNames()")
#: Where the student's notebook starts in a Formgrader submission page: the first element with
#: id="notebook" (nbgrader's formgrade template; nbconvert re-serialises it, attributes in any order).
NOTEBOOK_MARKER = re.compile(rb"""<[a-z]+\b[^>]*\bid\s*=\s*["']?notebook["'\s/>]""", re.IGNORECASE)

_INLINE_SCRIPT = re.compile(rb"<script\b(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)


def _hash(text: bytes) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text).digest()).decode("ascii") + "'"


def policy(page: bytes, submission: bool = True) -> str:
    """The Content-Security-Policy for one Formgrader HTML page (its template's inline scripts allowed).

    ``submission``: a page that renders a student's notebook; only the inline scripts before the
    notebook are the template's (none at all if the notebook's start cannot be found).  Other
    Formgrader pages (lists of assignments, students, submissions) render no student content:
    all their inline scripts are nbgrader's.
    """
    if submission:
        m = NOTEBOOK_MARKER.search(page)
        trusted = page[:m.start()] if m else b""      # fail closed: then no inline script runs
    else:
        trusted = page
    scripts = sorted({_hash(m.group(1)) for m in _INLINE_SCRIPT.finditer(trusted)})
    handlers = sorted(_hash(h.encode()) for h in NBGRADER_HANDLERS)
    return ("default-src 'none'; "
            f"script-src 'self' {' '.join(scripts)} 'unsafe-hashes' {' '.join(handlers)}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; frame-src 'none'; media-src 'none'; "
            "base-uri 'self'; form-action 'self'; frame-ancestors 'self'")


class FormgraderCSP(OutputTransform):
    """Sets the policy on the HTML responses under ``<base_url>/formgrader/``."""

    prefix = "/formgrader/"

    def __init__(self, request):
        super().__init__(request)
        self.applies = request.path.startswith(self.prefix) or request.path == self.prefix.rstrip("/")
        self.submission = request.path.startswith(self.prefix + "submissions/")

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        if self.applies and headers.get("Content-Type", "").startswith("text/html"):
            # a page written in pieces has its template's scripts only partly seen: fewer allowed, never more
            headers["Content-Security-Policy"] = policy(chunk, submission=self.submission)
        return status_code, headers, chunk


def _jupyter_server_extension_points():
    return [{"module": "course_instructor.grading.formgrader_csp"}]


def _load_jupyter_server_extension(serverapp):
    app = serverapp.web_app
    FormgraderCSP.prefix = app.settings.get("base_url", "/").rstrip("/") + "/formgrader/"
    if FormgraderCSP not in app.transforms:
        app.transforms.insert(0, FormgraderCSP)      # first: before any compression of the body
    serverapp.log.info("Formgrader pages are served under a strict Content-Security-Policy "
                       "(course_instructor.grading.formgrader_csp)")


load_jupyter_server_extension = _load_jupyter_server_extension
