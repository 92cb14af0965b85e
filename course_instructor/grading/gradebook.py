"""The gradebook side of a grading run: working copies, merging, and the grade table.

A run never writes the course's gradebook in place.  It works on a copy
(:func:`working_copy`); each student is autograded against a copy of that
copy; :func:`merge_submission` then copies the student's autograded rows
(scores, comments, late penalties) into the working copy, one student at a
time, in one process; at the end :func:`commit` renames the working copy over
the gradebook.  A crash leaves the gradebook as it was before the run, and
parallel students cannot lose or double each other's rows.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .course import Course, GradingError


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def working_copy(course: Course, dest: Path) -> Path:
    """Copy the course's gradebook (if any) to ``dest``; returns ``dest``."""
    if course.db_path is None:
        raise GradingError(f"the course's gradebook must be an sqlite file (db_url {course.db_url!r})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if course.db_path.is_file():
        shutil.copyfile(course.db_path, dest)
    return dest


def merge_submission(src: Path, dst: Path, assignment: str, student: str, course_id: str) -> None:
    """Copy what ``nbgrader autograde`` wrote for ``student`` in ``src`` into ``dst``."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.exc import SAWarning

    with Gradebook(sqlite_url(src), course_id) as a, Gradebook(sqlite_url(dst), course_id) as b, \
            warnings.catch_warnings():
        # nbgrader's add_submission autoflushes half-built rows (a harmless SQLAlchemy warning)
        warnings.simplefilter("ignore", SAWarning)
        s = a.find_submission(assignment, student)
        b.update_or_create_student(student)
        try:
            d = b.find_submission(assignment, student)
        except MissingEntry:
            d = b.add_submission(assignment, student)
        d.timestamp = s.timestamp
        for snb in s.notebooks:
            dnb = b.find_submission_notebook(snb.name, assignment, student)
            dnb.late_submission_penalty = snb.late_submission_penalty
            dnb.flagged = snb.flagged
            for g in snb.grades:
                dg = b.find_grade(g.name, snb.name, assignment, student)
                dg.auto_score, dg.needs_manual_grade = g.auto_score, g.needs_manual_grade
            for c in snb.comments:
                b.find_comment(c.name, snb.name, assignment, student).auto_comment = c.auto_comment
        b.db.commit()


def commit(course: Course, work: Path) -> None:
    """Make the working copy the course's gradebook (an atomic rename)."""
    os.replace(work, course.db_path)


def grade_table(course: Course, assignment: str, students: list[str] | None = None,
                results: dict | None = None, state: dict | None = None) -> tuple[list[str], list[list]]:
    """Header and rows of the grade table, read from the gradebook.

    Columns: ``student_id``, one per notebook (its score: autograded points,
    overridden by manual grades where given), ``total_score``, ``max_score``
    (every point, written answers included), ``needs_manual_grade`` (cells
    waiting for a human grader), ``flags`` (what a human should look at, see
    :mod:`.scan`; ``;``-separated) and ``status``.  A student whose grading
    failed gets empty scores, not zeros.

    ``results`` are this run's results; ``state`` is what earlier runs
    recorded per student (``build/grading-flags.json``: flags and status).
    A student graded earlier without any gradable notebook has a gradebook
    entry (zeros) but no autograded folder: the recorded status says so.
    Folders the last run refused (``state`` status ``refused (...)``, their
    ids escaped) get a row of their own, after the others, with empty scores.
    """
    from nbgrader.api import Gradebook, MissingEntry

    results, state = results or {}, state or {}
    if course.db_path is not None and not course.db_path.is_file():
        raise GradingError(f"no gradebook at {course.db_path}: run `make grade` first")
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            a = gb.find_assignment(assignment)
        except MissingEntry:
            raise GradingError(f"the gradebook knows no assignment {assignment!r}: run `make grade` first") from None
        notebooks = [nb.name for nb in sorted(a.notebooks, key=lambda n: n.name)]
        max_score = a.max_score
        if students is None:
            students = sorted(s.student.id for s in a.submissions)
        refused = sorted(sid for sid, e in state.items()
                         if isinstance(e, dict) and str(e.get("status", "")).startswith("refused"))
        students = [s for s in students if s not in refused] + refused
        header = ["student_id", *notebooks, "total_score", "max_score", "needs_manual_grade", "flags", "status"]
        rows = []
        for sid in students:
            res = results.get(sid)
            entry = state.get(sid) if isinstance(state.get(sid), dict) else {}
            status = res.status if res else "graded"
            flag_text = "; ".join(map(str, entry.get("flags", [])))
            if sid in refused:
                rows.append([sid, *[""] * len(notebooks), "", _num(max_score), "", flag_text, str(entry["status"])])
                continue
            try:
                sub = gb.find_submission(assignment, sid)
            except MissingEntry:
                sub = None
                status = res.status if res and not res.ok else "not graded yet"
            if (res is None and entry.get("status") != "graded"
                    and not any((course.autograded / sid / assignment).glob("*.ipynb"))):
                # a failed grading leaves no autograded folder
                log = course.logs / f"{sid}.log"
                status = (f"failed (not autograded; see {course.short(log)})" if log.exists()
                          else "not graded yet")
                sub = None
            if sub is None or (res is not None and not res.ok):
                rows.append([sid, *[""] * len(notebooks), "", _num(max_score), "", flag_text, status])
                continue
            scores = {nb.name: nb.score for nb in sub.notebooks}
            manual = sum(1 for nb in sub.notebooks for g in nb.grades if g.needs_manual_grade)
            rows.append([sid, *[_num(scores.get(n, 0.0)) for n in notebooks], _num(sub.score),
                         _num(max_score), manual, flag_text, status])
    return header, rows


def _num(x) -> str:
    x = float(x or 0.0)
    return str(int(x)) if x == int(x) else f"{x:.2f}"


EXERCISE_HEADER = ["notebook", "cell", "points", "students_passed", "students_graded", "median_score"]


def exercise_table(db_url: str, course_id: str, assignment: str,
                   students: list[str]) -> tuple[list[str], list[list]]:
    """How the class did, per exercise: header and rows, read from the gradebook.

    One row per autograded test cell (``cell`` its grade_id; ``points``;
    ``students_passed``: how many of ``students`` have its full score, manual
    overrides included; ``students_graded``), then one row per notebook
    (``cell`` = ``(notebook)``; ``points`` its maximum; ``students_passed``:
    how many have every point of it; ``median_score`` of the notebook, written
    answers included once graded).  ``students`` are those whose grading
    succeeded (the grade table's ``graded`` rows); failed students would count
    as zeros and are left out.
    """
    import statistics

    from nbgrader.api import Gradebook, MissingEntry

    rows = []
    with Gradebook(db_url, course_id) as gb:
        try:
            a = gb.find_assignment(assignment)
        except MissingEntry:
            return EXERCISE_HEADER, []
        for nb in sorted(a.notebooks, key=lambda n: n.name):
            tests = sorted((c for c in nb.grade_cells if c.cell_type == "code"), key=lambda c: _natural(c.name))
            passed = {c.name: 0 for c in tests}
            scores, full = [], 0
            for sid in students:
                try:
                    snb = gb.find_submission_notebook(nb.name, assignment, sid)
                except MissingEntry:
                    continue
                scores.append(float(snb.score or 0.0))
                full += float(snb.score or 0.0) >= float(nb.max_score or 0.0)
                for g in snb.grades:
                    if g.name in passed and g.max_score and float(g.score or 0.0) >= float(g.max_score):
                        passed[g.name] += 1
            for c in tests:
                rows.append([nb.name, c.name, _num(c.max_score), passed[c.name], len(scores), ""])
            rows.append([nb.name, "(notebook)", _num(nb.max_score), full, len(scores),
                         _num(statistics.median(scores)) if scores else ""])
    return EXERCISE_HEADER, rows


def _natural(name: str) -> list:
    """Sort key: ex2 before ex10."""
    import re

    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]
