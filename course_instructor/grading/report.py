"""grades.csv and feedback from the gradebook (``python -m course_instructor.grading report``)."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from pathlib import Path

from .course import ASSIGNMENT, Course, default_course_dir, run_nbgrader, strip_controls, tail, write_atomic
from .gradebook import grade_table


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


def print_table(header: list[str], rows: list[list]) -> None:
    """The table on the terminal (flags cut short; the csv has them whole; control characters escaped)."""
    short = [[(strip_controls(c)[:40] + "...") if h == "flags" and len(strip_controls(c)) > 43 else strip_controls(c)
              for h, c in zip(header, r)] for r in rows]
    table = [header, *short]
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])


def generate_feedback(course: Course, assignment: str) -> tuple[int, str]:
    """HTML feedback for every autograded student: ``feedback/<student>/<assignment>/*.html``."""
    return run_nbgrader(course, ["generate_feedback", assignment, "--force"],
                        log=course.logs / "_feedback.log")


def output_path(course: Course, output: str | os.PathLike) -> Path:
    out = Path(output)
    return out if out.is_absolute() else course.root / out


def report(course_dir: str | os.PathLike | None = None, assignment: str = ASSIGNMENT,
           output: str | os.PathLike = "grades.csv", feedback: bool = True) -> Path:
    """Feedback and grade table again from the gradebook (e.g. after manual grading); no execution."""
    course = Course.load(course_dir or default_course_dir())
    if feedback:
        code, out = generate_feedback(course, assignment)
        if code != 0:
            print(f"warning: nbgrader generate_feedback exit {code}:\n{tail(out)}", file=sys.stderr)
    header, rows = grade_table(course, assignment, state=load_state(course))
    out_path = output_path(course, output)
    write_csv(out_path, header, rows)
    print_table(header, rows)
    return out_path
