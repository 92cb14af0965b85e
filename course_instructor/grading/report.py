"""grades.csv and feedback from the gradebook (``python -m course_instructor.grading report``)."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from pathlib import Path

from . import similarity
from .course import ASSIGNMENT, Course, default_course_dir, run_nbgrader, strip_controls, tail, write_atomic
from .gradebook import exercise_table, grade_table
from .render import protect_feedback


def load_state(course: Course) -> dict:
    """What the last grading runs recorded per student: flags and the submission's fingerprint."""
    try:
        state = json.loads(course.flags_file.read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")


class _Number(str):
    """A number's text, written as it is and unquoted (the csv module quotes what is not a number)."""

    def __float__(self) -> float:
        return float(str(self))


def csv_cell(value) -> str | int | float:
    """A cell no spreadsheet runs as a formula, with control characters escaped.

    Numbers (and the text of a decimal number, without leading zeros: an id
    ``00123`` stays text) stay numbers; text starting with ``= + - @``, a tab
    or a carriage return gets a leading ``'`` (OWASP's rule against CSV
    injection).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value)
    if _NUMBER.fullmatch(text):
        return _Number(text)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return strip_controls(text)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """The grade table as CSV: every cell through :func:`csv_cell`, every text cell quoted (numbers not).

    Quoting keeps a ``;`` or ``,`` inside a cell (a file name in the flags)
    from starting a new cell where a spreadsheet splits at it.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    w.writerow([csv_cell(c) for c in header])
    w.writerows([csv_cell(c) for c in row] for row in rows)
    write_atomic(path, buf.getvalue().encode("utf-8"))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(cell) -> str:
    """A CSV cell a spreadsheet will not run: an apostrophe before a leading = + - @ tab or CR."""
    text = str(cell)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_exercises(course: Course, assignment: str, header: list[str], rows: list[list],
                    grades_csv: Path) -> Path | None:
    """Print the per-exercise table of the students graded in ``rows`` (the grade table) and write it,
    atomically, as ``exercises.csv`` next to ``grades.csv``; returns its path."""
    status = header.index("status")
    graded = [r[0] for r in rows if r[status] == "graded"]
    try:
        ex_header, ex_rows = exercise_table(course.db_url, course.course_id, assignment, graded)
    except Exception as e:    # the summary must not cost the run its grades
        print(f"warning: no exercises.csv ({type(e).__name__}: {str(e)[:200]})", file=sys.stderr)
        return None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerows([[formula_safe(c) for c in r] for r in [ex_header, *ex_rows]])
    path = grades_csv.with_name("exercises.csv")
    write_atomic(path, buf.getvalue().encode("utf-8"))
    print()
    print_table(ex_header, ex_rows)
    return path


def print_table(header: list[str], rows: list[list]) -> None:
    """The table on the terminal (flags cut short; the csv has them whole; control characters escaped)."""
    short = [[(strip_controls(c)[:40] + "...") if h == "flags" and len(strip_controls(c)) > 43 else strip_controls(c)
              for h, c in zip(header, r)] for r in rows]
    table = [header, *short]
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])


def generate_feedback(course: Course, assignment: str) -> tuple[int, str]:
    """HTML feedback for every autograded student: ``feedback/<student>/<assignment>/*.html``.

    Student content in it was sanitised when rendered (:class:`.render.SanitizeNotebook`); each page
    also gets :data:`.render.FEEDBACK_CSP` (no script, nothing fetched from elsewhere).
    """
    code, out = run_nbgrader(course, ["generate_feedback", assignment, "--force"],
                             log=course.logs / "_feedback.log")
    protect_feedback(course.feedback)       # a Content-Security-Policy in every page, whatever the exit code
    return code, out


def output_path(course: Course, output: str | os.PathLike) -> Path:
    out = Path(output)
    return out if out.is_absolute() else course.root / out


def report(course_dir: str | os.PathLike | None = None, assignment: str = ASSIGNMENT,
           output: str | os.PathLike = "grades.csv", feedback: bool = True,
           submissions: str | os.PathLike | None = None) -> Path:
    """Feedback, grade table and exercise table again from the gradebook (e.g. after manual grading).

    No student code runs.  The ``similar-to`` flags are recomputed from the
    notebooks in ``submissions`` (default: the course's ``submitted/``) and the
    autograded copies, for every student graded so far.
    """
    course = Course.load(course_dir or default_course_dir())
    if feedback:
        code, out = generate_feedback(course, assignment)
        if code != 0:
            print(f"warning: nbgrader generate_feedback exit {code}:\n{tail(out)}", file=sys.stderr)
    state = load_state(course)
    sub_dir = Path(submissions).expanduser() if submissions else course.submitted
    sub_dir = sub_dir if sub_dir.is_absolute() else course.root / sub_dir
    graded = [sid for sid, e in state.items() if isinstance(e, dict) and e.get("status") == "graded"]
    similarity.refresh(state, graded, similarity.released_notebooks(course.release / assignment),
                       assignment, sub_dir, course.autograded)
    header, rows = grade_table(course, assignment, state=state)
    out_path = output_path(course, output)
    write_csv(out_path, header, rows)
    print_table(header, rows)
    write_exercises(course, assignment, header, rows, out_path)
    return out_path
