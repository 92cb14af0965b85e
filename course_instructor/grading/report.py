"""grades.csv and feedback from the gradebook (``python -m course_instructor.grading report``)."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

from .course import ASSIGNMENT, Course, default_course_dir, run_nbgrader, tail, write_atomic
from .gradebook import grade_table


def load_state(course: Course) -> dict:
    """What the last grading runs recorded per student: flags and the submission's fingerprint."""
    try:
        state = json.loads(course.flags_file.read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_atomic(path, buf.getvalue().encode("utf-8"))


def print_table(header: list[str], rows: list[list]) -> None:
    """The table on the terminal (flags cut short; the csv has them whole)."""
    short = [[(str(c)[:40] + "...") if h == "flags" and len(str(c)) > 43 else str(c) for h, c in zip(header, r)]
             for r in rows]
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
